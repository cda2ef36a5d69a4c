// src/server/event_index.cc
// The compact in-memory event store (see event_index.h).
#include "server/event_index.h"

#include <algorithm>
#include <cstring>

#include "base/assert.h"

namespace credit::server {
namespace {

// A varint of a record length takes at most this many bytes (lengths fit in 32 bits).
constexpr std::size_t kLengthBytesMax = 5;

std::size_t put_varint(char* out, std::uint64_t v) {
  std::size_t n = 0;
  while (v >= 0x80) {
    out[n++] = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out[n++] = static_cast<char>(v);
  return n;
}

std::size_t varint_bytes(std::uint64_t v) {
  std::size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

}  // namespace

bool EventIndex::append(const ledger::Event& event) {
  encode_buffer_.clear();
  ledger::encode_event(event, encode_buffer_);
  return append_encoded(event.account_id, event.seq, encode_buffer_);
}

EventIndex::Entry EventIndex::reserve(std::size_t record_bytes) {
  if (blocks_.empty() || last_block_bytes_ - last_block_used_ < record_bytes) {
    const std::size_t block_bytes = std::max(kEventBlockBytes, record_bytes);
    // Not zeroed: a block's pages cost memory only once records are written to them.
    blocks_.push_back(std::make_unique_for_overwrite<char[]>(block_bytes));
    last_block_bytes_ = block_bytes;
    last_block_used_ = 0;
    memory_bytes_ += block_bytes;
  }
  Entry at;
  at.block = static_cast<std::uint32_t>(blocks_.size() - 1);
  at.offset = static_cast<std::uint32_t>(last_block_used_);
  last_block_used_ += record_bytes;
  return at;
}

bool EventIndex::append_encoded(std::string_view account_id, std::uint64_t seq,
                                std::string_view encoded) {
  if (memory_bytes_ >= kEventIndexBytesMax) return false;
  // Offsets are 32-bit: a record is far below 4 GB (a request body is at most 1 MB).
  CREDIT_ASSERT(encoded.size() < (1ULL << 32) - kLengthBytesMax);
  const auto [number, added] =
      numbers_.find_or_insert(IdIndex::hash_of(account_id), is_id(account_id), by_account_.size());
  if (added) by_account_.push_back(AccountEvents{{}, std::string(account_id)});
  std::vector<Entry>& list = by_account_[number].list;
  // The routes binary-search an account's list by seq: out of order only until sort().
  if (!list.empty() && list.back().seq >= seq) {
    CREDIT_ASSERT(list.back().seq != seq);
    if (unsorted_.empty() || unsorted_.back() != number) unsorted_.push_back(number);
  }

  const std::size_t record_bytes = varint_bytes(encoded.size()) + encoded.size();
  Entry at = reserve(record_bytes);
  at.seq = seq;
  char* out = blocks_[at.block].get() + at.offset;
  const std::size_t n = put_varint(out, encoded.size());
  std::memcpy(out + n, encoded.data(), encoded.size());

  const std::size_t capacity_before = list.capacity();
  list.push_back(at);
  memory_bytes_ += (list.capacity() - capacity_before) * sizeof(Entry);
  ++size_;
  return true;
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

std::string_view EventIndex::bytes_of(const Entry& entry) const {
  CREDIT_ASSERT(entry.block < blocks_.size());
  const auto* p = reinterpret_cast<const unsigned char*>(blocks_[entry.block].get() + entry.offset);
  std::uint64_t length = 0;
  std::size_t n = 0;
  for (int shift = 0;; shift += 7) {
    CREDIT_ASSERT(n < kLengthBytesMax);
    const unsigned char byte = p[n++];
    length |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) break;
  }
  return {reinterpret_cast<const char*>(p + n), static_cast<std::size_t>(length)};
}

void EventIndex::decode(const Entry& entry, ledger::Event& out) const {
  // The bytes are encode_event's output (or the event log's, decoded once when loaded):
  // a failure means the memory is not what was written.
  Status decoded = ledger::decode_event_into(bytes_of(entry), out);
  CREDIT_ASSERT(decoded.ok());
  CREDIT_ASSERT(out.seq == entry.seq);
}

void EventIndex::decode_head(const Entry& entry, ledger::EventHead& out) const {
  Status decoded = ledger::decode_event_head(bytes_of(entry), out);
  CREDIT_ASSERT(decoded.ok());
  CREDIT_ASSERT(out.seq == entry.seq);
}

}  // namespace credit::server
