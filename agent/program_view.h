// Reading a compiled Program from one pod's point of view: which chains its packets are
// dispatched to and what those chains (and the sets they consult) contain. Works on any
// Program by following the dispatch verdict maps, so it does not depend on the compiler's
// naming: an element of a verdict map whose first key field is one of the pod's addresses
// dispatches to its verdict's chain, and every chain reached by jump/goto from there belongs to
// the pod too.
#ifndef NETPOL_AGENT_PROGRAM_VIEW_H_
#define NETPOL_AGENT_PROGRAM_VIEW_H_

#include <string>
#include <vector>

#include "engine/model/model.h"
#include "engine/nft/program.h"

namespace netpol::agent {

// The chains serving `pod`, sorted by name; empty when the pod is not dispatched anywhere.
std::vector<std::string> PodChains(const nft::Program& program, const Pod& pod);

// A program holding only `chains` and the sets their rules reference (with elements), for
// rendering a pod's view with nft::RenderProgram.
nft::Program SubProgram(const nft::Program& program, const std::vector<std::string>& chains);

// Local pods (keys, sorted) whose enforcement differs between (old_state, old_program) and
// (new_state, new_program): pods added, removed or changed among those the programs dispatch,
// and pods whose chains or consulted sets differ. `old_program` may be null (nothing
// committed): every pod with chains is then affected.
std::vector<std::string> AffectedPods(const State& old_state, const nft::Program* old_program,
                                      const State& new_state, const nft::Program& new_program);

}  // namespace netpol::agent

#endif  // NETPOL_AGENT_PROGRAM_VIEW_H_
