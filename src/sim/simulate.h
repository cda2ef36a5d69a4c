// src/sim/simulate.h
// The workload simulator (DESIGN.md section 2): a realistic period of events for N
// accounts over D days from a start instant and a seed, priced through the rate card,
// with the waste it planted written beside it (the "truth").
// Owns: the profiles, the generator and the truth. Does not: write files (cli/) or
// audit (analytics/; the truth's outliers are found with the audit's own rule,
// analytics::find_outliers, as a short period may make or unmake an outlier).
//
// Every account has 3-5 builders and the app's own runtime user "app" (integration and
// backend calls). Work happens 08:00-19:00 UTC, weekends at a quarter of a weekday.
// A profile's volume is activity, not credits: each day's work is split by the profile's
// shares into budgets of work per source (agent, integrations, discuss, backend), and
// operations are drawn until each budget is done; planted regression loops and repeated
// page-load calls come on top. Work is measured with a fixed price list (the work
// prices: the default rate card's, work_prices()), so the same options give the same
// operations, the same usage and so the same volume whatever the rate card; the card in
// use only prices them (a card where a message costs 1 credit gets as many prompts as the
// default card, not 120 credits' worth of them). With the default card, credits and work
// are equal.
// Background agent turns change 6-40 lines and re-emit at most 10 more, always with a
// snapshot and an intent of feature or question, so only planted turns are waste: no
// background turn is unscoped, a small edit, without snapshot, or part of a loop;
// background request hashes are unique. Loops use four files the background never
// touches. The truth lists what the audit's definitions make of the planted turns under
// the card in use (a loop under 30 credits, a small edit under 3 credits or a charge of 0
// credits is no waste there), and `discuss_heavy` is the discuss share of the account's
// whole burn. A balanced profile (clean) is clean for every period from one day up, not
// only on average, under any card that prices the workload (its sources are balanced in
// the card's credits: DayGenerator::run_balanced).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "ledger/event.h"
#include "pricing/rate_card.h"

namespace credit::sim {

constexpr std::int64_t kAccountsMax = 10'000;
constexpr std::int64_t kDaysMax = 3'660;
// A day's events of one account never exceed this (a guard against a rate card whose
// prices are 0: budgets are spent by priced events).
constexpr std::int64_t kEventsPerAccountDayMax = 5'000;

struct Profile {
  std::string_view name;
  // Target burn shares in permille: agent, integrations, discuss, backend.
  std::int64_t agent_permille, integration_permille, discuss_permille, backend_permille;
  std::int64_t weekday_work;  // an account's work on a weekday, before planted waste, in
                              // credits of the work prices (work_prices())
  std::int64_t loop_permille_per_weekday;
  std::int64_t unscoped_permille_heavy_user;  // the account's first builder
  std::int64_t unscoped_permille_others;
  std::int64_t small_edit_permille;
  std::int64_t no_snapshot_permille;
  std::int64_t page_load_calls_min, page_load_calls_max;  // repeated calls per weekday
  std::int64_t page_load_keys;                            // distinct requests among them
  std::int64_t outlier_weight_factor;                     // 0: no outlier user
  // A well-run team (`clean`): the builders take agent turns in rounds and discuss turns
  // go to whoever has spent least, and each day's other sources are drawn to a window of
  // the day's agent credits, so that a single day, and so any run of days, keeps the
  // typical shares and has no outlier user (simulate.cc, DayGenerator::run_balanced).
  bool balanced;
};

const std::vector<Profile>& profiles();
// The work prices: the default rate card (config/rate_card.toml, version 1) fixed in the
// simulator, which measures each operation's work (see the top of this file).
const pricing::RateCard& work_prices();
const Profile* find_profile(std::string_view name);

struct SimOptions {
  std::string profile = "typical";
  std::int64_t accounts = 1;
  std::int64_t days = 30;
  std::uint64_t seed = 1;
  std::int64_t start_ms = 0;  // the first day's start: a UTC midnight (else an error)
  // When set, each account opens with an "account" line naming this plan. It is not an
  // event type of API.md (the server's import refuses it: accounts are created with
  // POST /v1/accounts); `creditctl simulate` writes these lines only when asked
  // (--account-lines), for tools that read the plan from the file.
  std::string plan;
};

struct PlantedLoop {
  std::string file;
  std::string feature;
  std::int64_t turns = 0;
  std::int64_t first_at_ms = 0;
  std::string snapshot_id;
};

struct PlantedRepeats {
  std::string call_site;
  std::int64_t calls = 0;
  std::int64_t distinct_requests = 0;
  std::int64_t paid_repeats = 0;  // calls - distinct_requests
};

struct PlantedCount {
  std::string key;
  std::int64_t count = 0;
};

// The credits an account's events drew from one pool: over the period, and on its
// dearest UTC day (what an import through the ledger needs of a plan's allowance and
// daily cap).
struct PoolCredits {
  std::string pool;
  Millicredits period;
  Millicredits day_max;
};

struct AccountTruth {
  std::string account_id;
  std::vector<std::string> users;
  std::vector<PlantedLoop> loops;
  std::vector<PlantedRepeats> repeats;
  std::vector<PlantedCount> unscoped_by_user;
  std::vector<PlantedCount> unscoped_by_file;
  std::int64_t unscoped_prompts = 0;
  std::int64_t small_edits = 0;
  std::int64_t turns_without_snapshot = 0;
  std::vector<std::string> outlier_users;
  bool discuss_heavy = false;
  std::vector<PoolCredits> pools;  // in the order first drawn from; not in truth_json
};

struct Truth {
  std::string profile;
  std::uint64_t seed = 0;
  std::int64_t start_ms = 0;
  std::int64_t days = 0;
  std::int64_t events = 0;  // the events generated, not the account lines of SimOptions::plan
  std::vector<AccountTruth> accounts;
};

using EventSink = std::function<void(const ledger::Event&)>;
// Called after each simulated day with the number of days done.
using DayProgress = std::function<void(std::int64_t)>;

// Generates the events in time order (seq 1, 2, ...) into `sink`, each with the
// idempotency key sim-<profile>-<seed>-<yyyymmdd of start>-<account>-<n> (n counts the
// account's events from 1, in the order they are generated; the account event's n is
// "account"): the same options give the same keys, other options other keys. Errors
// (kInvalidRequest naming the param): unknown profile, accounts or days out of range, a
// start that is not a UTC midnight, a rate card that cannot price the workload.
Result<Truth> simulate(const SimOptions& options, const pricing::RateCard& card,
                       const EventSink& sink, const DayProgress& progress = {});

// Formats one event as a line into the end of `out`; called from two threads at once
// (on different events and buffers).
using EventFormatter = std::function<void(const ledger::Event&, std::string& out)>;
// Receives the formatted lines in time order, in blocks, on the caller's thread.
using BlockSink = std::function<void(std::string_view)>;

// simulate() with the formatting of each sorted day shared between the generating and the
// calling thread (formatting on the caller's thread alone was the critical path); the
// blocks hold the same bytes, in the same order, as formatting in an EventSink.
Result<Truth> simulate_formatted(const SimOptions& options, const pricing::RateCard& card,
                                 const EventFormatter& format, const BlockSink& sink,
                                 const DayProgress& progress = {});

// The truth as JSON (documented in docs/audit-schema.md, "Simulator truth").
std::string truth_json(const Truth& truth);

}  // namespace credit::sim
