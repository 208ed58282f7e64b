// The commit floor: a minimal libnftnl writer that creates a table with the same sets and verdict
// maps as a netpol Program (same key types, flags and elements, verdicts included) plus the
// empty chains those verdicts name, in one batch on one netlink socket — and nothing else: no
// rules, no comments or user data, no per-message ACKs (only the last message asks for one), no
// validation, no error mapping. It is what the kernel needs to receive for the same elements,
// so netpol's commit time divided by the floor's is our writer's overhead.
//
// This is benchmark code, not a second backend: it is deliberately outside engine/netlink.
#ifndef NETPOL_BENCHMARKS_FLOOR_FLOOR_H_
#define NETPOL_BENCHMARKS_FLOOR_FLOOR_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/nft/program.h"

struct mnl_socket;  // libmnl's, declared here so this header needs no libmnl include

namespace netpol::bench {

// One encoded batch (begin, commands, end), ready to send.
struct FloorBatch {
  std::vector<char> bytes;
  size_t messages = 0;  // commands, without BATCH_BEGIN/END
  size_t elements = 0;
  uint32_t last_seq = 0;
};

// Encodes "add table <table>; add the chains named by verdicts; add the sets; add their
// elements" for `program`. `first_seq` numbers the messages.
absl::StatusOr<FloorBatch> EncodeFloor(const nft::Program& program, const std::string& table,
                                       uint32_t first_seq);
// Encodes "delete table <table>" alone (to reset between runs).
FloorBatch EncodeDeleteTable(const std::string& table, uint32_t first_seq);

// A NETLINK_NETFILTER socket that sends floor batches.
class FloorSocket {
 public:
  static absl::StatusOr<std::unique_ptr<FloorSocket>> Open();
  ~FloorSocket();
  // Sends the batch in one sendmsg and waits for the last message's ACK or the first error.
  absl::Status Send(const FloorBatch& batch);
  uint32_t NextSeq(uint32_t count) {
    uint32_t s = seq_;
    seq_ += count;
    return s;
  }

 private:
  FloorSocket() = default;
  ::mnl_socket* nl_ = nullptr;
  uint32_t portid_ = 0;
  uint32_t seq_ = 1;
};

}  // namespace netpol::bench

#endif  // NETPOL_BENCHMARKS_FLOOR_FLOOR_H_
