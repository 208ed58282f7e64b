#include "cli/args.h"

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace netpol::cli {
namespace {

// kubectl long names -> netpolctl's flag names.
const char* Rename(const std::string& name) {
  if (name == "namespace") return "n";
  if (name == "output") return "o";
  if (name == "selector") return "l";
  if (name == "all-namespaces" || name == "all_namespaces") return "A";
  return nullptr;
}

void AddFiles(const std::string& value, PreParsed* out) {
  out->files_given = true;
  for (absl::string_view part : absl::StrSplit(value, ',', absl::SkipEmpty())) {
    out->files.emplace_back(part);
  }
}

}  // namespace

PreParsed PreParse(const std::vector<std::string>& argv) {
  PreParsed out;
  if (argv.empty()) return out;
  out.args.push_back(argv[0]);
  // `logs -f` follows (as kubectl logs -f): there -f takes no file.
  bool logs = false, positional = false;
  for (size_t i = 1; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "--") {
      out.args.insert(out.args.end(), argv.begin() + i, argv.end());
      break;
    }
    if (a.size() < 2 || a[0] != '-') {
      if (!positional && a == "logs") logs = true;
      positional = true;
      out.args.push_back(a);
      continue;
    }
    const bool long_form = absl::StartsWith(a, "--");
    const std::string body = a.substr(long_form ? 2 : 1);
    const size_t eq = body.find('=');
    const std::string name = body.substr(0, eq);
    if (logs && name == "f" && eq == std::string::npos) {
      out.args.push_back("--follow");
      continue;
    }
    // -f and --filename, with the value attached, after '=' or in the next argument.
    if (name == "f" || name == "filename") {
      if (eq != std::string::npos) {
        AddFiles(body.substr(eq + 1), &out);
      } else if (i + 1 < argv.size()) {
        AddFiles(argv[++i], &out);
      } else {
        out.args.push_back(a);  // Abseil reports the missing value
      }
      continue;
    }
    if (const char* renamed = Rename(name)) {
      out.args.push_back("--" + std::string(renamed) +
                         (eq == std::string::npos ? "" : body.substr(eq)));
      continue;
    }
    if (!long_form && name.size() > 1 && std::string("fnol").find(name[0]) != std::string::npos &&
        eq == std::string::npos && name != "from") {
      // -fFILE, -nNS, -oFMT, -lSEL: a shorthand with its value attached.
      if (name[0] == 'f') {
        AddFiles(name.substr(1), &out);
      } else {
        out.args.push_back(std::string("-") + name[0] + "=" + name.substr(1));
      }
      continue;
    }
    out.args.push_back(a);
  }
  return out;
}

}  // namespace netpol::cli
