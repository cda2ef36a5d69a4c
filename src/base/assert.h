// src/base/assert.h
// CREDIT_ASSERT: an invariant check that stays on in release builds. A broken invariant
// stops the process before it can write a wrong balance.
// Owns: the assertion macro. Does not: report user errors (those are Result values).
#pragma once

#include <cstdio>
#include <cstdlib>

namespace credit::base {
[[noreturn]] inline void assert_failed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "creditd: invariant broken: %s at %s:%d\n", expr, file, line);
  std::abort();
}
}  // namespace credit::base

#define CREDIT_ASSERT(expr) \
  ((expr) ? static_cast<void>(0) : ::credit::base::assert_failed(#expr, __FILE__, __LINE__))
