// The embedded object store. See store.h.
#include "agent/store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "agent/convert.h"
#include "api/netpol/v1/object_service.pb.h"
#include "engine/model/loader.h"
#include "engine/util/status_macros.h"

namespace netpol::agent {
namespace {

constexpr char kMagic[] = "netpol-state";
constexpr int kFormatVersion = 1;
// A header line is short; anything longer is not our file.
constexpr size_t kMaxHeader = 128;

absl::Status ErrnoStatus(const std::string& what, int err) {
  std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  if (err == ENOENT) return absl::NotFoundError(msg);
  return absl::FailedPreconditionError(msg);
}

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

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open " + path, errno);
  std::string out;
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
  }
  ::close(fd);
  return out;
}

}  // namespace

Store::Store(std::string dir, State state, uint64_t generation)
    : dir_(std::move(dir)), path_(dir_ + "/" + kFileName) {
  current_.state = std::make_shared<const State>(std::move(state));
  current_.generation = generation;
}

std::string Store::Encode(const State& state, uint64_t generation) {
  v1::ListResponse file;
  file.set_generation(generation);
  for (const auto& [k, ns] : state.namespaces) *file.add_objects()->mutable_namespace_() = ToApi(ns);
  for (const auto& [k, pod] : state.pods) *file.add_objects()->mutable_pod() = ToApi(pod);
  for (const auto& [k, np] : state.policies) {
    *file.add_objects()->mutable_network_policy() = ToApi(np);
  }
  std::string payload;
  file.SerializeToString(&payload);
  return absl::StrFormat("%s %d %d %08x\n", kMagic, kFormatVersion, payload.size(), Crc(payload)) +
         payload;
}

absl::StatusOr<std::pair<State, uint64_t>> Store::Decode(const std::string& bytes) {
  size_t nl = bytes.find('\n');
  if (nl == std::string::npos || nl > kMaxHeader) {
    return absl::DataLossError("not a netpol state file (no header line)");
  }
  std::vector<std::string> parts = absl::StrSplit(bytes.substr(0, nl), ' ');
  int version = 0;
  uint64_t size = 0;
  uint32_t crc = 0;
  if (parts.size() != 4 || parts[0] != kMagic || !absl::SimpleAtoi(parts[1], &version) ||
      !absl::SimpleAtoi(parts[2], &size) || !absl::SimpleHexAtoi(parts[3], &crc)) {
    return absl::DataLossError("not a netpol state file (bad header line)");
  }
  if (version != kFormatVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("state file format version ", version, " is not supported (this agent reads ",
                     kFormatVersion, ")"));
  }
  std::string payload = bytes.substr(nl + 1);
  if (payload.size() != size) {
    return absl::DataLossError(absl::StrCat("state file truncated or padded: header says ", size,
                                            " bytes, found ", payload.size()));
  }
  if (Crc(payload) != crc) return absl::DataLossError("state file checksum mismatch");
  v1::ListResponse file;
  if (!file.ParseFromString(payload)) return absl::DataLossError("state file does not parse");
  State state;
  for (const v1::Object& o : file.objects()) {
    ASSIGN_OR_RETURN(Object obj, FromApiTrusted(o));
    Upsert(obj, &state);
  }
  return std::make_pair(std::move(state), file.generation());
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("state directory: empty path");
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoStatus("create state directory " + dir, errno);
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return ErrnoStatus("state directory " + dir, errno);
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError("state directory " + dir + ": not a directory");
  }
  const std::string path = dir + "/" + kFileName;
  absl::StatusOr<std::string> bytes = ReadAll(path);
  if (!bytes.ok()) {
    if (absl::IsNotFound(bytes.status())) {
      return std::unique_ptr<Store>(new Store(dir, State{}, 0));
    }
    return bytes.status();
  }
  auto decoded = Decode(*bytes);
  if (!decoded.ok()) {
    return absl::Status(decoded.status().code(),
                        absl::StrCat(path, ": ", decoded.status().message(),
                                     "; refusing to start from it (move it away to start empty, "
                                     "or restore it from a backup)"));
  }
  return std::unique_ptr<Store>(
      new Store(dir, std::move(decoded->first), decoded->second));
}

Snapshot Store::Current() const {
  absl::MutexLock l(&mu_);
  return current_;
}

absl::Status Store::Persist(const State& state, uint64_t generation) {
  const std::string tmp = path_ + ".tmp";
  const std::string data = Encode(state, generation);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus("create " + tmp, errno);
  absl::Status s = WriteAll(fd, data, tmp);
  if (s.ok() && ::fsync(fd) != 0) s = ErrnoStatus("fsync " + tmp, errno);
  if (::close(fd) != 0 && s.ok()) s = ErrnoStatus("close " + tmp, errno);
  if (s.ok() && ::rename(tmp.c_str(), path_.c_str()) != 0) {
    s = ErrnoStatus("rename " + tmp + " to " + path_, errno);
  }
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return ErrnoStatus("open " + dir_, errno);
  if (::fsync(dfd) != 0) s = ErrnoStatus("fsync " + dir_, errno);
  ::close(dfd);
  return s;
}

absl::StatusOr<Snapshot> Store::Update(const Mutation& mutate) {
  absl::MutexLock w(&write_mu_);
  Snapshot base = Current();
  ASSIGN_OR_RETURN(std::optional<Change> change, mutate(*base.state));
  if (!change) return base;
  const uint64_t next = base.generation + 1;
  RETURN_IF_ERROR(Persist(change->state, next));
  Snapshot snap;
  snap.state = std::make_shared<const State>(std::move(change->state));
  snap.generation = next;
  snap.changes = base.changes + change->objects_changed;
  absl::MutexLock l(&mu_);
  current_ = snap;
  return snap;
}

}  // namespace netpol::agent
