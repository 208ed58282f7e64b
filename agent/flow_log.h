// Flow logs: the packets the kernel program logs to nflog (every group chain's closing drop and
// every ClusterNetworkPolicy tier's Deny, rate-limited per chain in the kernel:
// engine/compiler/RULESET.md "Deny logs", "ClusterNetworkPolicy tiers") turned into records
// naming the pods and the policies (or the ClusterNetworkPolicy rule) behind them.
//
// A reader thread takes packets from the nflog group into a bounded queue (a full queue drops
// and counts); a worker thread attributes each against the current State (addresses to pods, the
// chain in the log prefix to a direction, the judged pod to the policies isolating it), keeps the
// newest records in memory for Logs, hands them to followers and appends them to the optional
// JSON-lines file (size-rotated: PATH is renamed to PATH.1 when it would pass the limit).
//
// Thread safety: all methods are thread-safe.
#ifndef NETPOL_AGENT_FLOW_LOG_H_
#define NETPOL_AGENT_FLOW_LOG_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "api/netpol/v1/flow_service.pb.h"
#include "engine/model/model.h"

namespace netpol::agent {

// The header fields of a logged packet (its first bytes from the network header).
struct PacketHeader {
  IpAddr src, dst;
  uint8_t protocol = 0;
  uint16_t src_port = 0, dst_port = 0;  // TCP, UDP, SCTP, UDP-Lite
};

// Parses an IPv4 or IPv6 header (and the transport ports after it, when the snapshot holds them;
// IPv6 extension headers are followed). InvalidArgument for a truncated or foreign header.
absl::StatusOr<PacketHeader> ParsePacketHeader(const uint8_t* data, size_t len);

// What the kernel program sends through nflog: the log prefix and the packet's header.
struct LoggedPacket {
  absl::Time time;
  std::string prefix;
  PacketHeader header;
};

// The record of `packet` against `state`: the verdict and direction from the prefix ("deny
// in-..." / "deny eg-..."), the pods holding its addresses, and the policies that isolate the
// judged pod (the destination on ingress, the source on egress) in that direction. For a tier's
// deny-log prefix ("deny cin-...-adl" / "deny ceg-...-bdl") the ClusterNetworkPolicy Deny rule
// that decides the packet as the evaluator decides it, instead of the policies. nullopt for a
// prefix the compiler does not write.
std::optional<v1::FlowRecord> Attribute(const State& state, const std::string& node,
                                        const LoggedPacket& packet);

// One line of the JSON-lines file: the record in protobuf's JSON form (as grpcurl prints it).
std::string RecordJson(const v1::FlowRecord& record);

// Whether `record` passes the filters of `request` (verdict, namespace, pod).
bool Matches(const v1::FlowLogsRequest& request, const v1::FlowRecord& record);

struct FlowLogOptions {
  uint16_t group = 0;  // the nflog group the program logs to
  std::string node;
  // The current State (attribution); called on the worker thread.
  std::function<std::shared_ptr<const State>()> state;
  size_t queue = 4096;   // packets waiting for attribution
  size_t buffer = 1000;  // records held for Logs
  std::string file;      // JSON-lines file; empty: none
  uint64_t file_max_bytes = 64ull << 20;
  // The kernel's suppressed count (the `counter drop` rules after the logged drops); may be empty.
  std::function<absl::StatusOr<uint64_t>()> suppressed;
};

class FlowLog {
 public:
  // Binds the nflog group (FailedPrecondition when another process holds it, Unavailable when
  // the socket cannot be opened) and starts the threads.
  static absl::StatusOr<std::unique_ptr<FlowLog>> Start(FlowLogOptions options);
  // A flow log without a socket: records are given with Add (tests).
  static std::unique_ptr<FlowLog> StartWithoutSocket(FlowLogOptions options);
  ~FlowLog();

  // Queues a packet as the reader does (false: the queue was full; counted as dropped).
  bool Add(LoggedPacket packet);

  // Sends the held records that match `request` (the newest `tail`, oldest first), then with
  // `follow` each new matching one until `cancelled` returns true or `send` returns false.
  void Follow(const v1::FlowLogsRequest& request, const std::function<bool(const v1::FlowRecord&)>& send,
              const std::function<bool()>& cancelled);

  v1::FlowLogStats Stats();

 private:
  explicit FlowLog(FlowLogOptions options);
  void ReadLoop();
  void WorkLoop();
  void Write(const v1::FlowRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const FlowLogOptions options_;
  int fd_ = -1;
  uint32_t portid_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> received_{0}, queue_dropped_{0}, socket_dropped_{0};
  std::thread reader_, worker_;

  absl::Mutex mu_;
  std::deque<LoggedPacket> queue_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::FlowRecord> held_ ABSL_GUARDED_BY(mu_);
  uint64_t sequence_ ABSL_GUARDED_BY(mu_) = 0;  // records made so far
  int64_t records_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t file_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::string file_error_ ABSL_GUARDED_BY(mu_);
  int file_fd_ ABSL_GUARDED_BY(mu_) = -1;
};

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_FLOW_LOG_H_
