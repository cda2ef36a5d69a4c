// src/analytics/audit_render.cc
// The audit's Markdown and HTML forms. The HTML page is self-contained: no script, no
// style element, no external resource; charts are inline SVG drawn with presentation
// attributes, so the page renders under a Content-Security-Policy of `default-src 'none'`.
#include <fmt/format.h>

#include <algorithm>

#include "analytics/audit.h"
#include "time/time.h"

namespace credit::analytics {
namespace {

std::string pct(double share) {
  return fmt::format("{:.1f} %", share * 100);
}
std::string cr(Millicredits c) {
  return format_credits(c);
}
std::string or_dash(const std::string& s) {
  return s.empty() ? "-" : s;
}

// A table cell's or a line's text: Markdown's own characters (and the backslash) are
// escaped, and a line break becomes a space, so that a value never ends its row.
std::string md_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\n' || c == '\r') {
      out += ' ';
      continue;
    }
    if (c == '|' || c == '*' || c == '_' || c == '`' || c == '<' || c == '>' || c == '\\') {
      out += '\\';
    }
    out += c;
  }
  return out;
}

std::string html_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// An instant of the report's last day (an empty range [h, h) has none: its first).
std::int64_t last_day_ms(const AuditReport& r) {
  return std::max(r.from_ms, r.to_ms - 1);
}

// "25 days", or "25 days so far" when the range goes on past today (the current cycle).
std::string period_text(const AuditReport& r) {
  const std::int64_t range_days = (r.to_ms - r.from_ms + kMsPerDay - 1) / kMsPerDay;
  return fmt::format("{} days{}", r.period_days, r.period_days < range_days ? " so far" : "");
}

std::string source_label(const SourceRow& s) {
  return s.key.empty() ? s.kind : s.kind + " " + s.key;
}

void markdown_one(std::string& o, const AuditReport& r) {
  o += fmt::format("# Credit audit: {}\n\n", md_escape(r.account_id));
  o += fmt::format("Period {} to {} ({}){}, {} events, burn {} credits (refunds {}).\n\n",
                   format_date(r.from_ms), format_date(last_day_ms(r)), period_text(r),
                   r.pool.empty() ? "" : ", pool " + md_escape(r.pool), r.events, cr(r.total),
                   cr(r.refunds));
  o += "## Findings\n\n";
  if (r.findings.empty()) o += "No findings: this account spends its credits well.\n";
  for (const auto& f : r.findings) o += fmt::format("- **{}**: {}\n", f.code, md_escape(f.message));
  o += "\n## Fixes, by savings per hour of effort\n\n";
  if (r.fixes.empty()) o += "Nothing to fix.\n";
  if (!r.fixes.empty()) {
    o += "| # | fix | saved in the period | saved per cycle | effort | saved per hour |\n"
         "|---|---|---|---|---|---|\n";
    int i = 1;
    for (const auto& f : r.fixes) {
      std::string effort = f.effort == "hours" ? fmt::format("{} h", f.effort_hours) : f.effort;
      o += fmt::format("| {} | {} | {} | {} | {} | {} |\n", i++, md_escape(f.title), cr(f.saved),
                       cr(f.saved_per_cycle), effort, cr(f.saved_per_hour));
    }
    o += fmt::format("\nAll fixes together: about {} credits per cycle.\n",
                     cr(r.saved_per_cycle_all));
  }
  o += "\n## Burn by source\n\n| source | credits | share | typical |\n|---|---|---|---|\n";
  for (const auto& s : r.shares) {
    o += fmt::format("| {} | {} | {}{} | {}-{} % |\n", s.source, cr(s.credits), pct(s.share),
                     s.in_range ? "" : " (!)", s.typical_min_pct, s.typical_max_pct);
  }
  o += "\n## Daily burn\n\n| day | credits |\n|---|---|\n";
  for (const auto& d : r.daily)
    o += fmt::format("| {} | {} |\n", format_date(d.day_ms), cr(d.credits));
  o += "\n## Top burn sources\n\n| source | credits | share |\n|---|---|---|\n";
  for (const auto& s : r.top_sources) {
    o += fmt::format("| {} | {} | {} |\n", md_escape(source_label(s)), cr(s.credits), pct(s.share));
  }
  o += "\n## Hot files\n\n| file | agent turns | credits |\n|---|---|---|\n";
  for (const auto& f : r.hot_files) {
    o += fmt::format("| {} | {} | {} |\n", md_escape(f.file), f.turns, cr(f.credits));
  }
  o += fmt::format("\n## Regression loops\n\n{} loop(s), waste {} credits.\n\n", r.loops.size(),
                   cr(r.loop_waste));
  if (!r.loops.empty()) {
    o += "| file or feature | turns | credits | waste | first | revert to |\n"
         "|---|---|---|---|---|---|\n";
    for (const auto& l : r.loops) {
      o += fmt::format("| {} | {} | {} | {} | {} | {} |\n",
                       md_escape(l.file.empty() ? l.feature : l.file), l.turns, cr(l.credits),
                       cr(l.waste), format_rfc3339(l.first_at_ms),
                       md_escape(or_dash(l.revert_to_snapshot)));
    }
  }
  o += fmt::format("\n## Repeated integration calls\n\n{} paid repeat(s), {} credits.\n\n",
                   r.repeat_calls_paid, cr(r.repeat_waste));
  if (!r.repeats.empty()) {
    o += "| call site | calls | paid repeats | waste |\n|---|---|---|---|\n";
    for (const auto& x : r.repeats) {
      o += fmt::format("| {} | {} | {} | {} |\n", md_escape(or_dash(x.call_site)), x.calls,
                       x.paid_repeats, cr(x.wasted));
    }
  }
  o += fmt::format("\n## Unscoped prompts\n\n{} prompt(s), {} credits.\n\n", r.unscoped_prompts,
                   cr(r.unscoped_credits));
  auto rows = [&](std::string_view title, const std::vector<CountRow>& v,
                  std::string_view count = "prompts") {
    if (v.empty()) return;
    o += fmt::format("| {} | {} | credits |\n|---|---|---|\n", title, count);
    for (const auto& x : v) {
      o += fmt::format("| {} | {} | {} |\n", md_escape(x.key), x.count, cr(x.credits));
    }
    o += "\n";
  };
  rows("user", r.unscoped_by_user);
  rows("file", r.unscoped_by_file);
  o += fmt::format("## Discuss mode\n\n{} turn(s), {} credits, {} of the burn.\n\n",
                   r.discuss_turns, cr(r.discuss_credits), pct(r.discuss_share));
  rows("intent", r.discuss_by_intent, "turns");
  o += fmt::format("## Small edits through the agent\n\n{} turn(s), {} credits.\n\n", r.small_edits,
                   cr(r.small_edit_credits));
  o +=
      fmt::format("## Snapshots\n\n{} of {} agent turn(s) ran without a snapshot ({} credits).\n\n",
                  r.turns_without_snapshot, r.agent_turns, cr(r.turns_without_snapshot_credits));
  o += "## Per-user outliers\n\n";
  if (r.outliers.empty()) o += "None.\n";
  for (const auto& u : r.outliers) {
    o += fmt::format("- {}: {} agent turns, {} credits (median user: {} turns, {} credits)\n",
                     md_escape(u.user_id), u.agent_turns, cr(u.credits), u.median_turns_x2 / 2.0,
                     cr(Millicredits::from_mc(u.median_credits_mc_x2 / 2)));
  }
  o += "\n## Forecast and plan advice\n\n";
  if (!r.advice) {
    o += "No plan given (pass --plan).\n";
  } else {
    const Advice& a = *r.advice;
    o += fmt::format(
        "Plan {}: allowance {}, projected {} per cycle from this period's burn ({} "
        "utilisation), need {}.\n"
        "Advice: **{}** {} (price difference {:.2f} USD, {:.1f} engineering hours). {}.\n",
        a.current_plan, cr(a.allowance), cr(a.used_per_cycle), pct(a.utilization), cr(a.need),
        a.action, a.plan, a.price_delta_usd_cents / 100.0, a.engineering_hours, a.reason);
  }
  o += "\n";
}

// --- SVG charts --------------------------------------------------------------------------

constexpr int kChartWidthPx = 640;
constexpr int kBarHeightPx = 22;
constexpr int kLabelWidthPx = 220;

std::string svg_shares(const AuditReport& r) {
  const int bar_w = kChartWidthPx - kLabelWidthPx - 80;
  const int h = static_cast<int>(r.shares.size()) * (kBarHeightPx + 8) + 10;
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" role=\"img\" "
      "aria-label=\"burn by source against typical shares\">",
      kChartWidthPx, h);
  int y = 5;
  for (const auto& row : r.shares) {
    const int band_x = kLabelWidthPx + bar_w * static_cast<int>(row.typical_min_pct) / 100;
    const int band_w = bar_w * static_cast<int>(row.typical_max_pct - row.typical_min_pct) / 100;
    const int w = static_cast<int>(bar_w * std::clamp(row.share, 0.0, 1.0));
    s += fmt::format("<text x=\"0\" y=\"{}\" font-size=\"13\" font-family=\"sans-serif\">{}</text>",
                     y + 16, html_escape(row.source));
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#e3eefc\"/>",
                     band_x, y, std::max(band_w, 1), kBarHeightPx);
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>",
                     kLabelWidthPx, y + 5, w, kBarHeightPx - 10,
                     row.in_range ? "#2f6fbf" : "#c0392b");
    s +=
        fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"12\" font-family=\"sans-serif\">{}</text>",
                    kLabelWidthPx + bar_w + 6, y + 16, pct(row.share));
    y += kBarHeightPx + 8;
  }
  return s + "</svg>";
}

std::string svg_bars(const std::vector<std::pair<std::string, Millicredits>>& rows,
                     std::string_view label) {
  Millicredits top;
  for (const auto& [k, v] : rows) top = max(top, v);
  const int bar_w = kChartWidthPx - kLabelWidthPx - 80;
  const int h = static_cast<int>(rows.size()) * (kBarHeightPx + 4) + 10;
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" role=\"img\" "
      "aria-label=\"{}\">",
      kChartWidthPx, h, html_escape(label));
  int y = 5;
  for (const auto& [k, v] : rows) {
    const int w =
        top.mc() > 0
            ? static_cast<int>(static_cast<double>(v.mc()) / static_cast<double>(top.mc()) * bar_w)
            : 0;
    std::string name = k.size() > 32 ? "..." + k.substr(k.size() - 29) : k;
    s += fmt::format("<text x=\"0\" y=\"{}\" font-size=\"12\" font-family=\"sans-serif\">{}</text>",
                     y + 15, html_escape(name));
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#2f6fbf\"/>",
                     kLabelWidthPx, y + 3, std::max(w, 0), kBarHeightPx - 6);
    s +=
        fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"12\" font-family=\"sans-serif\">{}</text>",
                    kLabelWidthPx + w + 6, y + 15, cr(v));
    y += kBarHeightPx + 4;
  }
  return s + "</svg>";
}

std::string svg_daily(const AuditReport& r) {
  constexpr int kHeightPx = 160;
  Millicredits top;
  for (const auto& d : r.daily) top = max(top, d.credits);
  const int n = std::max<int>(1, static_cast<int>(r.daily.size()));
  const int step = std::max(2, (kChartWidthPx - 40) / n);
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" role=\"img\" "
      "aria-label=\"daily burn\">",
      kChartWidthPx, kHeightPx + 20);
  int x = 30;
  for (const auto& d : r.daily) {
    const int h =
        top.mc() > 0
            ? static_cast<int>(static_cast<double>(std::max<std::int64_t>(0, d.credits.mc())) /
                               static_cast<double>(top.mc()) * kHeightPx)
            : 0;
    s += fmt::format(
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#2f6fbf\"><title>{}: {} "
        "credits</title></rect>",
        x, kHeightPx - h, std::max(1, step - 2), h, format_date(d.day_ms), cr(d.credits));
    x += step;
  }
  s += fmt::format("<text x=\"0\" y=\"12\" font-size=\"11\" font-family=\"sans-serif\">{}</text>",
                   cr(top));
  s += fmt::format(
      "<line x1=\"28\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#888\" stroke-width=\"1\"/>",
      kHeightPx, kChartWidthPx);
  return s + "</svg>";
}

void html_table(std::string& o, const std::vector<std::string>& head,
                const std::vector<std::vector<std::string>>& rows) {
  o += "<table border=\"1\" cellpadding=\"4\" cellspacing=\"0\"><tr>";
  for (const auto& h : head) o += "<th>" + html_escape(h) + "</th>";
  o += "</tr>";
  for (const auto& row : rows) {
    o += "<tr>";
    for (const auto& c : row) o += "<td>" + html_escape(c) + "</td>";
    o += "</tr>";
  }
  o += "</table>\n";
}

void html_one(std::string& o, const AuditReport& r) {
  o += fmt::format("<h1>Credit audit: {}</h1>\n", html_escape(r.account_id));
  o += fmt::format(
      "<p>Period {} to {} ({}){}, {} events, burn <b>{}</b> credits (refunds "
      "{}).</p>\n",
      format_date(r.from_ms), format_date(last_day_ms(r)), period_text(r),
      r.pool.empty() ? "" : ", pool " + html_escape(r.pool), r.events, cr(r.total), cr(r.refunds));
  o += "<h2>Findings</h2>\n";
  if (r.findings.empty()) o += "<p>No findings: this account spends its credits well.</p>\n";
  if (!r.findings.empty()) {
    o += "<ul>";
    for (const auto& f : r.findings) {
      o += "<li><b>" + html_escape(f.code) + "</b>: " + html_escape(f.message) + "</li>";
    }
    o += "</ul>\n";
  }
  o += "<h2>Fixes, by savings per hour of effort</h2>\n";
  std::vector<std::vector<std::string>> fixes;
  for (const auto& f : r.fixes) {
    fixes.push_back({f.title, cr(f.saved), cr(f.saved_per_cycle),
                     f.effort == "hours" ? fmt::format("{} h", f.effort_hours) : f.effort,
                     cr(f.saved_per_hour)});
  }
  if (!fixes.empty()) {
    html_table(o, {"fix", "saved in the period", "saved per cycle", "effort", "saved per hour"},
               fixes);
    o += fmt::format("<p>All fixes together: about {} credits per cycle.</p>\n",
                     cr(r.saved_per_cycle_all));
  }
  o += "<h2>Burn by source</h2>\n<p>Bars: share of the burn; shaded band: typical range.</p>\n";
  o += svg_shares(r) + "\n";
  // The figures behind the bars, as the JSON and Markdown give them.
  std::vector<std::vector<std::string>> shares;
  for (const auto& x : r.shares) {
    shares.push_back({x.source, cr(x.credits), pct(x.share) + (x.in_range ? "" : " (!)"),
                      fmt::format("{}-{} %", x.typical_min_pct, x.typical_max_pct)});
  }
  html_table(o, {"source", "credits", "share", "typical"}, shares);
  o += "<h2>Daily burn</h2>\n" + svg_daily(r) + "\n";
  o += "<h2>Top burn sources</h2>\n";
  std::vector<std::pair<std::string, Millicredits>> bars;
  for (const auto& s : r.top_sources) bars.emplace_back(source_label(s), s.credits);
  o += svg_bars(bars, "top burn sources") + "\n";
  o += "<h2>Hot files (agent turns)</h2>\n";
  std::vector<std::vector<std::string>> hot;
  for (const auto& f : r.hot_files) hot.push_back({f.file, std::to_string(f.turns), cr(f.credits)});
  html_table(o, {"file", "agent turns", "credits"}, hot);
  o += fmt::format("<h2>Regression loops</h2>\n<p>{} loop(s), waste {} credits.</p>\n",
                   r.loops.size(), cr(r.loop_waste));
  std::vector<std::vector<std::string>> loops;
  for (const auto& l : r.loops) {
    loops.push_back({l.file.empty() ? l.feature : l.file, std::to_string(l.turns), cr(l.credits),
                     cr(l.waste), format_rfc3339(l.first_at_ms), or_dash(l.revert_to_snapshot)});
  }
  if (!loops.empty()) {
    html_table(o, {"file or feature", "turns", "credits", "waste", "first", "revert to"}, loops);
  }
  o += fmt::format("<h2>Repeated integration calls</h2>\n<p>{} paid repeat(s), {} credits.</p>\n",
                   r.repeat_calls_paid, cr(r.repeat_waste));
  std::vector<std::vector<std::string>> reps;
  for (const auto& x : r.repeats) {
    reps.push_back({or_dash(x.call_site), std::to_string(x.calls), std::to_string(x.paid_repeats),
                    cr(x.wasted)});
  }
  if (!reps.empty()) html_table(o, {"call site", "calls", "paid repeats", "waste"}, reps);
  auto count_table = [&](std::string_view head, const std::vector<CountRow>& v) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& x : v) rows.push_back({x.key, std::to_string(x.count), cr(x.credits)});
    if (!rows.empty()) html_table(o, {std::string(head), "count", "credits"}, rows);
  };
  o += fmt::format("<h2>Unscoped prompts</h2>\n<p>{} prompt(s), {} credits.</p>\n",
                   r.unscoped_prompts, cr(r.unscoped_credits));
  count_table("user", r.unscoped_by_user);
  count_table("file", r.unscoped_by_file);
  o += fmt::format("<h2>Discuss mode</h2>\n<p>{} turn(s), {} credits, {} of the burn.</p>\n",
                   r.discuss_turns, cr(r.discuss_credits), pct(r.discuss_share));
  count_table("intent", r.discuss_by_intent);
  o += fmt::format("<h2>Small edits through the agent</h2>\n<p>{} turn(s), {} credits.</p>\n",
                   r.small_edits, cr(r.small_edit_credits));
  o += fmt::format(
      "<h2>Snapshots</h2>\n<p>{} of {} agent turn(s) ran without a snapshot ({} credits).</p>\n",
      r.turns_without_snapshot, r.agent_turns, cr(r.turns_without_snapshot_credits));
  o += "<h2>Per-user outliers</h2>\n";
  std::vector<std::vector<std::string>> outl;
  for (const auto& u : r.outliers) {
    outl.push_back({u.user_id, std::to_string(u.agent_turns), cr(u.credits),
                    fmt::format("{}", u.median_turns_x2 / 2.0),
                    cr(Millicredits::from_mc(u.median_credits_mc_x2 / 2))});
  }
  if (outl.empty()) o += "<p>None.</p>\n";
  if (!outl.empty()) {
    html_table(o, {"user", "agent turns", "credits", "median turns", "median credits"}, outl);
  }
  o += "<h2>Forecast and plan advice</h2>\n";
  if (!r.advice) {
    o += "<p>No plan given.</p>\n";
  } else {
    const Advice& a = *r.advice;
    o += fmt::format(
        "<p>Plan {}: allowance {}, projected {} per cycle from this period's burn ({} "
        "utilisation), need {}.</p>"
        "<p>Advice: <b>{}</b> {} (price difference {:.2f} USD, {:.1f} engineering hours). "
        "{}.</p>\n",
        html_escape(a.current_plan), cr(a.allowance), cr(a.used_per_cycle), pct(a.utilization),
        cr(a.need), a.action, html_escape(a.plan), a.price_delta_usd_cents / 100.0,
        a.engineering_hours, html_escape(a.reason));
  }
}

}  // namespace

std::string audit_markdown(const std::vector<AuditReport>& reports) {
  std::string o;
  for (const auto& r : reports) markdown_one(o, r);
  if (reports.empty()) o += "# Credit audit\n\nNo events.\n";
  return o;
}

std::string audit_html(const std::vector<AuditReport>& reports) {
  std::string o =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      "<title>creditd audit</title></head>\n<body>\n";
  for (const auto& r : reports) html_one(o, r);
  if (reports.empty()) o += "<h1>Credit audit</h1><p>No events.</p>\n";
  o += "</body></html>\n";
  return o;
}

}  // namespace credit::analytics
