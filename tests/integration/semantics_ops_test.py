"""The operations side and creditctl, black-box, against API.md ("Operations", "Running",
"Event format") and DESIGN.md (sections 1-3): what the other integration tests leave out.

  - POST /v1/admin/import: each starred field of "Event format" required, `seq` ignored,
    bad type/kind/credits refused line by line, and values outside an enumerated field's
    set (object, refused_by, priced_by, drawn_from's source, a negative available_after),
    only the first 100 errors listed, the mode
    (default analytics; anything else 400), admin keys only; mode=apply in time order, at
    or after the ledger's last instant and not after the clock's now (409
    backfill_out_of_order otherwise);
  - the manual clock: 1970-01-01T00:00:00Z on a fresh data dir, the ledger's last logged
    instant after a restart (moving it logs nothing), 409 clock_backwards, 403
    clock_disabled without --clock manual;
  - creditd's flags: --idempotency-keys-max reached gives 503 idempotency_capacity (replays
    still answered), bad flag values refused with a message and a non-zero exit (never a
    crash), DATA/admin.key mode 0600 on one line, one ready line, SIGTERM exits 0;
  - creditctl (DESIGN.md section 3): human output by default, `--json` the same as
    `--format json` on every command, `audit FILE --format json|md|html`, `replay` and
    `simulate` on files, bad input files a clear error and a non-zero exit (a line with an
    enumerated value outside its set is a bad line, as on import);
  - `creditctl simulate --profile clean` audits to no findings for 1, 2, 3, 7 and 30 days.

    python3 tests/integration/semantics_ops_test.py --creditd BUILD/creditd [--creditctl BUILD/creditctl] [-v]
"""
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

check, eq, D = h.check, h.eq, h.D
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CTL = h.creditctl_path()
TMP = tempfile.mkdtemp(prefix="creditd-ops-")
h._tmpdirs.append(TMP)

T0 = "2026-03-01T00:00:00Z"
NOW = "2026-03-10T00:00:00Z"


def n(x):
    return D(str(x))


def line(at="2026-03-02T10:00:00Z", account="imp", user="u1", type_="charge", kind="agent_prompt",
         credits=1, drop=(), **extra):
    d = {"at": at, "account_id": account, "user_id": user, "type": type_, "kind": kind, "credits": credits}
    d.update(extra)
    for k in drop:
        d.pop(k, None)
    return json.dumps(d)


def body(lines):
    return "\n".join(lines) + "\n"


def crashed(rc, err):
    """A signal (negative rc, 128+ from a shell) or an uncaught exception / assertion."""
    return rc is None or rc < 0 or rc >= 128 or "terminate called" in err or "invariant broken" in err \
        or "Assertion" in err or "Segmentation" in err


def ctl(*args, key=None, url=None, timeout=180):
    """Runs creditctl; returns (exit code, stdout, stderr)."""
    cmd = [CTL]
    if url:
        cmd += ["--url", url]
    if key:
        cmd += ["--key", key]
    cmd += list(args)
    env = {k: v for k, v in os.environ.items() if k != "CREDITD_KEY"}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    if h.VERBOSE:
        print("$ creditctl " + " ".join(args) + f"  -> {p.returncode}")
    return p.returncode, p.stdout, p.stderr


def parses(text):
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


# ----------------------------------------------------------------------------- import

SRV = h.start(manual_clock=True)
ADMIN = SRV.client()
URL = f"http://127.0.0.1:{SRV.port}"


def import_setup():
    ADMIN.set_clock(T0)
    for acct in ("imp", "ap", "ap-gate", "errs", "enm"):
        ADMIN.create_account(acct, plan="enterprise")
    ADMIN.set_clock(NOW)


def import_required_fields():
    # Each starred field of "Event format" dropped from an otherwise good charge line.
    starred = ["at", "account_id", "user_id", "type", "kind", "credits"]
    lines = [line(drop=(f,), idempotency_key=f"miss-{f}") for f in starred]
    lines.append(line(idempotency_key="good-1"))
    r = ADMIN.post("/v1/admin/import?mode=analytics", raw=body(lines))
    eq("import: a line without each starred field is refused, the good one imported",
       (r.status, r.get("imported"), r.get("rejected")), (200, 1, 6))
    errors = r.get("errors") or []
    eq("import: the refused lines by number (1-based)", [e.get("line") for e in errors], [1, 2, 3, 4, 5, 6])
    check("import: every error has a reason", all(isinstance(e.get("reason"), str) and e["reason"] for e in errors),
          errors)
    eq("import: an analytics import touches no balance", n(ADMIN.pool("imp")["used"]), D(0))

    # Bad values of type, kind, credits and at, line by line.
    bad = [line(type_="bogus"), line(kind="integration.teleport"), line(credits=-3),
           line(at="yesterday"), line(account="bad id!"), line(credits="1")]
    r = ADMIN.post("/v1/admin/import", raw=body([line(idempotency_key="good-2")] + bad))
    eq("import: bad type, kind, credits, at and account_id refused line by line",
       (r.status, r.get("imported"), r.get("rejected"), [e["line"] for e in r.get("errors") or []]),
       (200, 1, 6, [2, 3, 4, 5, 6, 7]))

    # seq is assigned by creditd: a given one is ignored (not kept, not a duplicate test).
    r = ADMIN.post("/v1/admin/import", raw=body([line(seq=987654321, idempotency_key="seq-1"),
                                                 line(seq=987654321, idempotency_key="seq-2")]))
    eq("import: seq given on two lines is ignored: both imported", (r.status, r.get("imported"), r.get("rejected")),
       (200, 2, 0))
    ev = ADMIN.get("/v1/accounts/imp/events?from=2026-03-02T00:00:00Z&to=2026-03-03T00:00:00Z&limit=1000")
    seqs = [e.get("seq") for e in (ev.get("events") or []) if e.get("idempotency_key") in ("seq-1", "seq-2")]
    check("import: the events listed carry creditd's own sequence numbers",
          len(seqs) == 2 and 987654321 not in seqs and seqs[0] != seqs[1], seqs)
    imported = [e.get("imported") for e in (ev.get("events") or [])]
    check("import: the listed events are marked imported", imported and all(x is True for x in imported), imported)

    # Unknown accounts and duplicates (same account, same idempotency key) line by line.
    r = ADMIN.post("/v1/admin/import", raw=body([line(account="nobody-here"), line(idempotency_key="good-1"),
                                                 line(idempotency_key="fresh-1")]))
    eq("import: unknown account and duplicate key refused, the rest imported",
       (r.status, r.get("imported"), r.get("rejected"), [e["line"] for e in r.get("errors") or []]),
       (200, 1, 2, [1, 2]))
    r = ADMIN.get("/v1/accounts/imp/usage?group_by=kind&from=2026-03-02T00:00:00Z&to=2026-03-03T00:00:00Z")
    eq("import: the imported lines feed the time-ranged usage (five lines of 1 credit)",
       (r.status, n(r.get("total", -1))), (200, D(5)))


def import_enumerated_values():
    # DESIGN.md "Events" (expire with object: hold | grant) and API.md "Event format"
    # (refused_by pool | daily_cap, priced_by usage | amount, drawn_from allowance |
    # grant:<id>, credits available) fix these values: another one is refused line by line
    # and nothing of the line is imported (found by an audit: "object":"bogus",
    # "refused_by":"weird" and a negative available_after were kept and exported).
    at = "2026-03-04T10:00:00Z"
    exp = dict(at=at, account="enm", type_="expire", user=None, kind=None, pool="credits", credits=3)
    rej = dict(at=at, account="enm", type_="rejected", refused_by="pool")
    bad = [(line(**exp, object="bogus", idempotency_key="enb-1"), "object"),
           (line(**exp, idempotency_key="enb-2"), "object"),
           (line(**dict(rej, refused_by="weird"), idempotency_key="enb-3"), "refused_by"),
           (line(**rej, available_after=-5, idempotency_key="enb-4"), "available_after"),
           (line(**rej, priced_by="guess", idempotency_key="enb-5"), "priced_by"),
           (line(at=at, account="enm", object="hold", idempotency_key="enb-6"), "object"),
           (line(at=at, account="enm", refused_by="pool", idempotency_key="enb-7"), "refused_by"),
           (line(at=at, account="enm", drawn_from=[{"source": "bucket", "credits": 1}],
                 idempotency_key="enb-8"), "drawn_from.source"),
           (line(at=at, account="enm", type_="grant", user=None, kind=None, pool="credits", object="gift",
                 idempotency_key="enb-9"), "object"),
           (line(at=at, account="enm", type_="plan_change", user=None, kind=None, object="hold",
                 idempotency_key="enb-10"), "object")]
    good = [line(**exp, object="hold", idempotency_key="eng-1"),
            line(**exp, object="grant", idempotency_key="eng-2"),
            line(**dict(rej, refused_by="daily_cap"), available_after=0, priced_by="amount", idempotency_key="eng-3"),
            line(**dict(rej, refused_by="charge_not_refundable", user=None), idempotency_key="eng-4"),
            line(at=at, account="enm", type_="grant", user=None, kind=None, pool="credits", object="pack",
                 idempotency_key="eng-5"),
            line(at=at, account="enm", type_="plan_change", user=None, kind=None, object="pending", plan="pro",
                 previous_plan="enterprise", idempotency_key="eng-6"),
            # A pool the account's plan lacks is history all the same (the plan may have changed).
            line(at=at, account="enm", pool="a-retired-pool", idempotency_key="eng-7")]
    r = ADMIN.post("/v1/admin/import?mode=analytics", raw=body([b for b, _ in bad] + good))
    errors = r.get("errors") or []
    eq("import: a value outside an enumerated field's set is refused line by line, the good lines imported",
       (r.status, r.get("imported"), r.get("rejected"), [e.get("line") for e in errors]),
       (200, len(good), len(bad), list(range(1, len(bad) + 1))))
    eq("import: each refusal names the field", [(e.get("reason") or "").startswith(field + ":")
                                                 for e, (_, field) in zip(errors, bad)], [True] * len(bad))
    ev = ADMIN.get(f"/v1/accounts/enm/events?from=2026-03-04T00:00:00Z&to=2026-03-05T00:00:00Z&limit=1000")
    keys = sorted(e.get("idempotency_key") for e in ev.get("events") or [])
    eq("import: nothing of a refused line is listed", keys, sorted(f"eng-{i}" for i in range(1, len(good) + 1)))
    nd = ADMIN.get("/v1/accounts/enm/events?format=ndjson&from=2026-03-04T00:00:00Z&to=2026-03-05T00:00:00Z")
    check("import: nor exported", nd.status == 200 and "bogus" not in nd.text and "weird" not in nd.text
          and "enb-" not in nd.text, nd.text[:500])


def import_first_100_errors():
    lines = []
    for i in range(1, 156):
        lines.append(line(account="errs", idempotency_key=f"e-{i}") if i % 31 == 0 else "{not json")
    r = ADMIN.post("/v1/admin/import", raw=body(lines))
    good = [i for i in range(1, 156) if i % 31 == 0]
    eq("import: 150 bad lines: all counted", (r.status, r.get("imported"), r.get("rejected")), (200, len(good), 150))
    errors = r.get("errors") or []
    want = [i for i in range(1, 156) if i % 31 != 0][:100]
    eq("import: only the first 100 errors are listed, in line order", [e["line"] for e in errors], want)


def import_modes_and_keys():
    r = ADMIN.post("/v1/admin/import?mode=bogus", raw=body([line(idempotency_key="mode-1")]))
    check("import: mode=bogus is 400 invalid_request naming mode",
          h.is_error(r, 400, "invalid_request") and r.err.get("param") == "mode", r)
    r = ADMIN.post("/v1/admin/import?mode=", raw=body([line(idempotency_key="mode-2")]))
    check("import: an empty mode is 400 invalid_request", h.is_error(r, 400, "invalid_request"), r)
    r = ADMIN.post("/v1/admin/import", raw=body([line(idempotency_key="mode-3")]))
    eq("import: no mode is analytics", (r.status, r.get("imported")), (200, 1))
    eq("import: ... and touches no balance", n(ADMIN.pool("imp")["used"]), D(0))

    service = ADMIN.create_service_key()
    read = ADMIN.create_key("imp", role="read")
    meter = ADMIN.create_key("imp", role="meter")
    for name, k in (("service", service), ("meter", meter), ("read", read)):
        for mode in ("analytics", "apply"):
            r = ADMIN.with_key(k).post(f"/v1/admin/import?mode={mode}",
                                       raw=body([line(account="imp", idempotency_key=f"nk-{name}-{mode}")]))
            check(f"import: a {name} key is refused (403 forbidden, mode={mode})", h.is_error(r, 403, "forbidden"), r)
    r = ADMIN.with_key(None).post("/v1/admin/import", raw=body([line(idempotency_key="nk-none")]))
    check("import: no key is 401", h.is_error(r, 401, "unauthorized"), r)
    r = ADMIN.with_key("not-a-key").post("/v1/admin/import", raw=body([line(idempotency_key="nk-bad")]))
    check("import: a bad key is 401", h.is_error(r, 401, "unauthorized"), r)
    ev = ADMIN.get("/v1/accounts/imp/events?limit=1000")
    keys = [e.get("idempotency_key") for e in ev.get("events") or []]
    check("import: nothing of the refused requests was imported", not any(str(k).startswith("nk-") for k in keys), keys)


def charges_of(acct):
    ev = ADMIN.get(f"/v1/accounts/{acct}/events?type=charge&limit=1000")
    return [(e["at"], n(e["credits"]), n(e["available_after"])) for e in ev.get("events") or []]


def import_apply():
    # Given out of time order: applied in time order (available_after falls in `at` order).
    lines = [line(account="ap", at="2026-03-05T10:00:00Z", credits=1, kind="backend_function", idempotency_key="a-1"),
             line(account="ap", at="2026-03-03T10:00:00Z", credits=2, kind="backend_function", idempotency_key="a-2"),
             line(account="ap", at="2026-03-04T10:00:00Z", credits=3, kind="backend_function", idempotency_key="a-3")]
    r = ADMIN.post("/v1/admin/import?mode=apply", raw=body(lines))
    eq("apply: three lines out of order: 200, all applied", (r.status, r.get("imported"), r.get("rejected")),
       (200, 3, 0))
    eq("apply: applied in time order (events in sequence order, balances after each)", charges_of("ap"),
       [("2026-03-03T10:00:00Z", D(2), D(99998)), ("2026-03-04T10:00:00Z", D(3), D(99995)),
        ("2026-03-05T10:00:00Z", D(1), D(99994))])
    eq("apply: the lines are real charges (used 6)", n(ADMIN.pool("ap")["used"]), D(6))

    # Before the ledger's last logged instant (2026-03-05T10:00:00Z): the whole request.
    r = ADMIN.post("/v1/admin/import?mode=apply",
                   raw=body([line(account="ap", at="2026-03-05T09:59:59Z", kind="backend_function",
                                  idempotency_key="a-old")]))
    check("apply: a line before the ledger's last instant is 409 backfill_out_of_order",
          h.is_error(r, 409, "backfill_out_of_order"), r)
    r = ADMIN.post("/v1/admin/import?mode=apply",
                   raw=body([line(account="ap", at="2026-03-10T00:00:01Z", kind="backend_function",
                                  idempotency_key="a-future")]))
    check("apply: a line after the clock's now is 409 backfill_out_of_order", h.is_error(r, 409, "backfill_out_of_order"),
          r)
    eq("apply: the refused requests changed nothing", n(ADMIN.pool("ap")["used"]), D(6))

    # At the last instant itself, and at now itself: both allowed.
    r = ADMIN.post("/v1/admin/import?mode=apply",
                   raw=body([line(account="ap", at="2026-03-05T10:00:00Z", credits=4, kind="backend_function",
                                  idempotency_key="a-4"),
                             line(account="ap", at=NOW, credits=5, kind="backend_function", idempotency_key="a-5")]))
    eq("apply: lines at the last logged instant and at the clock's now are applied",
       (r.status, r.get("imported"), r.get("rejected")), (200, 2, 0))
    eq("apply: used 6 + 4 + 5", n(ADMIN.pool("ap")["used"]), D(15))

    # Unknown accounts and repeated keys: refused line by line, the rest applied.
    r = ADMIN.post("/v1/admin/import?mode=apply",
                   raw=body([line(account="nobody-here", at=NOW, kind="backend_function", idempotency_key="a-6"),
                             line(account="ap", at=NOW, credits=5, kind="backend_function", idempotency_key="a-5"),
                             line(account="ap", at=NOW, credits=7, kind="backend_function", idempotency_key="a-7")]))
    eq("apply: unknown account and a key applied before are refused line by line",
       (r.status, r.get("imported"), r.get("rejected"), [e["line"] for e in r.get("errors") or []]),
       (200, 1, 2, [1, 2]))
    eq("apply: used 15 + 7", n(ADMIN.pool("ap")["used"]), D(22))
    # A line missing a starred field is refused before anything is applied.
    r = ADMIN.post("/v1/admin/import?mode=apply",
                   raw=body([line(account="ap", at=NOW, kind="backend_function", drop=("credits",),
                                  idempotency_key="a-8")]))
    eq("apply: a line without credits is refused", (r.status, r.get("imported"), r.get("rejected")), (200, 0, 1))
    # A key of one of the account's events is a duplicate however old (DESIGN.md), not only
    # within the 24 hours of the idempotency table: a-3 was applied at 03-04, now is 03-10.
    # Nor twice in one body, 2 days apart.
    r = ADMIN.post("/v1/admin/import?mode=apply",
                   raw=body([line(account="ap", at=NOW, credits=3, kind="backend_function", idempotency_key="a-3"),
                             line(account="ap", at=NOW, credits=9, kind="backend_function", idempotency_key="a-9")]))
    eq("apply: a key applied days ago is refused as a duplicate",
       (r.status, r.get("imported"), r.get("rejected"), [e["reason"][:10] for e in r.get("errors") or []]),
       (200, 1, 1, ["duplicate:"]))
    eq("apply: used 22 + 9 (a-3 not again)", n(ADMIN.pool("ap")["used"]), D(31))



def import_apply_is_history():
    """mode=apply takes over another system's history: a line keeps its cache_key (the audit
    finds repeated calls by it; found by an audit: it was dropped), and neither the cache
    nor the rate limits, which are for live requests, change what the history says: a line
    whose key has a live cache entry is still the charge it was, and a minute with more
    lines than the plan's limit is applied whole."""
    ADMIN.create_account("hist", plan="starter")  # per user 60 a minute, burst 60
    llm = "integration.invoke_llm"
    r = ADMIN.put("/v1/accounts/hist/cache/ck", {"kind": llm, "response": "live entry"})
    eq("history: a live cache entry for ck", r.status, 204)
    lines = [line(account="hist", at=NOW, credits=1, kind=llm, cache_key="ck", idempotency_key=f"h-{i}",
                  metadata={"call_site": "page"}) for i in range(70)]
    r = ADMIN.post("/v1/admin/import?mode=apply", raw=body(lines))
    eq("history: 70 lines in one minute are all applied (no rate limit)",
       (r.status, r.get("imported"), r.get("rejected")), (200, 70, 0))
    ev = ADMIN.get("/v1/accounts/hist/events?limit=1000").get("events") or []
    eq("history: 70 charges, no cache hit, each keeping its cache_key",
       sorted({(e["type"], e["cache_key"]) for e in ev if e["type"] in ("charge", "cache_hit")}), [("charge", "ck")])
    eq("history: used 70", n(ADMIN.pool("hist")["used"]), D(70))
    r = ADMIN.post("/v1/admin/import?mode=apply",
                   raw=body([line(account="hist", at=NOW, credits=1, kind=llm, pool="elsewhere",
                                  idempotency_key="h-pool")]))
    eq("history: a line naming another pool than its kind's is refused, not moved",
       (r.status, r.get("imported"), [e["reason"][:5] for e in r.get("errors") or []]), (200, 0, ["pool:"]))
    r = ADMIN.post("/v1/admin/import?mode=apply",
                   raw=body([line(account="hist", at=NOW, credits=1, kind=llm, cache_key="x" * 65,
                                  idempotency_key="h-long"),
                             line(account="hist", at=NOW, credits=1, kind=llm, cache_key="a b",
                                  idempotency_key="h-space")]))
    eq("history: a cache_key a charge would refuse is refused line by line",
       (r.status, r.get("imported"), r.get("rejected"),
        sorted(e["reason"][:9] for e in r.get("errors") or [])), (200, 0, 2, ["cache_key", "cache_key"]))
    a = ADMIN.get("/v1/accounts/hist/audit?format=json")
    eq("history: the audit finds the 69 paid repeats by cache_key",
       (a.status, a.doc["repeated_calls"]["paid_repeats"] if a.status == 200 else a.text), (200, 69))


def import_lines_read_whole():
    # One event per line: a second value on a line is refused, never dropped unseen; a
    # byte order mark before the first line is no text; a blank line is skipped.
    ADMIN.create_account("whole", plan="enterprise")
    a = line(account="whole", at="2026-03-02T11:00:00Z", idempotency_key="whole-1")
    b = line(account="whole", at="2026-03-02T11:00:01Z", idempotency_key="whole-2")
    c = line(account="whole", at="2026-03-02T11:00:02Z", idempotency_key="whole-3")
    raw = ("\ufeff" + a + "\n" + a.replace("whole-1", "whole-4") + b + "\n" + c + "}\n\n").encode()
    r = ADMIN.post("/v1/admin/import?mode=analytics", raw=raw)
    eq("import: a BOM line, two values on a line, a stray brace",
       (r.status, r.get("imported"), r.get("rejected"), [e["line"] for e in r.get("errors") or []]),
       (200, 1, 2, [2, 3]))


def import_after_a_key():
    """The ledger's last instant moves with every logged batch, a key's creation (no ledger
    command) included, and is the same after a restart (found by an audit: the key moved it
    live but not in the replay, and the import's check read neither)."""
    srv = h.start(manual_clock=True)
    c = srv.client()
    c.set_clock("2026-03-01T00:00:00Z")
    c.create_account("ak", "enterprise")
    c.set_clock("2026-03-10T00:00:00Z")
    c.create_key("ak", "read")
    late = body([line(account="ak", at="2026-03-05T10:00:00Z", kind="backend_function", idempotency_key="ak-1")])
    for when, s in (("before a restart", srv), ("after a restart", None)):
        if s is None:
            eq("after a key: SIGTERM exits 0", srv.stop(), 0)
            s = h.start(manual_clock=True, data_dir=srv.data_dir)
        r = s.client().post("/v1/admin/import?mode=apply", raw=late)
        check(f"after a key ({when}): a line before it is 409 backfill_out_of_order naming the key's instant",
              h.is_error(r, 409, "backfill_out_of_order") and "2026-03-10T00:00:00Z" in r.err.get("message", ""), r)
    s.stop()


# ----------------------------------------------------------------------------- clock

def clock_routes():
    fresh = h.start(manual_clock=True)
    c = fresh.client()
    acct = c.create_account("epoch", plan="starter")
    eq("clock: an account created on a fresh data dir starts its cycle at the epoch",
       c.account(acct)["cycle"]["start"], "1970-01-01T00:00:00Z")
    r = c.post("/v1/admin/clock", {"now": "1970-01-01T00:00:00Z"})
    eq("clock: setting the same instant is not backwards", (r.status, r.get("now")), (200, "1970-01-01T00:00:00Z"))
    r = c.post("/v1/admin/clock", {"now": "2026-03-05T12:00:00+02:00"})
    eq("clock: an offset is accepted and answered in UTC", (r.status, r.get("now")), (200, "2026-03-05T10:00:00Z"))
    r = c.post("/v1/admin/clock", {"now": "2026-03-05T09:59:59Z"})
    check("clock: moving back is 409 clock_backwards", h.is_error(r, 409, "clock_backwards"), r)
    r = c.post("/v1/admin/clock", {"now": "soon"})
    check("clock: a bad instant is 400 invalid_request", h.is_error(r, 400, "invalid_request"), r)
    r = c.post("/v1/admin/clock", {})
    check("clock: a missing now is 400", r.status == 400, r)
    read = c.create_key(acct, role="read")
    r = c.with_key(read).post("/v1/admin/clock", {"now": "2026-03-06T00:00:00Z"})
    check("clock: a read key is 403 forbidden", h.is_error(r, 403, "forbidden"), r)
    service = c.create_service_key()
    r = c.with_key(service).post("/v1/admin/clock", {"now": "2026-03-06T00:00:00Z"})
    check("clock: a service key is 403 forbidden", h.is_error(r, 403, "forbidden"), r)

    # The last logged instant: a charge at 10:00; then the clock moves on alone.
    r = c.charge(acct, amount=1)
    eq("clock: a charge at 10:00", r.status, 201)
    c.set_clock("2026-03-20T00:00:00Z")
    c.close()
    eq("clock: SIGTERM exits 0", fresh.stop(), 0)
    fresh.start()
    c = fresh.client()
    r = c.post("/v1/admin/clock", {"now": "2026-03-05T09:59:59Z"})
    check("clock after a restart: before the last logged instant is backwards", h.is_error(r, 409, "clock_backwards"),
          r)
    other = c.create_account("after-restart", plan="starter")
    eq("clock after a restart: it starts at the last logged instant, not where it was moved",
       c.account(other)["cycle"]["start"], "2026-03-05T10:00:00Z")
    r = c.post("/v1/admin/clock", {"now": "2026-03-05T10:00:00Z"})
    eq("clock after a restart: the last logged instant itself may be set", r.status, 200)
    c.close()
    fresh.stop()

    system = h.start(manual_clock=False)
    s = system.client()
    r = s.post("/v1/admin/clock", {"now": "2030-01-01T00:00:00Z"})
    check("clock: without --clock manual the route is 403 clock_disabled", h.is_error(r, 403, "clock_disabled"), r)
    s.close()
    eq("system clock server: SIGTERM exits 0", system.stop(), 0)


# ----------------------------------------------------------------------------- flags

def run_creditd(args, timeout_s=15):
    """creditd with args that should be refused: (exit code, stderr); a server that starts
    instead is stopped (exit code None)."""
    data = tempfile.mkdtemp(prefix="flags-", dir=TMP)
    cmd = [h.ARGS.creditd, "--data", data] + list(args)
    if not any(a == "--listen" for a in args):
        cmd += ["--listen", f"127.0.0.1:{h.free_port()}"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout_s)
        return p.returncode, err + out
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        return None, "still running: " + (out + err)[:300]


def bad_flags():
    port = h.free_port()
    cases = [
        (["--idempotency-keys-max", "abc"], "--idempotency-keys-max"),
        (["--idempotency-keys-max", "0"], "--idempotency-keys-max"),
        (["--idempotency-keys-max", "-5"], "--idempotency-keys-max"),
        (["--listen", "127.0.0.1:notaport"], "--listen"),
        (["--listen", "127.0.0.1:"], "--listen"),
        (["--listen", f"127.0.0.1:{port + 70000}"], "--listen"),
        (["--listen", "no-port-here"], "--listen"),
        (["--clock", "sundial"], "--clock"),
        (["--plans", os.path.join(TMP, "missing-plans.toml")], "missing-plans.toml"),
        (["--rate-card", os.path.join(TMP, "missing-card.toml")], "missing-card.toml"),
        (["--no-such-flag"], "--no-such-flag"),
        # Values that would delete history at the start, or serve nothing.
        (["--events-retain-days", "0"], "--events-retain-days"),
        (["--events-retain-days", "-1"], "--events-retain-days"),
        (["--io-threads", "0"], "--io-threads"),
        (["--snapshot-wal-bytes", "0"], "--snapshot-wal-bytes"),
        (["--snapshot-wal-bytes", "-1"], "--snapshot-wal-bytes"),
        (["--events-bytes-max", "-5"], "--events-bytes-max"),
        (["--store", ""], "--store"),
        # Past the flag's type: refused, not clamped to its largest value (found by an audit).
        (["--snapshot-wal-bytes", "18446744073709551616"], "--snapshot-wal-bytes"),
        (["--import-bytes-max", "99999999999999999999999"], "--import-bytes-max"),
        (["--events-bytes-max", "18446744073709551616"], "--events-bytes-max"),
        (["--accounts-max", "0x10"], "--accounts-max"),
        (["--rate-buckets-max", "1"], "--rate-buckets-max"),
    ]
    # A port in use: refused before the recovery, naming the address once.
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    where = f"127.0.0.1:{busy.getsockname()[1]}"
    cases.append((["--listen", where], where))
    for args, named in cases:
        rc, err = run_creditd(args)
        label = " ".join(args).replace(TMP, "TMP")
        check(f"creditd {label}: refused with exit 2 (as every refused start)", rc == 2, (rc, err))
        check(f"creditd {label}: not a crash", rc is not None and not crashed(rc, err), (rc, err))
        check(f"creditd {label}: the message names {named}", named in err, err)
    check("a port in use: named once", err.count("cannot listen on") == 1, err)
    busy.close()


def idempotency_capacity():
    srv = h.start(manual_clock=True, extra_args=["--idempotency-keys-max", "3"])
    c = srv.client()
    c.set_clock(T0)
    acct = c.create_account("cap", plan="starter")  # key 1
    r1 = c.charge(acct, amount=1, idem="cap-1")  # key 2
    r2 = c.charge(acct, amount=1, idem="cap-2")  # key 3
    eq("capacity 3: the account and two charges fit", (r1.status, r2.status), (201, 201))
    r = c.charge(acct, amount=1, idem="cap-3")
    check("capacity 3: a fourth key is 503 idempotency_capacity", h.is_error(r, 503, "idempotency_capacity"), r)
    r = c.post("/v1/accounts", {"account_id": "cap2", "plan": "free", "idempotency_key": "cap-acct-2"})
    check("capacity 3: an admin POST /v1/accounts too", h.is_error(r, 503, "idempotency_capacity"), r)
    eq("capacity 3: the refused charge changed nothing", n(c.pool(acct)["used"]), D(2))
    r = c.charge(acct, amount=1, idem="cap-1")
    eq("capacity 3: a replay of a stored key is still answered",
       (r.status, r.headers.get("idempotent-replayed"), r.get("charge_id")), (201, "true", r1.get("charge_id")))
    c.set_clock("2026-03-02T00:00:01Z")
    r = c.charge(acct, amount=1, idem="cap-3")
    eq("capacity 3: 24 hours later the keys have expired and the 503'd key is free", r.status, 201)
    eq("capacity 3: used 3", n(c.pool(acct)["used"]), D(3))
    c.close()
    srv.stop()


def no_fsync_metrics():
    # --no-fsync (benchmarks) writes the log without fdatasync: the fsync metrics count none.
    def metric(text, name):
        for ln in text.splitlines():
            if ln.startswith(name + " "):
                return float(ln.split()[1])
        return None
    for flags, synced in (([], True), (["--no-fsync"], False)):
        srv = h.start(manual_clock=True, extra_args=flags)
        c = srv.client()
        c.set_clock(T0)
        acct = c.create_account("nf", plan="starter")
        eq(f"{flags or 'durable'}: a charge", c.charge(acct, amount=1, idem="nf-1").status, 201)
        text = c.get("/metrics", key=None).text
        fsyncs = metric(text, "creditd_fsyncs_total")
        batches = metric(text, "creditd_batches_total")
        check(f"{flags or 'durable'}: batches were logged", batches is not None and batches >= 2, batches)
        check(f"{flags or 'durable'}: creditd_fsyncs_total counts fdatasyncs only",
              fsyncs is not None and (fsyncs >= 1) == synced and (synced or fsyncs == 0), fsyncs)
        c.close()
        srv.stop()


def running():
    data = tempfile.mkdtemp(prefix="running-", dir=TMP)
    srv = h.start(manual_clock=True, data_dir=data)
    path = os.path.join(data, "admin.key")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    eq("admin.key: mode 0600", oct(mode), oct(0o600))
    with open(path) as f:
        text = f.read()
    check("admin.key: the key on one line", text.count("\n") == 1 and text.endswith("\n") and len(text.strip()) >= 32
          and " " not in text.strip(), repr(text[:80]))
    ready = [l for l in srv.output().splitlines() if "ready" in l.lower()]
    eq("one ready line", len(ready), 1)
    check("the ready line names the address", f"127.0.0.1:{srv.port}" in (ready[0] if ready else ""), ready)
    c = srv.client()
    eq("ready: it serves", c.get("/healthz").doc, {"status": "ok"})
    c.set_clock(T0)
    acct = c.create_account("run", plan="starter")
    eq("a charge before SIGTERM", c.charge(acct, amount=2).status, 201)
    c.close()
    eq("SIGTERM exits 0", srv.stop(), 0)
    srv.start()
    with open(path) as f:
        eq("admin.key: kept across a restart", f.read(), text)
    eq("admin.key: still mode 0600", oct(stat.S_IMODE(os.stat(path).st_mode)), oct(0o600))
    ready = [l for l in srv.output().splitlines() if "ready" in l.lower()]
    eq("one ready line after a restart", len(ready), 1)
    c = srv.client()
    eq("the charge survived the clean shutdown", n(c.pool(acct)["used"]), D(2))
    c.close()
    eq("SIGTERM exits 0 again", srv.stop(), 0)


# ----------------------------------------------------------------------------- creditctl

def sim_file(profile, days, seed, start="2026-03-02T00:00:00Z", accounts=1):
    out = os.path.join(TMP, f"{profile}-{days}-{seed}-{start[:10]}-{accounts}.ndjson")
    if not os.path.exists(out):
        rc, _, err = ctl("simulate", "--profile", profile, "--days", str(days), "--seed", str(seed), "--start", start,
                         "--accounts", str(accounts), "--out", out)
        if rc != 0:
            raise AssertionError(f"simulate {profile} {days} {seed}: {rc} {err}")
    return out


def ctl_offline():
    path = sim_file("typical", 3, 7)
    rc, out, err = ctl("simulate", "--profile", "typical", "--days", "3", "--seed", "7", "--start",
                       "2026-03-02T00:00:00Z")
    with open(path) as f:
        eq("simulate: to stdout the same NDJSON as --out (deterministic from the seed)", (rc, out), (0, f.read()))
    lines = out.splitlines()
    check("simulate: every line an event of 'Event format'",
          lines and all({"at", "account_id", "user_id", "type", "kind", "credits"} <= set(json.loads(l)) for l in lines),
          lines[:2])

    # audit: md by default; json | md | html; --json is --format json wherever it is given.
    rc, md, err = ctl("audit", path)
    eq("audit FILE: exits 0", rc, 0)
    check("audit FILE: Markdown by default", md.startswith("# Credit audit: acct-001"), md[:100])
    rc, md2, _ = ctl("audit", path, "--format", "md")
    eq("audit --format md is the default", md2, md)
    rc, js, err = ctl("audit", path, "--format", "json")
    check("audit --format json: a JSON report", rc == 0 and parses(js) and json.loads(js).get("account_id") == "acct-001",
          js[:200])
    for args in (("audit", path, "--json"), ("--json", "audit", path), ("audit", "--json", path),
                 ("--format", "json", "audit", path)):
        rc, out, err = ctl(*args)
        eq(f"creditctl {' '.join(args).replace(path, 'FILE')}: the same JSON as --format json", (rc, out), (0, js))
    rc, html, _ = ctl("audit", path, "--format", "html")
    low = html.lower()
    check("audit --format html: a page with inline SVG and no script",
          rc == 0 and low.startswith("<!doctype html>") and "<svg" in low and "<script" not in low, html[:200])
    rc, out, err = ctl("audit", path, "--format", "pdf")
    check("audit --format pdf: a usage error (exit 2) with a message", rc == 2 and "format" in err, (rc, err))

    # replay: a table by default; --json / --format json the same JSON.
    rc, table, err = ctl("replay", path, "--policy", "cache", "--policy", "discuss-off")
    check("replay FILE: a human table by default",
          rc == 0 and not parses(table) and "policy" in table and "cache" in table and "discuss-off" in table, table[:300])
    rc, rj, err = ctl("replay", path, "--policy", "cache", "--policy", "discuss-off", "--json")
    doc = json.loads(rj) if parses(rj) else {}
    check("replay --json: the policies as JSON", rc == 0 and [p.get("policy") for p in doc.get("policies", [])][:2]
          == ["cache", "discuss-off"], rj[:300])
    for args in (("replay", path, "--policy", "cache", "--policy", "discuss-off", "--format", "json"),
                 ("--json", "replay", path, "--policy", "cache", "--policy", "discuss-off")):
        rc, out, err = ctl(*args)
        eq(f"creditctl {' '.join(args).replace(path, 'FILE')}: the same JSON as --json", (rc, out), (0, rj))
    rc, out, err = ctl("replay", path, "--policy", "teleport")
    check("replay: an unknown policy is a usage error (exit 2) with a message", rc == 2 and "teleport" in err, (rc, err))
    rc, out, err = ctl("replay", path)
    check("replay: no --policy is a usage error (exit 2)", rc == 2 and err, (rc, err))

    # simulate's own bad input.
    for args, named in ((("--profile", "chaos"), "chaos"), (("--days", "0"), "days"),
                        (("--start", "next tuesday"), "start"), (("--accounts", "0"), "accounts"),
                        (("--start", "2026-03-01T10:30:00Z"), "UTC midnight")):
        rc, out, err = ctl("simulate", *args, "--out", os.path.join(TMP, "never.ndjson"))
        check(f"simulate {' '.join(args)}: exit 2 naming {named}", rc == 2 and named in err, (rc, err))
    check("simulate refused: no event file is written", not os.path.exists(os.path.join(TMP, "never.ndjson")))
    rc, out, err = ctl("simulate", "--days", "1", "--out", os.path.join(TMP, "no-dir", "x.ndjson"))
    check("simulate --out into a missing directory: a non-zero exit with a message",
          rc != 0 and not crashed(rc, err) and "no-dir" in err, (rc, err))


def ctl_bad_files():
    good = sim_file("typical", 2, 3)
    with open(good) as f:
        good_lines = f.read().splitlines()
    mixed = os.path.join(TMP, "mixed.ndjson")
    with open(mixed, "w") as f:
        f.write("\n".join(good_lines[:5] + ["{not json", "[1,2]"] + good_lines[5:10]) + "\n")
    garbage = os.path.join(TMP, "garbage.bin")
    with open(garbage, "wb") as f:
        f.write(bytes(range(256)) * 64)
    long_line = os.path.join(TMP, "long.ndjson")
    with open(long_line, "w") as f:
        f.write(good_lines[0] + "\n" + '{"note":"' + "x" * (1 << 20) + '"}\n' + good_lines[1] + "\n")
    directory = os.path.join(TMP, "a-directory.ndjson")
    os.makedirs(directory, exist_ok=True)
    missing = os.path.join(TMP, "missing.ndjson")

    for cmd in (("audit", "--format", "json"), ("replay", "--policy", "cache", "--json")):
        name = cmd[0]
        for path, what in ((missing, "a missing file"), (directory, "a directory")):
            rc, out, err = ctl(cmd[0], path, *cmd[1:])
            check(f"{name} of {what}: exit 3 (bad input file)", rc == 3, (rc, err))
            check(f"{name} of {what}: the message names the file", os.path.basename(path) in err, err)
            check(f"{name} of {what}: no crash", not crashed(rc, err), (rc, err))
        rc, out, err = ctl(cmd[0], mixed, *cmd[1:])
        check(f"{name} of a file with 2 bad lines: exit 3", rc == 3, (rc, err))
        check(f"{name} of a file with 2 bad lines: FILE:LINE for each", f"mixed.ndjson:6:" in err
              and f"mixed.ndjson:7:" in err, err)
        doc = json.loads(out) if parses(out) else {}
        if name == "audit":
            eq("audit of a file with 2 bad lines: the 10 good lines are still audited", doc.get("events"), 10)
        else:
            eq("replay of a file with 2 bad lines: the 10 good lines are still replayed", doc.get("events"), 10)
        rc, out, err = ctl(cmd[0], garbage, *cmd[1:])
        check(f"{name} of binary garbage: exit 3 without a crash", rc == 3 and not crashed(rc, err), (rc, err[:300]))
        rc, out, err = ctl(cmd[0], long_line, *cmd[1:])
        check(f"{name} of a file with a line over 1 MiB: exit 3, the line reported",
              rc == 3 and "long.ndjson:2:" in err, (rc, err[:300]))
    # An enumerated field's value outside the contract's set is a bad line too, reported by
    # number, as the server's import refuses it (the same reader).
    enum = os.path.join(TMP, "enum.ndjson")
    bogus = json.loads(good_lines[1])
    bogus.update(type="expire", object="bogus", user_id=None, kind=None)
    weird = json.loads(good_lines[2])
    weird.update(type="rejected", refused_by="weird")
    with open(enum, "w") as f:
        f.write("\n".join([good_lines[0], json.dumps(bogus), json.dumps(weird)] + good_lines[3:10]) + "\n")
    for cmd in (("audit", "--format", "json"), ("replay", "--policy", "cache", "--json")):
        rc, out, err = ctl(cmd[0], enum, *cmd[1:])
        doc = json.loads(out) if parses(out) else {}
        eq(f"{cmd[0]} of a file with object bogus and refused_by weird: exit 3, both lines reported, 8 read",
           (rc, "enum.ndjson:2: object" in err, "enum.ndjson:3: refused_by" in err, doc.get("events")),
           (3, True, True, 8))
    # A --plans FILE asked for is read, whether or not --plan uses it (it was ignored).
    missing_plans = os.path.join(TMP, "missing-plans.toml")
    for cmd in (("simulate", "--days", "1", "--out", os.path.join(TMP, "p.ndjson")), ("audit", good),
                ("replay", good, "--policy", "cache")):
        rc, out, err = ctl(*cmd, "--plans", missing_plans)
        check(f"{cmd[0]} --plans with a missing file: exit 2, naming it",
              rc == 2 and "missing-plans.toml" in err, (rc, err[:300]))


def ctl_online_format():
    ADMIN.set_clock(NOW)
    for args in (("balance", "ap"), ("usage", "ap", "--group-by", "kind"), ("accounts", "get", "ap")):
        rc1, js, err1 = ctl(*args, "--json", url=URL, key=SRV.admin_key)
        rc2, fj, err2 = ctl(*args, "--format", "json", url=URL, key=SRV.admin_key)
        eq(f"creditctl {' '.join(args)} --format json: the same as --json", (rc2, fj), (rc1, js))
        rc3, table, _ = ctl(*args, url=URL, key=SRV.admin_key)
        check(f"creditctl {' '.join(args)}: a human table by default", rc3 == 0 and not parses(table) and table.strip(),
              table[:200])
    eq("balance --json is the account", json.loads(js), ADMIN.get("/v1/accounts/ap").doc)
    rc, out, err = ctl("balance", "ap", "--format", "md", url=URL, key=SRV.admin_key)
    check("balance --format md: a usage error (exit 2) with a message", rc == 2 and "format" in err, (rc, err))


# ----------------------------------------------------------------------------- simulator

def clean_profile_any_period():
    # Monday, Saturday, Sunday, Thursday (a start is a UTC midnight: whole days are simulated).
    starts = ("2026-03-02T00:00:00Z", "2026-03-07T00:00:00Z", "2026-03-08T00:00:00Z", "2026-03-12T00:00:00Z")
    for days in (1, 2, 3, 7, 30):
        for seed in (1, 2, 3, 4, 5, 6):
            start = starts[seed % len(starts)]
            path = sim_file("clean", days, seed, start=start, accounts=2)
            rc, out, err = ctl("audit", path, "--format", "json")
            doc = json.loads(out) if parses(out) else {}
            reports = doc.get("reports", [doc] if doc else [])
            found = sorted({f["code"] for r in reports for f in r.get("findings", [])})
            eq(f"clean {days} day(s), seed {seed}, from {start[:10]}: no findings in either account",
               (rc, len(reports), found, [r.get("fixes") for r in reports]), (0, 2, [], [[], []]))
    # The other profiles still plant their headline waste over a week.
    headline = {"typical": "unscoped_prompts", "llm-on-page-load": "repeated_integration_calls",
                "unscoped": "unscoped_prompts", "discuss-heavy": "discuss_share_high", "outlier-user": "user_outliers"}
    for profile, code in headline.items():
        rc, out, err = ctl("audit", sim_file(profile, 7, 4), "--format", "json")
        codes = [f["code"] for f in json.loads(out).get("findings", [])] if parses(out) else []
        check(f"{profile}, 7 days: the audit finds {code}", code in codes, codes)
    rc, out, err = ctl("audit", sim_file("regression-heavy", 14, 4), "--format", "json")
    codes = [f["code"] for f in json.loads(out).get("findings", [])] if parses(out) else []
    check("regression-heavy, 14 days: the audit finds regression_loops", "regression_loops" in codes, codes)


for section in (import_setup, import_apply, import_apply_is_history, import_lines_read_whole, import_after_a_key, import_required_fields, import_enumerated_values,
                import_first_100_errors, import_modes_and_keys,
                ctl_online_format, clock_routes, bad_flags, idempotency_capacity, no_fsync_metrics, running, ctl_offline, ctl_bad_files,
                clean_profile_any_period):
    h.run_section(section)
h.finish()
