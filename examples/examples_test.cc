// Every policy in examples/ loads through the engine's strict loader, compiles for a node, and
// decides the flows its README promises — in the reference evaluator and in the compiled
// program (replayed by the packet tracer), IPv4 and IPv6. The same flows are probed with real
// packets by //tests/services:examples_lab_test.
#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/compiler/compiler.h"
#include "engine/eval/eval.h"
#include "engine/model/loader.h"
#include "engine/trace/tracer.h"
#include "gtest/gtest.h"

namespace netpol {
namespace {

// The cluster the examples are applied to (namespace `shop`), all on node-1.
constexpr char kCluster[] = R"(
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Namespace
metadata: {name: ingress-nginx}
---
apiVersion: v1
kind: Namespace
metadata: {name: impostor}
---
apiVersion: v1
kind: Namespace
metadata: {name: kube-system}
---
apiVersion: v1
kind: Pod
metadata:
  namespace: shop
  name: web-1
  labels: {app.kubernetes.io/component: web, egress: internet}
spec:
  nodeName: node-1
  containers: [{name: main, ports: [{name: http, containerPort: 8080}]}]
status: {podIPs: [{ip: 10.244.1.17}, {ip: "fd00:10:244:1::11"}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: shop, name: web-2, labels: {app.kubernetes.io/component: web}}
spec:
  nodeName: node-1
  containers: [{name: main, ports: [{name: http, containerPort: 9090}]}]
status: {podIPs: [{ip: 10.244.1.18}, {ip: "fd00:10:244:1::12"}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: shop, name: db, labels: {app: db}}
spec: {nodeName: node-1}
status: {podIPs: [{ip: 10.244.1.19}, {ip: "fd00:10:244:1::13"}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: other, name: client}
spec: {nodeName: node-1}
status: {podIPs: [{ip: 10.244.1.33}, {ip: "fd00:10:244:1::21"}]}
---
apiVersion: v1
kind: Pod
metadata:
  namespace: ingress-nginx
  name: controller
  labels: {app.kubernetes.io/name: ingress-nginx}
spec: {nodeName: node-1}
status: {podIPs: [{ip: 10.244.1.49}, {ip: "fd00:10:244:1::31"}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: ingress-nginx, name: backend, labels: {app: default-backend}}
spec: {nodeName: node-1}
status: {podIPs: [{ip: 10.244.1.50}, {ip: "fd00:10:244:1::32"}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: impostor, name: controller, labels: {app.kubernetes.io/name: ingress-nginx}}
spec: {nodeName: node-1}
status: {podIPs: [{ip: 10.244.1.65}, {ip: "fd00:10:244:1::41"}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: kube-system, name: coredns, labels: {k8s-app: kube-dns}}
spec:
  nodeName: node-1
  containers: [{name: main, ports: [{name: dns, containerPort: 53, protocol: UDP},
                                    {name: dns-tcp, containerPort: 53, protocol: TCP}]}]
status: {podIPs: [{ip: 10.244.1.10}, {ip: "fd00:10:244:1::a"}]}
)";

// Places that are not pods: {v4, v6}.
struct Place {
  const char* name;
  const char* v4;
  const char* v6;
  bool node;  // an address of node-1 itself: the `input` hook
};
constexpr Place kPlaces[] = {
    {"node-1", "172.31.0.2", "fd00:172:31::2", true},
    {"internet", "203.0.113.10", "2001:db8:203::10", false},
    {"metadata", "169.254.169.254", "fd00:ec2::254", false},
};

struct Flow {
  const char* src;  // pod key, or "node" (node-1 itself, e.g. a kubelet probe)
  const char* dst;  // pod key or a Place
  Protocol protocol;
  int port;
  bool want;
};

struct Case {
  std::vector<std::string> files;
  std::vector<Flow> flows;
};

constexpr Protocol TCP = Protocol::kTCP;
constexpr Protocol UDP = Protocol::kUDP;

std::vector<Case> Cases() {
  const char* W1 = "shop/web-1";
  const char* W2 = "shop/web-2";
  const char* DB = "shop/db";
  const char* CL = "other/client";
  const char* CTL = "ingress-nginx/controller";
  const char* DNS = "kube-system/coredns";
  return {
      {{"default-deny-ingress.yaml"},
       {{CL, W1, TCP, 80, false}, {DB, W1, TCP, 80, false}, {CL, DB, UDP, 81, false},
        {"node", W1, TCP, 80, true}, {W1, CL, TCP, 80, true}, {W1, "internet", TCP, 80, true}}},
      {{"default-deny-egress.yaml"},
       {{W1, CL, TCP, 80, false}, {W1, DB, TCP, 80, false}, {W1, "internet", TCP, 80, false},
        {W1, DNS, UDP, 53, false}, {W1, "node-1", TCP, 10250, false}, {CL, W1, TCP, 80, true}}},
      {{"default-deny-all.yaml"},
       {{CL, W1, TCP, 80, false}, {W1, CL, TCP, 80, false}, {W1, DB, TCP, 80, false},
        {"node", W1, TCP, 80, true}}},
      {{"allow-same-namespace.yaml"},
       {{DB, W1, TCP, 80, true}, {W2, DB, UDP, 81, true}, {CL, W1, TCP, 80, false},
        {CTL, DB, TCP, 80, false}, {W1, CL, TCP, 80, true}}},
      {{"default-deny-ingress.yaml", "allow-from-ingress-controller.yaml"},
       {{CTL, W1, TCP, 8080, true},
        {CTL, W2, TCP, 9090, true},
        {CTL, W1, TCP, 80, false},
        {CTL, W2, TCP, 8080, false},
        {CTL, W1, TCP, 9090, false},
        {"ingress-nginx/backend", W1, TCP, 8080, false},
        {"impostor/controller", W1, TCP, 8080, false},
        {CTL, DB, TCP, 80, false}}},
      {{"default-deny-egress.yaml", "allow-dns.yaml"},
       {{W1, DNS, UDP, 53, true}, {W2, DNS, TCP, 53, true}, {W1, DNS, TCP, 80, false},
        {W1, DNS, UDP, 54, false}, {W1, CL, TCP, 80, false}, {W1, CL, UDP, 53, false},
        {W1, "internet", UDP, 53, false}}},
      {{"allow-external-except-metadata.yaml"},
       {{W1, "internet", TCP, 80, true}, {W1, "internet", UDP, 443, true},
        {W1, "metadata", TCP, 80, false}, {W1, "metadata", UDP, 53, false},
        {W1, CL, TCP, 80, true}, {W1, "node-1", TCP, 10250, true},
        {W2, "metadata", TCP, 80, true}}},
  };
}

std::string ExamplePath(const std::string& file) { return "examples/" + file; }

State LoadCluster() {
  absl::StatusOr<LoadResult> loaded = LoadYaml(kCluster, {.source = "cluster"});
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  State state;
  if (loaded.ok()) {
    for (const Object& o : loaded->objects) Upsert(o, &state);
  }
  return state;
}

// Loads one example as `kubectl apply -n shop -f FILE` would: strict, namespace defaulted.
std::vector<Object> LoadExample(const std::string& file) {
  LoadOptions options;
  options.default_namespace = "shop";
  absl::StatusOr<LoadResult> loaded = LoadFile(ExamplePath(file), options);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  if (!loaded.ok()) return {};
  EXPECT_TRUE(loaded->warnings.empty()) << file << ": " << loaded->warnings.front();
  EXPECT_EQ(loaded->objects.size(), 1u) << file;
  for (const Object& o : loaded->objects) {
    EXPECT_NE(o.AsNetworkPolicy(), nullptr) << file << ": " << o.Ref();
    EXPECT_EQ(o.NamespaceName(), "shop") << file << ": an example carries no namespace";
  }
  return loaded->objects;
}

const Place* FindPlace(const std::string& name) {
  for (const Place& p : kPlaces) {
    if (name == p.name) return &p;
  }
  return nullptr;
}

IpAddr MustParse(const char* text) {
  absl::StatusOr<IpAddr> a = IpAddr::Parse(text);
  EXPECT_TRUE(a.ok()) << text;
  return a.ok() ? *a : IpAddr();
}

IpAddr AddressOf(const State& state, const std::string& name, Family family) {
  if (const Place* p = FindPlace(name)) return MustParse(family == Family::kV4 ? p->v4 : p->v6);
  for (const IpAddr& a : state.pods.at(name).ips) {
    if (a.family == family) return a;
  }
  ADD_FAILURE() << name << " has no address of the family";
  return IpAddr();
}

Endpoint EndpointOf(const State& state, const std::string& name, Family family) {
  if (name == "node") return Endpoint::ForNode();
  if (FindPlace(name)) return Endpoint::ForAddress(AddressOf(state, name, family));
  return Endpoint::ForPod(state.pods.at(name));
}

TEST(ExamplesTest, EveryExampleIsExercised) {
  std::set<std::string> present;
  for (const auto& entry : std::filesystem::directory_iterator("examples")) {
    if (entry.path().extension() == ".yaml") present.insert(entry.path().filename().string());
  }
  std::set<std::string> listed;
  for (const Case& c : Cases()) listed.insert(c.files.begin(), c.files.end());
  EXPECT_EQ(present, listed);
  EXPECT_EQ(present.size(), 7u);
}

TEST(ExamplesTest, LoadCompileAndDecide) {
  const State cluster = LoadCluster();
  ASSERT_EQ(cluster.pods.size(), 8u);
  for (const Case& c : Cases()) {
    const std::string name = absl::StrJoin(c.files, " + ");
    SCOPED_TRACE(name);
    State state = cluster;
    for (const std::string& file : c.files) {
      for (const Object& o : LoadExample(file)) Upsert(o, &state);
    }
    compiler::CompileOptions options;
    options.node_name = "node-1";
    absl::StatusOr<nft::Program> program = compiler::Compile(state, options);
    ASSERT_TRUE(program.ok()) << program.status();

    for (const Flow& f : c.flows) {
      for (Family family : {Family::kV4, Family::kV6}) {
        const std::string what =
            absl::StrCat(f.src, " -> ", f.dst, " ", family == Family::kV4 ? "v4 " : "v6 ",
                         ProtocolName(f.protocol), "/", f.port);
        Decision d = Decide(state, EndpointOf(state, f.src, family),
                            EndpointOf(state, f.dst, family), family, f.protocol, f.port);
        EXPECT_EQ(d.allowed, f.want) << what << " (evaluator): " << d.Explain();
        // The node's own connections leave through `output`, which the program leaves alone.
        if (std::string(f.src) == "node") continue;
        trace::Packet packet;
        packet.src = AddressOf(state, f.src, family);
        packet.dst = AddressOf(state, f.dst, family);
        packet.l4proto = static_cast<uint8_t>(f.protocol);
        packet.dport = static_cast<uint16_t>(f.port);
        const Place* place = FindPlace(f.dst);
        // To the node: `input`; to a pod: `forward` (egress), then `postrouting` (ingress).
        const std::vector<std::string> chains =
            place && place->node ? std::vector<std::string>{"input"}
                                 : std::vector<std::string>{"forward", "postrouting"};
        bool accepted = true;
        std::string traces;
        for (const std::string& chain : chains) {
          absl::StatusOr<trace::TraceResult> traced = trace::Trace(*program, chain, packet);
          ASSERT_TRUE(traced.ok()) << what << ": " << traced.status();
          absl::StrAppend(&traces, chain, ":\n", traced->ToString(), "\n");
          if (!traced->accepted) {
            accepted = false;
            break;
          }
        }
        EXPECT_EQ(accepted, f.want) << what << " (program):\n" << traces;
      }
    }
  }
}

}  // namespace
}  // namespace netpol
