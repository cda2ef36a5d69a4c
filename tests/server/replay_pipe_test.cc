// tests/server/replay_pipe_test.cc
// The replay's handoff between the decoding thread and the applying one: every record
// arrives once and in order, slots are reused, and a consumer that stops ends the
// producer's loop instead of leaving it waiting.
#include "server/replay_pipe.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <thread>
#include <vector>

namespace credit::server {
namespace {

struct Numbered {
  std::uint64_t n = 0;
  std::vector<std::uint64_t> reused;  // storage a slot keeps across records
};

TEST(ReplayPipe, EveryRecordArrivesOnceInOrderThroughReusedSlots) {
  ReplayPipe<Numbered> pipe;
  constexpr std::uint64_t kRecords = 100'000;
  std::thread producer([&] {
    for (std::uint64_t i = 1; i <= kRecords; ++i) {
      Numbered* slot = pipe.acquire();
      ASSERT_NE(slot, nullptr);
      slot->n = i;
      slot->reused.assign(i % 7, i);
      pipe.publish();
    }
    pipe.close();
  });
  std::uint64_t expected = 1;
  while (Numbered* r = pipe.next()) {
    ASSERT_EQ(r->n, expected);
    ASSERT_EQ(r->reused, std::vector<std::uint64_t>(expected % 7, expected));
    ++expected;
    pipe.release();
  }
  producer.join();
  EXPECT_EQ(expected, kRecords + 1);
}

TEST(ReplayPipe, AConsumerThatStopsEndsTheProducer) {
  ReplayPipe<Numbered> pipe;
  std::uint64_t published = 0;
  std::thread producer([&] {
    // Stops when acquire() says the consumer gave up (it would otherwise run forever).
    while (Numbered* slot = pipe.acquire()) {
      slot->n = ++published;
      pipe.publish();
    }
    pipe.close();
  });
  std::uint64_t taken = 0;
  while (Numbered* r = pipe.next()) {
    ++taken;
    EXPECT_EQ(r->n, taken);
    if (taken == 10) pipe.stop();
    pipe.release();
  }
  producer.join();
  // The records in flight when it stopped are still handed over, none after them.
  EXPECT_GE(taken, 10u);
  EXPECT_LE(taken, 10u + kReplayPipeSlots);
  EXPECT_EQ(taken, published);
}

TEST(ReplayPipe, AClosedEmptyPipeGivesNothing) {
  ReplayPipe<Numbered> pipe;
  pipe.close();
  EXPECT_EQ(pipe.next(), nullptr);
}

}  // namespace
}  // namespace credit::server
