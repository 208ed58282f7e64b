// The benchmark workloads: seeded, deterministic clusters of Namespaces, Pods and
// NetworkPolicies shaped like real ones, shared by every benchmark (compile, diff, incremental,
// commit, datapath).
//
// Tiers:
//   T1    1,000 pods /    50 namespaces /    100 policies
//   T2   10,000 pods /   500 namespaces /  1,000 policies
//   T3    3,500 pods / 1,000 namespaces / 12,000 policies  (many policies per namespace)
//   T4  100,000 pods / 5,000 namespaces / 20,000 policies
// The measured node is kMeasuredNode with 110 local pods (500 in the "-dense" variant); every
// other node holds 110 pods. Variants are suffixes of the tier name, combinable:
//   -dense   500 local pods on the measured node
//   -cidr    CIDR-heavy: 10,000 ipBlock peers spread over the ipBlock policies
//   -ranges  port ranges (endPort) instead of single numeric and named ports
//   -unique  a unique label per pod, and per-pod policies selecting by it
//   -dual    dual stack: every pod also has an IPv6 address
//
// Policy mix, per namespace in rounds (round 0 of every namespace first, then round 1, ...):
//   round 0: default-deny ingress (podSelector {}).
//   round k >= 1 cycles through, shifted per namespace:
//     allow from the same namespace; allow from labelled namespaces on a named port;
//     namespace+pod selector peer on a numeric port; ipBlock with except on a port and a
//     port range; egress to DNS (kube-system/kube-dns, UDP and TCP 53); egress to the database
//     pods on a named port plus the internet (0.0.0.0/0 except 10.0.0.0/8) on 443; allow from
//     monitoring (namespaceSelector + podSelector) on the named metrics port.
//
// Addresses: node k owns 10.0.0.0/8 + k*1024 (a /22; pod hosts from .2), IPv6 fd00:10:0:k::/64.
// Pods made by the event generators below live in 10.240.0.0/12 and fd00:11::/64.
//
// Everything is drawn from a SplitMix64 stream seeded with WorkloadSpec::seed, so a (spec,
// seed) pair means the same objects on every machine.
#ifndef NETPOL_BENCHMARKS_WORKLOAD_WORKLOAD_H_
#define NETPOL_BENCHMARKS_WORKLOAD_WORKLOAD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model/model.h"

namespace netpol::bench {

// The node whose table the benchmarks compile and commit.
inline constexpr char kMeasuredNode[] = "node-0";

struct WorkloadSpec {
  std::string name = "custom";
  int pods = 1000;
  int namespaces = 50;
  int policies = 100;
  int local_pods = 110;     // pods on kMeasuredNode (at most 1,000: one /22)
  int pods_per_node = 110;  // pods on each other node
  bool dual_stack = false;
  int ipblocks = 0;         // > 0: spread this many ipBlock peers over the ipBlock policies
  bool port_ranges = false;
  bool unique_labels = false;
  uint64_t seed = 1;
};

// Returns the spec of "T1".."T4" with optional variant suffixes ("T2-dense", "T1-cidr-dual").
// InvalidArgument naming the unknown tier or suffix.
absl::StatusOr<WorkloadSpec> ParseTier(absl::string_view name);
// "T1", "T2", "T3", "T4".
std::vector<std::string> TierNames();

// Returns InvalidArgument when the spec cannot be generated (non-positive counts, more
// namespaces than pods allow for, more than 1,000 local pods, ...).
absl::Status Validate(const WorkloadSpec& spec);

// Generates the cluster. `spec` must pass Validate (checked: an invalid spec yields an error).
absl::StatusOr<State> Generate(const WorkloadSpec& spec);

// Counts for reports.
struct WorkloadStats {
  int namespaces = 0, pods = 0, local_pods = 0, nodes = 0, policies = 0;
  int ingress_policies = 0, egress_policies = 0, ipblock_peers = 0, named_ports = 0,
      port_ranges = 0;
};
WorkloadStats Stats(const State& state, const std::string& node = kMeasuredNode);

// ---- events for the incremental benchmarks (deterministic in `n`) ----

// A new pod, not yet in `state`, in an existing namespace, with the labels of an existing app
// of that namespace, on `node`. Its address is unique for every n (10.240.0.0/12 + n).
Pod EventPod(const State& state, uint64_t n, const std::string& node, bool dual_stack = false);
// A copy of `pod` whose app label moves to another app of its namespace (role follows).
Pod RelabeledPod(const Pod& pod, uint64_t n);
// A new policy (name "event-<n>") of the tier's mix, in an existing namespace.
NetworkPolicy EventPolicy(const State& state, const WorkloadSpec& spec, uint64_t n);

// ---- the datapath benchmark's cluster ----

// Addresses of the two lab pods (tests/lab's default node: bridge 10.244.1.1/24).
inline constexpr char kDatapathNode[] = "node-1";
inline constexpr char kDatapathClientV4[] = "10.244.1.17";
inline constexpr char kDatapathServerV4[] = "10.244.1.18";
inline constexpr char kDatapathClientV6[] = "fd00:10:244:1::11";
inline constexpr char kDatapathServerV6[] = "fd00:10:244:1::12";
inline constexpr int kDatapathPort = 8080;

// A cluster for the connection benchmark: namespaces dp-client (client pod, app=client) and
// dp-server (server pod, app=server, port http=8080) on kDatapathNode, `background_pods` pods in
// 50 labelled namespaces on other nodes, and `policies` policies in dp-server that all select
// the server pod. Each allows ingress from a different peer that the client does not match
// (labelled namespaces, pods, namespace+pod, ipBlock with except) on numeric, named or ranged
// ports; the last one ("allow-client") is the only one allowing the client on TCP 8080.
// policies == 0: no policy at all (the server is not isolated).
absl::StatusOr<State> DatapathState(int policies, int background_pods, uint64_t seed);

// All objects of `state` in the order namespaces, pods, policies, as a multi-document YAML
// stream the loader reads back into the same State.
std::string StateToYaml(const State& state);

}  // namespace netpol::bench

#endif  // NETPOL_BENCHMARKS_WORKLOAD_WORKLOAD_H_
