// The compiler: a State (namespaces, pods, NetworkPolicies) and the node it
// runs on in, one nftables Program out. Pure and deterministic: the same input
// gives a byte-identical RenderProgram, no I/O, no clock, no randomness.
//
// The layout of the Program (base chains, dispatch maps, group chains, set
// kinds, names and priorities) is described in engine/compiler/RULESET.md,
// which is the contract other components may rely on. In short: base chains
// `forward`, `input` and `output` (egress, by source pod) and `postrouting`
// (ingress, by destination pod, after source NAT) accept established traffic
// and the node's own, then dispatch by pod
// address through verdict maps into one chain per group of local pods that
// share the same policies; a group chain decides the union of its policies'
// rules with a fixed handful of set lookups and ends in `drop`; "allowed" is
// `return`.
//
// Incremental friendliness: which chains, rules and sets exist depends only on
// the policies and on the groups of local pods (the policy set selecting them,
// plus their named-port resolution for ingress). A pod that comes or goes
// without creating or emptying a group changes set and map elements only.
// There is one compiler: Compile is engine/compiler/incremental.h's
// IncrementalCompiler updating from the empty State, which maintains the result
// per change at a cost proportional to the change.
#ifndef NETPOL_ENGINE_COMPILER_COMPILER_H_
#define NETPOL_ENGINE_COMPILER_COMPILER_H_

#include <cstdint>
#include <optional>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "engine/compiler/delta.h"
#include "engine/model/model.h"
#include "engine/nft/program.h"

namespace netpol::compiler {

// Fixed object names of the layout (see RULESET.md).
inline constexpr char kDefaultTable[] = "netpol";
inline constexpr char kForwardChain[] = "forward";
inline constexpr char kInputChain[] = "input";
inline constexpr char kOutputChain[] = "output";
inline constexpr char kPostroutingChain[] = "postrouting";
inline constexpr char kIngressDispatchV4[] = "ingress-dispatch-v4";
inline constexpr char kIngressDispatchV6[] = "ingress-dispatch-v6";
inline constexpr char kEgressDispatchV4[] = "egress-dispatch-v4";
inline constexpr char kEgressDispatchV6[] = "egress-dispatch-v6";
inline constexpr char kSelfV4[] = "self-v4";
inline constexpr char kSelfV6[] = "self-v6";
// Priority of `forward` and `output`: nft's `filter` (0), i.e. after conntrack
// (-200) and after DNAT (dstnat, -100), so rules see the real pod address
// behind a Service.
inline constexpr int kBaseChainPriority = 0;
// `input` runs after IPVS's LOCAL_IN hooks (98, 99): a connection IPVS takes
// over is judged on the backend where IPVS re-sends it (output, postrouting),
// never as pod -> node on the Service address.
inline constexpr int kInputChainPriority = 101;
// `postrouting` runs after source NAT (srcnat, 100), so ingress is judged on
// the source the packet carries when it reaches the pod (srcnat + 1).
inline constexpr int kPostroutingChainPriority = 101;

struct CompileOptions {
  // The table to fill (family inet). Must be a valid nft identifier of at most
  // nft::kMaxNameLength characters.
  std::string table = kDefaultTable;
  // Pods whose spec.nodeName equals this (non-empty) name are local: policies
  // are enforced for them here. Empty: only `attached_pods` are local.
  std::string node_name;
  // Keys ("namespace/name") of pods a CNI attached to this node, local even
  // before their nodeName is known. Unknown keys are ignored.
  std::set<std::string> attached_pods;
  // Every rule of every group chain (each lookup, large-rule and allow-all rule, and the
  // closing drop) carries a `counter` statement (RULESET.md "Counters"). Base chains never do.
  bool rule_counters = false;
  // Deny logs (RULESET.md "Deny logs"): when set, the closing drop of every group chain sends
  // the packet's first `snaplen` bytes to nflog group `group` with the prefix "deny <chain>",
  // at most `rate` packets per second (burst `burst`) per group chain; the drops beyond that
  // go through a counted rule of their own (`counter drop`), so they are counted, not logged.
  struct DenyLog {
    uint16_t group = 0;
    uint32_t rate = 0;
    uint32_t burst = 0;
    uint32_t snaplen = 0;
    friend bool operator==(const DenyLog& a, const DenyLog& b) {
      return a.group == b.group && a.rate == b.rate && a.burst == b.burst &&
             a.snaplen == b.snaplen;
    }
    friend bool operator!=(const DenyLog& a, const DenyLog& b) { return !(a == b); }
  };
  std::optional<DenyLog> deny_log;
};

// Compiles `state` into the desired Program for the node described by `opts`.
// Errors: InvalidArgument for a bad table name, or for policy/pod data the
// compiler cannot express (a port outside 1-65535, endPort below port, ...),
// naming the object and field path, e.g. `networkpolicy x/a:
// spec.ingress[0].ports[1].endPort: must be >= port`.
absl::StatusOr<nft::Program> Compile(const State& state, const CompileOptions& opts);

// Per-object validation: every check by which Compile (and IncrementalCompiler)
// can reject input, one object or the options at a time, with the same
// messages (the compiler runs the same code). A write that changes only some objects
// needs to validate only those. A pod's named containerPorts are checked even
// when no policy refers to them yet (Compile checks a port when a policy
// resolves it); namespaces have nothing to reject.
absl::Status ValidateObject(const NetworkPolicy& policy);
absl::Status ValidateObject(const Pod& pod);
absl::Status ValidateObject(const Namespace& ns);
// A ClusterNetworkPolicy: priority 0-1000, a subject of namespaces or pods, non-empty peer lists
// with one kind per peer (nodes and networks on egress only), protocols with a port 1-65535 or a
// range start < end <= 65535, or a non-empty named port (`clusternetworkpolicy x:
// spec.egress[0].protocols[1]: ...`).
absl::Status ValidateObject(const ClusterNetworkPolicy& cnp);
// ValidateObject on every object `changed` names that `state` holds (a deleted key is
// skipped): what a writer runs on the objects its write created or changed.
absl::Status ValidateChanged(const State& state, const Delta& changed);
// The table name: InvalidArgument unless a valid nft identifier.
absl::Status ValidateOptions(const CompileOptions& opts);

// Resolves the named port `name`/`protocol` on `pod`: nullopt when the pod has
// no such port, InvalidArgument naming the pod when its number is outside
// 1-65535.
absl::StatusOr<std::optional<uint16_t>> ResolveNamedPort(const Pod& pod, const std::string& name,
                                                         Protocol protocol);

// Returns whether `pod` is enforced on the node of `opts` (local and not
// hostNetwork).
bool IsLocalPod(const Pod& pod, const CompileOptions& opts);

namespace internal {
// CompileOptions::deny_log as the statements of a group chain's logged drop (both nullopt
// without deny logging; the log's prefix is the chain's, filled in by AppendDrop).
std::optional<nft::LimitStmt> DenyLimit(const CompileOptions& opts);
std::optional<nft::LogStmt> DenyLogStmt(const CompileOptions& opts);
}  // namespace internal

}  // namespace netpol::compiler

#endif  // NETPOL_ENGINE_COMPILER_COMPILER_H_
