// Decoding Kubernetes API list pages into the model (agent/k8s/decode.h), on JSON shaped as
// kube-apiserver v1.28 serves it: Deployment-made pods with managedFields, ownerReferences,
// probes, env, volumes, tolerations, conditions and containerStatuses (about 5 KB each), and
// NetworkPolicies with kubectl's last-applied annotation.
//
// A list is read in pages (the agent's --kube-page-size, 500): each benchmark iteration
// decodes `total` objects as total/500 pages, cycling over 10 distinct pre-built pages, so
// memory holds 10 pages and never the whole list. Counters: ns per object, MB/s of JSON, JSON
// bytes per object. `BM_DecodePodListIntoState` also upserts every pod into a State (what the
// first sync builds).
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/k8s/decode.h"
#include "benchmark/benchmark.h"

namespace {

using netpol::agent::k8s::DecodeListPage;
using netpol::agent::k8s::ListPage;
using netpol::agent::k8s::Resource;

constexpr int kPageSize = 500;
constexpr int kDistinctPages = 10;

std::string PodJson(int n) {
  const int ns = n % 5000;
  const std::string name = absl::StrFormat("web-%d-7d9f8c6b5d-%05x", n / 20, n);
  const std::string uid = absl::StrFormat("3f2a%04x-9b1c-4d2e-8f3a-%012x", n % 65536, n);
  const std::string ip = absl::StrFormat("10.%d.%d.%d", 64 + (n >> 16) % 64, (n >> 8) % 256,
                                         n % 256);
  const std::string ip6 = absl::StrFormat("fd00:10:%x:%x::%x", 64 + (n >> 16) % 64,
                                          (n >> 8) % 256, n % 256);
  const std::string node = absl::StrFormat("node-%03d", n % 500);
  return absl::StrCat(
      R"({"metadata":{"name":")", name, R"(","generateName":"web-)", n / 20,
      R"(-7d9f8c6b5d-","namespace":"ns-)", ns, R"(","uid":")", uid,
      R"(","resourceVersion":")", 100000 + n,
      R"(","creationTimestamp":"2026-11-20T10:15:30Z","labels":{"app":"web-)", n / 20,
      R"(","pod-template-hash":"7d9f8c6b5d","tier":"frontend","version":"v2"},"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-11-20T10:15:00Z","prometheus.io/scrape":"true"},"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-)",
      n / 20,
      R"(-7d9f8c6b5d","uid":"8c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f","controller":true,"blockOwnerDeletion":true}],"managedFields":[{"manager":"kube-controller-manager","operation":"Update","apiVersion":"v1","time":"2026-11-20T10:15:30Z","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:annotations":{".":{},"f:kubectl.kubernetes.io/restartedAt":{},"f:prometheus.io/scrape":{}},"f:generateName":{},"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{},"f:tier":{},"f:version":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"8c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f\"}":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:env":{".":{},"k:{\"name\":\"LOG_LEVEL\"}":{".":{},"f:name":{},"f:value":{}}},"f:image":{},"f:imagePullPolicy":{},"f:livenessProbe":{".":{},"f:httpGet":{".":{},"f:path":{},"f:port":{},"f:scheme":{}}},"f:name":{},"f:ports":{".":{},"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:name":{},"f:protocol":{}}},"f:resources":{".":{},"f:limits":{".":{},"f:memory":{}},"f:requests":{".":{},"f:cpu":{},"f:memory":{}}}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}},{"manager":"kubelet","operation":"Update","apiVersion":"v1","time":"2026-11-20T10:15:34Z","fieldsType":"FieldsV1","fieldsV1":{"f:status":{"f:conditions":{"k:{\"type\":\"ContainersReady\"}":{".":{},"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{}},"k:{\"type\":\"Ready\"}":{".":{},"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{}}},"f:containerStatuses":{},"f:hostIP":{},"f:phase":{},"f:podIP":{},"f:podIPs":{".":{},"k:{\"ip\":\")",
      ip,
      R"(\"}":{".":{},"f:ip":{}}},"f:startTime":{}}},"subresource":"status"}]},"spec":{"volumes":[{"name":"kube-api-access-x7k2p","projected":{"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}},{"configMap":{"name":"kube-root-ca.crt","items":[{"key":"ca.crt","path":"ca.crt"}]}},{"downwardAPI":{"items":[{"path":"namespace","fieldRef":{"apiVersion":"v1","fieldPath":"metadata.namespace"}}]}}],"defaultMode":420}}],"containers":[{"name":"web","image":"registry.example.com/shop/web:2.14.3","ports":[{"name":"http","containerPort":8080,"protocol":"TCP"},{"name":"metrics","containerPort":9090,"protocol":"TCP"}],"env":[{"name":"LOG_LEVEL","value":"info"},{"name":"POD_NAME","valueFrom":{"fieldRef":{"apiVersion":"v1","fieldPath":"metadata.name"}}}],"resources":{"limits":{"memory":"256Mi"},"requests":{"cpu":"100m","memory":"128Mi"}},"volumeMounts":[{"name":"kube-api-access-x7k2p","readOnly":true,"mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"}],"livenessProbe":{"httpGet":{"path":"/healthz","port":8080,"scheme":"HTTP"},"timeoutSeconds":1,"periodSeconds":10,"successThreshold":1,"failureThreshold":3},"readinessProbe":{"httpGet":{"path":"/ready","port":"http","scheme":"HTTP"},"timeoutSeconds":1,"periodSeconds":5,"successThreshold":1,"failureThreshold":3},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","serviceAccountName":"default","serviceAccount":"default","nodeName":")",
      node,
      R"(","securityContext":{},"schedulerName":"default-scheduler","tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300},{"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}],"priority":0,"enableServiceLinks":true,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Running","conditions":[{"type":"Initialized","status":"True","lastProbeTime":null,"lastTransitionTime":"2026-11-20T10:15:30Z"},{"type":"Ready","status":"True","lastProbeTime":null,"lastTransitionTime":"2026-11-20T10:15:34Z"},{"type":"ContainersReady","status":"True","lastProbeTime":null,"lastTransitionTime":"2026-11-20T10:15:34Z"},{"type":"PodScheduled","status":"True","lastProbeTime":null,"lastTransitionTime":"2026-11-20T10:15:30Z"}],"hostIP":"192.168.)",
      (n % 500) / 250, ".", n % 250, R"(","hostIPs":[{"ip":"192.168.)", (n % 500) / 250, ".",
      n % 250, R"("}],"podIP":")", ip, R"(","podIPs":[{"ip":")", ip, R"("},{"ip":")", ip6,
      R"("}],"startTime":"2026-11-20T10:15:30Z","containerStatuses":[{"name":"web","state":{"running":{"startedAt":"2026-11-20T10:15:32Z"}},"lastState":{},"ready":true,"restartCount":0,"image":"registry.example.com/shop/web:2.14.3","imageID":"registry.example.com/shop/web@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","containerID":"containerd://)",
      absl::StrFormat("%064x", n), R"(","started":true}],"qosClass":"Burstable"}})");
}

std::string PolicyJson(int n) {
  const std::string spec = absl::StrCat(
      R"({"podSelector":{"matchLabels":{"app":"web-)", n % 5000,
      R"("}},"ingress":[{"from":[{"podSelector":{"matchLabels":{"role":"client"}}},{"namespaceSelector":{"matchExpressions":[{"key":"team","operator":"In","values":["a","b"]}]},"podSelector":{"matchLabels":{"app":"api"}}},{"ipBlock":{"cidr":"172.16.0.0/12","except":["172.16.1.0/24"]}}],"ports":[{"protocol":"TCP","port":"http"},{"protocol":"TCP","port":9000,"endPort":9100}]}],"egress":[{"to":[{"namespaceSelector":{}}],"ports":[{"protocol":"UDP","port":53}]}],"policyTypes":["Ingress","Egress"]})");
  std::string escaped;
  for (char c : spec) {
    if (c == '"') escaped += '\\';
    escaped += c;
  }
  return absl::StrCat(R"({"metadata":{"name":"allow-)", n, R"(","namespace":"ns-)", n % 5000,
                      R"(","uid":"5e6f7a8b-)", n, R"(","resourceVersion":")", 500000 + n,
                      R"(","generation":1,"creationTimestamp":"2026-11-20T10:00:00Z","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"networking.k8s.io/v1\",\"kind\":\"NetworkPolicy\",\"metadata\":{\"annotations\":{},\"name\":\"allow-)",
                      n, R"(\"},\"spec\":)", escaped,
                      R"(}\n"},"managedFields":[{"manager":"kubectl-client-side-apply","operation":"Update","apiVersion":"networking.k8s.io/v1","time":"2026-11-20T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:annotations":{".":{},"f:kubectl.kubernetes.io/last-applied-configuration":{}}},"f:spec":{"f:egress":{},"f:ingress":{},"f:podSelector":{},"f:policyTypes":{}}}}]},"spec":)",
                      spec, "}");
}

std::vector<std::string> Pages(std::string (*item)(int), const char* kind) {
  std::vector<std::string> pages;
  for (int p = 0; p < kDistinctPages; ++p) {
    std::string page = absl::StrCat(R"({"kind":")", kind,
                                    R"(","apiVersion":"v1","metadata":{"resourceVersion":"123456","continue":"eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTIzNDU2LCJzdGFydCI6Im5zLTEvd2ViIn0"},"items":[)");
    for (int i = 0; i < kPageSize; ++i) {
      if (i > 0) page += ',';
      page += item(p * kPageSize + i);
    }
    page += "]}";
    pages.push_back(std::move(page));
  }
  return pages;
}

void Run(benchmark::State& state, Resource r, const std::vector<std::string>& pages,
         bool into_state) {
  const int64_t total = state.range(0);
  const int64_t npages = (total + kPageSize - 1) / kPageSize;
  int64_t bytes = 0;
  for (auto _ : state) {
    netpol::State model;
    int64_t decoded = 0;
    bytes = 0;
    for (int64_t p = 0; p < npages; ++p) {
      const std::string& page = pages[p % pages.size()];
      bytes += static_cast<int64_t>(page.size());
      absl::StatusOr<ListPage> got = DecodeListPage(r, page);
      if (!got.ok()) {
        state.SkipWithError(std::string(got.status().message()).c_str());
        return;
      }
      for (auto& item : got->items) {
        if (!item.object) {
          state.SkipWithError(item.invalid.c_str());
          return;
        }
        if (into_state) netpol::Upsert(*item.object, &model);
        ++decoded;
      }
    }
    benchmark::DoNotOptimize(decoded);
    benchmark::DoNotOptimize(model);
  }
  const double objects = static_cast<double>(npages * kPageSize);
  state.counters["objects"] = objects;
  state.counters["json_MB"] = static_cast<double>(bytes) / 1e6;
  state.counters["json_bytes_per_object"] = static_cast<double>(bytes) / objects;
  // CPU seconds per object (shown with a unit prefix: 3.8u = 3.8 microseconds).
  state.counters["cpu_s_per_object"] = benchmark::Counter(
      objects, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.SetBytesProcessed(state.iterations() * bytes);
}

void BM_DecodePodList(benchmark::State& state) {
  static const std::vector<std::string>* pages =
      new std::vector<std::string>(Pages(PodJson, "PodList"));
  Run(state, Resource::kPods, *pages, false);
}

void BM_DecodePodListIntoState(benchmark::State& state) {
  static const std::vector<std::string>* pages =
      new std::vector<std::string>(Pages(PodJson, "PodList"));
  Run(state, Resource::kPods, *pages, true);
}

void BM_DecodeNetworkPolicyList(benchmark::State& state) {
  static const std::vector<std::string>* pages =
      new std::vector<std::string>(Pages(PolicyJson, "NetworkPolicyList"));
  Run(state, Resource::kNetworkPolicies, *pages, false);
}

}  // namespace

// --pods=N (100,000) and --policies=N (20,000): the list sizes (T4's); the smoke test passes
// one page each. Rates and per-object counters use the CPU time of the decoding thread (the
// machine's other work does not count).
int main(int argc, char** argv) {
  int64_t pods = 100000, policies = 20000;
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::sscanf(argv[i], "--pods=%ld", &pods) == 1) continue;
    if (std::sscanf(argv[i], "--policies=%ld", &policies) == 1) continue;
    rest.push_back(argv[i]);
  }
  benchmark::RegisterBenchmark("BM_DecodePodList", BM_DecodePodList)
      ->Arg(pods)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_DecodePodListIntoState", BM_DecodePodListIntoState)
      ->Arg(pods)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_DecodeNetworkPolicyList", BM_DecodeNetworkPolicyList)
      ->Arg(policies)
      ->Unit(benchmark::kMillisecond);
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
