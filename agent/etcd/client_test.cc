// The etcd client's option handling (no server needed): datastore URLs and TLS files.
#include "agent/etcd/client.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace netpol::agent::etcd {
namespace {

TEST(ParseEtcdUrlTest, Endpoints) {
  struct Case {
    std::string url;
    std::vector<std::string> want;
  } cases[] = {
      {"etcd://10.0.0.1:2379", {"10.0.0.1:2379"}},
      {"etcd://a.example:2379,b.example:2380", {"a.example:2379", "b.example:2380"}},
      {"etcd://[fd00::1]:2379, 10.0.0.2:2379", {"[fd00::1]:2379", "10.0.0.2:2379"}},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<std::string>> got = ParseEtcdUrl(c.url);
    ASSERT_TRUE(got.ok()) << c.url << ": " << got.status();
    EXPECT_EQ(*got, c.want) << c.url;
  }
}

TEST(ParseEtcdUrlTest, BadUrlsNameThePart) {
  struct Case {
    std::string url, want;
  } cases[] = {
      {"http://10.0.0.1:2379", "want etcd://HOST:PORT"},
      {"10.0.0.1:2379", "want etcd://HOST:PORT"},
      {"etcd://", "endpoint \"\""},
      {"etcd://10.0.0.1", "endpoint \"10.0.0.1\""},
      {"etcd://10.0.0.1:0", "endpoint \"10.0.0.1:0\""},
      {"etcd://10.0.0.1:65536", "endpoint \"10.0.0.1:65536\""},
      {"etcd://10.0.0.1:2379,", "endpoint \"\""},
      {"etcd://fd00::1:2379", "[ADDRESS]:PORT for IPv6"},
      {"etcd://10.0.0.1:2379/path", "endpoint \"10.0.0.1:2379/path\""},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<std::string>> got = ParseEtcdUrl(c.url);
    ASSERT_FALSE(got.ok()) << c.url;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << c.url;
    EXPECT_NE(got.status().message().find(c.want), std::string::npos)
        << c.url << ": " << got.status().message();
  }
}

TEST(ClientTest, OptionsAreCheckedBeforeConnecting) {
  ClientOptions none;
  EXPECT_EQ(Client::Create(none).status().code(), absl::StatusCode::kInvalidArgument);

  ClientOptions half;
  half.endpoints = {"127.0.0.1:2379"};
  half.cert_file = "/nonexistent/client.pem";
  absl::StatusOr<std::unique_ptr<Client>> c = Client::Create(half);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("both a client certificate and its key"),
            std::string::npos);

  ClientOptions missing;
  missing.endpoints = {"127.0.0.1:2379"};
  missing.ca_file = "/nonexistent/ca.pem";
  c = Client::Create(missing);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(c.status().message().find("etcd CA file /nonexistent/ca.pem"), std::string::npos);

  ClientOptions plain;
  plain.endpoints = {"127.0.0.1:2379", "127.0.0.2:2379"};
  c = Client::Create(plain);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->EndpointsText(), "127.0.0.1:2379,127.0.0.2:2379");
}

}  // namespace
}  // namespace netpol::agent::etcd
