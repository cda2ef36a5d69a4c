// tests/store/command_log_test.cc
// The log bytes of commands (ledger/codec.h version 2, in WAL records of
// store/wal_format.h version 2): how many bytes a charge costs in a group of 4096 (the
// issue's budget: 64 for a minimal charge, 256 for a typical one), and that interning,
// key packing and decoding into a reused batch give back exactly what was encoded.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "ledger/codec.h"
#include "store/wal_format.h"

namespace credit::ledger {
namespace {

constexpr std::size_t kGroupCommands = 4096;
constexpr std::size_t kAccounts = 1000;
// The engine's record around the ledger bytes (server/engine.cc): version u8, the ledger
// bytes' length varint (3 bytes up to 2 MiB), the engine op count u8.
constexpr std::size_t kEngineRecordOverheadBytes = 5;
constexpr std::size_t kMinimalChargeLogBytesMax = 64;
constexpr std::size_t kTypicalChargeLogBytesMax = 256;

std::string uuid(std::mt19937_64& rng) {
  const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 36; ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      s += '-';
    } else {
      s += hex[rng() & 15];
    }
  }
  return s;
}

Hash128 random_hash(std::mt19937_64& rng) {
  Hash128 h;
  for (auto& b : h) b = static_cast<std::uint8_t>(rng());
  return h;
}

void key_it(Command& c, std::string key, std::mt19937_64& rng) {
  c.idem.has_key = true;
  c.idem.key = std::move(key);
  c.idem.scope_key_hash = random_hash(rng);
  c.idem.request_hash = random_hash(rng);
}

// A charge of a stated amount: a UUID key, an account of 1000, a user, no usage or metadata.
Command minimal_charge(std::uint64_t i, std::mt19937_64& rng) {
  Command c;
  key_it(c, uuid(rng), rng);
  Charge ch;
  ch.account_id = "acct_" + std::to_string(rng() % kAccounts);
  ch.user_id = "u" + std::to_string(i % 7);
  ch.kind = pricing::Kind::kBackendFunction;
  ch.amount = Millicredits::from_mc(static_cast<std::int64_t>(1 + rng() % 5000));
  c.body = std::move(ch);
  return c;
}

// An agent prompt priced by usage, with the metadata the dashboard reads.
Command typical_charge(std::uint64_t i, std::mt19937_64& rng) {
  Command c;
  key_it(c, uuid(rng), rng);
  Charge ch;
  ch.account_id = "org_" + std::to_string(rng() % kAccounts) + "_production";
  ch.user_id = "user-" + std::to_string(i % 40) + "@example.com";
  ch.kind = pricing::Kind::kAgentPrompt;
  ch.pool = "credits";
  ch.priced_by_usage = true;
  ch.rate_card_version = 3;
  ch.amount = Millicredits::from_mc(static_cast<std::int64_t>(1000 + rng() % 400'000));
  pricing::Usage u;
  u.model = "claude-sonnet-4-5";
  u.input_tokens = static_cast<std::int64_t>(rng() % 200'000);
  u.output_tokens = static_cast<std::int64_t>(rng() % 20'000);
  u.files_read = static_cast<std::int64_t>(rng() % 40);
  u.lines_emitted = static_cast<std::int64_t>(rng() % 2'000);
  u.lines_changed = static_cast<std::int64_t>(rng() % 200);
  ch.usage = u;
  ch.metadata.file = "src/pages/Page" + std::to_string(rng() % 200) + ".jsx";
  ch.metadata.feature = "checkout";
  ch.metadata.call_site = "/agent/prompt";
  ch.metadata.intent = (i % 3 == 0) ? "fix" : "feature";
  ch.metadata.request_hash = "0123456789abcdef";
  c.body = std::move(ch);
  return c;
}

// Bytes of log per command for one WAL record holding `commands`.
double log_bytes_per_command(const std::vector<Command>& commands) {
  std::vector<const Command*> ptrs;
  for (const auto& c : commands) ptrs.push_back(&c);
  std::string bytes;
  encode_batch(1'772'000'000'000, ptrs, bytes);
  return static_cast<double>(bytes.size() + kEngineRecordOverheadBytes +
                             store::kRecordHeaderBytes) /
         static_cast<double>(commands.size());
}

void expect_round_trip(const std::vector<Command>& commands) {
  std::vector<const Command*> ptrs;
  for (const auto& c : commands) ptrs.push_back(&c);
  std::string bytes;
  encode_batch(42, ptrs, bytes);
  auto back = decode_batch(bytes);
  ASSERT_TRUE(back.ok()) << back.error().message;
  ASSERT_EQ(back->commands.size(), commands.size());
  for (std::size_t i = 0; i < commands.size(); ++i) {
    const Command& x = commands[i];
    const Command& y = back->commands[i];
    EXPECT_EQ(y.idem.key, x.idem.key) << i;
    EXPECT_EQ(y.idem.scope_key_hash, x.idem.scope_key_hash) << i;
    EXPECT_EQ(y.idem.request_hash, x.idem.request_hash) << i;
    const auto& a = std::get<Charge>(x.body);
    const auto& b = std::get<Charge>(y.body);
    EXPECT_EQ(b.account_id, a.account_id) << i;
    EXPECT_EQ(b.user_id, a.user_id) << i;
    EXPECT_EQ(b.pool, a.pool) << i;
    EXPECT_EQ(b.amount, a.amount) << i;
    EXPECT_EQ(b.usage, a.usage) << i;
    EXPECT_EQ(b.metadata, a.metadata) << i;
    EXPECT_EQ(b.rate_card_version, a.rate_card_version) << i;
    EXPECT_EQ(b.priced_by_usage, a.priced_by_usage) << i;
  }
}

TEST(CommandLog, AMinimalChargeInAGroupOf4096TakesAtMost64BytesOfLog) {
  std::mt19937_64 rng(7);
  std::vector<Command> commands;
  for (std::uint64_t i = 0; i < kGroupCommands; ++i) commands.push_back(minimal_charge(i, rng));
  const double per = log_bytes_per_command(commands);
  std::printf("minimal charge, group of %zu: %.1f bytes of log each\n", kGroupCommands, per);
  EXPECT_LE(per, kMinimalChargeLogBytesMax);
  expect_round_trip(commands);
}

TEST(CommandLog, ATypicalChargeInAGroupOf4096TakesAtMost256BytesOfLog) {
  std::mt19937_64 rng(8);
  std::vector<Command> commands;
  for (std::uint64_t i = 0; i < kGroupCommands; ++i) commands.push_back(typical_charge(i, rng));
  const double per = log_bytes_per_command(commands);
  std::printf("typical charge, group of %zu: %.1f bytes of log each\n", kGroupCommands, per);
  EXPECT_LE(per, kTypicalChargeLogBytesMax);
  expect_round_trip(commands);
}

// Smaller groups intern less (the dictionary is per record): the figures for the record,
// not a budget.
TEST(CommandLog, SmallerGroupsCostMoreBytesPerCharge) {
  double previous = 1e9;
  for (std::size_t group : {std::size_t{1}, std::size_t{40}, std::size_t{4096}}) {
    std::mt19937_64 rng(12);
    std::vector<Command> commands;
    for (std::uint64_t i = 0; i < group; ++i) commands.push_back(minimal_charge(i, rng));
    const double per = log_bytes_per_command(commands);
    std::printf("minimal charge, group of %zu: %.1f bytes of log each\n", group, per);
    EXPECT_LT(per, previous);
    previous = per;
  }
}

TEST(CommandLog, SequentialKeysAreFrontCodedAndOddKeysSpelledOut) {
  std::mt19937_64 rng(9);
  std::vector<Command> commands;
  const char* keys[] = {"bench-1000000",
                        "bench-1000001",
                        "bench-1000002",
                        "x",
                        "",  // a keyed command with an empty key still round-trips
                        "123E4567-E89B-12D3-A456-426614174000",
                        "123e4567-e89b-12d3-a456-426614174000",
                        "123e4567-E89B-12d3-a456-426614174000",  // mixed case: spelled out
                        "123e4567-e89b-12d3-a456-4266141740001",
                        "bench-1000003"};
  for (std::uint64_t i = 0; i < std::size(keys); ++i) {
    Command c = minimal_charge(i, rng);
    c.idem.key = keys[i];
    commands.push_back(std::move(c));
  }
  expect_round_trip(commands);
}

TEST(CommandLog, DecodingIntoAReusedBatchOverwritesEveryField) {
  std::mt19937_64 rng(10);
  std::vector<Command> typical;
  std::vector<Command> minimal;
  for (std::uint64_t i = 0; i < 50; ++i) typical.push_back(typical_charge(i, rng));
  for (std::uint64_t i = 0; i < 50; ++i) minimal.push_back(minimal_charge(i, rng));
  Command unkeyed;
  unkeyed.body = Sweep{};
  minimal.push_back(unkeyed);
  auto encode = [](const std::vector<Command>& cs) {
    std::vector<const Command*> ptrs;
    for (const auto& c : cs) ptrs.push_back(&c);
    std::string bytes;
    encode_batch(5, ptrs, bytes);
    return bytes;
  };
  const std::string typical_bytes = encode(typical);
  const std::string minimal_bytes = encode(minimal);
  DecodedBatch reused;
  ASSERT_TRUE(decode_batch_into(typical_bytes, reused).ok());
  ASSERT_TRUE(decode_batch_into(minimal_bytes, reused).ok());
  auto fresh = decode_batch(minimal_bytes);
  ASSERT_TRUE(fresh.ok());
  ASSERT_EQ(reused.commands.size(), fresh->commands.size());
  // Encoding both gives the same bytes: nothing of the typical batch was left behind.
  std::vector<const Command*> a, b;
  for (const auto& c : reused.commands) a.push_back(&c);
  for (const auto& c : fresh->commands) b.push_back(&c);
  std::string x, y;
  encode_batch(5, a, x);
  encode_batch(5, b, y);
  EXPECT_EQ(x, y);
  EXPECT_EQ(x, minimal_bytes);
  const auto& first = std::get<Charge>(reused.commands[0].body);
  EXPECT_FALSE(first.usage.has_value());
  EXPECT_TRUE(first.metadata.empty());
  EXPECT_FALSE(reused.commands.back().idem.has_key);
}

TEST(CommandLog, AReferenceToAnUndefinedIdOrAFlippedByteIsRefused) {
  std::mt19937_64 rng(11);
  std::vector<Command> commands;
  for (std::uint64_t i = 0; i < 20; ++i) commands.push_back(typical_charge(i, rng));
  std::vector<const Command*> ptrs;
  for (const auto& c : commands) ptrs.push_back(&c);
  std::string bytes;
  encode_batch(5, ptrs, bytes);
  // Truncations and trailing bytes are refused everywhere.
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(decode_batch(std::string_view(bytes).substr(0, n)).ok()) << n;
  }
  EXPECT_FALSE(decode_batch(bytes + std::string(1, '\0')).ok());
  // The first command's account id is the batch's first definition (a zero byte) after
  // the batch header (version, now_ms, count: a byte each), the command's head byte, its
  // two hashes, its UUID key (a header byte and 16) and its flags byte. Making it a
  // reference to entry 5, which does not exist yet, must fail.
  std::string bad = bytes;
  const std::size_t at = 3 + 1 + 32 + 17 + 1;
  ASSERT_EQ(bad[at], '\0');
  bad[at] = 6;
  EXPECT_FALSE(decode_batch(bad).ok());
}

}  // namespace
}  // namespace credit::ledger
