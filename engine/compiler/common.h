// The pieces of the compiler (incremental.cc) that do not depend on its indexes: port
// normalization and its errors, group keys, names and comments, the table of group set kinds,
// large rules, the skeleton of base chains and dispatch maps, and the validation compiler.h
// exports (RULESET.md documents the layout).
#ifndef NETPOL_ENGINE_COMPILER_COMMON_H_
#define NETPOL_ENGINE_COMPILER_COMMON_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/compiler/boxes.h"
#include "engine/compiler/compiler.h"
#include "engine/model/model.h"
#include "engine/nft/program.h"

namespace netpol::compiler::internal {

// Name budget (nft::kMaxNameLength = 63) of a group chain: "in-"/"eg-" (3) + readable part + "-"
// (1) + 8 hex digits of hash + 10 characters in reserve => readable part <= 41. (Group sets are
// named after their content, "in-set-<16 hex>-<suffix>", 28 characters at most.)
constexpr size_t kHashDigits = 8;
constexpr size_t kLongestSetSuffix = 10;
constexpr size_t kReadableBudget = nft::kMaxNameLength - 3 - 1 - kHashDigits - kLongestSetSuffix;
static_assert(kReadableBudget == 41, "name budget changed: update RULESET.md");

enum class Dir { kIngress, kEgress };
const char* DirName(Dir d);
// 0 for IPv4, 1 for IPv6.
int Fam(Family f);

using nft::Fnv1a64;

// Keeps characters that are valid in nft identifiers and Kubernetes names; maps the rest to '-'.
std::string Sanitize(const std::string& s);

// Joins `items` after `head` within `limit` bytes, ending in " +N more" when some do not fit;
// the result is a valid comment (nft::CommentFrom).
std::string JoinLimited(const std::string& head, const std::vector<std::string>& items,
                        size_t limit = nft::kMaxCommentLength);

// ---- addresses as box coordinates ----

U128 AddrToU128(const IpAddr& a);
IpAddr U128ToAddr(U128 v, Family f);
U128 AddrMax(Family f);
Span AddrSpan(const IpAddr& lo, const IpAddr& hi);
inline Span NumSpan(uint32_t lo, uint32_t hi) { return {lo, hi}; }

// ---- policy ports, normalized ----

struct PortSpec {
  enum class Kind { kAny, kProtoAll, kRange, kNamed };
  Kind kind = Kind::kAny;
  Protocol protocol = Protocol::kTCP;
  uint16_t lo = 0, hi = 0;  // kRange (lo == hi: a single port)
  std::string name;         // kNamed
};

// The ports of rule `rule_index` of `policy` for `dir`: one kAny spec when it lists none.
// InvalidArgument naming the policy and field for a port the loader should have refused.
absl::StatusOr<std::vector<PortSpec>> NormalizePorts(const NetworkPolicy& policy, Dir dir,
                                                     size_t rule_index, const Rule& rule);

// ---- groups ----

using NamedPort = std::pair<std::string, Protocol>;
using Resolution = std::map<NamedPort, std::optional<int32_t>>;

// ResolveNamedPort (compiler.h): nullopt when `pod` has no such port, InvalidArgument naming the
// pod when its number is outside 1-65535.
absl::StatusOr<std::optional<uint16_t>> ResolvePort(const Pod& pod, const std::string& name,
                                                    Protocol protocol);

// Whether a group set kind exists, and the rules it comes from ("x/a ingress[0]"), in order,
// deduplicated: the set's comment.
struct Sources {
  bool present = false;
  std::vector<std::string> list;
  void Mark(const std::string& source);
};

// Whether `p` isolates `pod` for `dir`.
bool Selects(const NetworkPolicy& p, const Pod& pod, Dir dir);

// The labels a namespace selector sees for namespace `ns` (with the name label).
Labels NamespaceLabels(const State& s, const std::string& ns);

// The group key of local pod `pod` for `dir`, isolated by `policies` (sorted by key); fills
// `resolution` (ingress: every named port of the policies' ingress rules, as the pod resolves
// it). Errors: ResolvePort's.
absl::StatusOr<std::string> GroupKey(Dir dir, const std::vector<const NetworkPolicy*>& policies,
                                     const Pod& pod, Resolution* resolution);

// The chain name of a group whose first policy is `policy_ns`/`policy_name` and whose key
// (salted on a name collision) is `salted_key`.
std::string GroupName(Dir dir, const std::string& policy_ns, const std::string& policy_name,
                      const std::string& salted_key);

// The group chain's comment and its closing drop rule's comment.
std::string GroupComment(Dir dir, const Resolution& resolution,
                         const std::vector<std::string>& policy_keys);
std::string DropComment(Dir dir, const std::vector<std::string>& policy_keys);

// The log prefix of a group chain's logged drop: "deny <chain>" (the reader of the nflog group
// finds the chain, hence the direction and the group, from it).
inline constexpr char kDenyLogPrefix[] = "deny ";
// Appends the closing rules of group chain `chain`: `drop`, or with deny logging (`limit` and
// `log` set; the log's prefix is filled in here) `limit ... log ... drop` followed by
// `counter drop` for what the limit held back.
void AppendDrop(nft::Chain* chain, Dir dir, const std::vector<std::string>& policy_keys,
                const std::optional<nft::LimitStmt>& limit, std::optional<nft::LogStmt> log);
// The comment of the counted drop after a logged one starts with this (the agent sums those
// counters: the drops the limit kept from the log).
inline constexpr char kSuppressedCommentPrefix[] = "over the log limit: ";
// The comment of the counted drop after a logged one.
std::string SuppressedComment(Dir dir, const std::vector<std::string>& policy_keys);

// ---- allowed-flow logs (RULESET.md "Allowed-flow logs") ----

// The log prefix of an allowed-flow log: "allow <group chain>".
inline constexpr char kAllowLogPrefix[] = "allow ";
// The chain a group chain's logged allow rules go to: "<group chain>-log" (the suffix fits the
// name budget of a set suffix).
inline constexpr char kAllowLogChainSuffix[] = "-log";
// Whether a group rule holding `sources` ("x/a ingress[0]", ...) holds a rule of one of the
// policies (keys) in `logged`.
bool LogsAllowed(const std::set<std::string>& logged, const std::vector<std::string>& sources);
// The allowed-flow log chain of group chain `group_chain`, whose policies `logged` ask for it:
// `ct state new limit ... log prefix "allow <group chain>" ... return`, then `return` (a packet
// over the limit, or not new, is allowed without a record).
nft::Chain AllowLogChain(const std::string& group_chain, Dir dir,
                         const std::set<std::string>& logged, const nft::LimitStmt& limit,
                         nft::LogStmt log);

// ---- group set kinds ----

// The sets a group chain may look up; kSlotOrder is the order of the chain's rules.
enum Slot { kA4, kA6, kP4, kP6, kRa4, kRa6, kRp4, kRp6, kX, kXr, kSlots };
inline constexpr Slot kSlotOrder[kSlots] = {kA4, kP4, kRa4, kRp4, kA6, kP6, kRa6, kRp6, kX, kXr};
Slot SA(int f);
Slot SP(int f);
Slot SRa(int f);
Slot SRp(int f);
bool IsInterval(Slot s);
Family SlotFamily(Slot s);
const char* SlotSuffix(Slot s);
// The upper bounds of an interval slot's dimensions (DisjointUnion).
std::vector<U128> SlotDims(Slot s);
std::vector<nft::FieldType> SlotKey(Slot s);
// The head of the set's comment (its sources follow).
const char* SlotCommentHead(Slot s);
// What the chain's rule looks up in the set.
std::vector<nft::Selector> SlotLookup(Slot s, Dir dir);

// A box of an interval slot as an nft element.
nft::Element BoxElement(Slot s, const Box& b);
// The boxes of an interval slot cut into disjoint elements (DisjointUnion).
std::vector<nft::Element> BoxElements(Slot s, const std::vector<Box>& boxes);

// ---- rule parts: one port spec of a rule and one peer ----

// The name of rule `index` of `policy` for `dir` in comments: "x/a ingress[0]".
std::string RuleSource(const NetworkPolicy& policy, Dir dir, size_t index);

// Whether `ip` lies in one of `ranges`.
bool InRanges(const IpAddr& ip, const std::vector<IpRange>& ranges);

// A kNamed ingress spec's port as the group resolves it on its pods (nullopt otherwise).
std::optional<uint16_t> IngressPort(const PortSpec& ps, Dir dir, const Resolution& resolution);

// What a rule part puts into its group's sets, before any pod is looked at.
struct Part {
  bool all = false;                         // an unconditional allow
  std::vector<Slot> marked;                 // the set kinds it makes exist, in order
  std::vector<std::pair<Slot, Box>> boxes;  // its elements that do not depend on pods
  // An egress named port: its elements are the destination pods' own port numbers (of the
  // pods inside the block, for an ipBlock peer), in slot SP.
  bool pods_named_port = false;
};

// A rule without peers (any peer) and port spec `ps`.
Part AnyPeerPart(const PortSpec& ps, Dir dir, std::optional<uint16_t> ingress_port);
// An ipBlock peer of family index `f` covering `ranges` (CidrMinus) and port spec `ps`.
Part IpBlockPart(const PortSpec& ps, Dir dir, std::optional<uint16_t> ingress_port, int f,
                 const std::vector<IpRange>& ranges);
// The set kind a selector peer's pods of family index `f` go to under port spec `ps`.
Slot SelectorSlot(const PortSpec& ps, int f);

// ---- large rules (RULESET.md "Large rules") ----
//
// A rule whose peers and ports would make more than kLargeRuleProduct elements of a
// concatenated set is a "large rule": its peers and its ports go into two sets of their own,
// looked up by one chain rule, so it costs peers + ports elements instead of peers x ports.

// The product (resolved peers x ports) above which a rule is large. The resolved peers of a
// rule are its ipBlock ranges (CidrMinus) plus the addresses of the pods its selector peers
// match in the State (each selector peer counted on its own), so the decision is a pure
// function of the State: Compile and the incremental compiler make the same one.
constexpr uint64_t kLargeRuleProduct = 1024;
// The most set elements the static part of one policy may need (RULESET.md "Large rules":
// per rule, ipBlock ranges x ports, or ranges + ports for a large rule).
constexpr uint64_t kMaxPolicyElements = 50000;
// How many ranges a selector peer weighs in that static count (CheckPolicySize only).
constexpr uint64_t kBoundSelectorWeight = 64;

// Whether port spec `ps` of a large rule for `dir` goes into the rule's port set (numbers,
// ranges, protocol-only, ingress named ports); an egress named port resolves on each
// destination pod and stays with the peers (slot SP).
bool LargeRulePort(const PortSpec& ps, Dir dir);
// What the large-rule decision needs from the policy alone.
struct LargeShape {
  uint64_t ranges = 0;     // ipBlock ranges after except
  uint64_t ports = 0;      // port specs that LargeRulePort counts
  bool selectors = false;  // whether some peer is a pod or namespace selector
};
LargeShape LargeShapeOf(const Rule& rule, Dir dir, const std::vector<PortSpec>& specs);
// Whether a rule of shape `shape` whose selector peers match `selector_addrs` pod addresses
// (summed over its selector peers) is large.
bool IsLarge(const LargeShape& shape, uint64_t selector_addrs);
// Whether the decision depends on the pods (it has selector peers, and is neither always
// small, having fewer than two ports, nor large by its ipBlocks alone).
bool LargeDependsOnPods(const LargeShape& shape);
// The pod addresses one selector peer contributes: those of an eligible peer pod (not
// hostNetwork) that it matches.
inline uint64_t PeerPodAddrs(const Pod& pod) { return pod.host_network ? 0 : pod.ips.size(); }
// InvalidArgument naming the policy when its rules need more than kMaxPolicyElements elements.
// Errors of NormalizePorts first.
absl::Status CheckPolicySize(const NetworkPolicy& policy);

// The sets of large rule `k` of a group: part 0/1 its IPv4/IPv6 peers (keyed like SRa: address
// range . protocol 0-255), part 2 its ports (keyed like kXr: protocol . port range).
inline constexpr int kLargeParts = 3;
std::string LargeSuffix(size_t k, int part);
// The slot whose key, dimensions and elements a part's set shares.
Slot LargeBaseSlot(int part);
const char* LargeCommentHead(int part);
// The chain rule of a large rule for family index `f`: its peers of that family in set `peers`,
// its ports in set `ports`.
nft::Rule LargeRuleLookup(const std::string& peers, const std::string& ports, int f, Dir dir,
                          const std::string& comment);
// A peer box of a large rule (address range, any protocol).
Box LargePeerBox(U128 lo, U128 hi);
// The port box of spec `ps` in a large rule's port set (nullopt: an unresolved ingress named
// port adds nothing).
std::optional<Box> LargePortBox(const PortSpec& ps, std::optional<uint16_t> ingress_port);

// The program of a State without policies for the node of `opts`: the base chains, and the
// dispatch maps and self sets without elements.
nft::Program Skeleton(const CompileOptions& opts);

// Gives every rule of group chain `chain` a counter when `counters` (CompileOptions::
// rule_counters); the last step of building a group chain.
void CountRules(bool counters, nft::Chain* chain);

nft::Rule MakeRule(std::vector<nft::Match> matches, std::optional<nft::Verdict> verdict,
                   std::string comment);
nft::LookupMatch Lookup(std::vector<nft::Selector> key, std::string set, bool vmap = false);

}  // namespace netpol::compiler::internal

#endif  // NETPOL_ENGINE_COMPILER_COMMON_H_
