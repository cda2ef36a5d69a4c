// src/sim/simulate.cc
// The simulator's profiles, the per-day generator and the truth's JSON (see simulate.h).
#include "sim/simulate.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include "analytics/replay.h"
#include "base/assert.h"
#include "base/json_writer.h"
#include "sim/prng.h"
#include "time/time.h"

namespace credit::sim {

using ledger::Event;
using pricing::Kind;
using pricing::Usage;

const std::vector<Profile>& profiles() {
  // name, shares (agent, integrations, discuss, backend), weekday work, loops,
  // unscoped (heavy user, others), small edits, no snapshot, page loads (min, max,
  // keys), outlier factor, balanced.
  static const std::vector<Profile> kProfiles = {
      {"clean", 700, 210, 80, 10, 120, 0, 0, 0, 0, 0, 0, 0, 0, 0, true},
      {"typical", 680, 210, 90, 20, 120, 150, 150, 30, 30, 40, 2, 5, 1, 0, false},
      {"llm-on-page-load", 680, 210, 90, 20, 120, 100, 100, 30, 20, 30, 40, 80, 2, 0, false},
      {"regression-heavy", 680, 210, 90, 20, 120, 700, 100, 30, 20, 30, 0, 0, 0, 0, false},
      {"unscoped", 680, 210, 90, 20, 120, 100, 700, 200, 30, 30, 0, 0, 0, 0, false},
      {"discuss-heavy", 450, 200, 320, 30, 120, 100, 100, 30, 20, 30, 0, 0, 0, 0, false},
      {"outlier-user", 680, 210, 90, 20, 120, 100, 100, 30, 20, 30, 0, 0, 0, 8, false},
  };
  return kProfiles;
}

// The default rate card's prices (config/rate_card.toml, version 1; tests/sim holds them
// to that file): changing them changes every profile's volume.
constexpr std::string_view kWorkPricesToml = R"(version = 1
[kinds."agent_prompt"]
pool = "work"
base_mc = 500
input_mc_per_1k = 300
output_mc_per_1k = 1500
per_file_read_mc = 200
per_line_emitted_mc = 10
per_line_changed_mc = 20
[kinds."discuss_turn"]
pool = "work"
base_mc = 300
input_mc_per_1k = 300
output_mc_per_1k = 1500
[kinds."integration.invoke_llm"]
pool = "work"
base_mc = 3000
input_mc_per_1k = 1000
output_mc_per_1k = 4000
[kinds."integration.generate_image"]
pool = "work"
[kinds."integration.generate_image".sizes."512x512"]
per_image_mc = 5000
[kinds."integration.generate_image".sizes."1024x1024"]
per_image_mc = 8000
[kinds."integration.send_email"]
pool = "work"
per_email_mc = 1000
[kinds."backend_function"]
pool = "work"
free_ms = 10000
per_second_mc = 100
per_1k_records_mc = 500
[models."default"]
multiplier_milli = 1000
[models."gpt-4o-mini"]
multiplier_milli = 300
[models."gpt-4o"]
multiplier_milli = 1000
)";

const pricing::RateCard& work_prices() {
  static const pricing::RateCard kCard = [] {
    auto card = pricing::RateCard::parse(kWorkPricesToml, "simulator work prices");
    CREDIT_ASSERT(card.ok());
    return std::move(*card);
  }();
  return kCard;
}

const Profile* find_profile(std::string_view name) {
  for (const auto& p : profiles()) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

namespace {

struct FileInfo {
  std::string_view path;
  std::string_view feature;
};

constexpr std::array<FileInfo, 24> kFiles = {{
    {"src/pages/Home.jsx", "home"},
    {"src/pages/Dashboard.jsx", "dashboard"},
    {"src/components/ProductCard.jsx", "catalog"},
    {"src/pages/Orders.jsx", "orders"},
    {"src/api/orders.js", "orders"},
    {"src/pages/Settings.jsx", "settings"},
    {"src/components/Header.jsx", "layout"},
    {"src/pages/Profile.jsx", "profile"},
    {"src/pages/Product.jsx", "catalog"},
    {"src/components/SearchBar.jsx", "search"},
    {"src/pages/Pricing.jsx", "pricing"},
    {"src/components/OrderTable.jsx", "orders"},
    {"src/lib/auth.js", "auth"},
    {"src/pages/Login.jsx", "auth"},
    {"src/components/Chart.jsx", "dashboard"},
    {"src/api/products.js", "catalog"},
    {"src/components/Modal.jsx", "layout"},
    {"src/components/Avatar.jsx", "profile"},
    {"src/api/users.js", "auth"},
    {"src/lib/format.js", "layout"},
    {"src/components/Footer.jsx", "layout"},
    {"functions/syncOrders.ts", "orders"},
    {"functions/generateReport.ts", "reports"},
    {"functions/sendWelcome.ts", "onboarding"},
}};

// Only planted regression loops touch these files.
constexpr std::array<FileInfo, 4> kLoopFiles = {{
    {"src/pages/Checkout.jsx", "checkout"},
    {"src/components/CartDrawer.jsx", "checkout"},
    {"src/pages/Onboarding.jsx", "onboarding"},
    {"src/api/paymentWebhook.js", "payments"},
}};

constexpr std::array<std::string_view, 8> kUserNames = {"dana", "lee",  "sam", "kim",
                                                        "ari",  "noor", "jo",  "max"};
constexpr std::string_view kAppUser = "app";
constexpr std::int64_t kWeekendPermille = 250;
// Planted turns' work (work_prices()): a loop's turns at least 10 credits' worth each, so
// that 3 of them reach the audit's 30 credits under the default card; a small edit 3.
constexpr std::int64_t kLoopTurnWorkMinMc = 10'000;
constexpr std::int64_t kSmallEditWorkMinMc = 3'000;
// The audit's definitions (DESIGN.md section 2), which the truth applies to the credits of
// the card in use: a loop costs at least 30 credits, a small edit at least 3, a discuss
// share above 15 % is high. The audit counts no charge of 0 credits.
constexpr Millicredits kLoopCreditsMin = Millicredits::from_mc(30'000);
constexpr Millicredits kSmallEditCreditsMin = Millicredits::from_mc(3'000);
constexpr std::int64_t kDiscussHeavyPermilleOver = 150;
constexpr std::int64_t kEscalationStepsMax = 40;
// A balanced day (run_balanced). With agent credits A, integrations in [0.25 A, 0.35 A],
// discuss in [0.075 A, 0.2 A] and backend in [0, 0.03 A] give shares of agent 63-76 %,
// integrations 16-25 %, discuss 5.1-13.8 % and backend at most 2.2 %: inside the audit's
// typical bands (60-80, 15-30, 5-15, 0-10 %) on every day, so on every run of days too.
// Each window must be wider than what fills it: the integrations' than an email (drawn
// instead of a dearer call), the discuss window than the dearest discuss turn. A balanced
// day takes agent turns until A is that large too (balanced_agent_min): 16.8 credits on
// the default card (2.1 a discuss turn, 1 an email), below a quiet weekend's agent work
// (~18 credits), so its days are as the work gives them; 10 on the two-pools card (1 a
// turn), where a quiet weekend's turns are fewer.
constexpr std::int64_t kBalancedIntegrationPermilleMin = 250;
constexpr std::int64_t kBalancedIntegrationPermilleMax = 350;
constexpr std::int64_t kBalancedDiscussPermilleMin = 75;
constexpr std::int64_t kBalancedDiscussPermilleMax = 200;
constexpr std::int64_t kBalancedBackendPermilleMax = 30;
// Background agent turns of a balanced team read at least this many input tokens: their
// costs then lie within a factor 2.9 of each other (1.93-5.55 credits on the default
// card), so builders with as many turns never differ by 3x, the audit's outlier factor.
constexpr std::int64_t kBalancedInputTokensMin = 3000;
// A discuss turn's usage.
constexpr std::int64_t kDiscussInputTokensMin = 2000, kDiscussInputTokensMax = 4000;
constexpr std::int64_t kDiscussOutputTokensMin = 200, kDiscussOutputTokensMax = 400;

std::string hex64(std::uint64_t v) {
  return fmt::format("{:016x}", v);
}

// Sets `out` to hex64(v), reusing its buffer.
void assign_hex64(std::string& out, std::uint64_t v) {
  constexpr std::string_view kDigits = "0123456789abcdef";
  out.resize(16);
  for (std::size_t i = 16; i-- > 0; v >>= 4) out[i] = kDigits[v & 15];
}

// Appends `v` (>= 0) in decimal, zero-padded to `width` digits (fmt's "{:0N}").
void append_decimal(std::string& out, std::int64_t v, std::size_t width = 0) {
  std::array<char, 20> digits;
  const char* end = std::to_chars(digits.data(), digits.data() + digits.size(), v).ptr;
  const auto n = static_cast<std::size_t>(end - digits.data());
  if (n < width) out.append(width - n, '0');
  out.append(digits.data(), n);
}

struct AccountState {
  std::string id;
  // "sim-<profile>-<seed>-<yyyymmdd>-<account>-": the idempotency keys' start, unique per
  // (profile, seed, start), so that periods simulated with other flags import into one
  // account (an import refuses a key the account already has).
  std::string key_prefix;
  std::vector<std::string> users;
  std::vector<std::int64_t> weights;
  std::vector<Millicredits> builder_spent;  // balanced profiles: each builder's turns so far
  // The credits of the events, for the truth: the whole burn and discuss's part of it,
  // and by pool (the pool names point into the rate card).
  Millicredits total, discuss;
  struct PoolTally {
    std::string_view pool;
    Millicredits period, day, day_max;
  };
  std::vector<PoolTally> pools;
  std::vector<std::string> page_load_keys;
  std::int64_t loops = 0;
  std::int64_t snapshots = 0;
  std::int64_t events = 0;
  AccountTruth truth;
  std::map<std::string, std::int64_t> unscoped_user, unscoped_file;
  PlantedRepeats page_loads;
  std::set<std::string> page_load_keys_used;
  // Per user, what the audit's outlier rule reads (analytics::find_outliers): agent turns
  // and credits of the charges that cost something, and whether the user is a builder.
  struct UserTally {
    std::int64_t agent_turns = 0;
    Millicredits credits;
    bool builder = false;
  };
  std::map<std::string, UserTally, std::less<>> user_tallies;
  std::int64_t agent_turns = 0;
};

// One day's events. The Event objects (and their strings' buffers) are kept from day to
// day and overwritten: building, moving and freeing a fresh Event per event was a fifth
// of the simulator's time.
class DayEvents {
 public:
  // A slot for the next event, reset to a default Event (strings keep their capacity).
  Event& add() {
    if (size_ == events_.size()) events_.emplace_back();
    Event& e = events_[size_++];
    ledger::reset_keeping_capacity(e);
    return e;
  }
  void clear() { size_ = 0; }
  std::size_t size() const { return size_; }
  Event& operator[](std::size_t i) { return events_[i]; }
  const Event& operator[](std::size_t i) const { return events_[i]; }

 private:
  std::vector<Event> events_;
  std::size_t size_ = 0;
};

// A day's time order: (at_ms, key), sorted; ties keep generation order.
using DayOrder = std::vector<std::pair<std::int64_t, std::uint64_t>>;

// A day's events in blocks of consecutive accounts, so that two threads can generate
// them. An event's key is its block << 32 | its index in the block: keys sort in
// generation order.
class Day {
 public:
  void resize(std::size_t blocks) { blocks_.resize(blocks); }
  DayEvents& block(std::size_t b) { return blocks_[b]; }
  Event& operator[](std::uint64_t key) { return blocks_[key >> 32][key & 0xFFFF'FFFFU]; }

  // The events in time order, ties in generation order. Sorts keys, not the events (an
  // Event is a kilobyte; moving them was most of the simulator's time), with a stable
  // radix sort on the time over the keys listed in generation order (a day's times span
  // under 2^27 ms: three passes, cheaper than std::sort's comparisons).
  void sort(DayOrder& order) {
    order.clear();
    for (std::size_t b = 0; b < blocks_.size(); ++b) {
      for (std::size_t i = 0; i < blocks_[b].size(); ++i) {
        order.emplace_back(blocks_[b][i].at_ms, std::uint64_t{b} << 32 | i);
      }
    }
    if (order.empty()) return;
    const auto [lo, hi] = std::minmax_element(
        order.begin(), order.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
    const std::int64_t min_ms = lo->first;
    const auto span_ms = static_cast<std::uint64_t>(hi->first - min_ms);
    constexpr unsigned kDigitBits = 11;
    constexpr std::size_t kBuckets = std::size_t{1} << kDigitBits;
    for (unsigned shift = 0; shift == 0 || (shift < 64 && (span_ms >> shift) != 0);
         shift += kDigitBits) {
      auto digit = [&](const auto& p) {
        return (static_cast<std::uint64_t>(p.first - min_ms) >> shift) & (kBuckets - 1);
      };
      std::array<std::size_t, kBuckets> start{};
      for (const auto& p : order) ++start[digit(p)];
      std::size_t at = 0;
      for (auto& n : start) at += std::exchange(n, at);
      sorted_.resize(order.size());
      for (const auto& p : order) sorted_[start[digit(p)]++] = p;
      order.swap(sorted_);
    }
  }

 private:
  std::vector<DayEvents> blocks_;
  DayOrder sorted_;  // the radix sort's other buffer
};

// An operation's work (work_prices()) and its credits (the rate card in use).
struct Cost {
  Millicredits work;
  Millicredits credits;
};

class DayGenerator {
 public:
  DayGenerator(const Profile& p, const pricing::RateCard& card, Millicredits balanced_agent_min,
               std::uint64_t seed, AccountState& a, std::int64_t day_ms, DayEvents& out)
      : p_(p),
        card_(card),
        balanced_agent_min_(balanced_agent_min),
        rng_(seed),
        a_(a),
        day_ms_(day_ms),
        out_(out) {}

  Status run() {
    for (auto& t : a_.pools) t.day = Millicredits::zero();
    Status st = run_day();
    for (auto& t : a_.pools) t.day_max = max(t.day_max, t.day);
    return st;
  }

 private:
  Status run_day() {
    const std::int64_t weekday = (day_ms_ / kMsPerDay + 3) % 7;  // 0 = Monday
    const bool weekend = weekday >= 5;
    // The day's factor in millionths: weekend share x a jitter of +-15 %.
    const std::int64_t day_ppm = (weekend ? kWeekendPermille : 1000) * rng_.uniform(850, 1150);
    auto budget = [&](std::int64_t share_permille) {
      // weekday_work x 1000 mc x day factor x share: millicredits of work.
      return Millicredits::from_mc(p_.weekday_work * day_ppm * share_permille / 1'000'000);
    };
    if (p_.balanced) return run_balanced(budget(p_.agent_permille));
    Status st = spend(budget(p_.agent_permille), [&] { return agent_turn(pick_user()); });
    if (st.ok()) st = spend(budget(p_.integration_permille), [&] { return integration(); });
    if (st.ok()) st = spend(budget(p_.discuss_permille), [&] { return discuss_turn(pick_user()); });
    if (st.ok()) st = spend(budget(p_.backend_permille), [&] { return backend(); });
    if (st.ok() && !weekend && rng_.chance(p_.loop_permille_per_weekday)) st = loop();
    if (st.ok() && p_.page_load_calls_max > 0) st = page_loads(weekend);
    return st;
  }

  // Draws operations until `budget` of work is done.
  template <typename Make>
  Status spend(Millicredits budget, Make make) {
    Millicredits done;
    for (std::int64_t i = 0; done < budget && i < kEventsPerAccountDayMax; ++i) {
      Result<Cost> e = make();
      if (!e.ok()) return e.error();
      done += e->work;
    }
    return ok_status();
  }

  // A balanced day (Profile::balanced): the agent work in rounds, one turn per builder
  // each, so all have as many turns, and more rounds while the agent credits A are under
  // balanced_agent_min (the windows below need that much room; none when a round adds
  // no credits); then integrations, discuss and backend each drawn to its window of A
  // (kBalanced*), in the card's credits, discuss turns to the builder who has spent least
  // so far. Every builder's spending then stays within 3x of every other's: on the
  // default card rounds add 1.93-5.55 credits to each, and a discuss turn (at most 2.1)
  // goes to the lowest, who has at least 1.93; on a card of one credit a turn all are
  // equal.
  Status run_balanced(Millicredits agent_work_budget) {
    Millicredits work, agent, round;
    const std::size_t users = a_.users.size();
    constexpr auto kTurnsMax = static_cast<std::size_t>(kEventsPerAccountDayMax);
    for (std::size_t i = 0; i < kTurnsMax; i += users) {
      if (work >= agent_work_budget &&
          (agent >= balanced_agent_min_ || (i > 0 && round.is_zero()))) {
        break;
      }
      round = Millicredits::zero();
      for (std::size_t u = 0; u < users; ++u) {
        Result<Cost> e = agent_turn(u);
        if (!e.ok()) return e.error();
        a_.builder_spent[u] += e->credits;
        work += e->work;
        round += e->credits;
      }
      agent += round;
    }
    auto part = [&](std::int64_t permille, bool up) {
      const std::int64_t scaled = agent.mc() * permille;
      return Millicredits::from_mc(scaled / 1000 + (up && scaled % 1000 != 0 ? 1 : 0));
    };
    auto st = fill(part(kBalancedIntegrationPermilleMin, true),
                   part(kBalancedIntegrationPermilleMax, false),
                   [&](Millicredits room) { return integration(room); });
    if (st.ok()) {
      st = fill(part(kBalancedDiscussPermilleMin, true), part(kBalancedDiscussPermilleMax, false),
                [&](Millicredits room) {
                  const auto least = static_cast<std::size_t>(
                      std::min_element(a_.builder_spent.begin(), a_.builder_spent.end()) -
                      a_.builder_spent.begin());
                  Result<Cost> e = discuss_turn(least, room);
                  if (e.ok()) a_.builder_spent[least] += e->credits;
                  return e;
                });
    }
    if (st.ok()) {
      const Millicredits backend_max = part(kBalancedBackendPermilleMax, false);
      st = fill(part(p_.backend_permille * 1000 / p_.agent_permille, true), backend_max,
                [&](Millicredits room) { return backend(room); });
    }
    if (!st.ok()) return st.error();
    return ok_status();
  }

  // Draws events until `lo` credits are spent, none taking the spending past `hi`:
  // make(room) adds one that costs at most `room`, or none (and answers zero) when nothing
  // fits.
  template <typename Make>
  Result<Millicredits> fill(Millicredits lo, Millicredits hi, Make make) {
    Millicredits spent;
    for (std::int64_t i = 0; spent < lo && i < kEventsPerAccountDayMax; ++i) {
      Result<Cost> e = make(hi - spent);
      if (!e.ok()) return e.error();
      if (e->credits.is_zero()) break;
      spent += e->credits;
    }
    return spent;
  }

  std::int64_t work_time() {
    // 08:00 plus the sum of two uniform draws over 5.5 h: a midday peak, 08:00-19:00.
    constexpr std::int64_t kHalfSpanMs = 5 * kMsPerHour + 30 * kMsPerMinute;
    return day_ms_ + 8 * kMsPerHour + rng_.uniform(0, kHalfSpanMs) + rng_.uniform(0, kHalfSpanMs);
  }

  std::size_t pick_user() {
    std::int64_t total = 0;
    for (auto w : a_.weights) total += w;
    std::int64_t r = rng_.uniform(0, total - 1);
    for (std::size_t i = 0; i < a_.weights.size(); ++i) {
      if (r < a_.weights[i]) return i;
      r -= a_.weights[i];
    }
    return 0;
  }

  const FileInfo& pick_file() {
    // Zipf-like: file i has weight 1 / (i + 1), scaled to integers.
    constexpr std::int64_t kScale = 27'720;  // divisible by 1..12
    std::int64_t total = 0;
    for (std::size_t i = 0; i < kFiles.size(); ++i)
      total += kScale / static_cast<std::int64_t>(i + 1);
    std::int64_t r = rng_.uniform(0, total - 1);
    for (std::size_t i = 0; i < kFiles.size(); ++i) {
      std::int64_t w = kScale / static_cast<std::int64_t>(i + 1);
      if (r < w) return kFiles[i];
      r -= w;
    }
    return kFiles.front();
  }

  void snapshot(std::string& out) {
    out.assign("snap-");
    out += a_.id;
    out += '-';
    append_decimal(out, ++a_.snapshots, 5);
  }

  struct Charged {
    Event* event;
    Millicredits work;
  };

  // Measures `u`'s work, raising its input tokens until the work reaches `min_work_mc`
  // (the usage, so the operation, is then the same whatever the card), prices it with the
  // card in use and adds the charge to the day.
  Result<Charged> charge(Kind kind, Usage u, std::int64_t at_ms, std::string_view user,
                         std::int64_t min_work_mc = 0) {
    const pricing::RateCard& work_card = work_prices();
    Result<pricing::Price> work = work_card.price(kind, u);
    for (std::int64_t i = 0; work.ok() && work->cost.mc() < min_work_mc && i < kEscalationStepsMax;
         ++i) {
      u.input_tokens = u.input_tokens.value_or(0) * 5 / 4 + 500;
      work = work_card.price(kind, u);
    }
    if (!work.ok()) return work.error();
    Result<pricing::Price> price = card_.price(kind, u);
    if (!price.ok()) return price.error();
    tally(price->pool, price->cost);
    if (price->cost.mc() > 0) {
      // As the audit counts users: a charge of 0 credits is no burn and no turn.
      auto it = a_.user_tallies.find(user);
      if (it == a_.user_tallies.end())
        it = a_.user_tallies.emplace(std::string(user), AccountState::UserTally{}).first;
      it->second.credits += price->cost;
      if (kind == Kind::kAgentPrompt) {
        ++it->second.agent_turns;
        ++a_.agent_turns;
      }
      if (kind == Kind::kAgentPrompt || kind == Kind::kDiscussTurn) it->second.builder = true;
    }
    Event& e = out_.add();
    e.at_ms = at_ms;
    e.account_id = a_.id;
    e.user_id = user;
    e.type = ledger::EventType::kCharge;
    e.kind = kind;
    e.pool = price->pool;
    e.credits = price->cost;
    e.priced_by = "usage";
    e.usage = std::move(u);
    e.rate_card_version = card_.version();
    e.idempotency_key.assign(a_.key_prefix);
    append_decimal(e.idempotency_key, ++a_.events);
    return Charged{&e, work->cost};
  }

  void tally(std::string_view pool, Millicredits credits) {
    a_.total += credits;
    auto it = std::find_if(a_.pools.begin(), a_.pools.end(),
                           [pool](const AccountState::PoolTally& t) { return t.pool == pool; });
    if (it == a_.pools.end()) it = a_.pools.insert(a_.pools.end(), {pool, {}, {}, {}});
    it->period += credits;
    it->day += credits;
  }

  Result<Cost> agent_turn(std::size_t ui) {
    const std::string& user = a_.users[ui];
    const FileInfo& f = pick_file();
    Usage u;
    u.model = "default";
    std::int64_t min_work_mc = 0;
    const std::int64_t unscoped_permille =
        ui == 0 ? p_.unscoped_permille_heavy_user : p_.unscoped_permille_others;
    bool unscoped = rng_.chance(unscoped_permille);
    bool small = !unscoped && rng_.chance(p_.small_edit_permille);
    if (unscoped) {
      u.input_tokens = rng_.uniform(8000, 14000);
      u.output_tokens = rng_.uniform(1800, 2600);
      u.files_read = rng_.uniform(3, 6);
      u.lines_emitted = rng_.uniform(150, 250);
      u.lines_changed = rng_.uniform(6, *u.lines_emitted / 5);
    } else if (small) {
      u.input_tokens = rng_.uniform(9000, 12000);
      u.output_tokens = rng_.uniform(150, 300);
      u.files_read = rng_.uniform(3, 5);
      u.lines_changed = rng_.uniform(2, 5);
      u.lines_emitted = *u.lines_changed + rng_.uniform(0, 3);
      min_work_mc = kSmallEditWorkMinMc;
    } else {
      u.input_tokens = rng_.uniform(p_.balanced ? kBalancedInputTokensMin : 2000, 8000);
      u.output_tokens = rng_.uniform(100, 500);
      u.files_read = rng_.uniform(1, 3);
      u.lines_changed = rng_.uniform(6, 40);
      u.lines_emitted = *u.lines_changed + rng_.uniform(0, 10);
    }
    auto charged = charge(Kind::kAgentPrompt, std::move(u), work_time(), user, min_work_mc);
    if (!charged.ok()) return charged.error();
    Event& e = *charged->event;
    e.metadata.file = f.path;
    e.metadata.feature = f.feature;
    e.metadata.intent = rng_.chance(850) ? "feature" : "question";
    // The truth counts what the audit finds (no charge of 0 credits; a small edit of 3
    // credits or more) under the card in use.
    const bool paid = e.credits.mc() > 0;
    if (rng_.chance(p_.no_snapshot_permille)) {
      if (paid) ++a_.truth.turns_without_snapshot;
    } else {
      snapshot(e.metadata.snapshot_id);
    }
    if (unscoped && paid) {
      ++a_.truth.unscoped_prompts;
      ++a_.unscoped_user[user];
      ++a_.unscoped_file[std::string(f.path)];
    }
    if (small && e.credits >= kSmallEditCreditsMin) ++a_.truth.small_edits;
    return Cost{charged->work, e.credits};
  }

  // Whether `u` of `kind` costs more than `room` (no room given: it fits).
  Result<bool> too_dear(Kind kind, const Usage& u, std::optional<Millicredits> room) const {
    if (!room) return false;
    Result<pricing::Price> price = card_.price(kind, u);
    if (!price.ok()) return price.error();
    return price->cost > *room;
  }

  // A discuss turn of builder `ui`; with `room` (credits), none (zero) when it would cost
  // more.
  Result<Cost> discuss_turn(std::size_t ui, std::optional<Millicredits> room = std::nullopt) {
    const std::string& user = a_.users[ui];
    Usage u;
    u.model = "default";
    u.input_tokens = rng_.uniform(kDiscussInputTokensMin, kDiscussInputTokensMax);
    u.output_tokens = rng_.uniform(kDiscussOutputTokensMin, kDiscussOutputTokensMax);
    auto dear = too_dear(Kind::kDiscussTurn, u, room);
    if (!dear.ok()) return dear.error();
    if (*dear) return Cost{};
    auto charged = charge(Kind::kDiscussTurn, std::move(u), work_time(), user);
    if (!charged.ok()) return charged.error();
    Event& e = *charged->event;
    e.metadata.feature = pick_file().feature;
    e.metadata.intent = rng_.chance(750) ? "question" : "feature";
    a_.discuss += e.credits;
    return Cost{charged->work, e.credits};
  }

  // An integration call; with `room` (credits), an email instead of a call that would cost
  // more, and none (zero) when even that would.
  Result<Cost> integration(std::optional<Millicredits> room = std::nullopt) {
    const std::int64_t r = rng_.uniform(0, 99);
    Usage u;
    Kind kind;
    std::string_view site;
    if (r < 50) {
      kind = Kind::kInvokeLlm;
      site = "pages/Dashboard.summarize";
      u.model = "gpt-4o-mini";
      u.input_tokens = rng_.uniform(400, 900);
      u.output_tokens = rng_.uniform(150, 300);
    } else if (r < 60) {
      kind = Kind::kInvokeLlm;
      site = "functions/generateReport";
      u.model = "gpt-4o";
      u.input_tokens = rng_.uniform(4000, 7000);
      u.output_tokens = rng_.uniform(1000, 1800);
    } else if (r < 75) {
      kind = Kind::kGenerateImage;
      site = "pages/Profile.avatar";
      u.size = "512x512";
      u.count = 1;
    } else {
      kind = Kind::kSendEmail;
      site = "functions/sendWelcome";
      u.count = 1;
    }
    auto dear = too_dear(kind, u, room);
    if (dear.ok() && *dear) {
      kind = Kind::kSendEmail;
      site = "functions/sendWelcome";
      u = Usage{};
      u.count = 1;
      dear = too_dear(kind, u, room);
    }
    if (!dear.ok()) return dear.error();
    if (*dear) return Cost{};
    auto charged = charge(kind, std::move(u), work_time(), kAppUser);
    if (!charged.ok()) return charged.error();
    Event& e = *charged->event;
    e.metadata.call_site = site;
    assign_hex64(e.metadata.request_hash, rng_.next());
    if (kind != Kind::kSendEmail) e.cache_key = e.metadata.request_hash;
    return Cost{charged->work, e.credits};
  }

  // A backend function run; with `room` (credits), none (zero) when it would cost more.
  Result<Cost> backend(std::optional<Millicredits> room = std::nullopt) {
    Usage u;
    u.duration_ms = rng_.uniform(15'000, 60'000);
    u.records = rng_.uniform(200, 3000);
    auto dear = too_dear(Kind::kBackendFunction, u, room);
    if (!dear.ok()) return dear.error();
    if (*dear) return Cost{};
    auto charged = charge(Kind::kBackendFunction, std::move(u), work_time(), kAppUser, 1);
    if (!charged.ok()) return charged.error();
    Event& e = *charged->event;
    e.metadata.call_site = "functions/syncOrders";
    assign_hex64(e.metadata.request_hash, rng_.next());
    return Cost{charged->work, e.credits};
  }

  Status loop() {
    const FileInfo& f = kLoopFiles[static_cast<std::size_t>(a_.loops++) % kLoopFiles.size()];
    const std::string& user = a_.users[pick_user()];
    const std::int64_t turns = rng_.uniform(3, 6);
    std::int64_t at = day_ms_ + 10 * kMsPerHour + rng_.uniform(0, 4 * kMsPerHour);
    PlantedLoop planted{std::string(f.path), std::string(f.feature), turns, at, ""};
    Millicredits credits;
    for (std::int64_t i = 0; i < turns; ++i) {
      Usage u;
      u.model = "default";
      u.input_tokens = rng_.uniform(20000, 30000);
      u.output_tokens = rng_.uniform(800, 1500);
      u.files_read = rng_.uniform(4, 6);
      u.lines_changed = rng_.uniform(15, 40);
      u.lines_emitted = *u.lines_changed + 5;
      auto charged = charge(Kind::kAgentPrompt, std::move(u), at, user, kLoopTurnWorkMinMc);
      if (!charged.ok()) return charged.error();
      Event& e = *charged->event;
      credits += e.credits;
      e.metadata.file = planted.file;
      e.metadata.feature = planted.feature;
      e.metadata.intent = i == 0 ? "feature" : "fix";
      snapshot(e.metadata.snapshot_id);
      if (i == 0) planted.snapshot_id = e.metadata.snapshot_id;
      at += rng_.uniform(15, 50) * kMsPerMinute;
    }
    // Under a card where its turns cost less than 30 credits together, the audit sees no
    // loop: nor does the truth.
    if (credits >= kLoopCreditsMin) a_.truth.loops.push_back(std::move(planted));
    return ok_status();
  }

  Status page_loads(bool weekend) {
    std::int64_t calls = rng_.uniform(p_.page_load_calls_min, p_.page_load_calls_max);
    if (weekend) calls = calls * kWeekendPermille / 1000;
    for (std::int64_t i = 0; i < calls; ++i) {
      Usage u;
      u.model = "gpt-4o-mini";
      u.input_tokens = 700;
      u.output_tokens = 250;
      auto charged = charge(Kind::kInvokeLlm, std::move(u), work_time(), kAppUser);
      if (!charged.ok()) return charged.error();
      Event& e = *charged->event;
      const std::string& key = a_.page_load_keys[static_cast<std::size_t>(
          rng_.uniform(0, static_cast<std::int64_t>(a_.page_load_keys.size()) - 1))];
      e.metadata.call_site = a_.page_loads.call_site;
      e.metadata.request_hash = key;
      e.cache_key = key;
      if (e.credits.is_zero()) continue;  // no paid call: the audit does not count it
      a_.page_load_keys_used.insert(key);
      ++a_.page_loads.calls;
    }
    return ok_status();
  }

  const Profile& p_;
  const pricing::RateCard& card_;
  Millicredits balanced_agent_min_;
  Prng rng_;
  AccountState& a_;
  std::int64_t day_ms_;
  DayEvents& out_;
};

std::vector<PlantedCount> sorted_counts(const std::map<std::string, std::int64_t>& m) {
  std::vector<PlantedCount> v;
  for (const auto& [k, n] : m) v.push_back({k, n});
  return v;
}

// The agent credits a balanced day needs for its windows (kBalanced*) to be wider than what
// fills them under `card`: an email for the integrations' window (100 permille of the
// agent credits), the dearest discuss turn for the discuss window (125 permille); 2 mc
// more, as the windows' ends are rounded inwards.
Result<Millicredits> balanced_agent_min(const pricing::RateCard& card) {
  Usage email;
  email.count = 1;
  auto email_price = card.price(Kind::kSendEmail, email);
  if (!email_price.ok()) return email_price.error();
  Usage talk;
  talk.model = "default";
  talk.input_tokens = kDiscussInputTokensMax;
  talk.output_tokens = kDiscussOutputTokensMax;
  auto talk_price = card.price(Kind::kDiscussTurn, talk);
  if (!talk_price.ok()) return talk_price.error();
  auto need = [](Millicredits fill, std::int64_t width_permille) -> std::int64_t {
    if (fill.is_zero()) return 0;
    const __int128 mc = (static_cast<__int128>(fill.mc()) + 2) * 1000 / width_permille + 1;
    return mc > std::numeric_limits<std::int64_t>::max() ? std::numeric_limits<std::int64_t>::max()
                                                         : static_cast<std::int64_t>(mc);
  };
  return Millicredits::from_mc(std::max(
      need(email_price->cost, kBalancedIntegrationPermilleMax - kBalancedIntegrationPermilleMin),
      need(talk_price->cost, kBalancedDiscussPermilleMax - kBalancedDiscussPermilleMin)));
}

std::uint64_t mix(std::uint64_t seed, std::uint64_t a, std::uint64_t b) {
  Prng p(seed ^ (a * 0xD1B54A32D192ED03ULL) ^ (b * 0xABC98388FB8FAC03ULL));
  return p.next();
}

// What is done with the events: single() for an event outside the days; each sorted day
// goes to begin() on the caller's thread, then help() on the thread that generated the
// next day (once it has) while finish() runs on the caller's thread.
class Output {
 public:
  virtual ~Output() = default;
  virtual void single(const Event& e) = 0;
  virtual void begin(Day& events, const DayOrder& order, std::uint64_t first_seq) = 0;
  virtual void help() {}
  virtual void finish() = 0;
};

class SinkOutput final : public Output {
 public:
  explicit SinkOutput(const EventSink& sink) : sink_(sink) {}
  void single(const Event& e) override { sink_(e); }
  void begin(Day& events, const DayOrder& order, std::uint64_t first_seq) override {
    events_ = &events;
    order_ = &order;
    first_seq_ = first_seq;
  }
  void finish() override {
    std::uint64_t seq = first_seq_;
    for (const auto& [at_ms, i] : *order_) {
      Event& e = (*events_)[i];
      e.seq = ++seq;
      sink_(e);
    }
  }

 private:
  const EventSink& sink_;
  Day* events_ = nullptr;
  const DayOrder* order_ = nullptr;
  std::uint64_t first_seq_ = 0;
};

// Formats a day in chunks of consecutive events, claimed by both threads; the caller's
// thread hands finished chunks to the sink in order.
class FormatOutput final : public Output {
 public:
  FormatOutput(const EventFormatter& format, const BlockSink& sink)
      : format_(format), sink_(sink) {}
  void single(const Event& e) override {
    std::string text;
    format_(e, text);
    sink_(text);
  }
  void begin(Day& events, const DayOrder& order, std::uint64_t first_seq) override {
    events_ = &events;
    order_ = &order;
    first_seq_ = first_seq;
    count_ = (order.size() + kChunkEvents - 1) / kChunkEvents;
    while (chunks_.size() < count_) chunks_.push_back(std::make_unique<Chunk>());
    for (std::size_t c = 0; c < count_; ++c) chunks_[c]->done.store(false);
    next_.store(0);
  }
  void help() override {
    while (format_next()) {
    }
  }
  void finish() override {
    std::size_t written = 0;
    while (format_next()) {
      while (written < count_ && chunks_[written]->done.load(std::memory_order_acquire)) {
        sink_(chunks_[written++]->text);
      }
    }
    for (; written < count_; ++written) {
      chunks_[written]->done.wait(false, std::memory_order_acquire);
      sink_(chunks_[written]->text);
    }
  }

 private:
  // About 600 KB of lines: few large writes, and still 8 or more chunks per day of 1000
  // accounts for the two threads to share.
  static constexpr std::size_t kChunkEvents = 1024;
  struct Chunk {
    std::string text;
    std::atomic<bool> done{false};
  };

  // Formats the next unclaimed chunk; false when none is left.
  bool format_next() {
    const std::size_t c = next_.fetch_add(1);
    if (c >= count_) return false;
    Chunk& chunk = *chunks_[c];
    chunk.text.clear();
    const std::size_t end = std::min(order_->size(), (c + 1) * kChunkEvents);
    for (std::size_t k = c * kChunkEvents; k < end; ++k) {
      Event& e = (*events_)[(*order_)[k].second];
      e.seq = first_seq_ + k + 1;
      format_(e, chunk.text);
    }
    chunk.done.store(true, std::memory_order_release);
    chunk.done.notify_one();
    return true;
  }

  const EventFormatter& format_;
  const BlockSink& sink_;
  Day* events_ = nullptr;
  const DayOrder* order_ = nullptr;
  std::uint64_t first_seq_ = 0;
  std::vector<std::unique_ptr<Chunk>> chunks_;
  std::size_t count_ = 0;
  std::atomic<std::size_t> next_{0};
};

Result<Truth> run_simulation(const SimOptions& options, const pricing::RateCard& card,
                             Output& output, const DayProgress& progress) {
  const Profile* profile = find_profile(options.profile);
  auto invalid = [](std::string param, std::string message) {
    Error e(ErrorCode::kInvalidRequest, std::move(message));
    e.with_string("param", param);
    return e;
  };
  if (profile == nullptr) return invalid("profile", "unknown profile '" + options.profile + "'");
  if (options.accounts < 1 || options.accounts > kAccountsMax) {
    return invalid("accounts", fmt::format("accounts must be 1-{}", kAccountsMax));
  }
  if (options.days < 1 || options.days > kDaysMax) {
    return invalid("days", fmt::format("days must be 1-{}", kDaysMax));
  }
  // The generation is by whole UTC days (a workday's hours, a day's budgets): a start
  // inside a day would either put events before it or plant a part of a day that the
  // profile's shares and planted waste were never drawn for.
  if (options.start_ms != day_start_ms(options.start_ms)) {
    return invalid("start", "start must be a UTC midnight (" +
                                format_rfc3339(day_start_ms(options.start_ms)) + " or " +
                                format_rfc3339(day_start_ms(options.start_ms) + kMsPerDay) +
                                "): the simulator generates whole UTC days");
  }

  Truth truth;
  truth.profile = std::string(profile->name);
  truth.seed = options.seed;
  truth.start_ms = options.start_ms;
  truth.days = options.days;
  std::string start_day = format_date(truth.start_ms);  // YYYY-MM-DD
  start_day.erase(std::remove(start_day.begin(), start_day.end(), '-'), start_day.end());

  std::vector<AccountState> accounts(static_cast<std::size_t>(options.accounts));
  for (std::size_t i = 0; i < accounts.size(); ++i) {
    AccountState& a = accounts[i];
    Prng rng(mix(options.seed, i, 0xACC0));
    a.id = fmt::format("acct-{:03}", i + 1);
    a.key_prefix = fmt::format("sim-{}-{}-{}-{}-", profile->name, options.seed, start_day, a.id);
    const std::int64_t users = profile->outlier_weight_factor > 0 ? 4 : rng.uniform(3, 5);
    for (std::int64_t j = 0; j < users; ++j) {
      a.users.emplace_back(kUserNames[(i + static_cast<std::size_t>(j)) % kUserNames.size()]);
      a.weights.push_back(rng.uniform(800, 1200));
    }
    a.builder_spent.assign(a.users.size(), Millicredits::zero());
    // The planted outlier works as much as factor builders; whether the audit finds it (and
    // no other) is decided after the period, by the audit's own rule (a short period can
    // make a natural outlier, or leave the planted one under 3 x the median).
    if (profile->outlier_weight_factor > 0) a.weights[0] = profile->outlier_weight_factor * 1000;
    for (std::int64_t k = 0; k < profile->page_load_keys; ++k) {
      a.page_load_keys.push_back(hex64(rng.next()));
    }
    a.page_loads.call_site =
        profile->page_load_calls_min >= 20 ? "pages/Home.onLoad" : "pages/Pricing.onLoad";
    a.truth.account_id = a.id;
    a.truth.users = a.users;
  }
  Millicredits agent_min;
  if (profile->balanced) {
    auto min = balanced_agent_min(card);
    if (!min.ok()) return min.error();
    agent_min = *min;
  }

  DayOrder order;
  // A block is about a millisecond of generation: fine enough to share a day between the
  // threads, coarse enough that claiming one costs nothing.
  constexpr std::size_t kGenerateBlockAccounts = 64;
  const std::size_t blocks =
      (accounts.size() + kGenerateBlockAccounts - 1) / kGenerateBlockAccounts;
  std::uint64_t seq = 0;
  if (!options.plan.empty()) {
    for (const auto& a : accounts) {
      Event e;
      e.seq = ++seq;
      e.at_ms = truth.start_ms;
      e.account_id = a.id;
      e.type = ledger::EventType::kAccountCreated;
      e.plan = options.plan;
      e.idempotency_key = a.key_prefix + "account";
      output.single(e);
    }
  }
  // The account lines are no events (audit and replay do not count them either).
  const std::uint64_t account_lines = seq;
  // Block b of day d's events, generated account by account (each from its own seed and
  // state, so blocks can be generated in any order and on any thread).
  auto generate_block = [&](std::int64_t d, Day& day, std::size_t b) -> Status {
    const std::int64_t day_ms = truth.start_ms + d * kMsPerDay;
    DayEvents& events = day.block(b);
    events.clear();
    const std::size_t end = std::min(accounts.size(), (b + 1) * kGenerateBlockAccounts);
    for (std::size_t i = b * kGenerateBlockAccounts; i < end; ++i) {
      DayGenerator gen(*profile, card, agent_min,
                       mix(options.seed, i + 1, static_cast<std::uint64_t>(d) + 1), accounts[i],
                       day_ms, events);
      Status st = gen.run();
      if (!st.ok()) return st;
    }
    return ok_status();
  };
  // Two threads: the next day's blocks are generated while this day is sorted and given to
  // the output. The helper thread generates, then helps the output (help() touches only
  // this day's events); the caller's thread runs the output, then generates what is left.
  // Generation touches only the account states and the next day, so the output is the
  // serial one.
  Day day, next_day;
  day.resize(blocks);
  next_day.resize(blocks);
  std::vector<Status> block_status(blocks, ok_status());
  // Generates day d's blocks from `next_block` on; both threads call it and take turns.
  auto generate_blocks = [&](std::int64_t d, Day& into, std::atomic<std::size_t>& next_block) {
    for (std::size_t b = next_block.fetch_add(1); b < blocks; b = next_block.fetch_add(1)) {
      block_status[b] = generate_block(d, into, b);
    }
  };
  {
    std::atomic<std::size_t> next_block = 0;
    std::thread helper([&] { generate_blocks(0, day, next_block); });
    generate_blocks(0, day, next_block);
    helper.join();
  }
  for (std::int64_t d = 0; d < options.days; ++d) {
    // The first error in account order, as a serial run would report it.
    for (const Status& st : block_status) {
      if (!st.ok()) return st.error();
    }
    // No next day: no block left to claim.
    std::atomic<std::size_t> next_block = d + 1 < options.days ? 0 : blocks;
    std::atomic<bool> begun = false;
    std::thread helper([&, d] {
      generate_blocks(d + 1, next_day, next_block);
      begun.wait(false);
      output.help();
    });
    day.sort(order);
    output.begin(day, order, seq);
    seq += order.size();
    begun.store(true);
    begun.notify_one();
    output.finish();
    if (progress) progress(d + 1);
    generate_blocks(d + 1, next_day, next_block);
    helper.join();
    std::swap(day, next_day);
  }
  truth.events = static_cast<std::int64_t>(seq - account_lines);
  for (auto& a : accounts) {
    a.truth.unscoped_by_user = sorted_counts(a.unscoped_user);
    a.truth.unscoped_by_file = sorted_counts(a.unscoped_file);
    if (a.page_loads.calls > 0) {
      a.page_loads.distinct_requests = static_cast<std::int64_t>(a.page_load_keys_used.size());
      a.page_loads.paid_repeats = a.page_loads.calls - a.page_loads.distinct_requests;
      a.truth.repeats.push_back(a.page_loads);
    }
    // The audit's outliers, by its rule, over the builders in id order (as the audit gives them).
    std::vector<analytics::UserTotals> builders;
    for (const auto& [id, u] : a.user_tallies) {
      if (u.builder) builders.push_back({id, u.agent_turns, u.credits});
    }
    for (const analytics::Outlier& o : analytics::find_outliers(builders, a.agent_turns, a.total)) {
      a.truth.outlier_users.push_back(o.user_id);
    }
    // The audit's discuss share: of the whole burn, in the card's credits.
    a.truth.discuss_heavy = static_cast<__int128>(a.discuss.mc()) * 1000 >
                            static_cast<__int128>(a.total.mc()) * kDiscussHeavyPermilleOver;
    for (const auto& t : a.pools) {
      a.truth.pools.push_back({std::string(t.pool), t.period, t.day_max});
    }
    truth.accounts.push_back(std::move(a.truth));
  }
  return truth;
}

}  // namespace

Result<Truth> simulate(const SimOptions& options, const pricing::RateCard& card,
                       const EventSink& sink, const DayProgress& progress) {
  SinkOutput output(sink);
  return run_simulation(options, card, output, progress);
}

Result<Truth> simulate_formatted(const SimOptions& options, const pricing::RateCard& card,
                                 const EventFormatter& format, const BlockSink& sink,
                                 const DayProgress& progress) {
  FormatOutput output(format, sink);
  return run_simulation(options, card, output, progress);
}

std::string truth_json(const Truth& t) {
  std::string out;
  json::Writer w(out);
  auto counts = [&](std::string_view key, std::string_view name,
                    const std::vector<PlantedCount>& v) {
    w.key(key).begin_array();
    for (const auto& c : v) {
      w.begin_object().key(name).string(c.key).key("prompts").integer(c.count).end_object();
    }
    w.end_array();
  };
  w.begin_object();
  w.key("profile").string(t.profile);
  w.key("seed").raw(std::to_string(t.seed));  // unsigned 64-bit: written as it is
  w.key("start").string(format_rfc3339(t.start_ms));
  w.key("days").integer(t.days);
  w.key("events").integer(t.events);
  w.key("accounts").begin_array();
  for (const auto& a : t.accounts) {
    w.begin_object().key("account_id").string(a.account_id);
    w.key("users").begin_array();
    for (const auto& u : a.users) w.string(u);
    w.end_array();
    w.key("loops").begin_array();
    for (const auto& l : a.loops) {
      w.begin_object().key("file").string(l.file).key("feature").string(l.feature);
      w.key("turns").integer(l.turns).key("first_at").string(format_rfc3339(l.first_at_ms));
      w.key("revert_to_snapshot").string(l.snapshot_id).end_object();
    }
    w.end_array();
    w.key("repeated_calls").begin_array();
    for (const auto& r : a.repeats) {
      w.begin_object().key("call_site").string(r.call_site).key("calls").integer(r.calls);
      w.key("distinct_requests").integer(r.distinct_requests);
      w.key("paid_repeats").integer(r.paid_repeats).end_object();
    }
    w.end_array();
    w.key("unscoped").begin_object().key("prompts").integer(a.unscoped_prompts);
    counts("by_user", "user_id", a.unscoped_by_user);
    counts("by_file", "file", a.unscoped_by_file);
    w.end_object();
    w.key("small_edits").integer(a.small_edits);
    w.key("turns_without_snapshot").integer(a.turns_without_snapshot);
    w.key("outlier_users").begin_array();
    for (const auto& u : a.outlier_users) w.string(u);
    w.end_array();
    w.key("discuss_heavy").boolean(a.discuss_heavy);
    w.end_object();
  }
  w.end_array().end_object();
  out += '\n';
  return out;
}

}  // namespace credit::sim
