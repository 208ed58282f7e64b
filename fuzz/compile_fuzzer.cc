// Fuzz target: the validator + compiler pipeline, from bytes to a committed program.
//
// The input is YAML, optionally in two parts separated by a line `#%next` (a YAML comment, so
// the whole input is still one YAML stream). Part one is state A; part two, when present, is
// state B; without it, B is A minus its last object. For each state that loads (lenient):
//   load -> State -> Compile (twice) -> RenderProgram -> FakeBackend commit of FullReplace,
// then A -> B and B -> A by Diff on the same fake backend.
//
// Invariants: no crash or sanitizer report; a Compile error is InvalidArgument; Compile is
// deterministic (equal Programs and byte-equal renderings); every compiled Program is valid
// (nft::ValidateProgram) and the fake backend accepts FullReplace and every Diff, after which it
// holds exactly the target program. A rejection is a compiler or Diff bug.
// Revocation completeness (engine/conntrack/revocation.h): for a sample of flows between the
// states' addresses on the ports the programs mention, every flow that A's program accepts and
// B's denies matches a filter computed from Diff(A, B), and from FullReplace(B).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <vector>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/compiler/compiler.h"
#include "engine/conntrack/revocation.h"
#include "engine/model/loader.h"
#include "engine/nft/diff.h"
#include "engine/nft/fake.h"
#include "engine/nft/program.h"
#include "engine/nft/transaction.h"
#include "fuzz/fuzz_check.h"

namespace netpol {
namespace {

constexpr absl::string_view kSeparator = "\n#%next\n";
constexpr char kNode[] = "node-1";

std::optional<State> LoadState(absl::string_view text, bool drop_last) {
  LoadOptions options;
  options.source = "fuzz";
  options.strict = false;
  absl::StatusOr<LoadResult> loaded = LoadYaml(text, options);
  if (!loaded.ok()) return std::nullopt;
  if (drop_last && !loaded->objects.empty()) loaded->objects.pop_back();
  State state;
  for (const Object& object : loaded->objects) Upsert(object, &state);
  return state;
}

// Pods on kNode are local by nodeName; pods without a nodeName are local as if a CNI had
// attached them, so both ways of being local are exercised.
compiler::CompileOptions OptionsFor(const State& state) {
  compiler::CompileOptions options;
  options.node_name = kNode;
  for (const auto& [key, pod] : state.pods) {
    if (pod.node_name.empty()) options.attached_pods.insert(key);
  }
  return options;
}

std::optional<nft::Program> CompileChecked(const State& state) {
  const compiler::CompileOptions options = OptionsFor(state);
  absl::StatusOr<nft::Program> first = compiler::Compile(state, options);
  absl::StatusOr<nft::Program> second = compiler::Compile(state, options);
  if (!first.ok()) {
    FUZZ_CHECK(first.status().code() == absl::StatusCode::kInvalidArgument,
               first.status().ToString());
    FUZZ_CHECK(first.status() == second.status(),
               absl::StrCat("nondeterministic error: ", first.status().ToString(), " vs ",
                            second.status().ToString()));
    return std::nullopt;
  }
  FUZZ_CHECK(second.ok(), second.status().ToString());
  const std::string text = nft::RenderProgram(*first);
  FUZZ_CHECK(*first == *second, absl::StrCat("nondeterministic Program\n", text));
  FUZZ_CHECK(text == nft::RenderProgram(*second), "nondeterministic rendering");
  absl::Status valid = nft::ValidateProgram(*first);
  FUZZ_CHECK(valid.ok(), absl::StrCat(valid.ToString(), "\n", text));
  return *std::move(first);
}

// Commits `tx` and checks that `fake` then holds exactly `want`.
void CommitExpect(nft::FakeBackend* fake, const nft::Transaction& tx, const nft::Program& want,
                  const char* what) {
  absl::Status status = fake->Commit(tx);
  FUZZ_CHECK(status.ok(), absl::StrCat(what, " rejected: ", status.ToString(), "\n--- script:\n",
                                       tx.ToNftText(), "\n--- target:\n",
                                       nft::RenderProgram(want)));
  absl::StatusOr<nft::Program> dump = fake->Dump(want.table);
  FUZZ_CHECK(dump.ok(), dump.status().ToString());
  const nft::Program canonical = nft::Canonical(want);
  FUZZ_CHECK(*dump == canonical,
             absl::StrCat(what, ": the backend holds\n", nft::RenderProgram(*dump),
                          "\n--- instead of\n", nft::RenderProgram(canonical)));
  FUZZ_CHECK(nft::Diff(*dump, want).empty(), absl::StrCat(what, ": Diff(target, target) not empty"));
}

// Addresses and ports to probe: pod addresses of both states, two outside addresses per family,
// and the ports the programs' elements start or end at. Bounded so one input stays fast.
std::vector<conntrack::Flow> SampleFlows(const State& a, const State& b, const nft::Program& pa,
                                         const nft::Program& pb) {
  constexpr size_t kMaxAddrs = 10, kMaxPorts = 8;
  std::set<IpAddr> addrs;
  for (const State* s : {&a, &b}) {
    for (const auto& [key, pod] : s->pods) {
      for (const IpAddr& ip : pod.ips) {
        if (addrs.size() < kMaxAddrs) addrs.insert(ip);
      }
    }
  }
  for (const char* text : {"192.168.7.7", "8.8.8.8", "2001:db8::7", "fd00::99"}) {
    addrs.insert(*IpAddr::Parse(text));
  }
  std::set<uint16_t> ports = {80};
  for (const nft::Program* p : {&pa, &pb}) {
    for (const auto& [name, els] : p->elements) {
      const nft::Set& set = p->sets.at(name);
      for (const nft::Element& e : els) {
        for (size_t i = 0; i < e.key.size() && i < set.key.size(); ++i) {
          if (set.key[i] != nft::FieldType::kInetService || ports.size() >= kMaxPorts) continue;
          ports.insert(static_cast<uint16_t>(e.key[i].lo));
          ports.insert(static_cast<uint16_t>(e.key[i].hi));
        }
      }
    }
  }
  std::vector<conntrack::Flow> flows;
  for (const IpAddr& src : addrs) {
    for (const IpAddr& dst : addrs) {
      if (src.family != dst.family || src == dst) continue;
      for (uint8_t proto : {6, 17, 132}) {
        for (uint16_t port : ports) {
          conntrack::Flow f;
          f.family = src.family;
          f.src = src;
          f.dst = dst;
          f.l4proto = proto;
          f.has_ports = true;
          f.sport = 40000;
          f.dport = port;
          flows.push_back(f);
        }
      }
    }
  }
  return flows;
}

void CheckRevocation(const State& a, const State& b, const nft::Program& pa,
                     const nft::Program& pb) {
  const std::vector<conntrack::FlowFilter> by_diff =
      conntrack::RevocationFilters(pa, nft::Diff(pa, pb));
  const std::vector<conntrack::FlowFilter> by_full =
      conntrack::RevocationFilters(pa, nft::FullReplace(pb));
  for (const auto* filters : {&by_diff, &by_full}) {
    for (const conntrack::FlowFilter& f : *filters) {
      FUZZ_CHECK(f.src_lo.family == f.family && f.src_hi.family == f.family &&
                     f.dst_lo.family == f.family && f.dst_hi.family == f.family,
                 f.ToString());
      FUZZ_CHECK(f.src_lo <= f.src_hi && f.dst_lo <= f.dst_hi && f.proto_lo <= f.proto_hi &&
                     f.dport_lo <= f.dport_hi,
                 f.ToString());
    }
  }
  for (const conntrack::Flow& flow : SampleFlows(a, b, pa, pb)) {
    if (!conntrack::StillAllowed(pa, flow) || conntrack::StillAllowed(pb, flow)) continue;
    for (const auto* filters : {&by_diff, &by_full}) {
      bool matched = false;
      for (const conntrack::FlowFilter& f : *filters) matched = matched || f.Matches(flow);
      FUZZ_CHECK(matched, absl::StrCat("denied by the change but matched by no filter",
                                       filters == &by_diff ? " (Diff)" : " (FullReplace)", ": ",
                                       flow.ToString(), "\n--- Diff:\n",
                                       nft::Diff(pa, pb).ToNftText()));
    }
  }
}

}  // namespace
}  // namespace netpol

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace netpol;
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t cut = input.find(kSeparator);
  std::optional<State> a, b;
  if (cut == absl::string_view::npos) {
    a = LoadState(input, false);
    b = LoadState(input, true);
  } else {
    a = LoadState(input.substr(0, cut), false);
    b = LoadState(input.substr(cut + kSeparator.size()), false);
  }
  if (!a) return 0;
  std::optional<nft::Program> pa = CompileChecked(*a);
  std::optional<nft::Program> pb = b ? CompileChecked(*b) : std::nullopt;
  if (!pa) return 0;

  nft::FakeBackend fake;
  const nft::Transaction full = nft::FullReplace(*pa);
  (void)full.ToNftText();
  CommitExpect(&fake, full, *pa, "FullReplace(A)");
  if (!pb) return 0;
  CommitExpect(&fake, nft::Diff(*pa, *pb), *pb, "Diff(A, B)");
  CommitExpect(&fake, nft::Diff(*pb, *pa), *pa, "Diff(B, A)");
  CheckRevocation(*a, *b, *pa, *pb);
  return 0;
}
