// A pod's view of a Program. See program_view.h.
#include "agent/program_view.h"

#include <deque>
#include <set>

#include "engine/nft/transaction.h"

namespace netpol::agent {
namespace {

bool IsAddressField(nft::FieldType t) {
  return t == nft::FieldType::kIpv4Addr || t == nft::FieldType::kIpv6Addr;
}

std::set<std::string> ReferencedSets(const nft::Program& program,
                                     const std::vector<std::string>& chains) {
  std::set<std::string> sets;
  for (const std::string& name : chains) {
    auto it = program.chains.find(name);
    if (it == program.chains.end()) continue;
    for (const nft::Rule& rule : it->second.rules) {
      for (const nft::Match& m : rule.matches) {
        if (const auto* lookup = std::get_if<nft::LookupMatch>(&m)) sets.insert(lookup->set);
      }
    }
  }
  return sets;
}

// Everything about the pod's enforcement that a change could alter, as text.
std::string Fingerprint(const nft::Program& program, const Pod& pod) {
  std::vector<std::string> chains = PodChains(program, pod);
  if (chains.empty()) return "";
  return nft::RenderProgram(SubProgram(program, chains));
}

}  // namespace

std::vector<std::string> PodChains(const nft::Program& program, const Pod& pod) {
  std::set<std::string> seen;
  std::deque<std::string> todo;
  for (const auto& [set_name, set] : program.sets) {
    if (!set.vmap || set.key.empty() || !IsAddressField(set.key[0])) continue;
    auto elems = program.elements.find(set_name);
    if (elems == program.elements.end()) continue;
    for (const nft::Element& e : elems->second) {
      if (e.key.empty() || !e.verdict || e.verdict->chain.empty()) continue;
      for (const IpAddr& ip : pod.ips) {
        if (e.key[0].addr_lo == ip && e.key[0].addr_hi == ip) {
          if (seen.insert(e.verdict->chain).second) todo.push_back(e.verdict->chain);
        }
      }
    }
  }
  while (!todo.empty()) {
    std::string name = todo.front();
    todo.pop_front();
    auto it = program.chains.find(name);
    if (it == program.chains.end()) continue;
    for (const nft::Rule& rule : it->second.rules) {
      if (rule.verdict && !rule.verdict->chain.empty() &&
          seen.insert(rule.verdict->chain).second) {
        todo.push_back(rule.verdict->chain);
      }
    }
  }
  return std::vector<std::string>(seen.begin(), seen.end());
}

nft::Program SubProgram(const nft::Program& program, const std::vector<std::string>& chains) {
  nft::Program out;
  out.table = program.table;
  out.comment = program.comment;
  for (const std::string& name : chains) {
    auto it = program.chains.find(name);
    if (it != program.chains.end()) out.chains.emplace(name, it->second);
  }
  for (const std::string& name : ReferencedSets(program, chains)) {
    auto it = program.sets.find(name);
    if (it == program.sets.end()) continue;
    out.sets.emplace(name, it->second);
    auto elems = program.elements.find(name);
    if (elems != program.elements.end()) out.elements.emplace(name, elems->second);
  }
  return out;
}

std::vector<std::string> AffectedPods(const State& old_state, const nft::Program* old_program,
                                      const State& new_state, const nft::Program& new_program) {
  std::set<std::string> keys;
  for (const auto& [k, p] : old_state.pods) keys.insert(k);
  for (const auto& [k, p] : new_state.pods) keys.insert(k);
  std::vector<std::string> out;
  for (const std::string& key : keys) {
    const Pod* before = old_state.FindPod(key);
    const Pod* after = new_state.FindPod(key);
    std::string fp_before = before && old_program ? Fingerprint(*old_program, *before) : "";
    std::string fp_after = after ? Fingerprint(new_program, *after) : "";
    if (fp_before.empty() && fp_after.empty()) continue;  // not enforced here either way
    bool pod_changed = before == nullptr || after == nullptr || !(*before == *after);
    if (pod_changed || fp_before != fp_after) out.push_back(key);
  }
  return out;
}

}  // namespace netpol::agent
