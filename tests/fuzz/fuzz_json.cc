// tests/fuzz/fuzz_json.cc
// The request body reader (server/json_reader.h), which reads every byte a client sends.
// Properties: any input is parsed or refused with kInvalidJson and a message; a parsed
// document's numbers are JSON number tokens; its compact form (what the cache stores and
// request hashes read) parses again to the same compact form.
#include <string>
#include <string_view>

#include "fuzz_target.h"
#include "server/json_reader.h"

namespace {

using credit::fuzz::check;
using credit::server::JsonType;
using credit::server::JsonValue;

void visit(const JsonValue& v, int depth) {
  check(depth <= static_cast<int>(credit::server::kJsonDepthMax) + 1, "depth within the limit");
  switch (v.type()) {
    case JsonType::kNumber: {
      check(credit::server::is_json_number(v.number_text()), "a number is a JSON number token");
      std::optional<std::int64_t> i = v.int64_value();
      std::optional<std::int64_t> whole = credit::server::json_whole_number(v.number_text());
      if (i) check(whole && *whole == *i, "an int64 token is the same whole number");
      break;
    }
    case JsonType::kString:
      (void)v.string_value();
      break;
    case JsonType::kBool:
      (void)v.bool_value();
      break;
    case JsonType::kArray:
    case JsonType::kObject: {
      std::uint32_t n = 0;
      for (auto [key, child] : v) {
        if (v.is_object()) check(v.find(key).has_value(), "every member is found by its key");
        visit(child, depth + 1);
        ++n;
      }
      check(n == v.size(), "a container's size is its children");
      break;
    }
    case JsonType::kNull:
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static credit::server::JsonParser parser;
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  credit::server::JsonLimits limits;
  limits.values_max = 4096;
  auto parsed = parser.parse(body, limits);
  if (!parsed.ok()) {
    check(parsed.error().code == credit::ErrorCode::kInvalidJson, "a refusal is invalid_json");
    check(!parsed.error().message.empty(), "a refusal has a message");
    return 0;
  }
  visit(*parsed, 0);
  std::string compact;
  parsed->append_json(compact);
  auto again = parser.parse(compact, limits);
  check(again.ok(), "the compact form parses");
  std::string compact2;
  again->append_json(compact2);
  check(compact == compact2, "the compact form is stable");
  return 0;
}

namespace credit::fuzz {

std::vector<std::string> seeds() {
  return {
      R"({"idempotency_key":"k-1","kind":"agent_prompt","user_id":"dana","usage":{"model":"default","input_tokens":9800,"output_tokens":2100,"files_read":4,"lines_emitted":190,"lines_changed":8},"metadata":{"file":"src/pages/Checkout.jsx","feature":"checkout","snapshot_id":"snap-0193","intent":"fix"}})",
      R"({"ops":[{"op":"charge","account_id":"acme","idempotency_key":"b1","kind":"backend_function","user_id":"u","amount":1.5},{"op":"void","account_id":"acme","hold_id":"h_1","idempotency_key":"b2"}]})",
      R"({"kind":"integration.invoke_llm","response":{"a":[1,2.5e3,-0.001,true,false,null,"\u00e9\n"]},"ttl_s":60})",
      R"([1,"two",{"three":3.0},[[]],{}])",
      R"("\ud83d\ude00")",
      "-12.5E+3",
      "null",
  };
}

std::vector<std::string> dictionary() {
  std::vector<std::string> d = json_dictionary();
  d.insert(d.end(), {"\\ud800", "-0", "1e400", "\"kind\":", "\"usage\":{", "\"metadata\":{",
                     "\xed\xa0\x80", "\xf4\x90\x80\x80"});
  return d;
}

}  // namespace credit::fuzz
