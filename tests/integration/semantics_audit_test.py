#!/usr/bin/env python3
"""DESIGN.md section 2 to the letter, black-box: the audit (GET .../audit and
`creditctl audit`), the what-if replay (`creditctl replay`) and the simulator
(`creditctl simulate`), with inputs whose answers are worked out by hand from the
document, at each threshold's edge:
  - unscoped prompts at exactly 5 x lines changed (and just under), by user and by file;
  - small edits at exactly 5 lines and exactly 3 credits (and just past either);
  - typical shares at the edges of their bands (in range) and just outside them;
  - discuss share at exactly 15 % (no finding) and above;
  - outliers at exactly 3 x the median (none), exactly 10 % of the total (one), by
    credits alone;
  - repeated integration calls by cache_key and by request_hash, per kind, and a cache
    hit that is not paid;
  - turns without a snapshot, hot files, top sources, regression loops in the report;
  - the fix list: savings per cycle from the replay, effort, order by savings per hour;
  - plan advice: stay, downgrade, upgrade_now (also at exactly the break-even price),
    upgrade_next_cycle;
  - replay: cache TTL edges, a hit rate per call site, scoped prompts, discuss off,
    rate limits, another plan, the combined chain;
  - simulator: every profile plants what its truth says, and `clean` audits to no
    findings for several seeds, start instants and lengths (offline and via the route).

    python3 tests/integration/semantics_audit_test.py --creditd BUILD/creditd [--creditctl BUILD/creditctl] [-v]
"""
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime
from decimal import Decimal as D

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import check, eq  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


CTL = h.creditctl_path()
TMP = tempfile.mkdtemp(prefix="creditd-sem-audit-")
h._tmpdirs.append(TMP)
SRV = h.start(manual_clock=True)
C = SRV.client()


def ctl(*args, stdin=None):
    """Runs creditctl offline; returns (exit code, stdout, stderr)."""
    p = subprocess.run([CTL] + list(args), capture_output=True, text=True, input=stdin, cwd=ROOT,
                       timeout=110)
    return p.returncode, p.stdout, p.stderr


def loads(text):
    return json.loads(text, parse_float=D)


def n(x):
    return D(str(x))


# ------------------------------------------------------------------ server helpers

_clock = ["2026-03-02T00:00:00Z"]


def at(day, minute):
    """2026-03-<day> 09:00 + minute (minute < 600)."""
    return f"2026-03-{day:02d}T{9 + minute // 60:02d}:{minute % 60:02d}:00Z"


def charge(acct, when, kind, amount, user="u1", usage=None, meta=None, cache_key=None):
    if when > _clock[0]:
        C.set_clock(when)
        _clock[0] = when
    extra = {}
    if meta:
        extra["metadata"] = meta
    if cache_key:
        extra["cache_key"] = cache_key
    r = C.charge(acct, amount=amount, usage=usage, kind=kind, user_id=user, **extra)
    if r.status != 201:
        raise AssertionError(f"charge {acct} {kind} {amount}: {r}")
    return r


def agent_usage(emitted, changed, files=1):
    return {"model": "default", "input_tokens": 2000, "output_tokens": 200, "files_read": files,
            "lines_emitted": emitted, "lines_changed": changed}


def audit(acct, day, days=1, fmt="json"):
    frm = f"2026-03-{day:02d}T00:00:00Z"
    to = f"2026-03-{day + days:02d}T00:00:00Z"
    r = C.get(f"/v1/accounts/{acct}/audit?format={fmt}&from={frm}&to={to}")
    if r.status != 200:
        raise AssertionError(f"audit {acct}: {r}")
    return r.doc if fmt == "json" else r.text


def cycle_days(acct):
    """The days of the account's current cycle: the audits here cover one day of it, and
    per-cycle figures scale to the cycle the range starts in."""
    cyc = C.get(f"/v1/accounts/{acct}").doc["cycle"]
    start = datetime.fromisoformat(cyc["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(cyc["end"].replace("Z", "+00:00"))
    return (end - start).days


def codes(report):
    return [f["code"] for f in report["findings"]]


def source(report, name):
    return next(s for s in report["burn_by_source"] if s["source"] == name)


def fix(report, fid):
    return next((f for f in report["fixes"] if f["id"] == fid), None)


def rows(report_rows, key):
    return {r[key]: (r["count"], n(r["credits"])) for r in report_rows}


# ------------------------------------------------------------------ audit: thresholds

def unscoped_and_small_edits():
    C.create_account("edges", "pro")
    d = 2
    snap = {"snapshot_id": "s1"}
    # u1, A.jsx: exactly 5 x (unscoped), then 49 vs 10 (not).
    charge("edges", at(d, 0), "agent_prompt", 2, "u1", agent_usage(50, 10), {"file": "A.jsx", **snap})
    charge("edges", at(d, 1), "agent_prompt", 2, "u1", agent_usage(49, 10), {"file": "A.jsx", **snap})
    # u2, B.jsx: exactly 5 lines at exactly 3 credits (small edit); 6 lines; 2.999 credits.
    charge("edges", at(d, 2), "agent_prompt", 3, "u2", agent_usage(5, 5), {"file": "B.jsx", **snap})
    charge("edges", at(d, 3), "agent_prompt", 3, "u2", agent_usage(6, 6), {"file": "B.jsx", **snap})
    charge("edges", at(d, 4), "agent_prompt", D("2.999"), "u2", agent_usage(5, 5), {"file": "B.jsx", **snap})
    # u3, without snapshots: C.jsx 20 vs 4 at 4 credits (unscoped and a small edit);
    # A.jsx 10 emitted, 0 changed (unscoped: 10 >= 0).
    charge("edges", at(d, 5), "agent_prompt", 4, "u3", agent_usage(20, 4), {"file": "C.jsx"})
    charge("edges", at(d, 6), "agent_prompt", 1, "u3", agent_usage(10, 0), {"file": "A.jsx"})
    r = audit("edges", d)
    u = r["unscoped_prompts"]
    eq("unscoped: emitted >= 5 x changed, exactly 5 x included, 4.9 x not (3 prompts)", u["prompts"], 3)
    eq("unscoped: their credits", n(u["credits"]), D("7"))
    eq("unscoped: by user with credits", rows(u["by_user"], "user_id"), {"u1": (1, D(2)), "u3": (2, D(5))})
    eq("unscoped: by file with credits", rows(u["by_file"], "file"), {"A.jsx": (2, D(3)), "C.jsx": (1, D(4))})
    s = r["small_edits"]
    eq("small edits: <= 5 lines at >= 3 credits, both edges included (2 turns)", s["turns"], 2)
    eq("small edits: their credits", n(s["credits"]), D("7"))
    eq("small edits: by file", rows(s["by_file"], "file"), {"B.jsx": (1, D(3)), "C.jsx": (1, D(4))})
    eq("snapshots: agent turns", r["snapshots"]["agent_turns"], 7)
    eq("snapshots: turns without a snapshot", r["snapshots"]["without_snapshot"], 2)
    eq("snapshots: their credits", n(r["snapshots"]["credits_without_snapshot"]), D(5))
    eq("hot files: by turns, ties by credits",
       [(f["file"], f["turns"], n(f["credits"])) for f in r["hot_files"]],
       [("B.jsx", 3, D("8.999")), ("A.jsx", 3, D(5)), ("C.jsx", 1, D(4))])
    eq("top sources: (kind, file) by credits",
       [(t["kind"], t["key"], n(t["credits"])) for t in r["top_sources"]],
       [("agent_prompt", "B.jsx", D("8.999")), ("agent_prompt", "A.jsx", D(5)), ("agent_prompt", "C.jsx", D(4))])
    for c in ("unscoped_prompts", "small_edits_via_agent", "agent_turns_without_snapshot"):
        check(f"finding {c}", c in codes(r), codes(r))
    check("no outlier among 2, 3 and 2 turns", r["outliers"] == [] and "user_outliers" not in codes(r), r["outliers"])
    check("no loop without fix turns", r["regression_loops"]["loops"] == [], r["regression_loops"])
    f = fix(r, "edit_in_editor")
    check("fix edit_in_editor: the editor replay saves the 7 credits of small edits",
          f is not None and n(f["saved"]) == 7, f)
    days = cycle_days("edges")
    check(f"fix edit_in_editor: per cycle = 7 x {days} (the cycle's days) / 1 day",
          f is not None and n(f["saved_per_cycle"]) == 7 * days, f)
    check("fix edit_in_editor: behavioural", f is not None and f["effort"] == "behavioural", f)
    f = fix(r, "snapshot_first")
    check("fix snapshot_first: saves nothing directly, listed last",
          f is not None and n(f["saved_per_hour"]) == 0 and r["fixes"][-1]["id"] == "snapshot_first", r["fixes"])
    order = [n(x["saved_per_hour"]) for x in r["fixes"]]
    eq("fixes: ordered by savings per hour", order, sorted(order, reverse=True))
    for x in r["fixes"]:
        check(f"fix {x['id']}: saved_per_hour = saved_per_cycle / effort hours",
              n(x["saved_per_hour"]) == (n(x["saved_per_cycle"]) / max(1, x["effort_hours"])).quantize(D("0.001"), rounding="ROUND_DOWN"), x)
    # Agent is 100 %: above 80 %; integrations and discuss at 0 are below their bands;
    # backend at 0 is inside 0-10 %.
    oor = [f["message"].split(" ")[0] for f in r["findings"] if f["code"] == "share_out_of_range"]
    eq("shares: agent 100 %, integrations 0 %, discuss 0 % are out of range; backend 0 % is in",
       sorted(oor), ["agent", "discuss", "integrations"])
    eq("shares: in_range flags", [s["in_range"] for s in r["burn_by_source"]], [False, False, False, True])


_band_minute = [0]


def band(acct, day, agent, integ, discuss, backend):
    C.create_account(acct, "pro")
    for kind, amt in (("agent_prompt", agent), ("integration.invoke_llm", integ),
                      ("discuss_turn", discuss), ("backend_function", backend)):
        if D(amt) > 0:
            m = _band_minute[0] = _band_minute[0] + 1
            meta = {"snapshot_id": "s", "file": "F.jsx"} if kind == "agent_prompt" else {"call_site": "x"}
            charge(acct, at(day, m), kind, D(amt), "u1" if kind != "backend_function" else "app", meta=meta)
    return audit(acct, day)


def shares_at_band_edges():
    d = 3
    for acct, shares in (("band-lo", ("60", "30", "10", "0")), ("band-hi", ("80", "15", "5", "0")),
                         ("band-mix", ("60", "15", "15", "10"))):
        r = band(acct, d, *shares)
        eq(f"shares {'/'.join(shares)}: every band edge is in range", [s["in_range"] for s in r["burn_by_source"]],
           [True] * 4)
        eq(f"shares {'/'.join(shares)}: exact fractions",
           [n(s["share"]) for s in r["burn_by_source"]], [D(x) / 100 for x in shares])
        eq(f"shares {'/'.join(shares)}: no findings at all (discuss at exactly 15 % included)", codes(r), [])
        eq(f"shares {'/'.join(shares)}: no fixes", r["fixes"], [])
    r = band("band-out", d, "59.9", "30.1", "10", "0")
    eq("shares 59.9/30.1/10/0: agent below 60 % and integrations above 30 % are out",
       [s["in_range"] for s in r["burn_by_source"]], [False, False, True, True])
    eq("shares 59.9/30.1: two share findings", codes(r), ["share_out_of_range", "share_out_of_range"])
    r = band("band-be", d, "65", "15", "9.999", "10.001")
    eq("shares: backend at 10.001 % is out, the rest in", [s["in_range"] for s in r["burn_by_source"]],
       [True, True, True, False])
    r = band("band-ds", d, "69", "15", "16", "0")
    check("discuss at 16 %: discuss_share_high", "discuss_share_high" in codes(r), codes(r))
    eq("discuss at 16 %: share and credits", (n(r["discuss"]["share"]), n(r["discuss"]["credits"])),
       (D("0.16"), D(16)))
    f = fix(r, "discuss_for_planning")
    days = cycle_days("band-ds")
    check(f"discuss at 16 %: fix discuss_for_planning saves the discuss credits (16 x {days} per cycle)",
          f is not None and n(f["saved"]) == 16 and n(f["saved_per_cycle"]) == 16 * days, f)
    check("discuss at 16 %: the discuss band is out of range", not source(r, "discuss")["in_range"], r["burn_by_source"])


def outliers():
    d = 4
    # 17 users with one 1-credit turn, u18 with 4, u19 with 19: 40 turns, 40 credits; the
    # median user has 1. u18 is above 3 x 1 and exactly 10 % of the total.
    def run(acct, big, m):
        C.create_account(acct, "enterprise")
        for i in range(1, 18):
            charge(acct, at(d, m), "agent_prompt", 1, f"u{i:02d}", meta={"snapshot_id": "s"})
            m += 1
        for user, turns in (("u18", 4), ("u19", big)):
            for _ in range(turns):
                charge(acct, at(d, m), "agent_prompt", 1, user, meta={"snapshot_id": "s"})
                m += 1
        return audit(acct, d)

    r = run("out-a", 19, 0)
    got = {o["user_id"]: (o["by_turns"], o["by_credits"]) for o in r["outliers"]}
    eq("outliers: exactly 10 % of the total and above 3 x the median counts", got,
       {"u18": (True, True), "u19": (True, True)})
    check("outliers: the median is 1 turn and 1 credit",
          all(n(o["median_agent_turns"]) == 1 and n(o["median_credits"]) == 1 for o in r["outliers"]), r["outliers"])
    check("outliers: finding user_outliers", "user_outliers" in codes(r), codes(r))
    r = run("out-b", 20, 60)
    eq("outliers: 4 of 41 (under 10 %) is not an outlier", [o["user_id"] for o in r["outliers"]], ["u19"])

    C.create_account("out-c", "enterprise")
    m = 0
    for user, turns in (("a", 1), ("b", 1), ("c", 1), ("d", 3)):
        for _ in range(turns):
            charge("out-c", at(d, 150 + m), "agent_prompt", 1, user, meta={"snapshot_id": "s"})
            m += 1
    r = audit("out-c", d)
    eq("outliers: exactly 3 x the median is not above it", r["outliers"], [])
    eq("outliers: no finding at exactly 3 x", codes(r), ["share_out_of_range"] * 3)

    C.create_account("out-d", "enterprise")
    for i, (user, amt) in enumerate((("a", 1), ("b", 1), ("c", 1), ("d", D("3.001")))):
        charge("out-d", at(d, 200 + i), "agent_prompt", amt, user, meta={"snapshot_id": "s"})
    r = audit("out-d", d)
    got = [(o["user_id"], o["by_turns"], o["by_credits"]) for o in r["outliers"]]
    eq("outliers: credits just above 3 x the median, with as many turns as the others", got,
       [("d", False, True)])


def repeats():
    d = 5
    C.create_account("rep", "enterprise")
    mini = {"model": "gpt-4o-mini", "input_tokens": 500, "output_tokens": 200}
    m = 0

    def call(kind, site, ck=None, rh=None, usage=mini, amt=D("1.5")):
        nonlocal m
        meta = {"call_site": site}
        if rh:
            meta["request_hash"] = rh
        charge("rep", at(d, m), kind, amt, "app", usage=usage, meta=meta, cache_key=ck)
        m += 1

    for _ in range(3):
        call("integration.invoke_llm", "pages/Home.onLoad", ck="k1")
    for _ in range(2):
        call("integration.invoke_llm", "pages/A", rh="h1")
    call("integration.generate_image", "pages/A", rh="h1", usage={"count": 1}, amt=8)
    call("integration.invoke_llm", "pages/B", rh="h2")
    # A cached answer: a hit costs nothing and is not a paid repeat.
    r = C.put("/v1/accounts/rep/cache/k1", {"kind": "integration.invoke_llm", "response": {"x": 1}})
    check("cache PUT 204", r.status == 204, r)
    rr = C.charge("rep", usage=mini, kind="integration.invoke_llm", user_id="app", cache_key="k1",
                  metadata={"call_site": "pages/Home.onLoad"})
    check("a cache hit", rr.status == 201 and rr.get("cached") is True, rr)
    r = audit("rep", d)
    rc = r["repeated_calls"]
    eq("repeats: paid again by cache_key (2) and by request_hash (1); other kinds apart",
       rc["paid_repeats"], 3)
    eq("repeats: the waste is every paid repeat", n(rc["waste"]), D("4.5"))
    eq("repeats: by call site",
       sorted((x["call_site"], x["paid_repeats"], n(x["waste"])) for x in rc["by_call_site"]),
       [("pages/A", 1, D("1.5")), ("pages/Home.onLoad", 2, D(3))])
    check("finding repeated_integration_calls", "repeated_integration_calls" in codes(r), codes(r))
    f = fix(r, "cache_integrations")
    days = cycle_days("rep")
    check(f"fix cache_integrations: the cache replay saves the repeats (4.5, x {days} per cycle)",
          f is not None and n(f["saved"]) == D("4.5") and n(f["saved_per_cycle"]) == D("4.5") * days, f)
    check("fix cache_integrations: hours of work, saved per hour = per cycle / hours",
          f is not None and f["effort"] == "hours" and f["effort_hours"] > 0
          and n(f["saved_per_hour"]) == (D("4.5") * days / f["effort_hours"]).quantize(D("0.001"), rounding="ROUND_DOWN"), f)


def loops():
    d = 6
    C.create_account("loop", "enterprise")
    for i, intent in enumerate(("feature", "fix", "fix")):
        charge("loop", at(d, 30 * i), "agent_prompt", 10, "u1",
               meta={"file": "Checkout.jsx", "intent": intent, "snapshot_id": f"snap-{i}"})
    for i, intent in enumerate(("feature", "fix", "fix")):
        charge("loop", at(d, 200 + 30 * i), "agent_prompt", D("9.999") if i == 0 else 10, "u1",
               meta={"file": "Cart.jsx", "intent": intent, "snapshot_id": f"c-{i}"})
    r = audit("loop", d)
    ls = r["regression_loops"]["loops"]
    eq("loops: 3 turns, 2 fixes, 30 credits make one loop; 29.999 credits do not",
       [(x["file"], x["turns"], n(x["credits"]), n(x["waste"]), x["revert_to_snapshot"]) for x in ls],
       [("Checkout.jsx", 3, D(30), D(20), "snap-0")])
    f = fix(r, "revert_loops")
    days = cycle_days("loop")
    check(f"fix revert_loops: saves the loop's waste (20, x {days} per cycle)",
          f is not None and n(f["saved"]) == 20 and n(f["saved_per_cycle"]) == 20 * days, f)


def refunds():
    """DESIGN.md: refunds are subtracted. A refund carries no metadata: it goes under the
    charge it refunds, in the audit's hot files and top sources and in regression loops (a
    loop's credits are net, and a run under 30 credits after refunds is no loop)."""
    d = 6
    C.create_account("rf", "enterprise")
    ids = []
    for i, amount in enumerate((12, 10, 8)):
        r = charge("rf", at(d, 300 + 10 * i), "agent_prompt", amount, "u1",
                   meta={"file": "Refund.jsx", "feature": "refunds", "intent": "fix", "snapshot_id": f"rf-{i}"})
        ids.append(r["charge_id"])
    charge("rf", at(d, 330), "agent_prompt", 9, "u1", meta={"file": "Other.jsx", "intent": "feature"})
    r = audit("rf", d)
    eq("refunds: before, 12 + 10 + 8 = 30 credits of fixes are a loop",
       [(x["file"], n(x["credits"])) for x in r["regression_loops"]["loops"]], [("Refund.jsx", D(30))])
    C.set_clock(at(d, 400))
    _clock[0] = at(d, 400)
    for cid, back in ((ids[1], 1), (ids[0], 4)):
        rr = C.post(f"/v1/accounts/rf/charges/{cid}/refunds", {"idempotency_key": h.key(), "credits": back,
                                                                "reason": "agent error"})
        eq(f"refunds: {back} credit(s) of {cid} refunded", rr.status, 201)
    r = audit("rf", d)
    eq("refunds: the total is net", (n(r["total"]), n(r["refunds"])), (D(34), D(5)))
    eq("refunds: 25 credits after refunds: no loop, no loop finding, no waste",
       (r["regression_loops"]["loops"], n(r["regression_loops"]["waste"]), "regression_loops" in codes(r)),
       ([], D(0), False))
    eq("refunds: hot files net of refunds, under the refunded file",
       [(x["file"], x["turns"], n(x["credits"])) for x in r["hot_files"]],
       [("Refund.jsx", 3, D(25)), ("Other.jsx", 1, D(9))])
    eq("refunds: top sources net of refunds, no row for a null key",
       [(x["kind"], x["key"], n(x["credits"]), x["events"]) for x in r["top_sources"]],
       [("agent_prompt", "Refund.jsx", D(25), 3), ("agent_prompt", "Other.jsx", D(9), 1)])
    rng = f"from=2026-03-{d:02d}T00:00:00Z&to=2026-03-{d + 1:02d}T00:00:00Z"
    r2 = C.get(f"/v1/accounts/rf/regression-loops?{rng}")
    eq("refunds: regression-loops route: the run is no loop after its refunds", (r2.status, r2.get("loops")),
       (200, []))
    r2 = C.get(f"/v1/accounts/rf/hot-files?order_by=credits&{rng}")
    eq("refunds: hot-files route agrees", [(x["file"], n(x["credits"])) for x in r2.get("rows") or []],
       [("Refund.jsx", D(25)), ("Other.jsx", D(9))])
    # creditctl audit of the account's export, from a file and from standard input.
    export = C.get(f"/v1/accounts/rf/events?format=ndjson&limit=1000&{rng}").text
    path = os.path.join(TMP, "refunds.ndjson")
    with open(path, "w") as f:
        f.write(export)
    args = ["--format", "json", "--plan", "enterprise", "--from", f"2026-03-{d:02d}T00:00:00Z",
            "--to", f"2026-03-{d + 1:02d}T00:00:00Z", "--cycle-days", str(cycle_days("rf"))]
    rc, out, err = ctl("audit", path, *args)
    eq("refunds: creditctl audit of the export equals the route's report", (rc, loads(out) if rc == 0 else err),
       (0, r))
    rc, out, err = ctl("audit", "-", *args, stdin=export)
    eq("refunds: creditctl audit of standard input too", (rc, loads(out) if rc == 0 else err), (0, r))


def refunded_charges_save_nothing():
    """DESIGN.md section 2: refunds are subtracted, and a fix saves what the replay of its
    policy saves. A charge refunded in full cost nothing net: caching its repeat, turning
    discuss off or scoping the prompt saves nothing on it, in the audit's fixes and in
    `creditctl replay` of the same events. (At the clock as the sections before left it:
    the audit's default range is the account's only cycle.)"""
    C.create_account("rfsave", "builder")
    big = {"model": "gpt-4o", "input_tokens": 6000, "output_tokens": 1500}
    site = {"call_site": "p.onLoad"}
    C.charge("rfsave", usage=big, kind="integration.invoke_llm", cache_key="k1", metadata=site)
    second = C.charge("rfsave", usage=big, kind="integration.invoke_llm", cache_key="k1", metadata=site)
    turn = C.charge("rfsave", amount=2, kind="discuss_turn", metadata={"feature": "f"})
    for cid in (second["charge_id"], turn["charge_id"]):
        rr = C.post(f"/v1/accounts/rfsave/charges/{cid}/refunds", {"idempotency_key": h.key(), "reason": "x"})
        eq(f"refunded save nothing: {cid} refunded in full", rr.status, 201)
    r = C.get("/v1/accounts/rfsave/audit?format=json").doc
    eq("refunded save nothing: the repeat cost nothing net: no waste", n(r["repeated_calls"]["waste"]), D(0))
    for fid in ("cache_integrations", "discuss_for_planning"):
        f = fix(r, fid)
        eq(f"refunded save nothing: fix {fid} saves nothing", None if f is None else n(f["saved"]),
           None if f is None else D(0))
    path = os.path.join(TMP, "refunded.ndjson")
    with open(path, "w") as f:
        f.write(C.get("/v1/accounts/rfsave/events?format=ndjson&limit=1000").text)
    rc, out, err = ctl("replay", path, "--policy", "cache", "--policy", "discuss-off", "--json")
    doc = loads(out) if rc == 0 else {"error": err}
    eq("refunded save nothing: creditctl replay saves nothing on refunded charges",
       [(x["policy"], n(x["saved"]), n(x["after"])) for x in doc.get("policies", [])],
       [(x, D(0), n(r["total"])) for x in ("cache", "discuss-off", "combined")])


def replay_plan_by_pool():
    """`creditctl replay --policy plan:ID` judges each pool against its own allowance (the
    two-pools example: message and integration credits). Found by an audit: the pools'
    burns were added up and set against the first pool's allowance."""
    ex = os.path.join(ROOT, "config", "examples")
    lines = []
    for d in range(30):
        for i in range(37):
            kind = "agent_prompt" if i < 7 else "integration.send_email"
            lines.append({"at": f"2026-03-{1 + d:02d}T{i // 4:02d}:{(i % 4) * 10:02d}:00Z",
                          "account_id": "tp", "user_id": "u", "type": "charge", "kind": kind,
                          "pool": "message" if i < 7 else "integration", "credits": 1,
                          "idempotency_key": f"tp-{d}-{i}"})
    path = write_events("two_pools_plan.ndjson", lines)
    args = ["--plans", os.path.join(ex, "two-pools.toml"), "--rate-card", os.path.join(ex, "two-pools-rate-card.toml"),
            "--json"]
    rc, out, err = ctl("replay", path, "--policy", "plan:builder", "--policy", "plan:free", *args)
    doc = loads(out) if rc == 0 else {"error": err}
    plans = {p["policy"]: p["plan"] for p in doc.get("policies", [])}
    eq("replay by pool: builder (250 message, 10,000 integration) fits 210 and 900 a period",
       (plans.get("plan:builder") or {}).get("fits"), True)
    eq("replay by pool: free (25 message, 100 integration) does not; integration fits least (900/100 > 210/25)",
       ((plans.get("plan:free") or {}).get("fits"), (plans.get("plan:free") or {}).get("pool"),
        (plans.get("plan:free") or {}).get("need_per_cycle")), (False, "integration", 900))


def sums_past_int64():
    """DESIGN.md: every addition on money is overflow-checked. Each imported line is within
    the API's limit, but 10,000 of them sum past the int64 range of millicredits: the
    analytics report the bound (api-notes) instead of wrapping to a negative total or
    stopping the server, for every reader of the account, and `creditctl` offline too."""
    C.create_account("ovf", "pro")
    lines = []
    for i in range(10000):
        when = f"2026-03-03T{8 + i // 3600:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z"
        for typ, kind, meta, extra in (
                ("charge", "agent_prompt", {"file": "a.tsx", "feature": "f", "intent": "fix"}, {}),
                ("charge", "integration.invoke_llm", {"call_site": "p"}, {"cache_key": "k1"}),
                ("cache_hit", "integration.invoke_llm", {"call_site": "p"}, {"cache_key": "k1"})):
            lines.append(json.dumps(dict({"at": when, "account_id": "ovf", "user_id": "lee", "type": typ,
                                          "kind": kind, "pool": "credits", "credits": 999999999999.999,
                                          "idempotency_key": f"ov-{typ}-{kind}-{i}", "metadata": meta},
                                         **extra)))
    if _clock[0] < "2026-03-04T00:00:00Z":
        C.set_clock("2026-03-04T00:00:00Z")
        _clock[0] = "2026-03-04T00:00:00Z"
    r = C.post("/v1/admin/import?mode=analytics", raw=("\n".join(lines) + "\n").encode())
    eq("sums past int64: every line imported", (r.status, r.get("imported"), r.get("rejected")),
       (200, len(lines), 0))
    bound = D("9223372036854775.807")
    rng = "from=2026-03-03T00:00:00Z&to=2026-03-04T00:00:00Z"
    u = C.get(f"/v1/accounts/ovf/usage?group_by=kind&{rng}")
    eq("sums past int64: usage reports the bound", (u.status, n(u.doc["total"]) if u.status == 200 else u.text),
       (200, bound))
    shares = [n(x["share"]) for x in u.doc["rows"]] if u.status == 200 else []
    check("sums past int64: every row's share is a fraction above 0 (found by an audit: all 0)",
          shares and all(D(0) < x <= D(1) for x in shares), u.doc)
    hf = C.get(f"/v1/accounts/ovf/hot-files?order_by=credits&{rng}")
    eq("sums past int64: hot-files reports the bound",
       (hf.status, [n(x["credits"]) for x in hf.doc["rows"]] if hf.status == 200 else hf.text), (200, [bound]))
    cs = C.get(f"/v1/accounts/ovf/cache-stats?{rng}")
    eq("sums past int64: cache-stats saved reports the bound",
       (cs.status, n(cs.doc["saved"]) if cs.status == 200 else cs.text), (200, bound))
    for route in ("regression-loops", "burn", "forecast", "alerts"):
        rr = C.get(f"/v1/accounts/ovf/{route}?{rng}" if route == "regression-loops" else f"/v1/accounts/ovf/{route}")
        eq(f"sums past int64: {route} answers", rr.status, 200)
    rd = SRV.client(C.create_key("ovf", role="read"))
    for fmt in ("json", "md", "html"):
        rr = rd.get(f"/v1/accounts/ovf/audit?format={fmt}&{rng}")
        eq(f"sums past int64: the audit ({fmt}) answers a read key", rr.status, 200)
        if fmt == "json":
            eq("sums past int64: the audit's total is the bound", n(rr.doc["total"]), bound)
    eq("sums past int64: the server still serves", C.get("/healthz").status, 200)
    path = os.path.join(TMP, "ovf.ndjson")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    rc, out, err = ctl("audit", path, "--format", "json", "--plan", "pro")
    eq("sums past int64: creditctl audit reports the bound", (rc, n(loads(out)["total"]) if rc == 0 else err),
       (0, bound))
    rc, out, err = ctl("replay", path, "--policy", "cache", "--policy", "revert-loops", "--json")
    eq("sums past int64: creditctl replay reports the bound", (rc, n(loads(out)["before"]) if rc == 0 else err),
       (0, bound))


def advice():
    # One day of burn scaled to a cycle: used_per_cycle = 30 x the day, need = 1.1 x that.
    d = 7
    cases = (
        ("adv-up", "starter", 100, "upgrade_now", "builder"),          # need 3300 > 2000, runs out
        ("adv-down", "pro", 10, "downgrade", "starter"),               # need 330
        ("adv-stay", "starter", 55, "stay", "starter"),                # need 1815
        ("adv-next", "starter", 62, "upgrade_next_cycle", "builder"),  # 1860 fits, need 2046 does not
        ("adv-edge", "elite", 2000, "upgrade_now", "enterprise"),      # +800 USD = 100 x 8 h
        ("adv-dear", "pro", 2000, "upgrade_next_cycle", "enterprise"),  # +900 USD > 800
    )
    for i, (acct, plan, burn, action, target) in enumerate(cases):
        C.create_account(acct, plan)
        charge(acct, at(d, i), "backend_function", burn, "app")
        r = audit(acct, d)
        a = r["advice"] or {}
        eq(f"advice {plan} burning {burn}/day: {action} {target}", (a.get("action"), a.get("plan")),
           (action, target))
    a = audit("adv-up", d)["advice"]
    eq("advice: a projected use past the allowance is utilization 1 (a fraction) and runs out",
       (n(a["utilization"]), a["runs_out"]), (D(1), True))
    r = audit("adv-edge", d)
    a = r["advice"]
    eq("advice at the break-even edge: price delta 800 USD, 8 engineering hours",
       (n(a["price_delta_usd"]), n(a["engineering_hours"])), (D(800), D(8)))
    check("advice is not a finding", all(c == "share_out_of_range" for c in codes(r)), codes(r))


# ------------------------------------------------------------------ pools

def two_pools():
    """API.md: every analytics route takes `pool` (default: the plan's first pool). With the
    two-pool catalog the audit covers one pool, and its advice's figures are that pool's
    burn and allowance; the plan it advises covers every pool (a plan change moves them
    all), so it is the same whichever pool is asked, on the audit and on /forecast."""
    srv = h.start(manual_clock=True, extra_args=[
        "--plans", os.path.join(ROOT, "config/examples/two-pools.toml"),
        "--rate-card", os.path.join(ROOT, "config/examples/two-pools-rate-card.toml")])
    try:
        c = srv.client()
        c.set_clock("2026-03-02T00:00:00Z")
        c.create_account("tp", "starter")  # message 100, integration 2,000 credits; 20 USD
        # March 2: 6 message credits (three agent prompts) and 50 integration credits.
        c.set_clock("2026-03-02T10:00:00Z")
        for i in range(3):
            r = c.charge("tp", amount=2, kind="agent_prompt", user_id="dana",
                         metadata={"file": "src/a.jsx", "intent": "fix"})
            eq(f"two pools: prompt {i} draws from message", (r.status, r.get("pool")), (201, "message"))
        for i in range(10):
            r = c.charge("tp", amount=5, kind="integration.invoke_llm", user_id="app",
                         metadata={"call_site": "page:x"})
            eq(f"two pools: call {i} draws from integration", (r.status, r.get("pool")), (201, "integration"))
        rng = "from=2026-03-02T00:00:00Z&to=2026-03-03T00:00:00Z"
        r = c.get(f"/v1/accounts/tp/audit?{rng}")
        eq("two pools: the audit is of the plan's first pool by default", (r.status, r.get("pool")),
           (200, "message"))
        burn = {x["source"]: n(x["credits"]) for x in r.get("burn_by_source") or []}
        eq("two pools: the message pool's burn only", (n(r.get("total")), r.get("events"), burn),
           (D(6), 3, {"agent": D(6), "integrations": D(0), "discuss": D(0), "backend": D(0)}))
        a = r.get("advice") or {}
        # One day of 6 credits over the 31-day cycle (March 2 to April 2): 186 a cycle, need
        # 204.6 > the 100 message credits of starter; builder (250, 50 USD) is the cheapest
        # plan whose message pool covers it, 30 USD more (under 100 USD x 8 h): upgrade now.
        eq("two pools: advice on the message pool: its allowance and burn",
           (n(a.get("allowance")), n(a.get("used_per_cycle")), n(a.get("need")), a.get("runs_out")),
           (D(100), D(186), D("204.6"), True))
        eq("two pools: advice on the message pool: upgrade now to builder", (a.get("action"), a.get("plan")),
           ("upgrade_now", "builder"))
        route = r.doc
        r = c.get(f"/v1/accounts/tp/audit?{rng}&pool=integration")
        eq("two pools: pool=integration", (r.status, r.get("pool"), n(r.get("total")), r.get("events")),
           (200, "integration", D(50), 10))
        a = r.get("advice") or {}
        # 50 a day: 1,550 a cycle, need 1,705, within starter's 2,000 integration credits;
        # but the message pool needs builder, and a plan change moves both pools (found by an
        # audit: "stay" here, an upgrade on the message pool, a downgrade with other burns).
        eq("two pools: advice on the integration pool: its figures, the message pool's plan",
           (n(a.get("allowance")), n(a.get("used_per_cycle")), n(a.get("need")), a.get("action"), a.get("plan")),
           (D(2000), D(1550), D(1705), "upgrade_now", "builder"))
        eq("two pools: the same reason whichever pool is asked, naming both needs",
           (a.get("reason"), "message 204.6 and integration 1705" in (a.get("reason") or "")),
           ((route.get("advice") or {}).get("reason"), True))
        eq("two pools: the integration audit's top source", [(x["kind"], x["key"], n(x["credits"]))
                                                             for x in r.get("top_sources") or []],
           [("integration.invoke_llm", "page:x", D(50))])
        integration = r.doc
        # creditctl audit of the export gives the route's report, pool for pool.
        exported = c.get("/v1/accounts/tp/events?format=ndjson&limit=1000&" + rng).text
        path = os.path.join(TMP, "two-pools.ndjson")
        with open(path, "w") as f:
            f.write(exported)
        common = ["audit", path, "--format", "json", "--plans", "config/examples/two-pools.toml",
                  "--rate-card", "config/examples/two-pools-rate-card.toml", "--plan", "starter",
                  "--from", "2026-03-02T00:00:00Z", "--to", "2026-03-03T00:00:00Z", "--cycle-days", "31"]
        rc, out, err = ctl(*common)
        eq("two pools: creditctl audit of the export (the plan's first pool) equals the route's",
           (rc, loads(out) if rc == 0 else err), (0, route))
        rc, out, err = ctl(*common, "--pool", "integration")
        eq("two pools: creditctl audit --pool integration equals the route's pool=integration",
           (rc, loads(out) if rc == 0 else err), (0, integration))
        rc, out, err = ctl(*common, "--pool", "nope")
        eq("two pools: creditctl audit --pool of a pool the plan lacks is a usage error", rc, 2)
        for route_name in ("audit", "alerts"):
            r = c.get(f"/v1/accounts/tp/{route_name}?pool=nope")
            eq(f"two pools: {route_name}?pool=nope is 400 invalid_request, param pool",
               (r.status, r.code, r.err.get("param")), (400, "invalid_request", "pool"))
        # Alerts of one pool: a 1 % threshold fires on both pools (6 % and 2.5 % used).
        r = c.put("/v1/accounts/tp/alert-rules", {"thresholds": [1]})
        eq("two pools: alert rules", r.status, 200)
        c.charge("tp", amount=1, kind="agent_prompt", user_id="dana")
        c.charge("tp", amount=1, kind="integration.send_email", user_id="app")
        pools = lambda q: sorted(x["details"]["pool"] for x in c.get("/v1/accounts/tp/alerts" + q).get("alerts") or [])
        eq("two pools: alerts without pool are the plan's first pool's (API.md's default)", pools(""), ["message"])
        eq("two pools: alerts?pool=message", pools("?pool=message"), ["message"])
        eq("two pools: alerts?pool=integration", pools("?pool=integration"), ["integration"])
        # Regression loops are a pool's too: three fix turns of 12 message credits.
        c.create_account("tp-loop", "elite")
        for i in range(3):
            c.charge("tp-loop", amount=12, kind="agent_prompt", user_id="dana",
                     metadata={"file": "src/loop.jsx", "intent": "fix", "snapshot_id": f"s{i}"})
        loops = lambda q: [(x["file"], x["turns"]) for x in
                           c.get("/v1/accounts/tp-loop/regression-loops" + q).get("loops") or []]
        eq("two pools: the loop is in the message pool (the default)", loops(""), [("src/loop.jsx", 3)])
        eq("two pools: and not in the integration pool", loops("?pool=integration"), [])
        # The typical shares are of the whole burn: a pool only some kinds draw from is not
        # held to them (found by an audit: every two-pools audit had share_out_of_range).
        for q in ("", "&pool=integration"):
            a = c.get("/v1/accounts/tp/audit?format=json" + q).doc
            check(f"two pools: no share_out_of_range in a one-pool audit ({q or 'message'})",
                  "share_out_of_range" not in codes(a), codes(a))
        # A refused refund names its charge's pool, kind and user, as the refund would.
        ch = c.charge("tp", amount=1, kind="integration.send_email", user_id="app")
        for i in range(2):
            rr = c.post(f"/v1/accounts/tp/charges/{ch['charge_id']}/refunds", {"idempotency_key": f"tp-rf{i}",
                                                                              "reason": "x"})
        eq("two pools: a second full refund is 409", rr.status, 409)
        ev = c.get("/v1/accounts/tp/events?type=rejected&pool=integration").get("events") or []
        eq("two pools: its rejected event is the integration pool's, with kind and user",
           [(e["charge_id"], e["kind"], e["user_id"]) for e in ev if e["refused_by"] == "charge_not_refundable"],
           [(ch["charge_id"], "integration.send_email", "app")])
        # /forecast: one full day of burn (March 2: 7 message, 51 integration credits), needs
        # 238.7 and 1,739.1 over the 31-day cycle: builder, now (the message pool runs out),
        # whichever pool is asked; engineering_hours in the shortest form (0.3, not "0.30").
        c.set_clock("2026-03-03T12:00:00Z")
        fm = c.get("/v1/accounts/tp/forecast?pool=message")
        fi = c.get("/v1/accounts/tp/forecast?pool=integration")
        advice = lambda r: (r.status, (r.get("advice") or {}).get("action"), (r.get("advice") or {}).get("plan"))
        eq("two pools: /forecast?pool=message advises builder now", advice(fm), (200, "upgrade_now", "builder"))
        eq("two pools: /forecast?pool=integration advises the same", advice(fi), (200, "upgrade_now", "builder"))
        eq("two pools: /forecast's needs are each pool's", (n(fm.get("need")), n(fi.get("need"))),
           (D("238.7"), D("1739.1")))
        eq("two pools: /forecast's reason is the same for both pools",
           (fi.get("advice") or {}).get("reason"), (fm.get("advice") or {}).get("reason"))
        check("two pools: /forecast writes engineering_hours in the shortest form",
              '"engineering_hours":0.3,' in fi.text, fi.text)
    finally:
        srv.stop()


# ------------------------------------------------------------------ replay

def write_events(name, events):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        for e in events:
            line = {"account_id": "acme", "type": "charge", "user_id": "u1", "metadata": {}}
            line.update(e)
            f.write(h.dumps(line) + "\n")
    return path


def replay(path, *args):
    rc, out, err = ctl("replay", path, "--json", *args)
    if rc != 0:
        raise AssertionError(f"replay {args}: {rc} {err}")
    doc = loads(out)
    return {p["policy"]: p for p in doc["policies"]}, doc


def quote(usage):
    r = C.post("/v1/accounts/edges/quote", {"kind": "agent_prompt", "usage": usage})
    if r.status != 200:
        raise AssertionError(f"quote: {r}")
    return n(r["cost"])


def replay_cache():
    llm = {"kind": "integration.invoke_llm", "credits": D(2),
           "usage": {"model": "gpt-4o-mini", "input_tokens": 500, "output_tokens": 200}}
    evs = [dict(llm, at="2026-03-02T10:00:00Z", cache_key="k"),
           dict(llm, at="2026-03-09T09:59:59.999Z", cache_key="k"),    # 1 ms inside the TTL: 0
           dict(llm, at="2026-03-09T10:00:00Z", cache_key="k"),        # exactly 7 days: pays, refills
           dict(llm, at="2026-03-09T10:00:01Z", cache_key="k"),        # hit again
           dict(llm, at="2026-03-09T11:00:00Z", metadata={"request_hash": "k"}),  # same key by hash
           dict(llm, at="2026-03-09T12:00:00Z", kind="integration.generate_image",
                usage={"count": 1}, cache_key="k", credits=D(8))]      # another kind: a miss
    path = write_events("cache.ndjson", evs)
    p, doc = replay(path, "--policy", "cache")
    c = p["cache"]
    eq("replay cache: repeats within 7 days cost 0, at exactly 7 days the call pays",
       (n(c["before"]), n(c["after"]), c["events_dropped"]), (D(18), D(12), 3))
    eq("replay cache: period 8 days, saved per cycle = 6 x 30 / 8", (doc["period_days"], n(c["saved_per_cycle"])),
       (8, D("22.5")))
    p, _ = replay(path, "--policy", "cache", "--ttl-days", "8")
    eq("replay cache --ttl-days 8: every repeat of the same kind is a hit", n(p["cache"]["saved"]), D(8))
    sites = [dict(llm, at="2026-03-02T10:00:00Z", metadata={"call_site": "pages/A"}, credits=D(4)),
             dict(llm, at="2026-03-02T10:01:00Z", metadata={"call_site": "pages/A"}, credits=D(4)),
             dict(llm, at="2026-03-02T10:02:00Z", metadata={"call_site": "pages/B"}, credits=D(4)),
             {"kind": "agent_prompt", "at": "2026-03-02T10:03:00Z", "credits": D(4)}]
    path = write_events("rates.ndjson", sites)
    p, _ = replay(path, "--policy", "cache", "--hit-rate", "pages/A=0.5")
    eq("replay cache: a hit rate for one call site saves that share there only",
       n(p["cache"]["saved"]), D(4))
    p, _ = replay(path, "--policy", "cache", "--hit-rate", "0.25")
    eq("replay cache: a hit rate for every call site (integrations only)", n(p["cache"]["saved"]), D(3))
    p, _ = replay(path, "--policy", "cache", "--hit-rate", "0.25", "--hit-rate", "pages/B=1")
    eq("replay cache: a site's own rate over the global one", n(p["cache"]["saved"]), D(6))


def replay_scoped_discuss_limits_plan():
    ref = {"model": "default", "input_tokens": 10000, "output_tokens": 2200, "files_read": 5,
           "lines_emitted": 200, "lines_changed": 6}
    tight = {"model": "default", "input_tokens": 2200, "output_tokens": 120, "files_read": 1,
             "lines_emitted": 16, "lines_changed": 6}
    before = quote(ref)
    tight_cost = quote(tight)
    evs = [{"kind": "agent_prompt", "at": "2026-03-02T10:00:00Z", "credits": before, "usage": ref},
           {"kind": "agent_prompt", "at": "2026-03-02T10:01:00Z", "credits": tight_cost, "usage": tight}]
    path = write_events("scoped.ndjson", evs)
    p, _ = replay(path, "--policy", "scoped")
    s = p["scoped"]
    # min(1, (6 + 10) / 16) = 1 and one file read: the tight prompt is unchanged.
    eq("replay scoped: only the unscoped prompt changes", s["events_changed"], 1)
    check("replay scoped: it costs less, never more", D(0) < n(s["saved"]) < before, s)
    # DESIGN.md: output 2200 x min(1, (6 + 10) / 200) = 176; input 10000 / 5 = 2000; the other
    # dimensions (5 files read, 200 lines emitted, 6 changed) stay as recorded. On the default
    # card: 0.5 + 0.6 + 0.264 + 1 + 2 + 0.12 = 4.484 credits.
    after = quote({"model": "default", "input_tokens": 2000, "output_tokens": 176, "files_read": 5,
                   "lines_emitted": 200, "lines_changed": 6})
    eq("replay scoped: the scoped usage re-priced (4.484)", after, D("4.484"))
    eq("replay scoped: only output and input tokens rewritten", n(s["after"]), after + tight_cost)

    evs = [{"kind": "discuss_turn", "at": "2026-03-02T10:00:00Z", "credits": D(2)},
           {"kind": "discuss_turn", "at": "2026-03-02T10:00:00Z", "credits": D("1.5"), "user_id": "u2"},
           {"kind": "agent_prompt", "at": "2026-03-02T10:00:00Z", "credits": D(5)},
           {"type": "refund", "kind": "discuss_turn", "at": "2026-03-02T11:00:00Z", "credits": D("0.5")}]
    path = write_events("discuss.ndjson", evs)
    p, _ = replay(path, "--policy", "discuss-off")
    eq("replay discuss-off: discuss turns removed (refunds still subtracted)",
       (n(p["discuss-off"]["before"]), n(p["discuss-off"]["after"]), p["discuss-off"]["events_dropped"]),
       (D(8), D("4.5"), 2))

    # 2 per minute, burst 2: of 5 prompts at one instant 2 pass; 30 s later one token is back.
    evs = [{"kind": "agent_prompt", "at": "2026-03-02T10:00:00Z", "credits": D(1)} for _ in range(5)]
    evs += [{"kind": "agent_prompt", "at": "2026-03-02T10:00:30Z", "credits": D(1)} for _ in range(2)]
    evs += [{"kind": "agent_prompt", "at": "2026-03-02T10:00:00Z", "credits": D(1), "user_id": "u2"}]
    evs += [{"kind": "backend_function", "at": "2026-03-02T10:00:00Z", "credits": D(1)} for _ in range(3)]
    evs += [{"kind": "integration.send_email", "at": "2026-03-02T10:00:00Z", "credits": D(1)} for _ in range(3)]
    evs.sort(key=lambda e: e["at"])
    path = write_events("limits.ndjson", evs)
    p, _ = replay(path, "--policy", "rate-limit", "--per-minute", "2", "--burst", "2")
    eq("replay rate-limit: requests over the limit dropped, per user; backend and email not limited",
       (p["rate-limit"]["events_dropped"], n(p["rate-limit"]["saved"])), (4, D(4)))

    evs = [{"kind": "backend_function", "at": "2026-03-02T10:00:00Z", "credits": D(40)},
           {"kind": "discuss_turn", "at": "2026-03-03T10:00:00Z", "credits": D(20)}]
    path = write_events("plan.ndjson", evs)
    p, doc = replay(path, "--policy", "plan:free", "--policy", "plan:starter", "--policy", "discuss-off")
    eq("replay plan: 60 credits in 2 days is 900 a cycle; free (100) does not fit",
       (n(p["plan:free"]["plan"]["need_per_cycle"]), p["plan:free"]["plan"]["fits"]), (D(900), False))
    eq("replay plan: starter (2000) fits", p["plan:starter"]["plan"]["fits"], True)
    comb = p["combined"]
    eq("replay combined: discuss off then the plan: 600 a cycle", n(comb["after"]), D(40))


# ------------------------------------------------------------------ simulator

def simulate(profile, seed, start, days, accounts=1, plan=None):
    base = f"{profile}-{seed}-{start[:10]}-{days}-{accounts}"
    out = os.path.join(TMP, base + ".ndjson")
    truth = os.path.join(TMP, base + ".truth.json")
    args = ["simulate", "--profile", profile, "--seed", str(seed), "--start", start, "--days", str(days),
            "--accounts", str(accounts), "--out", out, "--truth", truth]
    if plan:
        args += ["--plan", plan]
    rc, _, err = ctl(*args)
    if rc != 0:
        raise AssertionError(f"simulate {args}: {rc} {err}")
    with open(truth) as f:
        t = loads(f.read())
    rc, out_json, err = ctl("audit", out, "--format", "json")
    if rc != 0:
        raise AssertionError(f"audit {out}: {rc} {err}")
    doc = loads(out_json)
    reports = doc["reports"] if "reports" in doc else [doc]
    return out, t, reports


def clean_has_no_findings():
    for seed, start, days, accounts in ((11, "2026-03-02T00:00:00Z", 28, 2), (12, "2026-03-07T00:00:00Z", 30, 2),
                                        (13, "2026-02-10T00:00:00Z", 45, 2), (14, "2026-05-01T00:00:00Z", 7, 3),
                                        (15, "2026-06-03T00:00:00Z", 90, 1)):
        _, t, reports = simulate("clean", seed, start, days, accounts)
        eq(f"simulate clean seed {seed}: a report per account", len(reports), accounts)
        for r in reports:
            eq(f"clean seed {seed} {start[:10]} {days}d {r['account_id']}: no findings", codes(r), [])
            eq(f"clean seed {seed} {r['account_id']}: no fixes", r["fixes"], [])
        eq(f"clean seed {seed}: the truth plants nothing",
           [(a["loops"], a["repeated_calls"], a["unscoped"]["prompts"], a["small_edits"],
             a["turns_without_snapshot"], a["outlier_users"], a["discuss_heavy"]) for a in t["accounts"]],
           [([], [], 0, 0, 0, [], False)] * accounts)
        check(f"clean seed {seed}: the truth names seed, start and days",
              t["seed"] == seed and t["start"] == start and t["days"] == days, t)


def clean_through_the_route():
    path, _, _ = simulate("clean", 21, "2026-01-01T00:00:00Z", 31)
    C.create_account("sim-clean", "pro")
    lines = h.charge_lines(path, "sim-clean")
    r = C.post("/v1/admin/import?mode=analytics", raw="\n".join(lines) + "\n")
    eq("clean month imports", (r.status, r.get("rejected")), (200, 0))
    r = C.get("/v1/accounts/sim-clean/audit?from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z")
    eq("audit route of a clean month: no findings", codes(r.doc or {"findings": ["?"]}), [])
    eq("audit route of a clean month: no fix, and nothing saved by all of them together",
       (r.get("fixes"), n(r.get("saved_per_cycle_all_fixes"))), ([], 0))


def all_fixes_together():
    """"All fixes together" (docs/audit-schema.md) chains the policies of the fixes listed,
    no other: none on a clean month; on a typical one what `creditctl replay` saves with
    exactly those policies, never more than the sum of the fixes' savings."""
    _, _, reports = simulate("clean", 7, "2026-03-01T00:00:00Z", 30)
    eq("clean: no fix, nothing saved by all fixes together",
       (reports[0]["fixes"], n(reports[0]["saved_per_cycle_all_fixes"])), ([], 0))
    for profile in ("typical", "regression-heavy", "outlier-user"):
        path, _, reports = simulate(profile, 7, "2026-03-01T00:00:00Z", 30)
        r = reports[0]
        listed = [f["policy"] for f in r["fixes"] if f["policy"]]
        total = sum(n(f["saved_per_cycle"]) for f in r["fixes"])
        together = n(r["saved_per_cycle_all_fixes"])
        check(f"{profile}: all fixes together ({together}) is at most the sum of the fixes ({total})",
              together <= total, r["fixes"])
        check(f"{profile}: discuss-off is no fix here, so not among them", "discuss-off" not in listed, listed)
        args = []
        for policy in listed:
            args += ["--policy", policy]
        p, _ = replay(path, *args)
        chained = n(p["combined"]["saved_per_cycle"] if len(listed) > 1 else p[listed[0]]["saved_per_cycle"])
        eq(f"{profile}: all fixes together is the replay of the listed fixes' policies, chained",
           together, min(chained, total))


def planted_codes(a):
    """The findings a truth's account calls for."""
    want = set()
    if a["loops"]:
        want.add("regression_loops")
    if sum(x["paid_repeats"] for x in a["repeated_calls"]) > 0:
        want.add("repeated_integration_calls")
    if a["unscoped"]["prompts"] > 0:
        want.add("unscoped_prompts")
    if a["small_edits"] > 0:
        want.add("small_edits_via_agent")
    if a["turns_without_snapshot"] > 0:
        want.add("agent_turns_without_snapshot")
    if a["outlier_users"]:
        want.add("user_outliers")
    if a["discuss_heavy"]:
        want.add("discuss_share_high")
    return want


def profiles_plant_their_waste():
    headline = {"typical": "unscoped_prompts", "llm-on-page-load": "repeated_integration_calls",
                "regression-heavy": "regression_loops", "unscoped": "unscoped_prompts",
                "discuss-heavy": "discuss_share_high", "outlier-user": "user_outliers"}
    for profile, code in headline.items():
        _, t, reports = simulate(profile, 5, "2026-04-06T00:00:00Z", 21)
        a, r = t["accounts"][0], reports[0]
        check(f"{profile}: the truth plants {code}", code in planted_codes(a), a)
        eq(f"{profile}: the findings are what was planted (shares aside)",
           set(codes(r)) - {"share_out_of_range"}, planted_codes(a))
        eq(f"{profile}: loops as planted", sorted((x["file"], x["first_at"], x["turns"], x["revert_to_snapshot"])
                                                  for x in r["regression_loops"]["loops"]),
           sorted((x["file"], x["first_at"], x["turns"], x["revert_to_snapshot"]) for x in a["loops"]))
        eq(f"{profile}: paid repeats as planted", r["repeated_calls"]["paid_repeats"],
           sum(x["paid_repeats"] for x in a["repeated_calls"]))
        eq(f"{profile}: unscoped prompts as planted (by user)",
           {x["user_id"]: x["count"] for x in r["unscoped_prompts"]["by_user"]},
           {x["user_id"]: x["prompts"] for x in a["unscoped"]["by_user"]})
        eq(f"{profile}: small edits as planted", r["small_edits"]["turns"], a["small_edits"])
        eq(f"{profile}: turns without snapshot as planted", r["snapshots"]["without_snapshot"],
           a["turns_without_snapshot"])
        eq(f"{profile}: outliers as planted", [o["user_id"] for o in r["outliers"]], a["outlier_users"])
        eq(f"{profile}: discuss_heavy as planted", "discuss_share_high" in codes(r), a["discuss_heavy"])
    _, t, r1 = simulate("typical", 8, "2026-04-06T00:00:00Z", 3)
    _, t2, r2 = simulate("typical", 8, "2026-04-16T00:00:00Z", 3)
    check("simulate: the start instant places the period", r1[0]["from"] == "2026-04-06T00:00:00Z"
          and r2[0]["from"] == "2026-04-16T00:00:00Z", (r1[0]["from"], r2[0]["from"]))


for section in (unscoped_and_small_edits, shares_at_band_edges, outliers, repeats, loops, refunds, advice, two_pools,
                replay_cache, replay_scoped_discuss_limits_plan, clean_has_no_findings,
                clean_through_the_route, all_fixes_together, profiles_plant_their_waste,
                refunded_charges_save_nothing, sums_past_int64, replay_plan_by_pool):
    h.run_section(section)
h.finish()
