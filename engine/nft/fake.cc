// FakeBackend: the kernel's nf_tables transaction semantics over value types.
#include "engine/nft/fake.h"

#include <algorithm>
#include <functional>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/util/status_macros.h"

namespace netpol::nft {
namespace {

using TableState = FakeBackend::TableState;
using SetState = FakeBackend::SetState;

// strerror texts of the errnos the kernel returns for these conditions, so that messages read
// like the real backend's.
constexpr char kExists[] = "File exists";                    // EEXIST
constexpr char kNoEntry[] = "No such file or directory";     // ENOENT
constexpr char kBusy[] = "Device or resource busy";          // EBUSY
constexpr char kNotSupported[] = "Operation not supported";  // EOPNOTSUPP
constexpr char kLoop[] = "Too many links";                   // ELOOP/EMLINK as nft reports them

// A shared rule's error with where it was found in front.
absl::Status At(const std::string& what, absl::Status s) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
}

bool IsJumpOrGoto(const Verdict& v) {
  return v.kind == Verdict::Kind::kJump || v.kind == Verdict::Kind::kGoto;
}

absl::Status ValidateTarget(const TableState& t, const Verdict& v, const std::string& what) {
  RETURN_IF_ERROR(At(what, ValidateVerdict(v)));
  if (!IsJumpOrGoto(v)) return absl::OkStatus();
  auto it = t.chains.find(v.chain);
  if (it == t.chains.end()) {
    return absl::NotFoundError(absl::StrCat(what, ": ", RenderVerdict(v), ": chain ", v.chain,
                                            " does not exist: ", kNoEntry));
  }
  if (it->second.base.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": ", RenderVerdict(v), ": cannot jump to base chain: ", kNotSupported));
  }
  return absl::OkStatus();
}

absl::Status ValidateRule(const TableState& t, const Rule& rule) {
  const std::string what = absl::StrCat("rule \"", RenderRule(rule), "\"");
  RETURN_IF_ERROR(At(what, ValidateRuleShape(rule)));
  for (size_t i = 0; i < rule.matches.size(); ++i) {
    const auto* lk = std::get_if<LookupMatch>(&rule.matches[i]);
    if (lk == nullptr) continue;
    const std::string mwhat = absl::StrCat(what, ": matches[", i, "]");
    auto it = t.sets.find(lk->set);
    if (it == t.sets.end()) {
      return absl::NotFoundError(
          absl::StrCat(mwhat, ": set ", lk->set, " does not exist: ", kNoEntry));
    }
    RETURN_IF_ERROR(At(mwhat, ValidateLookup(*lk, it->second.def)));
  }
  if (rule.verdict.has_value()) RETURN_IF_ERROR(ValidateTarget(t, *rule.verdict, what));
  return absl::OkStatus();
}

absl::Status ValidateElement(const TableState& t, const Set& set, const Element& e) {
  const std::string what = RenderElement(set, e);
  RETURN_IF_ERROR(At(what, ValidateElementShape(set, e)));
  if (e.verdict.has_value()) RETURN_IF_ERROR(ValidateTarget(t, *e.verdict, what));
  return absl::OkStatus();
}

bool Overlaps(const std::vector<FieldValue>& a, const std::vector<FieldValue>& b,
              const std::vector<FieldType>& types) {
  for (size_t i = 0; i < types.size(); ++i) {
    bool addr = types[i] == FieldType::kIpv4Addr || types[i] == FieldType::kIpv6Addr;
    bool disjoint = addr ? (a[i].addr_hi < b[i].addr_lo || b[i].addr_hi < a[i].addr_lo)
                         : (a[i].hi < b[i].lo || b[i].hi < a[i].lo);
    if (disjoint) return false;
  }
  return true;
}

// Returns where `chain` is referenced from (rules of other chains, verdict-map elements), or
// an empty string.
std::string ChainReferrer(const TableState& t, const std::string& chain) {
  auto names = [&](const std::optional<Verdict>& v) {
    return v.has_value() && IsJumpOrGoto(*v) && v->chain == chain;
  };
  for (const auto& [name, c] : t.chains) {
    if (name == chain) continue;
    for (const Rule& r : c.rules) {
      if (names(r.verdict)) return absl::StrCat("rule \"", RenderRule(r), "\" in chain ", name);
    }
  }
  for (const auto& [name, s] : t.sets) {
    for (const auto& [key, e] : s.elements) {
      if (names(e.verdict)) {
        return absl::StrCat("element ", RenderElement(s.def, e), " of map ", name);
      }
    }
  }
  return "";
}

std::string SetReferrer(const TableState& t, const std::string& set) {
  for (const auto& [name, c] : t.chains) {
    for (const Rule& r : c.rules) {
      for (const Match& m : r.matches) {
        const auto* lk = std::get_if<LookupMatch>(&m);
        if (lk != nullptr && lk->set == set) {
          return absl::StrCat("rule \"", RenderRule(r), "\" in chain ", name);
        }
      }
    }
  }
  return "";
}

absl::Status ApplyTable(std::optional<TableState>* state, const std::string& table,
                        const Command& c) {
  switch (c.verb) {
    case Verb::kAdd:
      if (!state->has_value()) {
        RETURN_IF_ERROR(ValidateComment(c.comment));
        state->emplace();
        (*state)->comment = c.comment;
      }
      return absl::OkStatus();
    case Verb::kCreate:
      if (state->has_value()) return absl::AlreadyExistsError(kExists);
      RETURN_IF_ERROR(ValidateComment(c.comment));
      state->emplace();
      (*state)->comment = c.comment;
      return absl::OkStatus();
    case Verb::kFlush:
      if (!state->has_value()) return absl::NotFoundError(kNoEntry);
      for (auto& [name, chain] : (*state)->chains) chain.rules.clear();
      (*state)->counts.clear();
      return absl::OkStatus();
    case Verb::kDelete:
      if (!state->has_value()) return absl::NotFoundError(kNoEntry);
      state->reset();
      return absl::OkStatus();
    case Verb::kDestroy:
      state->reset();
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError("unknown verb");
}

absl::Status ApplyChain(TableState& t, const Command& c) {
  const Chain& in = c.chain;
  auto it = t.chains.find(in.name);
  switch (c.verb) {
    case Verb::kAdd:
    case Verb::kCreate: {
      RETURN_IF_ERROR(ValidateObjectName("chain", in.name));
      RETURN_IF_ERROR(ValidateComment(in.comment));
      if (!in.rules.empty()) {
        return absl::InvalidArgumentError("chain command carries rules; add them with kRule");
      }
      if (it == t.chains.end()) {
        Chain chain = in;
        t.chains.emplace(in.name, std::move(chain));
        return absl::OkStatus();
      }
      if (c.verb == Verb::kCreate) return absl::AlreadyExistsError(kExists);
      if (!in.base.has_value()) return absl::OkStatus();  // nothing to update
      const auto& old = it->second.base;
      if (!old.has_value() || old->hook != in.base->hook || old->priority != in.base->priority) {
        return absl::FailedPreconditionError(
            absl::StrCat("chain exists with another type, hook or priority: ", kNotSupported));
      }
      it->second.base->policy_drop = in.base->policy_drop;  // the kernel updates the policy
      return absl::OkStatus();
    }
    case Verb::kFlush:
      if (it == t.chains.end()) return absl::NotFoundError(kNoEntry);
      it->second.rules.clear();
      t.counts.erase(in.name);
      return absl::OkStatus();
    case Verb::kDelete:
    case Verb::kDestroy: {
      if (it == t.chains.end()) {
        return c.verb == Verb::kDestroy ? absl::OkStatus() : absl::NotFoundError(kNoEntry);
      }
      std::string ref = ChainReferrer(t, in.name);
      if (!ref.empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat("still referenced by ", ref, ": ", kBusy));
      }
      t.chains.erase(it);
      t.counts.erase(in.name);
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError("unknown verb");
}

absl::Status ApplyRule(TableState& t, const Command& c) {
  if (c.verb != Verb::kAdd) {
    return absl::InvalidArgumentError(
        "rules support add only (netpol never edits single rules; flush the chain instead)");
  }
  auto it = t.chains.find(c.chain.name);
  if (it == t.chains.end()) return absl::NotFoundError(kNoEntry);
  RETURN_IF_ERROR(ValidateRule(t, c.rule));
  it->second.rules.push_back(c.rule);
  if (c.rule.counter && (c.rule.counter_packets != 0 || c.rule.counter_bytes != 0)) {
    std::vector<std::pair<uint64_t, uint64_t>>& v = t.counts[c.chain.name];
    v.resize(it->second.rules.size());
    v.back() = {c.rule.counter_packets, c.rule.counter_bytes};
  }
  return absl::OkStatus();
}

absl::Status ApplySet(TableState& t, const Command& c) {
  auto it = t.sets.find(c.set.name);
  switch (c.verb) {
    case Verb::kAdd:
    case Verb::kCreate:
      RETURN_IF_ERROR(ValidateSetDef(c.set));
      if (it == t.sets.end()) {
        t.sets.emplace(c.set.name, SetState{c.set, {}});
        return absl::OkStatus();
      }
      if (c.verb == Verb::kCreate) return absl::AlreadyExistsError(kExists);
      if (!(it->second.def == c.set)) {
        return absl::AlreadyExistsError(
            absl::StrCat("set exists with another definition: ", kExists));
      }
      return absl::OkStatus();
    case Verb::kFlush:
      if (it == t.sets.end()) return absl::NotFoundError(kNoEntry);
      it->second.elements.clear();
      return absl::OkStatus();
    case Verb::kDelete:
    case Verb::kDestroy: {
      if (it == t.sets.end()) {
        return c.verb == Verb::kDestroy ? absl::OkStatus() : absl::NotFoundError(kNoEntry);
      }
      std::string ref = SetReferrer(t, c.set.name);
      if (!ref.empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat("still referenced by ", ref, ": ", kBusy));
      }
      t.sets.erase(it);
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError("unknown verb");
}

absl::Status ApplyElements(TableState& t, const Command& c) {
  if (c.verb == Verb::kFlush) {
    return absl::InvalidArgumentError("flush applies to sets, not elements");
  }
  auto it = t.sets.find(c.set.name);
  if (it == t.sets.end()) {
    return absl::NotFoundError(absl::StrCat("set does not exist: ", kNoEntry));
  }
  SetState& s = it->second;
  for (const Element& e : c.elements) {
    const std::string what = RenderElement(s.def, e);
    if (c.verb == Verb::kDelete || c.verb == Verb::kDestroy) {
      RETURN_IF_ERROR(At(what, ValidateElementShape(s.def, e, /*keys_only=*/true)));
      auto eit = s.elements.find(e.key);
      if (eit == s.elements.end()) {
        if (c.verb == Verb::kDestroy) continue;
        return absl::NotFoundError(absl::StrCat(what, ": ", kNoEntry));
      }
      s.elements.erase(eit);
      continue;
    }
    RETURN_IF_ERROR(ValidateElement(t, s.def, e));
    auto eit = s.elements.find(e.key);
    if (eit != s.elements.end()) {
      if (c.verb == Verb::kCreate)
        return absl::AlreadyExistsError(absl::StrCat(what, ": ", kExists));
      if (!(eit->second.verdict == e.verdict)) {
        return absl::AlreadyExistsError(
            absl::StrCat(what, ": ", kExists, " (key exists with another verdict)"));
      }
      continue;  // the kernel keeps the existing element, comment included
    }
    if (s.def.interval) {
      for (const auto& [key, old] : s.elements) {
        if (Overlaps(key, e.key, s.def.key)) {
          return absl::AlreadyExistsError(
              absl::StrCat(what, ": overlaps element ", RenderElement(s.def, old), ": ", kExists));
        }
      }
    }
    s.elements.emplace(e.key, e);
  }
  return absl::OkStatus();
}

// Returns an error when following jumps, gotos and verdict maps can lead from a chain back to
// itself (the kernel refuses such a commit with ELOOP).
absl::Status CheckLoops(const TableState& t) {
  std::map<std::string, std::set<std::string>> edges;
  for (const auto& [name, c] : t.chains) {
    auto& out = edges[name];
    for (const Rule& r : c.rules) {
      if (r.verdict.has_value() && IsJumpOrGoto(*r.verdict)) out.insert(r.verdict->chain);
      for (const Match& m : r.matches) {
        const auto* lk = std::get_if<LookupMatch>(&m);
        if (lk == nullptr || !lk->vmap) continue;
        auto sit = t.sets.find(lk->set);
        if (sit == t.sets.end()) continue;
        for (const auto& [key, e] : sit->second.elements) {
          if (e.verdict.has_value() && IsJumpOrGoto(*e.verdict)) out.insert(e.verdict->chain);
        }
      }
    }
  }
  enum Color { kWhite, kGrey, kBlack };
  std::map<std::string, Color> color;
  std::vector<std::string> path;
  std::string cycle;
  std::function<bool(const std::string&)> visit = [&](const std::string& n) {
    color[n] = kGrey;
    path.push_back(n);
    for (const std::string& next : edges[n]) {
      if (color[next] == kGrey) {
        auto start = std::find(path.begin(), path.end(), next);
        std::vector<std::string> loop(start, path.end());
        loop.push_back(next);
        cycle = absl::StrJoin(loop, " -> ");
        return true;
      }
      if (color[next] == kWhite && visit(next)) return true;
    }
    path.pop_back();
    color[n] = kBlack;
    return false;
  };
  for (const auto& [name, c] : t.chains) {
    if (color[name] == kWhite && visit(name)) {
      return absl::FailedPreconditionError(absl::StrCat("jump loop ", cycle, ": ", kLoop));
    }
  }
  return absl::OkStatus();
}

Program ToProgram(const std::string& table, const TableState& t) {
  Program p;
  p.table = table;
  p.comment = t.comment;
  p.chains = t.chains;
  for (const auto& [name, s] : t.sets) {
    p.sets[name] = s.def;
    if (s.elements.empty()) continue;
    auto& out = p.elements[name];
    for (const auto& [key, e] : s.elements) out.push_back(e);
  }
  return p;
}

}  // namespace

absl::Status FakeBackend::Commit(const Transaction& tx) {
  ++commit_count_;
  if (auto f = failures_.find(commit_count_); f != failures_.end()) {
    absl::Status s = f->second;
    failures_.erase(f);
    return s;
  }
  const std::string& table = tx.table();
  RETURN_IF_ERROR(ValidateObjectName("table", table));
  std::optional<TableState> state;
  if (auto it = tables_.find(table); it != tables_.end()) state = it->second;  // work on a copy
  const auto& commands = tx.commands();
  for (size_t i = 0; i < commands.size(); ++i) {
    const Command& c = commands[i];
    absl::Status s;
    if (c.kind == ObjectKind::kTable) {
      s = ApplyTable(&state, table, c);
    } else if (!state.has_value()) {
      s = absl::NotFoundError(absl::StrCat("table inet ", table, " does not exist: ", kNoEntry));
    } else {
      switch (c.kind) {
        case ObjectKind::kChain:
          s = ApplyChain(*state, c);
          break;
        case ObjectKind::kRule:
          s = ApplyRule(*state, c);
          break;
        case ObjectKind::kSet:
          s = ApplySet(*state, c);
          break;
        case ObjectKind::kElement:
          s = ApplyElements(*state, c);
          break;
        case ObjectKind::kTable:
          break;
      }
    }
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat(DescribeCommand(table, c), ": ", s.message()));
    }
  }
  if (state.has_value()) {
    absl::Status s = CheckLoops(*state);
    if (!s.ok())
      return absl::Status(s.code(), absl::StrCat("commit table inet ", table, ": ", s.message()));
    tables_[table] = std::move(*state);
  } else {
    tables_.erase(table);
  }
  return absl::OkStatus();
}

absl::StatusOr<Program> FakeBackend::Dump(const std::string& table) {
  auto it = tables_.find(table);
  if (it == tables_.end()) {
    return absl::NotFoundError(absl::StrCat("table inet ", table, ": ", kNoEntry));
  }
  return ToProgram(table, it->second);
}

absl::StatusOr<std::vector<RuleCount>> FakeBackend::ReadCounters(const std::string& table) {
  auto it = tables_.find(table);
  if (it == tables_.end()) {
    return absl::NotFoundError(absl::StrCat("table inet ", table, ": ", kNoEntry));
  }
  const TableState& t = it->second;
  std::vector<RuleCount> out;
  for (const auto& [name, chain] : t.chains) {
    auto c = t.counts.find(name);
    for (size_t i = 0; i < chain.rules.size(); ++i) {
      if (!chain.rules[i].counter) continue;
      RuleCount rc;
      rc.chain = name;
      rc.index = i;
      rc.comment = chain.rules[i].comment;
      if (c != t.counts.end() && i < c->second.size()) {
        rc.packets = c->second[i].first;
        rc.bytes = c->second[i].second;
      }
      out.push_back(std::move(rc));
    }
  }
  return out;
}

absl::Status FakeBackend::AddPackets(const std::string& table, const std::string& chain,
                                     size_t index, uint64_t packets, uint64_t bytes) {
  auto it = tables_.find(table);
  if (it == tables_.end()) {
    return absl::NotFoundError(absl::StrCat("table inet ", table, ": ", kNoEntry));
  }
  TableState& t = it->second;
  auto c = t.chains.find(chain);
  if (c == t.chains.end() || index >= c->second.rules.size()) {
    return absl::NotFoundError(absl::StrCat("chain ", chain, " rule ", index, ": ", kNoEntry));
  }
  if (!c->second.rules[index].counter) {
    return absl::InvalidArgumentError(absl::StrCat("chain ", chain, " rule ", index,
                                                   " has no counter"));
  }
  std::vector<std::pair<uint64_t, uint64_t>>& v = t.counts[chain];
  if (v.size() <= index) v.resize(index + 1);
  v[index].first += packets;
  v[index].second += bytes;
  return absl::OkStatus();
}

void FakeBackend::FailCommit(int n, absl::Status status) {
  failures_[commit_count_ + n] = std::move(status);
}

std::vector<std::string> FakeBackend::Tables() const {
  std::vector<std::string> out;
  for (const auto& [name, t] : tables_) out.push_back(name);
  return out;
}

absl::StatusOr<std::string> FakeBackend::Render(const std::string& table,
                                                const RenderOptions& options) const {
  auto it = tables_.find(table);
  if (it == tables_.end()) {
    return absl::NotFoundError(absl::StrCat("table inet ", table, ": ", kNoEntry));
  }
  return RenderProgram(ToProgram(table, it->second), options);
}

absl::Status ValidateProgram(const Program& program) {
  for (const auto& [name, chain] : program.chains) {
    if (name != chain.name) {
      return absl::InvalidArgumentError(
          absl::StrCat("program ", program.table, ": chains[", name, "] is named ", chain.name));
    }
  }
  for (const auto& [name, set] : program.sets) {
    if (name != set.name) {
      return absl::InvalidArgumentError(
          absl::StrCat("program ", program.table, ": sets[", name, "] is named ", set.name));
    }
  }
  for (const auto& [name, elements] : program.elements) {
    auto sit = program.sets.find(name);
    if (sit == program.sets.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("program ", program.table, ": elements[", name, "]: no such set"));
    }
    std::set<std::vector<FieldValue>> keys;
    for (const Element& e : elements) {
      if (!keys.insert(e.key).second) {
        return absl::InvalidArgumentError(absl::StrCat("program ", program.table, ": elements[",
                                                       name, "]: duplicate key ",
                                                       RenderElement(sit->second, e)));
      }
    }
  }
  FakeBackend fake;
  Transaction tx(program.table);
  tx.AddProgram(program);
  return fake.Commit(tx);
}

}  // namespace netpol::nft
