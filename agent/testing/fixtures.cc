#include "agent/testing/fixtures.h"

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "gtest/gtest.h"

namespace netpol::agent::fixtures {

std::string MakeTempDir(const std::string& prefix) {
  const char* base = getenv("TEST_TMPDIR");
  std::string path = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/" +
                     prefix + "XXXXXX";
  if (mkdtemp(path.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << path << ": " << std::strerror(errno);
    return "";
  }
  return path;
}

void RemoveTree(const std::string& path) {
  if (path.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) ADD_FAILURE() << "removing " << path << ": " << ec.message();
}

const char kShop[] = R"(apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  nodeName: node-1
  containers: [{name: main, ports: [{name: http, containerPort: 8080}]}]
status: {podIPs: [{ip: 10.1.0.10}, {ip: "fd00:1::10"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {nodeName: node-1}
status: {podIP: 10.1.0.11}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: shop, labels: {app: other}}
spec: {nodeName: node-2}
status: {podIP: 10.2.0.5}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-ingress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: http}]
)";

const char kClusterSample[] = R"(
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec:
  tier: Admin
  priority: 10
  subject:
    pods:
      namespaceSelector: {matchLabels: {team: payments}}
      podSelector: {matchExpressions: [{key: app, operator: NotIn, values: [debug]}]}
  ingress:
  - name: from-ingress
    action: Accept
    from:
    - namespaces: {matchLabels: {role: ingress}}
    - pods:
        namespaceSelector: {}
        podSelector: {matchLabels: {app: gateway}}
    protocols:
    - tcp: {destinationPort: {number: 443}}
    - udp: {destinationPort: {range: {start: 5000, end: 5010}}}
    - destinationNamedPort: web
  - action: Deny
    from:
    - namespaces: {}
  egress:
  - action: Pass
    to:
    - networks: [10.0.0.0/8, "fd00::/8"]
  - name: no-control-plane
    action: Deny
    to:
    - nodes: {matchExpressions: [{key: node-role.kubernetes.io/control-plane, operator: Exists}]}
    protocols:
    - sctp: {destinationPort: {number: 9000}}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: isolate}
spec:
  tier: Baseline
  priority: 0
  subject: {namespaces: {matchLabels: {tenant: "true"}}}
  ingress:
  - action: Pass
    from: [{namespaces: {matchLabels: {tenant: "true"}}}]
  - action: Deny
    from: [{pods: {namespaceSelector: {}, podSelector: {}}}]
---
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {node-role.kubernetes.io/control-plane: "", zone: a}}
status:
  addresses:
  - {type: InternalIP, address: 192.168.1.10}
  - {type: Hostname, address: n1}
  - {type: InternalIP, address: "fd00:1::10"}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
)";

const char kSample[] = R"(
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: a}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: web}}
spec:
  nodeName: n1
  hostNetwork: false
  containers:
  - name: main
    ports: [{name: http, containerPort: 8080}, {containerPort: 53, protocol: UDP}]
status: {podIPs: [{ip: 10.0.0.1}, {ip: "fd00::1"}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow, namespace: x}
spec:
  podSelector: {matchExpressions: [{key: app, operator: NotIn, values: [db]}, {key: t, operator: Exists}]}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - podSelector: {}
      namespaceSelector: {matchLabels: {team: a}}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
    ports: [{port: http}, {port: 80, endPort: 90, protocol: SCTP}, {protocol: UDP}]
  egress:
  - {}
)";

std::string WebAndClients(const std::string& b_app, bool and_c) {
  std::string yaml = R"(apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: )" + b_app + R"(}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: http}]
)";
  if (and_c) {
    yaml += R"(---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: x, labels: {app: client}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.3}
)";
  }
  return yaml;
}

std::vector<Object> LoadObjects(const std::string& yaml) {
  absl::StatusOr<LoadResult> loaded = LoadYaml(yaml);
  EXPECT_TRUE(loaded.ok()) << loaded.status() << "\n" << yaml;
  return loaded.ok() ? loaded->objects : std::vector<Object>{};
}

State LoadState(const std::string& yaml) {
  State state;
  for (const Object& o : LoadObjects(yaml)) Upsert(o, &state);
  return state;
}

}  // namespace netpol::agent::fixtures
