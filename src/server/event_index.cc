// src/server/event_index.cc
// The per-account index of the event log's records (see event_index.h).
#include "server/event_index.h"

#include <algorithm>

#include "base/assert.h"

namespace credit::server {

bool EventIndex::append(std::string_view account_id, std::uint64_t seq, store::EventPlace place) {
  if (memory_bytes_ >= kEventIndexBytesMax) return false;
  const auto [number, added] =
      numbers_.find_or_insert(IdIndex::hash_of(account_id), is_id(account_id), by_account_.size());
  if (added) by_account_.push_back(AccountEvents{{}, std::string(account_id)});
  if (loading_) {
    if (loaded_count_ == loaded_.size() * kLoadChunkEntries) {
      loaded_.push_back(std::make_unique_for_overwrite<Loaded[]>(kLoadChunkEntries));
    }
    loaded_.back()[loaded_count_ % kLoadChunkEntries] = Loaded{number, Entry{seq, place}};
    ++loaded_count_;
    memory_bytes_ += sizeof(Entry);  // what its list will hold
    ++size_;
    return true;
  }
  memory_bytes_ += push_to_list(number, Entry{seq, place});
  ++size_;
  return true;
}

std::uint64_t EventIndex::drop_from(std::uint64_t seq) {
  CREDIT_ASSERT(!loading_);
  std::uint64_t dropped = 0;
  for (AccountEvents& a : by_account_) {
    // Sorted by seq (sort() ran): the dropped ones are at the back.
    while (!a.list.empty() && a.list.back().seq >= seq) {
      a.list.pop_back();
      ++dropped;
    }
  }
  size_ -= dropped;
  return dropped;
}

std::uint64_t EventIndex::drop_segments(const std::vector<std::uint32_t>& numbers) {
  CREDIT_ASSERT(!loading_);
  CREDIT_ASSERT(std::is_sorted(numbers.begin(), numbers.end()));
  if (numbers.empty()) return 0;
  const auto gone = [&](const Entry& e) {
    return std::binary_search(numbers.begin(), numbers.end(),
                              static_cast<std::uint32_t>(e.place >> store::kEventPlaceOffsetBits));
  };
  std::uint64_t dropped = 0;
  for (AccountEvents& a : by_account_) {
    const std::size_t erased = std::erase_if(a.list, gone);
    if (erased == 0) continue;
    dropped += erased;
    if (a.list.size() < a.list.capacity() / 2) {
      const std::size_t capacity_before = a.list.capacity();
      a.list.shrink_to_fit();
      memory_bytes_ -= (capacity_before - a.list.capacity()) * sizeof(Entry);
    }
  }
  size_ -= dropped;
  return dropped;
}

std::size_t EventIndex::push_to_list(std::uint32_t number, const Entry& entry) {
  std::vector<Entry>& list = by_account_[number].list;
  // The routes binary-search an account's list by seq: out of order only until sort()
  // (at start, an imported day is read before later days' events).
  if (!list.empty() && list.back().seq >= entry.seq) {
    CREDIT_ASSERT(list.back().seq != entry.seq);
    if (unsorted_.empty() || unsorted_.back() != number) unsorted_.push_back(number);
  }
  const std::size_t capacity_before = list.capacity();
  list.push_back(entry);
  return (list.capacity() - capacity_before) * sizeof(Entry);
}

void EventIndex::begin_load() {
  CREDIT_ASSERT(!loading_ && size_ == 0);
  loading_ = true;
}

void EventIndex::finish_load(std::vector<Entry>* load_order) {
  CREDIT_ASSERT(loading_);
  loading_ = false;
  if (load_order != nullptr) {
    load_order->clear();
    load_order->reserve(loaded_count_);
    for_each_loaded([&](const Loaded& l) { load_order->push_back(l.entry); });
  }
  std::vector<std::uint64_t> counts(by_account_.size(), 0);
  for_each_loaded([&](const Loaded& l) { ++counts[l.number]; });
  for (std::size_t n = 0; n < by_account_.size(); ++n) by_account_[n].list.reserve(counts[n]);
  // Each list was reserved at its size (and its bytes counted by append): no growth here.
  for_each_loaded([&](const Loaded& l) { (void)push_to_list(l.number, l.entry); });
  std::vector<std::unique_ptr<Loaded[]>>().swap(loaded_);
  loaded_count_ = 0;
  sort();
}

void EventIndex::sort() {
  std::sort(unsorted_.begin(), unsorted_.end());
  unsorted_.erase(std::unique(unsorted_.begin(), unsorted_.end()), unsorted_.end());
  for (std::uint32_t n : unsorted_) {
    std::vector<Entry>& list = by_account_[n].list;
    std::sort(list.begin(), list.end(),
              [](const Entry& a, const Entry& b) { return a.seq < b.seq; });
    for (std::size_t i = 1; i < list.size(); ++i) CREDIT_ASSERT(list[i - 1].seq < list[i].seq);
  }
  unsorted_.clear();
}

std::span<const EventIndex::Entry> EventIndex::events_of(std::string_view account_id) const {
  const std::uint32_t number = numbers_.find(IdIndex::hash_of(account_id), is_id(account_id));
  if (number == IdIndex::kNone) return {};
  return by_account_[number].list;
}

std::optional<std::string_view> EventIndex::bytes_of(const Entry& entry) const {
  if (log_ == nullptr) return std::nullopt;
  return log_->read(entry.place, entry.seq);
}

bool EventIndex::decode(const Entry& entry, ledger::Event& out) const {
  const std::optional<std::string_view> bytes = bytes_of(entry);
  return bytes && ledger::decode_event_into(*bytes, out).ok() && out.seq == entry.seq;
}

bool EventIndex::decode_head(const Entry& entry, ledger::EventHead& out) const {
  const std::optional<std::string_view> bytes = bytes_of(entry);
  return bytes && ledger::decode_event_head(*bytes, out).ok() && out.seq == entry.seq;
}

}  // namespace credit::server
