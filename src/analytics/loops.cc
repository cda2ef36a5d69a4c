// src/analytics/loops.cc
// The streaming regression-loop detector (rules in loops.h). Each group keeps its
// undecided turns; the run that starts at the oldest one is decided when a turn arrives
// 24 h or more after it (or at the end): it is a loop, or its first turn is dropped.
#include "analytics/loops.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "base/assert.h"

namespace credit::analytics {

LoopDetector::Group& LoopDetector::group(bool is_file, std::string_view key) {
  // Files before features, then by name: the order of the keys "f:" + file and
  // "t:" + feature, in which finish() has always decided the open windows.
  auto less = [this](const Group& g, std::pair<bool, std::string_view> k) {
    if (g.is_file != k.first) return g.is_file;
    return name(g.name) < k.second;
  };
  auto it = std::lower_bound(groups_.begin(), groups_.end(), std::pair{is_file, key}, less);
  if (it != groups_.end() && it->is_file == is_file && name(it->name) == key) return *it;
  CREDIT_ASSERT(names_.size() + key.size() <= std::numeric_limits<std::uint32_t>::max());
  Group g;
  g.name = {static_cast<std::uint32_t>(names_.size()), static_cast<std::uint32_t>(key.size())};
  g.is_file = is_file;
  names_ += key;
  return *groups_.insert(it, std::move(g));
}

void LoopDetector::add(const std::string& file, const LoopTurn& turn, const Sink& sink) {
  if (file.empty() && turn.feature.empty()) return;
  Turn t;
  t.at_ms = turn.at_ms;
  t.credits = turn.credits;
  t.replay_credits = turn.replay_credits;
  t.fix = turn.fix;
  t.snapshot_id = turn.snapshot_id;
  // Interned before the turn's own group is looked up: a new group moves the others.
  if (!turn.feature.empty()) t.feature = group(false, turn.feature).name;
  Group& g = file.empty() ? group(false, turn.feature) : group(true, file);
  settle(g, turn.at_ms, false, sink);
  if (g.open() >= kLoopWindowTurnsMax) settle(g, turn.at_ms, true, sink);
  g.turns.push_back(std::move(t));
}

void LoopDetector::finish(const Sink& sink) {
  for (auto& g : groups_) settle(g, 0, true, sink);
}

void LoopDetector::settle(Group& g, std::int64_t now_ms, bool all, const Sink& sink) {
  while (g.open() > 0 && (all || now_ms - g.turns[g.head].at_ms >= rules_.window_ms)) {
    const std::int64_t start_ms = g.turns[g.head].at_ms;
    std::size_t n = 0;
    std::int64_t fixes = 0;
    Millicredits credits;
    for (std::size_t i = g.head; i < g.turns.size(); ++i) {
      const Turn& t = g.turns[i];
      if (t.at_ms - start_ms >= rules_.window_ms) break;
      ++n;
      fixes += t.fix ? 1 : 0;
      credits += t.credits;
    }
    const auto turns = static_cast<std::int64_t>(n);
    bool loop = turns >= rules_.turns_min && fixes * 1000 > turns * rules_.fix_permille_over &&
                credits >= rules_.credits_min;
    if (loop) {
      emit(g, n, sink);
    } else {
      drop(g, 1);
    }
  }
}

void LoopDetector::emit(Group& g, std::size_t n, const Sink& sink) {
  Loop loop;
  if (g.is_file) loop.file = name(g.name);
  const Turn& first = g.turns[g.head];
  loop.feature = name(first.feature);
  loop.first_at_ms = first.at_ms;
  loop.revert_to_snapshot = first.snapshot_id;
  for (std::size_t i = 0; i < n; ++i) {
    const Turn& t = g.turns[g.head + i];
    ++loop.turns;
    loop.fixes += t.fix ? 1 : 0;
    loop.credits += t.credits;
    if (i > 0) loop.waste += t.credits;
    if (i > 0) loop.replay_waste += t.replay_credits;
    loop.last_at_ms = t.at_ms;
  }
  drop(g, n);
  sink(loop);
}

void LoopDetector::drop(Group& g, std::size_t n) {
  CREDIT_ASSERT(n <= g.open());
  g.head += static_cast<std::uint32_t>(n);
  if (g.open() == 0) {
    // A file without open turns keeps no heap memory: most files of an account are idle.
    std::vector<Turn>().swap(g.turns);
    g.head = 0;
  } else if (g.head * 2 >= g.turns.size()) {
    // Half the vector decided: move the rest to the front (amortised O(1) a turn).
    g.turns.erase(g.turns.begin(), g.turns.begin() + g.head);
    g.head = 0;
  }
}

}  // namespace credit::analytics
