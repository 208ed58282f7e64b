// A router lab for conntrack tests (testonly): the test process moves into a fresh network
// namespace (the "node", a router with forwarding on) and creates a client and a server
// namespace, each linked to it by a veth pair (client 10.1.0.2 / fd00:1::2, server 10.2.0.2 /
// fd00:2::2). Real TCP and UDP flows cross the node. Never touches the host's namespace: every
// table and link is in namespaces the test created (`ip netns` names carry the pid and are
// deleted with the Lab).
#ifndef NETPOL_ENGINE_CONNTRACK_KERNEL_LAB_H_
#define NETPOL_ENGINE_CONNTRACK_KERNEL_LAB_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/model/ip.h"
#include "gtest/gtest.h"

namespace netpol::conntrack::lab {

struct CmdResult {
  int status = -1;
  std::string output;
};

// Runs a shell command; output is stdout and stderr.
CmdResult Sh(const std::string& cmd);
// Loads an nft script in the current (test) namespace.
CmdResult Nft(const std::string& script);

constexpr int kQuietMs = 400;  // how long "no data arrives" is watched; TCP retransmits within it

class Lab {
 public:
  // Builds the topology; returns an error text, empty on success.
  std::string Setup() {
    if (unshare(CLONE_NEWNET) != 0) return absl::StrCat("unshare(CLONE_NEWNET): ", strerror(errno));
    const std::string pid = absl::StrCat(getpid());
    client_ = "npct-" + pid + "-c";
    server_ = "npct-" + pid + "-s";
    const std::vector<std::string> cmds = {
        "ip link set lo up",
        "ip netns add " + client_,
        "ip netns add " + server_,
        "ip link add npc0 type veth peer name eth0 netns " + client_,
        "ip link add nps0 type veth peer name eth0 netns " + server_,
        "ip addr add 10.1.0.1/24 dev npc0",
        "ip addr add fd00:1::1/64 dev npc0 nodad",
        "ip link set npc0 up",
        "ip addr add 10.2.0.1/24 dev nps0",
        "ip addr add fd00:2::1/64 dev nps0 nodad",
        "ip link set nps0 up",
        "sysctl -qw net.ipv4.ip_forward=1",
        "sysctl -qw net.ipv6.conf.all.forwarding=1",
        Ns(client_, "ip link set lo up"),
        Ns(client_, "ip addr add 10.1.0.2/24 dev eth0"),
        Ns(client_, "ip addr add fd00:1::2/64 dev eth0 nodad"),
        Ns(client_, "ip link set eth0 up"),
        Ns(client_, "ip route add default via 10.1.0.1"),
        Ns(client_, "ip -6 route add default via fd00:1::1"),
        Ns(server_, "ip link set lo up"),
        Ns(server_, "ip addr add 10.2.0.2/24 dev eth0"),
        Ns(server_, "ip addr add fd00:2::2/64 dev eth0 nodad"),
        Ns(server_, "ip link set eth0 up"),
        Ns(server_, "ip route add default via 10.2.0.1"),
        Ns(server_, "ip -6 route add default via fd00:2::1"),
    };
    for (const std::string& c : cmds) {
      CmdResult r = Sh(c);
      if (r.status != 0) return absl::StrCat(c, ": ", r.output);
    }
    return "";
  }

  ~Lab() {
    for (int fd : fds_) close(fd);
    if (!client_.empty()) Sh("ip netns del " + client_);
    if (!server_.empty()) Sh("ip netns del " + server_);
  }

  // A TCP connection from the client namespace to the server's `addr`:`port`, with both ends'
  // descriptors. ok is false (and msg says why) on failure.
  struct Conn {
    int client = -1, server = -1;
    bool ok = false;
    std::string msg;
  };
  Conn Tcp(const std::string& addr, uint16_t port) {
    return Connect(SOCK_STREAM, addr, port);
  }
  Conn Udp(const std::string& addr, uint16_t port) { return Connect(SOCK_DGRAM, addr, port); }

  // Sends `msg` from client to server (and, for UDP, back, so the flow is assured). Returns
  // whether the server received it within kQuietMs.
  static bool Deliver(const Conn& c, const std::string& msg, bool reply = false) {
    if (send(c.client, msg.data(), msg.size(), 0) != static_cast<ssize_t>(msg.size())) return false;
    pollfd p{c.server, POLLIN, 0};
    if (poll(&p, 1, kQuietMs) != 1) return false;
    char buf[256];
    sockaddr_storage from{};
    socklen_t len = sizeof from;
    ssize_t n = recvfrom(c.server, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n != static_cast<ssize_t>(msg.size())) return false;
    if (reply) {
      if (sendto(c.server, buf, n, 0, reinterpret_cast<sockaddr*>(&from), len) != n) return false;
      pollfd q{c.client, POLLIN, 0};
      if (poll(&q, 1, kQuietMs) != 1) return false;
      if (recv(c.client, buf, sizeof buf, 0) != n) return false;
    }
    return true;
  }

 private:
  static std::string Ns(const std::string& ns, const std::string& cmd) {
    return absl::StrCat("ip netns exec ", ns, " ", cmd);
  }

  // Runs `fn` with the calling thread in namespace `ns`; sockets created there stay there.
  static bool InNs(const std::string& ns, const std::function<void()>& fn) {
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int target = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    bool ok = self >= 0 && target >= 0 && setns(target, CLONE_NEWNET) == 0;
    if (ok) {
      fn();
      ok = setns(self, CLONE_NEWNET) == 0;
    }
    if (self >= 0) close(self);
    if (target >= 0) close(target);
    return ok;
  }

  Conn Connect(int type, const std::string& addr, uint16_t port) {
    Conn c;
    sockaddr_storage sa{};
    socklen_t len;
    const bool v6 = addr.find(':') != std::string::npos;
    if (v6) {
      auto* s6 = reinterpret_cast<sockaddr_in6*>(&sa);
      s6->sin6_family = AF_INET6;
      s6->sin6_port = htons(port);
      inet_pton(AF_INET6, addr.c_str(), &s6->sin6_addr);
      len = sizeof(sockaddr_in6);
    } else {
      auto* s4 = reinterpret_cast<sockaddr_in*>(&sa);
      s4->sin_family = AF_INET;
      s4->sin_port = htons(port);
      inet_pton(AF_INET, addr.c_str(), &s4->sin_addr);
      len = sizeof(sockaddr_in);
    }
    const int family = v6 ? AF_INET6 : AF_INET;
    int listener = -1;
    bool ns_ok = InNs(server_, [&] {
      listener = socket(family, type | SOCK_CLOEXEC, 0);
      int one = 1;
      setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (bind(listener, reinterpret_cast<sockaddr*>(&sa), len) != 0) {
        c.msg = absl::StrCat("bind ", addr, ":", port, ": ", strerror(errno));
      } else if (type == SOCK_STREAM && listen(listener, 4) != 0) {
        c.msg = absl::StrCat("listen: ", strerror(errno));
      }
    });
    if (listener >= 0) fds_.push_back(listener);
    if (!ns_ok || !c.msg.empty()) {
      if (c.msg.empty()) c.msg = "setns into the server namespace failed";
      return c;
    }
    ns_ok = InNs(client_, [&] {
      c.client = socket(family, type | SOCK_CLOEXEC, 0);
      // Bounds a connect that a broken lab would hang. Fresh veth links may drop the first SYN
      // (the carrier comes up asynchronously); TCP resends it after a second.
      timeval tv{10, 0};
      setsockopt(c.client, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      if (connect(c.client, reinterpret_cast<sockaddr*>(&sa), len) != 0) {
        c.msg = absl::StrCat("connect ", addr, ":", port, ": ", strerror(errno));
      }
    });
    if (c.client >= 0) fds_.push_back(c.client);
    if (!ns_ok || !c.msg.empty()) {
      if (c.msg.empty()) c.msg = "setns into the client namespace failed";
      return c;
    }
    if (type == SOCK_STREAM) {
      pollfd p{listener, POLLIN, 0};
      if (poll(&p, 1, 2000) != 1) {
        c.msg = "no connection to accept";
        return c;
      }
      c.server = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (c.server < 0) {
        c.msg = absl::StrCat("accept: ", strerror(errno));
        return c;
      }
      fds_.push_back(c.server);
    } else {
      c.server = listener;
    }
    c.ok = true;
    return c;
  }

  std::string client_, server_;
  std::vector<int> fds_;
};

// The lab's two ends as Kubernetes objects, on node n1: namespace shop, pod shop/client
// (app: client) at the client side's addresses and pod shop/server (app: server) at the server
// side's.
extern const char kShopPods[];

// Policy shop/server: pods app=server admit app=client on `ports` (a YAML list, e.g.
// "[{port: 8080}]").
std::string ShopServerPolicy(const std::string& ports);

// A test fixture whose SetUp builds the lab (lab_); the test is skipped by hand, and fails when
// NETPOL_CI=1, where the process is not root or nft is missing.
class KernelLabTest : public ::testing::Test {
 protected:
  void SetUp() override;

  Lab lab_;
};

// The flows of the conntrack table of the current namespace, as text, e.g.
// "tcp 10.1.0.2:* -> 10.2.0.2:8080": the source port replaced by "*" so expectations do not
// depend on ephemeral ports. Sorted.
std::vector<std::string> Flows(Family family);

}  // namespace netpol::conntrack::lab

#endif  // NETPOL_ENGINE_CONNTRACK_KERNEL_LAB_H_
