// tests/analytics/retention_test.cc
// Rollups::drop_days against a restart: rollups that took every event and then forgot the
// days the event log deleted answer every read exactly as rollups built from the days left
// (what a start rebuilds), whichever days go (a prefix by age, any set by the byte budget).
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "analytics/rollup.h"
#include "live_test_support.h"
#include "time/time.h"

namespace credit::analytics {
namespace {

using ledger::Event;
using ledger::EventType;
using test_support::at;
using test_support::cr;

const char* const kFiles[] = {"src/A.jsx", "src/B.jsx", ""};
const char* const kSites[] = {"page:home", "page:cart", ""};

// Eight days of two accounts: agent turns with files, integration calls with cache keys and
// hits, refunds of charges of the same and of earlier days (live and imported), holds (listed,
// adding nothing), cycle starts off the hour, imported charges with keys. In time order.
std::vector<Event> history() {
  std::vector<Event> out;
  std::uint64_t seq = 1;
  std::vector<Event> charges;
  const std::int64_t day0 = at("2026-03-01T00:00:00Z");
  for (int day = 0; day < 8; ++day) {
    for (const char* account : {"a", "b"}) {
      for (int i = 0; i < 6; ++i) {
        Event e;
        e.seq = seq++;
        e.account_id = account;
        e.at_ms = day0 + day * kMsPerDay + (3 + 3 * i) * kMsPerHour + 7 * 60'000 * i;
        e.user_id = i % 2 == 0 ? "dana" : "lee";
        e.pool = "credits";
        e.credits = Millicredits::from_mc(cr(1 + (day * 7 + i) % 5));
        if (i == 1 && day % 3 == 1) {
          // A cycle starting off the hour (a reset) splits its hour.
          e.type = EventType::kReset;
          e.credits = Millicredits::from_mc(0);
          e.at_ms += 90'000;
        } else if (i == 2 && day % 2 == 0) {
          e.type = EventType::kHold;  // listed; adds nothing without a cache key
          e.kind = pricing::Kind::kAgentPrompt;
        } else if (i == 4 && !charges.empty()) {
          // A refund of one of the account's last charges: of this day or of one to three
          // days before.
          const std::size_t back = static_cast<std::size_t>(day * 5 + i) % 12;
          const Event* c = nullptr;
          std::size_t seen = 0;
          for (auto it = charges.rbegin(); it != charges.rend() && c == nullptr; ++it) {
            if (it->account_id == e.account_id && seen++ == back) c = &*it;
          }
          if (c == nullptr) continue;
          e.type = EventType::kRefund;
          e.kind = c->kind;
          e.user_id = c->user_id;
          e.charge_id = c->charge_id;
          e.credits = Millicredits::from_mc(cr(1));
        } else if (i == 5) {
          e.type = EventType::kCacheHit;
          e.kind = pricing::Kind::kInvokeLlm;
          e.metadata.call_site = kSites[day % 3];
        } else {
          e.type = EventType::kCharge;
          e.kind = i == 3 ? pricing::Kind::kInvokeLlm : pricing::Kind::kAgentPrompt;
          e.metadata.file = kFiles[(day + i) % 3];
          e.metadata.feature = day % 2 == 0 ? "edit" : "";
          e.metadata.call_site = kSites[(day + i) % 3];
          if (i == 3) e.cache_key = "ck" + std::to_string(day);
          e.charge_id = "c_" + std::to_string(e.seq);
          charges.push_back(e);
        }
        out.push_back(e);
      }
    }
    // An imported charge with a key and an imported refund of it the next day.
    Event im;
    im.seq = seq++;
    im.account_id = "a";
    im.imported = true;
    im.at_ms = day0 + day * kMsPerDay + 20 * kMsPerHour;
    im.type = EventType::kCharge;
    im.kind = pricing::Kind::kAgentPrompt;
    im.user_id = "ext";
    im.pool = "credits";
    im.credits = Millicredits::from_mc(cr(2));
    im.metadata.file = "src/I.jsx";
    im.charge_id = "x-" + std::to_string(day);
    im.idempotency_key = "im-" + std::to_string(day);
    out.push_back(im);
    if (day > 0) {
      Event r = im;
      r.seq = seq++;
      r.type = EventType::kRefund;
      r.metadata = {};
      r.charge_id = "x-" + std::to_string(day - 1);
      r.idempotency_key = "imr-" + std::to_string(day);
      r.credits = Millicredits::from_mc(cr(1));
      out.push_back(r);
    }
  }
  return out;
}

std::string describe(const Rollups& r, const char* account) {
  std::string s;
  const TimeRange all{at("2026-02-01T00:00:00Z"), at("2026-04-01T00:00:00Z")};
  std::vector<TimeRange> ranges = {all};
  for (int d = 0; d < 8; ++d) {
    const std::int64_t day = at("2026-03-01T00:00:00Z") + d * kMsPerDay;
    ranges.push_back({day, day + kMsPerDay});
    ranges.push_back({day + 6 * kMsPerHour, day + 7 * kMsPerHour});
  }
  for (const TimeRange& range : ranges) {
    s += "range " + std::to_string(range.from_ms) + "\n";
    for (GroupBy g : {GroupBy::kKind, GroupBy::kUser, GroupBy::kFile, GroupBy::kFeature,
                      GroupBy::kModel, GroupBy::kCallSite, GroupBy::kDay, GroupBy::kWeek}) {
      const UsageResult u = r.usage(account, "credits", g, range);
      s += " usage " + std::to_string(static_cast<int>(g)) + " " + std::to_string(u.total_mc) +
           "/" + std::to_string(u.count) + ":";
      for (const UsageRow& row : u.rows) {
        s += " [" + row.key + " " + std::to_string(row.credits_mc) + "/" +
             std::to_string(row.count) + "]";
      }
      s += "\n";
    }
    for (bool by_credits : {false, true}) {
      s += " hot:";
      for (const HotFileRow& h : r.hot_files(account, "credits", range, by_credits, 10)) {
        s += " [" + h.file + " " + std::to_string(h.turns) + " " + std::to_string(h.credits_mc) +
             "]";
      }
      s += "\n";
    }
    const CacheStats c = r.cache_stats(account, "credits", range);
    s += " cache " + std::to_string(c.total.hits) + "/" + std::to_string(c.total.misses) + "/" +
         std::to_string(c.total.saved_mc) + ":";
    for (const CacheSiteRow& row : c.by_call_site) {
      s += " [" + row.call_site + " " + std::to_string(row.tally.hits) + "/" +
           std::to_string(row.tally.misses) + "/" + std::to_string(row.tally.saved_mc) + "]";
    }
    s += "\n";
  }
  s += "burn:";
  for (std::int64_t mc :
       r.daily_burn(account, "credits", at("2026-02-27T00:00:00Z"), at("2026-03-10T00:00:00Z"))) {
    s += " " + std::to_string(mc);
  }
  const BurnWindow w =
      r.burn_window(account, "credits", at("2026-03-08T00:00:00Z"), at("2026-03-01T00:00:00Z"), 7);
  s += "\nwindow " + std::to_string(w.today_mc) + " " + std::to_string(w.window_sum_mc);
  const auto first = r.first_event_ms(account);
  s += "\nfirst " + (first ? format_rfc3339(*first) : std::string("none"));
  s += "\nkeys:";
  for (int d = 0; d < 8; ++d) {
    for (const std::string k : {"im-", "imr-"}) {
      if (r.imported_key_seen(account, k + std::to_string(d))) s += " " + k + std::to_string(d);
    }
  }
  return s + "\n";
}

void expect_drop_is_a_rebuild(const std::vector<int>& deleted_days) {
  const std::vector<Event> events = history();
  std::vector<std::int64_t> days;
  for (int d : deleted_days) days.push_back(at("2026-03-01T00:00:00Z") + d * kMsPerDay);
  const std::set<std::int64_t> gone(days.begin(), days.end());
  Rollups dropped;
  Rollups rebuilt;
  for (const Event& e : events) {
    dropped.add(e);
    if (!gone.count(day_start_ms(e.at_ms))) rebuilt.add(e);
  }
  dropped.drop_days(days);
  for (const char* account : {"a", "b"}) {
    EXPECT_EQ(describe(dropped, account), describe(rebuilt, account)) << account;
  }
}

TEST(RollupsRetention, DroppingTheOldestDaysAnswersAsARebuildFromTheDaysLeft) {
  // The scenario has what must move: refunds kept whose charge's day goes.
  const std::vector<Event> events = history();
  Rollups all;
  for (const Event& e : events) all.add(e);
  Rollups without_first;
  for (const Event& e : events) {
    if (e.at_ms >= at("2026-03-02T00:00:00Z")) without_first.add(e);
  }
  ASSERT_NE(describe(all, "a"), describe(without_first, "a"));
  expect_drop_is_a_rebuild({0});
  expect_drop_is_a_rebuild({0, 1});
  expect_drop_is_a_rebuild({0, 1, 2, 3, 4, 5});
}

TEST(RollupsRetention, DroppingDaysOneAtATimeAnswersAsARebuild) {
  const std::vector<Event> events = history();
  Rollups dropped;
  for (const Event& e : events) dropped.add(e);
  for (int last = 0; last < 7; ++last) {
    dropped.drop_days({at("2026-03-01T00:00:00Z") + last * kMsPerDay});
    Rollups rebuilt;
    for (const Event& e : events) {
      if (e.at_ms >= at("2026-03-01T00:00:00Z") + (last + 1) * kMsPerDay) rebuilt.add(e);
    }
    for (const char* account : {"a", "b"}) {
      EXPECT_EQ(describe(dropped, account), describe(rebuilt, account)) << last << account;
    }
  }
}

TEST(RollupsRetention, DroppingAnySetOfDaysAnswersAsARebuild) {
  // The byte budget can skip a day the log keeps (the one being written).
  expect_drop_is_a_rebuild({1});
  expect_drop_is_a_rebuild({0, 2, 4});
  expect_drop_is_a_rebuild({3, 5, 6});
  expect_drop_is_a_rebuild({0, 1, 2, 3, 4, 5, 6, 7});
}

TEST(RollupsRetention, AnAccountWithEveryDayDroppedHasNoFirstEventAndCountsNothing) {
  Rollups r;
  Event c;
  c.account_id = "a";
  c.at_ms = at("2026-03-01T10:00:00Z");
  c.type = EventType::kCharge;
  c.kind = pricing::Kind::kAgentPrompt;
  c.pool = "credits";
  c.credits = Millicredits::from_mc(cr(3));
  c.metadata.file = "x.js";
  c.charge_id = "c_1";
  r.add(c);
  ASSERT_TRUE(r.first_event_ms("a").has_value());
  r.drop_days({at("2026-03-01T00:00:00Z")});
  EXPECT_FALSE(r.first_event_ms("a").has_value());
  const TimeRange all{at("2026-03-01T00:00:00Z"), at("2026-04-01T00:00:00Z")};
  EXPECT_EQ(r.usage("a", "credits", GroupBy::kDay, all).total_mc, 0);
  EXPECT_TRUE(r.hot_files("a", "credits", all, false, 10).empty());
  // A refund of the forgotten charge is booked under its own (empty) metadata.
  Event refund = c;
  refund.type = EventType::kRefund;
  refund.at_ms = at("2026-03-03T10:00:00Z");
  refund.metadata = {};
  refund.credits = Millicredits::from_mc(cr(1));
  r.add(refund);
  const UsageResult by_file = r.usage("a", "credits", GroupBy::kFile, all);
  ASSERT_EQ(by_file.rows.size(), 1u);
  EXPECT_EQ(by_file.rows[0].key, "");
  EXPECT_EQ(by_file.rows[0].credits_mc, -cr(1));
}

}  // namespace
}  // namespace credit::analytics
