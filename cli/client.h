// netpolctl's connection to netpol-agent: address resolution, channel credentials, and errors
// that tell the user what to do.
#ifndef NETPOL_CLI_CLIENT_H_
#define NETPOL_CLI_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "api/netpol/v1/flow_service.grpc.pb.h"
#include "api/netpol/v1/object_service.grpc.pb.h"
#include "api/netpol/v1/query_service.grpc.pb.h"
#include "api/netpol/v1/status_service.grpc.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

namespace netpol::cli {

// The agent's default socket (netpol-agent's --listen default).
inline constexpr char kDefaultServer[] = "unix:///run/netpol/agent.sock";

struct ClientOptions {
  // "unix:///path" or "host:port"; empty: $NETPOL_SERVER, then kDefaultServer.
  std::string server;
  // TLS for TCP: the CA that signed the agent's certificate (enables TLS), and optionally this
  // client's certificate and key (needed to write).
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  // Per-call deadline.
  absl::Duration timeout = absl::Seconds(90);
};

class Client {
 public:
  // Builds the channel (does not connect yet). InvalidArgument for unreadable TLS files.
  static absl::StatusOr<std::unique_ptr<Client>> Create(const ClientOptions& options);

  const std::string& server() const { return server_; }
  v1::ObjectService::Stub& objects() { return *objects_; }
  v1::QueryService::Stub& queries() { return *queries_; }
  v1::StatusService::Stub& status() { return *status_; }
  v1::FlowService::Stub& flows() { return *flows_; }
  // A context carrying the deadline (a call fails at once when no connection can be made).
  std::unique_ptr<grpc::ClientContext> Context() const;
  // Turns an RPC error into a message that says what to do. UNAVAILABLE has two causes told
  // apart: no connection to the agent (names the server tried, why — e.g. no socket at the
  // path — and how to start the agent), and an UNAVAILABLE the agent itself answered (its
  // message, e.g. that its datastore is unavailable, is printed as it is). A Unix socket this
  // user may not open is PERMISSION_DENIED naming the path, its owner and mode.
  absl::Status Explain(const grpc::Status& status) const;

 private:
  Client() = default;
  // Whether the last call's UNAVAILABLE came from the agent over a live connection.
  bool AgentAnswered() const;
  // Why no connection could be made, for a failed connection to server_: no socket at the
  // path, not a socket, permission denied (with the socket's owner and mode), or nothing
  // accepting connections.
  std::string WhyUnreachable(const std::string& grpc_message) const;
  // The Unix socket path of server_ ("" for TCP).
  std::string SocketPath() const;
  // errno of connecting to the Unix socket now (0 when it connects or server_ is TCP).
  int ConnectErrno() const;
  std::string server_;
  bool server_from_default_ = false;
  absl::Duration timeout_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ObjectService::Stub> objects_;
  std::unique_ptr<v1::QueryService::Stub> queries_;
  std::unique_ptr<v1::StatusService::Stub> status_;
  std::unique_ptr<v1::FlowService::Stub> flows_;
};

}  // namespace netpol::cli

#endif  // NETPOL_CLI_CLIENT_H_
