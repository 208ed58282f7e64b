// The end-to-end fixture: a real netpol-agent process (the built binary) in a fresh network
// namespace, its state directory and socket in a temporary directory, real gRPC clients, the
// netpolctl binary, and `nft` to look at the kernel. Root only: tests skip otherwise.
//
// The whole test process enters a new network namespace once (before any gRPC thread starts),
// so the agent and every `nft` it runs see only that namespace's tables; the host firewall is
// never touched.
#ifndef NETPOL_AGENT_E2E_FIXTURE_H_
#define NETPOL_AGENT_E2E_FIXTURE_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "api/netpol/v1/object_service.grpc.pb.h"
#include "api/netpol/v1/query_service.grpc.pb.h"
#include "api/netpol/v1/status_service.grpc.pb.h"
#include "grpcpp/channel.h"
#include "gtest/gtest.h"

namespace netpol::e2e {

struct CommandResult {
  int exit_code = -1;  // -1: killed by a signal
  std::string out, err;
};

// Runs `argv` (argv[0] a path) with `input` on stdin; waits for it.
CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& input = "");

// Path of a runfile ("agent/netpol-agent", "api/README.md").
std::string Runfile(const std::string& path);

class AgentTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  void SetUp() override;
  void TearDown() override;

  // Starts the agent with --node-name=node-1, the fixture's socket, state dir and table, plus
  // `extra` flags. Returns its pid.
  pid_t StartAgent(const std::vector<std::string>& extra = {});
  // Waits until Status says serving (fails the test after 30 s).
  void WaitServing();
  // Sends `sig` and waits for exit; returns the exit code (-1 when killed by a signal).
  int StopAgent(int sig);
  // Waits for the agent to exit on its own within `seconds`; returns its exit code, or -2
  // when it is still running.
  int WaitExit(int seconds);

  std::string address() const { return "unix://" + socket_; }
  std::shared_ptr<grpc::Channel> Channel(const std::string& address = "");
  std::unique_ptr<v1::ObjectService::Stub> Objects(const std::string& address = "");
  std::unique_ptr<v1::QueryService::Stub> Queries(const std::string& address = "");
  std::unique_ptr<v1::StatusService::Stub> Status(const std::string& address = "");

  // `nft list table inet <table>` output, or "error: ..." when it fails.
  std::string Nft();
  // Runs netpolctl against the agent's socket.
  CommandResult Ctl(std::vector<std::string> args, const std::string& input = "");
  // Writes `content` into the temporary directory; returns the path.
  std::string WriteFile(const std::string& name, const std::string& content);
  std::string AgentLog();
  // The agent's log once it contains `text`, or as it is after two seconds. A sync's log line
  // follows its commit, so a test that saw the kernel change may read the log a moment early.
  std::string AgentLogOnceItSays(const std::string& text);

  std::string dir_, socket_, state_dir_, table_ = "netpol";
  pid_t agent_ = -1;
};

}  // namespace netpol::e2e

#endif  // NETPOL_AGENT_E2E_FIXTURE_H_
