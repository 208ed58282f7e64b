// Kubernetes name, label and port-name rules.
#include "engine/model/names.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace netpol {
namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlnum(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)); }

bool IsLabelNameText(absl::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  if (!IsAlnum(s.front()) || !IsAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return IsAlnum(c) || c == '-' || c == '_' || c == '.'; });
}

}  // namespace

std::string Show(absl::string_view s) {
  if (s.size() <= kMaxShown) return absl::StrCat("\"", absl::CHexEscape(s), "\"");
  return absl::StrCat("\"", absl::CHexEscape(s.substr(0, kMaxShown)), "\"...");
}

std::string Clip(absl::string_view s) {
  if (s.size() <= kMaxShown) return absl::CHexEscape(s);
  return absl::StrCat(absl::CHexEscape(s.substr(0, kMaxShown)), "...");
}

const char kDnsLabelRule[] =
    "must be a lowercase RFC 1123 label (lowercase alphanumerics or '-', starting and ending "
    "with an alphanumeric, at most 63 characters)";
const char kDnsSubdomainRule[] =
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

}  // namespace netpol
