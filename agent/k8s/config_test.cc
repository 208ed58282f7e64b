#include "agent/k8s/config.h"

#include <cstdlib>
#include <fstream>

#include "absl/strings/escaping.h"
#include "agent/testing/fixtures.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol::agent::k8s {
namespace {

using ::testing::HasSubstr;
using fixtures::MakeTempDir;
using fixtures::RemoveTree;

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

std::string Kubeconfig(const std::string& cluster, const std::string& user) {
  return "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
         "contexts:\n- name: other\n  context: {cluster: x, user: y}\n"
         "- name: c\n  context: {cluster: k, user: u}\n"
         "clusters:\n- name: k\n  cluster:\n" +
         cluster + "users:\n- name: u\n  user:\n" + user;
}

TEST(KubeconfigTest, CurrentContextWithDataFieldsAndToken) {
  const std::string ca = absl::Base64Escape("CA PEM");
  absl::StatusOr<ClusterConfig> c = ParseKubeconfig(
      Kubeconfig("    server: https://127.0.0.1:6443/\n    certificate-authority-data: " + ca +
                     "\n",
                 "    token: abc\n"),
      "/x", "kubeconfig k");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://127.0.0.1:6443");
  EXPECT_EQ(c->ca_pem, "CA PEM");
  EXPECT_EQ(c->token, "abc");
  EXPECT_EQ(c->source, "kubeconfig k (context c)");
}

TEST(KubeconfigTest, RelativeFilesResolveAgainstTheKubeconfigDirectory) {
  const std::string dir = MakeTempDir("kubeconfig");
  Write(dir + "/ca.crt", "CA");
  Write(dir + "/u.crt", "CERT");
  Write(dir + "/u.key", "KEY");
  Write(dir + "/config",
        Kubeconfig("    server: https://h:1\n    certificate-authority: ca.crt\n",
                   "    client-certificate: u.crt\n    client-key: " + dir + "/u.key\n"));
  absl::StatusOr<ClusterConfig> c = LoadKubeconfig(dir + "/config");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ca_pem, "CA");
  EXPECT_EQ(c->client_cert_pem, "CERT");
  EXPECT_EQ(c->client_key_pem, "KEY");
  RemoveTree(dir);
}

TEST(KubeconfigTest, RefusesWhatItCannotHonour) {
  struct Case {
    std::string name, cluster, user, error;
  } cases[] = {
      {"insecure", "    server: https://h:1\n    insecure-skip-tls-verify: true\n", "    token: t\n",
       "insecure-skip-tls-verify is not supported"},
      {"plain http", "    server: http://h:1\n", "    token: t\n", "is not https://"},
      {"no server", "    certificate-authority-data: Q0E=\n", "    token: t\n",
       "server: required"},
      {"cert without key", "    server: https://h:1\n", "    client-certificate-data: Q0E=\n",
       "go together"},
      {"exec plugin", "    server: https://h:1\n", "    exec: {command: x}\n",
       "exec is not supported"},
      {"missing ca file", "    server: https://h:1\n    certificate-authority: /nonexistent/ca\n",
       "    token: t\n", "certificate-authority: cannot read /nonexistent/ca"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<ClusterConfig> got = ParseKubeconfig(Kubeconfig(c.cluster, c.user), "/x", "k");
    ASSERT_FALSE(got.ok()) << c.name;
    EXPECT_THAT(std::string(got.status().message()), HasSubstr(c.error)) << c.name;
  }
}

TEST(InClusterTest, ReadsTheServiceAccountAndRereadsTheRotatedToken) {
  const std::string dir = MakeTempDir("sa");
  Write(dir + "/ca.crt", "CA");
  Write(dir + "/token", "first\n");
  setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  absl::StatusOr<ClusterConfig> c = InClusterConfig(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://[fd00::1]:443");
  EXPECT_EQ(c->ca_pem, "CA");
  Credentials creds(*c, absl::Hours(1));
  EXPECT_EQ(*creds.Token(), "first");
  Write(dir + "/token", "second");
  EXPECT_EQ(*creds.Token(), "first");  // cached until the refresh interval or a 401
  creds.Invalidate();
  EXPECT_EQ(*creds.Token(), "second");
  unsetenv("KUBERNETES_SERVICE_HOST");
  EXPECT_THAT(std::string(InClusterConfig(dir).status().message()),
              HasSubstr("KUBERNETES_SERVICE_HOST/PORT unset"));
  RemoveTree(dir);
}

}  // namespace
}  // namespace netpol::agent::k8s
