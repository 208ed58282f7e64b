// See fixtures.h.
#include "engine/conntrack/fixtures.h"

#include "absl/status/statusor.h"
#include "gtest/gtest.h"

namespace netpol::conntrack::fixtures {

State StateOf(const std::vector<std::string>& docs) {
  State state;
  for (const std::string& doc : docs) {
    absl::StatusOr<LoadResult> loaded = LoadYaml(doc);
    EXPECT_TRUE(loaded.ok()) << loaded.status() << "\n" << doc;
    if (!loaded.ok()) continue;
    for (const Object& o : loaded->objects) Upsert(o, &state);
  }
  return state;
}

IpAddr Ip(const std::string& text) {
  absl::StatusOr<IpAddr> a = IpAddr::Parse(text);
  EXPECT_TRUE(a.ok()) << text << ": " << a.status();
  return a.ok() ? *a : IpAddr();
}

}  // namespace netpol::conntrack::fixtures
