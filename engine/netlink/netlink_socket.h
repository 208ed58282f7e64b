// A NETLINK_NETFILTER socket: open/bind, buffer sizing, one-sendmsg sends and bounded waits for
// replies. Internal to engine/netlink.
//
// Not thread-safe: one owner drives it. Every failure is a Status naming the system call and
// errno (code Unavailable: the caller may retry on a fresh socket).
#ifndef NETPOL_ENGINE_NETLINK_NETLINK_SOCKET_H_
#define NETPOL_ENGINE_NETLINK_NETLINK_SOCKET_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/netlink/syscalls.h"

namespace netpol::netlink {

class NetlinkSocket {
 public:
  // Opens and binds a socket through `sys` (not owned; must outlive the socket). Enables
  // extended ACKs (the kernel then names the offending attribute of a failed message) with
  // capped ACKs (errors do not echo the whole request back).
  static absl::StatusOr<std::unique_ptr<NetlinkSocket>> Open(NetlinkSyscalls* sys);
  ~NetlinkSocket();
  NetlinkSocket(const NetlinkSocket&) = delete;
  NetlinkSocket& operator=(const NetlinkSocket&) = delete;

  // The port id the kernel assigned at bind; replies carry it.
  uint32_t port_id() const { return port_id_; }
  // The file descriptor, for poll(); owned by the socket.
  int fd() const { return fd_; }

  // Subscribes to the multicast group `group` (NETLINK_ADD_MEMBERSHIP, e.g. NFNLGRP_NFTABLES).
  absl::Status JoinGroup(unsigned int group);

  // Grows the send / receive buffer to at least `bytes` (SO_*BUFFORCE, falling back to the
  // unprivileged option). Never shrinks.
  absl::Status EnsureSendBuffer(size_t bytes);
  absl::Status EnsureReceiveBuffer(size_t bytes);

  // Sends `len` bytes at `data` to the kernel with exactly one sendmsg (one iovec).
  absl::Status Send(const void* data, size_t len);

  // Waits up to `timeout_ms` for one datagram and stores it in `buf` (resized to its length).
  // Unavailable when nothing arrives in time or on socket errors (ENOBUFS means the kernel
  // dropped replies because the receive buffer was full).
  absl::Status Receive(std::vector<char>* buf, int timeout_ms);

  // Waits up to `timeout_ms` (0: not at all, negative: forever) until a datagram or a socket
  // error is pending; false on timeout.
  absl::StatusOr<bool> WaitReadable(int timeout_ms);
  // Reads one datagram into `buf` (resized to its length) without waiting and returns recv's
  // raw outcome: the length, or the errno (EAGAIN: nothing queued; ENOBUFS: the kernel dropped
  // messages because the receive buffer was full; EMSGSIZE: a datagram larger than the
  // 256 KiB this socket accepts, which is discarded).
  SyscallResult ReceiveNow(std::vector<char>* buf);

 private:
  NetlinkSocket(NetlinkSyscalls* sys, int fd) : sys_(sys), fd_(fd) {}
  absl::Status EnsureBuffer(int force_opt, int opt, size_t bytes, size_t* current);

  // Receives into scratch_ (allocated once, never zeroed) and copies out what arrived: a
  // datagram is usually an ACK of a few dozen bytes, and a fresh 256 KiB zero-filled buffer per
  // receive cost a large allocation (and page faults) per netlink round trip.
  SyscallResult RecvInto(std::vector<char>* buf);
  NetlinkSyscalls* sys_;
  int fd_;
  std::unique_ptr<char[]> scratch_;
  uint32_t port_id_ = 0;
  size_t sndbuf_ = 0;
  size_t rcvbuf_ = 0;
};

}  // namespace netpol::netlink

#endif  // NETPOL_ENGINE_NETLINK_NETLINK_SOCKET_H_
