#include "engine/netlink/netlink_socket.h"

#include <errno.h>
#include <linux/netlink.h>
#include <string.h>

#include "absl/strings/str_cat.h"

namespace netpol::netlink {
namespace {

absl::Status SyscallError(const char* what, const SyscallResult& r) {
  return absl::UnavailableError(absl::StrCat("netlink socket: ", what, ": ", strerror(r.error)));
}

// Largest datagram we accept: the kernel fills dump replies up to 32 KiB and ACKs are small, so
// 256 KiB leaves ample room; MSG_TRUNC reports anything longer instead of cutting it silently.
constexpr size_t kReceiveBufferBytes = 256 * 1024;

}  // namespace

absl::StatusOr<std::unique_ptr<NetlinkSocket>> NetlinkSocket::Open(NetlinkSyscalls* sys) {
  SyscallResult r = sys->Socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (!r.ok()) return SyscallError("socket(NETLINK_NETFILTER)", r);
  std::unique_ptr<NetlinkSocket> s(new NetlinkSocket(sys, static_cast<int>(r.value)));

  struct sockaddr_nl addr = {};
  addr.nl_family = AF_NETLINK;
  r = sys->Bind(s->fd_, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr));
  if (!r.ok()) return SyscallError("bind", r);
  socklen_t len = sizeof(addr);
  r = sys->GetSockName(s->fd_, reinterpret_cast<struct sockaddr*>(&addr), &len);
  if (!r.ok()) return SyscallError("getsockname", r);
  s->port_id_ = addr.nl_pid;

  int on = 1;
  // Both are optional refinements (kernels >= 4.12 and 4.3): without them errors still arrive,
  // only less precisely located, so their failure is not fatal.
  sys->SetSockOpt(s->fd_, SOL_NETLINK, NETLINK_EXT_ACK, &on, sizeof(on));
  sys->SetSockOpt(s->fd_, SOL_NETLINK, NETLINK_CAP_ACK, &on, sizeof(on));
  return s;
}

NetlinkSocket::~NetlinkSocket() { sys_->Close(fd_); }

absl::Status NetlinkSocket::EnsureBuffer(int force_opt, int opt, size_t bytes, size_t* current) {
  if (bytes <= *current) return absl::OkStatus();
  if (bytes > static_cast<size_t>(INT32_MAX / 2)) {
    return absl::InvalidArgumentError(
        absl::StrCat("netlink socket: a buffer of ", bytes, " bytes is too large"));
  }
  int value = static_cast<int>(bytes);
  SyscallResult r = sys_->SetSockOpt(fd_, SOL_SOCKET, force_opt, &value, sizeof(value));
  if (!r.ok()) {
    r = sys_->SetSockOpt(fd_, SOL_SOCKET, opt, &value, sizeof(value));
    if (!r.ok()) return SyscallError("setsockopt(buffer size)", r);
  }
  *current = bytes;
  return absl::OkStatus();
}

absl::Status NetlinkSocket::EnsureSendBuffer(size_t bytes) {
  return EnsureBuffer(SO_SNDBUFFORCE, SO_SNDBUF, bytes, &sndbuf_);
}

absl::Status NetlinkSocket::EnsureReceiveBuffer(size_t bytes) {
  return EnsureBuffer(SO_RCVBUFFORCE, SO_RCVBUF, bytes, &rcvbuf_);
}

absl::Status NetlinkSocket::Send(const void* data, size_t len) {
  struct sockaddr_nl kernel = {};
  kernel.nl_family = AF_NETLINK;
  struct iovec iov = {const_cast<void*>(data), len};
  struct msghdr msg = {};
  msg.msg_name = &kernel;
  msg.msg_namelen = sizeof(kernel);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  SyscallResult r = sys_->SendMsg(fd_, &msg, 0);
  if (!r.ok()) return SyscallError("sendmsg", r);
  if (static_cast<size_t>(r.value) != len) {
    return absl::UnavailableError(
        absl::StrCat("netlink socket: sendmsg sent ", r.value, " of ", len, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status NetlinkSocket::JoinGroup(unsigned int group) {
  int value = static_cast<int>(group);
  SyscallResult r =
      sys_->SetSockOpt(fd_, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &value, sizeof(value));
  if (!r.ok()) return SyscallError("setsockopt(NETLINK_ADD_MEMBERSHIP)", r);
  return absl::OkStatus();
}

absl::StatusOr<bool> NetlinkSocket::WaitReadable(int timeout_ms) {
  for (;;) {
    struct pollfd pfd = {fd_, POLLIN, 0};
    SyscallResult p = sys_->Poll(&pfd, 1, timeout_ms);
    if (!p.ok()) {
      if (p.error == EINTR) continue;
      return SyscallError("poll", p);
    }
    return p.value > 0;
  }
}

SyscallResult NetlinkSocket::RecvInto(std::vector<char>* buf) {
  if (scratch_ == nullptr) scratch_.reset(new char[kReceiveBufferBytes]);
  SyscallResult r = sys_->Recv(fd_, scratch_.get(), kReceiveBufferBytes, MSG_DONTWAIT | MSG_TRUNC);
  if (r.ok() && static_cast<size_t>(r.value) <= kReceiveBufferBytes) {
    buf->assign(scratch_.get(), scratch_.get() + r.value);
  }
  return r;
}

SyscallResult NetlinkSocket::ReceiveNow(std::vector<char>* buf) {
  SyscallResult r;
  do {
    r = RecvInto(buf);
  } while (!r.ok() && r.error == EINTR);
  if (!r.ok()) {
    buf->clear();
    return r;
  }
  if (static_cast<size_t>(r.value) > kReceiveBufferBytes) {
    buf->clear();
    return {-1, EMSGSIZE};
  }
  return r;
}

absl::Status NetlinkSocket::Receive(std::vector<char>* buf, int timeout_ms) {
  for (;;) {
    struct pollfd pfd = {fd_, POLLIN, 0};
    SyscallResult p = sys_->Poll(&pfd, 1, timeout_ms);
    if (!p.ok()) {
      if (p.error == EINTR) continue;
      return SyscallError("poll", p);
    }
    if (p.value == 0) {
      return absl::UnavailableError(
          absl::StrCat("netlink socket: no reply from the kernel within ", timeout_ms, " ms"));
    }
    SyscallResult r = RecvInto(buf);
    if (!r.ok()) {
      if (r.error == EAGAIN || r.error == EINTR) continue;
      return SyscallError("recv", r);
    }
    if (static_cast<size_t>(r.value) > kReceiveBufferBytes) {
      return absl::UnavailableError(absl::StrCat("netlink socket: a reply of ", r.value,
                                                 " bytes exceeds the receive buffer"));
    }
    return absl::OkStatus();
  }
}

}  // namespace netpol::netlink
