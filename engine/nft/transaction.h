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
  kAdd,      // create if missing, no error if it exists (elements, as the kernel: no error if it
             // exists with the same verdict, keeping the old comment; error with another verdict)
  kCreate,   // create, error if it exists
  kFlush,    // table: remove all rules of all chains (as `nft flush table`; set elements stay);
             // chain: its rules; set: its elements
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
  // kTable add/create: the table's comment (empty: none).
  std::string comment;
};

// Describes a command for errors and logs, e.g. `add element to set in-x-a-4`,
// `delete chain pod-x`, `add rule to chain fwd`, `flush table inet netpol`.
std::string DescribeCommand(const std::string& table, const Command& command);

class Transaction {
 public:
  explicit Transaction(std::string table) : table_(std::move(table)) {}

  const std::string& table() const { return table_; }
  const std::vector<Command>& commands() const { return commands_; }
  // For what changes a command without changing what it does (CarryCounters).
  std::vector<Command>& mutable_commands() { return commands_; }
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

  // The remaining verbs. Commands that name a set by its definition render `map` instead of
  // `set` for verdict maps (nft's `flush set` refuses a map).
  void AddTable(const std::string& comment);
  void CreateTable(const std::string& comment = "");
  void CreateChain(const Chain& chain);
  void DestroyChain(const std::string& name);
  void CreateSet(const Set& set);
  void FlushSet(const Set& set);
  void DeleteSet(const Set& set);
  void DestroySet(const std::string& name);
  void DestroySet(const Set& set);
  void CreateElements(const std::string& set, std::vector<Element> elements);
  void DestroyElements(const std::string& set, std::vector<Element> elements);
  // Element commands that carry the set's definition, so ToNftText knows the key types and
  // map-ness even when the transaction does not define the set itself. (Name-only element
  // commands render with the definition of an earlier add/create of that set in the same
  // transaction, or else with key types guessed from the values.)
  void AddElements(const Set& set, std::vector<Element> elements);
  void CreateElements(const Set& set, std::vector<Element> elements);
  void DeleteElements(const Set& set, std::vector<Element> elements);
  void DestroyElements(const Set& set, std::vector<Element> elements);
  // Appends a command as is (tests use this for combinations no builder makes).
  void Append(Command command) { commands_.push_back(std::move(command)); }

  // Appends every command needed to create `program` from nothing (table, sets, chains, rules,
  // elements) in dependency order.
  void AddProgram(const Program& program);

  // Renders as an nft script (`nft -f` syntax), one command per line, e.g.
  //   add element inet netpol in-x-a-4 { 10.0.0.1 . tcp . 80 }
  // Rules are written with their dependencies explicit (`meta l4proto ipv6-icmp icmpv6 type
  // 133-136`) so that nft generates the same bytecode as engine/netlink. `destroy` commands use
  // nft >= 1.0.7 syntax (Debian's nft 1.0.6 cannot read them; the kernel has the verb since 6.3).
  // Element commands with no elements render nothing.
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

// How RenderProgram prints what a Program does not model.
struct RenderOptions {
  // false: counters print as `counter packets 0 bytes 0`, byte for byte what `nft list table`
  // prints right after the program was committed. true: `counter`, as `nft -s list table`
  // (stateless) prints it whatever the counts.
  bool stateless = false;
};
// RenderProgram's contract, checked against the kernel in render_kernel_test:
//  - sets and chains print in name order: nft lists them in creation order, which is name order
//    when the table was created by AddProgram (FullReplace); objects added later by an
//    incremental Diff are listed last by nft.
//  - elements of plain (hash) sets and maps print in nft's listing order (nft sorts them:
//    numerically for one field; for concatenations by the key bytes read as a little-endian
//    number, i.e. by the last field first). Elements of interval sets print in the Program's
//    order: nft lists them in kernel insertion order, which AddProgram makes the Program's.
//  - an interval field that covers exactly a CIDR prints as a prefix (`10.0.0.0/8`), a single
//    value as itself, anything else as `lo-hi`; protocol ranges are numeric, a single protocol
//    prints by its /etc/protocols name (netbase), icmpv6 types by nft's names.
//  - `meta nfproto` comparisons that an ip/ip6/icmpv6 match depends on are not printed (nft
//    hides dependencies), nor is icmpv6's `meta l4proto ipv6-icmp`.
std::string RenderProgram(const Program& program, const RenderOptions& options);
std::string RenderRule(const Rule& rule, const RenderOptions& options);
// Renders a set key type as nft does: `ipv4_addr . inet_proto . inet_service`.
std::string RenderKeyType(const std::vector<FieldType>& key);
std::string RenderVerdict(const Verdict& verdict);

}  // namespace netpol::nft

#endif  // NETPOL_ENGINE_NFT_TRANSACTION_H_
