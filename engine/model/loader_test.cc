#include "engine/model/loader.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

LoadOptions Opts(bool strict = true) {
  LoadOptions o;
  o.source = "t.yaml";
  o.strict = strict;
  return o;
}

// A NetworkPolicy x/p whose spec is `spec` (indented by two spaces already).
std::string Policy(const std::string& spec) {
  return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n"
         "  namespace: x\nspec:\n" +
         spec;
}

// A Pod x/a with the given extra text under spec and status.
std::string PodDoc(const std::string& spec, const std::string& status = "") {
  std::string s = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  namespace: x\nspec:\n" + spec;
  if (!status.empty()) s += "status:\n" + status;
  return s;
}

// A podSelector with one matchLabels entry.
std::string MatchLabel(const std::string& kv) {
  return "  podSelector:\n    matchLabels:\n      " + kv + "\n";
}

std::string Expr(const std::string& body) {
  return "  podSelector:\n    matchExpressions:\n    - " + body + "\n";
}

constexpr char kNp[] = "t.yaml: networkpolicy x/p: ";
constexpr char kPod[] = "t.yaml: pod x/a: ";
constexpr char kSubdomainRule[] =
    "must be a lowercase RFC 1123 subdomain (lowercase alphanumerics, '-' or '.', starting and "
    "ending with an alphanumeric, at most 253 characters)";
constexpr char kLabelRule[] =
    "must be a lowercase RFC 1123 label (lowercase alphanumerics or '-', starting and ending "
    "with an alphanumeric, at most 63 characters)";
constexpr char kLabelNameRule[] =
    "name part must consist of alphanumerics, '-', '_' or '.', and begin and end with an "
    "alphanumeric";

struct ErrorCase {
  std::string name;
  std::string input;
  std::string error;  // the exact message
};

// One row per validation rule; each input has exactly one fault.
std::vector<ErrorCase> ErrorCases() {
  const std::string ports = "  ingress:\n  - ports:\n    - ";
  const std::string from = "  ingress:\n  - from:\n    - ";
  const std::string long63 = std::string(63, 'a');
  return {
      // Ports.
      {"protocol unsupported", Policy(ports + "protocol: ICMP\n"),
       "spec.ingress[0].ports[0].protocol: unsupported value \"ICMP\" (supported: TCP, UDP, "
       "SCTP)"},
      {"protocol lowercase", Policy(ports + "protocol: tcp\n"),
       "spec.ingress[0].ports[0].protocol: unsupported value \"tcp\" (supported: TCP, UDP, SCTP)"},
      {"port zero", Policy(ports + "port: 0\n"),
       "spec.ingress[0].ports[0].port: must be between 1 and 65535, got 0"},
      {"port too big", Policy(ports + "port: 65536\n"),
       "spec.ingress[0].ports[0].port: must be between 1 and 65535, got 65536"},
      {"port negative", Policy(ports + "port: -1\n"),
       "spec.ingress[0].ports[0].port: must be between 1 and 65535, got -1"},
      {"port beyond 64 bits", Policy(ports + "port: 99999999999999999999999\n"),
       "spec.ingress[0].ports[0].port: must be between 1 and 65535, got 99999999999999999999999"},
      {"port float", Policy(ports + "port: 80.5\n"),
       "spec.ingress[0].ports[0].port: must be a port number or name, got number \"80.5\""},
      {"port boolean", Policy(ports + "port: true\n"),
       "spec.ingress[0].ports[0].port: must be a port number or name, got boolean \"true\""},
      {"port map", Policy(ports + "port: {a: 1}\n"),
       "spec.ingress[0].ports[0].port: must be a port number or name, got map"},
      {"port name too long", Policy(ports + "port: abcdefghijklmnop\n"),
       "spec.ingress[0].ports[0].port: invalid port name \"abcdefghijklmnop\": must be no more "
       "than 15 characters"},
      {"port name uppercase", Policy(ports + "port: HTTP\n"),
       "spec.ingress[0].ports[0].port: invalid port name \"HTTP\": must contain only lowercase "
       "alphanumerics and '-'"},
      {"port name quoted number", Policy(ports + "port: \"80\"\n"),
       "spec.ingress[0].ports[0].port: invalid port name \"80\": must contain at least one "
       "letter"},
      {"port name leading dash", Policy(ports + "port: -http\n"),
       "spec.ingress[0].ports[0].port: invalid port name \"-http\": must not begin or end with "
       "'-'"},
      {"port name trailing dash", Policy(ports + "port: http-\n"),
       "spec.ingress[0].ports[0].port: invalid port name \"http-\": must not begin or end with "
       "'-'"},
      {"port name double dash", Policy(ports + "port: h--p\n"),
       "spec.ingress[0].ports[0].port: invalid port name \"h--p\": must not contain consecutive "
       "'-'"},
      {"port name empty", Policy(ports + "port: \"\"\n"),
       "spec.ingress[0].ports[0].port: invalid port name \"\": must not be empty"},
      {"endPort below port", Policy(ports + "port: 80\n    - port: 90\n      endPort: 89\n"),
       "spec.ingress[0].ports[1].endPort: must be >= port"},
      {"endPort with named port", Policy(ports + "port: http\n      endPort: 90\n"),
       "spec.ingress[0].ports[0].endPort: may only be used with a numeric port"},
      {"endPort without port", Policy(ports + "endPort: 90\n"),
       "spec.ingress[0].ports[0].endPort: may only be used with a numeric port"},
      {"endPort too big", Policy(ports + "port: 80\n      endPort: 65536\n"),
       "spec.ingress[0].ports[0].endPort: must be between 1 and 65535, got 65536"},
      {"endPort string", Policy(ports + "port: 80\n      endPort: \"90\"\n"),
       "spec.ingress[0].ports[0].endPort: must be an integer, got string \"90\""},
      {"egress port path", Policy("  egress:\n  - ports:\n    - port: 0\n"),
       "spec.egress[0].ports[0].port: must be between 1 and 65535, got 0"},

      // ipBlock.
      {"cidr host bits", Policy(from + "ipBlock:\n        cidr: 10.0.0.1/8\n"),
       "spec.ingress[0].from[0].ipBlock.cidr: invalid CIDR \"10.0.0.1/8\": host bits set (did "
       "you mean \"10.0.0.0/8\"?)"},
      {"cidr v6 host bits", Policy(from + "ipBlock:\n        cidr: fd00::1/64\n"),
       "spec.ingress[0].from[0].ipBlock.cidr: invalid CIDR \"fd00::1/64\": host bits set (did "
       "you mean \"fd00::/64\"?)"},
      {"cidr without prefix", Policy(from + "ipBlock:\n        cidr: 10.0.0.1\n"),
       "spec.ingress[0].from[0].ipBlock.cidr: invalid CIDR \"10.0.0.1\": missing prefix length"},
      {"cidr bad address", Policy(from + "ipBlock:\n        cidr: 10.0.0.256/32\n"),
       "spec.ingress[0].from[0].ipBlock.cidr: invalid CIDR \"10.0.0.256/32\": invalid address"},
      {"cidr prefix too long", Policy(from + "ipBlock:\n        cidr: 10.0.0.0/33\n"),
       "spec.ingress[0].from[0].ipBlock.cidr: invalid CIDR \"10.0.0.0/33\": prefix length out of "
       "range"},
      {"cidr missing", Policy(from + "ipBlock:\n        except: [10.0.0.0/8]\n"),
       "spec.ingress[0].from[0].ipBlock.cidr: required"},
      {"except outside cidr",
       Policy(from + "ipBlock:\n        cidr: 10.0.0.0/8\n        except: [11.0.0.0/16]\n"),
       "spec.ingress[0].from[0].ipBlock.except[0]: must be strictly inside cidr 10.0.0.0/8"},
      {"except equal to cidr",
       Policy(from + "ipBlock:\n        cidr: 10.0.0.0/8\n        except: [10.0.0.0/8]\n"),
       "spec.ingress[0].from[0].ipBlock.except[0]: must be strictly inside cidr 10.0.0.0/8"},
      {"except other family",
       Policy(from + "ipBlock:\n        cidr: 10.0.0.0/8\n        except: [\"::/0\"]\n"),
       "spec.ingress[0].from[0].ipBlock.except[0]: must be strictly inside cidr 10.0.0.0/8"},
      {"except host bits",
       Policy(from + "ipBlock:\n        cidr: 10.0.0.0/8\n        except: [10.1.0.1/16]\n"),
       "spec.ingress[0].from[0].ipBlock.except[0]: invalid CIDR \"10.1.0.1/16\": host bits set "
       "(did you mean \"10.1.0.0/16\"?)"},
      {"cidr IPv4-mapped",
       Policy(from + "ipBlock:\n        cidr: \"::ffff:10.0.0.0/104\"\n"),
       "spec.ingress[0].from[0].ipBlock.cidr: \"::ffff:10.0.0.0\": must not be an IPv4-mapped "
       "IPv6 address (write 10.0.0.0)"},
      {"except IPv4-mapped",
       Policy(from + "ipBlock:\n        cidr: \"::/0\"\n        except: [\"::ffff:0:0/96\"]\n"),
       "spec.ingress[0].from[0].ipBlock.except[0]: \"::ffff:0.0.0.0\": must not be an "
       "IPv4-mapped IPv6 address (write 0.0.0.0)"},
      {"egress peer path", Policy("  egress:\n  - to:\n    - ipBlock:\n        cidr: x\n"),
       "spec.egress[0].to[0].ipBlock.cidr: invalid CIDR \"x\": missing prefix length"},

      // Peers.
      {"peer empty", Policy(from + "{}\n"),
       "spec.ingress[0].from[0]: must specify at least one of podSelector, namespaceSelector, "
       "ipBlock"},
      {"peer null selector only", Policy(from + "podSelector: null\n"),
       "spec.ingress[0].from[0]: must specify at least one of podSelector, namespaceSelector, "
       "ipBlock"},
      {"peer ipBlock and podSelector",
       Policy(from + "podSelector: {}\n      ipBlock:\n        cidr: 10.0.0.0/8\n"),
       "spec.ingress[0].from[0]: ipBlock may not be combined with podSelector or "
       "namespaceSelector"},
      {"peer ipBlock and namespaceSelector",
       Policy(from + "namespaceSelector: {}\n      ipBlock:\n        cidr: 10.0.0.0/8\n"),
       "spec.ingress[0].from[0]: ipBlock may not be combined with podSelector or "
       "namespaceSelector"},

      // Label keys and values.
      {"label key with space", Policy(MatchLabel("\"bad key\": v")),
       absl::StrCat("spec.podSelector.matchLabels[bad key]: invalid label key: ", kLabelNameRule)},
      {"label key name too long", Policy(MatchLabel(std::string(64, 'k') + ": v")),
       absl::StrCat("spec.podSelector.matchLabels[", std::string(64, 'k'),
                    "]: invalid label key: name part must be no more than 63 characters")},
      {"label key name ends with dash", Policy(MatchLabel("app-: v")),
       absl::StrCat("spec.podSelector.matchLabels[app-]: invalid label key: ", kLabelNameRule)},
      {"label key uppercase prefix", Policy(MatchLabel("Example.com/app: v")),
       absl::StrCat("spec.podSelector.matchLabels[Example.com/app]: invalid label key: prefix "
                    "part ",
                    kSubdomainRule)},
      {"label key prefix too long", Policy(MatchLabel(std::string(254, 'p') + "/app: v")),
       absl::StrCat("spec.podSelector.matchLabels[", std::string(80, 'p'),
                    "...]: invalid label key: prefix part must be no more than 253 characters")},
      {"label key empty prefix", Policy(MatchLabel("/app: v")),
       "spec.podSelector.matchLabels[/app]: invalid label key: prefix part must not be empty"},
      {"label key empty name", Policy(MatchLabel("example.com/: v")),
       "spec.podSelector.matchLabels[example.com/]: invalid label key: name part must not be "
       "empty"},
      {"label key two slashes", Policy(MatchLabel("a/b/c: v")),
       "spec.podSelector.matchLabels[a/b/c]: invalid label key: must be a name with an optional "
       "DNS subdomain prefix and one '/'"},
      {"label value too long", Policy(MatchLabel("app: " + std::string(64, 'v'))),
       absl::StrCat("spec.podSelector.matchLabels[app]: invalid label value \"",
                    std::string(64, 'v'), "\": must be no more than 63 characters")},
      {"label value bad chars", Policy(MatchLabel("app: \"a b\"")),
       "spec.podSelector.matchLabels[app]: invalid label value \"a b\": must be empty or consist "
       "of alphanumerics, '-', '_' or '.', and begin and end with an alphanumeric"},
      {"label value number", Policy(MatchLabel("version: 1")),
       "spec.podSelector.matchLabels[version]: must be a string, got integer \"1\" (quote it)"},
      {"label value yes", Policy(MatchLabel("enabled: yes")),
       "spec.podSelector.matchLabels[enabled]: must be a string, got boolean \"yes\" (quote it)"},
      {"label value list", Policy(MatchLabel("app: [a]")),
       "spec.podSelector.matchLabels[app]: must be a string, got list"},
      {"metadata label invalid",
       "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns1\n  labels:\n    a: -x\n",
       "t.yaml: namespace ns1: metadata.labels[a]: invalid label value \"-x\": must be empty or "
       "consist of alphanumerics, '-', '_' or '.', and begin and end with an alphanumeric"},

      // Selector expressions.
      {"operator unsupported", Policy(Expr("{key: app, operator: Equals, values: [a]}")),
       "spec.podSelector.matchExpressions[0].operator: unsupported value \"Equals\" (supported: "
       "In, NotIn, Exists, DoesNotExist)"},
      {"operator missing", Policy(Expr("{key: app, values: [a]}")),
       "spec.podSelector.matchExpressions[0].operator: required"},
      {"key missing", Policy(Expr("{operator: Exists}")),
       "spec.podSelector.matchExpressions[0].key: required"},
      {"key invalid", Policy(Expr("{key: \"a b\", operator: Exists}")),
       absl::StrCat("spec.podSelector.matchExpressions[0].key: invalid label key \"a b\": ",
                    kLabelNameRule)},
      {"In without values", Policy(Expr("{key: app, operator: In}")),
       "spec.podSelector.matchExpressions[0].values: must be non-empty when operator is In or "
       "NotIn"},
      {"NotIn with empty values", Policy(Expr("{key: app, operator: NotIn, values: []}")),
       "spec.podSelector.matchExpressions[0].values: must be non-empty when operator is In or "
       "NotIn"},
      {"Exists with values", Policy(Expr("{key: app, operator: Exists, values: [a]}")),
       "spec.podSelector.matchExpressions[0].values: must be empty when operator is Exists or "
       "DoesNotExist"},
      {"DoesNotExist with values", Policy(Expr("{key: app, operator: DoesNotExist, values: [a]}")),
       "spec.podSelector.matchExpressions[0].values: must be empty when operator is Exists or "
       "DoesNotExist"},
      {"expression value too long",
       Policy(Expr("{key: app, operator: In, values: [" + std::string(64, 'v') + "]}")),
       absl::StrCat("spec.podSelector.matchExpressions[0].values[0]: invalid label value \"",
                    std::string(64, 'v'), "\": must be no more than 63 characters")},
      {"expression value null", Policy(Expr("{key: app, operator: In, values: [~]}")),
       "spec.podSelector.matchExpressions[0].values[0]: must be a string, got null"},
      {"peer selector path",
       Policy(from + "namespaceSelector:\n        matchExpressions:\n        - {key: a, "
                     "operator: In}\n"),
       "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values: must be non-empty "
       "when operator is In or NotIn"},

      // policyTypes.
      {"policyTypes unsupported", Policy("  policyTypes: [Ingress, Both]\n"),
       "spec.policyTypes[1]: unsupported value \"Both\" (supported: Ingress, Egress)"},
      {"policyTypes lowercase", Policy("  policyTypes: [ingress]\n"),
       "spec.policyTypes[0]: unsupported value \"ingress\" (supported: Ingress, Egress)"},
      {"policyTypes three entries", Policy("  policyTypes: [Ingress, Egress, Ingress]\n"),
       "spec.policyTypes: may not have more than 2 entries"},
      {"policyTypes not a list", Policy("  policyTypes: Ingress\n"),
       "spec.policyTypes: must be a list, got string \"Ingress\""},

      // Names and namespaces.
      {"policy name invalid",
       "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: Deny_All\n"
       "  namespace: x\n",
       absl::StrCat("t.yaml: networkpolicy x/Deny_All: metadata.name: invalid name \"Deny_All\": ",
                    kSubdomainRule)},
      {"policy name missing",
       "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: x\n",
       "t.yaml: document 1: networkpolicy: metadata.name: required"},
      {"policy name too long",
       "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: " +
           std::string(254, 'a') + "\n",
       absl::StrCat("t.yaml: networkpolicy default/", std::string(80, 'a'),
                    "...: metadata.name: invalid name \"", std::string(80, 'a'),
                    "\"...: ", kSubdomainRule)},
      {"pod name invalid", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web_1\n",
       absl::StrCat("t.yaml: pod default/web_1: metadata.name: invalid name \"web_1\": ",
                    kSubdomainRule)},
      {"pod name number", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: 123\n",
       "t.yaml: document 1: pod: metadata.name: must be a string, got integer \"123\" (quote it)"},
      {"namespace name with dot", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a.b\n",
       absl::StrCat("t.yaml: namespace a.b: metadata.name: invalid name \"a.b\": ", kLabelRule)},
      {"namespace name too long",
       "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + long63 + "b\n",
       absl::StrCat("t.yaml: namespace ", long63, "b: metadata.name: invalid name \"", long63,
                    "b\": ", kLabelRule)},
      {"object namespace invalid",
       "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  namespace: X\n",
       absl::StrCat("t.yaml: pod X/a: metadata.namespace: invalid namespace \"X\": ", kLabelRule)},
      {"object namespace subdomain is not a label",
       "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n"
       "  namespace: a.b\n",
       absl::StrCat("t.yaml: networkpolicy a.b/p: metadata.namespace: invalid namespace \"a.b\": ",
                    kLabelRule)},

      // Pods.
      {"containerPort zero", PodDoc("  containers:\n  - ports:\n    - containerPort: 0\n"),
       "spec.containers[0].ports[0].containerPort: must be between 1 and 65535, got 0"},
      {"containerPort missing", PodDoc("  containers:\n  - ports:\n    - name: http\n"),
       "spec.containers[0].ports[0].containerPort: required"},
      {"containerPort string", PodDoc("  containers:\n  - ports:\n    - containerPort: \"80\"\n"),
       "spec.containers[0].ports[0].containerPort: must be an integer, got string \"80\""},
      {"container protocol",
       PodDoc("  containers:\n  - ports:\n    - {containerPort: 80, protocol: ICMP}\n"),
       "spec.containers[0].ports[0].protocol: unsupported value \"ICMP\" (supported: TCP, UDP, "
       "SCTP)"},
      {"container port name invalid",
       PodDoc("  containers:\n  - ports:\n    - {containerPort: 80, name: Web}\n"),
       "spec.containers[0].ports[0].name: invalid port name \"Web\": must contain only lowercase "
       "alphanumerics and '-'"},
      {"container port name duplicate",
       PodDoc("  containers:\n  - ports:\n    - {containerPort: 80, name: web}\n  - ports:\n"
              "    - {containerPort: 81, name: web, protocol: UDP}\n"),
       "spec.containers[1].ports[0].name: duplicate port name \"web\""},
      {"hostNetwork string", PodDoc("  hostNetwork: \"true\"\n"),
       "spec.hostNetwork: must be a boolean, got string \"true\""},
      {"nodeName invalid", PodDoc("  nodeName: Node_1\n"),
       absl::StrCat("spec.nodeName: invalid node name \"Node_1\": ", kSubdomainRule)},
      {"podIP invalid", PodDoc("  containers: []\n", "  podIP: 10.0.0.300\n"),
       "status.podIP: invalid IP address \"10.0.0.300\""},
      {"podIPs entry invalid",
       PodDoc("  containers: []\n", "  podIPs:\n  - ip: 10.0.0.1\n  - ip: fd00::g\n"),
       "status.podIPs[1].ip: invalid IP address \"fd00::g\""},
      {"podIPs entry without ip", PodDoc("  containers: []\n", "  podIPs:\n  - {}\n"),
       "status.podIPs[0].ip: required"},
      {"podIPs two of one family",
       PodDoc("  containers: []\n", "  podIP: 10.0.0.1\n  podIPs:\n  - ip: 10.0.0.2\n"),
       "status.podIPs[0].ip: a pod may have at most one address per family; 10.0.0.1 and "
       "10.0.0.2 conflict"},
      // IPv4-mapped IPv6 addresses are refused as the API server refuses them.
      {"podIP IPv4-mapped", PodDoc("  containers: []\n", "  podIP: \"::ffff:10.0.0.1\"\n"),
       "status.podIP: \"::ffff:10.0.0.1\": must not be an IPv4-mapped IPv6 address (write "
       "10.0.0.1)"},
      {"podIPs IPv4-mapped",
       PodDoc("  containers: []\n", "  podIPs:\n  - ip: \"::ffff:a00:2\"\n"),
       "status.podIPs[0].ip: \"::ffff:10.0.0.2\": must not be an IPv4-mapped IPv6 address "
       "(write 10.0.0.2)"},

      // Wrong node types.
      {"spec a list", Policy("  []\n"), "spec: must be a map, got list"},
      {"ingress a map", Policy("  ingress: {}\n"), "spec.ingress: must be a list, got map"},
      {"rule a string", Policy("  ingress: [x]\n"),
       "spec.ingress[0]: must be a map, got string \"x\""},
      {"from a scalar", Policy("  ingress:\n  - from: 3\n"),
       "spec.ingress[0].from: must be a list, got integer \"3\""},
      {"podSelector a list", Policy("  podSelector: []\n"),
       "spec.podSelector: must be a map, got list"},
      {"matchExpressions a map", Policy("  podSelector:\n    matchExpressions: {}\n"),
       "spec.podSelector.matchExpressions: must be a list, got map"},
      {"metadata a string", "apiVersion: v1\nkind: Pod\nmetadata: x\n",
       "t.yaml: document 1: pod: metadata: must be a map, got string \"x\""},
      {"labels a list", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  labels: [x]\n",
       "t.yaml: pod default/a: metadata.labels: must be a map, got list"},
      {"containers a map", PodDoc("  containers: {a: 1}\n"),
       "spec.containers: must be a list, got map"},
      {"podIPs a string", PodDoc("  containers: []\n", "  podIPs: x\n"),
       "status.podIPs: must be a list, got string \"x\""},
      {"map key a list", Policy("  podSelector:\n    matchLabels:\n      ? [a]\n      : b\n"),
       "spec.podSelector.matchLabels: keys must be strings, got list"},
      {"duplicate label key", Policy(MatchLabel("app: a\n      app: b")),
       "spec.podSelector.matchLabels[app]: duplicate key"},
      {"document a list", "- a\n- b\n",
       "t.yaml: document 1: must be a map (a Kubernetes object), got list"},
      {"document a scalar", "hello\n",
       "t.yaml: document 1: must be a map (a Kubernetes object), got string \"hello\""},

      // Unknown fields (strict mode).
      {"unknown spec field", Policy("  ingres: []\n"), "spec.ingres: unknown field"},
      {"unknown rule field", Policy("  ingress:\n  - form: []\n"),
       "spec.ingress[0].form: unknown field"},
      {"to in an ingress rule", Policy("  ingress:\n  - to: []\n"),
       "spec.ingress[0].to: unknown field"},
      {"unknown port field", Policy(ports + "{port: 80, hostPort: 80}\n"),
       "spec.ingress[0].ports[0].hostPort: unknown field"},
      {"unknown ipBlock field", Policy(from + "ipBlock: {cidr: 10.0.0.0/8, excepts: []}\n"),
       "spec.ingress[0].from[0].ipBlock.excepts: unknown field"},
      {"unknown selector field", Policy("  podSelector: {matchLabel: {}}\n"),
       "spec.podSelector.matchLabel: unknown field"},
      {"unknown expression field", Policy(Expr("{key: a, operator: Exists, value: [a]}")),
       "spec.podSelector.matchExpressions[0].value: unknown field"},
      {"unknown policy metadata field",
       "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n"
       "  namespace: x\n  nmae: q\n",
       "metadata.nmae: unknown field"},
      {"unknown pod top-level field", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspex: {}\n",
       "t.yaml: pod default/a: spex: unknown field"},
      {"unknown namespace top-level field",
       "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns1\ndata: {}\n",
       "t.yaml: namespace ns1: data: unknown field"},
      {"unknown list field", "apiVersion: v1\nkind: List\nitems: []\nextra: 1\n",
       "t.yaml: document 1: extra: unknown field"},

      // Documents, kinds and versions.
      {"unsupported kind",
       "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: "
       "Service\nmetadata: {name: s}\n",
       "t.yaml: document 2: unsupported kind \"Service\" (supported: Namespace, Pod, "
       "NetworkPolicy, ClusterNetworkPolicy, Node, List)"},
      {"kind missing", "apiVersion: v1\nmetadata: {name: a}\n",
       "t.yaml: document 1: kind: required"},
      {"kind not a string", "apiVersion: v1\nkind: [Pod]\n",
       "t.yaml: document 1: kind: must be a string, got list"},
      {"apiVersion wrong",
       "apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n",
       "t.yaml: networkpolicy x/p: apiVersion: unsupported value \"extensions/v1beta1\" for kind "
       "NetworkPolicy (supported: networking.k8s.io/v1)"},
      {"apiVersion missing", "kind: Pod\nmetadata: {name: a}\n",
       "t.yaml: pod default/a: apiVersion: required"},
      {"list item unsupported kind",
       "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: "
       "{name: a}\n- apiVersion: v1\n  kind: Service\n",
       "t.yaml: document 1: items[1]: unsupported kind \"Service\" (supported: Namespace, Pod, "
       "NetworkPolicy, ClusterNetworkPolicy, Node)"},
      {"list inside list", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: List\n",
       "t.yaml: document 1: items[0]: unsupported kind \"List\" (supported: Namespace, Pod, "
       "NetworkPolicy, ClusterNetworkPolicy, Node)"},
      {"list item error names the item",
       "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: a, "
       "namespace: x}\n  spec: {hostNetwork: 1}\n",
       "t.yaml: pod x/a: spec.hostNetwork: must be a boolean, got integer \"1\""},
      {"list item unnamed",
       "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {}\n",
       "t.yaml: document 1: items[0]: pod: metadata.name: required"},
      {"list items not a list", "apiVersion: v1\nkind: List\nitems: {}\n",
       "t.yaml: document 1: items: must be a list, got map"},
      {"list item null", "apiVersion: v1\nkind: List\nitems: [~]\n",
       "t.yaml: document 1: items[0]: must be a map (a Kubernetes object), got null"},
      {"parse error names the document",
       "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\nkind: [\n",
       "t.yaml: document 2: line 6, column 1: end of sequence flow not found"},
  };
}

TEST(LoaderTest, ValidationErrors) {
  for (const ErrorCase& c : ErrorCases()) {
    auto r = LoadYaml(c.input, Opts());
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    std::string want = c.error;
    // Rows about one object's fields omit the object prefix.
    if (!absl::StartsWith(want, "t.yaml: ")) {
      want = (absl::StartsWith(c.input, "apiVersion: v1\nkind: Pod") ? kPod : kNp) + want;
    }
    EXPECT_EQ(r.status().message(), want) << c.name;
  }
}

// Each error row's fault is the only one: the first lines of the inputs all load cleanly once
// the fault is removed. Checked for a few rows by building their valid twin.
TEST(LoaderTest, ValidTwinsLoad) {
  const std::vector<std::string> valid = {
      Policy("  ingress:\n  - ports:\n    - protocol: SCTP\n      port: 80\n      endPort: 80\n"),
      Policy("  ingress:\n  - ports:\n    - port: abcdefghijklmno\n    - port: a-b-c\n"
             "    - port: 9p\n"),
      Policy("  ingress:\n  - from:\n    - ipBlock:\n        cidr: 10.0.0.0/8\n        except: "
             "[10.1.0.0/16, 10.0.0.1/32]\n"),
      Policy(MatchLabel("app: \"\"")),
      Policy(MatchLabel("app:")),
      Policy(MatchLabel("example.com/" + std::string(63, 'k') + ": " + std::string(63, 'v'))),
      Policy(MatchLabel("A_b.C: x_Y.z")),
      Policy(Expr("{key: app, operator: DoesNotExist, values: []}")),
      Policy(Expr("{key: app, operator: NotIn, values: [\"\", a]}")),
      Policy("  policyTypes: [Ingress, Ingress]\n"),
      PodDoc("  hostNetwork: yes\n  containers:\n  - ports:\n    - {containerPort: 80, name: "
             "web}\n    - {containerPort: 80, name: web2, protocol: UDP}\n"),
      "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + std::string(63, 'a') + "\n",
  };
  for (const std::string& v : valid) {
    auto r = LoadYaml(v, Opts());
    EXPECT_TRUE(r.ok()) << v << "\n" << r.status();
  }
}

TEST(LoaderTest, CollectsAllErrorsFirstLineFirst) {
  auto r = LoadYaml(Policy("  ingress:\n  - ports:\n    - port: 0\n    - protocol: X\n"), Opts());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "t.yaml: networkpolicy x/p: spec.ingress[0].ports[0].port: must be between 1 and "
            "65535, got 0\n"
            "t.yaml: networkpolicy x/p: spec.ingress[0].ports[1].protocol: unsupported value "
            "\"X\" (supported: TCP, UDP, SCTP)");
}

TEST(LoaderTest, YamlBooleansAreNotNames) {
  // YAML 1.1, which Kubernetes reads, takes an unquoted n for false.
  auto r = LoadYaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n", Opts());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "t.yaml: document 1: namespace: metadata.name: must be a string, got boolean \"n\" "
            "(quote it)");
  auto quoted = LoadYaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: \"n\"}\n", Opts());
  ASSERT_TRUE(quoted.ok()) << quoted.status();
  EXPECT_EQ(quoted->objects[0].Ref(), "namespace n");
}

TEST(LoaderTest, DefaultNamespace) {
  LoadOptions o = Opts();
  o.default_namespace = "shop";
  auto r = LoadYaml(
      "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\n"
      "metadata: {name: b, namespace: other}\n---\napiVersion: networking.k8s.io/v1\n"
      "kind: NetworkPolicy\nmetadata: {name: Bad}\n",
      o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()),
              ::testing::StartsWith("t.yaml: networkpolicy shop/Bad: metadata.name"));
  auto ok = LoadYaml(
      "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\n"
      "metadata: {name: b, namespace: other}\n",
      o);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->objects[0].Key(), "shop/a");
  EXPECT_EQ(ok->objects[1].Key(), "other/b");
}

// The default namespace (kubectl -n) is a namespace name like any other: an invalid one refuses
// the input, even where every object names its own namespace.
TEST(LoaderTest, InvalidDefaultNamespaceIsRefused) {
  for (const std::string& ns : {std::string("a\"b"), std::string("Shop"), std::string("a.b"),
                                std::string(64, 'a'), std::string("x\ny")}) {
    LoadOptions o = Opts();
    o.default_namespace = ns;
    auto r = LoadYaml("apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: other}\n", o);
    ASSERT_FALSE(r.ok()) << ns;
    EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
    EXPECT_THAT(std::string(r.status().message()),
                ::testing::StartsWith("t.yaml: default namespace: invalid name \""));
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("lowercase RFC 1123 label"));
    EXPECT_EQ(std::string(r.status().message()).find('\n'), std::string::npos);
  }
}

// What a CNI attachment stores (a pod with a name, a namespace and addresses) and objects with
// the longest names Kubernetes allows write out as YAML that loads back as the same objects, so
// `netpolctl get -o yaml` output re-applies.
TEST(LoaderTest, StoredObjectsReloadFromTheirYaml) {
  const std::string longest = std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                              std::string(63, 'c') + "." + std::string(61, 'd');
  Pod shell;
  shell.namespace_name = std::string(63, 'n');
  shell.name = longest;
  shell.ips = {*IpAddr::Parse("10.0.0.1"), *IpAddr::Parse("fd00::1")};
  Pod full = shell;
  full.name = "web-1";
  full.labels = {{"app.kubernetes.io/name", "web_1.x-Y"}, {"empty", ""}};
  full.node_name = longest;
  full.ports = {{"http", 8080, Protocol::kTCP}, {"dns", 53, Protocol::kUDP}};
  NetworkPolicy policy;
  policy.namespace_name = shell.namespace_name;
  policy.name = longest;
  policy.ingress_type = true;
  NetworkPolicy logged = policy;
  logged.name = "logged";
  logged.log_allowed = true;
  const std::vector<Object> objects = {Object{shell}, Object{full}, Object{policy},
                                       Object{logged}};
  auto r = LoadYaml(ToYaml(objects), Opts());
  ASSERT_TRUE(r.ok()) << r.status() << "\n" << ToYaml(objects);
  EXPECT_EQ(r->objects, objects);
}

// Names that come from outside manifests (CNI arguments, flags) are held to the same rules.
TEST(LoaderTest, NameRulesForNamesFromElsewhere) {
  const std::string longest = std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                              std::string(63, 'c') + "." + std::string(61, 'd');
  EXPECT_TRUE(ValidateDnsSubdomain("pod", longest).ok());
  EXPECT_TRUE(ValidateDnsSubdomain("pod", "web-1").ok());
  EXPECT_TRUE(ValidateDnsLabel("namespace", std::string(63, 'n')).ok());
  for (const std::string& bad : {longest + "e", std::string("a\"b"), std::string("A"),
                                 std::string(""), std::string("a..b"), std::string("-a")}) {
    absl::Status s = ValidateDnsSubdomain("podName", bad);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << bad;
    EXPECT_THAT(std::string(s.message()), ::testing::StartsWith("podName: invalid name \""));
  }
  EXPECT_FALSE(ValidateDnsLabel("namespace", "a.b").ok());
  EXPECT_FALSE(ValidateDnsLabel("namespace", std::string(64, 'n')).ok());
}

TEST(LoaderTest, ErrorAndWarningCountsAreCapped) {
  std::string ports;
  for (int i = 0; i < 30; ++i) ports += "    - port: 0\n";
  auto r = LoadYaml(Policy("  ingress:\n  - ports:\n" + ports), Opts());
  ASSERT_FALSE(r.ok());
  std::vector<std::string> lines = absl::StrSplit(std::string(r.status().message()), '\n');
  ASSERT_EQ(lines.size(), 21u);
  EXPECT_EQ(lines[19],
            "t.yaml: networkpolicy x/p: spec.ingress[0].ports[19].port: must be between 1 and "
            "65535, got 0");
  EXPECT_EQ(lines[20], "... and 10 more errors");

  std::string unknown;
  for (int i = 0; i < 150; ++i) unknown += absl::StrCat("  x", i, ": 1\n");
  auto w = LoadYaml(Policy(unknown), Opts(false));
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->warnings.size(), 101u);
  EXPECT_EQ(w->warnings.back(), "t.yaml: ... and 50 more warnings");
}

TEST(LoaderTest, NoSourceOmitsPrefix) {
  auto r = LoadYaml("apiVersion: v1\nkind: Pod\nmetadata: {name: A}\n");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()),
              ::testing::StartsWith("pod default/A: metadata.name: invalid name \"A\""));
}

TEST(LoaderTest, LenientModeWarnsOnUnknownFields) {
  const std::string in =
      "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n"
      "  namespace: x\n  nmae: q\nspec:\n  ingres: []\n  ingress:\n  - form: []\n"
      "    ports: [{port: 80, hostPort: 1}]\nfoo: 1\n";
  auto strict = LoadYaml(in, Opts(true));
  ASSERT_FALSE(strict.ok());
  auto lenient = LoadYaml(in, Opts(false));
  ASSERT_TRUE(lenient.ok()) << lenient.status();
  EXPECT_THAT(lenient->warnings,
              ElementsAre("t.yaml: networkpolicy x/p: foo: unknown field (ignored)",
                          "t.yaml: networkpolicy x/p: metadata.nmae: unknown field (ignored)",
                          "t.yaml: networkpolicy x/p: spec.ingres: unknown field (ignored)",
                          "t.yaml: networkpolicy x/p: spec.ingress[0].form: unknown field "
                          "(ignored)",
                          "t.yaml: networkpolicy x/p: spec.ingress[0].ports[0].hostPort: unknown "
                          "field (ignored)"));
  ASSERT_EQ(lenient->objects.size(), 1u);
  const NetworkPolicy* np = lenient->objects[0].AsNetworkPolicy();
  ASSERT_NE(np, nullptr);
  ASSERT_EQ(np->ingress.size(), 1u);
  EXPECT_TRUE(np->ingress[0].peers.empty());
  ASSERT_EQ(np->ingress[0].ports.size(), 1u);
  EXPECT_EQ(np->ingress[0].ports[0].port, 80);
}

TEST(LoaderTest, LogAllowedAnnotation) {
  auto load = [](const std::string& annotations, bool strict) {
    return LoadYaml("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n"
                    "  name: p\n  namespace: x\n  annotations: " +
                        annotations + "\nspec:\n  podSelector: {}\n",
                    Opts(strict));
  };
  auto logged = [](const absl::StatusOr<LoadResult>& r) {
    return r.ok() && r->objects.size() == 1 && r->objects[0].AsNetworkPolicy()->log_allowed;
  };
  EXPECT_TRUE(logged(load("{netpol.io/log-allowed: \"true\", other: x}", true)));
  auto off = load("{netpol.io/log-allowed: \"false\"}", true);
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_FALSE(logged(off));
  auto none = load("{other: \"true\"}", true);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(logged(none));
  // A manifest's other value is refused, an unquoted boolean too (Kubernetes wants a string).
  EXPECT_EQ(load("{netpol.io/log-allowed: \"yes\"}", true).status().message(),
            "t.yaml: networkpolicy x/p: metadata.annotations[netpol.io/log-allowed]: must be "
            "\"true\" or \"false\", got \"yes\"");
  EXPECT_FALSE(load("{netpol.io/log-allowed: true}", true).ok());
  // An object the API server holds (lenient) works, without logs, and says why.
  auto lenient = load("{netpol.io/log-allowed: \"yes\"}", false);
  ASSERT_TRUE(lenient.ok()) << lenient.status();
  EXPECT_FALSE(logged(lenient));
  EXPECT_THAT(lenient->warnings,
              ElementsAre("t.yaml: networkpolicy x/p: metadata.annotations[netpol.io/log-allowed]: "
                          "must be \"true\" or \"false\", got \"yes\" (ignored)"));
}

TEST(LoaderTest, PodAcceptsTheRestOfItsSchemaSilently) {
  const std::string in = R"(apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: shop
  uid: 5c1d5c9e-0000-4000-8000-000000000000
  resourceVersion: "12345"
  creationTimestamp: "2024-01-01T00:00:00Z"
  generateName: web-
  annotations: {note: "hello", other: x}
  ownerReferences:
  - {apiVersion: apps/v1, kind: StatefulSet, name: web, uid: abc, controller: true}
  labels:
    app: web
    app.kubernetes.io/part-of: shop
spec:
  nodeName: node-1
  restartPolicy: Always
  terminationGracePeriodSeconds: 30
  initContainers:
  - {name: init, image: busybox, ports: [{containerPort: 1, name: ignored}]}
  containers:
  - name: web
    image: nginx:1.25
    imagePullPolicy: IfNotPresent
    args: ["--port", "8080"]
    resources: {limits: {cpu: 500m}}
    ports:
    - name: http
      containerPort: 8080
    - name: metrics
      containerPort: 9090
      protocol: TCP
      hostPort: 9090
  - name: dns
    image: coredns
    ports:
    - {name: dns, containerPort: 53, protocol: UDP}
    - {containerPort: 5353, protocol: SCTP}
status:
  phase: Running
  hostIP: 192.168.1.10
  conditions: [{type: Ready, status: "True"}]
  podIP: 10.244.1.5
  podIPs:
  - ip: 10.244.1.5
  - ip: fd00:10:244:1::5
)";
  auto r = LoadYaml(in, Opts());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->warnings.empty());
  ASSERT_EQ(r->objects.size(), 1u);
  const Pod* pod = r->objects[0].AsPod();
  ASSERT_NE(pod, nullptr);
  Pod want;
  want.namespace_name = "shop";
  want.name = "web-0";
  want.labels = {{"app", "web"}, {"app.kubernetes.io/part-of", "shop"}};
  want.node_name = "node-1";
  want.ports = {{"http", 8080, Protocol::kTCP},
                {"metrics", 9090, Protocol::kTCP},
                {"dns", 53, Protocol::kUDP},
                {"", 5353, Protocol::kSCTP}};
  want.ips = {*IpAddr::Parse("10.244.1.5"), *IpAddr::Parse("fd00:10:244:1::5")};
  EXPECT_EQ(*pod, want);
  EXPECT_EQ(r->objects[0].Kind(), std::string("Pod"));
  EXPECT_EQ(r->objects[0].Key(), "shop/web-0");
  EXPECT_EQ(r->objects[0].Ref(), "pod shop/web-0");
}

TEST(LoaderTest, PodAddresses) {
  struct Case {
    std::string name, status;
    std::vector<std::string> want;
  };
  const std::vector<Case> cases = {
      {"none", "", {}},
      {"podIP only", "  podIP: 10.0.0.1\n", {"10.0.0.1"}},
      {"podIPs only", "  podIPs: [{ip: fd00::1}, {ip: 10.0.0.1}]\n", {"fd00::1", "10.0.0.1"}},
      {"podIP first and deduplicated",
       "  podIP: fd00::1\n  podIPs: [{ip: 10.0.0.1}, {ip: fd00::1}]\n",
       {"fd00::1", "10.0.0.1"}},
      {"canonicalized", "  podIP: FD00:0:0::01\n", {"fd00::1"}},
  };
  for (const Case& c : cases) {
    auto r = LoadYaml(PodDoc("  containers: []\n", c.status.empty() ? "  {}\n" : c.status), Opts());
    ASSERT_TRUE(r.ok()) << c.name << ": " << r.status();
    std::vector<std::string> got;
    for (const IpAddr& a : r->objects[0].AsPod()->ips) got.push_back(a.ToString());
    EXPECT_EQ(got, c.want) << c.name;
  }
}

TEST(LoaderTest, NamespaceGetsItsNameLabel) {
  auto r = LoadYaml(
      "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels:\n    team: a\n"
      "    kubernetes.io/metadata.name: other\nspec: {finalizers: [kubernetes]}\n"
      "status: {phase: Active}\n",
      Opts());
  ASSERT_TRUE(r.ok()) << r.status();
  const Namespace* ns = r->objects[0].AsNamespace();
  ASSERT_NE(ns, nullptr);
  EXPECT_EQ(ns->name, "shop");
  EXPECT_EQ(ns->labels, (Labels{{"team", "a"}, {"kubernetes.io/metadata.name", "shop"}}));
  EXPECT_EQ(r->objects[0].NamespaceName(), "");
  EXPECT_EQ(r->objects[0].Ref(), "namespace shop");
}

TEST(LoaderTest, PolicyTypesDefaulting) {
  struct Case {
    std::string name, spec;
    bool ingress, egress;
  };
  const std::vector<Case> cases = {
      {"absent, no rules", "  podSelector: {}\n", true, false},
      {"absent, ingress rules", "  ingress: [{}]\n", true, false},
      {"absent, empty egress list", "  egress: []\n", true, false},
      {"absent, egress rule", "  egress: [{}]\n", true, true},
      {"empty list, egress rule", "  policyTypes: []\n  egress: [{}]\n", true, true},
      {"null, egress rule", "  policyTypes: null\n  egress: [{}]\n", true, true},
      {"Egress only", "  policyTypes: [Egress]\n", false, true},
      {"Egress only with ingress rules", "  policyTypes: [Egress]\n  ingress: [{}]\n", false, true},
      {"Ingress only with egress rules", "  policyTypes: [Ingress]\n  egress: [{}]\n", true, false},
      {"both", "  policyTypes: [Egress, Ingress]\n", true, true},
      {"duplicate", "  policyTypes: [Ingress, Ingress]\n", true, false},
  };
  for (const Case& c : cases) {
    auto r = LoadYaml(Policy(c.spec), Opts());
    ASSERT_TRUE(r.ok()) << c.name << ": " << r.status();
    const NetworkPolicy* np = r->objects[0].AsNetworkPolicy();
    EXPECT_EQ(np->ingress_type, c.ingress) << c.name;
    EXPECT_EQ(np->egress_type, c.egress) << c.name;
  }
  // No spec at all: selects every pod, isolates for ingress.
  auto r = LoadYaml("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\n",
                    Opts());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->objects[0].AsNetworkPolicy()->ingress_type);
  EXPECT_TRUE(r->objects[0].AsNetworkPolicy()->pod_selector.Empty());
  EXPECT_EQ(r->objects[0].Key(), "default/p");
}

// A policy touching every field, and the model it must produce.
const char kFullPolicy[] = R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-allow
  namespace: shop
  labels: {owner: team-a}
  annotations: {a: b}
  resourceVersion: "7"
spec:
  podSelector:
    matchLabels: {app: web}
    matchExpressions:
    - {key: tier, operator: In, values: [front, "1"]}
    - {key: debug, operator: DoesNotExist}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - podSelector: {matchLabels: {role: client}}
    - namespaceSelector: {matchLabels: {team: a}}
      podSelector: {}
    - namespaceSelector: {}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
    ports:
    - port: 80
    - {protocol: UDP, port: dns}
    - {protocol: SCTP, port: 1000, endPort: 2000}
    - protocol: TCP
  - {}
  egress:
  - to:
    - ipBlock: {cidr: "fd00::/8"}
  - ports: [{port: 53, protocol: UDP}]
)";

NetworkPolicy FullPolicyModel() {
  using Op = LabelSelectorRequirement::Op;
  NetworkPolicy np;
  np.namespace_name = "shop";
  np.name = "web-allow";
  np.pod_selector.match_labels = {{"app", "web"}};
  np.pod_selector.match_expressions = {{"tier", Op::kIn, {"front", "1"}},
                                       {"debug", Op::kDoesNotExist, {}}};
  np.ingress_type = np.egress_type = true;
  Rule r1;
  Peer p1, p2, p3, p4;
  p1.pod_selector = LabelSelector{{{"role", "client"}}, {}};
  p2.namespace_selector = LabelSelector{{{"team", "a"}}, {}};
  p2.pod_selector = LabelSelector{};
  p3.namespace_selector = LabelSelector{};
  p4.ip_block = IPBlock{*Cidr::Parse("10.0.0.0/8"), {*Cidr::Parse("10.1.0.0/16")}};
  r1.peers = {p1, p2, p3, p4};
  PolicyPort q1, q2, q3, q4;
  q1.port = 80;
  q2.protocol = Protocol::kUDP;
  q2.named_port = "dns";
  q3.protocol = Protocol::kSCTP;
  q3.port = 1000;
  q3.end_port = 2000;
  r1.ports = {q1, q2, q3, q4};
  np.ingress = {r1, Rule{}};
  Rule e1, e2;
  Peer ep;
  ep.ip_block = IPBlock{*Cidr::Parse("fd00::/8"), {}};
  e1.peers = {ep};
  PolicyPort dns;
  dns.protocol = Protocol::kUDP;
  dns.port = 53;
  e2.ports = {dns};
  np.egress = {e1, e2};
  return np;
}

TEST(LoaderTest, FullPolicy) {
  auto r = LoadYaml(kFullPolicy, Opts());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->objects.size(), 1u);
  ASSERT_NE(r->objects[0].AsNetworkPolicy(), nullptr);
  EXPECT_EQ(*r->objects[0].AsNetworkPolicy(), FullPolicyModel());
  EXPECT_EQ(r->objects[0].Ref(), "networkpolicy shop/web-allow");
}

TEST(LoaderTest, JsonInput) {
  const std::string json = R"({
  "apiVersion": "v1",
  "kind": "List",
  "items": [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
    {"apiVersion": "v1", "kind": "Pod",
     "metadata": {"name": "a", "namespace": "shop", "labels": {"app": "web", "v": "1"}},
     "spec": {"hostNetwork": false, "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 80}]}]},
     "status": {"podIP": "10.0.0.1"}},
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
     "metadata": {"name": "p", "namespace": "shop"},
     "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}, {"port": 443, "endPort": 444}]}],
              "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}]}}
  ]
})";
  auto r = LoadYaml(json, Opts());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->objects.size(), 3u);
  EXPECT_EQ(r->objects[0].Ref(), "namespace shop");
  const Pod* pod = r->objects[1].AsPod();
  ASSERT_NE(pod, nullptr);
  EXPECT_EQ(pod->labels, (Labels{{"app", "web"}, {"v", "1"}}));
  EXPECT_EQ(pod->ResolvePort("http", Protocol::kTCP), 80);
  const NetworkPolicy* np = r->objects[2].AsNetworkPolicy();
  ASSERT_NE(np, nullptr);
  EXPECT_TRUE(np->ingress_type);
  EXPECT_TRUE(np->egress_type);
  EXPECT_EQ(np->ingress[0].ports[0].named_port, "http");
  EXPECT_EQ(np->ingress[0].ports[1].end_port, 444);
  EXPECT_EQ(np->egress[0].peers[0].ip_block->except[0].ToString(), "10.0.0.0/8");

  // A JSON number where Kubernetes wants a string is an error, as with kubectl.
  auto bad = LoadYaml(
      R"({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "labels": {"v": 1}}})",
      Opts());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(
      bad.status().message(),
      "t.yaml: pod default/a: metadata.labels[v]: must be a string, got integer \"1\" (quote it)");
}

TEST(LoaderTest, ListsAndDocuments) {
  const std::string in = R"(---
# comment-only and empty documents are skipped
---
apiVersion: v1
kind: NamespaceList
items:
- metadata: {name: a}
- metadata: {name: b}
---
apiVersion: v1
kind: PodList
metadata: {resourceVersion: "1"}
items:
- metadata: {name: p, namespace: a}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicyList
items:
- metadata: {name: np, namespace: a}
  spec: {}
---
apiVersion: v1
kind: Namespace
metadata: {name: c}
...
)";
  auto r = LoadYaml(in, Opts());
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<std::string> refs;
  for (const Object& o : r->objects) refs.push_back(o.Ref());
  EXPECT_THAT(refs, ElementsAre("namespace a", "namespace b", "pod a/p", "networkpolicy a/np",
                                "namespace c"));
  auto empty = LoadYaml("---\n---\n", Opts());
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->objects.empty());
  auto none = LoadYaml("", Opts());
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->objects.empty());
}

// Documents are built one at a time where the stream can be cut at document starts, all at once
// where it cannot (a directive): both give the same objects and name the same documents.
TEST(LoaderTest, EveryDocumentShapeLoads) {
  struct Case {
    std::string name;
    std::string text;
    std::vector<std::string> refs;
  };
  const std::vector<Case> cases = {
      {"end markers, indented document, flow on the start line",
       "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: &l {t: x}}\n...\n"
       "  apiVersion: v1\n  kind: Namespace\n  metadata: {name: b}\n...\n"
       "--- {apiVersion: v1, kind: Namespace, metadata: {name: c, labels: &l {t: v}}}\n"
       "--- # a comment\n!!map\napiVersion: v1\nkind: Namespace\nmetadata: {name: d, labels: {t: z}}\n"
       "---\n---\n",
       {"namespace a", "namespace b", "namespace c", "namespace d"}},
      {"directives",
       "%YAML 1.2\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n...\n"
       "%TAG !k! tag:yaml.org,2002:\n--- !k!map\napiVersion: v1\nkind: Namespace\n"
       "metadata: {name: b}\n",
       {"namespace a", "namespace b"}},
  };
  for (const Case& c : cases) {
    auto r = LoadYaml(c.text, Opts());
    ASSERT_TRUE(r.ok()) << c.name << ": " << r.status();
    std::vector<std::string> refs;
    for (const Object& o : r->objects) refs.push_back(o.Ref());
    EXPECT_EQ(refs, c.refs) << c.name;
    if (c.refs.size() == 4) {
      // Each document keeps its own anchors and labels.
      EXPECT_EQ(r->objects[0].AsNamespace()->labels.at("t"), "x") << c.name;
      EXPECT_EQ(r->objects[2].AsNamespace()->labels.at("t"), "v") << c.name;
      EXPECT_EQ(r->objects[3].AsNamespace()->labels.at("t"), "z") << c.name;
    }
  }
  const std::string bad =
      "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\n"
      "kind: Namespace\nmetadata: {name: b}\n---\napiVersion: v1\nkind: Service\n";
  for (const std::string& prefix : {std::string(), std::string("%YAML 1.2\n---\n")}) {
    auto r = LoadYaml(prefix + bad, Opts());
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(std::string(r.status().message()),
                ::testing::StartsWith("t.yaml: document 3: unsupported kind \"Service\""))
        << prefix;
  }
}

std::vector<Object> SampleObjects() {
  std::vector<Object> out;
  Namespace ns;
  ns.name = "shop";
  ns.labels = {{kNamespaceNameLabel, "shop"},
               {"team", "true"},
               {"n", "123"},
               {"f", "1.5"},
               {"e", ""},
               {"z", "null"},
               {"o", "on"},
               {"x", "0x1f"},
               {"h", "1_000"}};
  out.push_back(Object{ns});
  Pod pod;
  pod.namespace_name = "shop";
  pod.name = "web-0";
  pod.labels = {{"app", "web"}, {"version", "1.0"}};
  pod.node_name = "node-1";
  pod.ports = {{"http", 8080, Protocol::kTCP},
               {"on", 53, Protocol::kUDP},
               {"", 9000, Protocol::kSCTP},
               {"y", 1, Protocol::kTCP}};
  pod.ips = {*IpAddr::Parse("fd00::5"), *IpAddr::Parse("10.0.0.5")};
  out.push_back(Object{pod});
  Pod host;
  host.namespace_name = "kube-system";
  host.name = "proxy";
  host.host_network = true;
  out.push_back(Object{host});
  out.push_back(Object{FullPolicyModel()});
  NetworkPolicy deny;
  deny.namespace_name = "shop";
  deny.name = "deny";
  deny.ingress_type = true;
  deny.egress_type = true;
  PolicyPort named;
  named.named_port = "yes";
  Rule r;
  r.ports = {named};
  Peer p;
  p.pod_selector = LabelSelector{{{"no", "off"}},
                                 {{"k", LabelSelectorRequirement::Op::kNotIn, {"true", "", "0"}}}};
  Peer all_v6;
  all_v6.ip_block = IPBlock{*Cidr::Parse("::/0"), {*Cidr::Parse("::1/128")}};
  r.peers = {p, all_v6};
  deny.egress = {r};
  out.push_back(Object{deny});
  return out;
}

TEST(LoaderTest, RoundTrip) {
  const std::vector<Object> objects = SampleObjects();
  const std::string text = ToYaml(objects);
  auto r = LoadYaml(text, Opts());
  ASSERT_TRUE(r.ok()) << r.status() << "\n" << text;
  EXPECT_TRUE(r->warnings.empty());
  ASSERT_EQ(r->objects.size(), objects.size()) << text;
  for (size_t i = 0; i < objects.size(); ++i) {
    EXPECT_EQ(r->objects[i], objects[i]) << objects[i].Ref() << "\n" << text;
  }
  // Writing is deterministic and stable under a second round.
  EXPECT_EQ(ToYaml(r->objects), text);
  // Every parsed input round-trips too.
  for (const std::string& in : {std::string(kFullPolicy), ToYaml(objects[1])}) {
    auto a = LoadYaml(in, Opts());
    ASSERT_TRUE(a.ok()) << a.status();
    auto b = LoadYaml(ToYaml(a->objects), Opts());
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(a->objects, b->objects);
  }
}

TEST(LoaderTest, ToYamlShape) {
  Object ns{Namespace{"a", {{kNamespaceNameLabel, "a"}}}};
  EXPECT_EQ(ToYaml(ns),
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels:\n"
            "    kubernetes.io/metadata.name: a\n");
  NetworkPolicy np;
  np.namespace_name = "x";
  np.name = "deny-all";
  np.ingress_type = true;
  np.ingress = {Rule{}};
  EXPECT_EQ(ToYaml(Object{np}),
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: deny-all\n"
            "  namespace: x\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n  ingress:\n"
            "    - {}\n");
}

TEST(LoaderTest, SizeLimit) {
  std::string big(kMaxLoadBytes + 1, '#');
  auto r = LoadYaml(big, Opts());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(r.status().message(),
            "t.yaml: input is 8388609 bytes, more than the limit of 8388608 (8 MiB)");
  LoadOptions small = Opts();
  small.max_bytes = 10;
  EXPECT_EQ(LoadYaml(std::string(11, '#'), small).status().message(),
            "t.yaml: input is 11 bytes, more than the limit of 10");
}

TEST(LoaderTest, AliasBombIsStopped) {
  // 4000 aliases of a rule whose `from` holds 4000 aliases of a peer: 16 million peers.
  std::string peers = "&p {podSelector: {matchLabels: {a: b}}}";
  for (int i = 0; i < 4000; ++i) peers += ", *p";
  std::string rules = "&r {from: [" + peers + "]}";
  for (int i = 0; i < 4000; ++i) rules += ", *r";
  auto r = LoadYaml(Policy("  ingress: [" + rules + "]\n"), Opts());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("too many nodes after alias expansion (limit"));
  EXPECT_THAT(std::string(r.status().message()),
              ::testing::StartsWith("t.yaml: networkpolicy x/p: spec.ingress["));
}

TEST(LoaderTest, DeepNestingIsAnError) {
  std::string deep = "a: " + std::string(100000, '[') + std::string(100000, ']') + "\n";
  auto r = LoadYaml(deep, Opts());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()),
              ::testing::MatchesRegex("t\\.yaml: document 1: line 1, column [0-9]+: nested too "
                                      "deeply \\(at most [0-9]+ levels\\)"));
  // A second document is named as such.
  auto second = LoadYaml("a: 1\n---\n" + deep, Opts());
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()),
              ::testing::StartsWith("t.yaml: document 2: line 3,"));
}

// yaml-cpp 0.7 loops forever on a stray "," at document level; the loader must not.
TEST(LoaderTest, StrayCommaIsAnError) {
  struct Case {
    std::string input, error;
  };
  const std::vector<Case> cases = {
      {",", "t.yaml: document 1: line 1, column 1: unexpected \",\""},
      {", a", "t.yaml: document 1: line 1, column 1: unexpected \",\""},
      {"--- ,", "t.yaml: document 1: line 1, column 5: unexpected \",\""},
      {"apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n,\n",
       "t.yaml: document 2: line 5, column 1: unexpected \",\""},
  };
  for (const Case& c : cases) {
    auto r = LoadYaml(c.input, Opts());
    ASSERT_FALSE(r.ok()) << c.input;
    EXPECT_EQ(r.status().message(), c.error) << c.input;
  }
}

TEST(LoaderTest, SelfReferentialAlias) {
  auto r = LoadYaml(Policy("  ingress: &a [*a]\n"), Opts());
  EXPECT_FALSE(r.ok());
  auto r2 = LoadYaml(Policy("  podSelector: &s {matchLabels: *s}\n"), Opts());
  EXPECT_FALSE(r2.ok());
}

// Seeded mutations of valid documents: every outcome is OK or InvalidArgument, never a crash.
TEST(LoaderTest, MutatedInputsNeverCrash) {
  const std::vector<std::string> seeds = {kFullPolicy, ToYaml(SampleObjects()),
                                          Policy("  ingress: [{from: [{ipBlock: {cidr: "
                                                 "10.0.0.0/8, except: [10.0.0.0/9]}}]}]\n")};
  const std::string alphabet = " :-[]{}&*!|>'\"#,?%@`\n\t0123456789abcxyzKV/.~";
  std::mt19937 rng(12345);
  int ok = 0, invalid = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s = seeds[iter % seeds.size()];
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      size_t pos = rng() % s.size();
      switch (rng() % 4) {
        case 0:
          s[pos] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          s.insert(pos, 1, alphabet[rng() % alphabet.size()]);
          break;
        case 2:
          s.erase(pos, 1 + rng() % 8);
          break;
        case 3: {  // duplicate a chunk
          size_t len = std::min<size_t>(s.size() - pos, 1 + rng() % 40);
          s.insert(rng() % s.size(), s.substr(pos, len));
          break;
        }
      }
    }
    for (bool strict : {true, false}) {
      auto r = LoadYaml(s, Opts(strict));
      if (r.ok()) {
        ++ok;
        // Whatever loads must round-trip.
        auto again = LoadYaml(ToYaml(r->objects), Opts());
        ASSERT_TRUE(again.ok()) << again.status() << "\ninput:\n" << s;
        ASSERT_EQ(again->objects, r->objects) << s;
      } else {
        ++invalid;
        ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << s;
        ASSERT_THAT(std::string(r.status().message()), ::testing::StartsWith("t.yaml: ")) << s;
      }
    }
  }
  // Both outcomes occur, so the mutations exercise both paths.
  EXPECT_GT(ok, 100);
  EXPECT_GT(invalid, 100);
}

class FileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = std::string(tmp ? tmp : "/tmp") + "/loader_test_dir";
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name) << text;
  }
  std::string dir_;
};

TEST_F(FileTest, LoadPathReadsSortedManifests) {
  Write("b.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n");
  Write("a.json", R"({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}})");
  Write("c.yml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: c}\n");
  Write("README.md", "not yaml: [");
  std::filesystem::create_directories(dir_ + "/sub.yaml");
  Write("sub.yaml/d.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: d}\n");
  auto r = LoadPath(dir_);
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<std::string> refs;
  for (const Object& o : r->objects) refs.push_back(o.Ref());
  EXPECT_THAT(refs, ElementsAre("namespace a", "namespace b", "namespace c"));

  Write("d.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: D}\n");
  auto bad = LoadPath(dir_);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()),
              ::testing::StartsWith(dir_ + "/d.yaml: namespace D: metadata.name: invalid name"));
}

TEST_F(FileTest, LoadFile) {
  Write("x.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n");
  auto r = LoadFile(dir_ + "/x.yaml");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->objects[0].Ref(), "pod default/p");
  auto single = LoadPath(dir_ + "/x.yaml");
  ASSERT_TRUE(single.ok());
  EXPECT_EQ(single->objects.size(), 1u);

  auto missing = LoadFile(dir_ + "/nope.yaml");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("nope.yaml: "));

  Write("big.yaml", std::string(kMaxLoadBytes + 10, ' '));
  auto big = LoadFile(dir_ + "/big.yaml");
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(big.status().message(),
            dir_ + "/big.yaml: input is 8388618 bytes, more than the limit of 8388608 (8 MiB)");

  LoadOptions named;
  named.source = "-";
  Write("y.yaml", "kind: Pod\n");
  auto y = LoadFile(dir_ + "/y.yaml", named);
  ASSERT_FALSE(y.ok());
  EXPECT_EQ(y.status().message(),
            "-: document 1: pod: apiVersion: required\n"
            "-: document 1: pod: metadata.name: required");
}

TEST(UpsertTest, KeysByKind) {
  State s;
  for (const Object& o : SampleObjects()) Upsert(o, &s);
  EXPECT_EQ(s.namespaces.size(), 1u);
  EXPECT_EQ(s.pods.size(), 2u);
  EXPECT_EQ(s.policies.size(), 2u);
  ASSERT_NE(s.FindPod("shop/web-0"), nullptr);
  EXPECT_NE(s.policies.find("shop/web-allow"), s.policies.end());
  // A state dumps and reloads to itself.
  auto r = LoadYaml(ToYaml(ObjectsOf(s)), Opts());
  ASSERT_TRUE(r.ok()) << r.status();
  State reloaded;
  for (const Object& o : r->objects) Upsert(o, &reloaded);
  EXPECT_EQ(reloaded, s);
  std::vector<std::string> refs;
  for (const Object& o : ObjectsOf(s)) refs.push_back(o.Ref());
  EXPECT_THAT(refs, ElementsAre("namespace shop", "pod kube-system/proxy", "pod shop/web-0",
                                "networkpolicy shop/deny", "networkpolicy shop/web-allow"));

  Namespace changed{"shop", {{"x", "y"}}};
  Upsert(Object{changed}, &s);
  EXPECT_EQ(s.FindNamespace("shop")->labels, (Labels{{"x", "y"}}));
}

}  // namespace
}  // namespace netpol
