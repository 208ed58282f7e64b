// The nftables objects netpol writes, as value types: one table of family inet with its chains,
// rules, sets, verdict maps and elements.
//
// Rules are not free-form: a rule is a short list of typed matches from the small vocabulary the
// compiler needs, plus a verdict and a comment. Each match kind has exactly one nft text form
// (engine/nft/render.cc) and one netlink bytecode form (engine/netlink), so what we write is what
// `nft list table` prints back.
#ifndef NETPOL_ENGINE_NFT_PROGRAM_H_
#define NETPOL_ENGINE_NFT_PROGRAM_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "engine/model/ip.h"

namespace netpol::nft {

// nft's maximum object name length (NFT_NAME_MAXLEN - 1, the kernel's limit is 256 bytes but
// nft tables/chains/sets are conventionally kept short; we budget 63 so names stay readable).
inline constexpr size_t kMaxNameLength = 63;

// A field of a set key (nft data types). Sizes in the kernel register layout: addresses 4/16
// bytes, inet_proto 1 byte and inet_service 2 bytes, each padded to 4 inside a concatenation.
enum class FieldType { kIpv4Addr, kIpv6Addr, kInetProto, kInetService };

// The packet data a rule loads.
enum class Selector {
  kIpSaddr,   // ip saddr (implies meta nfproto ipv4)
  kIpDaddr,   // ip daddr
  kIp6Saddr,  // ip6 saddr (implies meta nfproto ipv6)
  kIp6Daddr,  // ip6 daddr
  kL4Proto,   // meta l4proto
  kThDport,   // th dport (transport header bytes 2-3)
  // The connection's original-direction source address from conntrack, i.e. before any
  // source NAT: `ct original ip saddr` / `ct original ip6 saddr` (each implies meta nfproto).
  kCtOrigIpSaddr,
  kCtOrigIp6Saddr,
};
FieldType SelectorType(Selector s);
// The selector's nft text, e.g. "ip saddr" or "ct original ip6 saddr" ("?" for a value
// outside the enum). The one spelling for rendering, tracing and netlink errors.
const char* SelectorText(Selector s);

struct Verdict {
  enum class Kind { kAccept, kDrop, kReturn, kJump, kGoto };
  Kind kind = Kind::kAccept;
  std::string chain;  // kJump/kGoto only
  static Verdict Accept() { return {Kind::kAccept, ""}; }
  static Verdict Drop() { return {Kind::kDrop, ""}; }
  static Verdict Return() { return {Kind::kReturn, ""}; }
  static Verdict Jump(std::string c) { return {Kind::kJump, std::move(c)}; }
  static Verdict Goto(std::string c) { return {Kind::kGoto, std::move(c)}; }
  friend bool operator==(const Verdict& a, const Verdict& b) {
    return a.kind == b.kind && a.chain == b.chain;
  }
  friend bool operator<(const Verdict& a, const Verdict& b) {
    if (a.kind != b.kind) return a.kind < b.kind;
    return a.chain < b.chain;
  }
};

// ---- rule matches ----

// `ct state <states>`: matches when the connection's state is any of the flagged ones.
struct CtStateMatch {
  bool established = false, related = false, invalid = false, new_ = false, untracked = false;
  friend bool operator==(const CtStateMatch& a, const CtStateMatch& b) {
    return a.established == b.established && a.related == b.related && a.invalid == b.invalid &&
           a.new_ == b.new_ && a.untracked == b.untracked;
  }
};

// `meta nfproto ipv4|ipv6`.
struct NfProtoMatch {
  Family family = Family::kV4;
  friend bool operator==(const NfProtoMatch& a, const NfProtoMatch& b) {
    return a.family == b.family;
  }
};

// `meta l4proto ipv6-icmp icmpv6 type lo-hi` (lo == hi: a single type). Encoded exactly as
// written: an l4proto comparison, then the type byte (cmp eq, or cmp gte + cmp lte for a range);
// no nfproto comparison is implied. `nft list` prints it as `icmpv6 type <name|lo-hi>`.
struct Icmpv6TypeMatch {
  uint8_t lo = 0, hi = 0;
  friend bool operator==(const Icmpv6TypeMatch& a, const Icmpv6TypeMatch& b) {
    return a.lo == b.lo && a.hi == b.hi;
  }
};

// `<sel> . <sel> ... @set` (a set lookup; negated: `!= @set`) or, when the named set is a
// verdict map, `<sel> . ... vmap @map` (the rule's own verdict must then be empty).
//
// Encoding contract (what `nft` itself generates, so text and netlink agree): an ip/ip6 selector
// needs `meta nfproto ipv4|ipv6` first. The writer emits that comparison right before the first
// selector load of the lookup unless an NfProtoMatch of the same family appears earlier in the
// rule (then no second one is emitted). A vmap lookup must be the rule's last match, with no
// rule verdict, no counter and no negation.
struct LookupMatch {
  std::vector<Selector> key;
  std::string set;
  bool vmap = false;
  bool negate = false;  // sets only
  friend bool operator==(const LookupMatch& a, const LookupMatch& b) {
    return a.key == b.key && a.set == b.set && a.vmap == b.vmap && a.negate == b.negate;
  }
};

// `iifname "<name>"` / `oifname "<name>"` (exact name; a trailing '*' is a prefix match).
struct IfnameMatch {
  bool input = true;  // iifname when true, oifname otherwise
  std::string name;
  friend bool operator==(const IfnameMatch& a, const IfnameMatch& b) {
    return a.input == b.input && a.name == b.name;
  }
};

// `fib saddr type local` / `fib daddr type local`: the address is one of this host's own.
struct FibLocalMatch {
  bool saddr = true;
  friend bool operator==(const FibLocalMatch& a, const FibLocalMatch& b) {
    return a.saddr == b.saddr;
  }
};

// `meta skuid >= 0`: the packet belongs to a full local socket (the node itself sent it). Loading
// skuid ends the rule (no match) for packets without one: forwarded packets, and packets the
// kernel re-sends on behalf of a received one (IPVS).
struct LocalSocketMatch {
  friend bool operator==(const LocalSocketMatch&, const LocalSocketMatch&) { return true; }
};

using Match = std::variant<CtStateMatch, NfProtoMatch, Icmpv6TypeMatch, LookupMatch, IfnameMatch,
                           FibLocalMatch, LocalSocketMatch>;

// ---- rule statements ----

// `limit rate <rate>/second [burst <burst> packets]`: a token bucket per rule in the kernel; a
// packet beyond the rate (after the burst) ends the rule like a failed match, so the rules after
// it see exactly what the limit held back. nft omits `burst 5 packets` (its default) when listing.
struct LimitStmt {
  uint32_t rate = 0;   // packets per second, >= 1
  uint32_t burst = 0;  // packets, >= 1
  friend bool operator==(const LimitStmt& a, const LimitStmt& b) {
    return a.rate == b.rate && a.burst == b.burst;
  }
};
inline constexpr uint32_t kNftDefaultBurst = 5;

// `log [prefix "<prefix>"] group <group> [snaplen <snaplen>]`: the packet (its first `snaplen`
// bytes from the network header, 0 = whole) to userspace through nfnetlink_log group `group`.
// The prefix travels with the packet (NFULA_PREFIX): at most kMaxLogPrefixLength bytes of
// printable ASCII other than '"'.
struct LogStmt {
  std::string prefix;
  uint16_t group = 0;
  uint32_t snaplen = 0;
  friend bool operator==(const LogStmt& a, const LogStmt& b) {
    return a.prefix == b.prefix && a.group == b.group && a.snaplen == b.snaplen;
  }
};
inline constexpr size_t kMaxLogPrefixLength = 127;  // NF_LOG_PREFIXLEN - 1

// A rule is `<matches> [limit] [counter] [log] [verdict] [comment]`, in that order, which is the
// order of its netlink expressions and of nft's listing.
struct Rule {
  std::vector<Match> matches;      // ANDed, in order
  std::optional<LimitStmt> limit;  // after the matches
  bool counter = false;            // `counter` before the verdict
  std::optional<LogStmt> log;      // after the counter, before the verdict
  std::optional<Verdict> verdict;  // absent for vmap rules and pure counters
  std::string comment;             // required by the compiler: names the policy and rule
  // The counter's starting values when the rule is created (`counter packets P bytes B`): a
  // full replace carries a rule's count over to its successor (CarryCounters). Not part of what
  // the rule is: not compared and not read back (Dump leaves them 0; ReadCounters reads counts).
  uint64_t counter_packets = 0;
  uint64_t counter_bytes = 0;
  friend bool operator==(const Rule& a, const Rule& b) {
    return a.matches == b.matches && a.limit == b.limit && a.counter == b.counter &&
           a.log == b.log && a.verdict == b.verdict && a.comment == b.comment;
  }
};

enum class Hook { kPrerouting, kInput, kForward, kOutput, kPostrouting };

struct BaseChainSpec {
  Hook hook = Hook::kForward;
  int priority = 0;          // numeric priority; 0 == filter
  bool policy_drop = false;  // base chain policy (accept unless set)
  friend bool operator==(const BaseChainSpec& a, const BaseChainSpec& b) {
    return a.hook == b.hook && a.priority == b.priority && a.policy_drop == b.policy_drop;
  }
};

struct Chain {
  std::string name;
  std::optional<BaseChainSpec> base;  // set for base chains (type filter)
  std::string comment;
  std::vector<Rule> rules;
  friend bool operator==(const Chain& a, const Chain& b) {
    return a.name == b.name && a.base == b.base && a.comment == b.comment && a.rules == b.rules;
  }
};

// A set or, when `vmap`, a verdict map. Interval sets with several key fields are nft's
// concatenated interval sets (the kernel's pipapo backend); single-field interval sets are not
// used by netpol (the writer rejects them) so every element is a key (and key_end) pair.
struct Set {
  std::string name;
  std::vector<FieldType> key;
  bool interval = false;
  bool vmap = false;
  std::string comment;
  friend bool operator==(const Set& a, const Set& b) {
    return a.name == b.name && a.key == b.key && a.interval == b.interval && a.vmap == b.vmap &&
           a.comment == b.comment;
  }
};

// One field of an element key: an address range or a number range (lo == hi: a single value).
// For non-interval sets lo == hi always.
struct FieldValue {
  IpAddr addr_lo, addr_hi;  // kIpv4Addr / kIpv6Addr
  uint32_t lo = 0, hi = 0;  // kInetProto (0-255) / kInetService (0-65535)
  friend bool operator==(const FieldValue& a, const FieldValue& b) {
    return a.addr_lo == b.addr_lo && a.addr_hi == b.addr_hi && a.lo == b.lo && a.hi == b.hi;
  }
  friend bool operator<(const FieldValue& a, const FieldValue& b) {
    if (a.addr_lo != b.addr_lo) return a.addr_lo < b.addr_lo;
    if (a.addr_hi != b.addr_hi) return a.addr_hi < b.addr_hi;
    if (a.lo != b.lo) return a.lo < b.lo;
    return a.hi < b.hi;
  }
  static FieldValue Addr(const IpAddr& a) { return {a, a, 0, 0}; }
  static FieldValue AddrRange(const IpAddr& lo, const IpAddr& hi) { return {lo, hi, 0, 0}; }
  static FieldValue Num(uint32_t v) { return {{}, {}, v, v}; }
  static FieldValue NumRange(uint32_t lo, uint32_t hi) { return {{}, {}, lo, hi}; }
};

struct Element {
  std::vector<FieldValue> key;     // one per set key field
  std::optional<Verdict> verdict;  // verdict maps only
  std::string comment;             // optional, e.g. the pod a dispatch entry belongs to
  // Elements are identified by key alone (as the kernel does); verdict/comment are payload.
  friend bool operator<(const Element& a, const Element& b) { return a.key < b.key; }
  friend bool operator==(const Element& a, const Element& b) {
    return a.key == b.key && a.verdict == b.verdict && a.comment == b.comment;
  }
};

// Names of tables, chains and sets: 1..kMaxNameLength characters of [A-Za-z0-9_.-], starting
// with a letter, and not an nft keyword (nft's parser cannot read e.g. a chain called `fwd`).
// Comments: at most kMaxCommentLength bytes, printable ASCII without '"'.
inline constexpr size_t kMaxCommentLength = 128;  // nft's NFTNL_UDATA_COMMENT_MAXLEN

// The whole table: what the compiler produces and what a dump reads back. Chains and sets are
// kept sorted by name in maps; elements per set sorted by key. Chain order in the table does not
// matter to the kernel, rule order inside a chain does.
struct Program {
  std::string table;  // family is always inet
  std::string comment;
  std::map<std::string, Chain> chains;
  std::map<std::string, Set> sets;
  std::map<std::string, std::vector<Element>> elements;  // set name -> sorted elements
  friend bool operator==(const Program& a, const Program& b) {
    return a.table == b.table && a.chains == b.chains && a.sets == b.sets &&
           a.elements == b.elements;
  }
};

// ---- the rules every writer holds a program to ----
//
// One function per rule. The fake backend and the netlink encoder both call these, so they refuse
// the same things with the same words; each returns InvalidArgument with the problem alone and
// the caller puts where it was found in front ("set x: ...", "command 3 (...): elements[0]: ...").
// Names and comments quoted in a message are escaped (absl::CEscape), so a message never carries
// control characters from its input.

// Returns OK when `name` is a valid table, chain or set name (see above); the error names `what`
// ("chain", "set", "table") and the name.
absl::Status ValidateObjectName(const char* what, const std::string& name);
// The words nft 1.0.6 reads as keywords where a name is expected (`fwd`, `icmp`, `counter`, ...).
const std::vector<std::string>& NftKeywords();
// A comment of a table, chain, rule, set or element: at most kMaxCommentLength bytes of printable
// ASCII without '"'.
absl::Status ValidateComment(const std::string& comment);
// A verdict: jump and goto name a valid chain, the others none.
absl::Status ValidateVerdict(const Verdict& v);
// A set definition: its name, a key of 1..kMaxKeyBytes bytes (every field padded to a 4-byte
// register), intervals only over concatenations, its comment.
absl::Status ValidateSetDef(const Set& set);
// An element against its set's definition: one value per key field, of the field's kind and
// range, ranges only in interval sets, a verdict exactly in verdict maps (`keys_only`, for
// deletes: a missing verdict is fine), its comment.
absl::Status ValidateElementShape(const Set& set, const Element& e, bool keys_only = false);
// Largest key of a set: NFT_DATA_VALUE_MAXLEN, the 16 4-byte registers.
inline constexpr size_t kMaxKeyBytes = 64;
// A rule on its own: at least one match, counter or verdict; at most kMaxMatches matches, each
// well formed ("matches[i]: ..."); a vmap lookup only last, without verdict, counter or
// negation; no ip and ip6 selectors together (nft: "conflicting protocols"); its verdict and
// comment; a limit's rate and burst (1..kMaxLimitValue) and a log's prefix (and neither in a vmap
// rule). What a lookup needs of its set is ValidateLookup's.
absl::Status ValidateRuleShape(const Rule& rule);
// A lookup against the set it names: a verdict map exactly for vmap lookups, one selector per
// key field, each of the field's type.
absl::Status ValidateLookup(const LookupMatch& m, const Set& set);
inline constexpr size_t kMaxMatches = 64;
inline constexpr uint32_t kMaxLimitValue = 1000000;
// IFNAMSIZ - 1.
inline constexpr size_t kMaxIfnameLength = 15;

// ---- names and comments derived from outside text (object names, flags) ----

// 64-bit FNV-1a: the stable hash of shortened names and comments.
uint64_t Fnv1a64(const std::string& s);
// `text` made a valid comment: every byte outside printable ASCII and every '"' written as
// \xNN; when that is longer than kMaxCommentLength, its first bytes followed by '~' and eight
// hex digits of Fnv1a64(text), so distinct long texts keep distinct comments. The identity on
// text that is already a valid comment. Every comment the compiler derives from object names
// goes through here.
std::string CommentFrom(const std::string& text);

// Returns the nft name of a key field type: ipv4_addr, ipv6_addr, inet_proto, inet_service.
const char* FieldTypeName(FieldType t);

// Puts `program` in the form Backend::Dump returns: every element vector sorted by key and
// sets without elements absent from `elements`. Program::operator== is exact, so compare
// canonical forms (Diff treats a missing and an empty element list alike).
void Canonicalize(Program* program);
Program Canonical(Program program);

}  // namespace netpol::nft

#endif  // NETPOL_ENGINE_NFT_PROGRAM_H_
