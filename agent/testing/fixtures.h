// Test fixtures shared by the agent's tests (testonly): temporary directories, the manifests
// several test files apply, and loading YAML into objects or a State.
#ifndef NETPOL_AGENT_TESTING_FIXTURES_H_
#define NETPOL_AGENT_TESTING_FIXTURES_H_

#include <string>
#include <vector>

#include "engine/model/loader.h"

namespace netpol::agent::fixtures {

// Creates a fresh directory $TEST_TMPDIR/<prefix>XXXXXX (/tmp when TEST_TMPDIR is unset) and
// returns its path; fails the current test and returns "" when it cannot.
std::string MakeTempDir(const std::string& prefix);

// Removes `path` with everything below it; "" does nothing.
void RemoveTree(const std::string& path);

// Namespace shop: pod web (node-1, 10.1.0.10 and fd00:1::10, container port http 8080), pod
// client (node-1, 10.1.0.11), pod other (node-2, 10.2.0.5) and policy web-ingress: web accepts
// client on http, nothing else.
extern const char kShop[];

// One object of each kind that between them use most fields: namespace x (labels team: a), pod
// x/a (node n1, hostNetwork false, ports http 8080/TCP and 53/UDP, 10.0.0.1 and fd00::1) and
// policy x/allow (match expressions NotIn and Exists, both policy types, a pod+namespace peer, an
// ipBlock with except, named, ranged SCTP and protocol-only ports, an allow-all egress rule).
// For round trips through encodings.
extern const char kSample[];

// ClusterNetworkPolicies and Nodes that between them use every field: an Admin-tier policy
// `guard` (priority 10, a pods subject, ingress peers by namespaces and pods, tcp/udp/sctp
// numbers and ranges, a named port, egress to networks of both families and to nodes by a
// match expression), a Baseline-tier `isolate` (priority 0, a namespaces subject, Pass and
// Deny) and nodes n1 (labels, an IPv4 and an IPv6 address) and n2 (no addresses). For round
// trips through encodings.
extern const char kClusterSample[];

// Namespace x: pod a (app: web, node n1, 10.0.0.1, container port http 8080), pod b (app: `b_app`,
// node n1, 10.0.0.2) and policy web: pods app=web accept app=client on http. With `and_c`, also
// pod c (app: client, node n1, 10.0.0.3), a client whatever b is.
std::string WebAndClients(const std::string& b_app = "client", bool and_c = false);

// Loads `yaml`; fails the current test (and returns what loaded, possibly nothing) on an error.
std::vector<Object> LoadObjects(const std::string& yaml);
// The objects of `yaml` upserted into an empty State.
State LoadState(const std::string& yaml);

}  // namespace netpol::agent::fixtures

#endif  // NETPOL_AGENT_TESTING_FIXTURES_H_
