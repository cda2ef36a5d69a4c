// tests/analytics/event_json_test.cc
// The event's JSON line: API.md's field order and nulls, a lossless round trip, exact
// money, line-level errors naming the field, the streaming NDJSON reader and the splitter
// of NDJSON pushed in pieces.
#include "analytics/event_json.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

namespace credit::analytics {
namespace {

using ledger::Event;
using ledger::EventType;

Event full_event() {
  Event e;
  e.seq = 42;
  e.at_ms = 1'772'442'845'250;  // 2026-03-02T09:14:05.250Z
  e.account_id = "acme";
  e.user_id = "dana";
  e.type = EventType::kCharge;
  e.kind = pricing::Kind::kAgentPrompt;
  e.pool = "credits";
  e.credits = Millicredits::from_mc(7'250);
  e.available_after = Millicredits::from_mc(992'750);
  e.drawn_from = {{"allowance", Millicredits::from_mc(5'000)},
                  {"grant:g1", Millicredits::from_mc(2'250)}};
  e.priced_by = "usage";
  pricing::Usage u;
  u.model = "default";
  u.input_tokens = 9800;
  u.output_tokens = 2100;
  u.files_read = 4;
  u.lines_emitted = 190;
  u.lines_changed = 8;
  e.usage = u;
  e.metadata.file = "src/pages/Checkout.jsx";
  e.metadata.feature = "checkout";
  e.metadata.snapshot_id = "snap-0193";
  e.metadata.intent = "fix";
  e.metadata.request_hash = "abc";
  e.metadata.extra = {{"ticket", "T-9"}};
  e.cache_key = "ck1";
  e.idempotency_key = "idem-1";
  e.rate_card_version = 3;
  e.charge_id = "ch_1";
  return e;
}

TEST(EventJson, RoundTripKeepsEveryField) {
  Event e = full_event();
  auto parsed = parse_event_json(event_to_json(e));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(*parsed, e);
}

TEST(EventJson, RoundTripOfTypeSpecificFields) {
  Event e;
  e.at_ms = 0;
  e.account_id = "acme";
  e.type = EventType::kPlanChange;
  e.plan = "pro";
  e.previous_plan = "builder";
  e.proration_usd_cents = 2500;
  e.reason = "upgrade";
  e.imported = true;
  auto parsed = parse_event_json(event_to_json(e));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(*parsed, e);
}

TEST(EventJson, WritesApiFieldsInOrderWithNulls) {
  Event e;
  e.seq = 1;
  e.at_ms = 1'772'442'845'000;
  e.account_id = "acme";
  e.user_id = "dana";
  e.type = EventType::kCharge;
  e.kind = pricing::Kind::kSendEmail;
  e.pool = "credits";
  e.credits = Millicredits::from_mc(1'500);
  pricing::Usage u;
  u.count = 1;
  e.usage = u;
  EXPECT_EQ(event_to_json(e),
            "{\"seq\":1,\"at\":\"2026-03-02T09:14:05Z\",\"account_id\":\"acme\","
            "\"user_id\":\"dana\",\"type\":\"charge\",\"kind\":\"integration.send_email\","
            "\"pool\":\"credits\",\"credits\":1.5,\"available_after\":null,\"drawn_from\":[],"
            "\"refused_by\":null,\"priced_by\":null,\"usage\":{\"count\":1},\"metadata\":{},"
            "\"cache_key\":null,\"idempotency_key\":null,\"rate_card_version\":null,"
            "\"imported\":false}");
}

TEST(EventJson, AClientMetadataKeyGivenAsNullIsAbsentOnBothReaders) {
  // Found by tests/fuzz/fuzz_event_json: a null client key was kept as an empty value,
  // which the writer leaves out, so the event changed through a write and a read.
  const std::string base =
      R"({"at":"2026-03-02T09:14:05Z","account_id":"acme","user_id":"dana","type":"charge",)"
      R"("kind":"agent_prompt","credits":1,"metadata":{"file":"a.js","team":null,"x":"y"}})";
  // The canonical layout (the scanner) and a spaced one (simdjson) read it the same way.
  std::string spaced = base;
  spaced.insert(spaced.find("\"team\""), " ");
  for (const std::string& line : {base, spaced}) {
    auto e = parse_event_json(line);
    ASSERT_TRUE(e.ok()) << e.error().message;
    ASSERT_EQ(e->metadata.extra.size(), 1u) << line;
    EXPECT_EQ(e->metadata.extra[0].first, "x");
    auto again = parse_event_json(event_to_json(*e));
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *e);
  }
}

TEST(EventJson, AnIgnoredFieldIsHeldToTheJsonDepthLimit) {
  // DESIGN.md section 5: JSON depth 32. A field of another system's is ignored, but not
  // walked without limit: the line's object is level 1, so 31 levels of it fit.
  auto line = [](std::size_t levels) {
    return R"({"at":"2026-03-02T09:14:05Z","account_id":"acme","user_id":"dana",)"
           R"("type":"charge","kind":"agent_prompt","credits":1,"extra":)" +
           std::string(levels, '[') + std::string(levels, ']') + "}";
  };
  auto fits = parse_event_json(line(kEventJsonDepthMax - 1));
  ASSERT_TRUE(fits.ok()) << fits.error().message;
  auto deep = parse_event_json(line(kEventJsonDepthMax));
  ASSERT_FALSE(deep.ok());
  EXPECT_EQ(deep.error().code, ErrorCode::kInvalidJson);
  EXPECT_NE(deep.error().message.find("deeper than 32"), std::string::npos);
  EXPECT_FALSE(parse_event_json(line(200)).ok());
}

TEST(EventJson, MetadataValuesAreLimitedTo256CharactersNotBytes) {
  // API.md: "string values, 256 chars each". 256 two-byte characters (512 bytes) are
  // accepted, as the charge route accepts them, so an exported event imports again.
  std::string value;
  for (int i = 0; i < 256; ++i) value += "\xc3\xa9";
  const std::string line =
      R"({"at":"2026-03-02T09:14:05Z","account_id":"acme","user_id":"dana","type":"charge",)"
      R"("kind":"agent_prompt","credits":1,"metadata":{"feature":")" +
      value + R"("}})";
  auto e = parse_event_json(line);
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->metadata.feature, value);
  const std::string longer =
      line.substr(0, line.find(value)) + value + "x" + line.substr(line.find(value) + value.size());
  auto refused = parse_event_json(longer);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("256"), std::string::npos);
}

TEST(EventJson, ParsesTheApiExample) {
  auto e = parse_event_json(
      R"({"at":"2026-03-02T09:14:05Z","account_id":"acme","user_id":"dana","type":"charge","kind":"agent_prompt","pool":"credits","credits":7.25,"usage":{"model":"default","input_tokens":9800,"output_tokens":2100,"files_read":4,"lines_emitted":190,"lines_changed":8},"metadata":{"file":"src/pages/Checkout.jsx","feature":"checkout","snapshot_id":"snap-0193","intent":"fix"}})");
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->credits.mc(), 7'250);
  EXPECT_EQ(e->usage->lines_emitted, 190);
  EXPECT_EQ(e->metadata.intent, "fix");
}

TEST(EventJson, MoneyIsParsedExactlyFromTheNumbersText) {
  auto e = parse_event_json(
      R"({"at":"2026-03-02T09:14:05Z","account_id":"a","user_id":"u","type":"charge","kind":"discuss_turn","credits":15e-1})");
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->credits.mc(), 1'500);
  auto bad = parse_event_json(
      R"({"at":"2026-03-02T09:14:05Z","account_id":"a","user_id":"u","type":"charge","kind":"discuss_turn","credits":1.0001})");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidAmount);
  EXPECT_EQ(bad.error().detail("param"), "\"credits\"");
}

std::string param_of(std::string_view line) {
  auto e = parse_event_json(line);
  if (e.ok()) return "ok";
  return std::string(e.error().detail("param"));
}

TEST(EventJson, LineErrorsNameTheField) {
  EXPECT_EQ(
      param_of(
          R"({"account_id":"a","user_id":"u","type":"charge","kind":"agent_prompt","credits":1})"),
      "\"at\"");
  EXPECT_EQ(
      param_of(
          R"({"at":"2026-03-02T09:14:05Z","user_id":"u","type":"charge","kind":"agent_prompt","credits":1})"),
      "\"account_id\"");
  EXPECT_EQ(
      param_of(
          R"({"at":"2026-03-02T09:14:05Z","account_id":"a","type":"charge","kind":"agent_prompt","credits":1})"),
      "\"user_id\"");
  EXPECT_EQ(
      param_of(
          R"({"at":"2026-03-02T09:14:05Z","account_id":"a","user_id":"u","kind":"agent_prompt","credits":1})"),
      "\"type\"");
  EXPECT_EQ(
      param_of(
          R"({"at":"2026-03-02T09:14:05Z","account_id":"a","user_id":"u","type":"charge","credits":1})"),
      "\"kind\"");
  EXPECT_EQ(
      param_of(
          R"({"at":"2026-03-02T09:14:05Z","account_id":"a","user_id":"u","type":"charge","kind":"agent_prompt"})"),
      "\"credits\"");
  EXPECT_EQ(
      param_of(
          R"({"at":"2026-03-02T09:14:05Z","account_id":"a","user_id":"u","type":"charge","kind":"telepathy","credits":1})"),
      "\"kind\"");
  EXPECT_EQ(
      param_of(
          R"({"at":"2026-03-02T09:14:05Z","account_id":"a","user_id":"u","type":"teleport","kind":"agent_prompt","credits":1})"),
      "\"type\"");
  EXPECT_EQ(
      param_of(
          R"({"at":"yesterday","account_id":"a","user_id":"u","type":"charge","kind":"agent_prompt","credits":1})"),
      "\"at\"");
  EXPECT_EQ(
      param_of(
          R"({"at":"2026-03-02T09:14:05Z","account_id":"a","user_id":"u","type":"charge","kind":"agent_prompt","credits":-1})"),
      "\"credits\"");
  EXPECT_EQ(
      param_of(
          R"({"at":"2026-03-02T09:14:05Z","account_id":"a","user_id":"u","type":"charge","kind":"agent_prompt","credits":1,"usage":{"colour":"red"}})"),
      "\"usage.colour\"");
  // A reset is not caused by a user and carries no kind.
  EXPECT_EQ(
      param_of(
          R"({"at":"2026-03-02T09:14:05Z","account_id":"a","user_id":null,"type":"reset","kind":null,"credits":0})"),
      "ok");
  // Nor is a refused refund (a service's request): the server exports it with user_id
  // null, and its own export reads back (found by an audit: creditctl refused the line).
  EXPECT_EQ(
      param_of(
          R"({"at":"2026-03-02T09:14:05Z","account_id":"a","user_id":null,"type":"rejected","kind":"agent_prompt","credits":0,"refused_by":"charge_not_refundable"})"),
      "ok");
  EXPECT_FALSE(parse_event_json("{\"at\":").ok());
  EXPECT_FALSE(parse_event_json("[1,2]").ok());
  // A field that names something (a key, an id, a pool) is null or absent for none: an
  // empty string is refused (found by an audit: an import applied "cache_key":"" as none).
  for (std::string_view key :
       {"cache_key", "idempotency_key", "pool", "hold_id", "charge_id", "grant_id", "refund_id"}) {
    const std::string line =
        R"({"at":"2026-03-02T09:14:05Z","account_id":"a","user_id":"u","type":"charge","kind":"agent_prompt","credits":1,")" +
        std::string(key) + R"(":""})";
    EXPECT_EQ(param_of(line), "\"" + std::string(key) + "\"") << line;
    const std::string as_null =
        R"({"at":"2026-03-02T09:14:05Z","account_id":"a","user_id":"u","type":"charge","kind":"agent_prompt","credits":1,")" +
        std::string(key) + R"(":null})";
    EXPECT_EQ(param_of(as_null), "ok") << as_null;
  }
  // The writer's own layout with "" where it writes null goes the same way.
  Event e = full_event();
  std::string canonical;
  append_event_json(canonical, e);
  for (std::string_view field : {",\"pool\":", ",\"cache_key\":", ",\"idempotency_key\":"}) {
    std::string line = canonical;
    const std::size_t at = line.find(field);
    ASSERT_NE(at, std::string::npos) << field;
    const std::size_t value = at + field.size();
    const std::size_t end = line.find('"', value + 1) + 1;  // the string value's end
    line.replace(value, end - value, "\"\"");
    EXPECT_FALSE(parse_event_json(line).ok()) << line;
  }
}

TEST(EventJson, ParsingIntoAReusedEventLeavesNothingOfTheLastLine) {
  Event reused;
  ASSERT_TRUE(parse_event_json(event_to_json(full_event()), reused).ok());
  const std::string minimal =
      R"({"at":"2026-03-02T09:14:05Z","account_id":"b","user_id":null,"type":"reset","kind":null,"credits":0})";
  ASSERT_TRUE(parse_event_json(minimal, reused).ok());
  auto fresh = parse_event_json(minimal);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(reused, *fresh);
  EXPECT_TRUE(reused.metadata.empty());
  EXPECT_FALSE(reused.usage.has_value());
}

// Parses `line` twice: as it is (the canonical scanner takes the writer's layout) and
// with a space after its '{' (not the writer's layout: simdjson reads it). Both must agree:
// the same status, message and event.
void expect_both_paths_agree(const std::string& line) {
  ASSERT_FALSE(line.empty());
  ASSERT_EQ(line[0], '{');
  const std::string spaced = "{ " + line.substr(1);
  Event fast, slow;
  Status a = parse_event_json(line, fast);
  Status b = parse_event_json(spaced, slow);
  ASSERT_EQ(a.ok(), b.ok()) << line;
  if (!a.ok()) {
    EXPECT_EQ(a.error().message, b.error().message) << line;
    return;
  }
  EXPECT_EQ(fast, slow) << line;
}

std::string replaced(std::string s, std::string_view from, std::string_view to) {
  auto at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

TEST(EventJson, TheWritersLayoutIsReadAsSimdjsonReadsIt) {
  std::vector<Event> events;
  events.push_back(full_event());
  Event bare;  // nulls, no usage, no metadata
  bare.at_ms = 1'772'442'845'000;
  bare.account_id = "a";
  bare.type = EventType::kReset;
  events.push_back(bare);
  Event tail = full_event();
  tail.type = EventType::kPlanChange;
  tail.hold_id = "h1";
  tail.grant_id = "g1";
  tail.refund_id = "r1";
  tail.object = "pending";
  tail.plan = "pro";
  tail.previous_plan = "free";
  tail.proration_usd_cents = 1234;
  tail.reason = "upgrade now";
  tail.imported = true;
  tail.usage->size = "512x512";
  tail.usage->count = 0;
  tail.metadata.extra.push_back({"k2", "v2"});
  events.push_back(tail);
  for (const auto& e : events) {
    const std::string line = event_to_json(e);
    expect_both_paths_agree(line);
    auto parsed = parse_event_json(line);
    ASSERT_TRUE(parsed.ok()) << line;
    EXPECT_EQ(*parsed, e);
  }
  // Values the rules refuse, and layouts the scanner leaves to simdjson.
  const std::string line = event_to_json(full_event());
  for (auto [from, to] : std::vector<std::pair<std::string_view, std::string_view>>{
           {"\"seq\":42", "\"seq\":042"},
           {"\"seq\":42", "\"seq\":-42"},
           {"\"seq\":42", "\"seq\":null"},
           {"\"seq\":42", "\"seq\":1234567890123456789"},
           {"2026-03-02T09:14:05.250Z", "2026-03-02 09:14"},
           {"\"account_id\":\"acme\"", "\"account_id\":\"\""},
           {"\"account_id\":\"acme\"", "\"account_id\":\"a b\""},
           {"\"account_id\":\"acme\"", "\"account_id\":\"a\\u0041\""},
           {"\"user_id\":\"dana\"", "\"user_id\":null"},
           {"\"user_id\":\"dana\"", "\"user_id\":\"d\\\"a\""},
           {"\"type\":\"charge\"", "\"type\":\"nope\""},
           {"\"kind\":\"agent_prompt\"", "\"kind\":\"nope\""},
           {"\"kind\":\"agent_prompt\"", "\"kind\":null"},
           {"\"credits\":7.25", "\"credits\":-7.25"},
           {"\"credits\":7.25", "\"credits\":7.2501"},
           {"\"credits\":7.25", "\"credits\":7.25e1"},
           {"\"credits\":7.25", "\"credits\":\"7.25\""},
           {"\"credits\":7.25", "\"credits\":07.25"},
           {"\"credits\":7.25", "\"credits\":7."},
           {"\"available_after\":992.75", "\"available_after\":null"},
           {"\"drawn_from\":[{", "\"drawn_from\":[{\"x\":1,"},
           {"\"input_tokens\":9800", "\"input_tokens\":-1"},
           {"\"input_tokens\":9800", "\"input_tokens\":1000000000001"},
           {"\"input_tokens\":9800", "\"tokens\":9800"},
           {"\"model\":\"default\"", "\"model\":null"},
           {"\"usage\":{", "\"usage\":{\"input_tokens\":1,"},
           {"\"intent\":\"fix\"", "\"intent\":\"other\""},
           {"\"intent\":\"fix\"", "\"intent\":null"},
           {"\"ticket\":\"T-9\"", "\"ticket\":\"T-9\",\"ticket\":\"T-10\""},
           {"\"metadata\":{", "\"metadata\":{\"file\":\"x\","},
           {"\"cache_key\":\"ck1\"", "\"cache_key\":null"},
           {"\"rate_card_version\":3", "\"rate_card_version\":-3"},
           {"\"imported\":false", "\"imported\":null"},
           {"\"imported\":false", "\"imported\":false,\"extra\":1"},
           {"\"imported\":false", "\"imported\":false,\"charge_id\":null"},
           {"\"imported\":false", "\"imported\":false,\"reason\":\"r\""},
           {"\"charge_id\":\"ch_1\"}", "\"charge_id\":\"ch_1\"} "},
           {"\"charge_id\":\"ch_1\"}", "\"charge_id\":\"ch_1\",\"seq\":7}"},
           {"\"charge_id\":\"ch_1\"}", "\"charge_id\":\"ch_1\"}{}"},
           {"\"charge_id\":\"ch_1\"}", "\"charge_id\":\"ch_1\""},
       }) {
    expect_both_paths_agree(replaced(line, from, to));
  }
}

// An expire event in the writer's layout (the canonical scanner reads it), with
// `object_field` where the writer puts the object (after "imported"), or none.
std::string expire_line(std::string_view object_field) {
  return R"({"seq":1,"at":"2026-02-12T00:00:00Z","account_id":"acme","user_id":null,"type":"expire","kind":null,"pool":"credits","credits":3,"available_after":0,"drawn_from":[],"refused_by":null,"priced_by":null,"usage":null,"metadata":{},"cache_key":null,"idempotency_key":"rp2","rate_card_version":null,"imported":false)" +
         std::string(object_field) + "}";
}

// A line of `type` (no user, no kind) with `field` added, in simdjson's path's layout.
std::string typed_line(std::string_view type, std::string_view field) {
  std::string line = R"({"at":"2026-02-12T00:00:00Z","account_id":"acme","user_id":null,"type":")" +
                     std::string(type) + R"(","kind":null,"pool":"credits","credits":3)";
  if (!field.empty()) line += "," + std::string(field);
  return line + "}";
}

// API.md "Event format" and DESIGN.md "Events" fix the values of the enumerated fields;
// a line with another value is refused, naming the field (found by an audit: an import
// kept "object":"bogus", "refused_by":"weird" and a negative available_after, and every
// export then showed them). Both readers (the canonical scanner, simdjson) refuse alike.
TEST(EventJson, EnumeratedFieldsTakeOnlyTheirContractsValues) {
  // expire: object hold | grant, and an expire names what expired.
  EXPECT_EQ(param_of(expire_line(R"(,"object":"bogus")")), "\"object\"");
  EXPECT_EQ(param_of(expire_line("")), "\"object\"");
  EXPECT_EQ(param_of(typed_line("expire", R"("object":null)")), "\"object\"");
  EXPECT_EQ(param_of(typed_line("expire", R"("object":"pack")")), "\"object\"");
  for (std::string_view object : {"hold", "grant"}) {
    EXPECT_EQ(param_of(expire_line(R"(,"object":")" + std::string(object) + "\"")), "ok");
    EXPECT_EQ(param_of(typed_line("expire", R"("object":")" + std::string(object) + "\"")), "ok");
  }
  // grant: what made it (rollover | pack | adjustment), or nothing said.
  for (std::string_view object : {"rollover", "pack", "adjustment"}) {
    EXPECT_EQ(param_of(typed_line("grant", R"("object":")" + std::string(object) + "\"")), "ok");
  }
  EXPECT_EQ(param_of(typed_line("grant", "")), "ok");
  EXPECT_EQ(param_of(typed_line("grant", R"("object":"gift")")), "\"object\"");
  EXPECT_EQ(param_of(typed_line("grant", R"("object":"hold")")), "\"object\"");
  // plan_change: pending | pending_cleared | pending_applied, or none (an upgrade).
  for (std::string_view object : {"pending", "pending_cleared", "pending_applied"}) {
    EXPECT_EQ(param_of(typed_line("plan_change", R"("object":")" + std::string(object) + "\"")),
              "ok");
  }
  EXPECT_EQ(param_of(typed_line("plan_change", "")), "ok");
  EXPECT_EQ(param_of(typed_line("plan_change", R"("object":"pro")")), "\"object\"");
  // No other type carries an object.
  for (std::string_view type : {"reset", "void", "refund", "rejected"}) {
    EXPECT_EQ(param_of(typed_line(type, R"("object":"hold")")), "\"object\"") << type;
    EXPECT_EQ(param_of(typed_line(type, R"("object":null)")), "ok") << type;
  }

  // refused_by: on rejected events only; pool | daily_cap (a 402), or the code of the
  // other stored refusals (a 409, 403 purchase_not_allowed), as the ledger records them.
  for (std::string_view rule : {"pool", "daily_cap", "charge_not_refundable", "hold_not_open",
                                "account_closed", "limit_reached", "purchase_not_allowed"}) {
    EXPECT_EQ(param_of(typed_line("rejected", R"("refused_by":")" + std::string(rule) + "\"")),
              "ok")
        << rule;
  }
  for (std::string_view rule :
       {"weird", "insufficient_credits", "invalid_request", "rate_limited", "internal", "Pool"}) {
    EXPECT_EQ(param_of(typed_line("rejected", R"("refused_by":")" + std::string(rule) + "\"")),
              "\"refused_by\"")
        << rule;
  }
  EXPECT_EQ(param_of(typed_line("reset", R"("refused_by":"pool")")), "\"refused_by\"");

  // priced_by: usage | amount.
  for (std::string_view by : {"usage", "amount"}) {
    EXPECT_EQ(param_of(typed_line("rejected", R"("priced_by":")" + std::string(by) + "\"")), "ok");
  }
  EXPECT_EQ(param_of(typed_line("rejected", R"("priced_by":"guess")")), "\"priced_by\"");

  // available_after: credits available, never negative.
  EXPECT_EQ(param_of(typed_line("rejected", R"("available_after":-0.5)")), "\"available_after\"");
  EXPECT_EQ(param_of(typed_line("rejected", R"("available_after":0)")), "ok");

  // drawn_from: {"source": "allowance" | "grant:<id>", "credits" >= 0}.
  EXPECT_EQ(param_of(typed_line("reset", R"("drawn_from":[{"source":"allowance","credits":1},)"
                                         R"({"source":"grant:g_1","credits":2}])")),
            "ok");
  for (std::string_view source : {"bucket", "grant:", "grant", "allowance:x", ""}) {
    EXPECT_EQ(param_of(typed_line("reset", R"("drawn_from":[{"source":")" + std::string(source) +
                                               R"(","credits":1}])")),
              "\"drawn_from.source\"")
        << source;
  }
  EXPECT_EQ(param_of(typed_line("reset", R"("drawn_from":[{"credits":1}])")),
            "\"drawn_from.source\"");
  EXPECT_EQ(param_of(typed_line("reset", R"("drawn_from":[{"source":"allowance","credits":-1}])")),
            "\"drawn_from.credits\"");

  // The writer's layout goes the same way (the canonical scanner accepted these).
  const std::string line = event_to_json(full_event());
  for (auto [from, to] : std::vector<std::pair<std::string_view, std::string_view>>{
           {"\"priced_by\":\"usage\"", "\"priced_by\":\"guess\""},
           {"\"refused_by\":null", "\"refused_by\":\"pool\""},
           {"\"source\":\"allowance\"", "\"source\":\"bucket\""},
           {"\"charge_id\":\"ch_1\"", "\"charge_id\":\"ch_1\",\"object\":\"hold\""},
       }) {
    const std::string bad = replaced(line, from, to);
    EXPECT_FALSE(parse_event_json(bad).ok()) << bad;
    expect_both_paths_agree(bad);
  }
}

// creditctl's files are read by the same reader: such a line is a bad line, reported by
// number, and reading goes on.
TEST(NdjsonReader, RefusesAnEnumeratedFieldsOtherValueByLine) {
  std::string path = ::testing::TempDir() + "/reader_enum_test.ndjson";
  {
    std::ofstream f(path, std::ios::binary);
    f << expire_line(R"(,"object":"hold")") << "\n";                                     // 1 ok
    f << expire_line(R"(,"object":"bogus")") << "\n";                                    // 2 bad
    f << typed_line("rejected", R"("refused_by":"weird")") << "\n";                      // 3 bad
    f << typed_line("rejected", R"("refused_by":"pool","available_after":-1)") << "\n";  // 4 bad
    f << expire_line(R"(,"object":"grant")") << "\n";                                    // 5 ok
  }
  NdjsonReader reader(path);
  ASSERT_TRUE(reader.ok());
  std::vector<std::string> objects;
  Event e;
  while (reader.next(e)) objects.push_back(e.object);
  EXPECT_EQ(objects, (std::vector<std::string>{"hold", "grant"}));
  ASSERT_EQ(reader.error_count(), 3u);
  EXPECT_EQ(reader.errors()[0].line, 2u);
  EXPECT_NE(reader.errors()[0].reason.find("object"), std::string::npos);
  EXPECT_EQ(reader.errors()[1].line, 3u);
  EXPECT_NE(reader.errors()[1].reason.find("refused_by"), std::string::npos);
  EXPECT_EQ(reader.errors()[2].line, 4u);
  EXPECT_NE(reader.errors()[2].reason.find("available_after"), std::string::npos);
  std::remove(path.c_str());
}

TEST(NdjsonReader, ReportsLineNumbersAndContinuesAfterBadLines) {
  std::string path = ::testing::TempDir() + "/reader_test.ndjson";
  {
    std::ofstream f(path, std::ios::binary);
    Event e = full_event();
    f << event_to_json(e) << "\n";                            // 1 ok
    f << "\n";                                                // 2 blank, skipped
    f << "{\"at\":\"2026-03-02T09:14:05Z\"}\n";               // 3 bad
    f << std::string(kEventLineBytesMax + 10, ' ') << "x\n";  // 4 too long
    e.seq = 43;
    f << event_to_json(e) << "\r\n";  // 5 ok (CRLF)
    f << "not json\n";                // 6 bad
    e.seq = 44;
    f << event_to_json(e);  // 7 ok, no final newline
  }
  NdjsonReader reader(path);
  ASSERT_TRUE(reader.ok());
  std::vector<std::uint64_t> seqs;
  Event e;
  while (reader.next(e)) seqs.push_back(e.seq);
  EXPECT_EQ(seqs, (std::vector<std::uint64_t>{42, 43, 44}));
  ASSERT_EQ(reader.error_count(), 3u);
  EXPECT_EQ(reader.errors()[0].line, 3u);
  EXPECT_EQ(reader.errors()[1].line, 4u);
  EXPECT_EQ(reader.errors()[1].reason, "line longer than 1 MiB");
  EXPECT_EQ(reader.errors()[2].line, 6u);
  std::remove(path.c_str());
}

struct SplitLine {
  std::uint64_t line;
  std::string text;
  bool too_long;
  bool operator==(const SplitLine&) const = default;
};

// Feeds `input` to a splitter in pieces of `piece_bytes` and collects the lines.
std::vector<SplitLine> split(std::string_view input, std::size_t piece_bytes) {
  NdjsonSplitter splitter;
  std::vector<SplitLine> out;
  auto collect = [&](std::uint64_t line, std::string_view text, bool too_long) {
    out.push_back({line, std::string(text), too_long});
  };
  for (std::size_t at = 0; at < input.size(); at += piece_bytes) {
    splitter.feed(input.substr(at, piece_bytes), collect);
  }
  splitter.finish(collect);
  return out;
}

TEST(NdjsonSplitter, NumbersLinesAsTheReaderDoesWhateverThePieces) {
  const std::string input = "{\"a\":1}\n\n  \n{\"b\":2}\r\nlast";
  const std::vector<SplitLine> want = {{1, "{\"a\":1}", false},
                                       {2, "", false},
                                       {3, "  ", false},
                                       {4, "{\"b\":2}", false},
                                       {5, "last", false}};
  for (std::size_t piece : {1u, 2u, 3u, 7u, 1000u}) EXPECT_EQ(split(input, piece), want) << piece;
  // A final newline ends the last line; it does not start another.
  EXPECT_EQ(split("x\ny\n", 1), (std::vector<SplitLine>{{1, "x", false}, {2, "y", false}}));
  EXPECT_TRUE(split("", 1).empty());
}

TEST(NdjsonSplitter, ALineOverTheLimitIsReportedWithoutBeingHeld) {
  std::string input = "a\n" + std::string(kEventLineBytesMax + 1, 'x') + "\nb\n";
  input += std::string(kEventLineBytesMax, 'y') + "\r\n";  // exactly the limit: kept
  input += std::string(kEventLineBytesMax + 5, 'z');       // too long, no final newline
  for (std::size_t piece : {std::size_t{4096}, kEventLineBytesMax / 3, 3 * kEventLineBytesMax}) {
    const std::vector<SplitLine> got = split(input, piece);
    ASSERT_EQ(got.size(), 5u) << piece;
    EXPECT_EQ(got[0], (SplitLine{1, "a", false}));
    EXPECT_EQ(got[1], (SplitLine{2, "", true}));
    EXPECT_EQ(got[2], (SplitLine{3, "b", false}));
    EXPECT_EQ(got[3].line, 4u);
    EXPECT_EQ(got[3].text.size(), kEventLineBytesMax);
    EXPECT_FALSE(got[3].too_long);
    EXPECT_EQ(got[4], (SplitLine{5, "", true}));
  }
}

TEST(NdjsonReader, SkipsAByteOrderMarkBeforeTheFirstLineOnlyAsTheSplitterDoes) {
  std::string path = ::testing::TempDir() + "/reader_bom_test.ndjson";
  Event e = full_event();
  const std::string first = event_to_json(e);
  e.seq = 43;
  const std::string second = event_to_json(e);
  {
    std::ofstream f(path, std::ios::binary);
    f << kUtf8ByteOrderMark << first << "\n";   // 1 ok: the mark is no text
    f << kUtf8ByteOrderMark << second << "\n";  // 2 bad: a mark inside the input is the line's
    f << second << "\n";                        // 3 ok
  }
  NdjsonReader reader(path);
  ASSERT_TRUE(reader.ok());
  Event got;
  ASSERT_TRUE(reader.next(got));
  EXPECT_EQ(got.seq, 42u);
  // Where the line lies (cli/time_order.h reads it again there): after the mark.
  EXPECT_EQ(reader.event_offset(), kUtf8ByteOrderMark.size());
  EXPECT_EQ(reader.event_size(), first.size());
  ASSERT_TRUE(reader.next(got));
  EXPECT_EQ(got.seq, 43u);
  EXPECT_FALSE(reader.next(got));
  ASSERT_EQ(reader.error_count(), 1u);
  EXPECT_EQ(reader.errors()[0].line, 2u);
  // As the server's import splits the same bytes.
  std::string input =
      std::string(kUtf8ByteOrderMark) + "a\n" + std::string(kUtf8ByteOrderMark) + "b";
  EXPECT_EQ(split(input, 1000).front().text, "a");
  EXPECT_EQ(split(input, 1000).back().text, std::string(kUtf8ByteOrderMark) + "b");
  std::remove(path.c_str());
}

TEST(NdjsonReader, MissingFileIsNotOk) {
  NdjsonReader reader("/nonexistent/creditd/events.ndjson");
  EXPECT_FALSE(reader.ok());
}

}  // namespace
}  // namespace credit::analytics
