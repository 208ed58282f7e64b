// Kernel commit benchmarks, in a fresh network namespace of their own (needs root):
//   BM_Commit/<tier>       netpol's full sync of the tier's program (FullReplace through
//                          NetlinkBackend) into an empty netns table: one batch, so the longest
//                          single commit is the whole commit.
//                          The same row reports the agent's cold start: ChunkedCreate's
//                          transactions of at most --chunk_elements elements each, committed in
//                          order (chunked_total_ms, chunked_longest_ms, chunks).
//   BM_Floor/<tier>        the libnftnl floor (benchmarks/floor): the same sets, maps and
//                          elements in one batch, nothing else.
//   BM_EventCommit/<tier>/<family>  incremental events: event -> transaction (Compile + Diff)
//                          -> kernel ACK, p50/p99 per event kind.
// At the end it prints netpol/floor per tier.
//
//   sudo bazel-bin/benchmarks/commit_bench --tiers=T1,T2,T3,T4 --benchmark_counters_tabular=true
//
// Flags: --tiers, --events (per family), --event_budget_s (as compile_bench), --commit_runs
// (timed commits per tier for each of netpol and the floor, interleaved).
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "benchmark/benchmark.h"
#include "benchmarks/bench_util.h"
#include "benchmarks/floor/floor.h"
#include "engine/netlink/netlink_backend.h"
#include "engine/nft/diff.h"

ABSL_FLAG(std::string, tiers, "T1,T2,T3,T4", "comma-separated tiers");
ABSL_FLAG(int, events, 1000, "events per incremental family");
ABSL_FLAG(double, event_budget_s, 60, "time cap per incremental family and tier");
ABSL_FLAG(int, commit_runs, 5, "timed full commits per tier (netpol and floor alternate)");
ABSL_FLAG(int, chunk_elements, 20000,
          "elements per transaction of the chunked cold start (the agent's "
          "--cold-start-chunk-elements default)");

namespace netpol::bench {
namespace {

constexpr char kTable[] = "netpol";

struct CommitResult {
  std::vector<double> netpol_ms, floor_ms;
  std::vector<double> chunked_total_ms, chunked_longest_ms;  // per run
  size_t chunks = 0;
  size_t elements = 0, netpol_messages = 0, netpol_bytes = 0, floor_messages = 0,
         floor_bytes = 0;
  double tx_build_ms = 0, floor_build_ms = 0;
};
std::map<std::string, CommitResult>* results = new std::map<std::string, CommitResult>();

absl::Status DeleteTableIfAny(netlink::NetlinkBackend* backend) {
  nft::Transaction tx(kTable);
  tx.AddTable();  // so that the delete cannot fail
  tx.DeleteTable();
  return backend->Commit(tx);
}

// Alternates netpol and floor full commits into an empty table, `runs` times each. Only the
// commit itself is timed (transaction/batch building is reported separately).
absl::Status MeasureCommits(const std::string& name, const TierData& tier, int runs) {
  CommitResult& r = (*results)[name];
  absl::StatusOr<std::unique_ptr<netlink::NetlinkBackend>> backend =
      netlink::NetlinkBackend::Create();
  if (!backend.ok()) return backend.status();
  absl::StatusOr<std::unique_ptr<FloorSocket>> floor = FloorSocket::Open();
  if (!floor.ok()) return floor.status();
  for (int i = 0; i < runs; ++i) {
    // netpol
    absl::Status s = DeleteTableIfAny(backend->get());
    if (!s.ok()) return s;
    auto b0 = std::chrono::steady_clock::now();
    nft::Transaction tx = nft::FullReplace(tier.program);
    r.tx_build_ms = SecondsSince(b0) * 1e3;
    auto t0 = std::chrono::steady_clock::now();
    s = (*backend)->Commit(tx);
    r.netpol_ms.push_back(SecondsSince(t0) * 1e3);
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat(name, ": netpol commit: ", s.message()));
    r.elements = tx.ElementCount();
    r.netpol_messages = (*backend)->last_commit().messages;
    r.netpol_bytes = (*backend)->last_commit().bytes;
    // floor
    s = DeleteTableIfAny(backend->get());
    if (!s.ok()) return s;
    b0 = std::chrono::steady_clock::now();
    absl::StatusOr<FloorBatch> batch =
        EncodeFloor(tier.program, kTable, (*floor)->NextSeq(1u << 24));
    r.floor_build_ms = SecondsSince(b0) * 1e3;
    if (!batch.ok()) return batch.status();
    t0 = std::chrono::steady_clock::now();
    s = (*floor)->Send(*batch);
    r.floor_ms.push_back(SecondsSince(t0) * 1e3);
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat(name, ": floor commit: ", s.message()));
    r.floor_messages = batch->messages;
    r.floor_bytes = batch->bytes.size();
    // netpol's chunked cold start
    s = DeleteTableIfAny(backend->get());
    if (!s.ok()) return s;
    const std::vector<nft::Transaction> chunks = nft::ChunkedCreate(
        tier.program, static_cast<size_t>(std::max(0, absl::GetFlag(FLAGS_chunk_elements))));
    double total = 0, longest = 0;
    for (const nft::Transaction& chunk : chunks) {
      t0 = std::chrono::steady_clock::now();
      s = (*backend)->Commit(chunk);
      const double ms = SecondsSince(t0) * 1e3;
      if (!s.ok()) {
        return absl::Status(s.code(), absl::StrCat(name, ": chunked commit: ", s.message()));
      }
      total += ms;
      longest = std::max(longest, ms);
    }
    r.chunked_total_ms.push_back(total);
    r.chunked_longest_ms.push_back(longest);
    r.chunks = chunks.size();
  }
  return DeleteTableIfAny(backend->get());
}

void BM_Commit(benchmark::State& st, std::string name, const TierData* tier, bool floor) {
  for (auto _ : st) {
    auto it = results->find(name);
    if (it == results->end()) {
      absl::Status s = MeasureCommits(name, *tier, absl::GetFlag(FLAGS_commit_runs));
      if (!s.ok()) {
        st.SkipWithError(std::string(s.message()).c_str());
        return;
      }
      it = results->find(name);
    }
    const CommitResult& r = it->second;
    st.SetIterationTime(Percentile(floor ? r.floor_ms : r.netpol_ms, 0.5) / 1e3);
  }
  const CommitResult& r = (*results)[name];
  const std::vector<double>& ms = floor ? r.floor_ms : r.netpol_ms;
  st.counters["p50_ms"] = Percentile(ms, 0.5);
  st.counters["min_ms"] = Percentile(ms, 0);
  st.counters["longest_commit_ms"] = Percentile(ms, 1.0);
  st.counters["runs"] = ms.size();
  st.counters["elements"] = r.elements;
  st.counters["messages"] = floor ? r.floor_messages : r.netpol_messages;
  st.counters["batch_MB"] = (floor ? r.floor_bytes : r.netpol_bytes) / 1048576.0;
  st.counters["build_ms"] = floor ? r.floor_build_ms : r.tx_build_ms;
  if (!floor) {
    st.counters["chunked_total_ms"] = Percentile(r.chunked_total_ms, 0.5);
    st.counters["chunked_longest_ms"] = Percentile(r.chunked_longest_ms, 1.0);
    st.counters["chunks"] = r.chunks;
    st.counters["netpol_over_floor"] =
        Percentile(r.netpol_ms, 0.5) / std::max(1e-9, Percentile(r.floor_ms, 0.5));
  }
}

int EventsFor(const TierData* tier) {
  int events = absl::GetFlag(FLAGS_events);
  const double per_event = std::max(tier->compile_seconds, 1e-6);
  const int budget = static_cast<int>(absl::GetFlag(FLAGS_event_budget_s) / per_event);
  events = std::max(2, std::min(events, budget));
  return events - events % 2;
}

void BM_EventCommit(benchmark::State& st, const TierData* tier, EventFamily family) {
  std::map<EventKind, std::vector<double>> total, commit;
  for (auto _ : st) {
    absl::StatusOr<std::unique_ptr<netlink::NetlinkBackend>> backend =
        netlink::NetlinkBackend::Create();
    if (!backend.ok()) {
      st.SkipWithError(std::string(backend.status().message()).c_str());
      return;
    }
    absl::Status s = DeleteTableIfAny(backend->get());
    if (s.ok()) s = (*backend)->Commit(nft::FullReplace(tier->program));
    if (!s.ok()) {
      st.SkipWithError(std::string(s.message()).c_str());
      return;
    }
    absl::StatusOr<std::vector<EventTiming>> timings =
        RunEvents(*tier, family, EventsFor(tier), backend->get());
    if (!timings.ok()) {
      st.SkipWithError(std::string(timings.status().message()).c_str());
      return;
    }
    double sum = 0;
    for (const EventTiming& t : *timings) {
      total[t.kind].push_back(t.compile_diff_us + t.commit_us);
      commit[t.kind].push_back(t.commit_us);
      sum += t.compile_diff_us + t.commit_us;
    }
    st.SetIterationTime(sum / 1e6 / timings->size());
    s = DeleteTableIfAny(backend->get());
    if (!s.ok()) st.SkipWithError(std::string(s.message()).c_str());
  }
  for (const auto& [kind, us] : total) {
    const std::string k = EventKindName(kind);
    st.counters[k + "_p50_us"] = Percentile(us, 0.5);
    st.counters[k + "_p99_us"] = Percentile(us, 0.99);
    st.counters[k + "_commit_p50_us"] = Percentile(commit[kind], 0.5);
    st.counters[k + "_commit_p99_us"] = Percentile(commit[kind], 0.99);
    st.counters[k + "_n"] = us.size();
  }
}

}  // namespace
}  // namespace netpol::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  absl::ParseCommandLine(argc, argv);
  using namespace netpol::bench;  // NOLINT: main only
  if (geteuid() != 0) {
    fprintf(stderr, "commit_bench: needs root (it creates its own network namespace)\n");
    return 2;
  }
  // Never the host's tables: everything below happens in a namespace of our own.
  if (unshare(CLONE_NEWNET) != 0) {
    perror("commit_bench: unshare(CLONE_NEWNET)");
    return 1;
  }
  const std::vector<std::string> tiers =
      absl::StrSplit(absl::GetFlag(FLAGS_tiers), ',', absl::SkipEmpty());
  for (const std::string& name : tiers) {
    absl::StatusOr<const TierData*> tier = Tier(name);
    if (!tier.ok()) {
      fprintf(stderr, "commit_bench: %s\n", std::string(tier.status().message()).c_str());
      return 1;
    }
    const TierData* t = *tier;
    benchmark::RegisterBenchmark(("BM_Commit/" + name).c_str(), BM_Commit, name, t, false)
        ->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("BM_Floor/" + name).c_str(), BM_Commit, name, t, true)
        ->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
    const std::pair<const char*, EventFamily> families[] = {
        {"pod_churn", EventFamily::kPodChurn},
        {"relabel", EventFamily::kRelabel},
        {"policy_churn", EventFamily::kPolicyChurn}};
    for (const auto& [fname, family] : families) {
      benchmark::RegisterBenchmark(
          absl::StrCat("BM_EventCommit/", name, "/", fname).c_str(),
          [t, family = family](benchmark::State& st) { BM_EventCommit(st, t, family); })
          ->Iterations(1)->UseManualTime()->Unit(benchmark::kMicrosecond);
    }
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (!results->empty()) {
    printf("\n%-10s %12s %12s %12s %10s %14s %16s %8s\n", "tier", "elements", "netpol_ms",
           "floor_ms", "ratio", "chunked_ms", "longest_chunk_ms", "chunks");
    for (const auto& [name, r] : *results) {
      double n = Percentile(r.netpol_ms, 0.5), f = Percentile(r.floor_ms, 0.5);
      printf("%-10s %12zu %12.2f %12.2f %10.2f %14.2f %16.2f %8zu\n", name.c_str(), r.elements,
             n, f, n / std::max(f, 1e-9), Percentile(r.chunked_total_ms, 0.5),
             Percentile(r.chunked_longest_ms, 1.0), r.chunks);
    }
  }
  return 0;
}
