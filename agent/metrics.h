// Prometheus metrics of the agent, served on --metrics-listen (off by default). Every value is
// read at scrape time from the StatusService answer and, for the rule counters
// (api/README.md "Rule counters"), from the QueryService Counters answer (one rule dump of the
// kernel's table), so metrics, `netpolctl status` and `netpolctl get -o wide` agree.
#ifndef NETPOL_AGENT_METRICS_H_
#define NETPOL_AGENT_METRICS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "agent/service.h"

namespace netpol::agent {

class MetricsServer {
 public:
  // Serves /metrics on `listen` ("127.0.0.1:9091"). `service` is not owned and must outlive
  // the server. FailedPrecondition when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& listen,
                                                              const AgentService* service);
  ~MetricsServer();

  class Impl;

 private:
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_METRICS_H_
