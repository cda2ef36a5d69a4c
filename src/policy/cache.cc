#include "policy/cache.h"

namespace credit::policy {

IntegrationCache::IntegrationCache(std::size_t bytes_max, std::size_t account_bytes_max)
    : bytes_max_(bytes_max), account_bytes_max_(account_bytes_max) {}

std::string_view IntegrationCache::account_of(std::string_view key) {
  return key.substr(0, key.find('\x1f'));
}

std::size_t IntegrationCache::account_bytes(std::string_view account_id) const {
  auto it = accounts_.find(std::string(account_id));
  return it == accounts_.end() ? 0 : it->second.bytes;
}

std::string IntegrationCache::key_of(std::string_view a, std::string_view k, std::string_view c) {
  std::string key;
  key.reserve(a.size() + k.size() + c.size() + 2);
  key.append(a).append("\x1f").append(k).append("\x1f").append(c);
  return key;
}

void IntegrationCache::erase(std::unordered_map<std::string, Slot>::iterator it) {
  const std::size_t size = it->first.size() + it->second.entry.response_json.size();
  bytes_ -= size;
  AccountUse& use = *it->second.account;
  use.bytes -= size;
  use.lru.erase(it->second.account_lru);
  if (use.lru.empty()) accounts_.erase(std::string(account_of(it->first)));
  lru_.erase(it->second.lru);
  map_.erase(it);
}

std::size_t IntegrationCache::entry_bytes(std::string_view account_id, std::string_view kind,
                                          std::string_view cache_key, std::size_t response_bytes) {
  return key_of(account_id, kind, cache_key).size() + response_bytes;
}

bool IntegrationCache::fits(std::string_view account_id, std::string_view kind,
                            std::string_view cache_key, std::size_t response_bytes) const {
  return fits_bytes(entry_bytes(account_id, kind, cache_key, response_bytes));
}

bool IntegrationCache::fits_bytes(std::size_t size) const {
  return size <= bytes_max_ && (account_bytes_max_ == 0 || size <= account_bytes_max_);
}

void IntegrationCache::put(std::string_view account_id, std::string_view kind,
                           std::string_view cache_key, CacheEntry entry) {
  std::string key = key_of(account_id, kind, cache_key);
  const std::size_t size = key.size() + entry.response_json.size();
  // The route refuses an entry that cannot fit (fits()); a log written before it did is
  // replayed as it was applied then: such a put changes nothing.
  if (!fits_bytes(size)) return;
  if (auto it = map_.find(key); it != map_.end()) erase(it);
  // The account's own quota first: what it frees counts toward the global budget, so an
  // account over its quota never pushes out other accounts' entries it did not need to.
  if (account_bytes_max_ != 0) {
    auto use = accounts_.find(std::string(account_id));
    while (use != accounts_.end() && use->second.bytes + size > account_bytes_max_) {
      const bool last = use->second.lru.size() == 1;
      erase(map_.find(use->second.lru.back()));
      if (last) break;  // the account's entry went with its last key
    }
  }
  while (!lru_.empty() && bytes_ + size > bytes_max_) erase(map_.find(lru_.back()));
  AccountUse& use = accounts_[std::string(account_id)];
  use.lru.push_front(key);
  use.bytes += size;
  lru_.push_front(key);
  bytes_ += size;
  map_.emplace(std::move(key), Slot{std::move(entry), lru_.begin(), use.lru.begin(), &use});
}

const CacheEntry* IntegrationCache::peek(std::string_view account_id, std::string_view kind,
                                         std::string_view cache_key, std::int64_t now_ms) const {
  auto it = map_.find(key_of(account_id, kind, cache_key));
  if (it == map_.end() || it->second.entry.expires_at_ms <= now_ms) return nullptr;
  return &it->second.entry;
}

void IntegrationCache::touch(std::string_view account_id, std::string_view kind,
                             std::string_view cache_key) {
  auto it = map_.find(key_of(account_id, kind, cache_key));
  if (it == map_.end()) return;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  std::list<std::string>& mine = it->second.account->lru;
  mine.splice(mine.begin(), mine, it->second.account_lru);
}

}  // namespace credit::policy
