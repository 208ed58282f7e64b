// Where the Kubernetes API server is and how to authenticate to it: a kubeconfig file (its
// current context) or the in-cluster service account, as client-go's clientcmd and rest
// packages read them.
//
// kubeconfig: the current context's cluster gives `server` and the CA
// (`certificate-authority` file or `certificate-authority-data`); its user gives a bearer
// `token` or `tokenFile`, or a client certificate (`client-certificate`/`-data` with
// `client-key`/`-data`). Relative file paths are relative to the kubeconfig's directory.
// `insecure-skip-tls-verify` is refused: the server is always verified.
//
// In-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, and the service account
// directory's `token`, `ca.crt` and `namespace`. The token file is re-read when it changes
// (the kubelet rotates it), at most every `token_refresh` and at once after a 401.
//
// Thread safety: Credentials is thread-safe; the rest are values.
#ifndef NETPOL_AGENT_K8S_CONFIG_H_
#define NETPOL_AGENT_K8S_CONFIG_H_

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace netpol::agent::k8s {

inline constexpr char kServiceAccountDir[] = "/var/run/secrets/kubernetes.io/serviceaccount";

struct ClusterConfig {
  std::string server;     // https://host:port (no trailing slash)
  std::string ca_pem;     // the CA bundle that verifies the server; empty: the system's CAs
  std::string token;      // a static bearer token
  std::string token_file;  // a bearer token file, re-read when it changes
  std::string client_cert_pem;
  std::string client_key_pem;
  std::string source;     // "kubeconfig PATH (context C)" or "in-cluster (DIR)", for messages
};

// Reads `path`'s current context. InvalidArgument/NotFound naming the file and the field.
absl::StatusOr<ClusterConfig> LoadKubeconfig(const std::string& path);
// Parses kubeconfig text; `dir` resolves relative file paths.
absl::StatusOr<ClusterConfig> ParseKubeconfig(const std::string& text, const std::string& dir,
                                              const std::string& source);

// The in-cluster configuration from the environment and the service account directory.
absl::StatusOr<ClusterConfig> InClusterConfig(const std::string& service_account_dir);

// The bearer token to send now: the static token, or the token file's content (re-read at
// most every `refresh`, and on Invalidate()).
class Credentials {
 public:
  explicit Credentials(const ClusterConfig& config, absl::Duration refresh = absl::Minutes(1));
  // Empty when the config has no token (client certificates).
  absl::StatusOr<std::string> Token() ABSL_LOCKS_EXCLUDED(mu_);
  // After a 401: the next Token() reads the file again.
  void Invalidate() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const std::string static_token_;
  const std::string token_file_;
  const absl::Duration refresh_;
  absl::Mutex mu_;
  std::string token_ ABSL_GUARDED_BY(mu_);
  absl::Time read_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// Reads a whole file (NotFound/PermissionDenied naming it).
absl::StatusOr<std::string> ReadFileText(const std::string& path);

}  // namespace netpol::agent::k8s

#endif  // NETPOL_AGENT_K8S_CONFIG_H_
