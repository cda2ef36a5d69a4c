// src/cli/offline.cc
// creditctl simulate | replay | audit: option parsing, file handling, human and JSON
// output, exit codes (offline.h).
#include "cli/offline.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>

#include "analytics/audit.h"
#include "analytics/event_json.h"
#include "analytics/replay.h"
#include "base/json_writer.h"
#include "cli/progress.h"
#include "pricing/plan.h"
#include "pricing/rate_card.h"
#include "sim/simulate.h"
#include "time/clock.h"
#include "time/time.h"

namespace credit::cli {
namespace {

void usage_error(const std::string& message) {
  std::cerr << "creditctl: " << message << "\n";
}

std::optional<pricing::RateCard> load_card(const std::string& path) {
  auto card = pricing::RateCard::load_file(path);
  if (!card.ok()) {
    usage_error("rate card: " + card.error().message);
    return std::nullopt;
  }
  return std::move(*card);
}

// The catalog when the file loads; `required` makes a failure an error.
bool load_plans(const std::string& path, bool required, std::optional<pricing::Catalog>& out) {
  auto catalog = pricing::load_catalog_file(path);
  if (catalog.ok()) {
    out = std::move(*catalog);
    return true;
  }
  if (required) usage_error("plans: " + catalog.error().message);
  return !required;
}

std::uint64_t file_size(const std::string& path) {
  struct stat st {};
  if (path == "-" || ::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.st_size);
}

// Streams the events of `path` into `add`; reports bad lines; returns the exit code.
// `opened` is false when the file could not be read at all (then nothing was added).
template <typename Add>
int read_events(const std::string& path, bool& opened, Add add) {
  analytics::NdjsonReader reader(path);
  opened = reader.ok();
  if (!reader.ok()) {
    std::cerr << "creditctl: cannot open " << path << "\n";
    return kExitBadInput;
  }
  Progress progress("reading", file_size(path));
  ledger::Event e;
  while (reader.next(e)) {
    add(e);
    progress.update(reader.bytes_read());
  }
  progress.finish();
  for (const auto& err : reader.errors()) {
    std::cerr << path << ":" << err.line << ": " << err.reason << "\n";
  }
  if (reader.error_count() > reader.errors().size()) {
    std::cerr << path << ": " << reader.error_count() - reader.errors().size()
              << " more bad lines\n";
  }
  if (reader.error_count() > 0) {
    std::cerr << "creditctl: " << reader.error_count() << " bad line(s) skipped\n";
    return kExitBadInput;
  }
  return kExitOk;
}

bool write_output(const std::string& path, const std::string& text) {
  if (path == "-" || path.empty()) {
    std::cout << text;
    return static_cast<bool>(std::cout.flush());
  }
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) std::cerr << "creditctl: cannot write " << path << "\n";
  return static_cast<bool>(f);
}

// "0.3" -> 300 permille (at most 3 decimals, 0..1).
std::optional<std::int64_t> parse_fraction_permille(std::string_view text) {
  auto amount = parse_credits(text);  // the same exact decimal syntax, in thousandths
  if (!amount.ok() || amount->mc() < 0 || amount->mc() > 1000) return std::nullopt;
  return amount->mc();
}

}  // namespace

int run_simulate(const SimulateArgs& args) {
  std::optional<std::int64_t> start;
  if (args.start.empty()) {
    // The default period ends today: it starts at the UTC midnight D days ago.
    start = day_start_ms(SystemClock().now_ms()) - static_cast<std::int64_t>(args.days) * kMsPerDay;
  } else {
    start = parse_rfc3339(args.start);
  }
  if (!start) {
    usage_error("--start: not an RFC 3339 instant: " + args.start);
    return kExitUsage;
  }
  if (sim::find_profile(args.profile) == nullptr) {
    std::string names;
    for (const auto& p : sim::profiles())
      names += (names.empty() ? "" : ", ") + std::string(p.name);
    usage_error("--profile: unknown profile '" + args.profile + "' (" + names + ")");
    return kExitUsage;
  }
  auto card = load_card(args.rate_card);
  if (!card) return kExitUsage;
  if (!args.plan.empty()) {
    std::optional<pricing::Catalog> catalog;
    if (!load_plans(args.plans, true, catalog)) return kExitUsage;
    if (catalog->find(args.plan) == nullptr) {
      usage_error("--plan: unknown plan '" + args.plan + "'");
      return kExitUsage;
    }
  }
  std::ofstream file;
  std::ostream* out = &std::cout;
  if (args.out != "-") {
    file.open(args.out, std::ios::binary | std::ios::trunc);
    if (!file) {
      usage_error("cannot write " + args.out);
      return kExitUsage;
    }
    out = &file;
  }
  sim::SimOptions opts;
  opts.profile = args.profile;
  opts.accounts = args.accounts;
  opts.days = args.days;
  opts.seed = args.seed;
  opts.start_ms = *start;
  opts.plan = args.plan;
  Progress progress("simulating", static_cast<std::uint64_t>(args.days));
  std::string line;
  auto truth = sim::simulate(
      opts, *card,
      [&](const ledger::Event& e) {
        line.clear();
        analytics::append_event_json(line, e);
        line += '\n';
        out->write(line.data(), static_cast<std::streamsize>(line.size()));
      },
      [&](std::int64_t days_done) { progress.update(static_cast<std::uint64_t>(days_done)); });
  progress.finish();
  if (!truth.ok()) {
    usage_error(truth.error().message);
    return kExitUsage;
  }
  out->flush();
  if (!*out) {
    usage_error("cannot write " + args.out);
    return kExitUsage;
  }
  if (!args.truth.empty() && !write_output(args.truth, sim::truth_json(*truth))) {
    return kExitUsage;
  }
  std::cerr << fmt::format("simulated {} events: profile {}, {} account(s), {} day(s), seed {}\n",
                           truth->events, args.profile, args.accounts, args.days, args.seed);
  return kExitOk;
}

int run_replay(const ReplayArgs& args) {
  if (args.policies.empty()) {
    usage_error("replay: give at least one --policy");
    return kExitUsage;
  }
  auto card = load_card(args.rate_card);
  if (!card) return kExitUsage;
  bool needs_plans = !args.plan.empty();
  for (const auto& p : args.policies) needs_plans = needs_plans || p.starts_with("plan:");
  std::optional<pricing::Catalog> catalog;
  if (!load_plans(args.plans, needs_plans, catalog)) return kExitUsage;
  const pricing::Plan* limit_plan = nullptr;
  if (!args.plan.empty()) {
    limit_plan = catalog->find(args.plan);
    if (limit_plan == nullptr) {
      usage_error("--plan: unknown plan '" + args.plan + "'");
      return kExitUsage;
    }
  }
  std::vector<analytics::Policy> policies;
  for (const auto& text : args.policies) {
    auto p = analytics::parse_policy(text);
    if (!p.ok()) {
      usage_error("--policy: " + p.error().message);
      return kExitUsage;
    }
    if (p->kind == analytics::PolicyKind::kPlan && catalog->find(p->plan_id) == nullptr) {
      usage_error("--policy: unknown plan '" + p->plan_id + "'");
      return kExitUsage;
    }
    p->cache_ttl_ms = args.ttl_days * kMsPerDay;
    for (const auto& rate : args.hit_rates) {
      auto eq = rate.rfind('=');
      auto permille = parse_fraction_permille(eq == std::string::npos ? rate : rate.substr(eq + 1));
      if (!permille) {
        usage_error("--hit-rate: expected a fraction 0..1 with at most 3 decimals: " + rate);
        return kExitUsage;
      }
      if (eq == std::string::npos) {
        p->hit_rate_permille = *permille;
      } else {
        p->hit_rate_permille_by_call_site.emplace_back(rate.substr(0, eq), *permille);
      }
    }
    if (limit_plan != nullptr) {
      if (limit_plan->rate_limits.per_user) p->per_user = *limit_plan->rate_limits.per_user;
      p->per_account = limit_plan->rate_limits.per_account;
    }
    if (args.per_minute > 0) {
      p->per_user = {args.per_minute, args.burst > 0 ? args.burst : args.per_minute};
    }
    policies.push_back(std::move(*p));
  }
  analytics::Replayer replayer(*card, catalog ? &*catalog : nullptr, std::move(policies));
  bool opened = false;
  int code = read_events(args.file, opened, [&](const ledger::Event& e) { replayer.add(e); });
  if (!opened) return code;
  analytics::ReplayReport r = replayer.finish();

  std::vector<const analytics::PolicyOutcome*> rows;
  for (const auto& p : r.policies) rows.push_back(&p);
  if (r.combined) rows.push_back(&*r.combined);
  std::string out;
  if (args.json) {
    json::Writer w(out);
    w.begin_object().key("events").integer(r.events).key("period_days").integer(r.period_days);
    w.key("before").raw(format_credits(r.before));
    w.key("reprice_errors").integer(r.reprice_errors);
    w.key("policies").begin_array();
    for (const auto* p : rows) {
      w.begin_object().key("policy").string(p->name);
      w.key("before").raw(format_credits(p->before));
      w.key("after").raw(format_credits(p->after));
      w.key("saved").raw(format_credits(p->saved));
      w.key("saved_per_cycle").raw(format_credits(p->saved_per_cycle));
      w.key("events_changed").integer(p->events_changed);
      w.key("events_dropped").integer(p->events_dropped);
      w.key("plan");
      if (p->plan) {
        w.begin_object().key("id").string(p->plan->plan_id);
        w.key("price_usd").raw(fmt::format("{:.2f}", p->plan->price_usd_cents / 100.0));
        w.key("allowance").raw(format_credits(p->plan->allowance));
        w.key("need_per_cycle").raw(format_credits(p->plan->need_per_cycle));
        w.key("fits").boolean(p->plan->fits).end_object();
      } else {
        w.null();
      }
      w.end_object();
    }
    w.end_array().end_object();
    out += '\n';
  } else {
    out += fmt::format("{} events over {} day(s): {} credits\n\n", r.events, r.period_days,
                       format_credits(r.before));
    out += fmt::format("{:<16} {:>12} {:>12} {:>12} {:>14} {:>8} {:>8}\n", "policy", "before",
                       "after", "saved", "saved/cycle", "changed", "dropped");
    for (const auto* p : rows) {
      out +=
          fmt::format("{:<16} {:>12} {:>12} {:>12} {:>14} {:>8} {:>8}\n", p->name,
                      format_credits(p->before), format_credits(p->after), format_credits(p->saved),
                      format_credits(p->saved_per_cycle), p->events_changed, p->events_dropped);
      if (p->plan) {
        out += fmt::format(
            "  plan {}: {:.2f} USD, allowance {}, need per cycle {}: {}\n", p->plan->plan_id,
            p->plan->price_usd_cents / 100.0, format_credits(p->plan->allowance),
            format_credits(p->plan->need_per_cycle), p->plan->fits ? "fits" : "does not fit");
      }
    }
  }
  if (!write_output("-", out)) return kExitUsage;
  return code;
}

int run_audit(const AuditArgs& args) {
  const std::string format = args.json ? "json" : args.format;
  if (format != "json" && format != "md" && format != "html") {
    usage_error("--format: expected json, md or html");
    return kExitUsage;
  }
  auto card = load_card(args.rate_card);
  if (!card) return kExitUsage;
  std::optional<pricing::Catalog> catalog;
  if (!load_plans(args.plans, !args.plan.empty(), catalog)) return kExitUsage;
  if (!args.plan.empty() && catalog->find(args.plan) == nullptr) {
    usage_error("--plan: unknown plan '" + args.plan + "'");
    return kExitUsage;
  }
  std::optional<std::int64_t> from_ms, to_ms;
  for (auto [text, out] : {std::pair{&args.from, &from_ms}, std::pair{&args.to, &to_ms}}) {
    if (text->empty()) continue;
    *out = parse_rfc3339(*text);
    if (!*out) {
      usage_error("--from/--to: not an RFC 3339 instant: " + *text);
      return kExitUsage;
    }
  }
  analytics::AuditOptions options;
  options.catalog = catalog ? &*catalog : nullptr;
  options.plan_id = args.plan;
  analytics::Auditor auditor(*card, options);
  bool opened = false;
  int code = read_events(args.file, opened, [&](const ledger::Event& e) {
    if (from_ms && e.at_ms < *from_ms) return;
    if (to_ms && e.at_ms >= *to_ms) return;
    if (args.account.empty() || e.account_id == args.account) auditor.add(e);
  });
  if (!opened) return code;
  auto reports = auditor.finish();
  std::string text = format == "json" ? analytics::audit_json(reports)
                     : format == "md" ? analytics::audit_markdown(reports)
                                      : analytics::audit_html(reports);
  if (!write_output(args.out, text)) return kExitUsage;
  return code;
}

void add_offline_commands(CLI::App& app, OfflineCommands& c) {
  auto* sim = app.add_subcommand("simulate", "Generate a realistic NDJSON event file");
  sim->add_option("--profile", c.simulate.profile,
                  "clean | typical | llm-on-page-load | regression-heavy | unscoped | "
                  "discuss-heavy | outlier-user")
      ->capture_default_str();
  sim->add_option("--accounts", c.simulate.accounts, "Number of accounts")
      ->check(CLI::Range(std::int64_t{1}, sim::kAccountsMax))
      ->capture_default_str();
  sim->add_option("--days", c.simulate.days, "Number of days")
      ->check(CLI::Range(std::int64_t{1}, sim::kDaysMax))
      ->capture_default_str();
  sim->add_option("--seed", c.simulate.seed, "PRNG seed")->capture_default_str();
  sim->add_option("--start", c.simulate.start,
                  "First day (RFC 3339; default: the UTC midnight --days days before now)");
  sim->add_option("--plan", c.simulate.plan, "Open each account on this plan");
  sim->add_option("--plans", c.simulate.plans, "Plan catalog (TOML)")->capture_default_str();
  sim->add_option("--out", c.simulate.out, "Event file (- for stdout)")->capture_default_str();
  sim->add_option("--truth", c.simulate.truth, "Write the planted waste as JSON here");
  sim->add_option("--rate-card", c.simulate.rate_card, "Rate card (TOML)")->capture_default_str();
  c.simulate_cmd = sim;

  auto* rep = app.add_subcommand("replay", "Re-price an event file under what-if policies");
  rep->add_option("file", c.replay.file, "NDJSON event file (- for stdin)")->required();
  rep->add_option("--policy", c.replay.policies,
                  "cache | scoped | discuss-off | rate-limit | plan:<id> | editor | "
                  "revert-loops | outliers (repeatable)")
      ->required();
  rep->add_flag("--json", c.replay.json, "JSON output");
  rep->add_option("--ttl-days", c.replay.ttl_days, "Cache TTL in days")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{3660}))
      ->capture_default_str();
  rep->add_option("--hit-rate", c.replay.hit_rates,
                  "Cache: a given hit rate (0..1) instead of repeats, or SITE=RATE per call site");
  rep->add_option("--per-minute", c.replay.per_minute, "Rate limit per user per minute")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1'000'000}));
  rep->add_option("--burst", c.replay.burst, "Rate-limit burst")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1'000'000}));
  rep->add_option("--plan", c.replay.plan, "Take the rate limits of this plan");
  rep->add_option("--plans", c.replay.plans, "Plan catalog (TOML)")->capture_default_str();
  rep->add_option("--rate-card", c.replay.rate_card, "Rate card (TOML)")->capture_default_str();
  c.replay_cmd = rep;

  auto* aud = app.add_subcommand(
      "audit",
      "The credit audit of an event file, or of an account on the server (online when the "
      "argument is not an existing file, '-', a path with '/' or a .ndjson/.jsonl/.json name)");
  aud->add_option("file", c.audit.file, "NDJSON event file (- for stdin), or an account id")
      ->required();
  aud->add_flag("--online", c.audit.online, "The argument is an account on the server");
  aud->add_option("--from", c.audit.from, "Only events at or after this instant (RFC 3339)");
  aud->add_option("--to", c.audit.to, "Only events before this instant (RFC 3339)");
  aud->add_option("--format", c.audit.format, "json | md | html")
      ->check(CLI::IsMember({"json", "md", "html"}))
      ->capture_default_str();
  aud->add_flag("--json", c.audit.json, "Same as --format json");
  aud->add_option("--plan", c.audit.plan, "The account's plan (for forecast and advice)");
  aud->add_option("--plans", c.audit.plans, "Plan catalog (TOML)")->capture_default_str();
  aud->add_option("--rate-card", c.audit.rate_card, "Rate card (TOML)")->capture_default_str();
  aud->add_option("--account", c.audit.account, "Only this account");
  aud->add_option("--out", c.audit.out, "Write the report here (- for stdout)")
      ->capture_default_str();
  c.audit_cmd = aud;
}

std::optional<int> run_offline_command(const OfflineCommands& c) {
  if (c.simulate_cmd != nullptr && c.simulate_cmd->parsed()) return run_simulate(c.simulate);
  if (c.replay_cmd != nullptr && c.replay_cmd->parsed()) return run_replay(c.replay);
  if (c.audit_cmd != nullptr && c.audit_cmd->parsed()) return run_audit(c.audit);
  return std::nullopt;
}

}  // namespace credit::cli
