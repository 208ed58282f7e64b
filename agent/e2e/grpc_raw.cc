// Raw gRPC helpers for tests. See grpc_raw.h.
#include "agent/e2e/grpc_raw.h"

#include <chrono>

#include "agent/e2e/grpc_wire.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/impl/codegen/client_unary_call.h"
#include "grpcpp/impl/codegen/rpc_method.h"
#include "grpcpp/impl/codegen/sync_stream.h"
#include "grpcpp/support/byte_buffer.h"

namespace netpol::e2e {
namespace {

constexpr char kReflectionMethod[] =
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";

grpc::ByteBuffer ToBuffer(const std::string& s) {
  grpc::Slice slice(s);
  return grpc::ByteBuffer(&slice, 1);
}

std::string FromBuffer(const grpc::ByteBuffer& b) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!b.Dump(&slices).ok()) return out;
  for (const grpc::Slice& s : slices) {
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return out;
}

void SetDeadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
}

}  // namespace

grpc::Status RawUnary(const std::shared_ptr<grpc::Channel>& channel, const std::string& path,
                      const std::string& request, std::string* response) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  grpc::internal::RpcMethod method(path.c_str(), grpc::internal::RpcMethod::NORMAL_RPC);
  grpc::ByteBuffer req = ToBuffer(request), resp;
  grpc::Status st = grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
      channel.get(), method, &ctx, req, &resp);
  if (st.ok()) *response = FromBuffer(resp);
  return st;
}

std::string HealthStatus(const std::shared_ptr<grpc::Channel>& channel,
                         const std::string& service) {
  HealthCheckRequest req;
  req.set_service(service);
  std::string bytes;
  grpc::Status st =
      RawUnary(channel, "/grpc.health.v1.Health/Check", req.SerializeAsString(), &bytes);
  if (!st.ok()) return "error: " + st.error_message();
  HealthCheckResponse resp;
  if (!resp.ParseFromString(bytes)) return "error: unparsable response";
  return HealthCheckResponse::ServingStatus_Name(resp.status());
}

ReflectionDatabase::ReflectionDatabase(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)) {}

bool ReflectionDatabase::Ask(const std::string& request, std::string* response) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  grpc::internal::RpcMethod method(kReflectionMethod, grpc::internal::RpcMethod::BIDI_STREAMING);
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> stream(
      grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(
          channel_.get(), method, &ctx));
  if (!stream->Write(ToBuffer(request))) return false;
  stream->WritesDone();
  grpc::ByteBuffer buf;
  bool got = stream->Read(&buf);
  grpc::ByteBuffer rest;
  while (stream->Read(&rest)) {
  }
  grpc::Status st = stream->Finish();
  if (!got || !st.ok()) return false;
  *response = FromBuffer(buf);
  return true;
}

std::vector<std::string> ReflectionDatabase::ListServices(std::string* error) {
  ServerReflectionRequest req;
  req.set_list_services("*");
  std::string bytes;
  std::vector<std::string> out;
  ServerReflectionResponse resp;
  if (!Ask(req.SerializeAsString(), &bytes) || !resp.ParseFromString(bytes)) {
    if (error) *error = "reflection call failed";
    return out;
  }
  if (resp.has_error_response()) {
    if (error) *error = resp.error_response().error_message();
    return out;
  }
  for (const ServiceResponse& s : resp.list_services_response().service()) {
    out.push_back(s.name());
  }
  return out;
}

bool ReflectionDatabase::Store(const std::string& bytes,
                               google::protobuf::FileDescriptorProto* first) {
  ServerReflectionResponse resp;
  if (!resp.ParseFromString(bytes) || !resp.has_file_descriptor_response()) return false;
  bool have_first = false;
  for (const std::string& fd : resp.file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto proto;
    if (!proto.ParseFromString(fd)) return false;
    if (!have_first) {
      *first = proto;
      have_first = true;
    }
    files_[proto.name()] = proto;
  }
  return have_first;
}

bool ReflectionDatabase::FindFileByName(const std::string& filename,
                                        google::protobuf::FileDescriptorProto* output) {
  auto it = files_.find(filename);
  if (it != files_.end()) {
    *output = it->second;
    return true;
  }
  ServerReflectionRequest req;
  req.set_file_by_filename(filename);
  std::string bytes;
  return Ask(req.SerializeAsString(), &bytes) && Store(bytes, output);
}

bool ReflectionDatabase::FindFileContainingSymbol(const std::string& symbol_name,
                                                  google::protobuf::FileDescriptorProto* output) {
  ServerReflectionRequest req;
  req.set_file_containing_symbol(symbol_name);
  std::string bytes;
  return Ask(req.SerializeAsString(), &bytes) && Store(bytes, output);
}

bool ReflectionDatabase::FindFileContainingExtension(const std::string&, int,
                                                     google::protobuf::FileDescriptorProto*) {
  return false;  // netpol.v1 defines no extensions
}

}  // namespace netpol::e2e
