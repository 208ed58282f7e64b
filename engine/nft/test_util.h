// Shorthands for building programs in tests (testonly).
#ifndef NETPOL_ENGINE_NFT_TEST_UTIL_H_
#define NETPOL_ENGINE_NFT_TEST_UTIL_H_

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "engine/model/ip.h"
#include "engine/nft/program.h"

namespace netpol::nft::testing {

// Parses an address; aborts on a typo in the test itself.
inline IpAddr Ip(const std::string& text) {
  auto a = IpAddr::Parse(text);
  if (!a.ok()) {
    std::cerr << "bad address in test: " << text << "\n";
    std::abort();
  }
  return *a;
}

inline FieldValue A(const std::string& a) { return FieldValue::Addr(Ip(a)); }
inline FieldValue AR(const std::string& lo, const std::string& hi) {
  return FieldValue::AddrRange(Ip(lo), Ip(hi));
}
inline FieldValue N(uint32_t v) { return FieldValue::Num(v); }
inline FieldValue NR(uint32_t lo, uint32_t hi) { return FieldValue::NumRange(lo, hi); }

inline Element E(std::vector<FieldValue> key, std::string comment = "") {
  Element e;
  e.key = std::move(key);
  e.comment = std::move(comment);
  return e;
}
inline Element EV(std::vector<FieldValue> key, Verdict v, std::string comment = "") {
  Element e = E(std::move(key), std::move(comment));
  e.verdict = std::move(v);
  return e;
}

inline Set MakeSet(std::string name, std::vector<FieldType> key, bool interval = false,
                   bool vmap = false, std::string comment = "") {
  Set s;
  s.name = std::move(name);
  s.key = std::move(key);
  s.interval = interval;
  s.vmap = vmap;
  s.comment = std::move(comment);
  return s;
}

inline Chain MakeChain(std::string name, std::string comment = "") {
  Chain c;
  c.name = std::move(name);
  c.comment = std::move(comment);
  return c;
}

inline Chain MakeBase(std::string name, Hook hook, int priority, bool drop = false,
                      std::string comment = "") {
  Chain c = MakeChain(std::move(name), std::move(comment));
  c.base = BaseChainSpec{hook, priority, drop};
  return c;
}

inline Rule MakeRule(std::vector<Match> matches, std::optional<Verdict> verdict,
                     std::string comment = "", bool counter = false) {
  Rule r;
  r.matches = std::move(matches);
  r.verdict = std::move(verdict);
  r.comment = std::move(comment);
  r.counter = counter;
  return r;
}

inline LookupMatch Lookup(std::vector<Selector> key, std::string set, bool negate = false) {
  LookupMatch m;
  m.key = std::move(key);
  m.set = std::move(set);
  m.negate = negate;
  return m;
}
inline LookupMatch VmapLookup(std::vector<Selector> key, std::string set) {
  LookupMatch m = Lookup(std::move(key), std::move(set));
  m.vmap = true;
  return m;
}
inline CtStateMatch EstablishedRelated() {
  CtStateMatch m;
  m.established = true;
  m.related = true;
  return m;
}

inline const std::vector<FieldType> kV4ProtoPort = {FieldType::kIpv4Addr, FieldType::kInetProto,
                                                    FieldType::kInetService};
inline const std::vector<Selector> kSaddrProtoDport = {Selector::kIpSaddr, Selector::kL4Proto,
                                                       Selector::kThDport};

}  // namespace netpol::nft::testing

#endif  // NETPOL_ENGINE_NFT_TEST_UTIL_H_
