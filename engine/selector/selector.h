// Label selector matching (metav1.LabelSelector semantics).
#ifndef NETPOL_ENGINE_SELECTOR_SELECTOR_H_
#define NETPOL_ENGINE_SELECTOR_SELECTOR_H_

#include <string>

#include "engine/model/model.h"

namespace netpol {

// Returns whether `labels` satisfy every matchLabels entry and every matchExpressions
// requirement of `selector`. An empty selector matches everything. In: key present with a value
// in values; NotIn: key absent or value not in values; Exists / DoesNotExist: key presence.
bool Matches(const LabelSelector& selector, const Labels& labels);

// Renders a selector the way kubectl describes one: "app=web,tier in (a,b),!debug"; "<all>" when
// empty.
std::string SelectorString(const LabelSelector& selector);

}  // namespace netpol

#endif  // NETPOL_ENGINE_SELECTOR_SELECTOR_H_
