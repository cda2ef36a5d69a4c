// tests/fuzz/fuzz_event_codec.cc
// The event log's record decoder (ledger/event_codec.h), which a start runs on every
// retained event and the events route on every one it returns. Properties: any bytes
// decode or fail with kStorageFailed, never crash; the head reader agrees with the full
// decode; a decoded event encodes to bytes that decode to the same event.
#include <string>
#include <string_view>

#include "fuzz_target.h"
#include "ledger/event_codec.h"
#include "samples.h"

using credit::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  credit::ledger::EventHead head;
  const credit::Status head_status = credit::ledger::decode_event_head(bytes, head);
  static credit::ledger::Event reused;
  const credit::Status into = credit::ledger::decode_event_into(bytes, reused);
  auto decoded = credit::ledger::decode_event(bytes);
  check(into.ok() == decoded.ok(), "decode_event_into and decode_event agree");
  if (!decoded.ok()) {
    check(decoded.error().code == credit::ErrorCode::kStorageFailed, "a refusal is storage_failed");
    return 0;
  }
  check(reused == *decoded, "a reused event decodes as a fresh one");
  check(head_status.ok(), "a decodable event has a readable head");
  check(head.seq == decoded->seq && head.at_ms == decoded->at_ms &&
            head.account_id == decoded->account_id && head.user_id == decoded->user_id &&
            head.type == decoded->type && head.kind == decoded->kind,
        "the head is the event's");
  std::string once;
  credit::ledger::encode_event(*decoded, once);
  auto again = credit::ledger::decode_event(once);
  check(again.ok() && *again == *decoded, "an event survives encode and decode");
  return 0;
}

namespace credit::fuzz {

std::vector<std::string> seeds() {
  std::vector<std::string> out;
  for (const ledger::Event& e : sample_run().events) {
    out.emplace_back();
    ledger::encode_event(e, out.back());
  }
  return out;
}

std::vector<std::string> dictionary() {
  return {};
}

}  // namespace credit::fuzz
