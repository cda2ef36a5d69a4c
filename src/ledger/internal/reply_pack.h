// src/ledger/internal/reply_pack.h
// Stored replies, packed. Every reply the ledger stores under an idempotency key is JSON
// written by its own renderers, so most of its bytes are the same keys in the same order
// ("charge_id", "available_after", "drawn_from", the error object). Packed, each of the
// substrings in the table (reply_pack.cc) becomes one byte from 0x01 to 0x1f: bytes JSON
// never holds raw (control characters are escaped inside strings and not allowed outside).
//
//   packed := body with each table substring replaced by its byte   (first byte != 0x00, 0x7f)
//           | 0x00 body                            (body holds a byte < 0x20, or starts with 0x7f)
//           | 0x7f charge                          (a charge's or capture's answer, from its parts)
//   charge := uv(charge_seq) uv(cost) id(pool) uv(available_after) uv(hold_seq)
//             uv(n) n * (id(source) uv(credits))       (amounts in millicredits, all >= 0)
//   id(s)  := 0x00 str(s) | 0x01 str(rest) for "grant:g_<rest>" | 0x02 for "allowance"
//           | 0x03 for "credits"
//   (the charge's id is "c_<charge_seq>", its hold's "h_<hold_seq>", none when 0)
//   str(s) := uv(byte length) bytes                       (uv: LEB128 varint, base/bytes.h)
//
// A charge's reply of about 190 bytes packs to about 20 as text or as parts.
// The parts form is what the ledger stores for every successful charge and capture: it
// is written without rendering any JSON (a replay of the log never renders the replies
// it stores), and unpacking renders it with render_charge, the same bytes the live
// answer had. Snapshots hold the packed forms from ledger snapshot version 4
// (snapshot_codec.h): a change to either form, or to the token table, is a new snapshot
// version.
// Owns: pack and unpack. Does not: store (reply_store.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ledger/event.h"
#include "money/money.h"

namespace credit::ledger {

// What render_charge writes for a charge that was not a cache hit. The ids are given
// both ways: as text for rendering, as numbers for packing (charge_id is "c_<charge_seq>",
// hold_id "h_<hold_seq>", as the ledger makes them).
struct ChargeReplyParts {
  std::string_view charge_id;
  std::uint64_t charge_seq = 0;
  Millicredits cost;
  std::string_view pool;
  Millicredits available_after;
  const std::vector<DrawnFrom>* drawn = nullptr;
  std::string_view hold_id;    // "" unless a capture
  std::uint64_t hold_seq = 0;  // 0 unless a capture
};

// Appends the packed form of body to out.
void pack_reply(std::string_view body, std::string& out);
// Appends the parts form of a charge's answer to out.
void pack_charge_reply(const ChargeReplyParts& parts, std::string& out);
// The most bytes the parts form of these parts takes.
std::size_t charge_reply_packed_bytes_max(const ChargeReplyParts& parts);
// Writes the parts form at out, which has room for charge_reply_packed_bytes_max(parts)
// bytes, and returns the end of what it wrote.
char* pack_charge_reply(const ChargeReplyParts& parts, char* out);
// Appends the body that packed was made from to out.
void unpack_reply(std::string_view packed, std::string& out);
// Whether unpack_reply can read `packed` (bytes from outside the process, a snapshot's):
// the charge form's fields all present and nothing after them, each token byte one of
// the table's. Renders nothing.
bool packed_reply_is_valid(std::string_view packed);

}  // namespace credit::ledger
