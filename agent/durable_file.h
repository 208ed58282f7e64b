// Durable, checksummed files in the agent's state directory.
//
// File format: a header line "<magic> <version> <payload bytes> <crc32 hex>\n" followed by the
// payload. The checksum catches torn and corrupted files.
//
// Durability: WriteDurably writes `<path>.tmp`, fsyncs it, renames it over `path` and fsyncs the
// directory, so the new content is visible only once it would survive a crash.
#ifndef NETPOL_AGENT_DURABLE_FILE_H_
#define NETPOL_AGENT_DURABLE_FILE_H_

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

// The whole content of `path`. Errors name the operation and the path ("open <path>: ...");
// a missing file is NotFound.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

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
