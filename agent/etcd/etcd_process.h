// A real etcd server for tests: Debian's /usr/bin/etcd on 127.0.0.1 with free ports and a data
// directory of the caller's, stopped (SIGKILL) and started again on the same data at will.
#ifndef NETPOL_AGENT_ETCD_ETCD_PROCESS_H_
#define NETPOL_AGENT_ETCD_ETCD_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace netpol::agent::etcd {

inline constexpr char kEtcdBinary[] = "/usr/bin/etcd";

class EtcdProcess {
 public:
  // Starts etcd with its data in `dir` (created) and waits until it answers. FailedPrecondition
  // when the binary is missing; Unavailable when it does not come up (its log is in the
  // message).
  static absl::StatusOr<std::unique_ptr<EtcdProcess>> Start(const std::string& dir);
  // The same over TLS with client certificate authentication: makes a CA, a server certificate
  // for 127.0.0.1 and a client certificate with /usr/bin/openssl, in `dir`.
  static absl::StatusOr<std::unique_ptr<EtcdProcess>> StartTls(const std::string& dir);
  ~EtcdProcess();

  // Kills the server (SIGKILL, as a crash would) and waits for it.
  void Kill();
  // Starts it again on the same data directory and ports; waits until it answers.
  absl::Status Restart();
  // Stops the server in place (SIGSTOP): its connections stay open and nothing answers, as
  // with a hung or overloaded etcd. Thaw() resumes it (SIGCONT).
  void Freeze();
  void Thaw();

  // "127.0.0.1:PORT".
  const std::string& endpoint() const { return endpoint_; }
  // PEM files of a TLS server (StartTls): the CA, and a client certificate and key it signed.
  std::string ca_file() const { return dir_ + "/ca.pem"; }
  std::string client_cert_file() const { return dir_ + "/client.pem"; }
  std::string client_key_file() const { return dir_ + "/client.key"; }

 private:
  EtcdProcess(std::string dir, int client_port, int peer_port, bool tls);
  static absl::StatusOr<std::unique_ptr<EtcdProcess>> Create(const std::string& dir, bool tls);
  absl::Status Spawn();
  // Waits until the child reports `change` (WUNTRACED: stopped, WCONTINUED: resumed) or exits.
  void WaitFor(int change);

  const std::string dir_;
  const int client_port_;
  const int peer_port_;
  const std::string endpoint_;
  const bool tls_;
  pid_t pid_ = -1;
};

}  // namespace netpol::agent::etcd

#endif  // NETPOL_AGENT_ETCD_ETCD_PROCESS_H_
