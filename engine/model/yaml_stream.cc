// The YAML syntax pass and document offsets (see yaml_stream.h).
#include "engine/model/yaml_stream.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <exception>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/model/names.h"

namespace netpol::yaml_stream {
namespace {

// A syntax pass over the event stream, before yaml-cpp's LoadAll builds nodes. It finds which
// document a parse error is in, and it stops the parser where it makes no progress: yaml-cpp 0.7
// reports a stray "," at document level as an endless series of empty documents starting at the
// same position (LoadAll would loop allocating forever; jbeder/yaml-cpp#1040).
class SyntaxChecker : public YAML::EventHandler {
 public:
  struct Stuck {
    YAML::Mark mark;
  };
  int documents = 0;
  std::vector<int> starts;  // per document: the offset of its first token ("---" or content)

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (documents > 0 && mark.pos == last_start_) throw Stuck{mark};
    last_start_ = mark.pos;
    starts.push_back(mark.pos);
    ++documents;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

 private:
  int last_start_ = -1;
};

std::string At(const YAML::Mark& mark) {
  return absl::StrCat("line ", mark.line + 1, ", column ", mark.column + 1, ": ");
}

}  // namespace

std::string CheckSyntax(const std::string& text, std::vector<int>* starts) {
  std::istringstream in(text);
  SyntaxChecker checker;
  auto doc = [&checker] { return absl::StrCat("document ", std::max(checker.documents, 1), ": "); };
  try {
    YAML::Parser parser(in);
    while (parser.HandleNextDocument(checker)) {
    }
  } catch (const SyntaxChecker::Stuck& s) {
    std::string what = s.mark.pos >= 0 && static_cast<size_t>(s.mark.pos) < text.size()
                           ? Show(text.substr(s.mark.pos, 1))
                           : "input";
    // The stray token opened a document of its own after the one a reader sees it in (which
    // starts with "---" and is otherwise empty), so that one is named.
    return absl::StrCat("document ", std::max(checker.documents - 1, 1), ": ", At(s.mark),
                        "unexpected ", what);
  } catch (const YAML::DeepRecursion& e) {
    // yaml-cpp reports its nesting guard as "bad file"; say what is wrong.
    return absl::StrCat(doc(), At(e.mark), "nested too deeply (at most ", e.depth() - 1,
                        " levels)");
  } catch (const YAML::Exception& e) {
    return absl::StrCat(doc(), At(e.mark), e.msg);
  } catch (const std::exception& e) {
    return absl::StrCat(doc(), e.what());
  }
  *starts = std::move(checker.starts);
  return "";
}

std::vector<size_t> DocumentOffsets(const std::string& text, const std::vector<int>& starts) {
  for (size_t i = 0; i < text.size();) {
    if (text[i] == '%') return {};
    const size_t eol = text.find('\n', i);
    if (eol == std::string::npos) break;
    i = eol + 1;
  }
  std::vector<size_t> out;
  for (size_t i = 0; i < starts.size(); ++i) {
    if (i == 0) {
      out.push_back(0);
      continue;
    }
    if (starts[i] < 0 || static_cast<size_t>(starts[i]) > text.size() ||
        starts[i] <= starts[i - 1]) {
      return {};
    }
    size_t begin = static_cast<size_t>(starts[i]);
    while (begin > 0 && text[begin - 1] != '\n') {
      if (text[begin - 1] != ' ' && text[begin - 1] != '\t') return {};
      --begin;
    }
    out.push_back(begin);
  }
  return out;
}

}  // namespace netpol::yaml_stream
