#include "cni/json.h"

#include <string>

#include "gtest/gtest.h"

namespace netpol::cni {
namespace {

TEST(JsonTest, ParsesEveryKindAndKeepsRawText) {
  const std::string text = R"( {"a": [1, -2.5e1, true, false, null],
    "s": "x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00", "o": {"k" : "v"} } )";
  absl::StatusOr<JsonValue> v = JsonValue::Parse(text);
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_TRUE(v->is_object());
  ASSERT_EQ(v->members().size(), 3u);
  EXPECT_EQ(v->members()[0].first, "a");
  const JsonValue* a = v->Find("a");
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->items().size(), 5u);
  EXPECT_TRUE(a->items()[0].is_integer());
  EXPECT_EQ(a->items()[0].number(), 1);
  EXPECT_FALSE(a->items()[1].is_integer());
  EXPECT_EQ(a->items()[1].number(), -25);
  EXPECT_TRUE(a->items()[2].bool_value());
  EXPECT_TRUE(a->items()[3].is_bool());
  EXPECT_TRUE(a->items()[4].is_null());
  EXPECT_EQ(v->Find("s")->str(), "x\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(v->Find("o")->raw(), R"({"k" : "v"})");
  EXPECT_EQ(a->raw(), "[1, -2.5e1, true, false, null]");
  EXPECT_EQ(v->Find("missing"), nullptr);
}

struct BadCase {
  const char* name;
  std::string text;
  const char* error;  // fragment of the message
};

TEST(JsonTest, RejectsInvalidInputWithThePosition) {
  const BadCase cases[] = {
      {"empty", "", "expected a value, found end of input"},
      {"trailing garbage", "{} x", "byte 3: expected end of input"},
      {"unterminated object", "{\"a\": 1", "expected ',' or '}'"},
      {"missing colon", "{\"a\" 1}", "expected ':'"},
      {"single quotes", "{'a': 1}", "member name"},
      {"trailing comma", "[1,]", "expected a value"},
      {"leading zero", "01", "end of input after the value"},
      {"bare minus", "-", "a digit"},
      {"fraction without digits", "1.", "digit after '.'"},
      {"bad escape", "\"\\x\"", "after '\\'"},
      {"control character", "\"a\nb\"", "control character"},
      {"lone low surrogate", "\"\\udc00\"", "lone low surrogate"},
      {"high surrogate alone", "\"\\ud83d\"", "low surrogate"},
      {"duplicate member", "{\"a\": 1, \"a\": 2}", "duplicate member \"a\""},
      {"huge number", "1e400", "range of a double"},
      {"nan word", "NaN", "expected a value"},
      {"too deep", std::string(100, '[') + std::string(100, ']'), "nested deeper than 64"},
  };
  for (const BadCase& c : cases) {
    absl::StatusOr<JsonValue> v = JsonValue::Parse(c.text);
    ASSERT_FALSE(v.ok()) << c.name;
    EXPECT_NE(std::string(v.status().message()).find(c.error), std::string::npos)
        << c.name << ": " << v.status().message();
  }
}

TEST(JsonTest, DepthLimitAllowsReasonableNesting) {
  std::string text = std::string(64, '[') + std::string(64, ']');
  EXPECT_TRUE(JsonValue::Parse(text).ok());
}

TEST(JsonTest, QuoteRoundTrips) {
  const std::string s = "a\"b\\c\n\x01 é";
  std::string quoted = JsonQuote(s);
  EXPECT_EQ(quoted, "\"a\\\"b\\\\c\\n\\u0001 é\"");
  absl::StatusOr<JsonValue> v = JsonValue::Parse(quoted);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->str(), s);
}

}  // namespace
}  // namespace netpol::cni
