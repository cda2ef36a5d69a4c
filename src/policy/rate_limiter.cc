#include "policy/rate_limiter.h"

#include <algorithm>

#include "base/assert.h"

namespace credit::policy {

RateLimiter::RateLimiter(std::size_t buckets_max) : buckets_max_(buckets_max) {
  CREDIT_ASSERT(buckets_max_ >= kRateBucketsMin);
}

void RateLimiter::refill(Bucket& b, const pricing::RateLimit& limit, std::int64_t now_ms) {
  std::int64_t elapsed_ms = std::max<std::int64_t>(0, now_ms - b.updated_ms);
  // per_minute tokens per 60,000 ms = per_minute units per ms, exactly.
  __int128 add = static_cast<__int128>(elapsed_ms) * limit.per_minute;
  __int128 cap = static_cast<__int128>(limit.burst) * kUnitsPerToken;
  __int128 next = std::min<__int128>(cap, b.tokens_units + add);
  b.tokens_units = static_cast<std::int64_t>(next);
  b.updated_ms = std::max(b.updated_ms, now_ms);
}

std::int64_t RateLimiter::wait_ms(const Bucket& b, const pricing::RateLimit& limit) {
  if (limit.per_minute <= 0) return 60'000;
  std::int64_t missing_units = kUnitsPerToken - b.tokens_units;
  // ms until missing_units arrive at per_minute units per ms, rounded up.
  std::int64_t ms = (missing_units + limit.per_minute - 1) / limit.per_minute;
  return std::max<std::int64_t>(ms, 1);
}

RateLimiter::Bucket& RateLimiter::bucket(const std::string& key, const pricing::RateLimit& limit,
                                         std::int64_t now_ms) {
  auto it = buckets_.find(key);
  if (it != buckets_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    refill(it->second, limit, now_ms);
    return it->second;
  }
  if (buckets_.size() >= buckets_max_) {
    // The least recently used bucket goes; it was idle longest, so it was nearly full.
    buckets_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(key);
  Bucket b;
  b.tokens_units = limit.burst * kUnitsPerToken;
  b.updated_ms = now_ms;
  b.lru = lru_.begin();
  return buckets_.emplace(key, b).first->second;
}

RateDecision RateLimiter::take(std::string_view account_id, std::string_view user_id,
                               const pricing::PlanRateLimits& limits, std::int64_t now_ms) {
  Bucket* acct = nullptr;
  Bucket* user = nullptr;
  std::string key;
  if (limits.per_account) {
    key.assign("a\x1f").append(account_id);
    acct = &bucket(key, *limits.per_account, now_ms);
  }
  if (limits.per_user) {
    key.assign("u\x1f").append(account_id).append("\x1f").append(user_id);
    user = &bucket(key, *limits.per_user, now_ms);
  }
  RateDecision d;
  if (acct && acct->tokens_units < kUnitsPerToken) {
    d.allowed = false;
    d.retry_after_ms = wait_ms(*acct, *limits.per_account);
  }
  if (user && user->tokens_units < kUnitsPerToken) {
    d.allowed = false;
    d.retry_after_ms = std::max(d.retry_after_ms, wait_ms(*user, *limits.per_user));
  }
  if (d.allowed) {
    if (acct) acct->tokens_units -= kUnitsPerToken;
    if (user) user->tokens_units -= kUnitsPerToken;
  }
  return d;
}

}  // namespace credit::policy
