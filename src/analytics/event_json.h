// src/analytics/event_json.h
// The JSON form of an event: one object per line of NDJSON in exports, imports and
// creditctl files (API.md, "Event format").
// Owns: writing an Event as one JSON line, parsing one line back with line-level errors,
// and a streaming NDJSON reader over a file (bounded memory, line numbers, continues
// after bad lines). Does not: decide what an event means (ledger/), aggregate (audit.h).
//
// Written fields, in this order: seq, at, account_id, user_id, type, kind, pool, credits,
// available_after, drawn_from [{source, credits}], refused_by, priced_by, usage (only the
// dimensions present), metadata (only the keys that are not empty), cache_key,
// idempotency_key, rate_card_version, imported; then, only when not empty: hold_id,
// charge_id, grant_id, refund_id, object, plan, previous_plan, proration_usd_cents,
// reason. Optional values named by API.md are written as null, never left out.
//
// Parsing: `at`, `account_id`, `type` and `credits` are required on every line;
// `user_id` on the types a user causes (charge, hold, capture, cache_hit, rejected);
// `kind` on charges and holds. `seq` is read when present. Unknown top-level fields are
// ignored (an import may come from another system); unknown usage dimensions are errors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "ledger/event.h"

namespace credit::analytics {

// A line longer than this is refused without being parsed (DESIGN.md section 5: imports
// are streamed with 1 MiB per line).
constexpr std::size_t kEventLineBytesMax = std::size_t{1} << 20;
// Metadata limits of API.md: up to 16 keys of the client's own, 256 characters each.
constexpr std::size_t kMetadataExtraKeysMax = 16;
constexpr std::size_t kMetadataValueCharsMax = 256;
// Id limits of API.md.
constexpr std::size_t kIdCharsMax = 64;
constexpr std::size_t kUserIdCharsMax = 128;

// Appends the event as one JSON object, without a newline.
void append_event_json(std::string& out, const ledger::Event& event);
std::string event_to_json(const ledger::Event& event);

// Parses one line. Errors are kInvalidRequest (kInvalidAmount for money, kInvalidJson for
// broken JSON) with a "param" detail naming the field, e.g. "kind" or "usage.model".
Result<ledger::Event> parse_event_json(std::string_view line);

struct LineError {
  std::uint64_t line = 0;  // 1-based
  std::string reason;
};

// Reads events from an NDJSON file one line at a time; blank lines are skipped, bad
// lines are counted and the first kErrorsKept of them kept, and reading goes on.
class NdjsonReader {
 public:
  static constexpr std::size_t kErrorsKept = 100;
  static constexpr std::size_t kChunkBytes = std::size_t{1} << 16;

  // Opens `path` ("-" reads standard input). ok() is false when it cannot be opened.
  explicit NdjsonReader(const std::string& path);
  bool ok() const { return ok_; }

  // The next well-formed event; false at the end of the input.
  bool next(ledger::Event& out);

  std::uint64_t line_number() const { return line_; }
  std::uint64_t bytes_read() const { return bytes_read_; }
  std::uint64_t error_count() const { return error_count_; }
  const std::vector<LineError>& errors() const { return errors_; }

 private:
  // Reads the next line into line_ (without its newline); false at the end.
  // Sets too_long_ when the line exceeded kEventLineBytesMax (then line_ is empty).
  bool read_line();
  void add_error(std::string reason);

  std::ifstream file_;
  std::istream* in_ = nullptr;
  bool ok_ = false;
  std::string buffer_;
  std::size_t buffer_pos_ = 0;
  bool eof_ = false;
  std::string line_text_;
  bool too_long_ = false;
  std::uint64_t line_ = 0;
  std::uint64_t bytes_read_ = 0;
  std::uint64_t error_count_ = 0;
  std::vector<LineError> errors_;
};

}  // namespace credit::analytics
