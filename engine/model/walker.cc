// The document walker (see walker.h).
#include "engine/model/walker.h"

#include <algorithm>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "engine/model/names.h"
#include "engine/model/yaml_scalar.h"

namespace netpol::load {

using yaml11::Describe;
using yaml11::ParseBool;
using yaml11::ParseInt;
using yaml11::Resolve;
using yaml11::ScalarType;

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

absl::Status TooLarge(const std::string& prefix, uintmax_t size, size_t limit) {
  std::string mib = limit % (1 << 20) == 0 ? absl::StrCat(" (", limit >> 20, " MiB)") : "";
  return absl::ResourceExhaustedError(
      absl::StrCat(prefix, "input is ", size, " bytes, more than the limit of ", limit, mib));
}

std::string LoadState::Prefix(absl::string_view what) const {
  return options->source.empty() ? std::string(what) : absl::StrCat(options->source, ": ", what);
}

void LoadState::AddError(std::string e) {
  if (errors.size() < kMaxErrors) {
    errors.push_back(std::move(e));
  } else {
    ++suppressed_errors;
  }
}

YAML::Node Fields::Get(absl::string_view key) const {
  for (const auto& [k, v] : entries_) {
    if (k == key) return v;
  }
  return YAML::Node();
}

void Fields::Add(std::string key, const YAML::Node& value) {
  entries_.emplace_back(std::move(key), value);
}

Walker::Walker(LoadState* st, std::string ref) : st_(st), prefix_(st->Prefix(ref)) {}

void Walker::Error(absl::string_view path, absl::string_view msg) {
  if (path.empty()) {
    st_->AddError(absl::StrCat(prefix_, ": ", msg));
  } else {
    st_->AddError(absl::StrCat(prefix_, ": ", path, ": ", msg));
  }
}

void Walker::Unknown(absl::string_view path) {
  if (st_->options->strict) {
    Error(path, "unknown field");
  } else if (st_->warnings->size() < kMaxWarnings) {
    st_->warnings->push_back(absl::StrCat(prefix_, ": ", path, ": unknown field (ignored)"));
  } else {
    ++st_->suppressed_warnings;
  }
}

void Walker::Unusable(absl::string_view path, absl::string_view msg) {
  if (st_->options->strict) {
    Error(path, msg);
  } else if (st_->warnings->size() < kMaxWarnings) {
    st_->warnings->push_back(absl::StrCat(prefix_, ": ", path, ": ", msg, " (ignored)"));
  } else {
    ++st_->suppressed_warnings;
  }
}

// Counts a visited node; false (with an error, once) when the budget is exhausted.
bool Walker::Visit(absl::string_view path) {
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
std::optional<Fields> Walker::Map(const YAML::Node& n, absl::string_view path) {
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
std::optional<std::vector<YAML::Node>> Walker::List(const YAML::Node& n, absl::string_view path) {
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
void Walker::CheckFields(const Fields& f, absl::string_view path,
                         std::initializer_list<absl::string_view> known) {
  for (const auto& [k, v] : f.entries()) {
    if (std::find(known.begin(), known.end(), k) == known.end()) {
      Unknown(path.empty() ? k : absl::StrCat(path, ".", k));
    }
  }
}

// A string; nullopt when null (absent) or after reporting a wrong type.
std::optional<std::string> Walker::String(const YAML::Node& n, absl::string_view path) {
  if (!Visit(path) || n.IsNull()) return std::nullopt;
  if (!n.IsScalar() || Resolve(n) != ScalarType::kString) {
    // YAML reads unquoted 1, 1.0, yes, n or on as numbers and booleans; say how to fix it.
    Error(path,
          absl::StrCat("must be a string, got ", Describe(n), n.IsScalar() ? " (quote it)" : ""));
    return std::nullopt;
  }
  return n.Scalar();
}

std::optional<bool> Walker::Bool(const YAML::Node& n, absl::string_view path) {
  if (!Visit(path) || n.IsNull()) return std::nullopt;
  if (!n.IsScalar() || Resolve(n) != ScalarType::kBool) {
    Error(path, absl::StrCat("must be a boolean, got ", Describe(n)));
    return std::nullopt;
  }
  return ParseBool(n.Scalar());
}

// An integer in [lo, hi]; nullopt when null or after reporting.
std::optional<int64_t> Walker::Int(const YAML::Node& n, absl::string_view path, int64_t lo,
                                   int64_t hi) {
  if (!Visit(path) || n.IsNull()) return std::nullopt;
  if (!n.IsScalar() || Resolve(n) != ScalarType::kInt) {
    Error(path, absl::StrCat("must be an integer, got ", Describe(n)));
    return std::nullopt;
  }
  return IntInRange(n.Scalar(), path, lo, hi);
}

std::optional<int64_t> Walker::IntInRange(const std::string& text, absl::string_view path,
                                          int64_t lo, int64_t hi) {
  std::optional<int64_t> v = ParseInt(text);
  if (!v || *v < lo || *v > hi) {
    Error(path, absl::StrCat("must be between ", lo, " and ", hi, ", got ",
                             text.size() <= kMaxShown ? text : Show(text)));
    return std::nullopt;
  }
  return v;
}

// A required string field of a map.
std::optional<std::string> Walker::RequiredString(const Fields& f, absl::string_view field,
                                                  absl::string_view path) {
  std::string p = Child(path, field);
  YAML::Node n = f.Get(field);
  if (n.IsNull()) {
    Error(p, "required");
    return std::nullopt;
  }
  return String(n, p);
}

std::optional<Protocol> Walker::ProtocolField(const YAML::Node& n, absl::string_view path) {
  std::optional<std::string> s = String(n, path);
  if (!s) return n.IsNull() ? std::optional<Protocol>(Protocol::kTCP) : std::nullopt;
  if (*s == "TCP") return Protocol::kTCP;
  if (*s == "UDP") return Protocol::kUDP;
  if (*s == "SCTP") return Protocol::kSCTP;
  Error(path, absl::StrCat("unsupported value ", Show(*s), " (supported: TCP, UDP, SCTP)"));
  return std::nullopt;
}

void Walker::LabelsField(const YAML::Node& n, absl::string_view path, Labels* out) {
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

std::optional<LabelSelector> Walker::Selector(const YAML::Node& n, absl::string_view path) {
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
        Error(Child(p, "operator"), absl::StrCat("unsupported value ", Show(*op),
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

std::optional<Cidr> Walker::CidrField(const YAML::Node& n, const std::string& path) {
  std::optional<std::string> text = String(n, path);
  if (!text) {
    if (n.IsNull()) Error(path, "required");
    return std::nullopt;
  }
  auto c = Cidr::Parse(*text);
  if (!c.ok()) {
    Error(path, std::string(c.status().message()));
    return std::nullopt;
  }
  if (absl::Status mapped = RefuseV4Mapped(c->addr); !mapped.ok()) {
    Error(path, std::string(mapped.message()));
    return std::nullopt;
  }
  return *c;
}

void ParseMeta(Walker& w, const YAML::Node& node, const MetaRules& rules, Meta* meta) {
  std::optional<Fields> f = w.Map(node, "metadata");
  if (!f) return;
  if (rules.object_meta_fields) {
    // ObjectMeta (meta/v1): the fields an object's metadata may carry.
    w.CheckFields(
        *f, "metadata",
        {"name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
         "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
         "annotations", "ownerReferences", "finalizers", "managedFields"});
  }
  if (std::optional<std::string> name = w.RequiredString(*f, "name", "metadata")) {
    bool label = rules.dns_label_name;
    bool valid = label ? IsDnsLabelText(*name) : IsDnsSubdomainText(*name);
    if (!valid) {
      w.Error("metadata.name", absl::StrCat("invalid name ", Show(*name), ": ",
                                            label ? kDnsLabelRule : kDnsSubdomainRule));
    }
    meta->name = *name;
  }
  if (rules.namespaced) {
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

}  // namespace netpol::load
