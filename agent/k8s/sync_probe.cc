// k8s_sync_probe: runs the Kubernetes datastore alone (no kernel) and prints, one JSON line
// each, every generation it publishes (the keys it changed and the whole State) and every
// change of its status. Tests drive the API server and read these lines. With --node_name each
// generation's line also holds the program the agent's compiler makes of it for that node
// (nft text).
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/k8s/config.h"
#include "agent/k8s/datastore.h"
#include "engine/compiler/compiler.h"
#include "engine/nft/transaction.h"

ABSL_FLAG(std::string, kubeconfig, "", "kubeconfig file");
ABSL_FLAG(int, page_size, 500, "objects per list page");
ABSL_FLAG(absl::Duration, watch_timeout, absl::Minutes(5), "server-side watch timeout");
ABSL_FLAG(absl::Duration, retry_max, absl::Seconds(2), "backoff cap");
ABSL_FLAG(std::string, node_name, "",
          "when set, each generation line holds the program compiled for this node");
ABSL_FLAG(std::string, state_dir, "",
          "state cache directory (each generation is saved before its line is printed)");

namespace {

using namespace netpol;         // NOLINT
using namespace netpol::agent;  // NOLINT

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(&out, "\\u00", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
      continue;
    }
    out += c;
  }
  return out + "\"";
}

std::string List(const std::set<std::string>& keys) {
  std::vector<std::string> q;
  for (const std::string& k : keys) q.push_back(Quote(k));
  return absl::StrCat("[", absl::StrJoin(q, ","), "]");
}

std::string LabelsJson(const Labels& labels) {
  std::vector<std::string> q;
  for (const auto& [k, v] : labels) q.push_back(absl::StrCat(Quote(k), ":", Quote(v)));
  return absl::StrCat("{", absl::StrJoin(q, ","), "}");
}

std::string StateJson(const State& s) {
  std::vector<std::string> ns, pods, policies;
  for (const auto& [k, n] : s.namespaces) ns.push_back(absl::StrCat(Quote(k), ":", LabelsJson(n.labels)));
  for (const auto& [k, p] : s.pods) {
    std::vector<std::string> ips, ports;
    for (const IpAddr& ip : p.ips) ips.push_back(Quote(ip.ToString()));
    for (const ContainerPort& cp : p.ports) {
      ports.push_back(Quote(absl::StrCat(cp.name, "=", cp.container_port, "/", ProtocolName(cp.protocol))));
    }
    pods.push_back(absl::StrCat(Quote(k), ":{\"labels\":", LabelsJson(p.labels),
                                ",\"node\":", Quote(p.node_name), ",\"hostNetwork\":",
                                p.host_network ? "true" : "false", ",\"ips\":[",
                                absl::StrJoin(ips, ","), "],\"ports\":[", absl::StrJoin(ports, ","),
                                "]}"));
  }
  for (const auto& [k, p] : s.policies) policies.push_back(Quote(k));
  std::vector<std::string> cnps, nodes;
  for (const auto& [k, c] : s.cluster_policies) {
    cnps.push_back(absl::StrCat(Quote(k), ":{\"tier\":", Quote(CnpTierName(c.tier)),
                                ",\"priority\":", c.priority, ",\"ingress\":", c.ingress.size(),
                                ",\"egress\":", c.egress.size(), "}"));
  }
  for (const auto& [k, n] : s.nodes) {
    std::vector<std::string> ips;
    for (const IpAddr& ip : n.ips) ips.push_back(Quote(ip.ToString()));
    nodes.push_back(absl::StrCat(Quote(k), ":{\"labels\":", LabelsJson(n.labels), ",\"ips\":[",
                                 absl::StrJoin(ips, ","), "]}"));
  }
  return absl::StrCat("{\"namespaces\":{", absl::StrJoin(ns, ","), "},\"pods\":{",
                      absl::StrJoin(pods, ","), "},\"policies\":[", absl::StrJoin(policies, ","),
                      "],\"clusterNetworkPolicies\":{", absl::StrJoin(cnps, ","), "},\"nodes\":{",
                      absl::StrJoin(nodes, ","), "}}");
}

std::string StatusJson(const k8s::KubernetesStatus& s) {
  std::vector<std::string> resources, invalid;
  for (const k8s::ResourceStatus& r : s.resources) {
    resources.push_back(absl::StrCat(
        "{\"resource\":", Quote(k8s::ResourceName(r.resource)), ",\"resourceVersion\":",
        Quote(r.resource_version), ",\"watching\":", r.watching ? "true" : "false",
        ",\"absent\":", r.absent ? "true" : "false",
        ",\"error\":", Quote(r.error.ok() ? "" : std::string(r.error.message())), "}"));
  }
  for (const std::string& i : s.invalid) invalid.push_back(Quote(i));
  return absl::StrCat("{\"synced\":", s.synced ? "true" : "false", ",\"fromCache\":",
                      s.from_cache ? "true" : "false", ",\"lists\":", s.lists,
                      ",\"pages\":", s.pages, ",\"relists\":", s.relists, ",\"events\":",
                      s.events, ",\"resourceVersion\":", Quote(s.resource_version),
                      ",\"invalid\":[", absl::StrJoin(invalid, ","), "],\"resources\":[",
                      absl::StrJoin(resources, ","), "]}");
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<k8s::ClusterConfig> cluster = k8s::LoadKubeconfig(absl::GetFlag(FLAGS_kubeconfig));
  if (!cluster.ok()) {
    std::fprintf(stderr, "%s\n", cluster.status().ToString().c_str());
    return 1;
  }
  k8s::DatastoreOptions options;
  options.cluster = *cluster;
  options.page_size = absl::GetFlag(FLAGS_page_size);
  options.watch_timeout = absl::GetFlag(FLAGS_watch_timeout);
  options.retry_max = absl::GetFlag(FLAGS_retry_max);
  options.cache_dir = absl::GetFlag(FLAGS_state_dir);
  absl::StatusOr<std::unique_ptr<k8s::KubernetesDatastore>> ds =
      k8s::KubernetesDatastore::Create(options);
  if (!ds.ok()) {
    std::fprintf(stderr, "%s\n", ds.status().ToString().c_str());
    return 1;
  }
  k8s::KubernetesDatastore* store = ds->get();
  const std::string node_name = absl::GetFlag(FLAGS_node_name);
  absl::Mutex mu;
  uint64_t printed = 0;
  auto print = [&] {
    absl::MutexLock l(&mu);
    Snapshot s = store->Current();
    if (s.generation == printed) return;
    store->FlushStateCache();
    std::optional<ChangedKeys> keys = store->ChangesBetween(printed, s.generation);
    std::string changed = "null";
    if (keys) {
      changed = absl::StrCat("{\"namespaces\":", List(keys->namespaces), ",\"pods\":",
                             List(keys->pods), ",\"policies\":", List(keys->policies),
                             ",\"clusterNetworkPolicies\":", List(keys->cluster_policies),
                             ",\"nodes\":", List(keys->nodes), "}");
    }
    std::string program;
    if (!node_name.empty()) {
      compiler::CompileOptions copts;
      copts.node_name = node_name;
      absl::StatusOr<nft::Program> p = compiler::Compile(*s.state, copts);
      program = absl::StrCat(",\"program\":", Quote(p.ok() ? nft::RenderProgram(*p) : ""),
                             ",\"compileError\":",
                             Quote(p.ok() ? "" : std::string(p.status().message())));
    }
    std::printf("{\"generation\":%llu,\"from\":%llu,\"changed\":%s,\"state\":%s%s,\"status\":%s}\n",
                static_cast<unsigned long long>(s.generation),
                static_cast<unsigned long long>(printed), changed.c_str(),
                StateJson(*s.state).c_str(), program.c_str(), StatusJson(store->status()).c_str());
    std::fflush(stdout);
    printed = s.generation;
  };
  store->SetListener(print);
  store->Start();
  print();  // the state cache's State, when Start published one
  std::string last;
  for (;;) {
    std::string now = StatusJson(store->status());
    if (now != last) {
      absl::MutexLock l(&mu);
      std::printf("{\"status\":%s}\n", now.c_str());
      std::fflush(stdout);
      last = now;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
}
