// The agent's API semantics, independent of gRPC: every RPC of netpol.v1 as a method taking
// the request message and returning the response or an absl::Status whose code is the gRPC
// code to send. server.h wraps these in gRPC service classes and adds transport concerns
// (authorization, readiness, reflection, health).
//
// Errors: InvalidArgument naming the object and field path for bad input (nothing changes),
// NotFound for missing objects, FailedPrecondition when the kernel lacks a feature the program
// needs (the backend's code passes through), DeadlineExceeded when a change is stored but not
// yet in the kernel after the timeout, Unavailable while starting.
//
// Thread safety: all methods are thread-safe.
#ifndef NETPOL_AGENT_SERVICE_H_
#define NETPOL_AGENT_SERVICE_H_

#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/changes.h"
#include "agent/endpoints.h"
#include "agent/reconciler.h"
#include "agent/store.h"
#include "api/netpol/v1/object_service.pb.h"
#include "api/netpol/v1/query_service.pb.h"
#include "api/netpol/v1/status_service.pb.h"

namespace netpol::agent {

// Objects (or manifests) one Apply or Delete may carry; beyond: RESOURCE_EXHAUSTED. Requests
// are also bounded in bytes by the server (16 MiB, server.cc) and each manifest by the loader
// (kMaxLoadBytes); labels and selectors by the validator's Kubernetes limits.
inline constexpr int kMaxObjectsPerRequest = 100000;

class AgentService {
 public:
  // `store` (the embedded Store or the etcd datastore) and `reconciler` are not owned and must
  // outlive the service.
  AgentService(Datastore* store, Reconciler* reconciler);

  // Makes writes keep the addresses of CNI-attached pods (OverlayAttachments). `endpoints` is
  // not owned, may be null (no attachments) and must outlive the service; set before serving.
  void set_endpoints(const Endpoints* endpoints) { endpoints_ = endpoints; }

  // True once the first sync committed.
  bool Ready() const;

  // Writes wait at most `timeout` for the kernel commit.
  absl::StatusOr<v1::ApplyResponse> Apply(const v1::ApplyRequest& request, absl::Duration timeout);
  absl::StatusOr<v1::DeleteResponse> Delete(const v1::DeleteRequest& request,
                                            absl::Duration timeout);
  absl::StatusOr<v1::GetResponse> Get(const v1::GetRequest& request) const;
  absl::StatusOr<v1::ListResponse> List(const v1::ListRequest& request) const;

  absl::StatusOr<v1::CheckResponse> Check(const v1::CheckRequest& request) const;
  absl::StatusOr<v1::ExplainPodResponse> ExplainPod(const v1::ExplainPodRequest& request) const;
  absl::StatusOr<v1::RenderResponse> Render(const v1::RenderRequest& request) const;

  v1::StatusResponse Status() const;
  absl::StatusOr<v1::StatusResponse> WaitForGeneration(const v1::WaitForGenerationRequest& request,
                                                       absl::Duration max_timeout) const;

 private:
  // Loads every object of a request (messages and manifests), validated.
  absl::StatusOr<std::vector<Object>> LoadObjects(
      const google::protobuf::RepeatedPtrField<v1::Object>& objects,
      const google::protobuf::RepeatedPtrField<v1::Manifest>& manifests) const;
  // Stores `change` (computed from the current State by `mutate`), hands the program to the
  // reconciler and waits for the commit. Fills results, generation and plan.
  using Mutate = std::function<absl::StatusOr<ChangeResult>(const State&)>;
  template <typename Response>
  absl::Status Write(const Mutate& mutate, bool dry_run, absl::Duration timeout,
                     Response* response);

  Datastore* const store_;
  Reconciler* const reconciler_;
  const Endpoints* endpoints_ = nullptr;
};

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_SERVICE_H_
