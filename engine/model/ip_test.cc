#include "engine/model/ip.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol {
namespace {

IpAddr A(const std::string& s) {
  auto a = IpAddr::Parse(s);
  EXPECT_TRUE(a.ok()) << s << ": " << a.status();
  return a.ok() ? *a : IpAddr{};
}

Cidr C(const std::string& s) {
  auto c = Cidr::Parse(s);
  EXPECT_TRUE(c.ok()) << s << ": " << c.status();
  return c.ok() ? *c : Cidr{};
}

struct AddrCase {
  std::string name;
  std::string input;
  bool ok;
  std::string canonical;  // when ok
};

TEST(IpAddrTest, ParseAndPrint) {
  const std::vector<AddrCase> cases = {
      {"v4 plain", "10.1.2.3", true, "10.1.2.3"},
      {"v4 zeros", "0.0.0.0", true, "0.0.0.0"},
      {"v4 max", "255.255.255.255", true, "255.255.255.255"},
      {"v4 octet too big", "256.1.1.1", false, ""},
      {"v4 leading zero", "010.1.1.1", false, ""},
      {"v4 three parts", "1.2.3", false, ""},
      {"v4 five parts", "1.2.3.4.5", false, ""},
      {"v4 trailing dot", "1.2.3.4.", false, ""},
      {"v4 sign", "+1.2.3.4", false, ""},
      {"v4 space", "1.2.3.4 ", false, ""},
      {"v4 four digit octet", "1.2.3.0004", false, ""},
      {"empty", "", false, ""},
      {"v6 loopback", "::1", true, "::1"},
      {"v6 any", "::", true, "::"},
      {"v6 uppercase and leading zeros", "2001:0DB8:0000:0000:0000:0000:0000:0001", true,
       "2001:db8::1"},
      {"v6 single zero group not compressed", "2001:db8:0:1:1:1:1:1", true, "2001:db8:0:1:1:1:1:1"},
      {"v6 longest run compressed", "2001:0:0:1:0:0:0:1", true, "2001:0:0:1::1"},
      {"v6 first of tied runs compressed", "2001:db8:0:0:1:0:0:1", true, "2001:db8::1:0:0:1"},
      {"v6 trailing run", "fe80:1::", true, "fe80:1::"},
      {"v6 all groups", "1:2:3:4:5:6:7:8", true, "1:2:3:4:5:6:7:8"},
      {"v6 mapped v4", "::ffff:10.0.0.1", true, "::ffff:10.0.0.1"},
      {"v6 mapped v4 hex", "::ffff:a00:1", true, "::ffff:10.0.0.1"},
      {"v6 embedded v4 not mapped", "64:ff9b::10.0.0.1", true, "64:ff9b::a00:1"},
      {"v6 embedded v4 leading zero", "::ffff:10.0.0.01", false, ""},
      {"v6 two double colons", "1::2::3", false, ""},
      {"v6 too many groups", "1:2:3:4:5:6:7:8:9", false, ""},
      {"v6 group too long", "12345::", false, ""},
      {"v6 zone id", "fe80::1%eth0", false, ""},
      {"v6 with prefix", "fe80::1/64", false, ""},
      {"garbage", "hello", false, ""},
      {"very long", std::string(100, '1'), false, ""},
      {"embedded nul", std::string("1.2.3.4\0", 8), false, ""},
  };
  for (const AddrCase& c : cases) {
    auto a = IpAddr::Parse(c.input);
    EXPECT_EQ(a.ok(), c.ok) << c.name << ": " << a.status();
    if (a.ok() && c.ok) {
      EXPECT_EQ(a->ToString(), c.canonical) << c.name;
      // Canonical text parses back to the same address.
      EXPECT_EQ(A(a->ToString()), *a) << c.name;
    }
    if (!a.ok()) {
      EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    }
  }
}

TEST(IpAddrTest, IPv4MappedAddressesAreRefused) {
  for (const char* text : {"::ffff:10.0.0.1", "::ffff:a00:1", "0:0:0:0:0:ffff:10.0.0.1"}) {
    IpAddr a = *IpAddr::Parse(text);
    EXPECT_TRUE(a.IsV4Mapped()) << text;
    absl::Status s = RefuseV4Mapped(a);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << text;
    EXPECT_EQ(s.message(),
              "\"::ffff:10.0.0.1\": must not be an IPv4-mapped IPv6 address (write 10.0.0.1)");
  }
  // Neighbours of the mapped range, IPv4-compatible addresses and IPv4 itself are fine.
  for (const char* text : {"10.0.0.1", "::10.0.0.1", "::fffe:a00:1", "1::ffff:a00:1", "::1",
                           "64:ff9b::a00:1"}) {
    IpAddr a = *IpAddr::Parse(text);
    EXPECT_FALSE(a.IsV4Mapped()) << text;
    EXPECT_TRUE(RefuseV4Mapped(a).ok()) << text;
  }
}

TEST(IpAddrTest, FamilyAndOrder) {
  EXPECT_EQ(A("1.2.3.4").family, Family::kV4);
  EXPECT_EQ(A("::1.2.3.4").family, Family::kV6);
  EXPECT_EQ(A("1.2.3.4"), IpAddr::V4(1, 2, 3, 4));
  EXPECT_TRUE(A("255.255.255.255") < A("::"));
  EXPECT_TRUE(A("10.0.0.2") < A("10.0.0.10"));
  EXPECT_TRUE(A("::2") < A("::1:0"));
  EXPECT_EQ(A("1.2.3.4").bits(), 32);
  EXPECT_EQ(A("::").bits(), 128);
}

TEST(IpAddrTest, NextPrev) {
  struct Case {
    std::string a, next;
  };
  const std::vector<Case> cases = {
      {"10.0.0.0", "10.0.0.1"},
      {"10.0.0.255", "10.0.1.0"},
      {"10.255.255.255", "11.0.0.0"},
      {"::", "::1"},
      {"::ffff", "::1:0"},
      {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db9::"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(NextAddr(A(c.a)).ToString(), c.next) << c.a;
    EXPECT_EQ(PrevAddr(A(c.next)).ToString(), c.a) << c.next;
  }
}

struct CidrCase {
  std::string name;
  std::string input;
  std::string want;  // canonical text, or the error message
  bool ok;
};

TEST(CidrTest, Parse) {
  const std::vector<CidrCase> cases = {
      {"v4", "10.0.0.0/8", "10.0.0.0/8", true},
      {"v4 host", "10.1.2.3/32", "10.1.2.3/32", true},
      {"v4 all", "0.0.0.0/0", "0.0.0.0/0", true},
      {"v6", "2001:DB8::/32", "2001:db8::/32", true},
      {"v6 all", "::/0", "::/0", true},
      {"v6 host", "::1/128", "::1/128", true},
      {"v4 host bits", "10.0.0.1/8",
       "invalid CIDR \"10.0.0.1/8\": host bits set (did you mean "
       "\"10.0.0.0/8\"?)",
       false},
      {"v6 host bits", "2001:db8::1/64",
       "invalid CIDR \"2001:db8::1/64\": host bits set (did you mean \"2001:db8::/64\"?)", false},
      {"no prefix", "10.0.0.0", "invalid CIDR \"10.0.0.0\": missing prefix length", false},
      {"empty prefix", "10.0.0.0/", "invalid CIDR \"10.0.0.0/\": invalid prefix length", false},
      {"leading zero prefix", "10.0.0.0/08", "invalid CIDR \"10.0.0.0/08\": invalid prefix length",
       false},
      {"negative prefix", "10.0.0.0/-1", "invalid CIDR \"10.0.0.0/-1\": invalid prefix length",
       false},
      {"v4 prefix too long", "10.0.0.0/33",
       "invalid CIDR \"10.0.0.0/33\": prefix length out of range", false},
      {"v6 prefix too long", "::/129", "invalid CIDR \"::/129\": prefix length out of range",
       false},
      {"bad address", "10.0.0/8", "invalid CIDR \"10.0.0/8\": invalid address", false},
      {"two slashes", "10.0.0.0/8/8", "invalid CIDR \"10.0.0.0/8/8\": invalid prefix length",
       false},
  };
  for (const CidrCase& c : cases) {
    auto got = Cidr::Parse(c.input);
    ASSERT_EQ(got.ok(), c.ok) << c.name << ": " << got.status();
    if (c.ok) {
      EXPECT_EQ(got->ToString(), c.want) << c.name;
    } else {
      EXPECT_EQ(got.status().message(), c.want) << c.name;
    }
  }
}

TEST(CidrTest, ContainsAndLast) {
  Cidr c = C("10.1.0.0/16");
  EXPECT_TRUE(c.Contains(A("10.1.0.0")));
  EXPECT_TRUE(c.Contains(A("10.1.255.255")));
  EXPECT_FALSE(c.Contains(A("10.2.0.0")));
  EXPECT_FALSE(c.Contains(A("::ffff:10.1.0.1")));
  EXPECT_TRUE(c.Contains(C("10.1.2.0/24")));
  EXPECT_TRUE(c.Contains(c));
  EXPECT_FALSE(c.Contains(C("10.0.0.0/8")));
  EXPECT_EQ(c.Last().ToString(), "10.1.255.255");
  EXPECT_EQ(C("10.1.2.128/25").Last().ToString(), "10.1.2.255");
  EXPECT_TRUE(C("10.1.2.128/25").Contains(A("10.1.2.200")));
  EXPECT_FALSE(C("10.1.2.128/25").Contains(A("10.1.2.127")));
  EXPECT_EQ(C("0.0.0.0/0").Last().ToString(), "255.255.255.255");
  EXPECT_TRUE(C("0.0.0.0/0").Contains(A("1.2.3.4")));
  EXPECT_EQ(C("2001:db8::/33").Last().ToString(), "2001:db8:7fff:ffff:ffff:ffff:ffff:ffff");
  EXPECT_EQ(C("::/0").Last().ToString(), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
  EXPECT_EQ(Cidr::Host(A("fe80::1")).ToString(), "fe80::1/128");
  EXPECT_EQ(Cidr::Host(A("1.2.3.4")).ToString(), "1.2.3.4/32");
}

struct MinusCase {
  std::string name;
  std::string cidr;
  std::vector<std::string> except;
  std::vector<std::string> want;  // IpRange::ToString of each range
};

TEST(CidrMinusTest, Table) {
  const std::vector<MinusCase> cases = {
      {"no excepts", "10.0.0.0/8", {}, {"10.0.0.0-10.255.255.255"}},
      {"host cidr", "10.0.0.1/32", {}, {"10.0.0.1"}},
      {"hole in the middle",
       "10.0.0.0/24",
       {"10.0.0.64/26"},
       {"10.0.0.0-10.0.0.63", "10.0.0.128-10.0.0.255"}},
      {"hole at start", "10.0.0.0/24", {"10.0.0.0/25"}, {"10.0.0.128-10.0.0.255"}},
      {"hole at end", "10.0.0.0/24", {"10.0.0.128/25"}, {"10.0.0.0-10.0.0.127"}},
      {"two halves cover everything", "10.0.0.0/24", {"10.0.0.128/25", "10.0.0.0/25"}, {}},
      {"except equal to cidr", "10.0.0.0/24", {"10.0.0.0/24"}, {}},
      {"except larger than cidr", "10.0.0.0/24", {"10.0.0.0/8"}, {}},
      {"except outside cidr ignored", "10.0.0.0/24", {"192.168.0.0/16"}, {"10.0.0.0-10.0.0.255"}},
      {"other family ignored", "10.0.0.0/24", {"::/0"}, {"10.0.0.0-10.0.0.255"}},
      {"nested excepts", "10.0.0.0/16", {"10.0.1.0/24", "10.0.1.128/25", "10.0.0.0/8"}, {}},
      {"nested excepts inside",
       "10.0.0.0/16",
       {"10.0.1.128/25", "10.0.1.0/24"},
       {"10.0.0.0-10.0.0.255", "10.0.2.0-10.0.255.255"}},
      {"adjacent excepts",
       "10.0.0.0/24",
       {"10.0.0.16/28", "10.0.0.32/28"},
       {"10.0.0.0-10.0.0.15", "10.0.0.48-10.0.0.255"}},
      {"duplicate excepts",
       "10.0.0.0/24",
       {"10.0.0.16/28", "10.0.0.16/28"},
       {"10.0.0.0-10.0.0.15", "10.0.0.32-10.0.0.255"}},
      {"unsorted host excepts",
       "10.0.0.0/29",
       {"10.0.0.5/32", "10.0.0.1/32", "10.0.0.3/32"},
       {"10.0.0.0", "10.0.0.2", "10.0.0.4", "10.0.0.6-10.0.0.7"}},
      {"all hosts except last", "10.0.0.0/30", {"10.0.0.0/31", "10.0.0.2/32"}, {"10.0.0.3"}},
      {"whole v4 space minus one", "0.0.0.0/0", {"0.0.0.0/32"}, {"0.0.0.1-255.255.255.255"}},
      {"whole v4 space minus last",
       "0.0.0.0/0",
       {"255.255.255.255/32"},
       {"0.0.0.0-255.255.255.254"}},
      {"v6 hole",
       "2001:db8::/32",
       {"2001:db8:1::/48"},
       {"2001:db8::-2001:db8:0:ffff:ffff:ffff:ffff:ffff",
        "2001:db8:2::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"}},
      {"v6 everything except", "::/0", {"::/1", "8000::/1"}, {}},
      {"v6 whole space minus last",
       "::/0",
       {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"},
       {"::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"}},
      {"v6 v4 except ignored",
       "fd00::/8",
       {"10.0.0.0/8"},
       {"fd00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}},
  };
  for (const MinusCase& c : cases) {
    std::vector<Cidr> except;
    for (const auto& e : c.except) except.push_back(C(e));
    std::vector<std::string> got;
    for (const IpRange& r : CidrMinus(C(c.cidr), except)) got.push_back(r.ToString());
    EXPECT_THAT(got, ::testing::ElementsAreArray(c.want)) << c.name;
  }
}

// Cross-checks CidrMinus against a brute-force walk of every address of small CIDRs.
TEST(CidrMinusTest, MatchesBruteForce) {
  const Cidr base = C("10.0.0.0/26");
  // Every /28, /30 and /31 inside the /26, in deterministic combinations.
  std::vector<Cidr> pool;
  for (int i = 0; i < 64; i += 16) pool.push_back(C("10.0.0." + std::to_string(i) + "/28"));
  for (int i = 4; i < 64; i += 12) pool.push_back(C("10.0.0." + std::to_string(i) + "/30"));
  for (int i = 1; i < 64; i += 7) pool.push_back(C("10.0.0." + std::to_string(i) + "/32"));
  for (size_t mask = 0; mask < (1u << 12); mask += 7) {
    std::vector<Cidr> except;
    for (size_t i = 0; i < pool.size() && i < 12; ++i) {
      if (mask & (1u << i)) except.push_back(pool[i]);
    }
    std::vector<IpRange> got = CidrMinus(base, except);
    for (int host = 0; host < 64; ++host) {
      IpAddr a = IpAddr::V4(10, 0, 0, host);
      bool excepted = false;
      for (const Cidr& e : except) excepted = excepted || e.Contains(a);
      bool in_ranges = false;
      for (const IpRange& r : got) in_ranges = in_ranges || (r.lo <= a && a <= r.hi);
      ASSERT_EQ(in_ranges, !excepted) << "mask " << mask << " host " << host;
    }
    for (size_t i = 1; i < got.size(); ++i) {
      // Sorted, disjoint and not adjacent (adjacent ranges would have been one range).
      ASSERT_TRUE(NextAddr(got[i - 1].hi) < got[i].lo) << "mask " << mask;
    }
  }
}

}  // namespace
}  // namespace netpol
