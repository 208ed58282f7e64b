// The node's CNI attachments and the EndpointService. See endpoints.h.
#include "agent/endpoints.h"

#include <algorithm>
#include <map>
#include <utility>

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
  absl::StatusOr<Attachments> decoded = Decode(*bytes);
  if (!decoded.ok()) {
    return absl::Status(decoded.status().code(),
                        absl::StrCat(path, ": ", decoded.status().message(),
                                     "; refusing to start from it (move it away: the runtime's "
                                     "next ADD of each pod attaches it again)"));
  }
  return std::unique_ptr<Endpoints>(new Endpoints(dir, *std::move(decoded)));
}

std::string Endpoints::Encode(const Attachments& attachments) {
  v1::ListAttachmentsResponse file;
  for (const auto& [id, a] : attachments) *file.add_attachments()->mutable_attachment() = ToApi(a);
  std::string payload;
  file.SerializeToString(&payload);
  return EncodeDurable(kFormat, payload);
}

absl::StatusOr<Attachments> Endpoints::Decode(const std::string& bytes) {
  ASSIGN_OR_RETURN(std::string payload, DecodeDurable(kFormat, bytes));
  v1::ListAttachmentsResponse file;
  if (!file.ParseFromString(payload)) return absl::DataLossError("attachments file does not parse");
  Attachments out;
  for (int i = 0; i < file.attachments_size(); ++i) {
    absl::StatusOr<Attachment> a =
        AttachmentFromApi(file.attachments(i).attachment(), absl::StrCat("attachments[", i, "]"));
    if (!a.ok()) return absl::DataLossError(a.status().message());
    out[a->container_id] = *std::move(a);
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

absl::StatusOr<std::vector<std::string>> ReconcileAtStart(
    Datastore* store, Endpoints* endpoints,
    const std::function<bool(const Attachment&)>& alive) {
  absl::MutexLock w(endpoints->write_mu());
  std::shared_ptr<const Attachments> before = endpoints->Current();
  std::vector<std::string> stale = StaleAttachments(*before, alive);
  bool saved = false;
  absl::StatusOr<Snapshot> snap = store->Update(
      [&](const State& base) -> absl::StatusOr<std::optional<Datastore::Change>> {
        State state = base;
        Attachments attachments = *before;
        uint64_t changed = 0;
        for (const std::string& id : stale) {
          AttachmentChange c = Detach(state, attachments, id);
          state = std::move(c.state);
          attachments = std::move(c.attachments);
        }
        changed += OverlayAttachments(attachments, &state);
        if (!stale.empty()) {
          RETURN_IF_ERROR(endpoints->Save(attachments));
          saved = true;
        }
        if (state == base) return std::nullopt;
        for (const auto& [k, p] : state.pods) {
          auto it = base.pods.find(k);
          changed += it == base.pods.end() || !(it->second == p) ? 1 : 0;
        }
        return Datastore::Change{std::move(state), changed};
      });
  if (!snap.ok()) {
    if (saved) {
      absl::Status undo = endpoints->Save(*before);
      if (!undo.ok()) LogError(absl::StrCat("restoring attachments: ", undo.ToString()));
    }
    return snap.status();
  }
  return stale;
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
        ChangedKeys touched = DiffStates(base, result->state);
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
  for (const std::string& id : result.replaced) out.add_replaced_container_ids(id);
  out.set_pod_known(result.pod_known);
  if (result.changed) {
    LogInfo(absl::StrCat("attached ", a.container_id, " pod ", a.PodKey(), " ", IpList(a.ips),
                         result.pod_known ? "" : " (pod unknown: enforced with no labels)",
                         result.replaced.empty()
                             ? ""
                             : absl::StrCat(" replacing ", absl::StrJoin(result.replaced, ", ")),
                         " generation ", snap.generation));
  }
  return out;
}

absl::StatusOr<v1::DetachResponse> EndpointApi::Detach(const v1::DetachRequest& request,
                                                       absl::Duration timeout) {
  if (request.container_id().empty()) return absl::InvalidArgumentError("containerId: required");
  AttachmentChange result;
  ASSIGN_OR_RETURN(Snapshot snap, Write(
                                      [&](const State& s, const Attachments& at) {
                                        return agent::Detach(s, at, request.container_id());
                                      },
                                      timeout, &result));
  v1::DetachResponse out;
  out.set_found(result.found);
  out.set_generation(snap.generation);
  if (result.found) {
    LogInfo(absl::StrCat("detached ", request.container_id(), " generation ", snap.generation));
  }
  return out;
}

absl::StatusOr<v1::ListAttachmentsResponse> EndpointApi::List(
    const v1::ListAttachmentsRequest& request) {
  Snapshot snap = store_->Current();
  std::shared_ptr<const Attachments> attachments = endpoints_->Current();
  std::vector<const Attachment*> selected;
  if (!request.container_id().empty()) {
    auto it = attachments->find(request.container_id());
    if (it == attachments->end()) {
      return absl::NotFoundError(
          absl::StrCat("attachment ", request.container_id(), ": not found on this node"));
    }
    selected.push_back(&it->second);
  } else {
    for (const auto& [id, a] : *attachments) selected.push_back(&a);
  }
  v1::ListAttachmentsResponse out;
  out.set_generation(snap.generation);
  std::shared_ptr<const nft::Program> committed;
  SyncStatus sync;
  absl::StatusOr<nft::Program> kernel = absl::UnavailableError("not read");
  if (request.verify()) {
    sync = reconciler_->status();
    committed = reconciler_->committed();
    kernel = reconciler_->DumpKernel();
  }
  for (const Attachment* a : selected) {
    v1::AttachmentStatus* st = out.add_attachments();
    *st->mutable_attachment() = ToApi(*a);
    st->set_pod(a->PodKey());
    if (!request.verify()) continue;
    std::string problem;
    const Pod* pod = snap.state->FindPod(a->PodKey());
    if (pod == nullptr) {
      problem = absl::StrCat("pod ", a->PodKey(), " is not in the store (deleted through the API?)");
    } else if (pod->ips != a->ips) {
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
