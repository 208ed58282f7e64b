// Decoding of dumped nf_tables objects (parsed by libnftnl) back into netpol's program IR.
// Internal to engine/netlink.
//
// The decoder accepts exactly what the encoder writes (and therefore what nft 1.0.6 writes for
// the same text). Anything else is a foreign edit: it is reported with code Aborted (the
// caller should redo a full sync, which replaces the table) and a message naming the object,
// e.g. `chain fw, rule handle 7: expression 2 (log) was not written by netpol`.
#ifndef NETPOL_ENGINE_NETLINK_DECODE_H_
#define NETPOL_ENGINE_NETLINK_DECODE_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/netlink/codec.h"
#include "engine/nft/backend.h"
#include "engine/nft/program.h"

namespace netpol::netlink {

// Returns the comment stored under `type` in libnftnl user data, or "" when there is none.
std::string CommentFromUdata(const void* data, uint32_t len, uint8_t type);

// Table flags and comment; Aborted for flags netpol never sets (dormant, owner).
absl::Status CheckTable(const nftnl_table* t, std::string* comment);
// A chain without its rules.
absl::StatusOr<nft::Chain> DecodeChain(const nftnl_chain* c);
absl::StatusOr<nft::Set> DecodeSet(const nftnl_set* s);
// The elements held by `s` (filled by nftnl_set_elems_nlmsg_parse), sorted by key.
absl::StatusOr<std::vector<nft::Element>> DecodeElements(const nft::Set& set, nftnl_set* s);
// A rule; `sets` are the table's sets (lookups must refer to one of them).
absl::StatusOr<nft::Rule> DecodeRule(nftnl_rule* r, const std::map<std::string, nft::Set>& sets);

// The chain, comment and counter values of rule `r` when it has a `counter` (nullopt
// otherwise); RuleCount::index is the caller's (the rule's position in the dump of its chain).
// The rule's matches are not decoded: reading counters is not a check of the table (Dump is).
std::optional<nft::RuleCount> DecodeRuleCount(nftnl_rule* r);

}  // namespace netpol::netlink

#endif  // NETPOL_ENGINE_NETLINK_DECODE_H_
