// Seeded random Programs for property tests (testonly).
//
// RandomProgram(seed, variant) builds a valid program (ValidateProgram accepts it) from a small
// universe of object names: sets s0..s5, regular chains r0..r5, base chains b0..b1, element
// slots per set. Each object and element draws its content either from a stream shared by all
// variants of the seed (70%) or from the variant's own stream, so two variants of one seed
// share most objects and differ in a few: additions, removals, changed definitions, changed
// rules and element payloads. Same seed and variant: same program, on every platform.
#ifndef NETPOL_ENGINE_NFT_RANDOM_PROGRAM_H_
#define NETPOL_ENGINE_NFT_RANDOM_PROGRAM_H_

#include <cstdint>
#include <string>

#include "engine/nft/program.h"

namespace netpol::nft {

struct RandomProgramOptions {
  std::string table = "t";
  int max_elements_per_set = 8;
};

// A fixed program that uses every match kind, verdict, set shape and rendering rule (table
// `netpol`); render_test holds what nft 1.0.6 lists for it.
Program ExampleProgram();

Program RandomProgram(uint64_t seed, int variant,
                      const RandomProgramOptions& options = RandomProgramOptions{});

}  // namespace netpol::nft

#endif  // NETPOL_ENGINE_NFT_RANDOM_PROGRAM_H_
