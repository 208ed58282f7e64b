// In-process benchmarks of the engine on the workload tiers (benchmarks/workload): full
// compile (time, ns per emitted element, peak extra memory), Diff, and incremental events
// (event -> transaction: the model change, a full Compile and the Diff against the previous
// program), p50/p99 per event kind,
// and the same events through compiler::IncrementalCompiler (BM_IncrementalCompiler: Update
// only, the cost the agent pays per event with a change log).
//
//   bazel run -c opt //benchmarks:compile_bench -- --tiers=T1,T2,T3,T4
//       --benchmark_counters_tabular=true --benchmark_out=compile.json   (one command line)
//
// Flags (besides Google Benchmark's --benchmark_*):
//   --tiers=T1,T2,T3,T4     tiers (and variants, e.g. T2-dense) to run
//   --events=1000           events per incremental family (add+delete pairs count as two)
//   --event_budget_s=60     cap on one family's run: fewer events when one compile is slow
//   --peak_memory=true      measure a compile's peak extra RSS in a forked child
//   --cluster_policies=K    also run each tier with K Admin and K Baseline
//                           ClusterNetworkPolicies added (tier "<tier>+cnp<K>": its compile and
//                           BM_IncrementalCompiler, the same events with the tiers in the State)
// Tiers are generated and compiled once before the benchmarks run; T4's compile therefore
// runs a handful of times in all, not in a long loop.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "benchmark/benchmark.h"
#include "benchmarks/bench_util.h"
#include "engine/compiler/compiler.h"
#include "engine/compiler/incremental.h"
#include "engine/model/loader.h"
#include "engine/nft/diff.h"

ABSL_FLAG(std::string, tiers, "T1,T2,T3,T4", "comma-separated tiers");
ABSL_FLAG(int, events, 1000, "events per incremental family");
ABSL_FLAG(double, event_budget_s, 60, "time cap per incremental family and tier");
ABSL_FLAG(bool, peak_memory, true, "measure a compile's peak extra RSS in a forked child");
ABSL_FLAG(int, cluster_policies, 0,
          "also run each tier with this many Admin and this many Baseline ClusterNetworkPolicies");

namespace netpol::bench {
namespace {

void CompileOnce(const void* arg) {
  const TierData* t = static_cast<const TierData*>(arg);
  absl::StatusOr<nft::Program> p = compiler::Compile(t->state, MeasuredNodeOptions());
  benchmark::DoNotOptimize(p);
}

void BM_Compile(benchmark::State& st, const TierData* tier) {
  const ProgramCounts counts = Count(tier->program);
  double cpu = 0;
  for (auto _ : st) {
    const double c0 = ThreadCpuSeconds();
    absl::StatusOr<nft::Program> p = compiler::Compile(tier->state, MeasuredNodeOptions());
    cpu += ThreadCpuSeconds() - c0;
    if (!p.ok()) {
      st.SkipWithError(std::string(p.status().message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(p);
  }
  st.counters["chains"] = counts.chains;
  st.counters["rules"] = counts.rules;
  st.counters["sets"] = counts.sets;
  st.counters["elements"] = counts.elements;
  st.counters["emitted"] = counts.Emitted();
  // CPU time per emitted element (rules + set elements): the machine is shared, so wall time
  // includes other processes' work.
  st.counters["cpu_ns_per_element"] =
      cpu * 1e9 / (static_cast<double>(st.iterations()) * std::max<size_t>(1, counts.Emitted()));
  st.counters["cpu_ms"] = cpu * 1e3 / static_cast<double>(st.iterations());
  st.counters["pods"] = tier->state.pods.size();
  st.counters["policies"] = tier->state.policies.size();
  if (absl::GetFlag(FLAGS_peak_memory)) {
    absl::StatusOr<size_t> extra = PeakExtraBytes(&CompileOnce, tier);
    if (extra.ok()) st.counters["peak_extra_MB"] = *extra / 1048576.0;
  }
  st.counters["process_peak_MB"] = PeakRssBytes() / 1048576.0;
}

// Diff between the tier's program and the one after one local pod joined.
void BM_DiffEvent(benchmark::State& st, const TierData* tier) {
  State s = tier->state;
  Pod pod = EventPod(s, 0, kMeasuredNode, tier->spec.dual_stack);
  s.pods[pod.Key()] = pod;
  absl::StatusOr<nft::Program> after = compiler::Compile(s, MeasuredNodeOptions());
  if (!after.ok()) {
    st.SkipWithError(std::string(after.status().message()).c_str());
    return;
  }
  size_t commands = 0, elements = 0;
  for (auto _ : st) {
    nft::Transaction tx = nft::Diff(tier->program, *after);
    commands = tx.size();
    elements = tx.ElementCount();
    benchmark::DoNotOptimize(tx);
  }
  st.counters["commands"] = commands;
  st.counters["tx_elements"] = elements;
}

// Diff from an empty table to the whole program (what a cold start sends) and FullReplace.
void BM_DiffFull(benchmark::State& st, const TierData* tier) {
  nft::Program empty;
  empty.table = tier->program.table;
  size_t commands = 0, elements = 0;
  for (auto _ : st) {
    nft::Transaction tx = nft::Diff(empty, tier->program);
    commands = tx.size();
    elements = tx.ElementCount();
    benchmark::DoNotOptimize(tx);
  }
  st.counters["commands"] = commands;
  st.counters["tx_elements"] = elements;
}

int EventsFor(const TierData* tier) {
  int events = absl::GetFlag(FLAGS_events);
  const double per_event = std::max(tier->compile_seconds, 1e-6);
  const int budget = static_cast<int>(absl::GetFlag(FLAGS_event_budget_s) / per_event);
  events = std::max(2, std::min(events, budget));
  return events - events % 2;  // whole pairs
}

void BM_Incremental(benchmark::State& st, const TierData* tier, EventFamily family) {
  const int events = EventsFor(tier);
  std::map<EventKind, std::vector<double>> by_kind, cpu_by_kind;
  std::vector<double> commands;
  for (auto _ : st) {
    absl::StatusOr<std::vector<EventTiming>> timings = RunEvents(*tier, family, events, nullptr);
    if (!timings.ok()) {
      st.SkipWithError(std::string(timings.status().message()).c_str());
      return;
    }
    double total = 0;
    for (const EventTiming& t : *timings) {
      by_kind[t.kind].push_back(t.compile_diff_us);
      cpu_by_kind[t.kind].push_back(t.compile_diff_cpu_us);
      commands.push_back(static_cast<double>(t.commands));
      total += t.compile_diff_us;
    }
    st.SetIterationTime(total / 1e6 / timings->size());  // per event
  }
  for (const auto& [kind, us] : by_kind) {
    const std::string k = EventKindName(kind);
    st.counters[k + "_p50_us"] = Percentile(us, 0.50);
    st.counters[k + "_p99_us"] = Percentile(us, 0.99);
    st.counters[k + "_max_us"] = Percentile(us, 1.0);
    st.counters[k + "_n"] = us.size();
    st.counters[k + "_cpu_p50_us"] = Percentile(cpu_by_kind[kind], 0.50);
    st.counters[k + "_cpu_p99_us"] = Percentile(cpu_by_kind[kind], 0.99);
  }
  st.counters["tx_commands_p50"] = Percentile(commands, 0.5);
}

// The same event streams through IncrementalCompiler::Update: the model change is applied to the
// new State, Update gets the previous State and a Delta naming the changed key. Timed: Update
// alone (the transaction is built and the held program updated). After the run the held program
// is compared with a full Compile of the final State (not timed): the run fails when they differ.
void BM_IncrementalCompiler(benchmark::State& st, const TierData* tier, EventFamily family) {
  const int events = absl::GetFlag(FLAGS_events);
  const compiler::CompileOptions opts = MeasuredNodeOptions();
  std::map<EventKind, std::vector<double>> cpu_by_kind, wall_by_kind;
  std::vector<double> cpu_all, commands, elements;
  // Events whose transaction is element commands only vs those that create, flush or delete
  // chains and sets (a group appears, disappears or changes).
  std::vector<double> cpu_elements_only, cpu_structural, structural_elements;
  for (auto _ : st) {
    State state = tier->state;
    State old = tier->state;  // lags one event behind `state`
    compiler::IncrementalCompiler ic;
    absl::StatusOr<nft::Transaction> reset = ic.Reset(state, opts);
    if (!reset.ok()) {
      st.SkipWithError(std::string(reset.status().message()).c_str());
      return;
    }
    EventStream stream(&state, tier->spec, family);
    double total = 0;
    for (int i = 0; i < events; ++i) {
      const EventKind kind = stream.Next();
      const std::string& key = stream.last_key();
      compiler::Delta delta;
      const bool policy = kind == EventKind::kPolicyAdd || kind == EventKind::kPolicyDelete;
      (policy ? delta.policies : delta.pods).insert(key);
      auto t0 = std::chrono::steady_clock::now();
      const double c0 = ThreadCpuSeconds();
      absl::StatusOr<nft::Transaction> tx = ic.Update(old, state, delta, opts);
      const double cpu_us = (ThreadCpuSeconds() - c0) * 1e6;
      const double wall_us = SecondsSince(t0) * 1e6;
      if (!tx.ok()) {
        st.SkipWithError(std::string(tx.status().message()).c_str());
        return;
      }
      cpu_by_kind[kind].push_back(cpu_us);
      wall_by_kind[kind].push_back(wall_us);
      cpu_all.push_back(cpu_us);
      commands.push_back(static_cast<double>(tx->size()));
      elements.push_back(static_cast<double>(tx->ElementCount()));
      bool structural = false;
      for (const nft::Command& c : tx->commands()) {
        structural = structural || c.kind != nft::ObjectKind::kElement;
      }
      if (structural) {
        cpu_structural.push_back(cpu_us);
        structural_elements.push_back(static_cast<double>(tx->ElementCount()));
      } else {
        cpu_elements_only.push_back(cpu_us);
      }
      total += wall_us;
      // Bring `old` level with `state` (one object).
      if (policy) {
        auto it = state.policies.find(key);
        if (it == state.policies.end()) {
          old.policies.erase(key);
        } else {
          old.policies[key] = it->second;
        }
      } else {
        auto it = state.pods.find(key);
        if (it == state.pods.end()) {
          old.pods.erase(key);
        } else {
          old.pods[key] = it->second;
        }
      }
    }
    st.SetIterationTime(total / 1e6 / events);
    absl::StatusOr<nft::Program> full = compiler::Compile(state, opts);
    if (!full.ok() || !(*full == ic.program())) {
      st.SkipWithError("the incremental program differs from a full compile");
      return;
    }
  }
  for (const auto& [kind, us] : cpu_by_kind) {
    const std::string k = EventKindName(kind);
    st.counters[k + "_cpu_p50_us"] = Percentile(us, 0.50);
    st.counters[k + "_cpu_p99_us"] = Percentile(us, 0.99);
    st.counters[k + "_p99_us"] = Percentile(wall_by_kind[kind], 0.99);
    st.counters[k + "_n"] = us.size();
  }
  st.counters["cpu_p50_us"] = Percentile(cpu_all, 0.50);
  st.counters["cpu_p99_us"] = Percentile(cpu_all, 0.99);
  st.counters["tx_commands_p50"] = Percentile(commands, 0.5);
  st.counters["tx_elements_p50"] = Percentile(elements, 0.5);
  st.counters["elements_only_n"] = cpu_elements_only.size();
  st.counters["elements_only_cpu_p50_us"] = Percentile(cpu_elements_only, 0.50);
  st.counters["elements_only_cpu_p99_us"] = Percentile(cpu_elements_only, 0.99);
  st.counters["structural_n"] = cpu_structural.size();
  st.counters["structural_cpu_p50_us"] = Percentile(cpu_structural, 0.50);
  st.counters["structural_cpu_p99_us"] = Percentile(cpu_structural, 0.99);
  st.counters["structural_tx_elements_p50"] = Percentile(structural_elements, 0.50);
  st.counters["structural_tx_elements_max"] = Percentile(structural_elements, 1.0);
}

// `tier` with `k` Admin and `k` Baseline ClusterNetworkPolicies, each selecting every pod: an
// ingress rule (Admin: Deny or Pass in turn; Baseline: Deny) from the pods of one namespace of
// the tier on a port of its own, and an egress Deny to a /24 of its own (the shapes of
// benchmarks/datapath/run.py's *_cnp modes). Compiled once for the measured node.
absl::StatusOr<TierData> WithClusterPolicies(const TierData& tier, int k) {
  std::vector<std::string> namespaces;
  for (const auto& [name, ns] : tier.state.namespaces) namespaces.push_back(name);
  if (namespaces.empty()) return absl::InvalidArgumentError("a tier without namespaces");
  std::string yaml;
  for (int t = 0; t < 2; ++t) {
    for (int i = 0; i < k; ++i) {
      absl::StrAppendFormat(
          &yaml,
          "---\napiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"
          "metadata: {name: %s-%d}\nspec:\n  tier: %s\n  priority: %d\n"
          "  subject: {namespaces: {}}\n"
          "  ingress:\n  - action: %s\n    from: [{namespaces: {matchLabels: "
          "{kubernetes.io/metadata.name: %s}}}]\n"
          "    protocols: [{tcp: {destinationPort: {number: %d}}}]\n"
          "  egress:\n  - action: Deny\n    to: [{networks: [%d.%d.%d.0/24]}]\n",
          t == 0 ? "admin" : "baseline", i, t == 0 ? "Admin" : "Baseline", i % 1001,
          t == 0 && i % 2 == 1 ? "Pass" : "Deny", namespaces[i % namespaces.size()],
          (t == 0 ? 9000 : 7000) + i % 1000, t == 0 ? 172 : 100,
          (t == 0 ? 16 : 64) + i / 256, i % 256);
    }
  }
  absl::StatusOr<LoadResult> loaded = LoadYaml(yaml, LoadOptions());
  if (!loaded.ok()) return loaded.status();
  TierData out = tier;
  for (const Object& o : loaded->objects) Upsert(o, &out.state);
  auto t0 = std::chrono::steady_clock::now();
  const double c0 = ThreadCpuSeconds();
  absl::StatusOr<nft::Program> program = compiler::Compile(out.state, MeasuredNodeOptions());
  if (!program.ok()) return program.status();
  out.compile_cpu_seconds = ThreadCpuSeconds() - c0;
  out.compile_seconds = SecondsSince(t0);
  out.program = *std::move(program);
  return out;
}

}  // namespace
}  // namespace netpol::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  absl::ParseCommandLine(argc, argv);
  using namespace netpol::bench;  // NOLINT: main only
  const std::vector<std::string> tiers =
      absl::StrSplit(absl::GetFlag(FLAGS_tiers), ',', absl::SkipEmpty());
  const int cnps = absl::GetFlag(FLAGS_cluster_policies);
  std::deque<TierData> with_cnps;  // stable addresses for the registered benchmarks
  for (const std::string& name : tiers) {
    if (cnps > 0) {
      absl::StatusOr<const TierData*> tier = Tier(name);
      if (!tier.ok()) break;  // reported below
      absl::StatusOr<TierData> c = WithClusterPolicies(**tier, cnps);
      if (!c.ok()) {
        fprintf(stderr, "compile_bench: %s with ClusterNetworkPolicies: %s\n", name.c_str(),
                std::string(c.status().message()).c_str());
        return 1;
      }
      with_cnps.push_back(*std::move(c));
      const TierData* t = &with_cnps.back();
      const std::string cname = absl::StrCat(name, "+cnp", cnps);
      const ProgramCounts counts = Count(t->program);
      fprintf(stderr,
              "compile_bench: %s compiled in %.3fs wall, %.3fs cpu (%zu chains, %zu rules, %zu "
              "elements)\n",
              cname.c_str(), t->compile_seconds, t->compile_cpu_seconds, counts.chains,
              counts.rules, counts.elements);
      const std::pair<const char*, EventFamily> cnp_families[] = {
          {"pod_churn", EventFamily::kPodChurn},
          {"relabel", EventFamily::kRelabel},
          {"policy_churn", EventFamily::kPolicyChurn}};
      for (const auto& [fname, family] : cnp_families) {
        benchmark::RegisterBenchmark(
            absl::StrCat("BM_IncrementalCompiler/", cname, "/", fname).c_str(),
            [t, family = family](benchmark::State& st) { BM_IncrementalCompiler(st, t, family); })
            ->Iterations(1)
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
      }
    }
  }
  for (const std::string& name : tiers) {
    auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<const TierData*> tier = Tier(name);
    if (!tier.ok()) {
      fprintf(stderr, "compile_bench: %s\n", std::string(tier.status().message()).c_str());
      return 1;
    }
    fprintf(stderr,
            "compile_bench: %s generated and compiled in %.2fs (compile %.3fs wall, %.3fs cpu)\n",
            name.c_str(), SecondsSince(t0), (*tier)->compile_seconds,
            (*tier)->compile_cpu_seconds);
    const TierData* t = *tier;
    const bool slow = t->compile_seconds > 0.5;
    auto* c = benchmark::RegisterBenchmark(("BM_Compile/" + name).c_str(), BM_Compile, t)
                  ->Unit(benchmark::kMillisecond);
    if (slow) c->Iterations(1);
    benchmark::RegisterBenchmark(("BM_DiffEvent/" + name).c_str(), BM_DiffEvent, t)
        ->Unit(benchmark::kMicrosecond);
    auto* f = benchmark::RegisterBenchmark(("BM_DiffFull/" + name).c_str(), BM_DiffFull, t)
                  ->Unit(benchmark::kMillisecond);
    if (slow) f->Iterations(1);
    const std::pair<const char*, EventFamily> families[] = {
        {"pod_churn", EventFamily::kPodChurn},
        {"relabel", EventFamily::kRelabel},
        {"policy_churn", EventFamily::kPolicyChurn}};
    for (const auto& [fname, family] : families) {
      benchmark::RegisterBenchmark(
          absl::StrCat("BM_Incremental/", name, "/", fname).c_str(),
          [t, family = family](benchmark::State& st) { BM_Incremental(st, t, family); })
          ->Iterations(1)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(
          absl::StrCat("BM_IncrementalCompiler/", name, "/", fname).c_str(),
          [t, family = family](benchmark::State& st) { BM_IncrementalCompiler(st, t, family); })
          ->Iterations(1)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
