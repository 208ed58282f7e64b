// netpolctl's commands. See commands.h.
#include "cli/commands.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "api/convert.h"
#include "engine/eval/eval.h"
#include "engine/model/ip.h"
#include "engine/util/program.h"
#include "engine/model/loader.h"
#include "engine/selector/selector.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "yaml-cpp/yaml.h"

namespace netpol::cli {
namespace {

using api::KubectlName;

// Exit codes.
constexpr int kOk = 0;
constexpr int kFailed = 1;
constexpr int kUsage = 2;
constexpr int kTimedOut = 3;  // wait: not enforced within --timeout

int Error(std::ostream& err, const absl::Status& s, int code = kFailed) {
  err << "error: " << s.message() << "\n";
  return code;
}

int UsageError(std::ostream& err, const std::string& message) {
  err << "error: " << message << "\nRun 'netpolctl --help' for usage.\n";
  return kUsage;
}

absl::StatusOr<std::string> ReadStream(std::istream& in) {
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Collects the manifests named by -f: files, directories (their *.yaml, *.yml and *.json,
// sorted, not recursive) and "-" (stdin).
absl::StatusOr<std::vector<v1::Manifest>> ReadManifests(const std::vector<std::string>& files,
                                                        std::istream& in) {
  std::vector<v1::Manifest> out;
  auto read_file = [&out](const std::string& path) -> absl::Status {
    std::ifstream f(path);
    if (!f) return absl::NotFoundError(absl::StrCat("the path \"", path, "\" cannot be read"));
    v1::Manifest m;
    m.set_source(path);
    std::stringstream ss;
    ss << f.rdbuf();
    m.set_text(ss.str());
    out.push_back(std::move(m));
    return absl::OkStatus();
  };
  for (const std::string& path : files) {
    if (path == "-") {
      absl::StatusOr<std::string> text = ReadStream(in);
      if (!text.ok()) return text.status();
      v1::Manifest m;
      m.set_source("-");
      m.set_text(*text);
      out.push_back(std::move(m));
      continue;
    }
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      return absl::NotFoundError(absl::StrCat("the path \"", path, "\" does not exist"));
    }
    if (!S_ISDIR(st.st_mode)) {
      absl::Status s = read_file(path);
      if (!s.ok()) return s;
      continue;
    }
    std::vector<std::string> names;
    if (DIR* d = ::opendir(path.c_str())) {
      while (struct dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (absl::EndsWith(name, ".yaml") || absl::EndsWith(name, ".yml") ||
            absl::EndsWith(name, ".json")) {
          names.push_back(name);
        }
      }
      ::closedir(d);
    }
    std::sort(names.begin(), names.end());
    if (names.empty()) {
      return absl::NotFoundError(
          absl::StrCat("no .yaml, .yml or .json files in directory \"", path, "\""));
    }
    for (const std::string& name : names) {
      absl::Status s = read_file(path + "/" + name);
      if (!s.ok()) return s;
    }
  }
  if (out.empty()) return absl::InvalidArgumentError("must specify -f FILE, DIR or -");
  return out;
}

// The namespaces the objects of `text` name themselves (metadata.namespace; List items
// included), in order, each with its object's kind/name for messages. Text that does not parse
// yields what was found so far: the agent reports the syntax error.
void NamedNamespaces(const std::string& text, std::vector<std::string>* out) {
  std::function<void(const YAML::Node&)> visit = [&](const YAML::Node& doc) {
    if (!doc.IsMap()) return;
    const YAML::Node items = doc["items"];
    if (items && items.IsSequence()) {
      for (const YAML::Node& item : items) visit(item);
    }
    const YAML::Node meta = doc["metadata"];
    if (!meta || !meta.IsMap()) return;
    const YAML::Node ns = meta["namespace"];
    if (ns && ns.IsScalar() && !ns.Scalar().empty()) out->push_back(ns.Scalar());
  };
  try {
    for (const YAML::Node& doc : YAML::LoadAll(text)) visit(doc);
  } catch (const YAML::Exception&) {
  }
}

// kubectl's rule for -n with files: an object that names another namespace is refused (it
// would otherwise land in a namespace the user did not ask for).
absl::Status CheckNamespaces(const std::vector<v1::Manifest>& manifests, const std::string& ns) {
  if (ns.empty()) return absl::OkStatus();
  for (const v1::Manifest& m : manifests) {
    std::vector<std::string> named;
    NamedNamespaces(m.text(), &named);
    for (const std::string& n : named) {
      if (n != ns) {
        return absl::InvalidArgumentError(absl::StrCat(
            m.source().empty() ? "" : m.source() + ": ", "the namespace from the provided object \"",
            n, "\" does not match the namespace \"", ns,
            "\". You must pass '--namespace=", n, "' to perform this operation."));
      }
    }
  }
  return absl::OkStatus();
}

// A response message as indented JSON (field names in lowerCamelCase, as grpcurl prints them;
// fields with default values included, so a script finds every key).
std::string ToJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  opts.always_print_primitive_fields = true;
  std::string out;
  google::protobuf::util::MessageToJsonString(m, &out, opts);
  return out;
}

const char* ActionWord(v1::Action a) {
  switch (a) {
    case v1::CREATED:
      return "created";
    case v1::CONFIGURED:
      return "configured";
    case v1::UNCHANGED:
      return "unchanged";
    case v1::DELETED:
      return "deleted";
    default:
      return "unknown";
  }
}

// One line per object: "pod/a created", or only "pod/a" with -o name. A delete's UNCHANGED
// result is an object that was not there (--ignore-not-found): kubectl prints nothing for it.
void PrintResults(const google::protobuf::RepeatedPtrField<v1::ObjectResult>& results,
                  bool dry_run, bool is_delete, const std::string& output, std::ostream& out) {
  for (const v1::ObjectResult& r : results) {
    if (is_delete && r.action() == v1::UNCHANGED) continue;
    if (output == "name") {
      out << KubectlName(r.ref()) << "\n";
      continue;
    }
    out << KubectlName(r.ref()) << " " << ActionWord(r.action()) << (dry_run ? " (dry run)" : "")
        << "\n";
  }
}

absl::StatusOr<v1::Kind> ParseKind(std::string word) {
  word = absl::AsciiStrToLower(word);
  if (word == "namespaces" || word == "namespace" || word == "ns") return v1::NAMESPACE;
  if (word == "pods" || word == "pod" || word == "po") return v1::POD;
  if (word == "networkpolicies" || word == "networkpolicy" || word == "netpol" ||
      word == "netpols" || word == "np" || word == "networkpolicies.networking.k8s.io") {
    return v1::NETWORK_POLICY;
  }
  if (word == "clusternetworkpolicies" || word == "clusternetworkpolicy" || word == "cnp" ||
      word == "cnps" || word == "clusternetworkpolicies.policy.networking.k8s.io") {
    return v1::CLUSTER_NETWORK_POLICY;
  }
  if (word == "nodes" || word == "node" || word == "no") return v1::NODE;
  return absl::InvalidArgumentError(absl::StrCat(
      "the server doesn't have a resource type \"", word,
      "\" (use namespaces, pods, networkpolicies, clusternetworkpolicies or nodes)"));
}

// Prints rows as kubectl does: left-aligned columns separated by three spaces.
void PrintTable(const std::vector<std::vector<std::string>>& rows, std::ostream& out) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 3, ' ');
    }
    out << line << "\n";
  }
}

std::string LabelsString(const Labels& labels) {
  if (labels.empty()) return "<none>";
  std::vector<std::string> parts;
  for (const auto& [k, v] : labels) parts.push_back(k + "=" + v);
  return absl::StrJoin(parts, ",");
}

std::string JoinOrNone(const std::vector<std::string>& items) {
  return items.empty() ? "<none>" : absl::StrJoin(items, ",");
}

std::string PrettyJson(const std::string& json) {
  google::protobuf::Struct s;
  if (!google::protobuf::util::JsonStringToMessage(json, &s).ok()) return json;
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  std::string out;
  google::protobuf::util::MessageToJsonString(s, &out, opts);
  return out;
}

// For `get networkpolicies|clusternetworkpolicies -o wide`: the agent's counts per policy and per
// ClusterNetworkPolicy, nullopt when it has none (counters off, or the read failed: a warning
// says why).
struct Hits {
  std::map<std::string, v1::PolicyCounter> policies;
  // By ClusterNetworkPolicy name: the packets its Accept rules allowed and its Deny rules
  // dropped (the sums of cluster_policy_rules).
  std::map<std::string, std::pair<uint64_t, uint64_t>> cluster;
};
using PolicyHits = std::optional<Hits>;

// The kinds whose `-o wide` listing shows counts.
bool HasHits(v1::Kind kind) {
  return kind == v1::NETWORK_POLICY || kind == v1::CLUSTER_NETWORK_POLICY;
}

PolicyHits FetchPolicyHits(Client& c, std::ostream& err) {
  v1::CountersResponse resp;
  grpc::Status st = c.queries().Counters(c.Context().get(), v1::CountersRequest(), &resp);
  if (!st.ok()) {
    err << "netpolctl: warning: no rule counters: " << c.Explain(st) << "\n";
    return std::nullopt;
  }
  if (!resp.enabled()) return std::nullopt;
  Hits out;
  for (const v1::PolicyCounter& p : resp.policies()) out.policies[p.policy()] = p;
  for (const v1::ClusterPolicyRuleCounter& r : resp.cluster_policy_rules()) {
    std::pair<uint64_t, uint64_t>& h = out.cluster[r.rule().policy()];
    (r.rule().action() == v1::Deny ? h.second : h.first) += r.packets();
  }
  return out;
}

// A ClusterNetworkPolicy subject in one cell: "namespaces: <selector>" or
// "pods: <namespace selector> / <pod selector>" (an empty selector reads "<all>").
std::string CnpSubjectString(const CnpPeer& subject) {
  auto sel = [](const LabelSelector& s) { return s.Empty() ? "<all>" : SelectorString(s); };
  if (subject.namespaces) return "namespaces: " + sel(*subject.namespaces);
  if (subject.pods) {
    return absl::StrCat("pods: ", sel(subject.pods->namespace_selector), " / ",
                        sel(subject.pods->pod_selector));
  }
  return "<none>";
}

int PrintObjects(const std::vector<v1::Object>& api, bool single, const CommandOptions& opts,
                 v1::Kind kind, std::ostream& out, std::ostream& err,
                 const PolicyHits& hits = std::nullopt) {
  std::vector<Object> objects;
  for (const v1::Object& o : api) {
    absl::StatusOr<Object> m = api::FromApiTrusted(o);
    if (!m.ok()) return Error(err, m.status());
    objects.push_back(*std::move(m));
  }
  if (opts.output == "yaml") {
    out << (single ? ToYaml(objects[0]) : ToYaml(objects));
    return kOk;
  }
  if (opts.output == "json") {
    std::vector<const v1::Object*> ptrs;
    for (const v1::Object& o : api) ptrs.push_back(&o);
    absl::StatusOr<std::string> json = api::ApiObjectsToJson(ptrs);
    if (!json.ok()) return Error(err, json.status());
    std::string text = PrettyJson(*json);
    if (single) {
      google::protobuf::Struct list;
      google::protobuf::util::JsonStringToMessage(*json, &list);
      const auto& items = list.fields().at("items").list_value().values(0);
      google::protobuf::util::JsonPrintOptions p;
      p.add_whitespace = true;
      text.clear();
      google::protobuf::util::MessageToJsonString(items.struct_value(), &text, p);
    }
    out << text;
    return kOk;
  }
  if (opts.output == "name") {
    for (const Object& o : objects) out << KubectlName(api::RefOf(o)) << "\n";
    return kOk;
  }
  if (objects.empty()) {
    err << "No resources found"
        << (opts.namespace_name.empty() || api::IsClusterScoped(kind)
                ? ""
                : " in " + opts.namespace_name + " namespace")
        << ".\n";
    return kOk;
  }
  const bool wide = opts.output == "wide";
  const bool ns_column = !api::IsClusterScoped(kind) && opts.namespace_name.empty();
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header;
  if (ns_column) header.push_back("NAMESPACE");
  header.push_back("NAME");
  switch (kind) {
    case v1::NAMESPACE:
      header.push_back("LABELS");
      break;
    case v1::POD:
      header.insert(header.end(), {"NODE", "IP"});
      if (wide) header.insert(header.end(), {"IPS", "HOSTNETWORK", "PORTS", "LABELS"});
      break;
    case v1::CLUSTER_NETWORK_POLICY:
      header.insert(header.end(), {"TIER", "PRIORITY", "SUBJECT", "INGRESS-RULES", "EGRESS-RULES"});
      if (wide) header.insert(header.end(), {"ACCEPTED", "DENIED"});
      break;
    case v1::NODE:
      header.insert(header.end(), {"ADDRESSES", "LABELS"});
      break;
    default:
      header.insert(header.end(), {"POD-SELECTOR", "POLICY-TYPES"});
      if (wide) header.insert(header.end(), {"INGRESS-RULES", "EGRESS-RULES", "HITS", "DROPPED"});
      break;
  }
  rows.push_back(header);
  for (const Object& o : objects) {
    std::vector<std::string> row;
    if (ns_column) row.push_back(o.NamespaceName());
    row.push_back(o.Name());
    if (const Namespace* ns = o.AsNamespace()) {
      row.push_back(LabelsString(ns->labels));
    } else if (const Pod* pod = o.AsPod()) {
      row.push_back(pod->node_name.empty() ? "<none>" : pod->node_name);
      row.push_back(pod->ips.empty() ? "<none>" : pod->ips[0].ToString());
      if (wide) {
        std::vector<std::string> ips, ports;
        for (const IpAddr& ip : pod->ips) ips.push_back(ip.ToString());
        for (const ContainerPort& p : pod->ports) {
          ports.push_back(absl::StrCat(p.name.empty() ? "" : p.name + ":", p.container_port, "/",
                                       ProtocolName(p.protocol)));
        }
        row.push_back(JoinOrNone(ips));
        row.push_back(pod->host_network ? "true" : "false");
        row.push_back(JoinOrNone(ports));
        row.push_back(LabelsString(pod->labels));
      }
    } else if (const ClusterNetworkPolicy* cnp = o.AsClusterNetworkPolicy()) {
      row.push_back(CnpTierName(cnp->tier));
      row.push_back(absl::StrCat(cnp->priority));
      row.push_back(CnpSubjectString(cnp->subject));
      row.push_back(absl::StrCat(cnp->ingress.size()));
      row.push_back(absl::StrCat(cnp->egress.size()));
      if (wide) {
        // Packets its Accept rules allowed and its Deny rules dropped, on this node, since the
        // tier chains were built (RULESET.md "ClusterNetworkPolicy tiers", Counters).
        if (hits) {
          auto h = hits->cluster.find(cnp->name);
          row.push_back(absl::StrCat(h == hits->cluster.end() ? 0 : h->second.first));
          row.push_back(absl::StrCat(h == hits->cluster.end() ? 0 : h->second.second));
        } else {
          row.insert(row.end(), {"<none>", "<none>"});
        }
      }
    } else if (const Node* node = o.AsNode()) {
      std::vector<std::string> ips;
      for (const IpAddr& ip : node->ips) ips.push_back(ip.ToString());
      row.push_back(JoinOrNone(ips));
      row.push_back(LabelsString(node->labels));
    } else if (const NetworkPolicy* np = o.AsNetworkPolicy()) {
      row.push_back(SelectorString(np->pod_selector));
      std::vector<std::string> types;
      if (np->ingress_type) types.push_back("Ingress");
      if (np->egress_type) types.push_back("Egress");
      row.push_back(JoinOrNone(types));
      if (wide) {
        row.push_back(absl::StrCat(np->ingress.size()));
        row.push_back(absl::StrCat(np->egress.size()));
        // Packets its rules allowed, and packets dropped in the groups it isolates, on this
        // node since the chains were built (RULESET.md "Counters").
        if (hits) {
          auto h = hits->policies.find(np->Key());
          row.push_back(absl::StrCat(h == hits->policies.end() ? 0 : h->second.allowed_packets()));
          row.push_back(absl::StrCat(h == hits->policies.end() ? 0 : h->second.dropped_packets()));
        } else {
          row.insert(row.end(), {"<none>", "<none>"});
        }
      }
    }
    rows.push_back(row);
  }
  PrintTable(rows, out);
  return kOk;
}

int Apply(Client& c, const CommandOptions& opts, bool dry_run, bool diff, std::istream& in,
          std::ostream& out, std::ostream& err) {
  // diff: 1 means "there are changes", so errors exit 2.
  const int fail = diff ? kUsage : kFailed;
  absl::StatusOr<std::vector<v1::Manifest>> manifests = ReadManifests(opts.files, in);
  if (!manifests.ok()) return Error(err, manifests.status(), fail);
  absl::Status ns_ok = CheckNamespaces(*manifests, opts.namespace_name);
  if (!ns_ok.ok()) return Error(err, ns_ok, fail);
  v1::ApplyRequest req;
  for (v1::Manifest& m : *manifests) {
    m.set_default_namespace(opts.namespace_name);
    *req.add_manifests() = std::move(m);
  }
  req.set_dry_run(dry_run);
  v1::ApplyResponse resp;
  grpc::Status st = c.objects().Apply(c.Context().get(), req, &resp);
  if (!st.ok()) return Error(err, c.Explain(st), fail);
  PrintResults(resp.results(), dry_run && !diff, false, opts.output, out);
  if (!diff) return kOk;
  bool changes = !resp.plan().nft_changes().empty();
  for (const v1::ObjectResult& r : resp.results()) changes |= r.action() != v1::UNCHANGED;
  out << "--- nft changes (" << resp.plan().element_changes() << " element changes)\n"
      << (resp.plan().nft_changes().empty() ? "(none)\n" : resp.plan().nft_changes());
  if (!resp.plan().nft_changes().empty() && resp.plan().nft_changes().back() != '\n') out << "\n";
  out << "--- affected pods\n";
  if (resp.plan().affected_pods().empty()) out << "(none)\n";
  for (const std::string& p : resp.plan().affected_pods()) out << p << "\n";
  return changes ? kFailed : kOk;
}

int Delete(Client& c, const std::vector<std::string>& args, const CommandOptions& opts,
           std::istream& in, std::ostream& out, std::ostream& err) {
  v1::DeleteRequest req;
  req.set_dry_run(opts.dry_run);
  req.set_ignore_not_found(opts.ignore_not_found);
  if (opts.files_given || !opts.files.empty()) {
    if (args.size() > 1) return UsageError(err, "use either -f or KIND NAME, not both");
    absl::StatusOr<std::vector<v1::Manifest>> manifests = ReadManifests(opts.files, in);
    if (!manifests.ok()) return Error(err, manifests.status());
    absl::Status ns_ok = CheckNamespaces(*manifests, opts.namespace_name);
    if (!ns_ok.ok()) return Error(err, ns_ok);
    for (v1::Manifest& m : *manifests) {
      m.set_default_namespace(opts.namespace_name);
      *req.add_manifests() = std::move(m);
    }
  } else {
    if (args.size() < 3) return UsageError(err, "delete needs -f FILE or KIND NAME...");
    absl::StatusOr<v1::Kind> kind = ParseKind(args[1]);
    if (!kind.ok()) return UsageError(err, std::string(kind.status().message()));
    for (size_t i = 2; i < args.size(); ++i) {
      v1::ObjectRef* ref = req.add_refs();
      ref->set_kind(*kind);
      ref->set_name(args[i]);
      if (!api::IsClusterScoped(*kind)) {
        ref->set_namespace_(opts.namespace_name.empty() ? "default" : opts.namespace_name);
      }
    }
  }
  v1::DeleteResponse resp;
  grpc::Status st = c.objects().Delete(c.Context().get(), req, &resp);
  if (!st.ok()) return Error(err, c.Explain(st));
  PrintResults(resp.results(), opts.dry_run, true, opts.output, out);
  return kOk;
}

// The labels of an API object.
Labels ApiLabels(const v1::Object& o) {
  const v1::ObjectMeta* meta = o.has_namespace_()                ? &o.namespace_().metadata()
                               : o.has_pod()                   ? &o.pod().metadata()
                               : o.has_cluster_network_policy() ? &o.cluster_network_policy().metadata()
                               : o.has_node()                  ? &o.node().metadata()
                                                               : &o.network_policy().metadata();
  return Labels(meta->labels().begin(), meta->labels().end());
}

int Get(Client& c, const std::vector<std::string>& args, const CommandOptions& opts,
        std::ostream& out, std::ostream& err) {
  if (args.size() < 2) {
    return UsageError(err,
                      "get needs a kind: namespaces, pods, networkpolicies, clusternetworkpolicies "
                      "or nodes");
  }
  if (args.size() > 3) return UsageError(err, "get takes a kind and at most one name");
  absl::StatusOr<v1::Kind> kind = ParseKind(args[1]);
  if (!kind.ok()) return UsageError(err, std::string(kind.status().message()));
  std::optional<LabelSelector> selector;
  if (!opts.selector.empty()) {
    absl::StatusOr<LabelSelector> sel = ParseLabelSelector(opts.selector);
    if (!sel.ok()) return UsageError(err, std::string(sel.status().message()));
    selector = *std::move(sel);
  }
  std::vector<v1::Object> objects;
  if (args.size() == 3) {
    if (selector) return UsageError(err, "name cannot be provided when a selector is specified");
    if (opts.all_namespaces) {
      return UsageError(err, "a resource cannot be retrieved by name across all namespaces");
    }
    v1::GetRequest req;
    req.mutable_ref()->set_kind(*kind);
    req.mutable_ref()->set_name(args[2]);
    if (!api::IsClusterScoped(*kind)) {
      req.mutable_ref()->set_namespace_(opts.namespace_name.empty() ? "default"
                                                                   : opts.namespace_name);
    }
    v1::GetResponse resp;
    grpc::Status st = c.objects().Get(c.Context().get(), req, &resp);
    if (!st.ok()) return Error(err, c.Explain(st));
    if (!resp.stale().empty()) err << "netpolctl: warning: " << resp.stale() << "\n";
    objects.push_back(resp.object());
    CommandOptions o = opts;
    if (o.namespace_name.empty()) o.namespace_name = req.ref().namespace_();
    PolicyHits hits;
    if (o.output == "wide" && HasHits(*kind)) hits = FetchPolicyHits(c, err);
    return PrintObjects(objects, true, o, *kind, out, err, hits);
  }
  // -A lists every namespace (as netpolctl does without -n), whatever -n says.
  CommandOptions list_opts = opts;
  if (opts.all_namespaces) list_opts.namespace_name.clear();
  if (api::IsClusterScoped(*kind)) list_opts.namespace_name.clear();
  v1::ListRequest req;
  req.set_kind(*kind);
  req.set_namespace_(list_opts.namespace_name);
  v1::ListResponse resp;
  grpc::Status st = c.objects().List(c.Context().get(), req, &resp);
  if (!st.ok()) return Error(err, c.Explain(st));
  if (!resp.stale().empty()) err << "netpolctl: warning: " << resp.stale() << "\n";
  for (const v1::Object& o : resp.objects()) {
    if (!selector || Matches(*selector, ApiLabels(o))) objects.push_back(o);
  }
  PolicyHits hits;
  if (opts.output == "wide" && HasHits(*kind)) hits = FetchPolicyHits(c, err);
  return PrintObjects(objects, false, list_opts, *kind, out, err, hits);
}

// ---- wait ----

// A context whose deadline is `deadline` plus a grace for the answer to travel.
std::unique_ptr<grpc::ClientContext> ContextUntil(Client& c, absl::Time deadline) {
  std::unique_ptr<grpc::ClientContext> ctx = c.Context();
  ctx->set_deadline(absl::ToChronoTime(deadline + absl::Seconds(2)));
  return ctx;
}

// Whether an answer means "try again" (the agent is starting or busy).
bool Transient(const grpc::Status& st) {
  return st.error_code() == grpc::StatusCode::UNAVAILABLE ||
         st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
}

// Sleeps `d`, never past `deadline`.
void SleepUntilAtMost(absl::Duration d, absl::Time deadline) {
  absl::SleepFor(std::max(absl::ZeroDuration(), std::min(d, deadline - absl::Now())));
}

// The generation at which the store holds every object of the files as they are written
// there: the agent compares the files' objects with its store (a compare-only dry-run apply:
// the agent's own loader and comparison, no compile) until none of them would change; the
// generation of that answer is one at which they were all stored. Its kernel holding that
// generation (or a later one) is "enforced".
int StoredGeneration(Client& c, const CommandOptions& opts, absl::Time deadline,
                     std::istream& in, std::ostream& err, uint64_t* generation) {
  absl::StatusOr<std::vector<v1::Manifest>> manifests = ReadManifests(opts.files, in);
  if (!manifests.ok()) return Error(err, manifests.status());
  absl::Status ns_ok = CheckNamespaces(*manifests, opts.namespace_name);
  if (!ns_ok.ok()) return Error(err, ns_ok);
  v1::ApplyRequest req;
  for (v1::Manifest& m : *manifests) {
    m.set_default_namespace(opts.namespace_name);
    *req.add_manifests() = std::move(m);
  }
  req.set_dry_run(true);
  req.set_compare_only(true);
  std::string waiting_for;
  for (;;) {
    v1::ApplyResponse resp;
    grpc::Status st = c.objects().Apply(ContextUntil(c, deadline).get(), req, &resp);
    if (st.ok()) {
      std::vector<std::string> pending;
      for (const v1::ObjectResult& r : resp.results()) {
        if (r.action() == v1::UNCHANGED) continue;
        std::string ref = api::RefString(r.ref());
        pending.push_back(absl::StrCat(ref, " (", ActionWord(r.action()), ")"));
      }
      if (pending.empty()) {
        *generation = resp.generation();
        return kOk;
      }
      waiting_for = absl::StrCat("the store does not hold these objects as in the files yet ",
                                 "(applying would change them): ", absl::StrJoin(pending, ", "));
    } else {
      if (!Transient(st) && st.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
        return Error(err, c.Explain(st));
      }
      waiting_for = std::string(c.Explain(st).message());
    }
    if (absl::Now() >= deadline) {
      err << "error: timed out after " << absl::FormatDuration(opts.timeout) << ": "
          << waiting_for << "\n";
      return kTimedOut;
    }
    SleepUntilAtMost(opts.poll_interval, deadline);
  }
}

int Wait(Client& c, const std::vector<std::string>& args, const CommandOptions& opts,
         std::istream& in, std::ostream& out, std::ostream& err) {
  if (args.size() != 1) return UsageError(err, "wait takes only flags");
  if (opts.wait_for.empty()) return UsageError(err, "wait needs --for=enforced");
  if (opts.wait_for != "enforced") {
    return UsageError(err, absl::StrCat("unknown condition --for=", opts.wait_for,
                                        " (the one condition is: enforced)"));
  }
  const bool by_files = opts.files_given || !opts.files.empty();
  if (by_files == (opts.generation >= 0)) {
    return UsageError(err, "wait needs exactly one of -f FILE and --generation G");
  }
  if (opts.timeout <= absl::ZeroDuration()) return UsageError(err, "--timeout must be positive");
  const absl::Time deadline = absl::Now() + opts.timeout;
  uint64_t generation = static_cast<uint64_t>(std::max<int64_t>(0, opts.generation));
  if (by_files) {
    int code = StoredGeneration(c, opts, deadline, in, err, &generation);
    if (code != kOk) return code;
  }
  std::string waiting_for;
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      err << "error: timed out after " << absl::FormatDuration(opts.timeout)
          << ": generation " << generation << " is not in this node's kernel"
          << (waiting_for.empty() ? "" : ": ") << waiting_for << "\n";
      return kTimedOut;
    }
    v1::WaitForGenerationRequest req;
    req.set_generation(generation);
    *req.mutable_timeout() = google::protobuf::util::TimeUtil::NanosecondsToDuration(
        absl::ToInt64Nanoseconds(left));
    v1::StatusResponse s;
    grpc::Status st = c.status().WaitForGeneration(ContextUntil(c, deadline).get(), req, &s);
    if (st.ok()) {
      if (opts.output == "json") {
        out << ToJson(s);
      } else {
        out << "generation " << generation << " is enforced on node " << s.node_name()
            << " (in the kernel: " << s.applied_generation() << ")\n";
      }
      return kOk;
    }
    // The agent bounds each wait by its write timeout; a longer --timeout asks again.
    if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      waiting_for = st.error_message();
      continue;
    }
    if (!Transient(st)) return Error(err, c.Explain(st));
    waiting_for = std::string(c.Explain(st).message());
    SleepUntilAtMost(opts.poll_interval, deadline);
  }
}

// ---- status --all-nodes ----

std::string Ago(const google::protobuf::Timestamp& t, absl::Time now) {
  if (t.seconds() == 0 && t.nanos() == 0) return "never";
  absl::Time then = absl::FromUnixNanos(google::protobuf::util::TimeUtil::TimestampToNanoseconds(t));
  absl::Duration d = std::max(absl::ZeroDuration(), absl::Trunc(now - then, absl::Seconds(1)));
  return d == absl::ZeroDuration() ? "0s" : absl::FormatDuration(d);
}

int AllNodes(Client& c, const CommandOptions& opts, std::ostream& out, std::ostream& err) {
  v1::ListNodeStatusResponse resp;
  grpc::Status st =
      c.status().ListNodeStatus(c.Context().get(), v1::ListNodeStatusRequest(), &resp);
  if (!st.ok()) return Error(err, c.Explain(st));
  bool all_current = resp.nodes_size() > 0;
  for (const v1::NodeStatus& n : resp.nodes()) {
    all_current &= n.current();
  }
  const int code = all_current ? kOk : kFailed;
  if (opts.output == "json") {
    out << ToJson(resp);
    return code;
  }
  const absl::Time now = absl::Now();
  std::vector<std::vector<std::string>> rows = {
      {"NODE", "ENFORCED", "HEALTH", "LAST SYNC", "VERSION", "AGE", "STALE"}};
  for (const v1::NodeStatus& n : resp.nodes()) {
    std::string health = !n.serving()                ? "starting"
                         : !n.last_error().empty()   ? "sync failed: " + n.last_error()
                         : !n.datastore_healthy()    ? "datastore unhealthy"
                                                     : "ok";
    std::string enforced = absl::StrCat(n.applied_generation());
    if (n.applied_generation() < resp.newest_generation()) {
      absl::StrAppend(&enforced, n.current() ? " (same objects as " : " (behind ",
                      resp.newest_generation(), ")");
    }
    std::string last_sync = Ago(n.last_sync_time(), now);
    if (last_sync != "never") last_sync += " ago";
    rows.push_back({n.node_name(), enforced, health, last_sync, n.build().version(),
                    Ago(n.publish_time(), now), n.stale() ? "yes" : "no"});
  }
  if (resp.newest_generation() == 0) {
    out << "Generations: per node (each agent numbers its own; current: its kernel holds all "
           "its watches delivered)\n";
  } else {
    out << "Newest generation: " << resp.newest_generation() << "\n";
  }
  if (resp.nodes().empty()) out << "No node has published a status yet.\n";
  else PrintTable(rows, out);
  return code;
}

// The datastore rows of `netpolctl status` (none from an agent that does not report it).
std::vector<std::vector<std::string>> DatastoreRows(const v1::StatusResponse& s) {
  using google::protobuf::util::TimeUtil;
  if (!s.has_datastore()) return {};
  const v1::DatastoreStatus& d = s.datastore();
  const std::string health = d.healthy() ? "healthy" : "NOT healthy";
  std::vector<std::vector<std::string>> rows;
  if (d.has_embedded()) {
    const v1::EmbeddedStoreStatus& e = d.embedded();
    rows.push_back({"Datastore:", absl::StrCat("embedded (", e.directory(), "), ", health)});
    std::string journal = absl::StrCat(e.journal_records(), " records, ", e.journal_bytes(),
                                       " bytes since the last compaction");
    if (e.has_last_compaction_time()) {
      absl::StrAppend(&journal, " at ", TimeUtil::ToString(e.last_compaction_time()));
    }
    absl::StrAppend(&journal, " (", e.compactions(), " since start)");
    if (!e.last_compaction_error().empty()) {
      absl::StrAppend(&journal, "; the last compaction failed: ", e.last_compaction_error());
    }
    rows.push_back({"Journal:", journal});
  } else if (d.has_etcd()) {
    const v1::EtcdStatus& e = d.etcd();
    rows.push_back({"Datastore:", absl::StrCat("etcd ", e.endpoints(), ", ", health)});
    rows.push_back(
        {"Watch:", e.watch_connected()
                       ? absl::StrCat("connected to ", e.watch_endpoint(), ", at revision ",
                                      e.revision())
                       : absl::StrCat("not connected, at revision ", e.revision(),
                                      e.watch_error().empty() ? "" : ": ", e.watch_error())});
  } else if (d.has_kubernetes()) {
    const v1::KubernetesStatus& k = d.kubernetes();
    rows.push_back({"Datastore:",
                    absl::StrCat("kubernetes ", k.server(), ", ",
                                 k.watch_connected()
                                     ? "connected"
                                     : "NOT connected (enforcing the last state it had)")});
    std::string events = absl::StrCat("resourceVersion ",
                                      k.resource_version().empty() ? "-" : k.resource_version());
    if (k.has_last_event_time()) {
      const absl::Duration age =
          absl::Now() - absl::FromUnixNanos(TimeUtil::TimestampToNanoseconds(k.last_event_time()));
      absl::StrAppend(&events, ", last event ",
                      absl::FormatDuration(absl::Trunc(std::max(age, absl::ZeroDuration()),
                                                       absl::Seconds(1))),
                      " ago");
    } else {
      absl::StrAppend(&events, ", no event yet");
    }
    rows.push_back({"Events:", events});
    for (const v1::KubernetesResourceStatus& r : k.resources()) {
      rows.push_back(
          {absl::StrCat("Watch ", r.resource(), ":"),
           r.watching() ? absl::StrCat("watching from resourceVersion ", r.resource_version())
                        : absl::StrCat("NOT watching (at resourceVersion ",
                                       r.resource_version().empty() ? "-" : r.resource_version(),
                                       ")", r.error().empty() ? "" : ": ", r.error())});
    }
    if (k.skipped_objects_size() > 0) {
      std::string skipped = absl::StrCat(k.skipped_objects_size(),
                                         " objects netpol cannot represent are left out: ");
      for (int i = 0; i < k.skipped_objects_size() && i < 5; ++i) {
        absl::StrAppend(&skipped, i > 0 ? "; " : "", k.skipped_objects(i));
      }
      if (k.skipped_objects_size() > 5) absl::StrAppend(&skipped, "; ...");
      rows.push_back({"Skipped:", skipped});
    }
  } else {
    rows.push_back({"Datastore:", health});
  }
  if (d.stale()) {
    rows.push_back({"Stale:", "yes: not reached since the agent started; enforcing and serving "
                              "the state cache (writes are refused)"});
  }
  if (d.has_cache()) {
    const v1::StateCacheStatus& k = d.cache();
    std::string cache = k.version().empty()
                            ? absl::StrCat(k.path(), ", nothing saved yet")
                            : absl::StrCat(k.path(), ", version ", k.version());
    if (k.has_saved_at()) absl::StrAppend(&cache, " saved at ", TimeUtil::ToString(k.saved_at()));
    if (!k.error().empty()) absl::StrAppend(&cache, "; the last save failed: ", k.error());
    rows.push_back({"State cache:", cache});
  }
  // Kubernetes: objects are never written here.
  if (!d.has_kubernetes()) {
    rows.push_back(
        {"Last write error:", d.last_write_error().empty() ? "none" : d.last_write_error()});
  }
  return rows;
}

// One flow record as a line: time, verdict, direction, protocol, source -> destination, the
// policies (and for an allowed one the rules that allowed it). An endpoint is "ns/pod (ip):port"
// or "ip:port".
std::string FlowLine(const v1::FlowRecord& r) {
  auto end = [](const v1::FlowEndpoint& e) {
    std::string ip = absl::StrContains(e.ip(), ':') ? absl::StrCat("[", e.ip(), "]") : e.ip();
    std::string s = e.pod().empty() ? ip : absl::StrCat(e.pod(), " (", e.ip(), ")");
    if (e.port() != 0) absl::StrAppend(&s, e.pod().empty() ? ":" : " port ", e.port());
    return s;
  };
  absl::Time t = absl::FromUnixSeconds(r.time().seconds()) + absl::Nanoseconds(r.time().nanos());
  const std::string dir = r.direction() == v1::INGRESS ? "ingress" : "egress";
  std::string decided =
      absl::StrCat(" policies: ", r.policies().empty() ? "<none>" : absl::StrJoin(r.policies(), ", "),
                   r.rules().empty() ? "" : " rules: ", absl::StrJoin(r.rules(), ", "));
  if (r.has_cluster_network_policy_rule()) {
    // "clusternetworkpolicy: Admin lock-web ingress[1] keep-out (priority 5)"
    const v1::ClusterNetworkPolicyRuleRef& c = r.cluster_network_policy_rule();
    decided = absl::StrCat(" clusternetworkpolicy: ", v1::ClusterNetworkPolicyTier_Name(c.tier()));
    if (!c.policy().empty()) {
      absl::StrAppend(&decided, " ", c.policy(), " ", dir, "[", c.rule(), "]",
                      c.name().empty() ? "" : " ", c.name(), " (priority ", c.priority(), ")");
    }
  }
  return absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone()), " ",
                      v1::Verdict_Name(r.verdict()), " ", dir, " ", r.protocol(), " ",
                      end(r.source()), " -> ", end(r.destination()), decided);
}

int Logs(Client& c, const std::vector<std::string>& args, const CommandOptions& opts,
         std::ostream& out, std::ostream& err) {
  if (args.size() != 1) return UsageError(err, "logs takes no arguments (use --pod NS/NAME)");
  if (opts.denied && opts.allowed) return UsageError(err, "--denied and --allowed exclude each other");
  v1::FlowLogsRequest req;
  req.set_follow(opts.follow);
  if (opts.denied) req.set_verdict(v1::DENIED);
  if (opts.allowed) req.set_verdict(v1::ALLOWED);
  if (!opts.pod.empty()) {
    std::string pod = opts.pod;
    if (!absl::StrContains(pod, '/')) {
      pod = absl::StrCat(opts.namespace_name.empty() ? "default" : opts.namespace_name, "/", pod);
    }
    req.set_pod(pod);
  } else if (!opts.namespace_name.empty()) {
    req.set_namespace_(opts.namespace_name);
  }
  if (opts.tail < 0) return UsageError(err, "--tail must be >= 0");
  req.set_tail(opts.tail);
  if (opts.stats) {
    v1::FlowLogStats stats;
    grpc::Status st = c.flows().Stats(c.Context().get(), v1::FlowLogStatsRequest(), &stats);
    if (!st.ok()) return Error(err, c.Explain(st));
    out << ToJson(stats) << "\n";
    return kOk;
  }
  // Following has no deadline: the stream ends when the agent stops or on Ctrl-C.
  std::unique_ptr<grpc::ClientContext> ctx =
      opts.follow ? std::make_unique<grpc::ClientContext>() : c.Context();
  std::unique_ptr<grpc::ClientReader<v1::FlowRecord>> reader = c.flows().Logs(ctx.get(), req);
  v1::FlowRecord r;
  google::protobuf::util::JsonPrintOptions jo;
  while (reader->Read(&r)) {
    if (opts.output == "json") {
      std::string line;
      google::protobuf::util::MessageToJsonString(r, &line, jo);
      out << line << "\n";
    } else {
      out << FlowLine(r) << "\n";
    }
    out.flush();
  }
  grpc::Status st = reader->Finish();
  if (!st.ok()) return Error(err, c.Explain(st));
  return kOk;
}

int Status(Client& c, const CommandOptions& opts, std::ostream& out, std::ostream& err) {
  if (opts.all_nodes) return AllNodes(c, opts, out, err);
  v1::StatusResponse s;
  grpc::Status st = c.status().Status(c.Context().get(), v1::StatusRequest(), &s);
  if (!st.ok()) return Error(err, c.Explain(st));
  const int code = s.serving() && s.last_error().empty() ? kOk : kFailed;
  if (opts.output == "json") {
    out << ToJson(s);
    return code;
  }
  using google::protobuf::util::TimeUtil;
  std::string last_sync = "never";
  if (s.has_last_sync_time()) {
    const char* kind = s.last_sync_kind() == v1::FULL          ? "full"
                       : s.last_sync_kind() == v1::INCREMENTAL ? "incremental"
                                                               : "check";
    last_sync = absl::StrCat(kind, " at ", TimeUtil::ToString(s.last_sync_time()), ", took ",
                             absl::FormatDuration(absl::Nanoseconds(
                                 TimeUtil::DurationToNanoseconds(s.last_sync_duration()))));
  }
  std::vector<std::vector<std::string>> rows = {
      {"Agent:", c.server()},
      {"Node:", s.node_name()},
      {"Table:", "inet " + s.table()},
      {"Serving:", s.serving() ? "yes" : "no (starting: the first sync has not committed)"},
      {"Generation:", absl::StrCat(s.generation(), " (in the kernel: ",
                                   s.applied_generation(), ")")},
      {"Last sync:", last_sync},
      {"Last error:", s.last_error().empty() ? "none" : s.last_error()},
      {"Objects:", absl::StrCat(s.objects().namespaces(), " namespaces, ", s.objects().pods(),
                                " pods (", s.objects().local_pods(), " local), ",
                                s.objects().network_policies(), " networkpolicies")},
      {"Program:", absl::StrCat(s.program().chains(), " chains, ", s.program().rules(),
                                " rules, ", s.program().sets(), " sets, ",
                                s.program().elements(), " elements")},
      {"Syncs:", absl::StrCat(s.syncs(), " (", s.sync_failures(), " failed)")},
  };
  for (auto& row : DatastoreRows(s)) rows.push_back(std::move(row));
  PrintTable(rows, out);
  // The exit status says whether the kernel enforces the store; the datastore's health is
  // reported, not judged (a node keeps enforcing while its datastore is away).
  return code;
}

absl::StatusOr<v1::Endpoint> ParseEndpoint(const std::string& text, const char* flag,
                                           const std::string& ns) {
  v1::Endpoint e;
  if (text.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " is required: NAMESPACE/POD, POD (in -n or default), an IP address, "
                           "or node"));
  }
  if (text == "node") {
    e.set_node(true);
  } else if (IpAddr::Parse(text).ok()) {
    e.set_address(text);
  } else if (text.find('/') != std::string::npos) {
    e.set_pod(text);
  } else {
    e.set_pod((ns.empty() ? "default" : ns) + "/" + text);
  }
  return e;
}

int Check(Client& c, const CommandOptions& opts, std::ostream& out, std::ostream& err) {
  v1::CheckRequest req;
  absl::StatusOr<v1::Endpoint> from = ParseEndpoint(opts.from, "--from", opts.namespace_name);
  if (!from.ok()) return UsageError(err, std::string(from.status().message()));
  absl::StatusOr<v1::Endpoint> to = ParseEndpoint(opts.to, "--to", opts.namespace_name);
  if (!to.ok()) return UsageError(err, std::string(to.status().message()));
  if (opts.port <= 0) return UsageError(err, "--port is required (1-65535)");
  v1::Protocol proto;
  if (!v1::Protocol_Parse(absl::AsciiStrToUpper(opts.protocol), &proto) ||
      proto == v1::PROTOCOL_UNSPECIFIED) {
    return UsageError(err, absl::StrCat("--protocol ", opts.protocol, ": use TCP, UDP or SCTP"));
  }
  *req.mutable_source() = *from;
  *req.mutable_destination() = *to;
  req.set_port(opts.port);
  req.set_protocol(proto);
  req.set_ip_family(opts.ip_family);
  v1::CheckResponse resp;
  grpc::Status st = c.queries().Check(c.Context().get(), req, &resp);
  if (!st.ok()) return Error(err, c.Explain(st), kUsage);
  if (opts.output == "json") {
    out << ToJson(resp);
  } else {
    out << resp.explanation();
    if (!resp.explanation().empty() && resp.explanation().back() != '\n') out << "\n";
  }
  switch (resp.verdict()) {
    case v1::ALLOWED:
      return kOk;
    case v1::DENIED:
      return kFailed;
    default:
      return kUsage;
  }
}

int Explain(Client& c, const std::vector<std::string>& args, const CommandOptions& opts,
            std::ostream& out, std::ostream& err) {
  if (args.size() != 3 || ParseKind(args[1]).value_or(v1::KIND_UNSPECIFIED) != v1::POD) {
    return UsageError(err, "usage: netpolctl explain pod NAMESPACE/NAME");
  }
  v1::ExplainPodRequest req;
  req.set_pod(args[2].find('/') == std::string::npos
                  ? (opts.namespace_name.empty() ? "default" : opts.namespace_name) + "/" + args[2]
                  : args[2]);
  v1::ExplainPodResponse resp;
  grpc::Status st = c.queries().ExplainPod(c.Context().get(), req, &resp);
  if (!st.ok()) return Error(err, c.Explain(st));
  if (opts.output == "json") {
    out << ToJson(resp);
    return kOk;
  }
  std::vector<std::string> ports, ips;
  for (const v1::NamedPort& p : resp.named_ports()) {
    ports.push_back(absl::StrCat(p.name(), "=", p.port(), "/", v1::Protocol_Name(p.protocol())));
  }
  for (const v1::PodIP& ip : resp.pod().status().pod_ips()) ips.push_back(ip.ip());
  std::vector<std::string> in_pol(resp.ingress_policies().begin(), resp.ingress_policies().end());
  std::vector<std::string> eg_pol(resp.egress_policies().begin(), resp.egress_policies().end());
  std::vector<std::string> chains(resp.chains().begin(), resp.chains().end());
  std::vector<std::string> admin(resp.admin_cluster_network_policies().begin(),
                                 resp.admin_cluster_network_policies().end());
  std::vector<std::string> baseline(resp.baseline_cluster_network_policies().begin(),
                                    resp.baseline_cluster_network_policies().end());
  std::vector<std::vector<std::string>> cnp_rows;
  if (!admin.empty()) cnp_rows.push_back({"Admin tier:", absl::StrJoin(admin, ", ")});
  if (!baseline.empty()) cnp_rows.push_back({"Baseline tier:", absl::StrJoin(baseline, ", ")});
  std::vector<std::vector<std::string>> rows = {
          {"Pod:", req.pod()},
          {"Node:", resp.pod().spec().node_name().empty() ? "<none>" : resp.pod().spec().node_name()},
          {"Enforced here:", resp.local() ? "yes" : "no (not on this node, or hostNetwork)"},
          {"IPs:", JoinOrNone(ips)},
          {"Ingress policies:", JoinOrNone(in_pol)},
          {"Egress policies:", JoinOrNone(eg_pol)},
          {"Named ports:", JoinOrNone(ports)},
          {"Chains:", JoinOrNone(chains)},
  };
  // ClusterNetworkPolicies selecting the pod, shown only when there are any.
  rows.insert(rows.begin() + 6, cnp_rows.begin(), cnp_rows.end());
  PrintTable(rows, out);
  if (!resp.counters().empty()) {
    // What each rule of the pod's chains counted (shared by every pod of its group).
    std::vector<std::vector<std::string>> rows = {
        {"CHAIN", "RULE", "DIRECTION", "DECIDES", "PACKETS", "BYTES"}};
    for (const v1::RuleCounter& r : resp.counters()) {
      std::vector<std::string> decides;
      if (r.kind() == v1::RuleCounter::DROP) {
        decides.push_back("drop (no rule of " + absl::StrJoin(r.policies(), ", ") + ")");
      }
      for (const v1::RuleRef& ref : r.rules()) {
        decides.push_back(absl::StrCat(ref.policy(), " ", r.direction(), "[", ref.rule(), "]"));
      }
      for (const v1::ClusterNetworkPolicyRuleRef& ref : r.cluster_rules()) {
        decides.push_back(absl::StrCat(v1::ClusterNetworkPolicyTier_Name(ref.tier()), " ",
                                       ref.policy(), " ", r.direction(), "[", ref.rule(), "] (",
                                       v1::ClusterNetworkPolicyRuleAction_Name(ref.action()), ")"));
      }
      if (decides.empty()) decides.push_back(r.comment());
      rows.push_back({r.chain(), absl::StrCat(r.index()), r.direction().empty() ? "?" : r.direction(),
                      absl::StrJoin(decides, ", "), absl::StrCat(r.packets()),
                      absl::StrCat(r.bytes())});
    }
    out << "\nRule counters (since each chain was built):\n";
    PrintTable(rows, out);
  }
  if (!resp.nft_text().empty()) out << "\n" << resp.nft_text();
  return kOk;
}

int Render(Client& c, const CommandOptions& opts, std::ostream& out, std::ostream& err) {
  v1::RenderRequest req;
  req.set_source(opts.kernel ? v1::RenderRequest::KERNEL : v1::RenderRequest::COMMITTED);
  v1::RenderResponse resp;
  grpc::Status st = c.queries().Render(c.Context().get(), req, &resp);
  if (!st.ok()) return Error(err, c.Explain(st));
  out << resp.nft_text();
  return kOk;
}

// ---- describe ----

// Every namespace and pod the agent holds, as the evaluator's State (policies: only `policy`).
absl::StatusOr<State> FetchState(Client& c) {
  State state;
  for (v1::Kind kind : {v1::NAMESPACE, v1::POD}) {
    v1::ListRequest req;
    req.set_kind(kind);
    v1::ListResponse resp;
    grpc::Status st = c.objects().List(c.Context().get(), req, &resp);
    if (!st.ok()) return c.Explain(st);
    for (const v1::Object& o : resp.objects()) {
      absl::StatusOr<Object> m = api::FromApiTrusted(o);
      if (!m.ok()) return m.status();
      if (const Namespace* ns = m->AsNamespace()) state.namespaces[ns->name] = *ns;
      if (const Pod* pod = m->AsPod()) state.pods[pod->Key()] = *pod;
    }
  }
  return state;
}

std::string PortString(const PolicyPort& p) {
  std::string proto = ProtocolName(p.protocol);
  if (p.named_port) return absl::StrCat(proto, "/", *p.named_port, " (named)");
  if (!p.port) return absl::StrCat(proto, "/every port");
  if (p.end_port) return absl::StrCat(proto, "/", *p.port, "-", *p.end_port);
  return absl::StrCat(proto, "/", *p.port);
}

// The pods `peer` of `policy` stands for, as the evaluator matches them: selector peers match
// non-hostNetwork pods, ipBlock peers any pod (hostNetwork included) by address.
std::vector<std::string> PeerPods(const State& state, const NetworkPolicy& policy,
                                  const Peer& peer) {
  std::vector<std::string> pods;
  for (const auto& [key, pod] : state.pods) {
    bool match = false;
    if (peer.ip_block) {
      for (const IpAddr& ip : pod.ips) {
        bool in = ip.family == peer.ip_block->cidr.addr.family && peer.ip_block->cidr.Contains(ip);
        for (const Cidr& ex : peer.ip_block->except) {
          if (ex.addr.family == ip.family && ex.Contains(ip)) in = false;
        }
        match |= in;
      }
    } else if (!pod.host_network) {
      match = peer.namespace_selector
                  ? Matches(*peer.namespace_selector, NamespaceLabels(state, pod.namespace_name))
                  : pod.namespace_name == policy.namespace_name;
      if (match && peer.pod_selector) match = Matches(*peer.pod_selector, pod.labels);
    }
    if (match) pods.push_back(key);
  }
  return pods;
}

std::string PeerString(const Peer& peer) {
  if (peer.ip_block) {
    std::string s = "ipBlock " + peer.ip_block->cidr.ToString();
    if (!peer.ip_block->except.empty()) {
      std::vector<std::string> ex;
      for (const Cidr& c : peer.ip_block->except) ex.push_back(c.ToString());
      absl::StrAppend(&s, " except ", absl::StrJoin(ex, ", "));
    }
    return s;
  }
  std::vector<std::string> parts;
  if (peer.namespace_selector) {
    parts.push_back("namespaceSelector " + SelectorString(*peer.namespace_selector));
  }
  if (peer.pod_selector) parts.push_back("podSelector " + SelectorString(*peer.pod_selector));
  return absl::StrJoin(parts, ", ");
}

std::string PodList(const std::vector<std::string>& pods) {
  return pods.empty() ? "(no pod)" : absl::StrJoin(pods, ", ");
}

void DescribeRules(const State& state, const NetworkPolicy& np, bool ingress,
                   std::ostream& out) {
  const bool isolates = ingress ? np.ingress_type : np.egress_type;
  const std::vector<Rule>& rules = ingress ? np.ingress : np.egress;
  const char* title = ingress ? "Ingress rules:" : "Egress rules:";
  if (!isolates) {
    out << title << " (not an " << (ingress ? "Ingress" : "Egress")
        << " policy: the selected pods' " << (ingress ? "ingress" : "egress")
        << " is not isolated by it)\n";
    return;
  }
  if (rules.empty()) {
    out << title << " none: every " << (ingress ? "ingress to" : "egress from")
        << " the selected pods is denied (unless another policy allows it)\n";
    return;
  }
  out << title << "\n";
  const char* dir = ingress ? "from" : "to";
  for (size_t i = 0; i < rules.size(); ++i) {
    const Rule& r = rules[i];
    std::vector<std::string> ports;
    for (const PolicyPort& p : r.ports) ports.push_back(PortString(p));
    out << "  [" << i << "] ports: " << (ports.empty() ? "every port" : absl::StrJoin(ports, ", "))
        << "\n";
    if (r.peers.empty()) {
      out << "      " << dir << ": anyone (every pod, every address)\n";
      continue;
    }
    for (size_t j = 0; j < r.peers.size(); ++j) {
      out << "      " << (j == 0 ? std::string(dir) + ":" : std::string(strlen(dir) + 1, ' '))
          << " " << PeerString(r.peers[j]) << "\n"
          << "        pods: " << PodList(PeerPods(state, np, r.peers[j])) << "\n";
    }
  }
}

std::string ResolveNamespace(const CommandOptions& opts) {
  return opts.namespace_name.empty() ? "default" : opts.namespace_name;
}

int Describe(Client& c, const std::vector<std::string>& args, const CommandOptions& opts,
             std::ostream& out, std::ostream& err) {
  if (args.size() != 3) {
    return UsageError(err, "usage: netpolctl describe networkpolicy|pod|namespace NAME [-n NS]");
  }
  absl::StatusOr<v1::Kind> kind = ParseKind(args[1]);
  if (!kind.ok()) return UsageError(err, std::string(kind.status().message()));
  if (*kind == v1::CLUSTER_NETWORK_POLICY || *kind == v1::NODE) {
    return UsageError(err, absl::StrCat("describe shows networkpolicies, pods and namespaces; for ",
                                        args[1], " use: netpolctl get ", args[1], " ", args[2],
                                        " -o yaml"));
  }
  std::string ns = ResolveNamespace(opts), name = args[2];
  if (*kind != v1::NAMESPACE && name.find('/') != std::string::npos) {
    ns = name.substr(0, name.find('/'));
    name = name.substr(name.find('/') + 1);
  }
  v1::GetRequest get;
  get.mutable_ref()->set_kind(*kind);
  get.mutable_ref()->set_name(name);
  if (*kind != v1::NAMESPACE) get.mutable_ref()->set_namespace_(ns);
  v1::GetResponse got;
  grpc::Status st = c.objects().Get(c.Context().get(), get, &got);
  if (!st.ok()) return Error(err, c.Explain(st));
  absl::StatusOr<Object> obj = api::FromApiTrusted(got.object());
  if (!obj.ok()) return Error(err, obj.status());
  absl::StatusOr<State> state = FetchState(c);
  if (!state.ok()) return Error(err, state.status());

  if (const NetworkPolicy* np = obj->AsNetworkPolicy()) {
    std::vector<std::string> selected, types;
    for (const auto& [key, pod] : state->pods) {
      if (pod.namespace_name == np->namespace_name && !pod.host_network &&
          Matches(np->pod_selector, pod.labels)) {
        selected.push_back(key);
      }
    }
    if (np->ingress_type) types.push_back("Ingress");
    if (np->egress_type) types.push_back("Egress");
    PrintTable({{"Name:", np->name},
                {"Namespace:", np->namespace_name},
                {"Pod selector:", np->pod_selector.Empty() ? "<none> (every pod in the namespace)"
                                                           : SelectorString(np->pod_selector)},
                {"Policy types:", JoinOrNone(types)},
                {"Selected pods:", absl::StrCat(selected.size(), ": ", PodList(selected))}},
               out);
    DescribeRules(*state, *np, true, out);
    DescribeRules(*state, *np, false, out);
    return kOk;
  }
  if (const Pod* pod = obj->AsPod()) {
    v1::ExplainPodRequest req;
    req.set_pod(pod->Key());
    v1::ExplainPodResponse resp;
    grpc::Status est = c.queries().ExplainPod(c.Context().get(), req, &resp);
    if (!est.ok()) return Error(err, c.Explain(est));
    std::vector<std::string> ips, ports;
    for (const IpAddr& ip : pod->ips) ips.push_back(ip.ToString());
    for (const ContainerPort& p : pod->ports) {
      ports.push_back(absl::StrCat(p.name.empty() ? "" : p.name + ":", p.container_port, "/",
                                   ProtocolName(p.protocol)));
    }
    std::vector<std::string> in_pol(resp.ingress_policies().begin(),
                                    resp.ingress_policies().end());
    std::vector<std::string> eg_pol(resp.egress_policies().begin(),
                                    resp.egress_policies().end());
    auto policies = [&](const std::vector<std::string>& keys, const char* dir) {
      if (pod->host_network) return std::string("<none> (hostNetwork pods are not isolated)");
      if (keys.empty()) return absl::StrCat("<none> (", dir, " not isolated: everything allowed)");
      return absl::StrJoin(keys, ", ");
    };
    PrintTable({{"Name:", pod->name},
                {"Namespace:", pod->namespace_name},
                {"Labels:", LabelsString(pod->labels)},
                {"Node:", pod->node_name.empty() ? "<none>" : pod->node_name},
                {"Host network:", pod->host_network ? "true" : "false"},
                {"IPs:", JoinOrNone(ips)},
                {"Ports:", JoinOrNone(ports)},
                {"Enforced here:", resp.local() ? "yes" : "no (not on this node, or hostNetwork)"},
                {"Ingress policies:", policies(in_pol, "ingress")},
                {"Egress policies:", policies(eg_pol, "egress")}},
               out);
    return kOk;
  }
  const Namespace* n = obj->AsNamespace();
  std::vector<std::string> pods;
  for (const auto& [key, pod] : state->pods) {
    if (pod.namespace_name == n->name) pods.push_back(pod.name);
  }
  v1::ListRequest lreq;
  lreq.set_kind(v1::NETWORK_POLICY);
  lreq.set_namespace_(n->name);
  v1::ListResponse lresp;
  grpc::Status lst = c.objects().List(c.Context().get(), lreq, &lresp);
  if (!lst.ok()) return Error(err, c.Explain(lst));
  std::vector<std::string> policies;
  for (const v1::Object& o : lresp.objects()) policies.push_back(o.network_policy().metadata().name());
  PrintTable({{"Name:", n->name},
              {"Labels:", LabelsString(NamespaceLabels(*state, n->name))},
              {"Pods:", JoinOrNone(pods)},
              {"Network policies:", JoinOrNone(policies)}},
             out);
  return kOk;
}

// ---- version ----

v1::BuildInfo ClientBuild() {
  v1::BuildInfo b;
  b.set_version(util::BuildVersion());
  b.set_commit(util::BuildCommit());
  b.set_compilation_mode(util::BuildCompilationMode());
  return b;
}

std::string BuildLine(const v1::BuildInfo& b) {
  return absl::StrCat(b.version(), " (commit ", b.commit(), ", ", b.compilation_mode(), " build)");
}

int Version(Client& c, const CommandOptions& opts, std::ostream& out, std::ostream& err) {
  const v1::BuildInfo client = ClientBuild();
  v1::StatusResponse s;
  grpc::Status st = c.status().Status(c.Context().get(), v1::StatusRequest(), &s);
  if (opts.output == "json") {
    google::protobuf::Struct all;
    auto add = [&all](const std::string& key, const v1::BuildInfo& b) {
      google::protobuf::Struct one;
      google::protobuf::util::JsonStringToMessage(ToJson(b), &one);
      (*all.mutable_fields())[key].mutable_struct_value()->Swap(&one);
    };
    add("clientVersion", client);
    if (st.ok()) add("serverVersion", s.build());
    google::protobuf::util::JsonPrintOptions p;
    p.add_whitespace = true;
    std::string text;
    google::protobuf::util::MessageToJsonString(all, &text, p);
    out << text;
  } else {
    out << "Client Version: " << BuildLine(client) << "\n";
    if (st.ok()) {
      out << "Server Version: "
          << (s.build().version().empty() ? "unknown (the agent does not report it)"
                                          : BuildLine(s.build()))
          << "\n";
    }
  }
  if (!st.ok()) return Error(err, c.Explain(st));
  return kOk;
}

// Which -o values each command has ("" always).
absl::Status CheckOutput(const std::string& cmd, const std::string& output) {
  if (output.empty()) return absl::OkStatus();
  std::vector<std::string> allowed;
  if (cmd == "get") {
    allowed = {"wide", "yaml", "json", "name"};
  } else if (cmd == "status" || cmd == "check" || cmd == "explain" || cmd == "version" ||
             cmd == "wait" || cmd == "logs") {
    allowed = {"json"};
  } else if (cmd == "apply" || cmd == "delete") {
    allowed = {"name"};
  }
  if (std::find(allowed.begin(), allowed.end(), output) != allowed.end()) {
    return absl::OkStatus();
  }
  if (allowed.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--output/-o is not supported by ", cmd, " (it prints text only)"));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown output format \"", output, "\" for ",
                                                 cmd, " (use ", absl::StrJoin(allowed, ", "),
                                                 ")"));
}

// A label value or key as the selector grammar allows: letters, digits, '-', '_', '.', and '/'
// in keys.
bool SelectorToken(absl::string_view t, bool key) {
  if (t.empty()) return !key;
  for (char ch : t) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_' &&
        ch != '.' && !(key && ch == '/')) {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<LabelSelector> ParseLabelSelector(const std::string& text) {
  using Op = LabelSelectorRequirement::Op;
  // Requirements are separated by commas outside parentheses.
  std::vector<std::string> terms;
  std::string cur;
  int depth = 0;
  for (char ch : text) {
    if (ch == '(') ++depth;
    if (ch == ')') --depth;
    if (ch == ',' && depth == 0) {
      terms.push_back(cur);
      cur.clear();
    } else {
      cur += ch;
    }
  }
  terms.push_back(cur);
  LabelSelector sel;
  for (const std::string& raw : terms) {
    const std::string term(absl::StripAsciiWhitespace(raw));
    auto bad = [&](const std::string& why) {
      return absl::InvalidArgumentError(absl::StrCat("invalid label selector \"", text,
                                                     "\": requirement \"", term, "\": ", why));
    };
    if (term.empty()) return bad("empty requirement");
    LabelSelectorRequirement req;
    size_t op_at;
    if (term[0] == '!') {
      req.key = std::string(absl::StripAsciiWhitespace(term.substr(1)));
      req.op = Op::kDoesNotExist;
    } else if ((op_at = term.find("!=")) != std::string::npos ||
               (op_at = term.find("==")) != std::string::npos ||
               (op_at = term.find('=')) != std::string::npos) {
      const bool neq = term.compare(op_at, 2, "!=") == 0;
      const size_t len = neq || term.compare(op_at, 2, "==") == 0 ? 2 : 1;
      req.key = std::string(absl::StripAsciiWhitespace(term.substr(0, op_at)));
      const std::string value(absl::StripAsciiWhitespace(term.substr(op_at + len)));
      if (!SelectorToken(value, false)) return bad("invalid value \"" + value + "\"");
      req.op = neq ? Op::kNotIn : Op::kIn;
      req.values = {value};
    } else {
      std::vector<std::string> words =
          absl::StrSplit(term, absl::MaxSplits(absl::ByAnyChar(" \t"), 1), absl::SkipEmpty());
      req.key = words[0];
      req.op = Op::kExists;
      if (words.size() == 2) {
        std::string rest(absl::StripAsciiWhitespace(words[1]));
        if (absl::StartsWith(rest, "notin")) {
          req.op = Op::kNotIn;
          rest = rest.substr(5);
        } else if (absl::StartsWith(rest, "in")) {
          req.op = Op::kIn;
          rest = rest.substr(2);
        } else {
          return bad("expected =, ==, !=, in or notin after the key");
        }
        rest = std::string(absl::StripAsciiWhitespace(rest));
        if (rest.size() < 2 || rest.front() != '(' || rest.back() != ')') {
          return bad("expected a value list in parentheses, e.g. (a,b)");
        }
        for (absl::string_view v : absl::StrSplit(rest.substr(1, rest.size() - 2), ',')) {
          const std::string value(absl::StripAsciiWhitespace(v));
          if (!SelectorToken(value, false)) return bad("invalid value \"" + value + "\"");
          req.values.push_back(value);
        }
        std::sort(req.values.begin(), req.values.end());
        req.values.erase(std::unique(req.values.begin(), req.values.end()), req.values.end());
      }
    }
    if (!SelectorToken(req.key, true)) return bad("invalid key \"" + req.key + "\"");
    sel.match_expressions.push_back(std::move(req));
  }
  return sel;
}

std::string BashCompletion() {
  return R"BASH(# bash completion for netpolctl: source <(netpolctl completion bash)
__netpolctl_names() {
  local kind=$1 ns=$2
  netpolctl get "$kind" ${ns:+-n "$ns"} -o name 2>/dev/null | sed 's|^[^/]*/||'
}
_netpolctl() {
  local cur prev words cword
  _init_completion -n = 2>/dev/null || {
    cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}
    words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD
  }
  local commands="apply delete get describe status check explain render diff wait logs version completion"
  local kinds="namespaces pods networkpolicies clusternetworkpolicies nodes"
  local flags="--server -f --filename -n --namespace -A --all-namespaces -l --selector -o --output --from --to --port --protocol --ip-family --kernel --denied --allowed --follow --pod --tail --stats --ignore-not-found --dry-run --tls-ca --tls-cert --tls-key --timeout --for --generation --all-nodes --help --version"
  case "$prev" in
    -f|--filename|--tls-ca|--tls-cert|--tls-key) _filedir 2>/dev/null || COMPREPLY=($(compgen -f -- "$cur")); return ;;
    -n|--namespace) COMPREPLY=($(compgen -W "$(__netpolctl_names namespaces)" -- "$cur")); return ;;
    -o|--output) COMPREPLY=($(compgen -W "wide yaml json name" -- "$cur")); return ;;
    --protocol) COMPREPLY=($(compgen -W "TCP UDP SCTP" -- "$cur")); return ;;
    --ip-family) COMPREPLY=($(compgen -W "IPv4 IPv6" -- "$cur")); return ;;
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$flags" -- "$cur")); return
  fi
  local cmd="" kind="" ns="" i
  for ((i = 1; i < cword; i++)); do
    case "${words[i]}" in
      -n|--namespace) ns=${words[i+1]}; ((i++)) ;;
      -*) ;;
      *) if [[ -z "$cmd" ]]; then cmd=${words[i]}; elif [[ -z "$kind" ]]; then kind=${words[i]}; fi ;;
    esac
  done
  if [[ -z "$cmd" ]]; then
    COMPREPLY=($(compgen -W "$commands" -- "$cur")); return
  fi
  case "$cmd" in
    get|delete|describe)
      if [[ -z "$kind" ]]; then COMPREPLY=($(compgen -W "$kinds" -- "$cur"))
      else COMPREPLY=($(compgen -W "$(__netpolctl_names "$kind" "$ns")" -- "$cur")); fi ;;
    explain)
      if [[ -z "$kind" ]]; then COMPREPLY=($(compgen -W "pod" -- "$cur"))
      else COMPREPLY=($(compgen -W "$(__netpolctl_names pods "$ns")" -- "$cur")); fi ;;
    completion) COMPREPLY=($(compgen -W "bash" -- "$cur")) ;;
  esac
}
complete -F _netpolctl netpolctl
)BASH";
}

std::string Usage() {
  return R"(netpolctl: talk to netpol-agent, the node's NetworkPolicy enforcer.

Usage:
  netpolctl apply -f FILE|DIR|- [--dry-run]   create or update objects (Namespace, Pod,
                                              NetworkPolicy, ClusterNetworkPolicy, Node,
                                              List); returns once enforced
  netpolctl delete -f FILE|DIR|-              delete the objects the files name
  netpolctl delete KIND NAME... [-n NS]       (namespaces also delete their pods and policies)
  netpolctl get KIND [NAME] [-n NS | -A] [-l SELECTOR] [-o wide|yaml|json|name]
                                              KIND: namespaces|ns, pods|po, networkpolicies|netpol,
                                              clusternetworkpolicies|cnp, nodes|no
                                              (without -n: every namespace); -l as kubectl:
                                              app=web,tier!=db,env in (a,b),!legacy
  netpolctl describe networkpolicy|pod|namespace NAME [-n NS]
                                              a policy's selected pods and the pods its peers
                                              resolve to; the policies selecting a pod
  netpolctl status [-o json]                  exit 0 only when serving and the last sync succeeded
  netpolctl status --all-nodes [-o json]      every node's published status (etcd, kubernetes):
                                              enforced generation, health, last sync, version,
                                              age, stale; exit 0 only when every node is live
                                              and has enforced the newest generation
  netpolctl wait --for=enforced -f FILE|DIR|- | --generation G [--timeout 90s]
                                              return once this node's kernel holds the objects
                                              of FILE as stored (or generation G): exit 0
                                              enforced, 1 error, 2 usage, 3 timed out
  netpolctl check --from SRC --to DST --port P [--protocol TCP|UDP|SCTP] [--ip-family IPv6]
                                              SRC/DST: NS/POD, POD (in -n or default), an IP, or
                                              node (source only); exit 0 allowed, 1 denied,
                                              2 not applicable or error
  netpolctl explain pod NS/NAME               policies, chains and named ports of a pod
  netpolctl render [--kernel]                 the nftables program (as committed, or read back)
  netpolctl logs [--denied|--allowed] [-f] [--pod NS/NAME] [-n NS] [--tail N] [-o json]
                                              what the kernel dropped (and allowed, where logged)
                                              on this node, with the pods and policies; -f
                                              follows; --stats: received, lost, suppressed
  netpolctl diff -f FILE|DIR|-                what applying would change (exit 1 when anything)
  netpolctl version [-o json]                 this client's and the agent's version
  netpolctl completion bash                   bash completion: source <(netpolctl completion bash)

-f is repeatable (-f a.yaml -f b.yaml): every file is applied, in order, as one all-or-nothing
request. With -n, objects that name another namespace are refused. check, explain and status
print JSON with -o json.

Connection: --server=unix:///run/netpol/agent.sock (default) or host:port, or $NETPOL_SERVER;
over TCP, --tls-ca=CA.pem enables TLS and --tls-cert/--tls-key authenticate (writes need them).
)";
}

int Run(Client& client, const std::vector<std::string>& args, const CommandOptions& options,
        std::istream& in, std::ostream& out, std::ostream& err) {
  if (args.empty()) {
    err << Usage();
    return kUsage;
  }
  const std::string& cmd = args[0];
  if (cmd == "completion") {
    if (args.size() != 2 || args[1] != "bash") {
      return UsageError(err, "usage: netpolctl completion bash");
    }
    out << BashCompletion();
    return kOk;
  }
  absl::Status output_ok = CheckOutput(cmd, options.output);
  if (!output_ok.ok()) return UsageError(err, std::string(output_ok.message()));
  if (options.files_given && options.files.empty()) {
    return UsageError(err, "-f needs a file, a directory or - (stdin)");
  }
  if (cmd == "apply") {
    if (args.size() != 1) return UsageError(err, "apply takes only -f");
    return Apply(client, options, options.dry_run, false, in, out, err);
  }
  if (cmd == "diff") {
    if (args.size() != 1) return UsageError(err, "diff takes only -f");
    return Apply(client, options, true, true, in, out, err);
  }
  if (cmd == "delete") return Delete(client, args, options, in, out, err);
  if (cmd == "get") return Get(client, args, options, out, err);
  if (cmd == "status") return Status(client, options, out, err);
  if (cmd == "wait") return Wait(client, args, options, in, out, err);
  if (cmd == "describe") return Describe(client, args, options, out, err);
  if (cmd == "version") return Version(client, options, out, err);
  if (cmd == "check") return Check(client, options, out, err);
  if (cmd == "explain") return Explain(client, args, options, out, err);
  if (cmd == "render") return Render(client, options, out, err);
  if (cmd == "logs") return Logs(client, args, options, out, err);
  return UsageError(err, absl::StrCat("unknown command \"", cmd, "\""));
}

}  // namespace netpol::cli
