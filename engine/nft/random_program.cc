// RandomProgram: valid by construction.
//  - Jumps and gotos go from chain r<i> to r<j> with j > i (base chains to any regular chain),
//    verdict maps are looked up from base chains and r0..r2 and name only r3..r5: no loops.
//  - Element slot k of a set puts k into its first field, so slots never collide or overlap.
#include "engine/nft/random_program.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/nft/test_util.h"

namespace netpol::nft {
namespace {

constexpr int kSetSlots = 6;
constexpr int kChainSlots = 6;
constexpr int kBaseSlots = 2;
constexpr int kSharedPercent = 70;

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// A small deterministic generator (std distributions differ between standard libraries).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() { return SplitMix(state_++ * 0x2545F4914F6CDD1DULL); }
  uint32_t Below(uint32_t n) { return n == 0 ? 0 : static_cast<uint32_t>(Next() % n); }
  bool Chance(int percent) { return Below(100) < static_cast<uint32_t>(percent); }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[Below(v.size())];
  }

 private:
  uint64_t state_;
};

uint64_t Hash(uint64_t seed, const std::string& id, uint64_t salt) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (char c : id) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  return SplitMix(h ^ SplitMix(seed) ^ SplitMix(salt * 0x100000001b3ULL + 7));
}

// The random stream of object `id` in `variant`: shared by all variants most of the time.
Rng Stream(uint64_t seed, int variant, const std::string& id) {
  Rng decide(Hash(seed, id, 1000 + variant));
  bool shared = decide.Below(100) < kSharedPercent;
  return Rng(Hash(seed, id, shared ? 0 : 1 + variant));
}

IpAddr V4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) { return IpAddr::V4(a, b, c, d); }

IpAddr V6(uint8_t k, uint16_t mid, uint16_t low) {
  IpAddr a;
  a.family = Family::kV6;
  a.bytes[0] = 0xfd;
  a.bytes[1] = 0x00;
  a.bytes[2] = k;
  a.bytes[5] = static_cast<uint8_t>(mid >> 8);
  a.bytes[6] = static_cast<uint8_t>(mid);
  a.bytes[14] = static_cast<uint8_t>(low >> 8);
  a.bytes[15] = static_cast<uint8_t>(low);
  return a;
}

// Sets the host bits of `a` below `prefix` to one.
IpAddr LastOf(IpAddr a, int prefix) {
  for (int i = prefix; i < a.bits(); ++i) a.bytes[i / 8] |= static_cast<uint8_t>(0x80 >> (i % 8));
  return a;
}

// An address field inside block `k` (k >= 0) or anywhere in 10/8 and fd00::/16 (k < 0).
FieldValue AddrField(Rng& r, FieldType t, bool interval, int k) {
  const bool v4 = t == FieldType::kIpv4Addr;
  uint8_t block = k >= 0 ? static_cast<uint8_t>(k) : static_cast<uint8_t>(100 + r.Below(100));
  auto host = [&]() {
    return v4 ? V4(10, block, static_cast<uint8_t>(r.Below(256)),
                   static_cast<uint8_t>(r.Below(256)))
              : V6(block, static_cast<uint16_t>(r.Below(65536)),
                   static_cast<uint16_t>(r.Below(65536)));
  };
  if (!interval) return FieldValue::Addr(host());
  switch (r.Below(3)) {
    case 0:
      return FieldValue::Addr(host());
    case 1: {  // a CIDR block inside the slot's block
      int prefix = v4 ? 17 + static_cast<int>(r.Below(15)) : 40 + static_cast<int>(r.Below(80));
      IpAddr lo = host();
      for (int i = prefix; i < lo.bits(); ++i)
        lo.bytes[i / 8] &= static_cast<uint8_t>(~(0x80 >> (i % 8)));
      return FieldValue::AddrRange(lo, LastOf(lo, prefix));
    }
    default: {  // an arbitrary range inside the slot's block
      IpAddr a = host(), b = host();
      if (b < a) std::swap(a, b);
      return FieldValue::AddrRange(a, b);
    }
  }
}

FieldValue NumField(Rng& r, FieldType t, bool interval) {
  if (t == FieldType::kInetProto) {
    static const std::vector<uint32_t> kProtos = {6, 17, 132};
    if (interval && r.Chance(15)) return FieldValue::NumRange(0, 255);
    return FieldValue::Num(r.Pick(kProtos));
  }
  if (interval && r.Chance(40)) {
    uint32_t lo = r.Below(65536), hi = r.Below(65536);
    if (hi < lo) std::swap(lo, hi);
    return FieldValue::NumRange(lo, hi);
  }
  return FieldValue::Num(1 + r.Below(65535));
}

FieldValue SlotField(Rng& r, FieldType t, bool interval, int k) {
  switch (t) {
    case FieldType::kIpv4Addr:
    case FieldType::kIpv6Addr:
      return AddrField(r, t, interval, k);
    case FieldType::kInetProto: {
      static const std::vector<uint32_t> kProtos = {6, 17, 132, 1, 58, 0, 47, 50};
      return FieldValue::Num(kProtos[k % kProtos.size()]);
    }
    case FieldType::kInetService:
      return FieldValue::Num(1000 * static_cast<uint32_t>(k) + r.Below(1000));
  }
  return {};
}

std::string Comment(Rng& r, const std::string& what) {
  static const std::vector<std::string> kWords = {"ns/a", "pod x", "policy deny-all", "rule 1",
                                                  "ipBlock 10.0.0.0/8"};
  return absl::StrCat(what, ": ", r.Pick(kWords));
}

bool FieldsOverlap(const FieldValue& a, const FieldValue& b, FieldType t) {
  if (t == FieldType::kIpv4Addr || t == FieldType::kIpv6Addr) {
    return !(a.addr_hi < b.addr_lo || b.addr_hi < a.addr_lo);
  }
  return !(a.hi < b.lo || b.hi < a.lo);
}

bool Conflicts(const Set& set, const std::vector<Element>& have, const Element& e) {
  for (const Element& o : have) {
    bool all = true;
    for (size_t i = 0; i < set.key.size() && all; ++i) {
      all = FieldsOverlap(o.key[i], e.key[i], set.key[i]);
    }
    if (all) return true;
  }
  return false;
}

std::vector<Selector> SelectorsFor(Rng& r, const std::vector<FieldType>& key) {
  std::vector<Selector> out;
  for (FieldType t : key) {
    switch (t) {
      case FieldType::kIpv4Addr:
        out.push_back(r.Chance(50) ? Selector::kIpSaddr : Selector::kIpDaddr);
        break;
      case FieldType::kIpv6Addr:
        out.push_back(r.Chance(50) ? Selector::kIp6Saddr : Selector::kIp6Daddr);
        break;
      case FieldType::kInetProto:
        out.push_back(Selector::kL4Proto);
        break;
      case FieldType::kInetService:
        out.push_back(Selector::kThDport);
        break;
    }
  }
  return out;
}

}  // namespace

Program ExampleProgram() {
  using namespace ::netpol::nft::testing;  // NOLINT: test shorthands
  Program p;
  p.table = "netpol";
  p.comment = "managed by netpol";
  p.sets["in-peers"] = testing::MakeSet("in-peers", kV4ProtoPort, true, false, "ipBlock peers");
  p.sets["pods4"] = testing::MakeSet("pods4", {FieldType::kIpv4Addr});
  p.sets["pods6"] = testing::MakeSet("pods6", {FieldType::kIpv6Addr});
  p.sets["ports"] = testing::MakeSet("ports", {FieldType::kInetService});
  p.sets["exact"] = testing::MakeSet("exact", kV4ProtoPort);
  p.sets["dispatch4"] =
      testing::MakeSet("dispatch4", {FieldType::kIpv4Addr}, false, true, "pod ip to chain");
  p.sets["dispatch6"] = testing::MakeSet(
      "dispatch6", {FieldType::kIpv6Addr, FieldType::kInetProto, FieldType::kInetService}, true,
      true);
  Chain fwd =
      testing::MakeBase("forward", Hook::kForward, 0, false, "bridged and routed pod traffic");
  fwd.rules.push_back(testing::MakeRule({EstablishedRelated()}, Verdict::Accept(), "replies"));
  CtStateMatch invalid;
  invalid.invalid = true;
  fwd.rules.push_back(testing::MakeRule({invalid}, Verdict::Drop(), "", true));
  fwd.rules.push_back(
      testing::MakeRule({NfProtoMatch{Family::kV4}, VmapLookup({Selector::kIpDaddr}, "dispatch4")},
                        std::nullopt, "dispatch v4"));
  fwd.rules.push_back(testing::MakeRule(
      {VmapLookup({Selector::kIp6Daddr, Selector::kL4Proto, Selector::kThDport}, "dispatch6")},
      std::nullopt));
  p.chains["forward"] = fwd;
  Chain input = testing::MakeBase("input", Hook::kInput, -10, true);
  input.rules.push_back(
      testing::MakeRule({IfnameMatch{true, "cni0"}, FibLocalMatch{true}}, Verdict::Accept()));
  input.rules.push_back(
      testing::MakeRule({Icmpv6TypeMatch{133, 136}}, Verdict::Accept(), "neighbour discovery"));
  input.rules.push_back(testing::MakeRule({Icmpv6TypeMatch{128, 128}}, Verdict::Accept()));
  input.rules.push_back(
      testing::MakeRule({NfProtoMatch{Family::kV6}, Icmpv6TypeMatch{135, 135}}, Verdict::Accept()));
  input.rules.push_back(
      testing::MakeRule({NfProtoMatch{Family::kV4}, FibLocalMatch{false}}, Verdict::Return()));
  p.chains["input"] = input;
  Chain pod = testing::MakeChain("pod-ns-a", "pod ns/a");
  pod.rules.push_back(testing::MakeRule({Lookup(kSaddrProtoDport, "in-peers")}, Verdict::Return(),
                                        "policy ns/allow rule 0"));
  CtStateMatch est;
  est.established = true;
  pod.rules.push_back(testing::MakeRule(
      {NfProtoMatch{Family::kV4}, est, Lookup({Selector::kIpSaddr}, "pods4", true)},
      Verdict::Drop(), "", true));
  pod.rules.push_back(
      testing::MakeRule({Lookup({Selector::kIp6Saddr}, "pods6")}, Verdict::Goto("leaf")));
  pod.rules.push_back(testing::MakeRule({Lookup({Selector::kL4Proto, Selector::kThDport}, "pp")},
                                        Verdict::Jump("leaf")));
  pod.rules.push_back(testing::MakeRule(
      {IfnameMatch{false, "veth*"}, Lookup({Selector::kThDport}, "ports")}, Verdict::Accept()));
  pod.rules.push_back(testing::MakeRule({}, std::nullopt, "count", true));
  p.chains["pod-ns-a"] = pod;
  p.chains["leaf"] = testing::MakeChain("leaf");
  p.sets["pp"] = testing::MakeSet("pp", {FieldType::kInetProto, FieldType::kInetService}, true);
  p.elements["in-peers"] = {
      E({AR("10.0.0.0", "10.255.255.255"), N(6), NR(80, 90)}, "x"),
      E({A("172.16.0.1"), N(17), N(53)}),
      E({AR("192.168.1.0", "192.168.1.5"), N(132), NR(0, 65535)}),
      E({AR("0.0.0.0", "9.255.255.255"), NR(0, 255), NR(1, 65535)}),
  };
  p.elements["pods4"] = {E({A("10.0.0.3")}), E({A("10.0.0.1")}, "ns/a"), E({A("9.9.9.9")}),
                         E({A("10.0.0.2")}), E({A("255.255.255.255")})};
  p.elements["pods6"] = {E({A("fd00::1")}), E({A("::ffff:1.2.3.4")}), E({A("2001:db8:0:1::1")})};
  p.elements["ports"] = {E({N(80)}),    E({N(443)}), E({N(8080)}), E({N(1)}),
                         E({N(65535)}), E({N(22)}),  E({N(53)})};
  p.elements["exact"] = {E({A("10.0.0.1"), N(6), N(80)}),
                         E({A("10.0.0.2"), N(17), N(53)}, "pod a/b"),
                         E({A("10.0.0.1"), N(132), N(80)}), E({A("10.0.1.0"), N(6), N(256)})};
  p.elements["dispatch4"] = {EV({A("10.0.0.1")}, Verdict::Jump("pod-ns-a")),
                             EV({A("10.0.0.2")}, Verdict::Goto("leaf"), "x"),
                             EV({A("10.0.0.3")}, Verdict::Drop())};
  p.elements["dispatch6"] = {
      EV({AR("fd00::", "fd00::ffff:ffff:ffff:ffff"), N(6), NR(1, 1024)}, Verdict::Accept()),
      EV({A("fd01::5"), N(17), N(53)}, Verdict::Jump("leaf"), "dns")};
  p.elements["pp"] = {E({N(6), NR(1, 1023)}), E({N(17), N(53)})};
  Canonicalize(&p);
  return p;
}

Program RandomProgram(uint64_t seed, int variant, const RandomProgramOptions& options) {
  Program p;
  p.table = options.table;
  p.comment = "random program";

  // Sets.
  static const std::vector<std::vector<FieldType>> kShapes = {
      {FieldType::kIpv4Addr},
      {FieldType::kIpv6Addr},
      {FieldType::kIpv4Addr, FieldType::kInetProto, FieldType::kInetService},
      {FieldType::kIpv6Addr, FieldType::kInetProto, FieldType::kInetService},
      {FieldType::kInetProto, FieldType::kInetService},
      {FieldType::kInetService},
      {FieldType::kIpv4Addr, FieldType::kInetService},
  };
  for (int i = 0; i < kSetSlots; ++i) {
    std::string name = absl::StrCat("s", i);
    Rng r = Stream(seed, variant, "set/" + name);
    if (!r.Chance(80)) continue;
    Set s;
    s.name = name;
    s.key = r.Pick(kShapes);
    s.interval = s.key.size() >= 2 && r.Chance(50);
    s.vmap = r.Chance(30);
    if (r.Chance(30)) s.comment = Comment(r, "set");
    p.sets[name] = s;
  }

  // Chains.
  static const std::vector<int> kPriorities = {-300, -150, -100, -10, 0, 5, 10, 50, 100, 200};
  static const std::vector<Hook> kHooks = {Hook::kPrerouting, Hook::kInput, Hook::kForward,
                                           Hook::kOutput, Hook::kPostrouting};
  for (int i = 0; i < kChainSlots; ++i) {
    std::string name = absl::StrCat("r", i);
    Rng r = Stream(seed, variant, "chain/" + name);
    if (!r.Chance(85)) continue;
    Chain c;
    c.name = name;
    if (r.Chance(20)) c.comment = Comment(r, "chain");
    p.chains[name] = c;
  }
  for (int i = 0; i < kBaseSlots; ++i) {
    std::string name = absl::StrCat("b", i);
    Rng r = Stream(seed, variant, "chain/" + name);
    if (!r.Chance(80)) continue;
    Chain c;
    c.name = name;
    BaseChainSpec spec;
    spec.hook = r.Pick(kHooks);
    spec.priority = r.Pick(kPriorities);
    spec.policy_drop = r.Chance(20);
    c.base = spec;
    if (r.Chance(20)) c.comment = Comment(r, "base chain");
    p.chains[name] = c;
  }
  auto regular_index = [](const std::string& name) {
    return name[0] == 'r' ? name[1] - '0' : -1;  // base chains rank before every regular one
  };
  std::vector<std::string> vmap_targets;
  for (int i = kChainSlots / 2; i < kChainSlots; ++i) {
    std::string name = absl::StrCat("r", i);
    if (p.chains.count(name)) vmap_targets.push_back(name);
  }

  // Elements.
  for (const auto& [name, set] : p.sets) {
    std::vector<Element> elems;
    for (int k = 0; k < options.max_elements_per_set; ++k) {
      Rng r = Stream(seed, variant, absl::StrCat("elem/", name, "/", k));
      if (!r.Chance(60)) continue;
      Element e;
      for (size_t f = 0; f < set.key.size(); ++f) {
        e.key.push_back(
            f == 0 ? SlotField(r, set.key[f], set.interval, k)
                   : (set.key[f] == FieldType::kIpv4Addr || set.key[f] == FieldType::kIpv6Addr
                          ? AddrField(r, set.key[f], set.interval, -1)
                          : NumField(r, set.key[f], set.interval)));
      }
      if (set.vmap) {
        switch (r.Below(4)) {
          case 0:
            e.verdict = Verdict::Accept();
            break;
          case 1:
            e.verdict = Verdict::Drop();
            break;
          default:
            if (vmap_targets.empty()) {
              e.verdict = Verdict::Drop();
            } else if (r.Chance(50)) {
              e.verdict = Verdict::Jump(r.Pick(vmap_targets));
            } else {
              e.verdict = Verdict::Goto(r.Pick(vmap_targets));
            }
        }
      }
      if (r.Chance(30)) e.comment = Comment(r, "element");
      if (Conflicts(set, elems, e)) continue;
      elems.push_back(std::move(e));
    }
    if (!elems.empty()) p.elements[name] = std::move(elems);
  }

  // Rules.
  std::vector<std::string> plain_sets, maps;
  for (const auto& [name, set] : p.sets) (set.vmap ? maps : plain_sets).push_back(name);
  static const std::vector<std::string> kIfnames = {"cni0", "eth0", "veth*", "lo"};
  for (auto& [name, chain] : p.chains) {
    Rng r = Stream(seed, variant, "rules/" + name);
    const int index = regular_index(name);
    std::vector<std::string> targets;
    for (const auto& [other, c] : p.chains) {
      if (!c.base.has_value() && regular_index(other) > index) targets.push_back(other);
    }
    const bool may_vmap = index < kChainSlots / 2;
    const int rules = static_cast<int>(r.Below(5));
    for (int k = 0; k < rules; ++k) {
      Rule rule;
      // One family per rule: nft refuses ip and ip6 (or a contradicting nfproto) in one rule.
      const Family family = r.Chance(50) ? Family::kV4 : Family::kV6;
      auto fits = [&](const std::string& set) {
        for (FieldType t : p.sets.at(set).key) {
          if (t == FieldType::kIpv4Addr && family != Family::kV4) return false;
          if (t == FieldType::kIpv6Addr && family != Family::kV6) return false;
        }
        return true;
      };
      const int matches = static_cast<int>(r.Below(4));
      for (int m = 0; m < matches; ++m) {
        switch (r.Below(6)) {
          case 0: {
            CtStateMatch ct;
            ct.established = r.Chance(50);
            ct.related = r.Chance(40);
            ct.invalid = r.Chance(20);
            ct.new_ = r.Chance(20);
            ct.untracked = r.Chance(10);
            if (!(ct.established || ct.related || ct.invalid || ct.new_ || ct.untracked)) {
              ct.established = true;
            }
            rule.matches.push_back(ct);
            break;
          }
          case 1:
            rule.matches.push_back(NfProtoMatch{family});
            break;
          case 2: {
            Icmpv6TypeMatch ic;
            ic.lo = static_cast<uint8_t>(r.Chance(50) ? 128 + r.Below(16) : r.Below(256));
            ic.hi = r.Chance(50) ? ic.lo : static_cast<uint8_t>(ic.lo + r.Below(256 - ic.lo));
            rule.matches.push_back(ic);
            break;
          }
          case 3: {
            std::vector<std::string> usable;
            for (const std::string& set : plain_sets) {
              if (fits(set)) usable.push_back(set);
            }
            if (usable.empty()) break;
            const std::string& set = r.Pick(usable);
            LookupMatch lk;
            lk.key = SelectorsFor(r, p.sets.at(set).key);
            lk.set = set;
            lk.negate = r.Chance(30);
            rule.matches.push_back(lk);
            break;
          }
          case 4:
            rule.matches.push_back(IfnameMatch{r.Chance(50), r.Pick(kIfnames)});
            break;
          default:
            rule.matches.push_back(FibLocalMatch{r.Chance(50)});
            break;
        }
      }
      std::vector<std::string> usable_maps;
      for (const std::string& m : maps) {
        if (fits(m)) usable_maps.push_back(m);
      }
      if (may_vmap && !usable_maps.empty() && r.Chance(30)) {
        const std::string& set = r.Pick(usable_maps);
        LookupMatch lk;
        lk.key = SelectorsFor(r, p.sets.at(set).key);
        lk.set = set;
        lk.vmap = true;
        rule.matches.push_back(lk);
      } else {
        rule.counter = r.Chance(30);
        if (r.Chance(80) || (rule.matches.empty() && !rule.counter)) {
          switch (r.Below(5)) {
            case 0:
              rule.verdict = Verdict::Accept();
              break;
            case 1:
              rule.verdict = Verdict::Drop();
              break;
            case 2:
              rule.verdict = Verdict::Return();
              break;
            default:
              if (targets.empty()) {
                rule.verdict = Verdict::Accept();
              } else {
                rule.verdict =
                    r.Chance(50) ? Verdict::Jump(r.Pick(targets)) : Verdict::Goto(r.Pick(targets));
              }
          }
        }
      }
      if (r.Chance(70)) rule.comment = Comment(r, absl::StrCat("rule ", k));
      chain.rules.push_back(std::move(rule));
    }
  }
  Canonicalize(&p);
  return p;
}

}  // namespace netpol::nft
