// netpolctl's connection to the agent. See client.h.
#include "cli/client.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace netpol::cli {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* flag) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": cannot read"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Client::Create(const ClientOptions& options) {
  std::unique_ptr<Client> c(new Client());
  c->server_ = options.server;
  if (c->server_.empty()) {
    const char* env = std::getenv("NETPOL_SERVER");
    if (env != nullptr && *env != '\0') c->server_ = env;
  }
  if (c->server_.empty()) {
    c->server_ = kDefaultServer;
    c->server_from_default_ = true;
  }
  c->timeout_ = options.timeout;
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!absl::StartsWith(c->server_, "unix:") && !options.tls_ca_file.empty()) {
    grpc::SslCredentialsOptions ssl;
    absl::StatusOr<std::string> ca = ReadFile(options.tls_ca_file, "--tls-ca");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
    if (!options.tls_cert_file.empty()) {
      absl::StatusOr<std::string> cert = ReadFile(options.tls_cert_file, "--tls-cert");
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key = ReadFile(options.tls_key_file, "--tls-key");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    creds = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);  // render / list of a large cluster
  c->channel_ = grpc::CreateCustomChannel(c->server_, creds, args);
  c->objects_ = v1::ObjectService::NewStub(c->channel_);
  c->queries_ = v1::QueryService::NewStub(c->channel_);
  c->status_ = v1::StatusService::NewStub(c->channel_);
  c->flows_ = v1::FlowService::NewStub(c->channel_);
  return c;
}

std::unique_ptr<grpc::ClientContext> Client::Context() const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
  return ctx;
}

bool Client::AgentAnswered() const {
  // A status the agent sent travels over a live connection; a failure to connect (or a
  // connection lost mid-call) leaves the channel in TRANSIENT_FAILURE, CONNECTING or IDLE.
  return channel_->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY;
}

std::string Client::SocketPath() const {
  if (!absl::StartsWith(server_, "unix:")) return "";
  return std::string(absl::StripPrefix(absl::StripPrefix(server_, "unix:"), "//"));
}

int Client::ConnectErrno() const {
  const std::string path = SocketPath();
  if (path.empty()) return 0;
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) return ENAMETOOLONG;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  int e = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 ? 0 : errno;
  ::close(fd);
  return e;
}

std::string Client::WhyUnreachable(const std::string& grpc_message) const {
  const std::string path = SocketPath();
  if (path.empty()) return grpc_message;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == EACCES) {
      return absl::StrCat("permission denied: ", path,
                          " is in a directory this user may not search");
    }
    return absl::StrCat("no socket at ", path, " (", std::strerror(errno), ")");
  }
  if (!S_ISSOCK(st.st_mode)) return absl::StrCat(path, " is not a socket");
  if (ConnectErrno() == EACCES) {
    return absl::StrCat("permission denied opening ", path, " (owner uid ", st.st_uid,
                        ", mode ", absl::StrFormat("%04o", st.st_mode & 07777),
                        "; this user is uid ", ::geteuid(), ")");
  }
  return absl::StrCat("nothing accepts connections on ", path,
                      " (a socket left behind by an agent that is not running?): ",
                      grpc_message);
}

absl::Status Client::Explain(const grpc::Status& status) const {
  const std::string msg = status.error_message();
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      if (AgentAnswered()) {
        // The agent is there and said UNAVAILABLE itself: its message says why.
        if (absl::StrContains(msg, "starting")) {
          return absl::UnavailableError(absl::StrCat(
              msg, "\nThe agent at ", server_, " is up but not ready; retry shortly."));
        }
        return absl::UnavailableError(
            absl::StrCat(msg, "\n(answered by netpol-agent at ", server_,
                         ": it is running but cannot serve this now; retry later)"));
      }
      if (ConnectErrno() == EACCES) {
        // The agent may well be running: this user may not open its socket.
        return absl::PermissionDeniedError(absl::StrCat(
            "cannot reach netpol-agent at ", server_, ": ", WhyUnreachable(msg),
            "\nThe agent is probably running: its socket is private to the user it runs as "
            "(root, mode 0600, by default). Run netpolctl as that user (e.g. with sudo), or "
            "reach the agent over TCP (--server=host:port; TLS with --tls-ca, --tls-cert, "
            "--tls-key to write)."));
      }
      return absl::UnavailableError(absl::StrCat(
          "cannot reach netpol-agent at ", server_,
          server_from_default_ ? " (the default; set --server or NETPOL_SERVER to use another)"
                               : "",
          ": ", WhyUnreachable(msg),
          "\nIs the agent running? Start it as root, e.g.\n"
          "  netpol-agent --node-name=$(hostname) --listen=",
          absl::StartsWith(server_, "unix:") ? server_ : std::string(kDefaultServer),
          "\nor point --server / NETPOL_SERVER at the address it listens on."));
    case grpc::StatusCode::PERMISSION_DENIED:
      return absl::PermissionDeniedError(absl::StrCat(
          msg, "\nUse the agent's Unix socket (--server=", kDefaultServer,
          ") or TLS with a client certificate (--tls-ca, --tls-cert, --tls-key)."));
    default:
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()), msg);
  }
}

}  // namespace netpol::cli
