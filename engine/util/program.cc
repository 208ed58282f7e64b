#include "engine/util/program.h"

#include <algorithm>
#include <ostream>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace netpol::util {

std::string VersionLine(absl::string_view program) {
  return absl::StrCat(program, " ", BuildVersion(), " (commit ", BuildCommit(), ", ",
                      BuildCompilationMode(), " build)");
}

std::string FlagsHelp() {
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    // Abseil's and other libraries' flags live in their own files; ours in the project's.
    if (absl::StrContains(flag->Filename(), "absl/")) continue;
    flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(),
            [](const absl::CommandLineFlag* a, const absl::CommandLineFlag* b) {
              return a->Name() < b->Name();
            });
  std::string out = "Flags:\n";
  for (const absl::CommandLineFlag* f : flags) {
    const std::string name = absl::StrReplaceAll(f->Name(), {{"_", "-"}});
    const std::string dashes = name.size() == 1 ? "-" : "--";
    const std::string value = f->IsOfType<bool>() ? "" : "=VALUE";
    std::string line = absl::StrCat("  ", dashes, name, value);
    std::string def = f->DefaultValue();
    std::string help = f->Help();
    if (!def.empty() && def != "false") absl::StrAppend(&help, " (default: ", def, ")");
    if (line.size() < 24) {
      line.resize(24, ' ');
      absl::StrAppend(&out, line, help, "\n");
    } else {
      absl::StrAppend(&out, line, "\n", std::string(24, ' '), help, "\n");
    }
  }
  absl::StrAppend(&out, "  -h, --help            This help\n",
                  "  --version             The version, commit and compilation mode\n");
  return out;
}

bool HandleHelpAndVersion(int argc, char** argv, absl::string_view program,
                          absl::string_view usage, std::ostream& out) {
  for (int i = 1; i < argc; ++i) {
    const absl::string_view a = argv[i];
    if (a == "--") break;
    if (a == "-h" || a == "--help" || a == "-help" || a == "--helpfull" || a == "-helpfull") {
      out << usage;
      if (!absl::EndsWith(usage, "\n")) out << "\n";
      out << "\n" << FlagsHelp();
      return true;
    }
    if (a == "--version" || a == "-version") {
      out << VersionLine(program) << "\n";
      return true;
    }
  }
  return false;
}

}  // namespace netpol::util
