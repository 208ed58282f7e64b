// YAML 1.1 scalar resolution (see yaml_scalar.h).
#include "engine/model/yaml_scalar.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/model/names.h"

namespace netpol::yaml11 {
namespace {

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

}  // namespace

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

}  // namespace netpol::yaml11
