// src/cli/progress.cc
// Draws the stderr progress bar (progress.h).
#include "cli/progress.h"

#include <unistd.h>

#include <cstdio>

namespace credit::cli {

Progress::Progress(std::string label, std::uint64_t total)
    : label_(std::move(label)), total_(total), enabled_(isatty(STDERR_FILENO) == 1) {}

Progress::~Progress() {
  finish();
}

void Progress::update(std::uint64_t done) {
  done_ = done;
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < kRedrawInterval) return;
  last_draw_ = now;
  draw(done);
}

void Progress::finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  draw(total_ > 0 ? total_ : done_);
  std::fputc('\n', stderr);
}

void Progress::draw(std::uint64_t done) {
  if (total_ == 0) {
    std::fprintf(stderr, "\r%s %llu", label_.c_str(), static_cast<unsigned long long>(done));
    return;
  }
  if (done > total_) done = total_;
  const int filled = static_cast<int>(done * kBarWidthChars / total_);
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.append(static_cast<std::size_t>(kBarWidthChars - filled), ' ');
  std::fprintf(stderr, "\r%s [%s] %3d%%", label_.c_str(), bar.c_str(),
               static_cast<int>(done * 100 / total_));
  std::fflush(stderr);
}

}  // namespace credit::cli
