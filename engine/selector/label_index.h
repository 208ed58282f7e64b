// An index of labelled objects (namespaces, pods) by label key and value, answering label
// selectors without matching every object: matchLabels and In / Exists requirements narrow the
// candidates to the objects carrying one of the labels they require (the smallest such set),
// NotIn / DoesNotExist and the remaining requirements are checked on those candidates only. A
// selector with no positive requirement (empty, or only NotIn / DoesNotExist) visits every
// object. Answers equal Matches() on every object (label_index_test checks it on random
// objects and selectors).
//
// Thread-compatible.
#ifndef NETPOL_ENGINE_SELECTOR_LABEL_INDEX_H_
#define NETPOL_ENGINE_SELECTOR_LABEL_INDEX_H_

#include <cstddef>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/model/model.h"

namespace netpol {

class LabelIndex {
 public:
  // Adds object `id` with `labels`, or replaces its labels.
  void Set(const std::string& id, const Labels& labels);
  // Removes `id` (nothing when absent).
  void Erase(const std::string& id);
  // The labels of `id`, or nullptr.
  const Labels* Find(const std::string& id) const;
  bool contains(const std::string& id) const { return labels_.count(id) > 0; }
  size_t size() const { return labels_.size(); }
  void clear();

  // The number of objects ForEachMatch will look at for `selector`: an upper bound of its
  // matches, without visiting any.
  size_t CandidateCount(const LabelSelector& selector) const;
  // Calls f(id, labels) for every object `selector` matches (Matches semantics), in no
  // particular order.
  void ForEachMatch(const LabelSelector& selector,
                    const std::function<void(const std::string&, const Labels&)>& f) const;
  // The ids `selector` matches, sorted.
  std::vector<std::string> Match(const LabelSelector& selector) const;

 private:
  // The candidate sets of the most selective positive requirement: empty `sets` with
  // `all` false means no object can match; `all` means every object is a candidate.
  struct Candidates {
    bool all = true;
    size_t count = 0;
    std::vector<const std::set<std::string>*> sets;
  };
  Candidates Narrow(const LabelSelector& selector) const;
  const std::set<std::string>* Ids(const std::string& key, const std::string& value) const;

  std::map<std::string, Labels> labels_;                                       // id -> labels
  std::map<std::string, std::map<std::string, std::set<std::string>>> by_kv_;  // key -> value -> ids
  std::map<std::string, size_t> key_count_;                                    // key -> objects
};

}  // namespace netpol

#endif  // NETPOL_ENGINE_SELECTOR_LABEL_INDEX_H_
