// netpolctl as kubectl users drive it, against a real netpol-agent (the built binaries, in a
// fresh network namespace): repeated -f, -n against the objects' own namespace, --ignore-not-
// found, -o json/name and refused formats, get -l/-A, describe, version, completion, --help and
// --version of both binaries, and `check` from a hostNetwork pod.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/e2e/fixture.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace netpol::e2e {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

// Namespaces alpha (team=a) and gamma; pods alpha/web (app=web), alpha/db (app=db, tier=data),
// gamma/g1 (app=g) on node-1, gamma/hn (hostNetwork on node-1), gamma/hn2 (hostNetwork on
// node-2).
constexpr char kCluster[] = R"(apiVersion: v1
kind: Namespace
metadata: {name: alpha, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: gamma}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: alpha, labels: {app: web}}
spec: {nodeName: node-1, containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
status: {podIPs: [{ip: 10.1.0.10}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: alpha, labels: {app: db, tier: data}}
spec: {nodeName: node-1}
status: {podIPs: [{ip: 10.1.0.11}]}
---
apiVersion: v1
kind: Pod
metadata: {name: g1, namespace: gamma, labels: {app: g}}
spec: {nodeName: node-1}
status: {podIPs: [{ip: 10.1.0.20}]}
---
apiVersion: v1
kind: Pod
metadata: {name: hn, namespace: gamma, labels: {app: agent}}
spec: {nodeName: node-1, hostNetwork: true}
status: {podIPs: [{ip: 192.168.50.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: hn2, namespace: gamma, labels: {app: agent}}
spec: {nodeName: node-2, hostNetwork: true}
status: {podIPs: [{ip: 192.168.50.2}]}
)";

// alpha/web: ingress from app=db pods on 8080, and from 192.168.50.0/24 except .2.
constexpr char kWebPolicy[] = R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: alpha}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: db}}}]
    ports: [{port: 8080}]
  - from: [{ipBlock: {cidr: 192.168.50.0/24, except: [192.168.50.2/32]}}]
)";

constexpr char kGammaDeny[] = R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: gamma}
spec:
  podSelector: {}
  policyTypes: [Ingress]
)";

bool ParsesAsJson(const std::string& text, google::protobuf::Struct* out) {
  return google::protobuf::util::JsonStringToMessage(text, out).ok();
}

class NetpolctlTest : public AgentTest {
 protected:
  void SetUp() override {
    AgentTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    StartAgent();
    WaitServing();
  }
  // Applies the cluster (and `extra` manifests); fails the test when netpolctl does.
  void ApplyCluster(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"apply", "-f", WriteFile("cluster.yaml", kCluster)};
    for (size_t i = 0; i < extra.size(); ++i) {
      args.push_back("-f");
      args.push_back(WriteFile(absl::StrCat("extra", i, ".yaml"), extra[i]));
    }
    CommandResult r = Ctl(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
};

TEST_F(NetpolctlTest, RepeatedFileFlagsApplyEveryFileInOrderAsOneRequest) {
  const std::string a = WriteFile("a.yaml", kCluster);
  const std::string b = WriteFile("b.yaml", kWebPolicy);
  CommandResult r = Ctl({"apply", "-f", a, "-f", b});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("namespace/alpha created\n"));
  EXPECT_THAT(r.out, HasSubstr("pod/web created\n"));
  EXPECT_THAT(r.out, HasSubstr("networkpolicy.networking.k8s.io/web created\n"));
  // In order: the namespace (first file) comes before the policy (second file).
  EXPECT_LT(r.out.find("namespace/alpha"), r.out.find("networkpolicy.networking.k8s.io/web"));

  // All or nothing: a valid file followed by an invalid one stores neither.
  const std::string good = WriteFile("good.yaml", R"(apiVersion: v1
kind: Namespace
metadata: {name: newns}
)");
  const std::string bad = WriteFile("bad.yaml", R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: broken, namespace: alpha}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 9000, endPort: 80}]}]
)");
  r = Ctl({"apply", "-f", good, "--filename", bad});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("endPort"));
  r = Ctl({"get", "namespace", "newns"});
  EXPECT_NE(r.exit_code, 0) << "the first file was stored although the request failed";
}

TEST_F(NetpolctlTest, NamespaceFlagThatContradictsTheObjectsIsRefused) {
  const std::string file = WriteFile("cluster.yaml", kCluster);
  CommandResult r = Ctl({"apply", "-n", "beta", "-f", file});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("the namespace from the provided object \"alpha\" does not match "
                               "the namespace \"beta\". You must pass '--namespace=alpha' to "
                               "perform this operation."));
  r = Ctl({"get", "pods", "-A", "-o", "name"});
  EXPECT_EQ(r.out, "") << "nothing may be stored";
  // The same file with the namespace it names, and objects naming none, are fine.
  r = Ctl({"apply", "-f", WriteFile("ns.yaml", "apiVersion: v1\nkind: Namespace\n"
                                               "metadata: {name: beta}\n")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Ctl({"apply", "--namespace=beta", "-f",
           WriteFile("p.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"
                               "spec: {nodeName: node-1}\nstatus: {podIPs: [{ip: 10.9.0.1}]}\n")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Ctl({"get", "pods", "-o", "name"}).out, "pod/p\n");
  // delete -f is held to the same rule.
  r = Ctl({"delete", "-n", "beta", "-f", file});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("does not match the namespace \"beta\""));
}

TEST_F(NetpolctlTest, DeleteIgnoreNotFoundOfAMissingObjectPrintsNothing) {
  ApplyCluster();
  CommandResult r = Ctl({"delete", "pod", "nosuch", "-n", "alpha", "--ignore-not-found"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
  r = Ctl({"delete", "pod", "web", "nosuch", "-n", "alpha", "--ignore-not-found"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "pod/web deleted\n");
  r = Ctl({"delete", "pod", "nosuch", "-n", "alpha"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("not found"));
}

TEST_F(NetpolctlTest, JsonOutputOfStatusCheckExplainAndVersion) {
  ApplyCluster({kWebPolicy});
  google::protobuf::Struct j;
  CommandResult r = Ctl({"status", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(ParsesAsJson(r.out, &j)) << r.out;
  EXPECT_EQ(j.fields().at("nodeName").string_value(), "node-1");
  EXPECT_TRUE(j.fields().at("serving").bool_value());
  EXPECT_EQ(j.fields().at("build").struct_value().fields().at("version").string_value(),
            "0.1.0");

  r = Ctl({"check", "--from", "alpha/db", "--to", "alpha/web", "--port", "8080", "-o", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(ParsesAsJson(r.out, &j)) << r.out;
  EXPECT_EQ(j.fields().at("verdict").string_value(), "ALLOWED");
  r = Ctl({"check", "--from", "gamma/g1", "--to", "alpha/web", "--port", "8080", "--output=json"});
  EXPECT_EQ(r.exit_code, 1) << "the exit status still says denied";
  ASSERT_TRUE(ParsesAsJson(r.out, &j)) << r.out;
  EXPECT_EQ(j.fields().at("verdict").string_value(), "DENIED");

  r = Ctl({"explain", "pod", "alpha/web", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(ParsesAsJson(r.out, &j)) << r.out;
  EXPECT_EQ(j.fields().at("ingressPolicies").list_value().values(0).string_value(), "alpha/web");

  r = Ctl({"version", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(ParsesAsJson(r.out, &j)) << r.out;
  for (const char* side : {"clientVersion", "serverVersion"}) {
    const auto& b = j.fields().at(side).struct_value().fields();
    EXPECT_EQ(b.at("version").string_value(), "0.1.0") << side;
    EXPECT_FALSE(b.at("commit").string_value().empty()) << side;
    EXPECT_FALSE(b.at("compilationMode").string_value().empty()) << side;
  }
}

TEST_F(NetpolctlTest, OutputFormatsACommandDoesNotHaveAreRefused) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"render", "-o", "json"},
           {"status", "-o", "yaml"},
           {"check", "--from", "node", "--to", "1.2.3.4", "--port", "1", "-o", "wide"},
           {"explain", "pod", "x/y", "-o", "yaml"},
           {"get", "pods", "-o", "jsn"},
           {"diff", "-f", "x.yaml", "-o", "json"}}) {
    CommandResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 2) << args[0];
    EXPECT_THAT(r.err, HasSubstr("error: ")) << args[0];
    EXPECT_TRUE(absl::StrContains(r.err, "unknown output format") ||
                absl::StrContains(r.err, "is not supported by"))
        << r.err;
    EXPECT_EQ(r.out, "") << args[0];
  }
}

TEST_F(NetpolctlTest, ClusterNetworkPoliciesAreStoredAndEnforcedInTheKernel) {
  ApplyCluster({kWebPolicy});
  CommandResult r = Ctl({"check", "--from", "alpha/db", "--to", "alpha/web", "--port", "8080"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(Nft(), Not(HasSubstr("chain cin-")));
  // An Admin-tier Deny of db -> web, which the NetworkPolicy allows.
  const std::string cnp = WriteFile(
      "cnp.yaml",
      "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"
      "metadata: {name: guard}\nspec: {tier: Admin, priority: 1,\n"
      "  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}},\n"
      "  ingress: [{action: Deny,\n"
      "    from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: db}}}}]}]}\n");
  r = Ctl({"apply", "-f", cnp});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "clusternetworkpolicy.policy.networking.k8s.io/guard created\n");
  for (const char* word : {"cnp", "clusternetworkpolicies"}) {
    r = Ctl({"get", word, "-o", "name"});
    EXPECT_EQ(r.exit_code, 0) << word << r.err;
    EXPECT_EQ(r.out, "clusternetworkpolicy.policy.networking.k8s.io/guard\n") << word;
  }
  // apply returned once the kernel committed it: web's tier chain and its Deny set with db.
  const std::string kernel = Nft();
  EXPECT_THAT(kernel, HasSubstr("chain cin-guard-")) << kernel;
  EXPECT_THAT(kernel, HasSubstr(": jump cin-guard-")) << kernel;  // web's dispatch
  EXPECT_THAT(kernel, HasSubstr("elements = { 10.1.0.11 . 0-255 . 0-65535 }")) << kernel;
  // The Deny lookup names the rule, and (deny logs are on) drops through the tier's deny-log
  // chain, which logs with the tier chain's prefix.
  EXPECT_THAT(kernel, ContainsRegex("goto cin-guard-[0-9a-f]+-adl comment \"Admin tier Deny: "
                                    "guard ingress\\[0\\]\"")) << kernel;
  EXPECT_THAT(kernel, ContainsRegex("log prefix \"deny cin-guard-[0-9a-f]+-adl\"")) << kernel;
  r = Ctl({"check", "--from", "alpha/db", "--to", "alpha/web", "--port", "8080"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("clusternetworkpolicy guard")) << r.out << r.err;
  r = Ctl({"delete", "cnp", "guard"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(Nft(), Not(HasSubstr("chain cin-")));
  r = Ctl({"get", "cnp"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "No resources found.\n");
  // Nodes are stored and read back as YAML that re-applies unchanged.
  const std::string node = WriteFile(
      "node.yaml",
      "apiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {zone: a}}\n"
      "status: {addresses: [{type: InternalIP, address: 10.9.0.1}, {type: Hostname, address: n1}]}\n");
  r = Ctl({"apply", "-f", node});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "node/n1 created\n");
  r = Ctl({"get", "nodes", "n1", "-o", "yaml"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string again = WriteFile("node-again.yaml", r.out);
  r = Ctl({"apply", "-f", again});
  EXPECT_EQ(r.out, "node/n1 unchanged\n") << r.err;
  const std::string bad = WriteFile(
      "bad-cnp.yaml",
      "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"
      "metadata: {name: guard}\nspec: {tier: Admin, priority: 1, subject: {namespaces: {}},\n"
      "  egress: [{action: Accept, to: [{domainNames: [example.com]}]}]}\n");
  r = Ctl({"apply", "-f", bad});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("spec.egress[0].to[0].domainNames: not supported"));
}

TEST_F(NetpolctlTest, GetWithLabelSelectorsAllNamespacesAndNames) {
  ApplyCluster({kWebPolicy});
  EXPECT_EQ(Ctl({"get", "pods", "-A", "-l", "app=web", "-o", "name"}).out, "pod/web\n");
  EXPECT_EQ(Ctl({"get", "pods", "-A", "-l", "app in (web,db),tier!=data", "-o", "name"}).out,
            "pod/web\n");
  EXPECT_EQ(Ctl({"get", "pods", "--all-namespaces", "--selector=tier", "-o", "name"}).out,
            "pod/db\n");
  EXPECT_EQ(Ctl({"get", "pods", "-n", "alpha", "-l", "!tier", "-o", "name"}).out, "pod/web\n");
  EXPECT_EQ(Ctl({"get", "pods", "-n", "gamma", "-o", "name"}).out, "pod/g1\npod/hn\npod/hn2\n");
  EXPECT_EQ(Ctl({"get", "ns", "-l", "team=a", "-o", "name"}).out, "namespace/alpha\n");
  EXPECT_EQ(Ctl({"get", "netpol", "-A", "-o", "name"}).out,
            "networkpolicy.networking.k8s.io/web\n");
  CommandResult r = Ctl({"get", "pods", "-A", "-l", "app=web"});
  EXPECT_THAT(r.out, HasSubstr("NAMESPACE"));
  EXPECT_THAT(r.out, HasSubstr("alpha       web"));
  EXPECT_THAT(r.out, Not(HasSubstr("db")));
  r = Ctl({"get", "pods", "-A", "-l", "env in (a"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("invalid label selector"));
  r = Ctl({"get", "pods", "web", "-l", "app=web"});
  EXPECT_EQ(r.exit_code, 2);
}

TEST_F(NetpolctlTest, DescribeShowsWhatAPolicySelectsAndResolvesAndWhatSelectsAPod) {
  ApplyCluster({kWebPolicy});
  CommandResult r = Ctl({"describe", "networkpolicy", "web", "-n", "alpha"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Selected pods:   1: alpha/web\n"));
  EXPECT_THAT(r.out, HasSubstr("Ingress rules:\n  [0] ports: TCP/8080\n"
                               "      from: podSelector app=db\n        pods: alpha/db\n"));
  EXPECT_THAT(r.out, HasSubstr("  [1] ports: every port\n      from: ipBlock 192.168.50.0/24 "
                               "except 192.168.50.2/32\n        pods: gamma/hn\n"));
  EXPECT_THAT(r.out, HasSubstr("Egress rules: (not an Egress policy"));

  r = Ctl({"describe", "pod", "alpha/web"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Ingress policies:   alpha/web\n"));
  EXPECT_THAT(r.out, HasSubstr("Egress policies:    <none> (egress not isolated"));
  EXPECT_THAT(r.out, HasSubstr("Labels:             app=web\n"));

  r = Ctl({"describe", "ns", "alpha"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Pods:               db,web\n"));
  EXPECT_THAT(r.out, HasSubstr("Network policies:   web\n"));

  r = Ctl({"describe", "pod", "nosuch", "-n", "alpha"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("not found"));
}

TEST_F(NetpolctlTest, CheckFromAHostNetworkPodIsNodeTrafficOnItsOwnNode) {
  ApplyCluster({kGammaDeny});
  CommandResult r = Ctl({"check", "--from", "gamma/hn", "--to", "gamma/g1", "--port", "22"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("allowed"));
  r = Ctl({"check", "--from", "node", "--to", "gamma/g1", "--port", "22"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  // From another node it is that node's address, judged by the policy: denied.
  r = Ctl({"check", "--from", "gamma/hn2", "--to", "gamma/g1", "--port", "22"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("denied"));
}

TEST_F(NetpolctlTest, VersionHelpAndCompletion) {
  CommandResult r = Ctl({"version"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Client Version: 0.1.0 (commit "));
  EXPECT_THAT(r.out, HasSubstr("Server Version: 0.1.0 (commit "));

  for (const char* flag : {"--help", "-h"}) {
    r = RunCommand({Runfile("cli/netpolctl"), flag});
    EXPECT_EQ(r.exit_code, 0) << flag << r.err;
    EXPECT_THAT(r.out, HasSubstr("Usage:\n  netpolctl apply")) << flag;
    EXPECT_THAT(r.out, HasSubstr("--ignore-not-found")) << flag;
  }
  r = RunCommand({Runfile("agent/netpol-agent"), "--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("--node-name=VALUE"));
  EXPECT_THAT(r.out, HasSubstr("--state-dir=VALUE"));
  EXPECT_THAT(r.out + r.err, Not(HasSubstr("No flags matched")));
  for (const char* bin : {"cli/netpolctl", "agent/netpol-agent"}) {
    r = RunCommand({Runfile(bin), "--version"});
    EXPECT_EQ(r.exit_code, 0) << bin;
    const std::string name = std::string(bin).substr(std::string(bin).find('/') + 1);
    EXPECT_THAT(r.out, HasSubstr(name + " 0.1.0 (commit ")) << bin;
    EXPECT_THAT(r.out, HasSubstr(" build)\n")) << bin;
    EXPECT_THAT(r.out, Not(HasSubstr("Debug build"))) << bin;
  }

  r = Ctl({"completion", "bash"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("complete -F _netpolctl netpolctl"));
  // The script parses, and completes commands, kinds and the agent's pod names.
  const std::string script = WriteFile("completion.bash", r.out);
  const std::string dir = Runfile("cli");
  auto complete = [&](const std::string& line) {
    CommandResult c = RunCommand(
        {"bash", "-c",
         absl::StrCat("export PATH=", dir, ":$PATH NETPOL_SERVER=", address(), "; source ",
                      script, "; COMP_WORDS=(", line, "); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); ",
                      "_netpolctl; echo \"${COMPREPLY[*]}\"")});
    EXPECT_EQ(c.exit_code, 0) << c.err;
    return c.out;
  };
  ApplyCluster();
  EXPECT_EQ(complete("netpolctl de"), "delete describe\n");
  EXPECT_EQ(complete("netpolctl get po"), "pods\n");
  EXPECT_EQ(complete("netpolctl describe pod -n alpha w"), "web\n");
  EXPECT_EQ(complete("netpolctl get pods -n al"), "alpha\n");
}

}  // namespace
}  // namespace netpol::e2e
