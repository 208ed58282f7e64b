// Targeted revocation of established connections: list the conntrack table, delete the entries
// that match FlowFilters (engine/conntrack/revocation.h) and that the caller does not keep.
// Never a flush: entries that match no filter are untouched.
//
// The kernel is reached through libnetfilter_conntrack (ctnetlink) behind the small Table
// interface, so the selection logic is tested without a kernel and the kernel code is a thin
// dump/delete pair. Only this file's .cc includes libnetfilter_conntrack headers.
//
// Call order matters: revoke only after the transaction that denies the flows has committed.
// A packet of a revoked flow then creates a new conntrack entry that the new rules judge; revoked
// before the commit, the old rules would accept that packet and re-establish the flow.
//
// Flows that the host itself originated (source = one of the host's addresses) pass the output
// hook, which netpol does not filter, so they are never revoked (e.g. kubelet probes).
#ifndef NETPOL_ENGINE_CONNTRACK_CONNTRACK_H_
#define NETPOL_ENGINE_CONNTRACK_CONNTRACK_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/conntrack/revocation.h"
#include "engine/model/ip.h"

namespace netpol::conntrack {

// One conntrack entry: the flow as policy sees it, plus the original-direction tuple and zone
// that identify the entry to the kernel.
struct Entry {
  Flow flow;
  IpAddr orig_src, orig_dst;
  uint16_t orig_sport = 0, orig_dport = 0;          // protocols with ports
  uint8_t icmp_type = 0, icmp_code = 0;             // ICMP / ICMPv6
  uint16_t icmp_id = 0;
  uint16_t zone = 0;
};

// A conntrack table. Thread-compatible.
class Table {
 public:
  virtual ~Table() = default;
  // Lists every entry of `family`. Unavailable (or PermissionDenied) when the table cannot be
  // read.
  virtual absl::StatusOr<std::vector<Entry>> Dump(Family family) = 0;
  // Deletes one entry. NotFound when it is already gone (expired, or deleted by someone else).
  virtual absl::Status Delete(const Entry& entry) = 0;
};

// The conntrack table of the network namespace the calling thread was in when Open ran.
class KernelTable : public Table {
 public:
  // Opens a ctnetlink socket. Unavailable when that fails.
  static absl::StatusOr<std::unique_ptr<KernelTable>> Open();
  ~KernelTable() override;
  KernelTable(const KernelTable&) = delete;
  KernelTable& operator=(const KernelTable&) = delete;

  absl::StatusOr<std::vector<Entry>> Dump(Family family) override;
  absl::Status Delete(const Entry& entry) override;

 private:
  explicit KernelTable(void* handle) : handle_(handle) {}
  void* handle_;  // struct nfct_handle*, owned
};

struct RevokeOptions {
  // Called for each entry that matches a filter; returning true keeps it. Typically
  //   [&](const Flow& f) { return StillAllowed(program_after, f); }
  // Null: every matching entry is deleted.
  std::function<bool(const Flow&)> keep;
  // Sources that are never revoked: the host's own addresses (see the file comment).
  std::vector<IpAddr> host_addresses;
};

struct RevokeReport {
  size_t dumps = 0;            // table listings (Table::Dump calls, one per family)
  size_t scanned = 0;          // entries listed
  size_t matched = 0;          // entries matching a filter (host flows excluded)
  size_t kept = 0;             // matched, kept by RevokeOptions::keep
  size_t vanished = 0;         // matched, gone before they could be deleted
  std::vector<Flow> deleted;   // in table order
  std::vector<std::string> errors;  // "tcp 10.0.0.7:40000 -> 10.0.0.2:80: <kernel error>"
};

// Lists the families the filters name and deletes the matching entries (see RevokeOptions).
// Errors: the Dump error when the table cannot be listed; delete failures do not stop the
// others and are reported in RevokeReport::errors.
absl::StatusOr<RevokeReport> Revoke(Table* table, const std::vector<FlowFilter>& filters,
                                    const RevokeOptions& options);

// The same for the candidates of a RevocationPlan: each family's table is listed once and each
// entry costs one RevocationPlan::Matches, so the work is bounded by the table and the plan's
// size (never the product of the change's elements and pods).
absl::StatusOr<RevokeReport> RevokePlan(Table* table, const RevocationPlan& plan,
                                        const RevokeOptions& options);

// Revokes in the calling thread's network namespace: opens the kernel table, fills
// host_addresses with HostAddresses(), deletes every matching entry. Errors: as above, plus
// Unavailable naming the first flow that could not be deleted.
absl::Status Revoke(const std::vector<FlowFilter>& flows);

// The addresses of every interface of the calling thread's network namespace (getifaddrs).
absl::StatusOr<std::vector<IpAddr>> HostAddresses();

}  // namespace netpol::conntrack

#endif  // NETPOL_ENGINE_CONNTRACK_CONNTRACK_H_
