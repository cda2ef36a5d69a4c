// src/ledger/internal/reply_store.h
// The replies stored under idempotency keys, by reply number: their packed bytes appended to
// chunks in huge pages, an index of (bytes, length, status) in a ring. Keys expire in the
// order they were written, so replies are released from the front and a chunk is freed (or kept as
// the next one) when its last reply goes. Storing a reply allocates nothing but a chunk every few
// thousand replies, instead of one std::string each. A new chunk is an eighth of the bytes the
// store holds (2 to 64 MiB): a store that grows to gigabytes maps a few dozen chunks, not
// thousands, since each mapping waits for the memory map lock (base/process_heap.h). With a
// background thread the next chunk is mapped ahead and faulted in there, so that the
// ledger thread does not zero 2 MiB on the first reply of each huge page.
// Owns: the bytes and their numbering. Does not: decide what is stored (ledger.cc).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/assert.h"
#include "ledger/command.h"
#include "ledger/internal/huge_pages.h"
#include "ledger/internal/reply_pack.h"
#include "ledger/internal/ring.h"

namespace credit::ledger {

// The smallest chunk: one huge page, so that new replies cost no page fault per 4 KiB (a
// larger reply gets a chunk of its size).
constexpr std::size_t kReplyChunkBytes = kHugePageBytes;
// The largest chunk the store's growth asks for.
constexpr std::size_t kReplyChunkBytesMax = 64 << 20;

class ReplyStore {
 public:
  explicit ReplyStore(Background background = nullptr) : background_(std::move(background)) {}
  ReplyStore(const ReplyStore&) = delete;
  ReplyStore& operator=(const ReplyStore&) = delete;

  // The number of the oldest reply kept, and of the next one stored.
  std::uint64_t base() const { return base_; }
  std::uint64_t next() const { return base_ + index_.size(); }
  std::size_t size() const { return index_.size(); }
  bool contains(std::uint64_t no) const { return no >= base_ && no - base_ < index_.size(); }

  // Stores a reply (packed: reply_pack.h) with the hash of the request it answers (a
  // retry with another request under its key is refused); returns its number.
  std::uint64_t push(int status, std::string_view body, const Hash128& request_hash);
  // The same for a charge's answer given by its parts (no JSON is rendered).
  std::uint64_t push_charge(int status, const ChargeReplyParts& parts, const Hash128& request_hash);
  // The same for an answer packed already (pack_reply or pack_charge_reply).
  std::uint64_t push_packed(int status, std::string_view packed, const Hash128& request_hash);
  // Reply `no`: sets body to it and returns its status.
  int at(std::uint64_t no, std::string& body) const;
  // Reply `no` as stored (reply_pack.h): sets packed to its bytes and returns its status.
  int packed_at(std::uint64_t no, std::string_view& packed) const {
    CREDIT_ASSERT(contains(no));
    const Ref& r = index_[no - base_];
    packed = std::string_view(r.bytes, r.length);
    return r.status;
  }
  // The hash of the request reply `no` answers.
  const Hash128& request_hash(std::uint64_t no) const {
    CREDIT_ASSERT(contains(no));
    return index_[no - base_].request_hash;
  }
  // Sets it (a snapshot restores the replies first, then the keys that name them).
  void set_request_hash(std::uint64_t no, const Hash128& request_hash) {
    CREDIT_ASSERT(contains(no));
    index_[no - base_].request_hash = request_hash;
  }
  // Releases the replies numbered below `no` (as many as are kept).
  void release_below(std::uint64_t no);
  // Empties the store and numbers the next reply `base` (snapshot restore).
  void reset(std::uint64_t base);

 private:
  // Kept here rather than in the idempotency table's slots: a slot is then 32 bytes, two to
  // a cache line, and only a reply (one per live key) pays for the request hash, not each
  // of the 1.3 to 2.7 slots per key that the table's growth maps.
  struct Ref {
    const char* bytes = nullptr;
    std::uint32_t length = 0;
    std::int32_t status = 0;
    Hash128 request_hash{};
  };
  static_assert(sizeof(Ref) == 32);
  struct Chunk {
    Chunk() = default;
    Chunk(Chunk&&) noexcept = default;
    // The fault-in stops before the bytes it writes to are released (the destructor
    // does the same: members go in reverse order).
    Chunk& operator=(Chunk&& o) noexcept {
      fault_in = std::move(o.fault_in);
      bytes = std::move(o.bytes);
      used = o.used;
      end_no = o.end_no;
      return *this;
    }
    HugeBuffer bytes;
    BackgroundFaultIn fault_in;  // still running when the chunk was the next one
    std::size_t used = 0;
    std::uint64_t end_no = 0;  // the number after its last reply
  };
  char* room_for(std::size_t length);
  // Numbers the reply of `length` bytes at `bytes`, in the last chunk.
  std::uint64_t index_reply(int status, const char* bytes, std::size_t length,
                            const Hash128& request_hash);
  // The size of the next chunk: an eighth of bytes_mapped_ in whole huge pages, within
  // [kReplyChunkBytes, kReplyChunkBytesMax].
  std::size_t next_chunk_bytes() const;
  // Maps the next chunk and starts its fault-in, with a background thread and no spare.
  void prepare_next_chunk();

  Ring<Ref> index_;
  Ring<Chunk> chunks_;
  Background background_;
  HugeBuffer spare_;  // a released chunk, reused by the next one it fits
  // The chunk after the last one, being faulted in; left out of forks until it is used.
  HugeBuffer next_;
  BackgroundFaultIn next_fault_in_;  // after next_: stopped before it is released
  std::size_t bytes_mapped_ = 0;     // of the chunks in chunks_
  std::string packed_;               // push's scratch
  std::uint64_t base_ = 0;
};

}  // namespace credit::ledger
