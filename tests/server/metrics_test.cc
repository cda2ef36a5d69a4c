// tests/server/metrics_test.cc
// The Prometheus text format of counters, gauges and histograms.
#include "server/metrics.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace credit::server {
namespace {

TEST(Metrics, RendersCountersGaugesAndHistogramsInTextFormat) {
  MetricsRegistry r;
  Counter& created = r.counter("creditd_requests_total", "Requests answered.",
                               {{"route", "charge"}, {"status", "201"}});
  Counter& refused = r.counter("creditd_requests_total", "Requests answered.",
                               {{"route", "charge"}, {"status", "402"}});
  created.inc();
  created.inc(2);
  refused.inc();
  // The same name and labels give back the same counter.
  EXPECT_EQ(&r.counter("creditd_requests_total", "", {{"route", "charge"}, {"status", "201"}}),
            &created);
  r.gauge("creditd_connections", "Open connections.").set(7);
  static constexpr double kBounds[] = {0.001, 0.01};
  Histogram& h = r.histogram("creditd_fsync_seconds", "fsync time.", kBounds);
  h.observe(0.0005);
  h.observe(0.005);
  h.observe(0.5);

  EXPECT_EQ(r.render(),
            "# HELP creditd_requests_total Requests answered.\n"
            "# TYPE creditd_requests_total counter\n"
            "creditd_requests_total{route=\"charge\",status=\"201\"} 3\n"
            "creditd_requests_total{route=\"charge\",status=\"402\"} 1\n"
            "# HELP creditd_connections Open connections.\n"
            "# TYPE creditd_connections gauge\n"
            "creditd_connections 7\n"
            "# HELP creditd_fsync_seconds fsync time.\n"
            "# TYPE creditd_fsync_seconds histogram\n"
            "creditd_fsync_seconds_bucket{le=\"0.001\"} 1\n"
            "creditd_fsync_seconds_bucket{le=\"0.01\"} 2\n"
            "creditd_fsync_seconds_bucket{le=\"+Inf\"} 3\n"
            "creditd_fsync_seconds_sum 0.5055\n"
            "creditd_fsync_seconds_count 3\n");
}

TEST(Metrics, LabelValuesAreEscaped) {
  MetricsRegistry r;
  r.counter("x_total", "h", {{"v", "a\"b\\c\nd"}}).inc();
  EXPECT_NE(r.render().find("x_total{v=\"a\\\"b\\\\c\\nd\"} 1\n"), std::string::npos);
}

TEST(Metrics, MisuseIsAProgrammingError) {
  MetricsRegistry r;
  r.counter("dup", "h");
  EXPECT_THROW(r.gauge("dup", "h"), std::invalid_argument);
  EXPECT_THROW(r.counter("bad name", "h"), std::invalid_argument);
  EXPECT_THROW(r.counter("ok", "h", {{"le", "1"}}), std::invalid_argument);
}

TEST(Metrics, HistogramLabelsAndDefaultBuckets) {
  MetricsRegistry r;
  Histogram& h = r.histogram("batch_size", "Ops per batch.", kSizeBuckets, {{"kind", "wal"}});
  h.observe(3);
  const std::string text = r.render();
  EXPECT_NE(text.find("batch_size_bucket{kind=\"wal\",le=\"2\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("batch_size_bucket{kind=\"wal\",le=\"4\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("batch_size_count{kind=\"wal\"} 1\n"), std::string::npos);
}

}  // namespace
}  // namespace credit::server
