// CNI attachments. See attachments.h.
#include "agent/attachments.h"

#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/model/loader.h"
#include "google/protobuf/util/time_util.h"

namespace netpol::agent {
namespace {

using google::protobuf::util::TimeUtil;

// Network names are bounded like Kubernetes object names.
constexpr size_t kMaxNameLength = 253;
// Container ids are opaque to us; this only bounds what we store.
constexpr size_t kMaxIdLength = 256;
// Longest Linux interface name (IFNAMSIZ - 1).
constexpr size_t kMaxIfName = 15;
// PATH_MAX - 1.
constexpr size_t kMaxPathLength = 4095;
// The interface of a request or record that names none (the Kubernetes pod interface).
constexpr char kDefaultInterface[] = "eth0";

bool ValidContainerId(const std::string& id) {
  // CNI spec: an alphanumeric first character, then alphanumerics, '_', '.', '-'.
  if (id.empty() || id.size() > kMaxIdLength || !absl::ascii_isalnum(id[0])) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-';
  });
}

// A pod's namespace or name from the CNI arguments, held to the rules the loader holds metadata
// to: anything else (a quote, a newline, 300 characters) would be stored as a pod no manifest
// can name. `label`: a namespace (DNS label), else a pod name (DNS subdomain).
absl::Status CheckName(const std::string& value, const std::string& field, bool label) {
  if (value.empty()) return absl::InvalidArgumentError(field + ": required");
  return label ? ValidateDnsLabel(field, value) : ValidateDnsSubdomain(field, value);
}

// Why no pod can hold `ip` ("" when one can).
std::string NotAPodAddress(const IpAddr& ip) {
  const auto& b = ip.bytes;
  if (ip.family == Family::kV4) {
    if (b[0] == 0) return "in 0.0.0.0/8 (this host)";
    if (b[0] == 127) return "loopback";
    if (b[0] >= 224 && b[0] <= 239) return "multicast";
    if (b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255) return "broadcast";
    if (b[0] >= 240) return "reserved (240.0.0.0/4)";
    return "";
  }
  const bool zero10 = std::all_of(b.begin(), b.begin() + 10, [](uint8_t x) { return x == 0; });
  if (zero10 && b[10] == 0 && b[11] == 0 && b[12] == 0 && b[13] == 0 && b[14] == 0) {
    if (b[15] == 0) return "unspecified";
    if (b[15] == 1) return "loopback";
  }
  if (ip.IsV4Mapped()) return "an IPv4-mapped IPv6 address (give the IPv4 address)";
  if (b[0] == 0xff) return "multicast";
  return "";
}

// Attached address -> keys of the pods holding it.
struct AddrHash {
  size_t operator()(const IpAddr& a) const {
    return absl::HashOf(static_cast<int>(a.family), a.bytes);
  }
};
using AddressHolders = absl::flat_hash_map<IpAddr, std::vector<std::string>, AddrHash>;

// Pod `key` no longer holds `ip` (a no-op for an address nobody attached).
void Unhold(AddressHolders* holders, const IpAddr& ip, const std::string& key) {
  auto it = holders->find(ip);
  if (it == holders->end()) return;
  std::vector<std::string>& keys = it->second;
  keys.erase(std::remove(keys.begin(), keys.end(), key), keys.end());
}

struct IpAddrHash {
  size_t operator()(const IpAddr& a) const {
    return absl::HashOf(static_cast<int>(a.family), a.bytes);
  }
};
using IpSet = absl::flat_hash_set<IpAddr, IpAddrHash>;

// A pod that carries nothing but addresses: the shell Attach created for an unknown pod.
bool IsShell(const Pod& p) {
  return p.ips.empty() && p.labels.empty() && p.node_name.empty() && p.ports.empty() &&
         !p.host_network;
}

// Removes the addresses in `ips` from pod `key` (deleting it when only a shell remains).
// Returns whether the pod changed.
bool StripFrom(const std::string& key, const IpSet& ips, State* state) {
  const Pod* old = state->FindPod(key);
  if (old == nullptr) return false;
  Pod pod = *old;
  pod.ips.erase(std::remove_if(pod.ips.begin(), pod.ips.end(),
                               [&](const IpAddr& a) { return ips.contains(a); }),
                pod.ips.end());
  if (pod.ips.size() == old->ips.size()) return false;
  if (IsShell(pod)) {
    state->pods.erase(key);
  } else {
    state->pods.insert_or_assign(key, std::move(pod));
  }
  return true;
}

// The addresses of pod `key`'s attachments, sorted and unique.
std::vector<IpAddr> PodIps(const Attachments& attachments, const std::string& key) {
  std::vector<IpAddr> out;
  for (const auto& [k, a] : attachments) {
    if (a.PodKey() == key) out.insert(out.end(), a.ips.begin(), a.ips.end());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool SameAttachments(const Attachments& a, const Attachments& b) {
  if (a.size() != b.size()) return false;
  for (auto i = a.begin(), j = b.begin(); i != a.end(); ++i, ++j) {
    if (!(i->first == j->first) || !(i->second == j->second)) return false;
  }
  return true;
}

// Counts the pods among `keys` that differ between `before` and `after`.
uint64_t CountChanged(const State& before, const State& after, const std::set<std::string>& keys) {
  uint64_t n = 0;
  for (const std::string& key : keys) {
    const Pod* b = before.FindPod(key);
    const Pod* a = after.FindPod(key);
    if ((b == nullptr) != (a == nullptr) || (b != nullptr && !(*a == *b))) ++n;
  }
  return n;
}

// After `gone` left `out->attachments`: each of their pods keeps exactly the addresses of its
// remaining attachments, or, with none left, loses the addresses the gone ones gave it.
void Settle(const std::vector<Attachment>& gone, AttachmentChange* out,
            std::set<std::string>* touched) {
  std::map<std::string, IpSet> lost;
  for (const Attachment& g : gone) {
    if (!g.HasPod()) continue;
    lost[g.PodKey()].insert(g.ips.begin(), g.ips.end());
  }
  for (const auto& [key, ips] : lost) {
    touched->insert(key);
    std::vector<IpAddr> remaining = PodIps(out->attachments, key);
    if (remaining.empty()) {
      StripFrom(key, ips, &out->state);
      continue;
    }
    if (out->state.pods.count(key)) out->state.pods[key].ips = std::move(remaining);
  }
}

// Removes the attachments `pred` selects (Detach, GarbageCollect).
AttachmentChange RemoveWhere(const State& state, const Attachments& attachments,
                             const std::function<bool(const Attachment&)>& pred) {
  AttachmentChange out;
  std::vector<Attachment> gone;
  for (const auto& [key, a] : attachments) {
    if (pred(a)) gone.push_back(a);
  }
  if (gone.empty()) return out;
  out.state = state;
  out.attachments = attachments;
  for (const Attachment& g : gone) {
    out.attachments.erase(g.Key());
    out.removed.push_back(g.Key());
  }
  out.found = true;
  Settle(gone, &out, &out.touched);
  out.objects_changed = CountChanged(state, out.state, out.touched);
  out.changed = true;
  return out;
}

}  // namespace

std::string AttachmentKey::ToString() const {
  return absl::StrCat(network.empty() ? "*" : network, "/", container_id, "/", interface);
}

bool AttachmentSelector::Matches(const AttachmentKey& key) const {
  if (key.container_id != container_id) return false;
  if (!interface.empty() && key.interface != interface) return false;
  return network.empty() || key.network.empty() || key.network == network;
}

bool Attachment::SameAs(const Attachment& o) const {
  return network == o.network && container_id == o.container_id && netns == o.netns &&
         interface == o.interface && ips == o.ips && pod_namespace == o.pod_namespace &&
         pod_name == o.pod_name && pod_uid == o.pod_uid && netns_inode == o.netns_inode;
}

v1::Attachment ToApi(const Attachment& a) {
  v1::Attachment out;
  out.set_network(a.network);
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

std::string NetnsPathProblem(const std::string& path) {
  if (path.empty()) return "required";
  if (path.size() > kMaxPathLength) {
    return absl::StrCat("longer than ", kMaxPathLength, " bytes");
  }
  if (path[0] != '/') return "must be an absolute path (e.g. /var/run/netns/cni-1234)";
  if (path == "/") return "\"/\" is not a network namespace";
  if (path.back() == '/') return "must not end with '/'";
  for (absl::string_view part : absl::StrSplit(absl::string_view(path).substr(1), '/')) {
    if (part.empty() || part == "." || part == "..") {
      return "must be a clean path (no empty, '.' or '..' components)";
    }
  }
  if (std::any_of(path.begin(), path.end(), [](char c) {
        return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
      })) {
    return "must not contain control characters";
  }
  return "";
}

bool ValidNetworkName(const std::string& name) {
  if (name.empty() || name.size() > kMaxNameLength || !absl::ascii_isalnum(name[0])) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-';
  });
}

bool ValidInterfaceName(const std::string& name) {
  if (name.empty() || name.size() > kMaxIfName || name == "." || name == "..") return false;
  return std::none_of(name.begin(), name.end(), [](char c) {
    return c == '/' || c == ':' || absl::ascii_isspace(static_cast<unsigned char>(c)) ||
           static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
}

absl::StatusOr<Attachment> AttachmentFromApi(const v1::Attachment& in, const std::string& field) {
  Attachment a;
  if (!in.network().empty() && !ValidNetworkName(in.network())) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".network: \"", in.network(),
        "\": must start with a letter or digit, followed by letters, digits, '_', '.' or '-'"));
  }
  a.network = in.network();
  if (!ValidContainerId(in.container_id())) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".containerId: \"", in.container_id(),
        "\": must start with a letter or digit, followed by letters, digits, '_', '.' or '-'"));
  }
  a.container_id = in.container_id();
  if (std::string problem = NetnsPathProblem(in.netns()); !problem.empty()) {
    return absl::InvalidArgumentError(
        in.netns().empty() ? absl::StrCat(field, ".netns: ", problem)
                           : absl::StrCat(field, ".netns: \"", absl::CHexEscape(in.netns()),
                                          "\": ", problem));
  }
  a.netns = in.netns();
  a.interface = in.interface().empty() ? kDefaultInterface : in.interface();
  if (!ValidInterfaceName(a.interface)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".interface: \"", absl::CHexEscape(a.interface),
                     "\": not a valid interface name (1-15 bytes, no '/', ':' or whitespace)"));
  }
  if (!in.pod_namespace().empty() || !in.pod_name().empty()) {
    if (auto s = CheckName(in.pod_namespace(), field + ".podNamespace", true); !s.ok()) return s;
    if (auto s = CheckName(in.pod_name(), field + ".podName", false); !s.ok()) return s;
  }
  a.pod_namespace = in.pod_namespace();
  a.pod_name = in.pod_name();
  a.pod_uid = in.pod_uid();
  if (in.ips().empty()) {
    return absl::InvalidArgumentError(field + ".ips: required (at least one address)");
  }
  // At most one address per family (repeats of it are dropped): a long list fails at its
  // third distinct address at the latest, in one pass.
  std::optional<IpAddr> seen[2];
  for (int i = 0; i < in.ips_size(); ++i) {
    absl::StatusOr<IpAddr> ip = IpAddr::Parse(in.ips(i));
    const std::string at = absl::StrCat(field, ".ips[", i, "]");
    if (!ip.ok()) return absl::InvalidArgumentError(absl::StrCat(at, ": ", ip.status().message()));
    if (std::string why = NotAPodAddress(*ip); !why.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ": ", ip->ToString(), ": ", why, ", not a pod's address"));
    }
    const int fam = ip->family == Family::kV4 ? 0 : 1;
    if (seen[fam]) {
      if (*seen[fam] == *ip) continue;
      return absl::InvalidArgumentError(absl::StrCat(
          at, ": ", ip->ToString(), ": an interface has at most one address per family (",
          seen[fam]->ToString(), " is the other)"));
    }
    a.ips.push_back(*ip);
    seen[fam] = *ip;
  }
  std::sort(a.ips.begin(), a.ips.end());
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
  const AttachmentKey key = a.Key();
  const std::string pod_key = a.PodKey();
  const IpSet mine(a.ips.begin(), a.ips.end());
  // This attachment as recorded before (or its record from before networks were recorded),
  // older sandboxes of this pod and holders of any of its addresses go first.
  std::vector<Attachment> gone;
  for (auto it = out.attachments.begin(); it != out.attachments.end();) {
    const Attachment& old = it->second;
    const bool same = it->first == key ||
                      (it->first.network.empty() && it->first.container_id == key.container_id &&
                       it->first.interface == key.interface);
    const bool older_sandbox =
        a.HasPod() && old.PodKey() == pod_key && old.container_id != a.container_id;
    const bool shares =
        std::any_of(old.ips.begin(), old.ips.end(), [&](const IpAddr& ip) { return mine.contains(ip); });
    if (!same && !older_sandbox && !shares) {
      ++it;
      continue;
    }
    if (same) {
      out.found = true;
      if (old.SameAs(a)) a.attach_time = old.attach_time;
    } else {
      out.replaced.push_back(it->first.ToString());
    }
    gone.push_back(old);
    out.removed.push_back(it->first);
    it = out.attachments.erase(it);
  }
  std::sort(out.replaced.begin(), out.replaced.end());
  if (a.HasPod()) {
    if (auto known = state.pods.find(pod_key); known != state.pods.end()) {
      Pod without_ips = known->second;
      without_ips.ips.clear();
      out.pod_known = !IsShell(without_ips);
    }
  }
  out.attachments[key] = std::move(a);
  const Attachment& added = out.attachments[key];
  std::set<std::string>& touched = out.touched;
  Settle(gone, &out, &touched);
  // No other pod holds the addresses: one pass over the pods.
  std::vector<std::string> holders;
  for (const auto& [k, pod] : out.state.pods) {
    if (k == pod_key) continue;
    if (std::any_of(pod.ips.begin(), pod.ips.end(),
                    [&](const IpAddr& ip) { return mine.contains(ip); })) {
      holders.push_back(k);
    }
  }
  for (const std::string& k : holders) {
    StripFrom(k, mine, &out.state);
    touched.insert(k);
  }
  if (added.HasPod()) {
    std::vector<IpAddr> ips = PodIps(out.attachments, pod_key);
    const Pod* old = out.state.FindPod(pod_key);
    if (old == nullptr || old->ips != ips) {  // an unchanged pod keeps its shared entry
      Pod pod;
      if (old != nullptr) {
        pod = *old;
      } else {
        pod.namespace_name = added.pod_namespace;
        pod.name = added.pod_name;
      }
      pod.ips = std::move(ips);
      out.state.pods.insert_or_assign(pod_key, std::move(pod));
    }
    touched.insert(pod_key);
  }
  out.objects_changed = CountChanged(state, out.state, touched);
  out.changed = out.objects_changed > 0 || !SameAttachments(attachments, out.attachments);
  return out;
}

AttachmentChange Detach(const State& state, const Attachments& attachments,
                        const AttachmentSelector& selector) {
  return RemoveWhere(state, attachments,
                     [&](const Attachment& a) { return selector.Matches(a.Key()); });
}

AttachmentChange GarbageCollect(const State& state, const Attachments& attachments,
                                const std::string& network,
                                const std::set<std::pair<std::string, std::string>>& valid) {
  return RemoveWhere(state, attachments, [&](const Attachment& a) {
    if (!a.network.empty() && a.network != network) return false;
    return valid.count({a.container_id, a.interface}) == 0;
  });
}

uint64_t OverlayAttachments(const Attachments& attachments, State* state,
                            std::set<std::string>* changed_pods) {
  if (attachments.empty()) return 0;
  // The addresses of each attached pod, all interfaces together ("" : without a pod).
  std::map<std::string, std::vector<IpAddr>> groups;
  for (const auto& [k, a] : attachments) {
    std::vector<IpAddr>& ips = groups[a.PodKey()];
    ips.insert(ips.end(), a.ips.begin(), a.ips.end());
  }
  for (auto& [key, ips] : groups) {
    std::sort(ips.begin(), ips.end());
    ips.erase(std::unique(ips.begin(), ips.end()), ips.end());
  }
  // The holders of every attached address, from one pass over the pods. The groups are then
  // applied in order as if each walked the pods for the other holders of its addresses; the
  // index stays exact for these addresses throughout, so none has to.
  AddressHolders holders;
  for (const auto& [key, ips] : groups) {
    for (const IpAddr& ip : ips) holders[ip];
  }
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
  for (const auto& [key, ips] : groups) {
    if (!key.empty()) {
      if (state->pods.count(key) == 0) continue;  // deleted through the API: stays deleted
      remember(key);
    }
    const IpSet set(ips.begin(), ips.end());
    others.clear();
    for (const IpAddr& ip : ips) {
      for (const std::string& holder : holders[ip]) {
        if (holder != key) others.push_back(holder);
      }
    }
    std::sort(others.begin(), others.end());
    others.erase(std::unique(others.begin(), others.end()), others.end());
    for (const std::string& other : others) {
      remember(other);
      StripFrom(other, set, state);  // holds none of the addresses now, or is gone
      for (const IpAddr& ip : ips) Unhold(&holders, ip, other);
    }
    if (key.empty()) continue;
    const Pod& pod = state->pods.at(key);
    for (const IpAddr& ip : pod.ips) Unhold(&holders, ip, key);
    if (pod.ips != ips) state->pods[key].ips = ips;  // an unchanged pod stays shared
    for (const IpAddr& ip : ips) {
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
  for (const auto& [k, a] : attachments) {
    if (a.HasPod()) out.insert(a.PodKey());
  }
  return out;
}

compiler::CompileOptions WithAttachments(const compiler::CompileOptions& base,
                                         const Attachments* attachments) {
  compiler::CompileOptions out = base;
  if (attachments == nullptr) return out;
  for (const auto& [k, a] : *attachments) {
    if (a.HasPod()) out.attached_pods.insert(a.PodKey());
  }
  return out;
}

uint64_t NetnsInode(const std::string& path) {
  struct stat st;
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_ino);
}

}  // namespace netpol::agent
