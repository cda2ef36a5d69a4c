// src/analytics/event_json.h
// The JSON form of an event: one object per line of NDJSON in exports, imports and
// creditctl files (API.md, "Event format").
// Owns: writing an Event as one JSON line, parsing one line back with line-level errors,
// a streaming NDJSON reader over a file (bounded memory, line numbers, continues after
// bad lines) and a splitter for NDJSON pushed in pieces (an import's HTTP body).
// Does not: decide what an event means (ledger/), aggregate (audit.h).
//
// Written fields, in this order: seq, at, account_id, user_id, type, kind, pool, credits,
// available_after, drawn_from [{source, credits}], refused_by, priced_by, usage (only the
// dimensions present), metadata (only the keys that are not empty), cache_key,
// idempotency_key, rate_card_version, imported; then, only when not empty: hold_id,
// charge_id, grant_id, refund_id, object, plan, previous_plan, proration_usd_cents,
// reason. Optional values named by API.md are written as null, never left out.
//
// Parsing (simdjson on demand, straight from the caller's buffer into a reused Event, so
// a line costs no copy and, once the Event's strings have grown, no allocation): `at`,
// `account_id`, `type` and `credits` are required on every line;
// `user_id` on the types a user causes (charge, hold, capture, cache_hit, rejected);
// `kind` on charges and holds. `seq` is read when present. Unknown top-level fields are
// ignored (an import may come from another system); unknown usage dimensions are errors.
// The enumerated fields take only the contract's values (DESIGN.md "Events", API.md
// "Event format", docs/api-notes.md "Events"): `object` hold | grant on an expire (there
// required), rollover | pack | adjustment on a grant, pending | pending_cleared |
// pending_applied on a plan_change, none on other types; `refused_by` only on rejected
// events, pool | daily_cap or a stored refusal's code (a 409's, purchase_not_allowed);
// `priced_by` usage | amount; `drawn_from[].source` allowance | grant:<id>;
// `metadata.intent` feature | fix | question; `credits`, `available_after` and
// `drawn_from[].credits` not negative. A pool name is not checked against any plan.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
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
// The deepest nesting a line may have, its own object counting 1 (DESIGN.md section 5:
// JSON depth 32, as for request bodies); a field the reader ignores is held to it too.
constexpr std::size_t kEventJsonDepthMax = 32;
// Metadata limits of API.md: up to 16 keys of the client's own, 256 characters each.
constexpr std::size_t kMetadataExtraKeysMax = 16;
constexpr std::size_t kMetadataValueCharsMax = 256;
// Id limits of API.md.
constexpr std::size_t kIdCharsMax = 64;
constexpr std::size_t kUserIdCharsMax = 128;

// Bytes a padded line must have readable after its end (any value): simdjson's padding.
constexpr std::size_t kEventJsonPaddingBytes = 64;

// Appends the event as one JSON object, without a newline (the bytes json::Writer would
// write, written directly: no temporary string per field).
void append_event_json(std::string& out, const ledger::Event& event);
std::string event_to_json(const ledger::Event& event);

// Parses one line. Errors are kInvalidRequest (kInvalidAmount for money, kInvalidJson for
// broken JSON) with a "param" detail naming the field, e.g. "kind" or "usage.model".
Result<ledger::Event> parse_event_json(std::string_view line);
// The same into `out`, which is reset first and reused: its strings keep their capacity.
// On an error `out` holds a partly parsed event.
Status parse_event_json(std::string_view line, ledger::Event& out);
// The same without the padded copy: `line.data() + line.size()` must be followed by at
// least kEventJsonPaddingBytes readable bytes (a line inside a larger buffer is).
Status parse_event_json_padded(std::string_view line, ledger::Event& out);

// The reason given for a line longer than kEventLineBytesMax.
constexpr std::string_view kLineTooLong = "line longer than 1 MiB";
constexpr std::string_view kUtf8ByteOrderMark = "\xEF\xBB\xBF";
// Blank lines (spaces and tabs only) are skipped by readers, never errors.
inline bool is_blank_line(std::string_view line) {
  return line.find_first_not_of(" \t") == std::string_view::npos;
}

struct LineError {
  std::uint64_t line = 0;  // 1-based
  std::string reason;
};

// Splits NDJSON that arrives in pieces of any size (an HTTP body as it is read) into
// lines, numbered from 1 as NdjsonReader numbers them. Between pieces it holds only the
// start of an unfinished line, and never more than kEventLineBytesMax (+1 for a '\r') of
// it: a longer line's bytes are dropped as they come and the line is reported too long.
class NdjsonSplitter {
 public:
  // Calls fn(line, text, too_long) for every line that ends in `piece`. `text` is the line
  // without its newline and a trailing '\r' (empty when too_long), valid during the call.
  template <typename Fn>
  void feed(std::string_view piece, Fn&& fn) {
    while (!piece.empty()) {
      const std::size_t nl = piece.find('\n');
      if (nl == std::string_view::npos) {
        hold(piece);
        return;
      }
      if (partial_.empty() && !too_long_) {
        emit(piece.substr(0, nl), fn);
      } else {
        hold(piece.substr(0, nl));
        emit(partial_, fn);
      }
      partial_.clear();
      too_long_ = false;
      piece.remove_prefix(nl + 1);
    }
  }
  // The end of the input: the last line, if it had no newline.
  template <typename Fn>
  void finish(Fn&& fn) {
    if (partial_.empty() && !too_long_) return;
    emit(partial_, fn);
    partial_.clear();
    too_long_ = false;
  }
  std::uint64_t lines() const { return line_; }
  // Drops the line begun but not ended (the input was cut); its number, or 0 when no
  // line was begun.
  std::uint64_t drop_partial() {
    if (partial_.empty() && !too_long_) return 0;
    partial_.clear();
    too_long_ = false;
    return line_ + 1;
  }

 private:
  void hold(std::string_view bytes) {
    if (too_long_) return;
    if (partial_.size() + bytes.size() > kEventLineBytesMax + 1) {
      too_long_ = true;
      std::string().swap(partial_);  // give the megabyte back
      return;
    }
    partial_.append(bytes);
  }
  template <typename Fn>
  void emit(std::string_view text, Fn& fn) {
    ++line_;
    if (!too_long_ && !text.empty() && text.back() == '\r') text.remove_suffix(1);
    // A UTF-8 byte order mark, which some editors put before the first line, is no text.
    if (line_ == 1 && text.starts_with(kUtf8ByteOrderMark))
      text.remove_prefix(kUtf8ByteOrderMark.size());
    const bool too_long = too_long_ || text.size() > kEventLineBytesMax;
    fn(line_, too_long ? std::string_view() : text, too_long);
  }

  std::string partial_;    // the start of a line that began in an earlier piece
  bool too_long_ = false;  // the unfinished line went over the limit; its bytes are dropped
  std::uint64_t line_ = 0;
};

// Reads events from an NDJSON file one line at a time; blank lines are skipped, bad
// lines are counted and the first kErrorsKept of them kept, and reading goes on.
// Lines are parsed where they lie in the read buffer (no copy); `out` is reused.
class NdjsonReader {
 public:
  static constexpr std::size_t kErrorsKept = 100;
  // One read(2); the buffer holds this plus the longest line plus the padding.
  static constexpr std::size_t kChunkBytes = std::size_t{1} << 20;
  static constexpr std::size_t kBufferBytes = kChunkBytes + kEventLineBytesMax + 1;

  // Opens `path` ("-" reads standard input). ok() is false when it cannot be opened (a
  // directory cannot: reading one would look like an empty file).
  explicit NdjsonReader(const std::string& path);
  ~NdjsonReader();
  NdjsonReader(const NdjsonReader&) = delete;
  NdjsonReader& operator=(const NdjsonReader&) = delete;
  bool ok() const { return ok_; }

  // The next well-formed event; false at the end of the input.
  bool next(ledger::Event& out);
  // The next line, unparsed, for a caller that parses lines elsewhere (on other threads:
  // cli/sharded_reader.h): false at the end of the input. `line` (without its newline or a
  // trailing '\r', nor a UTF-8 byte order mark at the start of the input, as NdjsonSplitter)
  // stays valid until the next call; it may be blank (next() skips those).
  // `too_long`: the line exceeded kEventLineBytesMax, its bytes were dropped, and the
  // caller reports kLineTooLong. Neither counts nor keeps errors.
  bool next_line(std::string_view& line, bool& too_long);

  std::uint64_t line_number() const { return line_; }
  std::uint64_t bytes_read() const { return bytes_read_; }
  // Where the line of the event next() returned last lies in the input: its first byte's
  // offset and its size (without its newline or a trailing '\r'), for a caller that reads
  // it again (cli/time_order.h).
  std::uint64_t event_offset() const { return event_offset_; }
  std::size_t event_size() const { return event_size_; }
  std::uint64_t error_count() const { return error_count_; }
  const std::vector<LineError>& errors() const { return errors_; }
  // Why the input could not be opened, or why reading it stopped before its end (a read
  // error); empty otherwise.
  const std::string& problem() const { return problem_; }

 private:
  // Finds the next line (without its newline) in the buffer, reading more as needed;
  // false at the end. Sets too_long_ when the line exceeded kEventLineBytesMax (its
  // bytes are skipped, never buffered).
  bool read_line(std::string_view& line);
  // Moves the unread bytes to the front and reads once more; false at the end of input.
  bool fill();
  void add_error(std::string reason);

  int fd_ = -1;
  bool own_fd_ = false;
  bool ok_ = false;
  std::string problem_;
  std::unique_ptr<char[]> buffer_;  // kBufferBytes + kEventJsonPaddingBytes
  std::size_t begin_ = 0;           // the unread bytes are [begin_, end_)
  std::size_t end_ = 0;
  bool eof_ = false;
  bool too_long_ = false;
  std::uint64_t line_ = 0;
  std::uint64_t bytes_read_ = 0;
  std::uint64_t line_offset_ = 0;  // of the line read_line() found last
  std::uint64_t event_offset_ = 0;
  std::size_t event_size_ = 0;
  std::uint64_t error_count_ = 0;
  std::vector<LineError> errors_;
};

}  // namespace credit::analytics
