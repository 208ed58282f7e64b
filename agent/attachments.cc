// CNI attachments. See attachments.h.
#include "agent/attachments.h"

#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"

namespace netpol::agent {
namespace {

using google::protobuf::util::TimeUtil;

// Kubernetes object names are at most 253 characters (DNS subdomain).
constexpr size_t kMaxNameLength = 253;
// Container ids are opaque to us; this only bounds what we store.
constexpr size_t kMaxIdLength = 256;

bool ValidContainerId(const std::string& id) {
  // CNI spec: an alphanumeric first character, then alphanumerics, '_', '.', '-'.
  if (id.empty() || id.size() > kMaxIdLength || !absl::ascii_isalnum(id[0])) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-';
  });
}

absl::Status CheckName(const std::string& value, const std::string& field) {
  if (value.empty()) return absl::InvalidArgumentError(field + ": required");
  if (value.size() > kMaxNameLength || value.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": \"", value, "\": must be a Kubernetes object name"));
  }
  return absl::OkStatus();
}

bool Holds(const std::vector<IpAddr>& ips, const IpAddr& a) {
  return std::find(ips.begin(), ips.end(), a) != ips.end();
}

// A pod that carries nothing but addresses: the shell Attach created for an unknown pod.
bool IsShell(const Pod& p) {
  return p.ips.empty() && p.labels.empty() && p.node_name.empty() && p.ports.empty() &&
         !p.host_network;
}

// Removes `ips` from pod `key` (deleting it when only a shell remains). Returns whether the
// pod changed.
bool StripFrom(const std::string& key, const std::vector<IpAddr>& ips, State* state) {
  auto it = state->pods.find(key);
  if (it == state->pods.end()) return false;
  Pod& pod = it->second;
  const size_t before = pod.ips.size();
  pod.ips.erase(std::remove_if(pod.ips.begin(), pod.ips.end(),
                               [&](const IpAddr& a) { return Holds(ips, a); }),
                pod.ips.end());
  if (pod.ips.size() == before) return false;
  if (IsShell(pod)) state->pods.erase(it);
  return true;
}

// Removes `ips` from every pod but `except`. Returns the number of pods changed.
uint64_t StripFromOthers(const std::vector<IpAddr>& ips, const std::string& except, State* state) {
  std::vector<std::string> holders;
  for (const auto& [key, pod] : state->pods) {
    if (key == except) continue;
    if (std::any_of(pod.ips.begin(), pod.ips.end(), [&](const IpAddr& a) { return Holds(ips, a); })) {
      holders.push_back(key);
    }
  }
  uint64_t n = 0;
  for (const std::string& key : holders) n += StripFrom(key, ips, state) ? 1 : 0;
  return n;
}

uint64_t CountPodChanges(const State& before, const State& after) {
  uint64_t n = 0;
  for (const auto& [key, pod] : after.pods) {
    auto it = before.pods.find(key);
    if (it == before.pods.end() || !(it->second == pod)) ++n;
  }
  for (const auto& [key, pod] : before.pods) n += after.pods.count(key) ? 0 : 1;
  return n;
}

struct IpAddrHash {
  size_t operator()(const IpAddr& a) const {
    return absl::HashOf(static_cast<int>(a.family), a.bytes);
  }
};

// Attached address -> keys of the pods holding it.
using AddressHolders = absl::flat_hash_map<IpAddr, std::vector<std::string>, IpAddrHash>;

// Pod `key` no longer holds `ip` (a no-op for an address nobody attached).
void Unhold(AddressHolders* holders, const IpAddr& ip, const std::string& key) {
  auto it = holders->find(ip);
  if (it == holders->end()) return;
  std::vector<std::string>& keys = it->second;
  keys.erase(std::remove(keys.begin(), keys.end(), key), keys.end());
}

bool SameAttachments(const Attachments& a, const Attachments& b) {
  if (a.size() != b.size()) return false;
  for (auto i = a.begin(), j = b.begin(); i != a.end(); ++i, ++j) {
    if (i->first != j->first || !(i->second == j->second)) return false;
  }
  return true;
}

}  // namespace

bool Attachment::SameAs(const Attachment& o) const {
  return container_id == o.container_id && netns == o.netns && interface == o.interface &&
         ips == o.ips && pod_namespace == o.pod_namespace && pod_name == o.pod_name &&
         pod_uid == o.pod_uid && netns_inode == o.netns_inode;
}

v1::Attachment ToApi(const Attachment& a) {
  v1::Attachment out;
  out.set_container_id(a.container_id);
  out.set_netns(a.netns);
  out.set_interface(a.interface);
  for (const IpAddr& ip : a.ips) out.add_ips(ip.ToString());
  out.set_pod_namespace(a.pod_namespace);
  out.set_pod_name(a.pod_name);
  out.set_pod_uid(a.pod_uid);
  *out.mutable_attach_time() = TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(a.attach_time));
  out.set_netns_inode(a.netns_inode);
  return out;
}

absl::StatusOr<Attachment> AttachmentFromApi(const v1::Attachment& in, const std::string& field) {
  Attachment a;
  if (!ValidContainerId(in.container_id())) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".containerId: \"", in.container_id(),
        "\": must start with a letter or digit, followed by letters, digits, '_', '.' or '-'"));
  }
  a.container_id = in.container_id();
  if (in.netns().empty()) return absl::InvalidArgumentError(field + ".netns: required");
  a.netns = in.netns();
  a.interface = in.interface();
  if (auto s = CheckName(in.pod_namespace(), field + ".podNamespace"); !s.ok()) return s;
  if (auto s = CheckName(in.pod_name(), field + ".podName"); !s.ok()) return s;
  a.pod_namespace = in.pod_namespace();
  a.pod_name = in.pod_name();
  a.pod_uid = in.pod_uid();
  if (in.ips().empty()) {
    return absl::InvalidArgumentError(field + ".ips: required (at least one address)");
  }
  for (int i = 0; i < in.ips_size(); ++i) {
    absl::StatusOr<IpAddr> ip = IpAddr::Parse(in.ips(i));
    if (!ip.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".ips[", i, "]: ", ip.status().message()));
    }
    a.ips.push_back(*ip);
  }
  std::sort(a.ips.begin(), a.ips.end());
  a.ips.erase(std::unique(a.ips.begin(), a.ips.end()), a.ips.end());
  if (in.has_attach_time()) {
    a.attach_time = absl::FromUnixNanos(TimeUtil::TimestampToNanoseconds(in.attach_time()));
  }
  a.netns_inode = in.netns_inode();
  return a;
}

AttachmentChange Attach(const State& state, const Attachments& attachments, Attachment a) {
  AttachmentChange out;
  out.state = state;
  out.attachments = attachments;
  const std::string key = a.PodKey();
  if (auto it = attachments.find(a.container_id); it != attachments.end()) {
    out.found = true;
    if (it->second.SameAs(a)) a.attach_time = it->second.attach_time;
    // A re-ADD that moved the sandbox to another pod or changed its addresses: the old
    // addresses leave the old pod first.
    StripFrom(it->second.PodKey(), it->second.ips, &out.state);
    out.attachments.erase(a.container_id);
  }
  // Older sandboxes of this pod and holders of any of its addresses go first.
  for (const auto& [id, old] : attachments) {
    if (id == a.container_id) continue;
    bool shares = std::any_of(old.ips.begin(), old.ips.end(),
                              [&](const IpAddr& ip) { return Holds(a.ips, ip); });
    if (old.PodKey() != key && !shares) continue;
    out.replaced.push_back(id);
    out.attachments.erase(id);
    StripFrom(old.PodKey(), old.ips, &out.state);
  }
  StripFromOthers(a.ips, key, &out.state);
  auto pod = out.state.pods.find(key);
  if (auto known = state.pods.find(key); known != state.pods.end()) {
    Pod without_ips = known->second;
    without_ips.ips.clear();
    out.pod_known = !IsShell(without_ips);
  }
  if (pod == out.state.pods.end()) {
    Pod p;
    p.namespace_name = a.pod_namespace;
    p.name = a.pod_name;
    pod = out.state.pods.emplace(key, std::move(p)).first;
  }
  pod->second.ips = a.ips;
  out.attachments[a.container_id] = std::move(a);
  out.objects_changed = CountPodChanges(state, out.state);
  out.changed = out.objects_changed > 0 || !SameAttachments(attachments, out.attachments);
  return out;
}

AttachmentChange Detach(const State& state, const Attachments& attachments,
                        const std::string& container_id) {
  AttachmentChange out;
  out.state = state;
  out.attachments = attachments;
  auto it = out.attachments.find(container_id);
  if (it == out.attachments.end()) return out;
  out.found = true;
  StripFrom(it->second.PodKey(), it->second.ips, &out.state);
  out.attachments.erase(it);
  out.objects_changed = CountPodChanges(state, out.state);
  out.changed = true;
  return out;
}

uint64_t OverlayAttachments(const Attachments& attachments, State* state,
                            std::set<std::string>* changed_pods) {
  // The holders of every attached address, from one pass over the pods. The attachments are
  // then applied in order as if each walked the pods for the other holders of its addresses;
  // the index stays exact for these addresses throughout, so none has to.
  AddressHolders holders;
  for (const auto& [id, a] : attachments) {
    for (const IpAddr& ip : a.ips) holders[ip];
  }
  if (attachments.empty()) return 0;
  for (const auto& [key, pod] : state->pods) {
    for (const IpAddr& ip : pod.ips) {
      auto it = holders.find(ip);
      if (it == holders.end()) continue;
      // A pod's entries for one address are consecutive: skip its repeats.
      if (it->second.empty() || it->second.back() != key) it->second.push_back(key);
    }
  }
  // The pods this may change, as they were: the attached ones and the other holders of their
  // addresses (nullopt: absent).
  std::map<std::string, std::optional<Pod>> before;
  auto remember = [&](const std::string& key) {
    if (before.count(key)) return;
    auto it = state->pods.find(key);
    before.emplace(key, it == state->pods.end() ? std::nullopt : std::optional<Pod>(it->second));
  };
  std::vector<std::string> others;
  for (const auto& entry : attachments) {
    const Attachment& a = entry.second;
    const std::string key = a.PodKey();
    auto pod = state->pods.find(key);
    if (pod == state->pods.end()) continue;  // deleted through the API: stays deleted
    remember(key);
    others.clear();
    for (const IpAddr& ip : a.ips) {
      for (const std::string& holder : holders[ip]) {
        if (holder != key) others.push_back(holder);
      }
    }
    std::sort(others.begin(), others.end());
    others.erase(std::unique(others.begin(), others.end()), others.end());
    for (const std::string& other : others) {
      remember(other);
      StripFrom(other, a.ips, state);  // holds none of a.ips now, or is gone
      for (const IpAddr& ip : a.ips) Unhold(&holders, ip, other);
    }
    for (const IpAddr& ip : pod->second.ips) Unhold(&holders, ip, key);
    pod->second.ips = a.ips;
    for (const IpAddr& ip : a.ips) {
      std::vector<std::string>& keys = holders[ip];
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
    }
  }
  uint64_t n = 0;
  for (const auto& [key, old] : before) {
    auto it = state->pods.find(key);
    const bool same = it == state->pods.end() ? !old.has_value() : old && *old == it->second;
    if (same) continue;
    ++n;
    if (changed_pods != nullptr) changed_pods->insert(key);
  }
  return n;
}

std::set<std::string> AttachedPods(const Attachments& attachments) {
  std::set<std::string> out;
  for (const auto& [id, a] : attachments) out.insert(a.PodKey());
  return out;
}

compiler::CompileOptions WithAttachments(const compiler::CompileOptions& base,
                                         const Attachments* attachments) {
  compiler::CompileOptions out = base;
  if (attachments == nullptr) return out;
  for (const auto& [id, a] : *attachments) out.attached_pods.insert(a.PodKey());
  return out;
}

uint64_t NetnsInode(const std::string& path) {
  struct stat st;
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_ino);
}

bool NetnsAlive(const Attachment& a) {
  struct stat st;
  if (a.netns.empty() || ::stat(a.netns.c_str(), &st) != 0) return false;
  return a.netns_inode == 0 || static_cast<uint64_t>(st.st_ino) == a.netns_inode;
}

std::vector<std::string> StaleAttachments(const Attachments& attachments,
                                          const std::function<bool(const Attachment&)>& alive) {
  std::vector<std::string> out;
  for (const auto& [id, a] : attachments) {
    if (!alive(a)) out.push_back(id);
  }
  return out;
}

}  // namespace netpol::agent
