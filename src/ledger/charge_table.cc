#include "ledger/charge_table.h"

#include <algorithm>
#include <bit>

#include "base/assert.h"

namespace credit::ledger {

std::optional<std::uint64_t> ChargeTable::seq_of(std::string_view charge_id) {
  // As new_id writes them: "c_", then the decimal number without leading zeros.
  constexpr std::size_t kDigitsMax = 19;  // below 10^19 < 2^64: no overflow
  if (charge_id.size() < 3 || charge_id.size() > 2 + kDigitsMax) return std::nullopt;
  if (charge_id[0] != 'c' || charge_id[1] != '_' || charge_id[2] == '0') return std::nullopt;
  std::uint64_t seq = 0;
  for (std::size_t i = 2; i < charge_id.size(); ++i) {
    char c = charge_id[i];
    if (c < '0' || c > '9') return std::nullopt;
    seq = seq * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return seq;
}

ChargeTable::ChargeTable(const ChargeTable& other) {
  *this = other;
}

ChargeTable& ChargeTable::operator=(const ChargeTable& other) {
  if (this == &other) return *this;
  truncate(0);
  for (std::size_t i = 0; i < other.size(); ++i) {
    bool added = append(other.at(i));
    CREDIT_ASSERT(added);
  }
  return *this;
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

void ChargeTable::prefetch_append() const {
  const std::size_t n = seqs_.size();
  if (n > 0) __builtin_prefetch(seqs_.data() + n - 1);
  Place p = place_of(n);
  if (p.segment >= segments_.size()) return;
  const char* at = reinterpret_cast<const char*>(&segments_[p.segment][p.offset]);
  for (std::size_t off = 0; off < sizeof(ChargeRecord); off += 64) __builtin_prefetch(at + off, 1);
}

bool ChargeTable::append(ChargeRecord record) {
  std::optional<std::uint64_t> seq = seq_of(record.charge_id);
  if (!seq || (!seqs_.empty() && *seq <= seqs_.back())) return false;
  Place p = place_of(seqs_.size());
  if (p.segment == segments_.size()) {
    segments_.push_back(std::make_unique<ChargeRecord[]>(segment_records(p.segment)));
  }
  segments_[p.segment][p.offset] = std::move(record);
  seqs_.push_back(*seq);
  return true;
}

void ChargeTable::truncate(std::size_t n) {
  for (std::size_t i = n; i < seqs_.size(); ++i) mutable_at(i) = ChargeRecord{};
  seqs_.resize(n);
  // Segments past the one that holds record n - 1 go (the next append makes them anew).
  std::size_t segments = n == 0 ? 0 : place_of(n - 1).segment + 1;
  segments_.resize(segments);
}

}  // namespace credit::ledger
