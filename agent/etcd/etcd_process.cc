// A real etcd server for tests. See etcd_process.h.
#include "agent/etcd/etcd_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/etcd/client.h"

namespace netpol::agent::etcd {
namespace {

// A port the kernel considers free now (bound to port 0, then released).
int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

std::string Tail(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > 2000 ? s.substr(s.size() - 2000) : s;
}

}  // namespace

EtcdProcess::EtcdProcess(std::string dir, int client_port, int peer_port, bool tls)
    : dir_(std::move(dir)),
      client_port_(client_port),
      peer_port_(peer_port),
      endpoint_(absl::StrCat("127.0.0.1:", client_port)),
      tls_(tls) {}

absl::StatusOr<std::unique_ptr<EtcdProcess>> EtcdProcess::Start(const std::string& dir) {
  return Create(dir, false);
}

absl::StatusOr<std::unique_ptr<EtcdProcess>> EtcdProcess::StartTls(const std::string& dir) {
  if (::access("/usr/bin/openssl", X_OK) != 0) {
    return absl::FailedPreconditionError("/usr/bin/openssl is not installed");
  }
  ::mkdir(dir.c_str(), 0700);
  // P-256 keys; the server certificate names 127.0.0.1, the client one is for client auth.
  const std::string script = absl::StrCat(
      "set -e; cd '", dir, "'; ",
      "K='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'; ",
      "openssl req -x509 $K -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca; ",
      "for who in server client; do ",
      "  openssl req $K -keyout $who.key -out $who.csr -subj /CN=$who; ",
      "done; ",
      "printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext; ",
      "printf 'extendedKeyUsage=clientAuth\n' > client.ext; ",
      "for who in server client; do ",
      "  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial ",
      "    -out $who.pem -days 2 -extfile $who.ext; ",
      "done",
      " > openssl.log 2>&1");
  if (std::system(script.c_str()) != 0) {
    return absl::UnavailableError(
        absl::StrCat("making test certificates failed: ", Tail(dir + "/openssl.log")));
  }
  return Create(dir, true);
}

absl::StatusOr<std::unique_ptr<EtcdProcess>> EtcdProcess::Create(const std::string& dir,
                                                                 bool tls) {
  if (::access(kEtcdBinary, X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(kEtcdBinary, " is not installed"));
  }
  ::mkdir(dir.c_str(), 0700);
  int client = FreePort(), peer = FreePort();
  if (client < 0 || peer < 0 || client == peer) {
    return absl::UnavailableError("no free port on 127.0.0.1");
  }
  std::unique_ptr<EtcdProcess> p(new EtcdProcess(dir, client, peer, tls));
  absl::Status st = p->Spawn();
  if (!st.ok()) return st;
  return p;
}

EtcdProcess::~EtcdProcess() { Kill(); }

void EtcdProcess::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

void EtcdProcess::Freeze() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGSTOP);
  // kill() only queues the stop: wait until every thread of etcd has stopped, so that nothing
  // sent after Freeze() returns can still be served.
  WaitFor(WUNTRACED);
}

void EtcdProcess::Thaw() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGCONT);
  WaitFor(WCONTINUED);
}

void EtcdProcess::WaitFor(int change) {
  int status = 0;
  while (::waitpid(pid_, &status, change) == pid_) {
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      pid_ = -1;
      return;
    }
    if (change == WUNTRACED ? WIFSTOPPED(status) : WIFCONTINUED(status)) return;
  }
}

absl::Status EtcdProcess::Restart() {
  Kill();
  return Spawn();
}

absl::Status EtcdProcess::Spawn() {
  const std::string client_url =
      absl::StrCat(tls_ ? "https" : "http", "://127.0.0.1:", client_port_);
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_port_);
  const std::string log = dir_ + "/etcd.log";
  std::vector<std::string> args = {
      kEtcdBinary,
      "--name=test",
      "--data-dir=" + dir_ + "/data",
      "--listen-client-urls=" + client_url,
      "--advertise-client-urls=" + client_url,
      "--listen-peer-urls=" + peer_url,
      "--initial-advertise-peer-urls=" + peer_url,
      "--initial-cluster=test=" + peer_url,
      // The tests' clients ping every second.
      "--grpc-keepalive-min-time=500ms",
  };
  if (tls_) {
    args.push_back("--cert-file=" + dir_ + "/server.pem");
    args.push_back("--key-file=" + dir_ + "/server.key");
    args.push_back("--client-cert-auth");
    args.push_back("--trusted-ca-file=" + ca_file());
  }
  pid_t pid = ::fork();
  if (pid < 0) return absl::UnavailableError("fork failed");
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(kEtcdBinary, argv.data());
    ::_exit(127);
  }
  pid_ = pid;
  ClientOptions options;
  options.endpoints = {endpoint_};
  options.request_timeout = absl::Seconds(1);
  if (tls_) {
    options.ca_file = ca_file();
    options.cert_file = client_cert_file();
    options.key_file = client_key_file();
  }
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(options);
  if (!client.ok()) return client.status();
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  absl::Status last;
  while (absl::Now() < deadline) {
    etcdserverpb::RangeRequest r;
    r.set_key("health");
    absl::StatusOr<etcdserverpb::RangeResponse> got = (*client)->Range(r);
    if (got.ok()) return absl::OkStatus();
    last = got.status();
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::UnavailableError(absl::StrCat("etcd exited: ", Tail(log)));
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return absl::UnavailableError(
      absl::StrCat("etcd did not answer within 30s (", last.ToString(), "): ", Tail(log)));
}

}  // namespace netpol::agent::etcd
