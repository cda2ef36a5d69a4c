// tests/ledger/ledger_property_test.cc
// Property tests of the ledger (RapidCheck): one per bucket rule, with the expected
// numbers written as plain formulas, and a model-based test that drives random command
// sequences through the ledger and through a reference model (a list of buckets and
// linear scans), comparing every answer and every view.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "ledger/ledger.h"
#include "ledger_harness.h"
#include "time/cycle.h"
#include "time/time.h"

namespace credit::ledger {
namespace {

using testing::at;
using testing::capture;
using testing::charge;
using testing::cr;
using testing::create;
using testing::Driver;
using testing::field;
using testing::grant;
using testing::hold;
using testing::mc;
using testing::refund;

const pricing::Catalog& catalog() {
  static const pricing::Catalog c = testing::default_catalog();
  return c;
}

// ---------------------------------------------------------------------------------
// One property per bucket rule. A starter account (2000 credits) created at
// 2026-04-01T00:00Z: its cycle is [Apr 1, May 1), 30 days.

constexpr std::int64_t kDay = 86'400'000;

RC_GTEST_PROP(BucketRule, AGrantThatExpiresAfterBeingPartlySpentLosesOnlyItsFreePart, ()) {
  const std::int64_t g = *rc::gen::inRange<std::int64_t>(1, 500'000);  // mc
  const std::int64_t s = *rc::gen::inRange<std::int64_t>(0, g + 1'000'000);
  const std::int64_t days = *rc::gen::inRange<std::int64_t>(1, 29);
  Driver d(catalog());
  d.set_now(at("2026-04-01T00:00:00Z"));
  RC_ASSERT(d.run(create("a", "starter")).status == 201);
  RC_ASSERT(d.run(grant("a", GrantSource::kAdjustment, mc(g), d.now + days * kDay)).status == 201);
  RC_ASSERT(d.run(charge("a", mc(s))).status == 201);
  d.set_now(d.now + days * kDay);
  const std::int64_t from_grant = std::min(s, g);
  PoolView v = d.pool("a");
  RC_ASSERT(v.allowance == cr(2000));
  RC_ASSERT(v.extra == mc(from_grant));
  RC_ASSERT(v.used == mc(s));
  RC_ASSERT(v.available == mc(2'000'000 - (s - from_grant)));
  RC_ASSERT(d.run(Sweep{}).logged);
  RC_ASSERT(d.events.back().type == EventType::kExpire);
  RC_ASSERT(d.events.back().credits == mc(g - from_grant));
}

RC_GTEST_PROP(BucketRule, AHoldCarriedAcrossAResetIntoASmallerAllowanceKeepsItsCredits, ()) {
  const std::int64_t h = *rc::gen::inRange<std::int64_t>(1, 10'000'000);
  const std::int64_t c = *rc::gen::inRange<std::int64_t>(0, h + 1);
  Driver d(catalog());
  d.set_now(at("2026-04-01T00:00:00Z"));
  RC_ASSERT(d.run(create("a", "pro")).status == 201);  // 10,000 credits
  RC_ASSERT(d.run(ChangePlan{"a", "starter"}).status == 200);
  d.set_now(at("2026-04-30T23:30:00Z"));
  Reply hr = d.run(hold("a", mc(h), 3'600'000));
  RC_ASSERT(hr.status == 201);
  d.set_now(at("2026-05-01T00:00:00Z"));
  PoolView v = d.pool("a");
  RC_ASSERT(d.account("a").plan == std::string("starter"));
  RC_ASSERT(v.allowance == cr(2000));
  RC_ASSERT(v.held == mc(h));
  RC_ASSERT(v.extra == mc(h));
  RC_ASSERT(v.available == cr(2000));
  RC_ASSERT(d.run(capture("a", field(hr.body, "hold_id"), mc(c))).status == 201);
  v = d.pool("a");
  RC_ASSERT(v.held == cr(0));
  RC_ASSERT(v.used == mc(c));
  RC_ASSERT(v.extra == mc(c));
  RC_ASSERT(v.available == cr(2000));
}

RC_GTEST_PROP(BucketRule, ANegativeAdjustmentTakesOnlyFreeCreditsOrIsRefused, ()) {
  const std::int64_t s = *rc::gen::inRange<std::int64_t>(0, 2'000'001);
  const std::int64_t h = *rc::gen::inRange<std::int64_t>(0, 2'000'001 - s);
  const std::int64_t n = *rc::gen::inRange<std::int64_t>(1, 2'500'000);
  Driver d(catalog());
  d.set_now(at("2026-04-01T00:00:00Z"));
  RC_ASSERT(d.run(create("a", "starter")).status == 201);
  RC_ASSERT(d.run(charge("a", mc(s))).status == 201);
  RC_ASSERT(d.run(hold("a", mc(h))).status == 201);
  const std::int64_t free = 2'000'000 - s - h;
  Reply r = d.run(grant("a", GrantSource::kAdjustment, mc(-n)));
  PoolView v = d.pool("a");
  if (n > free) {
    RC_ASSERT(r.status == 402);
    RC_ASSERT(v.available == mc(free));
  } else {
    RC_ASSERT(r.status == 201);
    RC_ASSERT(v.available == mc(free - n));
    RC_ASSERT(v.extra == mc(-n));
  }
  RC_ASSERT(v.held == mc(h));
  RC_ASSERT(v.used == mc(s));
}

RC_GTEST_PROP(BucketRule, ARefundAfterItsBucketEndedForfeitsThatPart, ()) {
  const std::int64_t g = *rc::gen::inRange<std::int64_t>(1, 500'000);
  const std::int64_t s = *rc::gen::inRange<std::int64_t>(1, g + 1'000'000);
  const std::int64_t r = *rc::gen::inRange<std::int64_t>(1, s + 1);
  Driver d(catalog());
  d.set_now(at("2026-04-01T00:00:00Z"));
  RC_ASSERT(d.run(create("a", "starter")).status == 201);
  RC_ASSERT(d.run(grant("a", GrantSource::kAdjustment, mc(g), d.now + 10 * kDay)).status == 201);
  Reply c = d.run(charge("a", mc(s)));
  RC_ASSERT(c.status == 201);
  d.set_now(d.now + 11 * kDay);
  Reply rr = d.run(refund("a", field(c.body, "charge_id"), mc(r)));
  RC_ASSERT(rr.status == 201);
  const std::int64_t from_allowance = s - std::min(s, g);
  const std::int64_t restored = std::min(r, from_allowance);
  RC_ASSERT(field(rr.body, "forfeited") == format_credits(mc(r - restored)));
  PoolView v = d.pool("a");
  RC_ASSERT(v.used == mc(s - r));
  RC_ASSERT(v.available == mc(2'000'000 - from_allowance + restored));
}

// ---------------------------------------------------------------------------------
// The reference model: one account, the default catalog's single pool, every amount in
// millicredits. Buckets are a list; each operation is a linear scan.

struct MBucket {
  int id = 0;
  int rank = 0;  // allowance 0, pack 2, adjustment 3 (the default catalog has no rollover)
  std::int64_t expires = 0;
  std::int64_t granted = 0;  // the allowance's granted (paid upgrades)
  std::int64_t free = 0;
  bool ended = false;
};
struct MDraw {
  int bucket = 0;
  std::int64_t credits = 0;
};
struct MHold {
  std::string id;
  std::int64_t amount = 0;
  std::vector<MDraw> reserved;
  std::int64_t expires = 0;
  std::int64_t day = 0;
  bool open = true;
  std::int64_t placed = 0;
};
struct MCharge {
  std::string id;
  std::int64_t cost = 0;
  std::int64_t refunded = 0;
  std::vector<MDraw> drawn;
  int serial = 0;
  std::int64_t day = 0;
};

struct Model {
  const pricing::Plan* plan = nullptr;
  std::optional<std::string> pending;
  std::int64_t anchor = 0, k = 0, start = 0, end = 0;
  int serial = 0;
  std::vector<MBucket> buckets;
  int next_id = 1;
  std::vector<MHold> holds;
  std::vector<MCharge> charges;  // forgotten ones are removed
  std::int64_t day = 0, spent_today = 0, held_today = 0;

  std::optional<std::int64_t> cap() const {
    const auto& p = plan->pools[0];
    return p.daily_cap ? std::optional(p.daily_cap->mc()) : std::nullopt;
  }
  MBucket& bucket(int id) {
    for (auto& b : buckets) {
      if (b.id == id) return b;
    }
    RC_FAIL("no bucket");
  }
  MHold* hold(const std::string& id) {
    for (auto& h : holds) {
      if (h.id == id) return &h;
    }
    return nullptr;
  }
  MBucket& allowance() {
    for (auto& b : buckets) {
      if (b.rank == 0 && !b.ended) return b;
    }
    RC_FAIL("no allowance");
  }
  std::int64_t available() const {
    std::int64_t s = 0;
    for (const auto& b : buckets) s += b.ended ? 0 : b.free;
    return s;
  }
  std::int64_t held() const {
    std::int64_t s = 0;
    for (const auto& h : holds) s += h.open ? h.amount : 0;
    return s;
  }
  std::int64_t used() const {
    std::int64_t s = 0;
    for (const auto& c : charges) s += c.serial == serial ? c.cost - c.refunded : 0;
    return s;
  }
  std::int64_t room() const {
    return cap() ? std::max<std::int64_t>(0, *cap() - spent_today - held_today) : INT64_MAX / 4;
  }
  // DESIGN "Daily caps": spent today + held today + cost <= cap. Not room() >= cost: room()
  // is clamped at 0, and today's spend can pass the cap (a capture's overage, a downgrade).
  bool cap_allows(std::int64_t cost) const {
    return !cap() || spent_today + held_today + cost <= *cap();
  }
  // Alive buckets by earliest expiry, then rank, then id.
  std::vector<MBucket*> order() {
    std::vector<MBucket*> o;
    for (auto& b : buckets) {
      if (!b.ended) o.push_back(&b);
    }
    std::sort(o.begin(), o.end(), [](const MBucket* x, const MBucket* y) {
      return std::tie(x->expires, x->rank, x->id) < std::tie(y->expires, y->rank, y->id);
    });
    return o;
  }
  // Takes `amount` of free credits in spending order.
  std::vector<MDraw> take(std::int64_t amount) {
    std::vector<MDraw> drawn;
    for (MBucket* b : order()) {
      std::int64_t t = std::min(b->free, amount);
      if (t == 0) continue;
      b->free -= t;
      amount -= t;
      drawn.push_back({b->id, t});
    }
    RC_ASSERT(amount == 0);
    return drawn;
  }
  void give_back(int bucket, std::int64_t credits) {
    MBucket& b = this->bucket(bucket);
    if (!b.ended) b.free += credits;
  }
  void new_allowance() {
    std::int64_t a = plan->pools[0].allowance.mc();
    buckets.push_back({next_id++, 0, end, a, a, false});
  }
  void start_cycle(std::int64_t index) {
    CycleBounds c = cycle_by_index(anchor, index);
    k = index;
    start = c.start_ms;
    end = c.end_ms;
    ++serial;
    new_allowance();
  }

  void create(const pricing::Plan* p, std::int64_t signup, std::int64_t now) {
    plan = p;
    anchor = p->cycle_anchor == pricing::CycleAnchor::kSignup ? signup : now;
    start_cycle(cycle_at(anchor, now).index);
    day = day_start_ms(now);
  }

  void advance(std::int64_t now) {
    for (;;) {
      std::int64_t t = end;
      for (const auto& h : holds) {
        if (h.open) t = std::min(t, h.expires);
      }
      for (const auto& b : buckets) {
        if (!b.ended && b.rank != 0) t = std::min(t, b.expires);
      }
      if (t > now) break;
      for (auto& h : holds) {
        if (!h.open || h.expires != t) continue;
        for (const auto& r : h.reserved) give_back(r.bucket, r.credits);
        if (h.day == day) held_today -= h.amount;
        h.open = false;
      }
      for (auto& b : buckets) {
        if (!b.ended && b.rank != 0 && b.expires == t) b.ended = true;
      }
      if (t != end) continue;
      allowance().ended = true;
      if (pending) plan = catalog().find(*pending);
      pending.reset();
      start_cycle(k + 1);
      // Closed holds placed before the previous cycle and charges of cycles before the
      // previous one are forgotten.
      std::int64_t keep_from = cycle_by_index(anchor, k - 1).start_ms;
      std::erase_if(holds, [&](const MHold& h) { return !h.open && h.placed < keep_from; });
      std::erase_if(charges, [&](const MCharge& c) { return c.serial < serial - 1; });
    }
    if (day_start_ms(now) != day) {
      day = day_start_ms(now);
      spent_today = 0;
      held_today = 0;
    }
  }
};

// One random operation: what it is and three numbers the interpretation draws from.
using Op = std::tuple<std::uint8_t, std::uint32_t, std::uint32_t, std::uint32_t>;

// A random amount: often small (free plan scale), sometimes up to the plan's allowance.
std::int64_t amount_of(const Model& m, std::uint32_t x, std::uint32_t y) {
  std::int64_t scale = x % 2 == 0 ? 30'000 : m.plan->pools[0].allowance.mc() + 50'000;
  std::int64_t a = static_cast<std::int64_t>(y) % scale;
  return x % 3 == 0 ? a - a % 1000 : a;  // whole credits a third of the time
}

void expect_same_view(const Driver& d, Model& m) {
  AccountView v = d.account("a");
  RC_ASSERT(v.plan == m.plan->id);
  RC_ASSERT(v.pending_plan == m.pending);
  RC_ASSERT(v.cycle_start_ms == m.start);
  RC_ASSERT(v.cycle_end_ms == m.end);
  const PoolView& p = v.pools.at(0);
  RC_ASSERT(p.allowance + p.extra == p.used + p.held + p.available);
  RC_ASSERT(p.available >= mc(0));
  RC_ASSERT(p.available == mc(m.available()));
  RC_ASSERT(p.held == mc(m.held()));
  RC_ASSERT(p.used == mc(m.used()));
  RC_ASSERT(p.allowance == mc(m.allowance().granted));
  RC_ASSERT(p.used_today == mc(m.spent_today));
  RC_ASSERT(p.available_now == mc(std::min(m.available(), m.room())));
}

RC_GTEST_PROP(LedgerModel, RandomCommandSequencesAgreeWithTheReferenceModel, ()) {
  const pricing::Catalog& cat = catalog();
  const std::size_t plan_index = *rc::gen::inRange<std::size_t>(0, cat.plans.size());
  const std::int64_t start_offset = *rc::gen::inRange<std::int64_t>(0, 800 * kDay);
  const std::int64_t signup_back = *rc::gen::inRange<std::int64_t>(0, 60 * kDay);
  const auto ops = *rc::gen::arbitrary<std::vector<Op>>();

  Driver d(cat);
  Model m;
  d.set_now(at("2026-01-31T10:00:00Z") + start_offset);
  const pricing::Plan* plan = &cat.plans[plan_index];
  RC_ASSERT(d.run(create("a", plan->id, d.now - signup_back)).status == 201);
  m.create(plan, d.now - signup_back, d.now);
  expect_same_view(d, m);

  for (const auto& [kind, x, y, z] : ops) {
    switch (kind % 12) {
      case 0:
      case 1: {  // clock step
        std::int64_t step = 0;
        switch (x % 6) {
          case 0:
            step = y % 7'200'000;
            break;
          case 1:
            step = static_cast<std::int64_t>(y) % (3 * kDay);
            break;
          case 2:
            step = static_cast<std::int64_t>(y) % (40 * kDay);
            break;
          case 3:
            step = m.end - d.now;
            break;
          case 4:
            step = day_start_ms(d.now) + kDay - d.now;
            break;
          case 5:
            for (const auto& h : m.holds) {
              if (h.open) step = h.expires - d.now;
            }
            break;
        }
        d.set_now(d.now + step);
        if (z % 4 == 0) {
          d.run(Sweep{});
          m.advance(d.now);
        }
        break;
      }
      case 2:
      case 3: {  // charge
        std::int64_t amount = amount_of(m, x, y);
        Reply r = d.run(charge("a", mc(amount)));
        m.advance(d.now);
        if (m.available() < amount || !m.cap_allows(amount)) {
          RC_ASSERT(r.status == 402);
          RC_ASSERT(field(r.body, "refused_by") ==
                    std::string(m.available() < amount ? "pool" : "daily_cap"));
        } else {
          RC_ASSERT(r.status == 201);
          m.charges.push_back(
              {field(r.body, "charge_id"), amount, 0, m.take(amount), m.serial, m.day});
          m.spent_today += amount;
          RC_ASSERT(field(r.body, "cost") == format_credits(mc(amount)));
        }
        break;
      }
      case 4: {  // hold
        std::int64_t amount = amount_of(m, x, y);
        std::int64_t ttl = 1 + static_cast<std::int64_t>(z) % 3'600'000;
        Reply r = d.run(hold("a", mc(amount), ttl));
        m.advance(d.now);
        if (m.available() < amount || !m.cap_allows(amount)) {
          RC_ASSERT(r.status == 402);
        } else {
          RC_ASSERT(r.status == 201);
          m.holds.push_back(
              {field(r.body, "hold_id"), amount, m.take(amount), d.now + ttl, m.day, true, d.now});
          m.held_today += amount;
        }
        break;
      }
      case 5:
      case 6: {  // capture
        if (m.holds.empty()) break;
        const std::string id = m.holds[y % m.holds.size()].id;
        const std::int64_t held = m.holds[y % m.holds.size()].amount;
        std::optional<std::int64_t> amount;
        if (x % 3 == 1) amount = static_cast<std::int64_t>(z) % (held + 1);
        if (x % 3 == 2) amount = held + static_cast<std::int64_t>(z) % 20'000;
        bool overage = x % 2 == 0;
        Reply r =
            d.run(capture("a", id, amount ? std::optional(mc(*amount)) : std::nullopt, overage));
        m.advance(d.now);
        MHold* found = m.hold(id);
        if (found == nullptr) {
          RC_ASSERT(r.status == 404);
          break;
        }
        MHold& h = *found;
        std::int64_t c = amount.value_or(h.amount);
        std::int64_t over = std::max<std::int64_t>(0, c - h.amount);
        if (!h.open) {
          RC_ASSERT(r.status == 409);
        } else if (over > 0 && !overage) {
          RC_ASSERT(r.status == 400);
        } else if (over > m.available()) {
          RC_ASSERT(r.status == 402);
        } else {
          RC_ASSERT(r.status == 201);
          std::int64_t left = c;
          std::vector<MDraw> drawn;
          for (const auto& res : h.reserved) {
            std::int64_t t = std::min(res.credits, left);
            m.give_back(res.bucket, res.credits - t);
            left -= t;
            if (t > 0) drawn.push_back({res.bucket, t});
          }
          for (const auto& more : m.take(left)) drawn.push_back(more);
          if (h.day == m.day) {
            m.held_today -= h.amount;
            m.spent_today += c;
          }
          h.open = false;
          m.charges.push_back({field(r.body, "charge_id"), c, 0, drawn, m.serial, h.day});
          RC_ASSERT(field(r.body, "cost") == format_credits(mc(c)));
        }
        break;
      }
      case 7: {  // void
        if (m.holds.empty()) break;
        const std::string id = m.holds[y % m.holds.size()].id;
        Reply r = d.run(Void{"a", id});
        m.advance(d.now);
        MHold* found = m.hold(id);
        if (found == nullptr) {
          RC_ASSERT(r.status == 404);
          break;
        }
        MHold& h = *found;
        if (!h.open) {
          RC_ASSERT(r.status == 409);
        } else {
          RC_ASSERT(r.status == 200);
          for (const auto& res : h.reserved) m.give_back(res.bucket, res.credits);
          if (h.day == m.day) m.held_today -= h.amount;
          h.open = false;
        }
        break;
      }
      case 8: {  // refund
        if (m.charges.empty()) break;
        MCharge& ch = m.charges[y % m.charges.size()];
        std::optional<std::int64_t> want;
        if (x % 2 == 0) want = static_cast<std::int64_t>(z) % (ch.cost + 2'000);
        Reply r = d.run(refund("a", ch.id, want ? std::optional(mc(*want)) : std::nullopt));
        std::string id = ch.id;
        m.advance(d.now);
        auto it = std::find_if(m.charges.begin(), m.charges.end(),
                               [&](const MCharge& c) { return c.id == id; });
        if (it == m.charges.end()) {
          RC_ASSERT(r.status == 404);
          break;
        }
        std::int64_t unrefunded = it->cost - it->refunded;
        std::int64_t w = want.value_or(unrefunded);
        if (it->serial != m.serial || unrefunded == 0 || w > unrefunded) {
          RC_ASSERT(r.status == 409);
        } else {
          RC_ASSERT(r.status == 201);
          std::int64_t skip = it->refunded, left = w;
          for (auto d_it = it->drawn.rbegin(); d_it != it->drawn.rend() && left > 0; ++d_it) {
            std::int64_t room = d_it->credits - std::min(d_it->credits, skip);
            skip -= d_it->credits - room;
            std::int64_t give = std::min(room, left);
            left -= give;
            m.give_back(d_it->bucket, give);
          }
          it->refunded += w;
          if (it->day == m.day) m.spent_today -= std::min(m.spent_today, w);
        }
        break;
      }
      case 9: {  // pack or adjustment
        std::int64_t credits = amount_of(m, x, y);
        bool pack = z % 3 == 0;
        bool negative = !pack && z % 3 == 1;
        std::optional<std::int64_t> expires;
        if (!pack && z % 2 == 0) expires = d.now + 1 + static_cast<std::int64_t>(y) % (50 * kDay);
        if (negative) credits = -credits;
        Reply r = d.run(
            grant("a", pack ? GrantSource::kPack : GrantSource::kAdjustment, mc(credits), expires));
        m.advance(d.now);
        if (pack && !m.plan->packs_allowed) {
          RC_ASSERT(r.status == 403);
        } else if (negative && m.available() < -credits) {
          RC_ASSERT(r.status == 402);
        } else if (negative) {
          RC_ASSERT(r.status == 201);
          m.take(-credits);
          ++m.next_id;
        } else {
          RC_ASSERT(r.status == 201);
          std::int64_t e =
              pack ? d.now + m.plan->pack_expiry_days * kDay : expires.value_or(kNeverMs);
          m.buckets.push_back({m.next_id++, pack ? 2 : 3, e, credits, credits, false});
        }
        break;
      }
      case 10:
      case 11: {  // plan change
        const pricing::Plan* next = &cat.plans[x % cat.plans.size()];
        Reply r = d.run(ChangePlan{"a", next->id});
        m.advance(d.now);
        RC_ASSERT(r.status == 200);
        if (next->id == m.plan->id) {
          m.pending.reset();
        } else if (next->price_usd_cents > m.plan->price_usd_cents &&
                   m.plan->price_usd_cents == 0) {
          m.allowance().ended = true;
          m.plan = next;
          m.pending.reset();
          m.anchor = d.now;
          m.start_cycle(0);
        } else if (next->price_usd_cents > m.plan->price_usd_cents) {
          MBucket& a = m.allowance();
          std::int64_t g = std::max(next->pools[0].allowance.mc(), a.granted - a.free);
          a.free += g - a.granted;
          a.granted = g;
          m.plan = next;
          m.pending.reset();
        } else {
          m.pending = next->id;
        }
        break;
      }
    }
    m.advance(d.now);
    expect_same_view(d, m);
  }
}

}  // namespace
}  // namespace credit::ledger
