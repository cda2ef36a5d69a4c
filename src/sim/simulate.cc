// src/sim/simulate.cc
// The simulator's profiles, the per-day generator and the truth's JSON (see simulate.h).
#include "sim/simulate.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include "base/json_writer.h"
#include "sim/prng.h"
#include "time/time.h"

namespace credit::sim {

using ledger::Event;
using pricing::Kind;
using pricing::Usage;

const std::vector<Profile>& profiles() {
  // name, shares (agent, integrations, discuss, backend), weekday credits, loops,
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
constexpr std::int64_t kLoopTurnCostMinMc = 10'000;  // 3 turns reach the 30-credit rule
constexpr std::int64_t kSmallEditCostMinMc = 3'000;
constexpr std::int64_t kEscalationStepsMax = 40;
// A balanced day (run_balanced). With agent credits A, integrations in [0.25 A, 0.35 A],
// discuss in [0.075 A, 0.2 A] and backend in [0, 0.03 A] give shares of agent 63-76 %,
// integrations 16-25 %, discuss 5.1-13.8 % and backend at most 2.2 %: inside the audit's
// typical bands (60-80, 15-30, 5-15, 0-10 %) on every day, so on every run of days too.
// Each window is wider than the dearest discuss turn (2.1 credits) or email (1 credit)
// once A reaches 17 credits, below a quiet weekend's agent budget (~18 credits).
constexpr std::int64_t kBalancedIntegrationPermilleMin = 250;
constexpr std::int64_t kBalancedIntegrationPermilleMax = 350;
constexpr std::int64_t kBalancedDiscussPermilleMin = 75;
constexpr std::int64_t kBalancedDiscussPermilleMax = 200;
constexpr std::int64_t kBalancedBackendPermilleMax = 30;
// Background agent turns of a balanced team read at least this many input tokens: their
// costs then lie within a factor 2.9 of each other (1.93-5.55 credits on the default
// card), so builders with as many turns never differ by 3x, the audit's outlier factor.
constexpr std::int64_t kBalancedInputTokensMin = 3000;

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
  std::vector<std::string> page_load_keys;
  std::int64_t loops = 0;
  std::int64_t snapshots = 0;
  std::int64_t events = 0;
  AccountTruth truth;
  std::map<std::string, std::int64_t> unscoped_user, unscoped_file;
  PlantedRepeats page_loads;
  std::set<std::string> page_load_keys_used;
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

class DayGenerator {
 public:
  DayGenerator(const Profile& p, const pricing::RateCard& card, std::uint64_t seed, AccountState& a,
               std::int64_t day_ms, DayEvents& out)
      : p_(p), card_(card), rng_(seed), a_(a), day_ms_(day_ms), out_(out) {}

  Status run() {
    const std::int64_t weekday = (day_ms_ / kMsPerDay + 3) % 7;  // 0 = Monday
    const bool weekend = weekday >= 5;
    // The day's factor in millionths: weekend share x a jitter of +-15 %.
    const std::int64_t day_ppm = (weekend ? kWeekendPermille : 1000) * rng_.uniform(850, 1150);
    auto budget = [&](std::int64_t share_permille) {
      // weekday_credits x 1000 mc x day factor x share: millicredits.
      return Millicredits::from_mc(p_.weekday_credits * day_ppm * share_permille / 1'000'000);
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

 private:
  template <typename Make>
  Status spend(Millicredits budget, Make make) {
    Millicredits spent;
    for (std::int64_t i = 0; spent < budget && i < kEventsPerAccountDayMax; ++i) {
      auto e = make();
      if (!e.ok()) return e.error();
      spent += *e;
    }
    return ok_status();
  }

  // A balanced day (Profile::balanced): the agent budget in rounds, one turn per builder
  // each, so all have as many turns; then integrations, discuss and backend each drawn to
  // its window of the agent credits spent (kBalanced*), discuss turns to the builder who
  // has spent least so far. Every builder's spending then stays within 3x of every
  // other's: rounds add 1.93-5.55 credits to each, and a discuss turn (at most 2.1) goes
  // to the lowest, who has at least 1.93.
  Status run_balanced(Millicredits agent_budget) {
    Millicredits agent;
    const std::size_t users = a_.users.size();
    constexpr auto kTurnsMax = static_cast<std::size_t>(kEventsPerAccountDayMax);
    for (std::size_t i = 0; agent < agent_budget && i < kTurnsMax; i += users) {
      for (std::size_t u = 0; u < users; ++u) {
        auto e = agent_turn(u);
        if (!e.ok()) return e.error();
        a_.builder_spent[u] += *e;
        agent += *e;
      }
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
                  auto e = discuss_turn(least, room);
                  if (e.ok()) a_.builder_spent[least] += *e;
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

  // Draws events until `lo` is spent, none taking the spending past `hi`: make(room) adds
  // one that costs at most `room`, or none (and answers zero) when nothing fits.
  template <typename Make>
  Result<Millicredits> fill(Millicredits lo, Millicredits hi, Make make) {
    Millicredits spent;
    for (std::int64_t i = 0; spent < lo && i < kEventsPerAccountDayMax; ++i) {
      auto e = make(hi - spent);
      if (!e.ok()) return e.error();
      if (e->is_zero()) break;
      spent += *e;
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

  // Prices `u`, raising its input tokens until the cost reaches `min_mc`, and adds the
  // charge to the day.
  Result<Event*> charge(Kind kind, Usage u, std::int64_t at_ms, std::string_view user,
                        std::int64_t min_mc = 0) {
    Result<pricing::Price> price = card_.price(kind, u);
    for (std::int64_t i = 0; price.ok() && price->cost.mc() < min_mc && i < kEscalationStepsMax;
         ++i) {
      u.input_tokens = u.input_tokens.value_or(0) * 5 / 4 + 500;
      price = card_.price(kind, u);
    }
    if (!price.ok()) return price.error();
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
    return &e;
  }

  Result<Millicredits> agent_turn(std::size_t ui) {
    const std::string& user = a_.users[ui];
    const FileInfo& f = pick_file();
    Usage u;
    u.model = "default";
    std::int64_t min_mc = 0;
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
      min_mc = kSmallEditCostMinMc;
    } else {
      u.input_tokens = rng_.uniform(p_.balanced ? kBalancedInputTokensMin : 2000, 8000);
      u.output_tokens = rng_.uniform(100, 500);
      u.files_read = rng_.uniform(1, 3);
      u.lines_changed = rng_.uniform(6, 40);
      u.lines_emitted = *u.lines_changed + rng_.uniform(0, 10);
    }
    auto charged = charge(Kind::kAgentPrompt, std::move(u), work_time(), user, min_mc);
    if (!charged.ok()) return charged.error();
    Event& e = **charged;
    e.metadata.file = f.path;
    e.metadata.feature = f.feature;
    e.metadata.intent = rng_.chance(850) ? "feature" : "question";
    if (rng_.chance(p_.no_snapshot_permille)) {
      ++a_.truth.turns_without_snapshot;
    } else {
      snapshot(e.metadata.snapshot_id);
    }
    if (unscoped) {
      ++a_.truth.unscoped_prompts;
      ++a_.unscoped_user[user];
      ++a_.unscoped_file[std::string(f.path)];
    }
    if (small) ++a_.truth.small_edits;
    return e.credits;
  }

  // Whether `u` of `kind` costs more than `room` (no room given: it fits).
  Result<bool> too_dear(Kind kind, const Usage& u, std::optional<Millicredits> room) const {
    if (!room) return false;
    Result<pricing::Price> price = card_.price(kind, u);
    if (!price.ok()) return price.error();
    return price->cost > *room;
  }

  // A discuss turn of builder `ui`; with `room`, none (zero) when it would cost more.
  Result<Millicredits> discuss_turn(std::size_t ui,
                                    std::optional<Millicredits> room = std::nullopt) {
    const std::string& user = a_.users[ui];
    Usage u;
    u.model = "default";
    u.input_tokens = rng_.uniform(2000, 4000);
    u.output_tokens = rng_.uniform(200, 400);
    auto dear = too_dear(Kind::kDiscussTurn, u, room);
    if (!dear.ok()) return dear.error();
    if (*dear) return Millicredits::zero();
    auto charged = charge(Kind::kDiscussTurn, std::move(u), work_time(), user);
    if (!charged.ok()) return charged.error();
    Event& e = **charged;
    e.metadata.feature = pick_file().feature;
    e.metadata.intent = rng_.chance(750) ? "question" : "feature";
    return e.credits;
  }

  // An integration call; with `room`, an email instead of a call that would cost more,
  // and none (zero) when even that would.
  Result<Millicredits> integration(std::optional<Millicredits> room = std::nullopt) {
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
    if (*dear) return Millicredits::zero();
    auto charged = charge(kind, std::move(u), work_time(), kAppUser);
    if (!charged.ok()) return charged.error();
    Event& e = **charged;
    e.metadata.call_site = site;
    assign_hex64(e.metadata.request_hash, rng_.next());
    if (kind != Kind::kSendEmail) e.cache_key = e.metadata.request_hash;
    return e.credits;
  }

  // A backend function run; with `room`, none (zero) when it would cost more.
  Result<Millicredits> backend(std::optional<Millicredits> room = std::nullopt) {
    Usage u;
    u.duration_ms = rng_.uniform(15'000, 60'000);
    u.records = rng_.uniform(200, 3000);
    auto dear = too_dear(Kind::kBackendFunction, u, room);
    if (!dear.ok()) return dear.error();
    if (*dear) return Millicredits::zero();
    auto charged = charge(Kind::kBackendFunction, std::move(u), work_time(), kAppUser, 1);
    if (!charged.ok()) return charged.error();
    Event& e = **charged;
    e.metadata.call_site = "functions/syncOrders";
    assign_hex64(e.metadata.request_hash, rng_.next());
    return e.credits;
  }

  Status loop() {
    const FileInfo& f = kLoopFiles[static_cast<std::size_t>(a_.loops++) % kLoopFiles.size()];
    const std::string& user = a_.users[pick_user()];
    const std::int64_t turns = rng_.uniform(3, 6);
    std::int64_t at = day_ms_ + 10 * kMsPerHour + rng_.uniform(0, 4 * kMsPerHour);
    PlantedLoop planted{std::string(f.path), std::string(f.feature), turns, at, ""};
    for (std::int64_t i = 0; i < turns; ++i) {
      Usage u;
      u.model = "default";
      u.input_tokens = rng_.uniform(20000, 30000);
      u.output_tokens = rng_.uniform(800, 1500);
      u.files_read = rng_.uniform(4, 6);
      u.lines_changed = rng_.uniform(15, 40);
      u.lines_emitted = *u.lines_changed + 5;
      auto charged = charge(Kind::kAgentPrompt, std::move(u), at, user, kLoopTurnCostMinMc);
      if (!charged.ok()) return charged.error();
      Event& e = **charged;
      e.metadata.file = planted.file;
      e.metadata.feature = planted.feature;
      e.metadata.intent = i == 0 ? "feature" : "fix";
      snapshot(e.metadata.snapshot_id);
      if (i == 0) planted.snapshot_id = e.metadata.snapshot_id;
      at += rng_.uniform(15, 50) * kMsPerMinute;
    }
    a_.truth.loops.push_back(std::move(planted));
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
      Event& e = **charged;
      const std::string& key = a_.page_load_keys[static_cast<std::size_t>(
          rng_.uniform(0, static_cast<std::int64_t>(a_.page_load_keys.size()) - 1))];
      e.metadata.call_site = a_.page_loads.call_site;
      e.metadata.request_hash = key;
      e.cache_key = key;
      a_.page_load_keys_used.insert(key);
      ++a_.page_loads.calls;
    }
    return ok_status();
  }

  const Profile& p_;
  const pricing::RateCard& card_;
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
    if (profile->outlier_weight_factor > 0) {
      a.weights[0] = profile->outlier_weight_factor * 1000;
      a.truth.outlier_users.push_back(a.users[0]);
    }
    for (std::int64_t k = 0; k < profile->page_load_keys; ++k) {
      a.page_load_keys.push_back(hex64(rng.next()));
    }
    a.page_loads.call_site =
        profile->page_load_calls_min >= 20 ? "pages/Home.onLoad" : "pages/Pricing.onLoad";
    a.truth.account_id = a.id;
    a.truth.users = a.users;
    a.truth.discuss_heavy = profile->discuss_permille > 150;
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
      DayGenerator gen(*profile, card, mix(options.seed, i + 1, static_cast<std::uint64_t>(d) + 1),
                       accounts[i], day_ms, events);
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
