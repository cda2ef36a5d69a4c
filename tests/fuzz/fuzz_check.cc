// tests/fuzz/fuzz_check.cc
// fuzz::check: a broken property aborts the process (libFuzzer then saves the input;
// fuzz_driver.cc writes it to its --crash-dir first).
#include <cstdio>
#include <cstdlib>

#include "fuzz_target.h"

namespace credit::fuzz {

std::vector<std::string> json_dictionary() {
  return {"{",    "}",    "[",     "]",       ",",     ":",        "\"",
          "null", "true", "false", "\\u0000", "0.001", "\xc3\xa9", " "};
}

void check(bool ok, const char* property) {
  if (ok) return;
  std::fprintf(stderr, "fuzz: property broken: %s\n", property);
  std::abort();
}

}  // namespace credit::fuzz
