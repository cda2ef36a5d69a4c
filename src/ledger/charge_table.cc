#include "ledger/charge_table.h"

#include <algorithm>
#include <bit>

#include "base/assert.h"
#include "base/bytes.h"
#include "ledger/internal/account_index.h"

namespace credit::ledger {

ReservationList& ReservationList::operator=(const ReservationList& o) {
  if (this == &o) return *this;
  clear();
  reserve(o.size());
  for (const Reservation& r : o) push_back(r);
  return *this;
}

ReservationList& ReservationList::operator=(ReservationList&& o) noexcept {
  if (this == &o) return *this;
  inline_ = o.inline_;
  heap_ = std::move(o.heap_);
  size_ = o.size_;
  capacity_ = o.capacity_;
  o.size_ = 0;
  o.capacity_ = kInline;
  return *this;
}

void ReservationList::reserve(std::size_t n) {
  if (n <= capacity_) return;
  CREDIT_ASSERT(n <= UINT32_MAX);
  auto grown = std::make_unique<Reservation[]>(n);
  std::copy(begin(), end(), grown.get());
  heap_ = std::move(grown);
  capacity_ = static_cast<std::uint32_t>(n);
}

void ReservationList::push_back(const Reservation& r) {
  if (size_ == capacity_) reserve(std::size_t{capacity_} * 2);
  (heap_ ? heap_.get() : inline_.data())[size_++] = r;
}

std::size_t ReservationList::add(const Reservation& r) {
  Reservation* at = heap_ ? heap_.get() : inline_.data();
  for (std::size_t i = 0; i < size_; ++i) {
    if (at[i].bucket_id == r.bucket_id) {
      at[i].credits += r.credits;
      return i;
    }
  }
  push_back(r);
  return size_ - 1;
}

std::string ChargeRecord::hold_id() const {
  return hold_seq == 0 ? std::string() : "h_" + std::to_string(hold_seq);
}

ReservationList ChargeRecord::drawn() const {
  ReservationList out;
  if (drawn_inline_) {
    out.push_back({drawn_bucket_, cost});
  } else if (const ChargeExtra* x = extra_.get()) {
    out = x->drawn;
  }
  return out;
}

void ChargeRecord::set_drawn(const ReservationList& drawn) {
  drawn_inline_ = drawn.size() == 1 && drawn[0].credits == cost;
  drawn_bucket_ = drawn_inline_ ? drawn[0].bucket_id : 0;
  if (drawn_inline_) {
    if (ChargeExtra* x = extra_.get()) x->drawn.clear();
  } else if (!drawn.empty() || extra_.get()) {
    extra_.make().drawn = drawn;
  }
}

const std::vector<RefundRecord>& ChargeRecord::refunds() const {
  static const std::vector<RefundRecord> kNone;
  return extra_.get() ? extra_.get()->refunds : kNone;
}

void ChargeRecord::add_refund(RefundRecord refund) {
  ChargeExtra& x = extra_.make();
  x.refunded += refund.credits;
  x.refunds.push_back(std::move(refund));
}

void ChargeRecord::restore_refunds(Millicredits refunded, std::vector<RefundRecord> refunds) {
  if (refunded.is_zero() && refunds.empty() && !extra_.get()) return;
  ChargeExtra& x = extra_.make();
  x.refunded = refunded;
  x.refunds = std::move(refunds);
}

bool ChargeRecord::set_cycle_index(std::int64_t cycle_index) {
  if (cycle_index < 0 || cycle_index > std::int64_t{UINT32_MAX}) return false;
  cycle_index_ = static_cast<std::uint32_t>(cycle_index);
  return true;
}

bool ChargeRecord::set_day_start_ms(std::int64_t day_start_ms) {
  if (day_start_ms % kMsPerDay != 0) return false;
  const std::int64_t day = day_start_ms / kMsPerDay;
  if (day < INT32_MIN || day > INT32_MAX) return false;
  day_ = static_cast<std::int32_t>(day);
  return true;
}

std::optional<std::uint64_t> ChargeTable::seq_of(std::string_view id, char prefix) {
  // As new_id writes them: the prefix, '_', then the decimal number without leading zeros.
  constexpr std::size_t kDigitsMax = 19;  // below 10^19 < 2^64: no overflow
  if (id.size() < 3 || id.size() > 2 + kDigitsMax) return std::nullopt;
  if (id[0] != prefix || id[1] != '_' || id[2] == '0') return std::nullopt;
  std::uint64_t seq = 0;
  for (std::size_t i = 2; i < id.size(); ++i) {
    char c = id[i];
    if (c < '0' || c > '9') return std::nullopt;
    seq = seq * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return seq;
}

std::string ChargeTable::charge_id_of(std::uint64_t seq) {
  return "c_" + std::to_string(seq);
}

std::optional<std::uint64_t> ChargeTable::seq_of(std::string_view charge_id) {
  return seq_of(charge_id, 'c');
}

ChargeTable::ChargeTable(const ChargeTable& other) {
  *this = other;
}

ChargeTable& ChargeTable::operator=(const ChargeTable& other) {
  if (this == &other) return *this;
  truncate(0);
  // The same users in the same order: the copied records' indexes stay right.
  users_ = other.users_;
  user_hashes_ = other.user_hashes_;
  user_slots_ = other.user_slots_;
  for (std::size_t i = 0; i < other.size(); ++i) {
    bool added = append(other.seqs_[i], other.at(i));
    CREDIT_ASSERT(added);
  }
  return *this;
}

std::uint32_t ChargeTable::intern_user(std::string_view user_id) {
  return intern_user(user_id, AccountIndex::hash_of(user_id));
}

std::uint32_t ChargeTable::intern_user(std::string_view user_id, std::uint64_t h) {
  if (!user_slots_.empty()) {
    const std::size_t mask = user_slots_.size() - 1;
    for (std::size_t s = h & mask; user_slots_[s] != 0; s = (s + 1) & mask) {
      const std::uint32_t i = user_slots_[s] - 1;
      if (user_hashes_[i] == h && ids_equal(users_[i], user_id)) return i;
    }
  }
  // A hash that is not the id's would intern the user twice: checked here, once per user.
  CREDIT_ASSERT(h == AccountIndex::hash_of(user_id));
  CREDIT_ASSERT(users_.size() < UINT32_MAX - 1);
  users_.emplace_back(user_id);
  user_hashes_.push_back(h);
  index_last_user();
  return static_cast<std::uint32_t>(users_.size() - 1);
}

void ChargeTable::index_last_user() {
  constexpr std::size_t kSlotsMin = 16;
  if (user_slots_.size() < 2 * users_.size()) {
    std::vector<std::uint32_t> slots(std::max(kSlotsMin, user_slots_.size() * 2), 0);
    const std::size_t mask = slots.size() - 1;
    for (std::size_t i = 0; i < users_.size(); ++i) {
      std::size_t s = user_hashes_[i] & mask;
      while (slots[s] != 0) s = (s + 1) & mask;
      slots[s] = static_cast<std::uint32_t>(i + 1);
    }
    user_slots_ = std::move(slots);
    return;
  }
  const std::size_t mask = user_slots_.size() - 1;
  std::size_t s = user_hashes_.back() & mask;
  while (user_slots_[s] != 0) s = (s + 1) & mask;
  user_slots_[s] = static_cast<std::uint32_t>(users_.size());
}

void ChargeTable::prune_users() {
  if (users_.size() <= kUsersPruneAbove) return;
  std::vector<std::string> users = std::move(users_);
  users_.clear();
  user_hashes_.clear();
  user_slots_.clear();
  std::vector<std::uint32_t> renumbered(users.size(), UINT32_MAX);
  for (std::size_t i = 0; i < seqs_.size(); ++i) {
    ChargeRecord& r = mutable_at(i);
    if (renumbered[r.user] == UINT32_MAX) renumbered[r.user] = intern_user(users[r.user]);
    r.user = renumbered[r.user];
  }
}

std::size_t ChargeTable::segment_records(std::size_t segment) {
  return segment < kGrowingSegments ? kFirstSegmentRecords << segment : kSegmentRecordsMax;
}

ChargeTable::Place ChargeTable::place_of(std::size_t i) {
  if (i >= kGrowingRecords) {
    std::size_t past = i - kGrowingRecords;
    return {kGrowingSegments + past / kSegmentRecordsMax, past % kSegmentRecordsMax};
  }
  // Segment k starts at 4 * (2^k - 1).
  std::size_t k = static_cast<std::size_t>(std::bit_width(i / kFirstSegmentRecords + 1)) - 1;
  return {k, i - kFirstSegmentRecords * ((std::size_t{1} << k) - 1)};
}

std::optional<std::size_t> ChargeTable::index_of(std::string_view charge_id) const {
  std::optional<std::uint64_t> seq = seq_of(charge_id);
  if (!seq) return std::nullopt;
  auto it = std::lower_bound(seqs_.begin(), seqs_.end(), *seq);
  if (it == seqs_.end() || *it != *seq) return std::nullopt;
  return static_cast<std::size_t>(it - seqs_.begin());
}

void ChargeTable::prefetch_tables(std::uint64_t user_hash) const {
  const std::size_t n = seqs_.size();
  if (n > 0) __builtin_prefetch(seqs_.data() + n - 1);
  const Place p = place_of(n);
  if (p.segment < segments_.size()) __builtin_prefetch(&segments_[p.segment]);
  if (!user_slots_.empty()) {
    const std::size_t mask = user_slots_.size() - 1;
    __builtin_prefetch(&user_slots_[user_hash & mask]);
  }
}

void ChargeTable::prefetch_append(std::uint64_t user_hash) const {
  const Place p = place_of(seqs_.size());
  if (p.segment < segments_.size()) {
    const char* at = reinterpret_cast<const char*>(&segments_[p.segment][p.offset]);
    for (std::size_t off = 0; off < sizeof(ChargeRecord); off += 64) {
      __builtin_prefetch(at + off, 1);
    }
  }
  if (!user_slots_.empty()) {
    // The home slot (loaded by prefetch_tables) names the entry a lookup reads first.
    const std::size_t mask = user_slots_.size() - 1;
    const std::uint32_t slot = user_slots_[user_hash & mask];
    if (slot != 0) {
      __builtin_prefetch(&user_hashes_[slot - 1]);
      __builtin_prefetch(&users_[slot - 1]);
    }
  }
}

bool ChargeTable::append(std::uint64_t seq, ChargeRecord record) {
  if (seq == 0 || (!seqs_.empty() && seq <= seqs_.back())) return false;
  CREDIT_ASSERT(record.user < users_.size());
  Place p = place_of(seqs_.size());
  if (p.segment == segments_.size()) {
    segments_.push_back(std::make_unique<ChargeRecord[]>(segment_records(p.segment)));
  }
  segments_[p.segment][p.offset] = std::move(record);
  seqs_.push_back(seq);
  return true;
}

void ChargeTable::truncate(std::size_t n) {
  for (std::size_t i = n; i < seqs_.size(); ++i) mutable_at(i) = ChargeRecord{};
  seqs_.resize(n);
  // Segments past the one that holds record n - 1 go (the next append makes them anew).
  std::size_t segments = n == 0 ? 0 : place_of(n - 1).segment + 1;
  segments_.resize(segments);
}

bool ForgottenCharges::contains(std::uint64_t seq) const {
  if (count_ == 0 || seq < first_ || seq > last_) return false;
  // A linear walk: this is asked only for a charge id the records do not have.
  std::uint64_t at = first_;
  ByteReader gaps(gaps_);
  while (at < seq && !gaps.done()) at += gaps.uv();
  return gaps.ok() && at == seq;
}

void ForgottenCharges::add(const std::vector<std::uint64_t>& seqs) {
  for (std::uint64_t seq : seqs) {
    CREDIT_ASSERT(count_ == 0 || seq > last_);
    if (count_ == 0) {
      first_ = seq;
    } else {
      ByteWriter(gaps_).uv(seq - last_);
    }
    last_ = seq;
    ++count_;
  }
  if (count_ <= max_) return;
  // Drop the oldest in one pass: the new first number is where the walk stops.
  ByteReader kept(gaps_);
  for (std::size_t drop = count_ - max_; drop > 0; --drop) first_ += kept.uv();
  CREDIT_ASSERT(kept.ok());
  gaps_.erase(0, kept.pos());
  count_ = max_;
}

bool ForgottenCharges::restore(std::uint64_t count, std::uint64_t first, std::string gaps) {
  count_ = 0;
  first_ = last_ = 0;
  gaps_.clear();
  if (count == 0) return gaps.empty();
  if (count > max_) return false;
  std::uint64_t at = first;
  ByteReader reader(gaps);
  for (std::uint64_t i = 1; i < count; ++i) {
    const std::uint64_t gap = reader.uv();
    if (!reader.ok() || gap == 0 || at + gap < at) return false;
    at += gap;
  }
  if (!reader.done()) return false;
  count_ = static_cast<std::size_t>(count);
  first_ = first;
  last_ = at;
  gaps_ = std::move(gaps);
  return true;
}

}  // namespace credit::ledger
