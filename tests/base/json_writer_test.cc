// tests/base/json_writer_test.cc: JSON text written without a DOM.
#include "base/json_writer.h"

#include <gtest/gtest.h>

#include "base/error_json.h"

namespace credit::json {
namespace {

std::string json_quoted(std::string_view s) {
  std::string out;
  append_string(out, s);
  return out;
}

TEST(JsonString, PlainTextIsCopiedAsIs) { EXPECT_EQ(json_quoted("src/pages/Home.jsx"), "\"src/pages/Home.jsx\""); }

TEST(JsonString, QuotesBackslashesAndControlsAreEscaped) {
  EXPECT_EQ(json_quoted("a\"b\\c\nd\re\tf"), "\"a\\\"b\\\\c\\nd\\re\\tf\"");
  EXPECT_EQ(json_quoted(std::string("x\x01y\x1f", 4)), "\"x\\u0001y\\u001f\"");
  EXPECT_EQ(json_quoted(""), "\"\"");
  EXPECT_EQ(json_quoted("\""), "\"\\\"\"");
}

TEST(JsonString, Utf8PassesThrough) { EXPECT_EQ(json_quoted("caf\xc3\xa9"), "\"caf\xc3\xa9\""); }

TEST(JsonWriter, CommasBetweenMembersAndAfterNestedValues) {
  std::string out;
  Writer w(out);
  w.begin_object().key("a").integer(1).key("b").begin_array().integer(2).string("x").end_array();
  w.key("c").null().key("d").boolean(true).end_object();
  EXPECT_EQ(out, "{\"a\":1,\"b\":[2,\"x\"],\"c\":null,\"d\":true}");
}

TEST(ErrorJson, CodeMessageAndDetailsInsideError) {
  Error e(ErrorCode::kInsufficientCredits, "short");
  e.with("required", "1.5").with_string("refused_by", "pool");
  EXPECT_EQ(error_json(e),
            "{\"error\":{\"code\":\"insufficient_credits\",\"message\":\"short\","
            "\"required\":1.5,\"refused_by\":\"pool\"}}");
}

}  // namespace
}  // namespace credit::json
