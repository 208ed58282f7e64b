// Runs every conformance case through the case loader and the evaluator, for IPv4 and IPv6:
// each step's objects are applied to (or deleted from) a State, then every probe's 9x9 matrix is
// evaluated cell by cell and compared with the expectation. SCTP probes are evaluated too.
//
// Every cell is decided twice, pod to pod and address to address (as the kernel sees it), and
// both must agree. On a mismatch the test prints the expected and observed matrices and the
// evaluator's explanation of each differing cell.
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/eval/eval.h"
#include "engine/model/loader.h"
#include "engine/model/model.h"
#include "gtest/gtest.h"
#include "tests/conformance/cases.h"

namespace netpol {
namespace conformance {
namespace {

constexpr char kDir[] = "tests/conformance";

struct Param {
  std::string file;
  Family family;
};

void PrintTo(const Param& p, std::ostream* os) {
  *os << p.file << " (" << FamilyKey(p.family) << ")";
}

class EvalConformanceTest : public ::testing::TestWithParam<Param> {};

absl::Status Apply(const std::string& yaml, const std::string& where, State* state) {
  if (yaml.empty()) return absl::OkStatus();
  LoadOptions options;
  options.source = where;
  absl::StatusOr<LoadResult> loaded = LoadYaml(yaml, options);
  if (!loaded.ok()) return loaded.status();
  for (const Object& o : loaded->objects) Upsert(o, state);
  return absl::OkStatus();
}

void Delete(const ObjectRef& ref, State* state) {
  const std::string key = absl::StrCat(ref.namespace_name, "/", ref.name);
  if (ref.kind == "NetworkPolicy") {
    EXPECT_EQ(state->policies.erase(key), 1u) << "no policy " << key << " to delete";
  } else if (ref.kind == "Pod") {
    EXPECT_EQ(state->pods.erase(key), 1u) << "no pod " << key << " to delete";
  } else if (ref.kind == "ClusterNetworkPolicy") {
    EXPECT_EQ(state->cluster_policies.erase(ref.name), 1u) << "no clusternetworkpolicy " << ref.name;
  } else if (ref.kind == "Namespace") {
    EXPECT_EQ(state->namespaces.erase(ref.name), 1u) << "no namespace " << ref.name;
  } else {
    ADD_FAILURE() << "cannot delete kind " << ref.kind;
  }
}

TEST_P(EvalConformanceTest, EveryProbeMatches) {
  const Param& param = GetParam();
  absl::StatusOr<Model> model = LoadModel(absl::StrCat(kDir, "/model.yaml"));
  ASSERT_TRUE(model.ok()) << model.status();
  absl::StatusOr<Case> c = LoadCase(*model, param.file, param.family);
  ASSERT_TRUE(c.ok()) << c.status();

  State state;
  absl::Status base = Apply(model->objects_yaml, "model.yaml", &state);
  ASSERT_TRUE(base.ok()) << base;
  ASSERT_EQ(state.pods.size(), model->pods.size());

  for (size_t s = 0; s < c->steps.size(); ++s) {
    const Step& step = c->steps[s];
    const std::string where = absl::StrCat(c->file, " steps[", s, "]");
    absl::Status applied = Apply(step.apply_yaml, where, &state);
    ASSERT_TRUE(applied.ok()) << applied;
    for (const ObjectRef& ref : step.deletes) Delete(ref, &state);

    for (size_t p = 0; p < step.probes.size(); ++p) {
      const Probe& probe = step.probes[p];
      Matrix observed = probe.expect;
      std::string explanations;
      for (size_t i = 0; i < model->pods.size(); ++i) {
        for (size_t j = 0; j < model->pods.size(); ++j) {
          const Pod* from = state.FindPod(model->pods[i]);
          const Pod* to = state.FindPod(model->pods[j]);
          ASSERT_NE(from, nullptr);
          ASSERT_NE(to, nullptr);
          Decision by_pod = Decide(state, Endpoint::ForPod(*from), Endpoint::ForPod(*to),
                                   param.family, probe.protocol, probe.port);
          ASSERT_TRUE(by_pod.applicable) << by_pod.reason;
          absl::StatusOr<IpAddr> from_ip = IpAddr::Parse(model->ips[model->pods[i]][param.family]);
          absl::StatusOr<IpAddr> to_ip = IpAddr::Parse(model->ips[model->pods[j]][param.family]);
          ASSERT_TRUE(from_ip.ok() && to_ip.ok());
          Decision by_addr =
              Decide(state, Endpoint::ForAddress(*from_ip), Endpoint::ForAddress(*to_ip),
                     param.family, probe.protocol, probe.port);
          EXPECT_EQ(by_pod.allowed, by_addr.allowed) << "pod and address endpoints disagree:\n"
                                                     << by_pod.Explain() << "\n"
                                                     << by_addr.Explain();
          observed.allowed[i][j] = by_pod.allowed;
          if (by_pod.allowed != probe.expect.allowed[i][j]) {
            absl::StrAppend(&explanations, "  ", by_pod.Explain(), "\n");
          }
        }
      }
      if (observed.allowed == probe.expect.allowed) continue;
      ADD_FAILURE() << where << " probe " << ProtocolName(probe.protocol) << "/" << probe.port
                    << " (" << FamilyKey(param.family) << ")\nexpected:\n"
                    << probe.expect.Text() << "observed:\n"
                    << observed.Text() << "differing cells:\n"
                    << explanations;
    }
  }
}

std::vector<Param> Params() {
  std::vector<Param> params;
  for (const char* dir : {"/cases", "/cnp_cases"}) {
    absl::StatusOr<std::vector<std::string>> files = CaseFiles(absl::StrCat(kDir, dir));
    if (!files.ok()) continue;
    for (const std::string& f : *files) {
      for (Family family : {Family::kV4, Family::kV6}) params.push_back({f, family});
    }
  }
  return params;
}

TEST(EvalConformanceSetup, FindsTheCases) {
  // Guards against a silently empty parameter list.
  EXPECT_GE(Params().size(), 2u * 40u);
  int cnp = 0;
  for (const Param& p : Params()) cnp += p.file.find("/cnp_cases/") != std::string::npos;
  EXPECT_GE(cnp, 2 * 7);
}

std::string ParamName(const ::testing::TestParamInfo<Param>& info) {
  std::string name = info.param.file.substr(info.param.file.rfind('/') + 1);
  name = name.substr(0, name.size() - 5);  // ".yaml"
  std::string out;
  bool upper = true;
  for (char ch : name) {
    if (ch == '-') {
      upper = true;
      continue;
    }
    out += upper ? static_cast<char>(toupper(ch)) : ch;
    upper = false;
  }
  return absl::StrCat(out, "_", FamilyKey(info.param.family));
}

INSTANTIATE_TEST_SUITE_P(Cases, EvalConformanceTest, ::testing::ValuesIn(Params()), ParamName);

}  // namespace
}  // namespace conformance
}  // namespace netpol
