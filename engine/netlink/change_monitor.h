// Watches nf_tables for changes to one inet table: the kernel side of drift repair.
//
// ChangeMonitor subscribes a NETLINK_NETFILTER socket to the NFNLGRP_NFTABLES multicast group,
// through which the kernel announces every committed change to the ruleset: one message per
// object added or deleted (NEWTABLE/DELTABLE, NEWCHAIN/DELCHAIN, NEWRULE/DELRULE,
// NEWSET/DELSET, NEWSETELEM/DELSETELEM, objects, flowtables), followed by one NFT_MSG_NEWGEN per
// committed batch naming the new generation id and the committing process. Flushes arrive as
// the deletions they consist of (`nft flush chain` as one DELRULE per rule, `nft flush set` as
// one DELSETELEM per element, `nft delete table` as the deletion of every rule, set and chain
// and then of the table).
//
// ReadChanges returns the changes that touch the watched table, each with a description that
// names the object the way nft's commands do:
//   delete rule inet netpol forward handle 7
//   add rule inet netpol forward handle 9: ct state established,related accept
//   delete element from set in-x-a-v4: 10.244.1.17 . tcp . 80
//   delete chain inet netpol pod-a
//   delete table inet netpol
// and attributed to the batch that made it: its generation id, the committing thread's id, its
// process name, and the netlink port id of the socket it was sent on. Changes to other tables
// (and other families) are ignored. A batch's changes are returned once its NEWGEN arrived;
// its events are the ones before that NEWGEN that carry its port id and sequence numbers from
// its sequence number on (the batch's first command), or none (element notifications carry
// sequence number 0). Events whose NEWGEN was lost are returned with the next NEWGEN, with
// their port id but no generation; element events are an exception when the next batch comes
// from the same port: they are then attributed to that batch (the port, which decides whose
// change it is, is right either way).
//
// Our own commits are announced too. NetlinkBackend::port_id() is the port id its commits
// carry: ChangedByOthers(changes, backend->port_id()) is true when anything else (or a lost
// notification) touched the table.
//
// When the kernel drops notifications because the receive buffer overflowed (ENOBUFS),
// ReadChanges reports one Change with `lost` set ("changes lost (notification overflow), full
// check needed"): the caller must compare the whole table with what it should be. The kernel
// reports the overflow ahead of the notifications still queued, so the lost marker may precede
// changes that happened before the loss.
//
// Rendering elements needs their set's key layout: the monitor reads the table's sets once
// when created (and again after an overflow) and follows NEWSET/DELSET. Objects the decoder
// cannot read (e.g. a rule netpol would not write) are still reported, with the expressions
// they hold or the raw key bytes.
//
// No threads inside: the caller polls fd() (or calls ReadChanges with a timeout).
// Thread-compatible: one owner drives a monitor.
#ifndef NETPOL_ENGINE_NETLINK_CHANGE_MONITOR_H_
#define NETPOL_ENGINE_NETLINK_CHANGE_MONITOR_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/netlink/syscalls.h"
#include "engine/nft/program.h"

struct nlmsghdr;  // <linux/netlink.h>

namespace netpol::netlink {

class NetlinkSocket;

struct ChangeMonitorOptions {
  // The system calls to use; not owned, must outlive the monitor. Null: the real kernel.
  NetlinkSyscalls* syscalls = nullptr;
  // The receive buffer for notifications (SO_RCVBUFFORCE). The kernel charges each queued
  // notification its skb's true size (1-2 KiB for one element), so 8 MiB holds a few thousand
  // changes between two reads; beyond that notifications are lost and reported as such.
  size_t receive_buffer_bytes = 8 << 20;
  // How long to wait for the reply to the set dump (when created and after an overflow).
  int reply_timeout_ms = 5000;
};

// One change to the watched table.
struct Change {
  // The ruleset generation id the batch created (NFTA_GEN_ID). 0 when the batch's marker was
  // lost to an overflow (pid and process are then unknown too), and for `lost` itself.
  uint32_t generation = 0;
  // The id of the committing thread (NFTA_GEN_PROC_PID) as the kernel numbers it, i.e. in the
  // initial pid namespace: not getpid() inside a container, nor for a commit from a thread
  // other than the main one. Informational; port_id is what tells commits apart.
  uint32_t pid = 0;
  // The netlink port id of the socket that sent the batch (every notification carries it).
  uint32_t port_id = 0;
  std::string process;      // the committing process's name (NFTA_GEN_PROC_NAME), e.g. "nft"
  bool lost = false;        // notifications were lost: the table may differ in any way
  std::string description;  // e.g. "delete rule inet netpol forward handle 7"
  friend bool operator==(const Change& a, const Change& b) {
    return a.generation == b.generation && a.pid == b.pid && a.port_id == b.port_id &&
           a.process == b.process && a.lost == b.lost && a.description == b.description;
  }
};

class ChangeMonitor {
 public:
  // Subscribes to nf_tables notifications and reads the sets of inet table `table` (which need
  // not exist yet). InvalidArgument for a bad table name; Unavailable when the socket cannot be
  // opened or subscribed.
  static absl::StatusOr<std::unique_ptr<ChangeMonitor>> Create(const std::string& table,
                                                               ChangeMonitorOptions options = {});
  ~ChangeMonitor();
  ChangeMonitor(const ChangeMonitor&) = delete;
  ChangeMonitor& operator=(const ChangeMonitor&) = delete;

  // The socket's file descriptor: readable when notifications are pending. Owned by the
  // monitor.
  int fd() const;

  // Waits up to `timeout_ms` (0: only what is queued; negative: until a change arrives) for
  // changes to the table, then returns every complete batch's changes queued so far, oldest
  // first. Empty when none arrived in time (changes to other tables alone return nothing).
  // Unavailable on socket failures other than an overflow; the monitor stays usable.
  absl::StatusOr<std::vector<Change>> ReadChanges(int timeout_ms);

  // The number of NEWGEN messages (committed batches, on any table) seen so far.
  uint64_t generations_seen() const { return generations_seen_; }

 private:
  struct Pending {
    std::string description;
    uint32_t port_id = 0;  // nlmsg_pid: the port of the socket that sent the batch
    uint32_t seq = 0;      // nlmsg_seq: the sequence number of the command in its batch
  };
  ChangeMonitor(std::string table, ChangeMonitorOptions options,
                std::unique_ptr<NetlinkSocket> events);

  // Reads the table's set definitions into sets_ (cleared first; missing table: none).
  absl::Status LoadSets();
  // Handles one notification; appends finished batches to *out.
  void HandleMessage(const struct nlmsghdr* nlh, std::vector<Change>* out);
  // Reads every queued datagram without waiting; appends finished batches to *out.
  absl::Status Drain(std::vector<Change>* out);

  std::string table_;
  ChangeMonitorOptions options_;
  std::unique_ptr<NetlinkSocket> events_;
  // The table's sets by name; nullopt for sets the decoder cannot read.
  std::map<std::string, std::optional<nft::Set>> sets_;
  // Changes to the table since the last NEWGEN (their batch is not finished yet, or its
  // marker was lost).
  std::vector<Pending> pending_;
  // Changes of finished batches not yet returned (kept across a failed ReadChanges).
  std::vector<Change> ready_;
  uint64_t generations_seen_ = 0;
  uint32_t next_seq_ = 1;
};

// True when `changes` holds a change not committed through the netlink port `our_port_id`
// (NetlinkBackend::port_id()), or a loss of notifications.
bool ChangedByOthers(const std::vector<Change>& changes, uint32_t our_port_id);

}  // namespace netpol::netlink

#endif  // NETPOL_ENGINE_NETLINK_CHANGE_MONITOR_H_
