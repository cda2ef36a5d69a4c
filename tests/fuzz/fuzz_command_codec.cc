// tests/fuzz/fuzz_command_codec.cc
// The command log's batch decoder (ledger/codec.h), which a start runs on every logged
// record. Properties: any bytes decode or fail with kStorageFailed and a message, never
// crash; a decoded batch encodes to bytes that decode again, and encoding is a fixpoint
// from there (what a replay reads is what was meant).
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_target.h"
#include "ledger/codec.h"
#include "samples.h"

namespace {

using credit::fuzz::check;

std::string encode(const credit::ledger::DecodedBatch& batch) {
  std::vector<const credit::ledger::Command*> commands;
  for (const auto& c : batch.commands) commands.push_back(&c);
  std::string out;
  credit::ledger::encode_batch(batch.now_ms, commands, out);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  static credit::ledger::DecodedBatch reused;  // as a replay reuses it
  credit::Status into = credit::ledger::decode_batch_into(bytes, reused);
  auto decoded = credit::ledger::decode_batch(bytes);
  check(into.ok() == decoded.ok(), "decode_batch_into and decode_batch agree");
  if (!decoded.ok()) {
    check(decoded.error().code == credit::ErrorCode::kStorageFailed, "a refusal is storage_failed");
    check(!decoded.error().message.empty(), "a refusal has a message");
    return 0;
  }
  check(encode(reused) == encode(*decoded), "a reused batch decodes as a fresh one");
  const std::string once = encode(*decoded);
  auto again = credit::ledger::decode_batch(once);
  check(again.ok(), "an encoded batch decodes");
  check(again->commands.size() == decoded->commands.size(), "the same number of commands");
  check(encode(*again) == once, "encoding is a fixpoint");
  return 0;
}

namespace credit::fuzz {

std::vector<std::string> seeds() {
  const SampleRun& run = sample_run();
  std::vector<std::string> out;
  // One batch of everything, then one per command.
  std::vector<const ledger::Command*> all;
  for (const auto& c : run.commands) all.push_back(&c);
  out.emplace_back();
  ledger::encode_batch(run.batch_now_ms.front(), all, out.back());
  for (std::size_t i = 0; i < run.commands.size(); ++i) {
    out.emplace_back();
    ledger::encode_batch(run.batch_now_ms[i], {&run.commands[i]}, out.back());
  }
  return out;
}

std::vector<std::string> dictionary() {
  return {};
}

}  // namespace credit::fuzz
