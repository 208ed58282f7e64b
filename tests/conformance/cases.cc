// The C++ twin of cases.py: same validation, same expansion, same dump. Keep the two in step;
// cases_agree_test compares their dumps of every case.
#include "tests/conformance/cases.h"

#include <dirent.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/util/status_macros.h"
#include "yaml-cpp/yaml.h"

namespace netpol {
namespace conformance {
namespace {

constexpr Family kFamilies[] = {Family::kV4, Family::kV6};

absl::Status Bad(const std::string& msg) { return absl::InvalidArgumentError(msg); }

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Splits multi-document YAML at lines that are exactly "---", keeping each line's newline.
std::vector<std::string> SplitDocuments(absl::string_view text) {
  std::vector<std::string> docs;
  std::string cur;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == absl::string_view::npos ? text.size() : nl + 1;
    absl::string_view line = text.substr(pos, end - pos);
    absl::string_view bare = absl::StripSuffix(absl::StripSuffix(line, "\n"), "\r");
    if (bare == "---") {
      docs.push_back(cur);
      cur.clear();
    } else {
      cur.append(line.data(), line.size());
    }
    pos = end;
  }
  docs.push_back(cur);
  return docs;
}

// Lines as Python's str.splitlines() sees them for LF text: no trailing empty line.
std::vector<std::string> Lines(absl::string_view text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

bool IsLabelsLine(absl::string_view line) { return absl::StartsWith(line, "  labels:"); }

int CountLabelsLines(absl::string_view doc) {
  int n = 0;
  for (const std::string& line : Lines(doc)) n += IsLabelsLine(line) ? 1 : 0;
  return n;
}

bool IsMap(const YAML::Node& n) { return n && n.IsMap(); }

// A scalar as a string, or an error naming `where`.
absl::StatusOr<std::string> Str(const YAML::Node& n, const std::string& where) {
  if (!n || !n.IsScalar()) return Bad(absl::StrCat(where, ": must be a string"));
  return n.Scalar();
}

// An optional text field: absent or null is "".
absl::StatusOr<std::string> Text(const YAML::Node& n, const std::string& where) {
  if (!n || n.IsNull()) return std::string();
  if (!n.IsScalar()) return Bad(absl::StrCat(where, ": must be a text block"));
  return n.Scalar();
}

// True for a plain (unquoted) scalar that YAML 1.1 reads as a bool, null or number, i.e. what
// Kubernetes, the engine loader and cases.py would not take as a string.
bool LooksNonString(const YAML::Node& n) {
  if (n.Tag() != "?") return false;  // quoted, or explicitly tagged
  static const std::regex kNonString(
      "^(y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF|"
      "~|null|Null|NULL|[-+]?[0-9][0-9_]*|[-+]?[0-9]*\\.[0-9_]*([eE][-+]?[0-9]+)?)?$");
  return std::regex_match(n.Scalar(), kNonString);
}

absl::StatusOr<std::tuple<std::string, std::string, std::string>> ObjectKey(
    const YAML::Node& obj, const std::string& where) {
  if (!IsMap(obj) || !IsMap(obj["metadata"])) {
    return Bad(absl::StrCat(where, ": not a Kubernetes object with metadata"));
  }
  const YAML::Node md = obj["metadata"];
  YAML::Node kind = obj["kind"], name = md["name"], ns = md["namespace"];
  if (!kind || !kind.IsScalar() || !name || !name.IsScalar() ||
      (ns && !ns.IsNull() && !ns.IsScalar())) {
    return Bad(absl::StrCat(where, ": kind, metadata.name and metadata.namespace must be strings"));
  }
  std::string ns_text = ns && ns.IsScalar() ? ns.Scalar() : "";
  return std::make_tuple(kind.Scalar(), ns_text, name.Scalar());
}

absl::StatusOr<YAML::Node> ParseYaml(absl::string_view text, const std::string& where) {
  try {
    return YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return Bad(absl::StrCat(where, ": ", e.what()));
  }
}

// The prefix of `len` containing `addr_text`, as canonical CIDR text.
absl::StatusOr<std::string> Prefix(const std::string& addr_text, Family family, int len,
                                   const std::string& where) {
  const int limit = family == Family::kV4 ? 32 : 128;
  if (len < 0 || len > limit) {
    return Bad(
        absl::StrCat(where, ": prefix length ", len, " out of range for ", FamilyKey(family)));
  }
  ASSIGN_OR_RETURN(IpAddr a, IpAddr::Parse(addr_text));
  for (int bit = len; bit < a.bits(); ++bit) {
    a.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  }
  Cidr c;
  c.addr = a;
  c.prefix = len;
  return c.ToString();
}

std::string LabelsLine(const std::map<std::string, std::string>& labels) {
  std::vector<std::string> parts;
  for (const auto& [k, v] : labels) parts.push_back(absl::StrCat("\"", k, "\": \"", v, "\""));
  return absl::StrCat("  labels: {", absl::StrJoin(parts, ", "), "}");
}

absl::StatusOr<std::string> Relabel(const Model& model, const YAML::Node& item,
                                    const std::string& where) {
  std::set<std::string> keys;
  if (IsMap(item)) {
    for (const auto& kv : item) keys.insert(kv.first.Scalar());
  }
  const bool pod_form = keys == std::set<std::string>{"pod", "labels"};
  const bool ns_form = keys == std::set<std::string>{"namespace", "labels"};
  if (!pod_form && !ns_form) {
    return Bad(absl::StrCat(where, ": needs 'pod: ns/name' or 'namespace: name', and 'labels'"));
  }
  std::tuple<std::string, std::string, std::string> key;
  std::string ref;
  if (pod_form) {
    ASSIGN_OR_RETURN(ref, Str(item["pod"], absl::StrCat(where, ".pod")));
    std::pair<std::string, std::string> parts = absl::StrSplit(ref, absl::MaxSplits('/', 1));
    key = {"Pod", parts.first, parts.second};
  } else {
    ASSIGN_OR_RETURN(ref, Str(item["namespace"], absl::StrCat(where, ".namespace")));
    key = {"Namespace", "", ref};
  }
  auto doc = model.documents.find(key);
  if (doc == model.documents.end()) {
    return Bad(absl::StrCat(where, ": ", std::get<0>(key), " ", ref, " is not in the model"));
  }
  static const std::regex kKey(
      "^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$");
  static const std::regex kValue("^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$");
  std::map<std::string, std::string> labels;
  const YAML::Node in = item["labels"];
  if (in && !in.IsNull()) {
    if (!in.IsMap()) return Bad(absl::StrCat(where, ".labels: must be a map"));
    for (const auto& kv : in) {
      const std::string k = kv.first.IsScalar() ? kv.first.Scalar() : "";
      std::string name_part = k.substr(k.rfind('/') == std::string::npos ? 0 : k.rfind('/') + 1);
      if (!kv.first.IsScalar() || LooksNonString(kv.first) || !std::regex_match(k, kKey) ||
          name_part.size() > 63) {
        return Bad(absl::StrCat(where, ".labels: bad label key '", k, "'"));
      }
      if (!kv.second.IsScalar() || LooksNonString(kv.second) ||
          !std::regex_match(kv.second.Scalar(), kValue) || kv.second.Scalar().size() > 63) {
        return Bad(absl::StrCat(where, ".labels.", k, ": value must be a label string (quote it)"));
      }
      labels[k] = kv.second.Scalar();
    }
  }
  std::vector<std::string> lines = absl::StrSplit(doc->second, '\n');
  for (std::string& line : lines) {
    if (IsLabelsLine(line)) {
      line = LabelsLine(labels);
      break;
    }
  }
  return absl::StrJoin(lines, "\n");
}

absl::StatusOr<Matrix> ParseMatrix(const Model& model, const YAML::Node& node,
                                   const std::string& where) {
  if (!node || !node.IsScalar()) return Bad(absl::StrCat(where, ": must be a text block"));
  std::vector<std::vector<std::string>> rows;
  for (absl::string_view line : absl::StrSplit(node.Scalar(), '\n')) {
    std::vector<std::string> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r\f\v"), absl::SkipEmpty());
    if (!words.empty()) rows.push_back(std::move(words));
  }
  if (rows.empty()) return Bad(absl::StrCat(where, ": empty matrix"));
  std::vector<std::string> header = rows[0];
  if (!header.empty() && header[0] == "-") header.erase(header.begin());
  const size_t n = model.pods.size();
  std::vector<std::string> sorted_header = header, sorted_pods = model.pods;
  std::sort(sorted_header.begin(), sorted_header.end());
  std::sort(sorted_pods.begin(), sorted_pods.end());
  if (sorted_header != sorted_pods) {
    return Bad(absl::StrCat(where, ": header must name each of the ", n, " model pods once"));
  }
  if (rows.size() != n + 1) {
    return Bad(absl::StrCat(where, ": needs ", n, " rows after the header, has ", rows.size() - 1));
  }
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < n; ++i) index[model.pods[i]] = i;
  Matrix m;
  m.pods = model.pods;
  m.allowed.assign(n, std::vector<bool>(n, false));
  std::set<std::string> seen;
  for (size_t r = 1; r < rows.size(); ++r) {
    const std::vector<std::string>& row = rows[r];
    if (row.size() != n + 1 || !index.count(row[0]) || seen.count(row[0])) {
      return Bad(
          absl::StrCat(where, ": row ", r, ": needs a new model pod name and ", n, " cells"));
    }
    seen.insert(row[0]);
    for (size_t c = 0; c < n; ++c) {
      const std::string& cell = row[c + 1];
      if (cell != "." && cell != "X") {
        return Bad(absl::StrCat(where, ": row ", r, " (", row[0], "): cell '", cell,
                                "' is neither '.' nor 'X'"));
      }
      m.allowed[index[row[0]]][index[header[c]]] = cell == ".";
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (!m.allowed[i][i]) {
      return Bad(absl::StrCat(where, ": ", model.pods[i], " -> ", model.pods[i],
                              " must be '.': a pod always reaches itself"));
    }
  }
  return m;
}

absl::StatusOr<std::vector<ObjectRef>> Deletes(const std::string& text, const std::string& where) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    return Bad(absl::StrCat(where, ": ", e.what()));
  }
  std::vector<ObjectRef> refs;
  int i = 0;
  for (const YAML::Node& doc : docs) {
    if (!doc || doc.IsNull()) continue;
    ASSIGN_OR_RETURN(auto key, ObjectKey(doc, absl::StrCat(where, ": document ", i++)));
    refs.push_back(ObjectRef{std::get<0>(key), std::get<1>(key), std::get<2>(key)});
  }
  return refs;
}

absl::Status CheckFields(const YAML::Node& map, const std::set<std::string>& allowed,
                         const std::string& where) {
  std::set<std::string> unknown;
  for (const auto& kv : map) {
    const std::string k = kv.first.IsScalar() ? kv.first.Scalar() : "?";
    if (!allowed.count(k)) unknown.insert(k);
  }
  if (!unknown.empty()) return Bad(absl::StrCat(where, ": unknown field ", *unknown.begin()));
  return absl::OkStatus();
}

absl::StatusOr<Step> ParseStep(const Model& model, const YAML::Node& st, Family family,
                               const std::string& where) {
  if (!IsMap(st)) return Bad(absl::StrCat(where, ": must be a map"));
  RETURN_IF_ERROR(CheckFields(st, {"description", "apply", "label", "delete", "probes"}, where));
  Step step;
  std::vector<std::string> apply_docs;
  ASSIGN_OR_RETURN(std::string apply, Text(st["apply"], absl::StrCat(where, ".apply")));
  if (!apply.empty()) {
    ASSIGN_OR_RETURN(std::string expanded,
                     Expand(model, apply, family, absl::StrCat(where, ".apply")));
    apply_docs.push_back(expanded);
  }
  const YAML::Node label = st["label"];
  if (label && !label.IsNull()) {
    if (!label.IsSequence()) return Bad(absl::StrCat(where, ".label: must be a list"));
    for (size_t i = 0; i < label.size(); ++i) {
      ASSIGN_OR_RETURN(std::string doc,
                       Relabel(model, label[i], absl::StrCat(where, ".label[", i, "]")));
      apply_docs.push_back(doc);
    }
  }
  step.apply_yaml = absl::StrJoin(apply_docs, "---\n");
  ASSIGN_OR_RETURN(std::string del, Text(st["delete"], absl::StrCat(where, ".delete")));
  ASSIGN_OR_RETURN(step.delete_yaml, Expand(model, del, family, absl::StrCat(where, ".delete")));
  ASSIGN_OR_RETURN(step.deletes, Deletes(step.delete_yaml, absl::StrCat(where, ".delete")));
  ASSIGN_OR_RETURN(step.description, Text(st["description"], absl::StrCat(where, ".description")));
  const YAML::Node probes = st["probes"];
  if (!probes || !probes.IsSequence() || probes.size() == 0) {
    return Bad(absl::StrCat(where, ".probes: must be a non-empty list"));
  }
  for (size_t p = 0; p < probes.size(); ++p) {
    const std::string pw = absl::StrCat(where, ".probes[", p, "]");
    const YAML::Node pr = probes[p];
    std::set<std::string> keys;
    if (IsMap(pr)) {
      for (const auto& kv : pr) keys.insert(kv.first.IsScalar() ? kv.first.Scalar() : "?");
    }
    if (keys != std::set<std::string>{"port", "protocol", "expect"} || pr.size() != 3) {
      return Bad(absl::StrCat(pw, ": needs exactly port, protocol and expect"));
    }
    Probe probe;
    const YAML::Node port = pr["port"];
    if (!port.IsScalar() || port.Tag() != "?" || !absl::SimpleAtoi(port.Scalar(), &probe.port) ||
        probe.port < 1 || probe.port > 65535) {
      return Bad(absl::StrCat(pw, ".port: must be 1..65535"));
    }
    const std::string proto = pr["protocol"].IsScalar() ? pr["protocol"].Scalar() : "";
    if (proto == "TCP") {
      probe.protocol = Protocol::kTCP;
    } else if (proto == "UDP") {
      probe.protocol = Protocol::kUDP;
    } else if (proto == "SCTP") {
      probe.protocol = Protocol::kSCTP;
    } else {
      return Bad(absl::StrCat(pw, ".protocol: must be TCP, UDP or SCTP"));
    }
    ASSIGN_OR_RETURN(probe.expect, ParseMatrix(model, pr["expect"], absl::StrCat(pw, ".expect")));
    step.probes.push_back(std::move(probe));
  }
  return step;
}

void Block(const std::string& label, const std::string& text, std::vector<std::string>* out) {
  out->push_back(label);
  for (const std::string& line : Lines(text)) out->push_back(absl::StrCat("| ", line));
}

}  // namespace

const char* FamilyKey(Family family) { return family == Family::kV4 ? "ipv4" : "ipv6"; }

std::string Matrix::Text() const {
  std::vector<std::string> cols;
  for (const std::string& p : pods)
    cols.push_back(p.size() >= 3 ? p : p + std::string(3 - p.size(), ' '));
  std::string header = absl::StrCat("-   ", absl::StrJoin(cols, " "));
  while (!header.empty() && header.back() == ' ') header.pop_back();
  std::string out = header + "\n";
  for (size_t i = 0; i < pods.size(); ++i) {
    std::vector<std::string> cells;
    for (bool a : allowed[i]) cells.push_back(a ? "." : "X");
    absl::StrAppend(&out, pods[i], " ", absl::StrJoin(cells, "   "), "\n");
  }
  return out;
}

absl::StatusOr<Model> ParseModel(absl::string_view text, const std::string& source) {
  Model model;
  std::vector<std::string> objects;
  bool have_lab = false;
  YAML::Node lab;
  std::vector<std::string> docs = SplitDocuments(text);
  for (size_t i = 0; i < docs.size(); ++i) {
    const std::string where = absl::StrCat(source, ": document ", i);
    ASSIGN_OR_RETURN(YAML::Node obj, ParseYaml(docs[i], where));
    if (!obj || obj.IsNull()) continue;
    if (IsMap(obj) && obj["kind"] && obj["kind"].IsScalar() && obj["kind"].Scalar() == "Lab") {
      lab = obj;
      have_lab = true;
      continue;
    }
    ASSIGN_OR_RETURN(auto key, ObjectKey(obj, where));
    const auto& [kind, ns, name] = key;
    if (kind != "Namespace" && kind != "Pod") {
      return Bad(
          absl::StrCat(where, ": kind ", kind, ": the model holds Namespaces and Pods only"));
    }
    if (CountLabelsLines(docs[i]) != 1) {
      return Bad(
          absl::StrCat(where, ": ", kind, " ", name, ": needs exactly one '  labels: {...}' line"));
    }
    model.documents[key] = docs[i];
    objects.push_back(docs[i]);
    if (kind == "Pod") {
      const std::string pod = absl::StrCat(ns, "/", name);
      std::map<Family, std::string> fam;
      const YAML::Node status = obj["status"];
      const YAML::Node ips = IsMap(status) ? status["podIPs"] : YAML::Node();
      if (ips && ips.IsSequence()) {
        for (size_t j = 0; j < ips.size(); ++j) {
          const YAML::Node ip = IsMap(ips[j]) ? ips[j]["ip"] : YAML::Node();
          absl::StatusOr<IpAddr> a =
              ip && ip.IsScalar() ? IpAddr::Parse(ip.Scalar()) : absl::StatusOr<IpAddr>(Bad(""));
          if (!a.ok()) {
            return Bad(
                absl::StrCat(where, ": pod ", pod, ": status.podIPs[", j, "].ip: not an address"));
          }
          fam[a->family] = ip.Scalar();
        }
      }
      for (Family f : kFamilies) {
        if (!fam.count(f)) {
          return Bad(
              absl::StrCat(where, ": pod ", pod, ": status.podIPs: no ", FamilyKey(f), " address"));
        }
      }
      model.pods.push_back(pod);
      model.ips[pod] = fam;
    }
  }
  if (!have_lab) return Bad(absl::StrCat(source, ": no 'kind: Lab' document"));
  const YAML::Node nets = lab["networks"];
  for (Family f : kFamilies) {
    const YAML::Node net = IsMap(nets) ? nets[FamilyKey(f)] : YAML::Node();
    if (!IsMap(net) || !net["subnet"] || !net["subnet"].IsScalar() || !net["gateway"] ||
        !net["gateway"].IsScalar() || !lab["node"] || !lab["node"].IsScalar()) {
      return Bad(absl::StrCat(source, ": Lab: needs node and networks.ipv4/ipv6.subnet/gateway"));
    }
    model.subnet[f] = net["subnet"].Scalar();
    model.gateway[f] = net["gateway"].Scalar();
  }
  model.node = lab["node"].Scalar();
  model.objects_yaml = absl::StrJoin(objects, "---\n");
  return model;
}

absl::StatusOr<Model> LoadModel(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseModel(text, BaseName(path));
}

absl::StatusOr<std::string> Expand(const Model& model, absl::string_view text, Family family,
                                   const std::string& where) {
  static const std::regex kPlaceholder("\\{\\{([^{}]*)\\}\\}");
  const std::string in(text);
  std::string out;
  size_t last = 0;
  for (auto it = std::sregex_iterator(in.begin(), in.end(), kPlaceholder);
       it != std::sregex_iterator(); ++it) {
    const std::smatch& m = *it;
    out.append(in, last, m.position(0) - last);
    last = m.position(0) + m.length(0);
    const std::string whole = m.str(0);
    const absl::Status bad = Bad(absl::StrCat(where, ": bad placeholder '", whole, "'"));
    std::vector<std::string> words =
        absl::StrSplit(m.str(1), absl::ByAnyChar(" \t\n\r\f\v"), absl::SkipEmpty());
    if (words.empty()) return bad;
    const std::string& op = words[0];
    if (op == "subnet" || op == "gateway") {
      if (words.size() != 1) return bad;
      out += (op == "subnet" ? model.subnet : model.gateway).at(family);
      continue;
    }
    if ((op != "ip" && op != "host" && op != "cidr") || words.size() < 2) return bad;
    auto pod = model.ips.find(words[1]);
    if (pod == model.ips.end()) {
      return Bad(absl::StrCat(where, ": '", whole, "': unknown pod ", words[1]));
    }
    const std::string& addr = pod->second.at(family);
    if (op == "ip" && words.size() == 2) {
      out += addr;
    } else if (op == "host" && words.size() == 2) {
      absl::StrAppend(&out, addr, family == Family::kV4 ? "/32" : "/128");
    } else if (op == "cidr" && (words.size() == 3 || words.size() == 4)) {
      std::vector<int> lengths;
      for (size_t i = 2; i < words.size(); ++i) {
        int v;
        if (!absl::SimpleAtoi(words[i], &v)) return bad;
        lengths.push_back(v);
      }
      int len =
          family == Family::kV4 ? lengths[0] : (lengths.size() == 2 ? lengths[1] : lengths[0] + 96);
      ASSIGN_OR_RETURN(std::string cidr, Prefix(addr, family, len, where));
      out += cidr;
    } else {
      return bad;
    }
  }
  out.append(in, last, std::string::npos);
  return out;
}

absl::StatusOr<Case> ParseCase(const Model& model, absl::string_view text, const std::string& file,
                               Family family) {
  ASSIGN_OR_RETURN(YAML::Node doc, ParseYaml(text, file));
  if (!IsMap(doc)) return Bad(absl::StrCat(file, ": must be a map"));
  RETURN_IF_ERROR(CheckFields(doc, {"name", "upstream", "context", "description", "steps"}, file));
  Case c;
  c.file = file;
  c.family = family;
  static const std::regex kKebab("^[a-z0-9]+(-[a-z0-9]+)*$");
  if (!doc["name"] || !doc["name"].IsScalar() || !std::regex_match(doc["name"].Scalar(), kKebab)) {
    return Bad(absl::StrCat(file, ": name: must be kebab-case"));
  }
  c.name = doc["name"].Scalar();
  if (c.name + ".yaml" != file) return Bad(absl::StrCat(file, ": name: must match the file name"));
  ASSIGN_OR_RETURN(c.upstream, Text(doc["upstream"], absl::StrCat(file, ": upstream")));
  ASSIGN_OR_RETURN(c.description, Text(doc["description"], absl::StrCat(file, ": description")));
  if (c.upstream.empty() && c.description.empty()) {
    return Bad(absl::StrCat(file, ": needs upstream (the upstream test title) or description"));
  }
  const YAML::Node steps = doc["steps"];
  if (!steps || !steps.IsSequence() || steps.size() == 0) {
    return Bad(absl::StrCat(file, ": steps: must be a non-empty list"));
  }
  for (size_t s = 0; s < steps.size(); ++s) {
    ASSIGN_OR_RETURN(Step step,
                     ParseStep(model, steps[s], family, absl::StrCat(file, ": steps[", s, "]")));
    c.steps.push_back(std::move(step));
  }
  ASSIGN_OR_RETURN(c.context, Text(doc["context"], absl::StrCat(file, ": context")));
  return c;
}

absl::StatusOr<Case> LoadCase(const Model& model, const std::string& path, Family family) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseCase(model, text, BaseName(path), family);
}

absl::StatusOr<std::vector<std::string>> CaseFiles(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return absl::NotFoundError(absl::StrCat(dir, ": cannot open directory"));
  std::vector<std::string> names;
  while (struct dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (absl::EndsWith(name, ".yaml")) names.push_back(name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  for (std::string& n : names) n = absl::StrCat(dir, "/", n);
  return names;
}

absl::StatusOr<std::vector<Case>> LoadCases(const Model& model, const std::string& dir,
                                            Family family) {
  ASSIGN_OR_RETURN(std::vector<std::string> files, CaseFiles(dir));
  std::vector<Case> cases;
  for (const std::string& f : files) {
    ASSIGN_OR_RETURN(Case c, LoadCase(model, f, family));
    cases.push_back(std::move(c));
  }
  return cases;
}

std::string DumpCase(const Case& c) {
  std::vector<std::string> out = {absl::StrCat("case ", c.name), absl::StrCat("file ", c.file),
                                  absl::StrCat("family ", FamilyKey(c.family)),
                                  absl::StrCat("upstream ", c.upstream),
                                  absl::StrCat("context ", c.context)};
  Block("description", c.description, &out);
  for (size_t i = 0; i < c.steps.size(); ++i) {
    const Step& st = c.steps[i];
    out.push_back(absl::StrCat("step ", i));
    Block("step-description", st.description, &out);
    Block("apply", st.apply_yaml, &out);
    Block("delete", st.delete_yaml, &out);
    for (const ObjectRef& r : st.deletes) {
      out.push_back(absl::StrCat("deletes ", r.kind, " ", r.namespace_name, "/", r.name));
    }
    for (const Probe& p : st.probes) {
      out.push_back(absl::StrCat("probe ", ProtocolName(p.protocol), " ", p.port));
      Block("expect", p.expect.Text(), &out);
    }
  }
  return absl::StrJoin(out, "\n") + "\n";
}

}  // namespace conformance
}  // namespace netpol
