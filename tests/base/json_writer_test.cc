// tests/base/json_writer_test.cc: JSON text written without a DOM.
#include "base/json_writer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "base/error_json.h"

namespace credit::json {
namespace {

std::string json_quoted(std::string_view s) {
  std::string out;
  append_string(out, s);
  return out;
}

// write_string's text, written into exactly quoted_bytes_max bytes (a sanitizer build
// sees a write past them).
std::string json_written(std::string_view s) {
  std::vector<char> room(quoted_bytes_max(s.size()));
  char* end = write_string(room.data(), s);
  EXPECT_LE(end, room.data() + room.size());
  return std::string(room.data(), end);
}

TEST(JsonString, PlainTextIsCopiedAsIs) {
  EXPECT_EQ(json_quoted("src/pages/Home.jsx"), "\"src/pages/Home.jsx\"");
}

TEST(JsonString, QuotesBackslashesAndControlsAreEscaped) {
  EXPECT_EQ(json_quoted("a\"b\\c\nd\re\tf"), "\"a\\\"b\\\\c\\nd\\re\\tf\"");
  EXPECT_EQ(json_quoted(std::string("x\x01y\x1f", 4)), "\"x\\u0001y\\u001f\"");
  EXPECT_EQ(json_quoted(""), "\"\"");
  EXPECT_EQ(json_quoted("\""), "\"\\\"\"");
}

// The escaping of the 8-bytes-at-a-time scan equals the byte-by-byte rule for every
// special byte at every offset of strings up to 40 bytes (inside a word, across a word
// boundary, in the tail).
TEST(JsonString, WordScanEscapesLikeTheByteRuleAtEveryOffset) {
  auto by_bytes = [](std::string_view s) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out = "\"";
    for (char ch : s) {
      auto c = static_cast<unsigned char>(ch);
      if (c == '"')
        out += "\\\"";
      else if (c == '\\')
        out += "\\\\";
      else if (c == '\n')
        out += "\\n";
      else if (c == '\r')
        out += "\\r";
      else if (c == '\t')
        out += "\\t";
      else if (c < 0x20)
        out += std::string("\\u00") + kHex[c >> 4] + kHex[c & 15];
      else
        out += ch;
    }
    return out + "\"";
  };
  const std::string specials("\"\\\n\r\t\x01\x1f\x00\x7f\x20\xff\x80", 12);
  for (std::size_t len = 0; len <= 40; ++len) {
    std::string plain(len, 'a');
    EXPECT_EQ(json_quoted(plain), by_bytes(plain));
    EXPECT_EQ(json_written(plain), by_bytes(plain));
    // Every byte escaped in full: the bound is exact.
    const std::string controls(len, '\x01');
    EXPECT_EQ(json_written(controls).size(), quoted_bytes_max(len));
    for (std::size_t at = 0; at < len; ++at) {
      for (char sp : specials) {
        std::string s = plain;
        s[at] = sp;
        if (at + 3 < len) s[at + 3] = '"';  // two specials in one word
        ASSERT_EQ(json_quoted(s), by_bytes(s)) << "len " << len << " at " << at;
        ASSERT_EQ(json_written(s), by_bytes(s)) << "len " << len << " at " << at;
      }
    }
  }
}

TEST(JsonString, Utf8PassesThrough) {
  EXPECT_EQ(json_quoted("caf\xc3\xa9"), "\"caf\xc3\xa9\"");
}

TEST(JsonWriter, CommasBetweenMembersAndAfterNestedValues) {
  std::string out;
  Writer w(out);
  w.begin_object().key("a").integer(1).key("b").begin_array().integer(2).string("x").end_array();
  w.key("c").null().key("d").boolean(true).end_object();
  EXPECT_EQ(out, "{\"a\":1,\"b\":[2,\"x\"],\"c\":null,\"d\":true}");
}

TEST(JsonWriter, FractionsHaveAtMostSixDecimalsAndNoTrailingZeros) {
  EXPECT_EQ(fraction_text(0.55), "0.55");
  EXPECT_EQ(fraction_text(1.0), "1");
  EXPECT_EQ(fraction_text(0.0), "0");
  EXPECT_EQ(fraction_text(-0.0000001), "0");
  EXPECT_EQ(fraction_text(2.0 / 3.0), "0.666667");
  EXPECT_EQ(fraction_text(1e-7), "0");
  EXPECT_EQ(fraction_text(std::nan("")), "null");
  std::string out;
  Writer(out).begin_object().key("utilization").fraction(0.5500).end_object();
  EXPECT_EQ(out, "{\"utilization\":0.55}");
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
