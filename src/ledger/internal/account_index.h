// src/ledger/internal/account_index.h
// Accounts by id for the per-command lookup: one open-addressing array of (hash of the
// id, account), linear probing, at most half full. A lookup reads one 16-byte slot and
// compares the id only when the hashes match, instead of walking a node list.
// Accounts are closed, never removed, so there is no delete.
// Owns: the slots. Does not: own the accounts (the ledger's ordered map does).
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "base/id_index.h"
#include "ledger/state.h"

namespace credit::ledger {

class AccountIndex {
 public:
  static std::uint64_t hash_of(std::string_view account_id) { return IdIndex::hash_of(account_id); }

  Account* find(std::string_view account_id) const { return find(account_id, hash_of(account_id)); }
  // The same with the id's hash_of already made.
  Account* find(std::string_view account_id, std::uint64_t hash) const;
  // Inserts an account whose id is not in the index yet; false if it is.
  bool insert(Account* account);
  std::size_t size() const { return size_; }
  // The account in the first slot whose hash matches the id's hash, without comparing ids
  // (a prefetch hint: it may be another account, or nullptr).
  const Account* peek(std::uint64_t h) const {
    if (slots_.empty()) return nullptr;
    for (std::size_t s = h & mask_;; s = (s + 1) & mask_) {
      if (slots_[s].account == nullptr || slots_[s].hash == h) return slots_[s].account;
    }
  }
  // Starts loading the slot of an id (by its hash) the ledger will look up soon. Always
  // inlined, as IdempotencyTable::prefetch is (idempotency.h): GCC 12 deletes calls to a
  // function that only prefetches.
  [[gnu::always_inline]] void prefetch(std::uint64_t hash) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[hash & mask_]);
  }

 private:
  struct Slot {
    std::uint64_t hash = 0;
    Account* account = nullptr;  // nullptr: empty
  };
  static constexpr std::size_t kSlotsMin = 64;
  void grow();

  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
};

}  // namespace credit::ledger
