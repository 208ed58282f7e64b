// Reading manifests from files and directories (see loader.h).
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/model/loader.h"
#include "engine/model/walker.h"

namespace netpol {

using load::TooLarge;

absl::StatusOr<LoadResult> LoadFile(const std::string& path, const LoadOptions& options) {
  LoadOptions opts = options;
  if (opts.source.empty()) opts.source = path;
  std::error_code ec;
  uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) {
    std::string msg = absl::StrCat(opts.source, ": ", ec.message());
    if (ec == std::errc::no_such_file_or_directory) return absl::NotFoundError(msg);
    if (ec == std::errc::permission_denied) return absl::PermissionDeniedError(msg);
    return absl::InvalidArgumentError(msg);
  }
  if (size > opts.max_bytes) return TooLarge(opts.source + ": ", size, opts.max_bytes);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    std::string msg = absl::StrCat(opts.source, ": ", std::strerror(err));
    if (err == EACCES) return absl::PermissionDeniedError(msg);
    return absl::InvalidArgumentError(msg);
  }
  // Read one byte past the limit so a file that grew after the size check is still caught.
  std::string text(
      (opts.max_bytes == std::numeric_limits<size_t>::max() ? size : opts.max_bytes) + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat(opts.source, ": read error"));
  }
  text.resize(static_cast<size_t>(in.gcount()));
  return LoadYaml(text, opts);
}

absl::StatusOr<LoadResult> LoadPath(const std::string& path, const LoadOptions& options) {
  std::error_code ec;
  if (!std::filesystem::is_directory(path, ec)) return LoadFile(path, options);
  std::vector<std::string> files;
  for (std::filesystem::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (!absl::EndsWith(name, ".yaml") && !absl::EndsWith(name, ".yml") &&
        !absl::EndsWith(name, ".json")) {
      continue;
    }
    std::error_code fec;
    if (!it->is_regular_file(fec)) continue;
    files.push_back(it->path().string());
  }
  if (ec) return absl::InvalidArgumentError(absl::StrCat(path, ": ", ec.message()));
  std::sort(files.begin(), files.end());
  LoadResult all;
  for (const std::string& file : files) {
    LoadOptions opts = options;
    opts.source = file;
    absl::StatusOr<LoadResult> r = LoadFile(file, opts);
    if (!r.ok()) return r.status();
    for (Object& o : r->objects) all.objects.push_back(std::move(o));
    for (std::string& wmsg : r->warnings) all.warnings.push_back(std::move(wmsg));
  }
  return all;
}

}  // namespace netpol
