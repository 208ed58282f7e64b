// A small etcd v3 client over grpc++: list a key range at one revision, transactions, watch
// streams, compaction. It speaks etcd's own gRPC API (api/etcd/rpc.proto), plaintext or TLS,
// to one or more endpoints of one cluster, moving to the next endpoint when one is unreachable.
//
// Errors: Unavailable when no endpoint answered (the message names the endpoint and gRPC's
// reason); other codes pass through from etcd with "etcd <endpoint>: " in front.
//
// Thread safety: all methods are thread-safe; a WatchStream is used by one reader thread, and
// Cancel() may be called from any thread.
#ifndef NETPOL_AGENT_ETCD_CLIENT_H_
#define NETPOL_AGENT_ETCD_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "api/etcd/rpc.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/sync_stream.h"

namespace netpol::agent::etcd {

struct ClientOptions {
  // "host:port" of each member.
  std::vector<std::string> endpoints;
  // TLS: with a CA file the connection is TLS and the server must present a certificate it
  // signed; with a certificate and key the client authenticates with them (etcd's
  // --client-cert-auth). Empty: plaintext.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  // Deadline of each unary call.
  absl::Duration request_timeout = absl::Seconds(5);
  // HTTP/2 pings on idle connections, so a watch notices a dead peer: one every
  // `keepalive_time`, the connection is dropped when one is unanswered for `keepalive_timeout`.
  // etcd refuses pings more often than its --grpc-keepalive-min-time (default 5s).
  absl::Duration keepalive_time = absl::Seconds(10);
  absl::Duration keepalive_timeout = absl::Seconds(5);
};

// Parses "etcd://host:port[,host:port...]" into "host:port" endpoints ("[v6]:port" allowed).
// InvalidArgument naming the part that is wrong.
absl::StatusOr<std::vector<std::string>> ParseEtcdUrl(absl::string_view url);

struct ListResult {
  int64_t revision = 0;      // the store revision the list is consistent at
  uint64_t cluster_id = 0;
  std::vector<etcdserverpb::KeyValue> kvs;  // in key order
};

class WatchStream {
 public:
  ~WatchStream();
  // Asks etcd for a progress report on this stream (after Begin succeeded): etcd answers with
  // a header-only response once it is serving, which shows it alive. False when not sent.
  bool RequestProgress();
  // Blocks for the next response. False when the stream ended; Finish() says why.
  bool Next(etcdserverpb::WatchResponse* out);
  // The stream's final status (call after Next returned false).
  absl::Status Finish();
  // Sends the create request. Waits until a connection is up (etcd down: until it is back or
  // Cancel()); false when the stream ended, then Finish() says why.
  bool Begin();
  // Ends the stream from any thread; a blocked Begin or Next returns false.
  void Cancel();
  const std::string& endpoint() const { return endpoint_; }

 private:
  friend class Client;
  WatchStream() = default;
  std::string endpoint_;
  absl::Mutex write_mu_;  // one stream write at a time (Begin, RequestProgress)
  etcdserverpb::WatchRequest create_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>>
      stream_;
};

class Client {
 public:
  // Validates the options and reads the TLS files. Does not connect (connections are made on
  // first use). InvalidArgument / NotFound naming the option or file.
  static absl::StatusOr<std::unique_ptr<Client>> Create(const ClientOptions& options);

  // Every key in [key, range_end), read in pages of `page_size` keys at one revision.
  absl::StatusOr<ListResult> List(const std::string& key, const std::string& range_end,
                                  int64_t page_size = 500);
  absl::StatusOr<etcdserverpb::RangeResponse> Range(const etcdserverpb::RangeRequest& request);
  // One transaction, answered by `deadline` at the latest (and within request_timeout).
  // Unavailable only when no member can have received it (no connection could be made);
  // Unknown ("outcome unknown") when it may have reached etcd but no answer came (a deadline,
  // a connection lost or a keepalive timeout after sending): it may or may not be applied, and
  // it is not sent again.
  absl::StatusOr<etcdserverpb::TxnResponse> Txn(const etcdserverpb::TxnRequest& request,
                                                absl::Time deadline = absl::InfiniteFuture());
  absl::StatusOr<etcdserverpb::CompactionResponse> Compact(int64_t revision);
  // Leases: a key put with a lease is deleted by etcd when the lease expires, `ttl` after its
  // last renewal. LeaseGrant returns the new lease's id; LeaseKeepAliveOnce renews it once and
  // returns the TTL etcd restarted (0: the lease is gone, expired or revoked); LeaseRevoke
  // deletes it and its keys at once.
  absl::StatusOr<int64_t> LeaseGrant(absl::Duration ttl);
  absl::StatusOr<int64_t> LeaseKeepAliveOnce(int64_t id);
  absl::Status LeaseRevoke(int64_t id);
  // Opens a watch stream of [key, range_end) from `start_revision` (0: from now) on the next
  // member in turn. Begin() sends its create request; events come with Next().
  std::unique_ptr<WatchStream> Watch(const std::string& key, const std::string& range_end,
                                     int64_t start_revision);

  // "host:port,host:port" for messages.
  std::string EndpointsText() const;

 private:
  struct Member {
    std::string endpoint;
    std::unique_ptr<etcdserverpb::KV::Stub> kv;
    std::unique_ptr<etcdserverpb::Watch::Stub> watch;
    std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  };
  explicit Client(ClientOptions options) : options_(std::move(options)) {}
  // Runs `call` on the preferred member, then on the others while they are unavailable.
  template <typename Call>
  absl::Status OnSomeMember(bool idempotent, Call call,
                            absl::Time deadline = absl::InfiniteFuture());

  const ClientOptions options_;
  std::vector<Member> members_;
  std::atomic<size_t> preferred_{0};
};

}  // namespace netpol::agent::etcd

#endif  // NETPOL_AGENT_ETCD_CLIENT_H_
