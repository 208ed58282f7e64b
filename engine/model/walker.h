// The document walker: reads one Kubernetes object's YAML node tree field by field, checking
// every node's type before use, and collects errors and warnings named by the object and the
// field path ("pod default/a: spec.containers[0].ports[1].containerPort: must be between 1 and
// 65535, got 0"). Each kind's parser (kinds.h) is written against it.
//
// Limits against hostile input live here: a node budget per load (aliases expanding the text
// into something far larger stop the walk), and at most kMaxErrors errors and kMaxWarnings
// warnings per load (the rest are counted).
//
// Thread safety: one LoadState and its Walkers belong to one load on one thread.
#ifndef NETPOL_ENGINE_MODEL_WALKER_H_
#define NETPOL_ENGINE_MODEL_WALKER_H_

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "engine/model/ip.h"
#include "engine/model/loader.h"
#include "engine/model/model.h"

namespace netpol::load {

// The node budget of one load: every node of a legitimate document takes at least one byte of
// text and is visited at most twice (once as a map entry, once as a value), so visiting more than
// twice as many nodes as there are bytes (plus slack for tiny inputs) means aliases are expanding
// the text into something far larger. The walk stops there, before building a huge model.
inline constexpr size_t kNodesPerByte = 2;
inline constexpr size_t kNodeSlack = 1 << 16;
// Beyond this many errors a report stops being useful; the count of the rest is given.
inline constexpr size_t kMaxErrors = 20;
inline constexpr size_t kMaxWarnings = 100;

// The one refusal of an input beyond `limit` bytes, `prefix` naming it ("t.yaml: "):
// ResourceExhausted "t.yaml: input is N bytes, more than the limit of 8388608 (8 MiB)".
absl::Status TooLarge(const std::string& prefix, uintmax_t size, size_t limit);

// Field paths: "spec.ingress" + "from" -> "spec.ingress.from"; + 2 -> "spec.ingress[2]";
// a map key inside a path: "metadata.labels[app]" (escaped, clipped).
std::string PathKey(absl::string_view path, absl::string_view key);
std::string Child(absl::string_view path, absl::string_view field);
std::string Index(absl::string_view path, size_t i);

// What one load shares across its objects.
struct LoadState {
  const LoadOptions* options;
  std::vector<std::string>* warnings;
  std::vector<std::string> errors;
  size_t suppressed_errors = 0;
  size_t suppressed_warnings = 0;
  size_t nodes = 0;
  size_t max_nodes = 0;
  bool aborted = false;  // node budget exhausted: stop walking

  // "<source>: <what>", or `what` alone without a source.
  std::string Prefix(absl::string_view what) const;
  void AddError(std::string e);
};

// A map's entries, in order, with string keys.
class Fields {
 public:
  const std::vector<std::pair<std::string, YAML::Node>>& entries() const { return entries_; }
  // The value under `key`, or a null node when absent.
  YAML::Node Get(absl::string_view key) const;
  void Add(std::string key, const YAML::Node& value);

 private:
  std::vector<std::pair<std::string, YAML::Node>> entries_;
};

// Per-object walker: knows how to name the object in messages. Every reader returns nullopt
// (or nothing) after reporting what is wrong; a null node is "absent" and reports nothing unless
// the reader says "required".
class Walker {
 public:
  Walker(LoadState* st, std::string ref);

  // False once the load's node budget is exhausted: stop walking.
  bool ok() const { return !st_->aborted; }
  const std::string& default_namespace() const { return st_->options->default_namespace; }

  // "<ref>: <path>: <msg>" (no path: "<ref>: <msg>").
  void Error(absl::string_view path, absl::string_view msg);
  // An unknown field: an error when strict, else a warning.
  void Unknown(absl::string_view path);
  // A value netpol cannot use where Kubernetes accepts any: an error when strict, else a
  // warning ("<ref>: <path>: <msg> (ignored)").
  void Unusable(absl::string_view path, absl::string_view msg);
  // Counts a visited node; false (with an error, once) when the budget is exhausted.
  bool Visit(absl::string_view path);

  // A map (null: empty), keys strings and unique.
  std::optional<Fields> Map(const YAML::Node& n, absl::string_view path);
  // A list (null: empty).
  std::optional<std::vector<YAML::Node>> List(const YAML::Node& n, absl::string_view path);
  // Reports every field of `f` not in `known` as unknown.
  void CheckFields(const Fields& f, absl::string_view path,
                   std::initializer_list<absl::string_view> known);

  // A string (numbers and booleans are not: "quote it").
  std::optional<std::string> String(const YAML::Node& n, absl::string_view path);
  std::optional<bool> Bool(const YAML::Node& n, absl::string_view path);
  // An integer in [lo, hi].
  std::optional<int64_t> Int(const YAML::Node& n, absl::string_view path, int64_t lo, int64_t hi);
  // The integer of `text` (already known to be an integer scalar) in [lo, hi].
  std::optional<int64_t> IntInRange(const std::string& text, absl::string_view path, int64_t lo,
                                    int64_t hi);
  // A required string field of a map ("required" when absent).
  std::optional<std::string> RequiredString(const Fields& f, absl::string_view field,
                                            absl::string_view path);

  // TCP (absent: TCP), UDP or SCTP.
  std::optional<Protocol> ProtocolField(const YAML::Node& n, absl::string_view path);
  // A map of label keys to values, both checked.
  void LabelsField(const YAML::Node& n, absl::string_view path, Labels* out);
  // A LabelSelector (matchLabels, matchExpressions).
  std::optional<LabelSelector> Selector(const YAML::Node& n, absl::string_view path);
  // A required canonical CIDR, not IPv4-mapped IPv6.
  std::optional<Cidr> CidrField(const YAML::Node& n, const std::string& path);

 private:
  LoadState* st_;
  std::string prefix_;
};

// How a kind's metadata is checked.
struct MetaRules {
  bool dns_label_name = false;      // name is a DNS label (Namespace), else a DNS subdomain
  bool namespaced = true;           // metadata.namespace is read (defaulted)
  bool object_meta_fields = false;  // unknown ObjectMeta fields are reported
};

// What the walker learns from metadata.
struct Meta {
  std::string name;
  std::string namespace_name;  // empty for cluster-scoped kinds
  Labels labels;
};

// Reads `node` as metadata (the path "metadata").
void ParseMeta(Walker& w, const YAML::Node& node, const MetaRules& rules, Meta* meta);

}  // namespace netpol::load

#endif  // NETPOL_ENGINE_MODEL_WALKER_H_
