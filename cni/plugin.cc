// netpol-cni. See plugin.h and cni/README.md.
#include "cni/plugin.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/model/ip.h"

namespace netpol::cni {
namespace {

// Longest Linux interface name (IFNAMSIZ - 1).
constexpr size_t kMaxIfName = 15;
// Longest accepted timeoutSeconds: an hour is already far beyond any runtime's own deadline.
constexpr double kMaxTimeoutSeconds = 3600;
// CHECK exists since this spec version.
constexpr char kCheckSince[] = "0.4.0";
// STATUS and GC exist since this spec version.
constexpr char kStatusSince[] = "1.1.0";

int VersionIndex(const std::string& v) {
  const std::vector<std::string>& all = SupportedVersions();
  auto it = std::find(all.begin(), all.end(), v);
  return it == all.end() ? -1 : static_cast<int>(it - all.begin());
}

PluginError Err(int code, std::string msg, std::string details = "") {
  return PluginError{code, std::move(msg), std::move(details)};
}

Outcome Fail(const std::string& version, const PluginError& e) {
  Outcome o;
  o.exit_code = 1;
  o.out = ErrorJson(version, e);
  o.err = absl::StrCat("netpol-cni: error ", e.code, ": ", e.msg,
                       e.details.empty() ? "" : absl::StrCat(" (", e.details, ")"));
  return o;
}

bool ValidContainerId(absl::string_view id) {
  if (id.empty() || !absl::ascii_isalnum(id[0])) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-';
  });
}

bool NeedsVersion(const std::string& have, const char* since) {
  return VersionIndex(have) < VersionIndex(since);
}

bool ValidIfName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxIfName || name == "." || name == "..") return false;
  return std::none_of(name.begin(), name.end(), [](char c) {
    return c == '/' || c == ':' || absl::ascii_isspace(static_cast<unsigned char>(c));
  });
}

// The socket path of an "agentSocket" value: "/path" or "unix:///path".
std::string SocketPath(const std::string& value) {
  absl::string_view v = value;
  if (absl::ConsumePrefix(&v, "unix://")) return std::string(v);
  if (absl::ConsumePrefix(&v, "unix:")) return std::string(v);
  return value;
}

// Why nothing answers on the Unix socket `path`, or "" when something accepts connections.
std::string SocketProblem(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::StrCat("socket ", path, ": ", std::strerror(errno),
                        " (is netpol-agent running on this node?)");
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::StrCat("socket(AF_UNIX): ", std::strerror(errno));
  struct sockaddr_un sa = {};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof(sa.sun_path)) {
    ::close(fd);
    return absl::StrCat("socket ", path, ": path longer than ", sizeof(sa.sun_path) - 1,
                        " bytes");
  }
  std::memcpy(sa.sun_path, path.data(), path.size());
  int rc = ::connect(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof(sa));
  int err = errno;
  ::close(fd);
  if (rc != 0) {
    return absl::StrCat("connect ", path, ": ", std::strerror(err),
                        " (is netpol-agent running on this node?)");
  }
  return "";
}

std::string FormatSeconds(absl::Duration d) { return absl::FormatDuration(d); }

// Maps a failed agent call to the plugin's error.
PluginError AgentError(const absl::Status& s, const NetConf& conf, const std::string& what) {
  const std::string socket = SocketPath(conf.agent_socket);
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
      return Err(kInvalidConfig, absl::StrCat("netpol-agent rejected ", what, ": ", s.message()));
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded: {
      std::string problem = SocketProblem(socket);
      if (!problem.empty()) {
        return Err(kTryAgainLater,
                   absl::StrCat("netpol-agent is not reachable at ", socket, ": ", problem),
                   absl::StrCat("gave up ", what, " after ", FormatSeconds(conf.timeout),
                                " (timeoutSeconds); last error: ", s.message()));
      }
      if (s.code() == absl::StatusCode::kDeadlineExceeded) {
        return Err(kTryAgainLater,
                   absl::StrCat("netpol-agent at ", socket, " did not confirm ", what, " within ",
                                FormatSeconds(conf.timeout), " (timeoutSeconds)"),
                   std::string(s.message()));
      }
      return Err(kTryAgainLater,
                 absl::StrCat("netpol-agent at ", socket, " is not ready: ", s.message()));
    }
    default:
      return Err(kAgentRejected, absl::StrCat("netpol-agent at ", socket, " refused ", what, ": ",
                                              absl::StatusCodeToString(s.code()), ": ",
                                              s.message()));
  }
}

// Calls `call` until it succeeds, fails with something else than UNAVAILABLE (the agent is
// starting, or the connection broke), or the deadline passes.
template <typename T>
absl::StatusOr<T> WithRetries(const std::function<absl::StatusOr<T>()>& call, absl::Time deadline,
                              const RunOptions& options) {
  for (;;) {
    absl::StatusOr<T> r = call();
    if (r.ok() || !absl::IsUnavailable(r.status())) return r;
    if (options.now() + options.retry_interval >= deadline) return r;
    options.sleep(options.retry_interval);
  }
}

std::string Canonical(const std::string& ip) {
  absl::StatusOr<IpAddr> a = IpAddr::Parse(ip);
  return a.ok() ? a->ToString() : ip;
}

struct Context {
  const std::map<std::string, std::string>* env;
  const NetConf* conf;
  std::string container_id, netns, ifname;
  std::map<std::string, std::string> args;
};

Outcome Add(const Context& c, const RunOptions& options) {
  const NetConf& conf = *c.conf;
  auto arg = [&](const char* k) {
    auto it = c.args.find(k);
    return it == c.args.end() ? std::string() : it->second;
  };
  // Runtimes outside Kubernetes (nerdctl, podman, cnitool) set neither: the container is
  // attached without a pod (cni/README.md). One without the other is a broken CNI_ARGS.
  if (arg("K8S_POD_NAMESPACE").empty() != arg("K8S_POD_NAME").empty()) {
    return Fail(conf.cni_version,
                Err(kInvalidEnvironment,
                    "CNI_ARGS: K8S_POD_NAMESPACE and K8S_POD_NAME go together: both name the "
                    "pod, or neither (a container that is not a Kubernetes pod)"));
  }
  if (!conf.prev_result) {
    return Fail(conf.cni_version,
                Err(kInvalidConfig,
                    "prevResult: required: netpol-cni is a chained plugin and must follow the "
                    "plugin that gives the pod its addresses"));
  }
  PluginError e;
  std::optional<std::vector<std::string>> ips = PodAddresses(*conf.prev_result, &e);
  if (!ips) return Fail(conf.cni_version, e);
  if (ips->empty()) {
    return Fail(conf.cni_version,
                Err(kInvalidConfig, "prevResult.ips: no address on an interface of the pod"));
  }
  if (std::string problem = options.netns_problem(c.netns); !problem.empty()) {
    return Fail(conf.cni_version,
                Err(kInvalidEnvironment, absl::StrCat("CNI_NETNS: \"", c.netns, "\": ", problem)));
  }
  v1::AttachRequest req;
  v1::Attachment* a = req.mutable_attachment();
  a->set_network(conf.name);
  a->set_container_id(c.container_id);
  a->set_netns(c.netns);
  a->set_interface(c.ifname);
  for (const std::string& ip : *ips) a->add_ips(ip);
  a->set_pod_namespace(arg("K8S_POD_NAMESPACE"));
  a->set_pod_name(arg("K8S_POD_NAME"));
  a->set_pod_uid(arg("K8S_POD_UID"));
  const absl::Time deadline = options.now() + conf.timeout;
  std::unique_ptr<AgentClient> client = options.dial(SocketPath(conf.agent_socket));
  absl::StatusOr<v1::AttachResponse> r = WithRetries<v1::AttachResponse>(
      [&] { return client->Attach(req, deadline, /*wait_for_ready=*/true); }, deadline, options);
  if (!r.ok()) {
    return Fail(conf.cni_version,
                AgentError(r.status(), conf,
                           a->pod_name().empty()
                               ? absl::StrCat("the attachment of container ", c.container_id)
                               : absl::StrCat("the attachment of pod ", a->pod_namespace(), "/",
                                              a->pod_name())));
  }
  Outcome o;
  o.out = std::string(conf.prev_result->raw());
  return o;
}

Outcome Del(const Context& c, const RunOptions& options) {
  const NetConf& conf = *c.conf;
  Outcome o;
  const std::string socket = SocketPath(conf.agent_socket);
  const std::string what =
      absl::StrCat(conf.name, "/", c.container_id, "/", c.ifname);
  // An agent that is not there (stopped, or not installed on this node) cannot be told, and a
  // DEL that fails for that would block the pod's teardown forever: DEL succeeds. The record
  // stays until the runtime's GC, a new sandbox of the pod or the reuse of its address
  // (cni/README.md).
  if (std::string problem = SocketProblem(socket); !problem.empty()) {
    o.err = absl::StrCat("netpol-cni: DEL ", what, ": agent not reachable (", problem,
                         "); its record goes with the runtime's GC or the address's reuse");
    return o;
  }
  v1::DetachRequest req;
  req.set_network(conf.name);
  req.set_container_id(c.container_id);
  req.set_interface(c.ifname);
  const absl::Time deadline = options.now() + conf.timeout;
  std::unique_ptr<AgentClient> client = options.dial(socket);
  absl::StatusOr<v1::DetachResponse> r = WithRetries<v1::DetachResponse>(
      [&] { return client->Detach(req, deadline, /*wait_for_ready=*/false); }, deadline, options);
  if (r.ok()) return o;
  // The agent is there but did not confirm within timeoutSeconds (busy, or starting): fail
  // with "try again later", so the runtime repeats the DEL (DEL is idempotent) until the agent
  // has removed the attachment.
  return Fail(conf.cni_version, AgentError(r.status(), conf, absl::StrCat("the detach of ", what)));
}

// STATUS (1.1.0): whether ADD can succeed now, i.e. whether the agent answers.
Outcome Status(const NetConf& conf, const RunOptions& options) {
  v1::ListAttachmentsRequest req;
  req.set_network(conf.name);
  req.set_container_id("netpol-cni-status");  // any id: NOT_FOUND proves the agent serves
  const absl::Time deadline = options.now() + conf.timeout;
  std::unique_ptr<AgentClient> client = options.dial(SocketPath(conf.agent_socket));
  absl::StatusOr<v1::ListAttachmentsResponse> r =
      client->List(req, deadline, /*wait_for_ready=*/false);
  if (r.ok() || absl::IsNotFound(r.status())) return Outcome{};
  PluginError e = AgentError(r.status(), conf, "STATUS");
  e.code = kPluginNotAvailable;
  return Fail(conf.cni_version, e);
}

// GC (1.1.0): removes the network's attachments the runtime no longer lists.
Outcome Gc(const NetConf& conf, const RunOptions& options) {
  if (!conf.valid_attachments) {
    return Fail(conf.cni_version, Err(kInvalidConfig, "cni.dev/valid-attachments: required for GC"));
  }
  v1::GarbageCollectRequest req;
  req.set_network(conf.name);
  for (const auto& [id, ifname] : *conf.valid_attachments) {
    v1::AttachmentRef* ref = req.add_valid();
    ref->set_container_id(id);
    ref->set_interface(ifname);
  }
  const absl::Time deadline = options.now() + conf.timeout;
  std::unique_ptr<AgentClient> client = options.dial(SocketPath(conf.agent_socket));
  absl::StatusOr<v1::GarbageCollectResponse> r = WithRetries<v1::GarbageCollectResponse>(
      [&] { return client->GarbageCollect(req, deadline, /*wait_for_ready=*/true); }, deadline,
      options);
  if (!r.ok()) {
    return Fail(conf.cni_version,
                AgentError(r.status(), conf, absl::StrCat("the GC of network ", conf.name)));
  }
  Outcome o;
  if (r->removed_size() > 0) {
    o.err = absl::StrCat("netpol-cni: GC ", conf.name, ": removed ",
                         absl::StrJoin(r->removed(), ", "));
  }
  return o;
}

Outcome Check(const Context& c, const RunOptions& options) {
  const NetConf& conf = *c.conf;
  if (NeedsVersion(conf.cni_version, kCheckSince)) {
    return Fail(conf.cni_version,
                Err(kIncompatibleVersion,
                    absl::StrCat("cniVersion ", conf.cni_version, ": CHECK needs ", kCheckSince,
                                 " or later")));
  }
  if (!conf.prev_result) {
    return Fail(conf.cni_version, Err(kInvalidConfig, "prevResult: required for CHECK"));
  }
  PluginError e;
  std::optional<std::vector<std::string>> ips = PodAddresses(*conf.prev_result, &e);
  if (!ips) return Fail(conf.cni_version, e);
  if (std::string problem = options.netns_problem(c.netns); !problem.empty()) {
    return Fail(conf.cni_version,
                Err(kInvalidEnvironment, absl::StrCat("CNI_NETNS: \"", c.netns, "\": ", problem)));
  }
  v1::ListAttachmentsRequest req;
  req.set_network(conf.name);
  req.set_container_id(c.container_id);
  req.set_interface(c.ifname);
  req.set_verify(true);
  const absl::Time deadline = options.now() + conf.timeout;
  std::unique_ptr<AgentClient> client = options.dial(SocketPath(conf.agent_socket));
  absl::StatusOr<v1::ListAttachmentsResponse> r = WithRetries<v1::ListAttachmentsResponse>(
      [&] { return client->List(req, deadline, /*wait_for_ready=*/true); }, deadline, options);
  if (!r.ok()) {
    if (absl::IsNotFound(r.status())) {
      return Fail(conf.cni_version,
                  Err(kUnknownContainer,
                      absl::StrCat("netpol-agent has no attachment for container ",
                                   c.container_id, " interface ", c.ifname, " in network ",
                                   conf.name),
                      std::string(r.status().message())));
    }
    return Fail(conf.cni_version,
                AgentError(r.status(), conf, absl::StrCat("the check of ", c.container_id)));
  }
  if (r->attachments_size() != 1) {
    return Fail(conf.cni_version,
                Err(kUnknownContainer, absl::StrCat("netpol-agent has no attachment for container ",
                                                    c.container_id)));
  }
  const v1::AttachmentStatus& st = r->attachments(0);
  std::vector<std::string> want, have;
  for (const std::string& ip : *ips) want.push_back(Canonical(ip));
  for (const std::string& ip : st.attachment().ips()) have.push_back(Canonical(ip));
  std::sort(want.begin(), want.end());
  want.erase(std::unique(want.begin(), want.end()), want.end());
  std::sort(have.begin(), have.end());
  if (want != have) {
    return Fail(conf.cni_version,
                Err(kNotEnforced,
                    absl::StrCat("pod ", st.pod(), ": netpol-agent enforces addresses [",
                                 absl::StrJoin(have, ", "), "], prevResult has [",
                                 absl::StrJoin(want, ", "), "]")));
  }
  if (!st.verified()) {
    return Fail(conf.cni_version,
                Err(kNotEnforced,
                    absl::StrCat("pod ", st.pod(), ": its rules are not in the kernel: ",
                                 st.problem())));
  }
  return Outcome{};
}

}  // namespace

std::string NetnsProblem(const std::string& path) {
  if (path.empty() || path[0] != '/') return "must be an absolute path";
  struct statfs fs;
  if (::statfs(path.c_str(), &fs) != 0) return std::strerror(errno);
  if (static_cast<unsigned long>(fs.f_type) != static_cast<unsigned long>(NSFS_MAGIC)) {
    return "not a network namespace (not on nsfs)";
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::strerror(errno);
  const int type = ::ioctl(fd, NS_GET_NSTYPE);
  ::close(fd);
  if (type >= 0 && type != CLONE_NEWNET) return "a namespace, but not a network namespace";
  struct stat target, own;
  if (::stat(path.c_str(), &target) != 0) return std::strerror(errno);
  if (::stat("/proc/self/ns/net", &own) == 0 && target.st_dev == own.st_dev &&
      target.st_ino == own.st_ino) {
    return "the runtime's own (host) network namespace, not a pod's";
  }
  return "";
}

const std::vector<std::string>& SupportedVersions() {
  static const std::vector<std::string>* v =
      new std::vector<std::string>{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
  return *v;
}

std::string ErrorJson(const std::string& cni_version, const PluginError& error) {
  std::string out = absl::StrCat("{\"cniVersion\":", JsonQuote(cni_version),
                                 ",\"code\":", error.code, ",\"msg\":", JsonQuote(error.msg));
  if (!error.details.empty()) absl::StrAppend(&out, ",\"details\":", JsonQuote(error.details));
  out += "}\n";
  return out;
}

std::optional<NetConf> ParseNetConf(absl::string_view text, PluginError* error) {
  absl::StatusOr<JsonValue> parsed = JsonValue::Parse(text);
  if (!parsed.ok()) {
    *error = Err(kDecodeFailure, absl::StrCat("network configuration on stdin: ",
                                              parsed.status().message()));
    return std::nullopt;
  }
  if (!parsed->is_object()) {
    *error = Err(kDecodeFailure, absl::StrCat("network configuration on stdin: expected an object, "
                                              "found ",
                                              JsonValue::KindName(parsed->kind())));
    return std::nullopt;
  }
  const JsonValue& root = *parsed;
  NetConf conf;
  auto string_field = [&](const char* key, bool required, std::string* out) {
    const JsonValue* v = root.Find(key);
    if (v == nullptr) {
      if (!required) return true;
      *error = Err(kInvalidConfig, absl::StrCat("network configuration: ", key, ": required"));
      return false;
    }
    if (!v->is_string() || (required && v->str().empty())) {
      *error = Err(kInvalidConfig,
                   absl::StrCat("network configuration: ", key, ": must be a non-empty string, "
                                "found ", v->is_string() ? "\"\"" : JsonValue::KindName(v->kind())));
      return false;
    }
    *out = v->str();
    return true;
  };
  if (!string_field("cniVersion", true, &conf.cni_version)) return std::nullopt;
  if (VersionIndex(conf.cni_version) < 0) {
    *error = Err(kIncompatibleVersion,
                 absl::StrCat("network configuration: cniVersion ", JsonQuote(conf.cni_version),
                              " is not supported"),
                 absl::StrCat("supported: ", absl::StrJoin(SupportedVersions(), ", ")));
    return std::nullopt;
  }
  if (!string_field("name", true, &conf.name)) return std::nullopt;
  if (!string_field("type", true, &conf.type)) return std::nullopt;
  if (!string_field("agentSocket", false, &conf.agent_socket)) return std::nullopt;
  if (conf.agent_socket.empty() || SocketPath(conf.agent_socket).empty() ||
      SocketPath(conf.agent_socket)[0] != '/') {
    *error = Err(kInvalidConfig,
                 absl::StrCat("network configuration: agentSocket: ", JsonQuote(conf.agent_socket),
                              ": must be an absolute path (/run/netpol/agent.sock) or "
                              "unix:///path"));
    return std::nullopt;
  }
  if (const JsonValue* t = root.Find("timeoutSeconds")) {
    if (!t->is_number() || !(t->number() > 0) || t->number() > kMaxTimeoutSeconds) {
      *error = Err(kInvalidConfig,
                   absl::StrCat("network configuration: timeoutSeconds: ",
                                t->is_number() ? std::string(t->raw())
                                               : JsonValue::KindName(t->kind()),
                                ": must be a number of seconds above 0 and at most ",
                                kMaxTimeoutSeconds));
      return std::nullopt;
    }
    conf.timeout = absl::Milliseconds(std::llround(t->number() * 1000));
    if (conf.timeout <= absl::ZeroDuration()) conf.timeout = absl::Milliseconds(1);
  }
  if (const JsonValue* p = root.Find("prevResult")) {
    if (!p->is_object()) {
      *error = Err(kInvalidConfig, absl::StrCat("network configuration: prevResult: must be an "
                                                "object, found ",
                                                JsonValue::KindName(p->kind())));
      return std::nullopt;
    }
    conf.prev_result = *p;
  }
  if (const JsonValue* v = root.Find("cni.dev/valid-attachments")) {
    auto bad = [&](std::string msg) {
      *error = Err(kInvalidConfig, absl::StrCat("network configuration: cni.dev/valid-attachments",
                                                msg));
      return std::nullopt;
    };
    if (!v->is_array()) return bad(": must be an array");
    std::vector<std::pair<std::string, std::string>> valid;
    for (size_t i = 0; i < v->items().size(); ++i) {
      const JsonValue& item = v->items()[i];
      const JsonValue* id = item.is_object() ? item.Find("containerID") : nullptr;
      const JsonValue* ifname = item.is_object() ? item.Find("ifname") : nullptr;
      if (id == nullptr || !id->is_string() || !ValidContainerId(id->str())) {
        return bad(absl::StrCat("[", i, "].containerID: must be a container id"));
      }
      if (ifname == nullptr || !ifname->is_string() || !ValidIfName(ifname->str())) {
        return bad(absl::StrCat("[", i, "].ifname: must be an interface name"));
      }
      valid.emplace_back(id->str(), ifname->str());
    }
    conf.valid_attachments = std::move(valid);
  }
  return conf;
}

std::optional<std::vector<std::string>> PodAddresses(const JsonValue& prev, PluginError* error) {
  auto fail = [&](std::string msg) {
    *error = Err(kInvalidConfig, std::move(msg));
    return std::nullopt;
  };
  std::vector<bool> in_sandbox;
  if (const JsonValue* ifs = prev.Find("interfaces")) {
    if (!ifs->is_array()) return fail("prevResult.interfaces: must be an array");
    for (size_t i = 0; i < ifs->items().size(); ++i) {
      const JsonValue& itf = ifs->items()[i];
      if (!itf.is_object()) {
        return fail(absl::StrCat("prevResult.interfaces[", i, "]: must be an object"));
      }
      const JsonValue* sb = itf.Find("sandbox");
      if (sb != nullptr && !sb->is_string()) {
        return fail(absl::StrCat("prevResult.interfaces[", i, "].sandbox: must be a string"));
      }
      in_sandbox.push_back(sb != nullptr && !sb->str().empty());
    }
  }
  std::vector<std::string> out;
  std::set<std::string> seen;
  const JsonValue* ips = prev.Find("ips");
  if (ips == nullptr) return out;
  if (!ips->is_array()) return fail("prevResult.ips: must be an array");
  for (size_t i = 0; i < ips->items().size(); ++i) {
    const std::string field = absl::StrCat("prevResult.ips[", i, "]");
    const JsonValue& ip = ips->items()[i];
    if (!ip.is_object()) return fail(field + ": must be an object");
    const JsonValue* addr = ip.Find("address");
    if (addr == nullptr || !addr->is_string()) {
      return fail(field + ".address: required (a CIDR such as 10.244.1.5/24)");
    }
    absl::string_view text = addr->str();
    size_t slash = text.find('/');
    if (slash == absl::string_view::npos) {
      return fail(absl::StrCat(field, ".address: \"", text, "\": must be a CIDR (address/prefix)"));
    }
    absl::StatusOr<IpAddr> a = IpAddr::Parse(text.substr(0, slash));
    if (!a.ok()) {
      return fail(absl::StrCat(field, ".address: \"", text, "\": ", a.status().message()));
    }
    if (const JsonValue* idx = ip.Find("interface")) {
      if (!idx->is_integer() || idx->number() < 0 ||
          idx->number() >= static_cast<double>(in_sandbox.size())) {
        return fail(absl::StrCat(field, ".interface: ", idx->raw(),
                                 ": must index prevResult.interfaces (", in_sandbox.size(),
                                 " entries)"));
      }
      // An address on a host-side interface (the bridge, a veth's host end) is not the pod's.
      if (!in_sandbox[static_cast<size_t>(idx->number())]) continue;
    }
    std::string s = a->ToString();
    if (seen.insert(s).second) out.push_back(std::move(s));
  }
  return out;
}

std::optional<std::map<std::string, std::string>> ParseCniArgs(absl::string_view text,
                                                               PluginError* error) {
  std::map<std::string, std::string> out;
  for (absl::string_view pair : absl::StrSplit(text, ';', absl::SkipEmpty())) {
    size_t eq = pair.find('=');
    if (eq == absl::string_view::npos || eq == 0) {
      *error = Err(kInvalidEnvironment,
                   absl::StrCat("CNI_ARGS: \"", pair, "\": must be KEY=VALUE (pairs separated by ';')"));
      return std::nullopt;
    }
    out[std::string(pair.substr(0, eq))] = std::string(pair.substr(eq + 1));
  }
  return out;
}

Outcome Run(const std::map<std::string, std::string>& env, absl::string_view stdin_text,
            const RunOptions& options) {
  auto get = [&](const char* k) {
    auto it = env.find(k);
    return it == env.end() ? std::string() : it->second;
  };
  const std::string command = get("CNI_COMMAND");
  if (command == "VERSION") {
    Outcome o;
    std::vector<std::string> quoted;
    for (const std::string& v : SupportedVersions()) quoted.push_back(JsonQuote(v));
    o.out = absl::StrCat("{\"cniVersion\":", JsonQuote(kCurrentVersion),
                         ",\"supportedVersions\":[", absl::StrJoin(quoted, ","), "]}\n");
    return o;
  }
  if (command != "ADD" && command != "DEL" && command != "CHECK" && command != "STATUS" &&
      command != "GC") {
    return Fail(kCurrentVersion,
                Err(kInvalidEnvironment,
                    command.empty()
                        ? "CNI_COMMAND: required (ADD, DEL, CHECK, STATUS, GC or VERSION)"
                        : absl::StrCat("CNI_COMMAND: \"", command,
                                       "\": must be ADD, DEL, CHECK, STATUS, GC or VERSION")));
  }
  PluginError e;
  std::optional<NetConf> conf = ParseNetConf(stdin_text, &e);
  if (!conf) {
    // The error speaks the config's version when it names a supported one.
    std::string version = kCurrentVersion;
    if (absl::StatusOr<JsonValue> v = JsonValue::Parse(stdin_text); v.ok() && v->is_object()) {
      const JsonValue* cv = v->Find("cniVersion");
      if (cv != nullptr && cv->is_string() && VersionIndex(cv->str()) >= 0) version = cv->str();
    }
    return Fail(version, e);
  }
  if (command == "STATUS" || command == "GC") {
    if (NeedsVersion(conf->cni_version, kStatusSince)) {
      return Fail(conf->cni_version,
                  Err(kIncompatibleVersion,
                      absl::StrCat("cniVersion ", conf->cni_version, ": ", command, " needs ",
                                   kStatusSince, " or later")));
    }
    return command == "STATUS" ? Status(*conf, options) : Gc(*conf, options);
  }
  Context c;
  c.env = &env;
  c.conf = &*conf;
  c.container_id = get("CNI_CONTAINERID");
  c.netns = get("CNI_NETNS");
  c.ifname = get("CNI_IFNAME");
  if (!ValidContainerId(c.container_id)) {
    return Fail(conf->cni_version,
                Err(kInvalidEnvironment,
                    c.container_id.empty()
                        ? "CNI_CONTAINERID: required"
                        : absl::StrCat("CNI_CONTAINERID: \"", c.container_id,
                                       "\": must start with a letter or digit, followed by "
                                       "letters, digits, '_', '.' or '-'")));
  }
  if (!ValidIfName(c.ifname)) {
    return Fail(conf->cni_version,
                Err(kInvalidEnvironment,
                    c.ifname.empty() ? "CNI_IFNAME: required"
                                     : absl::StrCat("CNI_IFNAME: \"", c.ifname,
                                                    "\": not a valid interface name")));
  }
  if (command != "DEL" && c.netns.empty()) {
    return Fail(conf->cni_version, Err(kInvalidEnvironment,
                                       absl::StrCat("CNI_NETNS: required for ", command)));
  }
  std::optional<std::map<std::string, std::string>> args = ParseCniArgs(get("CNI_ARGS"), &e);
  if (!args) return Fail(conf->cni_version, e);
  c.args = *std::move(args);
  if (command == "ADD") return Add(c, options);
  if (command == "DEL") return Del(c, options);
  return Check(c, options);
}

}  // namespace netpol::cni
