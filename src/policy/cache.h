// src/policy/cache.h
// The integration cache: per account, kind and cache key, a client's JSON response with
// a TTL; a hit costs 0 and records what it saved. LRU bounded in bytes, in all and (when
// a quota is set) per account: an account over its quota loses its own oldest entries.
// Owns: the entries, their expiry and eviction, hit/miss counting.
// Does not: price anything or persist itself (the engine logs puts, so a restart
// rebuilds the cache from the log and snapshots).
// Threading: one owner (the ledger thread); no locks.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace credit::policy {

constexpr std::size_t kCacheBytesMaxDefault = 1u << 30;
constexpr std::int64_t kCacheTtlSDefault = 7 * 86'400;
constexpr std::int64_t kCacheTtlSMax = 30 * 86'400;
constexpr std::size_t kCacheResponseBytesMax = 256u << 10;

struct CacheEntry {
  std::string response_json;
  std::string call_site;
  std::int64_t expires_at_ms = 0;
  // Which put made the entry: the engine numbers its puts 1, 2, ... in log order, so the
  // numbers are the same after a restart. A hit records it; a replay of the hit answers
  // the response only while the entry still has it (replaced or evicted: none).
  std::uint64_t generation = 0;
};

class IntegrationCache {
 public:
  // account_bytes_max: each account's quota; 0: none (only the global budget).
  explicit IntegrationCache(std::size_t bytes_max = kCacheBytesMaxDefault,
                            std::size_t account_bytes_max = 0);

  // Whether an entry of this key and response size can be kept at all: within the budget
  // and the account's quota (a put of one that cannot changes nothing).
  bool fits(std::string_view account_id, std::string_view kind, std::string_view cache_key,
            std::size_t response_bytes) const;
  // The bytes an entry counts against the budget and the quota.
  static std::size_t entry_bytes(std::string_view account_id, std::string_view kind,
                                 std::string_view cache_key, std::size_t response_bytes);
  std::size_t bytes_max() const { return bytes_max_; }
  std::size_t account_bytes_max() const { return account_bytes_max_; }
  void put(std::string_view account_id, std::string_view kind, std::string_view cache_key,
           CacheEntry entry);
  // The live entry, or nullptr (an expired one too). Changes nothing: which entries are
  // kept, and in which order, follows only what the log holds (puts, and the hits the
  // engine marks with touch()), so a restart rebuilds the same cache. An expired entry
  // stays until evicted or replaced, within the budget, and is never answered.
  const CacheEntry* peek(std::string_view account_id, std::string_view kind,
                         std::string_view cache_key, std::int64_t now_ms) const;
  // A use of the entry (a hit): it becomes the most recently used. Nothing when there is
  // none. The engine marks a batch's hits after the batch's puts, live and on replay.
  void touch(std::string_view account_id, std::string_view kind, std::string_view cache_key);
  std::size_t bytes() const { return bytes_; }
  std::size_t account_bytes(std::string_view account_id) const;
  std::size_t size() const { return map_.size(); }

  template <typename F>
  void for_each(F&& f) const {
    for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) f(*it, map_.at(*it).entry);
  }

 private:
  // Whether an entry of `size` bytes (its key's and its response's) can be kept at all.
  bool fits_bytes(std::size_t size) const;
  // One account's entries: their bytes and their keys, most recent first.
  struct AccountUse {
    std::size_t bytes = 0;
    std::list<std::string> lru;
  };
  struct Slot {
    CacheEntry entry;
    std::list<std::string>::iterator lru;
    std::list<std::string>::iterator account_lru;
    AccountUse* account = nullptr;  // a map node: stable while the account has entries
  };
  static std::string key_of(std::string_view a, std::string_view k, std::string_view c);
  // The account id at the front of a key.
  static std::string_view account_of(std::string_view key);
  void erase(std::unordered_map<std::string, Slot>::iterator it);

  std::size_t bytes_max_;
  std::size_t account_bytes_max_;
  std::size_t bytes_ = 0;
  std::unordered_map<std::string, Slot> map_;
  std::list<std::string> lru_;  // most recent at the front
  std::unordered_map<std::string, AccountUse> accounts_;
};

}  // namespace credit::policy
