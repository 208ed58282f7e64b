// Label selector matching and kubectl-style rendering.
#include "engine/selector/selector.h"

#include <algorithm>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace netpol {

namespace {

bool Contains(const std::vector<std::string>& values, const std::string& v) {
  return std::find(values.begin(), values.end(), v) != values.end();
}

}  // namespace

bool Matches(const LabelSelector& selector, const Labels& labels) {
  for (const auto& [key, value] : selector.match_labels) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) return false;
  }
  for (const LabelSelectorRequirement& r : selector.match_expressions) {
    auto it = labels.find(r.key);
    bool present = it != labels.end();
    switch (r.op) {
      case LabelSelectorRequirement::Op::kIn:
        if (!present || !Contains(r.values, it->second)) return false;
        break;
      case LabelSelectorRequirement::Op::kNotIn:
        if (present && Contains(r.values, it->second)) return false;
        break;
      case LabelSelectorRequirement::Op::kExists:
        if (!present) return false;
        break;
      case LabelSelectorRequirement::Op::kDoesNotExist:
        if (present) return false;
        break;
    }
  }
  return true;
}

std::string SelectorString(const LabelSelector& selector) {
  if (selector.Empty()) return "<all>";
  // Like labels.Selector.String(): requirements sorted by key (stable, so matchLabels come
  // before expressions on the same key), values sorted and de-duplicated.
  std::vector<std::pair<std::string, std::string>> parts;
  for (const auto& [key, value] : selector.match_labels) {
    parts.emplace_back(key, absl::StrCat(key, "=", value));
  }
  for (const LabelSelectorRequirement& r : selector.match_expressions) {
    std::set<std::string> values(r.values.begin(), r.values.end());
    std::string text;
    switch (r.op) {
      case LabelSelectorRequirement::Op::kIn:
        text = absl::StrCat(r.key, " in (", absl::StrJoin(values, ","), ")");
        break;
      case LabelSelectorRequirement::Op::kNotIn:
        text = absl::StrCat(r.key, " notin (", absl::StrJoin(values, ","), ")");
        break;
      case LabelSelectorRequirement::Op::kExists:
        text = r.key;
        break;
      case LabelSelectorRequirement::Op::kDoesNotExist:
        text = absl::StrCat("!", r.key);
        break;
    }
    parts.emplace_back(r.key, std::move(text));
  }
  std::stable_sort(parts.begin(), parts.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> texts;
  for (auto& p : parts) texts.push_back(std::move(p.second));
  return absl::StrJoin(texts, ",");
}

}  // namespace netpol
