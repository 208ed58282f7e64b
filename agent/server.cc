// The agent's gRPC server. See server.h.
#include "agent/server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "api/grpc/health/v1/health.pb.h"
#include "api/netpol/v1/endpoint_service.grpc.pb.h"
#include "api/netpol/v1/flow_service.grpc.pb.h"
#include "api/netpol/v1/object_service.grpc.pb.h"
#include "api/netpol/v1/query_service.grpc.pb.h"
#include "api/netpol/v1/status_service.grpc.pb.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/security/server_credentials.h"

namespace netpol::agent {
namespace {

// Render and List answers can be large on big clusters.
constexpr int kMaxSendBytes = 256 << 20;
// The synchronous server runs each call on its own thread. Capping them bounds the agent's
// memory whatever the number of clients: a call arriving when all are busy is answered
// RESOURCE_EXHAUSTED by gRPC itself. 1,000 concurrent clients use about 1,000 (measured by
// //tests/hardening:load_test, ~370 MiB resident); twice that keeps them all served while
// capping memory near 1 GiB.
constexpr int kMaxRpcThreads = 2048;

const char* const kServiceNames[] = {
    "netpol.v1.EndpointService",
    "netpol.v1.FlowService",
    "netpol.v1.ObjectService",
    "netpol.v1.QueryService",
    "netpol.v1.StatusService",
};

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

grpc::Status NotReady() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      "netpol-agent is starting: the first sync with the kernel has not "
                      "completed yet (see `netpolctl status` for its last error)");
}

// Whether the caller may change objects: local Unix socket callers, and TLS callers whose
// client certificate the configured CA verified.
bool MayWrite(const grpc::ServerContext* ctx) {
  if (absl::StartsWith(ctx->peer(), "unix:")) return true;
  std::shared_ptr<const grpc::AuthContext> auth = ctx->auth_context();
  return auth != nullptr && auth->IsPeerAuthenticated();
}

Caller CallerOf(const grpc::ServerContext* ctx) {
  return MayWrite(ctx) ? Caller::kTrusted : Caller::kReadOnly;
}

grpc::Status WriteDenied(const grpc::ServerContext* ctx) {
  return grpc::Status(
      grpc::StatusCode::PERMISSION_DENIED,
      absl::StrCat("writes are allowed only on the agent's Unix socket or over TLS with a client "
                   "certificate signed by the agent's --client-ca; this connection (",
                   ctx->peer(), ") may only read"));
}

absl::Duration WriteTimeout(const grpc::ServerContext* ctx, absl::Duration max) {
  absl::Time deadline = absl::FromChrono(ctx->deadline());
  absl::Duration left = deadline - absl::Now();
  return std::max(absl::ZeroDuration(), std::min(left, max));
}

// Moves the answer into gRPC's response (a swap: a large List is never copied).
template <typename T>
grpc::Status Reply(absl::StatusOr<T>&& result, T* response) {
  if (!result.ok()) return ToGrpc(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

class ObjectServiceImpl final : public v1::ObjectService::Service {
 public:
  ObjectServiceImpl(AgentService* s, absl::Duration write_timeout)
      : s_(s), write_timeout_(write_timeout) {}

  grpc::Status Apply(grpc::ServerContext* ctx, const v1::ApplyRequest* req,
                     v1::ApplyResponse* resp) override {
    if (!MayWrite(ctx)) return WriteDenied(ctx);
    if (!s_->Ready()) return NotReady();
    return Reply(s_->Apply(*req, WriteTimeout(ctx, write_timeout_)), resp);
  }
  grpc::Status Delete(grpc::ServerContext* ctx, const v1::DeleteRequest* req,
                      v1::DeleteResponse* resp) override {
    if (!MayWrite(ctx)) return WriteDenied(ctx);
    if (!s_->Ready()) return NotReady();
    return Reply(s_->Delete(*req, WriteTimeout(ctx, write_timeout_)), resp);
  }
  grpc::Status Get(grpc::ServerContext*, const v1::GetRequest* req,
                   v1::GetResponse* resp) override {
    if (!s_->Ready()) return NotReady();
    return Reply(s_->Get(*req), resp);
  }
  grpc::Status List(grpc::ServerContext* ctx, const v1::ListRequest* req,
                    v1::ListResponse* resp) override {
    if (!s_->Ready()) return NotReady();
    // A large List waiting for its turn gives up at the call's deadline.
    return Reply(s_->List(*req, absl::FromChrono(ctx->deadline())), resp);
  }

 private:
  AgentService* const s_;
  const absl::Duration write_timeout_;
};

class QueryServiceImpl final : public v1::QueryService::Service {
 public:
  explicit QueryServiceImpl(AgentService* s) : s_(s) {}
  grpc::Status Check(grpc::ServerContext*, const v1::CheckRequest* req,
                     v1::CheckResponse* resp) override {
    if (!s_->Ready()) return NotReady();
    return Reply(s_->Check(*req), resp);
  }
  grpc::Status ExplainPod(grpc::ServerContext*, const v1::ExplainPodRequest* req,
                          v1::ExplainPodResponse* resp) override {
    if (!s_->Ready()) return NotReady();
    return Reply(s_->ExplainPod(*req), resp);
  }
  grpc::Status Render(grpc::ServerContext* ctx, const v1::RenderRequest* req,
                      v1::RenderResponse* resp) override {
    if (!s_->Ready()) return NotReady();
    return Reply(s_->Render(*req, CallerOf(ctx)), resp);
  }
  grpc::Status Counters(grpc::ServerContext* ctx, const v1::CountersRequest* req,
                        v1::CountersResponse* resp) override {
    if (!s_->Ready()) return NotReady();
    return Reply(s_->Counters(*req, CallerOf(ctx)), resp);
  }

 private:
  AgentService* const s_;
};

class StatusServiceImpl final : public v1::StatusService::Service {
 public:
  StatusServiceImpl(AgentService* s, absl::Duration max_wait) : s_(s), max_wait_(max_wait) {}
  grpc::Status Status(grpc::ServerContext*, const v1::StatusRequest*,
                      v1::StatusResponse* resp) override {
    *resp = s_->Status();
    return grpc::Status::OK;
  }
  grpc::Status WaitForGeneration(grpc::ServerContext* ctx, const v1::WaitForGenerationRequest* req,
                                 v1::StatusResponse* resp) override {
    // A wait holds a thread and a kernel-read slot: never longer than a write may wait.
    return Reply(s_->WaitForGeneration(*req, WriteTimeout(ctx, max_wait_), CallerOf(ctx)), resp);
  }
  grpc::Status ListNodeStatus(grpc::ServerContext*, const v1::ListNodeStatusRequest*,
                              v1::ListNodeStatusResponse* resp) override {
    return Reply(s_->ListNodeStatus(), resp);
  }

 private:
  AgentService* const s_;
  const absl::Duration max_wait_;
};

// At most this many Logs streams at once (each holds an RPC thread while it follows).
constexpr int kMaxFlowStreams = 32;

class FlowServiceImpl final : public v1::FlowService::Service {
 public:
  explicit FlowServiceImpl(FlowLog* log) : log_(log) {}

  grpc::Status Logs(grpc::ServerContext* ctx, const v1::FlowLogsRequest* req,
                    grpc::ServerWriter<v1::FlowRecord>* writer) override {
    if (log_ == nullptr) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "flow logs are off on this agent (--deny-log-group=0, or the nflog "
                          "group could not be bound: see the agent's log)");
    }
    if (streams_.fetch_add(1) >= kMaxFlowStreams) {
      streams_.fetch_sub(1);
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          absl::StrCat("netpol-agent is busy: ", kMaxFlowStreams,
                                       " flow log streams are already open; retry later"));
    }
    log_->Follow(
        *req, [writer](const v1::FlowRecord& r) { return writer->Write(r); },
        [ctx] { return ctx->IsCancelled(); });
    streams_.fetch_sub(1);
    return grpc::Status::OK;
  }
  grpc::Status Stats(grpc::ServerContext*, const v1::FlowLogStatsRequest*,
                     v1::FlowLogStats* resp) override {
    if (log_ != nullptr) *resp = log_->Stats();
    return grpc::Status::OK;
  }

 private:
  FlowLog* const log_;
  std::atomic<int> streams_{0};
};

class EndpointServiceImpl final : public v1::EndpointService::Service {
 public:
  EndpointServiceImpl(AgentService* s, EndpointApi* api, absl::Duration write_timeout)
      : s_(s), api_(api), write_timeout_(write_timeout) {}

  grpc::Status Attach(grpc::ServerContext* ctx, const v1::AttachRequest* req,
                      v1::AttachResponse* resp) override {
    if (!MayWrite(ctx)) return WriteDenied(ctx);
    if (!s_->Ready()) return NotReady();
    absl::StatusOr<AdmissionGate::Slot> slot = s_->attach_gate().Enter();
    if (!slot.ok()) return ToGrpc(slot.status());
    return Reply(api_->Attach(*req, WriteTimeout(ctx, write_timeout_)), resp);
  }
  grpc::Status Detach(grpc::ServerContext* ctx, const v1::DetachRequest* req,
                      v1::DetachResponse* resp) override {
    if (!MayWrite(ctx)) return WriteDenied(ctx);
    if (!s_->Ready()) return NotReady();
    absl::StatusOr<AdmissionGate::Slot> slot = s_->attach_gate().Enter();
    if (!slot.ok()) return ToGrpc(slot.status());
    return Reply(api_->Detach(*req, WriteTimeout(ctx, write_timeout_)), resp);
  }
  grpc::Status GarbageCollect(grpc::ServerContext* ctx, const v1::GarbageCollectRequest* req,
                              v1::GarbageCollectResponse* resp) override {
    if (!MayWrite(ctx)) return WriteDenied(ctx);
    if (!s_->Ready()) return NotReady();
    absl::StatusOr<AdmissionGate::Slot> slot = s_->attach_gate().Enter();
    if (!slot.ok()) return ToGrpc(slot.status());
    return Reply(api_->GarbageCollect(*req, WriteTimeout(ctx, write_timeout_)), resp);
  }
  grpc::Status List(grpc::ServerContext* ctx, const v1::ListAttachmentsRequest* req,
                    v1::ListAttachmentsResponse* resp) override {
    if (!s_->Ready()) return NotReady();
    AdmissionGate::Slot slot;
    if (req->verify()) {
      // CNI CHECK (a caller that may write) passes the CNI's gate, which no reader can fill.
      absl::StatusOr<AdmissionGate::Slot> entered =
          MayWrite(ctx) ? s_->attach_gate().Enter()
                        : s_->kernel_read_gate(Caller::kReadOnly).Enter();
      if (!entered.ok()) return ToGrpc(entered.status());
      slot = *std::move(entered);
    }
    return Reply(api_->List(*req), resp);
  }

 private:
  AgentService* const s_;
  EndpointApi* const api_;
  const absl::Duration write_timeout_;
};

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* flag) {
  std::ifstream in(path);
  if (!in) {
    return absl::FailedPreconditionError(
        absl::StrCat(flag, " ", path, ": cannot read: ", std::strerror(errno)));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Prepares the directory of a Unix socket and removes a stale socket left by a previous run.
absl::Status PrepareUnixSocket(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    std::string dir = path.substr(0, slash);
    // mkdir -p, one level at a time.
    for (size_t i = 1; i <= dir.size(); ++i) {
      if (i == dir.size() || dir[i] == '/') {
        std::string part = dir.substr(0, i);
        if (::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) {
          return absl::FailedPreconditionError(
              absl::StrCat("create directory ", part, ": ", std::strerror(errno)));
        }
      }
    }
  }
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " exists and is not a socket; refusing to replace it"));
    }
    // A socket someone still accepts on belongs to a running agent: do not steal it.
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
      struct sockaddr_un sa = {};
      sa.sun_family = AF_UNIX;
      std::strncpy(sa.sun_path, path.c_str(), sizeof(sa.sun_path) - 1);
      bool live = ::connect(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof(sa)) == 0;
      ::close(fd);
      if (live) {
        return absl::FailedPreconditionError(
            absl::StrCat(path, " is in use by a running process (another netpol-agent?)"));
      }
    }
    ::unlink(path.c_str());
  }
  return absl::OkStatus();
}

}  // namespace

class Server::Impl {
 public:
  std::unique_ptr<ObjectServiceImpl> objects;
  std::unique_ptr<QueryServiceImpl> queries;
  std::unique_ptr<StatusServiceImpl> status;
  std::unique_ptr<EndpointServiceImpl> endpoints;
  std::unique_ptr<FlowServiceImpl> flows;
  std::unique_ptr<grpc::Server> server;
  std::vector<std::string> unix_paths;
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() { Shutdown(absl::ZeroDuration()); }

absl::StatusOr<std::unique_ptr<Server>> Server::Start(AgentService* service,
                                                      const ServerOptions& options) {
  if (options.listen.empty()) return absl::InvalidArgumentError("--listen: no address");
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key must be given together");
  }
  if (!options.client_ca_file.empty() && options.tls_cert_file.empty()) {
    return absl::InvalidArgumentError("--client-ca needs --tls-cert and --tls-key");
  }
  std::shared_ptr<grpc::ServerCredentials> tcp_creds = grpc::InsecureServerCredentials();
  if (!options.tls_cert_file.empty()) {
    grpc::SslServerCredentialsOptions ssl;
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    absl::StatusOr<std::string> cert = ReadPem(options.tls_cert_file, "--tls-cert");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPem(options.tls_key_file, "--tls-key");
    if (!key.ok()) return key.status();
    pair.cert_chain = *cert;
    pair.private_key = *key;
    ssl.pem_key_cert_pairs.push_back(pair);
    if (!options.client_ca_file.empty()) {
      absl::StatusOr<std::string> ca = ReadPem(options.client_ca_file, "--client-ca");
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = *ca;
      // Readers need no certificate; a presented one must verify, and makes the caller a writer.
      ssl.client_certificate_request = GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
    } else {
      ssl.client_certificate_request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
    }
    tcp_creds = grpc::SslServerCredentials(ssl);
  }

  auto impl = std::make_unique<Impl>();
  impl->objects = std::make_unique<ObjectServiceImpl>(service, options.write_timeout);
  impl->queries = std::make_unique<QueryServiceImpl>(service);
  impl->status = std::make_unique<StatusServiceImpl>(service, options.write_timeout);
  if (options.endpoints != nullptr) {
    impl->endpoints = std::make_unique<EndpointServiceImpl>(service, options.endpoints,
                                                            options.write_timeout);
  }

  impl->flows = std::make_unique<FlowServiceImpl>(options.flow_log);

  grpc::EnableDefaultHealthCheckService(true);
  // Reflection describes a service from the descriptors linked into the binary; gRPC's built-in
  // health service brings none, so grpc.health.v1 comes from our copy of its .proto. Naming it
  // here keeps the linker from dropping that file's descriptor.
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(kMaxRequestBytes);
  builder.SetMaxSendMessageSize(kMaxSendBytes);
  grpc::ResourceQuota quota("netpol-agent");
  quota.SetMaxThreads(kMaxRpcThreads);
  builder.SetResourceQuota(quota);
  std::vector<std::unique_ptr<int>> ports;
  for (const std::string& addr : options.listen) {
    ports.push_back(std::make_unique<int>(0));
    if (absl::StartsWith(addr, "unix:")) {
      std::string path = addr.substr(5);
      if (absl::StartsWith(path, "//")) path = path.substr(2);
      if (path.empty() || path[0] != '/') {
        return absl::InvalidArgumentError(
            absl::StrCat("--listen ", addr, ": a Unix socket needs an absolute path "
                                            "(unix:///run/netpol/agent.sock)"));
      }
      absl::Status st = PrepareUnixSocket(path);
      if (!st.ok()) return absl::FailedPreconditionError(absl::StrCat("--listen ", addr, ": ", st.message()));
      impl->unix_paths.push_back(path);
      builder.AddListeningPort("unix://" + path, grpc::InsecureServerCredentials(),
                               ports.back().get());
    } else {
      builder.AddListeningPort(addr, tcp_creds, ports.back().get());
    }
  }
  builder.RegisterService(impl->objects.get());
  builder.RegisterService(impl->queries.get());
  builder.RegisterService(impl->status.get());
  if (impl->endpoints != nullptr) builder.RegisterService(impl->endpoints.get());
  builder.RegisterService(impl->flows.get());
  impl->server = builder.BuildAndStart();
  if (impl->server == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot listen on ", absl::StrJoin(options.listen, ", "),
        " (address in use, bad address, or no permission?)"));
  }
  for (size_t i = 0; i < options.listen.size(); ++i) {
    if (*ports[i] == 0) {
      impl->server->Shutdown();
      return absl::FailedPreconditionError(
          absl::StrCat("cannot listen on ", options.listen[i]));
    }
  }
  for (const std::string& path : impl->unix_paths) {
    if (::chmod(path.c_str(), 0600) != 0) {
      impl->server->Shutdown();
      return absl::FailedPreconditionError(
          absl::StrCat("chmod 0600 ", path, ": ", std::strerror(errno)));
    }
  }
  std::unique_ptr<Server> server(new Server(std::move(impl)));
  // gRPC's default health service starts SERVING; for the few microseconds until this call a
  // health probe could see that, but every netpol RPC still answers UNAVAILABLE until ready.
  server->SetServing(false);
  return server;
}

void Server::SetServing(bool serving) {
  if (impl_->server == nullptr) return;
  grpc::HealthCheckServiceInterface* health = impl_->server->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus(serving);
  for (const char* name : kServiceNames) health->SetServingStatus(name, serving);
}

void Server::Shutdown(absl::Duration grace) {
  if (impl_ == nullptr || impl_->server == nullptr) return;
  impl_->server->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  impl_->server->Wait();
  impl_->server.reset();
  for (const std::string& path : impl_->unix_paths) ::unlink(path.c_str());
}

}  // namespace netpol::agent
