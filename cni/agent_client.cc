// The gRPC AgentClient: netpol.v1.EndpointService over the agent's Unix socket.
#include <memory>
#include <string>

#include "api/netpol/v1/endpoint_service.grpc.pb.h"
#include "cni/plugin.h"
#include "grpcpp/grpcpp.h"

namespace netpol::cni {
namespace {

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

class GrpcAgentClient final : public AgentClient {
 public:
  explicit GrpcAgentClient(const std::string& path)
      : channel_(grpc::CreateChannel("unix://" + path, grpc::InsecureChannelCredentials())),
        stub_(v1::EndpointService::NewStub(channel_)) {}

  absl::StatusOr<v1::AttachResponse> Attach(const v1::AttachRequest& request, absl::Time deadline,
                                            bool wait_for_ready) override {
    grpc::ClientContext ctx;
    Prepare(&ctx, deadline, wait_for_ready);
    v1::AttachResponse out;
    absl::Status s = FromGrpc(stub_->Attach(&ctx, request, &out));
    if (!s.ok()) return s;
    return out;
  }

  absl::StatusOr<v1::DetachResponse> Detach(const v1::DetachRequest& request, absl::Time deadline,
                                            bool wait_for_ready) override {
    grpc::ClientContext ctx;
    Prepare(&ctx, deadline, wait_for_ready);
    v1::DetachResponse out;
    absl::Status s = FromGrpc(stub_->Detach(&ctx, request, &out));
    if (!s.ok()) return s;
    return out;
  }

  absl::StatusOr<v1::GarbageCollectResponse> GarbageCollect(
      const v1::GarbageCollectRequest& request, absl::Time deadline,
      bool wait_for_ready) override {
    grpc::ClientContext ctx;
    Prepare(&ctx, deadline, wait_for_ready);
    v1::GarbageCollectResponse out;
    absl::Status s = FromGrpc(stub_->GarbageCollect(&ctx, request, &out));
    if (!s.ok()) return s;
    return out;
  }

  absl::StatusOr<v1::ListAttachmentsResponse> List(const v1::ListAttachmentsRequest& request,
                                                   absl::Time deadline,
                                                   bool wait_for_ready) override {
    grpc::ClientContext ctx;
    Prepare(&ctx, deadline, wait_for_ready);
    v1::ListAttachmentsResponse out;
    absl::Status s = FromGrpc(stub_->List(&ctx, request, &out));
    if (!s.ok()) return s;
    return out;
  }

 private:
  static void Prepare(grpc::ClientContext* ctx, absl::Time deadline, bool wait_for_ready) {
    ctx->set_deadline(absl::ToChronoTime(deadline));
    ctx->set_wait_for_ready(wait_for_ready);
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::EndpointService::Stub> stub_;
};

}  // namespace

std::unique_ptr<AgentClient> DialAgent(const std::string& path) {
  return std::make_unique<GrpcAgentClient>(path);
}

}  // namespace netpol::cni
