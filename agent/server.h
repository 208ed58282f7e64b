// The agent's gRPC server: netpol.v1 ObjectService, QueryService and StatusService over the
// AgentService, EndpointService over the EndpointApi, plus server reflection and
// grpc.health.v1.
//
// Listeners: `unix:///path` (the socket is created mode 0600, its directory 0755 when missing)
// or `host:port` (TCP; TLS when a certificate and key are configured).
// Authorization: writes (Apply, Delete) are served on Unix sockets and to TLS clients that
// presented a certificate signed by the configured client CA; every other caller may only read
// (Get, List, queries, status, health, reflection) and gets PERMISSION_DENIED for writes.
// Readiness: until the first sync committed, every RPC but Status and WaitForGeneration returns
// UNAVAILABLE and health reports NOT_SERVING.
// Backpressure: requests that wait for the kernel pass the service's admission gates
// (service.h; Attach/Detach and ListAttachments with verify here), kernel reads in the gate of
// their caller's class (Caller: may write or read-only); WaitForGeneration waits at most
// write_timeout; calls beyond the server's
// thread cap (2,048 running at once) get RESOURCE_EXHAUSTED from gRPC.
#ifndef NETPOL_AGENT_SERVER_H_
#define NETPOL_AGENT_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/endpoints.h"
#include "agent/flow_log.h"
#include "agent/service.h"
#include "grpcpp/server.h"

namespace netpol::agent {

struct ServerOptions {
  // Listen addresses: "unix:///run/netpol/agent.sock", "127.0.0.1:9090", "[::]:9090".
  std::vector<std::string> listen;
  // PEM files for TCP listeners. Cert and key enable TLS; the client CA additionally lets
  // clients with a certificate it signed write.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string client_ca_file;
  // The longest a write waits for its kernel commit before DEADLINE_EXCEEDED (the client's
  // own deadline applies when shorter).
  absl::Duration write_timeout = absl::Seconds(60);
  // Serves netpol.v1.EndpointService (CNI attachments) when set; not owned, must outlive the
  // server. Attach and Detach are writes (Unix socket or TLS client certificate).
  EndpointApi* endpoints = nullptr;
  // Serves netpol.v1.FlowService from it; null: Logs answers FAILED_PRECONDITION (flow logs
  // are off) and Stats `enabled: false`. Not owned, must outlive the server.
  FlowLog* flow_log = nullptr;
};

class Server {
 public:
  // Starts serving `service` (not owned; must outlive the server). Health starts NOT_SERVING.
  // Errors: InvalidArgument for bad options, FailedPrecondition when a listener cannot bind
  // or a PEM file cannot be read.
  static absl::StatusOr<std::unique_ptr<Server>> Start(AgentService* service,
                                                       const ServerOptions& options);
  ~Server();

  // Sets grpc.health.v1 status of "" and of every netpol service.
  void SetServing(bool serving);
  // Stops accepting calls and waits up to `grace` for running ones.
  void Shutdown(absl::Duration grace);

  class Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_SERVER_H_
