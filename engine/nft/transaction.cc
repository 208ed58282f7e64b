// Transaction builders. Rendering lives in render.cc.
#include "engine/nft/transaction.h"

#include <utility>

namespace netpol::nft {
namespace {

Command TableCommand(Verb verb, std::string comment = "") {
  Command c;
  c.verb = verb;
  c.kind = ObjectKind::kTable;
  c.comment = std::move(comment);
  return c;
}

Command ChainCommand(Verb verb, const Chain& chain) {
  Command c;
  c.verb = verb;
  c.kind = ObjectKind::kChain;
  c.chain.name = chain.name;
  c.chain.base = chain.base;
  c.chain.comment = chain.comment;  // rules travel as kRule commands
  return c;
}

Command ChainCommand(Verb verb, const std::string& name) {
  Chain chain;
  chain.name = name;
  return ChainCommand(verb, chain);
}

Command SetCommand(Verb verb, const Set& set) {
  Command c;
  c.verb = verb;
  c.kind = ObjectKind::kSet;
  c.set = set;
  return c;
}

Command SetCommand(Verb verb, const std::string& name) {
  Set set;
  set.name = name;
  return SetCommand(verb, set);
}

Command ElementCommand(Verb verb, const std::string& set, std::vector<Element> elements) {
  Command c;
  c.verb = verb;
  c.kind = ObjectKind::kElement;
  c.set.name = set;
  c.elements = std::move(elements);
  return c;
}

}  // namespace

size_t Transaction::ElementCount() const {
  size_t n = 0;
  for (const Command& c : commands_) {
    if (c.kind == ObjectKind::kElement) n += c.elements.size();
  }
  return n;
}

void Transaction::AddTable() { commands_.push_back(TableCommand(Verb::kAdd)); }
void Transaction::AddTable(const std::string& comment) {
  commands_.push_back(TableCommand(Verb::kAdd, comment));
}
void Transaction::CreateTable(const std::string& comment) {
  commands_.push_back(TableCommand(Verb::kCreate, comment));
}
void Transaction::DeleteTable() { commands_.push_back(TableCommand(Verb::kDelete)); }
void Transaction::DestroyTable() { commands_.push_back(TableCommand(Verb::kDestroy)); }
void Transaction::FlushTable() { commands_.push_back(TableCommand(Verb::kFlush)); }

void Transaction::AddChain(const Chain& chain) {
  commands_.push_back(ChainCommand(Verb::kAdd, chain));
}
void Transaction::CreateChain(const Chain& chain) {
  commands_.push_back(ChainCommand(Verb::kCreate, chain));
}
void Transaction::FlushChain(const std::string& name) {
  commands_.push_back(ChainCommand(Verb::kFlush, name));
}
void Transaction::DeleteChain(const std::string& name) {
  commands_.push_back(ChainCommand(Verb::kDelete, name));
}
void Transaction::DestroyChain(const std::string& name) {
  commands_.push_back(ChainCommand(Verb::kDestroy, name));
}

void Transaction::AddRule(const std::string& chain, const Rule& rule) {
  Command c;
  c.verb = Verb::kAdd;
  c.kind = ObjectKind::kRule;
  c.chain.name = chain;
  c.rule = rule;
  commands_.push_back(std::move(c));
}

void Transaction::AddSet(const Set& set) { commands_.push_back(SetCommand(Verb::kAdd, set)); }
void Transaction::CreateSet(const Set& set) { commands_.push_back(SetCommand(Verb::kCreate, set)); }
void Transaction::FlushSet(const std::string& name) {
  commands_.push_back(SetCommand(Verb::kFlush, name));
}
void Transaction::FlushSet(const Set& set) { commands_.push_back(SetCommand(Verb::kFlush, set)); }
void Transaction::DeleteSet(const std::string& name) {
  commands_.push_back(SetCommand(Verb::kDelete, name));
}
void Transaction::DeleteSet(const Set& set) { commands_.push_back(SetCommand(Verb::kDelete, set)); }
void Transaction::DestroySet(const std::string& name) {
  commands_.push_back(SetCommand(Verb::kDestroy, name));
}
void Transaction::DestroySet(const Set& set) {
  commands_.push_back(SetCommand(Verb::kDestroy, set));
}

void Transaction::AddElements(const std::string& set, std::vector<Element> elements) {
  commands_.push_back(ElementCommand(Verb::kAdd, set, std::move(elements)));
}
void Transaction::CreateElements(const std::string& set, std::vector<Element> elements) {
  commands_.push_back(ElementCommand(Verb::kCreate, set, std::move(elements)));
}
void Transaction::DeleteElements(const std::string& set, std::vector<Element> elements) {
  commands_.push_back(ElementCommand(Verb::kDelete, set, std::move(elements)));
}
void Transaction::DestroyElements(const std::string& set, std::vector<Element> elements) {
  commands_.push_back(ElementCommand(Verb::kDestroy, set, std::move(elements)));
}

namespace {
Command ElementCommand(Verb verb, const Set& set, std::vector<Element> elements) {
  Command c = ElementCommand(verb, set.name, std::move(elements));
  c.set = set;
  return c;
}
}  // namespace

void Transaction::AddElements(const Set& set, std::vector<Element> elements) {
  commands_.push_back(ElementCommand(Verb::kAdd, set, std::move(elements)));
}
void Transaction::CreateElements(const Set& set, std::vector<Element> elements) {
  commands_.push_back(ElementCommand(Verb::kCreate, set, std::move(elements)));
}
void Transaction::DeleteElements(const Set& set, std::vector<Element> elements) {
  commands_.push_back(ElementCommand(Verb::kDelete, set, std::move(elements)));
}
void Transaction::DestroyElements(const Set& set, std::vector<Element> elements) {
  commands_.push_back(ElementCommand(Verb::kDestroy, set, std::move(elements)));
}

void Transaction::AddProgram(const Program& program) {
  // Dependency order: sets before the rules that look them up, chains before the rules that
  // jump to them and before the verdict-map elements that name them.
  AddTable(program.comment);
  for (const auto& [name, set] : program.sets) AddSet(set);
  for (const auto& [name, chain] : program.chains) AddChain(chain);
  for (const auto& [name, chain] : program.chains) {
    for (const Rule& rule : chain.rules) AddRule(name, rule);
  }
  for (const auto& [name, set] : program.sets) {
    auto it = program.elements.find(name);
    if (it == program.elements.end() || it->second.empty()) continue;
    AddElements(set, it->second);
  }
}

}  // namespace netpol::nft
