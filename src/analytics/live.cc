// src/analytics/live.cc
// The sink's bookkeeping (live.h).
#include "analytics/live.h"

#include <algorithm>

namespace credit::analytics {

Result<std::unique_ptr<Analytics>> Analytics::open(const std::string& dir) {
  auto book = AlertBook::open(dir);
  if (!book.ok()) return book.error();
  std::unique_ptr<Analytics> a(new Analytics());
  a->alerts_ = std::move(book.value());
  return a;
}

bool Analytics::on_events(const std::vector<ledger::Event>& events) {
  std::lock_guard lock(mu_);
  for (const ledger::Event& e : events) {
    rollups_.add(e);
    if (e.imported) continue;
    std::int64_t& at = due_[e.account_id];
    at = std::max(at, e.at_ms);
  }
  if (due_.empty() || scheduled_) return false;
  scheduled_ = true;
  return true;
}

std::unordered_map<std::string, std::int64_t> Analytics::take_due() {
  std::lock_guard lock(mu_);
  scheduled_ = false;
  return std::exchange(due_, {});
}

void Analytics::unschedule() {
  std::lock_guard lock(mu_);
  scheduled_ = false;
}

void Analytics::add_imported(const std::vector<ledger::Event>& events) {
  std::lock_guard lock(mu_);
  for (const ledger::Event& e : events) rollups_.add(e);
}

}  // namespace credit::analytics
