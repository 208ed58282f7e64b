// A transaction: an ordered list of nft commands on one inet table, applied all or nothing.
//
// The verbs are nft's own (add, create, flush, delete, destroy). Enqueueing never fails; the
// backend validates and the first error is returned from Backend::Commit, naming the command.
#ifndef NETPOL_ENGINE_NFT_TRANSACTION_H_
#define NETPOL_ENGINE_NFT_TRANSACTION_H_

#include <string>
#include <vector>

#include "engine/nft/program.h"

namespace netpol::nft {

enum class Verb {
  kAdd,      // create if missing, no error if it exists (for elements: error if it exists)
  kCreate,   // create, error if it exists
  kFlush,    // table: remove all rules of all chains and all elements; chain: its rules; set: its elements
  kDelete,   // remove, error if missing (or, for chains/sets, if still referenced)
  kDestroy,  // remove if present, no error if missing
};

enum class ObjectKind { kTable, kChain, kRule, kSet, kElement };

struct Command {
  Verb verb = Verb::kAdd;
  ObjectKind kind = ObjectKind::kTable;
  // kChain: the chain (add/create carry base spec and comment; rules are added with kRule).
  // kRule: chain.name names the chain; `rule` is appended (only kAdd is valid for rules).
  Chain chain;
  Rule rule;
  // kSet: the set definition (delete/flush/destroy need only the name). kElement: set.name
  // names the set and `elements` lists the elements (keys only for delete/destroy).
  Set set;
  std::vector<Element> elements;
};

class Transaction {
 public:
  explicit Transaction(std::string table) : table_(std::move(table)) {}

  const std::string& table() const { return table_; }
  const std::vector<Command>& commands() const { return commands_; }
  bool empty() const { return commands_.empty(); }
  size_t size() const { return commands_.size(); }
  // Number of element adds/deletes across all element commands.
  size_t ElementCount() const;

  void AddTable();
  void DeleteTable();
  void DestroyTable();
  void FlushTable();
  void AddChain(const Chain& chain);  // chain's rules are ignored; see AddRule
  void FlushChain(const std::string& name);
  void DeleteChain(const std::string& name);
  void AddRule(const std::string& chain, const Rule& rule);
  void AddSet(const Set& set);
  void FlushSet(const std::string& name);
  void DeleteSet(const std::string& name);
  void AddElements(const std::string& set, std::vector<Element> elements);
  void DeleteElements(const std::string& set, std::vector<Element> elements);

  // Appends every command needed to create `program` from nothing (table, sets, chains, rules,
  // elements) in dependency order.
  void AddProgram(const Program& program);

  // Renders as an nft script (`nft -f` syntax), one command per line, e.g.
  //   add element inet netpol in-x-a-4 { 10.0.0.1 . tcp . 80 }
  std::string ToNftText() const;

 private:
  std::string table_;
  std::vector<Command> commands_;
};

// Renders a whole program as `nft list table inet <name>` would print it (nft 1.0.6 layout).
std::string RenderProgram(const Program& program);
// Renders one rule / element / set key the way nft writes them (used by the above and by errors).
std::string RenderRule(const Rule& rule);
std::string RenderElement(const Set& set, const Element& element);

}  // namespace netpol::nft

#endif  // NETPOL_ENGINE_NFT_TRANSACTION_H_
