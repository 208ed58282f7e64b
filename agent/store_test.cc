// Store: durability format, round trips, refusal of damaged files, generations.
#include "agent/store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/model/loader.h"
#include "gtest/gtest.h"

namespace netpol::agent {
namespace {

constexpr char kManifests[] = R"(
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: a}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: web}}
spec:
  nodeName: n1
  containers:
  - name: c
    ports: [{name: http, containerPort: 8080}, {containerPort: 53, protocol: UDP}]
status: {podIPs: [{ip: 10.0.0.1}, {ip: "fd00::1"}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow, namespace: x}
spec:
  podSelector: {matchExpressions: [{key: app, operator: In, values: [web]}]}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - podSelector: {}
      namespaceSelector: {matchLabels: {team: a}}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
    ports: [{port: http}, {port: 80, endPort: 90, protocol: SCTP}]
  egress:
  - {}
)";

State SampleState() {
  auto loaded = LoadYaml(kManifests);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  State s;
  for (const Object& o : loaded->objects) Upsert(o, &s);
  return s;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/netpol-store-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  std::string ReadFile() {
    std::ifstream in(dir_ + "/state.pb");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  void WriteFile(const std::string& data) {
    std::ofstream out(dir_ + "/state.pb", std::ios::trunc | std::ios::binary);
    out << data;
  }
  std::string dir_;
};

Store::Mutation Replace(State s, uint64_t n = 1) {
  return [s, n](const State&) -> absl::StatusOr<std::optional<Store::Change>> {
    return Store::Change{s, n};
  };
}

TEST_F(StoreTest, MissingFileIsEmptyGenerationZero) {
  auto store = Store::Open(dir_);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->Current().generation, 0u);
  EXPECT_TRUE((*store)->Current().state->pods.empty());
}

TEST_F(StoreTest, EncodeDecodeRoundTripsEveryField) {
  State s = SampleState();
  auto decoded = Store::Decode(Store::Encode(s, 42));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->second, 42u);
  EXPECT_TRUE(decoded->first == s);
}

TEST_F(StoreTest, UpdatePersistsBeforePublishingAndReopens) {
  State s = SampleState();
  {
    auto store = Store::Open(dir_);
    ASSERT_TRUE(store.ok());
    auto snap = (*store)->Update(Replace(s, 3));
    ASSERT_TRUE(snap.ok()) << snap.status();
    EXPECT_EQ(snap->generation, 1u);
    EXPECT_EQ(snap->changes, 3u);
    // The file holds the change as soon as Update returns.
    auto decoded = Store::Decode(ReadFile());
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(decoded->second, 1u);
    EXPECT_TRUE(decoded->first == s);
    struct stat st;
    ASSERT_EQ(stat((dir_ + "/state.pb").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600);
    EXPECT_NE(access((dir_ + "/state.pb.tmp").c_str(), F_OK), 0);
  }
  auto reopened = Store::Open(dir_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->Current().generation, 1u);
  EXPECT_TRUE(*(*reopened)->Current().state == s);
}

TEST_F(StoreTest, NoChangeKeepsGeneration) {
  auto store = Store::Open(dir_);
  ASSERT_TRUE(store.ok());
  auto snap = (*store)->Update([](const State&) -> absl::StatusOr<std::optional<Store::Change>> {
    return std::nullopt;
  });
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->generation, 0u);
  EXPECT_NE(access((dir_ + "/state.pb").c_str(), F_OK), 0);
}

TEST_F(StoreTest, MutationErrorChangesNothing) {
  auto store = Store::Open(dir_);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Update(Replace(SampleState())).ok());
  std::string before = ReadFile();
  auto snap = (*store)->Update([](const State&) -> absl::StatusOr<std::optional<Store::Change>> {
    return absl::InvalidArgumentError("networkpolicy x/y: spec.podSelector: bad");
  });
  EXPECT_EQ(snap.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*store)->Current().generation, 1u);
  EXPECT_EQ(ReadFile(), before);
}

TEST_F(StoreTest, WriteFailureKeepsPreviousGeneration) {
  auto store = Store::Open(dir_);
  ASSERT_TRUE(store.ok());
  // A directory where the temp file must go makes the write fail.
  ASSERT_EQ(mkdir((dir_ + "/state.pb.tmp").c_str(), 0700), 0);
  auto snap = (*store)->Update(Replace(SampleState()));
  EXPECT_FALSE(snap.ok());
  EXPECT_EQ((*store)->Current().generation, 0u);
  EXPECT_TRUE((*store)->Current().state->pods.empty());
  rmdir((dir_ + "/state.pb.tmp").c_str());
}

struct DamageCase {
  const char* name;
  std::function<std::string(std::string)> damage;
  const char* message;
};

class StoreDamageTest : public StoreTest, public ::testing::WithParamInterface<DamageCase> {};

TEST_P(StoreDamageTest, RefusesToOpen) {
  {
    auto store = Store::Open(dir_);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Update(Replace(SampleState())).ok());
  }
  WriteFile(GetParam().damage(ReadFile()));
  auto store = Store::Open(dir_);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find(dir_ + "/state.pb"), std::string::npos)
      << store.status();
  EXPECT_NE(store.status().message().find(GetParam().message), std::string::npos)
      << store.status();
  EXPECT_NE(store.status().message().find("refusing to start"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Damage, StoreDamageTest,
    ::testing::Values(
        DamageCase{"Truncated", [](std::string s) { return s.substr(0, s.size() - 7); },
                   "truncated"},
        DamageCase{"Empty", [](std::string) { return std::string(); }, "not a netpol state file"},
        DamageCase{"FlippedByte",
                   [](std::string s) {
                     s[s.size() / 2 + 20] ^= 0x20;
                     return s;
                   },
                   "checksum"},
        DamageCase{"Garbage", [](std::string) { return std::string("hello world\n"); },
                   "not a netpol state file"},
        DamageCase{"FutureVersion",
                   [](std::string s) { return s.replace(s.find(" 1 "), 3, " 9 "); },
                   "version 9"}),
    [](const ::testing::TestParamInfo<DamageCase>& info) { return info.param.name; });

TEST_F(StoreTest, UnreadableFileRefused) {
  if (geteuid() == 0) GTEST_SKIP() << "root reads files regardless of their mode";
  WriteFile("x");
  chmod((dir_ + "/state.pb").c_str(), 0);
  EXPECT_FALSE(Store::Open(dir_).ok());
}

TEST_F(StoreTest, StateDirIsAFile) {
  std::string file = dir_ + "/file";
  std::ofstream(file) << "x";
  auto store = Store::Open(file);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("not a directory"), std::string::npos) << store.status();
}

}  // namespace
}  // namespace netpol::agent
