// Encoding of netpol's nft objects and transactions into nf_tables netlink messages through
// libnftnl. Internal to engine/netlink.
//
// Every function validates its input first and returns InvalidArgument naming the field path
// (e.g. `matches[1]: set "in-x" is not a verdict map`) instead of sending something the kernel
// would reject or nft would print differently.
#ifndef NETPOL_ENGINE_NETLINK_ENCODE_H_
#define NETPOL_ENGINE_NETLINK_ENCODE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/netlink/codec.h"
#include "engine/nft/program.h"
#include "engine/nft/transaction.h"

namespace netpol::netlink {

// A set as a rule or element message refers to it: its definition and, when it is created in
// the same batch, the batch-local id (NFTA_SET_ID) that lets the kernel find it.
struct SetBinding {
  nft::Set set;
  std::optional<uint32_t> id;
};
// Returns the binding of a set by name, or null when no such set exists.
using SetLookupFn = std::function<const SetBinding*(const std::string& name)>;

// The rules of engine/nft/program.h (the fake backend holds programs to the same ones), with
// the field path in front: a table, chain or set name (`what`: "table", "chain", "set"), a set
// definition, an element against its set (`keys_only`: for deletes, where verdict and comment
// are not needed; they are still checked when present).
absl::Status ValidateName(const std::string& path, const char* what, const std::string& name);
absl::Status ValidateSet(const nft::Set& set);
absl::Status ValidateElement(const nft::Set& set, const nft::Element& e, bool keys_only);

// The key (or, with `end`, the key_end of an interval element) as the kernel stores it.
std::string EncodeKey(const nft::Set& set, const nft::Element& e, bool end);

TablePtr BuildTable(const std::string& table, const std::string& comment);
absl::StatusOr<ChainPtr> BuildChain(const std::string& table, const nft::Chain& chain);
absl::StatusOr<SetPtr> BuildSet(const std::string& table, const nft::Set& set, uint32_t set_id);
// Builds a rule's expressions exactly as nft 1.0.6 would for its text.
absl::StatusOr<RulePtr> BuildRule(const std::string& table, const std::string& chain,
                                  const nft::Rule& rule, const SetLookupFn& sets);
// Builds one element (validated by the caller).
SetElemPtr BuildElement(const nft::Set& set, const nft::Element& e, bool keys_only);

// Where a batch message came from, to turn a kernel error into a message naming the object.
struct MessageOrigin {
  size_t command = 0;  // index into Transaction::commands()
  std::string what;    // e.g. "add element to set in-x-a-4"
  // Element messages: the set, and for each element carried (in order) its index in the
  // command's element list and the offset of its attribute inside the message, which the
  // kernel reports back as NLMSGERR_ATTR_OFFS.
  std::optional<nft::Set> set;
  std::vector<size_t> element_index;
  std::vector<uint32_t> element_offset;
};

// A whole transaction as one nfnetlink batch: BATCH_BEGIN, one or more messages per command
// (each with NLM_F_ACK), BATCH_END, in one contiguous buffer.
struct EncodedBatch {
  std::vector<char> bytes;
  uint32_t begin_seq = 0, end_seq = 0;
  std::map<uint32_t, MessageOrigin> origins;  // by sequence number; one ACK expected per entry
};

// Looks up a set the table holds in the kernel (nullopt: there is none). Called only for sets a
// command refers to that the transaction does not define, at most once per name.
using KernelSetFn = std::function<absl::StatusOr<std::optional<nft::Set>>(const std::string& name)>;

// Element lists are split so that no NFTA_SET_ELEM_LIST_ELEMENTS nest exceeds this (the
// 16-bit netlink attribute length).
inline constexpr uint32_t kMaxNestBytes = 0xffff;

// Encodes `tx` with sequence numbers from `first_seq` on.
absl::StatusOr<EncodedBatch> EncodeTransaction(const nft::Transaction& tx, uint32_t first_seq,
                                               const KernelSetFn& kernel_set);
// Renumbers a batch's messages (and origins) to start at `first_seq`.
void RenumberBatch(EncodedBatch* batch, uint32_t first_seq);

}  // namespace netpol::netlink

#endif  // NETPOL_ENGINE_NETLINK_ENCODE_H_
