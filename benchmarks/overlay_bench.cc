// The cost of re-asserting the node's CNI attachments on a State (agent::OverlayAttachments),
// which the agent's API write path runs on every write: one attachment per local pod of the
// measured node (110 at every tier, 500 with -dense), carrying the pod's own addresses.
//
//   bazel run -c opt //benchmarks:overlay_bench -- --tiers=T2,T2-dual
//
// Benchmarks per tier:
//   BM_Overlay/<tier>/steady   the attachments agree with the State: nothing changes (the
//                              common case: a write that touched no attached address)
//   BM_Overlay/<tier>/stolen   each iteration first gives one remote pod an attached address
//                              (a stale API address; a vector append, inside the timing), which
//                              the overlay takes back: one pod changed per iteration
//   BM_Attach/<tier>/readd     agent::Attach of a new sandbox of one attached pod, then Detach
//                              of it: the transitions CNI ADD/DEL run under the store's lock
//                              (a State copy and one pass over the pods each: linear in pods)
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/attachments.h"
#include "benchmark/benchmark.h"
#include "benchmarks/workload/workload.h"

ABSL_FLAG(std::string, tiers, "T2", "comma-separated tiers");

namespace netpol::bench {
namespace {

struct Setup {
  State state;
  agent::Attachments attachments;
  std::vector<std::string> remote;  // keys of pods on other nodes
};

// One attachment per local pod, with the pod's addresses.
Setup MakeSetup(State state) {
  Setup s;
  s.state = std::move(state);
  int i = 0;
  for (const auto& [key, pod] : s.state.pods) {
    if (pod.node_name != kMeasuredNode) {
      s.remote.push_back(key);
      continue;
    }
    agent::Attachment a;
    a.container_id = absl::StrCat("c", i++);
    a.netns = "/var/run/netns/" + a.container_id;
    a.interface = "eth0";
    a.pod_namespace = pod.namespace_name;
    a.pod_name = pod.name;
    a.ips = pod.ips;
    std::sort(a.ips.begin(), a.ips.end());
    s.attachments.emplace(a.Key(), std::move(a));
  }
  // Make the State agree with the attachments, so that "steady" changes nothing.
  agent::OverlayAttachments(s.attachments, &s.state);
  return s;
}

void BM_Steady(benchmark::State& st, Setup* s) {
  uint64_t changed = 0;
  for (auto _ : st) changed += agent::OverlayAttachments(s->attachments, &s->state);
  if (changed != 0) st.SkipWithError("a steady overlay changed pods");
  st.counters["attachments"] = static_cast<double>(s->attachments.size());
  st.counters["pods"] = static_cast<double>(s->state.pods.size());
}

void BM_Stolen(benchmark::State& st, Setup* s) {
  std::vector<IpAddr> attached;
  for (const auto& [id, a] : s->attachments) {
    attached.insert(attached.end(), a.ips.begin(), a.ips.end());
  }
  if (attached.empty() || s->remote.empty()) {
    st.SkipWithError("no attachments or no remote pods");
    return;
  }
  uint64_t changed = 0, n = 0;
  for (auto _ : st) {
    Pod& victim = s->state.pods[s->remote[n % s->remote.size()]];
    victim.ips.push_back(attached[n % attached.size()]);
    ++n;
    changed += agent::OverlayAttachments(s->attachments, &s->state);
  }
  if (changed != n) st.SkipWithError("the overlay did not take every stolen address back");
  st.counters["attachments"] = static_cast<double>(s->attachments.size());
  st.counters["pods"] = static_cast<double>(s->state.pods.size());
}

void BM_Attach(benchmark::State& st, Setup* s) {
  if (s->attachments.empty()) {
    st.SkipWithError("no attachments");
    return;
  }
  agent::Attachment fresh = s->attachments.begin()->second;
  fresh.container_id = "c-new-sandbox";
  uint64_t changed = 0;
  for (auto _ : st) {
    agent::AttachmentChange a = agent::Attach(s->state, s->attachments, fresh);
    agent::AttachmentChange d =
        agent::Detach(a.state, a.attachments, agent::AttachmentSelector{"", fresh.container_id, ""});
    changed += a.changed && d.found ? 1 : 0;
    benchmark::DoNotOptimize(d.state);
  }
  if (changed != static_cast<uint64_t>(st.iterations())) st.SkipWithError("attach did nothing");
  st.counters["pods"] = static_cast<double>(s->state.pods.size());
}

// Registers the benchmarks of every tier in --tiers and runs them. 1 when a tier cannot be
// generated.
int RegisterAndRun() {
  const std::vector<std::string> tiers =
      absl::StrSplit(absl::GetFlag(FLAGS_tiers), ',', absl::SkipEmpty());
  std::vector<std::unique_ptr<Setup>> setups;  // live until the benchmarks have run
  for (const std::string& name : tiers) {
    absl::StatusOr<WorkloadSpec> spec = ParseTier(name);
    absl::StatusOr<State> state =
        spec.ok() ? Generate(*spec) : absl::StatusOr<State>(spec.status());
    if (!state.ok()) {
      std::fprintf(stderr, "overlay_bench: %s\n", state.status().ToString().c_str());
      return 1;
    }
    setups.push_back(std::make_unique<Setup>(MakeSetup(*std::move(state))));
    Setup* s = setups.back().get();
    benchmark::RegisterBenchmark(("BM_Overlay/" + name + "/steady").c_str(), BM_Steady, s)
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("BM_Overlay/" + name + "/stolen").c_str(), BM_Stolen, s)
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("BM_Attach/" + name + "/readd").c_str(), BM_Attach, s)
        ->Unit(benchmark::kMicrosecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace
}  // namespace netpol::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  absl::ParseCommandLine(argc, argv);
  return netpol::bench::RegisterAndRun();
}
