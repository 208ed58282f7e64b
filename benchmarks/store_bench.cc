// The agent store's cost per change at a tier: the journal (one checksummed record + fdatasync
// per change, a snapshot when the journal outgrows half of the last one) against rewriting the
// whole state file (encode every object, write, fsync, rename, fsync the directory), which is
// what every change cost before the journal. Both run on the same states, interleaved event by
// event, in one process, so their ratio holds on a shared machine.
//
//   bazel run -c opt //benchmarks:store_bench -- --tier=T2 --events=400
// Prints one JSON object. Wall time includes the disk's fsync; CPU time is the thread's.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/durable_file.h"
#include "agent/store.h"
#include "benchmarks/bench_util.h"
#include "benchmarks/workload/workload.h"

ABSL_FLAG(std::string, tier, "T2", "workload tier");
ABSL_FLAG(int, events, 400, "pod events (add/delete pairs of a copy of an existing pod)");
ABSL_FLAG(std::string, dir, "", "scratch directory on the disk to measure (default: /tmp)");

namespace netpol::bench {
namespace {

int Run() {
  const std::string tier = absl::GetFlag(FLAGS_tier);
  absl::StatusOr<WorkloadSpec> spec = ParseTier(tier);
  if (!spec.ok()) {
    std::fprintf(stderr, "--tier: %s\n", spec.status().ToString().c_str());
    return 2;
  }
  absl::StatusOr<State> generated = Generate(*spec);
  if (!generated.ok()) {
    std::fprintf(stderr, "%s\n", generated.status().ToString().c_str());
    return 1;
  }
  std::string base = absl::GetFlag(FLAGS_dir);
  if (base.empty()) base = "/tmp";
  std::string tmpl = base + "/netpol-store-bench-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string journal_dir = tmpl + "/journal", rewrite_dir = tmpl + "/rewrite";
  auto store = agent::Store::Open(journal_dir);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return 1;
  }
  State state = *std::move(generated);
  const size_t snapshot_bytes = agent::Store::Encode(state, 1).size();
  auto loaded = (*store)->Update([&](const State&) -> absl::StatusOr<std::optional<agent::Store::Change>> {
    agent::ChangedKeys all;
    for (const auto& [k, v] : state.namespaces) all.namespaces.insert(k);
    for (const auto& [k, v] : state.pods) all.pods.insert(k);
    for (const auto& [k, v] : state.policies) all.policies.insert(k);
    for (const auto& [k, v] : state.cluster_policies) all.cluster_policies.insert(k);
    for (const auto& [k, v] : state.nodes) all.nodes.insert(k);
    return agent::Store::Change(state, state.pods.size(), std::move(all));
  });
  if (!loaded.ok() || ::mkdir(rewrite_dir.c_str(), 0700) != 0) {
    std::fprintf(stderr, "load: %s\n", loaded.status().ToString().c_str());
    return 1;
  }
  const Pod model = state.pods.begin()->second;
  std::vector<double> jw, jc, rw, rc;
  for (int i = 0; i < absl::GetFlag(FLAGS_events); ++i) {
    // The next state, made outside the timed part (the agent's mutation makes it).
    Pod pod = model;
    pod.name = absl::StrCat("bench-", i / 2);
    const std::string key = pod.Key();
    if (i % 2 == 0) {
      state.pods[key] = pod;
    } else {
      state.pods.erase(key);
    }
    State next = state;
    agent::ChangedKeys touched;
    touched.pods.insert(key);

    // Holding the previous snapshot keeps freeing its State (the caller's copy) out of the
    // timed part, as the agent's other readers of that snapshot do.
    agent::Snapshot previous = (*store)->Current();
    auto t0 = std::chrono::steady_clock::now();
    double c0 = ThreadCpuSeconds();
    auto snap = (*store)->Update(
        [&](const State&) -> absl::StatusOr<std::optional<agent::Store::Change>> {
          return agent::Store::Change(std::move(next), 1, touched);
        });
    jc.push_back(ThreadCpuSeconds() - c0);
    jw.push_back(SecondsSince(t0));
    if (!snap.ok()) {
      std::fprintf(stderr, "update: %s\n", snap.status().ToString().c_str());
      return 1;
    }

    previous = agent::Snapshot();
    t0 = std::chrono::steady_clock::now();
    c0 = ThreadCpuSeconds();
    absl::Status s = agent::WriteDurably(rewrite_dir, rewrite_dir + "/state.pb",
                                         agent::Store::Encode(state, snap->generation));
    rc.push_back(ThreadCpuSeconds() - c0);
    rw.push_back(SecondsSince(t0));
    if (!s.ok()) {
      std::fprintf(stderr, "rewrite: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  auto ms = [](const std::vector<double>& v, double q) { return 1e3 * Percentile(v, q); };
  auto mean_ms = [](const std::vector<double>& v) {
    double t = 0;
    for (double x : v) t += x;
    return v.empty() ? 0 : 1e3 * t / v.size();
  };
  std::printf(
      "{\"tier\": \"%s\", \"events\": %zu, \"pods\": %zu, \"snapshot_bytes\": %zu, "
      "\"compactions\": %llu,\n"
      " \"journal\": {\"wall_p50_ms\": %.3f, \"wall_p99_ms\": %.3f, \"cpu_mean_ms\": %.3f, "
      "\"cpu_p99_ms\": %.3f},\n"
      " \"rewrite\": {\"wall_p50_ms\": %.3f, \"wall_p99_ms\": %.3f, \"cpu_mean_ms\": %.3f, "
      "\"cpu_p99_ms\": %.3f},\n"
      " \"rewrite_over_journal\": {\"wall_p50\": %.1f, \"cpu_mean\": %.1f}}\n",
      tier.c_str(), jw.size(), state.pods.size(), snapshot_bytes,
      static_cast<unsigned long long>((*store)->compactions()), ms(jw, 0.5), ms(jw, 0.99),
      mean_ms(jc), ms(jc, 0.99), ms(rw, 0.5), ms(rw, 0.99), mean_ms(rc), ms(rc, 0.99),
      ms(rw, 0.5) / ms(jw, 0.5), mean_ms(rc) / mean_ms(jc));
  store->reset();
  std::system(("rm -rf " + tmpl).c_str());
  return 0;
}

}  // namespace
}  // namespace netpol::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return netpol::bench::Run();
}
