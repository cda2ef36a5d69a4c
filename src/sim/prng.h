// src/sim/prng.h
// A fixed pseudo-random generator for the simulator: xoshiro256** seeded by splitmix64.
// The same seed gives the same stream on every platform and compiler (std::
// distributions do not), so a simulated workload and its planted waste are reproducible.
// Owns: the generator and its integer helpers. Does not: know about events or profiles.
#pragma once

#include <cstdint>

namespace credit::sim {

class Prng {
 public:
  explicit Prng(std::uint64_t seed) {
    for (auto& word : s_) word = splitmix64(seed);
  }

  std::uint64_t next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [lo, hi] (inclusive), by the multiply-high method (bias below 2^-32 for
  // the small ranges the simulator uses).
  std::int64_t uniform(std::int64_t lo, std::int64_t hi) {
    if (hi <= lo) return lo;
    const auto span = static_cast<unsigned __int128>(static_cast<std::uint64_t>(hi - lo) + 1);
    return lo + static_cast<std::int64_t>((span * next()) >> 64);
  }

  // True with probability permille / 1000.
  bool chance(std::int64_t permille) { return uniform(0, 999) < permille; }

  // A derived generator for an independent stream (one per account and day).
  Prng fork(std::uint64_t salt) { return Prng(next() ^ (salt * 0x9E3779B97F4A7C15ULL)); }

 private:
  static std::uint64_t splitmix64(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};

}  // namespace credit::sim
