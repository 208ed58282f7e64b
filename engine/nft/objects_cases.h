// The (object kind, verb) case table shared by objects_test (against FakeBackend) and
// render_kernel_test (against the kernel through nft). Testonly.
#ifndef NETPOL_ENGINE_NFT_OBJECTS_CASES_H_
#define NETPOL_ENGINE_NFT_OBJECTS_CASES_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/nft/program.h"
#include "engine/nft/transaction.h"

namespace netpol::nft::testing {

// The state every case starts from (unless it starts from nothing):
//   chain b (base, forward) looks up set s and map m; chain d jumps to c; map m jumps to c;
//   chain e is unreferenced and empty; set h is unreferenced.
Program Fixture();

using Check = std::function<void(const Program&)>;

struct Case {
  std::string name;
  ObjectKind kind;
  Verb verb;
  std::function<void(Transaction&)> build;
  std::string text;  // expected ToNftText, without the final newline ("" renders nothing)
  absl::StatusCode code = absl::StatusCode::kOk;
  std::string error;  // a substring of the error message
  Check check;        // on success: the state after the commit (uses gtest assertions)
  bool from_nothing = false;
};

const std::vector<Case>& Cases();

}  // namespace netpol::nft::testing

#endif  // NETPOL_ENGINE_NFT_OBJECTS_CASES_H_
