// netpol-agent end to end: the real binary in a fresh network namespace, real gRPC clients,
// netpolctl, and the kernel's nftables read back with `nft`.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "agent/e2e/fixture.h"
#include "agent/testing/fixtures.h"
#include "agent/e2e/grpc_raw.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using agent::fixtures::kShop;

constexpr char kBadPolicy[] = R"(apiVersion: v1
kind: Namespace
metadata: {name: extra}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: broken, namespace: shop}
spec:
  podSelector: {}
  ingress:
  - ports: [{port: 9000, endPort: 80}]
)";

std::chrono::system_clock::time_point Deadline(int seconds = 60) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}

v1::ApplyRequest ManifestRequest(const std::string& source, const std::string& text) {
  v1::ApplyRequest req;
  v1::Manifest* m = req.add_manifests();
  m->set_source(source);
  m->set_text(text);
  return req;
}

v1::CheckResponse Check(v1::QueryService::Stub& q, const std::string& from, const std::string& to,
                        int port, grpc::Status* status = nullptr) {
  v1::CheckRequest req;
  req.mutable_source()->set_pod(from);
  req.mutable_destination()->set_pod(to);
  req.set_port(port);
  req.set_protocol(v1::TCP);
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline());
  v1::CheckResponse resp;
  grpc::Status st = q.Check(&ctx, req, &resp);
  if (status) *status = st;
  EXPECT_TRUE(st.ok()) << st.error_message();
  return resp;
}

v1::StatusResponse GetStatus(v1::StatusService::Stub& s) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline());
  v1::StatusResponse resp;
  grpc::Status st = s.Status(&ctx, v1::StatusRequest(), &resp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return resp;
}

grpc::Status Apply(v1::ObjectService::Stub& o, const v1::ApplyRequest& req,
                   v1::ApplyResponse* resp) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline());
  return o.Apply(&ctx, req, resp);
}

std::string SortedLines(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  std::sort(lines.begin(), lines.end());
  return absl::StrJoin(lines, "\n");
}

std::string RenderKernel(v1::QueryService::Stub& q) {
  v1::RenderRequest req;
  req.set_source(v1::RenderRequest::KERNEL);
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline());
  v1::RenderResponse resp;
  grpc::Status st = q.Render(&ctx, req, &resp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return resp.nft_text();
}

TEST_F(AgentTest, ApplyGetListCheckStatusWaitDelete) {
  StartAgent();
  WaitServing();
  auto objects = Objects();
  auto queries = Queries();
  auto status = Status();

  v1::ApplyResponse applied;
  grpc::Status st = Apply(*objects, ManifestRequest("shop.yaml", kShop), &applied);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(applied.results_size(), 5);
  for (const auto& r : applied.results()) EXPECT_EQ(r.action(), v1::CREATED);
  // Apply returned after the commit: the kernel already dispatches web's address.
  std::string nft = Nft();
  EXPECT_THAT(nft, HasSubstr("10.1.0.10 comment \"shop/web\""));
  EXPECT_THAT(nft, HasSubstr("fd00:1::10"));
  EXPECT_THAT(nft, Not(HasSubstr("10.2.0.5 comment")));  // other is on node-2

  v1::StatusResponse s = GetStatus(*status);
  EXPECT_TRUE(s.serving());
  EXPECT_EQ(s.generation(), applied.generation());
  EXPECT_EQ(s.applied_generation(), applied.generation());
  EXPECT_EQ(s.objects().pods(), 3);
  EXPECT_EQ(s.objects().local_pods(), 2);
  EXPECT_EQ(s.last_error(), "");
  EXPECT_GT(s.program().elements(), 0);

  {
    v1::GetRequest req;
    req.mutable_ref()->set_kind(v1::NETWORK_POLICY);
    req.mutable_ref()->set_namespace_("shop");
    req.mutable_ref()->set_name("web-ingress");
    grpc::ClientContext ctx;
    v1::GetResponse resp;
    ASSERT_TRUE(objects->Get(&ctx, req, &resp).ok());
    const auto& spec = resp.object().network_policy().spec();
    EXPECT_EQ(spec.pod_selector().match_labels().at("app"), "web");
    ASSERT_EQ(spec.ingress_size(), 1);
    EXPECT_EQ(spec.ingress(0).ports(0).named_port(), "http");
    EXPECT_EQ(spec.policy_types(0), v1::NetworkPolicySpec::Ingress);
  }
  {
    v1::ListRequest req;
    req.set_kind(v1::POD);
    req.set_namespace_("shop");
    grpc::ClientContext ctx;
    v1::ListResponse resp;
    ASSERT_TRUE(objects->List(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.objects_size(), 3);
    EXPECT_EQ(resp.objects(0).pod().metadata().name(), "client");
  }

  v1::CheckResponse allowed = Check(*queries, "shop/client", "shop/web", 8080);
  EXPECT_EQ(allowed.verdict(), v1::ALLOWED);
  EXPECT_THAT(allowed.explanation(), HasSubstr("shop/web-ingress"));
  EXPECT_EQ(allowed.ingress().allowing_rules(0).policy(), "shop/web-ingress");
  v1::CheckResponse denied = Check(*queries, "shop/other", "shop/web", 8080);
  EXPECT_EQ(denied.verdict(), v1::DENIED);
  EXPECT_TRUE(denied.ingress().isolated());
  EXPECT_EQ(Check(*queries, "shop/client", "shop/web", 9090).verdict(), v1::DENIED);

  {
    v1::ExplainPodRequest req;
    req.set_pod("shop/web");
    grpc::ClientContext ctx;
    v1::ExplainPodResponse resp;
    ASSERT_TRUE(queries->ExplainPod(&ctx, req, &resp).ok());
    EXPECT_TRUE(resp.local());
    ASSERT_EQ(resp.ingress_policies_size(), 1);
    EXPECT_EQ(resp.ingress_policies(0), "shop/web-ingress");
    EXPECT_FALSE(resp.chains().empty());
    EXPECT_EQ(resp.named_ports(0).port(), 8080);
    // The chains it names are in the kernel.
    for (const std::string& chain : resp.chains()) EXPECT_THAT(nft, HasSubstr("chain " + chain));
  }

  {
    v1::WaitForGenerationRequest req;
    req.set_generation(applied.generation());
    grpc::ClientContext ctx;
    v1::StatusResponse resp;
    ASSERT_TRUE(status->WaitForGeneration(&ctx, req, &resp).ok());
    EXPECT_GE(resp.applied_generation(), applied.generation());
    // A generation no write can reach is answered at once, however long the timeout.
    req.set_generation(applied.generation() + 10);
    req.mutable_timeout()->set_seconds(3600);
    grpc::ClientContext ctx2;
    EXPECT_EQ(status->WaitForGeneration(&ctx2, req, &resp).error_code(),
              grpc::StatusCode::OUT_OF_RANGE);
  }

  {
    v1::DeleteRequest req;
    v1::ObjectRef* ref = req.add_refs();
    ref->set_kind(v1::NETWORK_POLICY);
    ref->set_namespace_("shop");
    ref->set_name("web-ingress");
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline());
    v1::DeleteResponse resp;
    ASSERT_TRUE(objects->Delete(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.results(0).action(), v1::DELETED);
    EXPECT_THAT(Nft(), Not(HasSubstr("10.1.0.10 comment \"shop/web\"")));
    EXPECT_EQ(Check(*queries, "shop/other", "shop/web", 8080).verdict(), v1::ALLOWED);
  }
}

TEST_F(AgentTest, ReflectionListsTheServicesAndHealthIsServing) {
  StartAgent();
  WaitServing();
  ReflectionDatabase db(Channel());
  std::string error;
  std::vector<std::string> services = db.ListServices(&error);
  ASSERT_TRUE(error.empty()) << error;
  for (const char* want : {"netpol.v1.ObjectService", "netpol.v1.QueryService",
                           "netpol.v1.StatusService", "grpc.health.v1.Health"}) {
    EXPECT_NE(std::find(services.begin(), services.end(), want), services.end()) << want;
  }
  google::protobuf::DescriptorPool pool(&db);
  const google::protobuf::ServiceDescriptor* svc = pool.FindServiceByName("netpol.v1.ObjectService");
  ASSERT_NE(svc, nullptr);
  ASSERT_NE(svc->FindMethodByName("Apply"), nullptr);
  EXPECT_NE(svc->FindMethodByName("Apply")->input_type()->FindFieldByName("manifests"), nullptr);
  // grpc.health.v1 is described too (grpcurl resolves grpc.health.v1.Health/Check through it).
  const google::protobuf::ServiceDescriptor* health = pool.FindServiceByName("grpc.health.v1.Health");
  ASSERT_NE(health, nullptr) << "reflection does not describe grpc.health.v1.Health";
  ASSERT_NE(health->FindMethodByName("Check"), nullptr);
  EXPECT_EQ(health->FindMethodByName("Check")->output_type()->full_name(),
            "grpc.health.v1.HealthCheckResponse");
  const google::protobuf::ServiceDescriptor* status = pool.FindServiceByName("netpol.v1.StatusService");
  ASSERT_NE(status, nullptr);
  // Imports (google/protobuf/timestamp.proto) are served too.
  EXPECT_EQ(status->FindMethodByName("Status")
                ->output_type()
                ->FindFieldByName("last_sync_time")
                ->message_type()
                ->full_name(),
            "google.protobuf.Timestamp");

  EXPECT_EQ(HealthStatus(Channel()), "SERVING");
  EXPECT_EQ(HealthStatus(Channel(), "netpol.v1.ObjectService"), "SERVING");
}

TEST_F(AgentTest, BadInputReachesTheUserWithItsFieldPathAndChangesNothing) {
  StartAgent();
  WaitServing();
  auto objects = Objects();
  v1::ApplyResponse applied;
  ASSERT_TRUE(Apply(*objects, ManifestRequest("shop.yaml", kShop), &applied).ok());
  const std::string before = Nft();
  const uint64_t generation = GetStatus(*Status()).generation();

  // gRPC, as a manifest: the file name and the field path come back.
  v1::ApplyResponse resp;
  grpc::Status st = Apply(*objects, ManifestRequest("bad.yaml", kBadPolicy), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(),
              HasSubstr("bad.yaml: networkpolicy shop/broken: spec.ingress[0].ports[0].endPort"));

  // gRPC, as a message.
  v1::ApplyRequest msg;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  R"({"objects": [{"namespace": {"metadata": {"name": "fine"}}},
                      {"networkPolicy": {"metadata": {"name": "broken", "namespace": "shop"},
                       "spec": {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.1/8"}}]}]}}}]})",
                  &msg)
                  .ok());
  st = Apply(*objects, msg, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("networkpolicy shop/broken: spec.egress[0].to[0].ipBlock.cidr"));

  // The CLI.
  CommandResult r = Ctl({"apply", "-f", WriteFile("bad.yaml", kBadPolicy)});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("bad.yaml: networkpolicy shop/broken: spec.ingress[0].ports[0].endPort"));
  EXPECT_EQ(r.out, "");

  // Nothing changed: not the valid namespace of the same request, not the kernel.
  grpc::ClientContext ctx;
  v1::GetRequest get;
  get.mutable_ref()->set_kind(v1::NAMESPACE);
  get.mutable_ref()->set_name("extra");
  v1::GetResponse got;
  EXPECT_EQ(objects->Get(&ctx, get, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(GetStatus(*Status()).generation(), generation);
  EXPECT_EQ(Nft(), before);
}

TEST_F(AgentTest, RestartAfterKillKeepsTheTableAndRestoresTheSameProgram) {
  StartAgent();
  WaitServing();
  v1::ApplyResponse applied;
  ASSERT_TRUE(Apply(*Objects(), ManifestRequest("shop.yaml", kShop), &applied).ok());
  const std::string listing = Nft();
  const std::string program = RenderKernel(*Queries());
  ASSERT_THAT(listing, HasSubstr("shop/web"));

  EXPECT_EQ(StopAgent(SIGKILL), -1);
  // Fail-static: while the agent is down the rules stay exactly as they were.
  EXPECT_EQ(Nft(), listing);

  StartAgent();
  WaitServing();
  EXPECT_EQ(RenderKernel(*Queries()), program);
  EXPECT_EQ(SortedLines(Nft()), SortedLines(listing));
  v1::StatusResponse s = GetStatus(*Status());
  EXPECT_EQ(s.generation(), applied.generation());
  EXPECT_EQ(s.objects().pods(), 3);
  EXPECT_EQ(Check(*Queries(), "shop/other", "shop/web", 8080).verdict(), v1::DENIED);
}

// A start on a node without the table (here: deleted while the agent was down) builds it in
// several transactions when the program is larger than --cold-start-chunk-elements, and ends
// with exactly the program a one-transaction start gives. A restart over the existing table is
// one transaction.
TEST_F(AgentTest, ColdStartWithoutTheTableBuildsItInChunks) {
  StartAgent();
  WaitServing();
  v1::ApplyResponse applied;
  ASSERT_TRUE(Apply(*Objects(), ManifestRequest("shop.yaml", kShop), &applied).ok());
  const std::string listing = Nft();
  ASSERT_EQ(StopAgent(SIGTERM), 0);
  ASSERT_EQ(RunCommand({"nft", "delete", "table", "inet", table_}).exit_code, 0);

  StartAgent({"--cold-start-chunk-elements=2"});
  WaitServing();
  EXPECT_EQ(SortedLines(Nft()), SortedLines(listing));
  const std::string log = AgentLogOnceItSays(" transactions=");
  const size_t at = log.find(" transactions=");
  ASSERT_NE(at, std::string::npos) << log;
  EXPECT_GE(std::atoi(log.c_str() + at + 14), 3) << log;  // skeleton, elements, hooks
  EXPECT_EQ(Check(*Queries(), "shop/other", "shop/web", 8080).verdict(), v1::DENIED);

  // With the table there, the next start replaces it in one transaction.
  ASSERT_EQ(StopAgent(SIGTERM), 0);
  const size_t mark = AgentLog().size();
  StartAgent({"--cold-start-chunk-elements=2"});
  WaitServing();
  EXPECT_EQ(SortedLines(Nft()), SortedLines(listing));
  std::string third;
  for (int i = 0; i < 200 && third.find("sync kind=full") == std::string::npos; ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    third = AgentLog().substr(mark);
  }
  EXPECT_THAT(third, HasSubstr("sync kind=full"));
  EXPECT_THAT(third, Not(HasSubstr(" transactions=")));
}

TEST_F(AgentTest, SigtermStopsServingLeavesTheRulesAndExitsZero) {
  StartAgent();
  WaitServing();
  v1::ApplyResponse applied;
  ASSERT_TRUE(Apply(*Objects(), ManifestRequest("shop.yaml", kShop), &applied).ok());
  const std::string listing = Nft();
  EXPECT_EQ(StopAgent(SIGTERM), 0);
  EXPECT_EQ(Nft(), listing);
  struct stat st;
  EXPECT_NE(stat(socket_.c_str(), &st), 0) << "socket left behind";
}

// Flags the agent cannot work with stop it at start, with the reason, before the kernel is
// touched; a node name as long as Kubernetes allows is not one of them.
TEST_F(AgentTest, InvalidNodeNameOrTableStopsTheAgentAtStart) {
  struct Case {
    std::string flag, error;
  } cases[] = {
      {"--table=counter",
       "--table: INVALID_ARGUMENT: table name \"counter\": is an nft keyword"},
      {"--table=bad!name", "--table: INVALID_ARGUMENT: table name \"bad!name\": may hold only"},
      {"--node-name=a\"b", "--node-name: INVALID_ARGUMENT: a Kubernetes node name: invalid name "
                           "\"a\\\"b\": must be a lowercase RFC 1123 subdomain"},
      {"--node-name=" + std::string(254, 'n'), "at most 253 characters"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.flag);
    const size_t mark = AgentLog().size();
    StartAgent({c.flag});
    EXPECT_EQ(WaitExit(20), 1);
    EXPECT_THAT(AgentLog().substr(mark), HasSubstr(c.error));
    EXPECT_THAT(Nft(), HasSubstr("error"));  // no table was created
  }
  const std::string longest = std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                              std::string(63, 'c') + "." + std::string(61, 'd');
  StartAgent({"--node-name=" + longest});
  WaitServing();
  EXPECT_THAT(Nft(), HasSubstr("Kubernetes NetworkPolicy for node aaaa"));
  EXPECT_EQ(StopAgent(SIGTERM), 0);
}

TEST_F(AgentTest, CorruptStateRefusesToStartAndLeavesTheKernelAlone) {
  StartAgent();
  WaitServing();
  v1::ApplyResponse applied;
  ASSERT_TRUE(Apply(*Objects(), ManifestRequest("shop.yaml", kShop), &applied).ok());
  ASSERT_EQ(StopAgent(SIGTERM), 0);
  const std::string listing = Nft();
  {
    std::fstream f(state_dir_ + "/state.pb", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-10, std::ios::end);
    f.put('\x7f');
  }
  StartAgent();
  EXPECT_EQ(WaitExit(20), 1);
  EXPECT_THAT(AgentLog(), HasSubstr(state_dir_ + "/state.pb"));
  EXPECT_THAT(AgentLog(), HasSubstr("refusing to start"));
  EXPECT_EQ(Nft(), listing);
}

TEST_F(AgentTest, SocketIsPrivateAndPlainTcpIsReadOnly) {
  StartAgent({"--listen=" + address() + ",127.0.0.1:39571"});
  WaitServing();
  struct stat st;
  ASSERT_EQ(stat(socket_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600);

  const std::string tcp = "127.0.0.1:39571";
  auto objects = Objects(tcp);
  v1::ApplyResponse resp;
  grpc::Status s = Apply(*objects, ManifestRequest("shop.yaml", kShop), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  {
    v1::DeleteRequest req;
    req.set_ignore_not_found(true);
    req.add_refs()->set_kind(v1::NAMESPACE);
    req.mutable_refs(0)->set_name("shop");
    grpc::ClientContext ctx;
    v1::DeleteResponse dresp;
    EXPECT_EQ(objects->Delete(&ctx, req, &dresp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  // Reads are served.
  v1::ListRequest list;
  list.set_kind(v1::POD);
  grpc::ClientContext ctx;
  v1::ListResponse lresp;
  EXPECT_TRUE(objects->List(&ctx, list, &lresp).ok());
  EXPECT_TRUE(GetStatus(*Status(tcp)).serving());
  EXPECT_EQ(HealthStatus(Channel(tcp)), "SERVING");
  // The CLI explains.
  CommandResult r = RunCommand({Runfile("cli/netpolctl"), "--server=" + tcp, "apply", "-f",
                                WriteFile("shop.yaml", kShop)});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("may only read"));
  EXPECT_EQ(GetStatus(*Status()).generation(), 0u);
}

// Creates a CA, a server certificate for 127.0.0.1 and two client certificates (one signed by
// the CA, one self-signed) with openssl.
bool MakeCerts(const std::string& dir) {
  const std::string script = R"(set -e
cd ")" + dir + R"("
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=netpol-test-ca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' > san.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.ext 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=writer 2>/dev/null
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -keyout rogue.key -out rogue.pem -days 2 -subj /CN=rogue 2>/dev/null
)";
  return RunCommand({"sh", "-c", script}).exit_code == 0;
}

TEST_F(AgentTest, TlsClientsWithACertificateFromTheClientCaMayWrite) {
  ASSERT_TRUE(MakeCerts(dir_));
  StartAgent({"--listen=" + address() + ",127.0.0.1:39572", "--tls-cert=" + dir_ + "/server.pem",
              "--tls-key=" + dir_ + "/server.key", "--client-ca=" + dir_ + "/ca.pem"});
  WaitServing();
  const std::string tcp = "127.0.0.1:39572";
  const std::string shop = WriteFile("shop.yaml", kShop);
  auto ctl = [&](std::vector<std::string> extra, std::vector<std::string> args) {
    std::vector<std::string> argv = {Runfile("cli/netpolctl"), "--server=" + tcp,
                                     "--tls-ca=" + dir_ + "/ca.pem"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv);
  };
  // No client certificate: reads only.
  CommandResult r = ctl({}, {"apply", "-f", shop});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("may only read"));
  EXPECT_EQ(ctl({}, {"status"}).exit_code, 0);
  // A certificate the CA did not sign: the handshake fails.
  r = ctl({"--tls-cert=" + dir_ + "/rogue.pem", "--tls-key=" + dir_ + "/rogue.key"},
          {"apply", "-f", shop});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(GetStatus(*Status()).generation(), 0u);
  // Signed by the client CA: may write.
  r = ctl({"--tls-cert=" + dir_ + "/client.pem", "--tls-key=" + dir_ + "/client.key"},
          {"apply", "-f", shop});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("networkpolicy.networking.k8s.io/web-ingress created"));
  EXPECT_EQ(GetStatus(*Status()).objects().pods(), 3);
}

TEST_F(AgentTest, UnavailableUntilTheFirstSyncCommits) {
  // A datastore that never answers keeps the first sync from happening: the agent stays up,
  // answers UNAVAILABLE and NOT_SERVING in health.
  StartAgent({"--datastore=etcd://127.0.0.1:9"});
  v1::StatusResponse s;
  for (int i = 0; i < 40; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(2));
    if (Status()->Status(&ctx, v1::StatusRequest(), &s).ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_FALSE(s.serving());
  v1::ListRequest list;
  list.set_kind(v1::POD);
  grpc::ClientContext ctx;
  v1::ListResponse lresp;
  grpc::Status st = Objects()->List(&ctx, list, &lresp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(st.error_message(), HasSubstr("starting"));
  EXPECT_EQ(HealthStatus(Channel()), "NOT_SERVING");
  EXPECT_EQ(Ctl({"status"}).exit_code, 1);
  EXPECT_EQ(StopAgent(SIGTERM), 0);
}

// Reads http://127.0.0.1:<port><path> with a bare HTTP/1.0 request.
std::string HttpGet(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa = {};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0) {
    std::string req = "GET " + path + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
    if (write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
      char buf[4096];
      ssize_t n;
      while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return out;
}

TEST_F(AgentTest, MetricsFollowTheStatus) {
  StartAgent({"--metrics-listen=127.0.0.1:39573"});
  WaitServing();
  v1::ApplyResponse applied;
  ASSERT_TRUE(Apply(*Objects(), ManifestRequest("shop.yaml", kShop), &applied).ok());
  std::string metrics = HttpGet(39573, "/metrics");
  EXPECT_THAT(metrics, HasSubstr("netpol_serving 1"));
  EXPECT_THAT(metrics, HasSubstr("netpol_applied_generation " + std::to_string(applied.generation())));
  EXPECT_THAT(metrics, HasSubstr("netpol_objects{kind=\"local_pod\"} 2"));
  EXPECT_THAT(metrics, HasSubstr("netpol_sync_failures_total 0"));
}

TEST_F(AgentTest, PeriodicCheckRepairsDriftAndLeavesAFaithfulTableAlone) {
  // Notifications off: this checks the periodic path alone (drift_e2e_test the other).
  StartAgent({"--check-interval=200ms", "--watch-changes=false"});
  WaitServing();
  v1::ApplyResponse applied;
  ASSERT_TRUE(Apply(*Objects(), ManifestRequest("shop.yaml", kShop), &applied).ok());
  const std::string program = RenderKernel(*Queries());
  // Several checks pass over an untouched table: what the kernel dumps equals the program.
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  EXPECT_THAT(AgentLog(), Not(HasSubstr("drift")));
  // Someone flushes our rules; the next check puts them back. (The check runs every 200 ms,
  // so a kernel read right after the flush may already see the repaired table: the repair is
  // proven by the agent's own log line, which only a check that found drift writes.)
  ASSERT_THAT(AgentLog(), Not(HasSubstr("sync kind=repair")));
  ASSERT_EQ(RunCommand({"nft", "flush", "table", "inet", table_}).exit_code, 0);
  EXPECT_THAT(AgentLogOnceItSays("sync kind=repair"), HasSubstr("sync kind=repair"));
  EXPECT_THAT(AgentLog(), HasSubstr("drift check"));
  std::string now;
  for (int i = 0; i < 100 && now != program; ++i) {
    now = RenderKernel(*Queries());
    if (now != program) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(now, program);
  // And the whole table deleted.
  ASSERT_EQ(RunCommand({"nft", "delete", "table", "inet", table_}).exit_code, 0);
  for (int i = 0; i < 100 && Nft().rfind("error", 0) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(RenderKernel(*Queries()), program);
}

TEST_F(AgentTest, Netpolctl) {
  StartAgent();
  WaitServing();
  const std::string dir = dir_ + "/manifests";
  mkdir(dir.c_str(), 0700);
  std::ofstream(dir + "/shop.yaml") << kShop;
  std::ofstream(dir + "/ignored.txt") << "not yaml";

  CommandResult r = Ctl({"apply", "-f", dir});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "namespace/shop created\npod/web created\npod/client created\npod/other created\n"
            "networkpolicy.networking.k8s.io/web-ingress created\n");
  r = Ctl({"apply", "-f", "-"}, kShop);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("networkpolicy.networking.k8s.io/web-ingress unchanged"));

  r = Ctl({"get", "pods", "-n", "shop", "-o", "wide"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("web"));
  EXPECT_THAT(r.out, HasSubstr("10.1.0.10"));
  r = Ctl({"get", "networkpolicies"});
  EXPECT_THAT(r.out, HasSubstr("web-ingress   app=web"));
  // -o yaml is applyable Kubernetes YAML: applying it back changes nothing.
  r = Ctl({"get", "netpol", "web-ingress", "-n", "shop", "-o", "yaml"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("kind: NetworkPolicy"));
  CommandResult back = Ctl({"apply", "-f", "-"}, r.out);
  EXPECT_EQ(back.out, "networkpolicy.networking.k8s.io/web-ingress unchanged\n") << back.err;
  r = Ctl({"get", "pods", "-o", "json"});
  EXPECT_THAT(r.out, HasSubstr("\"kind\": \"List\""));

  // check: exit 0 allowed, 1 denied, with the explanation.
  r = Ctl({"check", "--from", "shop/client", "--to", "shop/web", "--port", "8080"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("allowed"));
  r = Ctl({"check", "--from", "shop/other", "--to", "shop/web", "--port", "8080", "--protocol",
           "TCP"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("denied"));
  EXPECT_THAT(r.out, HasSubstr("shop/web-ingress"));
  r = Ctl({"check", "--from", "shop/nobody", "--to", "shop/web", "--port", "80"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("pod shop/nobody: not found"));

  r = Ctl({"explain", "pod", "shop/web"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("shop/web-ingress"));
  EXPECT_THAT(r.out, HasSubstr("http=8080/TCP"));

  r = Ctl({"render"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("table inet netpol"));
  r = Ctl({"render", "--kernel"});
  EXPECT_THAT(r.out, HasSubstr("shop/web"));

  r = Ctl({"status"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Serving:"));

  // diff: nothing to do -> 0; a new local pod -> 1 with the nft commands and the pods.
  r = Ctl({"diff", "-f", dir + "/shop.yaml"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  const std::string before = Nft();
  r = Ctl({"diff", "-f", "-"}, R"(apiVersion: v1
kind: Pod
metadata: {name: client-2, namespace: shop, labels: {app: client}}
spec: {nodeName: node-1}
status: {podIP: 10.1.0.12}
)");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.out, HasSubstr("pod/client-2 created"));
  EXPECT_THAT(r.out, HasSubstr("10.1.0.12"));
  EXPECT_THAT(r.out, HasSubstr("shop/web"));  // its ingress peers change
  EXPECT_EQ(Nft(), before);

  r = Ctl({"delete", "-f", dir + "/shop.yaml"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("networkpolicy.networking.k8s.io/web-ingress deleted"));
  r = Ctl({"get", "pods"});
  EXPECT_THAT(r.err, HasSubstr("No resources found"));

  // Agent not running: say which socket was tried and how to start the agent.
  ASSERT_EQ(StopAgent(SIGTERM), 0);
  r = Ctl({"status"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("cannot reach netpol-agent at " + address()));
  EXPECT_THAT(r.err, HasSubstr("netpol-agent --node-name"));
}

}  // namespace
}  // namespace netpol::e2e
