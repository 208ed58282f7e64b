// Tests of the C++ case loader: the checked-in data loads, placeholders expand per family, label
// changes become updated objects, and malformed cases fail with the field path.
#include "tests/conformance/cases.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol {
namespace conformance {
namespace {

using ::testing::HasSubstr;

constexpr char kDir[] = "tests/conformance";

class CasesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<Model> m = LoadModel(absl::StrCat(kDir, "/model.yaml"));
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = *m;
  }

  // A case file's text around one step; `step` is indented as a list item of steps.
  static std::string CaseText(const std::string& step, const std::string& name = "t") {
    return absl::StrCat("name: ", name, "\ndescription: test\nsteps:\n", step);
  }

  static std::string AllowedMatrix() {
    std::string m = "      -   x/a x/b x/c y/a y/b y/c z/a z/b z/c\n";
    for (const char* p : {"x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c"}) {
      absl::StrAppend(&m, "      ", p, " .   .   .   .   .   .   .   .   .\n");
    }
    return m;
  }

  absl::StatusOr<Case> Parse(const std::string& step, Family family = Family::kV4) {
    return ParseCase(model_, CaseText(step), "t.yaml", family);
  }

  static std::string Probe(const std::string& matrix = AllowedMatrix()) {
    return absl::StrCat("  probes:\n  - port: 80\n    protocol: TCP\n    expect: |\n", matrix);
  }

  Model model_;
};

TEST_F(CasesTest, ModelHasTheUpstreamThreeByThree) {
  EXPECT_EQ(model_.node, "node-1");
  EXPECT_THAT(model_.pods, ::testing::ElementsAre("x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a",
                                                  "z/b", "z/c"));
  EXPECT_EQ(model_.ips["x/a"][Family::kV4], "10.244.1.17");
  EXPECT_EQ(model_.ips["x/a"][Family::kV6], "fd00:10:244:1::11");
  EXPECT_EQ(model_.subnet[Family::kV6], "fd00:10:244:1::/64");
  EXPECT_EQ(model_.gateway[Family::kV4], "10.244.1.1");
  EXPECT_EQ(model_.documents.size(), 12u);
  EXPECT_THAT(model_.objects_yaml, HasSubstr("serve-81-sctp"));
  EXPECT_THAT(model_.objects_yaml, ::testing::Not(HasSubstr("kind: Lab")));
}

TEST_F(CasesTest, EveryCheckedInCaseLoadsForBothFamilies) {
  for (Family f : {Family::kV4, Family::kV6}) {
    absl::StatusOr<std::vector<Case>> cases = LoadCases(model_, absl::StrCat(kDir, "/cases"), f);
    ASSERT_TRUE(cases.ok()) << cases.status();
    EXPECT_GE(cases->size(), 40u);
    int upstream = 0;
    for (const Case& c : *cases) {
      upstream += c.upstream.empty() ? 0 : 1;
      EXPECT_FALSE(c.steps.empty()) << c.name;
      EXPECT_EQ(c.family, f);
    }
    EXPECT_GE(upstream, 40);
  }
}

struct ExpandRow {
  std::string name;
  std::string in;
  std::string v4, v6;
};

TEST_F(CasesTest, ExpandsPlaceholdersPerFamily) {
  const ExpandRow rows[] = {
      {"Ip", "{{ip y/b}}", "10.244.1.34", "fd00:10:244:1::22"},
      {"Host", "{{host z/c}}", "10.244.1.51/32", "fd00:10:244:1::33/128"},
      {"CidrAdds96ForIPv6", "{{cidr x/a 24}}", "10.244.1.0/24", "fd00:10:244:1::/120"},
      {"CidrExplicitIPv6Length", "{{cidr x/a 4 4}}", "0.0.0.0/4", "f000::/4"},
      {"CidrMasksHostBits", "{{cidr z/c 28}}", "10.244.1.48/28", "fd00:10:244:1::30/124"},
      {"SubnetAndGateway", "{{subnet}} via {{ gateway }}", "10.244.1.0/24 via 10.244.1.1",
       "fd00:10:244:1::/64 via fd00:10:244:1::1"},
      {"TextAroundIsKept", "a: \"{{ip x/a}}\"\nb: [{{ip x/b}}]\n",
       "a: \"10.244.1.17\"\nb: [10.244.1.18]\n",
       "a: \"fd00:10:244:1::11\"\nb: [fd00:10:244:1::12]\n"},
      {"NoPlaceholder", "cidr: 1.2.3.0/24", "cidr: 1.2.3.0/24", "cidr: 1.2.3.0/24"},
  };
  for (const ExpandRow& row : rows) {
    absl::StatusOr<std::string> v4 = Expand(model_, row.in, Family::kV4, "t");
    absl::StatusOr<std::string> v6 = Expand(model_, row.in, Family::kV6, "t");
    ASSERT_TRUE(v4.ok() && v6.ok()) << row.name << ": " << v4.status() << " " << v6.status();
    EXPECT_EQ(*v4, row.v4) << row.name;
    EXPECT_EQ(*v6, row.v6) << row.name;
  }
}

TEST_F(CasesTest, RejectsBadPlaceholders) {
  for (const char* bad :
       {"{{ip}}", "{{ip q/q}}", "{{host x/a 3}}", "{{cidr x/a}}", "{{cidr x/a 33}}",
        "{{cidr x/a 24 129}}", "{{cidr x/a four}}", "{{subnet x}}", "{{nope}}", "{{}}"}) {
    absl::StatusOr<std::string> out = Expand(model_, bad, Family::kV6, "steps[0].apply");
    EXPECT_FALSE(out.ok()) << bad;
    EXPECT_THAT(out.status().message(), HasSubstr("steps[0].apply")) << bad;
  }
}

TEST_F(CasesTest, LabelBecomesTheUpdatedObject) {
  absl::StatusOr<Case> c =
      Parse(absl::StrCat("- label:\n  - {pod: \"x/b\", labels: {pod: \"b\", pod2: \"updated\"}}\n"
                         "  - {namespace: \"y\", labels: {}}\n",
                         Probe()));
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string& apply = c->steps[0].apply_yaml;
  EXPECT_THAT(apply, HasSubstr("  labels: {\"pod\": \"b\", \"pod2\": \"updated\"}\n"));
  EXPECT_THAT(apply, HasSubstr("status:\n  podIP: 10.244.1.18"));
  EXPECT_THAT(apply, HasSubstr("---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: \"y\"\n"
                               "  labels: {}\n"));
}

TEST_F(CasesTest, DeleteListsTheObjects) {
  absl::StatusOr<Case> c = Parse(absl::StrCat(
      "- delete: |\n"
      "    apiVersion: networking.k8s.io/v1\n    kind: NetworkPolicy\n"
      "    metadata: {name: p, namespace: \"x\"}\n"
      "    ---\n    apiVersion: v1\n    kind: Namespace\n    metadata: {name: \"z\"}\n",
      Probe()));
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->steps[0].deletes.size(), 2u);
  EXPECT_EQ(c->steps[0].deletes[0].kind, "NetworkPolicy");
  EXPECT_EQ(c->steps[0].deletes[0].namespace_name, "x");
  EXPECT_EQ(c->steps[0].deletes[0].name, "p");
  EXPECT_EQ(c->steps[0].deletes[1].kind, "Namespace");
  EXPECT_EQ(c->steps[0].deletes[1].namespace_name, "");
}

TEST_F(CasesTest, MatrixMayListPodsInAnyOrder) {
  std::string m = "      -   z/c z/b z/a y/c y/b y/a x/c x/b x/a\n";
  for (const char* p : {"x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b"}) {
    absl::StrAppend(&m, "      ", p, " .   .   .   .   .   .   .   .   .\n");
  }
  absl::StrAppend(&m, "      z/c .   .   .   .   .   .   .   .   X\n");  // z/c -> x/a denied
  absl::StatusOr<Case> c = Parse(absl::StrCat("- apply: ''\n", Probe(m)));
  ASSERT_TRUE(c.ok()) << c.status();
  const Matrix& e = c->steps[0].probes[0].expect;
  EXPECT_FALSE(e.allowed[8][0]);
  EXPECT_TRUE(e.allowed[0][8]);
  EXPECT_THAT(e.Text(), HasSubstr("z/c X   .   .   .   .   .   .   .   .\n"));
}

struct BadRow {
  std::string name;
  std::string step;  // a whole steps list
  std::string error;
};

TEST_F(CasesTest, RejectsMalformedCasesNamingTheField) {
  std::string self_denied = AllowedMatrix();
  self_denied.replace(self_denied.find("x/a ."), 5, "x/a X");
  std::string bad_cell = AllowedMatrix();
  bad_cell.replace(bad_cell.find("y/b ."), 5, "y/b ?");
  std::string short_matrix = AllowedMatrix();
  short_matrix.resize(short_matrix.rfind("      z/c"));
  const BadRow rows[] = {
      {"UnknownStepField", absl::StrCat("- aply: x\n", Probe()), "steps[0]: unknown field aply"},
      {"NoProbes", "- apply: ''\n", "steps[0].probes: must be a non-empty list"},
      {"BadProtocol",
       absl::StrCat("- probes:\n  - port: 80\n    protocol: ICMP\n    expect: |\n",
                    AllowedMatrix()),
       "steps[0].probes[0].protocol"},
      {"QuotedPort",
       absl::StrCat("- probes:\n  - port: \"80\"\n    protocol: TCP\n    expect: |\n",
                    AllowedMatrix()),
       "steps[0].probes[0].port"},
      {"PortOutOfRange",
       absl::StrCat("- probes:\n  - port: 70000\n    protocol: TCP\n    expect: |\n",
                    AllowedMatrix()),
       "steps[0].probes[0].port"},
      {"SelfDenied", absl::StrCat("- apply: ''\n", Probe(self_denied)), "x/a -> x/a must be '.'"},
      {"BadCell", absl::StrCat("- apply: ''\n", Probe(bad_cell)), "cell '?'"},
      {"MissingRow", absl::StrCat("- apply: ''\n", Probe(short_matrix)), "needs 9 rows"},
      {"LabelOfUnknownPod", absl::StrCat("- label:\n  - {pod: \"q/q\", labels: {}}\n", Probe()),
       "steps[0].label[0]: Pod q/q is not in the model"},
      {"UnquotedBooleanLabel",
       absl::StrCat("- label:\n  - {pod: \"x/a\", labels: {on: yes}}\n", Probe()),
       "steps[0].label[0].labels"},
      {"BadPlaceholderInApply", absl::StrCat("- apply: '{{ip x/q}}'\n", Probe()),
       "steps[0].apply: '{{ip x/q}}': unknown pod x/q"},
  };
  for (const BadRow& row : rows) {
    absl::StatusOr<Case> c = Parse(row.step);
    ASSERT_FALSE(c.ok()) << row.name;
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(row.error)) << row.name;
    EXPECT_THAT(std::string(c.status().message()), HasSubstr("t.yaml")) << row.name;
  }
}

TEST_F(CasesTest, RejectsCaseWithoutUpstreamOrDescription) {
  absl::StatusOr<Case> c = ParseCase(
      model_, absl::StrCat("name: t\nsteps:\n- apply: ''\n", Probe()), "t.yaml", Family::kV4);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("needs upstream"));
}

TEST_F(CasesTest, RejectsNameNotMatchingFile) {
  absl::StatusOr<Case> c = ParseCase(model_, CaseText(absl::StrCat("- apply: ''\n", Probe()), "u"),
                                     "t.yaml", Family::kV4);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("must match the file name"));
}

TEST_F(CasesTest, ModelRejectsPodWithoutBothFamilies) {
  absl::StatusOr<Model> m = ParseModel(
      "kind: Lab\nnode: n\nnetworks:\n  ipv4: {subnet: 10.0.0.0/24, gateway: 10.0.0.1}\n"
      "  ipv6: {subnet: 'fd00::/64', gateway: 'fd00::1'}\n---\n"
      "apiVersion: v1\nkind: Pod\nmetadata:\n  namespace: a\n  name: b\n  labels: {}\n"
      "status:\n  podIPs:\n  - ip: 10.0.0.2\n",
      "m.yaml");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(),
              HasSubstr("m.yaml: document 1: pod a/b: status.podIPs: no ipv6"));
}

}  // namespace
}  // namespace conformance
}  // namespace netpol
