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
// Delete) share one gate, dry runs (which compile the whole State) one of their own; the CNI's calls (Attach, Detach, and ListAttachments
// with verify, CNI CHECK, from callers that may write) another, so API clients never crowd out
// a pod's ADD or CHECK; reads that wait for the kernel (WaitForGeneration, Render of the
// kernel's table, ListAttachments with verify) have one gate per caller class (Caller below),
// so read-only clients (plain TCP) can fill only their own. A request finding its gate full is
// refused at once with ResourceExhausted, before anything is loaded or stored; reads that need
// no kernel (Get, List, Check, ExplainPod, Render of the committed program, Status) are never
// refused, but large Lists wait for their turn (kMaxLargeReads).
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
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/changes.h"
#include "agent/endpoints.h"
#include "agent/node_status.h"
#include "agent/reconciler.h"
#include "agent/store.h"
#include "api/netpol/v1/object_service.pb.h"
#include "api/netpol/v1/query_service.pb.h"
#include "api/netpol/v1/status_service.pb.h"

namespace netpol::agent {

// Objects (or manifests) one Apply or Delete may carry; beyond: RESOURCE_EXHAUSTED. Requests
// are also bounded in bytes (kMaxRequestBytes) and each manifest by the loader (kMaxLoadBytes,
// 8 MiB); labels and selectors by the validator's Kubernetes limits.
inline constexpr int kMaxObjectsPerRequest = 100000;

// The largest request the server accepts, in bytes (gRPC answers RESOURCE_EXHAUSTED beyond).
// Objects given as messages are bounded by it and kMaxObjectsPerRequest only.
inline constexpr int kMaxRequestBytes = 16 << 20;

// A List answering more objects than this is a large read: at most kMaxLargeReads are built at
// once (the others wait for their turn until their deadline), and the memory they freed is
// returned to the system once they are sent (six parallel 100,000-pod Lists: benchmarks/README.md).
inline constexpr size_t kLargeReadObjects = 10000;
inline constexpr int kMaxLargeReads = 2;

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

// Lets at most `limit` requests in at once; the others wait for their turn until a deadline.
// Thread-safe.
class TurnGate {
 public:
  // A turn held; released when destroyed. Move-only.
  class Turn {
   public:
    Turn() = default;
    Turn(Turn&& o) noexcept : gate_(o.gate_) { o.gate_ = nullptr; }
    Turn& operator=(Turn&& o) noexcept;
    Turn(const Turn&) = delete;
    Turn& operator=(const Turn&) = delete;
    ~Turn();

   private:
    friend class TurnGate;
    explicit Turn(TurnGate* gate) : gate_(gate) {}
    TurnGate* gate_ = nullptr;
  };

  explicit TurnGate(int limit) : limit_(limit) {}
  // A turn, or false when `deadline` passed first.
  bool Wait(absl::Time deadline, Turn* turn);
  int in_flight() const;

 private:
  void Release();
  const int limit_;
  mutable absl::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

// Hands memory freed by large requests back to the system (malloc_trim) after they end: glibc
// keeps freed pages of each thread's arena, so the peak of a large List or write would
// otherwise stay resident. gRPC frees a response only once the client has read it (a slow
// client holds a large List for seconds), so a request is followed by trims 0.5, 2, 8 and 30
// seconds after it (each a few milliseconds); a newer request starts the series again.
// Thread-safe.
class MemoryTrimmer {
 public:
  MemoryTrimmer();
  ~MemoryTrimmer();
  void Request();
  // Trims done since start (for tests).
  int64_t trims() const;

 private:
  void Run();
  mutable absl::Mutex mu_;
  bool requested_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int64_t trims_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

class AgentService {
 public:
  // `store` (the embedded Store or the etcd datastore) and `reconciler` are not owned and must
  // outlive the service.
  AgentService(Datastore* store, Reconciler* reconciler);

  // Makes writes keep the addresses of CNI-attached pods (OverlayAttachments). `endpoints` is
  // not owned, may be null (no attachments) and must outlive the service; set before serving.
  void set_endpoints(const Endpoints* endpoints) { endpoints_ = endpoints; }
  // Where the nodes of a shared datastore publish their status (ListNodeStatus). Not owned, may
  // be null (the embedded store); set before serving.
  void set_node_statuses(NodeStatusRegistry* registry) { node_statuses_ = registry; }

  // Sizes the admission gates (see the file comment): at most `n` writes, `n` CNI calls and
  // `n` kernel reads per caller class at once; zero or less: unbounded. Default
  // kDefaultMaxPendingWrites. Set before serving.
  void set_max_pending(int n);
  AdmissionGate& write_gate() { return writes_; }
  AdmissionGate& dry_run_gate() { return dry_runs_; }
  // Large Lists being built (at most kMaxLargeReads at once), and the trimmer they use.
  TurnGate& large_read_gate() const { return large_reads_; }
  const MemoryTrimmer& trimmer() const { return trimmer_; }
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
  // A large List (kLargeReadObjects) waits for its turn until `deadline`, then fails with
  // ResourceExhausted.
  absl::StatusOr<v1::ListResponse> List(const v1::ListRequest& request,
                                        absl::Time deadline = absl::InfiniteFuture()) const;

  absl::StatusOr<v1::CheckResponse> Check(const v1::CheckRequest& request) const;
  absl::StatusOr<v1::ExplainPodResponse> ExplainPod(const v1::ExplainPodRequest& request) const;
  absl::StatusOr<v1::RenderResponse> Render(const v1::RenderRequest& request,
                                            Caller caller = Caller::kTrusted) const;
  // Reads the kernel's rule counters (one rule dump, through the caller's kernel-read gate).
  absl::StatusOr<v1::CountersResponse> Counters(const v1::CountersRequest& request,
                                                Caller caller = Caller::kTrusted) const;

  v1::StatusResponse Status() const;
  // This node's record for the shared datastore (publish_time and ttl left to the publisher).
  // Cheaper than Status: nothing is counted.
  v1::NodeStatus OwnNodeStatus() const;
  // Every node's record and the newest generation known; FailedPrecondition without a registry.
  absl::StatusOr<v1::ListNodeStatusResponse> ListNodeStatus() const;
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
  NodeStatusRegistry* node_statuses_ = nullptr;
  absl::Mutex batch_mu_;
  std::vector<QueuedWrite*> queue_ ABSL_GUARDED_BY(batch_mu_);
  bool leader_active_ ABSL_GUARDED_BY(batch_mu_) = false;
  AdmissionGate writes_{"writes (Apply, Delete)", "--max-pending-writes",
                        kDefaultMaxPendingWrites};
  AdmissionGate dry_runs_{"dry runs (Apply, Delete with dryRun)", "--max-pending-writes",
                          kDefaultMaxPendingWrites};
  mutable TurnGate large_reads_{kMaxLargeReads};
  mutable MemoryTrimmer trimmer_;
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
