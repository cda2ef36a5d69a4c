// src/cli/online.cc
// The online subcommands (online.h): requests, tables, errors and exit codes.
#include "cli/online.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "base/decimal_option.h"
#include "base/json_writer.h"
#include "cli/answer_json.h"
#include "cli/http_client.h"
#include "money/money.h"
#include "time/time.h"

namespace credit::cli {

const char* const kExitCodesHelp =
    "Online commands talk to creditd at --url with the key from --key, $CREDITD_KEY or "
    "--key-file.\n"
    "Exit codes: 0 ok; 1 the server said no (other 4xx); 2 usage error; 3 bad input file;\n"
    "4 server unreachable; 5 bad key (401/403 forbidden); 6 insufficient credits (402);\n"
    "7 rate limited (429); 8 server error (5xx). See docs/cli.md.";

namespace {

using Element = const JsonNode&;

// ---- JSON values as text --------------------------------------------------------------

// A value as a table cell: a number exactly as the server wrote it (never through a
// double: DESIGN section 1, Money), a string unquoted, "-" for null or missing.
std::string text_of(Element e) {
  switch (e.kind) {
    case JsonKind::kString:
    case JsonKind::kNumber:
    case JsonKind::kBool:
      return e.text;
    case JsonKind::kNull:
    case JsonKind::kMissing:
      return "-";
    case JsonKind::kArray:
    case JsonKind::kObject:
      break;
  }
  std::string out;
  e.append_json(out);
  return out;
}

// The field `key` of object `e` as text ("-" when missing or null).
std::string field(Element e, std::string_view key) {
  return text_of(e[key]);
}

// A number that is not money (a ratio, a duration in ms) for arithmetic; 0 when missing
// or not a number.
double number(Element e, std::string_view key) {
  const JsonNode& v = e[key];
  double d = 0;
  if (v.kind != JsonKind::kNumber) return 0;
  auto [end, ec] = std::from_chars(v.text.data(), v.text.data() + v.text.size(), d);
  return ec == std::errc() && end == v.text.data() + v.text.size() ? d : 0;
}

std::string percent(Element e, std::string_view key) {
  const JsonNode& v = e[key];
  if (v.kind != JsonKind::kNumber) return "-";
  return fmt::format("{:.1f} %", number(e, key) * 100);
}

// ---- tables ---------------------------------------------------------------------------

// Columns whose header starts with '<' are left-aligned (the '<' is dropped); the rest
// are right-aligned, as numbers are.
void print_table(const std::vector<std::string>& heads,
                 const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width(heads.size());
  std::vector<bool> left(heads.size());
  std::vector<std::string> names(heads.size());
  for (std::size_t i = 0; i < heads.size(); ++i) {
    left[i] = !heads[i].empty() && heads[i][0] == '<';
    names[i] = left[i] ? heads[i].substr(1) : heads[i];
    width[i] = names[i].size();
  }
  for (const auto& r : rows) {
    for (std::size_t i = 0; i < r.size() && i < width.size(); ++i)
      width[i] = std::max(width[i], r[i].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (std::size_t i = 0; i < cells.size() && i < width.size(); ++i) {
      if (i > 0) out += "  ";
      out += left[i] ? fmt::format("{:<{}}", cells[i], width[i])
                     : fmt::format("{:>{}}", cells[i], width[i]);
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    std::cout << out << "\n";
  };
  line(names);
  if (rows.empty()) std::cout << "(none)\n";
  for (const auto& r : rows) line(r);
}

void print_pools(Element account) {
  std::vector<std::vector<std::string>> rows;
  for (const JsonNode& p : account["pools"].members()) {
    rows.push_back({p.key, field(p, "allowance"), field(p, "extra"), field(p, "used"),
                    field(p, "held"), field(p, "available"), field(p, "daily_cap"),
                    field(p, "used_today"), field(p, "available_now")});
  }
  print_table({"<pool", "allowance", "extra", "used", "held", "available", "daily_cap",
               "used_today", "available_now"},
              rows);
}

void print_account(Element a) {
  std::cout << fmt::format("account {}  plan {}  {}  cycle {} to {}", field(a, "account_id"),
                           field(a, "plan"), field(a, "status"), field(a["cycle"], "start"),
                           field(a["cycle"], "end"));
  if (field(a, "pending_plan") != "-") std::cout << "  pending plan " << field(a, "pending_plan");
  std::cout << "\n\n";
  print_pools(a);
}

void print_drawn(Element doc) {
  for (const JsonNode& d : doc["drawn_from"].elements())
    std::cout << fmt::format("  drawn from {}: {}\n", field(d, "source"), field(d, "credits"));
}

void print_charge(Element c) {
  if (field(c, "cached") == "true") {
    std::cout << fmt::format("cache hit: charge {} cost 0, saved {} credits\n",
                             field(c, "charge_id"), field(c, "saved"));
    return;
  }
  std::cout << fmt::format("charge {}: {} credits from pool {}, available after {}\n",
                           field(c, "charge_id"), field(c, "cost"), field(c, "pool"),
                           field(c, "available_after"));
  print_drawn(c);
}

void print_next(Element doc) {
  std::string next = field(doc, "next");
  if (next != "-") std::cout << "more: --after " << next << "\n";
}

// ---- requests -------------------------------------------------------------------------

std::string new_idempotency_key() {
  std::random_device rd;
  std::uint64_t a = (std::uint64_t{rd()} << 32) | rd();
  std::uint64_t b = (std::uint64_t{rd()} << 32) | rd();
  return fmt::format("creditctl-{:016x}{:016x}", a, b);
}

// The key to send, or an exit code (2: none given, 3: the key file cannot be read). The
// command line beats the environment: --key, then --key-file, then $CREDITD_KEY.
std::variant<std::string, int> resolve_key(const Connection& conn) {
  if (!conn.key.empty()) return conn.key;
  if (conn.key_file.empty()) {
    const char* env = std::getenv("CREDITD_KEY");
    if (env != nullptr && *env != '\0') return std::string(env);
    std::cerr << "creditctl: no API key: pass --key KEY, set CREDITD_KEY, or --key-file FILE "
                 "(the admin key is in DATA/admin.key)\n";
    return kExitUsage;
  }
  std::ifstream f(conn.key_file);
  std::string key;
  if (!f || !std::getline(f, key)) {
    std::cerr << "creditctl: cannot read the key file " << conn.key_file << "\n";
    return kExitBadInput;
  }
  while (!key.empty() && (key.back() == '\r' || key.back() == ' ')) key.pop_back();
  if (key.empty()) {
    std::cerr << "creditctl: the key file " << conn.key_file << " is empty\n";
    return kExitBadInput;
  }
  return key;
}

struct Request {
  std::string method = "GET";
  std::string target;
  std::string body;
  std::string idempotency_key;  // of a mutation, for the "outcome unknown" hint
};

using Render = std::function<void(Element)>;

void retry_hint(const Request& r) {
  if (r.idempotency_key.empty()) return;
  std::cerr << "creditctl: the outcome is unknown; retrying with --key-id " << r.idempotency_key
            << " cannot apply it twice\n";
}

// Explains a refusal on stderr; returns its exit code.
int explain_error(const HttpAnswer& a, const Request& r) {
  const std::optional<JsonNode> doc = parse_answer(a.body);
  const JsonNode none;
  const JsonNode& err = doc ? (*doc)["error"] : none;
  const bool has = err.is_object();
  const std::string code = has ? field(err, "code") : "-";
  const std::string message = has ? field(err, "message") : a.body.substr(0, 200);
  const std::string prefix = fmt::format("creditctl: {} {}", a.status, code);
  if (a.status == 401 || (a.status == 403 && code == "forbidden")) {
    std::cerr << prefix << ": " << message << "\n"
              << "creditctl: the server refused this key: check --key, CREDITD_KEY or "
                 "--key-file, and that the key may reach this account\n";
    return kExitBadKey;
  }
  if (a.status == 402) {
    std::string line = fmt::format("creditctl: insufficient credits: required {}, available {}",
                                   field(err, "required"), field(err, "available"));
    std::string by = field(err, "refused_by");
    line += fmt::format(", refused by {}", by == "daily_cap" ? "the daily cap" : by);
    if (field(err, "resets_at") != "-") line += ", the cap resets at " + field(err, "resets_at");
    if (field(err, "cycle_end") != "-") line += ", the cycle ends at " + field(err, "cycle_end");
    if (field(err, "upgrade_to") != "-") line += "; upgrade to " + field(err, "upgrade_to");
    std::cerr << line << "\n";
    return kExitInsufficient;
  }
  if (a.status == 429) {
    std::string after;
    if (has && field(err, "retry_after_ms") != "-") {
      after = fmt::format("{:.1f} s", number(err, "retry_after_ms") / 1000.0);
    } else {
      after = a.retry_after.empty() ? "a moment" : a.retry_after + " s";
    }
    std::cerr << "creditctl: rate limited: retry after " << after << " (" << message << ")\n";
    return kExitRateLimited;
  }
  if (a.status >= 500) {
    std::cerr << prefix << ": " << message << "\n";
    retry_hint(r);
    return kExitServerError;
  }
  std::string extra;
  if (has) {
    for (const JsonNode& v : err.members()) {
      if (v.key == "code" || v.key == "message") continue;
      extra += fmt::format(", {} {}", v.key, text_of(v));
    }
  }
  std::cerr << prefix << ": " << message << extra << "\n";
  return kExitRefused;
}

// Sends `r`; nullopt with `a` filled when the server answered, else the exit code (bad
// --url, no key, unreachable).
std::optional<int> exchange(const Connection& conn, const Request& r, HttpAnswer& a) {
  std::string problem;
  auto url = parse_server_url(conn.url, problem);
  if (!url) {
    std::cerr << "creditctl: --url: " << problem << "\n";
    return kExitUsage;
  }
  auto key = resolve_key(conn);
  if (auto* code = std::get_if<int>(&key)) return *code;
  HttpCall c;
  c.method = r.method;
  c.target = r.target;
  c.body = r.body;
  c.key = std::get<std::string>(key);
  c.timeout_ms = conn.timeout_s * 1000;
  a = http_request(*url, c);
  if (!a.reached) {
    std::cerr << "creditctl: cannot reach creditd at " << conn.url << ": " << a.transport_error
              << "\n"
              << "creditctl: is the server running? (creditd --data DIR --listen "
                 "127.0.0.1:8080; or pass --url)\n";
    retry_hint(r);
    return kExitUnreachable;
  }
  return std::nullopt;
}

// The server's JSON answer (a result or an error) as --json prints it: one line of its own.
void print_json_body(const std::string& body) {
  if (body.empty()) return;
  std::cout << body;
  if (body.back() != '\n') std::cout << "\n";
}

int call(const Connection& conn, const Request& r, const Render& render) {
  HttpAnswer a;
  if (auto code = exchange(conn, r, a)) return *code;
  const bool ok = a.status >= 200 && a.status < 300;
  if (conn.json) print_json_body(a.body);
  if (!ok) return explain_error(a, r);
  if (conn.json) return kExitOk;
  if (a.body.empty()) {
    std::cout << "ok\n";
    return kExitOk;
  }
  const std::optional<JsonNode> doc = parse_answer(a.body);
  if (!doc) {
    std::cout << a.body;
    return kExitOk;
  }
  render(*doc);
  return kExitOk;
}

// The JSON number of a value in decimal digits: without its leading zeros, which JSON has
// none of ("0900" is 900, "00" is 0).
std::string_view canonical_integer(std::string_view digits) {
  const std::size_t first = digits.find_first_not_of('0');
  return first == std::string_view::npos ? digits.substr(digits.size() - 1) : digits.substr(first);
}

// "a=1,b=x" -> {"a":1,"b":"x"}. With `numbers`, a value in decimal digits is a whole number
// and sent as one, in canonical form; any other value is sent as a string, so that the body
// is always JSON (a value such as "3.5" or "-1" reaches the server as the string given).
std::optional<std::string> pairs_json(const std::string& text, bool numbers, std::string& problem) {
  std::string out;
  json::Writer w(out);
  w.begin_object();
  std::size_t pos = 0;
  std::set<std::string> names;  // a name twice would be a JSON object the server refuses
  while (pos <= text.size()) {
    std::size_t comma = text.find(',', pos);
    std::string item =
        text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      problem = "expected name=value[,name=value...], got '" + item + "'";
      return std::nullopt;
    }
    std::string name = item.substr(0, eq), value = item.substr(eq + 1);
    if (!names.insert(name).second) {
      problem = "'" + name + "' is given twice";
      return std::nullopt;
    }
    const bool integer =
        numbers && !value.empty() && value.find_first_not_of("0123456789") == std::string::npos;
    w.key(name);
    if (integer)
      w.raw(canonical_integer(value));
    else
      w.string(value);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  w.end_object();
  return out;
}

int usage_error(const std::string& message) {
  std::cerr << "creditctl: " << message << "\n";
  return kExitUsage;
}

// Adds "amount"/"usage" to a metering body; an exit code on bad input.
std::optional<int> add_cost(json::Writer& w, const OnlineArgs& a, bool required) {
  if (required && a.amount.empty() && a.usage.empty()) {
    return usage_error("give --amount CREDITS or --usage name=value,...");
  }
  if (!a.amount.empty()) {
    auto amount = parse_credits(a.amount);
    if (!amount.ok() || amount->is_negative()) {
      return usage_error("--amount: a non-negative number of credits with at most 3 decimals");
    }
    w.key("amount").raw(format_credits(*amount));
  }
  if (!a.usage.empty()) {
    std::string problem;
    auto usage = pairs_json(a.usage, true, problem);
    if (!usage) return usage_error("--usage: " + problem);
    w.key("usage").raw(*usage);
  }
  return std::nullopt;
}

std::optional<int> add_metadata(json::Writer& w, const OnlineArgs& a) {
  if (a.metadata.empty()) return std::nullopt;
  std::string problem;
  auto meta = pairs_json(a.metadata, false, problem);
  if (!meta) return usage_error("--meta: " + problem);
  w.key("metadata").raw(*meta);
  return std::nullopt;
}

std::string account_path(const std::string& id) {
  return "/v1/accounts/" + url_encode(id);
}

// "?a=1&b=2" from the pairs whose value is not empty.
std::string query(std::initializer_list<std::pair<const char*, std::string>> params) {
  std::string q;
  for (const auto& [name, value] : params) {
    if (value.empty()) continue;
    q += q.empty() ? '?' : '&';
    q += name;
    q += '=';
    q += url_encode(value);
  }
  return q;
}

// A --limit given is sent as given (the server answers 400 for one out of its range).
std::string limit_text(const std::optional<std::int64_t>& limit) {
  return limit ? std::to_string(*limit) : std::string();
}

// ---- the commands ---------------------------------------------------------------------

int accounts_list(const OnlineCommands& c) {
  Request r;
  r.target = "/v1/accounts" + query({{"limit", limit_text(c.args.limit)}, {"after", c.args.after}});
  return call(c.conn, r, [](Element doc) {
    std::vector<std::vector<std::string>> rows;
    for (const JsonNode& a : doc["accounts"].elements()) {
      std::string used = "-", available = "-";
      for (const JsonNode& p : a["pools"].members()) {
        used = field(p, "used");
        available = field(p, "available");
        break;  // the plan's first pool
      }
      rows.push_back({field(a, "account_id"), field(a, "plan"), field(a, "status"),
                      field(a["cycle"], "end"), used, available});
    }
    print_table({"<account", "<plan", "<status", "<cycle_end", "used", "available"}, rows);
    print_next(doc);
  });
}

int accounts_get(const OnlineCommands& c) {
  Request r;
  r.target = account_path(c.args.account);
  return call(c.conn, r, print_account);
}

int accounts_create(const OnlineCommands& c) {
  Request r;
  r.method = "POST";
  r.target = "/v1/accounts";
  r.idempotency_key = c.args.key_id.empty() ? new_idempotency_key() : c.args.key_id;
  json::Writer w(r.body);
  w.begin_object().key("account_id").string(c.args.account).key("plan").string(c.args.plan);
  if (!c.args.signup_at.empty()) w.key("signup_at").string(c.args.signup_at);
  w.key("idempotency_key").string(r.idempotency_key).end_object();
  return call(c.conn, r, print_account);
}

int metering(const OnlineCommands& c, std::string_view op) {
  const OnlineArgs& a = c.args;
  Request r;
  r.method = "POST";
  r.idempotency_key = a.key_id.empty() ? new_idempotency_key() : a.key_id;
  json::Writer w(r.body);
  w.begin_object().key("idempotency_key").string(r.idempotency_key);
  if (op == "charge" || op == "hold") {
    r.target = account_path(a.account) + (op == "charge" ? "/charges" : "/holds");
    w.key("kind").string(a.kind).key("user_id").string(a.user);
    if (auto code = add_cost(w, a, true)) return *code;
    if (!a.cache_key.empty()) w.key("cache_key").string(a.cache_key);
    // A --ttl-ms given is sent as given: the server answers 400 for one out of its range.
    if (op == "hold" && a.ttl_ms) w.key("ttl_ms").integer(*a.ttl_ms);
    if (auto code = add_metadata(w, a)) return *code;
  } else {
    r.target = account_path(a.account) + "/holds/" + url_encode(a.hold_id) + "/" + std::string(op);
    if (op == "capture") {
      if (auto code = add_cost(w, a, false)) return *code;
      if (!a.overage.empty()) w.key("overage").string(a.overage);
      if (auto code = add_metadata(w, a)) return *code;
    }
  }
  w.end_object();
  if (op == "hold") {
    return call(c.conn, r, [](Element h) {
      if (field(h, "cached") == "true") {
        std::cout << fmt::format("cache hit: no hold needed, saved {} credits\n",
                                 field(h, "saved"));
        return;
      }
      std::cout << fmt::format("hold {}: {} credits until {}, available after {}\n",
                               field(h, "hold_id"), field(h, "amount"), field(h, "expires_at"),
                               field(h, "available_after"));
      print_drawn(h);
    });
  }
  if (op == "void") {
    return call(c.conn, r, [](Element v) {
      std::cout << fmt::format("hold {} voided: {} credits released\n", field(v, "hold_id"),
                               field(v, "released"));
    });
  }
  return call(c.conn, r, print_charge);
}

int usage(const OnlineCommands& c) {
  const OnlineArgs& a = c.args;
  Request r;
  r.target = account_path(a.account) + "/usage" +
             query({{"group_by", a.group_by}, {"from", a.from}, {"to", a.to}, {"pool", a.pool}});
  return call(c.conn, r, [](Element doc) {
    std::cout << fmt::format("{} to {}: {} credits\n\n", field(doc, "from"), field(doc, "to"),
                             field(doc, "total"));
    std::vector<std::vector<std::string>> rows;
    for (const JsonNode& row : doc["rows"].elements())
      rows.push_back(
          {field(row, "key"), field(row, "credits"), field(row, "count"), percent(row, "share")});
    print_table({"<key", "credits", "count", "share"}, rows);
  });
}

int hot_files(const OnlineCommands& c) {
  const OnlineArgs& a = c.args;
  Request r;
  r.target = account_path(a.account) + "/hot-files" +
             query({{"limit", limit_text(a.limit)},
                    {"order_by", a.order_by},
                    {"from", a.from},
                    {"to", a.to},
                    {"pool", a.pool}});
  return call(c.conn, r, [](Element doc) {
    std::vector<std::vector<std::string>> rows;
    for (const JsonNode& row : doc["rows"].elements())
      rows.push_back({field(row, "file"), field(row, "turns"), field(row, "credits")});
    print_table({"<file", "turns", "credits"}, rows);
  });
}

int burn(const OnlineCommands& c) {
  Request r;
  r.target = account_path(c.args.account) + "/burn" + query({{"pool", c.args.pool}});
  return call(c.conn, r, [](Element doc) {
    std::vector<std::vector<std::string>> rows;
    for (const JsonNode& d : doc["days"].elements())
      rows.push_back({field(d, "date"), field(d, "credits")});
    print_table({"<date", "credits"}, rows);
    std::cout << fmt::format("\ntoday {}, trailing mean {}, ratio {}, spike {}\n",
                             field(doc, "today"), field(doc, "trailing_mean"), field(doc, "ratio"),
                             field(doc, "spike") == "true" ? "yes" : "no");
    std::cout << "projected exhaustion: " << field(doc, "projected_exhaustion") << "\n";
  });
}

int forecast(const OnlineCommands& c) {
  const OnlineArgs& a = c.args;
  Request r;
  r.target = account_path(a.account) + "/forecast" +
             query({{"hourly_rate", a.hourly_rate},
                    {"break_even_hours", a.break_even_hours},
                    {"pool", a.pool}});
  return call(c.conn, r, [](Element doc) {
    std::cout << fmt::format("used {} of {} (+{} extra): utilization {}\n", field(doc, "used"),
                             field(doc, "allowance"), field(doc, "extra"),
                             percent(doc, "utilization"));
    std::cout << fmt::format("need per cycle {}; runs out at {}\n", field(doc, "need"),
                             field(doc, "runs_out_at"));
    const JsonNode& x = doc["advice"];
    if (x.is_object()) {
      std::cout << fmt::format("advice: {} {} (price delta {} USD, {} engineering hours)\n",
                               field(x, "action"), field(x, "plan"), field(x, "price_delta_usd"),
                               field(x, "engineering_hours"));
      std::cout << "  " << field(x, "reason") << "\n";
    }
  });
}

int loops(const OnlineCommands& c) {
  const OnlineArgs& a = c.args;
  Request r;
  r.target = account_path(a.account) + "/regression-loops" +
             query({{"from", a.from}, {"to", a.to}, {"pool", a.pool}});
  return call(c.conn, r, [](Element doc) {
    std::vector<std::vector<std::string>> rows;
    for (const JsonNode& l : doc["loops"].elements())
      rows.push_back({field(l, "file"), field(l, "feature"), field(l, "turns"), field(l, "credits"),
                      field(l, "waste"), field(l, "first_at"), field(l, "revert_to_snapshot")});
    print_table({"<file", "<feature", "turns", "credits", "waste", "<first_at", "<revert_to"},
                rows);
  });
}

int alerts(const OnlineCommands& c) {
  Request r;
  r.target = account_path(c.args.account) + "/alerts" + query({{"pool", c.args.pool}});
  return call(c.conn, r, [](Element doc) {
    std::vector<std::vector<std::string>> rows;
    for (const JsonNode& al : doc["alerts"].elements())
      rows.push_back({field(al, "at"), field(al, "rule"), field(al, "message")});
    print_table({"<at", "<rule", "<message"}, rows);
  });
}

// ---- registration ---------------------------------------------------------------------

void account_arg(CLI::App* cmd, OnlineArgs& a) {
  cmd->add_option("account", a.account, "Account id")->required();
}

void cost_options(CLI::App* cmd, OnlineArgs& a) {
  cmd->add_option("--amount", a.amount, "Credits, exact to 0.001 (instead of pricing usage)");
  cmd->add_option("--usage", a.usage,
                  "Usage dimensions, name=value,... (e.g. model=gpt-4o,input_tokens=900)");
}

void range_options(CLI::App* cmd, OnlineArgs& a) {
  cmd->add_option("--from", a.from, "Start of the range (RFC 3339)");
  cmd->add_option("--to", a.to, "End of the range, exclusive (RFC 3339)");
  cmd->add_option("--pool", a.pool, "Pool (default: the plan's first)");
}

}  // namespace

void add_online_commands(CLI::App& app, OnlineCommands& c) {
  Connection& conn = c.conn;
  OnlineArgs& a = c.args;
  app.add_option("--url", conn.url, "creditd base URL")->capture_default_str();
  app.add_option("--key", conn.key, "API key (Bearer; default $CREDITD_KEY, after --key-file)");
  app.add_option("--key-file", conn.key_file,
                 "Read the API key from this file's first line (beats $CREDITD_KEY)");
  app.add_option("--timeout", conn.timeout_s, "Seconds to wait for the server")
      ->transform(decimal<std::int64_t>(1, kTimeoutSecondsMax))
      ->capture_default_str();
  app.add_flag("--json", conn.json, "JSON instead of a table (the same as --format json)");
  app.add_option("--format", conn.format,
                 "table | json on every command (audit: json | md | html, its own --format)")
      ->check(CLI::IsMember({"table", "json", "md", "html"}));
  app.footer(kExitCodesHelp);

  c.accounts = app.add_subcommand("accounts", "List, show or create accounts");
  c.accounts->require_subcommand(1);
  c.accounts_list = c.accounts->add_subcommand("list", "List accounts (service key)");
  c.accounts_list->add_option("--limit", a.limit, "At most this many (1-1000)")
      ->transform(decimal<std::int64_t>());
  c.accounts_list->add_option("--after", a.after, "The cursor of the previous page");
  c.accounts_get = c.accounts->add_subcommand("get", "Show one account");
  account_arg(c.accounts_get, a);
  c.accounts_create = c.accounts->add_subcommand("create", "Create an account (admin key)");
  account_arg(c.accounts_create, a);
  c.accounts_create->add_option("--plan", a.plan, "Plan id")->required();
  c.accounts_create->add_option("--signup-at", a.signup_at, "Signup instant (RFC 3339)");
  c.accounts_create->add_option("--key-id", a.key_id, "Idempotency key (default: a new one)");

  c.balance = app.add_subcommand("balance", "The pools of an account");
  account_arg(c.balance, a);

  auto metering_cmd = [&](const char* name, const char* help) {
    CLI::App* cmd = app.add_subcommand(name, help);
    account_arg(cmd, a);
    cmd->add_option("--key-id", a.key_id,
                    "Idempotency key (default: a new one; reuse it to retry safely)");
    return cmd;
  };
  c.charge = metering_cmd("charge", "Charge an operation");
  c.charge->add_option("--kind", a.kind, "Operation kind (agent_prompt, ...)")->required();
  c.charge->add_option("--user", a.user, "User id")->required();
  cost_options(c.charge, a);
  c.charge->add_option("--cache-key", a.cache_key, "Integration cache key");
  c.charge->add_option("--meta", a.metadata, "Metadata, name=value,... (file, feature, ...)");
  c.hold = metering_cmd("hold", "Reserve credits for an operation");
  c.hold->add_option("--kind", a.kind, "Operation kind")->required();
  c.hold->add_option("--user", a.user, "User id")->required();
  cost_options(c.hold, a);
  c.hold->add_option("--ttl-ms", a.ttl_ms, "Hold lifetime in ms (1 to 3,600,000)")
      ->transform(decimal<std::int64_t>());
  c.hold->add_option("--cache-key", a.cache_key, "Integration cache key");
  c.hold->add_option("--meta", a.metadata, "Metadata, name=value,...");
  c.capture = metering_cmd("capture", "Capture a hold (all of it, an amount or a usage)");
  c.capture->add_option("hold_id", a.hold_id, "Hold id")->required();
  cost_options(c.capture, a);
  c.capture->add_option("--overage", a.overage, "refuse | charge")
      ->check(CLI::IsMember({"refuse", "charge"}));
  c.capture->add_option("--meta", a.metadata, "Metadata, name=value,...");
  c.void_hold = metering_cmd("void", "Release a hold");
  c.void_hold->add_option("hold_id", a.hold_id, "Hold id")->required();

  c.usage = app.add_subcommand("usage", "Credits by kind, user, file, feature, ...");
  account_arg(c.usage, a);
  c.usage
      ->add_option("--group-by", a.group_by,
                   "kind | user | file | feature | model | call_site | day | week")
      ->capture_default_str();
  range_options(c.usage, a);
  c.hot_files = app.add_subcommand("hot-files", "The files with the most agent turns");
  account_arg(c.hot_files, a);
  c.hot_files->add_option("--limit", a.limit, "How many files (1-1000, default 5)")
      ->transform(decimal<std::int64_t>());
  c.hot_files->add_option("--order-by", a.order_by, "turns | credits");
  range_options(c.hot_files, a);
  c.burn = app.add_subcommand("burn", "Daily burn, trailing mean and spike");
  account_arg(c.burn, a);
  c.burn->add_option("--pool", a.pool, "Pool (default: the plan's first)");
  c.forecast = app.add_subcommand("forecast", "When the credits run out, and plan advice");
  account_arg(c.forecast, a);
  c.forecast->add_option("--hourly-rate", a.hourly_rate, "USD per engineering hour (100)");
  c.forecast->add_option("--break-even-hours", a.break_even_hours, "Hours (8)");
  c.forecast->add_option("--pool", a.pool, "Pool (default: the plan's first)");
  c.loops = app.add_subcommand("loops", "Regression loops (agent turns fixing the same file)");
  account_arg(c.loops, a);
  range_options(c.loops, a);
  c.alerts = app.add_subcommand("alerts", "Alerts of an account");
  account_arg(c.alerts, a);
  c.alerts->add_option("--pool", a.pool, "Pool (default: the plan's first)");
}

std::optional<int> run_online_command(const OnlineCommands& c) {
  auto parsed = [](const CLI::App* cmd) { return cmd != nullptr && cmd->parsed(); };
  if (parsed(c.accounts_list)) return accounts_list(c);
  if (parsed(c.accounts_get)) return accounts_get(c);
  if (parsed(c.accounts_create)) return accounts_create(c);
  if (parsed(c.balance)) return accounts_get(c);
  if (parsed(c.charge)) return metering(c, "charge");
  if (parsed(c.hold)) return metering(c, "hold");
  if (parsed(c.capture)) return metering(c, "capture");
  if (parsed(c.void_hold)) return metering(c, "void");
  if (parsed(c.usage)) return usage(c);
  if (parsed(c.hot_files)) return hot_files(c);
  if (parsed(c.burn)) return burn(c);
  if (parsed(c.forecast)) return forecast(c);
  if (parsed(c.loops)) return loops(c);
  if (parsed(c.alerts)) return alerts(c);
  return std::nullopt;
}

bool audit_is_online(const AuditArgs& args) {
  if (args.online) return true;
  const std::string& f = args.file;
  if (f == "-" || f.find('/') != std::string::npos) return false;
  for (std::string_view ext : {".ndjson", ".jsonl", ".json"}) {
    if (f.size() > ext.size() && f.ends_with(ext)) return false;
  }
  // A directory of that name (an account called `docs`, run from the repository) is no
  // file to audit.
  struct stat st {};
  return ::stat(f.c_str(), &st) != 0 || !S_ISREG(st.st_mode);
}

int run_online_audit(const Connection& conn, const AuditArgs& args) {
  const std::string format = args.json ? "json" : args.format;
  Request r;
  r.target = account_path(args.file) + "/audit" +
             query({{"format", format}, {"from", args.from}, {"to", args.to}, {"pool", args.pool}});
  HttpAnswer a;
  if (auto code = exchange(conn, r, a)) return *code;
  if (a.status < 200 || a.status >= 300) {
    if (conn.json || format == "json") print_json_body(a.body);
    return explain_error(a, r);
  }
  // The report is written as the server rendered it, in every format.
  if (args.out == "-" || args.out.empty()) {
    std::cout << a.body;
    return std::cout.flush() ? kExitOk : kExitUsage;
  }
  std::ofstream f(args.out, std::ios::binary | std::ios::trunc);
  f << a.body;
  f.close();
  if (!f) return usage_error("cannot write " + args.out);
  return kExitOk;
}

}  // namespace credit::cli
