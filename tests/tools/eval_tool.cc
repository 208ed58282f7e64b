// netpol-eval: answers reachability questions about a state file with the reference evaluator.
// The randomized datapath test compares the kernel's verdicts with these.
//
//   netpol-eval --state FILE < queries
//
// Each input line is a JSON object {"src": "x/a" | "10.0.0.1", "dst": ..., "protocol": "TCP",
// "port": 80, "family": "v4" | "v6"}; each output line is {"allowed": true|false,
// "applicable": true|false, "reason": "..."} in the same order. Malformed lines get
// {"error": "..."} and the tool exits 1 at the end.
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "engine/eval/eval.h"
#include "tests/tools/state_file.h"
#include "yaml-cpp/yaml.h"

ABSL_FLAG(std::string, state, "", "multi-document YAML with the cluster state");

namespace {

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrCat("\\u00", (c >> 4) & 0xf, std::string(1, "0123456789abcdef"[c & 0xf]));
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

absl::StatusOr<netpol::Endpoint> ParseEndpoint(const netpol::State& state, const std::string& s) {
  if (s.find('/') != std::string::npos) {
    const netpol::Pod* pod = state.FindPod(s);
    if (pod == nullptr) return absl::NotFoundError(absl::StrCat("unknown pod ", s));
    return netpol::Endpoint::ForPod(*pod);
  }
  absl::StatusOr<netpol::IpAddr> addr = netpol::IpAddr::Parse(s);
  if (!addr.ok()) return addr.status();
  return netpol::Endpoint::ForAddress(*addr);
}

absl::StatusOr<std::string> Answer(const netpol::State& state, const std::string& line) {
  YAML::Node q;
  try {
    q = YAML::Load(line);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("not JSON: ", e.what()));
  }
  if (!q.IsMap() || !q["src"] || !q["dst"] || !q["port"]) {
    return absl::InvalidArgumentError("need src, dst and port");
  }
  try {
    auto src = ParseEndpoint(state, q["src"].as<std::string>());
    if (!src.ok()) return src.status();
    auto dst = ParseEndpoint(state, q["dst"].as<std::string>());
    if (!dst.ok()) return dst.status();
    std::string proto = q["protocol"] ? q["protocol"].as<std::string>() : "TCP";
    netpol::Protocol protocol;
    if (proto == "TCP") {
      protocol = netpol::Protocol::kTCP;
    } else if (proto == "UDP") {
      protocol = netpol::Protocol::kUDP;
    } else if (proto == "SCTP") {
      protocol = netpol::Protocol::kSCTP;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown protocol ", proto));
    }
    std::string fam = q["family"] ? q["family"].as<std::string>() : "v4";
    if (fam != "v4" && fam != "v6") return absl::InvalidArgumentError("family must be v4 or v6");
    netpol::Decision d =
        netpol::Decide(state, *src, *dst, fam == "v4" ? netpol::Family::kV4 : netpol::Family::kV6,
                       protocol, q["port"].as<int>());
    return absl::StrCat("{\"allowed\": ", d.allowed ? "true" : "false",
                        ", \"applicable\": ", d.applicable ? "true" : "false",
                        ", \"reason\": ", JsonString(d.reason), "}");
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("bad query: ", e.what()));
  }
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<netpol::State> state = netpol::tools::LoadState(absl::GetFlag(FLAGS_state));
  if (!state.ok()) {
    std::cerr << "netpol-eval: " << state.status().message() << "\n";
    return 1;
  }
  int rc = 0;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    absl::StatusOr<std::string> answer = Answer(*state, line);
    if (answer.ok()) {
      std::cout << *answer << "\n";
    } else {
      std::cout << "{\"error\": " << JsonString(std::string(answer.status().message())) << "}\n";
      rc = 1;
    }
  }
  return rc;
}
