// Kubernetes client configuration. See config.h.
#include "agent/k8s/config.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace netpol::agent::k8s {
namespace {

std::string Resolve(const std::string& dir, const std::string& path) {
  if (path.empty() || path[0] == '/' || dir.empty()) return path;
  return absl::StrCat(dir, "/", path);
}

// The entry of a named list (clusters, users, contexts) called `name`.
std::optional<YAML::Node> Named(const YAML::Node& list, const std::string& name) {
  if (!list || !list.IsSequence()) return std::nullopt;
  for (const YAML::Node& e : list) {
    if (e.IsMap() && e["name"] && e["name"].IsScalar() && e["name"].as<std::string>() == name) {
      return e;
    }
  }
  return std::nullopt;
}

std::string Str(const YAML::Node& map, const char* key) {
  if (!map || !map.IsMap()) return "";
  YAML::Node v = map[key];
  if (!v || !v.IsScalar()) return "";
  return v.as<std::string>();
}

// `file_key` (a path) or `data_key` (base64) of `map`, read; empty when neither.
absl::StatusOr<std::string> FileOrData(const YAML::Node& map, const char* file_key,
                                       const char* data_key, const std::string& dir,
                                       const std::string& where) {
  const std::string data = Str(map, data_key);
  if (!data.empty()) {
    std::string out;
    if (!absl::Base64Unescape(data, &out)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".", data_key, ": not base64"));
    }
    return out;
  }
  const std::string file = Str(map, file_key);
  if (file.empty()) return std::string();
  absl::StatusOr<std::string> text = ReadFileText(Resolve(dir, file));
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat(where, ".", file_key, ": ", text.status().message()));
  }
  return text;
}

}  // namespace

absl::StatusOr<std::string> ReadFileText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    return absl::Status(err == ENOENT ? absl::StatusCode::kNotFound
                                      : err == EACCES ? absl::StatusCode::kPermissionDenied
                                                      : absl::StatusCode::kInvalidArgument,
                        absl::StrCat("cannot read ", path, ": ", std::strerror(err)));
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

absl::StatusOr<ClusterConfig> ParseKubeconfig(const std::string& text, const std::string& dir,
                                              const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", e.what()));
  }
  try {
    if (!root.IsMap()) return absl::InvalidArgumentError(absl::StrCat(source, ": not a map"));
    const std::string context_name = Str(root, "current-context");
    if (context_name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": current-context: not set"));
    }
    std::optional<YAML::Node> context = Named(root["contexts"], context_name);
    if (!context) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": contexts: no context named \"", context_name, "\""));
    }
    const YAML::Node ctx = (*context)["context"];
    const std::string cluster_name = Str(ctx, "cluster");
    const std::string user_name = Str(ctx, "user");
    std::optional<YAML::Node> cluster = Named(root["clusters"], cluster_name);
    if (!cluster) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": clusters: no cluster named \"", cluster_name, "\""));
    }
    const YAML::Node c = (*cluster)["cluster"];
    const std::string cwhere = absl::StrCat(source, ": cluster ", cluster_name);
    ClusterConfig out;
    out.source = absl::StrCat(source, " (context ", context_name, ")");
    out.server = std::string(absl::StripSuffix(Str(c, "server"), "/"));
    if (out.server.empty()) return absl::InvalidArgumentError(absl::StrCat(cwhere, ": server: required"));
    if (!absl::StartsWith(out.server, "https://")) {
      return absl::InvalidArgumentError(absl::StrCat(
          cwhere, ": server: \"", out.server, "\" is not https:// (the API server is always "
          "reached over verified TLS)"));
    }
    const std::string insecure = Str(c, "insecure-skip-tls-verify");
    if (insecure == "true") {
      return absl::InvalidArgumentError(absl::StrCat(
          cwhere, ": insecure-skip-tls-verify is not supported: give certificate-authority"));
    }
    absl::StatusOr<std::string> ca =
        FileOrData(c, "certificate-authority", "certificate-authority-data", dir, cwhere);
    if (!ca.ok()) return ca.status();
    out.ca_pem = *ca;
    if (!user_name.empty()) {
      std::optional<YAML::Node> user = Named(root["users"], user_name);
      if (!user) {
        return absl::InvalidArgumentError(
            absl::StrCat(source, ": users: no user named \"", user_name, "\""));
      }
      const YAML::Node u = (*user)["user"];
      const std::string uwhere = absl::StrCat(source, ": user ", user_name);
      out.token = Str(u, "token");
      const std::string token_file = Str(u, "tokenFile");
      if (!token_file.empty()) out.token_file = Resolve(dir, token_file);
      absl::StatusOr<std::string> cert =
          FileOrData(u, "client-certificate", "client-certificate-data", dir, uwhere);
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key = FileOrData(u, "client-key", "client-key-data", dir, uwhere);
      if (!key.ok()) return key.status();
      out.client_cert_pem = *cert;
      out.client_key_pem = *key;
      if (out.client_cert_pem.empty() != out.client_key_pem.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            uwhere, ": client-certificate and client-key go together (one is missing)"));
      }
      for (const char* unsupported : {"exec", "auth-provider", "username"}) {
        if (u && u.IsMap() && u[unsupported]) {
          return absl::InvalidArgumentError(absl::StrCat(
              uwhere, ": ", unsupported, " is not supported (use token, tokenFile or a client "
              "certificate)"));
        }
      }
    }
    return out;
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", e.what()));
  }
}

absl::StatusOr<ClusterConfig> LoadKubeconfig(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileText(path);
  if (!text.ok()) return text.status();
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  return ParseKubeconfig(*text, dir, absl::StrCat("kubeconfig ", path));
}

absl::StatusOr<ClusterConfig> InClusterConfig(const std::string& service_account_dir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || *host == '\0' || port == nullptr || *port == '\0') {
    return absl::FailedPreconditionError(
        "not running in a cluster (KUBERNETES_SERVICE_HOST/PORT unset) and no --kubeconfig");
  }
  ClusterConfig out;
  const std::string h = host;
  out.server = absl::StrCat("https://", absl::StrContains(h, ":") ? absl::StrCat("[", h, "]") : h,
                            ":", port);
  out.source = absl::StrCat("in-cluster (", service_account_dir, ")");
  absl::StatusOr<std::string> ca = ReadFileText(service_account_dir + "/ca.crt");
  if (!ca.ok()) return ca.status();
  out.ca_pem = *ca;
  out.token_file = service_account_dir + "/token";
  absl::StatusOr<std::string> token = ReadFileText(out.token_file);
  if (!token.ok()) return token.status();
  return out;
}

Credentials::Credentials(const ClusterConfig& config, absl::Duration refresh)
    : static_token_(config.token), token_file_(config.token_file), refresh_(refresh) {}

absl::StatusOr<std::string> Credentials::Token() {
  if (token_file_.empty()) return static_token_;
  absl::MutexLock l(&mu_);
  const absl::Time now = absl::Now();
  if (now - read_at_ < refresh_) return token_;
  absl::StatusOr<std::string> text = ReadFileText(token_file_);
  if (!text.ok()) {
    if (!token_.empty()) return token_;  // keep the last one; the server decides
    return text.status();
  }
  token_ = std::string(absl::StripAsciiWhitespace(*text));
  read_at_ = now;
  return token_;
}

void Credentials::Invalidate() {
  absl::MutexLock l(&mu_);
  read_at_ = absl::InfinitePast();
}

}  // namespace netpol::agent::k8s
