// src/analytics/loops.cc
// The streaming regression-loop detector (rules in loops.h). Each group keeps its
// undecided turns; the run that starts at the oldest one is decided when a turn arrives
// 24 h (plus the refund hold) or more after it, or at the end: it is a loop, or its first
// turn is dropped.
#include "analytics/loops.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "base/assert.h"

namespace credit::analytics {

namespace {

// Files before features, then by name: the order of the keys "f:" + file and
// "t:" + feature, in which finish() has always decided the open windows.
template <typename Groups, typename NameOf>
auto lower_group(Groups& groups, bool is_file, std::string_view key, const NameOf& name_of) {
  return std::lower_bound(groups.begin(), groups.end(), std::pair{is_file, key},
                          [&name_of](const auto& g, std::pair<bool, std::string_view> k) {
                            if (g.is_file != k.first) return g.is_file;
                            return name_of(g) < k.second;
                          });
}

}  // namespace

LoopDetector::Group& LoopDetector::group(bool is_file, std::string_view key) {
  auto name_of = [this](const Group& g) { return name(g.name); };
  auto it = lower_group(groups_, is_file, key, name_of);
  if (it != groups_.end() && it->is_file == is_file && name(it->name) == key) return *it;
  CREDIT_ASSERT(names_.size() + key.size() <= std::numeric_limits<std::uint32_t>::max());
  Group g;
  g.name = {static_cast<std::uint32_t>(names_.size()), static_cast<std::uint32_t>(key.size())};
  g.is_file = is_file;
  names_ += key;
  return *groups_.insert(it, std::move(g));
}

LoopDetector::Group* LoopDetector::find_group(bool is_file, std::string_view key) {
  auto name_of = [this](const Group& g) { return name(g.name); };
  auto it = lower_group(groups_, is_file, key, name_of);
  if (it != groups_.end() && it->is_file == is_file && name(it->name) == key) return &*it;
  return nullptr;
}

void LoopDetector::add(const std::string& file, const LoopTurn& turn, const Sink& sink) {
  if (file.empty() && turn.feature.empty()) return;
  Turn t;
  t.at_ms = turn.at_ms;
  t.credits = turn.credits;
  t.replay_credits = turn.replay_credits;
  t.ref = turn.ref;
  t.fix = turn.fix;
  t.snapshot_id = turn.snapshot_id;
  // Interned before the turn's own group is looked up: a new group moves the others.
  if (!turn.feature.empty()) t.feature = group(false, turn.feature).name;
  Group& g = file.empty() ? group(false, turn.feature) : group(true, file);
  settle(g, turn.at_ms, refund_hold_ms_, false, sink);
  if (g.open() >= kLoopWindowTurnsMax) {
    // Full: first what a detector without the hold would have decided by now, then, if
    // that is not enough, everything (a burst over the cap is cut).
    settle(g, turn.at_ms, 0, false, sink);
    if (g.open() >= kLoopWindowTurnsMax) settle(g, turn.at_ms, 0, true, sink);
  }
  g.turns.push_back(std::move(t));
}

void LoopDetector::refund(std::string_view file, std::string_view feature, std::uint64_t ref,
                          Millicredits credits) {
  if (ref == 0 || (file.empty() && feature.empty())) return;
  Group* g = file.empty() ? find_group(false, feature) : find_group(true, file);
  if (g == nullptr) return;
  // Refunds are rare and come soon after their charge: search from the newest turn.
  for (std::size_t i = g->turns.size(); i > g->head; --i) {
    Turn& t = g->turns[i - 1];
    if (t.ref != ref) continue;
    t.credits -= min(credits, t.credits);
    t.replay_credits = min(t.replay_credits, t.credits);
    return;
  }
}

void LoopDetector::finish(const Sink& sink) {
  for (auto& g : groups_) settle(g, 0, 0, true, sink);
}

void LoopDetector::peek(const Sink& sink) const {
  for (const Group& g : groups_) {
    for (std::size_t i = g.head; i < g.turns.size();) {
      const std::size_t n = run_length(g, i);
      if (is_loop(g, i, n)) {
        sink(make_loop(g, i, n));
        i += n;
      } else {
        ++i;
      }
    }
  }
}

std::size_t LoopDetector::run_length(const Group& g, std::size_t first) const {
  const std::int64_t start_ms = g.turns[first].at_ms;
  std::size_t n = 0;
  for (std::size_t i = first; i < g.turns.size(); ++i, ++n) {
    if (g.turns[i].at_ms - start_ms >= rules_.window_ms) break;
  }
  return n;
}

bool LoopDetector::is_loop(const Group& g, std::size_t first, std::size_t n) const {
  std::int64_t fixes = 0;
  Millicredits credits;
  for (std::size_t i = first; i < first + n; ++i) {
    fixes += g.turns[i].fix ? 1 : 0;
    credits += g.turns[i].credits;
  }
  const auto turns = static_cast<std::int64_t>(n);
  return turns >= rules_.turns_min && fixes * 1000 > turns * rules_.fix_permille_over &&
         credits >= rules_.credits_min;
}

Loop LoopDetector::make_loop(const Group& g, std::size_t first, std::size_t n) const {
  Loop loop;
  if (g.is_file) loop.file = name(g.name);
  const Turn& head = g.turns[first];
  loop.feature = name(head.feature);
  loop.first_at_ms = head.at_ms;
  loop.revert_to_snapshot = head.snapshot_id;
  for (std::size_t i = 0; i < n; ++i) {
    const Turn& t = g.turns[first + i];
    ++loop.turns;
    loop.fixes += t.fix ? 1 : 0;
    loop.credits = loop.credits.saturating_add(t.credits);
    if (i > 0) loop.waste = loop.waste.saturating_add(t.credits);
    if (i > 0) loop.replay_waste = loop.replay_waste.saturating_add(t.replay_credits);
    loop.last_at_ms = t.at_ms;
  }
  return loop;
}

void LoopDetector::settle(Group& g, std::int64_t now_ms, std::int64_t hold_ms, bool all,
                          const Sink& sink) {
  while (g.open() > 0 && (all || now_ms - g.turns[g.head].at_ms >= rules_.window_ms + hold_ms)) {
    const std::size_t n = run_length(g, g.head);
    if (is_loop(g, g.head, n)) {
      Loop loop = make_loop(g, g.head, n);
      drop(g, n);
      sink(loop);
    } else {
      drop(g, 1);
    }
  }
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
