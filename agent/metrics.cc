// Prometheus metrics. See metrics.h.
#include "agent/metrics.h"

#include <cstdint>
#include <exception>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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
    AddCounters(&out);
    return out;
  }

  // The rule counters (RULESET.md "Counters"): per policy rule (the readable view), per pod
  // group's drop, and per compiled rule (exact). Nothing when counters are off or unreadable.
  void AddCounters(std::vector<prometheus::MetricFamily>* out) const {
    using prometheus::MetricType;
    absl::StatusOr<v1::CountersResponse> c = service_->Counters(v1::CountersRequest());
    if (!c.ok() || !c->enabled()) return;
    auto family = [](const char* name, const char* help) {
      prometheus::MetricFamily f;
      f.name = name;
      f.help = help;
      f.type = MetricType::Counter;
      return f;
    };
    auto metric = [](std::vector<prometheus::ClientMetric::Label> labels, uint64_t value) {
      prometheus::ClientMetric m;
      m.label = std::move(labels);
      m.counter.value = static_cast<double>(value);
      return m;
    };
    prometheus::MetricFamily rule_packets = family(
        "netpol_policy_rule_packets_total",
        "Packets allowed by a NetworkPolicy rule: the sum of the compiled rules holding it; a "
        "rule sharing a lookup with others (shared=\"true\") counts their packets too");
    prometheus::MetricFamily rule_bytes =
        family("netpol_policy_rule_bytes_total", "Bytes of netpol_policy_rule_packets_total");
    for (const v1::PolicyRuleCounter& r : c->policy_rules()) {
      const std::string& key = r.rule().policy();
      const size_t slash = key.find('/');
      std::vector<prometheus::ClientMetric::Label> labels = {
          {"namespace", key.substr(0, slash)},
          {"policy", key.substr(slash + 1)},
          {"direction", r.direction()},
          {"rule", absl::StrCat(r.rule().rule())},
          {"shared", r.shared() ? "true" : "false"}};
      rule_packets.metric.push_back(metric(labels, r.packets()));
      rule_bytes.metric.push_back(metric(labels, r.bytes()));
    }
    prometheus::MetricFamily cluster_packets = family(
        "netpol_cluster_policy_rule_packets_total",
        "Packets a ClusterNetworkPolicy rule allowed (action Accept) or dropped (Deny): the sum of "
        "the tier lookups holding it; a rule sharing its tier's lookup with others of the same "
        "action (shared=\"true\") counts their packets too");
    prometheus::MetricFamily cluster_bytes = family("netpol_cluster_policy_rule_bytes_total",
                                                    "Bytes of netpol_cluster_policy_rule_packets_total");
    for (const v1::ClusterPolicyRuleCounter& r : c->cluster_policy_rules()) {
      std::vector<prometheus::ClientMetric::Label> labels = {
          {"tier", v1::ClusterNetworkPolicyTier_Name(r.rule().tier())},
          {"policy", r.rule().policy()},
          {"direction", r.direction()},
          {"rule", absl::StrCat(r.rule().rule())},
          {"name", r.rule().name()},
          {"action", v1::ClusterNetworkPolicyRuleAction_Name(r.rule().action())},
          {"shared", r.shared() ? "true" : "false"}};
      cluster_packets.metric.push_back(metric(labels, r.packets()));
      cluster_bytes.metric.push_back(metric(labels, r.bytes()));
    }
    prometheus::MetricFamily drop_packets = family(
        "netpol_dropped_packets_total",
        "Packets of a local pod group dropped because no rule of its policies allowed them");
    prometheus::MetricFamily drop_bytes =
        family("netpol_dropped_bytes_total", "Bytes of netpol_dropped_packets_total");
    prometheus::MetricFamily compiled_packets = family(
        "netpol_compiled_rule_packets_total",
        "Packets counted by one rule of a group or tier chain (exact; policy_rules: what it holds)");
    prometheus::MetricFamily compiled_bytes =
        family("netpol_compiled_rule_bytes_total", "Bytes of netpol_compiled_rule_packets_total");
    struct Drop {
      std::vector<prometheus::ClientMetric::Label> labels;
      uint64_t packets = 0, bytes = 0;
    };
    std::map<std::string, Drop> drops;
    for (const v1::RuleCounter& r : c->rules()) {
      std::vector<std::string> policy_rules;
      for (const v1::RuleRef& ref : r.rules()) {
        policy_rules.push_back(absl::StrCat(ref.policy(), " ", r.direction(), "[", ref.rule(), "]"));
      }
      for (const v1::ClusterNetworkPolicyRuleRef& ref : r.cluster_rules()) {
        policy_rules.push_back(absl::StrCat(v1::ClusterNetworkPolicyTier_Name(ref.tier()), " ",
                                            ref.policy(), " ", r.direction(), "[", ref.rule(), "]"));
      }
      std::vector<prometheus::ClientMetric::Label> labels = {
          {"chain", r.chain()},
          {"index", absl::StrCat(r.index())},
          {"direction", r.direction()},
          {"kind", r.kind() == v1::RuleCounter::DROP             ? "drop"
                   : r.kind() == v1::RuleCounter::ALLOW          ? "allow"
                   : r.kind() == v1::RuleCounter::CLUSTER_ACCEPT ? "cluster_accept"
                   : r.kind() == v1::RuleCounter::CLUSTER_DENY   ? "cluster_deny"
                                                                 : "unknown"},
          {"policy_rules", absl::StrJoin(policy_rules, ",")}};
      compiled_packets.metric.push_back(metric(labels, r.packets()));
      compiled_bytes.metric.push_back(metric(labels, r.bytes()));
      if (r.kind() != v1::RuleCounter::DROP) continue;
      // A chain's drop rules (with deny logs: the logged drop and the rest) summed.
      Drop& d = drops[r.chain()];
      d.labels = {{"direction", r.direction()},
                  {"chain", r.chain()},
                  {"policies", absl::StrJoin(r.policies(), ",")}};
      d.packets += r.packets();
      d.bytes += r.bytes();
    }
    for (const auto& [chain, d] : drops) {
      drop_packets.metric.push_back(metric(d.labels, d.packets));
      drop_bytes.metric.push_back(metric(d.labels, d.bytes));
    }
    for (prometheus::MetricFamily* f : {&rule_packets, &rule_bytes, &cluster_packets,
                                        &cluster_bytes, &drop_packets, &drop_bytes,
                                        &compiled_packets, &compiled_bytes}) {
      out->push_back(std::move(*f));
    }
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
