// StateCache: round trips of every field, the source check, damaged files refused, the
// background writer keeping the newest state, and save failures reported.
#include "agent/state_cache.h"

#include <sys/stat.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "agent/durable_file.h"
#include "agent/testing/fixtures.h"
#include "gtest/gtest.h"

namespace netpol::agent {
namespace {

class StateCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fixtures::MakeTempDir("netpol-cache-test-");
    ASSERT_FALSE(dir_.empty());
  }
  void TearDown() override {
    chmod(dir_.c_str(), 0700);
    fixtures::RemoveTree(dir_);
  }
  std::string ReadCacheFile() {
    std::ifstream in(dir_ + "/" + StateCache::kFileName, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string dir_;
};

TEST_F(StateCacheTest, NothingSavedIsNotFound) {
  StateCache cache(dir_, "etcd /netpol/v1/");
  absl::StatusOr<CachedState> got = cache.Load();
  EXPECT_TRUE(absl::IsNotFound(got.status())) << got.status();
}

TEST_F(StateCacheTest, SaveThenLoadGivesEveryObjectAndTheVersion) {
  State state = fixtures::LoadState(fixtures::kSample);
  ASSERT_FALSE(state.pods.empty());
  for (const Object& o : fixtures::LoadObjects(fixtures::kClusterSample)) Upsert(o, &state);
  ASSERT_EQ(state.cluster_policies.size(), 2u);
  ASSERT_EQ(state.nodes.size(), 2u);
  {
    StateCache cache(dir_, "etcd /netpol/v1/");
    ASSERT_TRUE(cache.Save(state, "41").ok());
    EXPECT_EQ(cache.status().saved_version, "41");
    EXPECT_EQ(cache.status().saves, 1u);
  }
  StateCache again(dir_, "etcd /netpol/v1/");  // as after a restart
  absl::StatusOr<CachedState> got = again.Load();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(got->state == state);
  EXPECT_EQ(got->version, "41");
  EXPECT_NE(got->saved_at, absl::InfinitePast());
}

TEST_F(StateCacheTest, AnotherSourcesCacheIsNotLoaded) {
  StateCache cache(dir_, "etcd /netpol/v1/");
  ASSERT_TRUE(cache.Save(fixtures::LoadState(fixtures::kSample), "41").ok());
  StateCache other(dir_, "etcd /other/");
  absl::StatusOr<CachedState> got = other.Load();
  ASSERT_TRUE(absl::IsNotFound(got.status())) << got.status();
  EXPECT_NE(got.status().message().find("holds the state of etcd /netpol/v1/, not of etcd /other/"),
            std::string::npos)
      << got.status();
}

TEST_F(StateCacheTest, DamagedFileIsRefusedNamingIt) {
  StateCache cache(dir_, "s");
  ASSERT_TRUE(cache.Save(fixtures::LoadState(fixtures::kSample), "7").ok());
  std::string bytes = ReadCacheFile();
  bytes[bytes.size() / 2] ^= 0x20;
  ASSERT_TRUE(WriteDurably(dir_, cache.path(), bytes).ok());
  absl::StatusOr<CachedState> got = cache.Load();
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
  EXPECT_NE(got.status().message().find(cache.path()), std::string::npos) << got.status();
}

TEST_F(StateCacheTest, TruncatedPayloadFieldsAreRefused) {
  // A well-formed durable file whose payload ends inside the version field.
  StateCache cache(dir_, "s");
  std::string encoded = StateCache::Encode("s", "123456", absl::Now(), State());
  absl::StatusOr<std::pair<std::string, CachedState>> whole = StateCache::Decode(encoded);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->second.version, "123456");
  absl::StatusOr<std::string> payload =
      DecodeDurable(DurableFormat{"netpol-datastore-cache", 1, "datastore cache"}, encoded);
  ASSERT_TRUE(payload.ok());
  std::string cut = EncodeDurable(DurableFormat{"netpol-datastore-cache", 1, "datastore cache"},
                                  payload->substr(0, 4 + 1 + 4 + 3));
  absl::StatusOr<std::pair<std::string, CachedState>> got = StateCache::Decode(cut);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
}

TEST_F(StateCacheTest, TheWriterSavesTheNewestStateOffered) {
  StateCache cache(dir_, "s");
  State state = fixtures::LoadState(fixtures::kSample);
  for (int i = 1; i <= 20; ++i) {
    state.namespaces["x"].labels["step"] = std::to_string(i);
    cache.Offer(std::make_shared<const State>(state), std::to_string(i));
  }
  cache.Flush();
  absl::StatusOr<CachedState> got = cache.Load();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->version, "20");
  EXPECT_TRUE(got->state == state);
  EXPECT_TRUE(cache.status().last_error.ok()) << cache.status().last_error;
  EXPECT_GE(cache.status().saves, 1u);
  EXPECT_LE(cache.status().saves, 20u);
}

TEST_F(StateCacheTest, AFailedSaveIsReported) {
  StateCache cache(dir_, "s");
  ASSERT_TRUE(cache.Save(State(), "1").ok());
  // A cache whose directory does not exist: its save fails and says where.
  const std::string sub = dir_ + "/gone";
  StateCache lost(sub, "s");
  cache.Offer(std::make_shared<const State>(), "2");
  lost.Offer(std::make_shared<const State>(), "2");
  cache.Flush();
  lost.Flush();
  EXPECT_FALSE(lost.status().last_error.ok());
  EXPECT_NE(lost.status().last_error.message().find(sub), std::string::npos)
      << lost.status().last_error;
  EXPECT_EQ(lost.status().saved_version, "");
  EXPECT_EQ(cache.status().saved_version, "2");
}

}  // namespace
}  // namespace netpol::agent
