// src/policy/rate_limiter.h
// Token-bucket rate limits per (account, user) and per account, on the AI-triggering
// kinds. One token per request or batch op; a bucket refills at per_minute / 60 s up to
// burst. Buckets live in an LRU table bounded by count (`buckets_max`).
// Owns: the buckets and their decisions. Does not: log anything (the decision travels in
// the ledger command), or know HTTP.
// Threading: one owner (the ledger thread); no locks.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "pricing/plan.h"

namespace credit::policy {

constexpr std::size_t kRateBucketsMin = 2;
constexpr std::size_t kRateBucketsMaxDefault = 1'000'000;

struct RateDecision {
  bool allowed = true;
  std::int64_t retry_after_ms = 0;
};

class RateLimiter {
 public:
  // At least kRateBucketsMin: one request takes its account's bucket and its user's, and
  // making the second must not evict the first.
  explicit RateLimiter(std::size_t buckets_max = kRateBucketsMaxDefault);

  // Takes one token from the account's bucket and the user's, if both have one; else
  // takes none and says when to retry.
  RateDecision take(std::string_view account_id, std::string_view user_id,
                    const pricing::PlanRateLimits& limits, std::int64_t now_ms);
  std::size_t size() const { return buckets_.size(); }

 private:
  // A bucket counts tokens in 1/60,000ths (token-ms per minute): `elapsed_ms` of refill
  // at `per_minute` adds exactly elapsed_ms * per_minute units, so no fraction of a
  // token is ever rounded away, however often the bucket is looked at.
  static constexpr std::int64_t kUnitsPerToken = 60'000;
  struct Bucket {
    std::int64_t tokens_units = 0;
    std::int64_t updated_ms = 0;
    std::list<std::string>::iterator lru;
  };
  Bucket& bucket(const std::string& key, const pricing::RateLimit& limit, std::int64_t now_ms);
  static void refill(Bucket& b, const pricing::RateLimit& limit, std::int64_t now_ms);
  static std::int64_t wait_ms(const Bucket& b, const pricing::RateLimit& limit);

  std::size_t buckets_max_;
  std::unordered_map<std::string, Bucket> buckets_;
  std::list<std::string> lru_;  // most recent at the front
};

}  // namespace credit::policy
