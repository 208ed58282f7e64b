// netpol-agent: the per-node daemon. Loads the object store, replaces the nftables table with
// the compiled program in one transaction, then serves the netpol.v1 gRPC API and keeps the
// kernel in sync. On SIGTERM/SIGINT it stops serving and exits 0, leaving the rules in the
// kernel (fail-static): pods stay enforced while the agent is down or being upgraded.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "agent/log.h"
#include "agent/metrics.h"
#include "agent/reconciler.h"
#include "agent/server.h"
#include "agent/service.h"
#include "agent/store.h"
#include "engine/compiler/compiler.h"
#include "engine/netlink/netlink_backend.h"

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
ABSL_FLAG(absl::Duration, check_interval, absl::Seconds(60),
          "How often to compare the kernel's table with the expected program and repair drift "
          "(0 disables)");

namespace {

// Abseil flag names are C identifiers; accept the dashed spelling users expect from Kubernetes
// tools (--node-name) by rewriting dashes in flag names (not values) to underscores.
std::vector<char*> DashedFlagsToUnderscores(int argc, char** argv, std::vector<std::string>* storage) {
  storage->assign(argv, argv + argc);
  for (size_t i = 1; i < storage->size(); ++i) {
    std::string& a = (*storage)[i];
    if (a == "--") break;
    if (a.size() < 2 || a[0] != '-') continue;
    size_t start = a.find_first_not_of('-');
    size_t end = std::min(a.find('='), a.size());
    for (size_t j = start; j < end; ++j) {
      if (a[j] == '-') a[j] = '_';
    }
  }
  std::vector<char*> out;
  for (std::string& s : *storage) out.push_back(s.data());
  return out;
}

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
  absl::SetProgramUsageMessage(
      "enforces Kubernetes NetworkPolicies on this node with nftables.\n"
      "Usage: netpol-agent [--node-name=N] [--listen=unix:///run/netpol/agent.sock] "
      "[--state-dir=/var/lib/netpol] [--table=netpol]");
  std::vector<std::string> arg_storage;
  std::vector<char*> args = DashedFlagsToUnderscores(argc, argv, &arg_storage);
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

  std::string node = absl::GetFlag(FLAGS_node_name);
  if (node.empty()) node = Hostname();
  if (node.empty()) {
    return Fail("--node-name", absl::InvalidArgumentError("empty and no hostname to default to"));
  }

  // 1. The store. A damaged file stops us here, before the kernel is touched.
  const std::string state_dir = absl::GetFlag(FLAGS_state_dir);
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(state_dir);
  if (!store.ok()) return Fail("cannot load the object store", store.status());
  Snapshot first = (*store)->Current();
  LogInfo(absl::StrCat("loaded ", (*store)->path(), ": generation ", first.generation, ", ",
                       first.state->namespaces.size(), " namespaces, ", first.state->pods.size(),
                       " pods, ", first.state->policies.size(), " policies"));

  // 2. The kernel.
  absl::StatusOr<std::unique_ptr<netlink::NetlinkBackend>> backend =
      netlink::NetlinkBackend::Create();
  if (!backend.ok()) return Fail("cannot open the nf_tables netlink socket", backend.status());

  ReconcilerOptions ropts;
  ropts.compile.table = absl::GetFlag(FLAGS_table);
  ropts.compile.node_name = node;
  ropts.check_interval = absl::GetFlag(FLAGS_check_interval);
  Store* store_ptr = store->get();
  Reconciler reconciler(backend->get(), [store_ptr] { return store_ptr->Current(); }, ropts);
  AgentService service(store_ptr, &reconciler);

  // 3. The API (UNAVAILABLE / NOT_SERVING until the first sync).
  ServerOptions sopts;
  sopts.listen = absl::GetFlag(FLAGS_listen);
  sopts.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  sopts.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  sopts.client_ca_file = absl::GetFlag(FLAGS_client_ca);
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
  //    worker retries and the API stays UNAVAILABLE with the error in Status.
  absl::Status first_sync = reconciler.SyncNow();
  if (!first_sync.ok()) {
    LogError(absl::StrCat("first sync failed (retrying): ", first_sync.ToString()));
  }
  reconciler.Start();
  std::atomic<bool> stopping{false};
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
  (*server)->SetServing(false);
  (*server)->Shutdown(absl::Seconds(5));
  // Exit without waiting for a sync in flight: a kernel transaction is atomic and the store
  // file is replaced by rename, so stopping anywhere leaves both consistent, and a wedged
  // kernel call must not hold up the shutdown.
  LogInfo("stopped");
  std::_Exit(0);
}
