// Pure State transitions for Apply and Delete: what each object's outcome is (created,
// configured, unchanged, deleted), the resulting State and the keys of the objects that differ
// from the base State (the write's Delta, so nothing downstream compares whole States). No I/O.
#ifndef NETPOL_AGENT_CHANGES_H_
#define NETPOL_AGENT_CHANGES_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "api/netpol/v1/object_service.pb.h"
#include "engine/compiler/delta.h"
#include "engine/model/loader.h"
#include "engine/model/model.h"

namespace netpol::agent {

struct ChangeResult {
  State state;                            // shares every object the change did not touch
  std::vector<v1::ObjectResult> results;  // one per input object/ref, in input order
  uint64_t objects_changed = 0;           // objects created, changed or deleted (cascades too)
  // The keys of the objects created, changed or deleted (the pods and policies deleted with
  // their namespace included): every key whose object differs between the base State and
  // `state`, and no other unless a later object of the same request restored an earlier one's
  // change.
  compiler::Delta delta;
};

// Inserts or replaces every object in order (a later duplicate sees the earlier one).
ChangeResult ApplyObjects(const State& base, const std::vector<Object>& objects);

// Deletes every referenced object. Deleting a namespace also deletes its pods and policies.
// A missing object is NotFound (naming it) unless `ignore_not_found`, then its action is
// UNCHANGED. InvalidArgument for a ref without kind or name.
absl::StatusOr<ChangeResult> DeleteObjects(const State& base,
                                           const std::vector<v1::ObjectRef>& refs,
                                           bool ignore_not_found);

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_CHANGES_H_
