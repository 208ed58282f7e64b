// Kubernetes YAML/JSON -> model objects (with API-server validation), and back.
//
// yaml-cpp builds the document graph; everything below walks it defensively: every node's type
// is checked before use, every exception is caught, and errors are collected with the object and
// field path they concern.
#include "engine/model/loader.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <limits>
#include <fstream>
#include <istream>
#include <optional>
#include <set>
#include <sstream>
#include <streambuf>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace netpol {

// ---------------------------------------------------------------------------------------------
// Object helpers.

const char* Object::Kind() const {
  switch (value.index()) {
    case 0:
      return "Namespace";
    case 1:
      return "Pod";
    default:
      return "NetworkPolicy";
  }
}

const std::string& Object::NamespaceName() const {
  static const std::string* const kEmpty = new std::string();
  if (const Pod* p = AsPod()) return p->namespace_name;
  if (const NetworkPolicy* np = AsNetworkPolicy()) return np->namespace_name;
  return *kEmpty;
}

const std::string& Object::Name() const {
  return std::visit([](const auto& o) -> const std::string& { return o.name; }, value);
}

std::string Object::Key() const {
  if (const Namespace* ns = AsNamespace()) return ns->name;
  return absl::StrCat(NamespaceName(), "/", Name());
}

std::string Object::Ref() const { return absl::StrCat(absl::AsciiStrToLower(Kind()), " ", Key()); }

void Upsert(const Object& object, State* state) {
  if (const Namespace* ns = object.AsNamespace()) {
    state->namespaces[ns->name] = *ns;
  } else if (const Pod* p = object.AsPod()) {
    state->pods[p->Key()] = *p;
  } else if (const NetworkPolicy* np = object.AsNetworkPolicy()) {
    state->policies[np->Key()] = *np;
  }
}

std::vector<Object> ObjectsOf(const State& state) {
  std::vector<Object> out;
  out.reserve(state.namespaces.size() + state.pods.size() + state.policies.size());
  for (const auto& [key, ns] : state.namespaces) out.push_back(Object{ns});
  for (const auto& [key, pod] : state.pods) out.push_back(Object{pod});
  for (const auto& [key, np] : state.policies) out.push_back(Object{np});
  return out;
}

namespace {

// The node budget of one load: every node of a legitimate document takes at least one byte of
// text and is visited at most twice (once as a map entry, once as a value), so visiting more than
// twice as many nodes as there are bytes (plus slack for tiny inputs) means aliases are expanding
// the text into something far larger. The walk stops there, before building a huge model.
constexpr size_t kNodesPerByte = 2;
constexpr size_t kNodeSlack = 1 << 16;
// Beyond this many errors a report stops being useful; the count of the rest is given.
constexpr size_t kMaxErrors = 20;
constexpr size_t kMaxWarnings = 100;
// Longest user-supplied text quoted in a message.
constexpr size_t kMaxShown = 80;

// Quotes user text for a message: escaped, truncated.
std::string Show(absl::string_view s) {
  if (s.size() <= kMaxShown) return absl::StrCat("\"", absl::CHexEscape(s), "\"");
  return absl::StrCat("\"", absl::CHexEscape(s.substr(0, kMaxShown)), "\"...");
}

// The text of a map key inside a path: foo[key].
std::string PathKey(absl::string_view path, absl::string_view key) {
  std::string shown = absl::CHexEscape(key.substr(0, kMaxShown));
  if (key.size() > kMaxShown) shown += "...";
  if (path.empty()) return shown;  // a top-level field
  return absl::StrCat(path, "[", shown, "]");
}

std::string Child(absl::string_view path, absl::string_view field) {
  return path.empty() ? std::string(field) : absl::StrCat(path, ".", field);
}

std::string Index(absl::string_view path, size_t i) { return absl::StrCat(path, "[", i, "]"); }

// ---------------------------------------------------------------------------------------------
// Scalars, resolved the way Kubernetes' YAML reader (YAML 1.1) does.

enum class ScalarType { kNull, kBool, kInt, kFloat, kString };

bool IsDigits(absl::string_view s, bool (*digit)(unsigned char)) {
  if (s.empty()) return false;
  bool any = false;
  for (char c : s) {
    if (c == '_') continue;
    if (!digit(static_cast<unsigned char>(c))) return false;
    any = true;
  }
  return any;
}

bool IsDec(unsigned char c) { return c >= '0' && c <= '9'; }
bool IsHex(unsigned char c) { return absl::ascii_isxdigit(c); }
bool IsOct(unsigned char c) { return c >= '0' && c <= '7'; }
bool IsBin(unsigned char c) { return c == '0' || c == '1'; }

bool LooksInt(absl::string_view s) {
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  if (absl::StartsWith(s, "0x")) return IsDigits(s.substr(2), IsHex);
  if (absl::StartsWith(s, "0o")) return IsDigits(s.substr(2), IsOct);
  if (absl::StartsWith(s, "0b")) return IsDigits(s.substr(2), IsBin);
  return !s.empty() && IsDec(s[0]) && IsDigits(s, IsDec);
}

bool LooksFloat(absl::string_view s) {
  static const std::set<std::string> kSpecial = {".inf",  ".Inf",  ".INF",  "+.inf",
                                                 "+.Inf", "+.INF", "-.inf", "-.Inf",
                                                 "-.INF", ".nan",  ".NaN",  ".NAN"};
  if (kSpecial.count(std::string(s))) return true;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  size_t i = 0;
  size_t int_digits = 0, frac_digits = 0;
  while (i < s.size() && (IsDec(s[i]) || s[i] == '_')) int_digits += IsDec(s[i++]);
  bool dot = i < s.size() && s[i] == '.';
  if (dot) {
    ++i;
    while (i < s.size() && (IsDec(s[i]) || s[i] == '_')) frac_digits += IsDec(s[i++]);
  }
  if (int_digits + frac_digits == 0) return false;
  bool exp = i < s.size() && (s[i] == 'e' || s[i] == 'E');
  if (exp) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    size_t exp_digits = 0;
    while (i < s.size() && IsDec(s[i])) ++exp_digits, ++i;
    if (exp_digits == 0) return false;
  }
  return i == s.size() && (dot || exp);
}

ScalarType ResolvePlain(absl::string_view s) {
  static const std::set<std::string> kNulls = {"", "~", "null", "Null", "NULL"};
  static const std::set<std::string> kBools = {
      "y",    "Y",    "yes",   "Yes",   "YES",   "n",  "N",  "no", "No",  "NO",  "true",
      "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF"};
  std::string str(s);
  if (kNulls.count(str)) return ScalarType::kNull;
  if (kBools.count(str)) return ScalarType::kBool;
  if (LooksInt(s)) return ScalarType::kInt;
  if (LooksFloat(s)) return ScalarType::kFloat;
  return ScalarType::kString;
}

ScalarType Resolve(const YAML::Node& n) {
  if (n.IsNull()) return ScalarType::kNull;
  const std::string& tag = n.Tag();
  if (tag == "!" || tag == "tag:yaml.org,2002:str") return ScalarType::kString;
  if (tag == "tag:yaml.org,2002:int") return ScalarType::kInt;
  if (tag == "tag:yaml.org,2002:float") return ScalarType::kFloat;
  if (tag == "tag:yaml.org,2002:bool") return ScalarType::kBool;
  if (tag == "tag:yaml.org,2002:null") return ScalarType::kNull;
  return ResolvePlain(n.Scalar());
}

bool ParseBool(absl::string_view s) {
  static const std::set<std::string> kTrue = {"y",    "Y",    "yes", "Yes", "YES", "true",
                                              "True", "TRUE", "on",  "On",  "ON"};
  return kTrue.count(std::string(s)) > 0;
}

// Parses a YAML integer; nullopt when it does not fit in 64 bits or is malformed.
std::optional<int64_t> ParseInt(absl::string_view s) {
  bool negative = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  int base = 10;
  if (absl::StartsWith(s, "0x"))
    base = 16, s.remove_prefix(2);
  else if (absl::StartsWith(s, "0o"))
    base = 8, s.remove_prefix(2);
  else if (absl::StartsWith(s, "0b"))
    base = 2, s.remove_prefix(2);
  uint64_t v = 0;
  bool any = false;
  for (char c : s) {
    if (c == '_') continue;
    int d = IsDec(c) ? c - '0' : absl::ascii_tolower(c) - 'a' + 10;
    if (d < 0 || d >= base) return std::nullopt;
    if (v > (uint64_t{1} << 62) / base) return std::nullopt;  // keeps well inside int64
    v = v * base + d;
    any = true;
  }
  if (!any) return std::nullopt;
  int64_t r = static_cast<int64_t>(v);
  return negative ? -r : r;
}

std::string Describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      return "map";
    case YAML::NodeType::Sequence:
      return "list";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return "null";
    case YAML::NodeType::Scalar:
      break;
  }
  switch (Resolve(n)) {
    case ScalarType::kNull:
      return "null";
    case ScalarType::kBool:
      return absl::StrCat("boolean ", Show(n.Scalar()));
    case ScalarType::kInt:
      return absl::StrCat("integer ", Show(n.Scalar()));
    case ScalarType::kFloat:
      return absl::StrCat("number ", Show(n.Scalar()));
    case ScalarType::kString:
      break;
  }
  return absl::StrCat("string ", Show(n.Scalar()));
}

// ---------------------------------------------------------------------------------------------
// Kubernetes name, label and port-name rules. Each returns "" when valid, else the reason.

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlnum(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)); }

constexpr char kDnsLabelRule[] =
    "must be a lowercase RFC 1123 label (lowercase alphanumerics or '-', starting and ending "
    "with an alphanumeric, at most 63 characters)";
constexpr char kDnsSubdomainRule[] =
    "must be a lowercase RFC 1123 subdomain (lowercase alphanumerics, '-' or '.', starting and "
    "ending with an alphanumeric, at most 253 characters)";

bool IsDnsLabelText(absl::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  if (!IsLowerAlnum(s.front()) || !IsLowerAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return IsLowerAlnum(c) || c == '-'; });
}

bool IsDnsSubdomainText(absl::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    absl::string_view part = s.substr(start, dot == absl::string_view::npos ? s.npos : dot - start);
    if (part.empty() || !IsLowerAlnum(part.front()) || !IsLowerAlnum(part.back())) return false;
    if (!std::all_of(part.begin(), part.end(), [](char c) { return IsLowerAlnum(c) || c == '-'; }))
      return false;
    if (dot == absl::string_view::npos) return true;
    start = dot + 1;
  }
}

bool IsLabelNameText(absl::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  if (!IsAlnum(s.front()) || !IsAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return IsAlnum(c) || c == '-' || c == '_' || c == '.'; });
}

std::string LabelKeyProblem(absl::string_view key) {
  absl::string_view name = key;
  size_t slash = key.find('/');
  if (slash != absl::string_view::npos) {
    absl::string_view prefix = key.substr(0, slash);
    name = key.substr(slash + 1);
    if (name.find('/') != absl::string_view::npos) {
      return "must be a name with an optional DNS subdomain prefix and one '/'";
    }
    if (prefix.empty()) return "prefix part must not be empty";
    if (prefix.size() > 253) return "prefix part must be no more than 253 characters";
    if (!IsDnsSubdomainText(prefix)) {
      return absl::StrCat("prefix part ", kDnsSubdomainRule);
    }
  }
  if (name.empty()) return "name part must not be empty";
  if (name.size() > 63) return "name part must be no more than 63 characters";
  if (!IsLabelNameText(name)) {
    return "name part must consist of alphanumerics, '-', '_' or '.', and begin and end with an "
           "alphanumeric";
  }
  return "";
}

std::string LabelValueProblem(absl::string_view v) {
  if (v.empty()) return "";
  if (v.size() > 63) return "must be no more than 63 characters";
  if (!IsLabelNameText(v)) {
    return "must be empty or consist of alphanumerics, '-', '_' or '.', and begin and end with "
           "an alphanumeric";
  }
  return "";
}

// IANA_SVC_NAME (RFC 6335 section 5.1), as Kubernetes checks port names.
std::string PortNameProblem(absl::string_view s) {
  if (s.empty()) return "must not be empty";
  if (s.size() > 15) return "must be no more than 15 characters";
  if (!std::all_of(s.begin(), s.end(), [](char c) { return IsLowerAlnum(c) || c == '-'; })) {
    return "must contain only lowercase alphanumerics and '-'";
  }
  if (!std::any_of(s.begin(), s.end(), [](char c) { return c >= 'a' && c <= 'z'; })) {
    return "must contain at least one letter";
  }
  if (s.front() == '-' || s.back() == '-') return "must not begin or end with '-'";
  if (s.find("--") != absl::string_view::npos) return "must not contain consecutive '-'";
  return "";
}

// ---------------------------------------------------------------------------------------------
// The walk.

struct LoadState {
  const LoadOptions* options;
  std::vector<std::string>* warnings;
  std::vector<std::string> errors;
  size_t suppressed_errors = 0;
  size_t suppressed_warnings = 0;
  size_t nodes = 0;
  size_t max_nodes = 0;
  bool aborted = false;  // node budget exhausted: stop walking

  std::string Prefix(absl::string_view what) const {
    return options->source.empty() ? std::string(what) : absl::StrCat(options->source, ": ", what);
  }
  void AddError(std::string e) {
    if (errors.size() < kMaxErrors) {
      errors.push_back(std::move(e));
    } else {
      ++suppressed_errors;
    }
  }
};

// A map's entries, in order, with string keys.
class Fields {
 public:
  const std::vector<std::pair<std::string, YAML::Node>>& entries() const { return entries_; }
  // The value under `key`, or a null node when absent.
  YAML::Node Get(absl::string_view key) const {
    for (const auto& [k, v] : entries_) {
      if (k == key) return v;
    }
    return YAML::Node();
  }
  void Add(std::string key, const YAML::Node& value) {
    entries_.emplace_back(std::move(key), value);
  }

 private:
  std::vector<std::pair<std::string, YAML::Node>> entries_;
};

// Per-object walker: knows how to name the object in messages.
class Walker {
 public:
  Walker(LoadState* st, std::string ref) : st_(st), prefix_(st->Prefix(ref)) {}

  bool ok() const { return !st_->aborted; }
  const std::string& default_namespace() const { return st_->options->default_namespace; }

  void Error(absl::string_view path, absl::string_view msg) {
    if (path.empty()) {
      st_->AddError(absl::StrCat(prefix_, ": ", msg));
    } else {
      st_->AddError(absl::StrCat(prefix_, ": ", path, ": ", msg));
    }
  }

  void Unknown(absl::string_view path) {
    if (st_->options->strict) {
      Error(path, "unknown field");
    } else if (st_->warnings->size() < kMaxWarnings) {
      st_->warnings->push_back(absl::StrCat(prefix_, ": ", path, ": unknown field (ignored)"));
    } else {
      ++st_->suppressed_warnings;
    }
  }

  // Counts a visited node; false (with an error, once) when the budget is exhausted.
  bool Visit(absl::string_view path) {
    if (st_->aborted) return false;
    if (++st_->nodes > st_->max_nodes) {
      st_->aborted = true;
      Error(path, absl::StrCat("too many nodes after alias expansion (limit ", st_->max_nodes,
                               " for this input)"));
      return false;
    }
    return true;
  }

  // A map (null: empty). nullopt after reporting a wrong type or bad keys.
  std::optional<Fields> Map(const YAML::Node& n, absl::string_view path) {
    if (!Visit(path)) return std::nullopt;
    Fields f;
    if (n.IsNull()) return f;
    if (!n.IsMap()) {
      Error(path, absl::StrCat("must be a map, got ", Describe(n)));
      return std::nullopt;
    }
    std::set<std::string> seen;
    bool good = true;
    for (auto it = n.begin(); it != n.end(); ++it) {
      if (!Visit(path)) return std::nullopt;
      const YAML::Node key = it->first;  // it-> yields a temporary: copy
      if (!key.IsScalar()) {
        Error(path, absl::StrCat("keys must be strings, got ", Describe(key)));
        good = false;
        continue;
      }
      const std::string& k = key.Scalar();
      if (!seen.insert(k).second) {
        Error(PathKey(path, k), "duplicate key");
        good = false;
        continue;
      }
      f.Add(k, it->second);
    }
    if (!good) return std::nullopt;
    return f;
  }

  // A list (null: empty).
  std::optional<std::vector<YAML::Node>> List(const YAML::Node& n, absl::string_view path) {
    if (!Visit(path)) return std::nullopt;
    std::vector<YAML::Node> out;
    if (n.IsNull()) return out;
    if (!n.IsSequence()) {
      Error(path, absl::StrCat("must be a list, got ", Describe(n)));
      return std::nullopt;
    }
    for (auto it = n.begin(); it != n.end(); ++it) {
      if (!Visit(path)) return std::nullopt;
      out.push_back(*it);
    }
    return out;
  }

  // Reports every field of `f` not in `known` as unknown.
  void CheckFields(const Fields& f, absl::string_view path,
                   std::initializer_list<absl::string_view> known) {
    for (const auto& [k, v] : f.entries()) {
      if (std::find(known.begin(), known.end(), k) == known.end()) {
        Unknown(path.empty() ? k : absl::StrCat(path, ".", k));
      }
    }
  }

  // A string; nullopt when null (absent) or after reporting a wrong type.
  std::optional<std::string> String(const YAML::Node& n, absl::string_view path) {
    if (!Visit(path) || n.IsNull()) return std::nullopt;
    if (!n.IsScalar() || Resolve(n) != ScalarType::kString) {
      // YAML reads unquoted 1, 1.0, yes, n or on as numbers and booleans; say how to fix it.
      Error(path,
            absl::StrCat("must be a string, got ", Describe(n), n.IsScalar() ? " (quote it)" : ""));
      return std::nullopt;
    }
    return n.Scalar();
  }

  std::optional<bool> Bool(const YAML::Node& n, absl::string_view path) {
    if (!Visit(path) || n.IsNull()) return std::nullopt;
    if (!n.IsScalar() || Resolve(n) != ScalarType::kBool) {
      Error(path, absl::StrCat("must be a boolean, got ", Describe(n)));
      return std::nullopt;
    }
    return ParseBool(n.Scalar());
  }

  // An integer in [lo, hi]; nullopt when null or after reporting.
  std::optional<int64_t> Int(const YAML::Node& n, absl::string_view path, int64_t lo, int64_t hi) {
    if (!Visit(path) || n.IsNull()) return std::nullopt;
    if (!n.IsScalar() || Resolve(n) != ScalarType::kInt) {
      Error(path, absl::StrCat("must be an integer, got ", Describe(n)));
      return std::nullopt;
    }
    return IntInRange(n.Scalar(), path, lo, hi);
  }

  std::optional<int64_t> IntInRange(const std::string& text, absl::string_view path, int64_t lo,
                                    int64_t hi) {
    std::optional<int64_t> v = ParseInt(text);
    if (!v || *v < lo || *v > hi) {
      Error(path, absl::StrCat("must be between ", lo, " and ", hi, ", got ",
                               text.size() <= kMaxShown ? text : Show(text)));
      return std::nullopt;
    }
    return v;
  }

  // A required string field of a map.
  std::optional<std::string> RequiredString(const Fields& f, absl::string_view field,
                                            absl::string_view path) {
    std::string p = Child(path, field);
    YAML::Node n = f.Get(field);
    if (n.IsNull()) {
      Error(p, "required");
      return std::nullopt;
    }
    return String(n, p);
  }

  std::optional<Protocol> ProtocolField(const YAML::Node& n, absl::string_view path) {
    std::optional<std::string> s = String(n, path);
    if (!s) return n.IsNull() ? std::optional<Protocol>(Protocol::kTCP) : std::nullopt;
    if (*s == "TCP") return Protocol::kTCP;
    if (*s == "UDP") return Protocol::kUDP;
    if (*s == "SCTP") return Protocol::kSCTP;
    Error(path, absl::StrCat("unsupported value ", Show(*s), " (supported: TCP, UDP, SCTP)"));
    return std::nullopt;
  }

  void LabelsField(const YAML::Node& n, absl::string_view path, Labels* out) {
    std::optional<Fields> f = Map(n, path);
    if (!f) return;
    for (const auto& [k, v] : f->entries()) {
      if (!ok()) return;
      std::string p = PathKey(path, k);
      std::string problem = LabelKeyProblem(k);
      if (!problem.empty()) {
        Error(p, absl::StrCat("invalid label key: ", problem));
        continue;
      }
      std::string value;
      if (!v.IsNull()) {  // `key:` with no value is the empty string, as in Kubernetes
        std::optional<std::string> s = String(v, p);
        if (!s) continue;
        value = *s;
      }
      problem = LabelValueProblem(value);
      if (!problem.empty()) {
        Error(p, absl::StrCat("invalid label value ", Show(value), ": ", problem));
        continue;
      }
      (*out)[k] = value;
    }
  }

  std::optional<LabelSelector> Selector(const YAML::Node& n, absl::string_view path) {
    std::optional<Fields> f = Map(n, path);
    if (!f) return std::nullopt;
    CheckFields(*f, path, {"matchLabels", "matchExpressions"});
    LabelSelector sel;
    LabelsField(f->Get("matchLabels"), Child(path, "matchLabels"), &sel.match_labels);
    std::string epath = Child(path, "matchExpressions");
    std::optional<std::vector<YAML::Node>> exprs = List(f->Get("matchExpressions"), epath);
    if (!exprs) return sel;
    for (size_t i = 0; i < exprs->size() && ok(); ++i) {
      std::string p = Index(epath, i);
      std::optional<Fields> e = Map((*exprs)[i], p);
      if (!e) continue;
      CheckFields(*e, p, {"key", "operator", "values"});
      LabelSelectorRequirement req;
      if (std::optional<std::string> key = RequiredString(*e, "key", p)) {
        std::string problem = LabelKeyProblem(*key);
        if (!problem.empty()) {
          Error(Child(p, "key"), absl::StrCat("invalid label key ", Show(*key), ": ", problem));
        }
        req.key = *key;
      }
      std::optional<std::string> op = RequiredString(*e, "operator", p);
      bool want_values = true;
      if (op) {
        if (*op == "In") {
          req.op = LabelSelectorRequirement::Op::kIn;
        } else if (*op == "NotIn") {
          req.op = LabelSelectorRequirement::Op::kNotIn;
        } else if (*op == "Exists") {
          req.op = LabelSelectorRequirement::Op::kExists;
          want_values = false;
        } else if (*op == "DoesNotExist") {
          req.op = LabelSelectorRequirement::Op::kDoesNotExist;
          want_values = false;
        } else {
          Error(Child(p, "operator"),
                absl::StrCat("unsupported value ", Show(*op),
                             " (supported: In, NotIn, Exists, DoesNotExist)"));
          op.reset();
        }
      }
      std::string vpath = Child(p, "values");
      std::optional<std::vector<YAML::Node>> values = List(e->Get("values"), vpath);
      if (values) {
        for (size_t j = 0; j < values->size() && ok(); ++j) {
          std::string vp = Index(vpath, j);
          std::optional<std::string> v = String((*values)[j], vp);
          if (!v) {
            if ((*values)[j].IsNull()) Error(vp, "must be a string, got null");
            continue;
          }
          std::string problem = LabelValueProblem(*v);
          if (!problem.empty()) {
            Error(vp, absl::StrCat("invalid label value ", Show(*v), ": ", problem));
          }
          req.values.push_back(*v);
        }
        if (op && want_values && values->empty()) {
          Error(vpath, "must be non-empty when operator is In or NotIn");
        }
        if (op && !want_values && !values->empty()) {
          Error(vpath, "must be empty when operator is Exists or DoesNotExist");
        }
      }
      sel.match_expressions.push_back(std::move(req));
    }
    return sel;
  }

 private:
  LoadState* st_;
  std::string prefix_;
};

// What the walker learns from metadata.
struct Meta {
  std::string name;
  std::string namespace_name;
  Labels labels;
};

enum class Kind { kNamespace, kPod, kNetworkPolicy, kList };

const char* KindLower(Kind k) {
  switch (k) {
    case Kind::kNamespace:
      return "namespace";
    case Kind::kPod:
      return "pod";
    case Kind::kNetworkPolicy:
      return "networkpolicy";
    case Kind::kList:
      return "list";
  }
  return "";
}

void ParseMeta(Walker& w, Kind kind, const YAML::Node& node, Meta* meta) {
  std::optional<Fields> f = w.Map(node, "metadata");
  if (!f) return;
  if (kind == Kind::kNetworkPolicy) {
    // ObjectMeta (meta/v1): the fields a NetworkPolicy's metadata may carry.
    w.CheckFields(
        *f, "metadata",
        {"name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
         "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
         "annotations", "ownerReferences", "finalizers", "managedFields"});
  }
  if (std::optional<std::string> name = w.RequiredString(*f, "name", "metadata")) {
    bool label = kind == Kind::kNamespace;
    bool valid = label ? IsDnsLabelText(*name) : IsDnsSubdomainText(*name);
    if (!valid) {
      w.Error("metadata.name", absl::StrCat("invalid name ", Show(*name), ": ",
                                            label ? kDnsLabelRule : kDnsSubdomainRule));
    }
    meta->name = *name;
  }
  if (kind != Kind::kNamespace) {
    meta->namespace_name = w.default_namespace();
    if (std::optional<std::string> ns = w.String(f->Get("namespace"), "metadata.namespace")) {
      if (!IsDnsLabelText(*ns)) {
        w.Error("metadata.namespace",
                absl::StrCat("invalid namespace ", Show(*ns), ": ", kDnsLabelRule));
      }
      meta->namespace_name = *ns;
    }
  }
  w.LabelsField(f->Get("labels"), "metadata.labels", &meta->labels);
}

void ParseNamespace(Walker& w, const Fields& top, Namespace* ns) {
  Meta meta;
  ParseMeta(w, Kind::kNamespace, top.Get("metadata"), &meta);
  ns->name = meta.name;
  ns->labels = std::move(meta.labels);
  // Like the API server: the label always carries the namespace's own name.
  ns->labels[kNamespaceNameLabel] = ns->name;
}

void ParsePod(Walker& w, const Fields& top, Pod* pod) {
  Meta meta;
  ParseMeta(w, Kind::kPod, top.Get("metadata"), &meta);
  pod->name = meta.name;
  pod->namespace_name = meta.namespace_name;
  pod->labels = std::move(meta.labels);

  if (std::optional<Fields> spec = w.Map(top.Get("spec"), "spec")) {
    if (auto node = w.String(spec->Get("nodeName"), "spec.nodeName")) {
      if (!IsDnsSubdomainText(*node)) {
        w.Error("spec.nodeName",
                absl::StrCat("invalid node name ", Show(*node), ": ", kDnsSubdomainRule));
      }
      pod->node_name = *node;
    }
    if (auto host = w.Bool(spec->Get("hostNetwork"), "spec.hostNetwork")) {
      pod->host_network = *host;
    }
    std::set<std::string> names;
    auto containers = w.List(spec->Get("containers"), "spec.containers");
    for (size_t i = 0; containers && i < containers->size() && w.ok(); ++i) {
      std::string cpath = Index("spec.containers", i);
      std::optional<Fields> c = w.Map((*containers)[i], cpath);
      if (!c) continue;
      std::string ppath = Child(cpath, "ports");
      auto ports = w.List(c->Get("ports"), ppath);
      for (size_t j = 0; ports && j < ports->size() && w.ok(); ++j) {
        std::string p = Index(ppath, j);
        std::optional<Fields> port = w.Map((*ports)[j], p);
        if (!port) continue;
        ContainerPort cp;
        if (auto name = w.String(port->Get("name"), Child(p, "name"))) {
          std::string problem = PortNameProblem(*name);
          if (!problem.empty()) {
            w.Error(Child(p, "name"),
                    absl::StrCat("invalid port name ", Show(*name), ": ", problem));
          } else if (!names.insert(*name).second) {
            w.Error(Child(p, "name"), absl::StrCat("duplicate port name ", Show(*name)));
          }
          cp.name = *name;
        }
        YAML::Node number = port->Get("containerPort");
        if (number.IsNull()) {
          w.Error(Child(p, "containerPort"), "required");
        } else if (auto n = w.Int(number, Child(p, "containerPort"), 1, 65535)) {
          cp.container_port = static_cast<int32_t>(*n);
        }
        if (auto proto = w.ProtocolField(port->Get("protocol"), Child(p, "protocol"))) {
          cp.protocol = *proto;
        }
        pod->ports.push_back(std::move(cp));
      }
    }
  }

  if (std::optional<Fields> status = w.Map(top.Get("status"), "status")) {
    auto add = [&](const std::string& text, const std::string& path) {
      auto ip = IpAddr::Parse(text);
      if (!ip.ok()) {
        w.Error(path, std::string(ip.status().message()));
        return;
      }
      if (absl::Status mapped = RefuseV4Mapped(*ip); !mapped.ok()) {
        w.Error(path, std::string(mapped.message()));
        return;
      }
      if (std::find(pod->ips.begin(), pod->ips.end(), *ip) != pod->ips.end()) return;
      for (const IpAddr& other : pod->ips) {
        if (other.family == ip->family) {
          w.Error(path, absl::StrCat("a pod may have at most one address per family; ",
                                     other.ToString(), " and ", ip->ToString(), " conflict"));
          return;
        }
      }
      pod->ips.push_back(*ip);
    };
    if (auto ip = w.String(status->Get("podIP"), "status.podIP")) add(*ip, "status.podIP");
    auto ips = w.List(status->Get("podIPs"), "status.podIPs");
    for (size_t i = 0; ips && i < ips->size() && w.ok(); ++i) {
      std::string p = Index("status.podIPs", i);
      std::optional<Fields> entry = w.Map((*ips)[i], p);
      if (!entry) continue;
      if (auto ip = w.RequiredString(*entry, "ip", p)) add(*ip, Child(p, "ip"));
    }
  }
}

std::optional<Cidr> CidrField(Walker& w, const YAML::Node& n, const std::string& path) {
  std::optional<std::string> text = w.String(n, path);
  if (!text) {
    if (n.IsNull()) w.Error(path, "required");
    return std::nullopt;
  }
  auto c = Cidr::Parse(*text);
  if (!c.ok()) {
    w.Error(path, std::string(c.status().message()));
    return std::nullopt;
  }
  if (absl::Status mapped = RefuseV4Mapped(c->addr); !mapped.ok()) {
    w.Error(path, std::string(mapped.message()));
    return std::nullopt;
  }
  return *c;
}

void ParsePolicyPort(Walker& w, const YAML::Node& n, const std::string& path, PolicyPort* out) {
  std::optional<Fields> f = w.Map(n, path);
  if (!f) return;
  w.CheckFields(*f, path, {"protocol", "port", "endPort"});
  if (auto proto = w.ProtocolField(f->Get("protocol"), Child(path, "protocol"))) {
    out->protocol = *proto;
  }
  std::string ppath = Child(path, "port");
  YAML::Node port = f->Get("port");
  bool port_ok = true;
  if (!port.IsNull() && w.Visit(ppath)) {
    ScalarType t = port.IsScalar() ? Resolve(port) : ScalarType::kNull;
    if (port.IsScalar() && t == ScalarType::kInt) {
      auto v = w.IntInRange(port.Scalar(), ppath, 1, 65535);
      if (v) out->port = static_cast<int32_t>(*v);
      port_ok = v.has_value();
    } else if (port.IsScalar() && t == ScalarType::kString) {
      std::string problem = PortNameProblem(port.Scalar());
      if (!problem.empty()) {
        w.Error(ppath, absl::StrCat("invalid port name ", Show(port.Scalar()), ": ", problem));
        port_ok = false;
      }
      out->named_port = port.Scalar();
    } else {
      w.Error(ppath, absl::StrCat("must be a port number or name, got ", Describe(port)));
      port_ok = false;
    }
  }
  std::string epath = Child(path, "endPort");
  YAML::Node end = f->Get("endPort");
  if (!end.IsNull()) {
    auto e = w.Int(end, epath, 1, 65535);
    if (e) {
      out->end_port = static_cast<int32_t>(*e);
      std::string problem = EndPortProblem(*out);
      if (!problem.empty() && port_ok) w.Error(epath, problem);
    }
  }
}

void ParsePeer(Walker& w, const YAML::Node& n, const std::string& path, Peer* out) {
  std::optional<Fields> f = w.Map(n, path);
  if (!f) return;
  w.CheckFields(*f, path, {"podSelector", "namespaceSelector", "ipBlock"});
  YAML::Node pod = f->Get("podSelector");
  YAML::Node ns = f->Get("namespaceSelector");
  YAML::Node ip = f->Get("ipBlock");
  if (!pod.IsNull()) out->pod_selector = w.Selector(pod, Child(path, "podSelector"));
  if (!ns.IsNull()) out->namespace_selector = w.Selector(ns, Child(path, "namespaceSelector"));
  if (!ip.IsNull()) {
    std::string ipath = Child(path, "ipBlock");
    if (std::optional<Fields> b = w.Map(ip, ipath)) {
      w.CheckFields(*b, ipath, {"cidr", "except"});
      IPBlock block;
      std::optional<Cidr> cidr = CidrField(w, b->Get("cidr"), Child(ipath, "cidr"));
      if (cidr) block.cidr = *cidr;
      std::string epath = Child(ipath, "except");
      auto except = w.List(b->Get("except"), epath);
      for (size_t i = 0; except && i < except->size() && w.ok(); ++i) {
        std::string p = Index(epath, i);
        std::optional<Cidr> e = CidrField(w, (*except)[i], p);
        if (!e) continue;
        if (cidr && !(cidr->Contains(*e) && e->prefix > cidr->prefix)) {
          w.Error(p, absl::StrCat("must be strictly inside cidr ", cidr->ToString()));
        }
        block.except.push_back(*e);
      }
      out->ip_block = std::move(block);
    }
  }
  if (pod.IsNull() && ns.IsNull() && ip.IsNull()) {
    w.Error(path, "must specify at least one of podSelector, namespaceSelector, ipBlock");
  } else if (!ip.IsNull() && (!pod.IsNull() || !ns.IsNull())) {
    w.Error(path, "ipBlock may not be combined with podSelector or namespaceSelector");
  }
}

void ParseRules(Walker& w, const YAML::Node& n, const std::string& path, bool ingress,
                std::vector<Rule>* out) {
  const char* peers_field = ingress ? "from" : "to";
  auto rules = w.List(n, path);
  for (size_t i = 0; rules && i < rules->size() && w.ok(); ++i) {
    std::string rpath = Index(path, i);
    std::optional<Fields> f = w.Map((*rules)[i], rpath);
    if (!f) continue;
    w.CheckFields(*f, rpath, {"ports", peers_field});
    Rule rule;
    std::string ppath = Child(rpath, "ports");
    auto ports = w.List(f->Get("ports"), ppath);
    for (size_t j = 0; ports && j < ports->size() && w.ok(); ++j) {
      PolicyPort port;
      ParsePolicyPort(w, (*ports)[j], Index(ppath, j), &port);
      rule.ports.push_back(std::move(port));
    }
    std::string peer_path = Child(rpath, peers_field);
    auto peers = w.List(f->Get(peers_field), peer_path);
    for (size_t j = 0; peers && j < peers->size() && w.ok(); ++j) {
      Peer peer;
      ParsePeer(w, (*peers)[j], Index(peer_path, j), &peer);
      rule.peers.push_back(std::move(peer));
    }
    out->push_back(std::move(rule));
  }
}

void ParsePolicy(Walker& w, const Fields& top, NetworkPolicy* np) {
  Meta meta;
  ParseMeta(w, Kind::kNetworkPolicy, top.Get("metadata"), &meta);
  np->name = meta.name;
  np->namespace_name = meta.namespace_name;
  std::optional<Fields> spec = w.Map(top.Get("spec"), "spec");
  if (!spec) return;
  w.CheckFields(*spec, "spec", {"podSelector", "ingress", "egress", "policyTypes"});
  if (auto sel = w.Selector(spec->Get("podSelector"), "spec.podSelector")) {
    np->pod_selector = std::move(*sel);
  }
  ParseRules(w, spec->Get("ingress"), "spec.ingress", true, &np->ingress);
  ParseRules(w, spec->Get("egress"), "spec.egress", false, &np->egress);
  auto types = w.List(spec->Get("policyTypes"), "spec.policyTypes");
  if (!types) return;
  if (types->empty()) {
    // Defaulting, as the API server does when policyTypes is absent or empty.
    np->ingress_type = true;
    np->egress_type = !np->egress.empty();
    return;
  }
  if (types->size() > 2) {
    w.Error("spec.policyTypes", "may not have more than 2 entries");
  }
  for (size_t i = 0; i < types->size() && w.ok(); ++i) {
    std::string p = Index("spec.policyTypes", i);
    std::optional<std::string> t = w.String((*types)[i], p);
    if (!t) {
      if ((*types)[i].IsNull()) w.Error(p, "must be a string, got null");
      continue;
    }
    if (*t == "Ingress") {
      np->ingress_type = true;
    } else if (*t == "Egress") {
      np->egress_type = true;
    } else {
      w.Error(p, absl::StrCat("unsupported value ", Show(*t), " (supported: Ingress, Egress)"));
    }
  }
}

struct KindInfo {
  const char* name;
  Kind kind;
  const char* api_version;
  const char* item_kind;  // typed lists: the kind of their items
};

constexpr KindInfo kKinds[] = {
    {"Namespace", Kind::kNamespace, "v1", nullptr},
    {"Pod", Kind::kPod, "v1", nullptr},
    {"NetworkPolicy", Kind::kNetworkPolicy, "networking.k8s.io/v1", nullptr},
    {"List", Kind::kList, "v1", nullptr},
    {"NamespaceList", Kind::kList, "v1", "Namespace"},
    {"PodList", Kind::kList, "v1", "Pod"},
    {"NetworkPolicyList", Kind::kList, "networking.k8s.io/v1", "NetworkPolicy"},
};

const KindInfo* FindKind(absl::string_view name) {
  for (const KindInfo& k : kKinds) {
    if (name == k.name) return &k;
  }
  return nullptr;
}

// Loads one object (or List) found at `locator` ("document 2", "document 1: items[3]").
// `default_kind` is the item kind of a typed list, whose items may omit kind and apiVersion.
void LoadObject(LoadState& st, const YAML::Node& doc, const std::string& locator, bool in_list,
                const KindInfo* default_kind, std::vector<Object>* out) {
  Walker dw(&st, locator);  // names the document until the object is identified
  std::optional<Fields> top;
  if (!doc.IsMap()) {
    dw.Error("", absl::StrCat("must be a map (a Kubernetes object), got ", Describe(doc)));
    return;
  }
  top = dw.Map(doc, "");
  if (!top) return;
  const KindInfo* info = default_kind;
  YAML::Node kind_node = top->Get("kind");
  if (!kind_node.IsNull() || !default_kind) {
    std::optional<std::string> kind = dw.String(kind_node, "kind");
    if (!kind) {
      if (kind_node.IsNull()) dw.Error("kind", "required");
      return;
    }
    info = FindKind(*kind);
    if (info == nullptr || (in_list && info->kind == Kind::kList)) {
      dw.Error("", absl::StrCat("unsupported kind ", Show(*kind),
                                " (supported: Namespace, Pod, "
                                "NetworkPolicy",
                                in_list ? ")" : ", List)"));
      return;
    }
  }

  // Name the object in messages as soon as its name is known.
  std::string ref = locator;
  if (info->kind != Kind::kList) {
    ref = absl::StrCat(locator, ": ", KindLower(info->kind));
    YAML::Node md = top->Get("metadata");
    if (md.IsMap()) {
      std::string name, ns = st.options->default_namespace;
      for (auto it = md.begin(); it != md.end(); ++it) {
        const YAML::Node key = it->first, value = it->second;
        if (!key.IsScalar() || !value.IsScalar() || Resolve(value) != ScalarType::kString) {
          continue;
        }
        if (key.Scalar() == "name" && name.empty()) name = value.Scalar();
        if (key.Scalar() == "namespace") ns = value.Scalar();
      }
      if (!name.empty()) {
        auto clip = [](const std::string& s) {
          return s.size() <= kMaxShown ? absl::CHexEscape(s)
                                       : absl::CHexEscape(s.substr(0, kMaxShown)) + "...";
        };
        ref = info->kind == Kind::kNamespace
                  ? absl::StrCat("namespace ", clip(name))
                  : absl::StrCat(KindLower(info->kind), " ", clip(ns), "/", clip(name));
      }
    }
  }
  Walker w(&st, ref);

  YAML::Node api = top->Get("apiVersion");
  if (!api.IsNull() || !default_kind) {
    std::optional<std::string> version = w.String(api, "apiVersion");
    if (!version && api.IsNull()) w.Error("apiVersion", "required");
    if (version && *version != info->api_version) {
      w.Error("apiVersion", absl::StrCat("unsupported value ", Show(*version), " for kind ",
                                         info->name, " (supported: ", info->api_version, ")"));
    }
  }

  switch (info->kind) {
    case Kind::kList: {
      w.CheckFields(*top, "", {"apiVersion", "kind", "metadata", "items"});
      w.Map(top->Get("metadata"), "metadata");
      const KindInfo* item_kind = info->item_kind ? FindKind(info->item_kind) : nullptr;
      auto items = w.List(top->Get("items"), "items");
      for (size_t i = 0; items && i < items->size() && !st.aborted; ++i) {
        LoadObject(st, (*items)[i], Index(absl::StrCat(locator, ": items"), i), true, item_kind,
                   out);
      }
      return;
    }
    case Kind::kNamespace: {
      w.CheckFields(*top, "", {"apiVersion", "kind", "metadata", "spec", "status"});
      Namespace ns;
      ParseNamespace(w, *top, &ns);
      out->push_back(Object{std::move(ns)});
      return;
    }
    case Kind::kPod: {
      w.CheckFields(*top, "", {"apiVersion", "kind", "metadata", "spec", "status"});
      Pod pod;
      ParsePod(w, *top, &pod);
      out->push_back(Object{std::move(pod)});
      return;
    }
    case Kind::kNetworkPolicy: {
      // `status` existed in networking.k8s.io/v1 from 1.24 to 1.27; exports may still carry it.
      w.CheckFields(*top, "", {"apiVersion", "kind", "metadata", "spec", "status"});
      NetworkPolicy np;
      ParsePolicy(w, *top, &np);
      out->push_back(Object{std::move(np)});
      return;
    }
  }
}

// A syntax pass over the event stream, before yaml-cpp's LoadAll builds nodes. It finds which
// document a parse error is in, and it stops the parser where it makes no progress: yaml-cpp 0.7
// reports a stray "," at document level as an endless series of empty documents starting at the
// same position (LoadAll would loop allocating forever; jbeder/yaml-cpp#1040).
class SyntaxChecker : public YAML::EventHandler {
 public:
  struct Stuck {
    YAML::Mark mark;
  };
  int documents = 0;
  std::vector<int> starts;  // per document: the offset of its first token ("---" or content)

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (documents > 0 && mark.pos == last_start_) throw Stuck{mark};
    last_start_ = mark.pos;
    starts.push_back(mark.pos);
    ++documents;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

 private:
  int last_start_ = -1;
};

std::string At(const YAML::Mark& mark) {
  return absl::StrCat("line ", mark.line + 1, ", column ", mark.column + 1, ": ");
}

// Returns "document N: line L, column C: what" for text that does not parse, "" when it does.
// Fills `starts` with the offset of each document's first token.
std::string CheckSyntax(const std::string& text, std::vector<int>* starts) {
  std::istringstream in(text);
  SyntaxChecker checker;
  auto doc = [&checker] { return absl::StrCat("document ", std::max(checker.documents, 1), ": "); };
  try {
    YAML::Parser parser(in);
    while (parser.HandleNextDocument(checker)) {
    }
  } catch (const SyntaxChecker::Stuck& s) {
    std::string what = s.mark.pos >= 0 && static_cast<size_t>(s.mark.pos) < text.size()
                           ? Show(text.substr(s.mark.pos, 1))
                           : "input";
    // The stray token opened a document of its own after the one a reader sees it in (which
    // starts with "---" and is otherwise empty), so that one is named.
    return absl::StrCat("document ", std::max(checker.documents - 1, 1), ": ", At(s.mark),
                        "unexpected ", what);
  } catch (const YAML::DeepRecursion& e) {
    // yaml-cpp reports its nesting guard as "bad file"; say what is wrong.
    return absl::StrCat(doc(), At(e.mark), "nested too deeply (at most ", e.depth() - 1,
                        " levels)");
  } catch (const YAML::Exception& e) {
    return absl::StrCat(doc(), At(e.mark), e.msg);
  } catch (const std::exception& e) {
    return absl::StrCat(doc(), e.what());
  }
  *starts = std::move(checker.starts);
  return "";
}

// Reads characters [begin, end) of a string without copying them.
class ViewBuf : public std::streambuf {
 public:
  ViewBuf(const char* begin, const char* end) {
    char* b = const_cast<char*>(begin);
    setg(b, b, const_cast<char*>(end));
  }
};

// Where document i's text can be parsed from on its own: document 0 from the start, every other
// one from the start of the line of its first token. Empty when the stream cannot be cut that
// way: a directive (%YAML, %TAG) applies to the document after it, and a first token with text
// before it on its line would be read at the wrong indentation.
std::vector<size_t> DocumentOffsets(const std::string& text, const std::vector<int>& starts) {
  for (size_t i = 0; i < text.size();) {
    if (text[i] == '%') return {};
    const size_t eol = text.find('\n', i);
    if (eol == std::string::npos) break;
    i = eol + 1;
  }
  std::vector<size_t> out;
  for (size_t i = 0; i < starts.size(); ++i) {
    if (i == 0) {
      out.push_back(0);
      continue;
    }
    if (starts[i] < 0 || static_cast<size_t>(starts[i]) > text.size() ||
        starts[i] <= starts[i - 1]) {
      return {};
    }
    size_t begin = static_cast<size_t>(starts[i]);
    while (begin > 0 && text[begin - 1] != '\n') {
      if (text[begin - 1] != ' ' && text[begin - 1] != '\t') return {};
      --begin;
    }
    out.push_back(begin);
  }
  return out;
}

}  // namespace

// The one refusal of an input beyond `limit` bytes, `prefix` naming it ("t.yaml: ").
absl::Status TooLarge(const std::string& prefix, uintmax_t size, size_t limit) {
  std::string mib = limit % (1 << 20) == 0 ? absl::StrCat(" (", limit >> 20, " MiB)") : "";
  return absl::ResourceExhaustedError(absl::StrCat(prefix, "input is ", size,
                                                   " bytes, more than the limit of ", limit, mib));
}

absl::Status ValidateDnsLabel(absl::string_view what, absl::string_view value) {
  if (IsDnsLabelText(value)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": invalid name ", Show(value), ": ", kDnsLabelRule));
}

absl::Status ValidateDnsSubdomain(absl::string_view what, absl::string_view value) {
  if (IsDnsSubdomainText(value)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": invalid name ", Show(value), ": ", kDnsSubdomainRule));
}

absl::StatusOr<LoadResult> LoadYaml(absl::string_view text, const LoadOptions& options) {
  LoadResult result;
  LoadState st;
  st.options = &options;
  st.warnings = &result.warnings;
  st.max_nodes = kNodesPerByte * text.size() + kNodeSlack;
  if (absl::Status ns = ValidateDnsLabel("default namespace", options.default_namespace);
      !ns.ok()) {
    return absl::InvalidArgumentError(st.Prefix(std::string(ns.message())));
  }
  if (text.size() > options.max_bytes) {
    return TooLarge(st.Prefix(""), text.size(), options.max_bytes);
  }
  std::string copy(text);
  std::vector<int> starts;
  if (std::string problem = CheckSyntax(copy, &starts); !problem.empty()) {
    return absl::InvalidArgumentError(st.Prefix(problem));
  }
  // One document's node tree at a time where the stream can be cut at document starts (a
  // manifest of thousands of objects would otherwise hold all their trees at once), else all.
  const std::vector<size_t> offsets = DocumentOffsets(copy, starts);
  std::vector<YAML::Node> docs;
  if (offsets.empty()) {
    try {
      docs = YAML::LoadAll(copy);
    } catch (const std::exception& e) {  // not expected after CheckSyntax passed
      return absl::InvalidArgumentError(st.Prefix(e.what()));
    }
  }
  const size_t count = offsets.empty() ? docs.size() : offsets.size();
  for (size_t i = 0; i < count && !st.aborted; ++i) {
    std::optional<YAML::Node> own;  // document i's tree when parsed here, freed after its turn
    if (!offsets.empty()) {
      try {
        ViewBuf buf(copy.data() + offsets[i], copy.data() + copy.size());
        std::istream in(&buf);
        own.emplace(YAML::Load(in));  // the first document from there: document i
      } catch (const std::exception& e) {  // not expected after CheckSyntax passed
        return absl::InvalidArgumentError(st.Prefix(e.what()));
      }
    }
    const YAML::Node& doc = own ? *own : docs[i];
    if (doc.IsNull()) continue;  // empty document, e.g. a trailing "---"
    std::string locator = absl::StrCat("document ", i + 1);
    try {
      LoadObject(st, doc, locator, false, nullptr, &result.objects);
    } catch (const std::exception& e) {
      st.AddError(st.Prefix(absl::StrCat(locator, ": unreadable: ", e.what())));
    }
  }
  if (st.suppressed_warnings > 0) {
    result.warnings.push_back(
        st.Prefix(absl::StrCat("... and ", st.suppressed_warnings, " more warnings")));
  }
  if (!st.errors.empty()) {
    std::string msg = absl::StrJoin(st.errors, "\n");
    if (st.suppressed_errors > 0) {
      absl::StrAppend(&msg, "\n... and ", st.suppressed_errors, " more errors");
    }
    return absl::InvalidArgumentError(msg);
  }
  return result;
}

absl::StatusOr<LoadResult> LoadFile(const std::string& path, const LoadOptions& options) {
  LoadOptions opts = options;
  if (opts.source.empty()) opts.source = path;
  std::error_code ec;
  uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) {
    std::string msg = absl::StrCat(opts.source, ": ", ec.message());
    if (ec == std::errc::no_such_file_or_directory) return absl::NotFoundError(msg);
    if (ec == std::errc::permission_denied) return absl::PermissionDeniedError(msg);
    return absl::InvalidArgumentError(msg);
  }
  if (size > opts.max_bytes) return TooLarge(opts.source + ": ", size, opts.max_bytes);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    std::string msg = absl::StrCat(opts.source, ": ", std::strerror(err));
    if (err == EACCES) return absl::PermissionDeniedError(msg);
    return absl::InvalidArgumentError(msg);
  }
  // Read one byte past the limit so a file that grew after the size check is still caught.
  std::string text(
      (opts.max_bytes == std::numeric_limits<size_t>::max() ? size : opts.max_bytes) + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat(opts.source, ": read error"));
  }
  text.resize(static_cast<size_t>(in.gcount()));
  return LoadYaml(text, opts);
}

absl::StatusOr<LoadResult> LoadPath(const std::string& path, const LoadOptions& options) {
  std::error_code ec;
  if (!std::filesystem::is_directory(path, ec)) return LoadFile(path, options);
  std::vector<std::string> files;
  for (std::filesystem::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (!absl::EndsWith(name, ".yaml") && !absl::EndsWith(name, ".yml") &&
        !absl::EndsWith(name, ".json")) {
      continue;
    }
    std::error_code fec;
    if (!it->is_regular_file(fec)) continue;
    files.push_back(it->path().string());
  }
  if (ec) return absl::InvalidArgumentError(absl::StrCat(path, ": ", ec.message()));
  std::sort(files.begin(), files.end());
  LoadResult all;
  for (const std::string& file : files) {
    LoadOptions opts = options;
    opts.source = file;
    absl::StatusOr<LoadResult> r = LoadFile(file, opts);
    if (!r.ok()) return r.status();
    for (Object& o : r->objects) all.objects.push_back(std::move(o));
    for (std::string& wmsg : r->warnings) all.warnings.push_back(std::move(wmsg));
  }
  return all;
}

// ---------------------------------------------------------------------------------------------
// Writing.

namespace {

// Strings that a YAML 1.1 reader would take for something else are double-quoted.
void EmitString(YAML::Emitter& e, const std::string& s) {
  if (ResolvePlain(s) != ScalarType::kString) {
    e << YAML::DoubleQuoted << s;
  } else {
    e << s;
  }
}

void EmitKey(YAML::Emitter& e, const char* key) { e << YAML::Key << key << YAML::Value; }

void EmitLabels(YAML::Emitter& e, const Labels& labels) {
  if (labels.empty()) {
    e << YAML::Flow << YAML::BeginMap << YAML::EndMap;
    return;
  }
  e << YAML::BeginMap;
  for (const auto& [k, v] : labels) {
    e << YAML::Key;
    EmitString(e, k);
    e << YAML::Value;
    EmitString(e, v);
  }
  e << YAML::EndMap;
}

void EmitMeta(YAML::Emitter& e, const std::string& name, const std::string* ns,
              const Labels& labels) {
  EmitKey(e, "metadata");
  e << YAML::BeginMap;
  EmitKey(e, "name");
  EmitString(e, name);
  if (ns != nullptr) {
    EmitKey(e, "namespace");
    EmitString(e, *ns);
  }
  if (!labels.empty()) {
    EmitKey(e, "labels");
    EmitLabels(e, labels);
  }
  e << YAML::EndMap;
}

void EmitSelector(YAML::Emitter& e, const LabelSelector& s) {
  if (s.Empty()) {
    e << YAML::Flow << YAML::BeginMap << YAML::EndMap;
    return;
  }
  e << YAML::BeginMap;
  if (!s.match_labels.empty()) {
    EmitKey(e, "matchLabels");
    EmitLabels(e, s.match_labels);
  }
  if (!s.match_expressions.empty()) {
    EmitKey(e, "matchExpressions");
    e << YAML::BeginSeq;
    for (const LabelSelectorRequirement& r : s.match_expressions) {
      e << YAML::BeginMap;
      EmitKey(e, "key");
      EmitString(e, r.key);
      EmitKey(e, "operator");
      switch (r.op) {
        case LabelSelectorRequirement::Op::kIn:
          e << "In";
          break;
        case LabelSelectorRequirement::Op::kNotIn:
          e << "NotIn";
          break;
        case LabelSelectorRequirement::Op::kExists:
          e << "Exists";
          break;
        case LabelSelectorRequirement::Op::kDoesNotExist:
          e << "DoesNotExist";
          break;
      }
      if (!r.values.empty()) {
        EmitKey(e, "values");
        e << YAML::BeginSeq;
        for (const std::string& v : r.values) EmitString(e, v);
        e << YAML::EndSeq;
      }
      e << YAML::EndMap;
    }
    e << YAML::EndSeq;
  }
  e << YAML::EndMap;
}

void EmitRules(YAML::Emitter& e, const char* field, const char* peers_field,
               const std::vector<Rule>& rules) {
  if (rules.empty()) return;
  EmitKey(e, field);
  e << YAML::BeginSeq;
  for (const Rule& r : rules) {
    if (r.ports.empty() && r.peers.empty()) {
      e << YAML::Flow << YAML::BeginMap << YAML::EndMap;
      continue;
    }
    e << YAML::BeginMap;
    if (!r.peers.empty()) {
      EmitKey(e, peers_field);
      e << YAML::BeginSeq;
      for (const Peer& peer : r.peers) {
        e << YAML::BeginMap;
        if (peer.pod_selector) {
          EmitKey(e, "podSelector");
          EmitSelector(e, *peer.pod_selector);
        }
        if (peer.namespace_selector) {
          EmitKey(e, "namespaceSelector");
          EmitSelector(e, *peer.namespace_selector);
        }
        if (peer.ip_block) {
          EmitKey(e, "ipBlock");
          e << YAML::BeginMap;
          EmitKey(e, "cidr");
          e << peer.ip_block->cidr.ToString();
          if (!peer.ip_block->except.empty()) {
            EmitKey(e, "except");
            e << YAML::BeginSeq;
            for (const Cidr& c : peer.ip_block->except) e << c.ToString();
            e << YAML::EndSeq;
          }
          e << YAML::EndMap;
        }
        e << YAML::EndMap;
      }
      e << YAML::EndSeq;
    }
    if (!r.ports.empty()) {
      EmitKey(e, "ports");
      e << YAML::BeginSeq;
      for (const PolicyPort& p : r.ports) {
        e << YAML::BeginMap;
        EmitKey(e, "protocol");
        e << ProtocolName(p.protocol);
        if (p.port) {
          EmitKey(e, "port");
          e << *p.port;
        } else if (p.named_port) {
          EmitKey(e, "port");
          EmitString(e, *p.named_port);
        }
        if (p.end_port) {
          EmitKey(e, "endPort");
          e << *p.end_port;
        }
        e << YAML::EndMap;
      }
      e << YAML::EndSeq;
    }
    e << YAML::EndMap;
  }
  e << YAML::EndSeq;
}

void EmitObject(YAML::Emitter& e, const Object& object) {
  e << YAML::BeginMap;
  if (const Namespace* ns = object.AsNamespace()) {
    EmitKey(e, "apiVersion");
    e << "v1";
    EmitKey(e, "kind");
    e << "Namespace";
    EmitMeta(e, ns->name, nullptr, ns->labels);
  } else if (const Pod* pod = object.AsPod()) {
    EmitKey(e, "apiVersion");
    e << "v1";
    EmitKey(e, "kind");
    e << "Pod";
    EmitMeta(e, pod->name, &pod->namespace_name, pod->labels);
    EmitKey(e, "spec");
    e << YAML::BeginMap;
    if (!pod->node_name.empty()) {
      EmitKey(e, "nodeName");
      EmitString(e, pod->node_name);
    }
    if (pod->host_network) {
      EmitKey(e, "hostNetwork");
      e << true;
    }
    EmitKey(e, "containers");
    e << YAML::BeginSeq << YAML::BeginMap;
    EmitKey(e, "name");
    e << "main";
    if (!pod->ports.empty()) {
      EmitKey(e, "ports");
      e << YAML::BeginSeq;
      for (const ContainerPort& p : pod->ports) {
        e << YAML::BeginMap;
        if (!p.name.empty()) {
          EmitKey(e, "name");
          EmitString(e, p.name);
        }
        EmitKey(e, "containerPort");
        e << p.container_port;
        EmitKey(e, "protocol");
        e << ProtocolName(p.protocol);
        e << YAML::EndMap;
      }
      e << YAML::EndSeq;
    }
    e << YAML::EndMap << YAML::EndSeq;
    e << YAML::EndMap;
    if (!pod->ips.empty()) {
      EmitKey(e, "status");
      e << YAML::BeginMap;
      EmitKey(e, "podIP");
      e << pod->ips.front().ToString();
      EmitKey(e, "podIPs");
      e << YAML::BeginSeq;
      for (const IpAddr& ip : pod->ips) {
        e << YAML::BeginMap;
        EmitKey(e, "ip");
        e << ip.ToString();
        e << YAML::EndMap;
      }
      e << YAML::EndSeq;
      e << YAML::EndMap;
    }
  } else if (const NetworkPolicy* np = object.AsNetworkPolicy()) {
    EmitKey(e, "apiVersion");
    e << "networking.k8s.io/v1";
    EmitKey(e, "kind");
    e << "NetworkPolicy";
    EmitMeta(e, np->name, &np->namespace_name, {});
    EmitKey(e, "spec");
    e << YAML::BeginMap;
    EmitKey(e, "podSelector");
    EmitSelector(e, np->pod_selector);
    EmitKey(e, "policyTypes");
    e << YAML::Flow << YAML::BeginSeq;
    if (np->ingress_type) e << "Ingress";
    if (np->egress_type) e << "Egress";
    e << YAML::EndSeq;
    EmitRules(e, "ingress", "from", np->ingress);
    EmitRules(e, "egress", "to", np->egress);
    e << YAML::EndMap;
  }
  e << YAML::EndMap;
}

}  // namespace

std::string ToYaml(const Object& object) {
  YAML::Emitter e;
  EmitObject(e, object);
  std::string out = e.c_str();
  out += "\n";
  return out;
}

std::string ToYaml(const std::vector<Object>& objects) {
  std::string out;
  for (size_t i = 0; i < objects.size(); ++i) {
    if (i > 0) out += "---\n";
    out += ToYaml(objects[i]);
  }
  return out;
}

}  // namespace netpol
