// Fuzz target: the agent's request handlers (agent/service.h), from the bytes a gRPC client
// sends. The first input byte picks the RPC; the rest is that request message's protobuf wire
// encoding. Inputs that do not parse are skipped (gRPC rejects them before any handler runs).
//
// The service runs over a Store in a temporary directory seeded with a small cluster, a
// Reconciler synced once on nft::FakeBackend (no worker thread), exactly as in production minus
// gRPC. Writes are forced to dry runs so every input sees the same state and a saved input
// replays the same way.
//
// Invariants: no crash or sanitizer report; an error carries one of the codes the service
// documents (never OK-with-garbage, Unknown or Internal) and a message; a dry run never changes
// the store's generation or the committed program.
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "agent/reconciler.h"
#include "agent/service.h"
#include "agent/store.h"
#include "engine/model/loader.h"
#include "engine/nft/fake.h"
#include "fuzz/fuzz_check.h"

namespace netpol {
namespace {

// Two namespaces, pods on and off this node, a policy with named ports and an ipBlock.
constexpr char kCluster[] = R"(
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: web}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ops}
---
apiVersion: v1
kind: Pod
metadata: {namespace: shop, name: web, labels: {app: web}}
spec:
  nodeName: node-1
  containers:
  - name: main
    ports: [{name: http, containerPort: 8080}]
status:
  podIPs: [{ip: 10.0.0.2}, {ip: "fd00::2"}]
---
apiVersion: v1
kind: Pod
metadata: {namespace: shop, name: db, labels: {app: db}}
spec: {nodeName: node-2}
status:
  podIPs: [{ip: 10.0.1.5}]
---
apiVersion: v1
kind: Pod
metadata: {namespace: ops, name: prom, labels: {app: prom}}
spec: {nodeName: node-1}
status:
  podIPs: [{ip: 10.0.0.9}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: shop, name: web}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ops}}}]
    ports: [{port: http}]
  - from: [{ipBlock: {cidr: 192.168.0.0/16, except: [192.168.7.0/24]}}]
  egress:
  - to: [{podSelector: {matchLabels: {app: db}}}]
    ports: [{port: 5432}]
)";

constexpr absl::Duration kTimeout = absl::Seconds(5);

struct Fixture {
  std::string dir;
  nft::FakeBackend backend;
  std::unique_ptr<agent::Store> store;
  std::unique_ptr<agent::Reconciler> reconciler;
  std::unique_ptr<agent::AgentService> service;
};

Fixture* MakeFixture() {
  auto* f = new Fixture;  // lives for the process, as libFuzzer expects
  char tmpl[] = "/tmp/netpol-api-fuzz-XXXXXX";
  FUZZ_CHECK(mkdtemp(tmpl) != nullptr, "mkdtemp failed");
  f->dir = tmpl;
  absl::StatusOr<LoadResult> loaded = LoadYaml(kCluster);
  FUZZ_CHECK(loaded.ok(), loaded.status().ToString());
  State state;
  for (const Object& o : loaded->objects) Upsert(o, &state);
  {
    std::ofstream out(f->dir + "/" + agent::Store::kFileName, std::ios::binary);
    out << agent::Store::Encode(state, 1);
  }
  absl::StatusOr<std::unique_ptr<agent::Store>> store = agent::Store::Open(f->dir);
  FUZZ_CHECK(store.ok(), store.status().ToString());
  f->store = *std::move(store);
  // The state file is read; nothing else is written (writes are dry runs).
  std::remove((f->dir + "/" + agent::Store::kFileName).c_str());
  agent::ReconcilerOptions options;
  options.compile.node_name = "node-1";
  options.debounce = absl::ZeroDuration();
  options.check_interval = absl::ZeroDuration();
  agent::Store* s = f->store.get();
  f->reconciler = std::make_unique<agent::Reconciler>(&f->backend, [s] { return s->Current(); },
                                                      options);
  f->service = std::make_unique<agent::AgentService>(f->store.get(), f->reconciler.get());
  absl::Status synced = f->reconciler->SyncNow();
  FUZZ_CHECK(synced.ok(), synced.ToString());
  FUZZ_CHECK(f->service->Ready(), "service not ready after the first sync");
  return f;
}

Fixture& F() {
  static Fixture* f = MakeFixture();
  return *f;
}

template <typename T>
void CheckResult(const absl::StatusOr<T>& r, const char* rpc) {
  if (r.ok()) return;
  const absl::StatusCode code = r.status().code();
  FUZZ_CHECK(code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kNotFound ||
                 code == absl::StatusCode::kFailedPrecondition ||
                 code == absl::StatusCode::kResourceExhausted ||
                 code == absl::StatusCode::kAlreadyExists ||
                 code == absl::StatusCode::kDeadlineExceeded ||
                 code == absl::StatusCode::kUnavailable,
             absl::StrCat(rpc, ": undocumented error code: ", r.status().ToString()));
  FUZZ_CHECK(!r.status().message().empty(), absl::StrCat(rpc, ": error without a message"));
}

enum Rpc : uint8_t { kApply, kDelete, kGet, kList, kCheck, kExplainPod, kRender, kWait, kCount };

}  // namespace
}  // namespace netpol

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace netpol;
  if (size < 1) return 0;
  Fixture& f = F();
  const uint64_t generation = f.store->Current().generation;
  const auto committed = f.reconciler->committed();
  const void* body = data + 1;
  const int len = static_cast<int>(size - 1);
  switch (static_cast<Rpc>(data[0] % kCount)) {
    case kApply: {
      v1::ApplyRequest req;
      if (!req.ParseFromArray(body, len)) return 0;
      req.set_dry_run(true);
      CheckResult(f.service->Apply(req, kTimeout), "Apply");
      break;
    }
    case kDelete: {
      v1::DeleteRequest req;
      if (!req.ParseFromArray(body, len)) return 0;
      req.set_dry_run(true);
      CheckResult(f.service->Delete(req, kTimeout), "Delete");
      break;
    }
    case kGet: {
      v1::GetRequest req;
      if (!req.ParseFromArray(body, len)) return 0;
      CheckResult(f.service->Get(req), "Get");
      break;
    }
    case kList: {
      v1::ListRequest req;
      if (!req.ParseFromArray(body, len)) return 0;
      CheckResult(f.service->List(req), "List");
      break;
    }
    case kCheck: {
      v1::CheckRequest req;
      if (!req.ParseFromArray(body, len)) return 0;
      CheckResult(f.service->Check(req), "Check");
      break;
    }
    case kExplainPod: {
      v1::ExplainPodRequest req;
      if (!req.ParseFromArray(body, len)) return 0;
      CheckResult(f.service->ExplainPod(req), "ExplainPod");
      break;
    }
    case kRender: {
      v1::RenderRequest req;
      if (!req.ParseFromArray(body, len)) return 0;
      CheckResult(f.service->Render(req), "Render");
      break;
    }
    case kWait: {
      v1::WaitForGenerationRequest req;
      if (!req.ParseFromArray(body, len)) return 0;
      // Never block: the generation asked for is at most the current one.
      if (req.generation() > generation) req.set_generation(generation);
      CheckResult(f.service->WaitForGeneration(req, absl::ZeroDuration()), "WaitForGeneration");
      (void)f.service->Status();
      break;
    }
    case kCount:
      break;
  }
  FUZZ_CHECK(f.store->Current().generation == generation, "a dry run changed the store");
  FUZZ_CHECK(f.reconciler->committed() == committed, "a dry run changed the committed program");
  return 0;
}
