// Helpers the benchmark programs share: cached tier states, program counts, percentiles, peak
// memory, and the event streams of the incremental benchmarks.
#ifndef NETPOL_BENCHMARKS_BENCH_UTIL_H_
#define NETPOL_BENCHMARKS_BENCH_UTIL_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "benchmarks/workload/workload.h"
#include "engine/compiler/compiler.h"
#include "engine/model/model.h"
#include "engine/nft/backend.h"
#include "engine/nft/program.h"

namespace netpol::bench {

// A generated tier and its compiled program, built once per process and kept.
struct TierData {
  WorkloadSpec spec;
  State state;
  nft::Program program;  // Compile(state) for kMeasuredNode
  double compile_seconds = 0;      // wall time of that first compile
  double compile_cpu_seconds = 0;  // its CPU time
};

// Returns the data of `tier` ("T1", "T2-dense", ...), generating and compiling it on first use.
// Not thread-safe. Errors from ParseTier/Generate/Compile pass through.
absl::StatusOr<const TierData*> Tier(const std::string& tier);

// The compile options of the measured node.
compiler::CompileOptions MeasuredNodeOptions();

// What a program holds.
struct ProgramCounts {
  size_t chains = 0, rules = 0, sets = 0, elements = 0;
  // Emitted elements, the unit of "ns per emitted element": set/map elements plus rules.
  size_t Emitted() const { return elements + rules; }
};
ProgramCounts Count(const nft::Program& program);

// The q-quantile (0..1) of `values` by nearest rank; 0 when empty.
double Percentile(std::vector<double> values, double q);

// The process's peak resident set size so far (getrusage ru_maxrss), in bytes.
size_t PeakRssBytes();
// Runs `fn` in a forked child and returns how far the child's peak RSS (VmHWM, reset first)
// rose above its RSS before `fn`, in bytes: the peak extra memory `fn` needed. The child trims
// the heap first so that freed memory is not silently reused. Errors when fork/pipe fail or the
// child does not report.
absl::StatusOr<size_t> PeakExtraBytes(void (*fn)(const void*), const void* arg);

inline double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
// CPU time of the calling thread, in seconds (CLOCK_THREAD_CPUTIME_ID). On a shared machine
// this is the fair measure of work; wall time adds whatever the other processes took.
double ThreadCpuSeconds();

// The incremental event kinds. Events come in pairs that undo each other (add then delete the
// same pod; relabel there and back; add then delete a policy) so the state stays at its tier's
// size however many events run.
enum class EventKind { kPodAdd, kPodDelete, kPodRelabel, kPolicyAdd, kPolicyDelete };
const char* EventKindName(EventKind kind);

enum class EventFamily { kPodChurn, kRelabel, kPolicyChurn };

// Applies the events of one family to a state, alternating local pods (on kMeasuredNode) and
// pods of other nodes. The state is owned by the caller and must outlive the stream.
class EventStream {
 public:
  EventStream(State* state, const WorkloadSpec& spec, EventFamily family);
  // Mutates the state by the next event and returns its kind.
  EventKind Next();
  // The key of the object the last event created, changed or deleted.
  const std::string& last_key() const { return last_key_; }

 private:
  State* state_;
  const WorkloadSpec& spec_;
  EventFamily family_;
  uint64_t n_ = 0;
  std::vector<std::string> local_, remote_;  // pod keys for relabels
  std::string pending_;                      // the object the next event undoes
  std::string last_key_;
};

// One event's cost: the model change, Compile and Diff (event -> transaction), then optionally
// the kernel commit of that transaction (-> ACK).
struct EventTiming {
  EventKind kind;
  double compile_diff_us = 0;      // wall
  double compile_diff_cpu_us = 0;  // this thread's CPU
  double commit_us = 0;  // 0 without a backend
  size_t commands = 0, elements = 0;
};

// Runs `events` events of `family` on a copy of the tier's state, starting from `program` (the
// compiled state, which `backend` must hold already when not null). Returns one timing per
// event; the first error from Compile or Commit ends the run.
absl::StatusOr<std::vector<EventTiming>> RunEvents(const TierData& tier, EventFamily family,
                                                   int events, nft::Backend* backend);

}  // namespace netpol::bench

#endif  // NETPOL_BENCHMARKS_BENCH_UTIL_H_
