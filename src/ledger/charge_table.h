// src/ledger/charge_table.h
// The charge records of one account (this cycle and the last), for refunds and reads.
// A charge's id is "c_<seq>" (the sequence number of its event), so records are kept
// in sequence order, appended as charges happen into segments that never move, found
// by a binary search on an array of sequence numbers, and forgotten from the front at a
// reset: no node, no string hash, no copy of older records and no allocation per charge
// (a segment of up to 512 records at a time).
// Owns: the records and the lookup by id. Does not: decide refunds (ledger.cc).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "money/money.h"
#include "pricing/usage.h"

namespace credit::ledger {

struct Reservation {
  std::uint32_t bucket_id = 0;
  Millicredits credits;
  bool operator==(const Reservation&) const = default;
};

// The buckets a charge drew from: nearly always one or two, kept inline; more (a pool
// spent across many grants) go to the heap.
class ReservationList {
 public:
  static constexpr std::size_t kInline = 2;

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const Reservation* begin() const { return data(); }
  const Reservation* end() const { return data() + size_; }
  std::reverse_iterator<const Reservation*> rbegin() const {
    return std::reverse_iterator<const Reservation*>(end());
  }
  std::reverse_iterator<const Reservation*> rend() const {
    return std::reverse_iterator<const Reservation*>(begin());
  }
  const Reservation& operator[](std::size_t i) const { return data()[i]; }

  void reserve(std::size_t n) {
    if (n > kInline) heap_.reserve(n);
  }
  void push_back(const Reservation& r) {
    if (size_ < kInline) {
      inline_[size_++] = r;
      return;
    }
    if (size_ == kInline) heap_.assign(inline_.begin(), inline_.end());
    heap_.push_back(r);
    ++size_;
  }
  void clear() {
    size_ = 0;
    heap_.clear();
  }
  bool operator==(const ReservationList& o) const {
    return std::equal(begin(), end(), o.begin(), o.end());
  }

 private:
  const Reservation* data() const { return size_ <= kInline ? inline_.data() : heap_.data(); }

  std::array<Reservation, kInline> inline_{};
  std::vector<Reservation> heap_;
  std::size_t size_ = 0;
};

struct RefundRecord {
  std::string refund_id;
  Millicredits credits;
  std::int64_t at_ms = 0;
  std::string reason;
};

struct ChargeRecord {
  std::string charge_id;
  std::string user_id;
  pricing::Kind kind = pricing::Kind::kAgentPrompt;
  std::size_t pool_index = 0;
  Millicredits cost;
  ReservationList drawn;
  Millicredits refunded;
  std::int64_t cycle_index = 0;  // the account's cycle_serial when charged
  std::int64_t at_ms = 0;
  std::int64_t day_start_ms = 0;
  std::int64_t rate_card_version = 0;
  std::string hold_id;  // set when the charge is a capture
  std::vector<RefundRecord> refunds;
};

class ChargeTable {
 public:
  // Iterating yields (charge id, record) pairs, as a map of records by id would.
  using value_type = std::pair<const std::string&, const ChargeRecord&>;
  class const_iterator {
   public:
    struct Arrow {
      value_type pair;
      const value_type* operator->() const { return &pair; }
    };
    using iterator_category = std::forward_iterator_tag;
    using difference_type = std::ptrdiff_t;
    using value_type = ChargeTable::value_type;

    const_iterator() = default;
    const_iterator(const ChargeTable* table, std::size_t at) : table_(table), at_(at) {}
    value_type operator*() const {
      const ChargeRecord& r = table_->at(at_);
      return {r.charge_id, r};
    }
    Arrow operator->() const { return Arrow{**this}; }
    const_iterator& operator++() {
      ++at_;
      return *this;
    }
    const_iterator operator++(int) {
      const_iterator before = *this;
      ++at_;
      return before;
    }
    bool operator==(const const_iterator& o) const { return at_ == o.at_; }

   private:
    const ChargeTable* table_ = nullptr;
    std::size_t at_ = 0;
  };

  // The sequence number in a charge id "c_<seq>" (nullopt for any other string).
  static std::optional<std::uint64_t> seq_of(std::string_view charge_id);

  ChargeTable() = default;
  ChargeTable(const ChargeTable& other);
  ChargeTable& operator=(const ChargeTable& other);
  ChargeTable(ChargeTable&&) noexcept = default;
  ChargeTable& operator=(ChargeTable&&) noexcept = default;

  std::size_t size() const { return seqs_.size(); }
  bool empty() const { return seqs_.empty(); }
  const_iterator begin() const { return const_iterator(this, 0); }
  const_iterator end() const { return const_iterator(this, seqs_.size()); }
  const_iterator find(std::string_view charge_id) const {
    std::optional<std::size_t> i = index_of(charge_id);
    return i ? const_iterator(this, *i) : end();
  }
  bool contains(std::string_view charge_id) const { return index_of(charge_id).has_value(); }
  const ChargeRecord* find_record(std::string_view charge_id) const {
    std::optional<std::size_t> i = index_of(charge_id);
    return i ? &at(*i) : nullptr;
  }
  ChargeRecord* find_record(std::string_view charge_id) {
    return const_cast<ChargeRecord*>(std::as_const(*this).find_record(charge_id));
  }
  // The i-th record in sequence order.
  const ChargeRecord& at(std::size_t i) const {
    Place p = place_of(i);
    return segments_[p.segment][p.offset];
  }

  void reserve(std::size_t n) { seqs_.reserve(n); }
  // Starts loading where the next record will be appended.
  void prefetch_append() const;
  // Appends a record whose id is "c_<seq>" with seq above every kept record's; false
  // (and nothing added) otherwise.
  bool append(ChargeRecord record);
  // Forgets the records `drop` is true for.
  template <typename Pred>
  void erase_if(Pred drop) {
    std::size_t kept = 0;
    for (std::size_t i = 0; i < seqs_.size(); ++i) {
      if (drop(at(i))) continue;
      if (kept != i) {
        mutable_at(kept) = std::move(mutable_at(i));
        seqs_[kept] = seqs_[i];
      }
      ++kept;
    }
    truncate(kept);
  }

 private:
  // Records live in segments that never move: 4, 8, ... 512 records, then 512 each, so
  // an append never copies the records before it (a vector of records would move them
  // all at each doubling) and a small account holds a small segment.
  static constexpr std::size_t kFirstSegmentRecords = 4;
  static constexpr std::size_t kSegmentRecordsMax = 512;
  static constexpr std::size_t kGrowingSegments = 8;  // 4 << 7 == 512
  static constexpr std::size_t kGrowingRecords =
      kFirstSegmentRecords * ((1 << kGrowingSegments) - 1);
  struct Place {
    std::size_t segment;
    std::size_t offset;
  };
  static Place place_of(std::size_t i);
  static std::size_t segment_records(std::size_t segment);
  ChargeRecord& mutable_at(std::size_t i) {
    Place p = place_of(i);
    return segments_[p.segment][p.offset];
  }
  std::optional<std::size_t> index_of(std::string_view charge_id) const;
  // Keeps the first n records; releases what the others held.
  void truncate(std::size_t n);

  std::vector<std::uint64_t> seqs_;  // record i's sequence number, ascending
  std::vector<std::unique_ptr<ChargeRecord[]>> segments_;
};

}  // namespace credit::ledger
