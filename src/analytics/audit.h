// src/analytics/audit.h
// The audit (DESIGN.md section 2): the report a credit-optimisation consultant would
// write from one account's events. Definitions, exactly:
//   refunds       subtracted (refunds.h): in the totals, the daily series, the sources and
//                 the users at the refund; under the charge it refunds in the tables keyed
//                 by the charge's metadata (top sources, hot files, the findings' rows:
//                 unscoped, small edits, no snapshot, discuss by intent, repeats) and in
//                 the loops, found through the stream's RefundBook (AuditOptions::refunds):
//                 each charge is booked there net of the refunds attributed to it, so a
//                 loop's credits and waste are net and a run under 30 credits after refunds
//                 is no loop. Which tables a charge is in follows the charge as priced. A
//                 refund whose charge is not in the stream goes under its own metadata.
//   burn          charges + captures - refunds, by source: agent (agent_prompt),
//                 integrations (invoke_llm, generate_image, send_email), discuss
//                 (discuss_turn), backend (backend_function); typical shares agent
//                 60-80 %, integrations 15-30 %, discuss 5-15 %, backend 0-10 %.
//   top sources   the 5 largest (kind, file | feature | call site) pairs by credits.
//   hot files     the 5 files with the most agent turns (ties: more credits first).
//   loops         loops.h.
//   repeats       integration calls (invokeLLM, generateImage, sendEmail) paid more than
//                 once: a call of a kind with the same cache_key or request_hash as an
//                 earlier paid one, both net of refunds; waste = every paid repeat.
//   unscoped      agent turns with lines_emitted >= 5 x lines_changed (lines_emitted > 0),
//                 by user and by file with their credits.
//   discuss       discuss share of the burn, and its turns by intent; a finding above
//                 15 % (the top of the typical range), i.e. discuss used for routine work.
//   small edits   agent turns with lines_changed <= 5 at >= 3 credits.
//   no snapshot   agent turns without snapshot_id.
//   outliers      replay.h find_outliers over builders (users with agent/discuss turns).
//   advice        given a catalog and the current plan: forecast and plan advice. Its
//                 figures are the audited pool's (its burn against its allowance); the
//                 plan advised is one for the account (forecast.h): it has every pool the
//                 account uses (its current plan's) and covers each pool's need, so every
//                 pool's audit advises the same plan and action.
//   daily         every UTC day of the period, days without burn at 0 (kDailyRowsMax).
//   pool          one pool's audit (API.md: every analytics route takes `pool`, default
//                 the plan's first): events of other pools are left out, and so are
//                 events of no pool that move credits; those of no pool that move none
//                 (plan changes) are counted. An event written without a pool is of its
//                 kind's pool in the rate card. Without a pool (offline, no --plan or
//                 --pool) every event is.
//   fixes         one per finding with its credits saved per cycle from the replay of
//                 the matching policy, its effort, ordered by savings per hour of effort.
//   all fixes     the policies of the fixes listed, chained (replay.h: no event saved
//                 twice), per cycle; never more than the sum of the fixes' savings per
//                 cycle, and 0 when no fix is listed.
// Owns: the streaming aggregation (bounded by files, users, call sites and days, never
// the event list), the report value and its JSON, Markdown and HTML forms.
// Does not: read files (cli/), re-price (replay.h does, inside the audit's one pass).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "analytics/forecast.h"
#include "analytics/loops.h"
#include "analytics/refunds.h"
#include "analytics/replay.h"
#include "ledger/event.h"
#include "money/money.h"
#include "pricing/plan.h"
#include "pricing/rate_card.h"

namespace credit::analytics {

constexpr std::size_t kTopSourcesMax = 5;
constexpr std::size_t kHotFilesMax = 5;
constexpr std::size_t kRowsMax = 50;  // rows of the by-user / by-file / by-intent tables
// The daily series lists every UTC day of the period (quiet days at 0) up to this many
// rows: the days a range of the server's longest, 400 days, touches.
constexpr std::int64_t kDailyRowsMax = 401;
// Unscoped: lines emitted at least this multiple of lines changed.
constexpr std::int64_t kUnscopedEmittedFactor = 5;
// Above this share (permille) discuss mode is being used for routine work.
constexpr std::int64_t kDiscussSharePermilleMax = 150;
// Effort of a behavioural fix when fixes are ordered by savings per hour.
constexpr std::int64_t kBehaviouralEffortHours = 1;
// Engineering hours to put a cache in front of integration calls.
constexpr std::int64_t kCacheEffortHours = 4;
// Forecast: need = 1.1 x trailing mean x cycle days (DESIGN.md, forecast).
constexpr std::int64_t kNeedPermille = 1100;
constexpr std::int64_t kHourlyRateUsdDefault = 100;
constexpr std::int64_t kBreakEvenHoursDefault = 8;
// kSizedCorrectlyPermille: forecast.h's, as the advice is /forecast's.
// The distinct integration request keys remembered for repeats; later keys are counted
// as calls but not compared.
constexpr std::size_t kAuditRequestKeysMax = 1'000'000;

enum class Source : std::uint8_t { kAgent = 0, kIntegrations = 1, kDiscuss = 2, kBackend = 3 };
constexpr std::size_t kSourceCount = 4;
std::string_view source_name(Source s);

struct ShareRow {
  std::string source;
  Millicredits credits;
  std::int64_t events = 0;
  double share = 0;
  std::int64_t typical_min_pct = 0;
  std::int64_t typical_max_pct = 0;
  bool in_range = true;
};

struct SourceRow {
  std::string kind;
  std::string key;  // file, feature or call site ("" when none)
  Millicredits credits;
  std::int64_t events = 0;
  double share = 0;
};

struct HotFile {
  std::string file;
  std::int64_t turns = 0;
  Millicredits credits;
};

struct DayRow {
  std::int64_t day_ms = 0;
  Millicredits credits;
};

struct RepeatRow {
  std::string call_site;
  std::int64_t calls = 0;
  std::int64_t paid_repeats = 0;
  Millicredits wasted;
};

struct CountRow {
  std::string key;
  std::int64_t count = 0;
  Millicredits credits;
};

struct Advice {
  std::string current_plan;
  Millicredits allowance;
  Millicredits used_per_cycle;  // the observed burn scaled to a cycle
  Millicredits need;            // 1.1 x mean x cycle days
  double utilization = 0;       // used_per_cycle / allowance
  bool runs_out = false;        // used_per_cycle > allowance
  std::optional<std::int64_t> runs_out_after_days;
  std::string action;  // stay | upgrade_now | upgrade_next_cycle | downgrade
  std::string plan;
  std::int64_t price_delta_usd_cents = 0;
  double engineering_hours = 0;
  bool sized_correctly = false;
  std::string reason;
};

struct Finding {
  std::string code;
  std::string message;
  Millicredits credits;  // the credits concerned
};

struct Fix {
  std::string id;
  std::string title;
  std::string policy;  // the replay policy that estimated the savings ("" when none)
  Millicredits saved;  // over the period
  Millicredits saved_per_cycle;
  std::string effort;  // "behavioural" | "hours"
  std::int64_t effort_hours = 0;
  Millicredits saved_per_hour;  // per cycle
  std::string finding;
};

struct AuditReport {
  std::string account_id;
  std::string pool;  // "" when every pool was audited
  std::int64_t from_ms = 0;
  std::int64_t to_ms = 0;  // exclusive: the end of the last event's UTC day
  std::int64_t period_days = 0;
  std::int64_t events = 0;
  Millicredits total;  // net burn
  Millicredits refunds;
  std::array<ShareRow, kSourceCount> shares;
  std::vector<SourceRow> top_sources;
  std::vector<HotFile> hot_files;
  std::vector<DayRow> daily;
  std::vector<Loop> loops;
  Millicredits loop_waste;
  std::vector<RepeatRow> repeats;
  std::int64_t repeat_calls_paid = 0;
  Millicredits repeat_waste;
  std::int64_t unscoped_prompts = 0;
  Millicredits unscoped_credits;
  std::vector<CountRow> unscoped_by_user;
  std::vector<CountRow> unscoped_by_file;
  std::int64_t discuss_turns = 0;
  Millicredits discuss_credits;
  double discuss_share = 0;
  std::vector<CountRow> discuss_by_intent;
  std::int64_t small_edits = 0;
  Millicredits small_edit_credits;
  std::vector<CountRow> small_edits_by_file;
  std::int64_t agent_turns = 0;
  std::int64_t turns_without_snapshot = 0;
  Millicredits turns_without_snapshot_credits;
  std::vector<Outlier> outliers;
  std::optional<Advice> advice;
  std::vector<Finding> findings;
  std::vector<Fix> fixes;
  // The fixes listed together: their policies chained (never above the sum of their
  // saved_per_cycle; 0 without a fix).
  Millicredits saved_per_cycle_all;
};

struct AuditOptions {
  const pricing::Catalog* catalog = nullptr;  // for advice; null: no advice
  std::string plan_id;                        // the account's current plan
  // The account's plan as in force (a changed plans file reaches an account at its next
  // cycle): its allowance and price; null: the catalog's plan_id (a file, offline).
  const pricing::Plan* current_plan = nullptr;
  // The pool audited ("" every pool; then advice is on the plan's first pool).
  std::string pool;
  std::int64_t hourly_rate_usd = kHourlyRateUsdDefault;
  std::int64_t break_even_hours = kBreakEvenHoursDefault;
  // The range [from, to) the events were chosen from, when the caller chose them (the
  // server's audit route): the report covers it, and its period is the days from `from`
  // to the earlier of `to` and the end of now's day (now itself when it is a midnight).
  // Without it (a file), the period runs from the first event's day to the last's.
  std::optional<std::int64_t> range_from_ms;
  std::optional<std::int64_t> range_to_ms;
  std::int64_t now_ms = 0;
  // The account's cycle in days, which "per cycle" figures are scaled to.
  std::int64_t cycle_days = kCycleDaysNominal;
  // The refunds of the stream, gathered by the caller before it feeds the events (the
  // same events: a first pass); null when it has none to give (every refund is then
  // booked under its own metadata). Must outlive the builders.
  const RefundBook* refunds = nullptr;
  // Charges from before the range that refunds in it refund (the server's route reads them
  // from the event log): a refund whose charge is not in the stream is booked under that
  // charge's metadata when it is here (refunds.h's rule), as the live rollups book it.
  // Null or empty: under its own. Must outlive the builders.
  const std::vector<ledger::Event>* prior_charges = nullptr;
};

// The audit of one account, fed its events in time order.
class AuditBuilder {
 public:
  AuditBuilder(std::string account_id, const pricing::RateCard& card, AuditOptions options);
  ~AuditBuilder();
  AuditBuilder(const AuditBuilder&) = delete;
  AuditBuilder& operator=(const AuditBuilder&) = delete;

  void add(const ledger::Event& event);
  AuditReport finish();

  struct State;

 private:
  std::unique_ptr<State> s_;
};

// Routes a stream with several accounts to one builder each; reports by account id.
class Auditor {
 public:
  Auditor(const pricing::RateCard& card, AuditOptions options)
      : card_(card), options_(std::move(options)) {}
  void add(const ledger::Event& event);
  std::vector<AuditReport> finish();

 private:
  const pricing::RateCard& card_;
  AuditOptions options_;
  StringMap<std::unique_ptr<AuditBuilder>> builders_;  // reports are sorted by id
  // The builder of the previous event (runs of one account skip the lookup).
  const std::string* last_id_ = nullptr;
  AuditBuilder* last_ = nullptr;
};

// The fixes' replay policies, in the order the audit runs them.
std::vector<Policy> audit_policies();

// JSON (docs/audit-schema.md): one report object; several reports as
// {"reports": [...]}.
void append_audit_json(std::string& out, const AuditReport& report);
std::string audit_json(const std::vector<AuditReport>& reports);
std::string audit_markdown(const std::vector<AuditReport>& reports);
// A self-contained page: no script, no style sheet, no external resource; charts are
// inline SVG with presentation attributes, so it renders under `default-src 'none'`.
std::string audit_html(const std::vector<AuditReport>& reports);

}  // namespace credit::analytics
