// The agent's API semantics, independent of gRPC: every RPC of netpol.v1 as a method taking
// the request message and returning the response or an absl::Status whose code is the gRPC
// code to send. server.h wraps these in gRPC service classes and adds transport concerns
// (authorization, readiness, reflection, health).
//
// Errors: InvalidArgument naming the object and field path for bad input (nothing changes),
// NotFound for missing objects, FailedPrecondition when the kernel lacks a feature the program
// needs (the backend's code passes through), DeadlineExceeded when a change is stored but not
// yet in the kernel after the timeout, Unavailable while starting, ResourceExhausted when too
// many requests already wait for the kernel (backpressure: nothing changed, retry with backoff).
//
// Backpressure: requests that wait for the kernel pass an AdmissionGate first. Writes (Apply,
// Delete; not dry runs) share one gate; the CNI's calls (Attach, Detach, and ListAttachments
// with verify, CNI CHECK, from callers that may write) another, so API clients never crowd out
// a pod's ADD or CHECK; reads that wait for the kernel (WaitForGeneration, Render of the
// kernel's table, ListAttachments with verify) have one gate per caller class (Caller below),
// so read-only clients (plain TCP) can fill only their own. A request finding its gate full is
// refused at once with ResourceExhausted, before anything is loaded or stored; reads that need
// no kernel (Get, List, Check, ExplainPod, Render of the committed program, Status) are never
// gated.
//
// Bounded waits: WaitForGeneration of a generation beyond what the store holds plus what the
// admitted writes can still store (one generation each) is answered at once with OutOfRange
// (with the etcd datastore, whose generations are etcd revisions that other nodes' writes
// raise, every generation may come and only the timeout bounds the wait); the caller caps the
// timeout (server.cc: at most --write-timeout).
//
// Writes are group-committed: concurrent writers' changes are applied in arrival order to one
// State and stored as one generation (each writer still gets its own results and errors), so
// the store runs once per batch, not once per write. Input the compiler would reject is refused
// before it is stored by checking only the objects a write created or changed
// (compiler::ValidateObject); the reconciler compiles (dry runs compile the whole State).
//
// Thread safety: all methods are thread-safe.
#ifndef NETPOL_AGENT_SERVICE_H_
#define NETPOL_AGENT_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
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

// The default of --max-pending-writes: writes admitted at once (validating, storing or waiting
// for their commit). Admitted writes are stored together (group commit, below) and reach the
// kernel within about two syncs however many there are, so the bound mostly caps what they hold
// (a request may carry 16 MiB): 64 lets one sync coalesce dozens of changes and keeps that
// memory under 1 GiB.
inline constexpr int kDefaultMaxPendingWrites = 64;

// Bounds how many requests of one kind are inside the agent at once. Thread-safe.
class AdmissionGate {
 public:
  // A slot held by an admitted request; released when destroyed. Move-only.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& o) noexcept : gate_(o.gate_) { o.gate_ = nullptr; }
    Slot& operator=(Slot&& o) noexcept;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot();

   private:
    friend class AdmissionGate;
    explicit Slot(AdmissionGate* gate) : gate_(gate) {}
    AdmissionGate* gate_ = nullptr;
  };

  // `what` names the requests in the refusal ("writes"); `flag` is the setting that sizes the
  // gate. A limit of zero or less admits everything.
  AdmissionGate(std::string what, std::string flag, int limit)
      : what_(std::move(what)), flag_(std::move(flag)), limit_(limit) {}

  // Takes a slot, or returns ResourceExhausted saying the agent is busy and to retry with
  // backoff when `limit` slots are held.
  absl::StatusOr<Slot> Enter();

  void set_limit(int limit) { limit_.store(limit); }
  int limit() const { return limit_.load(); }
  int64_t in_flight() const { return in_flight_.load(); }
  // Requests refused since start.
  int64_t refused() const { return refused_.load(); }

 private:
  const std::string what_;
  const std::string flag_;
  std::atomic<int> limit_;
  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> refused_{0};
};

// Who calls, as the transport knows it: kTrusted may change objects (the Unix socket, TLS with a
// client certificate the agent's CA signed), kReadOnly may only read (plain TCP, TLS without a
// client certificate). Each class has its own kernel-read gate.
enum class Caller { kTrusted, kReadOnly };

class AgentService {
 public:
  // `store` (the embedded Store or the etcd datastore) and `reconciler` are not owned and must
  // outlive the service.
  AgentService(Datastore* store, Reconciler* reconciler);

  // Makes writes keep the addresses of CNI-attached pods (OverlayAttachments). `endpoints` is
  // not owned, may be null (no attachments) and must outlive the service; set before serving.
  void set_endpoints(const Endpoints* endpoints) { endpoints_ = endpoints; }

  // Sizes the admission gates (see the file comment): at most `n` writes, `n` CNI calls and
  // `n` kernel reads per caller class at once; zero or less: unbounded. Default
  // kDefaultMaxPendingWrites. Set before serving.
  void set_max_pending(int n);
  AdmissionGate& write_gate() { return writes_; }
  // Attach, Detach, and ListAttachments with verify from trusted callers (the CNI plugin).
  AdmissionGate& attach_gate() { return attachments_; }
  AdmissionGate& kernel_read_gate(Caller caller) const {
    return caller == Caller::kTrusted ? kernel_reads_ : read_only_kernel_reads_;
  }

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
  absl::StatusOr<v1::RenderResponse> Render(const v1::RenderRequest& request,
                                            Caller caller = Caller::kTrusted) const;

  v1::StatusResponse Status() const;
  // Waits at most min(the request's timeout, `max_timeout`); OutOfRange at once for a
  // generation no admitted write can reach (see the file comment).
  absl::StatusOr<v1::StatusResponse> WaitForGeneration(const v1::WaitForGenerationRequest& request,
                                                       absl::Duration max_timeout,
                                                       Caller caller = Caller::kTrusted) const;

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

  // Group commit. Concurrent writers queue their mutations; one of them at a time (the leader)
  // takes every queued mutation, applies them in arrival order to one State, checks the objects
  // each created or changed (compiler::ValidateObject) and stores the result as one generation
  // with the changed keys, then hands leadership on. A mutation that fails (bad input, or an
  // object the compiler would reject) fails only its own writer; when the store fails the
  // batch, each mutation is stored on its own instead, so only the culprit's writer sees the
  // error. The store then runs once per batch instead of once per write.
  struct QueuedWrite {
    const Mutate* mutate = nullptr;
    bool done = false;
    absl::Status status;
    std::vector<v1::ObjectResult> results;
    uint64_t generation = 0;
  };
  // Stores `mutate`'s change (alone or with concurrent writers'); fills `results` and the
  // generation that holds it.
  absl::Status StoreChange(const Mutate& mutate, std::vector<v1::ObjectResult>* results,
                           uint64_t* generation);
  // Stores one batch (the leader runs it without batch_mu_) and completes its writes.
  void StoreBatch(const std::vector<QueuedWrite*>& batch);

  Datastore* const store_;
  Reconciler* const reconciler_;
  const Endpoints* endpoints_ = nullptr;
  absl::Mutex batch_mu_;
  std::vector<QueuedWrite*> queue_ ABSL_GUARDED_BY(batch_mu_);
  bool leader_active_ ABSL_GUARDED_BY(batch_mu_) = false;
  AdmissionGate writes_{"writes (Apply, Delete)", "--max-pending-writes",
                        kDefaultMaxPendingWrites};
  AdmissionGate attachments_{"attachment changes (Attach, Detach)", "--max-pending-writes",
                             kDefaultMaxPendingWrites};
  mutable AdmissionGate kernel_reads_{"reads of the kernel (WaitForGeneration, Render of the "
                                      "kernel, ListAttachments with verify)",
                                      "--max-pending-writes", kDefaultMaxPendingWrites};
  mutable AdmissionGate read_only_kernel_reads_{
      "reads of the kernel from read-only connections (WaitForGeneration, Render of the kernel, "
      "ListAttachments with verify)",
      "--max-pending-writes", kDefaultMaxPendingWrites};
};

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_SERVICE_H_
