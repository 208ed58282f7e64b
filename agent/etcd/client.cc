// The etcd v3 client. See client.h.
#include "agent/etcd/client.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace netpol::agent::etcd {
namespace {

// Watch and list answers may be large (a page of objects, a burst of events); etcd's own
// client accepts answers up to 2 GiB. 256 MiB is far above any answer our page size produces.
constexpr int kMaxReceiveBytes = 256 << 20;
// Reconnect quickly after an etcd restart: gRPC's default backoff grows to two minutes. (The
// "min reconnect backoff" argument is left alone: gRPC uses it as the connect timeout.)
constexpr int kMaxReconnectBackoffMs = 2000;
constexpr int kInitialReconnectBackoffMs = 200;

absl::StatusOr<std::string> ReadFile(const std::string& what, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(what, " ", path, ": cannot be read"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status FromGrpc(const std::string& endpoint, const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat("etcd ", endpoint, ": ", s.error_message());
  switch (s.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return absl::UnavailableError(msg);
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::DeadlineExceededError(msg);
    default:
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()), msg);
  }
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseEtcdUrl(absl::string_view url) {
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "etcd://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("datastore \"", url, "\": want etcd://HOST:PORT[,HOST:PORT...]"));
  }
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(rest, ',')) {
    part = absl::StripAsciiWhitespace(part);
    size_t colon = part.rfind(':');
    int port = 0;
    absl::string_view host = colon == absl::string_view::npos ? part : part.substr(0, colon);
    if (colon == absl::string_view::npos || host.empty() ||
        !absl::SimpleAtoi(part.substr(colon + 1), &port) || port < 1 || port > 65535 ||
        part.find('/') != absl::string_view::npos ||
        (host.find(':') != absl::string_view::npos &&
         !(absl::StartsWith(host, "[") && absl::EndsWith(host, "]")))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "datastore \"", url, "\": endpoint \"", part,
          "\": want HOST:PORT ([ADDRESS]:PORT for IPv6), e.g. etcd://10.0.0.1:2379"));
    }
    out.emplace_back(part);
  }
  return out;
}

WatchStream::~WatchStream() {
  if (stream_ != nullptr) {
    context_.TryCancel();
    etcdserverpb::WatchResponse drain;
    while (stream_->Read(&drain)) {
    }
    stream_->Finish().ok();  // the stream is being thrown away; its status does not matter
  }
}

bool WatchStream::Begin() {
  absl::MutexLock l(&write_mu_);
  return stream_->Write(create_);
}

bool WatchStream::RequestProgress() {
  etcdserverpb::WatchRequest r;
  r.mutable_progress_request();
  absl::MutexLock l(&write_mu_);
  return stream_ != nullptr && stream_->Write(r);
}

bool WatchStream::Next(etcdserverpb::WatchResponse* out) { return stream_->Read(out); }

absl::Status WatchStream::Finish() {
  absl::Status st = FromGrpc(endpoint_, stream_->Finish());
  stream_.reset();
  if (st.ok()) return absl::UnavailableError(absl::StrCat("etcd ", endpoint_, ": watch ended"));
  return st;
}

void WatchStream::Cancel() { context_.TryCancel(); }

absl::StatusOr<std::unique_ptr<Client>> Client::Create(const ClientOptions& options) {
  if (options.endpoints.empty()) return absl::InvalidArgumentError("etcd: no endpoints");
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (!options.ca_file.empty() || !options.cert_file.empty() || !options.key_file.empty()) {
    if (options.cert_file.empty() != options.key_file.empty()) {
      return absl::InvalidArgumentError(
          "etcd TLS: give both a client certificate and its key, or neither");
    }
    grpc::SslCredentialsOptions ssl;
    if (!options.ca_file.empty()) {
      absl::StatusOr<std::string> ca = ReadFile("etcd CA file", options.ca_file);
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = *ca;
    }
    if (!options.cert_file.empty()) {
      absl::StatusOr<std::string> cert = ReadFile("etcd certificate", options.cert_file);
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key = ReadFile("etcd key", options.key_file);
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    creds = grpc::SslCredentials(ssl);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  std::unique_ptr<Client> client(new Client(options));
  for (const std::string& endpoint : options.endpoints) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
                static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kInitialReconnectBackoffMs);
    args.SetMaxReceiveMessageSize(kMaxReceiveBytes);
    std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(endpoint, creds, args);
    Member m;
    m.endpoint = endpoint;
    m.kv = etcdserverpb::KV::NewStub(channel);
    m.watch = etcdserverpb::Watch::NewStub(channel);
    m.lease = etcdserverpb::Lease::NewStub(channel);
    client->members_.push_back(std::move(m));
  }
  return client;
}

std::string Client::EndpointsText() const { return absl::StrJoin(options_.endpoints, ","); }

namespace {

// Whether a failed call's error says no connection was made, so the request never left this
// process (gRPC fails such calls before sending anything when wait_for_ready is off).
bool NeverSent(const absl::Status& s) {
  if (!absl::IsUnavailable(s)) return false;
  for (absl::string_view m : {"failed to connect", "Connection refused",
                              "connections to all backends failing", "DNS resolution failed",
                              "No route to host", "Network is unreachable", "empty address list"}) {
    if (absl::StrContains(s.message(), m)) return true;
  }
  return false;
}

}  // namespace

template <typename Call>
absl::Status Client::OnSomeMember(bool idempotent, Call call, absl::Time deadline) {
  const size_t n = members_.size();
  const size_t first = preferred_.load() % n;
  absl::Status last;
  for (size_t i = 0; i < n; ++i) {
    const size_t at = (first + i) % n;
    grpc::ClientContext context;
    context.set_deadline(
        absl::ToChronoTime(std::min(absl::Now() + options_.request_timeout, deadline)));
    // Reads wait (up to the deadline) for a connection being made instead of failing at once
    // (see Watch for why); writes fail fast so a client hears "unavailable" right away while
    // etcd is down.
    context.set_wait_for_ready(idempotent);
    last = FromGrpc(members_[at].endpoint, call(members_[at], &context));
    if (last.ok()) {
      preferred_.store(at);
      return last;
    }
    if (!absl::IsUnavailable(last) && !absl::IsDeadlineExceeded(last)) return last;
    if (absl::IsDeadlineExceeded(last) && idempotent) {
      // A read waits for a connection, so its deadline passing usually means none was made.
      last = absl::UnavailableError(absl::StrCat(
          last.message(), " (no answer within ", absl::FormatDuration(options_.request_timeout),
          ": is etcd running and reachable?)"));
    }
    // This member is unreachable or slow: prefer the next one from now on.
    preferred_.store((at + 1) % n);
    // A write that may have reached etcd may have been applied; it is not sent again.
    if (!idempotent && !NeverSent(last)) {
      return absl::UnknownError(absl::StrCat(
          "outcome unknown: the request may have reached etcd but no answer came: ",
          last.message()));
    }
    if (absl::Now() >= deadline) break;
  }
  return last;
}

absl::StatusOr<etcdserverpb::RangeResponse> Client::Range(
    const etcdserverpb::RangeRequest& request) {
  etcdserverpb::RangeResponse response;
  absl::Status st = OnSomeMember(true, [&](Member& m, grpc::ClientContext* ctx) {
    return m.kv->Range(ctx, request, &response);
  });
  if (!st.ok()) return st;
  return response;
}

absl::StatusOr<ListResult> Client::List(const std::string& key, const std::string& range_end,
                                        int64_t page_size) {
  ListResult out;
  etcdserverpb::RangeRequest request;
  request.set_key(key);
  request.set_range_end(range_end);
  request.set_limit(page_size);
  for (;;) {
    absl::StatusOr<etcdserverpb::RangeResponse> page = Range(request);
    if (!page.ok()) return page.status();
    if (out.revision == 0) {
      out.revision = page->header().revision();
      out.cluster_id = page->header().cluster_id();
      // Later pages read the same revision, so the list is one consistent cut.
      request.set_revision(out.revision);
    }
    for (etcdserverpb::KeyValue& kv : *page->mutable_kvs()) out.kvs.push_back(std::move(kv));
    if (!page->more() || page->kvs_size() == 0) break;
    // The next page starts just after the last key read.
    request.set_key(out.kvs.back().key() + std::string(1, '\0'));
  }
  return out;
}

absl::StatusOr<etcdserverpb::TxnResponse> Client::Txn(const etcdserverpb::TxnRequest& request,
                                                      absl::Time deadline) {
  etcdserverpb::TxnResponse response;
  // A transaction that may have reached etcd is not sent again: it may have been applied.
  absl::Status st = OnSomeMember(
      false,
      [&](Member& m, grpc::ClientContext* ctx) { return m.kv->Txn(ctx, request, &response); },
      deadline);
  if (!st.ok()) return st;
  return response;
}

absl::StatusOr<etcdserverpb::CompactionResponse> Client::Compact(int64_t revision) {
  etcdserverpb::CompactionRequest request;
  request.set_revision(revision);
  request.set_physical(true);
  etcdserverpb::CompactionResponse response;
  absl::Status st = OnSomeMember(true, [&](Member& m, grpc::ClientContext* ctx) {
    return m.kv->Compact(ctx, request, &response);
  });
  if (!st.ok()) return st;
  return response;
}

absl::StatusOr<int64_t> Client::LeaseGrant(absl::Duration ttl) {
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(ttl, absl::Seconds(1)))));
  etcdserverpb::LeaseGrantResponse response;
  // A grant that reached etcd without an answer leaves a lease that expires on its own.
  absl::Status st = OnSomeMember(true, [&](Member& m, grpc::ClientContext* ctx) {
    return m.lease->LeaseGrant(ctx, request, &response);
  });
  if (!st.ok()) return st;
  if (!response.error().empty()) {
    return absl::FailedPreconditionError(absl::StrCat("etcd lease grant: ", response.error()));
  }
  return response.id();
}

absl::StatusOr<int64_t> Client::LeaseKeepAliveOnce(int64_t id) {
  etcdserverpb::LeaseKeepAliveRequest request;
  request.set_id(id);
  etcdserverpb::LeaseKeepAliveResponse response;
  absl::Status st = OnSomeMember(true, [&](Member& m, grpc::ClientContext* ctx) {
    auto stream = m.lease->LeaseKeepAlive(ctx);
    if (!stream->Write(request)) return stream->Finish();
    stream->WritesDone();
    bool got = stream->Read(&response);
    grpc::Status finished = stream->Finish();
    if (!finished.ok()) return finished;
    if (!got) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "no keepalive answer");
    return grpc::Status::OK;
  });
  if (!st.ok()) return st;
  return response.ttl();
}

absl::Status Client::LeaseRevoke(int64_t id) {
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(id);
  etcdserverpb::LeaseRevokeResponse response;
  return OnSomeMember(true, [&](Member& m, grpc::ClientContext* ctx) {
    return m.lease->LeaseRevoke(ctx, request, &response);
  });
}

std::unique_ptr<WatchStream> Client::Watch(const std::string& key, const std::string& range_end,
                                           int64_t start_revision) {
  const size_t at = preferred_.load() % members_.size();
  // The next watch tries the next member, so a dead member is left behind.
  preferred_.store((at + 1) % members_.size());
  std::unique_ptr<WatchStream> w(new WatchStream());
  w->endpoint_ = members_[at].endpoint;
  // Without a leader a member cannot serve new events; etcd ends such watches when asked to.
  w->context_.AddMetadata("hasleader", "true");
  // Wait for a connection rather than failing at once: etcd answers nothing on a connection
  // (not even keepalive pings) until its first call arrives, so a connection made without a
  // call waiting on it would be dropped by the keepalive watchdog.
  w->context_.set_wait_for_ready(true);
  etcdserverpb::WatchCreateRequest* c = w->create_.mutable_create_request();
  c->set_key(key);
  c->set_range_end(range_end);
  c->set_start_revision(start_revision);
  w->stream_ = members_[at].watch->Watch(&w->context_);
  return w;
}

}  // namespace netpol::agent::etcd
