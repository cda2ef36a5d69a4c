// tests/fuzz/fuzz_target.h
// What every fuzz target defines: libFuzzer's entry point, the valid inputs it starts
// from, and the tokens worth splicing into its inputs. A target calls fuzz::check on
// every property it asserts; a failure aborts, which is how both libFuzzer and
// fuzz_driver.cc report a finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace credit::fuzz {

// Valid inputs the mutations start from (encoded commands, events, JSON bodies).
std::vector<std::string> seeds();
// Tokens the driver's mutator inserts (JSON punctuation, field names); may be empty.
std::vector<std::string> dictionary();

// The tokens of JSON itself (punctuation, literals, escapes, a number, a UTF-8 letter),
// which every target reading JSON starts its dictionary with.
std::vector<std::string> json_dictionary();

// Aborts, naming the property and the input's size, when `ok` is false.
void check(bool ok, const char* property);

}  // namespace credit::fuzz
