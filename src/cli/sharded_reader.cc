// src/cli/sharded_reader.cc
// The batches, the two threads' loop and the line errors (sharded_reader.h).
#include "cli/sharded_reader.h"

#include <algorithm>
#include <array>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "cli/progress.h"

namespace credit::cli {
namespace {

using analytics::LineError;

struct Batch {
  enum class State : std::uint8_t { kFree, kFilling, kParsed };
  struct Line {
    std::size_t offset = 0;
    std::size_t size = 0;
    std::uint64_t number = 0;
  };
  State state = State::kFree;
  std::uint64_t index = 0;  // in reading order
  unsigned done = 0;        // a bit per shard that has taken its events
  std::string text;         // the lines, each followed by '\n', then the parser's padding
  std::vector<Line> lines;
  std::vector<ledger::Event> events;  // [0, count) parsed; reused with their strings
  // Per shard, its events as (hash of the account, index), sorted: each account's events
  // together, in file order (so its state stays in the cache while they are added).
  std::array<std::vector<std::pair<std::uint64_t, std::uint32_t>>, ShardedReader::kShards> order;
  std::size_t count = 0;
  std::vector<LineError> errors;  // in line order
};

// Keeps the kErrorsKept lowest line numbers (bounded, whatever the number of bad lines).
void keep_first_errors(std::vector<LineError>& errors, bool final) {
  constexpr std::size_t kKept = analytics::NdjsonReader::kErrorsKept;
  if (!final && errors.size() <= 4 * kKept) return;
  std::sort(errors.begin(), errors.end(),
            [](const LineError& a, const LineError& b) { return a.line < b.line; });
  if (errors.size() > kKept) errors.resize(kKept);
}

}  // namespace

void ShardedReader::run(const Add& add, const Done& done, Progress* progress) {
  static_assert(kShards <= 8, "Batch::done holds one bit per shard");
  constexpr unsigned kAllDone = (1u << kShards) - 1;
  const std::size_t in_flight = std::max<std::size_t>(2, options_.batches_in_flight);
  std::vector<Batch> ring(in_flight);
  std::mutex mutex;
  std::condition_variable changed;
  bool eof = !reader_.ok();
  std::uint64_t read_next = 0;                // the index of the next batch to read
  std::array<std::uint64_t, kShards> next{};  // the next batch each shard takes

  // Under the lock: the next lines of the input into `b`; false when there were none.
  auto fill = [&](Batch& b) {
    b.text.clear();
    b.lines.clear();
    b.errors.clear();
    b.count = 0;
    std::string_view line;
    bool too_long = false;
    while (b.text.size() < options_.batch_bytes) {
      if ((options_.stop != nullptr && options_.stop->load(std::memory_order_relaxed)) ||
          !reader_.next_line(line, too_long)) {
        eof = true;
        break;
      }
      if (too_long) {
        b.errors.push_back({reader_.line_number(), std::string(analytics::kLineTooLong)});
        continue;
      }
      if (analytics::is_blank_line(line)) continue;
      b.lines.push_back({b.text.size(), line.size(), reader_.line_number()});
      b.text.append(line);
      b.text.push_back('\n');
    }
    // Every line is followed by at least the padding simdjson may read.
    b.text.append(analytics::kEventJsonPaddingBytes, '\0');
    if (progress != nullptr) progress->update(reader_.bytes_read());
    return !b.lines.empty() || !b.errors.empty();
  };
  // Without the lock: parses the batch's lines (errors are merged in line order).
  auto parse = [](Batch& b) {
    if (b.events.size() < b.lines.size()) b.events.resize(b.lines.size());
    for (auto& o : b.order) o.clear();
    std::vector<LineError> parse_errors;
    for (const auto& l : b.lines) {
      ledger::Event& e = b.events[b.count];
      Status st =
          analytics::parse_event_json_padded(std::string_view(b.text.data() + l.offset, l.size), e);
      if (!st.ok()) {
        parse_errors.push_back({l.number, std::move(st.error().message)});
        continue;
      }
      const std::uint64_t h = std::hash<std::string_view>{}(e.account_id);
      b.order[h % kShards].emplace_back(h, static_cast<std::uint32_t>(b.count));
      ++b.count;
    }
    for (auto& o : b.order) std::sort(o.begin(), o.end());
    if (!parse_errors.empty()) {
      b.errors.insert(b.errors.end(), std::make_move_iterator(parse_errors.begin()),
                      std::make_move_iterator(parse_errors.end()));
    }
  };
  // Both threads: take this shard's events of the next batch when it is parsed, else read
  // and parse a new batch when a slot is free, else wait.
  auto work = [&](std::size_t shard) {
    std::unique_lock lock(mutex);
    for (;;) {
      Batch& b = ring[next[shard] % in_flight];
      if (b.state == Batch::State::kParsed && b.index == next[shard]) {
        lock.unlock();
        for (const auto& [hash, i] : b.order[shard]) add(shard, b.events[i]);
        lock.lock();
        ++next[shard];
        b.done |= 1u << shard;
        if (b.done == kAllDone) {
          error_count_ += b.errors.size();
          errors_.insert(errors_.end(), std::make_move_iterator(b.errors.begin()),
                         std::make_move_iterator(b.errors.end()));
          keep_first_errors(errors_, false);
          b.state = Batch::State::kFree;
          changed.notify_all();
        }
        continue;
      }
      if (eof && next[shard] == read_next) break;
      Batch& slot = ring[read_next % in_flight];
      if (!eof && slot.state == Batch::State::kFree) {
        if (!fill(slot)) {
          changed.notify_all();  // the end of the input
          continue;
        }
        slot.state = Batch::State::kFilling;
        slot.index = read_next++;
        slot.done = 0;
        lock.unlock();
        parse(slot);
        lock.lock();
        slot.state = Batch::State::kParsed;
        changed.notify_all();
        continue;
      }
      changed.wait(lock);
    }
    lock.unlock();
    done(shard);
  };

  std::vector<std::thread> helpers;
  for (std::size_t shard = 1; shard < kShards; ++shard) helpers.emplace_back(work, shard);
  work(0);
  for (auto& t : helpers) t.join();
  keep_first_errors(errors_, true);
}

}  // namespace credit::cli
