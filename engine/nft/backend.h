// Where transactions go: the kernel (engine/netlink) or an in-memory fake (engine/nft/fake.h).
#ifndef NETPOL_ENGINE_NFT_BACKEND_H_
#define NETPOL_ENGINE_NFT_BACKEND_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/nft/program.h"
#include "engine/nft/transaction.h"

namespace netpol::nft {

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
};

}  // namespace netpol::nft

#endif  // NETPOL_ENGINE_NFT_BACKEND_H_
