// tests/analytics/event_json_test.cc
// The event's JSON line: API.md's field order and nulls, a lossless round trip, exact
// money, line-level errors naming the field, and the streaming NDJSON reader.
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
  EXPECT_FALSE(parse_event_json("{\"at\":").ok());
  EXPECT_FALSE(parse_event_json("[1,2]").ok());
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

TEST(NdjsonReader, MissingFileIsNotOk) {
  NdjsonReader reader("/nonexistent/creditd/events.ndjson");
  EXPECT_FALSE(reader.ok());
}

}  // namespace
}  // namespace credit::analytics
