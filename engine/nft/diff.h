// Program diff: the transaction that turns one committed Program into another.
//
// Incremental sync uses Diff (element-level changes, chains rewritten only when their rules
// change); full sync uses FullReplace. Either way the result is one transaction, so the kernel
// moves from the old program to the new one atomically.
#ifndef NETPOL_ENGINE_NFT_DIFF_H_
#define NETPOL_ENGINE_NFT_DIFF_H_

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

}  // namespace netpol::nft

#endif  // NETPOL_ENGINE_NFT_DIFF_H_
