// Diff and FullReplace; see diff.h for the command order and why it is safe.
#include "engine/nft/diff.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace netpol::nft {
namespace {

using ElementMap = std::map<std::vector<FieldValue>, const Element*>;

ElementMap ElementsOf(const Program& p, const std::string& set) {
  ElementMap out;
  auto it = p.elements.find(set);
  if (it == p.elements.end()) return out;
  for (const Element& e : it->second) out[e.key] = &e;
  return out;
}

// Whether `next` can be reached from `prev` by `add chain` (the kernel updates a base chain's
// policy in place) rather than delete and add.
bool Updatable(const Chain& prev, const Chain& next) {
  if (prev.comment != next.comment) return false;
  if (prev.base.has_value() != next.base.has_value()) return false;
  if (!prev.base.has_value()) return true;
  return prev.base->hook == next.base->hook && prev.base->priority == next.base->priority;
}

bool ReferencesAny(const Rule& r, const std::set<std::string>& chains,
                   const std::set<std::string>& sets) {
  if (r.verdict.has_value() && chains.count(r.verdict->chain)) return true;
  for (const Match& m : r.matches) {
    const auto* lk = std::get_if<LookupMatch>(&m);
    if (lk != nullptr && sets.count(lk->set)) return true;
  }
  return false;
}

}  // namespace

Transaction Diff(const Program& from, const Program& to) {
  Transaction tx(to.table);

  // Classify sets and chains.
  std::set<std::string> deleted_sets, recreated_sets, new_sets;
  for (const auto& [name, set] : from.sets) {
    auto it = to.sets.find(name);
    if (it == to.sets.end()) {
      deleted_sets.insert(name);
    } else if (!(it->second == set)) {
      recreated_sets.insert(name);
    }
  }
  for (const auto& [name, set] : to.sets) {
    if (!from.sets.count(name)) new_sets.insert(name);
  }
  std::set<std::string> deleted_chains, recreated_chains, new_chains, policy_changed;
  for (const auto& [name, chain] : from.chains) {
    auto it = to.chains.find(name);
    if (it == to.chains.end()) {
      deleted_chains.insert(name);
    } else if (!Updatable(chain, it->second)) {
      recreated_chains.insert(name);
    } else if (!(chain.base == it->second.base)) {
      policy_changed.insert(name);
    }
  }
  for (const auto& [name, chain] : to.chains) {
    if (!from.chains.count(name)) new_chains.insert(name);
  }
  std::set<std::string> gone_chains = deleted_chains, gone_sets = deleted_sets;
  gone_chains.insert(recreated_chains.begin(), recreated_chains.end());
  gone_sets.insert(recreated_sets.begin(), recreated_sets.end());

  // Surviving chains whose rules must be re-added.
  std::set<std::string> rewritten;
  for (const auto& [name, chain] : from.chains) {
    if (gone_chains.count(name)) continue;
    const Chain& next = to.chains.at(name);
    bool rewrite = !(chain.rules == next.rules);
    for (const Rule& r : chain.rules) {
      rewrite = rewrite || ReferencesAny(r, gone_chains, gone_sets);
    }
    if (rewrite) rewritten.insert(name);
  }

  // 1. New chains and sets; base-chain policy updates.
  for (const std::string& name : new_chains) tx.AddChain(to.chains.at(name));
  for (const std::string& name : policy_changed) tx.AddChain(to.chains.at(name));
  for (const std::string& name : new_sets) tx.AddSet(to.sets.at(name));

  // 2. Flush chains that lose their rules.
  for (const std::string& name : rewritten) tx.FlushChain(name);
  for (const std::string& name : gone_chains) {
    if (!from.chains.at(name).rules.empty()) tx.FlushChain(name);
  }

  // 3. Element deletions in surviving sets; remember what to add back in step 8.
  std::map<std::string, std::vector<Element>> element_adds;
  for (const auto& [name, set] : to.sets) {
    if (new_sets.count(name) || recreated_sets.count(name)) continue;
    ElementMap old_elems = ElementsOf(from, name), new_elems = ElementsOf(to, name);
    std::vector<Element> dels, adds;
    for (const auto& [key, e] : old_elems) {
      auto it = new_elems.find(key);
      bool names_gone = e->verdict.has_value() && gone_chains.count(e->verdict->chain);
      if (it == new_elems.end() || !(*it->second == *e) || names_gone) {
        Element k;
        k.key = key;
        dels.push_back(k);
      }
    }
    for (const auto& [key, e] : new_elems) {
      auto it = old_elems.find(key);
      bool names_gone = e->verdict.has_value() && gone_chains.count(e->verdict->chain);
      if (it == old_elems.end() || !(*it->second == *e) || names_gone) adds.push_back(*e);
    }
    if (!dels.empty()) tx.DeleteElements(set, std::move(dels));
    if (!adds.empty()) element_adds[name] = std::move(adds);
  }

  // 4-5. Deletions, now that nothing references them.
  for (const std::string& name : gone_sets) tx.DeleteSet(from.sets.at(name));
  for (const std::string& name : gone_chains) tx.DeleteChain(name);

  // 6. Re-created chains and sets.
  for (const std::string& name : recreated_chains) tx.AddChain(to.chains.at(name));
  for (const std::string& name : recreated_sets) tx.AddSet(to.sets.at(name));

  // 7. Rules.
  for (const auto& [name, chain] : to.chains) {
    if (!new_chains.count(name) && !recreated_chains.count(name) && !rewritten.count(name)) {
      continue;
    }
    for (const Rule& r : chain.rules) tx.AddRule(name, r);
  }

  // 8. Elements.
  for (const auto& [name, set] : to.sets) {
    if (new_sets.count(name) || recreated_sets.count(name)) {
      auto it = to.elements.find(name);
      if (it != to.elements.end() && !it->second.empty()) tx.AddElements(set, it->second);
      continue;
    }
    auto it = element_adds.find(name);
    if (it != element_adds.end()) tx.AddElements(set, std::move(it->second));
  }
  return tx;
}

size_t CarryCounters(const std::vector<RuleCount>& counts, Transaction* tx) {
  // By chain and comment, the counts in rule order.
  std::map<std::pair<std::string, std::string>, std::vector<const RuleCount*>> old;
  bool any = false;
  for (const RuleCount& c : counts) {
    old[{c.chain, c.comment}].push_back(&c);
    any |= c.packets != 0 || c.bytes != 0;
  }
  if (!any) return 0;
  std::map<std::pair<std::string, std::string>, size_t> taken;
  size_t carried = 0;
  for (Command& c : tx->mutable_commands()) {
    if (c.kind != ObjectKind::kRule || c.verb != Verb::kAdd || !c.rule.counter) continue;
    const std::pair<std::string, std::string> key{c.chain.name, c.rule.comment};
    auto it = old.find(key);
    if (it == old.end()) continue;
    size_t& k = taken[key];
    if (k >= it->second.size()) continue;
    const RuleCount& from = *it->second[k++];
    if (from.packets == 0 && from.bytes == 0) continue;
    c.rule.counter_packets = from.packets;
    c.rule.counter_bytes = from.bytes;
    ++carried;
  }
  return carried;
}

Transaction FullReplace(const Program& to) {
  Transaction tx(to.table);
  tx.AddTable();
  tx.DeleteTable();
  tx.AddProgram(to);
  return tx;
}

namespace {

// Adds the base chains (base) or the regular chains (!base) of `p`, then their rules.
void AddChains(const Program& p, bool base, Transaction* tx) {
  for (const auto& [name, chain] : p.chains) {
    if (chain.base.has_value() == base) tx->AddChain(chain);
  }
  for (const auto& [name, chain] : p.chains) {
    if (chain.base.has_value() != base) continue;
    for (const Rule& rule : chain.rules) tx->AddRule(name, rule);
  }
}

}  // namespace

std::vector<Transaction> ChunkedCreate(const Program& to, size_t max_elements) {
  std::vector<Transaction> out;
  size_t total = 0;
  for (const auto& [name, elems] : to.elements) total += elems.size();
  if (max_elements == 0 || total <= max_elements) {
    Transaction tx(to.table);
    tx.CreateTable(to.comment);
    tx.AddProgram(to);  // its own `add table` is a no-op after the create
    out.push_back(std::move(tx));
    return out;
  }
  // 1. The table, its sets and its regular chains: nothing hooked yet.
  Transaction skeleton(to.table);
  skeleton.CreateTable(to.comment);
  for (const auto& [name, set] : to.sets) skeleton.AddSet(set);
  AddChains(to, /*base=*/false, &skeleton);
  out.push_back(std::move(skeleton));
  // 2. The elements, in transactions of at most max_elements.
  Transaction chunk(to.table);
  size_t in_chunk = 0;
  for (const auto& [name, set] : to.sets) {
    auto it = to.elements.find(name);
    if (it == to.elements.end()) continue;
    const std::vector<Element>& elems = it->second;
    for (size_t i = 0; i < elems.size();) {
      if (in_chunk == max_elements) {
        out.push_back(std::move(chunk));
        chunk = Transaction(to.table);
        in_chunk = 0;
      }
      const size_t n = std::min(elems.size() - i, max_elements - in_chunk);
      chunk.AddElements(set, std::vector<Element>(elems.begin() + i, elems.begin() + i + n));
      in_chunk += n;
      i += n;
    }
  }
  if (in_chunk > 0) out.push_back(std::move(chunk));
  // 3. The base chains: the commit that starts enforcement.
  Transaction hooks(to.table);
  AddChains(to, /*base=*/true, &hooks);
  out.push_back(std::move(hooks));
  return out;
}

}  // namespace netpol::nft
