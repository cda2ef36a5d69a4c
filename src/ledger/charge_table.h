// src/ledger/charge_table.h
// The charge records of one account (this cycle and the last), for refunds and reads.
// A charge's id is "c_<seq>" (the sequence number of its event), so records are kept
// in sequence order, appended as charges happen into segments that never move, found
// by a binary search on an array of sequence numbers, and forgotten from the front at a
// reset: no node, no string hash, no copy of older records and no allocation per charge
// (a segment of up to 512 records at a time). Users are interned per table.
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

#include "ledger/limits.h"
#include "money/money.h"
#include "pricing/usage.h"
#include "time/time.h"

namespace credit::ledger {

struct Reservation {
  std::uint32_t bucket_id = 0;
  Millicredits credits;
  bool operator==(const Reservation&) const = default;
};

// The buckets a charge drew from: nearly always one or two, kept inline; more (a pool
// spent across many grants) go to the heap. 48 bytes.
class ReservationList {
 public:
  static constexpr std::size_t kInline = 2;

  ReservationList() = default;
  ReservationList(const ReservationList& o) { *this = o; }
  ReservationList& operator=(const ReservationList& o);
  ReservationList(ReservationList&& o) noexcept { *this = std::move(o); }
  ReservationList& operator=(ReservationList&& o) noexcept;

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

  void reserve(std::size_t n);
  void push_back(const Reservation& r);
  // Adds r's credits to the entry of its bucket, or appends it; the entry's index.
  std::size_t add(const Reservation& r);
  void clear() { size_ = 0; }
  bool operator==(const ReservationList& o) const {
    return std::equal(begin(), end(), o.begin(), o.end());
  }

 private:
  const Reservation* data() const { return heap_ ? heap_.get() : inline_.data(); }

  std::array<Reservation, kInline> inline_{};
  std::unique_ptr<Reservation[]> heap_;  // holds them all once there are more than kInline
  std::uint32_t size_ = 0;
  std::uint32_t capacity_ = kInline;
};

struct RefundRecord {
  std::string refund_id;
  Millicredits credits;
  std::int64_t at_ms = 0;
  std::string reason;
};

// The parts of a charge that few charges have, kept out of line so that a record is one
// cache line: its refunds, and its draws when they are not one draw of the whole cost
// (a charge spread over several buckets, a capture of less than its hold).
struct ChargeExtra {
  Millicredits refunded;  // the sum of `refunds`' credits
  std::vector<RefundRecord> refunds;
  ReservationList drawn;  // every draw, in order, when the record does not hold it inline
};

// A record's ChargeExtra, made on first use and copied deeply with the record, so that a
// record's copy and move are the defaults (no list of its fields to keep in step).
class ChargeExtraPtr {
 public:
  ChargeExtraPtr() = default;
  ChargeExtraPtr(const ChargeExtraPtr& o) { *this = o; }
  ChargeExtraPtr& operator=(const ChargeExtraPtr& o) {
    if (this != &o) p_ = o.p_ ? std::make_unique<ChargeExtra>(*o.p_) : nullptr;
    return *this;
  }
  ChargeExtraPtr(ChargeExtraPtr&&) noexcept = default;
  ChargeExtraPtr& operator=(ChargeExtraPtr&&) noexcept = default;

  const ChargeExtra* get() const { return p_.get(); }
  ChargeExtra* get() { return p_.get(); }
  ChargeExtra& make() {
    if (!p_) p_ = std::make_unique<ChargeExtra>();
    return *p_;
  }

 private:
  std::unique_ptr<ChargeExtra> p_;
};

// One charge (or capture), kept for refunds and reads: 64 bytes, one cache line, no string
// of its own (its id is its table's sequence number, the hold's a number, the user an
// index into the table's users, its day a day number). A charge that drew its whole cost
// from one bucket (nearly every one) and has no refund allocates nothing else; the others
// keep a ChargeExtra. Records are written once per charge and most are never read again,
// so their size is mostly fresh memory each charge costs (docs/benchmarks.md, "Ledger",
// session 7: 128 bytes more per record halved ledger_bench).
struct alignas(64) ChargeRecord {
  Millicredits cost;
  std::int64_t at_ms = 0;
  std::uint64_t hold_seq = 0;  // a capture's hold "h_<hold_seq>" (hold_id()); 0: none
  std::int64_t rate_card_version = 0;
  std::uint32_t user = 0;  // ChargeTable::user_id(record)
  pricing::Kind kind = pricing::Kind::kAgentPrompt;
  std::uint16_t pool_index = 0;

  std::string hold_id() const;  // "" when the charge is not a capture
  // The buckets drawn from, in the order drawn.
  ReservationList drawn() const;
  void set_drawn(const ReservationList& drawn);
  Millicredits refunded() const { return extra_.get() ? extra_.get()->refunded : Millicredits(); }
  const std::vector<RefundRecord>& refunds() const;
  // Adds a refund: refunded() grows by its credits.
  void add_refund(RefundRecord refund);
  // Restores refunds as a snapshot holds them (refunded as written there).
  void restore_refunds(Millicredits refunded, std::vector<RefundRecord> refunds);
  // The account's cycle_serial when charged.
  std::int64_t cycle_index() const { return cycle_index_; }
  // False (and nothing changed) outside [0, 2^32).
  bool set_cycle_index(std::int64_t cycle_index);
  // The start of the UTC day the charge counts on (its pool's day, or its hold's).
  std::int64_t day_start_ms() const { return std::int64_t{day_} * kMsPerDay; }
  // False (and nothing changed) unless a day's start within 2^31 days of the epoch.
  bool set_day_start_ms(std::int64_t day_start_ms);

 private:
  ChargeExtraPtr extra_;  // none: no refund, and the draw is inline (or there is none)
  std::uint32_t cycle_index_ = 0;
  std::int32_t day_ = 0;
  std::uint32_t drawn_bucket_ = 0;  // with drawn_inline_: the one bucket, for all of cost
  bool drawn_inline_ = false;       // neither inline nor in extra_: nothing drawn
};
static_assert(sizeof(ChargeRecord) == 64);

class ChargeTable {
 public:
  // Iterating yields (charge id, record) pairs, as a map of records by id would.
  using value_type = std::pair<std::string, const ChargeRecord&>;
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
    value_type operator*() const { return {charge_id_of(table_->seqs_[at_]), table_->at(at_)}; }
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
  // The same for an id with another prefix ("h_<seq>").
  static std::optional<std::uint64_t> seq_of(std::string_view id, char prefix);
  // "c_<seq>".
  static std::string charge_id_of(std::uint64_t seq);
  // A users table grows to at most this many distinct users; past it a charge's user is
  // still interned (a charge always keeps its user), and the table is rebuilt from the
  // records kept at the next erase_if (a reset).
  static constexpr std::size_t kUsersPruneAbove = 1u << 16;

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
  // The i-th record's sequence number (its id is "c_<seq>").
  std::uint64_t seq_at(std::size_t i) const { return seqs_[i]; }
  // The i-th record in sequence order.
  const ChargeRecord& at(std::size_t i) const {
    Place p = place_of(i);
    return segments_[p.segment][p.offset];
  }

  // The user a record was interned with.
  const std::string& user_id(const ChargeRecord& r) const { return users_[r.user]; }
  // Users interned (each once).
  std::size_t user_count() const { return users_.size(); }
  // The index to store in ChargeRecord::user for this user id (`hash`: its
  // AccountIndex::hash_of, when the caller has it).
  std::uint32_t intern_user(std::string_view user_id);
  std::uint32_t intern_user(std::string_view user_id, std::uint64_t hash);

  void reserve(std::size_t n) { seqs_.reserve(n); }
  // An append's reads, loaded ahead in two stages a few commands apart (each stage reads
  // what the one before loaded): first the table's arrays (the last sequence number, the
  // pointer to the segment the next record goes to, the user's slot), then the record's
  // place in that segment and the user's interned entry.
  // The user is named by the hash of its id (AccountIndex::hash_of).
  void prefetch_tables(std::uint64_t user_hash) const;
  void prefetch_append(std::uint64_t user_hash) const;
  // Appends the record of charge "c_<seq>", seq above every kept record's (its user
  // interned in this table); false (and nothing added) otherwise.
  bool append(std::uint64_t seq, ChargeRecord record);
  // Forgets the records `drop(seq, record)` is true for, in sequence order.
  template <typename Pred>
  void erase_if(Pred drop) {
    std::size_t kept = 0;
    for (std::size_t i = 0; i < seqs_.size(); ++i) {
      if (drop(seqs_[i], at(i))) continue;
      if (kept != i) {
        mutable_at(kept) = std::move(mutable_at(i));
        seqs_[kept] = seqs_[i];
      }
      ++kept;
    }
    truncate(kept);
    prune_users();
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
  // Forgets the users no kept record has, once there are many.
  void prune_users();
  // Adds users_.back() to user_slots_ (growing them at half load).
  void index_last_user();

  std::vector<std::uint64_t> seqs_;  // record i's sequence number, ascending
  std::vector<std::unique_ptr<ChargeRecord[]>> segments_;
  // Interned users, by index, with their hashes; found through an open-addressing array
  // of index + 1 (0: empty), a power of two at most half full. A few users (the usual
  // account) fit one cache line of slots.
  std::vector<std::string> users_;
  std::vector<std::uint64_t> user_hashes_;
  std::vector<std::uint32_t> user_slots_;
};

// The sequence numbers of one account's charge records forgotten at resets, so that a
// refund of one is still 409 charge_not_refundable rather than 404 (DESIGN.md: refunds
// only while the charge's cycle is current). Kept compact: the first number, then the
// gaps between consecutive ones as LEB128 varints (charges are numbered from one global
// sequence, so a gap is a few bytes), in ascending order. At most `max` numbers: when
// more are forgotten the oldest are dropped, and their ids read as unknown (404).
// Owns: the numbers. Does not: decide when a charge is forgotten (ledger.cc).
class ForgottenCharges {
 public:
  explicit ForgottenCharges(std::size_t max = kForgottenChargesPerAccountMax) : max_(max) {}

  std::size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  bool contains(std::uint64_t seq) const;
  // Adds `seqs`, ascending and above every number kept (CREDIT_ASSERT), then drops the
  // oldest past the cap.
  void add(const std::vector<std::uint64_t>& seqs);
  // The encoding for snapshots: first number and the gap bytes (empty when size() == 0).
  std::uint64_t first() const { return first_; }
  const std::string& gaps() const { return gaps_; }
  // Restores an encoding; false (and left empty) when the bytes are not `count - 1`
  // positive gaps or count is over the cap.
  bool restore(std::uint64_t count, std::uint64_t first, std::string gaps);
  bool operator==(const ForgottenCharges& o) const {
    return count_ == o.count_ && first_ == o.first_ && gaps_ == o.gaps_;
  }

 private:
  std::size_t max_;
  std::size_t count_ = 0;
  std::uint64_t first_ = 0;
  std::uint64_t last_ = 0;
  std::string gaps_;
};

}  // namespace credit::ledger
