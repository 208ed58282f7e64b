// The node's CNI attachments (agent/attachments.h) and their durable copy in the state
// directory, `<dir>/attachments.pb`, plus the EndpointService semantics (Attach, Detach, List)
// over a Datastore and the Reconciler.
//
// Attachments are node-local facts (which sandbox on this node holds which address), so they
// live in the node's state directory whatever Datastore holds the objects (the embedded Store
// or etcd). The pods they touch (addresses, pods created for unknown names) are written through
// the Datastore like any other change, in the same Update that publishes the attachments.
//
// Durability: Save() writes `attachments.pb.tmp`, fsyncs, renames it over `attachments.pb` and
// fsyncs the directory before the attachments become visible. File: a header line
// "netpol-attachments 1 <payload bytes> <crc32 hex>\n" and a serialized
// netpol.v1.ListAttachmentsResponse. A crash between the attachments file and the Datastore
// write is repaired at start by ReconcileAtStart (OverlayAttachments).
//
// Thread safety: all methods are thread-safe; attachment writes are serialized.
#ifndef NETPOL_AGENT_ENDPOINTS_H_
#define NETPOL_AGENT_ENDPOINTS_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/attachments.h"
#include "agent/reconciler.h"
#include "agent/datastore.h"
#include "api/netpol/v1/endpoint_service.pb.h"

namespace netpol::agent {

class Endpoints {
 public:
  static constexpr char kFileName[] = "attachments.pb";

  // Loads `<dir>/attachments.pb` (absent: no attachments). `dir` must exist (Store::Open makes
  // it). A damaged file is an error naming it (DataLoss), as for the state file.
  static absl::StatusOr<std::unique_ptr<Endpoints>> Open(const std::string& dir);
  // No file: attachments live in memory only (tests).
  static std::unique_ptr<Endpoints> InMemory();

  static std::string Encode(const Attachments& attachments);
  // Records today's rules refuse are left out (their errors added to `dropped` when set): an
  // old file never stops the agent; a damaged one does (DataLoss).
  static absl::StatusOr<Attachments> Decode(const std::string& bytes,
                                            std::vector<std::string>* dropped = nullptr);

  // The current attachments (never null).
  std::shared_ptr<const Attachments> Current() const ABSL_LOCKS_EXCLUDED(mu_);
  // Persists `attachments` (durably, when file-backed) and publishes them.
  absl::Status Save(const Attachments& attachments) ABSL_LOCKS_EXCLUDED(mu_);

  // Serializes attachment writes (Attach, Detach, start-up reconciliation).
  absl::Mutex* write_mu() { return &write_mu_; }
  const std::string& path() const { return path_; }

 private:
  Endpoints(std::string dir, Attachments attachments);

  const std::string dir_;   // empty: in memory
  const std::string path_;
  absl::Mutex write_mu_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const Attachments> current_ ABSL_GUARDED_BY(mu_);
};

// Re-asserts every attachment on the Datastore's State (OverlayAttachments) before the first
// sync. No attachment is dropped: whether a pod still runs is never judged by its netns path,
// which the agent may not see (attachments.h).
absl::Status ReconcileAtStart(Datastore* store, Endpoints* endpoints);

// The EndpointService RPCs without gRPC. Errors as in service.h: InvalidArgument naming the
// field, NotFound, DeadlineExceeded when stored but not in the kernel after the timeout.
class EndpointApi {
 public:
  // None owned; all must outlive the API.
  EndpointApi(Datastore* store, Reconciler* reconciler, Endpoints* endpoints);

  absl::StatusOr<v1::AttachResponse> Attach(const v1::AttachRequest& request,
                                            absl::Duration timeout);
  absl::StatusOr<v1::DetachResponse> Detach(const v1::DetachRequest& request,
                                            absl::Duration timeout);
  absl::StatusOr<v1::GarbageCollectResponse> GarbageCollect(
      const v1::GarbageCollectRequest& request, absl::Duration timeout);
  absl::StatusOr<v1::ListAttachmentsResponse> List(const v1::ListAttachmentsRequest& request);

 private:
  // Runs `change` on the State and attachments under the write lock, stores both, tells the
  // reconciler and waits for the commit.
  absl::StatusOr<Snapshot> Write(
      const std::function<AttachmentChange(const State&, const Attachments&)>& change,
      absl::Duration timeout, AttachmentChange* result);
  // The storing half of Write, under the attachments' write lock. Refuses, storing nothing, a
  // change whose created or changed pods the compiler would reject (InvalidArgument naming the
  // pod and field). Sets `stored` when a new generation was stored. `result->state` is moved
  // into the store.
  absl::StatusOr<Snapshot> StoreChange(
      const std::function<AttachmentChange(const State&, const Attachments&)>& change,
      AttachmentChange* result, bool* stored);

  Datastore* const store_;
  Reconciler* const reconciler_;
  Endpoints* const endpoints_;
};

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_ENDPOINTS_H_
