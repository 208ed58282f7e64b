// Kubernetes name, label and port-name rules, and how messages quote user text.
//
// The *Text predicates and *Problem functions are the rules the loader applies to metadata,
// labels, selectors and port names; each Problem function returns "" when valid, else the reason
// (to follow "invalid label key: "). ValidateDnsLabel/ValidateDnsSubdomain wrap them for names
// that come from elsewhere (CNI arguments, flags, kubectl -n).
//
// Thread safety: all functions are reentrant.
#ifndef NETPOL_ENGINE_MODEL_NAMES_H_
#define NETPOL_ENGINE_MODEL_NAMES_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace netpol {

// Longest user-supplied text quoted in a message.
inline constexpr size_t kMaxShown = 80;

// Quotes user text for a message: escaped, truncated to kMaxShown bytes ("..." after).
std::string Show(absl::string_view s);
// The same text without quotes, for object names inside a reference ("pod a/b").
std::string Clip(absl::string_view s);

// What a valid name looks like, as messages say it.
extern const char kDnsLabelRule[];
extern const char kDnsSubdomainRule[];

// RFC 1123 label (namespaces): lowercase alphanumerics and '-', at most 63 characters.
bool IsDnsLabelText(absl::string_view s);
// RFC 1123 subdomain (pods, policies, nodes): labels joined by '.', at most 253 characters.
bool IsDnsSubdomainText(absl::string_view s);

// Label keys: a qualified name with an optional DNS-subdomain prefix.
std::string LabelKeyProblem(absl::string_view key);
// Label values: empty, or at most 63 alphanumerics, '-', '_', '.', alphanumeric at both ends.
std::string LabelValueProblem(absl::string_view v);
// IANA_SVC_NAME (RFC 6335 section 5.1), as Kubernetes checks port names.
std::string PortNameProblem(absl::string_view s);

// OK when `value` is valid, else InvalidArgument
// `<what>: invalid name "<value, escaped>": must be a lowercase RFC 1123 ...`.
// Labels (at most 63 characters): namespaces. Subdomains (at most 253): pods, policies, nodes.
absl::Status ValidateDnsLabel(absl::string_view what, absl::string_view value);
absl::Status ValidateDnsSubdomain(absl::string_view what, absl::string_view value);

}  // namespace netpol

#endif  // NETPOL_ENGINE_MODEL_NAMES_H_
