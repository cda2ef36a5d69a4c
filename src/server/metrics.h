// src/server/metrics.h
// A small Prometheus registry: counters, gauges and histograms whose labels are fixed
// when they are registered, rendered in the text exposition format for GET /metrics.
// Owns: the metric objects and their rendering. Does not: decide what is measured (the
// routes, the store and the ledger plumbing register their own metrics).
//
// Registration takes a mutex and returns a reference that stays valid for the registry's
// life; callers keep it. Updates are relaxed atomics: no lock on the hot path. Rendering
// reads the atomics without stopping writers, so a scrape may see a histogram bucket a
// moment ahead of its sum (Prometheus tolerates that).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace credit::server {

// Upper bounds in seconds for request, batch and fsync latencies: 50 us to 10 s.
inline constexpr double kLatencyBucketsSeconds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                    0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                                    0.5,     1,      2.5,     5,      10};
// Upper bounds for counts such as commands per batch: powers of 2 up to the 8,192 ops a
// batch request may carry.
inline constexpr double kSizeBuckets[] = {1,   2,   4,   8,    16,   32,   64,
                                          128, 256, 512, 1024, 2048, 4096, 8192};

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void inc(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  // For a count kept elsewhere (EngineStats), mirrored here when /metrics is read; it
  // only grows, as a counter's must.
  void set_total(std::uint64_t total) { value_.store(total, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class Gauge {
 public:
  void set(std::int64_t v) { value_.store(v, std::memory_order_relaxed); }
  void add(std::int64_t n) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> value_{0};
};

class Histogram {
 public:
  // `bounds` are the bucket upper bounds, ascending; +Inf is implied.
  explicit Histogram(std::span<const double> bounds);
  void observe(double v);
  // Convenience for latencies measured in nanoseconds.
  void observe_ns(std::int64_t ns) { observe(static_cast<double>(ns) * 1e-9); }

  std::span<const double> bounds() const { return bounds_; }
  // Observations in bucket i alone (not cumulative); index bounds().size() is +Inf.
  std::uint64_t bucket_count(std::size_t i) const {
    return counts_[i].load(std::memory_order_relaxed);
  }
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

class MetricsRegistry {
 public:
  // Returns the metric of that name and labels, creating it on first use. Names follow
  // Prometheus rules ([a-zA-Z_:][a-zA-Z0-9_:]*); a bad name, or one name registered as
  // two types or with two different bucket lists, throws std::invalid_argument (a
  // programming error).
  Counter& counter(std::string_view name, std::string_view help, const Labels& labels = {});
  Gauge& gauge(std::string_view name, std::string_view help, const Labels& labels = {});
  Histogram& histogram(std::string_view name, std::string_view help, std::span<const double> bounds,
                       const Labels& labels = {});

  // Prometheus text exposition format 0.0.4.
  std::string render() const;
  // The Content-Type of render().
  static constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Series {
    std::string labels;  // rendered: `route="charge",status="201"`, or empty
    Counter* counter = nullptr;
    Gauge* gauge = nullptr;
    Histogram* histogram = nullptr;
  };
  struct Family {
    std::string name;
    std::string help;
    Type type;
    std::vector<double> bounds;
    std::vector<Series> series;
  };
  Family& family(std::string_view name, std::string_view help, Type type,
                 std::span<const double> bounds);
  static Series* find(Family& f, const std::string& labels);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Family>> families_;
  // Deques keep addresses stable as metrics are added.
  std::deque<Counter> counters_;
  std::deque<Gauge> gauges_;
  std::deque<Histogram> histograms_;
};

}  // namespace credit::server
