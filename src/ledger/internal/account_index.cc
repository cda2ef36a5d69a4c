#include "ledger/internal/account_index.h"

#include <cstring>

#include "base/assert.h"

namespace credit::ledger {

Account* AccountIndex::find(std::string_view account_id, std::uint64_t h) const {
  // A hash that is not the id's could only miss (a hit compares the ids): checked there,
  // where it is rare and cheap.
  if (slots_.empty()) return nullptr;
  for (std::size_t s = h & mask_;; s = (s + 1) & mask_) {
    const Slot& slot = slots_[s];
    if (slot.account == nullptr) {
      CREDIT_ASSERT(h == hash_of(account_id));
      return nullptr;
    }
    if (slot.hash == h && ids_equal(slot.account->account_id, account_id)) return slot.account;
  }
}

bool AccountIndex::insert(Account* account) {
  CREDIT_ASSERT(account != nullptr);
  if ((size_ + 1) * 2 > slots_.size()) grow();
  const std::uint64_t h = hash_of(account->account_id);
  for (std::size_t s = h & mask_;; s = (s + 1) & mask_) {
    Slot& slot = slots_[s];
    if (slot.account == nullptr) {
      slot = Slot{h, account};
      ++size_;
      return true;
    }
    if (slot.hash == h && slot.account->account_id == account->account_id) return false;
  }
}

void AccountIndex::grow() {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(old.empty() ? kSlotsMin : old.size() * 2, Slot{});
  mask_ = slots_.size() - 1;
  for (const Slot& o : old) {
    if (o.account == nullptr) continue;
    std::size_t s = o.hash & mask_;
    while (slots_[s].account != nullptr) s = (s + 1) & mask_;
    slots_[s] = o;
  }
}

}  // namespace credit::ledger
