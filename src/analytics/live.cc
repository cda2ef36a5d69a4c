// src/analytics/live.cc
// The sink's FIFO, the worker that applies it, and alert evaluation (live.h).
#include "analytics/live.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "analytics/burn.h"
#include "base/assert.h"
#include "time/time.h"

namespace credit::analytics {

Result<std::unique_ptr<Analytics>> Analytics::open(const std::string& dir, bool repair) {
  auto book = AlertBook::open(dir, repair);
  if (!book.ok()) return book.error();
  std::unique_ptr<Analytics> a(new Analytics());
  a->alerts_ = std::move(book.value());
  a->worker_ = std::thread([p = a.get()] { p->run_worker(); });
  return a;
}

Analytics::~Analytics() {
  {
    std::lock_guard lock(queue_mu_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  // The engine has stopped: judge what its last read jobs queued, as they would have.
  std::lock_guard drain(drain_mu_);
  this->drain();
}

bool Analytics::on_events(const std::vector<ledger::Event>& events) {
  Item item;
  {
    std::lock_guard lock(queue_mu_);
    if (!spare_facts_.empty()) {
      item.facts = std::move(spare_facts_.back());
      spare_facts_.pop_back();
    }
  }
  item.facts.reserve(events.size());
  for (const ledger::Event& e : events) {
    if (e.imported) {
      // History (an import with mode=analytics): counted, never judged for alerts.
      item.facts.push_back(fact_of(e));
      continue;
    }
    // The rollups keep an account's first live event instant (the burn window starts
    // there): the first listed event of each account and UTC day is queued even when it
    // adds nothing (not its internal creation record: DESIGN.md counts from its first
    // event), so that the first one left is known when retention deletes days.
    const auto [n, first] = mark_numbers_.find_or_insert(
        IdIndex::hash_of(e.account_id),
        [&](std::uint32_t i) { return ids_equal(marks_[i].account_id, e.account_id); },
        marks_.size());
    if (first) marks_.push_back(MarkedAccount{e.account_id, Mark{}});
    Mark& mark = marks_[n].mark;
    if (!mark.due) {
      mark.due_at_ms = 0;
      mark.due = true;
      mark.steps.clear();
      due_order_.push_back(n);
    }
    mark.due_at_ms = std::max(mark.due_at_ms, e.at_ms);
    record_step(mark, e);
    const bool first_listed =
        e.at_ms >= marks_[n].listed_until_ms && ledger::event_type_listed(e.type);
    if (first_listed) marks_[n].listed_until_ms = day_start_ms(e.at_ms) + kMsPerDay;
    if (first_listed || fact_matters(e)) item.facts.push_back(fact_of(e));
  }
  bool full = false;
  if (!item.facts.empty()) {
    std::lock_guard lock(queue_mu_);
    queued_facts_ += item.facts.size();
    full = queued_facts_ > kFactsQueuedMax;
    queue_.push_back(std::move(item));
  }
  if (full) {
    std::lock_guard drain(drain_mu_);
    this->drain();
  } else {
    queue_cv_.notify_one();
  }
  if (due_order_.empty() || scheduled_) return false;
  scheduled_ = true;
  return true;
}

void Analytics::record_step(Mark& mark, const ledger::Event& e) {
  using ledger::EventType;
  if (e.type == EventType::kReset) {
    // A new cycle: the used credits start again, so the steps before it cross nothing.
    std::erase_if(mark.steps,
                  [&](const PoolStep& s) { return e.pool.empty() || s.pool == e.pool; });
    return;
  }
  std::int64_t delta_mc = 0;
  if (e.type == EventType::kCharge || e.type == EventType::kCapture) {
    delta_mc = e.credits.mc();
  } else if (e.type == EventType::kRefund) {
    delta_mc = -e.credits.mc();
  }
  if (delta_mc == 0) return;
  if (mark.steps.size() >= kUsedStepsPerAccountMax) {
    mark.steps.erase(mark.steps.begin(), mark.steps.begin() + kUsedStepsPerAccountMax / 2);
  }
  mark.steps.push_back(PoolStep{e.pool, UsedStep{e.at_ms, delta_mc}});
}

std::vector<Analytics::Due> Analytics::take_due() {
  scheduled_ = false;
  std::vector<Due> due;
  due.reserve(due_order_.size());
  for (const std::uint32_t n : due_order_) {
    Mark& mark = marks_[n].mark;
    due.push_back(Due{marks_[n].account_id, mark.due_at_ms, std::move(mark.steps)});
    mark = Mark{};
  }
  due_order_.clear();
  return due;
}

bool Analytics::mark_new_day(std::int64_t now_ms) {
  const std::int64_t day_ms = day_start_ms(now_ms);
  if (day_ms != new_day_start_ms_) {
    new_day_start_ms_ = day_ms;
    new_day_next_ = 0;
    new_day_end_ = marks_.size();
  }
  std::size_t marked = 0;
  for (; new_day_next_ < new_day_end_ && marked < kNewDayAccountsPerPassMax; ++new_day_next_) {
    Mark& mark = marks_[new_day_next_].mark;
    if (!mark.due) {
      mark = Mark{};
      mark.due = true;
      due_order_.push_back(static_cast<std::uint32_t>(new_day_next_));
    }
    mark.due_at_ms = std::max(mark.due_at_ms, now_ms);
    ++marked;
  }
  return marked > 0;
}

void Analytics::unschedule() {
  scheduled_ = false;
}

void Analytics::queue_evaluation(std::vector<DueAccount>&& accounts) {
  if (accounts.empty()) return;
  {
    std::lock_guard lock(queue_mu_);
    queue_.push_back(Item{{}, std::move(accounts), {}});
  }
  queue_cv_.notify_one();
}

void Analytics::on_days_deleted(const std::vector<std::int64_t>& day_starts_ms) {
  if (day_starts_ms.empty()) return;
  {
    std::lock_guard lock(queue_mu_);
    queue_.push_back(Item{{}, {}, day_starts_ms});
  }
  queue_cv_.notify_one();
}

void Analytics::sync() {
  // Also waits for a batch the worker took and is still applying.
  std::lock_guard drain(drain_mu_);
  this->drain();
}

bool Analytics::has_room() {
  std::lock_guard lock(queue_mu_);
  return queued_facts_ < kFactsQueuedMax / 2;
}

void Analytics::run_worker() {
  for (;;) {
    {
      std::unique_lock lock(queue_mu_);
      queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
    }
    {
      std::lock_guard drain(drain_mu_);
      this->drain();
    }
    // Let a few batches gather before the next wake-up: one wake-up per batch costs two
    // context switches on the ledger thread's CPU. Nothing waits for this (reads and
    // imports sync() themselves).
    std::this_thread::sleep_for(std::chrono::milliseconds(kWorkerLingerMs));
  }
}

void Analytics::drain() {
  std::vector<Item> items;
  {
    std::lock_guard lock(queue_mu_);
    items.swap(queue_);
    queued_facts_ = 0;
  }
  for (const Item& item : items) {
    if (!item.facts.empty()) {
      std::lock_guard lock(mu_);
      for (const Fact& f : item.facts) rollups_.add(f);
    }
    if (!item.days_deleted.empty()) {
      std::lock_guard lock(mu_);
      rollups_.drop_days(item.days_deleted);
    }
    for (const DueAccount& d : item.due) evaluate(d);
  }
  std::vector<std::vector<Fact>> spares;
  for (Item& item : items) {
    if (item.facts.capacity() == 0 || spares.size() == kSpareFactVectorsMax) continue;
    item.facts.clear();
    spares.push_back(std::move(item.facts));
  }
  if (spares.empty()) return;
  std::lock_guard lock(queue_mu_);
  for (auto& v : spares) {
    if (spare_facts_.size() == kSpareFactVectorsMax) break;
    spare_facts_.push_back(std::move(v));
  }
}

void Analytics::evaluate(const DueAccount& d) {
  const RuleParams& params = d.rules;
  std::vector<PoolStatus> pools;
  pools.reserve(d.pools.size());
  {
    std::lock_guard lock(mu_);
    const std::optional<std::int64_t> first = rollups_.first_event_ms(d.account_id);
    for (const DuePool& p : d.pools) {
      PoolStatus& s = pools.emplace_back();
      s.pool = p.pool;
      s.cycle_start_ms = d.cycle_start_ms;
      s.cycle_end_ms = d.cycle_end_ms;
      s.used_mc = p.used_mc;
      s.allowance_mc = p.allowance_mc;
      s.extra_mc = p.extra_mc;
      s.available_mc = p.available_mc;
      s.steps = p.steps;
      const BurnDays days = burn_days(d.now_ms, d.cycle_start_ms, first, params.burn);
      const BurnWindow w = rollups_.burn_window(d.account_id, p.pool, days.today_ms,
                                                days.window_first_ms, days.window_days);
      s.burn = burn_summary(days, w.today_mc, w.window_sum_mc, d.now_ms, d.cycle_end_ms,
                            p.available_mc, params.burn);
    }
  }
  // The cheap check: does any rule call for an alert not known to have fired? (Most
  // evaluations find no rule calling at all and stop here.)
  std::vector<std::pair<const PoolStatus*, AlertKey>> keys;
  {
    std::vector<AlertKey> pool_keys;
    for (const PoolStatus& s : pools) {
      pool_keys.clear();
      alert_keys(d.now_ms, s, params, pool_keys);
      for (const AlertKey& k : pool_keys) keys.emplace_back(&s, k);
    }
  }
  if (keys.empty()) return;
  std::vector<Fired>& fired = memo_[d.account_id];
  bool fresh = false;
  for (const auto& [s, k] : keys) {
    auto known = std::find_if(fired.begin(), fired.end(), [&, s = s, k = k](const Fired& f) {
      return f.key == k && f.pool == s->pool;
    });
    if (known == fired.end()) fresh = true;
  }
  if (!fresh) return;
  // Build, record, and remember what is now durably fired. Evaluation reads only the
  // rules' numbers (the webhook is the book's business when it records).
  AlertRules rules;
  rules.burn = params.burn;
  rules.thresholds_percent.assign(
      params.thresholds_percent.begin(),
      params.thresholds_percent.begin() + static_cast<std::ptrdiff_t>(params.thresholds));
  std::vector<Alert> candidates = evaluate_alerts(d.account_id, d.now_ms, pools, rules);
  alerts_->record(candidates, d.now_ms);
  std::vector<Fired> now_fired;
  std::size_t i = 0;
  std::vector<AlertKey> pool_keys;
  for (const PoolStatus& s : pools) {
    pool_keys.clear();
    alert_keys(d.now_ms, s, params, pool_keys);
    for (const AlertKey& k : pool_keys) {
      CREDIT_ASSERT(i < candidates.size());
      if (alerts_->fired(candidates[i].alert_id)) now_fired.push_back(Fired{s.pool, k});
      ++i;
    }
  }
  CREDIT_ASSERT(i == candidates.size());
  // Keep only what can fire again: this cycle's thresholds and today's daily rules.
  const std::int64_t today = day_start_ms(d.now_ms);
  std::erase_if(fired, [&](const Fired& f) {
    return f.key.rule == AlertKey::Rule::kThreshold ? f.key.period_ms < d.cycle_start_ms
                                                    : f.key.period_ms < today;
  });
  for (Fired& f : now_fired) {
    if (std::find_if(fired.begin(), fired.end(), [&](const Fired& x) {
          return x.key == f.key && x.pool == f.pool;
        }) == fired.end())
      fired.push_back(std::move(f));
  }
}

}  // namespace credit::analytics
