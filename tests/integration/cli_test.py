"""creditctl against a live creditd: exit codes and --json output of the online
subcommands, and the audit route (GET /v1/accounts/{id}/audit) in its three formats,
its JSON compared with `creditctl audit --format json` over the same events exported
with GET .../events.

    python3 tests/integration/cli_test.py --creditd BUILD/creditd [--creditctl BUILD/creditctl] [-v]
"""
import datetime
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
    # The command line beats the environment: --key-file over $CREDITD_KEY.
    other_file = os.path.join(TMP, "other.key")
    with open(other_file, "w") as f:
        f.write(read_other + "\n")
    rc, out, err = ctl("balance", ACCT, "--key-file", other_file, key=None, env_key=SRV.admin_key)
    h.eq("--key-file given with CREDITD_KEY set: the file's key is used (another account's: 5)", rc, 5)
    rc, out, err = ctl("balance", ACCT, "--key-file", os.path.join(TMP, "missing"), key=None,
                       env_key=SRV.admin_key)
    h.eq("an unreadable --key-file with CREDITD_KEY set still exits 3", rc, 3)

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


# ----------------------------------------------------------------------------- flags given

def rfc3339_ms(text):
    return int(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def test_numbers_given_are_sent_as_given():
    """A --ttl-ms or --limit given is sent as given, and the server judges its range (400:
    exit 1); one not given sends nothing (the server's default)."""
    hold = ("hold", ACCT, "--kind", "agent_prompt", "--user", "ttl", "--amount", "1")
    for ttl in ("0", "-1", "3600001"):
        rc, out, err = ctl(*hold, "--ttl-ms", ttl)
        h.check(f"hold --ttl-ms {ttl}: sent, the server's 400 on ttl_ms exits 1",
                rc == 1 and "400" in err and "ttl_ms" in err, (rc, out, err))
    rc, out, err = ctl("--json", *hold, "--ttl-ms", "1000")
    eqd("hold --ttl-ms 1000 exits 0", rc, 0, err)
    given = loads(out)
    rc, out, err = ctl("--json", *hold)
    eqd("hold without --ttl-ms exits 0", rc, 0, err)
    default = loads(out)
    h.eq("hold: --ttl-ms 1000 expires 299 s before the default 5 minutes (same clock)",
         rfc3339_ms(default["expires_at"]) - rfc3339_ms(given["expires_at"]), 299_000)
    for doc in (given, default):
        rc, _, err = ctl("void", ACCT, doc["hold_id"])
        eqd("void exits 0", rc, 0, err)

    for args in (("accounts", "list"), ("hot-files", ACCT)):
        for limit in ("0", "-1", "1001"):
            rc, out, err = ctl(*args, "--limit", limit)
            h.check(f"{' '.join(args[:2])} --limit {limit}: sent, the server's 400 on limit exits 1",
                    rc == 1 and "400" in err and "limit" in err, (rc, out, err))
    for i in range(12):
        ADMIN.create_account(f"page-{i:02d}", plan="free")
    rc, out, err = ctl("--json", "accounts", "list", "--limit", "1")
    doc = loads(out) if rc == 0 else {}
    eqd("accounts list --limit 1: one account and a cursor",
        (rc, len(doc.get("accounts", [])), bool(doc.get("next"))), (0, 1, True), err)
    rc, out, err = ctl("--json", "accounts", "list", "--limit", "010")
    doc = loads(out) if rc == 0 else {}
    eqd("accounts list --limit 010: ten accounts (decimal, not octal 8)",
        (rc, len(doc.get("accounts", []))), (0, 10), err)
    rc, out, err = ctl(*hold, "--ttl-ms", "99999999999999999999")
    h.check("hold --ttl-ms past 64 bits: a usage error (exit 2) naming --ttl-ms, not clamped and sent",
            rc == 2 and "--ttl-ms" in err, (rc, err))
    rc, out, err = ctl(*hold, "--ttl-ms", "0x10")
    h.check("hold --ttl-ms 0x10: a usage error (exit 2), not hex 16", rc == 2 and "--ttl-ms" in err, (rc, err))
    rc, out, err = ctl("balance", ACCT, "--timeout", "0x10")
    h.check("--timeout 0x10: a usage error (exit 2)", rc == 2 and "--timeout" in err, (rc, err))
    # A name given twice in --usage or --meta is a usage error, not a JSON object the
    # server refuses (found by an audit: exit 1 with the server's invalid_json).
    for flag, value in (("--usage", "input_tokens=1,input_tokens=2"), ("--meta", "file=a,file=b")):
        rc, out, err = ctl("charge", ACCT, "--kind", "agent_prompt", "--user", "u1", "--amount", "1", flag, value)
        h.check(f"charge {flag} {value}: a usage error (exit 2) naming the name",
                rc == 2 and "given twice" in err, (rc, err))
    # An empty value (an unset shell variable) is refused, not read as the default.
    for args in (("usage", ACCT, "--from", ""), ("usage", ACCT, "--pool", ""),
                 ("accounts", "list", "--after", ""), ("hot-files", ACCT, "--order-by", "")):
        rc, out, err = ctl(*args)
        h.check(f"{' '.join(args[:1] + args[2:3])} '': a usage error (exit 2) naming the flag",
                rc == 2 and args[-2] in err, (rc, err))


def test_usage_numbers_are_json():
    """--usage values in decimal digits are sent as JSON numbers in canonical form (0900 as
    900); any other value as a string."""
    usage = "model=default,input_tokens={},output_tokens=300,files_read=5,lines_emitted=200,lines_changed=6"
    costs = {}
    for tokens in ("900", "0900", "000000000000000000000000900"):
        rc, out, err = ctl("--json", "charge", ACCT, "--kind", "agent_prompt", "--user", "zeros",
                           "--usage", usage.format(tokens))
        eqd(f"charge --usage input_tokens={tokens}: exit 0", rc, 0, err)
        costs[tokens] = loads(out).get("cost") if rc == 0 else None
    h.check("input_tokens 0900 and 000...0900 cost what 900 does", len(set(costs.values())) == 1
            and costs["900"] is not None, costs)
    for value in ("1.5", "-1", "99999999999999999999999"):
        rc, out, err = ctl("--json", "charge", ACCT, "--kind", "agent_prompt", "--user", "zeros",
                           "--usage", usage.format(value))
        doc = loads(out) if out.strip() else {}
        eqd(f"charge --usage input_tokens={value}: the server's invalid_usage (valid JSON sent), exit 1",
            (rc, doc.get("error", {}).get("code"), doc.get("error", {}).get("param")),
            (1, "invalid_usage", "usage.input_tokens"), (out, err))


def test_tables_print_the_servers_numbers_exactly():
    """The tables print every number as the server wrote it, never through a double
    (DESIGN section 1, Money): 9,000,000,009,999.997 credits is 9,000,000,009,999,997
    millicredits, past 2^53, and a double would print it as 9000000009999.996."""
    big = ADMIN.create_account("big", plan="pro")
    for _ in range(10):
        r = ADMIN.post(f"/v1/accounts/{big}/adjustments", {"pool": "credits", "credits": 1000000000000,
                                                           "reason": "big", "idempotency_key": h.key()})
        eqd("an adjustment of 10^12 credits is 201", r.status, 201, r)
    r = ADMIN.charge(big, amount=1000000000000)
    eqd("a charge of 10^12 credits is 201", r.status, 201, r)
    for _ in range(2):
        r = ADMIN.charge(big, amount=h.D("0.001"))
        eqd("a charge of 0.001 is 201", r.status, 201, r)
    want = "9000000009999.997"
    rc, out, err = ctl("charge", big, "--kind", "backend_function", "--user", "u1", "--amount", "0.001")
    eqd("creditctl charge 0.001 exits 0", rc, 0, err)
    h.check(f"charge: the 'available after' line says {want}", f"available after {want}\n" in out, out)
    r = ADMIN.get(f"/v1/accounts/{big}")
    h.check(f"GET account: available {want} in the body", f'"available":{want}' in r.text, r.text)
    rc, out, err = ctl("balance", big)
    eqd("balance exits 0", rc, 0, err)
    row = [line.split() for line in out.splitlines() if line.startswith("credits ")]
    h.eq("balance: the pool row has the server's numbers",
         row and row[0][:6], ["credits", "10000", "10000000000000", "1000000000000.003", "0", want])
    rc, out, err = ctl("accounts", "list", "--limit", "1000")
    eqd("accounts list exits 0", rc, 0, err)
    row = [line.split() for line in out.splitlines() if line.startswith(big + " ")]
    h.eq("accounts list: used and available as the server wrote them",
         row and row[0][-2:], ["1000000000000.003", want])


def test_integer_flags_are_read_exactly():
    """Integer flags are whole numbers in decimal within their range: no wrap of -1 into an
    unsigned flag, no clamp past the type, no octal or hex; a refusal is a usage error."""
    out_file = os.path.join(TMP, "seed.ndjson")
    base = ("--json", "simulate", "--profile", "clean", "--days", "1", "--start", START, "--out", out_file)
    for seed in ("-1", "18446744073709551616", "0x10", "1e3", ""):
        rc, out, err = ctl(*base, "--seed", seed, key=None)
        h.check(f"simulate --seed '{seed}': a usage error (exit 2) whose message names --seed and its range",
                rc == 2 and "--seed" in err and "18446744073709551615" in err, (rc, err))
    for seed, read in (("0", 0), ("18446744073709551615", 18446744073709551615), ("010", 10)):
        rc, out, err = ctl(*base, "--seed", seed, key=None)
        summary = json.loads(err.strip().splitlines()[-1]) if rc == 0 else {}
        eqd(f"simulate --seed {seed}: seed {read}", (rc, summary.get("seed")), (0, read), err)
    rc, out, err = ctl("--json", "simulate", "--profile", "clean", "--days", "010", "--start", START,
                       "--out", out_file, key=None)
    summary = json.loads(err.strip().splitlines()[-1]) if rc == 0 else {}
    eqd("simulate --days 010: ten days (decimal, not octal 8)", (rc, summary.get("days")), (0, 10), err)
    for flag, value in (("--days", "-1"), ("--days", "0"), ("--accounts", "99999999999999999999")):
        rc, out, err = ctl("simulate", "--profile", "clean", "--start", START, "--out", out_file,
                           flag, value, key=None)
        h.check(f"simulate {flag} {value}: a usage error (exit 2) naming {flag}", rc == 2 and flag in err, (rc, err))
    for flag, value in (("--ttl-days", "-1"), ("--per-minute", "0x10"), ("--burst", "99999999999999999999")):
        rc, out, err = ctl("replay", out_file, "--policy", "rate-limit", "--policy", "cache", flag, value, key=None)
        h.check(f"replay {flag} {value}: a usage error (exit 2) naming {flag}", rc == 2 and flag in err, (rc, err))
    # A period with waste, whose per-cycle figures the cycle's length scales.
    rc, _, err = ctl("simulate", "--profile", "typical", "--days", "3", "--seed", "3", "--start", START,
                     "--out", out_file, key=None)
    eqd("simulate exits 0", rc, 0, err)
    audit = ("audit", out_file, "--format", "json")
    rc, eight, err = ctl(*audit, "--cycle-days", "8", key=None)
    rc, ten, err = ctl(*audit, "--cycle-days", "10", key=None)
    eqd("audit --cycle-days 10 exits 0", rc, 0, err)
    rc, out, err = ctl(*audit, "--cycle-days", "010", key=None)
    h.check("audit: per-cycle figures differ for cycles of 8 and 10 days", eight != ten)
    h.eq("audit --cycle-days 010 is 10 days (decimal, not octal 8)", (rc, out), (0, ten))
    rc, out, err = ctl(*audit, "--cycle-days", "-1", key=None)
    h.check("audit --cycle-days -1: a usage error (exit 2)", rc == 2 and "--cycle-days" in err, (rc, err))


def test_simulate_stays_within_9999():
    """Every instant simulate writes reads back (RFC 3339 years 1970..9999): a period past
    9999-12-31 is a usage error, as a start before 1970 is (found by an audit: it wrote
    year-10000 lines that its own audit refused)."""
    out_file = os.path.join(TMP, "y10k.ndjson")
    for start, days in (("9999-12-31T00:00:00Z", "5"), ("9999-12-31T00:00:00Z", "2"), ("9999-12-27T00:00:00Z", "6")):
        rc, out, err = ctl("simulate", "--profile", "clean", "--start", start, "--days", days,
                           "--out", out_file, key=None)
        h.check(f"simulate --start {start} --days {days}: a usage error (exit 2) naming the last start",
                rc == 2 and "9999-12-31" in err and "--start" in err, (rc, err))
    rc, out, err = ctl("simulate", "--profile", "clean", "--start", "9999-12-31T00:00:00Z", "--days", "1",
                       "--out", out_file, key=None)
    eqd("simulate of 9999-12-31 alone exits 0", rc, 0, err)
    rc, out, err = ctl("audit", out_file, "--format", "json", key=None)
    eqd("and its audit reads every line", rc, 0, err)
    doc = loads(out) if rc == 0 else {}
    eqd("and its audit's end is written in four digits (9999-12-31T23:59:59.999Z, not year 10000)",
        doc.get("to"), "9999-12-31T23:59:59.999Z", out[:300])
    rc, out, err = ctl("audit", out_file, "--format", "json", "--to", "9999-12-31T23:30:00Z", key=None)
    doc = loads(out) if rc == 0 else {}
    eqd("audit --to in 9999's last hour: the end snaps to 9999-12-31T23:59:59.999Z",
        (rc, doc.get("to")), (0, "9999-12-31T23:59:59.999Z"), err)
    # The server's reads the same: their `to` reads back as a `to`.
    r = ADMIN.get(f"/v1/accounts/{ACCT}/usage?from=9999-12-31T00:00:00Z&to=9999-12-31T23:00:00.001Z")
    eqd("usage with a `to` in 9999's last hour: 200, to 9999-12-31T23:59:59.999Z",
        (r.status, r.get("to")), (200, "9999-12-31T23:59:59.999Z"), r)
    r = ADMIN.get(f"/v1/accounts/{ACCT}/usage?from=9999-12-31T00:00:00Z&to={r.get('to')}")
    eqd("and that `to` given back: 200", r.status, 200, r)


def test_audit_of_events_without_pool():
    """API.md does not require `pool`: an event without one is of its kind's pool in the
    rate card, as the server's import and replay take it (found by an audit: audit --plan
    of such a file printed "No events." and exited 0)."""
    path = os.path.join(TMP, "nopool.ndjson")
    lines = [{"at": f"2026-03-0{d + 2}T10:00:00Z", "account_id": "np", "user_id": "u", "type": "charge",
              "kind": "agent_prompt", "credits": 200, "idempotency_key": f"np-{d}"} for d in range(3)]
    with open(path, "w") as f:
        f.write("".join(json.dumps(l) + "\n" for l in lines))
    rc, out, err = ctl("audit", path, "--format", "json", "--plan", "starter", key=None)
    doc = loads(out) if rc == 0 else {}
    eqd("audit --plan of events without pool: the credits pool's 3 events, 600 credits",
        (rc, doc.get("pool"), doc.get("events"), doc.get("total")), (0, "credits", 3, 600), err)
    # 200 a day: 6,000 a cycle, need 6,600 > starter's 2,000; pro (10,000) covers it.
    eqd("and its advice", ((doc.get("advice") or {}).get("action"), (doc.get("advice") or {}).get("plan")),
        ("upgrade_now", "pro"), doc.get("advice"))


def test_replay_burst():
    """replay --burst sets the burst of the per-user limit whose rate is --per-minute's, else
    --plan's, else the default (20 a minute)."""
    # One user's agent turns: five in the same millisecond (the burst), then an hour later
    # five a second apart (the rate: 20 a minute refills a token in 3 s, 240 in 0.25 s).
    instants = ["2026-03-01T10:00:00.000Z"] * 5 + [f"2026-03-01T11:00:0{s}.000Z" for s in range(5)]
    path = write_lines("burst.ndjson", [json.dumps(
        {"seq": n + 1, "at": at, "account_id": "acct-001", "user_id": "u1", "type": "charge",
         "kind": "agent_prompt", "pool": "credits", "credits": 1, "idempotency_key": f"burst-{n + 1}"})
        for n, at in enumerate(instants)])

    def dropped(*flags):
        rc, out, err = ctl("replay", path, "--policy", "rate-limit", "--json", *flags, key=None)
        eqd(f"replay {' '.join(flags)} exits 0", rc, 0, err)
        return loads(out)["policies"][0]["events_dropped"] if rc == 0 else None

    h.eq("replay: the default limit (20 a minute, burst 20) drops none", dropped(), 0)
    # Burst 1 at 20 a minute: 4 of the burst, and 3 of the five a second apart (at 1, 2, 4 s).
    h.eq("replay --burst 1: the default rate with a burst of 1 drops 7", dropped("--burst", "1"), 7)
    h.eq("replay --per-minute 20 --burst 1: the same 7", dropped("--per-minute", "20", "--burst", "1"), 7)
    # Pro's 240 a minute refills a token between events a second apart: only the burst's 4.
    h.eq("replay --plan pro: none", dropped("--plan", "pro"), 0)
    h.eq("replay --plan pro --burst 1: pro's rate with a burst of 1 drops the burst's 4",
         dropped("--plan", "pro", "--burst", "1"), 4)
    h.eq("replay --per-minute 240 --burst 1: the same 4", dropped("--per-minute", "240", "--burst", "1"), 4)
    h.eq("replay --per-minute 20 without --burst: a burst of 20, none dropped", dropped("--per-minute", "20"), 0)


def test_audit_reports_only_accounts_with_events():
    """A file's audit reports only the accounts with events audited: none of a pool no event
    has, nor of an account whose only line is its account line, as for an empty range."""
    sim = os.path.join(TMP, "pool.ndjson")
    rc, _, err = ctl("simulate", "--profile", "clean", "--days", "2", "--seed", "4", "--start", START,
                     "--plan", "pro", "--account-lines", "--out", sim, key=None)
    eqd("simulate exits 0", rc, 0, err)
    with open(sim) as f:
        first = f.readline()
    h.eq("simulate --plan --account-lines writes the account line first", json.loads(first)["type"], "account")
    only_account = write_lines("only-account.ndjson", [first.strip()])
    for fmt in ("json", "md", "html"):
        rc, empty, err = ctl("audit", sim, "--format", fmt, "--from", START, "--to", START, key=None)
        eqd(f"audit {fmt} of an empty range exits 0", rc, 0, err)
        rc, out, err = ctl("audit", sim, "--format", fmt, "--pool", "nosuch", key=None)
        h.eq(f"audit {fmt} --pool of no event: the empty range's report", (rc, out), (0, empty))
        rc, out, err = ctl("audit", only_account, "--format", fmt, key=None)
        h.eq(f"audit {fmt} of an account line alone: the empty range's report", (rc, out), (0, empty))
    rc, out, err = ctl("audit", sim, "--format", "json", "--pool", "nosuch", key=None)
    h.eq("audit --pool of no event: {\"reports\": []}", loads(out) if rc == 0 else None, {"reports": []})
    rc, out, err = ctl("audit", sim, "--format", "json", "--pool", "credits", key=None)
    doc = loads(out) if rc == 0 else {}
    h.check("audit --pool credits: the account's report", doc.get("account_id") == "acct-001", doc)


def test_event_counts_agree():
    """simulate's summary, replay and audit count the same events: not the account line."""
    sim = os.path.join(TMP, "counts.ndjson")
    rc, _, err = ctl("--json", "simulate", "--profile", "typical", "--days", "3", "--seed", "9", "--start", START,
                     "--plan", "pro", "--account-lines", "--out", sim, key=None)
    eqd("simulate exits 0", rc, 0, err)
    summary = json.loads(err.strip().splitlines()[-1]) if rc == 0 else {}
    with open(sim) as f:
        types = [json.loads(line)["type"] for line in f]
    events = len(types) - types.count("account")
    h.eq("the file has one account line", types.count("account"), 1)
    h.eq("simulate's summary counts the events, not the account line", summary.get("events"), events)
    rc, out, err = ctl("audit", sim, "--format", "json", key=None)
    h.eq("audit counts the events", (rc, loads(out).get("events") if rc == 0 else None), (0, events))
    rc, out, err = ctl("replay", sim, "--policy", "cache", "--json", key=None)
    h.eq("replay counts the events", (rc, loads(out).get("events") if rc == 0 else None), (0, events))
    rc, out, err = ctl("replay", sim, "--policy", "cache", key=None)
    h.check("replay's table counts the events", rc == 0 and out.startswith(f"{events} events over"), out[:200])
    rc, out, err = ctl("simulate", "--profile", "typical", "--days", "3", "--seed", "9", "--start", START,
                       "--plan", "pro", "--account-lines", "--out", sim, key=None)
    h.check("simulate's sentence counts the events", f"simulated {events} events" in err, err)


TWO_POOLS = ("--plans", "config/examples/two-pools.toml", "--rate-card", "config/examples/two-pools-rate-card.toml")
PROFILES = ("clean", "typical", "llm-on-page-load", "regression-heavy", "unscoped", "discuss-heavy", "outlier-user")


def test_simulate_plan_lines_import_whole():
    """simulate --plan writes only API.md's events (the account lines only with
    --account-lines): the server's import takes every line of it."""
    sim = os.path.join(TMP, "plan-pro.ndjson")
    rc, _, err = ctl("simulate", "--profile", "typical", "--days", "5", "--seed", "3", "--start", START,
                     "--plan", "pro", "--out", sim, key=None)
    eqd("simulate --plan pro exits 0, without a warning (a typical month fits pro)", (rc, "warning" in err), (0, False), err)
    with open(sim) as f:
        lines = [line.replace('"account_id":"acct-001"', '"account_id":"planned"') for line in f]
    h.eq("no account line without --account-lines", sum('"type":"account"' in line for line in lines), 0)
    ADMIN.create_account("planned", plan="pro")
    r = ADMIN.post("/v1/admin/import?mode=analytics", raw="".join(lines))
    eqd("the whole file imports: no line rejected",
        (r.status, r.get("imported"), r.get("rejected")), (200, len(lines), 0), r)
    rc, _, err = ctl("simulate", "--profile", "typical", "--days", "1", "--account-lines", "--out", sim, key=None)
    h.check("--account-lines without --plan: exit 2, the message says to give --plan",
            rc == 2 and "--plan" in err, (rc, err))


def test_simulate_warns_when_the_period_does_not_fit_the_plan():
    rc, _, err = ctl("--json", "simulate", "--profile", "typical", "--days", "30", "--seed", "7", "--start", START,
                     "--plan", "free", "--out", os.path.join(TMP, "free.ndjson"), key=None)
    summary = json.loads(err.strip().splitlines()[-1]) if rc == 0 else {}
    h.check("typical on free: exit 0, a warning naming the cheapest plan that fits (builder)",
            rc == 0 and "warning" in err and "do not fit plan free" in err and "plan builder is the cheapest" in err,
            (rc, err))
    h.eq("the JSON summary says the plan does not fit", (summary.get("plan"), summary.get("plan_fits")), ("free", False))
    rc, _, err = ctl("--json", "simulate", "--profile", "typical", "--days", "30", "--seed", "7", "--start", START,
                     "--plan", "builder", "--out", os.path.join(TMP, "builder.ndjson"), key=None)
    summary = json.loads(err.strip().splitlines()[-1]) if rc == 0 else {}
    h.check("typical on builder: no warning", rc == 0 and "warning" not in err, (rc, err))
    h.eq("the JSON summary says it fits", summary.get("plan_fits"), True)
    # The two-pools catalog: a month of every profile fits its top plan (a message costs one
    # credit: the volume is activity, not 120 credits' worth of messages a day).
    for profile in PROFILES:
        rc, _, err = ctl("simulate", "--profile", profile, "--days", "30", "--seed", "7", "--start", START,
                         "--accounts", "2", "--plan", "elite", *TWO_POOLS,
                         "--out", os.path.join(TMP, "tp-elite.ndjson"), key=None)
        h.check(f"two-pools {profile} on elite: exit 0, no warning", rc == 0 and "warning" not in err, (rc, err))
    rc, _, err = ctl("simulate", "--profile", "typical", "--days", "30", "--seed", "7", "--start", START,
                     "--plan", "starter", *TWO_POOLS, "--out", os.path.join(TMP, "tp-starter.ndjson"), key=None)
    h.check("two-pools typical on starter: a warning naming the message pool",
            rc == 0 and "do not fit plan starter" in err and "pool message" in err, (rc, err))


def test_simulate_two_pools_truth_is_the_audit():
    """With the two-pools plans and rate card, the truth of every profile is what the audit of
    the file finds (every pool audited), and clean has no findings, whichever pool."""
    for profile in PROFILES:
        sim = os.path.join(TMP, f"tp-{profile}.ndjson")
        truth_path = os.path.join(TMP, f"tp-{profile}.truth.json")
        rc, _, err = ctl("simulate", "--profile", profile, "--days", "30", "--seed", "11", "--start", START,
                         *TWO_POOLS, "--out", sim, "--truth", truth_path, key=None)
        eqd(f"simulate {profile} exits 0", rc, 0, err)
        rc, out, err = ctl("audit", sim, *TWO_POOLS, "--format", "json", key=None)
        eqd(f"audit {profile} exits 0", rc, 0, err)
        report = loads(out) if rc == 0 else {}
        with open(truth_path) as f:
            truth = json.load(f)["accounts"][0]
        codes = {f["code"] for f in report.get("findings", [])}
        got = {
            "loops": len(report.get("regression_loops", {}).get("loops", [])),
            "small_edits": report.get("small_edits", {}).get("turns"),
            "unscoped": report.get("unscoped_prompts", {}).get("prompts"),
            "without_snapshot": report.get("snapshots", {}).get("without_snapshot"),
            "paid_repeats": sum(r["paid_repeats"] for r in report.get("repeated_calls", {}).get("by_call_site", [])),
            "discuss_heavy": "discuss_share_high" in codes,
        }
        want = {
            "loops": len(truth["loops"]),
            "small_edits": truth["small_edits"],
            "unscoped": truth["unscoped"]["prompts"],
            "without_snapshot": truth["turns_without_snapshot"],
            "paid_repeats": sum(r["paid_repeats"] for r in truth["repeated_calls"]),
            "discuss_heavy": truth["discuss_heavy"],
        }
        h.eq(f"two-pools {profile}: the truth is what the audit finds", got, want)
        if profile == "clean":
            for pool_args in ((), ("--plan", "builder"), ("--pool", "integration")):
                rc, out, err = ctl("audit", sim, *TWO_POOLS, *pool_args, "--format", "json", key=None)
                doc = loads(out) if rc == 0 else {}
                h.eq(f"two-pools clean {' '.join(pool_args) or '(every pool)'}: no findings, no fixes",
                     (rc, doc.get("findings"), doc.get("fixes")), (0, [], []))


def test_simulated_two_pools_month_applies_on_elite():
    """A two-pools month on elite goes through the ledger (mode=apply) with no line refused:
    the simulated volume fits the plan (it used to run out of message credits in 20 days)."""
    srv = h.start(manual_clock=True, extra_args=["--plans", os.path.join(ROOT, "config/examples/two-pools.toml"),
                                                 "--rate-card",
                                                 os.path.join(ROOT, "config/examples/two-pools-rate-card.toml")])
    admin = srv.client()
    admin.set_clock("2026-03-15T00:00:00Z")
    admin.create_account("acct-001", plan="elite")
    admin.set_clock("2026-04-04T00:00:00Z")
    sim = os.path.join(TMP, "tp-apply.ndjson")
    rc, _, err = ctl("--json", "simulate", "--profile", "clean", "--seed", "9", "--start", "2026-03-15T00:00:00Z",
                     "--days", "20", "--plan", "elite", *TWO_POOLS, "--out", sim, key=None)
    summary = json.loads(err.strip().splitlines()[-1]) if rc == 0 else {}
    eqd("simulate exits 0, the plan fits", (rc, summary.get("plan_fits")), (0, True), err)
    with open(sim, "rb") as f:
        body = f.read()
    r = admin.post("/v1/admin/import?mode=apply", raw=body)
    eqd("every line is applied", (r.status, r.get("imported"), r.get("rejected")),
        (200, summary.get("events"), 0), r)
    srv.stop()


def test_config_given_as_the_default_path_is_given():
    """--plans config/plans.toml (the default's own text) is given all the same (docs/cli.md):
    with a rate card whose pools its plans lack, simulate, replay and audit refuse the pair
    (exit 2, creditd's message), as they do for the same file by its absolute path. Not
    given, the default catalog that does not match is not used (exit 0). A --rate-card or
    --plans given is used exactly as given: from another directory, config/... is not
    looked for elsewhere."""
    sim = os.path.join(TMP, "given-plans.ndjson")
    rc, _, err = ctl("simulate", "--profile", "typical", "--days", "2", "--seed", "3", "--start", START,
                     *TWO_POOLS, "--out", sim, key=None)
    eqd("simulate with the two-pools pair exits 0", rc, 0, err)
    card = ("--rate-card", "config/examples/two-pools-rate-card.toml")
    commands = (("simulate", "--days", "1", "--out", os.path.join(TMP, "given-plans-2.ndjson")),
                ("replay", sim, "--policy", "cache"),
                ("audit", sim, "--format", "json"))
    for plans in ("config/plans.toml", os.path.join(ROOT, "config/plans.toml")):
        for cmd in commands:
            rc, _, err = ctl(*cmd, "--plans", plans, *card, key=None)
            h.check(f"{cmd[0]} --plans {plans} with the two-pools card: exit 2, the pool plan free lacks",
                    rc == 2 and 'which plan "free" lacks' in err, (rc, err))
    for cmd in commands:
        rc, _, err = ctl(*cmd, *card, key=None)
        eqd(f"{cmd[0]} without --plans: the default catalog is not used, exit 0", rc, 0, err)
    for flag in ("--rate-card", "--plans"):
        path = "config/rate_card.toml" if flag == "--rate-card" else "config/plans.toml"
        p = subprocess.run([CTL, "simulate", "--days", "1", "--out", os.devnull, flag, path],
                           capture_output=True, text=True, cwd=TMP, timeout=120)
        h.check(f"{flag} {path} from a directory without it: exit 2, not looked for elsewhere",
                p.returncode == 2 and path in p.stderr, (p.returncode, p.stderr))
    p = subprocess.run([CTL, "simulate", "--days", "1", "--out", os.devnull],
                       capture_output=True, text=True, cwd=TMP, timeout=120)
    eqd("neither given, from that directory: the defaults are found, exit 0", p.returncode, 0, p.stderr)


def test_creditd_copied_elsewhere_finds_its_config():
    """A copy of creditd run outside the tree, from a directory without config/, starts on the
    catalog and rate card of the tree it was built from (it used to stop: "config/plans.toml:
    cannot read the plan catalog")."""
    import shutil
    import signal
    bindir = tempfile.mkdtemp(prefix="creditd-copy-")
    copy = os.path.join(bindir, "creditd")
    shutil.copy2(h.ARGS.creditd, copy)
    port = h.free_port()
    p = subprocess.Popen([copy, "--data", os.path.join(bindir, "data"), "--listen",
                          f"127.0.0.1:{port}"], cwd=bindir, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in p.stdout:
        lines.append(line)
        if "creditd ready on" in line:
            break
    ready = any("creditd ready on" in l for l in lines)
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    rest, _ = p.communicate(timeout=60)
    h.check("a copy run from a directory without config/ starts", ready, "".join(lines) + rest)
    eqd("and stops cleanly on SIGTERM", p.returncode, 0, rest)
    shutil.rmtree(bindir, ignore_errors=True)


def test_json_errors_end_with_a_newline():
    rc, out, err = ctl("--json", "audit", "nobody", "--online")
    h.check("--json audit of an unknown account: exit 1, the error body on a line of its own",
            rc == 1 and out.endswith("\n") and loads(out)["error"]["code"] == "account_not_found", (rc, out))
    rc, out, err = ctl("audit", "nobody", "--online", "--format", "json")
    h.check("audit --format json of an unknown account: the same", rc == 1 and out.endswith("\n"), (rc, out))
    rc, out, err = ctl("--json", "balance", "nobody")
    h.check("--json balance of an unknown account: the same", rc == 1 and out.endswith("\n"), (rc, out))


def ctl_stdin_file(path, *args):
    """creditctl ARGS with standard input read from the file `path` (bytes as they are)."""
    with open(path, "rb") as f:
        p = subprocess.run([CTL, *args], capture_output=True, text=True, stdin=f, cwd=ROOT, timeout=120)
    return p.returncode, p.stdout, p.stderr


def test_byte_order_mark():
    """A UTF-8 byte order mark before the first line is skipped by audit and replay (files,
    files read in time order, standard input), as the server's import skips it; one on a
    later line makes that line bad."""
    sim = os.path.join(TMP, "bom-src.ndjson")
    rc, _, err = ctl("simulate", "--profile", "typical", "--days", "3", "--seed", "5", "--start", START,
                     "--out", sim, key=None)
    eqd("simulate exits 0", rc, 0, err)
    with open(sim, "rb") as f:
        lines = f.read().split(b"\n")[:-1]
    shuffled = lines[:]
    random.Random(5).shuffle(shuffled)
    bom = b"\xef\xbb\xbf"

    def write(name, body):
        path = os.path.join(TMP, name)
        with open(path, "wb") as f:
            f.write(body)
        return path

    for order, body in (("in order", b"\n".join(lines) + b"\n"), ("shuffled", b"\n".join(shuffled) + b"\n")):
        plain = write("bom-plain.ndjson", body)
        marked = write("bom-marked.ndjson", bom + body)
        for cmd in (("audit", "--format", "json"), ("replay", "--policy", "cache", "--policy", "rate-limit", "--json")):
            rc, expected, err = ctl(cmd[0], plain, *cmd[1:], key=None)
            eqd(f"{cmd[0]} of the file {order} exits 0", rc, 0, err)
            rc, out, err = ctl(cmd[0], marked, *cmd[1:], key=None)
            h.eq(f"{cmd[0]} of the file {order} after a byte order mark: the same", (rc, out, err), (0, expected, ""))
            rc, out, err = ctl_stdin_file(marked, cmd[0], "-", *cmd[1:])
            h.eq(f"{cmd[0]} of it on standard input: the same", (rc, out, err), (0, expected, ""))
    second = write("bom-line-2.ndjson", lines[0] + b"\n" + bom + b"\n".join(lines[1:]) + b"\n")
    rc, out, err = ctl("audit", second, "--format", "json", key=None)
    h.check("a byte order mark on line 2: that line is bad (exit 3, FILE:2:)",
            rc == 3 and "bom-line-2.ndjson:2: " in err and ":1: " not in err, (rc, err))


h.run_section(test_exit_codes)
h.run_section(test_audit_example_is_current)
h.run_section(test_json_output)
h.run_section(test_audit_route)
h.run_section(test_audit_in_any_line_order)
h.run_section(test_two_simulated_periods_import_into_one_account)
h.run_section(test_numbers_given_are_sent_as_given)
h.run_section(test_usage_numbers_are_json)
h.run_section(test_integer_flags_are_read_exactly)
h.run_section(test_tables_print_the_servers_numbers_exactly)
h.run_section(test_replay_burst)
h.run_section(test_simulate_stays_within_9999)
h.run_section(test_audit_of_events_without_pool)
h.run_section(test_audit_reports_only_accounts_with_events)
h.run_section(test_event_counts_agree)
h.run_section(test_simulate_plan_lines_import_whole)
h.run_section(test_simulate_warns_when_the_period_does_not_fit_the_plan)
h.run_section(test_simulate_two_pools_truth_is_the_audit)
h.run_section(test_simulated_two_pools_month_applies_on_elite)
h.run_section(test_config_given_as_the_default_path_is_given)
h.run_section(test_creditd_copied_elsewhere_finds_its_config)
h.run_section(test_json_errors_end_with_a_newline)
h.run_section(test_byte_order_mark)
h.finish()
