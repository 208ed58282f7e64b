// Single requests and dumps over a NetlinkSocket, and the parsing of the kernel's error
// messages. Internal to engine/netlink (shared by NetlinkBackend and ChangeMonitor).
//
// Every kernel error becomes a Status whose code follows the errno (CodeForErrno); socket
// trouble is Unavailable.
#ifndef NETPOL_ENGINE_NETLINK_REQUEST_H_
#define NETPOL_ENGINE_NETLINK_REQUEST_H_

#include <linux/netlink.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "engine/netlink/netlink_socket.h"

namespace netpol::netlink {

// Room for one request message (a GET with a couple of names).
inline constexpr size_t kRequestBytes = 4096;

// The Status code for a kernel errno: ENOENT NotFound, EEXIST AlreadyExists, EBUSY/EOPNOTSUPP
// FailedPrecondition, EINVAL and friends InvalidArgument, EPERM PermissionDenied, ENOSPC
// ResourceExhausted, ENOMEM/ENOBUFS Unavailable, anything else Unknown.
absl::StatusCode CodeForErrno(int err);
// `what: strerror(err)` with CodeForErrno's code.
absl::Status ErrnoStatus(const std::string& what, int err);

// A parsed NLMSG_ERROR message.
struct KernelError {
  uint32_t seq = 0;
  int error = 0;                   // positive errno; 0 for an ACK
  std::optional<uint32_t> offset;  // NLMSGERR_ATTR_OFFS
  std::string message;             // NLMSGERR_ATTR_MSG
};
// Parses an NLMSG_ERROR message (with its extended-ACK attributes); nullopt when truncated.
std::optional<KernelError> ParseError(const nlmsghdr* nlh);

// Sends one nf_tables request of `type` (family inet) with sequence number `seq` and feeds every
// reply message to `on_msg` until the final ACK (single requests) or NLMSG_DONE (dumps, `dump`
// true). `payload` (may be empty) adds attributes to the request. Replies to other sequence
// numbers are skipped. Sets *interrupted when the kernel flagged a dump part as inconsistent
// (NLM_F_DUMP_INTR). A kernel error becomes a Status with the errno's code; an error returned
// by `on_msg` ends the exchange.
absl::Status Request(NetlinkSocket* sock, uint32_t seq, uint16_t type, bool dump, int timeout_ms,
                     const std::function<void(nlmsghdr*)>& payload,
                     const std::function<absl::Status(const nlmsghdr*)>& on_msg, bool* interrupted);

}  // namespace netpol::netlink

#endif  // NETPOL_ENGINE_NETLINK_REQUEST_H_
