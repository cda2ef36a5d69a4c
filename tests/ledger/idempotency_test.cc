// tests/ledger/idempotency_test.cc
// The idempotency table and its ring against a reference model (a map and a FIFO of
// expiries), through many doublings with lookups, rewrites of expired keys and expiry
// while the old array's entries are still moving; and the block ring on its own.
#include "ledger/idempotency.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "ledger/internal/ring.h"

namespace credit::ledger {
namespace {

struct ModelEntry {
  std::uint64_t reply_no;
  std::int64_t expires_at_ms;
};

Hash128 make_key(std::uint64_t low, std::uint64_t high) {
  Hash128 h{};
  std::memcpy(h.data(), &low, 8);
  std::memcpy(h.data() + 8, &high, 8);
  return h;
}

class Model {
 public:
  const ModelEntry* find(const Hash128& k, std::int64_t now_ms) const {
    auto it = map_.find(k);
    return it != map_.end() && it->second.expires_at_ms > now_ms ? &it->second : nullptr;
  }
  void insert(const Hash128& k, std::uint64_t reply, std::int64_t exp) {
    map_[k] = ModelEntry{reply, exp};
    queue_.push_back({k, exp});
  }
  std::uint64_t expire(std::int64_t now_ms) {
    std::uint64_t released = 0;
    while (!queue_.empty() && queue_.front().second <= now_ms) {
      auto [k, exp] = queue_.front();
      queue_.pop_front();
      auto it = map_.find(k);
      if (it != map_.end() && it->second.expires_at_ms == exp) {
        released = std::max(released, it->second.reply_no + 1);
        map_.erase(it);
      }
    }
    return released;
  }
  std::size_t size() const { return map_.size(); }
  const std::map<Hash128, ModelEntry>& entries() const { return map_; }

 private:
  std::map<Hash128, ModelEntry> map_;
  std::deque<std::pair<Hash128, std::int64_t>> queue_;
};

// Keys drawn from a few clustered families (equal low bits, so long probe chains that
// wrap the array) and from uniform random bits.
Hash128 draw_key(std::mt19937_64& rng) {
  std::uint64_t low = rng();
  switch (rng() % 64) {
    case 0:
      low = (low & ~0xFFFFull) | 0xFF00ull | (low & 0xFF);  // near the end: chains wrap
      break;
    case 1:
      low = (low & ~0xFFFull) | 0x100ull | (low & 0x3F);
      break;
    default:
      break;
  }
  return make_key(low, rng());
}

void check_same(const IdempotencyTable& table, const Model& model, std::int64_t now_ms) {
  ASSERT_EQ(table.size(), model.size());
  for (const auto& [k, m] : model.entries()) {
    const IdempotencyTable::Entry* e = table.find(k, now_ms);
    if (m.expires_at_ms > now_ms) {
      ASSERT_NE(e, nullptr);
      EXPECT_EQ(e->reply_no, m.reply_no);
      EXPECT_EQ(e->expires_at_ms, m.expires_at_ms);
    } else {
      EXPECT_EQ(e, nullptr);
    }
  }
}

TEST(IdempotencyTable, MatchesModelThroughDoublingsAndExpiry) {
  // Key lifetimes long enough for the live keys to double the array twice (20 s), and
  // short enough for expiry to go on all the while (8 s).
  for (auto [seed, lifetime_ms] : {std::pair{1u, 20'000}, std::pair{2u, 8'000}}) {
    std::mt19937_64 rng(seed);
    IdempotencyTable table(400'000);
    Model model;
    std::vector<Hash128> written;
    std::int64_t now_ms = 1'000;
    std::uint64_t reply = 0;
    bool saw_migration = false;
    for (int step = 0; step < 400'000; ++step) {
      const std::uint64_t op = rng() % 100;
      if (op < 70) {
        // A new key, or a written one again (live: a replay, so no insert; expired but
        // not swept: rewritten in place or moved out of the old array).
        Hash128 k =
            !written.empty() && rng() % 5 == 0 ? written[rng() % written.size()] : draw_key(rng);
        const auto* m = model.find(k, now_ms);
        const auto* e = table.find(k, now_ms);
        ASSERT_EQ(m == nullptr, e == nullptr) << "step " << step;
        if (m != nullptr || table.full()) continue;
        std::int64_t exp = now_ms + lifetime_ms + static_cast<std::int64_t>(rng() % 3);
        table.insert(k, reply, exp);
        model.insert(k, reply, exp);
        ++reply;
        written.push_back(k);
      } else if (op < 95) {
        Hash128 k =
            !written.empty() && rng() % 2 == 0 ? written[rng() % written.size()] : draw_key(rng);
        const auto* m = model.find(k, now_ms);
        const auto* e = table.find(k, now_ms);
        ASSERT_EQ(m == nullptr, e == nullptr) << "step " << step;
        if (m != nullptr) {
          ASSERT_EQ(e->reply_no, m->reply_no);
        }
      } else {
        now_ms += static_cast<std::int64_t>(rng() % 4);
        // Sweep only sometimes, so expired entries linger and get rewritten.
        if (rng() % 3 == 0) {
          ASSERT_EQ(table.expire(now_ms), model.expire(now_ms));
        }
      }
      saw_migration = saw_migration || table.migrating();
      if (step % 50'000 == 0) check_same(table, model, now_ms);
    }
    check_same(table, model, now_ms);
    EXPECT_TRUE(saw_migration);
    // Everything expires in the end, in both.
    now_ms += 100'000;
    EXPECT_EQ(table.expire(now_ms), model.expire(now_ms));
    EXPECT_EQ(table.size(), 0u);
  }
}

TEST(IdempotencyTable, ExpiredKeyRewrittenWhileStillInTheOldArray) {
  IdempotencyTable table(1'000'000);
  std::mt19937_64 rng(11);
  std::vector<Hash128> keys;
  // 3/4 of the first array (65,536 slots) expiring at 10; the next insert doubles it.
  while (!table.migrating()) {
    keys.push_back(make_key(rng(), rng()));
    table.insert(keys.back(), keys.size() - 1, keys.size() < 49'153 ? 10 : 100);
  }
  ASSERT_EQ(table.size(), keys.size());
  // At 20 every first key has expired but none was swept: rewrite the first few.
  const std::size_t rewritten = 4;
  for (std::size_t i = 0; i < rewritten; ++i) {
    ASSERT_EQ(table.find(keys[i], 20), nullptr);
    table.insert(keys[i], 1'000'000 + i, 200);
    ASSERT_EQ(table.size(), keys.size());  // replaced, not added
  }
  ASSERT_TRUE(table.migrating());  // 8 slots moved per insert: the old array is still there
  table.expire(150);               // every key but the rewritten ones
  EXPECT_EQ(table.size(), rewritten);
  for (std::size_t i = 0; i < rewritten; ++i) {
    const auto* e = table.find(keys[i], 150);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->reply_no, 1'000'000 + i);
  }
  EXPECT_EQ(table.expire(300), 1'000'000 + rewritten);
  EXPECT_EQ(table.size(), 0u);
}

TEST(IdempotencyTable, GrowsToManyKeysWithoutLosingAny) {
  IdempotencyTable table(2'000'000);
  std::mt19937_64 rng(7);
  std::vector<Hash128> keys;
  for (std::uint64_t i = 0; i < 1'000'000; ++i) {
    keys.push_back(draw_key(rng));
    if (table.find(keys.back(), 0) != nullptr) continue;  // a repeat draw
    table.insert(keys.back(), i, 10);
  }
  for (const Hash128& k : keys) ASSERT_NE(table.find(k, 0), nullptr);
  // Snapshots walk the table through the expiry queue.
  std::size_t walked = 0;
  table.for_each([&](const IdempotencyTable::Entry&) { ++walked; });
  EXPECT_EQ(walked, table.size());
}

TEST(IdempotencyTable, ASnapshotChildForkedAnyTimeReadsEveryKey) {
  // A forked snapshot child reads the table (for_each, find) but never the next array,
  // which forks leave out: forked while it is prepared, after the doubling made it the
  // array in use, and while the old one still moves, every key reads back in the child.
  IdempotencyTable table(2'000'000);
  std::mt19937_64 rng(5);
  std::vector<Hash128> keys;
  auto insert_until = [&](auto done) {
    while (!done()) {
      keys.push_back(make_key(rng(), rng()));
      table.insert(keys.back(), keys.size() - 1, 100);
    }
  };
  auto child_reads_all = [&] {
    const pid_t pid = ::fork();
    if (pid == 0) {
      std::size_t walked = 0;
      table.for_each([&](const IdempotencyTable::Entry&) { ++walked; });
      bool found = walked == keys.size();
      for (std::size_t i = 0; i < keys.size() && found; ++i) {
        const auto* e = table.find(keys[i], 0);
        found = e != nullptr && e->reply_no == i;
      }
      ::_exit(found ? 0 : 1);
    }
    int status = 0;
    EXPECT_EQ(::waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  };
  // Past half of 65,536 slots: the next array (4 MiB) is mapped.
  insert_until([&] { return keys.size() > 40'000; });
  EXPECT_TRUE(child_reads_all()) << "forked with the next array prepared";
  insert_until([&] { return table.migrating(); });  // the doubling: next is in use
  EXPECT_TRUE(child_reads_all()) << "forked while the old array's entries move";
  insert_until([&] { return !table.migrating(); });
  EXPECT_TRUE(child_reads_all()) << "forked after the move";
  insert_until([&] { return keys.size() > 200'000; });  // two more doublings
  EXPECT_TRUE(child_reads_all()) << "forked later";
  for (std::size_t i = 0; i < keys.size(); i += 997) ASSERT_NE(table.find(keys[i], 0), nullptr);
}

TEST(IdempotencyTable, ADeferredNextArrayIsPreparedWhenTheDeferralEnds) {
  // A start defers the next array: the table still doubles when it must (mapping the
  // array then) and loses no key; ending the deferral past half load prepares it.
  IdempotencyTable table(2'000'000);
  std::mt19937_64 rng(9);
  std::vector<Hash128> keys;
  table.defer_next_array(true);
  bool doubled = false;
  for (std::uint64_t i = 0; i < 150'000; ++i) {  // through two doublings
    keys.push_back(make_key(rng(), rng()));
    table.insert(keys.back(), i, 100);
    EXPECT_FALSE(table.next_prepared()) << i;
    doubled = doubled || table.migrating();
  }
  EXPECT_TRUE(doubled);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const auto* e = table.find(keys[i], 0);
    ASSERT_NE(e, nullptr) << i;
    EXPECT_EQ(e->reply_no, i);
  }
  // 150,000 keys in 262,144 slots: past half, so the end of the deferral prepares.
  table.defer_next_array(false);
  EXPECT_TRUE(table.next_prepared());
}

TEST(IdempotencyTable, NextArrayFaultedInOnAnotherThread) {
  // As the server runs it: the next array's pages are faulted in by a job on another
  // thread while inserts, lookups and moves go on; the table waits for a job still
  // running before it releases an array (here, at its end).
  std::atomic<int> jobs{0};
  Background background = [&jobs](std::function<void()> job) {
    ++jobs;
    std::thread(std::move(job)).detach();
  };
  std::mt19937_64 rng(5);
  std::vector<Hash128> keys;
  {
    IdempotencyTable table(3'000'000, background);
    for (std::uint64_t i = 0; i < 2'000'000; ++i) {
      keys.push_back(draw_key(rng));
      if (table.find(keys.back(), 0) != nullptr) continue;
      table.insert(keys.back(), i, 10);
      if (i % 100'000 == 0) {
        for (std::size_t j = 0; j < keys.size(); j += 1'009)
          ASSERT_NE(table.find(keys[j], 0), nullptr);
      }
    }
    for (const Hash128& k : keys) ASSERT_NE(table.find(k, 0), nullptr);
  }
  EXPECT_GE(jobs.load(), 3);  // one per doubling from 2 MiB arrays up
}

TEST(IdempotencyTable, AReservedArrayTakesTheKeysInOneStepOnceFaultedIn) {
  // A start that expects a million keys: the table moves from its first array straight to
  // the one for a million (2^21 slots at load <= 3/4), not through each size between, and
  // only once the background job faulted it in; every key stays found and the growth that
  // was due meanwhile (slots 2^16 -> 2^17) mapped an array of its own.
  std::vector<std::function<void()>> held;  // jobs run when the test says
  Background background = [&held](std::function<void()> job) { held.push_back(std::move(job)); };
  std::mt19937_64 rng(11);
  std::vector<Hash128> keys;
  IdempotencyTable table(4'000'000, background);
  auto add = [&](std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      keys.push_back(draw_key(rng));
      ASSERT_EQ(table.find(keys.back(), 0), nullptr);
      table.insert(keys.back(), keys.size() - 1, 10);
    }
  };
  add(1'000);
  const std::size_t first = table.slot_count();
  table.reserve(1'000'000);
  EXPECT_TRUE(table.next_prepared());
  ASSERT_EQ(held.size(), 1u);
  add(60'000);  // past 3/4 of 2^16: a doubling of its own while the job has not run
  EXPECT_EQ(table.slot_count(), 2 * first);
  EXPECT_TRUE(table.next_prepared());
  add(10);
  EXPECT_EQ(table.slot_count(), 2 * first);  // not faulted in yet: not taken
  held.front()();                            // the fault-in runs to its end
  add(70'000);                               // the doubling's moves end within these, then the jump
  EXPECT_EQ(table.slot_count(), std::size_t{1} << 21);
  EXPECT_FALSE(table.next_prepared());
  add(800'000);
  EXPECT_EQ(table.slot_count(), std::size_t{1} << 21);  // no growth up to the reservation
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const auto* e = table.find(keys[i], 0);
    ASSERT_NE(e, nullptr) << i;
    ASSERT_EQ(e->reply_no, i);
  }
  // A reservation within one doubling, or below the size, changes nothing.
  table.reserve(keys.size() + 10);
  EXPECT_FALSE(table.next_prepared());
}

TEST(IdempotencyTable, WithoutABackgroundThreadAReservationIsTakenAtTheNextInsert) {
  IdempotencyTable table(4'000'000);
  std::mt19937_64 rng(12);
  std::vector<Hash128> keys;
  for (int i = 0; i < 5'000; ++i) {
    keys.push_back(draw_key(rng));
    table.insert(keys.back(), keys.size() - 1, 10);
  }
  table.reserve(3'000'000);
  EXPECT_EQ(table.slot_count(), std::size_t{1} << 16);
  keys.push_back(draw_key(rng));
  table.insert(keys.back(), keys.size() - 1, 10);
  EXPECT_EQ(table.slot_count(), std::size_t{1} << 22);
  for (std::size_t i = 0; i < keys.size(); ++i) ASSERT_NE(table.find(keys[i], 0), nullptr) << i;
}

TEST(IdempotencyTable, TheOldArrayIsUnmappedByABackgroundJobWhenItsMovesEnd) {
  // The last move of a migration gives the old array (2 MiB or more) to the background
  // thread to unmap: a 512 MiB array split into 4 KiB pages by a snapshot child's
  // copy-on-write took the ledger thread ~50 ms to unmap. Jobs run at once here, counted.
  std::size_t jobs = 0;
  Background background = [&jobs](std::function<void()> job) {
    ++jobs;
    job();
  };
  std::mt19937_64 rng(12);
  std::vector<Hash128> keys;
  IdempotencyTable table(1'000'000, background);
  const std::size_t first = table.slot_count();
  while (!table.migrating()) {
    keys.push_back(draw_key(rng));
    table.insert(keys.back(), keys.size() - 1, 10);
  }
  ASSERT_EQ(table.slot_count(), 2 * first);
  ASSERT_GE(first * sizeof(IdempotencyTable::Entry), kHugePageBytes);
  const std::size_t jobs_before = jobs;
  while (table.migrating()) {
    keys.push_back(draw_key(rng));
    table.insert(keys.back(), keys.size() - 1, 10);
    if (table.migrating()) {
      ASSERT_EQ(jobs, jobs_before);
    }
  }
  EXPECT_EQ(jobs, jobs_before + 1);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const auto* e = table.find(keys[i], 0);
    ASSERT_NE(e, nullptr) << i;
    ASSERT_EQ(e->reply_no, i);
  }
}

TEST(IdempotencyTable, SequentialKeysMakeOneLongRunThatMovesWhole) {
  // Keys whose low bits count up (not hashes) fill consecutive slots: one run as long as
  // the table, moved whole at the doubling; every key stays found throughout.
  IdempotencyTable table(1'000'000);
  for (std::uint64_t i = 0; i < 300'000; ++i) {
    const Hash128 k = make_key(i, 42);
    ASSERT_EQ(table.find(k, 0), nullptr);
    table.insert(k, i, 10);
    if (i % 4'096 == 0) {
      for (std::uint64_t j = 0; j <= i; j += 997)
        ASSERT_NE(table.find(make_key(j, 42), 0), nullptr);
    }
  }
  EXPECT_EQ(table.size(), 300'000u);
  // (Not expired here: erasing from the front of a run as long as the table scans the rest
  // of it each time, a cost of keys that are not hashes that this test does not measure.)
}

TEST(Ring, FifoAcrossBlocksWithInterleavedPops) {
  Ring<std::uint64_t> ring;
  std::deque<std::uint64_t> model;
  std::mt19937_64 rng(3);
  std::uint64_t next = 0;
  for (int step = 0; step < 200'000; ++step) {
    if (rng() % 3 != 0 || model.empty()) {
      ring.push_back(next);
      model.push_back(next);
      ++next;
    } else {
      ASSERT_EQ(ring.front(), model.front());
      ring.pop_front();
      model.pop_front();
    }
    ASSERT_EQ(ring.size(), model.size());
    if (!model.empty()) {
      ASSERT_EQ(ring.back(), model.back());
      std::size_t i = rng() % model.size();
      ASSERT_EQ(ring[i], model[i]);
    }
  }
  ring.clear();
  EXPECT_TRUE(ring.empty());
  ring.push_back(42);
  EXPECT_EQ(ring.front(), 42u);
}

}  // namespace
}  // namespace credit::ledger
