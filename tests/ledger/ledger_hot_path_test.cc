// tests/ledger/ledger_hot_path_test.cc: the charge path's reused buffers give the same
// answers and events as the plain path: the reply bytes pinned, replies into a reused
// Reply, recycled events, prefetch, stored replies across expiry and snapshots, and
// charge records found by id.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <set>
#include <span>

#include "base/json_writer.h"
#include "ledger/charge_table.h"
#include "ledger/codec.h"
#include "ledger/internal/account_index.h"
#include "ledger/internal/reply_pack.h"
#include "ledger/ledger.h"
#include "ledger/render.h"
#include "ledger/snapshot_codec.h"
#include "ledger_harness.h"

namespace credit::ledger::testing {
namespace {

Command keyed(CommandBody body, std::string_view key) {
  Command c;
  c.idem.has_key = true;
  c.idem.key = std::string(key);
  c.idem.scope_key_hash = hash_of(key);
  c.idem.request_hash = hash_of("same request");
  c.body = std::move(body);
  return c;
}

// The charge object as json::Writer wrote it before the hand-written render.
std::string writer_charge(std::string_view charge_id, Millicredits cost, std::string_view pool,
                          Millicredits available_after, const std::vector<DrawnFrom>& drawn,
                          bool cached, Millicredits saved, std::string_view hold_id) {
  std::string out;
  json::Writer w(out);
  w.begin_object();
  w.key("charge_id").string(charge_id);
  w.key("cost").raw(format_credits(cost));
  w.key("pool").string(pool);
  w.key("available_after").raw(format_credits(available_after));
  w.key("drawn_from").begin_array();
  for (const auto& d : drawn) {
    w.begin_object().key("source").string(d.source);
    w.key("credits").raw(format_credits(d.credits));
    w.end_object();
  }
  w.end_array();
  w.key("cached").boolean(cached);
  if (cached) {
    w.key("saved").raw(format_credits(saved));
  } else {
    w.key("saved").null();
  }
  w.key("response").null();
  if (!hold_id.empty()) w.key("hold_id").string(hold_id);
  w.end_object();
  return out;
}

TEST(ChargeReply, BytesArePinned) {
  Driver d(default_catalog());
  d.set_now(at("2026-03-01T10:00:00Z"));
  d.run(create("a", "pro"));
  Reply r = d.run(charge("a", mc(1'500)));
  ASSERT_EQ(r.status, 201);
  EXPECT_EQ(
      r.body,
      R"({"charge_id":"c_2","cost":1.5,"pool":"credits","available_after":)" +
          field(r.body, "available_after") +
          R"(,"drawn_from":[{"source":"allowance","credits":1.5}],"cached":false,"saved":null,"response":null})");
}

TEST(ChargeReply, HandWrittenRenderEqualsTheWriter) {
  const std::vector<DrawnFrom> drawn = {{"allowance", mc(1)}, {"grant:g_\"7\\", mc(-2'500)}};
  for (bool cached : {false, true}) {
    for (std::string_view hold : {"", "h_12"}) {
      for (std::size_t n : {0, 1, 2}) {
        std::vector<DrawnFrom> part(drawn.begin(), drawn.begin() + static_cast<std::ptrdiff_t>(n));
        std::string out;
        render_charge("c_\n9", mc(12'345), "cre\"dits", mc(-7), part, cached, mc(250), hold, out);
        EXPECT_EQ(out, writer_charge("c_\n9", mc(12'345), "cre\"dits", mc(-7), part, cached,
                                     mc(250), hold));
      }
    }
  }
}

// The same commands through apply(c, events) and through a reused Reply with recycled
// events and prefetches give the same replies, events and state.
TEST(ChargePath, ReusedReplyRecycledEventsAndPrefetchChangeNothing) {
  Ledger plain(default_catalog());
  Ledger reused(default_catalog());
  const std::int64_t now = at("2026-03-01T10:00:00Z");
  std::vector<Event> plain_events, reused_events, all_plain, all_reused;
  Reply reply;
  for (Ledger* l : {&plain, &reused}) {
    l->begin_batch(now);
    Command c;
    c.body = create("a", "pro");
    Reply r = l->apply(c, plain_events);
    ASSERT_EQ(r.status, 201);
  }
  plain_events.clear();
  for (int batch = 0; batch < 3; ++batch) {
    std::vector<Command> commands;
    for (int i = 0; i < 20; ++i) {
      Charge ch = charge("a", mc(100 + i), "user-with-a-long-id-" + std::to_string(i));
      if (i % 3 == 0) {
        ch.metadata.file = "src/pages/a/rather/long/path/Checkout.tsx";
        ch.metadata.extra = {{"team", "web-platform-and-more"}};
      }
      // Every 5th command repeats an earlier key: a replay from the stored replies.
      std::string key = "k" + std::to_string(batch) + "-" + std::to_string(i % 5 == 4 ? 0 : i);
      commands.push_back(keyed(ch, key));
    }
    plain.begin_batch(now + batch);
    reused.begin_batch(now + batch);
    for (std::size_t i = 0; i < commands.size(); ++i) {
      Command a = commands[i];
      Command b = commands[i];
      reused.prefetch(commands, i);
      Reply r = plain.apply(a, plain_events);
      reused.apply(b, reused_events, reply);
      EXPECT_EQ(reply.status, r.status);
      EXPECT_EQ(reply.code, r.code);
      EXPECT_EQ(reply.body, r.body);
      EXPECT_EQ(reply.replayed, r.replayed);
      EXPECT_EQ(reply.logged, r.logged);
    }
    all_plain.insert(all_plain.end(), plain_events.begin(), plain_events.end());
    all_reused.insert(all_reused.end(), reused_events.begin(), reused_events.end());
    plain_events.clear();
    reused.recycle_events(reused_events);
    EXPECT_TRUE(reused_events.empty());
  }
  EXPECT_EQ(all_plain, all_reused);
  std::string a, b;
  encode_ledger_snapshot(plain, a);
  encode_ledger_snapshot(reused, b);
  EXPECT_EQ(a, b);
}

// A command keeps the hashes of its account and user ids from its first lookup
// (Command::account_hash, user_hash). A batch decoded into the commands of the batch before
// (the replay's reuse) names other accounts and users: each charge must still land on its
// own account, under its own user, with prefetch running ahead as in a replay.
TEST(ChargePath, ACommandReusedForOtherIdsLooksTheNewOnesUp) {
  Ledger ledger(default_catalog());
  const std::int64_t now = at("2026-03-01T10:00:00Z");
  std::vector<Event> events;
  ledger.begin_batch(now);
  for (const char* id : {"acct-a", "acct-b", "acct-c"}) {
    Command c;
    c.body = create(id, "pro");
    ASSERT_EQ(ledger.apply(c, events).status, 201);
  }
  DecodedBatch reused;
  Reply reply;
  const char* accounts[] = {"acct-a", "acct-b", "acct-c"};
  for (int batch = 0; batch < 3; ++batch) {
    std::vector<Command> commands;
    for (int i = 0; i < 40; ++i) {
      const std::string account = accounts[(batch + i) % 3];
      Charge ch = charge(account, mc(1'000), "u" + std::to_string(batch * 7 + i % 4));
      commands.push_back(keyed(ch, "k" + std::to_string(batch) + "-" + std::to_string(i)));
    }
    std::vector<const Command*> ptrs;
    for (const Command& c : commands) ptrs.push_back(&c);
    std::string bytes;
    encode_batch(now + batch, ptrs, bytes);
    ASSERT_TRUE(decode_batch_into(bytes, reused).ok());
    ledger.begin_batch(reused.now_ms);
    events.clear();
    for (std::size_t i = 0; i < reused.commands.size(); ++i) {
      ledger.prefetch(std::span<const Command>(reused.commands), i);
      ledger.apply(reused.commands[i], events, reply);
      ASSERT_EQ(reply.status, 201) << batch << " " << i << " " << reply.body;
    }
    ASSERT_EQ(events.size(), 40u);
    for (std::size_t i = 0; i < events.size(); ++i) {
      const auto& want = std::get<Charge>(commands[i].body);
      EXPECT_EQ(events[i].account_id, want.account_id) << batch << " " << i;
      EXPECT_EQ(events[i].user_id, want.user_id) << batch << " " << i;
    }
  }
  // 40 charges of 1 credit each per account; each account's charges name its own users,
  // each user interned once.
  for (const char* id : accounts) {
    const Account* a = ledger.find(id);
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->charges.size(), 40u) << id;
    std::set<std::string> users;
    for (std::size_t i = 0; i < a->charges.size(); ++i) {
      users.insert(a->charges.user_id(a->charges.at(i)));
    }
    EXPECT_EQ(users.size(), a->charges.user_count()) << id;
  }
  ledger.check_invariants();
}

// A replay with set_events_durable_through (events the event log holds are not built):
// the same replies, the same state and the same numbering as a plain apply, and exactly
// the events past the bound appended. The commands cover every event type a command makes:
// charges, 402s of the pool and the daily cap, cache hits, holds captured, voided and
// expired, refunds, grants, a plan change, 409s, stored replays, and cycle resets.
TEST(ChargePath, EventsAlreadyDurableAreNotBuiltAndNothingElseChanges) {
  for (const std::uint64_t bound :
       {std::uint64_t{0}, std::uint64_t{25}, std::uint64_t{70}, std::uint64_t{1'000'000}}) {
    Ledger plain(default_catalog());
    Ledger quiet(default_catalog());
    quiet.set_events_durable_through(bound);
    std::vector<Event> plain_events, quiet_events;
    std::int64_t now = at("2026-03-01T10:00:00Z");
    int key_no = 0;
    auto run = [&](CommandBody body, bool keyed_command = true, std::string key = "") {
      if (key.empty()) key = "k" + std::to_string(key_no++);
      Command a = keyed_command ? keyed(body, key) : Command{};
      if (!keyed_command) a.body = body;
      Command b = a;
      plain.begin_batch(now);
      quiet.begin_batch(now);
      Reply x = plain.apply(a, plain_events);
      Reply y = quiet.apply(b, quiet_events);
      EXPECT_EQ(y.status, x.status) << bound << " " << x.body;
      EXPECT_EQ(y.body, x.body) << bound;
      EXPECT_EQ(y.logged, x.logged) << bound;
      EXPECT_EQ(y.replayed, x.replayed) << bound;
      return x;
    };
    run(create("a", "starter"), false);
    run(create("f", "free"), false);
    Reply first = run(charge("a", cr(3)), true, "first");
    for (int i = 0; i < 6; ++i) run(charge("a", mc(1'500 + i)));
    run(charge("a", cr(100'000)));                         // 402: the pool
    for (int i = 0; i < 40; ++i) run(charge("f", cr(1)));  // 402s of the free plan's cap
    Charge hit = charge("a", cr(2));
    hit.cache_hit = true;
    hit.saved = cr(2);
    run(hit);
    const std::string h1 = field(run(hold("a", cr(5))).body, "hold_id");
    const std::string h2 = field(run(hold("a", cr(5))).body, "hold_id");
    const std::string h3 = field(run(hold("a", cr(5), 60'000)).body, "hold_id");
    EXPECT_EQ(run(capture("a", h1, cr(4))).status, 201);
    EXPECT_EQ(run(Void{"a", h2}).status, 200);
    EXPECT_EQ(run(Void{"a", h2}).status, 409);  // not open
    EXPECT_EQ(run(refund("a", field(first.body, "charge_id"), mc(500))).status, 201);
    run(grant("a", GrantSource::kAdjustment, cr(7)));
    run(charge("a", cr(3)), true, "first");  // a stored replay
    now += 120'000;                          // h3 expires
    run(charge("a", cr(1)));
    run(ChangePlan{"a", "pro"});
    now = at("2026-04-02T10:00:00Z");  // a cycle boundary: resets
    run(charge("a", cr(1)));
    run(charge("f", cr(1)));
    std::vector<Event> expected;
    for (const Event& e : plain_events) {
      if (e.seq > bound) expected.push_back(e);
    }
    EXPECT_GT(plain_events.size(), 60u);
    std::set<EventType> types;
    for (const Event& e : plain_events) types.insert(e.type);
    std::string names;
    for (EventType t : types) names += std::string(event_type_name(t)) + " ";
    EXPECT_EQ(types.size(), 12u) << names;  // API.md's 11 types and `account`
    EXPECT_EQ(quiet_events, expected) << bound;
    EXPECT_EQ(quiet.next_seq(), plain.next_seq());
    std::string x, y;
    encode_ledger_snapshot(plain, x);
    encode_ledger_snapshot(quiet, y);
    EXPECT_EQ(x, y) << bound;
    quiet.check_invariants();
  }
}

// The server's order: gate() first, then apply() without a second check, with prefetches
// over commands that lie apart. Replies (new, replayed, 422, 402), events and state are
// those of plain apply(); apply() clears the mark gate() left, so a command object used
// again is checked again.
TEST(ChargePath, GateThenApplyEqualsApply) {
  Ledger plain(default_catalog());
  Ledger gated(default_catalog());
  const std::int64_t now = at("2026-03-01T10:00:00Z");
  std::vector<Event> plain_events, gated_events;
  for (Ledger* l : {&plain, &gated}) {
    l->begin_batch(now);
    Command c;
    c.body = create("a", "pro");
    ASSERT_EQ(l->apply(c, plain_events).status, 201);
  }
  plain_events.clear();
  std::vector<Command> commands;
  for (int i = 0; i < 40; ++i) {
    // Amounts past the allowance now and then (402), keys repeated (replays) and a key
    // used again with another request (422).
    Charge ch = charge("a", mc(i % 7 == 6 ? 10'000'000'000 : 1'000 + i));
    Command c = keyed(ch, "k" + std::to_string(i % 9 == 8 ? 0 : i));
    if (i == 30) {
      c = keyed(ch, "k1");
      c.idem.request_hash = hash_of("another request");
    }
    commands.push_back(std::move(c));
  }
  std::vector<Command*> spread;
  for (Command& c : commands) spread.push_back(&c);
  std::vector<int> statuses;
  plain.begin_batch(now + 1);
  gated.begin_batch(now + 1);
  for (std::size_t i = 0; i < commands.size(); ++i) {
    Command a = commands[i];
    Reply r = plain.apply(a, plain_events);
    gated.prefetch(std::span<Command* const>(spread), i);
    Command& b = *spread[i];
    Reply g;
    if (std::optional<Reply> stop = gated.gate(b)) {
      EXPECT_FALSE(b.gated);
      g = std::move(*stop);
    } else {
      EXPECT_TRUE(b.gated);
      g = gated.apply(b, gated_events);
    }
    EXPECT_FALSE(b.gated);
    EXPECT_EQ(g.status, r.status) << i;
    EXPECT_EQ(g.body, r.body) << i;
    EXPECT_EQ(g.replayed, r.replayed) << i;
    statuses.push_back(r.status);
  }
  for (int status : {201, 402, 422}) {
    EXPECT_NE(std::find(statuses.begin(), statuses.end(), status), statuses.end()) << status;
  }
  EXPECT_EQ(plain_events, gated_events);
  std::string a, b;
  encode_ledger_snapshot(plain, a);
  encode_ledger_snapshot(gated, b);
  EXPECT_EQ(a, b);
}

// Stored replies live in chunks released with their keys: a replay just before the 24
// hours answers the stored bytes, after them the key is new again, and a snapshot keeps
// the replies that are still live.
TEST(StoredReplies, ReplayUntilTheKeyExpiresAndAcrossASnapshot) {
  Driver d(default_catalog());
  d.set_now(at("2026-03-01T10:00:00Z"));
  d.run(create("a", "enterprise"));
  // Enough replies for several 1 MiB chunks.
  std::vector<std::string> bodies;
  for (int i = 0; i < 12'000; ++i) {
    Reply r = d.run_keyed(charge("a", mc(1)), "s", "k" + std::to_string(i), "r");
    ASSERT_EQ(r.status, 201);
    bodies.push_back(r.body);
  }
  d.set_now(at("2026-03-02T09:59:59Z"));
  Reply again = d.run_keyed(charge("a", mc(1)), "s", "k7", "r");
  EXPECT_TRUE(again.replayed);
  EXPECT_EQ(again.body, bodies[7]);

  std::string bytes;
  encode_ledger_snapshot(d.ledger, bytes);
  auto restored = decode_ledger_snapshot(bytes, LedgerOptions{});
  ASSERT_TRUE(restored.ok());
  std::string again_bytes;
  encode_ledger_snapshot(*restored.value(), again_bytes);
  EXPECT_EQ(again_bytes, bytes);
  Command c = keyed(charge("a", mc(1)), "k11999");
  c.idem.scope_key_hash = hash_of("s\nk11999");
  c.idem.request_hash = hash_of("r");
  std::vector<Event> events;
  restored.value()->begin_batch(at("2026-03-02T09:59:59Z"));
  Reply from_snapshot = restored.value()->apply(c, events);
  EXPECT_TRUE(from_snapshot.replayed);
  EXPECT_EQ(from_snapshot.body, bodies[11'999]);

  d.set_now(at("2026-03-02T10:00:01Z"));
  Reply fresh = d.run_keyed(charge("a", mc(1)), "s", "k7", "r");
  EXPECT_FALSE(fresh.replayed);
  EXPECT_NE(fresh.body, bodies[7]);
}

TEST(ChargeTable, FindsByIdInSequenceOrderOnly) {
  EXPECT_EQ(ChargeTable::seq_of("c_17"), 17u);
  EXPECT_EQ(ChargeTable::seq_of("c_0"), std::nullopt);
  EXPECT_EQ(ChargeTable::seq_of("c_017"), std::nullopt);
  EXPECT_EQ(ChargeTable::seq_of("c_"), std::nullopt);
  EXPECT_EQ(ChargeTable::seq_of("h_17"), std::nullopt);
  EXPECT_EQ(ChargeTable::seq_of("c_1x"), std::nullopt);
  EXPECT_EQ(ChargeTable::seq_of("c_99999999999999999999"), std::nullopt);
  ChargeTable t;
  for (std::uint64_t seq : {3, 10, 11, 200}) {
    ChargeRecord r;
    r.user = t.intern_user("u_1");
    r.cost = mc(static_cast<std::int64_t>(seq));
    ReservationList drawn;
    drawn.push_back({1, mc(1)});
    drawn.push_back({2, mc(2)});
    drawn.push_back({3, mc(3)});  // past the list's inline two
    r.set_drawn(drawn);
    EXPECT_TRUE(t.append(seq, std::move(r)));
  }
  ChargeRecord older;
  older.user = t.intern_user("u_2");
  EXPECT_FALSE(t.append(100, older));  // out of order
  EXPECT_EQ(t.size(), 4u);
  auto it = t.find("c_11");
  ASSERT_NE(it, t.end());
  EXPECT_EQ(it->second.cost, mc(11));
  EXPECT_EQ(it->second.drawn().size(), 3u);
  EXPECT_EQ(it->second.drawn()[2].credits, mc(3));
  EXPECT_EQ(t.find("c_12"), t.end());
  std::vector<std::string> ids;
  for (const auto& [id, c] : t) ids.push_back(id);
  EXPECT_EQ(ids, (std::vector<std::string>{"c_3", "c_10", "c_11", "c_200"}));
  t.erase_if([](std::uint64_t, const ChargeRecord& c) { return c.cost < mc(11); });
  EXPECT_FALSE(t.contains("c_10"));
  EXPECT_TRUE(t.contains("c_200"));
  EXPECT_EQ(t.size(), 2u);
}

// A record is one cache line: one draw of the whole cost is inline, anything else (several
// draws, a draw of less than the cost, refunds) is out of line, and every form reads back
// the same, in copies too; the day and cycle it keeps compactly are range-checked.
TEST(ChargeRecord, KeepsDrawsAndRefundsInlineOrOutOfLine) {
  EXPECT_EQ(sizeof(ChargeRecord), 64u);
  EXPECT_EQ(alignof(ChargeRecord), 64u);
  auto list = [](std::initializer_list<Reservation> rs) {
    ReservationList l;
    for (const Reservation& r : rs) l.push_back(r);
    return l;
  };
  ChargeRecord r;
  r.cost = mc(500);
  EXPECT_TRUE(r.drawn().empty());
  for (const ReservationList& drawn :
       {list({{7, mc(500)}}), list({{7, mc(200)}, {9, mc(300)}}), list({{7, mc(499)}}),
        list({{4, mc(1)}, {5, mc(2)}, {6, mc(497)}}), list({}), list({{8, mc(500)}})}) {
    r.set_drawn(drawn);
    EXPECT_EQ(r.drawn(), drawn);
    ChargeRecord copy = r;
    EXPECT_EQ(copy.drawn(), drawn);
  }
  EXPECT_EQ(r.refunded(), mc(0));
  EXPECT_TRUE(r.refunds().empty());
  r.add_refund({"r_1", mc(100), 5, "dup"});
  r.add_refund({"r_2", mc(50), 6, ""});
  EXPECT_EQ(r.refunded(), mc(150));
  ASSERT_EQ(r.refunds().size(), 2u);
  EXPECT_EQ(r.refunds()[1].refund_id, "r_2");
  EXPECT_EQ(r.drawn(), list({{8, mc(500)}}));  // the inline draw outlives the refunds
  ChargeRecord copy = r;
  r.add_refund({"r_3", mc(1), 7, ""});
  EXPECT_EQ(copy.refunded(), mc(150));  // a deep copy
  EXPECT_EQ(copy.refunds().size(), 2u);
  copy.restore_refunds(mc(0), {});
  EXPECT_EQ(copy.refunded(), mc(0));
  EXPECT_TRUE(copy.refunds().empty());

  EXPECT_TRUE(r.set_day_start_ms(20'000 * kMsPerDay));
  EXPECT_EQ(r.day_start_ms(), 20'000 * kMsPerDay);
  EXPECT_TRUE(r.set_day_start_ms(-3 * kMsPerDay));
  EXPECT_EQ(r.day_start_ms(), -3 * kMsPerDay);
  EXPECT_FALSE(r.set_day_start_ms(20'000 * kMsPerDay + 1));  // not a day's start
  EXPECT_FALSE(r.set_day_start_ms((std::int64_t{INT32_MAX} + 1) * kMsPerDay));
  EXPECT_EQ(r.day_start_ms(), -3 * kMsPerDay);  // unchanged by a refused one
  EXPECT_TRUE(r.set_cycle_index(UINT32_MAX));
  EXPECT_EQ(r.cycle_index(), std::int64_t{UINT32_MAX});
  EXPECT_FALSE(r.set_cycle_index(std::int64_t{UINT32_MAX} + 1));
  EXPECT_FALSE(r.set_cycle_index(-1));
  EXPECT_EQ(r.cycle_index(), std::int64_t{UINT32_MAX});
}

// Records sit in segments of 4, 8, ... 512 records, then 512 each: every one is found
// across the segment edges, before and after the front is forgotten, and in a copy.
TEST(ChargeTable, ThousandsOfRecordsAcrossSegments) {
  ChargeTable t;
  for (std::uint64_t seq = 1; seq <= 3'000; ++seq) {
    ChargeRecord r;
    r.user = t.intern_user(seq % 2 == 0 ? "even" : "odd");
    r.cost = mc(static_cast<std::int64_t>(seq));
    ASSERT_TRUE(t.append(seq * 2, std::move(r)));
  }
  for (std::uint64_t seq = 1; seq <= 3'000; ++seq) {
    const ChargeRecord* r = t.find_record("c_" + std::to_string(seq * 2));
    ASSERT_NE(r, nullptr) << seq;
    EXPECT_EQ(r->cost, mc(static_cast<std::int64_t>(seq)));
    EXPECT_FALSE(t.contains("c_" + std::to_string(seq * 2 + 1)));
  }
  t.erase_if([](std::uint64_t, const ChargeRecord& c) { return c.cost <= mc(1'234); });
  EXPECT_EQ(t.size(), 1'766u);
  EXPECT_FALSE(t.contains("c_2468"));
  ASSERT_TRUE(t.contains("c_2470"));
  EXPECT_EQ(t.find("c_6000")->second.cost, mc(3'000));
  ChargeRecord next;
  next.user = t.intern_user("u_3");
  next.cost = mc(7);
  ASSERT_TRUE(t.append(7000, next));
  ChargeTable copy = t;
  std::vector<std::string> a, b;
  for (const auto& [id, c] : t) a.push_back(id);
  for (const auto& [id, c] : copy) b.push_back(id);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.size(), 1'767u);
  EXPECT_EQ(a.front(), "c_2470");
  EXPECT_EQ(a.back(), "c_7000");
  EXPECT_EQ(copy.user_id(copy.find("c_6000")->second), "even");
  EXPECT_EQ(copy.user_id(copy.find("c_5998")->second), "odd");
  EXPECT_EQ(copy.user_id(copy.find("c_7000")->second), "u_3");
  t.erase_if([](std::uint64_t, const ChargeRecord&) { return true; });
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(t.begin(), t.end());
}

// Users are interned per table; past kUsersPruneAbove a reset (erase_if) rebuilds the table
// from the records it keeps, and every kept record still names its own user.
TEST(ChargeTable, InternsUsersAndForgetsThoseNoRecordHas) {
  ChargeTable t;
  const std::size_t users = ChargeTable::kUsersPruneAbove + 100;
  for (std::uint64_t seq = 1; seq <= users; ++seq) {
    ChargeRecord r;
    r.user = t.intern_user("user-" + std::to_string(seq));
    EXPECT_EQ(r.user, seq - 1);
    r.cost = mc(static_cast<std::int64_t>(seq));
    ASSERT_TRUE(t.append(seq, std::move(r)));
  }
  EXPECT_EQ(t.intern_user("user-7"), 6u);  // the same user, the same index
  t.erase_if([](std::uint64_t, const ChargeRecord& c) { return c.cost <= mc(65'000); });
  ASSERT_EQ(t.size(), users - 65'000);
  for (const auto& [id, c] : t) {
    EXPECT_EQ(t.user_id(c), "user-" + id.substr(2));
    EXPECT_LT(c.user, users - 65'000);  // renumbered from 0
  }
  // A forgotten user comes back with a new index.
  EXPECT_EQ(t.intern_user("user-1"), users - 65'000);
}

// Stored replies are packed (reply_pack.h): every body comes back byte for byte, a charge's
// in a fraction of its size, and a body with a raw control byte is kept as it is.
TEST(ReplyPack, RoundTripsEveryBodyAndShrinksCharges) {
  std::string charge;
  render_charge("c_123456", mc(7'250), "credits", mc(492'750),
                {{"allowance", mc(7'000)}, {"grant:g_42", mc(250)}}, false, Millicredits::zero(),
                "", charge);
  std::string capture;
  render_charge("c_9", mc(1), "integrations", mc(0), {}, true, mc(3), "h_8", capture);
  const std::vector<std::string> bodies = {
      charge,
      capture,
      "",
      "{}",
      "{\"error\":{\"code\":\"insufficient_credits\",\"message\":\"the account's credits do "
      "not cover this operation\",\"required\":5,\"available\":1,\"refused_by\":\"pool\","
      "\"pool\":\"credits\",\"cycle_end\":\"2026-02-28T00:00:00Z\",\"upgrade_to\":null}}",
      "{\"user\":\"\\\",\\\"cost\\\":\"}",         // a token's text inside a string
      std::string("{\"raw\":\"a\x01b\"}"),         // not JSON: kept as it is
      std::string("{\"charge_id\":\"c_1\x02\"}"),  // the same after a token
      ",\"pool\":\"",                              // a token and nothing else
      "{\"charge_id\":\"c_",                       // a token at the very end
      std::string("\x7f{}"),                       // the parts form's marker first: raw
      std::string("\x7f"),
  };
  for (const std::string& body : bodies) {
    std::string packed;
    pack_reply(body, packed);
    std::string back;
    unpack_reply(packed, back);
    EXPECT_EQ(back, body);
  }
  std::string packed;
  pack_reply(charge, packed);
  EXPECT_LT(packed.size(), charge.size() / 3) << charge.size() << " -> " << packed.size();
}

// The parts form of a charge's answer unpacks to exactly what render_charge writes from
// the same parts, for every shape (no draw, several, names that need escaping, a capture's
// hold id, amounts up to the largest), and is smaller than the packed text.
TEST(StoredReplies, AVersion3SnapshotWithBodiesIsReadAndAnswersTheSame) {
  // Snapshots before version 4 held each stored reply as its body; they are read (and
  // packed again), and every retry answers the bytes the first answer had.
  Driver d(default_catalog());
  d.set_now(at("2026-03-01T10:00:00Z"));
  d.run(create("a", "enterprise"));
  std::vector<std::string> bodies;
  for (int i = 0; i < 500; ++i) {
    Reply r = d.run_keyed(charge("a", mc(1 + i)), "s", "k" + std::to_string(i), "r");
    ASSERT_EQ(r.status, 201);
    bodies.push_back(r.body);
  }
  std::string v3, v4;
  encode_ledger_snapshot(d.ledger, v3, 3);
  encode_ledger_snapshot(d.ledger, v4);
  ASSERT_EQ(v3[0], 3);
  ASSERT_EQ(v4[0], static_cast<char>(kLedgerSnapshotVersion));
  // Each charge's answer is about 190 bytes as a body and about 20 as its parts.
  EXPECT_LT(v4.size() + 500 * 150, v3.size()) << v4.size() << " against " << v3.size();
  for (const std::string* bytes : {&v3, &v4}) {
    auto restored = decode_ledger_snapshot(*bytes, LedgerOptions{});
    ASSERT_TRUE(restored.ok()) << restored.error().message;
    restored.value()->begin_batch(at("2026-03-01T11:00:00Z"));
    for (int i : {0, 7, 499}) {
      Command c = keyed(charge("a", mc(1 + i)), "k" + std::to_string(i));
      c.idem.scope_key_hash = hash_of("s\nk" + std::to_string(i));
      c.idem.request_hash = hash_of("r");
      std::vector<Event> events;
      Reply again = restored.value()->apply(c, events);
      EXPECT_TRUE(again.replayed);
      EXPECT_EQ(again.body, bodies[i]) << "version " << int((*bytes)[0]);
    }
  }
}

TEST(ReplyPack, OnlyWhatUnpackCanReadIsValid) {
  // A snapshot's packed replies come from outside the process: each is checked before it
  // is stored (unpack_reply asserts on what pack did not write).
  const std::vector<DrawnFrom> drawn = {{"allowance", mc(7'000)}, {"grant:g_42", mc(250)}};
  const ChargeReplyParts parts{"c_9", 9, mc(7'250), "credits", mc(100), &drawn, "", 0};
  std::string charge;
  pack_charge_reply(parts, charge);
  std::string text;
  pack_reply(R"({"error":{"code":"insufficient_credits","message":"m"}})", text);
  std::string raw;
  pack_reply(std::string("{\"a\":\"") + '\x01' + "\"}", raw);
  for (const std::string& ok : {charge, text, raw, std::string()}) {
    EXPECT_TRUE(packed_reply_is_valid(ok)) << ok;
  }
  EXPECT_FALSE(packed_reply_is_valid(charge.substr(0, charge.size() - 1)));  // cut short
  EXPECT_FALSE(packed_reply_is_valid(charge + "x"));                         // bytes after
  std::string no_id = charge;
  no_id[1] = 0;  // charge_seq 0: no charge id
  EXPECT_FALSE(packed_reply_is_valid(no_id));
  EXPECT_FALSE(packed_reply_is_valid(text + '\x1f'));  // no such token
}

TEST(ReplyPack, ChargePartsUnpackToTheRenderedBytes) {
  const std::vector<std::vector<DrawnFrom>> draws = {
      {},
      {{"allowance", mc(7'000)}},
      {{"allowance", mc(7'000)}, {"grant:g_42", mc(250)}, {"grant:g_\"q\\\n", mc(1)}},
      {{"grant:g_big", Millicredits::from_mc(INT64_MAX)}},
      {{"rollover", mc(3)}, {"grant:", mc(4)}, {"", mc(5)}},  // names kept as text
  };
  for (const auto& drawn : draws) {
    for (const auto& [hold_id, hold_seq] : {std::pair<std::string_view, std::uint64_t>{"", 0},
                                            {"h_77", 77},
                                            {"h_18446744073709551615", UINT64_MAX}}) {
      for (const Millicredits amount :
           {mc(0), mc(1), mc(492'750), Millicredits::from_mc(INT64_MAX)}) {
        const ChargeReplyParts parts{"c_123456", 123456, amount,  "credits",
                                     amount,     &drawn, hold_id, hold_seq};
        std::string rendered;
        render_charge(parts.charge_id, parts.cost, parts.pool, parts.available_after, drawn, false,
                      Millicredits::zero(), hold_id, rendered);
        std::string packed;
        pack_charge_reply(parts, packed);
        std::string back;
        unpack_reply(packed, back);
        EXPECT_EQ(back, rendered);
        std::string text;
        pack_reply(rendered, text);
        EXPECT_LE(packed.size(), text.size()) << rendered;
      }
    }
  }
}

// A ledger that stores the answers of charges and captures without rendering them (a
// replay of the log) leaves those bodies empty, and one that packs them (a server's) answers
// with the packed form, which render_reply() turns into the same JSON; nothing else changes:
// every other answer, every answer a retry of any key gets, the events and the snapshot
// bytes are the same.
TEST(ChargePath, UnrenderedAndPackedRepliesAreStoredAsTheRenderedOnes) {
  Ledger plain(default_catalog());
  Ledger quiet(default_catalog());
  Ledger packed(default_catalog());
  quiet.set_reply_form(ReplyForm::kNone);
  packed.set_reply_form(ReplyForm::kPacked);
  std::vector<Event> plain_events, quiet_events, packed_events;
  Reply reused;  // one reply for every answer of `packed`: no flag is left from the last
  std::int64_t now = at("2026-03-01T10:00:00Z");
  std::vector<Command> sent;
  std::vector<Reply> first_answers;  // plain's, as sent the first time
  int unrendered = 0;
  int replayed = 0;
  auto run = [&](CommandBody body, bool keyed_command = true) {
    Command a = keyed_command ? keyed(body, "k" + std::to_string(sent.size())) : Command{};
    if (!keyed_command) a.body = body;
    sent.push_back(a);
    Command b = a;
    Command c = a;
    plain.begin_batch(now);
    quiet.begin_batch(now);
    packed.begin_batch(now);
    Reply x = plain.apply(a, plain_events);
    Reply y = quiet.apply(b, quiet_events);
    packed.apply(c, packed_events, reused);
    first_answers.push_back(x);
    EXPECT_EQ(y.status, x.status) << x.body;
    EXPECT_EQ(reused.status, x.status) << x.body;
    EXPECT_FALSE(x.packed);
    const bool charge_answer = x.status == 201 && x.body.starts_with("{\"charge_id\"") &&
                               x.body.find("\"cached\":false") != std::string::npos;
    EXPECT_EQ(reused.packed, charge_answer) << x.body;
    if (charge_answer) {
      EXPECT_EQ(y.body, "");
      EXPECT_NE(reused.body, x.body);
      ++unrendered;
    }
    render_reply(reused);
    EXPECT_FALSE(reused.packed);
    EXPECT_EQ(reused.body, x.body);
    if (!charge_answer) {
      EXPECT_EQ(y.body, x.body);
    }
    return x;
  };
  run(create("a", "starter"), false);
  for (int i = 0; i < 5; ++i) run(charge("a", mc(1'500 + i)));
  // A grant that ends before the cycle is spent first: 100 credits draw it, then the allowance.
  run(grant("a", GrantSource::kAdjustment, cr(40), at("2026-03-05T00:00:00Z")));
  const std::string two_draws = run(charge("a", cr(100))).body;
  EXPECT_NE(two_draws.find("},{\"source\":"), std::string::npos) << two_draws;
  run(charge("a", cr(100'000)));  // 402
  Charge hit = charge("a", cr(2));
  hit.cache_hit = true;
  hit.saved = cr(2);
  run(hit);  // a cache hit's answer is rendered either way
  const std::string h1 = field(run(hold("a", cr(5))).body, "hold_id");
  const std::string h2 = field(run(hold("a", cr(5))).body, "hold_id");
  run(capture("a", h1, cr(4)));        // less than held
  run(capture("a", h2, cr(9), true));  // more than held, the overage drawn like a charge
  EXPECT_EQ(unrendered, 8);
  now += 60'000;
  for (std::size_t i = 0; i < sent.size(); ++i) {  // every key again: the stored answers
    Command c = sent[i];
    Command d = c;
    Command e = c;
    plain.begin_batch(now);
    quiet.begin_batch(now);
    packed.begin_batch(now);
    Reply x = plain.apply(c, plain_events);
    Reply y = quiet.apply(d, quiet_events);
    Reply z = packed.apply(e, packed_events);
    EXPECT_EQ(y.status, x.status);
    EXPECT_EQ(y.body, x.body);
    EXPECT_EQ(y.replayed, x.replayed);
    EXPECT_FALSE(z.packed);  // a stored answer is rendered when it is replayed
    EXPECT_EQ(z.status, x.status);
    EXPECT_EQ(z.body, x.body);
    EXPECT_EQ(z.replayed, x.replayed);
    // A stored answer is the one first sent, byte for byte, in both.
    if (x.replayed) {
      EXPECT_EQ(x.body, first_answers[i].body);
      ++replayed;
    }
  }
  EXPECT_GE(replayed, unrendered);
  EXPECT_EQ(quiet_events, plain_events);
  EXPECT_EQ(packed_events, plain_events);
  std::string xs, ys, zs;
  encode_ledger_snapshot(plain, xs);
  encode_ledger_snapshot(quiet, ys);
  encode_ledger_snapshot(packed, zs);
  EXPECT_EQ(xs, ys);
  EXPECT_EQ(xs, zs);
  quiet.check_invariants();
  packed.check_invariants();
}

// A replay with the idempotency table and the replies handed to another thread
// (Ledger::defer_stores, here applied in turn on this one) ends in the same state as the
// live run it replays: keyed charges, holds and captures, a 402 stored, keys repeated
// (answered live, so not logged), a key created by the engine (store_external), expiry a
// day later, and a reservation on the way.
TEST(DeferredStores, AReplayWithStoresDeferredEndsInTheLiveState) {
  Ledger live(default_catalog());
  Ledger replayed(default_catalog());
  replayed.set_reply_form(ReplyForm::kNone);
  DeferredStores stores;
  const std::int64_t start = at("2026-03-01T10:00:00Z");
  std::vector<Event> events;
  Reply reply;
  auto both = [&](std::int64_t now, std::vector<Command> commands) {
    live.begin_batch(now);
    std::vector<Command> logged;
    for (Command& c : commands) {
      Command copy = c;
      live.apply(copy, events, reply);
      if (reply.logged) logged.push_back(c);
    }
    stores.clear();
    replayed.defer_stores(&stores);
    replayed.begin_batch(now);
    for (Command& c : logged) {
      replayed.apply(c, events, reply);
      ASSERT_TRUE(reply.logged);
    }
    replayed.defer_stores(nullptr);
    ASSERT_TRUE(replayed.apply_deferred_stores(stores).ok());
  };
  both(start, {keyed(create("a", "pro"), "create-a"), keyed(create("b", "free"), "create-b")});
  for (int batch = 0; batch < 4; ++batch) {
    std::vector<Command> commands;
    for (int i = 0; i < 30; ++i) {
      const std::string key =
          "k" + std::to_string(batch) + "-" + std::to_string(i % 7 == 6 ? 0 : i);
      commands.push_back(keyed(charge(i % 2 ? "a" : "b", mc(900 + 37 * i)), key));
    }
    commands.push_back(keyed(hold("a", mc(2'000)), "hold-" + std::to_string(batch)));
    // Four days of batches: the keys of the first expire on the way.
    both(start + batch * 30 * 3'600'000LL, std::move(commands));
  }
  // A key of the engine's own (a created API key) and a reservation, deferred too.
  const IdempotencyRef idem = keyed(charge("a", mc(1)), "api-key-1").idem;
  const std::int64_t now = start + 5 * kIdempotencyTtlMs;
  live.begin_batch(now);
  live.store_external(idem, 201, R"({"key_id":"k_1"})", now + kIdempotencyTtlMs);
  stores.clear();
  replayed.defer_stores(&stores);
  replayed.begin_batch(now);
  replayed.reserve_idempotency_keys(1'000);
  replayed.store_external(idem, 201, R"({"key_id":"k_1"})", now + kIdempotencyTtlMs);
  replayed.defer_stores(nullptr);
  ASSERT_EQ(stores.size(), 4u);  // expiry, reservation, expiry, store
  ASSERT_TRUE(replayed.apply_deferred_stores(stores).ok());
  std::string a, b;
  encode_ledger_snapshot(live, a);
  encode_ledger_snapshot(replayed, b);
  EXPECT_EQ(a, b);
  // And a retry of a stored key gets the same answer from both.
  Command retry = keyed(charge("a", mc(1)), "api-key-1");
  Command retry2 = retry;
  Reply from_live = live.apply(retry, events);
  replayed.set_reply_form(ReplyForm::kRendered);
  Reply from_replayed = replayed.apply(retry2, events);
  EXPECT_TRUE(from_live.replayed);
  EXPECT_TRUE(from_replayed.replayed);
  EXPECT_EQ(from_live.body, R"({"key_id":"k_1"})");
  EXPECT_EQ(from_live.body, from_replayed.body);
}

TEST(DeferredStores, AStoreUnderALiveKeyOrPastCapacityIsAnError) {
  LedgerOptions o;
  o.idempotency_keys_max = 3;
  Ledger l(default_catalog(), o);
  std::vector<Event> events;
  l.begin_batch(at("2026-03-01T10:00:00Z"));
  Command c = keyed(create("a", "pro"), "k1");
  ASSERT_EQ(l.apply(c, events).status, 201);
  // The same key again, deferred: no lookup at apply, the apply of the stores refuses it.
  DeferredStores stores;
  l.defer_stores(&stores);
  Command again = keyed(charge("a", mc(10)), "k1");
  l.apply(again, events);
  l.defer_stores(nullptr);
  Status s = l.apply_deferred_stores(stores);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("live"), std::string::npos);
  // Past capacity.
  stores.clear();
  l.defer_stores(&stores);
  for (int i = 0; i < 3; ++i) {
    Command more = keyed(charge("a", mc(10)), "more-" + std::to_string(i));
    l.apply(more, events);
  }
  l.defer_stores(nullptr);
  s = l.apply_deferred_stores(stores);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("holds"), std::string::npos);
}

TEST(ReservationList, InlineHeapCopyAndMove) {
  ReservationList l;
  for (std::uint32_t i = 1; i <= 5; ++i) l.push_back({i, mc(i * 10)});
  ASSERT_EQ(l.size(), 5u);
  EXPECT_EQ(l[4].bucket_id, 5u);
  ReservationList copy = l;
  EXPECT_EQ(copy, l);
  ReservationList moved = std::move(copy);
  EXPECT_EQ(moved, l);
  ReservationList small;
  small.push_back({9, mc(1)});
  moved = small;
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_EQ(moved[0].bucket_id, 9u);
  EXPECT_EQ((*moved.rbegin()).credits, mc(1));
}

}  // namespace
}  // namespace credit::ledger::testing

namespace credit::ledger::testing {
namespace {

// ids_equal (base/id_index.h) against std::string_view's ==, for every length
// up to past its word-sized cases and a difference at every position.
TEST(IdsEqual, AgreesWithStringEqualityAtEveryLengthAndPosition) {
  for (std::size_t n = 0; n <= 40; ++n) {
    std::string a(n, 'x');
    for (std::size_t i = 0; i < n; ++i) a[i] = static_cast<char>('a' + (i * 7) % 26);
    std::string b = a;
    EXPECT_TRUE(ids_equal(a, b)) << n;
    for (std::size_t i = 0; i < n; ++i) {
      std::string c = a;
      c[i] = static_cast<char>(c[i] ^ 0x01);
      EXPECT_FALSE(ids_equal(a, c)) << n << " " << i;
    }
    EXPECT_FALSE(ids_equal(a, a + "z")) << n;
    EXPECT_FALSE(ids_equal(a + "z", a)) << n;
  }
}

}  // namespace
}  // namespace credit::ledger::testing
