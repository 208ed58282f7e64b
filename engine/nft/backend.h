// Where transactions go: the kernel (engine/netlink) or an in-memory fake (engine/nft/fake.h).
#ifndef NETPOL_ENGINE_NFT_BACKEND_H_
#define NETPOL_ENGINE_NFT_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/nft/program.h"
#include "engine/nft/transaction.h"

namespace netpol::nft {

// What the `counter` statement of one rule has counted (Rule::counter).
struct RuleCount {
  std::string chain;
  size_t index = 0;     // the rule's position in its chain
  std::string comment;  // the rule's comment: lets a reader check it is the rule it expects
  uint64_t packets = 0;
  uint64_t bytes = 0;
  friend bool operator==(const RuleCount& a, const RuleCount& b) {
    return a.chain == b.chain && a.index == b.index && a.comment == b.comment &&
           a.packets == b.packets && a.bytes == b.bytes;
  }
};

// Thread-compatible: callers serialize Commit/Dump on one backend.
class Backend {
 public:
  virtual ~Backend() = default;
  // Applies every command of `tx` or none. On failure the error names the failing command's
  // object (e.g. `add element to set in-x-a-4: 10.0.0.1 . tcp . 80: File exists`) and the
  // previous state is untouched. Codes: InvalidArgument for a malformed command, NotFound /
  // AlreadyExists / FailedPrecondition as the kernel reports them, Unavailable for socket errors.
  virtual absl::Status Commit(const Transaction& tx) = 0;
  // Reads table `table` back. NotFound when the table does not exist.
  virtual absl::StatusOr<Program> Dump(const std::string& table) = 0;
  // Whether table `table` exists. The default reads it whole (Dump); a backend that can ask
  // for the table alone overrides this.
  virtual absl::StatusOr<bool> HasTable(const std::string& table) {
    absl::StatusOr<Program> p = Dump(table);
    if (absl::IsNotFound(p.status())) return false;
    if (!p.ok()) return p.status();
    return true;
  }
  // The counters of every rule of table `table` that has one, chain by chain (chains in name
  // order), rules in chain order. Reads the rules only: no set or element. A rule's count lives
  // as long as the rule: flushing or deleting its chain (or the table) starts it over, element
  // changes do not touch it. NotFound when the table does not exist; Unimplemented for a
  // backend that keeps no counts.
  virtual absl::StatusOr<std::vector<RuleCount>> ReadCounters(const std::string& table) {
    return absl::UnimplementedError(
        absl::StrCat("this backend keeps no rule counters (table ", table, ")"));
  }
};

}  // namespace netpol::nft

#endif  // NETPOL_ENGINE_NFT_BACKEND_H_
