// The node's CNI attachments and the EndpointService. See endpoints.h.
#include "agent/endpoints.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "agent/durable_file.h"
#include "agent/log.h"
#include "agent/program_view.h"
#include "engine/compiler/compiler.h"
#include "engine/nft/program.h"
#include "engine/util/status_macros.h"

namespace netpol::agent {
namespace {

constexpr DurableFormat kFormat{"netpol-attachments", 1, "attachments"};

std::string IpList(const std::vector<IpAddr>& ips) {
  std::vector<std::string> parts;
  for (const IpAddr& ip : ips) parts.push_back(ip.ToString());
  return "[" + absl::StrJoin(parts, ", ") + "]";
}

// "map address -> chain" for every dispatch element (address-keyed verdict map) of `ip`.
std::map<std::string, std::string> DispatchOf(const nft::Program& program, const IpAddr& ip) {
  std::map<std::string, std::string> out;
  for (const auto& [name, set] : program.sets) {
    if (!set.vmap || set.key.empty()) continue;
    if (set.key[0] != nft::FieldType::kIpv4Addr && set.key[0] != nft::FieldType::kIpv6Addr) {
      continue;
    }
    auto elems = program.elements.find(name);
    if (elems == program.elements.end()) continue;
    for (const nft::Element& e : elems->second) {
      if (e.key.empty() || e.key[0].addr_lo != ip || e.key[0].addr_hi != ip) continue;
      out[absl::StrCat(name, " ", ip.ToString())] =
          e.verdict && !e.verdict->chain.empty() ? e.verdict->chain : "(no chain)";
    }
  }
  return out;
}

std::string DescribeDispatch(const std::map<std::string, std::string>& d) {
  std::vector<std::string> parts;
  for (const auto& [k, v] : d) parts.push_back(k + " -> " + v);
  return parts.empty() ? "none" : absl::StrJoin(parts, ", ");
}

// Why the kernel's `kernel` does not enforce `pod` as `committed` does; empty when it does.
std::string KernelProblem(const nft::Program& committed, const nft::Program& kernel,
                          const Pod& pod) {
  // Every address separately: each one's dispatch elements must be there, to the same chains.
  for (const IpAddr& ip : pod.ips) {
    std::map<std::string, std::string> want = DispatchOf(committed, ip);
    std::map<std::string, std::string> got = DispatchOf(kernel, ip);
    if (want != got) {
      return absl::StrCat("dispatch of ", ip.ToString(), " in the kernel: ",
                          DescribeDispatch(got), "; committed: ", DescribeDispatch(want));
    }
  }
  std::vector<std::string> want = PodChains(committed, pod);
  std::vector<std::string> got = PodChains(kernel, pod);
  if (want != got) {
    return absl::StrCat("the kernel dispatches the pod's addresses to chains [",
                        absl::StrJoin(got, ", "), "], the agent committed [",
                        absl::StrJoin(want, ", "), "]");
  }
  nft::Program w = nft::Canonical(SubProgram(committed, want));
  nft::Program g = nft::Canonical(SubProgram(kernel, got));
  if (!(w == g)) {
    return absl::StrCat("the rules or sets of chains [", absl::StrJoin(want, ", "),
                        "] differ between the kernel and the committed program");
  }
  // Base chains that jump into the dispatch maps must be there too.
  for (const char* base : {compiler::kForwardChain, compiler::kInputChain, compiler::kOutputChain,
                           compiler::kPostroutingChain}) {
    auto c = committed.chains.find(base);
    if (c == committed.chains.end()) continue;
    auto k = kernel.chains.find(base);
    if (k == kernel.chains.end()) return absl::StrCat("base chain ", base, " is missing");
    // The chain's rules only: its maps hold every pod's elements, compared per pod above.
    nft::Program want, got;
    want.chains.emplace(base, c->second);
    got.chains.emplace(base, k->second);
    if (!(nft::Canonical(std::move(want)) == nft::Canonical(std::move(got)))) {
      return absl::StrCat("base chain ", base, " differs from the committed program");
    }
  }
  return "";
}

}  // namespace

Endpoints::Endpoints(std::string dir, Attachments attachments)
    : dir_(std::move(dir)),
      path_(dir_.empty() ? "" : dir_ + "/" + kFileName),
      current_(std::make_shared<const Attachments>(std::move(attachments))) {}

std::unique_ptr<Endpoints> Endpoints::InMemory() {
  return std::unique_ptr<Endpoints>(new Endpoints("", {}));
}

absl::StatusOr<std::unique_ptr<Endpoints>> Endpoints::Open(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("state directory: empty path");
  const std::string path = dir + "/" + kFileName;
  absl::StatusOr<std::string> bytes = ReadWholeFile(path);
  if (!bytes.ok()) {
    if (absl::IsNotFound(bytes.status())) {
      return std::unique_ptr<Endpoints>(new Endpoints(dir, {}));
    }
    return bytes.status();
  }
  std::vector<std::string> dropped;
  absl::StatusOr<Attachments> decoded = Decode(*bytes, &dropped);
  if (!decoded.ok()) {
    return absl::Status(decoded.status().code(),
                        absl::StrCat(path, ": ", decoded.status().message(),
                                     "; refusing to start from it (move it away: the runtime's "
                                     "next ADD of each pod attaches it again)"));
  }
  for (const std::string& why : dropped) {
    LogError(absl::StrCat(path, ": ignoring a record the agent no longer accepts: ", why));
  }
  return std::unique_ptr<Endpoints>(new Endpoints(dir, *std::move(decoded)));
}

std::string Endpoints::Encode(const Attachments& attachments) {
  v1::ListAttachmentsResponse file;
  for (const auto& [key, a] : attachments) *file.add_attachments()->mutable_attachment() = ToApi(a);
  std::string payload;
  file.SerializeToString(&payload);
  return EncodeDurable(kFormat, payload);
}

absl::StatusOr<Attachments> Endpoints::Decode(const std::string& bytes,
                                              std::vector<std::string>* dropped) {
  ASSIGN_OR_RETURN(std::string payload, DecodeDurable(kFormat, bytes));
  v1::ListAttachmentsResponse file;
  if (!file.ParseFromString(payload)) return absl::DataLossError("attachments file does not parse");
  Attachments out;
  for (int i = 0; i < file.attachments_size(); ++i) {
    // Records of older versions (keyed by container id alone: no network, maybe no interface)
    // read as network "" (matches any) and interface eth0. A record that today's rules refuse
    // is left out, never a reason not to start.
    absl::StatusOr<Attachment> a =
        AttachmentFromApi(file.attachments(i).attachment(), absl::StrCat("attachments[", i, "]"));
    if (!a.ok()) {
      if (dropped != nullptr) dropped->push_back(std::string(a.status().message()));
      continue;
    }
    AttachmentKey key = a->Key();
    out[std::move(key)] = *std::move(a);
  }
  return out;
}

std::shared_ptr<const Attachments> Endpoints::Current() const {
  absl::MutexLock l(&mu_);
  return current_;
}

absl::Status Endpoints::Save(const Attachments& attachments) {
  if (!dir_.empty()) RETURN_IF_ERROR(WriteDurably(dir_, path_, Encode(attachments)));
  auto next = std::make_shared<const Attachments>(attachments);
  absl::MutexLock l(&mu_);
  current_ = std::move(next);
  return absl::OkStatus();
}

absl::Status ReconcileAtStart(Datastore* store, Endpoints* endpoints) {
  absl::MutexLock w(endpoints->write_mu());
  std::shared_ptr<const Attachments> current = endpoints->Current();
  absl::StatusOr<Snapshot> snap = store->Update(
      [&](const State& base) -> absl::StatusOr<std::optional<Datastore::Change>> {
        State state = base;
        std::set<std::string> touched;
        uint64_t changed = OverlayAttachments(*current, &state, &touched);
        if (changed == 0) return std::nullopt;
        ChangedKeys keys;
        keys.pods = std::move(touched);
        return Datastore::Change{std::move(state), changed, std::move(keys)};
      });
  return snap.status();
}

EndpointApi::EndpointApi(Datastore* store, Reconciler* reconciler, Endpoints* endpoints)
    : store_(store), reconciler_(reconciler), endpoints_(endpoints) {}

absl::StatusOr<Snapshot> EndpointApi::Write(
    const std::function<AttachmentChange(const State&, const Attachments&)>& change,
    absl::Duration timeout, AttachmentChange* result) {
  bool stored = false;
  ASSIGN_OR_RETURN(Snapshot snap, StoreChange(change, result, &stored));
  if (stored) reconciler_->Notify();
  // Outside the write lock: concurrent ADDs wait for their commits together (one sync).
  RETURN_IF_ERROR(reconciler_->WaitFor(snap.generation, timeout));
  return snap;
}

absl::StatusOr<Snapshot> EndpointApi::StoreChange(
    const std::function<AttachmentChange(const State&, const Attachments&)>& change,
    AttachmentChange* result, bool* stored) {
  RETURN_IF_ERROR(compiler::ValidateOptions(reconciler_->options().compile));
  absl::MutexLock w(endpoints_->write_mu());
  std::shared_ptr<const Attachments> before = endpoints_->Current();
  bool saved = false;
  absl::StatusOr<Snapshot> snap = store_->Update(
      [&](const State& base) -> absl::StatusOr<std::optional<Datastore::Change>> {
        *result = change(base, *before);
        if (!result->changed) return std::nullopt;
        // Input the compiler would reject stays out of the store. Only the pods the change
        // created or changed are checked (compiler::ValidateObject: Compile's own checks and
        // messages); the rest of the State passed them when it was stored. The same keys tell
        // the store what changed.
        ChangedKeys touched;
        touched.pods = result->touched;
        RETURN_IF_ERROR(compiler::ValidateChanged(result->state, touched));
        // The attachments are published before the State: a sync of the new generation must
        // see them (they decide which pods are local).
        RETURN_IF_ERROR(endpoints_->Save(result->attachments));
        saved = true;
        // At least one: a change of attachments alone still needs a new generation to sync
        // (its pods' locality changes; the reconciler reads the attachments at every sync).
        return Datastore::Change{std::move(result->state),
                                 std::max<uint64_t>(1, result->objects_changed),
                                 std::move(touched)};
      });
  if (!snap.ok() && saved) {
    absl::Status undo = endpoints_->Save(*before);
    if (!undo.ok()) LogError(absl::StrCat("restoring attachments: ", undo.ToString()));
  }
  *stored = snap.ok() && saved;
  return snap;
}

absl::StatusOr<v1::AttachResponse> EndpointApi::Attach(const v1::AttachRequest& request,
                                                       absl::Duration timeout) {
  if (!request.has_attachment()) return absl::InvalidArgumentError("attachment: required");
  ASSIGN_OR_RETURN(Attachment a, AttachmentFromApi(request.attachment(), "attachment"));
  a.netns_inode = NetnsInode(a.netns);
  a.attach_time = absl::Now();
  AttachmentChange result;
  ASSIGN_OR_RETURN(Snapshot snap,
                   Write([&](const State& s, const Attachments& at) { return agent::Attach(s, at, a); },
                         timeout, &result));
  v1::AttachResponse out;
  out.set_generation(snap.generation);
  std::set<std::string> replaced;
  for (const AttachmentKey& k : result.removed) {
    if (k.container_id != a.container_id) replaced.insert(k.container_id);
  }
  for (const std::string& id : replaced) out.add_replaced_container_ids(id);
  out.set_pod_known(result.pod_known);
  if (result.changed) {
    LogInfo(absl::StrCat(
        "attached ", a.Key().ToString(), " ",
        a.HasPod() ? absl::StrCat("pod ", a.PodKey()) : std::string("(not a pod)"), " ",
        IpList(a.ips),
        !a.HasPod() || result.pod_known ? "" : " (pod unknown: enforced with no labels)",
        result.replaced.empty() ? ""
                                : absl::StrCat(" replacing ", absl::StrJoin(result.replaced, ", ")),
        " generation ", snap.generation));
  }
  return out;
}

namespace {

// A DetachRequest's or ListAttachmentsRequest's selector fields, validated.
absl::Status CheckSelector(const std::string& network, const std::string& interface) {
  if (!network.empty() && !ValidNetworkName(network)) {
    return absl::InvalidArgumentError(
        absl::StrCat("network: \"", absl::CHexEscape(network), "\": not a CNI network name"));
  }
  if (!interface.empty() && !ValidInterfaceName(interface)) {
    return absl::InvalidArgumentError(
        absl::StrCat("interface: \"", absl::CHexEscape(interface), "\": not an interface name"));
  }
  return absl::OkStatus();
}

std::string KeyList(const std::vector<AttachmentKey>& keys) {
  std::vector<std::string> parts;
  for (const AttachmentKey& k : keys) parts.push_back(k.ToString());
  return absl::StrJoin(parts, ", ");
}

}  // namespace

absl::StatusOr<v1::DetachResponse> EndpointApi::Detach(const v1::DetachRequest& request,
                                                       absl::Duration timeout) {
  if (request.container_id().empty()) return absl::InvalidArgumentError("containerId: required");
  RETURN_IF_ERROR(CheckSelector(request.network(), request.interface()));
  const AttachmentSelector selector{request.network(), request.container_id(),
                                    request.interface()};
  AttachmentChange result;
  ASSIGN_OR_RETURN(Snapshot snap, Write(
                                      [&](const State& s, const Attachments& at) {
                                        return agent::Detach(s, at, selector);
                                      },
                                      timeout, &result));
  v1::DetachResponse out;
  out.set_found(result.found);
  out.set_generation(snap.generation);
  if (result.found) {
    LogInfo(absl::StrCat("detached ", KeyList(result.removed), " generation ", snap.generation));
  }
  return out;
}

absl::StatusOr<v1::GarbageCollectResponse> EndpointApi::GarbageCollect(
    const v1::GarbageCollectRequest& request, absl::Duration timeout) {
  if (request.network().empty()) return absl::InvalidArgumentError("network: required");
  RETURN_IF_ERROR(CheckSelector(request.network(), ""));
  std::set<std::pair<std::string, std::string>> valid;
  for (int i = 0; i < request.valid_size(); ++i) {
    const v1::AttachmentRef& r = request.valid(i);
    if (r.container_id().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("valid[", i, "].containerId: required"));
    }
    valid.emplace(r.container_id(), r.interface().empty() ? "eth0" : r.interface());
  }
  AttachmentChange result;
  ASSIGN_OR_RETURN(Snapshot snap, Write(
                                      [&](const State& s, const Attachments& at) {
                                        return agent::GarbageCollect(s, at, request.network(),
                                                                     valid);
                                      },
                                      timeout, &result));
  v1::GarbageCollectResponse out;
  out.set_generation(snap.generation);
  std::vector<std::string> removed;
  for (const AttachmentKey& k : result.removed) removed.push_back(k.ToString());
  std::sort(removed.begin(), removed.end());
  for (std::string& k : removed) out.add_removed(std::move(k));
  if (!removed.empty()) {
    LogInfo(absl::StrCat("garbage-collected network ", request.network(), ": ",
                         KeyList(result.removed), " generation ", snap.generation));
  }
  return out;
}

absl::StatusOr<v1::ListAttachmentsResponse> EndpointApi::List(
    const v1::ListAttachmentsRequest& request) {
  Snapshot snap = store_->Current();
  std::shared_ptr<const Attachments> attachments = endpoints_->Current();
  RETURN_IF_ERROR(CheckSelector(request.network(), request.interface()));
  std::vector<const Attachment*> selected;
  for (const auto& [key, a] : *attachments) {
    if (!request.container_id().empty() &&
        !AttachmentSelector{request.network(), request.container_id(), request.interface()}
             .Matches(key)) {
      continue;
    }
    if (request.container_id().empty() &&
        ((!request.network().empty() && !key.network.empty() && key.network != request.network()) ||
         (!request.interface().empty() && key.interface != request.interface()))) {
      continue;
    }
    selected.push_back(&a);
  }
  if (!request.container_id().empty() && selected.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "attachment ",
        AttachmentKey{request.network(), request.container_id(),
                      request.interface().empty() ? "*" : request.interface()}
            .ToString(),
        ": not found on this node"));
  }
  v1::ListAttachmentsResponse out;
  out.set_generation(snap.generation);
  std::shared_ptr<const nft::Program> committed;
  SyncStatus sync;
  absl::StatusOr<nft::Program> kernel = absl::UnavailableError("not read");
  if (request.verify()) {
    sync = reconciler_->status();
    // The kernel first: reading it waits for a sync in progress, after which the committed
    // program is the one that sync left (committed() does not wait).
    kernel = reconciler_->DumpKernel();
    committed = reconciler_->committed();
  }
  for (const Attachment* a : selected) {
    v1::AttachmentStatus* st = out.add_attachments();
    *st->mutable_attachment() = ToApi(*a);
    st->set_pod(a->PodKey());
    if (!request.verify()) continue;
    std::string problem;
    const Pod* pod = a->HasPod() ? snap.state->FindPod(a->PodKey()) : nullptr;
    if (!a->HasPod()) {
      // Not a pod: nothing dispatches it; enforced means no pod holds its addresses.
      for (const IpAddr& ip : a->ips) {
        if (const Pod* holder = snap.state->FindPodByIp(ip)) {
          problem = absl::StrCat("pod ", holder->Key(), " holds its address ", ip.ToString());
          break;
        }
      }
    } else if (pod == nullptr) {
      problem = absl::StrCat("pod ", a->PodKey(), " is not in the store (deleted through the API?)");
    } else if (!std::all_of(a->ips.begin(), a->ips.end(), [&](const IpAddr& ip) {
                 return std::find(pod->ips.begin(), pod->ips.end(), ip) != pod->ips.end();
               })) {
      problem = absl::StrCat("pod ", a->PodKey(), " has addresses ", IpList(pod->ips),
                             ", the attachment ", IpList(a->ips));
    } else if (pod->host_network) {
      problem = absl::StrCat("pod ", a->PodKey(), " is hostNetwork: policies do not apply to it");
    } else if (committed == nullptr || !sync.synced_once ||
               sync.applied_generation < snap.generation) {
      problem = absl::StrCat("generation ", snap.generation, " is not in the kernel yet (applied: ",
                             sync.applied_generation, ")");
    } else if (!kernel.ok()) {
      problem = absl::StrCat("cannot read the table from the kernel: ", kernel.status().message());
    } else {
      problem = KernelProblem(*committed, *kernel, *pod);
    }
    st->set_verified(problem.empty());
    st->set_problem(problem);
  }
  return out;
}

}  // namespace netpol::agent
