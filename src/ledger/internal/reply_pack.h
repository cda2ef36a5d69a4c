// src/ledger/internal/reply_pack.h
// Stored replies, packed. Every reply the ledger stores under an idempotency key is JSON
// written by its own renderers, so most of its bytes are the same keys in the same order
// ("charge_id", "available_after", "drawn_from", the error object). Packed, each of the
// substrings in the table (reply_pack.cc) becomes one byte from 0x01 to 0x1f: bytes JSON
// never holds raw (control characters are escaped inside strings and not allowed outside).
//
//   packed := body with each table substring replaced by its byte   (first byte != 0x00)
//           | 0x00 body                                             (body holds a byte < 0x20)
//
// A charge's reply of about 190 bytes packs to about 40. The table is part of the
// snapshot-free in-memory format only (snapshots hold the unpacked bodies), so it may
// change between versions. Owns: pack and unpack. Does not: store (reply_store.h).
#pragma once

#include <string>
#include <string_view>

namespace credit::ledger {

// Appends the packed form of body to out.
void pack_reply(std::string_view body, std::string& out);
// Appends the body that packed was made from to out.
void unpack_reply(std::string_view packed, std::string& out);

}  // namespace credit::ledger
