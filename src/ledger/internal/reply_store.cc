#include "ledger/internal/reply_store.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "base/assert.h"
#include "ledger/internal/reply_pack.h"

namespace credit::ledger {

std::size_t ReplyStore::next_chunk_bytes() const {
  const std::size_t eighth = (bytes_mapped_ / 8) & ~(kHugePageBytes - 1);
  return std::clamp(eighth, kReplyChunkBytes, kReplyChunkBytesMax);
}

void ReplyStore::prepare_next_chunk() {
  if (!background_ || spare_ || next_) return;
  next_ = HugeBuffer(next_chunk_bytes());
  // No snapshot child reads it: shared with one, each huge page the parent then writes
  // would be copied.
  set_inherited_by_fork(next_.data(), next_.size(), false);
  next_fault_in_.start(background_, next_.data(), next_.size());
}

char* ReplyStore::room_for(std::size_t length) {
  if (chunks_.empty() || chunks_.back().bytes.size() - chunks_.back().used < length) {
    Chunk c;
    if (spare_ && spare_.size() >= length) {
      c.bytes = std::move(spare_);
    } else if (next_ && next_.size() >= length) {
      c.fault_in = std::move(next_fault_in_);
      c.bytes = std::move(next_);
      set_inherited_by_fork(c.bytes.data(), c.bytes.size(), true);  // a snapshot reads it
    } else {
      c.bytes = HugeBuffer(std::max(length, next_chunk_bytes()));
    }
    bytes_mapped_ += c.bytes.size();
    chunks_.push_back(std::move(c));
    prepare_next_chunk();
  }
  Chunk& c = chunks_.back();
  char* at = c.bytes.data() + c.used;
  c.used += length;
  return at;
}

std::uint64_t ReplyStore::push(int status, std::string_view body, const Hash128& request_hash) {
  packed_.clear();
  pack_reply(body, packed_);
  return push_packed(status, packed_, request_hash);
}

std::uint64_t ReplyStore::push_charge(int status, const ChargeReplyParts& parts,
                                      const Hash128& request_hash) {
  // Packed in place, in room for the most it can take; the room it did not use goes back.
  const std::size_t room = charge_reply_packed_bytes_max(parts);
  char* at = room_for(room);
  const auto length = static_cast<std::size_t>(pack_charge_reply(parts, at) - at);
  CREDIT_ASSERT(length <= room);
  chunks_.back().used -= room - length;
  return index_reply(status, at, length, request_hash);
}

std::uint64_t ReplyStore::push_packed(int status, std::string_view packed,
                                      const Hash128& request_hash) {
  char* at = room_for(packed.size());
  if (!packed.empty()) std::memcpy(at, packed.data(), packed.size());
  return index_reply(status, at, packed.size(), request_hash);
}

std::uint64_t ReplyStore::index_reply(int status, const char* bytes, std::size_t length,
                                      const Hash128& request_hash) {
  CREDIT_ASSERT(length <= std::numeric_limits<std::uint32_t>::max());
  std::uint64_t no = next();
  index_.push_back(Ref{bytes, static_cast<std::uint32_t>(length), status, request_hash});
  chunks_.back().end_no = no + 1;
  return no;
}

int ReplyStore::at(std::uint64_t no, std::string& body) const {
  CREDIT_ASSERT(contains(no));
  const Ref& r = index_[no - base_];
  body.clear();
  unpack_reply(std::string_view(r.bytes, r.length), body);
  return r.status;
}

void ReplyStore::release_below(std::uint64_t no) {
  while (base_ < no && !index_.empty()) {
    index_.pop_front();
    ++base_;
  }
  // A chunk whose replies are all released goes; the last one stays to be filled.
  while (chunks_.size() > 1 && chunks_.front().end_no <= base_) {
    Chunk& c = chunks_.front();
    bytes_mapped_ -= c.bytes.size();
    if (!spare_) spare_ = std::move(c.bytes);
    chunks_.pop_front();
  }
  if (index_.empty() && !chunks_.empty()) chunks_.back().used = 0;
}

void ReplyStore::reset(std::uint64_t base) {
  index_.clear();
  chunks_.clear();
  bytes_mapped_ = 0;
  base_ = base;
}

}  // namespace credit::ledger
