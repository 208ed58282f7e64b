// The state directory's files as an attacker or a damaged disk leaves them: links planted under
// the temporary name, FIFOs and devices under a file's name, oversized files, and directories
// others may write.
#include "agent/durable_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "agent/testing/fixtures.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol::agent {
namespace {

using ::testing::HasSubstr;

class DurableFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fixtures::MakeTempDir("netpol-durable-test-");
    ASSERT_FALSE(dir_.empty());
    outside_ = fixtures::MakeTempDir("netpol-durable-outside-");
    ASSERT_FALSE(outside_.empty());
  }
  void TearDown() override {
    fixtures::RemoveTree(dir_);
    fixtures::RemoveTree(outside_);
  }
  static std::string Read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static void Write(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
  }

  std::string dir_;
  std::string outside_;  // stands for a file the agent must never touch (/etc/shadow, ...)
};

TEST_F(DurableFileTest, APlantedLinkAtTheTemporaryNameIsReplacedNeverFollowed) {
  const std::string victim = outside_ + "/victim";
  Write(victim, "keep me");
  const std::string path = dir_ + "/attachments.pb";
  ASSERT_EQ(::symlink(victim.c_str(), (path + ".tmp").c_str()), 0);
  ASSERT_TRUE(WriteDurably(dir_, path, "new content").ok());
  EXPECT_EQ(Read(victim), "keep me");
  EXPECT_EQ(Read(path), "new content");
  struct stat st;
  EXPECT_EQ(::lstat((path + ".tmp").c_str(), &st), -1);
  // A stale regular temporary file (a crash mid-write) is replaced the same way.
  Write(path + ".tmp", "half of an old write");
  ASSERT_TRUE(WriteDurably(dir_, path, "newer").ok());
  EXPECT_EQ(Read(path), "newer");
}

TEST_F(DurableFileTest, ReadingAFifoIsRefusedAtOnceInsteadOfWaitingForAWriter) {
  const std::string path = dir_ + "/state.pb";
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  absl::StatusOr<std::string> r = ReadWholeFile(path);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(path + ": is a FIFO"));
}

TEST_F(DurableFileTest, DevicesAndLinksAreRefusedNotReadUntilMemoryRunsOut) {
  absl::StatusOr<std::string> device = ReadWholeFile("/dev/zero");
  ASSERT_EQ(device.status().code(), absl::StatusCode::kFailedPrecondition) << device.status();
  EXPECT_THAT(std::string(device.status().message()), HasSubstr("is a character device"));
  const std::string path = dir_ + "/state.pb";
  ASSERT_EQ(::symlink("/dev/zero", path.c_str()), 0);
  absl::StatusOr<std::string> link = ReadWholeFile(path);
  ASSERT_EQ(link.status().code(), absl::StatusCode::kFailedPrecondition) << link.status();
  EXPECT_THAT(std::string(link.status().message()), HasSubstr("is a symbolic link"));
  // A link to a regular file is refused too: only what the agent wrote is read.
  Write(outside_ + "/state.pb", "netpol-state 1 0 00000000\n");
  ASSERT_EQ(::unlink(path.c_str()), 0);
  ASSERT_EQ(::symlink((outside_ + "/state.pb").c_str(), path.c_str()), 0);
  EXPECT_EQ(ReadWholeFile(path).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(DurableFileTest, ReadsAreBoundedInSize) {
  const std::string path = dir_ + "/state.journal";
  Write(path, std::string(100, 'x'));
  ASSERT_TRUE(ReadWholeFile(path, 100).ok());
  absl::StatusOr<std::string> r = ReadWholeFile(path, 99);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("more than the limit of 99 bytes"));
  // The default bound: a sparse file just beyond it costs no disk and is refused unread.
  const std::string sparse = dir_ + "/state.pb";
  Write(sparse, "");
  ASSERT_EQ(::truncate(sparse.c_str(), static_cast<off_t>(kMaxDurableFileBytes + 1)), 0);
  r = ReadWholeFile(sparse);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("more than the limit"));
  EXPECT_EQ(ReadWholeFile(dir_ + "/absent").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(DurableFileTest, StateDirectoryIsCreatedPrivateAndRefusedWhenOthersMayWriteIt) {
  const std::string fresh = dir_ + "/state";
  ASSERT_TRUE(PrepareStateDirectory(fresh).ok());
  struct stat st;
  ASSERT_EQ(::stat(fresh.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_TRUE(PrepareStateDirectory(fresh).ok());  // existing and private: fine

  ASSERT_EQ(::chmod(fresh.c_str(), 0777), 0);
  absl::Status open = PrepareStateDirectory(fresh);
  ASSERT_EQ(open.code(), absl::StatusCode::kFailedPrecondition) << open;
  EXPECT_THAT(std::string(open.message()),
              HasSubstr("writable by its group or others (mode 0777)"));
  EXPECT_THAT(std::string(open.message()), HasSubstr("chmod 0700 " + fresh));
  ASSERT_EQ(::chmod(fresh.c_str(), 0720), 0);
  EXPECT_EQ(PrepareStateDirectory(fresh).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_EQ(::chmod(fresh.c_str(), 0755), 0);  // readable by others is allowed
  EXPECT_TRUE(PrepareStateDirectory(fresh).ok());

  // Owned by another user (the agent's uid is passed in, so no root is needed to test it).
  const uid_t other = ::geteuid() + 1;
  absl::Status owner = PrepareStateDirectory(fresh, other);
  ASSERT_EQ(owner.code(), absl::StatusCode::kFailedPrecondition) << owner;
  EXPECT_THAT(std::string(owner.message()),
              HasSubstr("is owned by uid " + std::to_string(::geteuid()) +
                        ", not by the agent's uid " + std::to_string(other)));

  const std::string file = dir_ + "/file";
  Write(file, "");
  EXPECT_THAT(std::string(PrepareStateDirectory(file).message()), HasSubstr("not a directory"));
}

}  // namespace
}  // namespace netpol::agent
