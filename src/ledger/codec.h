// src/ledger/codec.h
// The binary form of a batch of commands, as the store logs it (one WAL batch record,
// store/wal_format.h). Version 2 interns strings per batch so that a charge in a large
// batch costs little more than its hashes and its amount:
//   version   u8     kCodecVersion; any other value is refused, not guessed
//   now_ms    varint zigzag: the batch's instant
//   count     varint number of commands
//   commands  count times:
//     head      u8     bits 0-3: the CommandBody index; bit 4: has an idempotency key;
//                      bit 5: a precheck error follows; bits 6-7: zero
//     key part  (bit 4) scope_key_hash 16 bytes, request_hash 16 bytes, the key (below)
//     precheck  (bit 5) code u8, then retry_after_ms varint zigzag when kRateLimited
//     body      the command's fields (below)
//
// Field encodings. Integers are LEB128 varints (signed ones zigzag); money is its
// millicredits as a signed varint; `str` is a varint length and the bytes.
//   id      an interned string: varint r. r = 0 defines the next dictionary entry
//           (index = entries defined so far in this batch) as a `str` that follows;
//           r > 0 refers to entry r - 1. The dictionary starts empty in every batch, so a
//           record decodes alone. account, user, pool and plan ids, the usage model and
//           size, and metadata file/feature/model/call_site/intent and extra pairs are ids.
//   key     the idempotency key, front-coded against the previous key of the batch:
//           varint h = (suffix_len << 2) | mode. mode 0: the suffix is the whole key;
//           mode 1: a varint shared-prefix length follows, then the suffix; mode 2/3: a
//           canonical lower/upper-case UUID (36 chars, suffix_len 0) as its 16 bytes.
//   charge, hold  flags u8 (bit 0 priced_by_usage, 1 usage, 2 metadata, 3 cache_hit,
//           4 cache_key non-empty, 5 saved non-zero, 6 rate_card_version non-zero,
//           7 cache_generation non-zero; a log written before bit 7 never sets it),
//           account id, user id, kind u8, pool id, amount money, [hold: ttl_ms sv],
//           [rate_card_version sv], [usage], [metadata], [cache_key str], [saved money],
//           [cache_generation varint]
//   usage   varint presence mask (bit i: the i-th field of pricing::Usage in declaration
//           order), then each present field: model and size as ids, others sv
//   metadata  u8 presence mask (bit i: the i-th of file, feature, model, snapshot_id,
//           call_site, intent, request_hash non-empty; bit 7: extra pairs follow), the
//           present strings (snapshot_id and request_hash as str, the others ids), then
//           with bit 7 a varint count and (key id, value id) pairs
//   create_account  account id, plan id, optional signup_at_ms (presence u8 + sv)
//   close_account   account id;     change_plan  account id, plan id
//   add_grant  account id, pool id, source u8, credits money, optional expires_at_ms, reason str
//   capture    flags u8 (bit 0 amount present, 1 priced_by_usage, 2 overage_charge,
//              3 usage, 4 metadata), account id, hold_id str, [amount money], [usage],
//              [metadata]
//   void       account id, hold_id str;   refund  account id, charge_id str,
//              optional credits (presence u8 + money), reason str
//   sweep      nothing;                   load_catalog  toml_text str
//   load_rate_card  version sv, toml_text str
// Version 1 (no interning, a byte per bool and per optional) is no longer read: the WAL
// format version (store/wal_format.h) moved to 2 with it, so a version 1 log is refused.
// Owns: encode and decode of commands. Does not: checksum or frame (store/wal_format.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "ledger/command.h"

namespace credit::ledger {

constexpr std::uint8_t kCodecVersion = 2;
// Extra metadata pairs beyond this are refused on read: the API accepts 16, and a larger
// count read back means the bytes are not what was written.
constexpr std::uint64_t kCodecMetadataExtraMax = 64;

// The canonical bytes of one command's fields: equal requests encode equally whatever
// their JSON spelling, so these bytes, with the route, make the idempotency request hash.
// These bytes are not the log's (they stay as in version 1: changing them would change
// every request hash, and with it the answer to a retry of a request logged before).
void encode_command_body(const CommandBody& body, std::string& out);

// Appends the batch's bytes to `out`.
void encode_batch(std::int64_t now_ms, const std::vector<const Command*>& commands,
                  std::string& out);
struct DecodedBatch {
  std::int64_t now_ms = 0;
  std::vector<Command> commands;
};
Result<DecodedBatch> decode_batch(std::string_view bytes);
// The same into `out`, reusing its storage (replay decodes millions of batches).
Status decode_batch_into(std::string_view bytes, DecodedBatch& out);

}  // namespace credit::ledger
