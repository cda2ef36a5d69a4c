// tests/store/ledger_snapshot_test.cc
// The ledger snapshot and event codecs: a snapshot restores a ledger that answers every
// later command (idempotent replays included) byte for byte like the original, and both
// encodings refuse what they did not write.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "ledger/event_codec.h"
#include "ledger/ledger.h"
#include "ledger/snapshot_codec.h"
#include "pricing/plan.h"
#include "time/time.h"

namespace credit::ledger {
namespace {

pricing::Catalog shipped_catalog() {
  auto c = pricing::load_catalog_file(std::string(CREDITD_SOURCE_DIR) + "/config/plans.toml");
  EXPECT_TRUE(c.ok());
  return c.ok() ? std::move(*c) : pricing::Catalog{};
}

Hash128 hash_of(std::uint64_t v, std::uint8_t salt) {
  Hash128 h{};
  for (int i = 0; i < 8; ++i) h[i] = static_cast<std::uint8_t>(v >> (8 * i));
  h[8] = salt;
  h[15] = 0x5a;
  return h;
}

LedgerOptions small_options(std::size_t keys_max, std::size_t accounts_max = kAccountsMaxDefault) {
  LedgerOptions o;
  o.idempotency_keys_max = keys_max;
  o.accounts_max = accounts_max;
  return o;
}

// A charge of `amount` to acct_1's credits pool by user u1 (no idempotency key).
Command charge_of(Millicredits amount) {
  Charge ch;
  ch.account_id = "acct_1";
  ch.user_id = "u1";
  ch.pool = "credits";
  ch.amount = amount;
  Command c;
  c.body = ch;
  return c;
}

Millicredits credits(std::int64_t c) {
  return Millicredits::from_mc(c * 1000);
}

// A random mix of every command, with keys, replays of earlier keys and conflicting
// reuse, over about four months. Ids are chosen from the first ledger in sorted order,
// so the same stream can be applied to a restored copy.
class Workload {
 public:
  explicit Workload(std::uint64_t seed) : rng_(seed) {}

  std::int64_t now_ms = 1'767'225'600'000;  // 2026-01-01T00:00:00Z

  std::vector<Command> next_batch(const Ledger& l) {
    now_ms += static_cast<std::int64_t>(pick(6 * 3'600'000));
    std::vector<Command> batch;
    const std::size_t n = 1 + pick(4);
    for (std::size_t i = 0; i < n; ++i) batch.push_back(next(l));
    return batch;
  }

 private:
  std::uint64_t pick(std::uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  std::string account() { return "acct_" + std::to_string(pick(40)); }

  Command keyed(CommandBody body, const std::string& account_id) {
    Command c;
    c.body = std::move(body);
    if (pick(10) < 8) {
      const std::uint64_t key = next_key_++;
      c.idem.has_key = true;
      c.idem.key = "k" + std::to_string(key);
      c.idem.scope_key_hash = hash_of(key, 1);
      c.idem.request_hash = hash_of(key * 7 + account_id.size(), 2);
      keys_.push_back(c);
    }
    return c;
  }

  Command next(const Ledger& l) {
    const std::uint64_t dice = pick(100);
    if (!keys_.empty() && dice < 10) {  // a replay, or the same key with another body
      Command c = keys_[pick(keys_.size())];
      if (dice < 2) c.idem.request_hash = hash_of(dice, 3);
      return c;
    }
    const std::string a = account();
    const Account* acct = l.find(a);
    if (acct == nullptr || dice < 12) {
      static const char* kPlans[] = {"free", "starter", "pro", "enterprise"};
      return keyed(CreateAccount{a, kPlans[pick(4)], std::nullopt}, a);
    }
    if (dice < 45) {
      Charge ch;
      ch.account_id = a;
      ch.user_id = "u" + std::to_string(pick(3));
      ch.kind = static_cast<pricing::Kind>(pick(pricing::kKindCount));
      ch.pool = "credits";
      ch.amount = Millicredits::from_mc(static_cast<std::int64_t>(1 + pick(40'000)));
      ch.metadata.file = pick(2) ? "src/app.tsx" : "";
      ch.metadata.extra = {{"team", "web"}};
      return keyed(std::move(ch), a);
    }
    if (dice < 58) {
      Hold h;
      h.account_id = a;
      h.user_id = "u1";
      h.pool = "credits";
      h.amount = Millicredits::from_mc(static_cast<std::int64_t>(1 + pick(20'000)));
      h.ttl_ms = static_cast<std::int64_t>(60'000 + pick(3'000'000));
      return keyed(std::move(h), a);
    }
    std::vector<std::string> open_holds, charge_ids;
    for (const auto& [id, h] : acct->holds) {
      if (h.state == HoldState::kOpen) open_holds.push_back(id);
    }
    for (const auto& [id, c] : acct->charges) charge_ids.push_back(id);
    std::sort(charge_ids.begin(), charge_ids.end());
    if (dice < 68 && !open_holds.empty()) {
      Capture cap;
      cap.account_id = a;
      cap.hold_id = open_holds[pick(open_holds.size())];
      if (pick(2)) cap.amount = Millicredits::from_mc(static_cast<std::int64_t>(pick(25'000)));
      cap.overage_charge = pick(2) == 0;
      return keyed(std::move(cap), a);
    }
    if (dice < 73 && !open_holds.empty()) {
      return keyed(Void{a, open_holds[pick(open_holds.size())]}, a);
    }
    if (dice < 82 && !charge_ids.empty()) {
      std::optional<Millicredits> part;
      if (pick(2)) part = Millicredits::from_mc(static_cast<std::int64_t>(1 + pick(5'000)));
      return keyed(Refund{a, charge_ids[pick(charge_ids.size())], part, "bad output"}, a);
    }
    if (dice < 90) {
      AddGrant g;
      g.account_id = a;
      g.pool = "credits";
      g.source = pick(2) ? GrantSource::kPack : GrantSource::kAdjustment;
      g.credits = credits(static_cast<std::int64_t>(pick(500)) - 50);
      if (pick(2)) g.expires_at_ms = now_ms + static_cast<std::int64_t>(pick(40)) * kMsPerDay;
      g.reason = "support";
      return keyed(std::move(g), a);
    }
    if (dice < 96) {
      static const char* kPlans[] = {"free", "starter", "builder", "pro", "elite"};
      return keyed(ChangePlan{a, kPlans[pick(5)]}, a);
    }
    if (dice < 98) return keyed(CloseAccount{a}, a);
    Command sweep;
    sweep.body = Sweep{};
    return sweep;
  }

  std::mt19937_64 rng_;
  std::uint64_t next_key_ = 1;
  std::vector<Command> keys_;
};

std::string snapshot_of(const Ledger& l) {
  std::string bytes;
  encode_ledger_snapshot(l, bytes);
  return bytes;
}

void expect_same_views(const Ledger& a, const Ledger& b) {
  ASSERT_EQ(a.account_count(), b.account_count());
  for (const auto& [id, acct] : a.accounts()) {
    auto va = a.view(id, a.now_ms());
    auto vb = b.view(id, b.now_ms());
    ASSERT_EQ(va.ok(), vb.ok()) << id;
    if (!va.ok()) continue;
    std::string ra, rb;
    a.render_account(*va, ra);
    b.render_account(*vb, rb);
    EXPECT_EQ(ra, rb) << id;
  }
}

// Applies one batch to both ledgers and requires identical replies and events.
void apply_to_both(Ledger& a, Ledger& b, std::int64_t now_ms, std::vector<Command> batch) {
  std::vector<Command> copy = batch;
  ASSERT_EQ(a.begin_batch(now_ms), b.begin_batch(now_ms));
  std::vector<Event> ea, eb;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    Reply ra = a.apply(batch[i], ea);
    Reply rb = b.apply(copy[i], eb);
    ASSERT_EQ(ra.status, rb.status);
    ASSERT_EQ(ra.body, rb.body);
    ASSERT_EQ(ra.replayed, rb.replayed);
    ASSERT_EQ(ra.logged, rb.logged);
    ASSERT_EQ(ra.code, rb.code);
  }
  ASSERT_EQ(ea, eb);
}

TEST(LedgerSnapshot, RestoredLedgerAnswersEveryLaterCommandByteForByte) {
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(seed);
    Workload w(seed);
    LedgerOptions options;
    options.idempotency_keys_max = 100'000;
    Ledger original(shipped_catalog(), options);
    std::vector<Event> events;
    for (int i = 0; i < 400; ++i) {
      std::vector<Command> batch = w.next_batch(original);
      original.begin_batch(w.now_ms);
      for (auto& c : batch) original.apply(c, events);
    }
    // The workload did reach the interesting states.
    EXPECT_GT(events.size(), 500u);
    EXPECT_GT(original.account_count(), 30u);
    const std::string bytes = snapshot_of(original);
    auto restored = decode_ledger_snapshot(bytes, options);
    ASSERT_TRUE(restored.ok()) << restored.error().message;
    Ledger& copy = **restored;
    copy.check_invariants();
    EXPECT_EQ(copy.now_ms(), original.now_ms());
    EXPECT_EQ(copy.next_seq(), original.next_seq());
    EXPECT_EQ(copy.catalog().source_text, original.catalog().source_text);
    expect_same_views(original, copy);
    // Equal states encode to equal bytes.
    EXPECT_EQ(snapshot_of(copy), bytes);
    // The same future (replays of keys written before the snapshot included), and past
    // the keys' 24 hours.
    for (int i = 0; i < 400; ++i) {
      std::vector<Command> batch = w.next_batch(original);
      apply_to_both(original, copy, w.now_ms, std::move(batch));
      if (HasFatalFailure()) return;
    }
    expect_same_views(original, copy);
    EXPECT_EQ(snapshot_of(copy), snapshot_of(original));
  }
}

TEST(LedgerSnapshot, ReplayOfAKeyWrittenBeforeTheSnapshotAnswersTheStoredReply) {
  Ledger original(shipped_catalog(), small_options(64));
  std::vector<Event> events;
  const std::int64_t t0 = 1'767'225'600'000;
  Command create;
  create.body = CreateAccount{"acct_1", "pro", std::nullopt};
  original.begin_batch(t0);
  original.apply(create, events);
  Command charge = charge_of(credits(12));
  charge.idem = {true, hash_of(9, 1), hash_of(9, 2), "charge-9"};
  Command replay = charge;
  Reply first = original.apply(charge, events);
  ASSERT_EQ(first.status, 201);

  auto copy = decode_ledger_snapshot(snapshot_of(original), small_options(64));
  ASSERT_TRUE(copy.ok());
  (*copy)->begin_batch(t0 + 3'600'000);
  Reply again = (*copy)->apply(replay, events);
  EXPECT_TRUE(again.replayed);
  EXPECT_EQ(again.status, 201);
  EXPECT_EQ(again.body, first.body);
  // 10,000 credits of allowance, 12 spent once.
  auto view = (*copy)->view("acct_1", t0 + 3'600'000);
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->pools[0].available, credits(9'988));
}

TEST(LedgerSnapshot, ForgottenChargesAreKeptSoARestoredLedgerStillAnswers409) {
  Ledger original(shipped_catalog(), small_options(64));
  std::vector<Event> events;
  const std::int64_t t0 = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
  Command create;
  create.body = CreateAccount{"acct_1", "pro", std::nullopt};
  original.begin_batch(t0);
  original.apply(create, events);
  Command charge = charge_of(credits(5));
  Reply charged = original.apply(charge, events);
  ASSERT_EQ(charged.status, 201);
  const std::string charge_id = "c_" + std::to_string(events.back().seq);
  // Two cycles on (March 1): the reset forgets the January charge's record.
  Command touch = charge;
  original.begin_batch(t0 + 59LL * 86'400'000);
  ASSERT_EQ(original.apply(touch, events).status, 201);
  ASSERT_EQ(original.find("acct_1")->forgotten_charges.size(), 1u);
  auto copy = decode_ledger_snapshot(snapshot_of(original), small_options(64));
  ASSERT_TRUE(copy.ok()) << copy.error().message;
  EXPECT_EQ((*copy)->find("acct_1")->forgotten_charges, original.find("acct_1")->forgotten_charges);
  Command refund;
  refund.body = Refund{"acct_1", charge_id, std::nullopt, "late"};
  (*copy)->begin_batch(t0 + 60LL * 86'400'000);
  Reply r = (*copy)->apply(refund, events);
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.code, ErrorCode::kChargeNotRefundable);
}

// Found by an audit: a clean shutdown wrote a snapshot its own start refused ("bad
// account"), since the day's tallies of a pool were held to the limit of one amount.
TEST(LedgerSnapshot, DayTalliesPastOneAmountsLimitAreRestored) {
  Ledger original(shipped_catalog(), small_options(64));
  std::vector<Event> events;
  const std::int64_t t0 = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
  original.begin_batch(t0);
  Command create;
  create.body = CreateAccount{"acct_1", "enterprise", std::nullopt};
  ASSERT_EQ(original.apply(create, events).status, 201);
  const Millicredits most = Millicredits::from_mc(Millicredits::kApiLimitMc);
  for (int i = 0; i < 3; ++i) {
    Command grant;
    grant.body = AddGrant{"acct_1", "credits", GrantSource::kAdjustment, most, std::nullopt, "big"};
    ASSERT_EQ(original.apply(grant, events).status, 201);
  }
  Command charge = charge_of(most);
  ASSERT_EQ(original.apply(charge, events).status, 201);
  Command more = charge_of(Millicredits::from_mc(1));
  ASSERT_EQ(original.apply(more, events).status, 201);
  Hold h;
  h.account_id = "acct_1";
  h.user_id = "u1";
  h.pool = "credits";
  h.amount = most;
  h.ttl_ms = 60'000;
  Command hold;
  hold.body = h;
  ASSERT_EQ(original.apply(hold, events).status, 201);
  Command hold_more = hold;
  ASSERT_EQ(original.apply(hold_more, events).status, 201);
  const PoolState& pool = original.find("acct_1")->pools[0];
  ASSERT_GT(pool.spent_today.mc(), Millicredits::kApiLimitMc);
  ASSERT_GT(pool.held_today.mc(), Millicredits::kApiLimitMc);
  auto copy = decode_ledger_snapshot(snapshot_of(original), small_options(64));
  ASSERT_TRUE(copy.ok()) << copy.error().message;
  (*copy)->check_invariants();
  expect_same_views(original, **copy);
  EXPECT_EQ(snapshot_of(**copy), snapshot_of(original));
}

TEST(LedgerSnapshot, Version1And2SnapshotsAreStillRead) {
  // Version 2 added the forgotten charges at the end of each account, version 3 the rate
  // cards at the end; a ledger without accounts or cards encodes the same in all three
  // but for the version byte and the cards' count (0, one byte) at the end.
  Ledger l(shipped_catalog(), small_options(16));
  std::string bytes = snapshot_of(l);
  ASSERT_EQ(bytes[0], static_cast<char>(kLedgerSnapshotVersion));
  ASSERT_EQ(bytes.back(), '\0');
  bytes.pop_back();
  for (char version : {1, 2}) {
    bytes[0] = version;
    auto r = decode_ledger_snapshot(bytes, small_options(16));
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ((*r)->account_count(), 0u);
    EXPECT_TRUE((*r)->rate_cards().empty());
  }
}

TEST(LedgerSnapshot, RateCardsSurviveARestore) {
  Ledger l(shipped_catalog(), small_options(16));
  std::vector<Event> events;
  l.begin_batch(1'767'225'600'000);
  for (std::int64_t v : {1, 2}) {
    Command c;
    c.body = LoadRateCard{v, "version = " + std::to_string(v) + "\n"};
    ASSERT_EQ(l.apply(c, events).status, 200);
  }
  auto r = decode_ledger_snapshot(snapshot_of(l), small_options(16));
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_NE((*r)->rate_card_text(1), nullptr);
  EXPECT_EQ(*(*r)->rate_card_text(1), "version = 1\n");
  EXPECT_EQ(*(*r)->rate_card_text(2), "version = 2\n");
  EXPECT_EQ((*r)->rate_card_text(3), nullptr);
}

TEST(LedgerSnapshot, UnknownVersionIsRefused) {
  Ledger l(shipped_catalog(), small_options(16));
  std::string bytes = snapshot_of(l);
  bytes[0] = static_cast<char>(kLedgerSnapshotVersion + 1);
  auto r = decode_ledger_snapshot(bytes, small_options(16));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("version"), std::string::npos);
}

TEST(LedgerSnapshot, EveryTruncationIsRefused) {
  Workload w(7);
  LedgerOptions options = small_options(1'000);
  Ledger l(shipped_catalog(), options);
  std::vector<Event> events;
  for (int i = 0; i < 30; ++i) {
    std::vector<Command> batch = w.next_batch(l);
    l.begin_batch(w.now_ms);
    for (auto& c : batch) l.apply(c, events);
  }
  const std::string bytes = snapshot_of(l);
  for (std::size_t n = 0; n < bytes.size(); n += 1 + n / 50) {
    EXPECT_FALSE(decode_ledger_snapshot(std::string_view(bytes).substr(0, n), options).ok()) << n;
  }
  EXPECT_FALSE(decode_ledger_snapshot(bytes + "x", options).ok());
}

TEST(LedgerSnapshot, MoreAccountsThanTheCapacityIsRefused) {
  Ledger l(shipped_catalog(), small_options(16));
  std::vector<Event> events;
  l.begin_batch(1'767'225'600'000);
  for (const char* id : {"a", "b", "c"}) {
    Command c;
    c.body = CreateAccount{id, "free", std::nullopt};
    l.apply(c, events);
  }
  auto r = decode_ledger_snapshot(snapshot_of(l), small_options(16, 2));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("--accounts-max"), std::string::npos);
}

TEST(EventCodec, EveryFieldSurvivesARoundTrip) {
  Event e;
  e.seq = 123'456'789'012ULL;
  e.at_ms = 1'767'225'600'123;
  e.account_id = "acct_1";
  e.user_id = "user_7";
  e.type = EventType::kCapture;
  e.kind = pricing::Kind::kGenerateImage;
  e.pool = "credits";
  e.credits = Millicredits::from_mc(1'234);
  e.available_after = Millicredits::from_mc(-5);
  e.drawn_from = {{"allowance", Millicredits::from_mc(1'000)},
                  {"grant:g_1", Millicredits::from_mc(234)}};
  e.refused_by = "daily_cap";
  e.priced_by = "usage";
  pricing::Usage u;
  u.model = "sonnet";
  u.input_tokens = 1'200;
  u.size = "512x512";
  u.count = 2;
  e.usage = u;
  e.metadata.file = "src/a.tsx";
  e.metadata.intent = "fix";
  e.metadata.extra = {{"k", "v"}};
  e.cache_key = "ck";
  e.idempotency_key = "idem-1";
  e.rate_card_version = -3;
  e.imported = true;
  e.hold_id = "h_1";
  e.charge_id = "c_2";
  e.grant_id = "g_3";
  e.refund_id = "r_4";
  e.object = "hold";
  e.plan = "pro";
  e.previous_plan = "free";
  e.proration_usd_cents = -250;
  e.reason = "why";
  std::string bytes;
  encode_event(e, bytes);
  auto back = decode_event(bytes);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, e);

  Event empty;
  bytes.clear();
  encode_event(empty, bytes);
  back = decode_event(bytes);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, empty);
}

TEST(EventCodec, UnknownVersionTruncationAndTrailingBytesAreRefused) {
  Event e;
  e.account_id = "acct_1";
  e.reason = "x";
  std::string bytes;
  encode_event(e, bytes);
  std::string other = bytes;
  other[0] = static_cast<char>(kEventCodecVersion + 1);
  EXPECT_FALSE(decode_event(other).ok());
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(decode_event(std::string_view(bytes).substr(0, n)).ok()) << n;
  }
  EXPECT_FALSE(decode_event(bytes + std::string(1, '\0')).ok());
}

}  // namespace
}  // namespace credit::ledger
