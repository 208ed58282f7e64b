// Loader of the NetworkPolicy conformance cases (tests/conformance/README.md describes the
// format): the lab model (model.yaml) and the case files (cases/*.yaml), expanded for one
// address family.
//
// A loaded case is what a runner drives: for each step, the Kubernetes YAML to apply (label
// changes already turned into updated Pod/Namespace objects) and to delete, then probes with the
// expected 9x9 reachability matrix. tests/conformance/cases.py implements the same format for
// Python runners; DumpCase() and `cases.py --dump` print the same canonical text
// (cases_agree_test checks it).
//
// Errors are InvalidArgument (NotFound for missing files) and name the file and field path:
//   ports.yaml: steps[0].probes[1].expect: row 3 (x/c): cell '?' is neither '.' nor 'X'
#ifndef NETPOL_TESTS_CONFORMANCE_CASES_H_
#define NETPOL_TESTS_CONFORMANCE_CASES_H_

#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model/ip.h"
#include "engine/model/model.h"

namespace netpol {
namespace conformance {

// "ipv4" / "ipv6", as the case format and the dump spell families.
const char* FamilyKey(Family family);

// The lab: network, node, and the Kubernetes objects every case starts from.
struct Model {
  std::string node;                       // the node all pods run on
  std::map<Family, std::string> subnet;   // CIDR text, as written in model.yaml
  std::map<Family, std::string> gateway;  // the node's address on the pod network
  std::vector<std::string> pods;          // "ns/name", in file order (matrix order)
  std::map<std::string, std::map<Family, std::string>> ips;  // pod -> family -> address text
  std::string objects_yaml;  // the Namespace and Pod documents, "---"-separated
  // (kind, namespace, name) -> that object's document text; namespace "" for Namespaces.
  std::map<std::tuple<std::string, std::string, std::string>, std::string> documents;
};

// An expected reachability matrix: allowed[from][to] over Model::pods.
struct Matrix {
  std::vector<std::string> pods;
  std::vector<std::vector<bool>> allowed;

  // Renders the case-file layout: a header line "-   x/a x/b ...", then one row per source
  // pod, "." allowed and "X" denied.
  std::string Text() const;
};

struct Probe {
  int port = 0;
  Protocol protocol = Protocol::kTCP;
  Matrix expect;
};

struct ObjectRef {
  std::string kind;
  std::string namespace_name;  // empty for cluster-scoped objects
  std::string name;
};

struct Step {
  std::string description;
  std::string apply_yaml;          // expanded `apply`, then the updated objects of `label`
  std::string delete_yaml;         // expanded `delete`
  std::vector<ObjectRef> deletes;  // the objects of delete_yaml
  std::vector<Probe> probes;
};

struct Case {
  std::string name;
  std::string file;      // base name of the case file
  std::string upstream;  // the upstream e2e test title; empty for netpol's own cases
  std::string context;   // the upstream ginkgo Context
  std::string description;
  Family family = Family::kV4;
  std::vector<Step> steps;
};

absl::StatusOr<Model> ParseModel(absl::string_view text, const std::string& source);
absl::StatusOr<Model> LoadModel(const std::string& path);

// Replaces the {{...}} placeholders of `text` for `family`; `where` prefixes errors.
absl::StatusOr<std::string> Expand(const Model& model, absl::string_view text, Family family,
                                   const std::string& where);

// Parses one case file's text; `file` is its base name (it must be "<name>.yaml").
absl::StatusOr<Case> ParseCase(const Model& model, absl::string_view text, const std::string& file,
                               Family family);
absl::StatusOr<Case> LoadCase(const Model& model, const std::string& path, Family family);

// Returns the *.yaml files of `dir`, sorted by name.
absl::StatusOr<std::vector<std::string>> CaseFiles(const std::string& dir);
// Loads every case of `dir` for `family`, sorted by file name.
absl::StatusOr<std::vector<Case>> LoadCases(const Model& model, const std::string& dir,
                                            Family family);

// Renders a loaded case as canonical text (identical to cases.py's dump_case).
std::string DumpCase(const Case& c);

}  // namespace conformance
}  // namespace netpol

#endif  // NETPOL_TESTS_CONFORMANCE_CASES_H_
