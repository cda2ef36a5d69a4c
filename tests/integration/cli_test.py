"""creditctl against a live creditd: exit codes and --json output of the online
subcommands, and the audit route (GET /v1/accounts/{id}/audit) in its three formats,
its JSON compared with `creditctl audit --format json` over the same events exported
with GET .../events.

    python3 tests/integration/cli_test.py --creditd BUILD/creditd [--creditctl BUILD/creditctl] [-v]
"""
import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


CTL = h.creditctl_path()
SRV = h.start(manual_clock=True)
ADMIN = SRV.client()
URL = f"http://127.0.0.1:{SRV.port}"
TMP = tempfile.mkdtemp(prefix="creditctl-it-")
h._tmpdirs.append(TMP)


def ctl(*args, key="__admin__", url=URL, env_key=None, stdin=None):
    """Runs creditctl; returns (exit code, stdout, stderr)."""
    cmd = [CTL, "--url", url]
    if key == "__admin__":
        key = SRV.admin_key
    if key is not None:
        cmd += ["--key", key]
    cmd += list(args)
    env = {k: v for k, v in os.environ.items() if k != "CREDITD_KEY"}
    if env_key is not None:
        env["CREDITD_KEY"] = env_key
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, input=stdin, cwd=ROOT,
                       timeout=120)
    if h.VERBOSE:
        print("$ " + " ".join(cmd[3:]) + f"  -> {p.returncode}")
    return p.returncode, p.stdout, p.stderr


def eqd(name, actual, expected, detail):
    return h.check(name, actual == expected, f"expected {expected!r}, got {actual!r}; {h._short(detail)}")


def loads(text):
    return json.loads(text, parse_float=h.D)


# ----------------------------------------------------------------------------- setup

START = "2026-03-01T00:00:00Z"
ADMIN.set_clock(START)
ACCT = ADMIN.create_account("acme", plan="starter")
OTHER = ADMIN.create_account("other", plan="starter")


def test_exit_codes():
    free = h.free_port()
    rc, out, err = ctl("balance", ACCT, url=f"http://127.0.0.1:{free}")
    h.eq("unreachable server exits 4", rc, 4)
    h.check("unreachable server: the message names the URL", f"127.0.0.1:{free}" in err, err)

    rc, out, err = ctl("balance", ACCT, key="not-a-key")
    h.eq("bad key exits 5", rc, 5)
    h.check("bad key: the message says so", "key" in err, err)
    read_other = ADMIN.create_key(OTHER, role="read")
    rc, out, err = ctl("balance", ACCT, key=read_other)
    h.eq("a key of another account exits 5 (403 forbidden)", rc, 5)

    rc, out, err = ctl("balance", ACCT, key=None, env_key=SRV.admin_key)
    h.eq("the key from CREDITD_KEY works", rc, 0)
    key_file = os.path.join(TMP, "admin.key")
    with open(key_file, "w") as f:
        f.write(SRV.admin_key + "\n")
    rc, out, err = ctl("balance", ACCT, "--key-file", key_file, key=None)
    h.eq("the key from --key-file works", rc, 0)
    rc, out, err = ctl("balance", ACCT, "--key-file", os.path.join(TMP, "missing"), key=None)
    h.eq("an unreadable --key-file exits 3", rc, 3)
    rc, out, err = ctl("balance", ACCT, key=None)
    h.eq("no key at all exits 2", rc, 2)

    rc, out, err = ctl("charge", ACCT, "--user", "u1", "--amount", "1")
    h.eq("a missing --kind exits 2", rc, 2)
    rc, out, err = ctl("charge", ACCT, "--kind", "backend_function", "--user", "u1")
    h.eq("neither --amount nor --usage exits 2", rc, 2)
    rc, out, err = ctl("charge", ACCT, "--kind", "backend_function", "--user", "u1", "--amount", "1.0001")
    h.eq("an amount finer than 0.001 exits 2", rc, 2)

    rc, out, err = ctl("balance", "nobody")
    h.eq("an unknown account exits 1 (404)", rc, 1)
    h.check("404: the message has the code", "account_not_found" in err, err)

    rc, out, err = ctl("charge", ACCT, "--kind", "backend_function", "--user", "u1", "--amount", "5000")
    h.eq("402 exits 6", rc, 6)
    for word in ("required 5000", "available 2000", "pool", "upgrade to"):
        h.check(f"402 message shows '{word}'", word in err, err)
    rc, out, err = ctl("--json", "charge", ACCT, "--kind", "backend_function", "--user", "u1",
                       "--amount", "5000")
    h.eq("402 with --json exits 6", rc, 6)
    h.eq("402 with --json prints the error body", loads(out)["error"]["code"], "insufficient_credits")

    r = ADMIN.put(f"/v1/accounts/{OTHER}/rate-limits", {"per_user": {"per_minute": 1, "burst": 1}})
    eqd("rate limits set", r.status, 200, r)
    args = ("charge", OTHER, "--kind", "agent_prompt", "--user", "rl", "--amount", "1")
    rc1, _, err1 = ctl(*args)
    rc2, out, err = ctl(*args)
    h.eq("the first charge under the limit exits 0", rc1, 0)
    h.eq("429 exits 7", rc2, 7)
    h.check("429 message says when to retry", "retry after" in err, err)


def test_json_output():
    idem = "cli-charge-1"
    rc, out, err = ctl("--json", "charge", ACCT, "--kind", "agent_prompt", "--user", "dana",
                       "--usage", "model=default,input_tokens=10000,output_tokens=2200,files_read=5,"
                       "lines_emitted=200,lines_changed=6", "--meta", "file=src/App.jsx,intent=fix",
                       "--key-id", idem)
    eqd("charge exits 0", rc, 0, err)
    doc = loads(out)
    h.check("charge --json: the cost of the reference prompt", h.num_eq(doc["cost"], h.AGENT_PROMPT_COST), doc)
    rc, out2, err = ctl("--json", "charge", ACCT, "--kind", "agent_prompt", "--user", "dana",
                        "--usage", "model=default,input_tokens=10000,output_tokens=2200,files_read=5,"
                        "lines_emitted=200,lines_changed=6", "--meta", "file=src/App.jsx,intent=fix",
                        "--key-id", idem)
    h.eq("the same --key-id replays the charge", loads(out2)["charge_id"], doc["charge_id"])

    rc, out, err = ctl("--json", "balance", ACCT)
    h.eq("balance exits 0", rc, 0)
    h.eq("balance --json equals GET /v1/accounts/{id}", loads(out), ADMIN.get(f"/v1/accounts/{ACCT}").doc)
    rc, out, err = ctl("accounts", "get", ACCT, "--json")
    h.eq("--json after the subcommand works too", loads(out), ADMIN.get(f"/v1/accounts/{ACCT}").doc)
    rc, out, err = ctl("--json", "usage", ACCT, "--group-by", "kind")
    h.eq("usage --json equals GET usage", loads(out),
         ADMIN.get(f"/v1/accounts/{ACCT}/usage?group_by=kind").doc)
    rc, out, err = ctl("--json", "accounts", "list")
    h.eq("accounts list --json equals GET /v1/accounts", loads(out), ADMIN.get("/v1/accounts").doc)
    for cmd, path in (("hot-files", "hot-files"), ("burn", "burn"), ("forecast", "forecast"),
                      ("loops", "regression-loops"), ("alerts", "alerts")):
        rc, out, err = ctl("--json", cmd, ACCT)
        eqd(f"{cmd} exits 0", rc, 0, err)
        h.eq(f"{cmd} --json equals GET {path}", loads(out), ADMIN.get(f"/v1/accounts/{ACCT}/{path}").doc)

    rc, out, err = ctl("balance", ACCT)
    h.check("balance prints a table", rc == 0 and "available" in out and "credits" in out, out)
    rc, out, err = ctl("--json", "hold", ACCT, "--kind", "agent_prompt", "--user", "dana", "--amount", "3")
    eqd("hold exits 0", rc, 0, err)
    hold = loads(out)["hold_id"]
    rc, out, err = ctl("--json", "capture", ACCT, hold, "--amount", "2")
    eqd("capture exits 0", rc, 0, err)
    h.check("capture charged 2", h.num_eq(loads(out)["cost"], 2), out)
    rc, out, err = ctl("void", ACCT, hold)
    h.eq("void of a captured hold exits 1 (409 hold_not_open)", rc, 1)
    h.check("409 message names the code", "hold_not_open" in err, err)
    rc, out, err = ctl("accounts", "create", "cli-made", "--plan", "free")
    eqd("accounts create exits 0", rc, 0, err)
    rc, out, err = ctl("accounts", "create", "cli-made", "--plan", "free")
    h.eq("creating it again exits 1 (409 account_exists)", rc, 1)


# ----------------------------------------------------------------------------- audit

SIM = "simmo"


def export_events(acct, frm, to):
    lines, after = [], None
    while True:
        q = f"/v1/accounts/{acct}/events?format=ndjson&limit=1000&from={frm}&to={to}"
        if after:
            q += f"&after={after}"
        r = ADMIN.get(q)
        if r.status != 200:
            raise AssertionError(f"export: {r}")
        lines += [l for l in r.text.split("\n") if l]
        after = r.headers.get("creditd-next-cursor")
        if not after:
            return lines


def test_audit_route():
    sim = os.path.join(TMP, "month.ndjson")
    rc, _, err = ctl("simulate", "--profile", "typical", "--days", "30", "--start", START,
                     "--plan", "pro", "--out", sim, key=None)
    eqd("simulate exits 0", rc, 0, err)
    # --json: the summary as one JSON object (on standard error; the events are NDJSON).
    rc, out, err = ctl("--json", "simulate", "--profile", "clean", "--days", "1", "--start", START,
                       "--seed", "18446744073709551615", "--out", os.path.join(TMP, "day.ndjson"), key=None)
    with open(os.path.join(TMP, "day.ndjson")) as f:
        events = sum(1 for _ in f)
    summary = json.loads(err.strip().splitlines()[-1]) if err.strip() else {}
    eqd("simulate --json: a JSON summary that counts the events written",
        (rc, out, summary.get("events"), summary.get("profile"), summary.get("days"), summary.get("seed")),
        (0, "", events, "clean", 1, 18446744073709551615), err)
    ADMIN.create_account(SIM, plan="pro")
    lines = h.charge_lines(sim, SIM)
    # The month is applied before the clock passes its end: a clock move sweeps what it
    # made due (the 04-01 resets), and lines before a logged instant are out of order.
    ADMIN.set_clock("2026-03-31T23:59:59Z")
    r = ADMIN.post("/v1/admin/import?mode=apply", raw="\n".join(lines) + "\n")
    eqd("the month imports", (r.status, r.get("rejected")), (200, 0), r)
    ADMIN.set_clock("2026-04-02T00:00:00Z")

    r = ADMIN.get(f"/v1/accounts/{SIM}/audit")
    eqd("audit: 200", r.status, 200, r)
    h.check("audit: JSON by default", r.headers.get("content-type", "").startswith("application/json"), r.headers)
    route = r.doc
    h.check("audit: the default range is the last full cycle (March)",
            str(route.get("from", "")).startswith("2026-03-01") and str(route.get("to", "")) <= "2026-04-01T00:00:00Z",
            (route.get("from"), route.get("to")))
    exported = export_events(SIM, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")
    path = os.path.join(TMP, "exported.ndjson")
    with open(path, "w") as f:
        f.write("\n".join(exported) + "\n")
    # The same range (March, the last full cycle: 31 days, which per-cycle figures scale to).
    rc, out, err = ctl("audit", path, "--format", "json", "--plan", "pro", "--from", "2026-03-01T00:00:00Z",
                       "--to", "2026-04-01T00:00:00Z", "--cycle-days", "31", key=None)
    eqd("offline audit of the export exits 0", rc, 0, err)
    offline = loads(out)
    h.check("audit: events were audited", route.get("events", 0) >= len(lines), route.get("events"))
    h.eq("audit JSON of the route equals creditctl audit of the exported events", route, offline)
    r2 = ADMIN.get(f"/v1/accounts/{SIM}/audit?from=2026-03-01T00:00:00Z&to=2026-04-01T00:00:00Z")
    h.eq("audit: an explicit range of the same cycle gives the same report", r2.doc, route)
    # A range off the hour snaps (from down, to up) on the route and offline alike.
    frm, to = "2026-03-05T10:30:00Z", "2026-03-09T14:10:00Z"
    r3 = ADMIN.get(f"/v1/accounts/{SIM}/audit?from={frm}&to={to}")
    eqd("audit: a range off the hour snaps to the hour",
        (r3.status, r3.get("from"), r3.get("to")), (200, "2026-03-05T10:00:00Z", "2026-03-09T15:00:00Z"), r3)
    rc, out, err = ctl("audit", path, "--format", "json", "--plan", "pro", "--from", frm, "--to", to,
                       "--cycle-days", "31", key=None)
    eqd("offline audit of a range off the hour exits 0", rc, 0, err)
    h.eq("audit JSON of the route equals creditctl audit's for a range off the hour", loads(out), r3.doc)
    rc, out, err = ctl("audit", path, "--format", "json", "--from", "2026-03-05T10:40:00Z",
                       "--to", "2026-03-05T10:10:00Z", key=None)
    h.eq("offline audit: --to before --from (within one hour) is a usage error", rc, 2)

    rc, out, err = ctl("audit", SIM, "--json")
    eqd("creditctl audit ACCOUNT (online) exits 0", rc, 0, err)
    h.eq("creditctl audit ACCOUNT --json equals the route", loads(out), route)

    r = ADMIN.get(f"/v1/accounts/{SIM}/audit?format=md")
    h.eq("audit md: 200", r.status, 200)
    h.eq("audit md: content type", r.headers.get("content-type"), "text/markdown; charset=utf-8")
    h.check("audit md: a Markdown report", r.text.startswith("# Credit audit: " + SIM), r.text[:200])
    rc, out, err = ctl("audit", SIM, "--format", "md")
    h.eq("creditctl audit ACCOUNT --format md prints the route's Markdown", out, r.text)

    r = ADMIN.get(f"/v1/accounts/{SIM}/audit?format=html")
    h.eq("audit html: 200", r.status, 200)
    h.eq("audit html: content type", r.headers.get("content-type"), "text/html; charset=utf-8")
    csp = r.headers.get("content-security-policy", "")
    h.check("audit html: a strict CSP", csp.startswith("default-src 'none'"), csp)
    low = r.text.lower()
    h.check("audit html: no script, no style, no external resource",
            "<script" not in low and "style=" not in low and "<style" not in low
            and "http://" not in low.replace("http://www.w3.org/2000/svg", ""), r.text[:300])
    h.check("audit html: inline SVG charts", "<svg" in low)

    r = ADMIN.get("/v1/accounts/nobody/audit")
    h.check("audit: 404 unknown account", h.is_error(r, 404, "account_not_found"), r)
    r = ADMIN.get(f"/v1/accounts/{SIM}/audit?format=pdf")
    h.check("audit: 400 bad format", h.is_error(r, 400, "invalid_request") and r.err.get("param") == "format", r)
    r = ADMIN.get(f"/v1/accounts/{SIM}/audit?from=yesterday")
    h.check("audit: 400 bad from", h.is_error(r, 400, "invalid_request") and r.err.get("param") == "from", r)
    r = ADMIN.get(f"/v1/accounts/{SIM}/audit?from=2026-03-10T00:00:00Z&to=2026-03-01T00:00:00Z")
    h.check("audit: 400 to before from", h.is_error(r, 400, "invalid_request"), r)
    other = ADMIN.create_key(OTHER, role="read")
    r = ADMIN.with_key(other).get(f"/v1/accounts/{SIM}/audit")
    h.check("audit: 403 for another account's key", h.is_error(r, 403, "forbidden"), r)
    own = ADMIN.create_key(SIM, role="read")
    r = ADMIN.with_key(own).get(f"/v1/accounts/{SIM}/audit")
    h.eq("audit: the account's read key may read it", r.doc, route)
    rc, out, err = ctl("audit", "nobody", "--online")
    h.eq("creditctl audit of an unknown account exits 1", rc, 1)

    # The current cycle when there is no full one: acme was created on March 1 too, but
    # an account created now has only its current cycle.
    ADMIN.create_account("fresh", plan="starter")
    r = ADMIN.get("/v1/accounts/fresh/audit")
    eqd("audit of an account without a full cycle: 200", r.status, 200, r)


def write_lines(name, lines):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def test_audit_in_any_line_order():
    """The same events in any line order give the same audit and replay, offline as on the
    server (whose audit reads an account's events in time order): a shuffled file is
    read again in time order."""
    sim = os.path.join(TMP, "order-month.ndjson")
    rc, _, err = ctl("simulate", "--profile", "typical", "--days", "30", "--seed", "7", "--start", START,
                     "--out", sim, key=None)
    eqd("simulate exits 0", rc, 0, err)
    lines = h.charge_lines(sim, "any-order")
    shuffled = lines[:]
    random.Random(7).shuffle(shuffled)
    in_order = write_lines("in-order.ndjson", lines)
    out_of_order = write_lines("shuffled.ndjson", shuffled)
    # A free account signed up on March 1: its cycle is March (31 days), as --cycle-days says.
    ADMIN.create_account("any-order", plan="free", signup_at=START)
    r = ADMIN.post("/v1/admin/import?mode=analytics", raw="\n".join(shuffled) + "\n")
    eqd("the shuffled month imports", (r.status, r.get("imported"), r.get("rejected")),
        (200, len(lines), 0), r)
    r = ADMIN.get("/v1/accounts/any-order/audit?from=2026-03-01T00:00:00Z&to=2026-04-01T00:00:00Z")
    eqd("audit route of the shuffled import: 200", r.status, 200, r)
    route = r.doc
    h.check("the month has loops and repeats to get right",
            route["regression_loops"]["loops"] and route["repeated_calls"]["paid_repeats"] > 0,
            route["regression_loops"])
    args = ["--format", "json", "--plan", "free", "--from", "2026-03-01T00:00:00Z", "--to",
            "2026-04-01T00:00:00Z", "--cycle-days", "31"]
    rc, sorted_out, err = ctl("audit", in_order, *args, key=None)
    eqd("offline audit of the file in order exits 0", rc, 0, err)
    rc, shuffled_out, err = ctl("audit", out_of_order, *args, key=None)
    eqd("offline audit of the shuffled file exits 0", rc, 0, err)
    h.eq("offline audit: the shuffled file gives the report of the file in order", shuffled_out, sorted_out)
    h.eq("offline audit of the shuffled file equals the route's audit of the same events",
         loads(shuffled_out), route)
    rc, stdin_out, err = ctl("audit", "-", *args, key=None, stdin="\n".join(shuffled) + "\n")
    h.eq("offline audit of the shuffled events on standard input: the same report", (rc, stdin_out),
         (0, sorted_out))
    policies = ["--policy", "cache", "--policy", "revert-loops", "--policy", "rate-limit", "--json"]
    rc, replay_sorted, err = ctl("replay", in_order, *policies, key=None)
    eqd("replay of the file in order exits 0", rc, 0, err)
    rc, replay_shuffled, err = ctl("replay", out_of_order, *policies, key=None)
    h.eq("replay: the shuffled file gives the replay of the file in order", (rc, replay_shuffled),
         (0, replay_sorted))
    rc, replay_stdin, err = ctl("replay", "-", *policies, key=None, stdin="\n".join(shuffled) + "\n")
    h.eq("replay of the shuffled events on standard input: the same", (rc, replay_stdin), (0, replay_sorted))
    # The server's audit reads an account's events in time order too, not in the order
    # they were numbered: here every other event of the month is imported first, the rest
    # after (each import is numbered in time order, the two together are not).
    ADMIN.create_account("two-imports", plan="free", signup_at=START)
    halves = h.charge_lines(sim, "two-imports")
    for part in (halves[1::2], halves[0::2]):
        r = ADMIN.post("/v1/admin/import?mode=analytics", raw="\n".join(part) + "\n")
        eqd("half the month imports", (r.status, r.get("rejected")), (200, 0), r)
    r = ADMIN.get("/v1/accounts/two-imports/audit?from=2026-03-01T00:00:00Z&to=2026-04-01T00:00:00Z")
    route_two = dict(r.doc or {}, account_id="any-order")
    h.eq("audit route of a month imported as two interleaved halves: the report of the month in order",
         route_two, loads(sorted_out))
    # A bad line in a shuffled file is reported once, by its line number, and skipped.
    bad = shuffled[:10] + ["{not json"] + shuffled[10:]
    path = write_lines("shuffled-bad.ndjson", bad)
    rc, out, err = ctl("audit", path, *args, key=None)
    h.eq("a bad line in a shuffled file: exit 3, the report of the good lines", (rc, out), (3, sorted_out))
    h.eq("the bad line is reported once, with its number", err.count(":11: "), 1)


def test_two_simulated_periods_import_into_one_account():
    """simulate's idempotency keys are unique per profile, seed and start: periods simulated
    with other flags import into one account (an import refuses a key the account has)."""
    ADMIN.create_account("periods", plan="pro")
    for profile, seed, start in (("typical", 5, "2026-03-02T00:00:00Z"), ("typical", 6, "2026-03-05T00:00:00Z"),
                                 ("typical", 5, "2026-03-08T00:00:00Z"), ("discuss-heavy", 5, "2026-03-02T00:00:00Z")):
        sim = os.path.join(TMP, f"period-{profile}-{seed}-{start[:10]}.ndjson")
        rc, _, err = ctl("simulate", "--profile", profile, "--days", "3", "--seed", str(seed), "--start", start,
                         "--out", sim, key=None)
        eqd("simulate exits 0", rc, 0, err)
        lines = h.charge_lines(sim, "periods")
        with open(sim) as f:
            first = json.loads(f.readline())
        h.eq(f"simulate {profile} {seed} {start[:10]}: the key names profile, seed, start day and account",
             first["idempotency_key"].rsplit("-", 1)[0],
             f"sim-{profile}-{seed}-{start[:10].replace('-', '')}-acct-001")
        r = ADMIN.post("/v1/admin/import?mode=analytics", raw="\n".join(lines) + "\n")
        eqd(f"the period {profile} {seed} {start[:10]} imports whole into the same account",
            (r.status, r.get("imported"), r.get("rejected")), (200, len(lines), 0), r)
    r = ADMIN.post("/v1/admin/import?mode=analytics", raw="\n".join(lines) + "\n")
    eqd("the same period again is refused line by line (duplicates)",
        (r.status, r.get("imported"), r.get("rejected")), (200, 0, len(lines)), r)


def test_audit_example_is_current():
    """docs/audit-example.md and .html are what their own commands print today."""
    month = os.path.join(TMP, "typical-month.ndjson")
    rc, _, err = ctl("simulate", "--profile", "typical", "--days", "30", "--seed", "7",
                     "--start", "2026-03-02T00:00:00Z", "--plan", "pro", "--out", month, key=None)
    eqd("simulate exits 0", rc, 0, err)
    rc, md, err = ctl("audit", month, "--plan", "pro", "--format", "md", key=None)
    eqd("audit md exits 0", rc, 0, err)
    html_path = os.path.join(TMP, "audit-example.html")
    rc, _, err = ctl("audit", month, "--plan", "pro", "--format", "html", "--out", html_path, key=None)
    eqd("audit html exits 0", rc, 0, err)
    with open(os.path.join(ROOT, "docs", "audit-example.md")) as f:
        doc = f.read()
    shifted = "".join("#" + l if l.startswith("#") else l for l in md.splitlines(keepends=True))
    h.check("docs/audit-example.md holds today's report (headings one level down)",
            shifted.strip() in doc, shifted[:300])
    with open(os.path.join(ROOT, "docs", "audit-example.html")) as f, open(html_path) as g:
        h.check("docs/audit-example.html is today's report (regenerate it with the command in the .md)",
                f.read() == g.read(), "differs")


h.run_section(test_exit_codes)
h.run_section(test_audit_example_is_current)
h.run_section(test_json_output)
h.run_section(test_audit_route)
h.run_section(test_audit_in_any_line_order)
h.run_section(test_two_simulated_periods_import_into_one_account)
h.finish()
