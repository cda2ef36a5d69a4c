// tests/server/json_reader_test.cc
// JsonParser limits and exact number text, ObjectReader errors, the API error body.
#include "server/json_reader.h"

#include <gtest/gtest.h>

#include <string>

#include "base/error_json.h"

namespace credit::server {
namespace {

std::string nested_arrays(int depth) {
  return std::string(static_cast<std::size_t>(depth), '[') +
         std::string(static_cast<std::size_t>(depth), ']');
}

TEST(JsonParser, DepthOf32IsAcceptedAnd33IsRefused) {
  JsonParser p;
  EXPECT_TRUE(p.parse(nested_arrays(32)).ok());
  Result<JsonValue> r = p.parse(nested_arrays(33));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidJson);
  EXPECT_NE(r.error().message.find("deeper than 32"), std::string::npos);
  // Objects count as levels too: 33 nested objects.
  std::string objects;
  for (int i = 0; i < 33; ++i) objects += "{\"a\":";
  objects += "1";
  for (int i = 0; i < 33; ++i) objects += "}";
  EXPECT_EQ(p.parse(objects).error().code, ErrorCode::kInvalidJson);
}

TEST(JsonParser, InvalidUtf8IsRefused) {
  JsonParser p;
  Result<JsonValue> r = p.parse("{\"a\":\"\xff\xfe\"}");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidJson);
  EXPECT_FALSE(p.parse("{\"\xc3\x28\":1}").ok());
  EXPECT_TRUE(p.parse("{\"a\":\"\xe2\x82\xac\"}").ok());
}

TEST(JsonParser, NumberTextIsKeptExactly) {
  JsonParser p;
  Result<JsonValue> r = p.parse_object(R"({"a":1.500,"b":15e-1 , "c":-0.001,"d":1E+2})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->find("a")->number_text(), "1.500");
  EXPECT_EQ(r->find("b")->number_text(), "15e-1");
  EXPECT_EQ(r->find("c")->number_text(), "-0.001");
  EXPECT_EQ(r->find("d")->number_text(), "1E+2");
}

TEST(JsonParser, BigIntegersKeepTheirTextAndRangeChecked) {
  JsonParser p;
  Result<JsonValue> r = p.parse_object(
      R"({"max":9223372036854775807,"min":-9223372036854775808,"over":9223372036854775808,)"
      R"("huge":123456789012345678901234567890})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->find("max")->int64_value(), INT64_MAX);
  EXPECT_EQ(r->find("min")->int64_value(), INT64_MIN);
  EXPECT_EQ(r->find("over")->int64_value(), std::nullopt);
  EXPECT_EQ(r->find("huge")->number_text(), "123456789012345678901234567890");
  EXPECT_EQ(r->find("huge")->int64_value(), std::nullopt);
}

TEST(JsonParser, NumbersOutsideTheGrammarAreRefused) {
  JsonParser p;
  for (const char* bad : {R"({"a":01})", R"({"a":1.})", R"({"a":-})", R"({"a":1e})", R"({"a":.5})",
                          R"({"a":+1})", R"({"a":NaN})"}) {
    EXPECT_FALSE(p.parse(bad).ok()) << bad;
  }
}

TEST(JsonParser, MalformedDocumentsAreRefused) {
  JsonParser p;
  for (const char* bad : {"", "{", R"({"a":1} x)", R"({"a":1}})", "[1] [2]", R"({"a":1 "b":2})",
                          R"({"a":[1,,2]})", R"({"a":tru})", R"({"a":1,})", "[1,]",
                          "{\"a\":\"\x01\"}", R"({"a":"\u12"})", R"("x" "y")", "1 2"}) {
    Result<JsonValue> r = p.parse(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, ErrorCode::kInvalidJson) << bad;
    }
  }
}

TEST(JsonParser, TextAfterTheValueIsSaidAsSuch) {
  // Found by an audit: "{...} x" was refused as "ended early in the middle of an object".
  JsonParser p;
  for (const char* bad :
       {R"({"a":1} x)", R"({"a":1}})", "[1] [2]", R"({"a":"}"} {)", "{\"a\":\"\\\"}\"}\n\t0"}) {
    Result<JsonValue> r = p.parse(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().message.find("text after the JSON value"), std::string::npos)
        << bad << ": " << r.error().message;
  }
  // A value that is itself broken is not said to have text after it.
  for (const char* bad : {R"({"a":1 "b":2} x)", R"({"a":tru} x)", R"({"a":1})"}) {
    Result<JsonValue> r = p.parse(bad);
    if (r.ok()) continue;
    EXPECT_EQ(r.error().message.find("text after the JSON value"), std::string::npos) << bad;
  }
  EXPECT_TRUE(p.parse(R"({"a":1}  )").ok());
}

TEST(JsonParser, DuplicateKeysAreRefused) {
  JsonParser p;
  EXPECT_FALSE(p.parse(R"({"a":1,"b":2,"a":3})").ok());
  std::string big = "{";
  for (int i = 0; i < 100; ++i) big += "\"k" + std::to_string(i) + "\":1,";
  big += "\"k7\":2}";
  EXPECT_FALSE(p.parse(big).ok());
}

TEST(JsonParser, TopLevelMustBeAnObjectWhenAsked) {
  JsonParser p;
  Result<JsonValue> r = p.parse_object("[1]");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidJson);
  EXPECT_TRUE(p.parse("  \"just a string\"  ").ok());
  EXPECT_EQ(p.parse(" 42 ")->number_text(), "42");
}

TEST(JsonParser, TooManyValuesAreRefused) {
  JsonParser p;
  JsonLimits limits;
  limits.values_max = 4;
  EXPECT_TRUE(p.parse("[1,2,3]", limits).ok());
  EXPECT_FALSE(p.parse("[1,2,3,4]", limits).ok());
}

TEST(JsonParser, IterationAndCompactRewrite) {
  JsonParser p;
  Result<JsonValue> r = p.parse(R"( {"a" : [1.50, {"b":null}, "x\"y\u00e9"], "c":true, "d":{}} )");
  ASSERT_TRUE(r.ok());
  std::string keys;
  for (auto [key, value] : *r) keys += std::string(key) + ",";
  EXPECT_EQ(keys, "a,c,d,");
  EXPECT_EQ(r->find("a")->size(), 3u);
  std::string out;
  r->append_json(out);
  EXPECT_EQ(out, "{\"a\":[1.50,{\"b\":null},\"x\\\"y\xc3\xa9\"],\"c\":true,\"d\":{}}");
}

TEST(ObjectReader, ErrorsNameTheFieldPath) {
  JsonParser p;
  Result<JsonValue> r = p.parse_object(
      R"({"kind":"agent_prompt","usage":{"input_tokens":"many","files":3},"amount":1.500,)"
      R"("n":5,"flag":null,"extra":1})");
  ASSERT_TRUE(r.ok());
  ObjectReader body(*r);
  EXPECT_EQ(*body.string("kind"), "agent_prompt");
  EXPECT_EQ(*body.number_text("amount"), "1.500");
  EXPECT_EQ(*body.int64("n", 0, 10), 5);
  Result<std::int64_t> out_of_range = body.int64("n", 0, 4);
  ASSERT_FALSE(out_of_range.ok());
  EXPECT_EQ(out_of_range.error().detail("param"), "\"n\"");
  EXPECT_FALSE(body.optional_boolean("flag")->has_value());  // null is "not given"
  EXPECT_EQ(body.string("missing").error().code, ErrorCode::kInvalidRequest);

  Result<ObjectReader> usage = body.object("usage");
  ASSERT_TRUE(usage.ok());
  Result<std::int64_t> tokens = usage->int64("input_tokens", 0, INT64_MAX);
  ASSERT_FALSE(tokens.ok());
  EXPECT_EQ(tokens.error().code, ErrorCode::kInvalidRequest);
  EXPECT_EQ(tokens.error().detail("param"), "\"usage.input_tokens\"");

  Status unknown = body.no_unknown_fields();
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, ErrorCode::kUnknownField);
  EXPECT_EQ(unknown.error().detail("param"), "\"extra\"");
  EXPECT_EQ(json_path_index("ops", 3), "ops[3]");
}

TEST(ErrorBody, RendersCodeMessageAndDetails) {
  Error e(ErrorCode::kInsufficientCredits, "not enough credits");
  e.with("required", "7.25").with_string("refused_by", "pool");
  EXPECT_EQ(error_json(e),
            R"({"error":{"code":"insufficient_credits","message":"not enough credits",)"
            R"("required":7.25,"refused_by":"pool"}})");
  HttpResponse res = error_response(e);
  EXPECT_EQ(res.status, 402);
  EXPECT_EQ(res.content_type, "application/json");
}

TEST(ErrorBody, RetryAfterIsWholeSecondsRoundedUp) {
  Error limited(ErrorCode::kRateLimited, "slow down");
  limited.with("retry_after_ms", "1200");
  HttpResponse res = error_response(limited);
  EXPECT_EQ(res.status, 429);
  ASSERT_EQ(res.headers.size(), 1u);
  EXPECT_EQ(res.headers[0], (std::pair<std::string, std::string>("Retry-After", "2")));

  Error soon(ErrorCode::kRateLimited, "slow down");
  soon.with("retry_after_ms", "10");
  EXPECT_EQ(error_response(soon).headers[0].second, "1");

  HttpResponse overloaded = error_response(Error(ErrorCode::kOverloaded, "busy"));
  EXPECT_EQ(overloaded.status, 503);
  EXPECT_EQ(overloaded.headers[0].second, "1");
}

TEST(JsonWholeNumber, AWholeValueIsReadHoweverItIsSpelled) {
  EXPECT_EQ(json_whole_number("3"), 3);
  EXPECT_EQ(json_whole_number("3.0"), 3);
  EXPECT_EQ(json_whole_number("3.000"), 3);
  EXPECT_EQ(json_whole_number("30e-1"), 3);
  EXPECT_EQ(json_whole_number("0.3e1"), 3);
  EXPECT_EQ(json_whole_number("1E+2"), 100);
  EXPECT_EQ(json_whole_number("1e12"), 1'000'000'000'000);
  EXPECT_EQ(json_whole_number("-2.0"), -2);
  EXPECT_EQ(json_whole_number("0.0e999999"), 0);
  EXPECT_EQ(json_whole_number("0"), 0);
}

TEST(JsonWholeNumber, AFractionOrAValueOutOfRangeIsNothing) {
  EXPECT_EQ(json_whole_number("1.5"), std::nullopt);
  EXPECT_EQ(json_whole_number("15e-2"), std::nullopt);
  EXPECT_EQ(json_whole_number("1e-400"), std::nullopt);
  EXPECT_EQ(json_whole_number("1e19"), std::nullopt);
  EXPECT_EQ(json_whole_number("1e999999999"), std::nullopt);
  EXPECT_EQ(json_whole_number("1234567890123456789.0"), std::nullopt);
  EXPECT_EQ(json_whole_number("abc"), std::nullopt);
  EXPECT_EQ(json_whole_number("1."), std::nullopt);
}

}  // namespace
}  // namespace credit::server
