// The kernel backend: writes nft::Transactions to nf_tables as one atomic netlink batch and reads
// tables back into nft::Programs.
//
// Commit encodes the whole transaction (engine/netlink/encode.h) into one nfnetlink batch —
// BATCH_BEGIN, the commands (every one with NLM_F_ACK), BATCH_END — in one contiguous buffer
// and hands it to the kernel with exactly one sendmsg (one iovec); the socket's send and receive
// buffers are grown to fit the batch and all of its ACKs first. The kernel applies all commands
// or none. Every ACK is drained; a kernel error is mapped back by sequence number (and, for
// element lists, by the offending attribute's offset) to the command and element that caused
// it: `add element to set in-x-a-4: 10.0.0.1 . tcp . 80: File exists`.
//
// Dump reads one inet table (chains, rules, sets, elements) between two reads of the ruleset
// generation id and retries while it changes, so the Program is one consistent generation.
// Objects the encoder would not have written (a foreign edit) are an Aborted error naming them:
// the caller should redo a full sync, which replaces the table.
//
// Kernel requirements: nf_tables with pipapo (concatenated interval sets, Linux >= 5.6); the
// destroy verbs need Linux >= 6.3.
//
// Thread-compatible: callers serialize calls on one backend (as nft::Backend requires).
#ifndef NETPOL_ENGINE_NETLINK_NETLINK_BACKEND_H_
#define NETPOL_ENGINE_NETLINK_NETLINK_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/netlink/syscalls.h"
#include "engine/nft/backend.h"

namespace netpol::netlink {

class NetlinkSocket;

struct NetlinkBackendOptions {
  // The system calls to use; not owned, must outlive the backend. Null: the real kernel.
  NetlinkSyscalls* syscalls = nullptr;
  // How long to wait for each kernel reply before giving up (Unavailable). The kernel handles a
  // batch inside sendmsg and queues every reply before it returns, and builds dump replies
  // inside recv, so a wait only ever covers scheduling delays.
  int reply_timeout_ms = 5000;
  // How often Dump starts over when the ruleset generation changes while it reads.
  int max_dump_attempts = 8;
};

// What the last successful or failed Commit sent; for tests and metrics.
struct CommitStats {
  size_t messages = 0;          // commands' messages, without BATCH_BEGIN/END
  size_t element_messages = 0;  // NEWSETELEM/DELSETELEM/DESTROYSETELEM messages among them
  size_t bytes = 0;             // the whole batch
  size_t sendmsg_calls = 0;     // always 1 for a non-empty transaction
};

class NetlinkBackend : public nft::Backend {
 public:
  // Opens the netlink socket. Unavailable when the socket cannot be opened.
  static absl::StatusOr<std::unique_ptr<NetlinkBackend>> Create(NetlinkBackendOptions options = {});
  ~NetlinkBackend() override;

  absl::Status Commit(const nft::Transaction& tx) override;
  absl::StatusOr<nft::Program> Dump(const std::string& table) override;
  // One NFT_MSG_GETTABLE request: no chains, rules, sets or elements are read.
  absl::StatusOr<bool> HasTable(const std::string& table) override;

  // One NFT_MSG_GETRULE dump of the table (its rules only: no set, element or chain is read),
  // between two reads of the ruleset generation id, retried like Dump while it changes so the
  // positions are those of one generation. Rules are listed chain by chain in name order.
  absl::StatusOr<std::vector<nft::RuleCount>> ReadCounters(const std::string& table) override;

  // The ruleset generation id (NFT_MSG_GETGEN); it changes with every committed batch.
  absl::StatusOr<uint32_t> Generation();

  const CommitStats& last_commit() const { return last_commit_; }

  // The netlink port id of the socket commits go out on, 0 while there is none. The kernel
  // stamps it on the change notifications of every batch this backend commits
  // (ChangeMonitor's Change::port_id), which is how a monitor tells our own commits from
  // others'. It changes only when a socket failure (an Unavailable result) replaced the
  // socket; changes committed on an earlier socket then count as foreign, which is safe: the
  // caller re-checks the table, as it must after an Unavailable commit anyway.
  uint32_t port_id() const;

 private:
  explicit NetlinkBackend(NetlinkBackendOptions options, std::unique_ptr<NetlinkSocket> socket);

  // Opens a socket when there is none (after a socket failure dropped the last one).
  absl::Status EnsureSocket();
  absl::Status CommitOnSocket(const nft::Transaction& tx);
  absl::StatusOr<nft::Program> DumpOnSocket(const std::string& table);
  absl::StatusOr<uint32_t> GenerationOnSocket();
  absl::StatusOr<std::vector<nft::RuleCount>> ReadCountersOnSocket(const std::string& table);
  // The definition of set `name` in the kernel's table; nullopt when absent.
  absl::StatusOr<std::optional<nft::Set>> KernelSet(const std::string& table,
                                                    const std::string& name);
  // Reads the table once; sets *interrupted when the kernel flagged a dump as inconsistent.
  absl::StatusOr<nft::Program> DumpOnce(const std::string& table, bool* interrupted);
  uint32_t NextSeq(uint32_t count);

  NetlinkBackendOptions options_;
  std::unique_ptr<NetlinkSocket> socket_;  // null after a socket failure until the next call
  uint32_t next_seq_ = 1;
  CommitStats last_commit_;
};

}  // namespace netpol::netlink

#endif  // NETPOL_ENGINE_NETLINK_NETLINK_BACKEND_H_
