// tests/analytics/live_test_support.h
// The small helpers the live-analytics tests share: an RFC 3339 instant and whole credits
// in millicredits. Owns: these helpers.
#pragma once

#include <cstdint>

#include "time/time.h"

namespace credit::analytics::test_support {

inline std::int64_t at(const char* s) {
  return *parse_rfc3339(s);
}
inline std::int64_t cr(std::int64_t credits) {
  return credits * 1000;
}

}  // namespace credit::analytics::test_support
