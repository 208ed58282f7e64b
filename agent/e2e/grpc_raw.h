// Test-side gRPC helpers that need no generated stubs: unary calls by method path with raw
// bytes, a server-reflection client (a DescriptorDatabase fed by the agent's reflection
// service, like grpc++'s ProtoReflectionDescriptorDatabase, which Debian does not install), and
// the standard health check.
#ifndef NETPOL_AGENT_E2E_GRPC_RAW_H_
#define NETPOL_AGENT_E2E_GRPC_RAW_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/descriptor_database.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/status.h"

namespace netpol::e2e {

// Calls `path` ("/pkg.Service/Method") with serialized `request`; fills `response` bytes.
grpc::Status RawUnary(const std::shared_ptr<grpc::Channel>& channel, const std::string& path,
                      const std::string& request, std::string* response);

// grpc.health.v1.Health/Check of `service` ("" for the server); returns the status name
// ("SERVING", "NOT_SERVING", ...) or the call's error as "error: ...".
std::string HealthStatus(const std::shared_ptr<grpc::Channel>& channel,
                         const std::string& service = "");

// Descriptors served by grpc.reflection.v1alpha.ServerReflection.
class ReflectionDatabase : public google::protobuf::DescriptorDatabase {
 public:
  explicit ReflectionDatabase(std::shared_ptr<grpc::Channel> channel);
  // The services the server lists; empty with `*error` set on failure.
  std::vector<std::string> ListServices(std::string* error = nullptr);

  bool FindFileByName(const std::string& filename,
                      google::protobuf::FileDescriptorProto* output) override;
  bool FindFileContainingSymbol(const std::string& symbol_name,
                                google::protobuf::FileDescriptorProto* output) override;
  bool FindFileContainingExtension(const std::string& containing_type, int field_number,
                                   google::protobuf::FileDescriptorProto* output) override;

 private:
  // Sends one request on a fresh stream; returns the serialized response.
  bool Ask(const std::string& request, std::string* response);
  bool Store(const std::string& response, google::protobuf::FileDescriptorProto* first);

  std::shared_ptr<grpc::Channel> channel_;
  std::map<std::string, google::protobuf::FileDescriptorProto> files_;
};

}  // namespace netpol::e2e

#endif  // NETPOL_AGENT_E2E_GRPC_RAW_H_
