// src/ledger/codec.h
// The binary form of a batch of commands, as the store logs it:
//   version   u8     kCodecVersion; any other value is refused, not guessed
//   now_ms    varint zigzag: the batch's instant
//   count     varint number of commands
//   commands  count times: tag u8 (the CommandBody index), the idempotency part
//             (flag u8; when set: 16-byte key hash, 16-byte request hash, key string),
//             precheck code u8 (+ retry_after_ms varint when rate-limited), then the
//             command's fields in declaration order.
// Integers are LEB128 varints (signed ones zigzag), strings a varint length and bytes,
// money its millicredits as a signed varint, optionals a presence byte first.
// Owns: encode and decode of commands. Does not: checksum or frame (store/wal_format.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "ledger/command.h"

namespace credit::ledger {

constexpr std::uint8_t kCodecVersion = 1;

// The canonical bytes of one command's fields (the same encoding as in a batch): equal
// requests encode equally whatever their JSON spelling, so these bytes, with the route,
// make the idempotency request hash.
void encode_command_body(const CommandBody& body, std::string& out);

void encode_batch(std::int64_t now_ms, const std::vector<const Command*>& commands,
                  std::string& out);
struct DecodedBatch {
  std::int64_t now_ms = 0;
  std::vector<Command> commands;
};
Result<DecodedBatch> decode_batch(std::string_view bytes);

}  // namespace credit::ledger
