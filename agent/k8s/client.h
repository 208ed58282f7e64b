// A minimal HTTPS client of the Kubernetes API (libcurl): one-shot GETs for list pages and
// streamed GETs for watches. TLS is always verified (the config's CA, or the system's when it
// has none); a bearer token or a client certificate authenticates. A 401 makes the next
// request re-read the token file (rotation).
//
// Thread safety: Get and Watch may run concurrently from several threads (one curl handle per
// call).
//
// Get and Stream are virtual so a unit test can stand a scripted API in for the network
// (agent/k8s/reflector_test.cc); the agent uses this class as it is.
#ifndef NETPOL_AGENT_K8S_CLIENT_H_
#define NETPOL_AGENT_K8S_CLIENT_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/k8s/config.h"

namespace netpol::agent::k8s {

struct HttpResponse {
  long status = 0;
  std::string body;
};

class Client {
 public:
  explicit Client(ClusterConfig config);
  virtual ~Client();

  const ClusterConfig& config() const { return config_; }

  // GET `path` (with its query). A transport failure (connection refused, TLS, timeout) is
  // Unavailable naming the server; any HTTP status is returned as is.
  virtual absl::StatusOr<HttpResponse> Get(const std::string& path, absl::Duration timeout);
  // `method` ("POST", "PUT") `path` with a JSON `body`; like Get otherwise.
  absl::StatusOr<HttpResponse> Send(const std::string& method, const std::string& path,
                                    const std::string& body, absl::Duration timeout);

  // Streamed GET: once the status line and headers are in, `on_status` receives the status
  // (a non-200 body is collected and returned instead of streamed); then each complete line of
  // the body goes to `on_line`. Either returning false, or `*cancel` becoming true, ends the
  // stream (checked at least every second). Returns the HTTP status and, when not 200, the
  // body; Unavailable on a transport failure before any status; OK with the status once the
  // server closes the stream (a server-side timeout) or the stream is ended here.
  // `idle_timeout`: no byte for that long ends the stream as Unavailable.
  // `on_headers` (optional) receives the status once the headers are in; `on_chunk` (optional)
  // runs after the lines of each chunk received (a batch of events).
  virtual absl::StatusOr<HttpResponse> Stream(const std::string& path,
                                              const std::function<bool(absl::string_view)>& on_line,
                                              const std::atomic<bool>* cancel,
                                              absl::Duration idle_timeout,
                                              const std::function<void(long)>& on_headers = nullptr,
                                              const std::function<void()>& on_chunk = nullptr);

 private:
  struct Handle;
  absl::Status Prepare(Handle* h, const std::string& path);

  const ClusterConfig config_;
  Credentials credentials_;
};

// The "message" of a Kubernetes Status object (a failed request's body), or the body itself
// (shortened) when it is not one.
std::string StatusMessage(absl::string_view body);
// The Status object's "reason" ("Expired", "Gone", "Forbidden"...), empty when none.
std::string StatusReason(absl::string_view body);

}  // namespace netpol::agent::k8s

#endif  // NETPOL_AGENT_K8S_CLIENT_H_
