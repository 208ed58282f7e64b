// Loads a multi-document YAML file of Namespaces, Pods and NetworkPolicies into a State: the
// common first step of the test tools.
#ifndef NETPOL_TESTS_TOOLS_STATE_FILE_H_
#define NETPOL_TESTS_TOOLS_STATE_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "engine/model/loader.h"
#include "engine/model/model.h"
#include "engine/util/status_macros.h"

namespace netpol::tools {

inline absl::StatusOr<State> LoadState(const std::string& path) {
  LoadOptions options;
  options.source = path;
  ASSIGN_OR_RETURN(LoadResult loaded, LoadFile(path, options));
  State state;
  for (const Object& object : loaded.objects) Upsert(object, &state);
  return state;
}

}  // namespace netpol::tools

#endif  // NETPOL_TESTS_TOOLS_STATE_FILE_H_
