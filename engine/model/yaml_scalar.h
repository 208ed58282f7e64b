// Scalars resolved the way Kubernetes' YAML reader (YAML 1.1) does: an unquoted 80 is an
// integer, "80" a string, unquoted yes/no/on/off/true/false (and y/n) booleans, ~/null null,
// 1.5/.inf floats; explicit tags (!, !!str, !!int...) win over the text.
//
// Thread safety: all functions are reentrant.
#ifndef NETPOL_ENGINE_MODEL_YAML_SCALAR_H_
#define NETPOL_ENGINE_MODEL_YAML_SCALAR_H_

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace netpol::yaml11 {

enum class ScalarType { kNull, kBool, kInt, kFloat, kString };

// The type of a plain (unquoted, untagged) scalar.
ScalarType ResolvePlain(absl::string_view s);
// The type of a node's scalar, its tag first (a null or non-scalar node: kNull).
ScalarType Resolve(const YAML::Node& n);

// The value of a scalar Resolve calls kBool.
bool ParseBool(absl::string_view s);
// Parses a YAML integer (decimal, 0x, 0o, 0b, '_' separators); nullopt when it does not fit in
// 64 bits or is malformed.
std::optional<int64_t> ParseInt(absl::string_view s);

// What a node is, for "must be a string, got integer \"80\"": map, list, null, boolean "yes"...
std::string Describe(const YAML::Node& n);

}  // namespace netpol::yaml11

#endif  // NETPOL_ENGINE_MODEL_YAML_SCALAR_H_
