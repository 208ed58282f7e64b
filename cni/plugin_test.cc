#include "cni/plugin.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "cni/json.h"
#include "gtest/gtest.h"

namespace netpol::cni {
namespace {

// The agent as scripted by a test: answers each call kind from a queue of statuses (the last
// one repeats), records every request.
class FakeAgent : public AgentClient {
 public:
  std::vector<absl::Status> attach_results{absl::OkStatus()};
  std::vector<absl::Status> detach_results{absl::OkStatus()};
  absl::Status gc_status;
  v1::GarbageCollectResponse gc_response;
  std::vector<v1::GarbageCollectRequest> gcs;
  absl::Status list_status;
  v1::ListAttachmentsResponse list_response;
  std::vector<v1::AttachRequest> attaches;
  std::vector<v1::DetachRequest> detaches;
  std::vector<v1::ListAttachmentsRequest> lists;
  std::vector<bool> wait_for_ready;

  absl::StatusOr<v1::AttachResponse> Attach(const v1::AttachRequest& r, absl::Time,
                                            bool wfr) override {
    attaches.push_back(r);
    wait_for_ready.push_back(wfr);
    absl::Status s = Next(attach_results, attaches.size());
    if (!s.ok()) return s;
    return v1::AttachResponse();
  }
  absl::StatusOr<v1::DetachResponse> Detach(const v1::DetachRequest& r, absl::Time,
                                            bool wfr) override {
    detaches.push_back(r);
    wait_for_ready.push_back(wfr);
    absl::Status s = Next(detach_results, detaches.size());
    if (!s.ok()) return s;
    return v1::DetachResponse();
  }
  absl::StatusOr<v1::GarbageCollectResponse> GarbageCollect(const v1::GarbageCollectRequest& r,
                                                           absl::Time, bool wfr) override {
    gcs.push_back(r);
    wait_for_ready.push_back(wfr);
    if (!gc_status.ok()) return gc_status;
    return gc_response;
  }
  absl::StatusOr<v1::ListAttachmentsResponse> List(const v1::ListAttachmentsRequest& r, absl::Time,
                                                   bool wfr) override {
    lists.push_back(r);
    wait_for_ready.push_back(wfr);
    if (!list_status.ok()) return list_status;
    return list_response;
  }

 private:
  static absl::Status Next(const std::vector<absl::Status>& q, size_t n) {
    return q[std::min(n, q.size()) - 1];
  }
};

// A fake clock: sleeping advances it.
struct Clock {
  absl::Time now = absl::FromUnixSeconds(1000000);
};

class PluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/netpol-cni-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    socket_ = dir_ + "/agent.sock";
    options_.dial = [this](const std::string& path) {
      dialed_.push_back(path);
      return std::unique_ptr<AgentClient>(new Forward(&agent_));
    };
    options_.now = [this] { return clock_.now; };
    options_.sleep = [this](absl::Duration d) { clock_.now += d; };
    // CNI_NETNS paths here are made up; NetnsRefusesWhatIsNotAPodsNetns tests the real check.
    options_.netns_problem = [this](const std::string& p) {
      netns_checked_.push_back(p);
      return std::string();
    };
  }
  void TearDown() override {
    if (listen_fd_ >= 0) ::close(listen_fd_);
    std::system(("rm -rf " + dir_).c_str());
  }

  // Makes the socket path accept connections (the kernel queues them; nobody answers).
  void Listen() {
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(listen_fd_, 0);
    struct sockaddr_un sa = {};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, socket_.c_str(), sizeof(sa.sun_path) - 1);
    ASSERT_EQ(::bind(listen_fd_, reinterpret_cast<struct sockaddr*>(&sa), sizeof(sa)), 0);
    ASSERT_EQ(::listen(listen_fd_, 16), 0);
  }

  std::map<std::string, std::string> Env(const std::string& command) {
    return {{"CNI_COMMAND", command},
            {"CNI_CONTAINERID", "c0ffee-1"},
            {"CNI_NETNS", "/var/run/netns/pod-1"},
            {"CNI_IFNAME", "eth0"},
            {"CNI_PATH", "/opt/cni/bin"},
            {"CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;"
                         "K8S_POD_INFRA_CONTAINER_ID=c0ffee-1;K8S_POD_UID=uid-1"}};
  }

  std::string Config(const std::string& version = "1.0.0", const std::string& extra = "") {
    return absl::StrCat(R"({"cniVersion": ")", version,
                        R"(", "name": "k8s-pod-network", "type": "netpol-cni", "agentSocket": ")",
                        socket_, R"(", "timeoutSeconds": 2)", extra, "}");
  }

  // A bridge plugin result: the bridge, the host veth, the pod's eth0; addresses on eth0 and
  // (as some plugins report it) the gateway on the bridge.
  static std::string PrevResult() {
    return R"({ "cniVersion":"1.0.0",
      "interfaces": [{"name": "cni0", "mac": "aa:bb:cc:00:00:01"},
                     {"name": "veth1234", "mac": "aa:bb:cc:00:00:02"},
                     {"name": "eth0", "mac": "aa:bb:cc:00:00:03", "sandbox": "/var/run/netns/pod-1"}],
      "ips": [{"address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 2},
              {"address": "fd00:10:244:1:0:0:0:5/64", "interface": 2},
              {"address": "10.244.1.1/24", "interface": 0}],
      "routes": [{"dst": "0.0.0.0/0"}], "dns": {}  })";
  }

  Outcome RunWith(const std::map<std::string, std::string>& env, const std::string& config) {
    return cni::Run(env, config, options_);
  }

  // Parses an error object and checks its shape; returns its code.
  static int ErrorCode(const Outcome& o, const std::string& want_version = "1.0.0",
                       std::string* msg = nullptr) {
    EXPECT_NE(o.exit_code, 0);
    absl::StatusOr<JsonValue> v = JsonValue::Parse(o.out);
    EXPECT_TRUE(v.ok()) << o.out;
    if (!v.ok()) return -1;
    std::set<std::string> keys;
    for (const auto& [k, val] : v->members()) keys.insert(k);
    for (const std::string& k : keys) {
      EXPECT_TRUE(k == "cniVersion" || k == "code" || k == "msg" || k == "details") << k;
    }
    EXPECT_TRUE(keys.count("cniVersion") && keys.count("code") && keys.count("msg")) << o.out;
    EXPECT_EQ(v->Find("cniVersion")->str(), want_version);
    EXPECT_TRUE(v->Find("code")->is_integer());
    EXPECT_FALSE(v->Find("msg")->str().empty());
    if (msg != nullptr) *msg = v->Find("msg")->str();
    return static_cast<int>(v->Find("code")->number());
  }

  class Forward : public AgentClient {
   public:
    explicit Forward(AgentClient* to) : to_(to) {}
    absl::StatusOr<v1::AttachResponse> Attach(const v1::AttachRequest& r, absl::Time d,
                                              bool w) override {
      return to_->Attach(r, d, w);
    }
    absl::StatusOr<v1::DetachResponse> Detach(const v1::DetachRequest& r, absl::Time d,
                                              bool w) override {
      return to_->Detach(r, d, w);
    }
    absl::StatusOr<v1::GarbageCollectResponse> GarbageCollect(const v1::GarbageCollectRequest& r,
                                                             absl::Time d, bool w) override {
      return to_->GarbageCollect(r, d, w);
    }
    absl::StatusOr<v1::ListAttachmentsResponse> List(const v1::ListAttachmentsRequest& r,
                                                     absl::Time d, bool w) override {
      return to_->List(r, d, w);
    }

   private:
    AgentClient* to_;
  };

  std::string dir_, socket_;
  int listen_fd_ = -1;
  FakeAgent agent_;
  Clock clock_;
  RunOptions options_;
  std::vector<std::string> dialed_;
  std::vector<std::string> netns_checked_;
};

TEST_F(PluginTest, VersionListsTheSupportedVersions) {
  Outcome o = RunWith({{"CNI_COMMAND", "VERSION"}}, R"({"cniVersion": "1.0.0"})");
  EXPECT_EQ(o.exit_code, 0);
  EXPECT_EQ(o.out,
            "{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"0.3.0\",\"0.3.1\",\"0.4.0\","
            "\"1.0.0\",\"1.1.0\"]}\n");
  // No stdin at all is fine for VERSION.
  EXPECT_EQ(RunWith({{"CNI_COMMAND", "VERSION"}}, "").exit_code, 0);
}

struct ErrorCase {
  const char* name;
  std::map<std::string, std::string> env_changes;  // "" value: remove
  std::string config;                              // "" : the default config with prevResult
  int code;
  const char* msg;  // fragment
  const char* version = "1.0.0";
};

TEST_F(PluginTest, ErrorsFollowTheSpec) {
  const std::string prev = ", \"prevResult\": " + PrevResult();
  const ErrorCase cases[] = {
      {"no command", {{"CNI_COMMAND", ""}}, "", kInvalidEnvironment, "CNI_COMMAND: required", "1.1.0"},
      {"unknown command", {{"CNI_COMMAND", "REPAIR"}}, "", kInvalidEnvironment, "\"REPAIR\"", "1.1.0"},
      {"status before 1.1.0", {{"CNI_COMMAND", "STATUS"}}, Config("1.0.0"), kIncompatibleVersion,
       "STATUS needs 1.1.0 or later"},
      {"gc before 1.1.0", {{"CNI_COMMAND", "GC"}}, Config("1.0.0"), kIncompatibleVersion,
       "GC needs 1.1.0 or later"},
      {"gc without the list", {{"CNI_COMMAND", "GC"}}, Config("1.1.0"), kInvalidConfig,
       "cni.dev/valid-attachments: required for GC", "1.1.0"},
      {"gc bad list", {{"CNI_COMMAND", "GC"}},
       Config("1.1.0", R"(, "cni.dev/valid-attachments": [{"containerID": "-x", "ifname": "eth0"}])"),
       kInvalidConfig, "cni.dev/valid-attachments[0].containerID", "1.1.0"},
      {"not json", {}, "{not json", kDecodeFailure, "network configuration on stdin: JSON at byte 1", "1.1.0"},
      {"not an object", {}, "[]", kDecodeFailure, "expected an object", "1.1.0"},
      {"no cniVersion", {}, R"({"name": "n", "type": "netpol-cni"})", kInvalidConfig,
       "cniVersion: required", "1.1.0"},
      {"unsupported version", {}, Config("2.0.0"), kIncompatibleVersion,
       "cniVersion \"2.0.0\" is not supported", "1.1.0"},
      {"no name", {}, R"({"cniVersion": "1.0.0", "type": "netpol-cni"})", kInvalidConfig,
       "name: required"},
      {"name not a string", {}, R"({"cniVersion": "1.0.0", "name": 3, "type": "t"})",
       kInvalidConfig, "name: must be a non-empty string, found number"},
      {"relative socket", {}, R"({"cniVersion": "1.0.0", "name": "n", "type": "t", "agentSocket": "agent.sock"})",
       kInvalidConfig, "agentSocket: \"agent.sock\": must be an absolute path"},
      {"zero timeout", {}, R"({"cniVersion": "1.0.0", "name": "n", "type": "t", "timeoutSeconds": 0})",
       kInvalidConfig, "timeoutSeconds: 0: must be a number of seconds above 0"},
      {"timeout a string", {}, R"({"cniVersion": "1.0.0", "name": "n", "type": "t", "timeoutSeconds": "10s"})",
       kInvalidConfig, "timeoutSeconds: string: must be a number of seconds"},
      {"prevResult not an object", {}, Config("1.0.0", ", \"prevResult\": []"), kInvalidConfig,
       "prevResult: must be an object"},
      {"no container id", {{"CNI_CONTAINERID", ""}}, "", kInvalidEnvironment,
       "CNI_CONTAINERID: required"},
      {"bad container id", {{"CNI_CONTAINERID", "-x/y"}}, "", kInvalidEnvironment,
       "CNI_CONTAINERID: \"-x/y\""},
      {"no ifname", {{"CNI_IFNAME", ""}}, "", kInvalidEnvironment, "CNI_IFNAME: required"},
      {"long ifname", {{"CNI_IFNAME", "abcdefghijklmnop"}}, "", kInvalidEnvironment,
       "not a valid interface name"},
      {"no netns", {{"CNI_NETNS", ""}}, "", kInvalidEnvironment, "CNI_NETNS: required for ADD"},
      {"bad args", {{"CNI_ARGS", "K8S_POD_NAME"}}, "", kInvalidEnvironment,
       "CNI_ARGS: \"K8S_POD_NAME\": must be KEY=VALUE"},
      {"no pod name", {{"CNI_ARGS", "K8S_POD_NAMESPACE=shop"}}, "", kInvalidEnvironment,
       "K8S_POD_NAMESPACE and K8S_POD_NAME go together"},
      {"no prevResult", {}, Config(), kInvalidConfig, "prevResult: required"},
      {"address not a cidr", {}, Config("1.0.0", R"(, "prevResult": {"ips": [{"address": "10.0.0.1"}]})"),
       kInvalidConfig, "prevResult.ips[0].address: \"10.0.0.1\": must be a CIDR"},
      {"bad address", {}, Config("1.0.0", R"(, "prevResult": {"ips": [{"address": "10.0.0.300/24"}]})"),
       kInvalidConfig, "prevResult.ips[0].address: \"10.0.0.300/24\""},
      {"interface out of range", {}, Config("1.0.0", R"(, "prevResult": {"interfaces": [], "ips": [{"address": "10.0.0.1/24", "interface": 0}]})"),
       kInvalidConfig, "prevResult.ips[0].interface: 0: must index prevResult.interfaces (0 entries)"},
      {"only host addresses", {}, Config("1.0.0", R"(, "prevResult": {"interfaces": [{"name": "cni0"}], "ips": [{"address": "10.0.0.1/24", "interface": 0}]})"),
       kInvalidConfig, "prevResult.ips: no address on an interface of the pod"},
      {"version echoed in errors", {{"CNI_ARGS", "K8S_POD_NAME=x"}}, Config("0.4.0", prev),
       kInvalidEnvironment, "K8S_POD_NAMESPACE", "0.4.0"},
      {"check before 0.4.0", {{"CNI_COMMAND", "CHECK"}}, Config("0.3.1", prev), kIncompatibleVersion,
       "CHECK needs 0.4.0 or later", "0.3.1"},
  };
  for (const ErrorCase& c : cases) {
    std::map<std::string, std::string> env = Env("ADD");
    for (const auto& [k, v] : c.env_changes) {
      if (v.empty()) {
        env.erase(k);
      } else {
        env[k] = v;
      }
    }
    std::string config = c.config.empty() ? Config("1.0.0", prev) : c.config;
    Outcome o = RunWith(env, config);
    std::string msg;
    EXPECT_EQ(ErrorCode(o, c.version, &msg), c.code) << c.name << ": " << o.out;
    EXPECT_NE(msg.find(c.msg), std::string::npos) << c.name << ": " << msg;
    EXPECT_FALSE(o.err.empty()) << c.name;
  }
  EXPECT_TRUE(agent_.attaches.empty()) << "no bad input reaches the agent";
}

TEST_F(PluginTest, AddAttachesThePodAndPassesPrevResultThroughByteForByte) {
  const std::string prev = PrevResult();
  Outcome o = RunWith(Env("ADD"), Config("1.0.0", ", \"prevResult\": " + prev));
  ASSERT_EQ(o.exit_code, 0) << o.out;
  EXPECT_EQ(o.out, prev);
  ASSERT_EQ(dialed_, std::vector<std::string>{socket_});
  ASSERT_EQ(agent_.attaches.size(), 1u);
  const v1::Attachment& a = agent_.attaches[0].attachment();
  EXPECT_EQ(a.network(), "k8s-pod-network");
  EXPECT_EQ(a.container_id(), "c0ffee-1");
  EXPECT_EQ(a.netns(), "/var/run/netns/pod-1");
  EXPECT_EQ(netns_checked_, std::vector<std::string>{"/var/run/netns/pod-1"});
  EXPECT_EQ(a.interface(), "eth0");
  EXPECT_EQ(a.pod_namespace(), "shop");
  EXPECT_EQ(a.pod_name(), "web-0");
  EXPECT_EQ(a.pod_uid(), "uid-1");
  // The bridge's own address is not the pod's; IPv6 comes out canonical.
  EXPECT_EQ(std::vector<std::string>(a.ips().begin(), a.ips().end()),
            (std::vector<std::string>{"10.244.1.5", "fd00:10:244:1::5"}));
  EXPECT_TRUE(agent_.wait_for_ready[0]);
}

TEST_F(PluginTest, AddAcceptsOldConfigVersionsAndUnixUrls) {
  const std::string prev = R"({"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.244.1.9/24"}]})";
  std::string config = absl::StrReplaceAll(Config("0.4.0", ", \"prevResult\": " + prev),
                                           {{"\"agentSocket\": \"", "\"agentSocket\": \"unix://"}});
  Outcome o = RunWith(Env("ADD"), config);
  ASSERT_EQ(o.exit_code, 0) << o.out;
  EXPECT_EQ(o.out, prev);
  EXPECT_EQ(dialed_, std::vector<std::string>{socket_});
}

TEST_F(PluginTest, AddRetriesWhileTheAgentStartsThenGivesUpAtTheTimeout) {
  agent_.attach_results = {absl::UnavailableError("netpol-agent is starting")};
  Listen();  // something accepts on the socket: the agent is there but not ready
  const absl::Time start = clock_.now;
  Outcome o = RunWith(Env("ADD"), Config("1.0.0", ", \"prevResult\": " + PrevResult()));
  std::string msg;
  EXPECT_EQ(ErrorCode(o, "1.0.0", &msg), kTryAgainLater);
  EXPECT_NE(msg.find(socket_), std::string::npos) << msg;
  EXPECT_NE(msg.find("is not ready: netpol-agent is starting"), std::string::npos) << msg;
  EXPECT_LE(clock_.now - start, absl::Seconds(2));
  EXPECT_GT(agent_.attaches.size(), 3u);
}

TEST_F(PluginTest, AddSucceedsOnceTheAgentIsReady) {
  agent_.attach_results = {absl::UnavailableError("starting"), absl::UnavailableError("starting"),
                           absl::OkStatus()};
  Outcome o = RunWith(Env("ADD"), Config("1.0.0", ", \"prevResult\": " + PrevResult()));
  EXPECT_EQ(o.exit_code, 0) << o.out;
  EXPECT_EQ(agent_.attaches.size(), 3u);
}

TEST_F(PluginTest, AddWithTheAgentDownNamesTheSocket) {
  agent_.attach_results = {absl::DeadlineExceededError("Deadline Exceeded")};
  Outcome o = RunWith(Env("ADD"), Config("1.0.0", ", \"prevResult\": " + PrevResult()));
  std::string msg;
  EXPECT_EQ(ErrorCode(o, "1.0.0", &msg), kTryAgainLater);
  EXPECT_NE(msg.find("netpol-agent is not reachable at " + socket_ + ": socket " + socket_ +
                     ": No such file or directory"),
            std::string::npos)
      << msg;
}

TEST_F(PluginTest, AddMapsAgentRefusals) {
  struct Case {
    absl::Status status;
    int code;
  } cases[] = {
      {absl::InvalidArgumentError("attachment.ips[0]: bad"), kInvalidConfig},
      {absl::PermissionDeniedError("no"), kAgentRejected},
      {absl::FailedPreconditionError("kernel lacks sets"), kAgentRejected},
  };
  Listen();
  for (const Case& c : cases) {
    agent_.attach_results = {c.status};
    Outcome o = RunWith(Env("ADD"), Config("1.0.0", ", \"prevResult\": " + PrevResult()));
    std::string msg;
    EXPECT_EQ(ErrorCode(o, "1.0.0", &msg), c.code) << c.status;
    EXPECT_NE(msg.find(std::string(c.status.message())), std::string::npos) << msg;
  }
}

TEST_F(PluginTest, DelDetachesAndIsQuietOnSuccess) {
  Listen();
  std::map<std::string, std::string> env = Env("DEL");
  env.erase("CNI_NETNS");  // optional for DEL
  Outcome o = RunWith(env, Config());
  EXPECT_EQ(o.exit_code, 0) << o.out;
  EXPECT_EQ(o.out, "");
  ASSERT_EQ(agent_.detaches.size(), 1u);
  EXPECT_EQ(agent_.detaches[0].container_id(), "c0ffee-1");
  EXPECT_EQ(agent_.detaches[0].network(), "k8s-pod-network");
  EXPECT_EQ(agent_.detaches[0].interface(), "eth0");
}

TEST_F(PluginTest, DelSucceedsWhenTheAgentIsAbsentAndIsRetriedWhenItDoesNotConfirm) {
  // Nothing listens on the socket (agent stopped or not installed): the agent is not asked,
  // and the pod's teardown is not blocked.
  Outcome o = RunWith(Env("DEL"), Config());
  EXPECT_EQ(o.exit_code, 0) << o.out;
  EXPECT_EQ(o.out, "");
  EXPECT_TRUE(dialed_.empty());
  EXPECT_NE(o.err.find("agent not reachable"), std::string::npos) << o.err;
  // The agent is there but answers UNAVAILABLE until the timeout: the plugin retries within
  // timeoutSeconds, then fails with 11 so the runtime repeats the (idempotent) DEL.
  Listen();
  agent_.detach_results = {absl::UnavailableError("starting")};
  o = RunWith(Env("DEL"), Config());
  EXPECT_EQ(ErrorCode(o), kTryAgainLater) << o.out;
  EXPECT_GT(agent_.detaches.size(), 3u);
  // It does not confirm in time: the same.
  agent_.detaches.clear();
  agent_.detach_results = {absl::DeadlineExceededError("Deadline Exceeded")};
  std::string msg;
  EXPECT_EQ(ErrorCode(RunWith(Env("DEL"), Config()), "1.0.0", &msg), kTryAgainLater);
  EXPECT_NE(msg.find("did not confirm the detach of k8s-pod-network/c0ffee-1/eth0"),
            std::string::npos)
      << msg;
  // The repeated DEL succeeds once the agent answers.
  agent_.detach_results = {absl::OkStatus()};
  EXPECT_EQ(RunWith(Env("DEL"), Config()).exit_code, 0);
  // A refusal for another reason is an error.
  agent_.detach_results = {absl::PermissionDeniedError("read-only")};
  o = RunWith(Env("DEL"), Config());
  EXPECT_EQ(ErrorCode(o), kAgentRejected);
}

TEST_F(PluginTest, AddWithoutKubernetesArgsAttachesAContainerThatIsNotAPod) {
  std::map<std::string, std::string> env = Env("ADD");
  env["CNI_ARGS"] = "IgnoreUnknown=1";  // nerdctl, podman, cnitool
  Outcome o = RunWith(env, Config("1.1.0", ", \"prevResult\": " + PrevResult()));
  ASSERT_EQ(o.exit_code, 0) << o.out;
  ASSERT_EQ(agent_.attaches.size(), 1u);
  EXPECT_EQ(agent_.attaches[0].attachment().pod_name(), "");
  EXPECT_EQ(agent_.attaches[0].attachment().pod_namespace(), "");
  env.erase("CNI_ARGS");
  EXPECT_EQ(RunWith(env, Config("1.1.0", ", \"prevResult\": " + PrevResult())).exit_code, 0);
}

TEST_F(PluginTest, CniOneOneStatusAndGc) {
  Listen();
  // ADD with a 1.1.0 config passes its prevResult through.
  const std::string prev = absl::StrReplaceAll(PrevResult(), {{"1.0.0", "1.1.0"}});
  Outcome o = RunWith(Env("ADD"), Config("1.1.0", ", \"prevResult\": " + prev));
  ASSERT_EQ(o.exit_code, 0) << o.out;
  EXPECT_EQ(o.out, prev);
  // STATUS: the agent answers (NOT_FOUND for the probe id is an answer).
  agent_.list_status = absl::NotFoundError("not found");
  std::map<std::string, std::string> status_env = {{"CNI_COMMAND", "STATUS"}};
  o = RunWith(status_env, Config("1.1.0"));
  EXPECT_EQ(o.exit_code, 0) << o.out;
  EXPECT_EQ(o.out, "");
  agent_.list_status = absl::UnavailableError("netpol-agent is starting");
  EXPECT_EQ(ErrorCode(RunWith(status_env, Config("1.1.0")), "1.1.0"), kPluginNotAvailable);
  // GC: the valid list goes to the agent for this network.
  agent_.gc_response.add_removed("k8s-pod-network/gone/eth0");
  o = RunWith({{"CNI_COMMAND", "GC"}},
              Config("1.1.0", R"(, "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}, {"containerID": "c2", "ifname": "net1"}])"));
  EXPECT_EQ(o.exit_code, 0) << o.out;
  EXPECT_EQ(o.out, "");
  EXPECT_NE(o.err.find("removed k8s-pod-network/gone/eth0"), std::string::npos) << o.err;
  ASSERT_EQ(agent_.gcs.size(), 1u);
  EXPECT_EQ(agent_.gcs[0].network(), "k8s-pod-network");
  ASSERT_EQ(agent_.gcs[0].valid_size(), 2);
  EXPECT_EQ(agent_.gcs[0].valid(1).container_id(), "c2");
  EXPECT_EQ(agent_.gcs[0].valid(1).interface(), "net1");
  // An empty list collects every attachment of the network.
  o = RunWith({{"CNI_COMMAND", "GC"}}, Config("1.1.0", R"(, "cni.dev/valid-attachments": [])"));
  EXPECT_EQ(o.exit_code, 0) << o.out;
  EXPECT_EQ(agent_.gcs.back().valid_size(), 0);
}

TEST(NetnsProblemTest, RefusesWhatIsNotAPodsNetns) {
  EXPECT_NE(NetnsProblem("/"), "");
  EXPECT_NE(NetnsProblem("/../proc/1/ns/net"), "");
  EXPECT_NE(NetnsProblem("/etc/hostname"), "");
  EXPECT_NE(NetnsProblem("/nonexistent/netns"), "");
  EXPECT_NE(NetnsProblem("proc/self/ns/net"), "");
  EXPECT_NE(NetnsProblem("/proc/self/ns/mnt"), "");
  // This process's own namespace is the runtime's: not a pod's.
  EXPECT_NE(NetnsProblem("/proc/self/ns/net").find("own (host) network namespace"),
            std::string::npos);
}

TEST_F(PluginTest, CheckVerifiesTheAttachmentAndTheKernel) {
  Listen();
  const std::string config = Config("1.0.0", ", \"prevResult\": " + PrevResult());
  v1::AttachmentStatus* st = agent_.list_response.add_attachments();
  st->set_pod("shop/web-0");
  st->mutable_attachment()->add_ips("10.244.1.5");
  st->mutable_attachment()->add_ips("fd00:10:244:1::5");
  st->set_verified(true);
  Outcome o = RunWith(Env("CHECK"), config);
  EXPECT_EQ(o.exit_code, 0) << o.out;
  EXPECT_EQ(o.out, "");
  ASSERT_EQ(agent_.lists.size(), 1u);
  EXPECT_EQ(agent_.lists[0].container_id(), "c0ffee-1");
  EXPECT_EQ(agent_.lists[0].network(), "k8s-pod-network");
  EXPECT_EQ(agent_.lists[0].interface(), "eth0");
  EXPECT_TRUE(agent_.lists[0].verify());

  st->set_verified(false);
  st->set_problem("chain in-x is missing");
  std::string msg;
  EXPECT_EQ(ErrorCode(RunWith(Env("CHECK"), config), "1.0.0", &msg), kNotEnforced);
  EXPECT_NE(msg.find("pod shop/web-0: its rules are not in the kernel: chain in-x is missing"),
            std::string::npos)
      << msg;

  st->set_verified(true);
  st->mutable_attachment()->set_ips(1, "fd00:10:244:1::6");
  EXPECT_EQ(ErrorCode(RunWith(Env("CHECK"), config), "1.0.0", &msg), kNotEnforced);
  EXPECT_NE(msg.find("prevResult has [10.244.1.5, fd00:10:244:1::5]"), std::string::npos) << msg;

  agent_.list_status = absl::NotFoundError("attachment c0ffee-1: not found on this node");
  EXPECT_EQ(ErrorCode(RunWith(Env("CHECK"), config)), kUnknownContainer);
}

}  // namespace
}  // namespace netpol::cni
