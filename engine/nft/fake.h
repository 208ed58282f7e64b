// An in-memory nftables for tests: applies a Transaction to a copy of its tables and keeps the
// copy only when every command succeeded, as the kernel commits a batch all or nothing.
//
// It checks what the kernel checks (missing and existing objects, references from rules and
// verdict-map elements, jump loops, element key types) and what netpol promises on top:
//  - names: 1..kMaxNameLength of [A-Za-z0-9_.-] starting with a letter; comments printable,
//    without '"', at most kMaxCommentLength bytes;
//  - sets: interval sets have at least two key fields (netpol uses concatenated interval sets
//    only); interval elements never overlap (the kernel rejects partial overlaps but accepts a
//    new element that contains an old one; the fake rejects both);
//  - rules: not empty; a vmap lookup is the last match, on a verdict map, without rule verdict,
//    counter or negation; lookup keys match the set's key types; jumps and gotos name existing
//    non-base chains; rules support `add` only.
// Kernel semantics mirrored on purpose: `add` of an element whose key exists succeeds when its
// verdict is the same (the old comment stays) and fails with AlreadyExists otherwise; `create`
// fails for any existing key. `add chain` of an existing chain keeps its comment; with a base
// spec it may change the policy but not hook or priority. `add set` of an existing set must
// repeat its definition. `flush table` flushes the rules of every chain, not set elements.
// `delete`/`destroy` of a chain or set that is still referenced fails (busy).
//
// Thread-compatible, like every Backend.
#ifndef NETPOL_ENGINE_NFT_FAKE_H_
#define NETPOL_ENGINE_NFT_FAKE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/nft/backend.h"
#include "engine/nft/program.h"
#include "engine/nft/transaction.h"

namespace netpol::nft {

class FakeBackend : public Backend {
 public:
  FakeBackend() = default;

  // Applies all of `tx` or nothing. Errors name the failing command and object, e.g.
  // `add element to set s: 10.0.0.1 . tcp . 80: File exists (key exists with another verdict)`.
  absl::Status Commit(const Transaction& tx) override;
  // Returns the table in canonical form (see Canonicalize). NotFound when missing.
  absl::StatusOr<Program> Dump(const std::string& table) override;
  // The counts AddPackets gave each rule with a counter, from the count it was added with
  // (Rule::counter_packets/counter_bytes, usually 0), with the kernel's lifetime: flushing or
  // deleting a chain or the table starts its rules' counts over.
  absl::StatusOr<std::vector<RuleCount>> ReadCounters(const std::string& table) override;
  // As if `packets` packets of `bytes` bytes in all hit rule `index` of `chain` (which must
  // have a counter). NotFound for a missing table, chain or rule; InvalidArgument for a rule
  // without a counter.
  absl::Status AddPackets(const std::string& table, const std::string& chain, size_t index,
                          uint64_t packets, uint64_t bytes);

  // Fault injection: makes the `n`th Commit call from now (1 = the next one) fail with `status`
  // and leave every table untouched. Several failures may be pending at once.
  void FailCommit(int n, absl::Status status = absl::UnavailableError("injected commit failure"));
  // Number of Commit calls so far, failed ones included.
  int commit_count() const { return commit_count_; }
  // Names of the tables that exist.
  std::vector<std::string> Tables() const;
  // RenderProgram of a table (NotFound when missing).
  absl::StatusOr<std::string> Render(const std::string& table,
                                     const RenderOptions& options = RenderOptions{}) const;

  // The state of one table. Public so that the implementation's helpers can name it; tests use
  // Dump.
  struct SetState {
    Set def;
    std::map<std::vector<FieldValue>, Element> elements;  // by key
  };
  struct TableState {
    std::string comment;
    std::map<std::string, Chain> chains;
    std::map<std::string, SetState> sets;
    // Per chain, the (packets, bytes) of its rules by position; missing entries are 0.
    std::map<std::string, std::vector<std::pair<uint64_t, uint64_t>>> counts;
  };

 private:
  std::map<std::string, TableState> tables_;
  std::map<int, absl::Status> failures_;  // commit ordinal -> injected error
  int commit_count_ = 0;
};

// Returns OK when `program` is a valid table on its own: consistent map keys, no duplicate
// element keys, and everything FakeBackend checks when creating it in one transaction.
absl::Status ValidateProgram(const Program& program);

}  // namespace netpol::nft

#endif  // NETPOL_ENGINE_NFT_FAKE_H_
