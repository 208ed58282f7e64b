// The agent benchmark's gRPC client (driven by run.py).
//
//   agent_client --server=unix:///tmp/x/agent.sock --tier=T2 load
//     Applies the tier's objects (namespaces, then pods, then policies) in Apply calls of at most
//     --chunk_bytes of YAML each; prints one JSON line: YAML bytes, object counts, wall time.
//   agent_client --server=... --tier=T2 --rate=100 --seconds=60 churn
//     Pod events at a fixed rate, open loop: event i is due at t0 + i/rate. Events come in pairs
//     that undo each other (add a pod, then delete it), alternating a pod on the measured node
//     (node-0) and one on another node, so the state keeps its tier's size. Apply and Delete
//     return after the kernel commit, so "due -> reply" is event -> enforced, including any time
//     the event waited behind earlier ones; "sent -> reply" (service time) is printed beside it.
//     Prints one JSON line with percentiles. With --trace=FILE, also one JSON line per event in
//     FILE: the operation, the pod, its address, its node, the store generation the reply named
//     and the due, sent and reply times (steady clock, CLOCK_MONOTONIC, in ns), for a harness
//     that times the event elsewhere (benchmarks/control_plane: another node's kernel). With
//     --follow=ADDR (another agent on the same shared datastore), a thread follows that agent's
//     applied generation (WaitForGeneration of the next one, in a loop: the agent answers when
//     its kernel commit covering it is done) and each trace line gets "follow_ns", when that
//     agent first had the event's generation (or a later one) in its kernel, -1 if never.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "api/netpol/v1/object_service.grpc.pb.h"
#include "api/netpol/v1/status_service.grpc.pb.h"
#include "benchmarks/workload/workload.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

ABSL_FLAG(std::string, server, "", "The agent's address, e.g. unix:///tmp/bench/agent.sock");
ABSL_FLAG(std::string, tier, "T1", "Workload tier (T1..T4, variants)");
ABSL_FLAG(int64_t, chunk_bytes, 4 << 20, "load: YAML bytes per Apply call at most");
ABSL_FLAG(double, rate, 100, "churn: events per second");
ABSL_FLAG(double, seconds, 60, "churn: duration");
ABSL_FLAG(double, max_wall_s, 0,
          "churn: stop sending after this much wall time (0: 2 x --seconds); events not sent "
          "are reported as not_sent (the agent fell behind the rate)");
ABSL_FLAG(std::string, node, netpol::bench::kMeasuredNode, "churn: the agent's node");
ABSL_FLAG(double, timeout_s, 600, "Deadline of one RPC");
ABSL_FLAG(std::string, trace, "", "churn: write one JSON line per event to this file");
ABSL_FLAG(std::string, follow, "",
          "churn: another agent's address whose applied generation is followed (with --trace)");

namespace netpol::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Rpc {
  std::unique_ptr<v1::ObjectService::Stub> stub;

  std::unique_ptr<grpc::ClientContext> Context() const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(
                          static_cast<int64_t>(absl::GetFlag(FLAGS_timeout_s) * 1000)));
    ctx->set_wait_for_ready(true);
    return ctx;
  }

  // Applies one multi-document YAML manifest; "" or an error text. `generation`, when given,
  // receives the store generation the reply named.
  std::string ApplyYaml(const std::string& source, const std::string& yaml,
                        uint64_t* generation = nullptr) const {
    v1::ApplyRequest req;
    v1::Manifest* m = req.add_manifests();
    m->set_source(source);
    m->set_text(yaml);
    v1::ApplyResponse resp;
    auto ctx = Context();
    grpc::Status st = stub->Apply(ctx.get(), req, &resp);
    if (!st.ok()) return absl::StrCat("Apply ", source, ": ", st.error_message());
    if (generation != nullptr) *generation = resp.generation();
    return "";
  }

  std::string DeletePod(const Pod& pod, uint64_t* generation = nullptr) const {
    v1::DeleteRequest req;
    v1::ObjectRef* ref = req.add_refs();
    ref->set_kind(v1::POD);
    ref->set_namespace_(pod.namespace_name);
    ref->set_name(pod.name);
    v1::DeleteResponse resp;
    auto ctx = Context();
    grpc::Status st = stub->Delete(ctx.get(), req, &resp);
    if (!st.ok()) return absl::StrCat("Delete pod ", pod.Key(), ": ", st.error_message());
    if (generation != nullptr) *generation = resp.generation();
    return "";
  }
};

int Fail(const std::string& msg) {
  std::fprintf(stderr, "agent_client: %s\n", msg.c_str());
  return 1;
}

int64_t Ns(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Pct(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(q * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// Follows an agent's applied generation: WaitForGeneration(applied + 1) in a loop, recording
// when each newer applied generation was first answered.
class Follower {
 public:
  explicit Follower(const std::string& server)
      : stub_(v1::StatusService::NewStub(
            grpc::CreateChannel(server, grpc::InsecureChannelCredentials()))) {}

  // Reads the current applied generation, then starts the thread; "" or an error text.
  std::string Start() {
    v1::StatusRequest req;
    v1::StatusResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Status st = stub_->Status(&ctx, req, &resp);
    if (!st.ok()) return absl::StrCat("Status of the followed agent: ", st.error_message());
    applied_ = resp.applied_generation();
    thread_ = std::thread([this] { Run(); });
    return "";
  }

  // Waits until `generation` is applied (or `wait_s` passes), then stops the thread.
  void StopAfter(uint64_t generation, double wait_s) {
    {
      absl::MutexLock l(&mu_);
      auto reached = [this, generation]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return applied_ >= generation;
      };
      mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(wait_s));
    }
    stop_ = true;
    thread_.join();
  }

  // When `generation` (or a later one) was first seen applied, or nullopt.
  std::optional<Clock::time_point> AppliedAt(uint64_t generation) const {
    absl::MutexLock l(&mu_);
    for (const auto& [g, t] : seen_) {
      if (g >= generation) return t;
    }
    return std::nullopt;
  }

 private:
  void Run() {
    while (!stop_) {
      v1::WaitForGenerationRequest req;
      {
        absl::MutexLock l(&mu_);
        req.set_generation(applied_ + 1);
      }
      req.mutable_timeout()->set_nanos(200'000'000);
      v1::StatusResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      grpc::Status st = stub_->WaitForGeneration(&ctx, req, &resp);
      const auto now = Clock::now();
      if (!st.ok()) {
        // DEADLINE_EXCEEDED: nothing newer yet. Anything else: try again shortly.
        if (st.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        continue;
      }
      absl::MutexLock l(&mu_);
      if (resp.applied_generation() > applied_) {
        applied_ = resp.applied_generation();
        seen_.emplace_back(applied_, now);
      }
    }
  }

  std::unique_ptr<v1::StatusService::Stub> stub_;
  mutable absl::Mutex mu_;
  uint64_t applied_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::pair<uint64_t, Clock::time_point>> seen_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

int Load(const Rpc& rpc, const State& state) {
  const int64_t chunk = absl::GetFlag(FLAGS_chunk_bytes);
  size_t yaml_bytes = 0, calls = 0;
  State part;
  size_t part_bytes = 0;
  auto t0 = Clock::now();
  std::string err;
  auto flush = [&]() {
    if (part.namespaces.empty() && part.pods.empty() && part.policies.empty()) return;
    std::string yaml = StateToYaml(part);
    yaml_bytes += yaml.size();
    ++calls;
    if (err.empty()) err = rpc.ApplyYaml(absl::StrCat("load-", calls), yaml);
    part = State();
    part_bytes = 0;
  };
  // Rough per-object sizes decide the cut; StateToYaml of the part is what is sent. Kinds are
  // sent in dependency order: namespaces, pods, policies.
  for (const auto& [k, ns] : state.namespaces) {
    State one;
    one.namespaces.emplace(k, ns);
    part_bytes += StateToYaml(one).size();
    part.namespaces.emplace(k, ns);
    if (static_cast<int64_t>(part_bytes) >= chunk) flush();
  }
  flush();
  for (const auto& [k, pod] : state.pods) {
    State one;
    one.pods.emplace(k, pod);
    part_bytes += StateToYaml(one).size();
    part.pods.emplace(k, pod);
    if (static_cast<int64_t>(part_bytes) >= chunk) flush();
  }
  flush();
  for (const auto& [k, pol] : state.policies) {
    State one;
    one.policies.emplace(k, pol);
    part_bytes += StateToYaml(one).size();
    part.policies.emplace(k, pol);
    if (static_cast<int64_t>(part_bytes) >= chunk) flush();
  }
  flush();
  if (!err.empty()) return Fail(err);
  std::printf(
      "{\"mode\": \"load\", \"tier\": \"%s\", \"yaml_bytes\": %zu, \"apply_calls\": %zu, "
      "\"namespaces\": %zu, \"pods\": %zu, \"policies\": %zu, \"seconds\": %.3f}\n",
      absl::GetFlag(FLAGS_tier).c_str(), yaml_bytes, calls, state.namespaces.size(),
      state.pods.size(), state.policies.size(), Ms(Clock::now() - t0) / 1000);
  return 0;
}

int Churn(const Rpc& rpc, const State& state) {
  const double rate = absl::GetFlag(FLAGS_rate);
  const double seconds = absl::GetFlag(FLAGS_seconds);
  if (rate <= 0 || seconds <= 0) return Fail("--rate and --seconds must be > 0");
  const size_t events = static_cast<size_t>(rate * seconds) & ~size_t{1};  // whole pairs
  std::vector<double> enforced_ms, service_ms;
  enforced_ms.reserve(events);
  service_ms.reserve(events);
  size_t late = 0;  // events sent after their due time (the agent was still busy)
  const auto t0 = Clock::now();
  double max_wall = absl::GetFlag(FLAGS_max_wall_s);
  if (max_wall <= 0) max_wall = 2 * seconds;
  std::FILE* trace = nullptr;
  if (const std::string path = absl::GetFlag(FLAGS_trace); !path.empty()) {
    trace = std::fopen(path.c_str(), "w");
    if (trace == nullptr) return Fail("cannot write --trace file " + path);
  }
  std::unique_ptr<Follower> follower;
  if (const std::string follow = absl::GetFlag(FLAGS_follow); !follow.empty()) {
    if (trace == nullptr) return Fail("--follow needs --trace");
    follower = std::make_unique<Follower>(follow);
    if (std::string err = follower->Start(); !err.empty()) return Fail(err);
  }
  struct Traced {
    size_t i;
    Pod pod;
    uint64_t generation;
    Clock::time_point due, sent, done;
  };
  std::vector<Traced> traced;
  uint64_t newest = 0;
  Pod pod;
  size_t i = 0;
  for (; i < events; ++i) {
    // Stop only between pairs, so every added pod is deleted again.
    if (i % 2 == 0 && Ms(Clock::now() - t0) > max_wall * 1000) break;
    const auto due = t0 + std::chrono::nanoseconds(static_cast<int64_t>(i * 1e9 / rate));
    auto now = Clock::now();
    if (now < due) {
      std::this_thread::sleep_until(due);
    } else if (Ms(now - due) > 1) {
      ++late;
    }
    std::string err;
    uint64_t generation = 0;
    const auto sent = Clock::now();
    if (i % 2 == 0) {
      const uint64_t n = i / 2;
      // Alternate a pod on this node and one elsewhere ("node-9999" holds no other pod).
      pod = EventPod(state, n, n % 2 == 0 ? absl::GetFlag(FLAGS_node) : "node-9999");
      State one;
      one.pods.emplace(pod.Key(), pod);
      err = rpc.ApplyYaml(absl::StrCat("event-", i), StateToYaml(one), &generation);
    } else {
      err = rpc.DeletePod(pod, &generation);
    }
    if (!err.empty()) {
      if (trace != nullptr) std::fclose(trace);
      if (follower != nullptr) follower->StopAfter(0, 0);
      return Fail(absl::StrCat("event ", i, ": ", err));
    }
    const auto done = Clock::now();
    if (trace != nullptr) traced.push_back({i, pod, generation, due, sent, done});
    newest = std::max(newest, generation);
    enforced_ms.push_back(Ms(done - due));
    service_ms.push_back(Ms(done - sent));
  }
  const double wall = Ms(Clock::now() - t0) / 1000;
  if (follower != nullptr) follower->StopAfter(newest, 60);
  for (const Traced& e : traced) {
    int64_t follow_ns = -1;
    if (follower != nullptr) {
      if (auto at = follower->AppliedAt(e.generation)) follow_ns = Ns(*at);
    }
    std::fprintf(trace,
                 "{\"i\": %zu, \"op\": \"%s\", \"pod\": \"%s\", \"ip\": \"%s\", "
                 "\"node\": \"%s\", \"generation\": %llu, \"due_ns\": %lld, "
                 "\"sent_ns\": %lld, \"done_ns\": %lld, \"follow_ns\": %lld}\n",
                 e.i, e.i % 2 == 0 ? "add" : "delete", e.pod.Key().c_str(),
                 e.pod.ips.empty() ? "" : e.pod.ips[0].ToString().c_str(),
                 e.pod.node_name.c_str(), static_cast<unsigned long long>(e.generation),
                 static_cast<long long>(Ns(e.due)), static_cast<long long>(Ns(e.sent)),
                 static_cast<long long>(Ns(e.done)), static_cast<long long>(follow_ns));
  }
  if (trace != nullptr && std::fclose(trace) != 0) return Fail("writing the --trace file failed");
  std::printf(
      "{\"mode\": \"churn\", \"tier\": \"%s\", \"rate\": %.1f, \"events\": %zu, "
      "\"sent\": %zu, \"not_sent\": %zu, \"wall_s\": %.3f, \"achieved_rate\": %.2f, "
      "\"late_events\": %zu, "
      "\"enforced_ms\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"max\": %.3f}, "
      "\"service_ms\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"max\": %.3f}}\n",
      absl::GetFlag(FLAGS_tier).c_str(), rate, events, i, events - i, wall, i / wall, late,
      Pct(enforced_ms, 0.5), Pct(enforced_ms, 0.9), Pct(enforced_ms, 0.99),
      Pct(enforced_ms, 1.0), Pct(service_ms, 0.5), Pct(service_ms, 0.9), Pct(service_ms, 0.99),
      Pct(service_ms, 1.0));
  return 0;
}

int Main(int argc, char** argv) {
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) return Fail("usage: agent_client --server=ADDR --tier=T [flags] load|churn");
  const std::string mode = args[1];
  if (mode != "load" && mode != "churn") return Fail("unknown mode " + mode + " (load|churn)");
  const std::string server = absl::GetFlag(FLAGS_server);
  if (server.empty()) return Fail("--server is required");
  auto spec = ParseTier(absl::GetFlag(FLAGS_tier));
  if (!spec.ok()) return Fail(std::string(spec.status().message()));
  auto state = Generate(*spec);
  if (!state.ok()) return Fail(std::string(state.status().message()));
  grpc::ChannelArguments chargs;
  chargs.SetMaxReceiveMessageSize(64 << 20);
  chargs.SetMaxSendMessageSize(64 << 20);
  Rpc rpc{v1::ObjectService::NewStub(
      grpc::CreateCustomChannel(server, grpc::InsecureChannelCredentials(), chargs))};
  return mode == "load" ? Load(rpc, *state) : Churn(rpc, *state);
}

}  // namespace
}  // namespace netpol::bench

int main(int argc, char** argv) { return netpol::bench::Main(argc, argv); }
