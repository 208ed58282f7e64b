// Durable, checksummed files in the agent's state directory.
//
// File format: a header line "<magic> <version> <payload bytes> <crc32 hex>\n" followed by the
// payload. The checksum catches torn and corrupted files.
//
// Durability: WriteDurably writes `<path>.tmp`, fsyncs it, renames it over `path` and fsyncs the
// directory, so the new content is visible only once it would survive a crash.
//
// Trust: the state directory must belong to the agent's user and be writable by nobody else
// (PrepareStateDirectory); even so, nothing found in it is followed or trusted blindly. Reads
// open regular files only (no symbolic link, FIFO or device: those are refused without
// blocking) and at most kMaxDurableFileBytes; a stale or planted `<path>.tmp` is removed and the
// temporary file created anew (O_EXCL | O_NOFOLLOW), so a link there never redirects a write.
#ifndef NETPOL_AGENT_DURABLE_FILE_H_
#define NETPOL_AGENT_DURABLE_FILE_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace netpol::agent {

// One kind of durable file.
struct DurableFormat {
  absl::string_view magic;  // first word of the header line, e.g. "netpol-state"
  int version;              // the format version this agent writes and reads
  absl::string_view noun;   // names the file in errors: "<noun> file checksum mismatch"
};

// `what: strerror(err)` as PermissionDenied (EACCES, EPERM), NotFound (ENOENT) or
// FailedPrecondition (anything else).
absl::Status ErrnoStatus(const std::string& what, int err);

// The most ReadWholeFile reads by default: 1 GiB, 60 times the store of 100,000 pods and 20,000
// policies (16.8 MB, benchmarks/README.md).
inline constexpr uint64_t kMaxDurableFileBytes = uint64_t{1} << 30;

// The whole content of `path`, a regular file of at most `max_bytes`. Errors name the operation
// and the path ("open <path>: ..."); a missing file is NotFound; a symbolic link, a FIFO, a
// device or anything else but a regular file, or a larger file, is FailedPrecondition.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path,
                                          uint64_t max_bytes = kMaxDurableFileBytes);

// Creates the state directory `dir` (mode 0700) when missing and checks it may be trusted: a
// directory (symbolic links to one are followed), owned by `uid`, not writable by its group or
// others. Refusals are FailedPrecondition saying what to change. The one-argument form checks
// against the agent's effective uid.
absl::Status PrepareStateDirectory(const std::string& dir, uid_t uid);
absl::Status PrepareStateDirectory(const std::string& dir);

// Replaces `path` (a file in directory `dir`) with `data` durably (see above). On error the
// temporary file is removed and `path` is untouched (unless only the directory fsync failed).
absl::Status WriteDurably(const std::string& dir, const std::string& path,
                          const std::string& data);

// The header line for `payload` followed by `payload`.
std::string EncodeDurable(const DurableFormat& format, const std::string& payload);

// The payload of `bytes` after checking the header line, its size and checksum: DataLoss for a
// missing or malformed header, a size mismatch or a checksum mismatch; FailedPrecondition for
// another format version.
absl::StatusOr<std::string> DecodeDurable(const DurableFormat& format, const std::string& bytes);

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_DURABLE_FILE_H_
