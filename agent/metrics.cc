// Prometheus metrics. See metrics.h.
#include "agent/metrics.h"

#include <exception>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "prometheus/collectable.h"
#include "prometheus/exposer.h"
#include "prometheus/metric_family.h"

namespace netpol::agent {
namespace {

prometheus::MetricFamily Family(const char* name, const char* help, prometheus::MetricType type,
                                double value) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(m);
  return f;
}

class StatusCollectable : public prometheus::Collectable {
 public:
  explicit StatusCollectable(const AgentService* service) : service_(service) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    using prometheus::MetricType;
    v1::StatusResponse s = service_->Status();
    std::vector<prometheus::MetricFamily> out;
    out.push_back(Family("netpol_serving", "1 once the first sync with the kernel committed",
                         MetricType::Gauge, s.serving() ? 1 : 0));
    out.push_back(Family("netpol_store_generation", "Newest generation of the object store",
                         MetricType::Gauge, static_cast<double>(s.generation())));
    out.push_back(Family("netpol_applied_generation", "Generation whose program is in the kernel",
                         MetricType::Gauge, static_cast<double>(s.applied_generation())));
    out.push_back(Family("netpol_syncs_total", "Syncs attempted", MetricType::Counter,
                         static_cast<double>(s.syncs())));
    out.push_back(Family("netpol_sync_failures_total", "Syncs that failed", MetricType::Counter,
                         static_cast<double>(s.sync_failures())));
    out.push_back(Family("netpol_last_sync_duration_seconds", "Duration of the last sync",
                         MetricType::Gauge,
                         static_cast<double>(s.last_sync_duration().seconds()) +
                             s.last_sync_duration().nanos() / 1e9));
    out.push_back(Family("netpol_last_sync_error", "1 when the last sync failed",
                         MetricType::Gauge, s.last_error().empty() ? 0 : 1));
    prometheus::MetricFamily objects;
    objects.name = "netpol_objects";
    objects.help = "Objects in the store by kind (local_pods: pods enforced on this node)";
    objects.type = MetricType::Gauge;
    const std::pair<const char*, int64_t> kinds[] = {
        {"namespace", s.objects().namespaces()},
        {"pod", s.objects().pods()},
        {"networkpolicy", s.objects().network_policies()},
        {"local_pod", s.objects().local_pods()},
    };
    for (const auto& [kind, n] : kinds) {
      prometheus::ClientMetric m;
      m.label.push_back({"kind", kind});
      m.gauge.value = static_cast<double>(n);
      objects.metric.push_back(m);
    }
    out.push_back(objects);
    prometheus::MetricFamily program;
    program.name = "netpol_program_objects";
    program.help = "Objects of the committed nftables program by kind";
    program.type = MetricType::Gauge;
    const std::pair<const char*, int64_t> parts[] = {
        {"chain", s.program().chains()},
        {"rule", s.program().rules()},
        {"set", s.program().sets()},
        {"element", s.program().elements()},
    };
    for (const auto& [kind, n] : parts) {
      prometheus::ClientMetric m;
      m.label.push_back({"kind", kind});
      m.gauge.value = static_cast<double>(n);
      program.metric.push_back(m);
    }
    out.push_back(program);
    return out;
  }

 private:
  const AgentService* const service_;
};

}  // namespace

class MetricsServer::Impl {
 public:
  std::unique_ptr<prometheus::Exposer> exposer;
  std::shared_ptr<StatusCollectable> collectable;
};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MetricsServer::~MetricsServer() = default;

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& listen,
                                                                    const AgentService* service) {
  auto impl = std::make_unique<Impl>();
  try {
    impl->exposer = std::make_unique<prometheus::Exposer>(listen);
  } catch (const std::exception& e) {
    // prometheus-cpp reports bind failures by throwing; nothing else in the agent throws.
    return absl::FailedPreconditionError(
        absl::StrCat("--metrics-listen ", listen, ": ", e.what()));
  }
  impl->collectable = std::make_shared<StatusCollectable>(service);
  impl->exposer->RegisterCollectable(impl->collectable);
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

}  // namespace netpol::agent
