// The load client of //tests/hardening:load_test: N concurrent gRPC clients, each on its own
// channel, issuing Check queries and Apply requests against one agent for a fixed time.
//
//   load_client SERVER CLIENTS SECONDS PODS APPLY_PERCENT SEED
//
// Client c applies its own NetworkPolicy load/c<c> with a fresh random port each time. Prints
// one summary line per kind, one `acked C PORT` line per client with the port of its last
// successful Apply, one `refusal MESSAGE` line with the first RESOURCE_EXHAUSTED message, then
// `failure ...` lines (at most 50) for every other error. RESOURCE_EXHAUSTED is the agent's
// documented backpressure (a refused request changed nothing); it is counted, and the client
// backs off (10-50 ms, jittered) before its next request, as api/README.md asks of clients.
// Anything else, UNAVAILABLE and DEADLINE_EXCEEDED included, is a failure.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "api/netpol/v1/object_service.grpc.pb.h"
#include "api/netpol/v1/query_service.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Totals {
  std::mutex mu;
  long ok[2] = {0, 0};
  long backpressure[2] = {0, 0};
  long failed[2] = {0, 0};
  std::vector<double> latency_ms[2];
  std::vector<std::string> failures;
  std::string first_refusal;
};

std::string Policy(int client, int port) {
  char buf[512];
  std::snprintf(buf, sizeof(buf),
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
                "metadata: {name: c%d, namespace: load}\n"
                "spec:\n  podSelector: {matchLabels: {app: a%d}}\n"
                "  ingress:\n  - from: [{podSelector: {matchLabels: {app: a%d}}}]\n"
                "    ports: [{protocol: TCP, port: %d}]\n",
                client, client % 10, (client + 1) % 10, port);
  return buf;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(v.size() * p));
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr,
                 "usage: load_client SERVER CLIENTS SECONDS PODS APPLY_PERCENT SEED\n");
    return 2;
  }
  const std::string server = argv[1];
  const int clients = std::atoi(argv[2]);
  const double seconds = std::atof(argv[3]);
  const int pods = std::atoi(argv[4]);
  const int apply_percent = std::atoi(argv[5]);
  const int seed = std::atoi(argv[6]);
  if (clients <= 0 || seconds <= 0 || pods <= 0 || apply_percent < 0 || apply_percent > 100) {
    std::fprintf(stderr, "load_client: bad arguments\n");
    return 2;
  }
  const Clock::time_point stop = Clock::now() + std::chrono::milliseconds(
                                                    static_cast<long>(seconds * 1000));
  Totals totals;
  std::vector<int> acked(clients, -1);
  std::vector<std::thread> threads;
  threads.reserve(clients);
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      std::mt19937 rng(static_cast<unsigned>(seed * 100003 + c));
      auto channel = grpc::CreateChannel(server, grpc::InsecureChannelCredentials());
      auto objects = netpol::v1::ObjectService::NewStub(channel);
      auto queries = netpol::v1::QueryService::NewStub(channel);
      while (Clock::now() < stop) {
        const bool apply = static_cast<int>(rng() % 100) < apply_percent;
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
        grpc::Status st;
        int port = 0;
        const Clock::time_point t0 = Clock::now();
        if (apply) {
          port = 1024 + static_cast<int>(rng() % 64000);
          netpol::v1::ApplyRequest req;
          netpol::v1::Manifest* m = req.add_manifests();
          m->set_source("load client " + std::to_string(c));
          m->set_text(Policy(c, port));
          netpol::v1::ApplyResponse resp;
          st = objects->Apply(&ctx, req, &resp);
        } else {
          netpol::v1::CheckRequest req;
          req.mutable_source()->set_pod("load/p" + std::to_string(rng() % pods));
          req.mutable_destination()->set_pod("load/p" + std::to_string(rng() % pods));
          req.set_protocol(netpol::v1::TCP);
          req.set_port(1 + static_cast<int>(rng() % 65535));
          netpol::v1::CheckResponse resp;
          st = queries->Check(&ctx, req, &resp);
          if (st.ok() && resp.verdict() != netpol::v1::ALLOWED &&
              resp.verdict() != netpol::v1::DENIED) {
            st = grpc::Status(grpc::StatusCode::INTERNAL,
                              "check answered verdict " + std::to_string(resp.verdict()));
          }
        }
        const double ms =
            std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        const int k = apply ? 1 : 0;
        bool back_off = false;
        {
          std::lock_guard<std::mutex> lock(totals.mu);
          if (st.ok()) {
            ++totals.ok[k];
            totals.latency_ms[k].push_back(ms);
            if (apply) acked[c] = port;
          } else if (st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
            ++totals.backpressure[k];
            if (totals.first_refusal.empty()) totals.first_refusal = st.error_message();
            back_off = true;
          } else {
            ++totals.failed[k];
            if (totals.failures.size() < 50) {
              totals.failures.push_back("client " + std::to_string(c) +
                                        (apply ? " apply" : " check") + ": code " +
                                        std::to_string(st.error_code()) + ": " +
                                        st.error_message());
            }
          }
        }
        if (back_off) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10 + rng() % 41));
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const char* names[2] = {"check", "apply"};
  for (int k = 0; k < 2; ++k) {
    std::printf("%s ok=%ld backpressure=%ld failed=%ld p50_ms=%.1f p99_ms=%.1f max_ms=%.1f\n",
                names[k], totals.ok[k], totals.backpressure[k], totals.failed[k],
                Percentile(totals.latency_ms[k], 0.5), Percentile(totals.latency_ms[k], 0.99),
                Percentile(totals.latency_ms[k], 1.0));
  }
  for (int c = 0; c < clients; ++c) {
    if (acked[c] >= 0) std::printf("acked %d %d\n", c, acked[c]);
  }
  if (!totals.first_refusal.empty()) std::printf("refusal %s\n", totals.first_refusal.c_str());
  for (const std::string& f : totals.failures) std::printf("failure %s\n", f.c_str());
  return 0;
}
