// Incremental compilation: turns a change of the State into the nftables transaction it needs,
// at a cost proportional to the change rather than to the cluster.
//
// IncrementalCompiler holds the Program of the last State it saw plus indexes over that State.
// Compile(state, opts) is its Reset: the skeleton, then an Update from the empty State, so the
// program held after any sequence of Updates is the one a single Update from the empty State
// to the final State gives (incremental_compiler_test checks it). The indexes:
//   * the groups of local pods (RULESET.md), each with the definitions of its sets;
//   * the sets, shared by content between groups (RULESET.md "Sets shared by content": one set
//     per definition, with the number of groups that look it up), each with a reference count
//     of every element (an element may come from several pods, rules or policies), so a pod's
//     share is added or removed without rebuilding the set; interval sets keep their boxes and
//     are cut into disjoint elements again only when touched;
//   * the sets' pod-dependent rule parts ("templates": a selector peer, an egress named port on
//     an ipBlock or on any peer) indexed by the namespace they can select from, by named port,
//     and a list of the namespace-selector ones, so a pod event evaluates only the rule parts that
//     can match that pod, once per shared set;
//   * pods by named port and by label (a LabelIndex), local pods by namespace, the namespaces
//     that have pods by their labels (a LabelIndex, so a namespace selector costs the namespaces
//     carrying its labels, not every namespace), the dispatch entries per address (two local pods claiming one address: the first
//     by key wins, as in Compile). Pods of one namespace are a key range of State::pods
//     ("namespace/name"), read there directly.
//
// What an Update costs:
//   * a pod created, changed or deleted: the rule parts that may select it (above; the
//     namespace-selector ones are grouped by selector, one match per distinct selector) plus, if
//     it is local, its group membership (the policies of its namespace). Element commands only,
//     unless its group appears or disappears; a group that appears costs its chain, plus, for
//     each of its sets whose content no group has yet, that set's elements, which its
//     transaction carries anyway: a rule part that a held (or fresh) set holds alone is copied
//     from that set, the peers of the other parts are enumerated;
//   * a namespace relabelled: every pod of that namespace, as peers;
//   * a policy created, changed or deleted: every local pod of its namespace is regrouped, and
//     every group that holds the policy (before or after) is rebuilt from the State (cost: its
//     rules, and the peers of the sets that are new). Changed groups reach the kernel through
//     nft::Diff of just those groups' chains, the sets that appear or disappear, plus the
//     dispatch maps;
//   * attached pods that come or go (CompileOptions::attached_pods): like a change of those pods;
//   * with ClusterNetworkPolicies (cluster.h TierLayer): the tier chains of the local pods the
//     event may move, the tier contents of a changed CNP in full, for the others the first-match
//     windows around the changed pod and Node addresses, and the dispatch/self entries of the
//     addresses either layer touched;
//   * another table or node name than the held ones (or rule counters switched on or off), or a
//     group or set name that collides with another's (the salted names of RULESET.md): a Reset
//     aside and a Diff of the whole programs.
// An Update runs in two halves: the steps that can fail (policy validation; the indexes move to
// the new State and back on error; regrouping the affected local pods; large-rule recounts;
// which groups are created, deleted or rebuilt; building those; element changes of the others),
// then the commit, which cannot fail (dispatch entries, the changed groups' objects and their
// Diff, element commands, the groups' registry).
// Nothing per event scans the whole State or copies or diffs the whole Program.
//
// Thread-compatible.
#ifndef NETPOL_ENGINE_COMPILER_INCREMENTAL_H_
#define NETPOL_ENGINE_COMPILER_INCREMENTAL_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/compiler/compiler.h"
#include "engine/compiler/delta.h"
#include "engine/model/model.h"
#include "engine/nft/program.h"
#include "engine/nft/transaction.h"

namespace netpol::compiler {

struct IncrementalStats {
  int64_t resets = 0;          // full compiles from Reset
  int64_t updates = 0;         // successful Updates
  int64_t full_fallbacks = 0;  // Updates that compiled afresh (options changed, name clash)
  int64_t groups_rebuilt = 0;  // groups created, rebuilt or deleted by Updates
  // Updates in which a pod or namespace event moved a rule across the large-rule threshold
  // (RULESET.md "Large rules"; its groups were rebuilt)
  int64_t large_rule_crossings = 0;
};

// A ClusterNetworkPolicy rule that a tier chain's lookup holds (RULESET.md "ClusterNetworkPolicy
// tiers").
struct TierRuleSource {
  CnpTier tier = CnpTier::kAdmin;
  std::string policy;  // the ClusterNetworkPolicy's name
  int32_t priority = 0;
  int rule = 0;        // index into spec.ingress or spec.egress
  std::string name;    // the rule's name, may be empty
  CnpAction action = CnpAction::kDeny;
};

// What the rules of one group or tier chain decide, for attributing their counters
// (CompileOptions::rule_counters; RULESET.md "Counters").
struct GroupRuleSources {
  bool ingress = true;
  // The keys of the group's policies ("namespace/name"), sorted.
  std::vector<std::string> policies;
  // Per rule of the chain, in order: the policy rules it holds ("ns/name ingress[0]"), in full
  // where the rule's comment may shorten them; empty for the closing drop (two rules with deny
  // logs: the logged drop and the counted drop of what the limit held back).
  std::vector<std::vector<std::string>> rules;
  // Tier chains (`cin-`/`ceg-`) only: `policies` is empty, every entry of `rules` is empty, and
  // per rule, in order, the ClusterNetworkPolicy rules its lookup holds (the rules of its tier's
  // ClusterNetworkPolicies with its action, Accept or Deny, for the chain's direction); empty for
  // the jump to the pods' group chain. Empty for group chains.
  std::vector<std::vector<TierRuleSource>> tier_rules;
};

class IncrementalCompiler {
 public:
  IncrementalCompiler();
  ~IncrementalCompiler();
  IncrementalCompiler(const IncrementalCompiler&) = delete;
  IncrementalCompiler& operator=(const IncrementalCompiler&) = delete;

  // Compiles `state` in full (the skeleton, then an Update from the empty State) and indexes it.
  // Returns nft::FullReplace(program()): the transaction that installs the program whatever the
  // table holds. On error (what Compile returns) the compiler holds nothing (has_program() is
  // false).
  absl::StatusOr<nft::Transaction> Reset(const State& state, const CompileOptions& opts);

  // Moves the held program from `old_state` (the State of the last Reset/Update) to `new_state`,
  // which differs from it by `delta`, and returns the transaction that turns program(old_state)
  // into program(new_state): element adds and deletes, and chains/sets created, flushed or
  // deleted only where a group appears, disappears or its policies change. Empty when nothing
  // changes. `old_state` is read only for the objects `delta` names.
  //
  // When `before` is not null it receives, as they were before the update, what
  // conntrack::RevocationFilters reads of the old program: every chain, every set definition,
  // the elements of the verdict maps and of every set the transaction deletes or re-creates.
  //
  // Errors: FailedPrecondition when nothing is held (call Reset); what Compile(new_state) would
  // return (InvalidArgument naming the object and field). On error the held program and
  // indexes are unchanged.
  absl::StatusOr<nft::Transaction> Update(const State& old_state, const State& new_state,
                                          const Delta& delta, const CompileOptions& opts,
                                          nft::Program* before = nullptr);

  bool has_program() const;
  // Compile() of the last State. Only valid while has_program().
  const nft::Program& program() const;
  // Per group and tier chain of program() (by name), what its rules decide. Only valid while
  // has_program(). Costs the groups' rules, not their elements.
  std::map<std::string, GroupRuleSources> RuleSources() const;
  // The options of the last Reset/Update.
  const CompileOptions& options() const;
  // Gives up the held program (has_program() is false afterwards).
  nft::Program TakeProgram();
  const IncrementalStats& stats() const;

 private:
  friend absl::StatusOr<nft::Program> Compile(const State& state, const CompileOptions& opts);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace netpol::compiler

#endif  // NETPOL_ENGINE_COMPILER_INCREMENTAL_H_
