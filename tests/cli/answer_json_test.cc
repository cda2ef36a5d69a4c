// tests/cli/answer_json_test.cc
// The server's answers as creditctl's tables read them: every number keeps its exact
// text (DESIGN section 1, Money: no binary floating point touches a balance).
#include "cli/answer_json.h"

#include <gtest/gtest.h>

namespace credit::cli {
namespace {

// 9,000,000,009,999.997 credits is 9,000,000,009,999,997 millicredits, past 2^53: a
// double holds it as 9000000009999.99609375, which prints as 9000000009999.996.
TEST(AnswerJson, NumbersKeepTheirExactTextPastTwoToThe53) {
  auto doc = parse_answer(
      R"({"pools":{"credits":{"available":9000000009999.997,"used":1000000000000.003,)"
      R"("held":0,"daily_cap":null}},"count":18446744073709551616,"neg":-0.001,"e":1.5E+3})");
  ASSERT_TRUE(doc.has_value());
  const JsonNode& credits = (*doc)["pools"]["credits"];
  ASSERT_TRUE(credits.is_object());
  EXPECT_EQ(credits["available"].text, "9000000009999.997");
  EXPECT_EQ(credits["available"].kind, JsonKind::kNumber);
  EXPECT_EQ(credits["used"].text, "1000000000000.003");
  EXPECT_EQ(credits["held"].text, "0");
  EXPECT_TRUE(credits["daily_cap"].is_null());
  EXPECT_EQ((*doc)["count"].text, "18446744073709551616");  // past uint64 too
  EXPECT_EQ((*doc)["neg"].text, "-0.001");
  EXPECT_EQ((*doc)["e"].text, "1.5E+3");
}

TEST(AnswerJson, MembersElementsAndMissingLookups) {
  auto doc = parse_answer(
      R"({"a":"x\"y","b":true,"c":[{"source":"allowance","credits":2.5},{"credits":1}],)"
      R"("pools":{"credits":{"used":1},"storage":{"used":2}}})");
  ASSERT_TRUE(doc.has_value());
  EXPECT_EQ((*doc)["a"].text, "x\"y");
  EXPECT_EQ((*doc)["b"].text, "true");
  EXPECT_TRUE((*doc)["nope"].is_missing());
  EXPECT_TRUE((*doc)["a"]["deeper"].is_missing());
  ASSERT_EQ((*doc)["c"].elements().size(), 2u);
  EXPECT_EQ((*doc)["c"].elements()[0]["credits"].text, "2.5");
  EXPECT_TRUE((*doc)["c"].members().empty());
  auto pools = (*doc)["pools"].members();
  ASSERT_EQ(pools.size(), 2u);
  EXPECT_EQ(pools[0].key, "credits");  // in the server's order
  EXPECT_EQ(pools[1].key, "storage");
  EXPECT_TRUE((*doc)["pools"].elements().empty());
}

TEST(AnswerJson, AppendJsonWritesNumbersAsGiven) {
  const std::string body =
      R"({"k":[1.000,-0.001,9000000009999.997,null,false,"a\u0001b"],"o":{},"p":[]})";
  auto doc = parse_answer(body);
  ASSERT_TRUE(doc.has_value());
  std::string out;
  doc->append_json(out);
  EXPECT_EQ(out, R"({"k":[1.000,-0.001,9000000009999.997,null,false,"a\u0001b"],"o":{},"p":[]})");
}

TEST(AnswerJson, WhatIsNotOneJsonObjectOrArrayIsRefused) {
  for (const char* body : {"", "{", "{} x", "{}{}", "[01]", "[1.]", "[-]", "[1e]", "3", "\"s\"",
                           "{\"a\":tru}", "not json"}) {
    EXPECT_FALSE(parse_answer(body).has_value()) << body;
  }
  EXPECT_TRUE(parse_answer(" {\"a\":1} \n").has_value());
  EXPECT_TRUE(parse_answer("[]").has_value());
}

}  // namespace
}  // namespace credit::cli
