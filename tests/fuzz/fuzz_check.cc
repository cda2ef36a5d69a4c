// tests/fuzz/fuzz_check.cc
// fuzz::check: a broken property aborts the process (libFuzzer then saves the input;
// fuzz_driver.cc writes it to its --crash-dir first).
#include <cstdio>
#include <cstdlib>

#include "fuzz_target.h"

namespace credit::fuzz {

void check(bool ok, const char* property) {
  if (ok) return;
  std::fprintf(stderr, "fuzz: property broken: %s\n", property);
  std::abort();
}

}  // namespace credit::fuzz
