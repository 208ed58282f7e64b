// The YAML stream before any node is built: a syntax pass that names the document and position
// of a parse error, and where each document of a stream starts, so that documents can be parsed
// one at a time.
//
// Thread safety: all functions are reentrant.
#ifndef NETPOL_ENGINE_MODEL_YAML_STREAM_H_
#define NETPOL_ENGINE_MODEL_YAML_STREAM_H_

#include <cstddef>
#include <streambuf>
#include <string>
#include <vector>

namespace netpol::yaml_stream {

// Returns "document N: line L, column C: what" for text that does not parse, "" when it does.
// Fills `starts` with the offset of each document's first token. Never loops: yaml-cpp 0.7
// reports a stray "," at document level as an endless series of empty documents starting at the
// same position (jbeder/yaml-cpp#1040); that is reported as "unexpected \",\"".
std::string CheckSyntax(const std::string& text, std::vector<int>* starts);

// Where document i's text can be parsed from on its own: document 0 from the start, every other
// one from the start of the line of its first token (`starts` from CheckSyntax). Empty when the
// stream cannot be cut that way: a directive (%YAML, %TAG) applies to the document after it, and
// a first token with text before it on its line would be read at the wrong indentation.
std::vector<size_t> DocumentOffsets(const std::string& text, const std::vector<int>& starts);

// Reads characters [begin, end) of a string without copying them.
class ViewBuf : public std::streambuf {
 public:
  ViewBuf(const char* begin, const char* end) {
    char* b = const_cast<char*>(begin);
    setg(b, b, const_cast<char*>(end));
  }
};

}  // namespace netpol::yaml_stream

#endif  // NETPOL_ENGINE_MODEL_YAML_STREAM_H_
