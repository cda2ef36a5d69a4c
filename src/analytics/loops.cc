// src/analytics/loops.cc
// The streaming regression-loop detector (rules in loops.h). Each group keeps its
// undecided turns; the run that starts at the oldest one is decided when a turn arrives
// 24 h or more after it (or at the end): it is a loop, or its first turn is dropped.
#include "analytics/loops.h"

namespace credit::analytics {

void LoopDetector::add(const std::string& file, const LoopTurn& turn, const Sink& sink) {
  if (file.empty() && turn.feature.empty()) return;
  std::string key = file.empty() ? "t:" + turn.feature : "f:" + file;
  auto [it, inserted] = groups_.try_emplace(std::move(key));
  Group& g = it->second;
  if (inserted) g.file = file;
  settle(g, turn.at_ms, false, sink);
  if (g.turns.size() >= kLoopWindowTurnsMax) settle(g, turn.at_ms, true, sink);
  g.turns.push_back(turn);
}

void LoopDetector::finish(const Sink& sink) {
  for (auto& [key, g] : groups_) settle(g, 0, true, sink);
}

void LoopDetector::settle(Group& g, std::int64_t now_ms, bool all, const Sink& sink) {
  while (!g.turns.empty() && (all || now_ms - g.turns.front().at_ms >= rules_.window_ms)) {
    const std::int64_t start_ms = g.turns.front().at_ms;
    std::size_t n = 0;
    std::int64_t fixes = 0;
    Millicredits credits;
    for (const auto& t : g.turns) {
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
      g.turns.pop_front();
    }
  }
}

void LoopDetector::emit(Group& g, std::size_t n, const Sink& sink) {
  Loop loop;
  loop.file = g.file;
  const LoopTurn& first = g.turns.front();
  loop.feature = first.feature;
  loop.first_at_ms = first.at_ms;
  loop.revert_to_snapshot = first.snapshot_id;
  for (std::size_t i = 0; i < n; ++i) {
    const LoopTurn& t = g.turns[i];
    ++loop.turns;
    loop.fixes += t.fix ? 1 : 0;
    loop.credits += t.credits;
    if (i > 0) loop.waste += t.credits;
    if (i > 0) loop.replay_waste += t.replay_credits;
    loop.last_at_ms = t.at_ms;
  }
  g.turns.erase(g.turns.begin(), g.turns.begin() + static_cast<std::ptrdiff_t>(n));
  sink(loop);
}

}  // namespace credit::analytics
