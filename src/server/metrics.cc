// src/server/metrics.cc
// Registration and the Prometheus text format.
#include "server/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace credit::server {

namespace {

bool valid_name(std::string_view name, bool allow_colon) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':');
    const bool digit = c >= '0' && c <= '9';
    if (!(alpha || (i > 0 && digit))) return false;
  }
  return true;
}

// Label values escape backslash, double quote and newline; help text only the first and
// the last.
void append_escaped(std::string& out, std::string_view s, bool quote) {
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quote && c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

std::string render_labels(const Labels& labels) {
  std::string out;
  for (const auto& [k, v] : labels) {
    if (!valid_name(k, false) || k == "le") {
      throw std::invalid_argument("metrics: bad label name " + k);
    }
    if (!out.empty()) out += ',';
    out += k;
    out += "=\"";
    append_escaped(out, v, true);
    out += '"';
  }
  return out;
}

void append_double(std::string& out, double v) {
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, ec == std::errc() ? end : buf);
}

void append_series_name(std::string& out, std::string_view name, std::string_view suffix,
                        std::string_view labels, std::string_view extra_label) {
  out += name;
  out += suffix;
  if (!labels.empty() || !extra_label.empty()) {
    out += '{';
    out += labels;
    if (!labels.empty() && !extra_label.empty()) out += ',';
    out += extra_label;
    out += '}';
  }
  out += ' ';
}

}  // namespace

Histogram::Histogram(std::span<const double> bounds)
    : bounds_(bounds.begin(), bounds.end()),
      counts_(new std::atomic<std::uint64_t>[bounds.size() + 1]) {
  if (!std::is_sorted(bounds_.begin(), bounds_.end()) ||
      std::adjacent_find(bounds_.begin(), bounds_.end()) != bounds_.end()) {
    throw std::invalid_argument("metrics: histogram bounds must ascend");
  }
  for (std::size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::observe(double v) {
  // Buckets are few (under 20): a scan beats a binary search on a cache line.
  std::size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

MetricsRegistry::Family& MetricsRegistry::family(std::string_view name, std::string_view help,
                                                 Type type, std::span<const double> bounds) {
  for (auto& f : families_) {
    if (f->name != name) continue;
    if (f->type != type ||
        !std::equal(f->bounds.begin(), f->bounds.end(), bounds.begin(), bounds.end())) {
      throw std::invalid_argument("metrics: " + std::string(name) + " registered twice");
    }
    return *f;
  }
  if (!valid_name(name, true)) {
    throw std::invalid_argument("metrics: bad metric name " + std::string(name));
  }
  auto f = std::make_unique<Family>();
  f->name = name;
  f->help = help;
  f->type = type;
  f->bounds.assign(bounds.begin(), bounds.end());
  families_.push_back(std::move(f));
  return *families_.back();
}

MetricsRegistry::Series* MetricsRegistry::find(Family& f, const std::string& labels) {
  for (auto& s : f.series) {
    if (s.labels == labels) return &s;
  }
  return nullptr;
}

Counter& MetricsRegistry::counter(std::string_view name, std::string_view help,
                                  const Labels& labels) {
  const std::string rendered = render_labels(labels);
  std::lock_guard lock(mu_);
  Family& f = family(name, help, Type::kCounter, {});
  if (Series* s = find(f, rendered)) return *s->counter;
  Counter& c = counters_.emplace_back();
  f.series.push_back({rendered, &c, nullptr, nullptr});
  return c;
}

Gauge& MetricsRegistry::gauge(std::string_view name, std::string_view help, const Labels& labels) {
  const std::string rendered = render_labels(labels);
  std::lock_guard lock(mu_);
  Family& f = family(name, help, Type::kGauge, {});
  if (Series* s = find(f, rendered)) return *s->gauge;
  Gauge& g = gauges_.emplace_back();
  f.series.push_back({rendered, nullptr, &g, nullptr});
  return g;
}

Histogram& MetricsRegistry::histogram(std::string_view name, std::string_view help,
                                      std::span<const double> bounds, const Labels& labels) {
  const std::string rendered = render_labels(labels);
  std::lock_guard lock(mu_);
  Family& f = family(name, help, Type::kHistogram, bounds);
  if (Series* s = find(f, rendered)) return *s->histogram;
  Histogram& h = histograms_.emplace_back(bounds);
  f.series.push_back({rendered, nullptr, nullptr, &h});
  return h;
}

std::string MetricsRegistry::render() const {
  std::string out;
  std::lock_guard lock(mu_);
  for (const auto& f : families_) {
    out += "# HELP ";
    out += f->name;
    out += ' ';
    append_escaped(out, f->help, false);
    out += "\n# TYPE ";
    out += f->name;
    out += f->type == Type::kCounter ? " counter\n"
           : f->type == Type::kGauge ? " gauge\n"
                                     : " histogram\n";
    for (const Series& s : f->series) {
      if (s.counter) {
        append_series_name(out, f->name, "", s.labels, "");
        out += std::to_string(s.counter->value());
        out += '\n';
      } else if (s.gauge) {
        append_series_name(out, f->name, "", s.labels, "");
        out += std::to_string(s.gauge->value());
        out += '\n';
      } else {
        const Histogram& h = *s.histogram;
        std::uint64_t cumulative = 0;
        std::string le;
        for (std::size_t i = 0; i <= h.bounds().size(); ++i) {
          cumulative += h.bucket_count(i);
          le = "le=\"";
          if (i < h.bounds().size()) {
            append_double(le, h.bounds()[i]);
          } else {
            le += "+Inf";
          }
          le += '"';
          append_series_name(out, f->name, "_bucket", s.labels, le);
          out += std::to_string(cumulative);
          out += '\n';
        }
        append_series_name(out, f->name, "_sum", s.labels, "");
        append_double(out, h.sum());
        out += '\n';
        append_series_name(out, f->name, "_count", s.labels, "");
        out += std::to_string(cumulative);
        out += '\n';
      }
    }
  }
  return out;
}

}  // namespace credit::server
