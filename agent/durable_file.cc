// Durable, checksummed files. See durable_file.h.
#include "agent/durable_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace netpol::agent {
namespace {

// A header line is short; anything longer is not our file.
constexpr size_t kMaxHeader = 128;

uint32_t Crc(const std::string& data) {
  return static_cast<uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
}

absl::Status WriteAll(int fd, const std::string& data, const std::string& path) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("write " + path, errno);
    }
    off += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ErrnoStatus(const std::string& what, int err) {
  std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  if (err == ENOENT) return absl::NotFoundError(msg);
  return absl::FailedPreconditionError(msg);
}

namespace {

const char* FileKind(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

}  // namespace

absl::StatusOr<std::string> ReadWholeFile(const std::string& path, uint64_t max_bytes) {
  // O_NOFOLLOW: a link is refused, not followed. O_NONBLOCK: opening a FIFO does not wait for a
  // writer (it is refused below); regular files ignore it.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    if (errno == ELOOP) {
      return absl::FailedPreconditionError(absl::StrCat(
          "open ", path, ": is a symbolic link; the agent reads only regular files it wrote "
          "(remove the link)"));
    }
    return ErrnoStatus("open " + path, errno);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus("stat " + path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::FailedPreconditionError(absl::StrCat(
        "open ", path, ": is ", FileKind(st.st_mode),
        ", not a regular file; the agent reads only regular files it wrote (remove it)"));
  }
  auto too_large = [&](uint64_t size) {
    return absl::FailedPreconditionError(
        absl::StrCat("read ", path, ": ", size, " bytes or more, more than the limit of ",
                     max_bytes, " bytes: not a file the agent wrote"));
  };
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    return too_large(static_cast<uint64_t>(st.st_size));
  }
  std::string out;
  out.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return ErrnoStatus("read " + path, err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {  // grew while read
      ::close(fd);
      return too_large(out.size());
    }
  }
  ::close(fd);
  return out;
}

absl::Status PrepareStateDirectory(const std::string& dir, uid_t uid) {
  if (dir.empty()) return absl::InvalidArgumentError("state directory: empty path");
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoStatus("create state directory " + dir, errno);
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return ErrnoStatus("state directory " + dir, errno);
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError("state directory " + dir + ": not a directory");
  }
  if (st.st_uid != uid) {
    return absl::FailedPreconditionError(absl::StrCat(
        "state directory ", dir, " is owned by uid ", st.st_uid, ", not by the agent's uid ",
        uid, ": its owner could change what the agent enforces; refusing to use it (chown ",
        uid, " ", dir, ", or choose another --state-dir)"));
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "state directory %s is writable by its group or others (mode %04o): they could change "
        "what the agent enforces; refusing to use it (chmod 0700 %s)",
        dir, st.st_mode & 07777, dir));
  }
  return absl::OkStatus();
}

absl::Status PrepareStateDirectory(const std::string& dir) {
  return PrepareStateDirectory(dir, ::geteuid());
}

absl::Status WriteDurably(const std::string& dir, const std::string& path,
                          const std::string& data) {
  const std::string tmp = path + ".tmp";
  // A temporary file left by a crash, or anything planted under its name (a link to a file
  // elsewhere), is removed, never written through: the file is created anew.
  if (::unlink(tmp.c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus("remove the stale " + tmp, errno);
  }
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus("create " + tmp, errno);
  absl::Status s = WriteAll(fd, data, tmp);
  if (s.ok() && ::fsync(fd) != 0) s = ErrnoStatus("fsync " + tmp, errno);
  if (::close(fd) != 0 && s.ok()) s = ErrnoStatus("close " + tmp, errno);
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    s = ErrnoStatus("rename " + tmp + " to " + path, errno);
  }
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return ErrnoStatus("open " + dir, errno);
  if (::fsync(dfd) != 0) s = ErrnoStatus("fsync " + dir, errno);
  ::close(dfd);
  return s;
}

std::string EncodeDurable(const DurableFormat& format, const std::string& payload) {
  return absl::StrFormat("%s %d %d %08x\n", format.magic, format.version, payload.size(),
                         Crc(payload)) +
         payload;
}

absl::StatusOr<std::string> DecodeDurable(const DurableFormat& format, const std::string& bytes) {
  size_t nl = bytes.find('\n');
  if (nl == std::string::npos || nl > kMaxHeader) {
    return absl::DataLossError(
        absl::StrCat("not a netpol ", format.noun, " file (no header line)"));
  }
  std::vector<std::string> parts = absl::StrSplit(bytes.substr(0, nl), ' ');
  int version = 0;
  uint64_t size = 0;
  uint32_t crc = 0;
  if (parts.size() != 4 || parts[0] != format.magic || !absl::SimpleAtoi(parts[1], &version) ||
      !absl::SimpleAtoi(parts[2], &size) || !absl::SimpleHexAtoi(parts[3], &crc)) {
    return absl::DataLossError(
        absl::StrCat("not a netpol ", format.noun, " file (bad header line)"));
  }
  if (version != format.version) {
    return absl::FailedPreconditionError(
        absl::StrCat(format.noun, " file format version ", version,
                     " is not supported (this agent reads ", format.version, ")"));
  }
  std::string payload = bytes.substr(nl + 1);
  if (payload.size() != size) {
    return absl::DataLossError(absl::StrCat(format.noun,
                                            " file truncated or padded: header says ", size,
                                            " bytes, found ", payload.size()));
  }
  if (Crc(payload) != crc) {
    return absl::DataLossError(absl::StrCat(format.noun, " file checksum mismatch"));
  }
  return payload;
}

}  // namespace netpol::agent
