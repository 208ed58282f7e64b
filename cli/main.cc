// netpolctl: a kubectl-like client for netpol-agent. See cli/commands.h for the commands.
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "engine/util/flags.h"

ABSL_FLAG(std::string, server, "",
          "Agent address: unix:///path or host:port (default: $NETPOL_SERVER, then "
          "unix:///run/netpol/agent.sock)");
ABSL_FLAG(std::vector<std::string>, f, {}, "Files, directories or - (stdin); comma-separated");
ABSL_FLAG(std::string, n, "", "Namespace");
ABSL_FLAG(std::string, o, "", "Output format for get: wide, yaml or json");
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
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(90), "Per-call deadline");

int main(int argc, char** argv) {
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [](absl::string_view) { return true; };
  config.contains_helpshort_flags = [](absl::string_view) { return true; };
  absl::SetFlagsUsageConfig(config);
  // Abseil prints "netpolctl: " before the message itself.
  absl::SetProgramUsageMessage(absl::StripPrefix(netpol::cli::Usage(), "netpolctl: "));
  std::vector<std::string> arg_storage;
  std::vector<char*> argv2 = netpol::util::DashedFlagsToUnderscores(argc, argv, &arg_storage);
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
  opts.files = absl::GetFlag(FLAGS_f);
  opts.namespace_name = absl::GetFlag(FLAGS_n);
  opts.output = absl::GetFlag(FLAGS_o);
  opts.from = absl::GetFlag(FLAGS_from);
  opts.to = absl::GetFlag(FLAGS_to);
  opts.port = absl::GetFlag(FLAGS_port);
  opts.protocol = absl::GetFlag(FLAGS_protocol);
  opts.ip_family = absl::GetFlag(FLAGS_ip_family);
  opts.kernel = absl::GetFlag(FLAGS_kernel);
  opts.ignore_not_found = absl::GetFlag(FLAGS_ignore_not_found);
  opts.dry_run = absl::GetFlag(FLAGS_dry_run);
  return netpol::cli::Run(**client, args, opts, std::cin, std::cout, std::cerr);
}
