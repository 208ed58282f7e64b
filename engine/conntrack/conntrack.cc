#include "engine/conntrack/conntrack.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include <cstring>
#include <functional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"

namespace netpol::conntrack {
namespace {

constexpr uint8_t kIcmp = 1, kTcp = 6, kUdp = 17, kDccp = 33, kIcmpv6 = 58, kSctp = 132,
                  kUdplite = 136;

bool HasPorts(uint8_t proto) {
  return proto == kTcp || proto == kUdp || proto == kSctp || proto == kUdplite || proto == kDccp;
}

nfct_handle* H(void* p) { return static_cast<nfct_handle*>(p); }

absl::Status ErrnoStatus(const std::string& what, int err) {
  std::string msg = absl::StrCat(what, ": ", strerror(err));
  if (err == EPERM || err == EACCES) return absl::PermissionDeniedError(msg);
  if (err == ENOENT) return absl::NotFoundError(msg);
  return absl::UnavailableError(msg);
}

IpAddr ReadAddr(const nf_conntrack* ct, Family family, nf_conntrack_attr v4, nf_conntrack_attr v6) {
  IpAddr a;
  a.family = family;
  if (family == Family::kV4) {
    if (nfct_attr_is_set(ct, v4) > 0) {
      const uint32_t raw = nfct_get_attr_u32(ct, v4);  // network order
      std::memcpy(a.bytes.data(), &raw, 4);
    }
  } else if (nfct_attr_is_set(ct, v6) > 0) {
    std::memcpy(a.bytes.data(), nfct_get_attr(ct, v6), 16);
  }
  return a;
}

uint16_t ReadPort(const nf_conntrack* ct, nf_conntrack_attr attr) {
  return nfct_attr_is_set(ct, attr) > 0 ? ntohs(nfct_get_attr_u16(ct, attr)) : 0;
}

uint8_t ReadU8(const nf_conntrack* ct, nf_conntrack_attr attr) {
  return nfct_attr_is_set(ct, attr) > 0 ? nfct_get_attr_u8(ct, attr) : 0;
}

struct DumpContext {
  Family family;
  std::vector<Entry>* out;
};

int OnEntry(enum nf_conntrack_msg_type, struct nf_conntrack* ct, void* data) {
  auto* ctx = static_cast<DumpContext*>(data);
  const uint8_t l3 = ReadU8(ct, ATTR_ORIG_L3PROTO);
  const Family family = l3 == AF_INET6 ? Family::kV6 : Family::kV4;
  if ((l3 != AF_INET && l3 != AF_INET6) || family != ctx->family) return NFCT_CB_CONTINUE;
  Entry e;
  e.orig_src = ReadAddr(ct, family, ATTR_ORIG_IPV4_SRC, ATTR_ORIG_IPV6_SRC);
  e.orig_dst = ReadAddr(ct, family, ATTR_ORIG_IPV4_DST, ATTR_ORIG_IPV6_DST);
  const uint8_t proto = ReadU8(ct, ATTR_ORIG_L4PROTO);
  Flow& f = e.flow;
  f.family = family;
  f.l4proto = proto;
  f.src = e.orig_src;
  // The destination the policy saw: the reply's source (after DNAT); without a reply tuple, the
  // original destination.
  const bool has_reply = family == Family::kV4 ? nfct_attr_is_set(ct, ATTR_REPL_IPV4_SRC) > 0
                                               : nfct_attr_is_set(ct, ATTR_REPL_IPV6_SRC) > 0;
  f.dst = has_reply ? ReadAddr(ct, family, ATTR_REPL_IPV4_SRC, ATTR_REPL_IPV6_SRC) : e.orig_dst;
  // The source the destination sees: the reply's destination (after SNAT, e.g. a masqueraded
  // NodePort connection), when it differs from the original source.
  if (has_reply) {
    IpAddr seen = ReadAddr(ct, family, ATTR_REPL_IPV4_DST, ATTR_REPL_IPV6_DST);
    if (seen != f.src) f.nat_src = seen;
  }
  if (HasPorts(proto)) {
    f.has_ports = true;
    e.orig_sport = ReadPort(ct, ATTR_ORIG_PORT_SRC);
    e.orig_dport = ReadPort(ct, ATTR_ORIG_PORT_DST);
    f.sport = e.orig_sport;
    f.dport = nfct_attr_is_set(ct, ATTR_REPL_PORT_SRC) > 0 ? ReadPort(ct, ATTR_REPL_PORT_SRC)
                                                            : e.orig_dport;
  } else if (proto == kIcmp || proto == kIcmpv6) {
    e.icmp_type = ReadU8(ct, ATTR_ICMP_TYPE);
    e.icmp_code = ReadU8(ct, ATTR_ICMP_CODE);
    e.icmp_id = ReadPort(ct, ATTR_ICMP_ID);
    f.icmp_type = e.icmp_type;
  }
  if (nfct_attr_is_set(ct, ATTR_ZONE) > 0) e.zone = nfct_get_attr_u16(ct, ATTR_ZONE);
  ctx->out->push_back(std::move(e));
  return NFCT_CB_CONTINUE;
}

}  // namespace

absl::StatusOr<std::unique_ptr<KernelTable>> KernelTable::Open() {
  nfct_handle* h = nfct_open(CONNTRACK, 0);
  if (h == nullptr) return ErrnoStatus("conntrack: opening a ctnetlink socket", errno);
  return std::unique_ptr<KernelTable>(new KernelTable(h));
}

KernelTable::~KernelTable() { nfct_close(H(handle_)); }

absl::StatusOr<std::vector<Entry>> KernelTable::Dump(Family family) {
  std::vector<Entry> out;
  DumpContext ctx{family, &out};
  if (nfct_callback_register(H(handle_), NFCT_T_ALL, OnEntry, &ctx) < 0) {
    return ErrnoStatus("conntrack: registering the dump callback", errno);
  }
  uint32_t af = family == Family::kV4 ? AF_INET : AF_INET6;
  const int r = nfct_query(H(handle_), NFCT_Q_DUMP, &af);
  const int err = errno;
  nfct_callback_unregister(H(handle_));
  if (r < 0) {
    return ErrnoStatus(absl::StrCat("conntrack: listing ", family == Family::kV4 ? "IPv4" : "IPv6",
                                    " entries"),
                       err);
  }
  return out;
}

absl::Status KernelTable::Delete(const Entry& e) {
  nf_conntrack* ct = nfct_new();
  if (ct == nullptr) return absl::ResourceExhaustedError("conntrack: out of memory");
  const Flow& f = e.flow;
  if (f.family == Family::kV4) {
    nfct_set_attr_u8(ct, ATTR_ORIG_L3PROTO, AF_INET);
    uint32_t src, dst;
    std::memcpy(&src, e.orig_src.bytes.data(), 4);
    std::memcpy(&dst, e.orig_dst.bytes.data(), 4);
    nfct_set_attr_u32(ct, ATTR_ORIG_IPV4_SRC, src);
    nfct_set_attr_u32(ct, ATTR_ORIG_IPV4_DST, dst);
  } else {
    nfct_set_attr_u8(ct, ATTR_ORIG_L3PROTO, AF_INET6);
    nfct_set_attr(ct, ATTR_ORIG_IPV6_SRC, e.orig_src.bytes.data());
    nfct_set_attr(ct, ATTR_ORIG_IPV6_DST, e.orig_dst.bytes.data());
  }
  nfct_set_attr_u8(ct, ATTR_ORIG_L4PROTO, f.l4proto);
  if (HasPorts(f.l4proto)) {
    nfct_set_attr_u16(ct, ATTR_ORIG_PORT_SRC, htons(e.orig_sport));
    nfct_set_attr_u16(ct, ATTR_ORIG_PORT_DST, htons(e.orig_dport));
  } else if (f.l4proto == kIcmp || f.l4proto == kIcmpv6) {
    nfct_set_attr_u8(ct, ATTR_ICMP_TYPE, e.icmp_type);
    nfct_set_attr_u8(ct, ATTR_ICMP_CODE, e.icmp_code);
    nfct_set_attr_u16(ct, ATTR_ICMP_ID, htons(e.icmp_id));
  }
  if (e.zone != 0) nfct_set_attr_u16(ct, ATTR_ZONE, e.zone);
  const int r = nfct_query(H(handle_), NFCT_Q_DESTROY, ct);
  const int err = errno;
  nfct_destroy(ct);
  if (r < 0) return ErrnoStatus(absl::StrCat("conntrack: deleting ", f.ToString()), err);
  return absl::OkStatus();
}

namespace {

// Lists each of `families` once and deletes the entries `candidate` selects and options.keep
// does not keep.
absl::StatusOr<RevokeReport> RevokeMatching(Table* table, const std::set<Family>& families,
                                            const std::function<bool(const Flow&)>& candidate,
                                            const RevokeOptions& options) {
  RevokeReport report;
  const std::set<IpAddr> host(options.host_addresses.begin(), options.host_addresses.end());
  for (Family family : families) {
    ++report.dumps;
    absl::StatusOr<std::vector<Entry>> entries = table->Dump(family);
    if (!entries.ok()) return entries.status();
    report.scanned += entries->size();
    for (const Entry& e : *entries) {
      if (host.count(e.flow.src) > 0) continue;
      if (!candidate(e.flow)) continue;
      ++report.matched;
      if (options.keep && options.keep(e.flow)) {
        ++report.kept;
        continue;
      }
      absl::Status s = table->Delete(e);
      if (s.ok()) {
        report.deleted.push_back(e.flow);
      } else if (absl::IsNotFound(s)) {
        ++report.vanished;
      } else {
        report.errors.push_back(absl::StrCat(e.flow.ToString(), ": ", s.message()));
      }
    }
  }
  return report;
}

}  // namespace

absl::StatusOr<RevokeReport> Revoke(Table* table, const std::vector<FlowFilter>& filters,
                                    const RevokeOptions& options) {
  std::set<Family> families;
  for (const FlowFilter& f : filters) families.insert(f.family);
  return RevokeMatching(
      table, families,
      [&filters](const Flow& flow) {
        for (const FlowFilter& f : filters) {
          if (f.Matches(flow)) return true;
        }
        return false;
      },
      options);
}

absl::StatusOr<RevokeReport> RevokePlan(Table* table, const RevocationPlan& plan,
                                        const RevokeOptions& options) {
  return RevokeMatching(table, plan.families(),
                        [&plan](const Flow& flow) { return plan.Matches(flow); }, options);
}

absl::StatusOr<std::vector<IpAddr>> HostAddresses() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return ErrnoStatus("getifaddrs", errno);
  std::vector<IpAddr> out;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    IpAddr a;
    if (i->ifa_addr->sa_family == AF_INET) {
      a.family = Family::kV4;
      const auto* sin = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
      std::memcpy(a.bytes.data(), &sin->sin_addr, 4);
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      a.family = Family::kV6;
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
      std::memcpy(a.bytes.data(), &sin6->sin6_addr, 16);
    } else {
      continue;
    }
    out.push_back(a);
  }
  freeifaddrs(list);
  return out;
}

absl::Status Revoke(const std::vector<FlowFilter>& flows) {
  if (flows.empty()) return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<KernelTable>> table = KernelTable::Open();
  if (!table.ok()) return table.status();
  RevokeOptions options;
  absl::StatusOr<std::vector<IpAddr>> host = HostAddresses();
  if (!host.ok()) return host.status();
  options.host_addresses = *std::move(host);
  absl::StatusOr<RevokeReport> report = Revoke(table->get(), flows, options);
  if (!report.ok()) return report.status();
  if (!report->errors.empty()) {
    return absl::UnavailableError(absl::StrCat("conntrack: ", report->errors.size(),
                                               " entries not deleted; first: ",
                                               report->errors.front()));
  }
  return absl::OkStatus();
}

}  // namespace netpol::conntrack
