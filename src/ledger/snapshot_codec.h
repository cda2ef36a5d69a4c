// src/ledger/snapshot_codec.h
// The binary form of the whole ledger state, as a snapshot holds it (store/snapshot.h
// frames and checksums these bytes):
//   version        u8     kLedgerSnapshotVersion (written); kLedgerSnapshotVersionMin up
//                         to it are read, any other value is refused, not guessed
//   now_ms         varint zigzag: the ledger's now (the last instant it logged)
//   next_seq       varint: the sequence number of the next event
//   catalog        source_text string, plan count varint, then each plan (below)
//   accounts       count varint, then each account in id order (below)
//   idempotency    count varint, then each live entry in expiry order: key hash 16 bytes,
//                  request hash 16 bytes, reply number varint, expires_at_ms varint zigzag
//   replies        replies_base varint, count varint, then each stored reply in number
//                  order: status varint, then from version 4 its packed form string
//                  (internal/reply_pack.h: a charge's answer as its parts, about 20
//                  bytes), before it its body string (about 190 bytes for a charge)
//   rate cards     from version 3: count varint, then each (version varint zigzag, TOML
//                  text string) in version order; older snapshots have none
// A plan: id, name strings; price_usd_cents; pool count, then (pool string, allowance
// money, optional daily_cap money) each; cycle_anchor u8; packs_allowed u8;
// rollover_percent; optional rollover_cap money; pack_expiry_days; pack_price_usd_cents;
// rate limits: per_user and per_account, each a presence byte and (per_minute, burst).
// An account: account_id, closed, plan, optional pending_plan string, signup_at_ms,
// anchor_ms, cycle_index, cycle_serial, cycle_start_ms, cycle_end_ms, next_bucket_id,
// pools (count, then name, day_start_ms, spent_today, held_today, refunded_this_cycle,
// buckets (count, then every Bucket field in declaration order)), holds (count, then
// every HoldRecord field in declaration order, reservations as a count and (bucket_id,
// credits) pairs), open_holds, charges in sequence order (count, then for each: charge_id,
// user_id, kind, pool_index, cost, drawn, refunded, cycle_index, at_ms, day_start_ms,
// rate_card_version, hold_id ("" for none), refunds as a count and RefundRecord fields;
// snapshots before 2026-12 wrote them in charge id string order, read the same way),
// created_at_ms, and from version 2 the forgotten charges (count varint, then when not 0
// the first sequence number varint and the gap bytes string, as ForgottenCharges keeps
// them; version 1 snapshots have none, read as empty).
// Integers are LEB128 varints (signed ones zigzag), strings a varint length and bytes,
// money its millicredits as a signed varint, optionals a presence byte first, enums u8.
// Owns: encode and decode of the ledger state. Does not: write files (store/), or hold
// the engine's own state (server/engine.cc wraps these bytes).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"
#include "ledger/ledger.h"

namespace credit::ledger {

// 2: accounts end with their forgotten charges. 3: the rate cards at the end. 4: replies
// packed.
constexpr std::uint8_t kLedgerSnapshotVersion = 4;
constexpr std::uint8_t kLedgerSnapshotVersionRateCards = 3;
constexpr std::uint8_t kLedgerSnapshotVersionPackedReplies = 4;
constexpr std::uint8_t kLedgerSnapshotVersionMin = 1;

// Appends the whole state of `ledger` to `out`. Call between batches. `version` is
// kLedgerSnapshotVersion, or 3 (replies as bodies) for tests of the reader.
void encode_ledger_snapshot(const Ledger& ledger, std::string& out,
                            std::uint8_t version = kLedgerSnapshotVersion);

// Restores a snapshot into `fresh`, a ledger that has applied nothing yet; its catalog
// is replaced by the snapshot's. Bad bytes or an unknown version fail with
// kStorageFailed naming the byte offset; `fresh` is then unusable.
Status decode_ledger_snapshot(std::string_view bytes, Ledger& fresh);

// The same into a new ledger with `options`.
Result<std::unique_ptr<Ledger>> decode_ledger_snapshot(std::string_view bytes,
                                                       LedgerOptions options);

}  // namespace credit::ledger
