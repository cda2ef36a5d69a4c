// tests/ledger/reply_store_test.cc
// The stored replies (ledger/internal/reply_store.h): every reply reads back as stored
// across chunks that grow with the store, released replies free their chunks (one is kept
// as the spare for the next), and a store emptied and refilled reads back the same.
// Owns: these tests. Does not: test what the ledger stores (ledger_test.cc).
#include "ledger/internal/reply_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <string>
#include <thread>

namespace credit::ledger {
namespace {

// A reply body of about 200 bytes that packing cannot shrink to nothing.
std::string body_of(std::uint64_t i) {
  return "{\"charge_id\":\"c_" + std::to_string(i) + "\",\"credits\":" + std::to_string(i % 997) +
         ".125,\"pool\":\"credits\",\"available_after\":" + std::to_string(i * 7 % 100'003) +
         ",\"drawn_from\":[{\"source\":\"allowance\",\"credits\":1.5}],\"note\":\"" +
         std::string(i % 120, static_cast<char>('a' + i % 26)) + "\"}";
}

// The request hash stored with reply i.
Hash128 request_of(std::uint64_t i) {
  Hash128 h{};
  for (std::size_t b = 0; b < h.size(); ++b) h[b] = static_cast<std::uint8_t>(i >> (b % 8 * 8));
  h[15] ^= 0x5a;
  return h;
}

// Enough replies for several chunks of each size up to the largest, read back, released
// from the front, then a reply larger than any chunk, a reset and a restore.
void fill_read_release(ReplyStore& store) {
  constexpr std::uint64_t kReplies = 2'000'000;
  for (std::uint64_t i = 0; i < kReplies; ++i) {
    ASSERT_EQ(store.push(200 + static_cast<int>(i % 3), body_of(i), request_of(i)), i);
  }
  EXPECT_EQ(store.size(), kReplies);
  std::string body;
  for (std::uint64_t i = 0; i < kReplies; i += 997) {
    EXPECT_EQ(store.at(i, body), 200 + static_cast<int>(i % 3));
    ASSERT_EQ(body, body_of(i)) << i;
    ASSERT_EQ(store.request_hash(i), request_of(i)) << i;
  }
  // Released from the front, as keys expire; the rest still read back, and new replies
  // go on from the next number.
  store.release_below(kReplies / 2);
  EXPECT_EQ(store.base(), kReplies / 2);
  EXPECT_FALSE(store.contains(kReplies / 2 - 1));
  for (std::uint64_t i = kReplies / 2; i < kReplies; i += 991) {
    ASSERT_EQ(store.at(i, body), 200 + static_cast<int>(i % 3));
    ASSERT_EQ(body, body_of(i)) << i;
    ASSERT_EQ(store.request_hash(i), request_of(i)) << i;
  }
  for (std::uint64_t i = kReplies; i < kReplies + 100'000; ++i) {
    ASSERT_EQ(store.push(201, body_of(i), request_of(i)), i);
  }
  store.release_below(kReplies + 99'999);
  ASSERT_EQ(store.size(), 1u);
  EXPECT_EQ(store.at(kReplies + 99'999, body), 201);
  EXPECT_EQ(body, body_of(kReplies + 99'999));
  // A reply larger than the largest chunk gets a chunk of its own.
  const std::string large(kReplyChunkBytesMax + 1000, 'x');
  const std::uint64_t no = store.push(200, "{\"big\":\"" + large + "\"}", request_of(1));
  EXPECT_EQ(store.at(no, body), 200);
  EXPECT_EQ(body, "{\"big\":\"" + large + "\"}");
  // Emptied (a snapshot restore) and filled again from another number.
  store.reset(77);
  EXPECT_EQ(store.size(), 0u);
  for (std::uint64_t i = 0; i < 10'000; ++i) ASSERT_EQ(store.push(200, body_of(i), {}), 77 + i);
  EXPECT_EQ(store.at(77 + 9'999, body), 200);
  EXPECT_EQ(body, body_of(9'999));
  // A snapshot restores the replies, then names each one's request.
  EXPECT_EQ(store.request_hash(80), Hash128{});
  store.set_request_hash(80, request_of(80));
  EXPECT_EQ(store.request_hash(80), request_of(80));
  EXPECT_EQ(store.request_hash(81), Hash128{});
}

TEST(ReplyStore, RepliesReadBackAcrossGrowingChunksAndReleasesFreeThem) {
  ReplyStore store;
  fill_read_release(store);
}

TEST(ReplyStore, NextChunksFaultedInOnAnotherThreadHoldTheSameReplies) {
  // As the server runs it: each next chunk is mapped ahead and faulted in by a job on
  // another thread while replies go on; a chunk is released only after its job stopped.
  std::atomic<int> jobs{0};
  Background background = [&jobs](std::function<void()> job) {
    ++jobs;
    std::thread(std::move(job)).detach();
  };
  {
    ReplyStore store(background);
    fill_read_release(store);
  }
  EXPECT_GE(jobs.load(), 10);  // a chunk of each size from 2 to 64 MiB and more
}

}  // namespace
}  // namespace credit::ledger
