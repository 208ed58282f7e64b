// Revocation against the kernel. The test process moves into a fresh network namespace (the
// "node", a router) and creates two more, a client and a server side, each linked to it by a
// veth pair; the node forwards between them with conntrack enabled by an nftables table. Real
// TCP (IPv4, IPv6) and UDP flows cross the node; revoking some of them deletes exactly their
// conntrack entries, and once a rule denies their new packets, their traffic stops while the
// others' goes on. Never touches the host's namespace: every table and link is in namespaces
// the test created (`ip netns` names carry the pid and are deleted at the end).
#include "engine/conntrack/conntrack.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/compiler/compiler.h"
#include "engine/conntrack/revocation.h"
#include "engine/model/loader.h"
#include "engine/nft/diff.h"
#include "engine/nft/transaction.h"
#include "engine/util/skip_or_fail.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol::conntrack {
namespace {

struct CmdResult {
  int status = -1;
  std::string output;
};

CmdResult Sh(const std::string& cmd) {
  CmdResult r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  r.status = pclose(p);
  return r;
}

// Loads an nft script in the current (test) namespace.
CmdResult Nft(const std::string& script) {
  char path[] = "/tmp/netpol-conntrack-test-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return CmdResult{-1, "mkstemp failed"};
  (void)!write(fd, script.data(), script.size());
  close(fd);
  CmdResult r = Sh(absl::StrCat("nft -f ", path));
  unlink(path);
  return r;
}

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

// The flows of the table, as text, e.g. "tcp 10.1.0.2:41234 -> 10.2.0.2:8080" with the source
// port replaced by "*" so expectations do not depend on ephemeral ports.
std::vector<std::string> Flows(Family family) {
  absl::StatusOr<std::unique_ptr<KernelTable>> table = KernelTable::Open();
  EXPECT_TRUE(table.ok()) << table.status();
  if (!table.ok()) return {};
  absl::StatusOr<std::vector<Entry>> entries = (*table)->Dump(family);
  EXPECT_TRUE(entries.ok()) << entries.status();
  std::vector<std::string> out;
  if (!entries.ok()) return out;
  for (const Entry& e : *entries) {
    Flow f = e.flow;
    std::string text = f.ToString();
    const std::string sport = absl::StrCat(":", f.sport, " ");
    size_t at = text.find(sport);
    if (f.has_ports && at != std::string::npos) text.replace(at, sport.size(), ":* ");
    out.push_back(text);
  }
  std::sort(out.begin(), out.end());
  return out;
}

IpAddr Ip(const std::string& s) { return *IpAddr::Parse(s); }

FlowFilter Port(const std::string& src, const std::string& dst, uint8_t proto, uint16_t port) {
  FlowFilter f = FlowFilter::Any(Ip(src), Ip(dst));
  f.proto_lo = f.proto_hi = proto;
  f.dport_lo = f.dport_hi = port;
  return f;
}

using ::testing::Contains;
using ::testing::Not;

class ConntrackKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) NETPOL_SKIP_OR_FAIL("needs root to create network namespaces");
    CmdResult nft = Sh("nft --version");
    if (nft.status != 0) NETPOL_SKIP_OR_FAIL("nft not available: " << nft.output);
    std::string err = lab_.Setup();
    ASSERT_EQ(err, "");
  }
  Lab lab_;
};

// Filters given directly: the flows they name lose their entries, the others keep them; once
// new packets of the revoked flows are dropped, those flows stop and the others go on.
TEST_F(ConntrackKernelTest, RevokeDeletesOnlyMatchingEntries) {
  // Conntrack in this namespace starts when a rule needs it.
  CmdResult r = Nft(R"(table inet lab {
  chain forward {
    type filter hook forward priority 0; policy accept;
    ct state established,related accept
  }
})");
  ASSERT_EQ(r.status, 0) << r.output;

  Lab::Conn tcp = lab_.Tcp("10.2.0.2", 8080);
  ASSERT_TRUE(tcp.ok) << tcp.msg;
  Lab::Conn tcp6 = lab_.Tcp("fd00:2::2", 8080);
  ASSERT_TRUE(tcp6.ok) << tcp6.msg;
  Lab::Conn udp = lab_.Udp("10.2.0.2", 5353);
  ASSERT_TRUE(udp.ok) << udp.msg;
  Lab::Conn other = lab_.Tcp("10.2.0.2", 9090);
  ASSERT_TRUE(other.ok) << other.msg;
  ASSERT_TRUE(Lab::Deliver(tcp, "hello"));
  ASSERT_TRUE(Lab::Deliver(tcp6, "hello"));
  ASSERT_TRUE(Lab::Deliver(udp, "hello", /*reply=*/true));
  ASSERT_TRUE(Lab::Deliver(other, "hello"));

  const std::vector<std::string> v4 = Flows(Family::kV4);
  ASSERT_THAT(v4, Contains("tcp 10.1.0.2:* -> 10.2.0.2:8080"));
  ASSERT_THAT(v4, Contains("udp 10.1.0.2:* -> 10.2.0.2:5353"));
  ASSERT_THAT(v4, Contains("tcp 10.1.0.2:* -> 10.2.0.2:9090"));
  ASSERT_THAT(Flows(Family::kV6), Contains("tcp [fd00:1::2]:* -> [fd00:2::2]:8080"));

  // The "policy change": new packets to 8080 and 5353 are dropped from now on. Established
  // flows still pass: that is what revocation is for.
  r = Nft(R"(add rule inet lab forward tcp dport 8080 drop
add rule inet lab forward udp dport 5353 drop
)");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(Lab::Deliver(tcp, "still established"));
  EXPECT_TRUE(Lab::Deliver(udp, "still established"));

  ASSERT_TRUE(Revoke({Port("10.1.0.2", "10.2.0.2", 6, 8080), Port("fd00:1::2", "fd00:2::2", 6, 8080),
                      Port("10.1.0.2", "10.2.0.2", 17, 5353)})
                  .ok());

  const std::vector<std::string> after4 = Flows(Family::kV4);
  EXPECT_THAT(after4, Not(Contains("tcp 10.1.0.2:* -> 10.2.0.2:8080")));
  EXPECT_THAT(after4, Not(Contains("udp 10.1.0.2:* -> 10.2.0.2:5353")));
  EXPECT_THAT(after4, Contains("tcp 10.1.0.2:* -> 10.2.0.2:9090"));
  EXPECT_THAT(Flows(Family::kV6), Not(Contains("tcp [fd00:1::2]:* -> [fd00:2::2]:8080")));

  EXPECT_FALSE(Lab::Deliver(tcp, "revoked")) << "a revoked TCP flow must stop";
  EXPECT_FALSE(Lab::Deliver(tcp6, "revoked")) << "a revoked TCP flow must stop";
  EXPECT_FALSE(Lab::Deliver(udp, "revoked")) << "a revoked UDP flow must stop";
  EXPECT_TRUE(Lab::Deliver(other, "untouched"));
  EXPECT_THAT(Flows(Family::kV4), Contains("tcp 10.1.0.2:* -> 10.2.0.2:9090"));
}

// The whole path: compiled programs committed with nft, a policy change as a Diff, filters from
// that Diff, the new program deciding what stays.
TEST_F(ConntrackKernelTest, PolicyChangeRevokesWhatItDenies) {
  constexpr char kState[] = R"(
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {namespace: shop, name: client, labels: {app: client}}
spec: {nodeName: n1}
status:
  podIPs: [{ip: 10.1.0.2}, {ip: "fd00:1::2"}]
---
apiVersion: v1
kind: Pod
metadata: {namespace: shop, name: server, labels: {app: server}}
spec: {nodeName: n1}
status:
  podIPs: [{ip: 10.2.0.2}, {ip: "fd00:2::2"}]
)";
  auto policy = [](const std::string& ports) {
    return absl::StrCat(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: shop, name: server}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: )", ports, "\n");
  };
  auto compile = [&](const std::string& policy_yaml) {
    State state;
    absl::StatusOr<LoadResult> loaded = LoadYaml(std::string(kState) + "---\n" + policy_yaml);
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    for (const Object& o : loaded->objects) Upsert(o, &state);
    compiler::CompileOptions options;
    options.node_name = "n1";
    absl::StatusOr<nft::Program> p = compiler::Compile(state, options);
    EXPECT_TRUE(p.ok()) << p.status();
    return *p;
  };
  const nft::Program before =
      compile(policy("[{port: 8080}, {port: 9090}, {port: 5353, protocol: UDP}]"));
  const nft::Program after = compile(policy("[{port: 9090}]"));

  CmdResult r = Nft(nft::FullReplace(before).ToNftText());
  ASSERT_EQ(r.status, 0) << r.output;
  Lab::Conn tcp = lab_.Tcp("10.2.0.2", 8080);
  ASSERT_TRUE(tcp.ok) << tcp.msg;
  Lab::Conn tcp6 = lab_.Tcp("fd00:2::2", 8080);
  ASSERT_TRUE(tcp6.ok) << tcp6.msg;
  Lab::Conn udp = lab_.Udp("10.2.0.2", 5353);
  ASSERT_TRUE(udp.ok) << udp.msg;
  Lab::Conn kept = lab_.Tcp("10.2.0.2", 9090);
  ASSERT_TRUE(kept.ok) << kept.msg;
  Lab::Conn kept6 = lab_.Tcp("fd00:2::2", 9090);
  ASSERT_TRUE(kept6.ok) << kept6.msg;
  for (const Lab::Conn* c : {&tcp, &tcp6, &kept, &kept6}) ASSERT_TRUE(Lab::Deliver(*c, "hello"));
  ASSERT_TRUE(Lab::Deliver(udp, "hello", /*reply=*/true));

  const nft::Transaction change = nft::Diff(before, after);
  r = Nft(change.ToNftText());
  ASSERT_EQ(r.status, 0) << r.output << "\n" << change.ToNftText();
  EXPECT_TRUE(Lab::Deliver(tcp, "established survives the commit"));

  const RevocationPlan plan = RevocationPlan::Build(before, change);
  const std::vector<FlowFilter> filters = plan.Expand();
  std::vector<std::string> texts;
  for (const FlowFilter& f : filters) texts.push_back(f.ToString());
  EXPECT_THAT(texts, ::testing::UnorderedElementsAre("10.1.0.2 -> 10.2.0.2 tcp dport 8080",
                                                     "fd00:1::2 -> fd00:2::2 tcp dport 8080",
                                                     "10.1.0.2 -> 10.2.0.2 udp dport 5353",
                                                     "fd00:1::2 -> fd00:2::2 udp dport 5353"));
  absl::StatusOr<std::unique_ptr<KernelTable>> table = KernelTable::Open();
  ASSERT_TRUE(table.ok()) << table.status();
  RevokeOptions options;
  options.keep = [&](const Flow& f) { return StillAllowed(after, f); };
  absl::StatusOr<std::vector<IpAddr>> host = HostAddresses();
  ASSERT_TRUE(host.ok()) << host.status();
  options.host_addresses = *host;
  absl::StatusOr<RevokeReport> report = RevokePlan(table->get(), plan, options);
  ASSERT_TRUE(report.ok()) << report.status();
  std::vector<std::string> deleted;
  for (const Flow& f : report->deleted) {
    deleted.push_back(absl::StrCat(f.ToString().substr(0, 3), " -> ", f.dst.ToString(), ":", f.dport));
  }
  EXPECT_THAT(deleted, ::testing::UnorderedElementsAre("tcp -> 10.2.0.2:8080", "udp -> 10.2.0.2:5353",
                                                       "tcp -> fd00:2::2:8080"));
  EXPECT_THAT(report->errors, ::testing::IsEmpty());

  EXPECT_FALSE(Lab::Deliver(tcp, "revoked"));
  EXPECT_FALSE(Lab::Deliver(tcp6, "revoked"));
  EXPECT_FALSE(Lab::Deliver(udp, "revoked"));
  EXPECT_TRUE(Lab::Deliver(kept, "still allowed"));
  EXPECT_TRUE(Lab::Deliver(kept6, "still allowed"));
}

}  // namespace
}  // namespace netpol::conntrack
