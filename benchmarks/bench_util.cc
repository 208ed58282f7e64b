#include "benchmarks/bench_util.h"

#include <malloc.h>
#include <sys/resource.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cmath>
#include <map>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/nft/diff.h"

namespace netpol::bench {

double ThreadCpuSeconds() {
  struct timespec ts {};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

compiler::CompileOptions MeasuredNodeOptions() {
  compiler::CompileOptions opts;
  opts.node_name = kMeasuredNode;
  return opts;
}

absl::StatusOr<const TierData*> Tier(const std::string& tier) {
  static auto* cache = new std::map<std::string, std::unique_ptr<TierData>>();
  auto it = cache->find(tier);
  if (it != cache->end()) return it->second.get();
  auto data = std::make_unique<TierData>();
  absl::StatusOr<WorkloadSpec> spec = ParseTier(tier);
  if (!spec.ok()) return spec.status();
  data->spec = *spec;
  absl::StatusOr<State> state = Generate(*spec);
  if (!state.ok()) return state.status();
  data->state = std::move(*state);
  auto t0 = std::chrono::steady_clock::now();
  const double c0 = ThreadCpuSeconds();
  absl::StatusOr<nft::Program> program = compiler::Compile(data->state, MeasuredNodeOptions());
  data->compile_seconds = SecondsSince(t0);
  data->compile_cpu_seconds = ThreadCpuSeconds() - c0;
  if (!program.ok()) {
    return absl::Status(program.status().code(),
                        absl::StrCat(tier, ": compile: ", program.status().message()));
  }
  data->program = std::move(*program);
  const TierData* out = data.get();
  (*cache)[tier] = std::move(data);
  return out;
}

ProgramCounts Count(const nft::Program& program) {
  ProgramCounts c;
  c.chains = program.chains.size();
  for (const auto& [name, chain] : program.chains) c.rules += chain.rules.size();
  c.sets = program.sets.size();
  for (const auto& [name, elements] : program.elements) c.elements += elements.size();
  return c;
}

double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  // Nearest rank: the smallest value with at least q of the values at or below it.
  size_t rank = static_cast<size_t>(std::ceil(q * values.size()));
  if (rank < 1) rank = 1;
  if (rank > values.size()) rank = values.size();
  return values[rank - 1];
}

size_t PeakRssBytes() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<size_t>(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

namespace {

// A "VmRSS:"/"VmHWM:" line of /proc/self/status, in bytes; 0 when missing.
size_t StatusBytes(const char* field) {
  FILE* f = fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  size_t kib = 0;
  const size_t n = strlen(field);
  while (fgets(line, sizeof line, f) != nullptr) {
    if (strncmp(line, field, n) == 0) {
      kib = strtoull(line + n, nullptr, 10);
      break;
    }
  }
  fclose(f);
  return kib * 1024;
}

}  // namespace

absl::StatusOr<size_t> PeakExtraBytes(void (*fn)(const void*), const void* arg) {
  int fds[2];
  if (pipe(fds) != 0) return absl::InternalError("pipe failed");
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return absl::InternalError("fork failed");
  }
  if (pid == 0) {
    close(fds[0]);
    // Give free heap back to the kernel (so that fn cannot reuse resident pages unseen), then
    // reset the peak-RSS mark (clear_refs 5, Linux >= 4.0) and measure VmHWM after fn.
    malloc_trim(0);
    FILE* clear = fopen("/proc/self/clear_refs", "w");
    if (clear != nullptr) {
      fputs("5", clear);
      fclose(clear);
    }
    const size_t before = StatusBytes("VmRSS:");
    fn(arg);
    const size_t peak = StatusBytes("VmHWM:");
    uint64_t extra = peak > before ? peak - before : 0;
    ssize_t ignored = write(fds[1], &extra, sizeof extra);
    (void)ignored;
    _exit(0);
  }
  close(fds[1]);
  uint64_t extra = 0;
  ssize_t got = read(fds[0], &extra, sizeof extra);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (got != sizeof extra || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError("the measuring child did not report");
  }
  return static_cast<size_t>(extra);
}

const char* EventKindName(EventKind kind) {
  switch (kind) {
    case EventKind::kPodAdd:
      return "pod_add";
    case EventKind::kPodDelete:
      return "pod_delete";
    case EventKind::kPodRelabel:
      return "pod_relabel";
    case EventKind::kPolicyAdd:
      return "policy_add";
    case EventKind::kPolicyDelete:
      return "policy_delete";
  }
  return "?";
}

EventStream::EventStream(State* state, const WorkloadSpec& spec, EventFamily family)
    : state_(state), spec_(spec), family_(family) {
  for (const auto& [key, pod] : state->pods) {
    if (pod.labels.count("app") == 0) continue;  // DNS pods keep their labels
    (pod.node_name == kMeasuredNode ? local_ : remote_).push_back(key);
  }
}

EventKind EventStream::Next() {
  const uint64_t n = n_++;
  const uint64_t pair = n / 2;
  const bool second = n % 2 == 1;
  // Even pairs touch a local pod, odd pairs a pod on another node.
  const bool local = pair % 2 == 0;
  switch (family_) {
    case EventFamily::kPodChurn: {
      if (!second) {
        Pod pod = EventPod(*state_, pair, local ? kMeasuredNode : "node-1", spec_.dual_stack);
        pending_ = pod.Key();
        last_key_ = pending_;
        state_->pods[pending_] = std::move(pod);
        return EventKind::kPodAdd;
      }
      last_key_ = pending_;
      state_->pods.erase(pending_);
      return EventKind::kPodDelete;
    }
    case EventFamily::kRelabel: {
      const std::vector<std::string>& keys = local && !local_.empty() ? local_ : remote_;
      const std::string& key = keys[(pair / 2) % keys.size()];
      last_key_ = key;
      // Even n: next app, odd n: back.
      state_->pods.insert_or_assign(key, RelabeledPod(state_->pods.at(key), n));
      return EventKind::kPodRelabel;
    }
    case EventFamily::kPolicyChurn: {
      if (!second) {
        NetworkPolicy p = EventPolicy(*state_, spec_, pair);
        pending_ = p.Key();
        last_key_ = pending_;
        state_->policies[pending_] = std::move(p);
        return EventKind::kPolicyAdd;
      }
      last_key_ = pending_;
      state_->policies.erase(pending_);
      return EventKind::kPolicyDelete;
    }
  }
  return EventKind::kPodAdd;
}

absl::StatusOr<std::vector<EventTiming>> RunEvents(const TierData& tier, EventFamily family,
                                                   int events, nft::Backend* backend) {
  State state = tier.state;
  nft::Program current = tier.program;
  EventStream stream(&state, tier.spec, family);
  const compiler::CompileOptions opts = MeasuredNodeOptions();
  std::vector<EventTiming> out;
  out.reserve(events);
  for (int i = 0; i < events; ++i) {
    EventTiming t;
    auto t0 = std::chrono::steady_clock::now();
    const double c0 = ThreadCpuSeconds();
    t.kind = stream.Next();
    absl::StatusOr<nft::Program> next = compiler::Compile(state, opts);
    if (!next.ok()) return next.status();
    nft::Transaction tx = nft::Diff(current, *next);
    t.compile_diff_us = SecondsSince(t0) * 1e6;
    t.compile_diff_cpu_us = (ThreadCpuSeconds() - c0) * 1e6;
    t.commands = tx.size();
    t.elements = tx.ElementCount();
    if (backend != nullptr && !tx.empty()) {
      auto t1 = std::chrono::steady_clock::now();
      absl::Status s = backend->Commit(tx);
      t.commit_us = SecondsSince(t1) * 1e6;
      if (!s.ok()) {
        return absl::Status(s.code(), absl::StrCat("event ", i, " (", EventKindName(t.kind),
                                                   "): commit: ", s.message()));
      }
    }
    current = std::move(*next);
    out.push_back(t);
  }
  return out;
}

}  // namespace netpol::bench
