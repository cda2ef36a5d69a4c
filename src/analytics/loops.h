// src/analytics/loops.h
// Regression loops (DESIGN.md section 2): per file, or per feature where a turn has no
// file, a maximal run of agent turns within 24 h of its first turn, with at least 3
// turns, more than half of them intent = fix, costing at least 30 credits together.
// Each turn belongs to at most one loop. Waste = all turns but the first; the snapshot to
// revert to is the first turn's snapshot_id.
// Owns: the streaming detector. It keeps, per file or feature, only the turns of the
// last 24 h. Does not: decide which events are agent turns (the caller feeds them).
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

// The turns one file or feature may keep in its 24 h window; older ones beyond it are
// judged as they leave, so a burst larger than this is cut into several candidate runs.
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
  explicit LoopDetector(LoopRules rules = {}) : rules_(rules) {}

  // Adds one agent turn (in time order per file). A turn without file and feature is
  // ignored. Loops are passed to `sink` as soon as they are decided.
  void add(const std::string& file, const LoopTurn& turn, const Sink& sink);
  // Decides every open window (end of the stream).
  void finish(const Sink& sink);

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
  // Decides the runs that start before `now_ms - window` (or all when `all`).
  void settle(Group& g, std::int64_t now_ms, bool all, const Sink& sink);
  void emit(Group& g, std::size_t n, const Sink& sink);
  // Drops the first `n` open turns of `g`, freeing or compacting its vector.
  static void drop(Group& g, std::size_t n);

  LoopRules rules_;
  std::string names_;          // every file and feature name, once each
  std::vector<Group> groups_;  // files, then features, each by name: "f:"/"t:" key order
};

}  // namespace credit::analytics
