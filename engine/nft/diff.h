// Program diff: the transaction that turns one committed Program into another.
//
// Incremental sync uses Diff (element-level changes, chains rewritten only when their rules
// change); full sync uses FullReplace. Either way the result is one transaction, so the kernel
// moves from the old program to the new one atomically.
#ifndef NETPOL_ENGINE_NFT_DIFF_H_
#define NETPOL_ENGINE_NFT_DIFF_H_

#include <cstddef>
#include <vector>

#include "engine/nft/backend.h"
#include "engine/nft/program.h"
#include "engine/nft/transaction.h"

namespace netpol::nft {

// Returns the transaction that turns table `from` (which must be what the table holds) into
// `to`, on table `to.table`; empty when they are equal. A missing and an empty element list
// are alike; the table comment is not compared. Command order:
//   1. add new chains and new sets; `add chain` base chains whose policy alone changed (the
//      kernel updates it in place);
//   2. flush chains that are deleted, re-created, or whose rules must be re-added (rules
//      changed, or they reference a set or chain that is deleted or re-created);
//   3. delete elements that are gone or changed (verdict or comment: delete, then add again),
//      and verdict-map elements that name a chain being deleted or re-created;
//   4. delete sets that are gone or whose definition changed (type, flags, comment);
//   5. delete chains that are gone or whose definition changed (comment, base or not, hook,
//      priority);
//   6. add the re-created chains and sets;
//   7. add the rules of new, re-created and flushed chains;
//   8. add new and changed elements, and every element of new and re-created sets.
// Every object is thus unreferenced when deleted and exists when referenced.
Transaction Diff(const Program& from, const Program& to);

// Returns one transaction that replaces whatever table `to.table` holds (or creates it) with
// `to`: `add table` (so that the delete cannot fail), `delete table`, then AddProgram(to). This
// works on kernels without `destroy` and is what FakeBackend models.
Transaction FullReplace(const Program& to);

// Gives each counted rule that `tx` adds the count of the rule it replaces, so a full replace
// does not start the table's counts over: `counts` is what Backend::ReadCounters read of the
// table before `tx`; a rule added to chain C with comment X takes the count of the rule of C
// with comment X (the k-th rule of C with that comment takes the k-th such count). A rule
// without one starts at 0. Returns how many rules took a count.
size_t CarryCounters(const std::vector<RuleCount>& counts, Transaction* tx);

// Builds table `to.table`, which must not exist, in several transactions of at most
// `max_elements` set elements each, so that no single commit holds the kernel's nf_tables
// commit lock for long (a cold start of a large cluster's program is hundreds of thousands of
// elements). Order:
//   1. `create table` (fails if the table appeared meanwhile), every set, every regular chain
//      and its rules;
//   2. the elements, set by set, cut into transactions of at most `max_elements`;
//   3. the base chains and their rules: the only transaction that hooks the table into the
//      packet path.
// Until the last transaction commits the table has no base chain, so no packet ever meets a
// partly built program: enforcement starts, complete, with the last commit. A caller that
// stops half-way must delete the table (it enforces nothing). When the program has at most
// `max_elements` elements (or `max_elements` is 0) the result is one transaction: the same as
// FullReplace's commands but with `create table`.
std::vector<Transaction> ChunkedCreate(const Program& to, size_t max_elements);

}  // namespace netpol::nft

#endif  // NETPOL_ENGINE_NFT_DIFF_H_
