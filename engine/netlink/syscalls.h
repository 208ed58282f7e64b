// The system calls the netlink backend makes, behind an interface so tests can inject failures
// (a refused socket, a short or failed sendmsg, a kernel reply that never comes).
//
// Every call returns the raw return value and, when it failed, the errno it left; no call
// throws or logs. RealNetlinkSyscalls() forwards to the kernel.
#ifndef NETPOL_ENGINE_NETLINK_SYSCALLS_H_
#define NETPOL_ENGINE_NETLINK_SYSCALLS_H_

#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>

namespace netpol::netlink {

// The outcome of one system call: `value` as the call returned it, `error` the errno when
// value < 0 (0 otherwise).
struct SyscallResult {
  ssize_t value = 0;
  int error = 0;
  bool ok() const { return value >= 0; }
};

// Thread-safe when the implementation is (the real one is stateless).
class NetlinkSyscalls {
 public:
  virtual ~NetlinkSyscalls() = default;
  virtual SyscallResult Socket(int domain, int type, int protocol) = 0;
  virtual SyscallResult Bind(int fd, const struct sockaddr* addr, socklen_t len) = 0;
  virtual SyscallResult GetSockName(int fd, struct sockaddr* addr, socklen_t* len) = 0;
  virtual SyscallResult SetSockOpt(int fd, int level, int name, const void* value,
                                   socklen_t len) = 0;
  virtual SyscallResult SendMsg(int fd, const struct msghdr* msg, int flags) = 0;
  virtual SyscallResult Recv(int fd, void* buf, size_t len, int flags) = 0;
  virtual SyscallResult Poll(struct pollfd* fds, nfds_t nfds, int timeout_ms) = 0;
  virtual SyscallResult Close(int fd) = 0;
};

// Returns the process-wide implementation that calls the kernel. Never null; lives forever.
NetlinkSyscalls* RealNetlinkSyscalls();

}  // namespace netpol::netlink

#endif  // NETPOL_ENGINE_NETLINK_SYSCALLS_H_
