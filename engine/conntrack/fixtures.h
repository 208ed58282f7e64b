// Test fixtures shared by the conntrack and revoker tests (testonly): YAML documents into a
// State, and addresses parsed with a test failure instead of a crash.
#ifndef NETPOL_ENGINE_CONNTRACK_FIXTURES_H_
#define NETPOL_ENGINE_CONNTRACK_FIXTURES_H_

#include <string>
#include <vector>

#include "engine/model/ip.h"
#include "engine/model/loader.h"

namespace netpol::conntrack::fixtures {

// The objects of `docs` (YAML, each possibly several documents) upserted in order into an
// empty State; a document that does not load fails the current test and is left out.
State StateOf(const std::vector<std::string>& docs);

// `text` as an address; fails the current test (and returns IpAddr()) when it is none.
IpAddr Ip(const std::string& text);

}  // namespace netpol::conntrack::fixtures

#endif  // NETPOL_ENGINE_CONNTRACK_FIXTURES_H_
