// The Kubernetes API HTTPS client. See client.h.
#include "agent/k8s/client.h"

#include <curl/curl.h>

#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "simdjson.h"

namespace netpol::agent::k8s {
namespace {

std::once_flag curl_once;

void InitCurl() {
  std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Blob {
  curl_blob blob;
  explicit Blob(const std::string& s) {
    blob.data = const_cast<char*>(s.data());
    blob.len = s.size();
    blob.flags = CURL_BLOB_COPY;
  }
};

}  // namespace

struct Client::Handle {
  CURL* curl = nullptr;
  curl_slist* headers = nullptr;
  char error[CURL_ERROR_SIZE] = {};
  Handle() : curl(curl_easy_init()) {}
  ~Handle() {
    if (headers != nullptr) curl_slist_free_all(headers);
    if (curl != nullptr) curl_easy_cleanup(curl);
  }
};

Client::Client(ClusterConfig config) : config_(std::move(config)), credentials_(config_) {
  InitCurl();
}

Client::~Client() = default;

absl::Status Client::Prepare(Handle* h, const std::string& path) {
  if (h->curl == nullptr) return absl::InternalError("curl_easy_init failed");
  CURL* c = h->curl;
  const std::string url = config_.server + path;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->error);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPIDLE, 30L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPINTVL, 10L);
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");  // gzip when the server offers it
  if (!config_.ca_pem.empty()) {
    Blob ca(config_.ca_pem);
    curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &ca.blob);
  }
  if (!config_.client_cert_pem.empty()) {
    Blob cert(config_.client_cert_pem);
    Blob key(config_.client_key_pem);
    curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &cert.blob);
    curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
    curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB, &key.blob);
  }
  h->headers = curl_slist_append(h->headers, "Accept: application/json");
  h->headers = curl_slist_append(h->headers, "User-Agent: netpol-agent");
  absl::StatusOr<std::string> token = credentials_.Token();
  if (!token.ok()) return token.status();
  if (!token->empty()) {
    h->headers =
        curl_slist_append(h->headers, absl::StrCat("Authorization: Bearer ", *token).c_str());
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h->headers);
  return absl::OkStatus();
}

namespace {

size_t CollectBody(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

absl::Status TransportError(CURLcode code, const char* error, const std::string& server) {
  return absl::UnavailableError(absl::StrCat("kubernetes API ", server, ": ",
                                             *error != '\0' ? error : curl_easy_strerror(code)));
}

}  // namespace

absl::StatusOr<HttpResponse> Client::Get(const std::string& path, absl::Duration timeout) {
  Handle h;
  if (absl::Status st = Prepare(&h, path); !st.ok()) return st;
  HttpResponse out;
  curl_easy_setopt(h.curl, CURLOPT_WRITEFUNCTION, CollectBody);
  curl_easy_setopt(h.curl, CURLOPT_WRITEDATA, &out.body);
  curl_easy_setopt(h.curl, CURLOPT_TIMEOUT_MS, static_cast<long>(absl::ToInt64Milliseconds(timeout)));
  CURLcode code = curl_easy_perform(h.curl);
  if (code != CURLE_OK) return TransportError(code, h.error, config_.server);
  curl_easy_getinfo(h.curl, CURLINFO_RESPONSE_CODE, &out.status);
  if (out.status == 401) credentials_.Invalidate();
  return out;
}

absl::StatusOr<HttpResponse> Client::Send(const std::string& method, const std::string& path,
                                          const std::string& body, absl::Duration timeout) {
  Handle h;
  if (absl::Status st = Prepare(&h, path); !st.ok()) return st;
  // Appended to the list Prepare handed to curl (its head does not change).
  h.headers = curl_slist_append(h.headers, "Content-Type: application/json");
  HttpResponse out;
  curl_easy_setopt(h.curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(h.curl, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(h.curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(h.curl, CURLOPT_WRITEFUNCTION, CollectBody);
  curl_easy_setopt(h.curl, CURLOPT_WRITEDATA, &out.body);
  curl_easy_setopt(h.curl, CURLOPT_TIMEOUT_MS, static_cast<long>(absl::ToInt64Milliseconds(timeout)));
  CURLcode code = curl_easy_perform(h.curl);
  if (code != CURLE_OK) return TransportError(code, h.error, config_.server);
  curl_easy_getinfo(h.curl, CURLINFO_RESPONSE_CODE, &out.status);
  if (out.status == 401) credentials_.Invalidate();
  return out;
}

namespace {

struct StreamState {
  const std::function<bool(absl::string_view)>* on_line;
  const std::atomic<bool>* cancel;
  CURL* curl;
  const std::function<void(long)>* on_headers;
  const std::function<void()>* on_chunk;
  long status = 0;
  std::string buffer;    // an incomplete line, or a non-200 body
  bool stopped = false;  // on_line asked to stop
};

size_t StreamBody(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<StreamState*>(user);
  const size_t len = size * n;
  if (s->status == 0) curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &s->status);
  s->buffer.append(data, len);
  if (s->status != 200) return len;
  size_t start = 0;
  for (;;) {
    const size_t nl = s->buffer.find('\n', start);
    if (nl == std::string::npos) break;
    absl::string_view line(s->buffer.data() + start, nl - start);
    start = nl + 1;
    if (line.empty()) continue;
    if (!(*s->on_line)(line)) {
      s->stopped = true;
      return 0;  // aborts the transfer
    }
  }
  s->buffer.erase(0, start);
  if (*s->on_chunk) (*s->on_chunk)();
  return len;
}

size_t StreamHeader(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<StreamState*>(user);
  const size_t len = size * n;
  if (len == 2 && data[0] == '\r' && data[1] == '\n') {
    long status = 0;
    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200) {
      s->status = status;
      if (*s->on_headers) (*s->on_headers)(status);
    }
  }
  return len;
}

int StreamProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* s = static_cast<StreamState*>(user);
  return s->cancel != nullptr && s->cancel->load() ? 1 : 0;
}

}  // namespace

absl::StatusOr<HttpResponse> Client::Stream(const std::string& path,
                                            const std::function<bool(absl::string_view)>& on_line,
                                            const std::atomic<bool>* cancel,
                                            absl::Duration idle_timeout,
                                            const std::function<void(long)>& on_headers,
                                            const std::function<void()>& on_chunk) {
  Handle h;
  if (absl::Status st = Prepare(&h, path); !st.ok()) return st;
  StreamState s{&on_line, cancel, h.curl, &on_headers, &on_chunk};
  curl_easy_setopt(h.curl, CURLOPT_HEADERFUNCTION, StreamHeader);
  curl_easy_setopt(h.curl, CURLOPT_HEADERDATA, &s);
  curl_easy_setopt(h.curl, CURLOPT_WRITEFUNCTION, StreamBody);
  curl_easy_setopt(h.curl, CURLOPT_WRITEDATA, &s);
  curl_easy_setopt(h.curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h.curl, CURLOPT_XFERINFOFUNCTION, StreamProgress);
  curl_easy_setopt(h.curl, CURLOPT_XFERINFODATA, &s);
  curl_easy_setopt(h.curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(h.curl, CURLOPT_LOW_SPEED_TIME,
                   static_cast<long>(std::max<int64_t>(1, absl::ToInt64Seconds(idle_timeout))));
  CURLcode code = curl_easy_perform(h.curl);
  HttpResponse out;
  curl_easy_getinfo(h.curl, CURLINFO_RESPONSE_CODE, &out.status);
  if (out.status == 401) credentials_.Invalidate();
  if (s.stopped || (code == CURLE_ABORTED_BY_CALLBACK && cancel != nullptr && cancel->load())) {
    return out;
  }
  if (code != CURLE_OK) {
    if (out.status != 0 && out.status != 200) {
      out.body = std::move(s.buffer);
      return out;
    }
    return TransportError(code, h.error, config_.server);
  }
  if (out.status != 200) out.body = std::move(s.buffer);
  return out;
}

std::string StatusMessage(absl::string_view body) {
  simdjson::ondemand::parser parser;
  simdjson::padded_string padded(body.data(), body.size());
  simdjson::ondemand::document doc;
  std::string_view message;
  if (parser.iterate(padded).get(doc) == simdjson::SUCCESS &&
      doc["message"].get_string().get(message) == simdjson::SUCCESS) {
    return std::string(message);
  }
  std::string text(body.substr(0, 200));
  if (body.size() > 200) text += "...";
  return text;
}

std::string StatusReason(absl::string_view body) {
  simdjson::ondemand::parser parser;
  simdjson::padded_string padded(body.data(), body.size());
  simdjson::ondemand::document doc;
  std::string_view reason;
  if (parser.iterate(padded).get(doc) == simdjson::SUCCESS &&
      doc["reason"].get_string().get(reason) == simdjson::SUCCESS) {
    return std::string(reason);
  }
  return "";
}

}  // namespace netpol::agent::k8s
