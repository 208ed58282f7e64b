#include "engine/netlink/syscalls.h"

#include <errno.h>
#include <unistd.h>

namespace netpol::netlink {
namespace {

SyscallResult Wrap(ssize_t rc) { return {rc, rc < 0 ? errno : 0}; }

class RealSyscalls final : public NetlinkSyscalls {
 public:
  SyscallResult Socket(int domain, int type, int protocol) override {
    return Wrap(::socket(domain, type, protocol));
  }
  SyscallResult Bind(int fd, const struct sockaddr* addr, socklen_t len) override {
    return Wrap(::bind(fd, addr, len));
  }
  SyscallResult GetSockName(int fd, struct sockaddr* addr, socklen_t* len) override {
    return Wrap(::getsockname(fd, addr, len));
  }
  SyscallResult SetSockOpt(int fd, int level, int name, const void* value, socklen_t len) override {
    return Wrap(::setsockopt(fd, level, name, value, len));
  }
  SyscallResult SendMsg(int fd, const struct msghdr* msg, int flags) override {
    ssize_t rc;
    do {
      rc = ::sendmsg(fd, msg, flags);
    } while (rc < 0 && errno == EINTR);
    return Wrap(rc);
  }
  SyscallResult Recv(int fd, void* buf, size_t len, int flags) override {
    ssize_t rc;
    do {
      rc = ::recv(fd, buf, len, flags);
    } while (rc < 0 && errno == EINTR);
    return Wrap(rc);
  }
  SyscallResult Poll(struct pollfd* fds, nfds_t nfds, int timeout_ms) override {
    return Wrap(::poll(fds, nfds, timeout_ms));
  }
  SyscallResult Close(int fd) override { return Wrap(::close(fd)); }
};

}  // namespace

NetlinkSyscalls* RealNetlinkSyscalls() {
  static NetlinkSyscalls* const kReal = new RealSyscalls();  // never destroyed: used at exit
  return kReal;
}

}  // namespace netpol::netlink
