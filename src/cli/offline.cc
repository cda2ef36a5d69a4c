// src/cli/offline.cc
// creditctl simulate | replay | audit: option parsing, file handling, human and JSON
// output, exit codes (offline.h).
#include "cli/offline.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "analytics/audit.h"
#include "analytics/event_json.h"
#include "analytics/range.h"
#include "analytics/refunds.h"
#include "analytics/replay.h"
#include "base/decimal_option.h"
#include "base/json_writer.h"
#include "cli/progress.h"
#include "cli/sharded_reader.h"
#include "cli/time_order.h"
#include "pricing/plan.h"
#include "pricing/rate_card.h"
#include "sim/simulate.h"
#include "time/clock.h"
#include "time/time.h"

namespace credit::cli {
namespace {

// The audit's batches (ShardedReader::Options).
constexpr std::size_t kAuditBatchBytes = std::size_t{16} << 20;
constexpr std::size_t kAuditBatchesInFlight = 3;

void usage_error(const std::string& message) {
  std::cerr << "creditctl: " << message << "\n";
}

// The file a config option names. A path given on the command line is used as given.
// The default (relative to the repository root) is looked up in the working directory,
// then beside the executable (<exe dir>/config, <exe dir>/../config,
// <exe dir>/../share/creditd/config) and in the source tree creditctl was built from, so
// creditctl works from any directory. Empty when none exists; `tried` lists the places.
std::string resolve_config(const std::string& path, bool given, std::string_view default_path,
                           std::string& tried) {
  namespace fs = std::filesystem;
  if (given || path != default_path) return path;
  const fs::path rel(default_path);  // "config/<file>"
  std::vector<fs::path> candidates = {rel};
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path dir = exe.parent_path();
    candidates.push_back(dir / rel);
    candidates.push_back(dir.parent_path() / rel);
    candidates.push_back(dir.parent_path() / "share" / "creditd" / rel);
  }
#ifdef CREDITD_SOURCE_DIR
  candidates.push_back(fs::path(CREDITD_SOURCE_DIR) / rel);
#endif
  for (const auto& c : candidates) {
    if (fs::is_regular_file(c, ec)) return c.string();
    tried += tried.empty() ? c.string() : ", " + c.string();
  }
  return std::string();
}

std::optional<pricing::RateCard> load_card(const std::string& path_text, bool given) {
  std::string tried;
  const std::string path = resolve_config(path_text, given, kRateCardPathDefault, tried);
  if (path.empty()) {
    usage_error("rate card: " + path_text + " not found (looked in " + tried +
                "); give one with --rate-card FILE");
    return std::nullopt;
  }
  auto card = pricing::RateCard::load_file(path);
  if (!card.ok()) {
    usage_error("rate card: " + card.error().message);
    return std::nullopt;
  }
  return std::move(*card);
}

// The catalog when the file loads; `required` makes a failure an error, and so does a
// --plans FILE given on the command line (`given`, even when its text is the default's;
// a caller that sets another path asks for it too): a file asked for is read, used or
// not. A catalog with a plan that lacks a pool `card` draws from is refused as creditd
// refuses to start with it (pricing::check_rate_card_pools); the default catalog, not
// asked for, is then not used.
bool load_plans(const std::string& path_text, bool given, bool required,
                const pricing::RateCard& card, std::optional<pricing::Catalog>& out) {
  required = required || given || path_text != kPlansPathDefault;
  std::string tried;
  const std::string path = resolve_config(path_text, given, kPlansPathDefault, tried);
  if (path.empty()) {
    if (required) {
      usage_error("plans: " + path_text + " not found (looked in " + tried +
                  "); give one with --plans FILE");
    }
    return !required;
  }
  auto catalog = pricing::load_catalog_file(path);
  if (catalog.ok()) {
    if (Status s = pricing::check_rate_card_pools(*catalog, card); !s.ok()) {
      if (required) usage_error("rate card (with the plans of " + path + "): " + s.error().message);
      return !required;
    }
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

// Reports the bad lines of a reader, and a read error, on stderr; returns the exit code.
template <typename Reader>
int report_bad_lines(const std::string& path, const Reader& reader) {
  for (const auto& err : reader.errors()) {
    std::cerr << path << ":" << err.line << ": " << err.reason << "\n";
  }
  if (reader.error_count() > reader.errors().size()) {
    std::cerr << path << ": " << reader.error_count() - reader.errors().size()
              << " more bad lines\n";
  }
  int code = kExitOk;
  if (reader.error_count() > 0) {
    std::cerr << "creditctl: " << reader.error_count() << " bad line(s) skipped\n";
    code = kExitBadInput;
  }
  if (!reader.problem().empty()) {
    std::cerr << "creditctl: cannot read " << path << ": " << reader.problem() << "\n";
    code = kExitBadInput;
  }
  return code;
}

// Streams the events of `path` into `add(shard, event)` on ShardedReader's threads, every
// account's events to one shard in file order, then calls `done(shard)` on the shard's
// thread. Reports bad lines when `report` returns true (it is asked after the reading);
// returns the exit code. `opened` is false when the file could not be read at all (then
// nothing was added and `done` not called).
// `shown` names the input in messages when it is not `path` (a spooled standard input).
int read_events(const std::string& path, const ShardedReader::Options& options, bool& opened,
                const ShardedReader::Add& add, const ShardedReader::Done& done,
                const std::function<bool()>& report = {}, const std::string& shown = "") {
  const std::string& name = shown.empty() ? path : shown;
  ShardedReader reader(path, options);
  opened = reader.ok();
  if (!reader.ok()) {
    std::cerr << "creditctl: cannot open " << name << ": " << reader.problem() << "\n";
    return kExitBadInput;
  }
  Progress progress("reading", file_size(path));
  reader.run(add, done, &progress);
  progress.finish();
  if (report && !report()) return kExitOk;
  return report_bad_lines(name, reader);
}

// Standard input or a pipe, copied to a temporary file (removed with this) so that it can
// be read twice; a regular file, a directory or a missing path is read where it is.
class Spool {
 public:
  explicit Spool(const std::string& path) : path_(path) {
    struct stat st {};
    const bool stream = path == "-" || (::stat(path.c_str(), &st) == 0 &&
                                        (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)));
    if (!stream) return;
    std::error_code ec;
    std::filesystem::path dir = std::filesystem::temp_directory_path(ec);
    if (ec) dir = "/tmp";
    const std::string pattern = (dir / "creditctl-audit-XXXXXX").string();
    std::vector<char> name(pattern.begin(), pattern.end());
    name.push_back('\0');
    const int out = ::mkstemp(name.data());
    if (out < 0) {
      problem_ = "cannot create a temporary file in " + pattern;
      return;
    }
    temp_ = name.data();
    const int in = path == "-" ? 0 : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (in < 0) {
      problem_ = "cannot open " + path;
    } else {
      std::vector<char> buffer(std::size_t{1} << 20);
      for (;;) {
        const ssize_t n = ::read(in, buffer.data(), buffer.size());
        if (n == 0) break;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 || !write_all(out, buffer.data(), static_cast<std::size_t>(n))) {
          problem_ = "cannot copy " + path + " to " + temp_;
          break;
        }
      }
      if (in != 0) ::close(in);
    }
    ::close(out);
  }
  ~Spool() {
    if (!temp_.empty()) ::unlink(temp_.c_str());
  }
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // The file to read.
  const std::string& path() const { return temp_.empty() ? path_ : temp_; }
  // Why the input could not be spooled ("" when it was, or needed not be).
  const std::string& problem() const { return problem_; }

 private:
  static bool write_all(int fd, const char* data, std::size_t size) {
    while (size > 0) {
      const ssize_t n = ::write(fd, data, size);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data += n;
      size -= static_cast<std::size_t>(n);
    }
    return true;
  }
  std::string path_;
  std::string temp_;
  std::string problem_;
};

// The refunds among the events of `path` that `wanted` keeps (the audit's first pass:
// analytics/refunds.h). Only lines that may be refunds are parsed (a refund line names
// its type; an escaped one has a backslash-u); bad lines are left to the second pass.
// The charge a refund refunds, as a key: account, origin, charge id.
std::string refunded_key(const ledger::Event& e) {
  return e.account_id + '\x1f' + (e.imported ? 'i' : 'l') + e.charge_id;
}

void gather_refunds(const std::string& path,
                    const std::function<bool(const ledger::Event&)>& wanted,
                    analytics::RefundBook& book, std::unordered_set<std::string>& refunded) {
  analytics::NdjsonReader reader(path);
  if (!reader.ok()) return;
  std::string_view line;
  bool too_long = false;
  ledger::Event e;
  while (reader.next_line(line, too_long)) {
    if (too_long) continue;
    if (line.find("refund") == std::string_view::npos &&
        line.find("\\u") == std::string_view::npos) {
      continue;
    }
    if (!analytics::parse_event_json(line, e).ok()) continue;
    if (e.type != ledger::EventType::kRefund || !wanted(e)) continue;
    book.add(e);
    if (!e.charge_id.empty()) refunded.insert(refunded_key(e));
  }
}

// The charges before the range (at < from_ms) that the range's refunds refund: the audit
// books those refunds under their metadata (AuditOptions::prior_charges), as the server's
// route does. Only lines naming a charge id are parsed.
std::vector<ledger::Event> gather_prior_charges(const std::string& path, std::int64_t from_ms,
                                                const std::unordered_set<std::string>& refunded) {
  std::vector<ledger::Event> out;
  analytics::NdjsonReader reader(path);
  if (!reader.ok() || refunded.empty()) return out;
  std::string_view line;
  bool too_long = false;
  ledger::Event e;
  while (reader.next_line(line, too_long)) {
    if (too_long || line.find("charge_id") == std::string_view::npos) continue;
    if (!analytics::parse_event_json(line, e).ok() || e.at_ms >= from_ms) continue;
    if (e.type != ledger::EventType::kCharge && e.type != ledger::EventType::kCapture) continue;
    if (e.charge_id.empty() || !refunded.contains(refunded_key(e))) continue;
    out.push_back(e);
  }
  return out;
}

// The same on one thread, in file order, until `add` returns false: then `stopped` is set
// and the bad lines are not reported (the caller reads the file again).
int read_events_serial(const std::string& path, const std::string& shown, bool& opened,
                       bool& stopped, const std::function<bool(const ledger::Event&)>& add) {
  analytics::NdjsonReader reader(path);
  opened = reader.ok();
  stopped = false;
  if (!reader.ok()) {
    std::cerr << "creditctl: cannot open " << shown << ": " << reader.problem() << "\n";
    return kExitBadInput;
  }
  Progress progress("reading", file_size(path));
  ledger::Event e;
  while (reader.next(e)) {
    if (!add(e)) {
      stopped = true;
      return kExitOk;
    }
    progress.update(reader.bytes_read());
  }
  progress.finish();
  return report_bad_lines(shown, reader);
}

// The events of a regular file that `keep` accepts, into `add` on this thread in the
// order of time_order.h (the file is indexed and sorted). `read` is false when it could not
// be (the message is given); returns the exit code.
int read_events_time_ordered(const std::string& path, const std::string& shown, bool& read,
                             const std::function<bool(const ledger::Event&)>& keep,
                             const std::function<void(const ledger::Event&)>& add) {
  TimeOrderedReader reader(path);
  Progress progress("reading in time order", file_size(path));
  read = reader.run(keep, add, &progress);
  progress.finish();
  if (!read) {
    std::cerr << "creditctl: " << shown << ": " << reader.problem() << "\n";
    return kExitBadInput;
  }
  return report_bad_lines(shown, reader);
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return path != "-" && ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
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

// Where a simulated account does not fit a plan: the first pool whose credits a cycle at
// the simulated rate pass its allowance (or that the plan lacks), else whose dearest day
// passes its daily cap.
struct PlanMiss {
  std::string pool;
  Millicredits need;     // a cycle's credits, or the dearest day's
  Millicredits allowed;  // the allowance (0 for a pool the plan lacks), or the daily cap
  bool daily = false;
};

std::optional<PlanMiss> plan_miss(const pricing::Plan& plan, const sim::AccountTruth& account,
                                  std::int64_t days) {
  for (const auto& used : account.pools) {
    const Millicredits need = analytics::per_cycle(used.period, days);
    const pricing::PoolAllowance* pool = plan.pool(used.pool);
    if (pool == nullptr) return PlanMiss{used.pool, need, Millicredits::zero()};
    if (need > pool->allowance) return PlanMiss{used.pool, need, pool->allowance};
    if (pool->daily_cap && used.day_max > *pool->daily_cap) {
      return PlanMiss{used.pool, used.day_max, *pool->daily_cap, true};
    }
  }
  return std::nullopt;
}

std::string describe_miss(const std::string& account, const std::string& plan_id,
                          const PlanMiss& miss) {
  if (miss.daily) {
    return fmt::format("{} spends {} credits of pool {} on its dearest day; {}'s daily cap is {}",
                       account, format_credits(miss.need), miss.pool, plan_id,
                       format_credits(miss.allowed));
  }
  return fmt::format("{} needs {} credits of pool {} a {}-day cycle at the simulated rate; {} {}",
                     account, format_credits(miss.need), miss.pool, analytics::kCycleDaysNominal,
                     plan_id,
                     miss.allowed.is_zero() ? std::string("has no such pool")
                                            : "allows " + format_credits(miss.allowed));
}

// simulate --plan: whether the period fits the plan (DESIGN.md: the simulator's period is
// realistic; one that the plan, or no plan of the catalog, can carry is said on standard
// error, as an import with mode=apply would refuse its charges past the allowance).
// Returns whether every account fits `plan_id`.
bool check_plan_fit(const pricing::Catalog& catalog, const std::string& plan_id,
                    const sim::Truth& truth) {
  auto first_miss = [&](const pricing::Plan& plan) -> std::optional<std::string> {
    for (const auto& a : truth.accounts) {
      if (auto miss = plan_miss(plan, a, truth.days)) {
        return describe_miss(a.account_id, plan.id, *miss);
      }
    }
    return std::nullopt;
  };
  const pricing::Plan* plan = catalog.find(plan_id);
  auto miss = first_miss(*plan);
  if (!miss) return true;
  std::int64_t missing = 0;
  for (const auto& a : truth.accounts) missing += plan_miss(*plan, a, truth.days) ? 1 : 0;
  const pricing::Plan* cheapest = nullptr;
  for (const auto& p : catalog.plans) {
    if ((cheapest == nullptr || p.price_usd_cents < cheapest->price_usd_cents) && !first_miss(p)) {
      cheapest = &p;
    }
  }
  std::cerr << fmt::format(
      "creditctl: warning: {} of {} account(s) do not fit plan {}: {}; an import with "
      "mode=apply into accounts on {} is refused charges past it; {}\n",
      missing, truth.accounts.size(), plan_id, *miss, plan_id,
      cheapest != nullptr ? "plan " + cheapest->id + " is the cheapest that fits every account"
                          : std::string("no plan of the catalog fits every account"));
  return false;
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
    usage_error("--start: not an RFC 3339 instant from 1970 to 9999: " + args.start);
    return kExitUsage;
  }
  // Whole UTC days are generated (sim/simulate.h): refused before the output is opened.
  if (*start != day_start_ms(*start)) {
    usage_error("--start: " + args.start +
                " is not a UTC midnight; the simulator generates whole UTC days (give " +
                format_rfc3339(day_start_ms(*start)) + " or " +
                format_rfc3339(day_start_ms(*start) + kMsPerDay) + ")");
    return kExitUsage;
  }
  // Every instant written must read back (RFC 3339 years 1970..9999, time.h): the last
  // day simulated ends by 10000-01-01T00:00:00Z.
  const std::int64_t end_of_9999_ms = days_from_civil(10000, 1, 1) * kMsPerDay;
  if (*start > end_of_9999_ms - static_cast<std::int64_t>(args.days) * kMsPerDay) {
    usage_error(fmt::format(
        "--start/--days: {} days from {} pass 9999-12-31T23:59:59.999Z, the last instant an "
        "event can have (the last start for {} days is {})",
        args.days, format_rfc3339(*start), args.days,
        format_rfc3339(end_of_9999_ms - static_cast<std::int64_t>(args.days) * kMsPerDay)));
    return kExitUsage;
  }
  if (sim::find_profile(args.profile) == nullptr) {
    std::string names;
    for (const auto& p : sim::profiles())
      names += (names.empty() ? "" : ", ") + std::string(p.name);
    usage_error("--profile: unknown profile '" + args.profile + "' (" + names + ")");
    return kExitUsage;
  }
  auto card = load_card(args.rate_card, args.given.rate_card);
  if (!card) return kExitUsage;
  std::optional<pricing::Catalog> catalog;
  if (!load_plans(args.plans, args.given.plans, !args.plan.empty(), *card, catalog))
    return kExitUsage;
  if (!args.plan.empty()) {
    if (catalog->find(args.plan) == nullptr) {
      usage_error("--plan: unknown plan '" + args.plan + "'");
      return kExitUsage;
    }
  }
  if (args.account_lines && args.plan.empty()) {
    usage_error("--account-lines: give --plan, the plan the account lines name");
    return kExitUsage;
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
  if (args.account_lines) opts.plan = args.plan;
  Progress progress("simulating", static_cast<std::uint64_t>(args.days));
  // Both simulator threads format lines into large blocks, written out in order: no
  // string and no stream call per event.
  auto truth = sim::simulate_formatted(
      opts, *card,
      [](const ledger::Event& e, std::string& text) {
        analytics::append_event_json(text, e);
        text += '\n';
      },
      [&](std::string_view block) {
        out->write(block.data(), static_cast<std::streamsize>(block.size()));
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
  const bool plan_fits = args.plan.empty() || check_plan_fit(*catalog, args.plan, *truth);
  if (args.json) {
    std::string summary;
    json::Writer w(summary);
    w.begin_object().key("events").integer(truth->events).key("profile").string(args.profile);
    w.key("accounts").integer(args.accounts).key("days").integer(args.days);
    w.key("seed").raw(std::to_string(args.seed));  // unsigned 64-bit: written as it is
    w.key("start").string(format_rfc3339(*start));
    if (!args.plan.empty()) w.key("plan").string(args.plan).key("plan_fits").boolean(plan_fits);
    w.end_object();
    std::cerr << summary << '\n';
    return kExitOk;
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
  auto card = load_card(args.rate_card, args.given.rate_card);
  if (!card) return kExitUsage;
  bool needs_plans = !args.plan.empty();
  for (const auto& p : args.policies) needs_plans = needs_plans || p.starts_with("plan:");
  std::optional<pricing::Catalog> catalog;
  if (!load_plans(args.plans, args.given.plans, needs_plans, *card, catalog)) return kExitUsage;
  const pricing::Plan* limit_plan = nullptr;
  if (!args.plan.empty()) {
    limit_plan = catalog->find(args.plan);
    if (limit_plan == nullptr) {
      usage_error("--plan: unknown plan '" + args.plan + "'");
      return kExitUsage;
    }
  }
  // --hit-rate: one fraction for every call site at most, and one per call site named.
  std::optional<std::int64_t> hit_rate_permille;
  std::vector<std::pair<std::string, std::int64_t>> hit_rate_permille_by_call_site;
  for (const auto& rate : args.hit_rates) {
    auto eq = rate.rfind('=');
    auto permille = parse_fraction_permille(eq == std::string::npos ? rate : rate.substr(eq + 1));
    if (!permille) {
      usage_error("--hit-rate: expected a fraction 0..1 with at most 3 decimals: " + rate);
      return kExitUsage;
    }
    if (eq == std::string::npos) {
      if (hit_rate_permille) {
        usage_error("--hit-rate: a rate for every call site is given twice: " + rate);
        return kExitUsage;
      }
      hit_rate_permille = *permille;
      continue;
    }
    std::string site = rate.substr(0, eq);
    if (site.empty()) {
      usage_error("--hit-rate: expected SITE=FRACTION with a call site name: " + rate);
      return kExitUsage;
    }
    for (const auto& [given, r] : hit_rate_permille_by_call_site) {
      if (given == site) {
        usage_error("--hit-rate: call site " + site + " is given twice");
        return kExitUsage;
      }
    }
    hit_rate_permille_by_call_site.emplace_back(std::move(site), *permille);
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
    p->hit_rate_permille = hit_rate_permille;
    p->hit_rate_permille_by_call_site = hit_rate_permille_by_call_site;
    if (limit_plan != nullptr) {
      if (limit_plan->rate_limits.per_user) p->per_user = *limit_plan->rate_limits.per_user;
      p->per_account = limit_plan->rate_limits.per_account;
    }
    // Per user: --per-minute's rate, else the plan's, else the default; --burst's burst,
    // else --per-minute's value when that is given, else the plan's (or the default's).
    if (args.per_minute > 0) p->per_user = {args.per_minute, args.per_minute};
    if (args.burst > 0) p->per_user.burst = args.burst;
    policies.push_back(std::move(*p));
  }
  // Every account's events are replayed in the order of time_order.h: a file in that order
  // as it lies, any other through a sorted index. That needs an input that can be read
  // again: standard input and pipes are read from a copy.
  const Spool input(args.file);
  if (!input.problem().empty()) {
    std::cerr << "creditctl: " << input.problem() << "\n";
    return kExitBadInput;
  }
  const std::string& path = input.path();
  const auto any = [](const ledger::Event&) { return true; };
  // A first pass for the refunds, as the audit's (analytics/refunds.h): each charge is
  // replayed net of its own, so no policy saves credits that came back anyway.
  analytics::RefundBook refunds;
  std::unordered_set<std::string> refunded;
  gather_refunds(path, any, refunds, refunded);
  analytics::ReplayerOptions replay_options;
  replay_options.refunds = &refunds;
  std::optional<analytics::ReplayReport> merged;
  bool opened = false;
  bool unordered = false;  // an account's events are not in the order
  int code = kExitOk;
  if (is_regular_file(path)) {
    // One replayer per shard (every policy keeps its state per account), merged at the end.
    std::vector<std::unique_ptr<analytics::Replayer>> replayers;
    for (std::size_t i = 0; i < ShardedReader::kShards; ++i) {
      replayers.push_back(std::make_unique<analytics::Replayer>(
          *card, catalog ? &*catalog : nullptr, policies, replay_options));
    }
    std::vector<analytics::ReplayReport> parts(ShardedReader::kShards);
    std::array<OrderCheck, ShardedReader::kShards> checks;
    std::atomic<bool> out_of_order{false};
    // The shards' cache keys, published every kKeysCheckEvents events: once they add up to
    // more than the table holds, the reading stops (the stream is replayed again below).
    constexpr std::size_t kKeysCheckEvents = 4096;
    std::array<std::atomic<std::size_t>, ShardedReader::kShards> keys{};
    std::array<std::size_t, ShardedReader::kShards> since_check{};
    std::atomic<bool> stop{false};
    auto add = [&](std::size_t shard, const ledger::Event& e) {
      if (!checks[shard].in_order(e)) {
        out_of_order.store(true, std::memory_order_relaxed);
        stop.store(true, std::memory_order_relaxed);
      }
      if (out_of_order.load(std::memory_order_relaxed)) return;
      replayers[shard]->add(e);
      if (++since_check[shard] < kKeysCheckEvents) return;
      since_check[shard] = 0;
      keys[shard].store(replayers[shard]->cache_keys(), std::memory_order_relaxed);
      std::size_t sum = 0;
      for (const auto& k : keys) sum += k.load(std::memory_order_relaxed);
      if (sum > analytics::kReplayCacheKeysMax) stop.store(true, std::memory_order_relaxed);
    };
    // Small batches: the replay's tables are not per account (grouping gains little).
    ShardedReader::Options options;
    options.stop = &stop;
    code = read_events(
        path, options, opened, add,
        [&](std::size_t shard) { parts[shard] = replayers[shard]->finish(); },
        [&] {
          if (out_of_order.load()) return false;
          merged = analytics::merge_replay_reports(std::move(parts));
          return merged.has_value();
        },
        args.file);
    if (!opened) return code;
    unordered = out_of_order.load();
  }
  if (!merged && !unordered) {
    // Not a regular file (the reading says why), or the cache's table of request keys may
    // have filled up (which keys it kept then depends on the order across accounts): the
    // stream is replayed in one replayer, as it lies while it is in the order.
    analytics::Replayer replayer(*card, catalog ? &*catalog : nullptr, policies, replay_options);
    OrderCheck check;
    bool stopped = false;
    code = read_events_serial(path, args.file, opened, stopped, [&](const ledger::Event& e) {
      if (!check.in_order(e)) return false;
      replayer.add(e);
      return true;
    });
    if (!opened) return code;
    unordered = stopped;
    if (!stopped) merged = replayer.finish();
  }
  if (unordered) {
    analytics::Replayer replayer(*card, catalog ? &*catalog : nullptr, std::move(policies),
                                 replay_options);
    bool read = false;
    code = read_events_time_ordered(path, args.file, read, any,
                                    [&](const ledger::Event& e) { replayer.add(e); });
    if (!read) return code;
    merged = replayer.finish();
  }
  const analytics::ReplayReport& r = *merged;

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
        w.key("pool").string(p->plan->pool);
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
        out +=
            fmt::format("  plan {}: {:.2f} USD, {} pool allowance {}, need per cycle {}: {}\n",
                        p->plan->plan_id, p->plan->price_usd_cents / 100.0, p->plan->pool,
                        format_credits(p->plan->allowance), format_credits(p->plan->need_per_cycle),
                        p->plan->fits ? "fits" : "does not fit");
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
  auto card = load_card(args.rate_card, args.given.rate_card);
  if (!card) return kExitUsage;
  std::optional<pricing::Catalog> catalog;
  if (!load_plans(args.plans, args.given.plans, !args.plan.empty(), *card, catalog))
    return kExitUsage;
  if (!args.plan.empty() && catalog->find(args.plan) == nullptr) {
    usage_error("--plan: unknown plan '" + args.plan + "'");
    return kExitUsage;
  }
  std::optional<std::int64_t> from_ms, to_ms;
  for (auto [text, out] : {std::pair{&args.from, &from_ms}, std::pair{&args.to, &to_ms}}) {
    if (text->empty()) continue;
    *out = parse_rfc3339_bound(*text);  // as the server's route reads a range's bounds
    if (!*out) {
      usage_error("--from/--to: not an RFC 3339 instant from 1970 to 9999: " + *text);
      return kExitUsage;
    }
  }
  // The server's rule (analytics::snap_to_hours): a --to before --from is refused as
  // given, then the range snaps to the hour, --from down and --to up.
  if (from_ms && to_ms && *to_ms < *from_ms) {
    usage_error("--to must not be before --from");
    return kExitUsage;
  }
  if (from_ms) *from_ms = analytics::snap_to_hours(*from_ms, *from_ms).from_ms;
  if (to_ms) *to_ms = analytics::snap_to_hours(*to_ms, *to_ms).to_ms;
  analytics::AuditOptions options;
  options.catalog = catalog ? &*catalog : nullptr;
  options.plan_id = args.plan;
  options.cycle_days = args.cycle_days;
  // One pool, as the route audits one: --pool, else the plan's first (every pool when
  // there is no plan to take it from).
  options.pool = args.pool;
  if (options.pool.empty() && !args.plan.empty()) {
    const pricing::Plan* plan = catalog->find(args.plan);
    if (!plan->pools.empty()) options.pool = plan->pools.front().pool;
  }
  if (!args.pool.empty() && !args.plan.empty() &&
      catalog->find(args.plan)->pool(args.pool) == nullptr) {
    usage_error("--pool: plan '" + args.plan + "' has no pool '" + args.pool + "'");
    return kExitUsage;
  }
  // With both ends, the report covers the range (as the server's audit route does), not
  // only the days from the first event to the last.
  if (from_ms && to_ms) {
    options.range_from_ms = from_ms;
    options.range_to_ms = to_ms;
  }
  const auto wanted = [&](const ledger::Event& e) {
    if (from_ms && e.at_ms < *from_ms) return false;
    if (to_ms && e.at_ms >= *to_ms) return false;
    return args.account.empty() || e.account_id == args.account;
  };
  // Two passes (the refunds first, so each charge is booked net of its own): standard
  // input and pipes are read from a copy.
  const Spool input(args.file);
  if (!input.problem().empty()) {
    std::cerr << "creditctl: " << input.problem() << "\n";
    return kExitBadInput;
  }
  analytics::RefundBook refunds;
  std::unordered_set<std::string> refunded;
  gather_refunds(input.path(), wanted, refunds, refunded);
  options.refunds = &refunds;
  std::vector<ledger::Event> prior_charges;
  if (from_ms) prior_charges = gather_prior_charges(input.path(), *from_ms, refunded);
  options.prior_charges = &prior_charges;
  // One auditor per shard (an account's events all go to one), each finished on its own
  // thread; the reports are merged in account order as one auditor gives them.
  std::vector<std::unique_ptr<analytics::Auditor>> auditors;
  for (std::size_t i = 0; i < ShardedReader::kShards; ++i) {
    auditors.push_back(std::make_unique<analytics::Auditor>(*card, options));
  }
  std::vector<std::vector<analytics::AuditReport>> parts(ShardedReader::kShards);
  bool opened = false;
  // Every account's events are audited in the order of time_order.h (the server's audit's):
  // a file in that order is streamed as it lies; the first event out of it stops the
  // reading, and the file is then read again through a sorted index.
  std::array<OrderCheck, ShardedReader::kShards> checks;
  std::atomic<bool> unordered{false};
  // Large batches: ~16 events of each of 1,000 accounts in a row (see ShardedReader).
  int code = read_events(
      input.path(), ShardedReader::Options{kAuditBatchBytes, kAuditBatchesInFlight, &unordered},
      opened,
      [&](std::size_t shard, const ledger::Event& e) {
        if (!wanted(e)) return;
        if (!checks[shard].in_order(e)) unordered.store(true, std::memory_order_relaxed);
        if (unordered.load(std::memory_order_relaxed)) return;
        auditors[shard]->add(e);
      },
      [&](std::size_t shard) {
        if (unordered.load()) {
          auditors[shard].reset();  // the file is audited again: its tables are not kept
          return;
        }
        parts[shard] = auditors[shard]->finish();
        // Its tables are left to the end of the process (creditctl exits just after the
        // report is written): freeing every account's tables one by one took ~7 % of the
        // audit. Kept reachable, so a leak checker does not count them.
        static std::mutex kept_mutex;
        static auto* kept = new std::vector<std::unique_ptr<analytics::Auditor>>();
        std::lock_guard lock(kept_mutex);
        kept->push_back(std::move(auditors[shard]));
      },
      [&] { return !unordered.load(); }, args.file);
  if (!opened) return code;
  std::vector<analytics::AuditReport> reports;
  if (unordered.load()) {
    analytics::Auditor auditor(*card, options);
    bool read = false;
    code = read_events_time_ordered(input.path(), args.file, read, wanted,
                                    [&](const ledger::Event& e) { auditor.add(e); });
    if (!read) return code;
    reports = auditor.finish();
  } else {
    for (auto& part : parts) {
      reports.insert(reports.end(), std::make_move_iterator(part.begin()),
                     std::make_move_iterator(part.end()));
    }
  }
  // A file's audit reports the accounts with events audited (docs/cli.md): not those whose
  // events are all of other pools or internal lines (an "account" line), which would
  // report an empty period at 1970-01-01.
  std::erase_if(reports, [](const analytics::AuditReport& r) { return r.events == 0; });
  std::sort(reports.begin(), reports.end(),
            [](const analytics::AuditReport& a, const analytics::AuditReport& b) {
              return a.account_id < b.account_id;
            });
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
      ->transform(decimal<std::int64_t>(1, sim::kAccountsMax))
      ->capture_default_str();
  sim->add_option("--days", c.simulate.days, "Number of days")
      ->transform(decimal<std::int64_t>(1, sim::kDaysMax))
      ->capture_default_str();
  sim->add_option("--seed", c.simulate.seed, "PRNG seed (0 to 2^64-1)")
      ->transform(decimal<std::uint64_t>())
      ->capture_default_str();
  sim->add_option("--start", c.simulate.start,
                  "First day: a UTC midnight, e.g. 2026-03-01T00:00:00Z (default: the UTC "
                  "midnight --days days before now)");
  sim->add_option("--plan", c.simulate.plan,
                  "The plan the accounts are on: warn when the period does not fit it");
  sim->add_flag("--account-lines", c.simulate.account_lines,
                "Open each account with an \"account\" line naming --plan (not an API.md "
                "event: the server's import refuses it)");
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
      ->transform(decimal<std::int64_t>(1, kReplayTtlDaysMax))
      ->capture_default_str();
  rep->add_option("--hit-rate", c.replay.hit_rates,
                  "Cache: a given hit rate (0..1) instead of repeats, or SITE=RATE per call site");
  rep->add_option("--per-minute", c.replay.per_minute, "Rate limit per user per minute")
      ->transform(decimal<std::int64_t>(1, pricing::kRateLimitMax));
  rep->add_option("--burst", c.replay.burst, "Rate-limit burst")
      ->transform(decimal<std::int64_t>(1, pricing::kRateLimitMax));
  rep->add_option("--plan", c.replay.plan, "Take the rate limits of this plan");
  rep->add_option("--plans", c.replay.plans, "Plan catalog (TOML)")->capture_default_str();
  rep->add_option("--rate-card", c.replay.rate_card, "Rate card (TOML)")->capture_default_str();
  c.replay_cmd = rep;

  auto* aud = app.add_subcommand(
      "audit",
      "The credit audit of an event file, or of an account on the server (online when the "
      "argument is not an existing regular file, '-', a path with '/' or a .ndjson/.jsonl/.json "
      "name)");
  aud->add_option("file", c.audit.file, "NDJSON event file (- for stdin), or an account id")
      ->required();
  aud->add_flag("--online", c.audit.online, "The argument is an account on the server");
  aud->add_option("--from", c.audit.from, "Only events at or after this instant (RFC 3339)");
  aud->add_option("--to", c.audit.to, "Only events before this instant (RFC 3339)");
  aud->add_option("--cycle-days", c.audit.cycle_days,
                  "The length of a billing cycle, which per-cycle figures are scaled to")
      ->transform(decimal<std::int64_t>(1, kAuditCycleDaysMax))
      ->capture_default_str();
  aud->add_option("--format", c.audit.format, "json | md | html")
      ->check(CLI::IsMember({"json", "md", "html"}))
      ->capture_default_str();
  aud->add_flag("--json", c.audit.json, "Same as --format json");
  aud->add_option("--plan", c.audit.plan, "The account's plan (for forecast and advice)");
  aud->add_option("--plans", c.audit.plans, "Plan catalog (TOML)")->capture_default_str();
  aud->add_option("--rate-card", c.audit.rate_card, "Rate card (TOML)")->capture_default_str();
  aud->add_option("--account", c.audit.account, "Only this account");
  aud->add_option("--pool", c.audit.pool,
                  "The pool to audit (default: the first pool of --plan's plan; without "
                  "--plan, every pool)");
  aud->add_option("--out", c.audit.out, "Write the report here (- for stdout)")
      ->capture_default_str();
  c.audit_cmd = aud;
}

namespace {

// Whether the command line gave --plans and --rate-card: their counts, not their text (a
// path equal to the default's is given all the same).
template <typename Args>
Args with_given(const Args& args, const CLI::App& cmd) {
  Args out = args;
  out.given.plans = cmd.get_option("--plans")->count() > 0;
  out.given.rate_card = cmd.get_option("--rate-card")->count() > 0;
  return out;
}

}  // namespace

std::optional<int> run_offline_command(const OfflineCommands& c) {
  if (c.simulate_cmd != nullptr && c.simulate_cmd->parsed()) {
    return run_simulate(with_given(c.simulate, *c.simulate_cmd));
  }
  if (c.replay_cmd != nullptr && c.replay_cmd->parsed()) {
    return run_replay(with_given(c.replay, *c.replay_cmd));
  }
  if (c.audit_cmd != nullptr && c.audit_cmd->parsed()) {
    return run_audit(with_given(c.audit, *c.audit_cmd));
  }
  return std::nullopt;
}

}  // namespace credit::cli
