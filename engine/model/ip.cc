// IpAddr / Cidr parsing and printing, and CIDR-minus-excepts range arithmetic.
#include "engine/model/ip.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace netpol {
namespace {

// Longest valid textual IPv6 address: 8 groups of 4 hex digits and 7 colons (39), or the
// mixed form with an embedded dotted quad (45). Anything longer cannot parse.
constexpr size_t kMaxAddrText = 45;

// Parses strict dotted-quad IPv4: exactly four decimal octets 0-255, no signs, no leading
// zeros (Go's net.ParseIP, which Kubernetes uses, rejects them since they are ambiguous octal).
bool ParseV4(absl::string_view text, uint8_t out[4]) {
  int part = 0;
  size_t i = 0;
  while (part < 4) {
    size_t start = i;
    int value = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9' && i - start < 3) {
      value = value * 10 + (text[i] - '0');
      ++i;
    }
    size_t len = i - start;
    if (len == 0 || value > 255) return false;
    if (len > 1 && text[start] == '0') return false;
    out[part++] = static_cast<uint8_t>(value);
    if (part < 4) {
      if (i >= text.size() || text[i] != '.') return false;
      ++i;
    }
  }
  return i == text.size();
}

absl::Status InvalidAddr(absl::string_view text) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid IP address \"", absl::CHexEscape(text.substr(0, 64)), "\""));
}

}  // namespace

absl::StatusOr<IpAddr> IpAddr::Parse(absl::string_view text) {
  IpAddr a;
  if (text.empty()) return absl::InvalidArgumentError("empty IP address");
  if (text.size() > kMaxAddrText || text.find('\0') != absl::string_view::npos) {
    return InvalidAddr(text);
  }
  if (text.find(':') == absl::string_view::npos) {
    a.family = Family::kV4;
    if (!ParseV4(text, a.bytes.data())) {
      return InvalidAddr(text);
    }
    return a;
  }
  // IPv6, including "::" compression and an embedded dotted quad (RFC 4291 section 2.2).
  // inet_pton implements exactly that grammar; it needs a NUL-terminated copy.
  std::string copy(text);
  a.family = Family::kV6;
  if (inet_pton(AF_INET6, copy.c_str(), a.bytes.data()) != 1) {
    return InvalidAddr(text);
  }
  // inet_pton accepts an embedded IPv4 part with leading zeros on some libcs; be as strict as
  // the IPv4 parser.
  size_t last_colon = copy.rfind(':');
  absl::string_view tail = absl::string_view(copy).substr(last_colon + 1);
  if (tail.find('.') != absl::string_view::npos) {
    uint8_t v4[4];
    if (!ParseV4(tail, v4)) {
      return InvalidAddr(text);
    }
  }
  return a;
}

bool IpAddr::IsV4Mapped() const {
  if (family != Family::kV6) return false;
  for (int i = 0; i < 10; ++i) {
    if (bytes[i] != 0) return false;
  }
  return bytes[10] == 0xff && bytes[11] == 0xff;
}

absl::Status RefuseV4Mapped(const IpAddr& a) {
  if (!a.IsV4Mapped()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("\"", a.ToString(), "\": must not be an IPv4-mapped IPv6 address (write ",
                   IpAddr::V4(a.bytes[12], a.bytes[13], a.bytes[14], a.bytes[15]).ToString(),
                   ")"));
}

IpAddr IpAddr::V4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  IpAddr ip;
  ip.family = Family::kV4;
  ip.bytes[0] = a;
  ip.bytes[1] = b;
  ip.bytes[2] = c;
  ip.bytes[3] = d;
  return ip;
}

std::string IpAddr::ToString() const {
  if (family == Family::kV4) {
    return absl::StrFormat("%d.%d.%d.%d", bytes[0], bytes[1], bytes[2], bytes[3]);
  }
  uint16_t groups[8];
  for (int i = 0; i < 8; ++i) {
    groups[i] = static_cast<uint16_t>(bytes[2 * i] << 8 | bytes[2 * i + 1]);
  }
  // IPv4-mapped addresses print in mixed notation (RFC 5952 section 5).
  bool mapped = true;
  for (int i = 0; i < 5; ++i) mapped = mapped && groups[i] == 0;
  mapped = mapped && groups[5] == 0xffff;
  if (mapped) {
    return absl::StrFormat("::ffff:%d.%d.%d.%d", bytes[12], bytes[13], bytes[14], bytes[15]);
  }
  // RFC 5952 section 4.2: compress the longest run of two or more zero groups, the first one
  // when runs tie; a lone zero group is not compressed.
  int best_start = -1, best_len = 0;
  for (int i = 0; i < 8;) {
    if (groups[i] != 0) {
      ++i;
      continue;
    }
    int j = i;
    while (j < 8 && groups[j] == 0) ++j;
    if (j - i > best_len && j - i >= 2) {
      best_start = i;
      best_len = j - i;
    }
    i = j;
  }
  std::string out;
  for (int i = 0; i < 8; ++i) {
    if (i == best_start) {
      out += "::";
      i += best_len - 1;
      continue;
    }
    if (!out.empty() && out.back() != ':') out += ':';
    absl::StrAppend(&out, absl::Hex(groups[i]));  // lowercase, no leading zeros (4.1, 4.3)
  }
  return out;
}

absl::StatusOr<Cidr> Cidr::Parse(absl::string_view text) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid CIDR \"", absl::CHexEscape(text.substr(0, 64)), "\": ", why));
  };
  size_t slash = text.find('/');
  if (slash == absl::string_view::npos) return bad("missing prefix length");
  auto addr = IpAddr::Parse(text.substr(0, slash));
  if (!addr.ok()) return bad("invalid address");
  absl::string_view p = text.substr(slash + 1);
  if (p.empty() || p.size() > 3 || !std::all_of(p.begin(), p.end(), absl::ascii_isdigit) ||
      (p.size() > 1 && p[0] == '0')) {
    return bad("invalid prefix length");
  }
  int prefix = 0;
  for (char c : p) prefix = prefix * 10 + (c - '0');
  if (prefix > addr->bits()) return bad("prefix length out of range");
  Cidr c;
  c.prefix = prefix;
  c.addr = *addr;
  for (int bit = prefix; bit < addr->bits(); ++bit) {
    c.addr.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  }
  if (c.addr != *addr) {
    return bad(absl::StrCat("host bits set (did you mean \"", c.ToString(), "\"?)"));
  }
  return c;
}

Cidr Cidr::Host(const IpAddr& a) {
  Cidr c;
  c.addr = a;
  c.prefix = a.bits();
  return c;
}

bool Cidr::Contains(const IpAddr& a) const {
  if (a.family != addr.family) return false;
  int full = prefix / 8;
  if (std::memcmp(a.bytes.data(), addr.bytes.data(), full) != 0) return false;
  int rem = prefix % 8;
  if (rem == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff00u >> rem);
  return (a.bytes[full] & mask) == addr.bytes[full];
}

bool Cidr::Contains(const Cidr& c) const {
  return c.addr.family == addr.family && c.prefix >= prefix && Contains(c.addr);
}

IpAddr Cidr::Last() const {
  IpAddr last = addr;
  for (int bit = prefix; bit < addr.bits(); ++bit) {
    last.bytes[bit / 8] |= static_cast<uint8_t>(0x80u >> (bit % 8));
  }
  return last;
}

std::string Cidr::ToString() const { return absl::StrCat(addr.ToString(), "/", prefix); }

std::string IpRange::ToString() const {
  if (lo == hi) return lo.ToString();
  return absl::StrCat(lo.ToString(), "-", hi.ToString());
}

IpAddr NextAddr(const IpAddr& a) {
  IpAddr r = a;
  for (int i = a.size() - 1; i >= 0; --i) {
    if (++r.bytes[i] != 0) break;
  }
  return r;
}

IpAddr PrevAddr(const IpAddr& a) {
  IpAddr r = a;
  for (int i = a.size() - 1; i >= 0; --i) {
    if (r.bytes[i]-- != 0) break;
  }
  return r;
}

std::vector<IpRange> CidrMinus(const Cidr& cidr, const std::vector<Cidr>& except) {
  // Two CIDRs are either nested or disjoint, so each relevant except lies inside `cidr`
  // (or swallows it whole).
  std::vector<Cidr> holes;
  for (const Cidr& e : except) {
    if (e.addr.family != cidr.addr.family) continue;
    if (e.Contains(cidr)) return {};
    if (cidr.Contains(e)) holes.push_back(e);
  }
  std::sort(holes.begin(), holes.end());
  std::vector<IpRange> out;
  const IpAddr last = cidr.Last();
  IpAddr cur = cidr.First();
  for (const Cidr& h : holes) {
    IpAddr lo = h.First(), hi = h.Last();
    if (hi < cur) continue;  // nested in an earlier hole
    if (cur < lo) out.push_back({cur, PrevAddr(lo)});
    if (hi == last) return out;  // the rest of the CIDR is excepted
    if (cur <= hi) cur = NextAddr(hi);
  }
  out.push_back({cur, last});
  return out;
}

}  // namespace netpol
