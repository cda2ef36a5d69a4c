// tests/fuzz/fuzz_driver.cc
// Runs a fuzz target without libFuzzer (GCC builds, `make test`): first its seeds and
// the corpus files given, then random mutations of them from a fixed PRNG seed, until
// --iterations inputs or --time-ms have passed. It is not coverage-guided; it guards
// against regressions on every build, and clang's libFuzzer (docs/fuzzing.md) explores.
// An input that aborts or crashes the target is written to --crash-dir before the
// process dies, so the finding can be replayed: `fuzz_X path/to/crash-input`.
//
//   fuzz_X [--iterations N] [--time-ms T] [--seed S] [--crash-dir DIR]
//          [--write-seeds DIR] [FILE|DIR ...]
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz_target.h"

namespace {

// Inputs grow by insertions at most to this size.
constexpr std::size_t kInputBytesMax = 64 * 1024;
constexpr int kMutationsPerInputMax = 8;

// The input being run, for the crash handler (async-signal-safe: plain memory).
const std::uint8_t* g_input = nullptr;
std::size_t g_input_size = 0;
char g_crash_path[4096] = {0};

void on_crash(int sig) {
  if (g_crash_path[0] != 0 && g_input != nullptr) {
    int fd = ::open(g_crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      std::size_t done = 0;
      while (done < g_input_size) {
        ssize_t n = ::write(fd, g_input + done, g_input_size - done);
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
      }
      ::close(fd);
    }
    const char msg[] = "fuzz_driver: the failing input is in the crash dir\n";
    ssize_t ignored = ::write(2, msg, sizeof(msg) - 1);
    (void)ignored;
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void run_one(const std::string& input) {
  g_input = reinterpret_cast<const std::uint8_t*>(input.data());
  g_input_size = input.size();
  LLVMFuzzerTestOneInput(g_input, g_input_size);
  g_input = nullptr;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

class Mutator {
 public:
  Mutator(std::uint64_t seed, std::vector<std::string> dictionary)
      : rng_(seed), dictionary_(std::move(dictionary)) {}

  std::string mutate(const std::vector<std::string>& pool) {
    std::string s = pool[below(pool.size())];
    const int n = 1 + static_cast<int>(below(kMutationsPerInputMax));
    for (int i = 0; i < n; ++i) once(s, pool);
    if (s.size() > kInputBytesMax) s.resize(kInputBytesMax);
    return s;
  }

 private:
  std::size_t below(std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(rng_() % n); }

  void once(std::string& s, const std::vector<std::string>& pool) {
    static constexpr std::uint8_t kInteresting[] = {0,   1,   0x7f, 0x80, 0xff, '"', '\\', '{',
                                                    '}', '[', ']',  ',',  ':',  '-', '.',  'e'};
    switch (below(9)) {
      case 0:  // flip a bit
        if (!s.empty()) s[below(s.size())] ^= static_cast<char>(1u << below(8));
        break;
      case 1:  // set a byte to an interesting value
        if (!s.empty())
          s[below(s.size())] = static_cast<char>(kInteresting[below(sizeof kInteresting)]);
        break;
      case 2:  // insert a random byte
        s.insert(s.begin() + static_cast<std::ptrdiff_t>(below(s.size() + 1)),
                 static_cast<char>(below(256)));
        break;
      case 3: {  // delete a range
        if (s.empty()) break;
        const std::size_t at = below(s.size());
        s.erase(at, 1 + below(std::min<std::size_t>(16, s.size() - at)));
        break;
      }
      case 4: {  // duplicate a range
        if (s.empty()) break;
        const std::size_t at = below(s.size());
        const std::string piece = s.substr(at, 1 + below(32));
        s.insert(below(s.size() + 1), piece);
        break;
      }
      case 5: {  // splice: a prefix of this one and a suffix of another
        const std::string& other = pool[below(pool.size())];
        s = s.substr(0, below(s.size() + 1)) + other.substr(below(other.size() + 1));
        break;
      }
      case 6:  // truncate
        s.resize(below(s.size() + 1));
        break;
      case 7:  // a dictionary token
        if (!dictionary_.empty()) {
          s.insert(below(s.size() + 1), dictionary_[below(dictionary_.size())]);
        }
        break;
      default: {  // overwrite 1, 2, 4 or 8 bytes with a random or boundary integer
        const std::size_t width = std::size_t{1} << below(4);
        if (s.size() < width) break;
        std::uint64_t v = below(2) == 0 ? rng_() : (below(2) == 0 ? ~0ull >> below(64) : below(4));
        std::memcpy(&s[below(s.size() - width + 1)], &v, width);
        break;
      }
    }
  }

  std::mt19937_64 rng_;
  std::vector<std::string> dictionary_;
};

int usage() {
  std::fprintf(stderr,
               "usage: fuzz_X [--iterations N] [--time-ms T] [--seed S] [--crash-dir DIR] "
               "[--write-seeds DIR] [FILE|DIR ...]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t iterations = 20'000;
  std::uint64_t time_ms = 10'000;
  std::uint64_t seed = 1;
  std::string crash_dir = ".";
  std::string write_seeds;
  std::vector<std::string> pool = credit::fuzz::seeds();
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--iterations" && has_value) {
      iterations = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--time-ms" && has_value) {
      time_ms = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--seed" && has_value) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--crash-dir" && has_value) {
      crash_dir = argv[++i];
    } else if (a == "--write-seeds" && has_value) {
      write_seeds = argv[++i];
    } else if (!a.empty() && a[0] == '-') {
      return usage();
    } else if (std::filesystem::is_directory(a)) {
      for (const auto& entry : std::filesystem::directory_iterator(a)) {
        if (entry.is_regular_file()) pool.push_back(read_file(entry.path()));
      }
    } else {
      pool.push_back(read_file(a));
    }
  }
  if (!write_seeds.empty()) {
    std::filesystem::create_directories(write_seeds);
    for (std::size_t i = 0; i < pool.size(); ++i) {
      std::ofstream(std::filesystem::path(write_seeds) / ("seed-" + std::to_string(i)),
                    std::ios::binary)
          << pool[i];
    }
    std::printf("wrote %zu seeds to %s\n", pool.size(), write_seeds.c_str());
    return 0;
  }
  if (pool.empty()) pool.emplace_back();
  std::snprintf(g_crash_path, sizeof g_crash_path, "%s/crash-input", crash_dir.c_str());
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) ::signal(sig, on_crash);

  // Every pool input as it is, then mutations.
  for (const std::string& input : pool) run_one(input);
  Mutator mutator(seed, credit::fuzz::dictionary());
  const auto start = std::chrono::steady_clock::now();
  std::uint64_t runs = pool.size();
  for (std::uint64_t i = 0; i < iterations; ++i) {
    if ((i & 255) == 0 &&
        std::chrono::steady_clock::now() - start > std::chrono::milliseconds(time_ms)) {
      break;
    }
    run_one(mutator.mutate(pool));
    ++runs;
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("fuzz_driver: %llu inputs (%zu seeds and files), no property broken, %.0f ms\n",
              static_cast<unsigned long long>(runs), pool.size(), ms);
  return 0;
}
