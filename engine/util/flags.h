// Command-line spelling shared by the binaries' main functions.
#ifndef NETPOL_ENGINE_UTIL_FLAGS_H_
#define NETPOL_ENGINE_UTIL_FLAGS_H_

#include <string>
#include <vector>

namespace netpol::util {

// Abseil flag names are C identifiers; this accepts the dashed spelling users expect from
// Kubernetes tools (--node-name) by rewriting dashes in flag names, not in values, to
// underscores: `--node-name=a-b` becomes `--node_name=a-b`. Arguments that do not start with a
// dash and everything after a lone `--` are left as they are; argv[0] is never touched.
//
// `storage` receives the rewritten arguments and owns them; the returned pointers point into it
// (an argv for absl::ParseCommandLine, valid while `storage` is unchanged).
std::vector<char*> DashedFlagsToUnderscores(int argc, char** argv,
                                            std::vector<std::string>* storage);

}  // namespace netpol::util

#endif  // NETPOL_ENGINE_UTIL_FLAGS_H_
