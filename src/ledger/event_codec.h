// src/ledger/event_codec.h
// The binary form of one ledger::Event, as the event log stores it:
//   version            u8     kEventCodecVersion; any other value is refused, not guessed
//   seq                varint
//   at_ms              varint zigzag
//   account_id         string
//   user_id            string
//   type               u8     EventType
//   kind               u8     0xff: none, else pricing::Kind
//   pool               string
//   credits            money
//   available_after    optional money
//   drawn_from         varint count, then (source string, credits money) each
//   refused_by         string
//   priced_by          string
//   usage              optional usage (ledger/codec.h's order of fields)
//   metadata           presence u8; when set the seven known strings, then a varint count
//                      of (key, value) string pairs
//   cache_key, idempotency_key   strings
//   rate_card_version  varint zigzag
//   imported           u8
//   hold_id, charge_id, grant_id, refund_id, object, plan, previous_plan   strings
//   proration_usd_cents varint zigzag
//   reason             string
// Integers are LEB128 varints (signed ones zigzag), strings a varint length and bytes,
// money its millicredits as a signed varint, optionals a presence byte first.
// Owns: encode and decode of events. Does not: frame, checksum or file them
// (store/event_log.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "ledger/event.h"

namespace credit::ledger {

constexpr std::uint8_t kEventCodecVersion = 1;

// Appends the encoding of `event` to `out`.
void encode_event(const Event& event, std::string& out);
// Decodes exactly one event; trailing bytes, a short read or an unknown version fail
// with kStorageFailed.
Result<Event> decode_event(std::string_view bytes);
// The same into `event`, overwriting every field and reusing its strings' storage (a
// start decodes every retained event). On failure `event` holds a partial decode.
Status decode_event_into(std::string_view bytes, Event& event);

// The fields the encoding starts with, read without decoding the rest: what a reader
// filters on before it pays for a full decode. The views point into the bytes.
struct EventHead {
  std::uint64_t seq = 0;
  std::int64_t at_ms = 0;
  std::string_view account_id;
  std::string_view user_id;
  EventType type = EventType::kCharge;
  std::optional<pricing::Kind> kind;
};
// Reads the head of one encoded event; a short read, a bad value or an unknown version
// fail with kStorageFailed (the rest of the bytes is not checked).
Status decode_event_head(std::string_view bytes, EventHead& head);

}  // namespace credit::ledger
