// The end-to-end fixture. See fixture.h.
#include "agent/e2e/fixture.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "agent/e2e/grpc_raw.h"
#include "engine/util/skip_or_fail.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace netpol::e2e {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<char*> Argv(std::vector<std::string>& args) {
  std::vector<char*> out;
  for (std::string& a : args) out.push_back(a.data());
  out.push_back(nullptr);
  return out;
}

bool netns_ready = false;

}  // namespace

CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& input) {
  char tmpl[] = "/tmp/netpol-cmd-XXXXXX";
  CommandResult r;
  if (mkdtemp(tmpl) == nullptr) return r;
  const std::string dir = tmpl;
  const std::string in_path = dir + "/in", out_path = dir + "/out", err_path = dir + "/err";
  std::ofstream(in_path) << input;
  std::vector<std::string> args = argv;
  pid_t pid = fork();
  if (pid == 0) {
    int in = open(in_path.c_str(), O_RDONLY);
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    std::vector<char*> a = Argv(args);
    execvp(a[0], a.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = ReadAll(out_path);
  r.err = ReadAll(err_path);
  std::system(("rm -rf " + dir).c_str());
  return r;
}

std::string Runfile(const std::string& path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* ws = std::getenv("TEST_WORKSPACE");
  return std::string(srcdir ? srcdir : ".") + "/" + (ws ? ws : "netpol") + "/" + path;
}

void AgentTest::SetUpTestSuite() {
  if (geteuid() != 0 || netns_ready) return;
  // Before any gRPC thread exists: threads created later inherit this namespace.
  if (unshare(CLONE_NEWNET) != 0) {
    perror("unshare(CLONE_NEWNET)");
    return;
  }
  RunCommand({"ip", "link", "set", "lo", "up"});
  netns_ready = true;
}

void AgentTest::SetUp() {
  if (geteuid() != 0) NETPOL_SKIP_OR_FAIL("needs root (network namespaces and nftables)");
  ASSERT_TRUE(netns_ready) << "could not create a network namespace";
  char tmpl[] = "/tmp/netpol-e2e-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  dir_ = tmpl;
  socket_ = dir_ + "/run/agent.sock";
  state_dir_ = dir_ + "/state";
  RunCommand({"nft", "delete", "table", "inet", table_});
}

void AgentTest::TearDown() {
  if (agent_ > 0) StopAgent(SIGKILL);
  if (HasFailure() && !dir_.empty()) std::cerr << "agent log:\n" << AgentLog();
  if (!dir_.empty()) std::system(("rm -rf " + dir_).c_str());
  if (netns_ready) RunCommand({"nft", "delete", "table", "inet", table_});
}

pid_t AgentTest::StartAgent(const std::vector<std::string>& extra) {
  std::vector<std::string> args = {Runfile("agent/netpol-agent"), "--node-name=node-1",
                                   "--listen=" + address(), "--state-dir=" + state_dir_,
                                   "--table=" + table_};
  args.insert(args.end(), extra.begin(), extra.end());
  const std::string log = dir_ + "/agent.log";
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> a = Argv(args);
    execv(a[0], a.data());
    _exit(127);
  }
  agent_ = pid;
  return pid;
}

void AgentTest::WaitServing() {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    auto stub = Status();
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    v1::StatusResponse resp;
    grpc::Status st = stub->Status(&ctx, v1::StatusRequest(), &resp);
    // The health service turns SERVING shortly after the Status does (the agent polls its
    // readiness every 50 ms): serving means both.
    if (st.ok() && resp.serving()) {
      const std::string health = HealthStatus(Channel());
      if (health == "SERVING") return;
      last = "health: " + health;
    } else {
      last = st.ok() ? resp.last_error() : st.error_message();
    }
    if (agent_ > 0 && waitpid(agent_, nullptr, WNOHANG) == agent_) {
      agent_ = -1;
      FAIL() << "agent exited before serving:\n" << AgentLog();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  FAIL() << "agent not serving after 30s (" << last << "):\n" << AgentLog();
}

int AgentTest::StopAgent(int sig) {
  if (agent_ <= 0) return -3;
  kill(agent_, sig);
  int status = 0;
  waitpid(agent_, &status, 0);
  agent_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int AgentTest::WaitExit(int seconds) {
  for (int i = 0; i < seconds * 20; ++i) {
    int status = 0;
    if (waitpid(agent_, &status, WNOHANG) == agent_) {
      agent_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return -2;
}

std::shared_ptr<grpc::Channel> AgentTest::Channel(const std::string& address) {
  return grpc::CreateChannel(address.empty() ? this->address() : address,
                             grpc::InsecureChannelCredentials());
}
std::unique_ptr<v1::ObjectService::Stub> AgentTest::Objects(const std::string& address) {
  return v1::ObjectService::NewStub(Channel(address));
}
std::unique_ptr<v1::QueryService::Stub> AgentTest::Queries(const std::string& address) {
  return v1::QueryService::NewStub(Channel(address));
}
std::unique_ptr<v1::StatusService::Stub> AgentTest::Status(const std::string& address) {
  return v1::StatusService::NewStub(Channel(address));
}

std::string AgentTest::Nft() {
  CommandResult r = RunCommand({"nft", "list", "table", "inet", table_});
  if (r.exit_code != 0) return "error: " + r.err;
  return r.out;
}

CommandResult AgentTest::Ctl(std::vector<std::string> args, const std::string& input) {
  args.insert(args.begin(), {Runfile("cli/netpolctl"), "--server=" + address()});
  return RunCommand(args, input);
}

std::string AgentTest::WriteFile(const std::string& name, const std::string& content) {
  std::string path = dir_ + "/" + name;
  std::ofstream(path) << content;
  return path;
}

std::string AgentTest::AgentLog() { return ReadAll(dir_ + "/agent.log"); }

std::string AgentTest::AgentLogOnceItSays(const std::string& text) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  std::string log = AgentLog();
  while (log.find(text) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    log = AgentLog();
  }
  return log;
}

}  // namespace netpol::e2e
