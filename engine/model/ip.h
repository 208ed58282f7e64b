// IPv4/IPv6 addresses, CIDRs and address ranges: the value types every layer shares.
//
// An IpAddr is a family plus 16 bytes in network order (IPv4 uses the first 4). Ranges are
// inclusive [lo, hi] of one family; CidrMinus turns "cidr except [...]" into the disjoint,
// sorted ranges the compiler emits as interval elements.
#ifndef NETPOL_ENGINE_MODEL_IP_H_
#define NETPOL_ENGINE_MODEL_IP_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace netpol {

enum class Family { kV4, kV6 };

struct IpAddr {
  Family family = Family::kV4;
  std::array<uint8_t, 16> bytes{};  // network order; IPv4 uses bytes[0..3], the rest zero

  // Parses dotted-quad IPv4 or RFC 4291 IPv6 text. No zone ids, no prefix.
  static absl::StatusOr<IpAddr> Parse(absl::string_view text);
  static IpAddr V4(uint8_t a, uint8_t b, uint8_t c, uint8_t d);

  int bits() const { return family == Family::kV4 ? 32 : 128; }
  int size() const { return family == Family::kV4 ? 4 : 16; }
  std::string ToString() const;  // canonical text (RFC 5952 for IPv6)
  // An IPv4-mapped IPv6 address, ::ffff:a.b.c.d (RFC 4291 section 2.5.5.2).
  bool IsV4Mapped() const;

  friend bool operator==(const IpAddr& a, const IpAddr& b) {
    return a.family == b.family && a.bytes == b.bytes;
  }
  friend bool operator!=(const IpAddr& a, const IpAddr& b) { return !(a == b); }
  // Orders IPv4 before IPv6, then numerically.
  friend bool operator<(const IpAddr& a, const IpAddr& b) {
    if (a.family != b.family) return a.family < b.family;
    return a.bytes < b.bytes;
  }
  friend bool operator<=(const IpAddr& a, const IpAddr& b) { return !(b < a); }
};

// Kubernetes refuses IPv4-mapped IPv6 addresses in pod IPs and in ipBlock CIDRs ("must not be an
// IPv4-mapped IPv6 address"): the kernel sees that traffic as IPv4, so taken as IPv6 the address
// would never match it. Every input path (manifests, CNI attachments, Check requests) calls this:
// InvalidArgument "\"::ffff:10.0.0.1\": must not be an IPv4-mapped IPv6 address (write
// 10.0.0.1)", OK for any other address.
absl::Status RefuseV4Mapped(const IpAddr& a);

struct Cidr {
  IpAddr addr;  // always masked to the prefix
  int prefix = 0;

  // Parses "a.b.c.d/n" or "x::y/n". Host bits set is an error (as the Kubernetes API server
  // reports "must be a valid CIDR"); a missing "/n" is an error.
  static absl::StatusOr<Cidr> Parse(absl::string_view text);
  // A host route: /32 or /128.
  static Cidr Host(const IpAddr& a);

  bool Contains(const IpAddr& a) const;
  bool Contains(const Cidr& c) const;  // c lies entirely inside *this
  IpAddr First() const { return addr; }
  IpAddr Last() const;
  std::string ToString() const;

  friend bool operator==(const Cidr& a, const Cidr& b) {
    return a.addr == b.addr && a.prefix == b.prefix;
  }
  friend bool operator<(const Cidr& a, const Cidr& b) {
    if (a.addr != b.addr) return a.addr < b.addr;
    return a.prefix < b.prefix;
  }
};

// An inclusive range of addresses of one family.
struct IpRange {
  IpAddr lo, hi;
  friend bool operator==(const IpRange& a, const IpRange& b) { return a.lo == b.lo && a.hi == b.hi; }
  friend bool operator<(const IpRange& a, const IpRange& b) {
    if (a.lo != b.lo) return a.lo < b.lo;
    return a.hi < b.hi;
  }
  std::string ToString() const;  // "lo" when lo == hi, "lo-hi" otherwise
};

// Returns `cidr` minus every except (excepts of another family are ignored), as sorted disjoint
// ranges. Empty when the excepts cover the whole CIDR.
std::vector<IpRange> CidrMinus(const Cidr& cidr, const std::vector<Cidr>& except);

// Returns a+1 / a-1 within the family; callers must not step past the ends.
IpAddr NextAddr(const IpAddr& a);
IpAddr PrevAddr(const IpAddr& a);

}  // namespace netpol

#endif  // NETPOL_ENGINE_MODEL_IP_H_
