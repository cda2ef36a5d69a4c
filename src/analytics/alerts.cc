// src/analytics/alerts.cc
// Alert rules, evaluation, the rules and outbox files, and the delivery loop (alerts.h).
#include "analytics/alerts.h"

#include <fmt/format.h>
#include <simdjson.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "base/json_writer.h"
#include "money/money.h"
#include "store/durable_file.h"
#include "time/time.h"

namespace credit::analytics {
namespace {

constexpr const char* kRulesFile = "alert_rules.log";
constexpr const char* kOutboxFile = "outbox.log";

std::string credits(std::int64_t mc) {
  return format_credits(Millicredits::from_mc(mc));
}

std::string ratio_json(std::optional<double> r) {
  return r ? json::fraction_text(*r) : "null";
}

std::int64_t backoff_ms(std::int64_t attempts) {
  std::int64_t ms = kDeliveryBackoffFirstMs;
  for (std::int64_t i = 1; i < attempts && ms < kDeliveryBackoffMaxMs; ++i) ms *= 2;
  return std::min(ms, kDeliveryBackoffMaxMs);
}

std::string rules_line(const std::string& account_id, const AlertRules& r) {
  std::string out;
  json::Writer w(out);
  w.begin_object().key("account_id").string(account_id);
  w.key("factor_milli").integer(r.burn.factor_milli).key("window_days").integer(r.burn.window_days);
  w.key("thresholds").begin_array();
  for (std::int64_t t : r.thresholds_percent) w.integer(t);
  w.end_array();
  w.key("webhook_url").string(r.webhook_url).key("webhook_secret").string(r.webhook_secret);
  w.end_object();
  return out;
}

std::string alert_line(const Alert& a, bool webhook) {
  std::string out;
  json::Writer w(out);
  w.begin_object().key("op").string("alert").key("alert_id").string(a.alert_id);
  w.key("account_id").string(a.account_id).key("rule").string(a.rule).key("pool").string(a.pool);
  // The details as a string of their exact bytes: a nested object would be read back
  // re-serialized ("2.0070" as "2.007"), and the alert (and a webhook body sent again
  // after a restart) would differ from the one first listed and signed.
  w.key("at_ms")
      .integer(a.at_ms)
      .key("message")
      .string(a.message)
      .key("details_text")
      .string(a.details_json);
  w.key("webhook").boolean(webhook).end_object();
  return out;
}

std::string op_line(std::string_view op, const std::string& alert_id) {
  std::string out;
  json::Writer w(out);
  w.begin_object().key("op").string(op).key("alert_id").string(alert_id).end_object();
  return out;
}

// Reads the complete lines of a file (a last line without its newline is a torn write).
// A line of the rules and outbox files: the XXH3-64 of its JSON as 16 lower-case hex
// digits, a space, then the JSON.
constexpr std::size_t kLineChecksumChars = 16;

std::string sealed_line(std::string_view json) {
  return fmt::format("{:016x} {}", XXH3_64bits(json.data(), json.size()), json);
}

// The JSON of a line, or nothing when its checksum fails. A line that starts with '{' was
// written before lines had checksums: read as it is.
std::optional<std::string_view> unsealed(std::string_view line) {
  if (!line.empty() && line.front() == '{') return line;
  if (line.size() <= kLineChecksumChars + 1 || line[kLineChecksumChars] != ' ') return std::nullopt;
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < kLineChecksumChars; ++i) {
    const char c = line[i];
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (digit < 0) return std::nullopt;
    sum = sum << 4 | static_cast<std::uint64_t>(digit);
  }
  const std::string_view json = line.substr(kLineChecksumChars + 1);
  if (XXH3_64bits(json.data(), json.size()) != sum) return std::nullopt;
  return json;
}

struct FileLine {
  std::string text;
  std::uint64_t offset = 0;
};
struct FileLines {
  std::vector<FileLine> lines;        // every line ended by its newline
  std::optional<std::uint64_t> torn;  // where a last line without its newline starts
};

FileLines read_lines(const std::string& path) {
  FileLines out;
  std::ifstream f(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::size_t start = 0;
  for (std::size_t nl = text.find('\n'); nl != std::string::npos; nl = text.find('\n', start)) {
    if (nl > start) out.lines.push_back({text.substr(start, nl - start), start});
    start = nl + 1;
  }
  if (start < text.size()) out.torn = start;
  return out;
}

Error line_damage(const std::string& path, std::uint64_t offset, const std::string& reason) {
  Error e(ErrorCode::kStorageFailed, "damage in " + path + " at offset " + std::to_string(offset) +
                                         ": " + reason + " (creditd --repair drops the line)");
  e.with_string("file", path);
  e.with("offset", std::to_string(offset));
  return e;
}

// Writes `lines` (sealed) as the whole of `path`, durably (store/durable_file.h).
Status rewrite_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::string data;
  for (const std::string& l : lines) data += sealed_line(l) + "\n";
  return store::write_file_durably(path, data, 0600);
}

// Hands the JSON of each intact line of `path` to `apply`, in order; `apply` is false for
// a line that is not a record (and applies nothing of it). Damage is an error naming the
// file and offset; with `repair` the damaged lines are dropped, reported, and the file
// rewritten without them. A torn last line is dropped and reported (and cut away by the
// rewrite).
Status apply_lines(const std::string& path, bool repair,
                   const std::function<bool(std::string_view)>& apply) {
  FileLines read = read_lines(path);
  std::vector<std::string> good;
  bool dropped = false;
  for (const FileLine& l : read.lines) {
    const std::optional<std::string_view> json = unsealed(l.text);
    const char* reason = !json ? "checksum mismatch" : !apply(*json) ? "bad record" : nullptr;
    if (reason == nullptr) {
      good.emplace_back(*json);
      continue;
    }
    if (!repair) return line_damage(path, l.offset, reason);
    std::fprintf(stderr, "creditd: --repair: dropped a damaged line of %s at offset %llu (%s)\n",
                 path.c_str(), static_cast<unsigned long long>(l.offset), reason);
    dropped = true;
  }
  if (read.torn) {
    std::fprintf(stderr, "creditd: dropped a torn last line of %s at offset %llu\n", path.c_str(),
                 static_cast<unsigned long long>(*read.torn));
    dropped = true;
  }
  if (dropped) return rewrite_lines(path, good);
  return ok_status();
}

}  // namespace

std::string alert_id_of(std::string_view account_id, std::string_view once_key) {
  std::string in(account_id);
  in += '\x1f';
  in += once_key;
  XXH128_hash_t h = XXH3_128bits(in.data(), in.size());
  return fmt::format("al_{:016x}{:016x}", h.high64, h.low64);
}

std::vector<Alert> evaluate_alerts(const std::string& account_id, std::int64_t now_ms,
                                   const std::vector<PoolStatus>& pools, const AlertRules& rules) {
  std::vector<Alert> out;
  auto make = [&](std::string rule, const std::string& pool,
                  const std::string& once_key) -> Alert& {
    Alert& a = out.emplace_back();
    a.alert_id = alert_id_of(account_id, once_key);
    a.account_id = account_id;
    a.rule = std::move(rule);
    a.pool = pool;
    a.at_ms = now_ms;
    return a;
  };
  const std::string date = format_date(now_ms);
  for (const PoolStatus& p : pools) {
    const std::int64_t base = p.allowance_mc + p.extra_mc;
    std::vector<std::int64_t> thresholds = rules.thresholds_percent;
    std::sort(thresholds.begin(), thresholds.end());
    const auto reaches = [&](std::int64_t used_mc, std::int64_t t) {
      return static_cast<__int128>(used_mc) * 100 >= static_cast<__int128>(t) * base;
    };
    for (std::int64_t t : thresholds) {
      if (base <= 0 || !reaches(p.used_mc, t)) continue;
      // The step that crossed t: walking back from the end, the last one before which the
      // used credits were below it.
      std::int64_t at_ms = now_ms;
      std::int64_t used_mc = p.used_mc;
      for (std::int64_t after = p.used_mc, i = static_cast<std::int64_t>(p.steps.size()) - 1;
           i >= 0; --i) {
        const UsedStep& step = p.steps[static_cast<std::size_t>(i)];
        const std::int64_t before = saturating_sub_mc(after, step.delta_mc);
        if (!reaches(before, t)) {
          at_ms = step.at_ms;
          used_mc = after;
          break;
        }
        after = before;
      }
      Alert& a =
          make("threshold", p.pool, fmt::format("threshold:{}:{}:{}", p.pool, t, p.cycle_start_ms));
      a.at_ms = at_ms;
      a.message = fmt::format(
          "{} credits of pool {} used this cycle: {} % of {} ({} % threshold)", credits(used_mc),
          p.pool, static_cast<std::int64_t>(static_cast<__int128>(used_mc) * 100 / base),
          credits(base), t);
      json::Writer w(a.details_json);
      w.begin_object().key("pool").string(p.pool).key("threshold_percent").integer(t);
      w.key("used").raw(credits(used_mc)).key("allowance").raw(credits(p.allowance_mc));
      w.key("extra").raw(credits(p.extra_mc));
      w.key("utilization").fraction(static_cast<double>(used_mc) / static_cast<double>(base));
      w.key("cycle_start").string(format_rfc3339(p.cycle_start_ms)).end_object();
    }
    const std::string mean = p.burn.trailing_mean_mc ? credits(*p.burn.trailing_mean_mc) : "null";
    if (p.burn.spike) {
      Alert& a = make("burn_spike", p.pool, fmt::format("burn_spike:{}:{}", p.pool, date));
      a.message =
          fmt::format("{} credits burned today (pool {}), above {}x the trailing mean of {} a day",
                      credits(p.burn.today_mc), p.pool, credits(rules.burn.factor_milli), mean);
      json::Writer w(a.details_json);
      w.begin_object().key("pool").string(p.pool).key("date").string(date);
      w.key("today").raw(credits(p.burn.today_mc)).key("trailing_mean").raw(mean);
      w.key("ratio")
          .raw(ratio_json(p.burn.ratio))
          .key("factor")
          .raw(credits(rules.burn.factor_milli));
      w.key("window_days").integer(p.burn.window_days).end_object();
    }
    if (p.burn.projected_exhaustion_ms) {
      Alert& a = make("projected_exhaustion", p.pool,
                      fmt::format("projected_exhaustion:{}:{}", p.pool, date));
      a.message = fmt::format(
          "at the trailing mean of {} a day the credits of pool {} run out at {}, before the cycle "
          "ends at {}",
          mean, p.pool, format_rfc3339(*p.burn.projected_exhaustion_ms),
          format_rfc3339(p.cycle_end_ms));
      json::Writer w(a.details_json);
      w.begin_object().key("pool").string(p.pool);
      w.key("projected_at").string(format_rfc3339(*p.burn.projected_exhaustion_ms));
      w.key("cycle_end").string(format_rfc3339(p.cycle_end_ms));
      w.key("available").raw(credits(p.available_mc)).key("trailing_mean").raw(mean).end_object();
    }
  }
  return out;
}

void alert_keys(std::int64_t now_ms, const PoolStatus& p, const RuleParams& rules,
                std::vector<AlertKey>& out) {
  using Rule = AlertKey::Rule;
  const std::int64_t base = p.allowance_mc + p.extra_mc;
  std::array<std::int64_t, kThresholdsMax> thresholds = rules.thresholds_percent;
  std::sort(thresholds.begin(), thresholds.begin() + static_cast<std::ptrdiff_t>(rules.thresholds));
  for (std::size_t i = 0; i < rules.thresholds; ++i) {
    const std::int64_t t = thresholds[i];
    if (base <= 0 || static_cast<__int128>(p.used_mc) * 100 < static_cast<__int128>(t) * base)
      continue;
    out.push_back(AlertKey{Rule::kThreshold, t, p.cycle_start_ms});
  }
  const std::int64_t day = day_start_ms(now_ms);
  if (p.burn.spike) out.push_back(AlertKey{Rule::kBurnSpike, 0, day});
  if (p.burn.projected_exhaustion_ms) out.push_back(AlertKey{Rule::kProjectedExhaustion, 0, day});
}

std::string alert_payload(const Alert& a) {
  std::string out;
  json::Writer w(out);
  w.begin_object().key("alert_id").string(a.alert_id).key("account_id").string(a.account_id);
  w.key("rule").string(a.rule).key("at").string(format_rfc3339(a.at_ms));
  w.key("message").string(a.message).key("details").raw(a.details_json).end_object();
  return out;
}

void append_alert_json(std::string& out, const Alert& a) {
  json::Writer w(out);
  w.begin_object().key("alert_id").string(a.alert_id).key("rule").string(a.rule);
  w.key("at").string(format_rfc3339(a.at_ms)).key("message").string(a.message);
  w.key("details").raw(a.details_json).end_object();
}

Result<std::unique_ptr<AlertBook>> AlertBook::open(const std::string& dir, bool repair) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Error(ErrorCode::kStorageFailed, "cannot create " + dir + ": " + ec.message());
  std::unique_ptr<AlertBook> book(new AlertBook(dir));
  if (Status s = book->load(repair); !s.ok()) return s.error();
  return book;
}

AlertBook::~AlertBook() {
  stop();
}

namespace {

// A rules line's fields (false: the line is not one).
bool parse_rules(simdjson::dom::parser& parser, std::string_view json, std::string* account,
                 AlertRules* out) {
  simdjson::dom::element doc;
  if (parser.parse(json).get(doc)) return false;
  AlertRules r;
  std::string_view id, url, secret;
  simdjson::dom::array ths;
  if (doc["account_id"].get(id) || doc["factor_milli"].get(r.burn.factor_milli) ||
      doc["window_days"].get(r.burn.window_days) || doc["thresholds"].get(ths) ||
      doc["webhook_url"].get(url) || doc["webhook_secret"].get(secret)) {
    return false;
  }
  r.thresholds_percent.clear();
  for (simdjson::dom::element t : ths) {
    std::int64_t v = 0;
    if (t.get(v)) return false;
    r.thresholds_percent.push_back(v);
  }
  r.webhook_url = std::string(url);
  r.webhook_secret = std::string(secret);
  *account = std::string(id);
  *out = std::move(r);
  return true;
}

// An outbox line's fields: its op and alert id, and for an "alert" line the alert and
// whether it goes to a webhook (false: the line is not one).
bool parse_outbox(simdjson::dom::parser& parser, std::string_view json, std::string* op, Alert* a,
                  bool* webhook) {
  simdjson::dom::element doc;
  std::string_view op_name, id;
  if (parser.parse(json).get(doc) || doc["op"].get(op_name) || doc["alert_id"].get(id))
    return false;
  *op = std::string(op_name);
  a->alert_id = std::string(id);
  if (op_name != "alert") return true;
  std::string_view account, rule, pool, message, details_text;
  if (doc["account_id"].get(account) || doc["rule"].get(rule) || doc["pool"].get(pool) ||
      doc["at_ms"].get(a->at_ms) || doc["message"].get(message) || doc["webhook"].get(*webhook)) {
    return false;
  }
  if (!doc["details_text"].get(details_text)) {
    simdjson::dom::parser inner;  // the text is one JSON object, as written
    simdjson::dom::object object;
    if (inner.parse(details_text).get(object)) return false;
    a->details_json = std::string(details_text);
  } else {
    // Lines written before details_text: the object as simdjson writes it back.
    simdjson::dom::element details;
    if (doc["details"].get(details)) return false;
    a->details_json = simdjson::minify(details);
  }
  a->account_id = std::string(account);
  a->rule = std::string(rule);
  a->pool = std::string(pool);
  a->message = std::string(message);
  return true;
}

}  // namespace

Status AlertBook::load(bool repair) {
  simdjson::dom::parser parser;
  Status rules = apply_lines(dir_ + "/" + kRulesFile, repair, [&](std::string_view json) {
    std::string account;
    AlertRules r;
    if (!parse_rules(parser, json, &account, &r)) return false;
    rules_[account] = std::move(r);
    return true;
  });
  if (!rules.ok()) return rules;
  return apply_lines(dir_ + "/" + kOutboxFile, repair, [&](std::string_view json) {
    std::string op;
    Alert a;
    bool webhook = false;
    if (!parse_outbox(parser, json, &op, &a, &webhook)) return false;
    if (op != "alert") {
      queue_.erase(a.alert_id);
      return true;
    }
    fired_.insert(a.alert_id);
    keep(a);
    if (webhook) queue_[a.alert_id] = Pending{a, 0, -1, 0, fired_count_++};
    return true;
  });
}

Status AlertBook::append(const std::string& file, const std::string& line) {
  const std::string path = dir_ + "/" + file;
  return store::append_durably(path, sealed_line(line) + "\n", 0600);
}

void AlertBook::keep(const Alert& a) {
  std::deque<Alert>& list = listed_[a.account_id];
  list.push_back(a);
  if (list.size() > kAlertsListedMax) list.pop_front();
}

AlertRules AlertBook::rules(const std::string& account_id) const {
  std::lock_guard lock(mu_);
  auto it = rules_.find(account_id);
  return it == rules_.end() ? AlertRules{} : it->second;
}

RuleParams params_of(const AlertRules& r) {
  RuleParams p;
  p.burn = r.burn;
  p.thresholds = std::min(r.thresholds_percent.size(), kThresholdsMax);
  std::copy_n(r.thresholds_percent.begin(), p.thresholds, p.thresholds_percent.begin());
  return p;
}

RuleParams AlertBook::params(const std::string& account_id) const {
  static const AlertRules kDefaults;
  std::lock_guard lock(mu_);
  auto it = rules_.find(account_id);
  return params_of(it == rules_.end() ? kDefaults : it->second);
}

bool AlertBook::fired(const std::string& alert_id) const {
  std::lock_guard lock(mu_);
  return fired_.count(alert_id) > 0;
}

Status AlertBook::set_rules(const std::string& account_id, const AlertRules& rules) {
  std::lock_guard lock(mu_);
  if (Status s = append(kRulesFile, rules_line(account_id, rules)); !s.ok()) return s;
  rules_[account_id] = rules;
  return ok_status();
}

std::size_t AlertBook::record(const std::vector<Alert>& candidates, std::int64_t now_ms) {
  std::lock_guard lock(mu_);
  std::size_t added = 0;
  for (const Alert& a : candidates) {
    if (fired_.count(a.alert_id)) continue;
    auto r = rules_.find(a.account_id);
    bool webhook = r != rules_.end() && !r->second.webhook_url.empty();
    // Not durable, not fired: the next evaluation (or the one after a restart) tries again.
    if (!append(kOutboxFile, alert_line(a, webhook)).ok()) continue;
    fired_.insert(a.alert_id);
    keep(a);
    if (webhook) queue_[a.alert_id] = Pending{a, 0, -1, now_ms, fired_count_++};
    ++added;
  }
  if (added > 0) cv_.notify_all();
  return added;
}

std::vector<Alert> AlertBook::alerts_of(const std::string& account_id) const {
  std::lock_guard lock(mu_);
  auto it = listed_.find(account_id);
  if (it == listed_.end()) return {};
  return std::vector<Alert>(it->second.begin(), it->second.end());
}

std::size_t AlertBook::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

std::size_t AlertBook::deliver_due(std::int64_t now_ms, const WebhookSender& send) {
  // Each receiver gets its alerts in the order they fired, one at a time: an alert is not
  // sent while an older one to the same receiver waits for its backoff (found by an audit:
  // an alert that fired during that backoff went out at once, before the older one, and
  // with a hanging receiver cost one timeout per alert so queued). The oldest alert owed
  // to a receiver thus holds its backoff from pass to pass until a delivery succeeds.
  std::unordered_set<std::string> waiting;  // receiver URLs whose oldest alert is not due
  std::vector<WebhookRequest> due;
  {
    std::lock_guard lock(mu_);
    // In the order the alerts fired (the queue is kept by id, a hash).
    std::vector<const Pending*> owed;
    owed.reserve(queue_.size());
    for (const auto& [id, p] : queue_) owed.push_back(&p);
    std::sort(owed.begin(), owed.end(),
              [](const Pending* x, const Pending* y) { return x->fired_no < y->fired_no; });
    for (const Pending* p : owed) {
      auto r = rules_.find(p->alert.account_id);
      if (r == rules_.end() || r->second.webhook_url.empty())
        continue;  // removed: wait for a new one
      const std::string& url = r->second.webhook_url;
      if (waiting.count(url)) continue;
      if (p->next_attempt_ms > now_ms) {
        waiting.insert(url);
        continue;
      }
      due.push_back(WebhookRequest{url, r->second.webhook_secret, p->alert.alert_id,
                                   alert_payload(p->alert), now_ms / 1000});
    }
  }
  std::size_t acked = 0;
  // A receiver that fails (or times out) is not tried again in this pass: the alerts
  // queued behind it wait for its backoff (the next passes find it not due, above), and
  // the other receivers are not held back by one timeout per alert queued to it.
  std::unordered_set<std::string> failed;  // receiver URLs
  for (const WebhookRequest& req : due) {
    if (failed.count(req.url)) continue;
    bool ok = send(req);  // no lock held while the network is slow
    if (!ok) failed.insert(req.url);
    std::lock_guard lock(mu_);
    auto it = queue_.find(req.alert_id);
    if (it == queue_.end()) continue;
    Pending& p = it->second;
    if (ok) {
      if (append(kOutboxFile, op_line("delivered", req.alert_id)).ok()) queue_.erase(it);
      ++acked;
      continue;
    }
    ++p.attempts;
    if (p.first_attempt_ms < 0) p.first_attempt_ms = now_ms;
    if (now_ms - p.first_attempt_ms >= kDeliveryRetryWindowMs) {
      if (append(kOutboxFile, op_line("abandoned", req.alert_id)).ok()) queue_.erase(it);
      continue;
    }
    p.next_attempt_ms = now_ms + backoff_ms(p.attempts);
  }
  return acked;
}

void AlertBook::start(const Clock& clock, WebhookSender send) {
  std::lock_guard lock(mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this, &clock, send = std::move(send)] {
    for (;;) {
      {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(kDeliveryPollMs), [&] { return stopping_; });
        if (stopping_) return;
      }
      deliver_due(clock.now_ms(), send);
    }
  });
}

void AlertBook::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace credit::analytics
