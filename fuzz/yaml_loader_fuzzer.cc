// Fuzz target: the YAML/JSON loader on arbitrary bytes, strict and lenient.
//
// Invariants (each a promise of engine/model/loader.h):
//  - no crash, no sanitizer report, whatever the bytes;
//  - an error is InvalidArgument and its message starts with the source name;
//  - strict accepts a subset of what lenient accepts, with the same objects;
//  - every loaded object survives ToYaml -> LoadYaml (strict) unchanged, alone and as a stream.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/model/loader.h"
#include "fuzz/fuzz_check.h"

namespace netpol {
namespace {

constexpr char kSource[] = "fuzz";

void CheckError(const absl::Status& status) {
  FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument, status.ToString());
  FUZZ_CHECK(absl::StartsWith(status.message(), absl::StrCat(kSource, ": ")), status.ToString());
}

void CheckRoundTrip(const LoadResult& loaded) {
  LoadOptions strict;
  strict.source = "roundtrip";
  for (const Object& object : loaded.objects) {
    const std::string text = ToYaml(object);
    absl::StatusOr<LoadResult> again = LoadYaml(text, strict);
    FUZZ_CHECK(again.ok(), absl::StrCat(again.status().ToString(), "\n--- ToYaml:\n", text));
    FUZZ_CHECK(again->objects.size() == 1 && again->objects[0] == object,
               absl::StrCat(object.Ref(), " changed in a round trip\n--- ToYaml:\n", text,
                            "\n--- again:\n", ToYaml(again->objects)));
  }
  const std::string stream = ToYaml(loaded.objects);
  absl::StatusOr<LoadResult> again = LoadYaml(stream, strict);
  FUZZ_CHECK(again.ok(), absl::StrCat(again.status().ToString(), "\n--- ToYaml:\n", stream));
  FUZZ_CHECK(again->objects == loaded.objects,
             absl::StrCat("the stream changed in a round trip\n--- ToYaml:\n", stream));
}

}  // namespace
}  // namespace netpol

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace netpol;
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  LoadOptions strict;
  strict.source = kSource;
  LoadOptions lenient = strict;
  lenient.strict = false;

  absl::StatusOr<LoadResult> s = LoadYaml(text, strict);
  absl::StatusOr<LoadResult> l = LoadYaml(text, lenient);
  if (!s.ok()) CheckError(s.status());
  if (!l.ok()) CheckError(l.status());
  if (s.ok()) {
    FUZZ_CHECK(l.ok(), absl::StrCat("strict accepts, lenient rejects: ", l.status().ToString()));
    FUZZ_CHECK(l->objects == s->objects, "strict and lenient load different objects");
  }
  if (l.ok()) CheckRoundTrip(*l);
  return 0;
}
