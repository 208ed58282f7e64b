// netpolctl: a kubectl-like client for netpol-agent. See cli/commands.h for the commands.
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "engine/util/flags.h"
#include "engine/util/program.h"

ABSL_FLAG(std::string, server, "",
          "Agent address: unix:///path or host:port (default: $NETPOL_SERVER, then "
          "unix:///run/netpol/agent.sock)");
// Never parsed by Abseil (cli/args.h collects every occurrence); defined for --help.
ABSL_FLAG(std::vector<std::string>, f, {},
          "Files, directories or - (stdin); repeatable and comma-separated, applied in order as "
          "one request (also --filename)");
ABSL_FLAG(std::string, n, "", "Namespace (also --namespace)");
ABSL_FLAG(bool, A, false, "get: every namespace (also --all-namespaces)");
ABSL_FLAG(std::string, l, "",
          "get: label selector, e.g. app=web,tier!=db,env in (a,b),!legacy (also --selector)");
ABSL_FLAG(std::string, o, "",
          "Output format (also --output): get: wide, yaml, json or name; status, check, "
          "explain, version: json; apply, delete: name");
ABSL_FLAG(std::string, from, "", "check: source (NS/POD, POD, IP or node)");
ABSL_FLAG(std::string, to, "", "check: destination (NS/POD, POD or IP)");
ABSL_FLAG(int, port, 0, "check: destination port");
ABSL_FLAG(std::string, protocol, "TCP", "check: TCP, UDP or SCTP");
ABSL_FLAG(std::string, ip_family, "", "check: IPv4 (default) or IPv6 when both ends are pods");
ABSL_FLAG(bool, kernel, false, "render: read the table back from the kernel");
ABSL_FLAG(bool, ignore_not_found, false, "delete: missing objects are not an error");
ABSL_FLAG(bool, dry_run, false, "apply/delete: validate and report without changing anything");
ABSL_FLAG(std::string, tls_ca, "", "TCP: CA certificate of the agent (enables TLS)");
ABSL_FLAG(std::string, tls_cert, "", "TCP: client certificate (lets this client write)");
ABSL_FLAG(std::string, tls_key, "", "TCP: client private key");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(90),
          "Per-call deadline; wait: the longest to wait in all");
ABSL_FLAG(std::string, for, "", "wait: the condition (enforced)");
ABSL_FLAG(int64_t, generation, -1, "wait: the generation to wait for");
ABSL_FLAG(bool, all_nodes, false, "status: every node of the shared datastore");
ABSL_FLAG(bool, denied, false, "logs: only dropped packets");
ABSL_FLAG(bool, allowed, false, "logs: only allowed connections (of policies that log them)");
ABSL_FLAG(bool, follow, false, "logs: keep printing new records (also -f after logs)");
ABSL_FLAG(std::string, pod, "", "logs: only records of this pod (NS/NAME, or NAME in -n)");
ABSL_FLAG(int, tail, 0, "logs: the newest N records held by the agent (0: all held)");
ABSL_FLAG(bool, stats, false, "logs: the flow log's counts (received, lost, suppressed) as JSON");

int main(int argc, char** argv) {
  const std::string usage = netpol::cli::Usage();
  if (netpol::util::HandleHelpAndVersion(argc, argv, "netpolctl", usage, std::cout)) return 0;
  // Abseil prints "netpolctl: " before the message itself.
  absl::SetProgramUsageMessage(absl::StripPrefix(usage, "netpolctl: "));
  netpol::cli::PreParsed pre =
      netpol::cli::PreParse(std::vector<std::string>(argv, argv + argc));
  std::vector<char*> pre_argv;
  for (std::string& a : pre.args) pre_argv.push_back(a.data());
  std::vector<std::string> arg_storage;
  std::vector<char*> argv2 = netpol::util::DashedFlagsToUnderscores(
      static_cast<int>(pre_argv.size()), pre_argv.data(), &arg_storage);
  std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(argv2.size()), argv2.data());
  std::vector<std::string> args(positional.begin() + 1, positional.end());

  netpol::cli::ClientOptions copts;
  copts.server = absl::GetFlag(FLAGS_server);
  copts.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  copts.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  copts.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  copts.timeout = absl::GetFlag(FLAGS_timeout);
  auto client = netpol::cli::Client::Create(copts);
  if (!client.ok()) {
    std::cerr << "error: " << client.status().message() << "\n";
    return 2;
  }
  netpol::cli::CommandOptions opts;
  opts.files = pre.files;
  opts.files_given = pre.files_given;
  opts.namespace_name = absl::GetFlag(FLAGS_n);
  opts.all_namespaces = absl::GetFlag(FLAGS_A);
  opts.selector = absl::GetFlag(FLAGS_l);
  opts.output = absl::GetFlag(FLAGS_o);
  opts.from = absl::GetFlag(FLAGS_from);
  opts.to = absl::GetFlag(FLAGS_to);
  opts.port = absl::GetFlag(FLAGS_port);
  opts.protocol = absl::GetFlag(FLAGS_protocol);
  opts.ip_family = absl::GetFlag(FLAGS_ip_family);
  opts.kernel = absl::GetFlag(FLAGS_kernel);
  opts.ignore_not_found = absl::GetFlag(FLAGS_ignore_not_found);
  opts.dry_run = absl::GetFlag(FLAGS_dry_run);
  opts.all_nodes = absl::GetFlag(FLAGS_all_nodes);
  opts.wait_for = absl::GetFlag(FLAGS_for);
  opts.generation = absl::GetFlag(FLAGS_generation);
  opts.timeout = absl::GetFlag(FLAGS_timeout);
  opts.denied = absl::GetFlag(FLAGS_denied);
  opts.allowed = absl::GetFlag(FLAGS_allowed);
  opts.follow = absl::GetFlag(FLAGS_follow);
  opts.pod = absl::GetFlag(FLAGS_pod);
  opts.tail = absl::GetFlag(FLAGS_tail);
  opts.stats = absl::GetFlag(FLAGS_stats);
  return netpol::cli::Run(**client, args, opts, std::cin, std::cout, std::cerr);
}
