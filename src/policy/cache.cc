#include "policy/cache.h"

namespace credit::policy {

IntegrationCache::IntegrationCache(std::size_t bytes_max) : bytes_max_(bytes_max) {}

std::string IntegrationCache::key_of(std::string_view a, std::string_view k, std::string_view c) {
  std::string key;
  key.reserve(a.size() + k.size() + c.size() + 2);
  key.append(a).append("\x1f").append(k).append("\x1f").append(c);
  return key;
}

void IntegrationCache::erase(std::unordered_map<std::string, Slot>::iterator it) {
  bytes_ -= it->first.size() + it->second.entry.response_json.size();
  lru_.erase(it->second.lru);
  map_.erase(it);
}

void IntegrationCache::put(std::string_view account_id, std::string_view kind,
                           std::string_view cache_key, CacheEntry entry) {
  std::string key = key_of(account_id, kind, cache_key);
  if (auto it = map_.find(key); it != map_.end()) erase(it);
  std::size_t size = key.size() + entry.response_json.size();
  while (!lru_.empty() && bytes_ + size > bytes_max_) erase(map_.find(lru_.back()));
  if (size > bytes_max_) return;
  lru_.push_front(key);
  bytes_ += size;
  map_.emplace(std::move(key), Slot{std::move(entry), lru_.begin()});
}

const CacheEntry* IntegrationCache::get(std::string_view account_id, std::string_view kind,
                                        std::string_view cache_key, std::int64_t now_ms) {
  auto it = map_.find(key_of(account_id, kind, cache_key));
  if (it == map_.end()) return nullptr;
  if (it->second.entry.expires_at_ms <= now_ms) {
    erase(it);
    return nullptr;
  }
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return &it->second.entry;
}

}  // namespace credit::policy
