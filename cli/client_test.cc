// netpolctl's errors when the agent cannot be reached versus when the agent answers
// UNAVAILABLE itself: a real gRPC server on a Unix socket in the test's temporary directory
// stands in for the agent's StatusService, and `netpolctl status` runs in-process.
#include "cli/client.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "google/protobuf/util/time_util.h"
#include <vector>

#include "absl/synchronization/mutex.h"
#include "agent/testing/fixtures.h"
#include "api/convert.h"
#include "api/netpol/v1/object_service.grpc.pb.h"
#include "api/netpol/v1/query_service.grpc.pb.h"
#include "api/netpol/v1/status_service.grpc.pb.h"
#include "engine/model/loader.h"
#include "cli/commands.h"
#include "gmock/gmock.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"

namespace netpol::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Answers Status with a fixed error (or a serving status when it is OK).
class FixedStatusService final : public v1::StatusService::Service {
 public:
  explicit FixedStatusService(grpc::Status answer) : answer_(std::move(answer)) {}
  grpc::Status Status(grpc::ServerContext*, const v1::StatusRequest*,
                      v1::StatusResponse* resp) override {
    if (!answer_.ok()) return answer_;
    resp->set_serving(true);
    resp->set_node_name("node-1");
    return grpc::Status::OK;
  }

 private:
  grpc::Status answer_;
};

// Unix socket paths are limited to 107 bytes, which Bazel's $TEST_TMPDIR can exceed.
std::string SocketPath(const std::string& name) {
  return "/tmp/netpolctl-test-" + std::to_string(::getpid()) + "-" + name + ".sock";
}

// A Unix socket bound at `path` that nobody accepts on (as left by an agent killed with
// SIGKILL, or bound but not listening): connecting is refused. Returns the descriptor.
int BoundNotListening(const std::string& path) {
  ::unlink(path.c_str());
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ADD_FAILURE() << "bind " << path << ": " << std::strerror(errno);
  }
  return fd;
}

struct Row {
  std::string name;
  // What is at the address: "agent" (the fake service answering `answer`), "nothing" (no
  // socket file), "stale" (a socket file nobody accepts on), "file" (a regular file), "tcp"
  // (a loopback port with no listener).
  std::string there;
  grpc::Status answer;
  std::vector<std::string> want;
  std::vector<std::string> not_want;
};

void PrintTo(const Row& row, std::ostream* os) { *os << row.name; }

class ExplainTest : public ::testing::TestWithParam<Row> {};

TEST_P(ExplainTest, StatusCommandSaysWhatHappened) {
  const Row& row = GetParam();
  const std::string path = SocketPath(row.name);
  std::string server = "unix://" + path;
  ::unlink(path.c_str());
  FixedStatusService service(row.answer);
  std::unique_ptr<grpc::Server> grpc_server;
  int fd = -1;
  if (row.there == "agent") {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(server, grpc::InsecureServerCredentials());
    builder.RegisterService(&service);
    grpc_server = builder.BuildAndStart();
    ASSERT_NE(grpc_server, nullptr) << "cannot serve on " << server;
  } else if (row.there == "stale") {
    fd = BoundNotListening(path);
  } else if (row.there == "file") {
    std::ofstream(path) << "not a socket\n";
  } else if (row.there == "tcp") {
    server = "127.0.0.1:1";  // a privileged port nothing on a test machine listens on
  }

  ClientOptions options;
  options.server = server;
  options.timeout = absl::Seconds(20);
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  std::istringstream in;
  std::ostringstream out, err;
  int code = cli::Run(**client, {"status"}, CommandOptions(), in, out, err);

  EXPECT_EQ(code, 1) << err.str();
  for (const std::string& w : row.want) {
    std::string text = w;
    size_t at = text.find("SERVER");
    if (at != std::string::npos) text.replace(at, 6, server);
    at = text.find("PATH");
    if (at != std::string::npos) text.replace(at, 4, path);
    EXPECT_THAT(err.str(), HasSubstr(text));
  }
  for (const std::string& w : row.not_want) EXPECT_THAT(err.str(), Not(HasSubstr(w)));
  if (grpc_server != nullptr) grpc_server->Shutdown();
  if (fd >= 0) ::close(fd);
  ::unlink(path.c_str());
}

const char kHowToStart[] = "netpol-agent --node-name=$(hostname) --listen=";

INSTANTIATE_TEST_SUITE_P(
    Rows, ExplainTest,
    ::testing::Values(
        Row{"AgentAnswersUnavailableWithItsOwnMessage", "agent",
            grpc::Status(grpc::StatusCode::UNAVAILABLE,
                         "etcd unavailable: etcd 127.0.0.1:2379: connection refused"),
            {"error: etcd unavailable: etcd 127.0.0.1:2379: connection refused",
             "answered by netpol-agent at SERVER"},
            {"cannot reach", kHowToStart}},
        Row{"AgentIsStarting", "agent",
            grpc::Status(grpc::StatusCode::UNAVAILABLE,
                         "netpol-agent is starting: the first sync with the kernel has not "
                         "completed yet"),
            {"netpol-agent is starting", "The agent at SERVER is up but not ready"},
            {"cannot reach", kHowToStart}},
        Row{"NoSocketAtThePath", "nothing", grpc::Status::OK,
            {"cannot reach netpol-agent at SERVER: no socket at PATH", kHowToStart},
            {"answered by"}},
        Row{"SocketLeftBehindNobodyAccepts", "stale", grpc::Status::OK,
            {"cannot reach netpol-agent at SERVER: nothing accepts connections on PATH",
             kHowToStart},
            {"answered by"}},
        Row{"PathIsNotASocket", "file", grpc::Status::OK,
            {"cannot reach netpol-agent at SERVER: PATH is not a socket", kHowToStart},
            {"answered by"}},
        Row{"TcpAddressRefuses", "tcp", grpc::Status::OK,
            {"cannot reach netpol-agent at SERVER: ", "Is the agent running?",
             "--listen=unix:///run/netpol/agent.sock"},
            {"answered by"}}),
    [](const ::testing::TestParamInfo<Row>& info) { return info.param.name; });

// Answers Status with a given response.
class CannedStatusService final : public v1::StatusService::Service {
 public:
  explicit CannedStatusService(v1::StatusResponse response) : response_(std::move(response)) {}
  grpc::Status Status(grpc::ServerContext*, const v1::StatusRequest*,
                      v1::StatusResponse* resp) override {
    *resp = response_;
    return grpc::Status::OK;
  }

 private:
  v1::StatusResponse response_;
};

// What `netpolctl status` prints for `response`; its exit code in `code`.
std::string StatusOutput(const std::string& name, const v1::StatusResponse& response,
                         int* code) {
  const std::string server = "unix://" + SocketPath(name);
  CannedStatusService service(response);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(server, grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> grpc_server = builder.BuildAndStart();
  if (grpc_server == nullptr) return "cannot serve on " + server;
  ClientOptions options;
  options.server = server;
  options.timeout = absl::Seconds(20);
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(options);
  if (!client.ok()) return client.status().ToString();
  std::istringstream in;
  std::ostringstream out, err;
  *code = cli::Run(**client, {"status"}, CommandOptions(), in, out, err);
  grpc_server->Shutdown();
  ::unlink(SocketPath(name).c_str());
  return out.str() + err.str();
}

v1::StatusResponse Serving() {
  v1::StatusResponse s;
  s.set_serving(true);
  s.set_node_name("node-1");
  return s;
}

TEST(StatusOutputTest, ShowsTheEmbeddedStoreAndItsJournal) {
  v1::StatusResponse s = Serving();
  v1::DatastoreStatus* d = s.mutable_datastore();
  d->set_kind(v1::EMBEDDED);
  d->set_healthy(false);
  d->set_last_write_error("FAILED_PRECONDITION: write /var/lib/netpol/state.journal: No space");
  d->mutable_embedded()->set_directory("/var/lib/netpol");
  d->mutable_embedded()->set_journal_records(12);
  d->mutable_embedded()->set_journal_bytes(4812);
  d->mutable_embedded()->mutable_last_compaction_time()->set_seconds(1700000000);
  d->mutable_embedded()->set_compactions(3);
  int code = -1;
  const std::string out = StatusOutput("embedded", s, &code);
  EXPECT_THAT(out, HasSubstr("Datastore:          embedded (/var/lib/netpol), NOT healthy\n"));
  EXPECT_THAT(out, HasSubstr("Journal:            12 records, 4812 bytes since the last "
                             "compaction at 2023-11-14T22:13:20Z (3 since start)\n"));
  EXPECT_THAT(out, HasSubstr("Last write error:   FAILED_PRECONDITION: write "
                             "/var/lib/netpol/state.journal: No space\n"));
  EXPECT_EQ(code, 0) << "the datastore's health does not decide the exit status";
}

TEST(StatusOutputTest, ShowsTheEtcdWatch) {
  v1::StatusResponse s = Serving();
  v1::DatastoreStatus* d = s.mutable_datastore();
  d->set_kind(v1::ETCD);
  d->set_healthy(true);
  d->mutable_etcd()->set_endpoints("10.0.0.1:2379,10.0.0.2:2379");
  d->mutable_etcd()->set_watch_connected(true);
  d->mutable_etcd()->set_watch_endpoint("10.0.0.2:2379");
  d->mutable_etcd()->set_revision(41);
  int code = -1;
  std::string out = StatusOutput("etcd", s, &code);
  EXPECT_THAT(out, HasSubstr("Datastore:          etcd 10.0.0.1:2379,10.0.0.2:2379, healthy\n"));
  EXPECT_THAT(out, HasSubstr("Watch:              connected to 10.0.0.2:2379, at revision 41\n"));
  EXPECT_THAT(out, HasSubstr("Last write error:   none\n"));
  d->set_healthy(false);
  d->mutable_etcd()->set_watch_connected(false);
  d->mutable_etcd()->clear_watch_endpoint();
  d->mutable_etcd()->set_watch_error("UNAVAILABLE: etcd 10.0.0.2:2379: Connection refused");
  out = StatusOutput("etcd-down", s, &code);
  EXPECT_THAT(out,
              HasSubstr("Datastore:          etcd 10.0.0.1:2379,10.0.0.2:2379, NOT healthy\n"));
  EXPECT_THAT(out, HasSubstr("Watch:              not connected, at revision 41: UNAVAILABLE: "
                             "etcd 10.0.0.2:2379: Connection refused\n"));
  EXPECT_THAT(StatusOutput("old-agent", Serving(), &code), Not(HasSubstr("Datastore:")));
}

TEST(StatusOutputTest, ShowsTheKubernetesWatches) {
  v1::StatusResponse s = Serving();
  v1::DatastoreStatus* d = s.mutable_datastore();
  d->set_kind(v1::KUBERNETES);
  d->set_healthy(false);
  v1::KubernetesStatus* k = d->mutable_kubernetes();
  k->set_server("https://10.96.0.1:443");
  k->set_watch_connected(false);
  k->set_resource_version("812");
  k->add_skipped_objects("networkpolicy x/y: spec.egress[0].to[0].ipBlock.cidr: host bits set");
  v1::KubernetesResourceStatus* pods = k->add_resources();
  pods->set_resource("pods");
  pods->set_resource_version("812");
  pods->set_error("forbidden: cannot watch pods: no RBAC");
  v1::KubernetesResourceStatus* ns = k->add_resources();
  ns->set_resource("namespaces");
  ns->set_resource_version("700");
  ns->set_watching(true);
  int code = -1;
  std::string out = StatusOutput("k8s", s, &code);
  EXPECT_THAT(out, HasSubstr("Datastore:          kubernetes https://10.96.0.1:443, NOT "
                             "connected (enforcing the last state it had)\n"));
  EXPECT_THAT(out, HasSubstr("Events:             resourceVersion 812, no event yet\n"));
  EXPECT_THAT(out, HasSubstr("Watch pods:         NOT watching (at resourceVersion 812): "
                             "forbidden: cannot watch pods: no RBAC\n"));
  EXPECT_THAT(out, HasSubstr("Watch namespaces:   watching from resourceVersion 700\n"));
  EXPECT_THAT(out, HasSubstr("Skipped:            1 objects netpol cannot represent are left out: "
                             "networkpolicy x/y"));
  EXPECT_THAT(out, Not(HasSubstr("Last write error:")));
  *k->mutable_last_event_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
  out = StatusOutput("k8s", s, &code);
  EXPECT_THAT(out, HasSubstr("Events:             resourceVersion 812, last event "));
  EXPECT_THAT(out, HasSubstr(" ago\n"));
}

// The agent runs and listens, but this user may not open its socket (mode 0600, another
// owner): netpolctl says permission denied and names the path, not "is the agent running?". The
// netpolctl binary runs as an unprivileged user (uid 65534 when the test is root, which no
// file mode stops; the test's own user with the socket made mode 0000 otherwise).
TEST(PermissionTest, SocketTheUserMayNotOpenIsReportedAsPermissionDenied) {
  const std::string path = SocketPath("denied");
  const std::string server = "unix://" + path;
  ::unlink(path.c_str());
  CannedStatusService service(Serving());
  grpc::ServerBuilder builder;
  builder.AddListeningPort(server, grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> grpc_server = builder.BuildAndStart();
  ASSERT_NE(grpc_server, nullptr);
  const bool root = ::geteuid() == 0;
  ASSERT_EQ(::chmod(path.c_str(), root ? 0600 : 0), 0) << std::strerror(errno);
  const std::string out_path = "/tmp/netpolctl-test-" + std::to_string(::getpid()) + ".err";
  // A copy the unprivileged user may execute (the runfiles tree may sit in root's home).
  const std::string ctl = "/tmp/netpolctl-test-" + std::to_string(::getpid()) + "-netpolctl";
  {
    std::ifstream src(std::string(std::getenv("TEST_SRCDIR")) + "/" +
                          std::getenv("TEST_WORKSPACE") + "/cli/netpolctl",
                      std::ios::binary);
    std::ofstream dst(ctl, std::ios::binary);
    dst << src.rdbuf();
  }
  ASSERT_EQ(::chmod(ctl.c_str(), 0755), 0) << std::strerror(errno);
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    ::dup2(fd, 2);
    ::dup2(fd, 1);
    if (root && (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0)) {
      _exit(126);
    }
    ::execl(ctl.c_str(), ctl.c_str(), ("--server=" + server).c_str(), "status", nullptr);
    _exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  std::ifstream in(out_path);
  std::stringstream err;
  err << in.rdbuf();
  ::unlink(out_path.c_str());
  ::unlink(ctl.c_str());
  grpc_server->Shutdown();
  ::unlink(path.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << err.str();
  EXPECT_THAT(err.str(), HasSubstr("error: cannot reach netpol-agent at " + server +
                                   ": permission denied opening " + path + " (owner uid "));
  EXPECT_THAT(err.str(), HasSubstr("Run netpolctl as that user (e.g. with sudo)"));
  EXPECT_THAT(err.str(), Not(HasSubstr("Is the agent running?")));
  EXPECT_THAT(err.str(), Not(HasSubstr("nothing accepts connections")));
}

// Answers ListNodeStatus with a given response, and WaitForGeneration with a given status.
class NodesService final : public v1::StatusService::Service {
 public:
  NodesService(v1::ListNodeStatusResponse nodes, grpc::Status wait)
      : nodes_(std::move(nodes)), wait_(std::move(wait)) {}
  grpc::Status ListNodeStatus(grpc::ServerContext*, const v1::ListNodeStatusRequest*,
                              v1::ListNodeStatusResponse* resp) override {
    *resp = nodes_;
    return grpc::Status::OK;
  }
  grpc::Status WaitForGeneration(grpc::ServerContext*, const v1::WaitForGenerationRequest* req,
                                 v1::StatusResponse* resp) override {
    ++waits_;
    if (!wait_.ok()) return wait_;
    resp->set_node_name("node-1");
    resp->set_applied_generation(req->generation());
    return grpc::Status::OK;
  }
  int waits() const { return waits_; }

 private:
  v1::ListNodeStatusResponse nodes_;
  grpc::Status wait_;
  std::atomic<int> waits_{0};
};

// Runs `args` against `services`; returns stdout + stderr and the exit code in `code`.
std::string RunAgainst(const std::string& name, const std::vector<grpc::Service*>& services,
                       const std::vector<std::string>& args, const CommandOptions& opts,
                       int* code) {
  const std::string server = "unix://" + SocketPath(name);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(server, grpc::InsecureServerCredentials());
  for (grpc::Service* service : services) builder.RegisterService(service);
  std::unique_ptr<grpc::Server> grpc_server = builder.BuildAndStart();
  if (grpc_server == nullptr) return "cannot serve on " + server;
  ClientOptions options;
  options.server = server;
  options.timeout = absl::Seconds(20);
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(options);
  if (!client.ok()) return client.status().ToString();
  std::istringstream in;
  std::ostringstream out, err;
  *code = cli::Run(**client, args, opts, in, out, err);
  grpc_server->Shutdown();
  ::unlink(SocketPath(name).c_str());
  return out.str() + err.str();
}

std::string RunAgainst(const std::string& name, grpc::Service* service,
                       const std::vector<std::string>& args, const CommandOptions& opts,
                       int* code) {
  return RunAgainst(name, std::vector<grpc::Service*>{service}, args, opts, code);
}

v1::NodeStatus Node(const std::string& name, uint64_t applied, bool current, bool stale) {
  v1::NodeStatus n;
  n.set_node_name(name);
  n.set_generation(applied);
  n.set_applied_generation(applied);
  n.set_serving(true);
  n.set_datastore_healthy(true);
  n.set_current(current);
  n.set_stale(stale);
  n.mutable_build()->set_version("0.1.0");
  return n;
}

TEST(AllNodesTest, ExitsZeroOnlyWhenEveryNodeIsCurrent) {
  struct Case {
    std::string name;
    std::vector<v1::NodeStatus> nodes;
    int want_code;
    std::vector<std::string> want;
  } cases[] = {
      {"all-current",
       {Node("node-1", 9, true, false), Node("node-2", 7, true, false)},
       0,
       {"node-1   9 ", "node-2   7 (same objects as 9)", " ok "}},
      {"one-stale",
       {Node("node-1", 9, true, false), Node("node-2", 9, false, true)},
       1,
       {"node-2   9 ", "yes"}},
      {"one-behind",
       {Node("node-1", 9, true, false), Node("node-2", 7, false, false)},
       1,
       {"node-2   7 (behind 9)"}},
      {"none", {}, 1, {"No node has published a status yet."}},
  };
  for (const Case& c : cases) {
    v1::ListNodeStatusResponse resp;
    resp.set_newest_generation(9);
    for (const v1::NodeStatus& n : c.nodes) *resp.add_nodes() = n;
    NodesService service(resp, grpc::Status::OK);
    CommandOptions opts;
    opts.all_nodes = true;
    int code = -1;
    const std::string out = RunAgainst("nodes-" + c.name, &service, {"status"}, opts, &code);
    EXPECT_EQ(code, c.want_code) << c.name << ":\n" << out;
    EXPECT_THAT(out, HasSubstr("Newest generation: 9\n")) << c.name;
    for (const std::string& w : c.want) EXPECT_THAT(out, HasSubstr(w)) << c.name << ":\n" << out;
  }
}

TEST(WaitTest, UsageErrorsExitTwoWithoutCalling) {
  struct Case {
    std::string name;
    CommandOptions opts;
    std::string want;
  } cases[3];
  cases[0].name = "no-condition";
  cases[0].opts.generation = 3;
  cases[0].want = "wait needs --for=enforced";
  cases[1].name = "unknown-condition";
  cases[1].opts.wait_for = "deleted";
  cases[1].opts.generation = 3;
  cases[1].want = "unknown condition --for=deleted";
  cases[2].name = "both";
  cases[2].opts.wait_for = "enforced";
  cases[2].opts.generation = 3;
  cases[2].opts.files = {"a.yaml"};
  cases[2].opts.files_given = true;
  cases[2].want = "exactly one of -f FILE and --generation G";
  for (const Case& c : cases) {
    NodesService service(v1::ListNodeStatusResponse(), grpc::Status::OK);
    int code = -1;
    const std::string out = RunAgainst("wait-" + c.name, &service, {"wait"}, c.opts, &code);
    EXPECT_EQ(code, 2) << c.name << ": " << out;
    EXPECT_THAT(out, HasSubstr(c.want)) << c.name;
    EXPECT_EQ(service.waits(), 0) << c.name;
  }
}

TEST(WaitTest, GenerationEnforcedExitsZero) {
  NodesService service(v1::ListNodeStatusResponse(), grpc::Status::OK);
  CommandOptions opts;
  opts.wait_for = "enforced";
  opts.generation = 7;
  int code = -1;
  const std::string out = RunAgainst("wait-ok", &service, {"wait"}, opts, &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("generation 7 is enforced on node node-1"));
}

TEST(WaitTest, NotEnforcedWithinTheTimeoutExitsThree) {
  NodesService service(v1::ListNodeStatusResponse(),
                       grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                    "generation 7 not in the kernel yet (applied 5)"));
  CommandOptions opts;
  opts.wait_for = "enforced";
  opts.generation = 7;
  opts.timeout = absl::Milliseconds(300);
  int code = -1;
  const std::string out = RunAgainst("wait-timeout", &service, {"wait"}, opts, &code);
  EXPECT_EQ(code, 3) << out;
  EXPECT_THAT(out, HasSubstr("timed out after 300ms: generation 7 is not in this node's kernel"));
  EXPECT_GE(service.waits(), 1);
}

// Answers each Apply with the next of `answers` (the last one again once they run out): the
// action of every object and the generation; keeps the requests.
class CompareService final : public v1::ObjectService::Service {
 public:
  struct Answer {
    v1::Action action;
    uint64_t generation;
  };
  explicit CompareService(std::vector<Answer> answers) : answers_(std::move(answers)) {}
  grpc::Status Apply(grpc::ServerContext*, const v1::ApplyRequest* req,
                     v1::ApplyResponse* resp) override {
    absl::MutexLock l(&mu_);
    requests_.push_back(*req);
    const Answer& a = answers_[std::min(requests_.size(), answers_.size()) - 1];
    v1::ObjectResult* r = resp->add_results();
    r->mutable_ref()->set_kind(v1::NETWORK_POLICY);
    r->mutable_ref()->set_namespace_("x");
    r->mutable_ref()->set_name("web");
    r->set_action(a.action);
    resp->set_generation(a.generation);
    return grpc::Status::OK;
  }
  std::vector<v1::ApplyRequest> requests() {
    absl::MutexLock l(&mu_);
    return requests_;
  }

 private:
  const std::vector<Answer> answers_;
  absl::Mutex mu_;
  std::vector<v1::ApplyRequest> requests_ ABSL_GUARDED_BY(mu_);
};

// Records the generation WaitForGeneration is asked for.
class RecordingWaitService final : public v1::StatusService::Service {
 public:
  grpc::Status WaitForGeneration(grpc::ServerContext*, const v1::WaitForGenerationRequest* req,
                                 v1::StatusResponse* resp) override {
    asked_ = req->generation();
    resp->set_node_name("node-1");
    resp->set_applied_generation(req->generation());
    return grpc::Status::OK;
  }
  std::atomic<uint64_t> asked_{0};
};

// wait -f asks the agent to compare the file's objects with its store (a compare-only dry run:
// no compile on the agent), until nothing would change, and waits for the generation of that
// answer.
TEST(WaitTest, FileIsComparedWithTheStoreAndTheAnswersGenerationAwaited) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string file = std::string(tmp != nullptr ? tmp : "/tmp") + "/wait-file.yaml";
  {
    std::ofstream f(file);
    f << "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
         "metadata: {namespace: x, name: web}\nspec: {podSelector: {}}\n";
  }
  CompareService objects({{v1::CREATED, 4}, {v1::CONFIGURED, 5}, {v1::UNCHANGED, 6}});
  RecordingWaitService status;
  CommandOptions opts;
  opts.wait_for = "enforced";
  opts.files = {file};
  opts.files_given = true;
  opts.poll_interval = absl::Milliseconds(1);
  int code = -1;
  const std::string out = RunAgainst("wait-file", {&objects, &status}, {"wait"}, opts, &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("generation 6 is enforced on node node-1"));
  EXPECT_EQ(status.asked_.load(), 6u);
  const std::vector<v1::ApplyRequest> requests = objects.requests();
  ASSERT_EQ(requests.size(), 3u) << "asked again until every object is UNCHANGED, then no more";
  for (const v1::ApplyRequest& r : requests) {
    EXPECT_TRUE(r.dry_run());
    EXPECT_TRUE(r.compare_only());
    ASSERT_EQ(r.manifests_size(), 1);
    EXPECT_THAT(r.manifests(0).text(), HasSubstr("name: web"));
  }
  ::unlink(file.c_str());
}

// Still pending when the time is up: exit 3, naming what the store does not hold yet.
TEST(WaitTest, FileNotStoredWithinTheTimeoutExitsThree) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string file = std::string(tmp != nullptr ? tmp : "/tmp") + "/wait-pending.yaml";
  {
    std::ofstream f(file);
    f << "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
         "metadata: {namespace: x, name: web}\nspec: {podSelector: {}}\n";
  }
  CompareService objects({{v1::CONFIGURED, 5}});
  RecordingWaitService status;
  CommandOptions opts;
  opts.wait_for = "enforced";
  opts.files = {file};
  opts.files_given = true;
  opts.timeout = absl::Milliseconds(300);
  opts.poll_interval = absl::Milliseconds(10);
  int code = -1;
  const std::string out = RunAgainst("wait-pending", {&objects, &status}, {"wait"}, opts, &code);
  EXPECT_EQ(code, 3) << out;
  EXPECT_THAT(out, HasSubstr("the store does not hold these objects as in the files yet "
                             "(applying would change them): networkpolicy x/web (configured)"));
  EXPECT_EQ(status.asked_.load(), 0u) << "no generation to wait for";
  ::unlink(file.c_str());
}

TEST(WaitTest, AnAgentErrorExitsOne) {
  NodesService service(v1::ListNodeStatusResponse(),
                       grpc::Status(grpc::StatusCode::OUT_OF_RANGE, "generation 99 is beyond"));
  CommandOptions opts;
  opts.wait_for = "enforced";
  opts.generation = 99;
  int code = -1;
  const std::string out = RunAgainst("wait-range", &service, {"wait"}, opts, &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr("generation 99 is beyond"));
}

// Answers Get and List from a fixed set of objects.
class CannedObjectService final : public v1::ObjectService::Service {
 public:
  explicit CannedObjectService(std::vector<Object> objects) : objects_(std::move(objects)) {}
  grpc::Status Get(grpc::ServerContext*, const v1::GetRequest* req,
                   v1::GetResponse* resp) override {
    last_get_ = *req;
    for (const Object& o : objects_) {
      if (api::KindOf(o) == req->ref().kind() && o.Name() == req->ref().name()) {
        *resp->mutable_object() = api::ToApi(o);
        return grpc::Status::OK;
      }
    }
    return grpc::Status(grpc::StatusCode::NOT_FOUND, api::RefString(req->ref()) + ": not found");
  }
  grpc::Status List(grpc::ServerContext*, const v1::ListRequest* req,
                    v1::ListResponse* resp) override {
    for (const Object& o : objects_) {
      if (api::KindOf(o) == req->kind()) *resp->add_objects() = api::ToApi(o);
    }
    return grpc::Status::OK;
  }
  const v1::GetRequest& last_get() const { return last_get_; }

 private:
  std::vector<Object> objects_;
  v1::GetRequest last_get_;
};

TEST(GetClusterObjectsTest, TableYamlAndJsonOfClusterNetworkPoliciesAndNodes) {
  const std::vector<Object> objects =
      agent::fixtures::LoadObjects(agent::fixtures::kClusterSample);
  CannedObjectService service(objects);
  CommandOptions opts;
  opts.namespace_name = "shop";  // ignored for cluster-scoped kinds
  int code = -1;
  std::string out = RunAgainst("get-cnp", &service, {"get", "cnp"}, opts, &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(out,
            "NAME      TIER       PRIORITY   SUBJECT                                   "
            "INGRESS-RULES   EGRESS-RULES\n"
            "guard     Admin      10         pods: team=payments / app notin (debug)   "
            "2               2\n"
            "isolate   Baseline   0          namespaces: tenant=true                   "
            "2               0\n");
  out = RunAgainst("get-nodes", &service, {"get", "nodes"}, opts, &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(out,
            "NAME   ADDRESSES                 LABELS\n"
            "n1     192.168.1.10,fd00:1::10   node-role.kubernetes.io/control-plane=,zone=a\n"
            "n2     <none>                    <none>\n");

  // -o yaml and -o json load back into the same objects (they re-apply).
  for (const char* format : {"yaml", "json"}) {
    for (const char* kind : {"clusternetworkpolicies", "no"}) {
      CommandOptions o;
      o.output = format;
      out = RunAgainst(absl::StrCat("get-", format), &service, {"get", kind}, o, &code);
      ASSERT_EQ(code, 0) << out;
      absl::StatusOr<LoadResult> back = LoadYaml(out);
      ASSERT_TRUE(back.ok()) << back.status() << "\n" << out;
      std::vector<Object> want;
      for (const Object& x : objects) {
        if ((std::string(kind) == "no") == (x.AsNode() != nullptr)) want.push_back(x);
      }
      EXPECT_EQ(back->objects, want) << format << " " << kind << ":\n" << out;
    }
  }
  CommandOptions o;
  o.output = "yaml";
  o.namespace_name = "shop";
  out = RunAgainst("get-one", &service, {"get", "cnp", "guard"}, o, &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_EQ(service.last_get().ref().namespace_(), "");
  EXPECT_THAT(out, HasSubstr("kind: ClusterNetworkPolicy"));
  o.output = "name";
  out = RunAgainst("get-names", &service, {"get", "cnp"}, o, &code);
  EXPECT_EQ(out,
            "clusternetworkpolicy.policy.networking.k8s.io/guard\n"
            "clusternetworkpolicy.policy.networking.k8s.io/isolate\n");
  out = RunAgainst("get-none", &service, {"get", "cnp", "nope"}, CommandOptions(), &code);
  EXPECT_EQ(code, 1);
  EXPECT_THAT(out, HasSubstr("clusternetworkpolicy nope: not found"));
}

// Answers ExplainPod with a fixed response.
class CannedQueryService final : public v1::QueryService::Service {
 public:
  explicit CannedQueryService(v1::ExplainPodResponse r) : response_(std::move(r)) {}
  grpc::Status ExplainPod(grpc::ServerContext*, const v1::ExplainPodRequest*,
                          v1::ExplainPodResponse* resp) override {
    *resp = response_;
    return grpc::Status::OK;
  }

 private:
  v1::ExplainPodResponse response_;
};

TEST(ExplainPodTest, ClusterNetworkPoliciesAreListedPerTierOnlyWhenThereAreAny) {
  v1::ExplainPodResponse r;
  r.add_ingress_policies("shop/web-ingress");
  r.add_admin_cluster_network_policies("lock-web (priority 5)");
  r.add_admin_cluster_network_policies("audit (priority 7)");
  CannedQueryService service(r);
  int code = -1;
  std::string out =
      RunAgainst("explain-cnp", &service, {"explain", "pod", "shop/web"}, CommandOptions(), &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("Egress policies:    <none>\n"
                             "Admin tier:         lock-web (priority 5), audit (priority 7)\n"
                             "Named ports:"))
      << out;
  EXPECT_THAT(out, Not(HasSubstr("Baseline tier:")));
  CannedQueryService plain{v1::ExplainPodResponse()};
  out = RunAgainst("explain-plain", &plain, {"explain", "pod", "shop/web"}, CommandOptions(),
                   &code);
  EXPECT_THAT(out, Not(HasSubstr("tier:"))) << out;
}

}  // namespace
}  // namespace netpol::cli
