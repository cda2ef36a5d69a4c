// src/sim/simulate.cc
// The simulator's profiles, the per-day generator and the truth's JSON (see simulate.h).
#include "sim/simulate.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>
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
  // keys), outlier factor.
  static const std::vector<Profile> kProfiles = {
      {"clean", 700, 210, 80, 10, 120, 0, 0, 0, 0, 0, 0, 0, 0, 0},
      {"typical", 680, 210, 90, 20, 120, 150, 150, 30, 30, 40, 2, 5, 1, 0},
      {"llm-on-page-load", 680, 210, 90, 20, 120, 100, 100, 30, 20, 30, 40, 80, 2, 0},
      {"regression-heavy", 680, 210, 90, 20, 120, 700, 100, 30, 20, 30, 0, 0, 0, 0},
      {"unscoped", 680, 210, 90, 20, 120, 100, 700, 200, 30, 30, 0, 0, 0, 0},
      {"discuss-heavy", 450, 200, 320, 30, 120, 100, 100, 30, 20, 30, 0, 0, 0, 0},
      {"outlier-user", 680, 210, 90, 20, 120, 100, 100, 30, 20, 30, 0, 0, 0, 8},
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

std::string hex64(std::uint64_t v) {
  return fmt::format("{:016x}", v);
}

struct AccountState {
  std::string id;
  std::vector<std::string> users;
  std::vector<std::int64_t> weights;
  std::vector<std::string> page_load_keys;
  std::int64_t loops = 0;
  std::int64_t snapshots = 0;
  std::int64_t events = 0;
  AccountTruth truth;
  std::map<std::string, std::int64_t> unscoped_user, unscoped_file;
  PlantedRepeats page_loads;
  std::set<std::string> page_load_keys_used;
};

class DayGenerator {
 public:
  DayGenerator(const Profile& p, const pricing::RateCard& card, std::uint64_t seed, AccountState& a,
               std::int64_t day_ms, std::vector<Event>& out)
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
    Status st = spend(budget(p_.agent_permille), [&] { return agent_turn(); });
    if (st.ok()) st = spend(budget(p_.integration_permille), [&] { return integration(); });
    if (st.ok()) st = spend(budget(p_.discuss_permille), [&] { return discuss_turn(); });
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

  std::string snapshot() { return fmt::format("snap-{}-{:05}", a_.id, ++a_.snapshots); }

  // Prices `u`, raising its input tokens until the cost reaches `min_mc`.
  Result<Event> charge(Kind kind, Usage u, std::int64_t at_ms, std::string user,
                       std::int64_t min_mc = 0) {
    Result<pricing::Price> price = card_.price(kind, u);
    for (std::int64_t i = 0; price.ok() && price->cost.mc() < min_mc && i < kEscalationStepsMax;
         ++i) {
      u.input_tokens = u.input_tokens.value_or(0) * 5 / 4 + 500;
      price = card_.price(kind, u);
    }
    if (!price.ok()) return price.error();
    Event e;
    e.at_ms = at_ms;
    e.account_id = a_.id;
    e.user_id = std::move(user);
    e.type = ledger::EventType::kCharge;
    e.kind = kind;
    e.pool = std::string(price->pool);
    e.credits = price->cost;
    e.priced_by = "usage";
    e.usage = std::move(u);
    e.rate_card_version = card_.version();
    e.idempotency_key = fmt::format("sim-{}-{}", a_.id, ++a_.events);
    return e;
  }

  Result<Millicredits> push(Result<Event> e) {
    if (!e.ok()) return e.error();
    Millicredits c = e->credits;
    out_.push_back(std::move(*e));
    return c;
  }

  Result<Millicredits> agent_turn() {
    const std::size_t ui = pick_user();
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
      u.input_tokens = rng_.uniform(2000, 8000);
      u.output_tokens = rng_.uniform(100, 500);
      u.files_read = rng_.uniform(1, 3);
      u.lines_changed = rng_.uniform(6, 40);
      u.lines_emitted = *u.lines_changed + rng_.uniform(0, 10);
    }
    auto e = charge(Kind::kAgentPrompt, std::move(u), work_time(), user, min_mc);
    if (!e.ok()) return e.error();
    e->metadata.file = std::string(f.path);
    e->metadata.feature = std::string(f.feature);
    e->metadata.intent = rng_.chance(850) ? "feature" : "question";
    if (rng_.chance(p_.no_snapshot_permille)) {
      ++a_.truth.turns_without_snapshot;
    } else {
      e->metadata.snapshot_id = snapshot();
    }
    if (unscoped) {
      ++a_.truth.unscoped_prompts;
      ++a_.unscoped_user[user];
      ++a_.unscoped_file[std::string(f.path)];
    }
    if (small) ++a_.truth.small_edits;
    return push(std::move(e));
  }

  Result<Millicredits> discuss_turn() {
    const std::string& user = a_.users[pick_user()];
    Usage u;
    u.model = "default";
    u.input_tokens = rng_.uniform(2000, 4000);
    u.output_tokens = rng_.uniform(200, 400);
    auto e = charge(Kind::kDiscussTurn, std::move(u), work_time(), user);
    if (!e.ok()) return e.error();
    e->metadata.feature = std::string(pick_file().feature);
    e->metadata.intent = rng_.chance(750) ? "question" : "feature";
    return push(std::move(e));
  }

  Result<Millicredits> integration() {
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
    auto e = charge(kind, std::move(u), work_time(), std::string(kAppUser));
    if (!e.ok()) return e.error();
    e->metadata.call_site = std::string(site);
    e->metadata.request_hash = hex64(rng_.next());
    if (kind != Kind::kSendEmail) e->cache_key = e->metadata.request_hash;
    return push(std::move(e));
  }

  Result<Millicredits> backend() {
    Usage u;
    u.duration_ms = rng_.uniform(15'000, 60'000);
    u.records = rng_.uniform(200, 3000);
    auto e = charge(Kind::kBackendFunction, std::move(u), work_time(), std::string(kAppUser), 1);
    if (!e.ok()) return e.error();
    e->metadata.call_site = "functions/syncOrders";
    e->metadata.request_hash = hex64(rng_.next());
    return push(std::move(e));
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
      auto e = charge(Kind::kAgentPrompt, std::move(u), at, user, kLoopTurnCostMinMc);
      if (!e.ok()) return e.error();
      e->metadata.file = planted.file;
      e->metadata.feature = planted.feature;
      e->metadata.intent = i == 0 ? "feature" : "fix";
      e->metadata.snapshot_id = snapshot();
      if (i == 0) planted.snapshot_id = e->metadata.snapshot_id;
      out_.push_back(std::move(*e));
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
      auto e = charge(Kind::kInvokeLlm, std::move(u), work_time(), std::string(kAppUser));
      if (!e.ok()) return e.error();
      const std::string& key = a_.page_load_keys[static_cast<std::size_t>(
          rng_.uniform(0, static_cast<std::int64_t>(a_.page_load_keys.size()) - 1))];
      e->metadata.call_site = a_.page_loads.call_site;
      e->metadata.request_hash = key;
      e->cache_key = key;
      a_.page_load_keys_used.insert(key);
      ++a_.page_loads.calls;
      out_.push_back(std::move(*e));
    }
    return ok_status();
  }

  const Profile& p_;
  const pricing::RateCard& card_;
  Prng rng_;
  AccountState& a_;
  std::int64_t day_ms_;
  std::vector<Event>& out_;
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

}  // namespace

Result<Truth> simulate(const SimOptions& options, const pricing::RateCard& card,
                       const EventSink& sink, const DayProgress& progress) {
  const Profile* profile = find_profile(options.profile);
  auto invalid = [](std::string param, std::string message) {
    Error e(ErrorCode::kInvalidRequest, std::move(message));
    e.with_string("param", param);
    return e;
  };
  if (profile == nullptr) return invalid("profile", "unknown profile '" + options.profile + "'");
  if (options.accounts < 1 || options.accounts > kAccountsMax) {
    return invalid("accounts", "accounts must be 1-10000");
  }
  if (options.days < 1 || options.days > kDaysMax) return invalid("days", "days must be 1-3660");

  Truth truth;
  truth.profile = std::string(profile->name);
  truth.seed = options.seed;
  truth.start_ms = day_start_ms(options.start_ms);
  truth.days = options.days;

  std::vector<AccountState> accounts(static_cast<std::size_t>(options.accounts));
  for (std::size_t i = 0; i < accounts.size(); ++i) {
    AccountState& a = accounts[i];
    Prng rng(mix(options.seed, i, 0xACC0));
    a.id = fmt::format("acct-{:03}", i + 1);
    const std::int64_t users = profile->outlier_weight_factor > 0 ? 4 : rng.uniform(3, 5);
    for (std::int64_t j = 0; j < users; ++j) {
      a.users.emplace_back(kUserNames[(i + static_cast<std::size_t>(j)) % kUserNames.size()]);
      a.weights.push_back(rng.uniform(800, 1200));
    }
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

  std::vector<std::pair<std::int64_t, std::size_t>> order;  // (at_ms, index): unique
  std::uint64_t seq = 0;
  if (!options.plan.empty()) {
    for (const auto& a : accounts) {
      Event e;
      e.seq = ++seq;
      e.at_ms = truth.start_ms;
      e.account_id = a.id;
      e.type = ledger::EventType::kAccountCreated;
      e.plan = options.plan;
      e.idempotency_key = fmt::format("sim-{}-account", a.id);
      sink(e);
    }
  }
  // Day d's events, generated account by account (each from its own seed and state).
  auto generate = [&](std::int64_t d, std::vector<Event>& day_events) -> Status {
    const std::int64_t day_ms = truth.start_ms + d * kMsPerDay;
    day_events.clear();
    for (std::size_t i = 0; i < accounts.size(); ++i) {
      DayGenerator gen(*profile, card, mix(options.seed, i + 1, static_cast<std::uint64_t>(d) + 1),
                       accounts[i], day_ms, day_events);
      Status st = gen.run();
      if (!st.ok()) return st;
    }
    return ok_status();
  };
  // Two threads: the next day is generated while this one is sorted and given to the
  // sink (which runs on the caller's thread only). Generation reads and writes only the
  // account states, the sink only the day's events, so the output is the serial one.
  std::vector<Event> day_events, next_events;
  Status generated = generate(0, day_events);
  for (std::int64_t d = 0; d < options.days; ++d) {
    if (!generated.ok()) return generated.error();
    Status next_generated = ok_status();
    std::thread next;
    if (d + 1 < options.days) {
      next = std::thread([&, d] { next_generated = generate(d + 1, next_events); });
    }
    // Time order, ties in generation order: sort the indices, not the events (an Event is
    // a kilobyte; moving them was most of the simulator's time).
    order.resize(day_events.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = {day_events[i].at_ms, i};
    std::sort(order.begin(), order.end());
    for (const auto& [at_ms, i] : order) {
      Event& e = day_events[i];
      e.seq = ++seq;
      sink(e);
    }
    if (progress) progress(d + 1);
    if (next.joinable()) next.join();
    generated = std::move(next_generated);
    std::swap(day_events, next_events);
  }
  truth.events = static_cast<std::int64_t>(seq);
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
  w.key("seed").integer(static_cast<std::int64_t>(t.seed));
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
