// src/analytics/loops.h
// Regression loops (DESIGN.md section 2): per file, or per feature where a turn has no
// file, a maximal run of agent turns within 24 h of its first turn, with at least 3
// turns, more than half of them intent = fix, costing at least 30 credits together.
// Each turn belongs to at most one loop. Waste = all turns but the first; the snapshot to
// revert to is the first turn's snapshot_id.
// Refunds are subtracted (DESIGN.md section 2): a turn's credits are its charge's net of
// the refunds of that charge, so a run that falls under 30 credits after refunds is no
// loop, and a loop's credits and waste are net. A detector that is told refunds as they
// come (refund(), the live rollups) holds each run's decision for `refund_hold_ms` past
// its 24 h window, the time a refund of its turns may still arrive; one fed net credits
// (the audit, which knows its stream's refunds beforehand) holds nothing.
// Owns: the streaming detector. It keeps, per file or feature, only the turns of the
// last 24 h (plus the refund hold). Does not: decide which events are agent turns, or
// which charge a refund is of (the caller feeds them).
// Memory: an audit holds two detectors per account for the whole stream, so a file or
// feature costs one small Group (its name in a shared arena) and no heap of its own
// while it has no open turns; open turns live in a vector that is freed when it empties.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "money/money.h"
#include "time/time.h"

namespace credit::analytics {

struct LoopRules {
  std::int64_t window_ms = kMsPerDay;  // a loop's turns are within this of its first turn
  std::int64_t turns_min = 3;
  // More than half the turns must be fixes: fixes * 1000 > turns * fix_permille_over.
  std::int64_t fix_permille_over = 500;
  Millicredits credits_min = Millicredits::from_mc(30'000);
};

// The turns one file or feature may keep in its 24 h window (and refund hold); past it
// the runs whose window closed are decided at once, refunds or not, and if that is not
// enough the rest too, so a burst larger than this is cut into several candidate runs.
constexpr std::size_t kLoopWindowTurnsMax = 4096;

struct LoopTurn {
  std::int64_t at_ms = 0;
  Millicredits credits;
  bool fix = false;
  std::string snapshot_id;
  std::string feature;
  // What a replay attributes to the turn after its earlier policies; only summed into
  // Loop::replay_waste (the rules use `credits`).
  Millicredits replay_credits;
  // Names the turn for refund(): the sequence number of its charge (0: none).
  std::uint64_t ref = 0;
};

struct Loop {
  std::string file;     // "" when the loop is keyed by feature
  std::string feature;  // the feature of the first turn ("" when none)
  std::int64_t turns = 0;
  std::int64_t fixes = 0;
  Millicredits credits;
  Millicredits waste;  // all turns but the first
  Millicredits replay_waste;
  std::int64_t first_at_ms = 0;
  std::int64_t last_at_ms = 0;
  std::string revert_to_snapshot;  // "" when the first turn had none
};

class LoopDetector {
 public:
  using Sink = std::function<void(const Loop&)>;
  explicit LoopDetector(LoopRules rules = {}, std::int64_t refund_hold_ms = 0)
      : rules_(rules), refund_hold_ms_(refund_hold_ms) {}

  // Adds one agent turn (in time order per file). A turn without file and feature is
  // ignored. Loops are passed to `sink` as soon as they are decided.
  void add(const std::string& file, const LoopTurn& turn, const Sink& sink);
  // Subtracts a refund from the undecided turn `ref` of `file` (or of `feature` when file
  // is empty, as add() groups turns); nothing when no such turn waits for its decision.
  void refund(std::string_view file, std::string_view feature, std::uint64_t ref,
              Millicredits credits);
  // Decides every open window (end of the stream).
  void finish(const Sink& sink);
  // The loops finish() would pass now, without deciding anything: the stream goes on.
  void peek(const Sink& sink) const;

 private:
  // A name in `names_`: offsets stay valid when the arena grows.
  struct NameRef {
    std::uint32_t at = 0;
    std::uint32_t size = 0;
  };
  // An open turn: the feature is interned, the rest is what a Loop reports.
  struct Turn {
    std::int64_t at_ms = 0;
    Millicredits credits;
    Millicredits replay_credits;
    std::uint64_t ref = 0;
    NameRef feature;  // size 0 when none
    bool fix = false;
    std::string snapshot_id;
  };
  // A file ("f:" key) or a feature ("t:" key). Turns [head, size) are undecided; the
  // vector holds no memory when none is.
  struct Group {
    NameRef name;
    bool is_file = false;
    std::uint32_t head = 0;
    std::vector<Turn> turns;
    std::size_t open() const { return turns.size() - head; }
  };

  std::string_view name(NameRef r) const { return std::string_view(names_).substr(r.at, r.size); }
  // The group of `key` (a file, or a feature when !is_file), created when new.
  Group& group(bool is_file, std::string_view key);
  // The group of `key`, or null.
  Group* find_group(bool is_file, std::string_view key);
  // Decides the runs that start before `now_ms - window - hold_ms` (or all when `all`).
  void settle(Group& g, std::int64_t now_ms, std::int64_t hold_ms, bool all, const Sink& sink);
  // The turns of the run that starts at turns[first]: those within the window of it.
  std::size_t run_length(const Group& g, std::size_t first) const;
  // Whether those `n` turns are a loop (the rules of loops.h's header).
  bool is_loop(const Group& g, std::size_t first, std::size_t n) const;
  Loop make_loop(const Group& g, std::size_t first, std::size_t n) const;
  // Drops the first `n` open turns of `g`, freeing or compacting its vector.
  static void drop(Group& g, std::size_t n);

  LoopRules rules_;
  std::int64_t refund_hold_ms_ = 0;
  std::string names_;          // every file and feature name, once each
  std::vector<Group> groups_;  // files, then features, each by name: "f:"/"t:" key order
};

}  // namespace credit::analytics
