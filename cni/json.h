// A small strict JSON (RFC 8259) reader and string writer for the CNI plugin: network configs
// and results are a few kilobytes of JSON, and a plugin must pass `prevResult` through byte for
// byte, so every parsed value remembers the span of input text it came from.
//
// Parse errors name the byte offset and what was expected. Nesting deeper than kMaxDepth is an
// error (never a stack overflow). Object members keep their input order; a duplicate key is an
// error (the CNI spec's Go decoder would silently keep the last, which hides mistakes).
#ifndef NETPOL_CNI_JSON_H_
#define NETPOL_CNI_JSON_H_

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace netpol::cni {

class JsonValue {
 public:
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };

  // Nesting limit of Parse.
  static constexpr int kMaxDepth = 64;

  // Parses one JSON value filling all of `text` (surrounding whitespace allowed).
  static absl::StatusOr<JsonValue> Parse(absl::string_view text);

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::kNull; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_number() const { return kind_ == Kind::kNumber; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_array() const { return kind_ == Kind::kArray; }
  bool is_object() const { return kind_ == Kind::kObject; }

  bool bool_value() const { return bool_; }
  double number() const { return number_; }
  // Whether the number is an integer written without fraction or exponent ("3", not "3.0").
  bool is_integer() const { return kind_ == Kind::kNumber && integer_; }
  const std::string& str() const { return string_; }
  const std::vector<JsonValue>& items() const { return items_; }
  const std::vector<std::pair<std::string, JsonValue>>& members() const { return members_; }
  // The member `key` of an object, or nullptr (also for non-objects).
  const JsonValue* Find(absl::string_view key) const;

  // The exact input text of this value.
  absl::string_view raw() const { return raw_; }

  // "string", "number", ... for error messages.
  static const char* KindName(Kind kind);

 private:
  friend class JsonParser;
  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  bool integer_ = false;
  double number_ = 0;
  std::string string_;
  std::vector<JsonValue> items_;
  std::vector<std::pair<std::string, JsonValue>> members_;
  absl::string_view raw_;
};

// `s` as a JSON string literal, quotes included (control characters, '"' and '\' escaped;
// other bytes, UTF-8 included, copied).
std::string JsonQuote(absl::string_view s);

}  // namespace netpol::cni

#endif  // NETPOL_CNI_JSON_H_
