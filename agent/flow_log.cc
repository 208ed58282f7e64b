#include "agent/flow_log.h"

#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_log/libnetfilter_log.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/compiler/cluster.h"
#include "engine/compiler/common.h"
#include "engine/eval/eval.h"
#include "google/protobuf/util/json_util.h"

namespace netpol::agent {
namespace {

constexpr uint8_t kTcp = 6, kUdp = 17, kSctp = 132, kUdpLite = 136, kIcmp = 1, kIcmpv6 = 58;

bool HasPorts(uint8_t proto) {
  return proto == kTcp || proto == kUdp || proto == kSctp || proto == kUdpLite;
}

std::string ProtocolText(uint8_t proto) {
  switch (proto) {
    case kTcp:
      return "TCP";
    case kUdp:
      return "UDP";
    case kSctp:
      return "SCTP";
    case kIcmp:
      return "ICMP";
    case kIcmpv6:
      return "ICMPv6";
    default:
      return absl::StrCat(proto);
  }
}

// The pod holding `ip`: a pod that is not hostNetwork first (a hostNetwork pod shares the
// node's address), then the first by key.
const Pod* PodWithIp(const State& state, const IpAddr& ip) {
  const Pod* host = nullptr;
  for (const auto& [key, pod] : state.pods) {
    if (std::find(pod.ips.begin(), pod.ips.end(), ip) == pod.ips.end()) continue;
    if (!pod.host_network) return &pod;
    if (host == nullptr) host = &pod;
  }
  return host;
}

// Fills the policies and rules of an allowed record: the rules of the logging policies (of the
// judged pod, in direction `dir`) that allow the packet, as the evaluator decides it. For a
// protocol without ports, the logging policies isolating the judged pod. False when no logging
// policy is concerned: the packet went through a lookup a logging policy shares with another
// policy whose rule allowed it (RULESET.md "Allowed-flow logs"), and no record is made.
bool AttributeAllowed(const State& state, const PacketHeader& h, const Pod* src, const Pod* dst,
                      compiler::internal::Dir dir, v1::FlowRecord* r) {
  const bool ingress = dir == compiler::internal::Dir::kIngress;
  const Pod& judged = ingress ? *dst : *src;
  std::optional<Protocol> proto;
  if (h.protocol == kTcp) proto = Protocol::kTCP;
  if (h.protocol == kUdp) proto = Protocol::kUDP;
  if (h.protocol == kSctp) proto = Protocol::kSCTP;
  if (!proto) {
    for (const auto& [key, policy] : state.policies) {
      if (policy.namespace_name != judged.namespace_name || !policy.log_allowed) continue;
      if (compiler::internal::Selects(policy, judged, dir)) r->add_policies(key);
    }
    return r->policies_size() > 0;
  }
  const Endpoint from = src != nullptr ? Endpoint::ForPod(*src) : Endpoint::ForAddress(h.src);
  const Endpoint to = dst != nullptr ? Endpoint::ForPod(*dst) : Endpoint::ForAddress(h.dst);
  const Decision d = Decide(state, from, to, h.src.family, *proto, h.dst_port);
  const SideDecision& side = ingress ? d.ingress : d.egress;
  std::string last;
  for (const RuleRef& rule : side.allowing_rules) {
    auto p = state.policies.find(rule.policy);
    if (p == state.policies.end() || !p->second.log_allowed) continue;
    if (rule.policy != last) r->add_policies(rule.policy);
    last = rule.policy;
    r->add_rules(absl::StrCat(rule.policy, " ", ingress ? "ingress" : "egress", "[", rule.rule,
                              "]"));
  }
  return r->rules_size() > 0;
}

std::optional<Protocol> PortProtocol(uint8_t proto) {
  if (proto == kTcp) return Protocol::kTCP;
  if (proto == kUdp) return Protocol::kUDP;
  if (proto == kSctp) return Protocol::kSCTP;
  return std::nullopt;
}

// Fills the ClusterNetworkPolicy rule of a record the deny-log chain of `tier` dropped: the Deny
// rule that decides the packet on the judged side, as the evaluator decides it. Without ports (the
// evaluator needs a protocol with ports), or when the State no longer holds such a rule, only the
// tier and the action.
void AttributeClusterDeny(const State& state, const PacketHeader& h, const Pod* src,
                          const Pod* dst, compiler::internal::Dir dir, CnpTier tier,
                          v1::FlowRecord* r) {
  v1::ClusterNetworkPolicyRuleRef* ref = r->mutable_cluster_network_policy_rule();
  ref->set_tier(tier == CnpTier::kAdmin ? v1::Admin : v1::Baseline);
  ref->set_action(v1::Deny);
  const std::optional<Protocol> proto = PortProtocol(h.protocol);
  if (!proto) return;
  const Endpoint from = src != nullptr ? Endpoint::ForPod(*src) : Endpoint::ForAddress(h.src);
  const Endpoint to = dst != nullptr ? Endpoint::ForPod(*dst) : Endpoint::ForAddress(h.dst);
  const Decision d = Decide(state, from, to, h.src.family, *proto, h.dst_port);
  const SideDecision& side = dir == compiler::internal::Dir::kIngress ? d.ingress : d.egress;
  if (!side.cnp_rule || side.cnp_rule->action != CnpAction::kDeny || side.cnp_rule->tier != tier) {
    return;
  }
  ref->set_policy(side.cnp_rule->policy);
  ref->set_priority(side.cnp_rule->priority);
  ref->set_rule(side.cnp_rule->rule);
  ref->set_name(side.cnp_rule->name);
}

}  // namespace

absl::StatusOr<PacketHeader> ParsePacketHeader(const uint8_t* data, size_t len) {
  if (len < 1) return absl::InvalidArgumentError("empty packet");
  PacketHeader h;
  size_t l4 = 0;
  uint8_t version = data[0] >> 4;
  if (version == 4) {
    if (len < 20) return absl::InvalidArgumentError("truncated IPv4 header");
    size_t ihl = (data[0] & 0x0f) * 4u;
    if (ihl < 20) return absl::InvalidArgumentError("bad IPv4 header length");
    h.src.family = h.dst.family = Family::kV4;
    std::copy(data + 12, data + 16, h.src.bytes.begin());
    std::copy(data + 16, data + 20, h.dst.bytes.begin());
    h.protocol = data[9];
    // A fragment other than the first carries no transport header.
    bool later_fragment = ((data[6] & 0x1f) << 8 | data[7]) != 0;
    l4 = later_fragment ? len : ihl;
  } else if (version == 6) {
    if (len < 40) return absl::InvalidArgumentError("truncated IPv6 header");
    h.src.family = h.dst.family = Family::kV6;
    std::copy(data + 8, data + 24, h.src.bytes.begin());
    std::copy(data + 24, data + 40, h.dst.bytes.begin());
    uint8_t next = data[6];
    size_t off = 40;
    // Hop-by-hop, routing, destination options: (next, length in 8-byte units - 1).
    while ((next == 0 || next == 43 || next == 60) && off + 2 <= len) {
      uint8_t n = data[off];
      off += (data[off + 1] + 1u) * 8u;
      next = n;
    }
    if (next == 44 && off + 8 <= len) {  // fragment header: ports only in the first fragment
      uint8_t n = data[off];
      bool first = ((data[off + 2] << 8 | data[off + 3]) & 0xfff8) == 0;
      off = first ? off + 8 : len;
      next = n;
    }
    h.protocol = next;
    l4 = off;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("IP version ", version));
  }
  if (HasPorts(h.protocol) && l4 + 4 <= len) {
    h.src_port = static_cast<uint16_t>(data[l4] << 8 | data[l4 + 1]);
    h.dst_port = static_cast<uint16_t>(data[l4 + 2] << 8 | data[l4 + 3]);
  }
  return h;
}

std::optional<v1::FlowRecord> Attribute(const State& state, const std::string& node,
                                        const LoggedPacket& packet) {
  using compiler::internal::Dir;
  std::string chain;
  v1::Verdict verdict;
  if (absl::StartsWith(packet.prefix, compiler::internal::kDenyLogPrefix)) {
    verdict = v1::DENIED;
    chain = packet.prefix.substr(strlen(compiler::internal::kDenyLogPrefix));
  } else if (absl::StartsWith(packet.prefix, compiler::internal::kAllowLogPrefix)) {
    verdict = v1::ALLOWED;
    chain = packet.prefix.substr(strlen(compiler::internal::kAllowLogPrefix));
  } else {
    return std::nullopt;
  }
  Dir dir;
  // A ClusterNetworkPolicy tier's deny-log chain: "deny cin-...-adl" (Admin) / "-bdl" (Baseline).
  std::optional<CnpTier> tier;
  if (verdict == v1::DENIED && (absl::StartsWith(chain, "cin-") || absl::StartsWith(chain, "ceg-"))) {
    if (absl::EndsWith(chain, compiler::internal::kAdminDenyLogSuffix)) {
      tier = CnpTier::kAdmin;
    } else if (absl::EndsWith(chain, compiler::internal::kBaselineDenyLogSuffix)) {
      tier = CnpTier::kBaseline;
    } else {
      return std::nullopt;
    }
    chain.resize(chain.size() - strlen(compiler::internal::kAdminDenyLogSuffix));
    dir = absl::StartsWith(chain, "cin-") ? Dir::kIngress : Dir::kEgress;
  } else if (absl::StartsWith(chain, "in-")) {
    dir = Dir::kIngress;
  } else if (absl::StartsWith(chain, "eg-")) {
    dir = Dir::kEgress;
  } else {
    return std::nullopt;
  }
  v1::FlowRecord r;
  int64_t nanos = absl::ToUnixNanos(packet.time);
  r.mutable_time()->set_seconds(nanos / 1000000000);
  r.mutable_time()->set_nanos(static_cast<int32_t>(nanos % 1000000000));
  r.set_node(node);
  r.set_verdict(verdict);
  r.set_direction(dir == Dir::kIngress ? v1::INGRESS : v1::EGRESS);
  r.set_chain(chain);
  r.set_protocol(ProtocolText(packet.header.protocol));
  const Pod* src = PodWithIp(state, packet.header.src);
  const Pod* dst = PodWithIp(state, packet.header.dst);
  r.mutable_source()->set_ip(packet.header.src.ToString());
  r.mutable_source()->set_port(packet.header.src_port);
  if (src != nullptr) r.mutable_source()->set_pod(src->Key());
  r.mutable_destination()->set_ip(packet.header.dst.ToString());
  r.mutable_destination()->set_port(packet.header.dst_port);
  if (dst != nullptr) r.mutable_destination()->set_pod(dst->Key());
  const Pod* judged = dir == Dir::kIngress ? dst : src;
  if (verdict == v1::ALLOWED) {
    if (judged == nullptr || !AttributeAllowed(state, packet.header, src, dst, dir, &r)) {
      return std::nullopt;
    }
    return r;
  }
  if (tier) {
    AttributeClusterDeny(state, packet.header, src, dst, dir, *tier, &r);
    return r;
  }
  if (judged != nullptr) {
    for (const auto& [key, policy] : state.policies) {
      if (policy.namespace_name != judged->namespace_name) continue;
      if (compiler::internal::Selects(policy, *judged, dir)) r.add_policies(key);
    }
  }
  return r;
}

std::string RecordJson(const v1::FlowRecord& record) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = false;
  (void)google::protobuf::util::MessageToJsonString(record, &out, opts);
  return out;
}

bool Matches(const v1::FlowLogsRequest& req, const v1::FlowRecord& r) {
  if (req.verdict() != v1::VERDICT_UNSPECIFIED && req.verdict() != r.verdict()) return false;
  if (!req.pod().empty() && r.source().pod() != req.pod() && r.destination().pod() != req.pod()) {
    return false;
  }
  if (!req.namespace_().empty()) {
    std::string prefix = req.namespace_() + "/";
    if (!absl::StartsWith(r.source().pod(), prefix) &&
        !absl::StartsWith(r.destination().pod(), prefix)) {
      return false;
    }
  }
  return true;
}

FlowLog::FlowLog(FlowLogOptions options) : options_(std::move(options)) {}

namespace {

// Sends one NFULNL_MSG_CONFIG request for `group` and waits for its acknowledgement.
absl::Status Configure(mnl_socket* nl, uint32_t portid, uint16_t group,
                       const std::function<void(nlmsghdr*)>& fill, uint32_t seq) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = nflog_nlmsg_put_header(buf, NFULNL_MSG_CONFIG, AF_UNSPEC, group);
  nlh->nlmsg_flags |= NLM_F_ACK;
  nlh->nlmsg_seq = seq;
  fill(nlh);
  if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
    return absl::UnavailableError(absl::StrCat("nflog: send: ", strerror(errno)));
  }
  int n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
  if (n < 0) return absl::UnavailableError(absl::StrCat("nflog: receive: ", strerror(errno)));
  if (mnl_cb_run(buf, n, seq, portid, nullptr, nullptr) < 0) {
    if (errno == EBUSY) {
      return absl::FailedPreconditionError(
          absl::StrCat("nflog group ", group, " is already bound by another process"));
    }
    return absl::UnavailableError(absl::StrCat("nflog group ", group, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

struct ReadContext {
  FlowLog* log;
  absl::Time now;
};

int OnPacket(const nlmsghdr* nlh, void* data) {
  auto* ctx = static_cast<ReadContext*>(data);
  nlattr* attrs[NFULA_MAX + 1] = {};
  if (nflog_nlmsg_parse(nlh, attrs) < 0) return MNL_CB_OK;
  if (attrs[NFULA_PAYLOAD] == nullptr) return MNL_CB_OK;
  LoggedPacket p;
  p.time = ctx->now;
  if (attrs[NFULA_PREFIX] != nullptr) {
    const char* s = mnl_attr_get_str(attrs[NFULA_PREFIX]);
    p.prefix.assign(s, strnlen(s, mnl_attr_get_payload_len(attrs[NFULA_PREFIX])));
  }
  absl::StatusOr<PacketHeader> h =
      ParsePacketHeader(static_cast<const uint8_t*>(mnl_attr_get_payload(attrs[NFULA_PAYLOAD])),
                        mnl_attr_get_payload_len(attrs[NFULA_PAYLOAD]));
  if (!h.ok()) return MNL_CB_OK;
  p.header = *h;
  ctx->log->Add(std::move(p));
  return MNL_CB_OK;
}

}  // namespace

absl::StatusOr<std::unique_ptr<FlowLog>> FlowLog::Start(FlowLogOptions options) {
  mnl_socket* nl = mnl_socket_open(NETLINK_NETFILTER);
  if (nl == nullptr) return absl::UnavailableError(absl::StrCat("nflog: socket: ", strerror(errno)));
  if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    int err = errno;
    mnl_socket_close(nl);
    return absl::UnavailableError(absl::StrCat("nflog: bind: ", strerror(err)));
  }
  uint32_t portid = mnl_socket_get_portid(nl);
  const uint16_t group = options.group;
  absl::Status s = Configure(
      nl, portid, group, [](nlmsghdr* nlh) { nflog_attr_put_cfg_cmd(nlh, NFULNL_CFG_CMD_BIND); },
      1);
  if (s.ok()) {
    s = Configure(
        nl, portid, group,
        [](nlmsghdr* nlh) { nflog_attr_put_cfg_mode(nlh, NFULNL_COPY_PACKET, 0xffff); }, 2);
  }
  if (s.ok()) {
    // Every packet at once: the kernel otherwise batches up to 100 packets or one second per
    // message (the limit in the rule already bounds how many come).
    s = Configure(
        nl, portid, group,
        [](nlmsghdr* nlh) {
          mnl_attr_put_u32(nlh, NFULA_CFG_QTHRESH, htonl(1));
          mnl_attr_put_u32(nlh, NFULA_CFG_TIMEOUT, htonl(1));
        },
        3);
  }
  if (!s.ok()) {
    mnl_socket_close(nl);
    return s;
  }
  int fd = mnl_socket_get_fd(nl);
  int rcvbuf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
  // The fd outlives the mnl_socket wrapper: keep a duplicate and free the wrapper.
  int own = dup(fd);
  mnl_socket_close(nl);
  if (own < 0) return absl::UnavailableError(absl::StrCat("nflog: dup: ", strerror(errno)));
  std::unique_ptr<FlowLog> log(new FlowLog(std::move(options)));
  log->fd_ = own;
  log->portid_ = portid;
  log->reader_ = std::thread([l = log.get()] { l->ReadLoop(); });
  log->worker_ = std::thread([l = log.get()] { l->WorkLoop(); });
  return log;
}

std::unique_ptr<FlowLog> FlowLog::StartWithoutSocket(FlowLogOptions options) {
  std::unique_ptr<FlowLog> log(new FlowLog(std::move(options)));
  log->worker_ = std::thread([l = log.get()] { l->WorkLoop(); });
  return log;
}

FlowLog::~FlowLog() {
  stopping_.store(true);
  if (reader_.joinable()) reader_.join();
  if (worker_.joinable()) worker_.join();
  if (fd_ >= 0) close(fd_);
  absl::MutexLock lock(&mu_);
  if (file_fd_ >= 0) close(file_fd_);
}

void FlowLog::ReadLoop() {
  std::vector<char> buf(1 << 16);
  while (!stopping_.load()) {
    pollfd p{fd_, POLLIN, 0};
    int r = poll(&p, 1, 200);
    if (r <= 0) continue;
    ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == ENOBUFS) socket_dropped_.fetch_add(1);  // the kernel dropped some
      continue;
    }
    ReadContext ctx{this, absl::Now()};
    mnl_cb_run(buf.data(), static_cast<size_t>(n), 0, portid_, OnPacket, &ctx);
  }
}

bool FlowLog::Add(LoggedPacket packet) {
  received_.fetch_add(1);
  absl::MutexLock lock(&mu_);
  if (queue_.size() >= options_.queue) {
    queue_dropped_.fetch_add(1);
    return false;
  }
  queue_.push_back(std::move(packet));
  return true;
}

void FlowLog::WorkLoop() {
  while (true) {
    std::vector<LoggedPacket> batch;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !queue_.empty() || stopping_.load();
      };
      mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(200));
      if (queue_.empty()) {
        if (stopping_.load()) return;
        continue;
      }
      while (!queue_.empty() && batch.size() < 256) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    std::shared_ptr<const State> state = options_.state ? options_.state() : nullptr;
    State empty;
    std::vector<v1::FlowRecord> records;
    for (const LoggedPacket& p : batch) {
      std::optional<v1::FlowRecord> r = Attribute(state ? *state : empty, options_.node, p);
      if (r) records.push_back(*std::move(r));
    }
    absl::MutexLock lock(&mu_);
    for (v1::FlowRecord& r : records) {
      Write(r);
      held_.push_back(std::move(r));
      ++sequence_;
      ++records_;
      while (held_.size() > options_.buffer) held_.pop_front();
    }
  }
}

void FlowLog::Write(const v1::FlowRecord& record) {
  if (options_.file.empty()) return;
  std::string line = RecordJson(record) + "\n";
  if (file_fd_ >= 0 && file_bytes_ + line.size() > options_.file_max_bytes && file_bytes_ > 0) {
    close(file_fd_);
    file_fd_ = -1;
    std::string old = options_.file + ".1";
    if (rename(options_.file.c_str(), old.c_str()) != 0) {
      file_error_ = absl::StrCat("rename ", options_.file, ": ", strerror(errno));
    }
  }
  if (file_fd_ < 0) {
    file_fd_ = open(options_.file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (file_fd_ < 0) {
      file_error_ = absl::StrCat("open ", options_.file, ": ", strerror(errno));
      return;
    }
    off_t end = lseek(file_fd_, 0, SEEK_END);
    file_bytes_ = end > 0 ? static_cast<uint64_t>(end) : 0;
  }
  ssize_t n = write(file_fd_, line.data(), line.size());
  if (n != static_cast<ssize_t>(line.size())) {
    file_error_ = absl::StrCat("write ", options_.file, ": ", n < 0 ? strerror(errno) : "short");
    return;
  }
  file_bytes_ += line.size();
  file_error_.clear();
}

void FlowLog::Follow(const v1::FlowLogsRequest& request,
                     const std::function<bool(const v1::FlowRecord&)>& send,
                     const std::function<bool()>& cancelled) {
  std::vector<v1::FlowRecord> first;
  uint64_t next = 0;  // sequence number of the next record to send
  {
    absl::MutexLock lock(&mu_);
    for (const v1::FlowRecord& r : held_) {
      if (Matches(request, r)) first.push_back(r);
    }
    next = sequence_;
  }
  size_t skip = request.tail() > 0 && first.size() > static_cast<size_t>(request.tail())
                    ? first.size() - static_cast<size_t>(request.tail())
                    : 0;
  for (size_t i = skip; i < first.size(); ++i) {
    if (!send(first[i])) return;
  }
  if (!request.follow()) return;
  while (!cancelled() && !stopping_.load()) {
    std::vector<v1::FlowRecord> fresh;
    {
      absl::MutexLock lock(&mu_);
      auto more = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return sequence_ != next; };
      mu_.AwaitWithTimeout(absl::Condition(&more), absl::Milliseconds(500));
      // Records older than the buffer are gone: a slow follower skips them.
      uint64_t oldest = sequence_ - held_.size();
      if (next < oldest) next = oldest;
      for (uint64_t s = next; s < sequence_; ++s) {
        const v1::FlowRecord& r = held_[static_cast<size_t>(s - oldest)];
        if (Matches(request, r)) fresh.push_back(r);
      }
      next = sequence_;
    }
    for (const v1::FlowRecord& r : fresh) {
      if (!send(r)) return;
    }
  }
}

v1::FlowLogStats FlowLog::Stats() {
  v1::FlowLogStats s;
  s.set_enabled(true);
  s.set_group(options_.group);
  s.set_received(received_.load());
  s.set_queue_dropped(queue_dropped_.load());
  s.set_socket_dropped(socket_dropped_.load());
  s.set_file(options_.file);
  if (options_.suppressed) {
    absl::StatusOr<uint64_t> n = options_.suppressed();
    int64_t nanos = absl::ToUnixNanos(absl::Now());
    s.mutable_suppressed_read_time()->set_seconds(nanos / 1000000000);
    s.mutable_suppressed_read_time()->set_nanos(static_cast<int32_t>(nanos % 1000000000));
    if (n.ok()) {
      s.set_suppressed(static_cast<int64_t>(*n));
    } else {
      s.set_suppressed_error(std::string(n.status().message()));
    }
  }
  absl::MutexLock lock(&mu_);
  s.set_records(records_);
  s.set_held(static_cast<int64_t>(held_.size()));
  s.set_file_error(file_error_);
  return s;
}

}  // namespace netpol::agent
