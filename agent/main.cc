// netpol-agent: the per-node daemon. Loads the object store, replaces the nftables table with
// the compiled program in one transaction, then serves the netpol.v1 gRPC API and keeps the
// kernel in sync. On SIGTERM/SIGINT it stops serving and exits 0, leaving the rules in the
// kernel (fail-static): pods stay enforced while the agent is down or being upgraded.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "agent/drift_watcher.h"
#include "agent/durable_file.h"
#include "agent/endpoints.h"
#include "agent/etcd/datastore.h"
#include "agent/etcd/node_status.h"
#include "agent/k8s/config.h"
#include "agent/k8s/datastore.h"
#include "agent/k8s/node_status.h"
#include "agent/log.h"
#include "agent/flow_log.h"
#include "agent/metrics.h"
#include "agent/node_status.h"
#include "agent/reconciler.h"
#include "agent/revoker.h"
#include "agent/server.h"
#include "agent/service.h"
#include "agent/store.h"
#include "engine/compiler/common.h"
#include "engine/compiler/compiler.h"
#include "engine/compiler/incremental.h"
#include "engine/model/loader.h"
#include "engine/netlink/change_monitor.h"
#include "engine/netlink/netlink_backend.h"
#include "engine/util/flags.h"
#include "engine/util/program.h"

ABSL_FLAG(std::string, node_name, "",
          "This node's name: pods whose spec.nodeName equals it are enforced here "
          "(default: the hostname)");
ABSL_FLAG(std::vector<std::string>, listen, {"unix:///run/netpol/agent.sock"},
          "Comma-separated gRPC listen addresses: unix:///path (mode 0600, may write) or "
          "host:port (TCP: read-only unless TLS with --client-ca)");
ABSL_FLAG(std::string, table, netpol::compiler::kDefaultTable,
          "The nftables table (family inet) the agent owns");
ABSL_FLAG(std::string, state_dir, "/var/lib/netpol", "Directory of the persistent object store");
ABSL_FLAG(std::string, metrics_listen, "",
          "host:port to serve Prometheus /metrics on (empty: no metrics)");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate for TCP listeners (enables TLS)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls-cert");
ABSL_FLAG(std::string, client_ca, "",
          "PEM CA: TCP clients presenting a certificate it signed may write");
ABSL_FLAG(std::string, datastore, "",
          "Where the objects live: empty for the embedded store in --state-dir (one node), "
          "etcd://HOST:PORT[,HOST:PORT...] for a shared etcd (many nodes; see docs/etcd.md), or "
          "kubernetes to list-watch the cluster's Namespaces, Pods and NetworkPolicies from its "
          "API server (read-only: netpolctl apply/delete are refused; see --kubeconfig)");
ABSL_FLAG(std::string, kubeconfig, "",
          "With --datastore=kubernetes: the kubeconfig file whose current context names the API "
          "server, its CA and the credentials (token, tokenFile or client certificate). Empty: "
          "in-cluster configuration (KUBERNETES_SERVICE_HOST/PORT and the service account "
          "directory, see --kube-service-account-dir)");
ABSL_FLAG(std::string, kube_service_account_dir, netpol::agent::k8s::kServiceAccountDir,
          "With --datastore=kubernetes and no --kubeconfig: the directory holding the service "
          "account's token (re-read when it rotates) and ca.crt");
ABSL_FLAG(int, kube_page_size, 500,
          "With --datastore=kubernetes: objects per list page (lists are decoded page by page)");
ABSL_FLAG(absl::Duration, kube_watch_timeout, absl::Minutes(5),
          "With --datastore=kubernetes: the server-side timeout of each watch, randomized "
          "between this and twice this; the watch then resumes from its last resourceVersion");
ABSL_FLAG(std::string, etcd_prefix, "/netpol/v1/", "Key prefix of the objects in etcd");
ABSL_FLAG(std::string, etcd_status_prefix, netpol::agent::etcd::kDefaultStatusPrefix,
          "Key prefix of the node status records in etcd (netpolctl status --all-nodes); must "
          "not overlap --etcd-prefix");
ABSL_FLAG(absl::Duration, node_status_ttl, absl::Seconds(30),
          "With a shared datastore: this node's published status stays live this long without "
          "renewal (renewed every third of it); past it, netpolctl status --all-nodes shows the "
          "node as stale");
ABSL_FLAG(std::string, node_status_namespace, "",
          "With --datastore=kubernetes: the namespace of the node status Leases (default: "
          "$POD_NAMESPACE, else kube-system)");
ABSL_FLAG(std::string, etcd_cacert, "", "PEM CA that signed etcd's server certificates (TLS)");
ABSL_FLAG(std::string, etcd_cert, "", "PEM client certificate for etcd (TLS client auth)");
ABSL_FLAG(std::string, etcd_key, "", "PEM private key of --etcd-cert");
ABSL_FLAG(absl::Duration, etcd_keepalive, absl::Seconds(10),
          "Ping etcd connections this often and drop one unanswered for as long, so a lost "
          "watch is noticed (etcd refuses pings more often than its --grpc-keepalive-min-time)");
ABSL_FLAG(absl::Duration, etcd_write_timeout, absl::Seconds(5),
          "The longest a write to etcd may take to learn its fate, waiting behind this node's "
          "other writes included: past it the write fails, 'not stored' when it never reached "
          "etcd, 'outcome unknown' when it may have");
ABSL_FLAG(bool, watch_changes, true,
          "Follow nf_tables change notifications and repair the table at once when anything "
          "else changes it (the periodic check still runs)");
ABSL_FLAG(bool, rule_counters, true,
          "Count packets and bytes in every rule of every group chain (engine/compiler/RULESET.md "
          "\"Counters\"): /metrics, `netpolctl get networkpolicies -o wide`, `netpolctl explain`");
ABSL_FLAG(bool, revoke_connections, true,
          "After a change, delete the conntrack entries of established flows it denies "
          "(targeted; flows that stay allowed are untouched)");
ABSL_FLAG(absl::Duration, revoke_interval, absl::Milliseconds(100),
          "Connection revocation lists the conntrack table right after a commit that denies "
          "flows, then at most once per this interval while such commits keep coming (each "
          "listing covers every commit since the previous one); 0: after every such commit. "
          "The denied flows of a commit are deleted within this interval plus one listing "
          "(docs/guarantees.md)");
ABSL_FLAG(int, max_pending_writes, netpol::agent::kDefaultMaxPendingWrites,
          "Backpressure: at most this many writes (Apply/Delete), as many CNI attachment "
          "changes and as many reads of the kernel wait at once; beyond, a request is refused "
          "at once with RESOURCE_EXHAUSTED and changes nothing (clients retry with backoff). "
          "0: unbounded");
ABSL_FLAG(int64_t, cold_start_chunk_elements, 20000,
          "When the table does not exist at start, build it in transactions of at most this "
          "many set elements, hooking it into the packet path only with the last, complete one "
          "(no single commit holds the kernel's nf_tables lock for long); an existing table is "
          "always replaced in one transaction. 0: one transaction");
ABSL_FLAG(absl::Duration, check_interval, absl::Seconds(60),
          "How often to compare the kernel's table with the expected program and repair drift "
          "(0 disables)");
ABSL_FLAG(int, deny_log_group, 100,
          "nflog group the drops of the compiled program are logged to and the agent reads "
          "(flow logs: netpolctl logs, FlowService, --flow-log); 0: no deny logs");
ABSL_FLAG(int, deny_log_rate, 10,
          "Logged drops per second per pod group and direction (a kernel limit per group chain; "
          "drops beyond it are counted, not logged)");
ABSL_FLAG(int, deny_log_burst, 20, "Burst of --deny-log-rate, in packets");
ABSL_FLAG(std::string, flow_log, "",
          "Append every flow record to this file as JSON lines (empty: no file)");
ABSL_FLAG(int64_t, flow_log_max_bytes, 64 << 20,
          "Rotate --flow-log (to PATH.1, replacing it) before it would pass this size");
ABSL_FLAG(int, flow_log_buffer, 1000, "Flow records held in memory for netpolctl logs");

namespace {

// The bytes of each logged packet sent to the agent: the IPv4/IPv6 header with options or
// extension headers and the transport ports.
constexpr uint32_t kDenyLogSnaplen = 128;

int Fail(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "netpol-agent: %s: %s\n", what.c_str(), status.ToString().c_str());
  return 1;
}

std::string Hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "";
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace netpol;        // NOLINT(build/namespaces): main only
  using namespace netpol::agent; // NOLINT(build/namespaces)
  const char kUsage[] =
      "netpol-agent: enforces Kubernetes NetworkPolicies on this node with nftables.\n"
      "Usage: netpol-agent [--node-name=N] [--listen=unix:///run/netpol/agent.sock] "
      "[--state-dir=/var/lib/netpol] [--table=netpol]";
  if (netpol::util::HandleHelpAndVersion(argc, argv, "netpol-agent", kUsage, std::cout)) {
    return 0;
  }
  absl::SetProgramUsageMessage(kUsage + std::strlen("netpol-agent: "));
  std::vector<std::string> arg_storage;
  std::vector<char*> args = netpol::util::DashedFlagsToUnderscores(argc, argv, &arg_storage);
  std::vector<char*> rest = absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  if (rest.size() > 1) {
    std::fprintf(stderr, "netpol-agent: unexpected argument %s (flags only; see --help)\n",
                 rest[1]);
    return 2;
  }

  // Files (state, sockets) are private to root by default.
  ::umask(077);
  // Signals are taken synchronously by sigwait below; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // Flags are checked before anything is opened: a name the compiler cannot write stops the
  // agent here with its reason, instead of failing every sync.
  std::string node = absl::GetFlag(FLAGS_node_name);
  // As the kubelet: a node named after its host has the host name in lower case.
  if (node.empty()) node = absl::AsciiStrToLower(Hostname());
  if (node.empty()) {
    return Fail("--node-name", absl::InvalidArgumentError("empty and no hostname to default to"));
  }
  if (absl::Status s = ValidateDnsSubdomain("a Kubernetes node name", node); !s.ok()) {
    return Fail("--node-name", s);
  }
  {
    compiler::CompileOptions opts;
    opts.table = absl::GetFlag(FLAGS_table);
    if (absl::Status s = compiler::ValidateOptions(opts); !s.ok()) return Fail("--table", s);
  }

  // 1. The store. A damaged file stops us here, before the kernel is touched. With etcd, the
  //    objects come from the first list; the state directory keeps the node's attachments.
  const std::string state_dir = absl::GetFlag(FLAGS_state_dir);
  std::unique_ptr<Datastore> store_owner;
  Store* embedded_store = nullptr;  // the embedded store, when it is the datastore
  etcd::EtcdDatastore* etcd_store = nullptr;
  k8s::KubernetesDatastore* kube_store = nullptr;
  std::unique_ptr<NodeStatusRegistry> kube_node_statuses;
  if (absl::GetFlag(FLAGS_datastore) == "kubernetes") {
    const std::string kubeconfig = absl::GetFlag(FLAGS_kubeconfig);
    absl::StatusOr<k8s::ClusterConfig> cluster =
        kubeconfig.empty() ? k8s::InClusterConfig(absl::GetFlag(FLAGS_kube_service_account_dir))
                           : k8s::LoadKubeconfig(kubeconfig);
    if (!cluster.ok()) return Fail("--datastore=kubernetes", cluster.status());
    k8s::DatastoreOptions kopts;
    kopts.cluster = *cluster;
    kopts.page_size = absl::GetFlag(FLAGS_kube_page_size);
    kopts.watch_timeout = absl::GetFlag(FLAGS_kube_watch_timeout);
    // The last synced State is kept in the state directory: a restart while the API server is
    // unreachable enforces and serves it (marked stale) instead of waiting.
    kopts.cache_dir = state_dir;
    absl::StatusOr<std::unique_ptr<k8s::KubernetesDatastore>> created =
        k8s::KubernetesDatastore::Create(kopts);
    if (!created.ok()) return Fail("--datastore=kubernetes", created.status());
    if (absl::Status st = PrepareStateDirectory(state_dir); !st.ok()) {
      return Fail("cannot use the state directory " + state_dir, st);
    }
    kube_store = created->get();
    store_owner = *std::move(created);
    std::string status_ns = absl::GetFlag(FLAGS_node_status_namespace);
    if (status_ns.empty()) {
      const char* env = std::getenv("POD_NAMESPACE");
      status_ns = env != nullptr && *env != '\0' ? env : "kube-system";
    }
    kube_node_statuses = std::make_unique<k8s::KubernetesNodeStatus>(*cluster, status_ns, node);
    LogInfo(absl::StrCat("datastore: kubernetes ", cluster->server, " from ", cluster->source,
                         " (read-only: objects come from the API server)"));
  } else if (absl::GetFlag(FLAGS_datastore).empty()) {
    absl::StatusOr<std::unique_ptr<Store>> opened = Store::Open(state_dir);
    if (!opened.ok()) return Fail("cannot load the object store", opened.status());
    Snapshot first = (*opened)->Current();
    LogInfo(absl::StrCat("loaded ", (*opened)->path(), ": generation ", first.generation, ", ",
                         first.state->namespaces.size(), " namespaces, ",
                         first.state->pods.size(), " pods, ", first.state->policies.size(),
                         " policies"));
    embedded_store = opened->get();
    store_owner = *std::move(opened);
  } else {
    if (!absl::GetFlag(FLAGS_kubeconfig).empty()) {
      return Fail("--kubeconfig", absl::InvalidArgumentError("only with --datastore=kubernetes"));
    }
    etcd::DatastoreOptions eopts;
    absl::StatusOr<std::vector<std::string>> endpoints =
        etcd::ParseEtcdUrl(absl::GetFlag(FLAGS_datastore));
    if (!endpoints.ok()) return Fail("--datastore", endpoints.status());
    eopts.client.endpoints = *endpoints;
    eopts.client.ca_file = absl::GetFlag(FLAGS_etcd_cacert);
    eopts.client.cert_file = absl::GetFlag(FLAGS_etcd_cert);
    eopts.client.key_file = absl::GetFlag(FLAGS_etcd_key);
    eopts.client.keepalive_time = absl::GetFlag(FLAGS_etcd_keepalive);
    eopts.client.keepalive_timeout = absl::GetFlag(FLAGS_etcd_keepalive);
    eopts.prefix = absl::GetFlag(FLAGS_etcd_prefix);
    eopts.write_deadline = absl::GetFlag(FLAGS_etcd_write_timeout);
    // The last synced State is kept in the state directory: a restart while etcd is down
    // enforces and serves it (marked stale) instead of waiting for etcd.
    eopts.cache_dir = state_dir;
    absl::StatusOr<std::unique_ptr<etcd::EtcdDatastore>> created =
        etcd::EtcdDatastore::Create(eopts);
    if (!created.ok()) return Fail("--datastore", created.status());
    if (absl::Status st = PrepareStateDirectory(state_dir); !st.ok()) {
      return Fail("cannot use the state directory " + state_dir, st);
    }
    etcd_store = created->get();
    store_owner = *std::move(created);
    LogInfo(absl::StrCat("datastore: etcd ", absl::GetFlag(FLAGS_datastore), " prefix ",
                         eopts.prefix));
  }
  Datastore* store_ptr = store_owner.get();

  // 1b. The node's CNI attachments, re-asserted before the first sync. None is dropped here:
  //     whether a pod still runs is never judged by a netns path this process may not see;
  //     attachments go with DEL, GC or a replacement (agent/attachments.h).
  absl::StatusOr<std::unique_ptr<Endpoints>> endpoints = Endpoints::Open(state_dir);
  if (!endpoints.ok()) return Fail("cannot load the CNI attachments", endpoints.status());
  auto reconcile_attachments = [&]() -> absl::Status {
    if (absl::Status st = ReconcileAtStart(store_ptr, endpoints->get()); !st.ok()) return st;
    LogInfo(absl::StrCat("loaded ", (*endpoints)->path(), ": ",
                         (*endpoints)->Current()->size(), " attachments"));
    return absl::OkStatus();
  };
  // With etcd or Kubernetes this waits for the first list (step 4).
  if (kube_store != nullptr) {
    Endpoints* e = endpoints->get();
    kube_store->SetAttachments([e] { return e->Current(); });
  }
  if (etcd_store == nullptr && kube_store == nullptr) {
    absl::Status st = reconcile_attachments();
    if (!st.ok()) return Fail("cannot reconcile the CNI attachments", st);
  }

  // 2. The kernel.
  absl::StatusOr<std::unique_ptr<netlink::NetlinkBackend>> backend =
      netlink::NetlinkBackend::Create();
  if (!backend.ok()) return Fail("cannot open the nf_tables netlink socket", backend.status());

  ReconcilerOptions ropts;
  ropts.compile.table = absl::GetFlag(FLAGS_table);
  ropts.compile.node_name = node;
  ropts.compile.rule_counters = absl::GetFlag(FLAGS_rule_counters);
  const int deny_log_group = absl::GetFlag(FLAGS_deny_log_group);
  if (deny_log_group < 0 || deny_log_group > 65535) {
    return Fail("--deny-log-group", absl::InvalidArgumentError("must be 0-65535"));
  }
  if (deny_log_group != 0) {
    compiler::CompileOptions::DenyLog d;
    d.group = static_cast<uint16_t>(deny_log_group);
    d.rate = static_cast<uint32_t>(std::max(0, absl::GetFlag(FLAGS_deny_log_rate)));
    d.burst = static_cast<uint32_t>(std::max(0, absl::GetFlag(FLAGS_deny_log_burst)));
    d.snaplen = kDenyLogSnaplen;
    ropts.compile.deny_log = d;
    if (absl::Status st = compiler::ValidateOptions(ropts.compile); !st.ok()) {
      return Fail("--deny-log-rate/--deny-log-burst", st);
    }
  }
  // Flow logs: the reader of the nflog group. Without it the kernel still limits and counts.
  std::unique_ptr<FlowLog> flow_log;
  std::unique_ptr<netlink::NetlinkBackend> counter_reader;
  absl::Mutex counter_mu;
  if (deny_log_group != 0) {
    absl::StatusOr<std::unique_ptr<netlink::NetlinkBackend>> cr =
        netlink::NetlinkBackend::Create();
    if (cr.ok()) counter_reader = *std::move(cr);
    FlowLogOptions fopts;
    fopts.group = static_cast<uint16_t>(deny_log_group);
    fopts.node = node;
    fopts.state = [store_ptr] { return store_ptr->Current().state; };
    fopts.buffer = static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_flow_log_buffer)));
    fopts.file = absl::GetFlag(FLAGS_flow_log);
    fopts.file_max_bytes = static_cast<uint64_t>(std::max<int64_t>(
        4096, absl::GetFlag(FLAGS_flow_log_max_bytes)));
    const std::string table = ropts.compile.table;
    fopts.suppressed = [&counter_reader, &counter_mu, table]() -> absl::StatusOr<uint64_t> {
      absl::MutexLock lock(&counter_mu);
      if (counter_reader == nullptr) return absl::UnavailableError("no netlink socket");
      absl::StatusOr<std::vector<nft::RuleCount>> cs = counter_reader->ReadCounters(table);
      if (!cs.ok()) return cs.status();
      uint64_t sum = 0;
      for (const nft::RuleCount& c : *cs) {
        if (absl::StartsWith(c.comment, compiler::internal::kSuppressedCommentPrefix)) {
          sum += c.packets;
        }
      }
      return sum;
    };
    absl::StatusOr<std::unique_ptr<FlowLog>> fl = FlowLog::Start(std::move(fopts));
    if (fl.ok()) {
      flow_log = *std::move(fl);
    } else {
      LogWarning(absl::StrCat("flow logs are off: ", fl.status().ToString(),
                              " (the kernel still limits and counts the logged drops)"));
    }
  }
  ropts.check_interval = absl::GetFlag(FLAGS_check_interval);
  ropts.cold_start_chunk_elements =
      static_cast<size_t>(std::max<int64_t>(0, absl::GetFlag(FLAGS_cold_start_chunk_elements)));
  Endpoints* endpoints_ptr = endpoints->get();
  ropts.attached_pods = [endpoints_ptr] { return AttachedPods(*endpoints_ptr->Current()); };
  // Incremental syncs read the datastore's change log; nullopt (etcd, or a range older than
  // the log) makes the reconciler compile the whole State.
  ropts.changes = [store_ptr](uint64_t from, uint64_t to) {
    return store_ptr->ChangesBetween(from, to);
  };
  // Established connections a change denies are cut right after its commit, by the revoker's
  // worker (started below, once the reconciler exists), within --revoke-interval under churn.
  Revoker revoker;
  if (absl::GetFlag(FLAGS_revoke_interval) < absl::ZeroDuration()) {
    return Fail("--revoke-interval", absl::InvalidArgumentError("must not be negative"));
  }
  if (absl::GetFlag(FLAGS_revoke_connections)) {
    ropts.after_commit = [&revoker](const nft::Program* before, const nft::Transaction& tx,
                                    const nft::Program& after) {
      revoker.AfterCommit(before, tx, after);
    };
  }
  // Rule counters are read on a socket of their own, so a scrape never waits for a sync.
  std::unique_ptr<netlink::NetlinkBackend> rule_counter_reader;
  if (ropts.compile.rule_counters) {
    absl::StatusOr<std::unique_ptr<netlink::NetlinkBackend>> cr =
        netlink::NetlinkBackend::Create();
    if (!cr.ok()) return Fail("--rule-counters", cr.status());
    rule_counter_reader = *std::move(cr);
    ropts.counter_backend = rule_counter_reader.get();
  }
  Reconciler reconciler(backend->get(), [store_ptr] { return store_ptr->Current(); }, ropts);
  if (embedded_store != nullptr) {
    // A write's compile and kernel commit run while its journal record is fsynced (store.h).
    Store::SyncHooks hooks;
    hooks.written = [&reconciler](const Snapshot& next, const ChangedKeys& keys) {
      reconciler.Offer(next, keys);
    };
    hooks.failed = [&reconciler](uint64_t generation) {
      absl::Status st = reconciler.Withdraw(generation);
      if (!st.ok()) {
        LogError(absl::StrCat("generation ", generation, " could not be stored and taking it "
                              "back from the kernel failed (retrying): ", st.ToString()));
      }
    };
    embedded_store->set_sync_hooks(std::move(hooks));
  }
  if (absl::GetFlag(FLAGS_revoke_connections)) {
    revoker.StartDeferred(
        [&reconciler](const std::function<void(const nft::Program&)>& judge) {
          reconciler.WithCommitted(judge);
        },
        absl::GetFlag(FLAGS_revoke_interval));
  }
  AgentService service(store_ptr, &reconciler);
  service.set_endpoints(endpoints_ptr);
  service.set_max_pending(absl::GetFlag(FLAGS_max_pending_writes));
  EndpointApi endpoint_api(store_ptr, &reconciler, endpoints_ptr);

  // 2b. This node's status in the shared datastore (netpolctl status --all-nodes).
  std::unique_ptr<NodeStatusRegistry> node_statuses = std::move(kube_node_statuses);
  if (etcd_store != nullptr) {
    absl::StatusOr<std::unique_ptr<etcd::EtcdNodeStatus>> created = etcd::EtcdNodeStatus::Create(
        etcd_store->client(), absl::GetFlag(FLAGS_etcd_status_prefix),
        absl::GetFlag(FLAGS_etcd_prefix), node);
    if (!created.ok()) return Fail("--etcd-status-prefix", created.status());
    node_statuses = *std::move(created);
  }
  std::unique_ptr<NodeStatusPublisher> status_publisher;
  if (node_statuses != nullptr) {
    if (absl::GetFlag(FLAGS_node_status_ttl) < absl::Seconds(1)) {
      return Fail("--node-status-ttl", absl::InvalidArgumentError("must be at least 1s"));
    }
    service.set_node_statuses(node_statuses.get());
    NodeStatusPublisherOptions popts;
    popts.ttl = absl::GetFlag(FLAGS_node_status_ttl);
    status_publisher = std::make_unique<NodeStatusPublisher>(
        node_statuses.get(), [&service] { return service.OwnNodeStatus(); }, popts);
  }

  // 3. The API (UNAVAILABLE / NOT_SERVING until the first sync).
  ServerOptions sopts;
  sopts.listen = absl::GetFlag(FLAGS_listen);
  sopts.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  sopts.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  sopts.client_ca_file = absl::GetFlag(FLAGS_client_ca);
  sopts.endpoints = &endpoint_api;
  sopts.flow_log = flow_log.get();
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(&service, sopts);
  if (!server.ok()) return Fail("cannot start the gRPC server", server.status());
  std::unique_ptr<MetricsServer> metrics;
  if (!absl::GetFlag(FLAGS_metrics_listen).empty()) {
    absl::StatusOr<std::unique_ptr<MetricsServer>> m =
        MetricsServer::Start(absl::GetFlag(FLAGS_metrics_listen), &service);
    if (!m.ok()) return Fail("cannot serve metrics", m.status());
    metrics = *std::move(m);
  }
  LogInfo(absl::StrCat("netpol-agent node=", node, " table=inet ", ropts.compile.table,
                       " listening on ", absl::StrJoin(sopts.listen, ", ")));

  // 4. The first sync replaces whatever table is there in one transaction; on failure the
  //    worker retries and the API stays UNAVAILABLE with the error in Status. With etcd it
  //    waits for the first list: until then the kernel keeps whatever table it has.
  std::atomic<bool> stopping{false};
  // Drift repair on notification: the monitor subscribes now, before the first sync, so no
  // change after it goes unseen; the watcher starts with the reconciler.
  std::unique_ptr<netlink::ChangeMonitor> monitor;
  std::unique_ptr<DriftWatcher> watcher;
  if (absl::GetFlag(FLAGS_watch_changes)) {
    absl::StatusOr<std::unique_ptr<netlink::ChangeMonitor>> m =
        netlink::ChangeMonitor::Create(ropts.compile.table);
    if (m.ok()) {
      monitor = *std::move(m);
      netlink::ChangeMonitor* mon = monitor.get();
      watcher = std::make_unique<DriftWatcher>(
          [mon](int timeout_ms) { return mon->ReadChanges(timeout_ms); },
          (*backend)->port_id(), [&reconciler] { return reconciler.CheckNow(); });
    } else {
      LogWarning(absl::StrCat("cannot follow nf_tables changes (periodic checks only): ",
                              m.status().ToString()));
    }
  }
  auto start_syncing = [&] {
    absl::Status first_sync = reconciler.SyncNow();
    if (!first_sync.ok()) {
      LogError(absl::StrCat("first sync failed (retrying): ", first_sync.ToString()));
    }
    reconciler.Start();
    if (watcher != nullptr) watcher->Start();
  };
  // A remote datastore (etcd, the Kubernetes API) is started, then enforced as soon as it has
  // a State: its first lists, or its state cache at once (the CNI attachments are reconciled
  // once it is listed, not against a cached State).
  std::thread etcd_starter;
  auto reconcile_attachments_logged = [&] {
    absl::Status st = reconcile_attachments();
    if (!st.ok()) LogError(absl::StrCat("cannot reconcile the CNI attachments: ", st.ToString()));
  };
  auto start_remote = [&](auto* store, std::string no_state_warning,
                          std::function<std::string()> cached_warning) {
    store->SetListener([&reconciler] { reconciler.Notify(); });
    store->Start();
    etcd_starter = std::thread([&, store, no_state_warning, cached_warning] {
      while (!stopping.load() && !store->WaitForState(absl::Seconds(10))) {
        LogWarning(no_state_warning);
      }
      if (stopping.load()) return;
      if (store->status().synced) {
        reconcile_attachments_logged();
        start_syncing();
        return;
      }
      start_syncing();
      while (!stopping.load() && !store->WaitSynced(absl::Seconds(10))) {
        LogWarning(cached_warning());
      }
      if (stopping.load()) return;
      reconcile_attachments_logged();
      reconciler.Notify();
    });
  };
  if (kube_store != nullptr) {
    start_remote(kube_store,
                 "kubernetes: not listed yet and no state cache; the kernel keeps its table "
                 "as it is until the first lists arrive",
                 [] {
                   return std::string(
                       "kubernetes: not listed yet; enforcing and serving the cached state");
                 });
  } else if (etcd_store != nullptr) {
    start_remote(etcd_store,
                 "etcd: no list yet and no state cache; the kernel keeps its table as it is "
                 "until a list arrives",
                 [etcd_store] {
                   return absl::StrCat(
                       "etcd: not listed yet; enforcing and serving the cached state of "
                       "revision ",
                       etcd_store->Current().generation);
                 });
  } else {
    start_syncing();
  }
  if (status_publisher != nullptr) status_publisher->Start();
  std::thread ready([&] {
    while (!stopping.load()) {
      if (service.Ready()) {
        (*server)->SetServing(true);
        LogInfo("serving");
        return;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
  });

  int sig = 0;
  sigwait(&signals, &sig);
  LogInfo(absl::StrCat("received signal ", sig, ": stopping; the rules stay in the kernel"));
  stopping.store(true);
  ready.join();
  if (etcd_starter.joinable()) etcd_starter.detach();  // may wait for etcd; _Exit ends it
  (*server)->SetServing(false);
  (*server)->Shutdown(absl::Seconds(5));
  // A clean stop ends this node's liveness at once: it shows as stale, not as current.
  if (status_publisher != nullptr) status_publisher->Stop();
  // Revocations still queued are done first (a few milliseconds; bounded, in case a wedged
  // kernel call holds the reconciler).
  if (!revoker.Flush(absl::Seconds(2))) {
    LogWarning("stopping with connection revocations still queued");
  }
  // Exit without waiting for a sync in flight: a kernel transaction is atomic and every store
  // change is fsynced before it is acknowledged, so stopping anywhere leaves both consistent,
  // and a wedged kernel call must not hold up the shutdown.
  LogInfo("stopped");
  std::_Exit(0);
}
