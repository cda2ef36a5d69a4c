// src/cli/progress.h
// A progress bar on standard error for long offline work, drawn only when stderr is a
// terminal (so logs and pipes stay clean).
// Owns: drawing and throttling the bar. Does not: know what is being counted.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace credit::cli {

class Progress {
 public:
  // `total` 0 means unknown (the bar then shows a count).
  Progress(std::string label, std::uint64_t total);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void update(std::uint64_t done);
  // Draws the final state and ends the line.
  void finish();

 private:
  static constexpr int kBarWidthChars = 30;
  static constexpr std::chrono::milliseconds kRedrawInterval{100};
  void draw(std::uint64_t done);

  std::string label_;
  std::uint64_t total_;
  std::uint64_t done_ = 0;
  bool enabled_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace credit::cli
