// src/analytics/alerts.h
// Alerts (DESIGN.md section 2): the rules of an account, the evaluation of the burn,
// threshold and exhaustion rules, the durable record of what fired, and the outbox that
// delivers each alert to the account's webhook at least once.
//
// Rules: `threshold` when used / (allowance + extra) of a pool reaches each configured
// percentage (default 50, 80, 100), once per pool, percentage and cycle; `burn_spike`
// when burn.h calls today a spike, and `projected_exhaustion` when burn.h projects the
// pool empty before the cycle end, each at most once per pool and UTC day. One charge
// that crosses several thresholds fires each of them. An alert's id is a hash of the
// account and of that "once per" key, so evaluating again (after a restart, a replay)
// finds it already fired and never makes a second one.
//
// Files (under the directory given to open(), mode 0600, each record one JSON line
// appended and fdatasync'd before it counts; a last line without its newline is a torn
// write and is ignored):
//   alert_rules.log  {"account_id","factor_milli","window_days","thresholds":[..],
//                     "webhook_url","webhook_secret"}; the last line of an account wins.
//   outbox.log       {"op":"alert","alert_id","account_id","rule","pool","at_ms","message",
//                     "details":{..},"webhook":bool}  (webhook: queued for delivery)
//                    {"op":"delivered","alert_id"} | {"op":"abandoned","alert_id"}
// Delivery: one thread POSTs each queued alert (the sender signs and sends it), retries
// a failure after 1 s, 2 s, 4 s, ... up to 10 min apart on the injected clock, and gives
// up (abandoned) only kDeliveryRetryWindowMs after its first attempt. Each receiver (URL)
// gets its alerts in the order they fired: none is sent while an older one to the same
// receiver waits for its backoff, so that backoff holds every alert queued behind it,
// also those that fire later. After a restart the alerts neither delivered nor abandoned
// are queued again: at least once.
// Owns: rules, evaluation, the files, the delivery schedule. Does not: speak HTTP or
// sign (the server's WebhookSender does), read the ledger (the caller passes views).
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "analytics/burn.h"
#include "base/status.h"
#include "time/clock.h"

namespace credit::analytics {

constexpr std::size_t kThresholdsMax = 10;
constexpr std::int64_t kThresholdPercentMax = 1000;
constexpr std::size_t kWebhookUrlCharsMax = 2048;
constexpr std::size_t kWebhookSecretCharsMax = 256;
// Alerts listed per account (the newest are kept; the outbox keeps them all).
constexpr std::size_t kAlertsListedMax = 1000;
constexpr std::int64_t kDeliveryBackoffFirstMs = 1'000;
constexpr std::int64_t kDeliveryBackoffMaxMs = 10 * 60'000;
// DESIGN.md asks for at least an hour of retries; a day covers a receiver's outage.
constexpr std::int64_t kDeliveryRetryWindowMs = 24 * 3'600'000LL;
// How often (steady time) the delivery thread looks at the injected clock.
constexpr std::int64_t kDeliveryPollMs = 100;

struct AlertRules {
  BurnParams burn;
  std::vector<std::int64_t> thresholds_percent = {50, 80, 100};
  std::string webhook_url;     // "" when none
  std::string webhook_secret;  // write-only: never answered, logged or listed
};

// The numbers of an account's rules that evaluation reads (no strings: a cheap copy);
// by default those of AlertRules{}.
struct RuleParams {
  BurnParams burn;
  std::array<std::int64_t, kThresholdsMax> thresholds_percent{50, 80, 100};
  std::size_t thresholds = 3;
};
// Rules beyond kThresholdsMax thresholds cannot be set (the route refuses them).
RuleParams params_of(const AlertRules& rules);

struct Alert {
  std::string alert_id;
  std::string account_id;
  std::string rule;  // "threshold" | "burn_spike" | "projected_exhaustion"
  std::string pool;
  std::int64_t at_ms = 0;
  std::string message;
  std::string details_json;  // a JSON object
};

// A live change of a pool's used credits (a charge or capture: +, a refund: -) since the
// account was last judged, at its event's instant.
struct UsedStep {
  std::int64_t at_ms = 0;
  std::int64_t delta_mc = 0;
};

// What one pool of an account looks like at the evaluation instant.
struct PoolStatus {
  std::string pool;
  std::int64_t cycle_start_ms = 0;
  std::int64_t cycle_end_ms = 0;
  std::int64_t used_mc = 0;
  std::int64_t allowance_mc = 0;
  std::int64_t extra_mc = 0;
  std::int64_t available_mc = 0;
  BurnReport burn;
  // The changes of used_mc that led to it since the last evaluation, oldest first: a
  // threshold fires at the step that crossed it, with the used credits after that step
  // (one charge of a batch may cross it before another). Empty, or crossed before the
  // first of them: at the evaluation instant, with used_mc.
  std::vector<UsedStep> steps;
};

// Every alert the rules call for at now_ms (fired or not before: AlertBook::record
// keeps only the new ones).
std::vector<Alert> evaluate_alerts(const std::string& account_id, std::int64_t now_ms,
                                   const std::vector<PoolStatus>& pools, const AlertRules& rules);
// What evaluate_alerts() would make, without the strings: one per alert, in its order
// (per pool: the thresholds crossed from the lowest, the spike, the exhaustion), each
// with the period it fires once in (the cycle start for thresholds, the UTC day else).
struct AlertKey {
  enum class Rule : std::uint8_t { kThreshold = 0, kBurnSpike, kProjectedExhaustion };
  Rule rule = Rule::kThreshold;
  std::int64_t threshold_percent = 0;
  std::int64_t period_ms = 0;
  bool operator==(const AlertKey&) const = default;
};
void alert_keys(std::int64_t now_ms, const PoolStatus& pool, const RuleParams& rules,
                std::vector<AlertKey>& out);

// "al_" + 32 hex digits of the XXH3-128 hash of the account and the once-per key.
std::string alert_id_of(std::string_view account_id, std::string_view once_key);
// The webhook body: {"alert_id","account_id","rule","at","message","details"}.
std::string alert_payload(const Alert& alert);
// The alert as the list route shows it: {"alert_id","rule","at","message","details"}.
void append_alert_json(std::string& out, const Alert& alert);

struct WebhookRequest {
  std::string url;
  std::string secret;
  std::string alert_id;
  std::string body;
  std::int64_t at_unix_s = 0;  // the signature's timestamp (injected clock)
};
// Sends one delivery; true when the receiver answered 2xx.
using WebhookSender = std::function<bool(const WebhookRequest&)>;

class AlertBook {
 public:
  // Reads (or creates) the two files under `dir`. Each line carries the XXH3-64 of its
  // JSON (lines written before that carry none and are still read); a line that fails it
  // or does not parse is damage: an error naming the file and the offset, or with
  // `repair`, the line is dropped (the file rewritten without it) and reported on stderr.
  // A last line without its newline is a torn append: dropped and reported.
  static Result<std::unique_ptr<AlertBook>> open(const std::string& dir, bool repair = false);
  ~AlertBook();

  AlertRules rules(const std::string& account_id) const;
  RuleParams params(const std::string& account_id) const;
  // Has this alert fired (been recorded durably)?
  bool fired(const std::string& alert_id) const;
  // Persists the rules (fdatasync) before they apply.
  Status set_rules(const std::string& account_id, const AlertRules& rules);
  // Keeps the alerts that did not fire before, durably, and queues those of accounts
  // with a webhook. Returns how many were new.
  std::size_t record(const std::vector<Alert>& candidates, std::int64_t now_ms);
  std::vector<Alert> alerts_of(const std::string& account_id) const;

  // One delivery pass: sends each queued alert due at now_ms. Returns the deliveries
  // acknowledged. (The thread calls it; tests call it with a fake sender.)
  std::size_t deliver_due(std::int64_t now_ms, const WebhookSender& send);
  std::size_t queued() const;
  // Starts / stops the delivery thread.
  void start(const Clock& clock, WebhookSender send);
  void stop();

 private:
  struct Pending {
    Alert alert;
    std::int64_t attempts = 0;
    std::int64_t first_attempt_ms = -1;
    std::int64_t next_attempt_ms = 0;
    std::uint64_t fired_no = 0;  // the order it fired in: deliveries go in that order
  };
  explicit AlertBook(std::string dir) : dir_(std::move(dir)) {}
  Status load(bool repair);
  Status append(const std::string& file, const std::string& line);
  void keep(const Alert& a);

  std::string dir_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, AlertRules> rules_;
  std::set<std::string> fired_;
  std::unordered_map<std::string, std::deque<Alert>> listed_;
  std::map<std::string, Pending> queue_;  // by alert id
  std::uint64_t fired_count_ = 0;         // Pending::fired_no of the next one queued
  std::thread thread_;
  std::condition_variable cv_;
  bool stopping_ = false;
};

}  // namespace credit::analytics
