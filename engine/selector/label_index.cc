#include "engine/selector/label_index.h"

#include <algorithm>
#include <utility>

#include "engine/selector/selector.h"

namespace netpol {

void LabelIndex::Set(const std::string& id, const Labels& labels) {
  Erase(id);
  for (const auto& [k, v] : labels) {
    by_kv_[k][v].insert(id);
    ++key_count_[k];
  }
  labels_.emplace(id, labels);
}

void LabelIndex::Erase(const std::string& id) {
  auto it = labels_.find(id);
  if (it == labels_.end()) return;
  for (const auto& [k, v] : it->second) {
    auto by_k = by_kv_.find(k);
    auto by_v = by_k->second.find(v);
    by_v->second.erase(id);
    if (by_v->second.empty()) by_k->second.erase(by_v);
    if (by_k->second.empty()) by_kv_.erase(by_k);
    auto n = key_count_.find(k);
    if (--n->second == 0) key_count_.erase(n);
  }
  labels_.erase(it);
}

const Labels* LabelIndex::Find(const std::string& id) const {
  auto it = labels_.find(id);
  return it == labels_.end() ? nullptr : &it->second;
}

void LabelIndex::clear() {
  labels_.clear();
  by_kv_.clear();
  key_count_.clear();
}

const std::set<std::string>* LabelIndex::Ids(const std::string& key,
                                             const std::string& value) const {
  auto by_k = by_kv_.find(key);
  if (by_k == by_kv_.end()) return nullptr;
  auto by_v = by_k->second.find(value);
  return by_v == by_k->second.end() ? nullptr : &by_v->second;
}

LabelIndex::Candidates LabelIndex::Narrow(const LabelSelector& selector) const {
  Candidates best;  // every object
  best.count = labels_.size();
  auto consider = [&](Candidates c) {
    if (best.all || c.count < best.count) best = std::move(c);
  };
  for (const auto& [k, v] : selector.match_labels) {
    Candidates c;
    c.all = false;
    if (const std::set<std::string>* ids = Ids(k, v)) {
      c.sets.push_back(ids);
      c.count = ids->size();
    }
    consider(std::move(c));
  }
  for (const LabelSelectorRequirement& r : selector.match_expressions) {
    Candidates c;
    c.all = false;
    if (r.op == LabelSelectorRequirement::Op::kIn) {
      std::set<std::string> values(r.values.begin(), r.values.end());
      for (const std::string& v : values) {
        if (const std::set<std::string>* ids = Ids(r.key, v)) {
          c.sets.push_back(ids);
          c.count += ids->size();
        }
      }
    } else if (r.op == LabelSelectorRequirement::Op::kExists) {
      auto by_k = by_kv_.find(r.key);
      if (by_k != by_kv_.end()) {
        for (const auto& [v, ids] : by_k->second) c.sets.push_back(&ids);
        c.count = key_count_.at(r.key);
      }
    } else {
      continue;  // NotIn, DoesNotExist: checked on the candidates
    }
    consider(std::move(c));
  }
  return best;
}

size_t LabelIndex::CandidateCount(const LabelSelector& selector) const {
  return Narrow(selector).count;
}

void LabelIndex::ForEachMatch(
    const LabelSelector& selector,
    const std::function<void(const std::string&, const Labels&)>& f) const {
  const Candidates c = Narrow(selector);
  if (c.all) {
    for (const auto& [id, labels] : labels_) {
      if (Matches(selector, labels)) f(id, labels);
    }
    return;
  }
  // The sets of one requirement are disjoint (one value per key per object).
  for (const std::set<std::string>* ids : c.sets) {
    for (const std::string& id : *ids) {
      const Labels& labels = labels_.at(id);
      if (Matches(selector, labels)) f(id, labels);
    }
  }
}

std::vector<std::string> LabelIndex::Match(const LabelSelector& selector) const {
  std::vector<std::string> out;
  ForEachMatch(selector, [&](const std::string& id, const Labels&) { out.push_back(id); });
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace netpol
