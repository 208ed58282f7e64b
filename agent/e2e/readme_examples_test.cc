// Runs every grpcurl example of api/README.md against a real agent, through the README's own
// JSON: each request is parsed with protobuf's JSON parser into the method's request type and
// sent over gRPC, so an example that drifts from the API fails here. Also checks that every RPC
// of netpol.v1 has an example.
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/e2e/fixture.h"
#include "agent/e2e/grpc_raw.h"
#include "agent/e2e/grpc_wire.pb.h"
#include "api/netpol/v1/endpoint_service.pb.h"
#include "api/netpol/v1/object_service.pb.h"
#include "api/netpol/v1/query_service.pb.h"
#include "api/netpol/v1/status_service.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace netpol::e2e {
namespace {

constexpr char kReadmeSocket[] = "/run/netpol/agent.sock";

struct Example {
  int line = 0;                // where the block starts in the README
  std::string expect = "OK";   // from "# expect: CODE"
  std::vector<std::string> expect_json;  // from "# expect-output: FRAGMENT"
  std::vector<std::string> words;
  std::string data;            // -d
  bool has_data = false;
};

// Splits a shell command into words: plain words and '...' strings (what the README uses).
std::vector<std::string> ShellWords(const std::string& text, std::string* error) {
  std::vector<std::string> out;
  std::string cur;
  bool in_word = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\'') {
      size_t end = text.find('\'', i + 1);
      if (end == std::string::npos) {
        *error = "unterminated quote";
        return {};
      }
      cur += text.substr(i + 1, end - i - 1);
      in_word = true;
      i = end;
    } else if (c == '\\' && i + 1 < text.size() && text[i + 1] == '\n') {
      ++i;  // line continuation
    } else if (c == ' ' || c == '\n' || c == '\t') {
      if (in_word) out.push_back(cur);
      cur.clear();
      in_word = false;
    } else {
      cur += c;
      in_word = true;
    }
  }
  if (in_word) out.push_back(cur);
  return out;
}

std::vector<Example> ParseReadme(const std::string& text) {
  std::vector<Example> out;
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i] != "```sh") continue;
    Example ex;
    ex.line = static_cast<int>(i + 1);
    std::string command;
    for (++i; i < lines.size() && lines[i] != "```"; ++i) {
      absl::string_view l = lines[i];
      if (absl::ConsumePrefix(&l, "# expect: ")) {
        ex.expect = std::string(l);
      } else if (absl::ConsumePrefix(&l, "# expect-output: ")) {
        ex.expect_json.push_back(std::string(l));
      } else {
        command += lines[i] + "\n";
      }
    }
    std::string error;
    std::vector<std::string> words = ShellWords(command, &error);
    EXPECT_TRUE(error.empty()) << "README line " << ex.line << ": " << error;
    for (size_t w = 0; w < words.size(); ++w) {
      if (words[w] == "-d" && w + 1 < words.size()) {
        ex.data = words[++w];
        ex.has_data = true;
      } else {
        ex.words.push_back(words[w]);
      }
    }
    out.push_back(ex);
  }
  return out;
}

std::string ReadReadme() {
  std::ifstream in(Runfile("api/README.md"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(ReadmeParseTest, FindsTheExamples) {
  std::vector<Example> examples = ParseReadme(ReadReadme());
  ASSERT_GE(examples.size(), 10u);
  for (const Example& ex : examples) {
    ASSERT_FALSE(ex.words.empty()) << "README line " << ex.line;
    EXPECT_EQ(ex.words[0], "grpcurl") << "README line " << ex.line << ": one grpcurl per block";
  }
}

TEST_F(AgentTest, ReadmeExamples) {
  StartAgent();
  WaitServing();
  std::shared_ptr<grpc::Channel> channel = Channel();
  const google::protobuf::DescriptorPool* pool = google::protobuf::DescriptorPool::generated_pool();
  // Make sure the generated descriptors are linked in.
  ASSERT_NE(v1::ApplyRequest::descriptor(), nullptr);
  ASSERT_NE(v1::CheckRequest::descriptor(), nullptr);
  ASSERT_NE(v1::StatusRequest::descriptor(), nullptr);
  ASSERT_NE(v1::AttachRequest::descriptor(), nullptr);
  // Methods are resolved through the agent's reflection service, as grpcurl resolves them.
  ReflectionDatabase reflected(channel);
  google::protobuf::DescriptorPool remote(&reflected);
  google::protobuf::DynamicMessageFactory factory(&remote);

  std::set<std::string> covered;
  int checked_fragments = 0;
  int calls = 0;
  for (const Example& ex : ParseReadme(ReadReadme())) {
    SCOPED_TRACE(absl::StrCat("api/README.md line ", ex.line));
    // grpcurl -plaintext -unix ADDRESS (list | describe SYMBOL | SERVICE/METHOD)
    std::vector<std::string> args;
    bool unix_socket = false;
    for (size_t i = 1; i < ex.words.size(); ++i) {
      if (ex.words[i] == "-plaintext") continue;
      if (ex.words[i] == "-unix") {
        unix_socket = true;
        continue;
      }
      args.push_back(ex.words[i]);
    }
    ASSERT_TRUE(unix_socket);
    ASSERT_GE(args.size(), 2u);
    ASSERT_EQ(args[0], kReadmeSocket) << "examples use the agent's default socket";
    if (args[1] == "list") {
      ReflectionDatabase db(channel);
      std::string error;
      std::vector<std::string> services = db.ListServices(&error);
      EXPECT_TRUE(error.empty()) << error;
      EXPECT_NE(std::find(services.begin(), services.end(), "netpol.v1.ObjectService"),
                services.end());
      ++calls;
      continue;
    }
    if (args[1] == "describe") {
      ASSERT_EQ(args.size(), 3u);
      ReflectionDatabase db(channel);
      google::protobuf::DescriptorPool remote(&db);
      EXPECT_NE(remote.FindServiceByName(args[2]), nullptr) << args[2];
      ++calls;
      continue;
    }
    ASSERT_EQ(args.size(), 2u);
    std::vector<std::string> parts = absl::StrSplit(args[1], '/');
    ASSERT_EQ(parts.size(), 2u) << args[1];
    const google::protobuf::Descriptor* in_type = nullptr;
    const google::protobuf::Descriptor* out_type = nullptr;
    {
      const google::protobuf::ServiceDescriptor* svc = remote.FindServiceByName(parts[0]);
      ASSERT_NE(svc, nullptr) << "reflection does not describe " << parts[0];
      const google::protobuf::MethodDescriptor* m = svc->FindMethodByName(parts[1]);
      ASSERT_NE(m, nullptr) << args[1];
      in_type = m->input_type();
      out_type = m->output_type();
      covered.insert(m->full_name());
    }
    std::unique_ptr<google::protobuf::Message> req(factory.GetPrototype(in_type)->New());
    std::unique_ptr<google::protobuf::Message> resp(factory.GetPrototype(out_type)->New());
    if (ex.has_data) {
      auto st = google::protobuf::util::JsonStringToMessage(ex.data, req.get());
      ASSERT_TRUE(st.ok()) << "request JSON does not parse as " << in_type->full_name() << ": "
                           << st.message();
    }
    std::string bytes;
    grpc::Status st = RawUnary(channel, "/" + args[1], req->SerializeAsString(), &bytes);
    ++calls;
    checked_fragments += static_cast<int>(ex.expect_json.size());
    if (ex.expect == "OK") {
      ASSERT_TRUE(st.ok()) << args[1] << ": " << st.error_message();
      ASSERT_TRUE(resp->ParseFromString(bytes));
      std::string json;
      google::protobuf::util::MessageToJsonString(*resp, &json);
      std::cout << args[1] << " -> " << json.substr(0, 400) << "\n";
      for (const std::string& fragment : ex.expect_json) {
        EXPECT_NE(json.find(fragment), std::string::npos)
            << args[1] << ": answer lacks " << fragment << ":\n" << json;
      }
      if (out_type->full_name() == "grpc.health.v1.HealthCheckResponse") {
        HealthCheckResponse h;
        ASSERT_TRUE(h.ParseFromString(bytes));
        EXPECT_EQ(h.status(), HealthCheckResponse::SERVING);
      }
    } else {
      ASSERT_FALSE(st.ok()) << args[1] << " should fail with " << ex.expect;
      EXPECT_EQ(grpc::StatusCode(st.error_code()),
                [&] {
                  if (ex.expect == "INVALID_ARGUMENT") return grpc::StatusCode::INVALID_ARGUMENT;
                  if (ex.expect == "NOT_FOUND") return grpc::StatusCode::NOT_FOUND;
                  if (ex.expect == "PERMISSION_DENIED") return grpc::StatusCode::PERMISSION_DENIED;
                  if (ex.expect == "FAILED_PRECONDITION") {
                    return grpc::StatusCode::FAILED_PRECONDITION;
                  }
                  ADD_FAILURE() << "unknown expectation " << ex.expect;
                  return grpc::StatusCode::UNKNOWN;
                }())
          << st.error_message();
      for (const std::string& fragment : ex.expect_json) {
        EXPECT_NE(st.error_message().find(fragment), std::string::npos)
            << args[1] << ": error lacks " << fragment << ":\n" << st.error_message();
      }
    }
  }
  EXPECT_GE(calls, 15);
  EXPECT_GE(checked_fragments, 5);
  // Every RPC of the API has an example.
  for (const char* service : {"netpol.v1.EndpointService", "netpol.v1.ObjectService",
                              "netpol.v1.QueryService", "netpol.v1.StatusService"}) {
    const google::protobuf::ServiceDescriptor* svc = pool->FindServiceByName(service);
    ASSERT_NE(svc, nullptr);
    for (int i = 0; i < svc->method_count(); ++i) {
      EXPECT_TRUE(covered.count(svc->method(i)->full_name()))
          << "api/README.md has no example for " << svc->method(i)->full_name();
    }
  }
  // The examples built the state they describe.
  auto objects = Objects();
  v1::ListRequest list;
  list.set_kind(v1::NETWORK_POLICY);
  grpc::ClientContext ctx;
  v1::ListResponse lresp;
  ASSERT_TRUE(objects->List(&ctx, list, &lresp).ok());
  ASSERT_EQ(lresp.objects_size(), 1);
  EXPECT_EQ(lresp.objects(0).network_policy().metadata().name(), "web-ingress");
  EXPECT_NE(Nft().find("10.1.0.10"), std::string::npos);
}

}  // namespace
}  // namespace netpol::e2e
