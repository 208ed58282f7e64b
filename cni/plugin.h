// netpol-cni: a chained CNI plugin (CNI spec 1.1.0; configs of 0.3.0, 0.3.1, 0.4.0 and 1.0.0
// are accepted too) that tells netpol-agent about each pod network attachment, so that no pod
// starts before its policies are in the kernel. cni/README.md documents the configuration,
// the behaviour per command and the error codes.
//
// Run() is the whole plugin as a function of its environment and stdin, so tests drive it
// without processes; main.cc only gathers the inputs and prints the outcome. The agent is
// reached through AgentClient (gRPC over the agent's Unix socket in production).
#ifndef NETPOL_CNI_PLUGIN_H_
#define NETPOL_CNI_PLUGIN_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "api/netpol/v1/endpoint_service.pb.h"
#include "cni/json.h"

namespace netpol::cni {

// The spec version of this plugin's own output (VERSION, errors without a usable config).
inline constexpr char kCurrentVersion[] = "1.1.0";
// Every version whose configs (and prevResult) the plugin reads, oldest first.
const std::vector<std::string>& SupportedVersions();

// Error codes. 1-99 are the CNI spec's well-known codes; 100+ are this plugin's own.
enum ErrorCode : int {
  kIncompatibleVersion = 1,   // cniVersion not supported (or CHECK before 0.4.0)
  kUnsupportedField = 2,
  kUnknownContainer = 3,      // CHECK: the agent has no attachment for CNI_CONTAINERID
  kInvalidEnvironment = 4,    // CNI_* variables missing or malformed (CNI_ARGS included)
  kIoFailure = 5,             // stdin unreadable
  kDecodeFailure = 6,         // stdin is not JSON
  kInvalidConfig = 7,         // network configuration or prevResult invalid
  kTryAgainLater = 11,        // the agent is unreachable, starting, or did not commit in time
  kPluginNotAvailable = 50,   // STATUS: the agent is not reachable or not ready
  kNotEnforced = 100,         // CHECK: the pod's rules are not (exactly) in the kernel
  kAgentRejected = 101,       // the agent refused the request for another reason
};

struct PluginError {
  int code = 0;
  std::string msg;
  std::string details;
};

// The agent's EndpointService as the plugin uses it. Errors carry the gRPC status code as an
// absl code (UNAVAILABLE, DEADLINE_EXCEEDED, NOT_FOUND, ...).
class AgentClient {
 public:
  virtual ~AgentClient() = default;
  // `wait_for_ready`: keep trying to connect until `deadline` instead of failing at once.
  virtual absl::StatusOr<v1::AttachResponse> Attach(const v1::AttachRequest& request,
                                                    absl::Time deadline, bool wait_for_ready) = 0;
  virtual absl::StatusOr<v1::DetachResponse> Detach(const v1::DetachRequest& request,
                                                    absl::Time deadline, bool wait_for_ready) = 0;
  virtual absl::StatusOr<v1::GarbageCollectResponse> GarbageCollect(
      const v1::GarbageCollectRequest& request, absl::Time deadline, bool wait_for_ready) = 0;
  virtual absl::StatusOr<v1::ListAttachmentsResponse> List(const v1::ListAttachmentsRequest& request,
                                                           absl::Time deadline,
                                                           bool wait_for_ready) = 0;
};

// Makes a client for the agent listening on the Unix socket `path`.
using AgentDialer = std::function<std::unique_ptr<AgentClient>(const std::string& path)>;
// The gRPC client.
std::unique_ptr<AgentClient> DialAgent(const std::string& path);

// The plugin's network configuration (the keys it reads; others are ignored, as the spec asks).
struct NetConf {
  std::string cni_version;
  std::string name;
  std::string type;
  // "agentSocket": the agent's Unix socket (a path, or unix:///path).
  std::string agent_socket = "/run/netpol/agent.sock";
  // "timeoutSeconds": how long ADD waits for the agent to commit the pod's rules (and CHECK and
  // DEL for an answer). ADD fails with code 11 after it.
  absl::Duration timeout = absl::Seconds(10);
  // "prevResult", when present: its exact input text and parsed value.
  std::optional<JsonValue> prev_result;
  // "cni.dev/valid-attachments" (GC): (containerID, ifname) pairs still in use.
  std::optional<std::vector<std::pair<std::string, std::string>>> valid_attachments;
};

// Parses and validates the network configuration. Errors: code 6 (not JSON), 1 (version not
// supported), 7 (a field invalid, named by its path).
std::optional<NetConf> ParseNetConf(absl::string_view text, PluginError* error);

// The pod addresses in a prevResult: `ips[].address` without the prefix length, for the
// entries whose `interface` index names an interface inside the sandbox (or that name none).
// Code 7 naming the field when the result is malformed.
std::optional<std::vector<std::string>> PodAddresses(const JsonValue& prev_result,
                                                     PluginError* error);

// Splits CNI_ARGS ("K1=V1;K2=V2"). Code 4 for a pair without '='.
std::optional<std::map<std::string, std::string>> ParseCniArgs(absl::string_view text,
                                                               PluginError* error);

// Why `path` (CNI_NETNS) does not name a pod's network namespace, or "" when it does: it must
// exist and be a network namespace (nsfs), and not the one this process runs in (the host's).
std::string NetnsProblem(const std::string& path);

struct Outcome {
  int exit_code = 0;
  std::string out;  // stdout: the result, the version info or the error object
  std::string err;  // stderr: one line for the runtime's log, or empty
};

struct RunOptions {
  AgentDialer dial = DialAgent;
  std::function<absl::Time()> now = [] { return absl::Now(); };
  std::function<void(absl::Duration)> sleep = [](absl::Duration d) { absl::SleepFor(d); };
  // How long to wait between attempts while the agent answers UNAVAILABLE (starting up).
  absl::Duration retry_interval = absl::Milliseconds(200);
  // Why CNI_NETNS does not name a pod's network namespace ("" when it does). The default asks
  // the kernel (NetnsProblem); tests of other behaviour replace it.
  std::function<std::string(const std::string&)> netns_problem = [](const std::string& p) {
    return NetnsProblem(p);
  };
};

// Runs the plugin: `env` holds the CNI_* variables, `stdin_text` the network configuration.
Outcome Run(const std::map<std::string, std::string>& env, absl::string_view stdin_text,
            const RunOptions& options = RunOptions());

// The JSON error object of the spec: {"cniVersion", "code", "msg", "details"}.
std::string ErrorJson(const std::string& cni_version, const PluginError& error);

}  // namespace netpol::cni

#endif  // NETPOL_CNI_PLUGIN_H_
