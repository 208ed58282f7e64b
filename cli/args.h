// netpolctl's command line before Abseil parses it: the kubectl spellings Abseil does not know.
#ifndef NETPOL_CLI_ARGS_H_
#define NETPOL_CLI_ARGS_H_

#include <string>
#include <vector>

namespace netpol::cli {

struct PreParsed {
  // The remaining arguments, argv[0] first, for absl::ParseCommandLine.
  std::vector<std::string> args;
  // Every -f value in order (-f X, -f=X, -fX, --f X, --f=X, --filename X, --filename=X;
  // repeatable, each value also split at commas). Abseil keeps only the last occurrence of a
  // flag, so these are taken out here.
  std::vector<std::string> files;
  // Whether -f was given at all (an empty value is an error the command reports).
  bool files_given = false;
};

// Takes -f out (see PreParsed::files) and rewrites kubectl's long names and attached shorthand
// values to the flags netpolctl defines: --namespace -> --n, --output -> --o, --selector -> --l,
// --all-namespaces -> --A; -nNS, -oFMT, -lSEL -> -n=NS, -o=FMT, -l=SEL. Nothing after a lone
// "--" is touched. A missing value (-f at the end) is left for Abseil to report.
PreParsed PreParse(const std::vector<std::string>& argv);

}  // namespace netpol::cli

#endif  // NETPOL_CLI_ARGS_H_
