#!/usr/bin/env python3
"""Contract of the read side and the operations (API.md "Events and analytics (read)",
"Event format", "Operations"; DESIGN.md section 2): who may call each analytics route,
the answer shapes (every field API.md names, with its type and units), the query
parameters (filters, cursors, limits, bad values as 400 invalid_request naming the param,
an unknown account as 404), the exports' content types, the audit's default range, the
import's answer, the manual clock, /healthz, /metrics and /ui/.

Runs creditd with --clock manual on fresh data dirs (and once without it).
"""
import csv
import io
import json
import os
import re
import sys
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import D, check, eq, is_error, key  # noqa: E402

AP = h.AGENT_PROMPT_USAGE
INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")
DATE = re.compile(r"^\d{4}-\d\d-\d\d$")
EVENT_FIELDS = ["seq", "at", "account_id", "user_id", "type", "kind", "pool", "credits",
                "available_after", "drawn_from", "refused_by", "priced_by", "usage", "metadata",
                "cache_key", "idempotency_key", "rate_card_version", "imported"]
READ_ROUTES = ["events", "usage", "hot-files", "burn", "forecast", "regression-loops", "cache-stats",
               "alerts", "audit"]
POOL_ROUTES = ["events", "usage", "hot-files", "burn", "forecast", "regression-loops", "cache-stats"]


def is_num(v):
    return isinstance(v, (int, Decimal)) and not isinstance(v, bool)


def is_instant(v):
    return isinstance(v, str) and INSTANT.match(v) is not None


def is_fraction(v):
    return is_num(v) and 0 <= v <= 1


def bad_param(r, param):
    return is_error(r, 400, "invalid_request") and r.err.get("param") == param


def bad_params(route, base, cases):
    """Each (query, param) of `cases` on GET base?query is 400 invalid_request naming param."""
    for q, param in cases:
        r = C.get(f"{base}?{q}")
        check(f"{route}: {q} is 400 param {param}", bad_param(r, param), r)


def fields(doc, names):
    return isinstance(doc, dict) and all(n in doc for n in names)


def agent(c, acct, file, intent, snap, amount=None, user="dana", feature=None):
    md = {"file": file, "intent": intent, "snapshot_id": snap}
    if feature:
        md["feature"] = feature
    if amount is None:
        return c.charge(acct, usage=AP, kind="agent_prompt", user_id=user, metadata=md)
    return c.charge(acct, amount=amount, usage=AP, kind="agent_prompt", user_id=user, metadata=md)


# ----------------------------------------------------------------------------- the data

SRV = h.start(manual_clock=True)
C = SRV.client()
K = {}


def setup():
    c = C
    c.set_clock("2026-01-10T00:00:00Z")
    c.create_account("an", "pro")       # cycles anchored 10th 00:00: [01-10, 02-10), [02-10, 03-10)
    c.create_account("other", "pro")
    K["read"] = c.create_key("an", role="read")
    K["meter"] = c.create_key("an", role="meter")
    K["other_read"] = c.create_key("other", role="read")
    K["other_meter"] = c.create_key("other", role="meter")
    K["service"] = c.create_service_key()
    # The previous cycle: a file and a loop of its own, 3 fixes on old.js.
    c.set_clock("2026-01-15T09:00:00Z")
    for i in range(3):
        agent(c, "an", "src/old.js", "fix", f"snap-old-{i}", amount=20, feature="legacy")
    # The current cycle.
    c.set_clock("2026-02-12T09:00:00Z")
    for i in range(7):  # seven files, file i with i + 1 turns of 1 credit (hot files)
        for _ in range(i + 1):
            agent(c, "an", f"src/f{i}.js", "feature", f"snap-f{i}", amount=1, user="lee")
    # A regression loop on Checkout.jsx: 4 turns, 3 fixes, 40 credits within an hour.
    for j, intent in enumerate(("fix", "fix", "fix", "feature")):
        c.set_clock(f"2026-02-12T10:{10 * j:02d}:00Z")
        agent(c, "an", "src/pages/Checkout.jsx", intent, f"snap-loop-{j}", amount=10, feature="checkout")
    c.set_clock("2026-02-12T11:00:00Z")
    # Priced by usage, with a client's own metadata key.
    r = c.charge("an", usage=AP, kind="agent_prompt", user_id="dana",
                 metadata={"file": "src/App.jsx", "feature": "shell", "intent": "question",
                           "snapshot_id": "snap-u", "team": "web"})
    check("setup: a charge priced by usage", r.status == 201, r)
    K["usage_charge"] = r.get("charge_id")
    c.charge("an", amount=2, kind="discuss_turn", user_id="dana", usage={"model": "default"})
    # The integration cache: a miss, the PUT, a hit (call site page:home).
    llm = {"model": "gpt-4o-mini", "input_tokens": 500, "output_tokens": 200}
    r = c.charge("an", usage=llm, kind="integration.invoke_llm", user_id="lee", cache_key="ck-1",
                 metadata={"call_site": "page:home"})
    check("setup: the cache miss is charged", r.status == 201 and r.get("cached") is False, r)
    r = c.put("/v1/accounts/an/cache/ck-1", {"kind": "integration.invoke_llm", "response": {"text": "hi"},
                                             "call_site": "page:home"})
    check("setup: cache PUT 204", r.status == 204, r)
    r = c.charge("an", usage=llm, kind="integration.invoke_llm", user_id="lee", cache_key="ck-1",
                 metadata={"call_site": "page:home"})
    check("setup: the cache hit", r.status == 201 and r.get("cached") is True, r)
    K["saved"] = r.get("saved")
    # A hold captured, a hold voided, a refund, a refusal.
    hp = "/v1/accounts/an/holds"
    hb = {"kind": "integration.send_email", "user_id": "sam", "amount": 3}
    hold = c.post(hp, dict(hb, idempotency_key=key()))
    c.post(f"{hp}/{hold['hold_id']}/capture", {"idempotency_key": key(), "amount": 2})
    hold = c.post(hp, dict(hb, idempotency_key=key()))
    c.post(f"{hp}/{hold['hold_id']}/void", {"idempotency_key": key()})
    ch = c.charge("an", amount=4, kind="integration.send_email", user_id="sam")
    c.post(f"/v1/accounts/an/charges/{ch['charge_id']}/refunds", {"idempotency_key": key(), "reason": "dup",
                                                                  "credits": 1})
    r = c.charge("an", amount=50000, kind="backend_function", user_id="sam")
    check("setup: the refusal is 402", is_error(r, 402, "insufficient_credits"), r)


# ----------------------------------------------------------------------------- roles

def roles():
    base = "/v1/accounts/an/"
    for route in READ_ROUTES:
        for who in ("read", "meter", "service"):
            r = SRV.client(K[who]).get(base + route)
            check(f"roles: {route} answers a {who} key (read route)", r.status == 200, r)
        r = C.get(base + route)
        check(f"roles: {route} answers the admin key", r.status == 200, r)
        r = SRV.client(K["other_read"]).get(base + route)
        check(f"roles: {route} with another account's read key is 403 forbidden",
              is_error(r, 403, "forbidden"), r)
        r = SRV.client(K["other_meter"]).get(f"/v1/accounts/nobody/{route}")
        check(f"roles: {route} of an unknown account with an account key is 403, not 404",
              is_error(r, 403, "forbidden"), r)
        r = C.get(f"/v1/accounts/nobody/{route}")
        check(f"roles: {route} of an unknown account is 404 account_not_found",
              is_error(r, 404, "account_not_found"), r)
        r = C.get(base + route, key=None)
        check(f"roles: {route} without a key is 401", is_error(r, 401, "unauthorized"), r)
        r = C.get(base + route, key="not-a-key")
        check(f"roles: {route} with a wrong key is 401", is_error(r, 401, "unauthorized"), r)
    rules = {"thresholds": [50, 80, 100]}
    for who in ("read", "meter", "service"):
        r = SRV.client(K[who]).put(base + "alert-rules", rules)
        check(f"roles: PUT alert-rules by a {who} key", r.status == 200, r)
    r = SRV.client(K["other_read"]).put(base + "alert-rules", rules)
    check("roles: PUT alert-rules by another account's key is 403", is_error(r, 403, "forbidden"), r)
    r = C.put("/v1/accounts/nobody/alert-rules", rules)
    check("roles: PUT alert-rules of an unknown account is 404", is_error(r, 404, "account_not_found"), r)
    # API.md's order: 404 before a 400 of the query, on every route.
    for route, q in (("events", "limit=0"), ("usage", "group_by=x"), ("hot-files", "order_by=x"),
                     ("forecast", "hourly_rate=x"), ("audit", "format=x"), ("burn", "pool=x")):
        r = C.get(f"/v1/accounts/nobody/{route}?{q}")
        check(f"order: {route} of an unknown account with a bad query is 404 (before 400)",
              is_error(r, 404, "account_not_found"), r, bug="API.md: 404 before 400 field validation")
    for route in POOL_ROUTES:
        r = C.get(f"{base}{route}?pool=nope")
        check(f"pool: {route} with a pool the plan lacks is 400 param pool", bad_param(r, "pool"), r,
              bug="API.md: every analytics route takes pool")
        r = C.get(f"{base}{route}?pool=credits")
        check(f"pool: {route} with the plan's pool is 200", r.status == 200, r)


# ----------------------------------------------------------------------------- events

def all_events(c, acct, q=""):
    out, after, pages = [], None, 0
    while pages < 100:
        sep = "&" if q else ""
        r = c.get(f"/v1/accounts/{acct}/events?{q}{sep}limit=1000" + (f"&after={after}" if after else ""))
        out += r.get("events") or []
        after = r.get("next")
        pages += 1
        if after is None:
            break
    return out


def event_format():
    evs = all_events(C, "an")
    check("events: some events", len(evs) > 30, len(evs))
    missing = [(e.get("seq"), f) for e in evs for f in EVENT_FIELDS if f not in e]
    eq("event format: every field API.md names is written (null, never left out)", missing[:5], [])
    check("event format: seq are integers in increasing order",
          all(isinstance(e["seq"], int) for e in evs) and all(a["seq"] < b["seq"] for a, b in zip(evs, evs[1:])))
    check("event format: at is YYYY-MM-DDTHH:MM:SSZ", all(is_instant(e["at"]) for e in evs),
          [e["at"] for e in evs if not is_instant(e["at"])][:3])
    check("event format: account_id is the account's", all(e["account_id"] == "an" for e in evs))
    check("event format: credits are numbers, never negative",
          all(is_num(e["credits"]) and e["credits"] >= 0 for e in evs),
          [(e["type"], e["credits"]) for e in evs if not (is_num(e["credits"]) and e["credits"] >= 0)][:3])
    moving = [e for e in evs if e["type"] in ("charge", "hold", "capture", "void", "refund", "cache_hit", "rejected")]
    check("event format: the events that move credits have credits > 0", moving and all(e["credits"] > 0 for e in moving),
          [(e["type"], e["credits"]) for e in moving if e["credits"] <= 0][:3])
    check("event format: imported is false on the ledger's events", all(e["imported"] is False for e in evs))
    check("event format: drawn_from is a list of {source, credits}",
          all(isinstance(e["drawn_from"], list) and all(fields(d, ["source", "credits"]) for d in e["drawn_from"])
              for e in evs))
    check("event format: metadata is an object, usage an object or null",
          all(isinstance(e["metadata"], dict) and (e["usage"] is None or isinstance(e["usage"], dict)) for e in evs))
    types = {e["type"] for e in evs}
    eq("event format: the types of the setup", types >= {"charge", "hold", "capture", "void", "refund",
                                                          "cache_hit", "rejected"}, True)
    kinds = {"agent_prompt", "discuss_turn", "integration.invoke_llm", "integration.generate_image",
             "integration.send_email", "backend_function"}
    charges = [e for e in evs if e["type"] in ("charge", "hold")]
    check("event format: charges and holds carry their kind", all(e["kind"] in kinds for e in charges))
    check("event format: charges carry priced_by usage | amount and their rate card version",
          all(e["priced_by"] in ("usage", "amount") and isinstance(e["rate_card_version"], int)
              for e in evs if e["type"] == "charge"))
    by_usage = [e for e in evs if e.get("charge_id") == K["usage_charge"]]
    check("event format: a charge priced by usage says so and keeps the kind's dimensions",
          len(by_usage) == 1 and by_usage[0]["priced_by"] == "usage" and by_usage[0]["usage"] == AP, by_usage)
    check("event format: metadata keeps file, feature, intent, snapshot_id and the client's own keys",
          by_usage and by_usage[0]["metadata"] == {"file": "src/App.jsx", "feature": "shell", "intent": "question",
                                                  "snapshot_id": "snap-u", "team": "web"}, by_usage)
    amounts = [e for e in evs if e["type"] == "charge" and e["kind"] == "discuss_turn"]
    check("event format: a charge with amount and usage is priced_by amount and keeps the usage",
          amounts and amounts[0]["priced_by"] == "amount" and amounts[0]["usage"] == {"model": "default"}, amounts)
    hits = [e for e in evs if e["type"] == "cache_hit"]
    check("event format: cache_hit's credits are the credits saved, with its cache_key",
          len(hits) == 1 and hits[0]["credits"] == K["saved"] and hits[0]["cache_key"] == "ck-1", hits)
    rej = [e for e in evs if e["type"] == "rejected"]
    check("event format: a refusal is a rejected event with refused_by",
          len(rej) == 1 and rej[0]["refused_by"] == "pool" and rej[0]["credits"] == 50000, rej)
    check("event format: the idempotency key is kept",
          all(isinstance(e["idempotency_key"], str) for e in evs if e["type"] in ("charge", "refund")))
    check("event format: pool and available_after on charges",
          all(e["pool"] == "credits" and is_num(e["available_after"]) for e in evs if e["type"] == "charge"))
    # API.md's example line, imported, comes back with the same fields.
    ex = ('{"at":"2026-02-11T09:14:05Z","account_id":"other","user_id":"dana","type":"charge","kind":"agent_prompt",'
          '"pool":"credits","credits":7.25,"usage":{"model":"default","input_tokens":9800,"output_tokens":2100,'
          '"files_read":4,"lines_emitted":190,"lines_changed":8},"metadata":{"file":"src/pages/Checkout.jsx",'
          '"feature":"checkout","snapshot_id":"snap-0193","intent":"fix"},"seq":999999}')
    r = C.post("/v1/admin/import", raw=ex + "\n")
    eq("import: API.md's example line is imported (mode=analytics by default)",
       (r.status, r.get("imported"), r.get("rejected")), (200, 1, 0))
    got = [e for e in all_events(C, "other", "type=charge") if e["imported"]]
    sent = json.loads(ex, parse_float=Decimal)
    check("import: the imported line is listed with its fields and imported: true",
          len(got) == 1 and all(got[0][k] == sent[k] for k in sent if k != "seq") and got[0]["imported"] is True, got)
    check("import: seq is assigned by creditd (the line's is ignored)", got and got[0]["seq"] != 999999, got)


def events_query():
    c = C
    c.create_account("pg", "enterprise")
    c.set_clock("2026-02-12T12:00:00Z")
    ops = [{"op": "charge", "account_id": "pg", "idempotency_key": f"pg-{i}", "kind": "integration.send_email",
            "user_id": "u%d" % (i % 3), "amount": 1} for i in range(130)]
    r = c.post("/v1/batch", {"ops": ops})
    check("events: 130 charges in a batch", r.status == 200 and all(x["status"] == 201 for x in r.get("results", [])), r)
    c.set_clock("2026-02-12T13:00:00Z")
    c.charge("pg", amount=1, kind="agent_prompt", user_id="u1")
    c.set_clock("2026-02-12T14:00:00Z")
    c.charge("pg", amount=1, kind="discuss_turn", user_id="u2")
    base = "/v1/accounts/pg/events"
    r = c.get(base)
    check("events: the answer is {events, next}", fields(r.doc, ["events", "next"]), r)
    eq("events: the default limit is 100", len(r.get("events") or []), 100)
    check("events: next is a cursor (not null) when more follow", r.get("next") is not None, r.get("next"))
    r2 = c.get(f"{base}?after={r.get('next')}")
    seqs = [e["seq"] for e in (r.get("events") or []) + (r2.get("events") or [])]
    eq("events: the next page continues, in sequence order, without repeats", (len(seqs), seqs == sorted(set(seqs))),
       (132, True))
    check("events: next is null at the end", r2.get("next") is None and "next" in (r2.doc or {}), r2.get("next"))
    eq("events: limit 1000 is allowed", len(c.get(f"{base}?limit=1000").get("events") or []), 132)
    for bad in ("0", "1001", "abc", "-1", "1.5"):
        r = c.get(f"{base}?limit={bad}")
        check(f"events: limit={bad} is 400 param limit", bad_param(r, "limit"), r)
    r = c.get(f"{base}?after=not-a-cursor")
    check("events: a cursor that is not one is 400 param after", bad_param(r, "after"), r)
    # Filters.
    evs = c.get(f"{base}?limit=1000&user_id=u1").get("events") or []
    check("events: user_id filters", evs and all(e["user_id"] == "u1" for e in evs), len(evs))
    eq("events: user_id count", len(evs), 44)
    evs = c.get(f"{base}?kind=agent_prompt").get("events") or []
    eq("events: kind filters", [e["kind"] for e in evs], ["agent_prompt"])
    evs = c.get(f"{base}?type=charge&limit=1000").get("events") or []
    eq("events: type filters", (len(evs), {e["type"] for e in evs}), (132, {"charge"}))
    r = c.get(f"{base}?kind=agent")
    check("events: an unknown kind is 400 param kind", bad_param(r, "kind"), r)
    r = c.get(f"{base}?type=charges")
    check("events: an unknown type is 400 param type", bad_param(r, "type"), r)
    evs = c.get(f"{base}?from=2026-02-12T13:00:00Z&to=2026-02-12T14:00:00Z").get("events") or []
    eq("events: from/to are half-open [from, to)", [e["kind"] for e in evs], ["agent_prompt"])
    evs = c.get(f"{base}?from=2026-02-12T13:00:00%2B01:00&limit=1000").get("events") or []
    eq("events: an RFC 3339 offset is accepted (13:00+01:00 is 12:00Z)", len(evs), 132)
    r = c.get(f"{base}?from=yesterday")
    check("events: a bad from is 400 param from", bad_param(r, "from"), r)
    r = c.get(f"{base}?to=2026-02-30T00:00:00Z")
    check("events: a bad to is 400 param to", bad_param(r, "to"), r)
    r = c.get(f"{base}?from=2026-02-13T00:00:00Z&to=2026-02-12T00:00:00Z")
    check("events: to before from is 400 param to (as the other ranged routes)", bad_param(r, "to"), r,
          bug="API.md: bad values are 400 with param; usage answers this 400 too")
    evs = c.get(f"{base}?pool=credits&limit=1000").get("events") or []
    eq("events: pool=credits lists the pool's events", len(evs), 132)
    # NDJSON and CSV.
    r = c.get(f"{base}?format=ndjson")
    lines = [json.loads(l) for l in r.text.splitlines() if l.strip()]
    check("ndjson: content type application/x-ndjson", r.status == 200 and
          r.headers.get("content-type", "").startswith("application/x-ndjson"), r.headers)
    eq("ndjson: one event per line, the default limit", len(lines), 100)
    check("ndjson: each line has the event fields", all(fields(l, EVENT_FIELDS) for l in lines))
    cur = r.headers.get("creditd-next-cursor")
    check("ndjson: the next cursor is the Creditd-Next-Cursor header", cur is not None, r.headers)
    r = c.get(f"{base}?format=ndjson&after={cur}")
    more = [json.loads(l) for l in r.text.splitlines() if l.strip()]
    check("ndjson: the header's cursor continues", len(more) == 32 and more[0]["seq"] > lines[-1]["seq"], len(more))
    check("ndjson: no cursor header at the end", "creditd-next-cursor" not in r.headers, r.headers)
    r = c.get(f"{base}?format=csv&limit=40")
    check("csv: content type text/csv", r.status == 200 and r.headers.get("content-type", "").startswith("text/csv"),
          r.headers)
    rows = list(csv.DictReader(io.StringIO(r.text)))
    eq("csv: a row per event", len(rows), 40)
    check("csv: the cursor header", r.headers.get("creditd-next-cursor") is not None, r.headers)
    r = c.get("/v1/accounts/an/events?format=csv&limit=1000")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    head = rows[0].keys() if rows else []
    check("csv: usage.* and metadata.* flattened into columns (the client's own keys too)",
          {"usage.input_tokens", "usage.model", "metadata.file", "metadata.intent", "metadata.team"} <= set(head), head)
    check("csv: the event fields are columns", {f for f in EVENT_FIELDS if f not in ("usage", "metadata")} <= set(head),
          head)
    row = [x for x in rows if x.get("metadata.team") == "web"]
    check("csv: the values", row and row[0]["usage.input_tokens"] == "10000" and row[0]["metadata.file"] == "src/App.jsx"
          and row[0]["type"] == "charge", row[:1])
    # Every field the JSON form writes has its column, proration_usd_cents too (found by
    # an audit: an upgrade's price line was in JSON only).
    js = c.get("/v1/accounts/an/events?format=json&limit=1000").get("events") or []
    by_seq = {str(e["seq"]): e for e in js}
    missing = sorted({k for e in js for k in e if k not in ("usage", "metadata", "drawn_from")} - set(head))
    eq("csv: a column for every field of the JSON form", missing, [])
    priced = [x for x in rows if by_seq.get(x["seq"], {}).get("proration_usd_cents") is not None]
    check("csv: proration_usd_cents as in JSON",
          all(x["proration_usd_cents"] == str(by_seq[x["seq"]]["proration_usd_cents"]) for x in priced), priced[:1])


# ----------------------------------------------------------------------------- analytics

def usage():
    base = "/v1/accounts/an/usage"
    for g in ("kind", "user", "file", "feature", "model", "call_site", "day", "week"):
        r = C.get(f"{base}?group_by={g}")
        ok = r.status == 200 and fields(r.doc, ["from", "to", "total", "rows"]) and all(
            fields(x, ["key", "credits", "count", "share"]) and is_num(x["credits"]) and isinstance(x["count"], int)
            and is_fraction(x["share"]) for x in r.get("rows") or [])
        check(f"usage: group_by={g} answers {{from, to, total, rows: [{{key, credits, count, share}}]}}", ok, r)
        check(f"usage: group_by={g}: total is the sum of the rows",
              r.get("rows") and sum(D(str(x["credits"])) for x in r["rows"]) == D(str(r.get("total"))), r)
    r = C.get(f"{base}?group_by=day")
    eq("usage: the default range is the current cycle", (r.get("from"), r.get("to")),
       ("2026-02-10T00:00:00Z", "2026-03-10T00:00:00Z"))
    check("usage: by day, keys are dates", all(DATE.match(x["key"] or "") for x in r.get("rows") or []), r)
    check("usage: the previous cycle is not in the default range", "2026-01-15" not in [x["key"] for x in r["rows"]], r)
    r = C.get(f"{base}?group_by=day&from=2026-01-10T00:00:00Z&to=2026-02-10T00:00:00Z")
    eq("usage: an explicit range (the previous cycle)", [(x["key"], x["credits"], x["count"]) for x in r.get("rows") or []],
       [("2026-01-15", 60, 3)])
    r = C.get(f"{base}?group_by=file")
    files = {x["key"]: (x["credits"], x["count"]) for x in r.get("rows") or []}
    eq("usage: by file", (files.get("src/f6.js"), files.get("src/pages/Checkout.jsx")), ((7, 7), (40, 4)))
    bad_params("usage", base, (("from=x", "from"), ("to=2026-13-01T00:00:00Z", "to"),
                               ("group_by=month", "group_by"),
                               ("from=2026-02-12T00:00:00Z&to=2026-02-11T00:00:00Z", "to")))


def hot_files():
    base = "/v1/accounts/an/hot-files"
    r = C.get(base)
    rows = r.get("rows") or []
    check("hot-files: the answer is {rows: [{file, turns, credits}]}",
          r.status == 200 and rows and all(fields(x, ["file", "turns", "credits"]) and isinstance(x["turns"], int)
                                           and is_num(x["credits"]) for x in rows), r)
    got = [(x["file"], x["turns"]) for x in rows]
    eq("hot-files: limit defaults to 5, ordered by turns (two tie at 4)", (got[:3], sorted(got[3:])),
       ([("src/f6.js", 7), ("src/f5.js", 6), ("src/f4.js", 5)], [("src/f3.js", 4), ("src/pages/Checkout.jsx", 4)]))
    check("hot-files: the previous cycle's file is not in the default range",
          "src/old.js" not in [x["file"] for x in C.get(f"{base}?limit=100").get("rows") or []])
    r = C.get(f"{base}?order_by=credits&limit=2")
    eq("hot-files: order_by=credits, limit=2", [(x["file"], x["credits"]) for x in r.get("rows") or []],
       [("src/pages/Checkout.jsx", 40), ("src/App.jsx", D("9.92"))])
    r = C.get(f"{base}?from=2026-01-10T00:00:00Z&to=2026-02-10T00:00:00Z")
    eq("hot-files: an explicit range", [(x["file"], x["turns"]) for x in r.get("rows") or []], [("src/old.js", 3)])
    bad_params("hot-files", base, (("limit=0", "limit"), ("limit=1001", "limit"), ("limit=x", "limit"),
                                   ("order_by=files", "order_by"), ("from=x", "from")))


def burn_and_forecast():
    r = C.get("/v1/accounts/an/burn")
    d = r.doc or {}
    check("burn: {days, today, trailing_mean, ratio, spike, projected_exhaustion}",
          r.status == 200 and fields(d, ["days", "today", "trailing_mean", "ratio", "spike", "projected_exhaustion"]), r)
    check("burn: days are [{date, credits}]", d.get("days") and all(
        fields(x, ["date", "credits"]) and DATE.match(x["date"]) and is_num(x["credits"]) for x in d["days"]), d)
    check("burn: today is a number, spike a boolean", is_num(d.get("today")) and isinstance(d.get("spike"), bool), d)
    check("burn: trailing_mean a number or null, ratio a number or null",
          (d.get("trailing_mean") is None or is_num(d["trailing_mean"])) and (d.get("ratio") is None or is_num(d["ratio"])), d)
    check("burn: projected_exhaustion an instant or null",
          d.get("projected_exhaustion") is None or is_instant(d["projected_exhaustion"]), d)
    eq("burn: the last day is today", (d.get("days") or [{}])[-1].get("date"), "2026-02-12")
    base = "/v1/accounts/an/forecast"
    r = C.get(base)
    f = r.doc or {}
    check("forecast: {used, allowance, extra, need, utilization, runs_out_at, advice}",
          r.status == 200 and fields(f, ["used", "allowance", "extra", "need", "utilization", "runs_out_at", "advice"]), r)
    acct = C.pool("an")
    eq("forecast: used, allowance, extra are the account's", (f.get("used"), f.get("allowance"), f.get("extra")),
       (acct["used"], acct["allowance"], acct["extra"]))
    check("forecast: utilization is a fraction from 0 to 1 = used / (allowance + extra)",
          is_fraction(f.get("utilization")) and abs(f["utilization"] - acct["used"] / (acct["allowance"] + acct["extra"]))
          < D("0.000001"), f)
    check("forecast: need is a number, runs_out_at an instant or null",
          is_num(f.get("need")) and (f.get("runs_out_at") is None or is_instant(f["runs_out_at"])), f)
    a = f.get("advice") or {}
    check("forecast: advice {action, plan, price_delta_usd, engineering_hours, reason}",
          fields(a, ["action", "plan", "price_delta_usd", "engineering_hours", "reason"]) and
          a["action"] in ("stay", "upgrade_now", "upgrade_next_cycle", "downgrade") and
          a["plan"] in ("free", "starter", "builder", "pro", "elite", "enterprise") and is_num(a["price_delta_usd"])
          and is_num(a["engineering_hours"]) and isinstance(a["reason"], str), a)
    r = C.get(f"{base}?hourly_rate=100&break_even_hours=8")
    check("forecast: the default parameters given explicitly answer the same", r.status == 200 and r.doc == f, r)
    bad_params("forecast", base, (("hourly_rate=x", "hourly_rate"), ("hourly_rate=-5", "hourly_rate"),
                                  ("break_even_hours=x", "break_even_hours"),
                                  ("break_even_hours=-1", "break_even_hours")))


def loops_and_cache():
    base = "/v1/accounts/an/regression-loops"
    r = C.get(base)
    loops = r.get("loops") or []
    eq("regression-loops: one loop in the current cycle", len(loops), 1)
    l0 = loops[0] if loops else {}
    check("regression-loops: {file, feature, turns, credits, waste, first_at, last_at, revert_to_snapshot}",
          fields(l0, ["file", "feature", "turns", "credits", "waste", "first_at", "last_at", "revert_to_snapshot"]), l0)
    eq("regression-loops: the loop's values",
       (l0.get("file"), l0.get("feature"), l0.get("turns"), l0.get("credits"), l0.get("waste"), l0.get("first_at"),
        l0.get("last_at"), l0.get("revert_to_snapshot")),
       ("src/pages/Checkout.jsx", "checkout", 4, 40, 30, "2026-02-12T10:00:00Z", "2026-02-12T10:30:00Z", "snap-loop-0"))
    r = C.get(f"{base}?from=2026-01-10T00:00:00Z&to=2026-02-10T00:00:00Z")
    eq("regression-loops: an explicit range (the previous cycle's loop)",
       [(x["file"], x["turns"], x["credits"], x["revert_to_snapshot"]) for x in r.get("loops") or []],
       [("src/old.js", 3, 60, "snap-old-0")])
    r = C.get(f"{base}?to=x")
    check("regression-loops: a bad to is 400 param to", bad_param(r, "to"), r)
    r = C.get("/v1/accounts/an/cache-stats")
    s = r.doc or {}
    check("cache-stats: {hits, misses, hit_rate, saved, by_call_site}",
          r.status == 200 and fields(s, ["hits", "misses", "hit_rate", "saved", "by_call_site"]), r)
    eq("cache-stats: one hit, one miss, the credits saved",
       (s.get("hits"), s.get("misses"), s.get("hit_rate"), s.get("saved")), (1, 1, D("0.5"), K["saved"]))
    sites = {x.get("call_site"): x for x in s.get("by_call_site") or []}
    site = sites.get("page:home") or {}
    check("cache-stats: by_call_site rows {call_site, hits, misses, hit_rate, saved}",
          fields(site, ["call_site", "hits", "misses", "hit_rate", "saved"]) and site["hits"] == 1
          and site["misses"] == 1 and is_fraction(site["hit_rate"]) and site["saved"] == K["saved"], s)


def alerts():
    c = C
    c.create_account("al", "starter")  # 2000 credits
    K["al_read"] = c.create_key("al", role="read")
    rd = SRV.client(K["al_read"])
    r = rd.put("/v1/accounts/al/alert-rules", {"burn_spike": {"factor": 3, "window_days": 7},
                                               "thresholds": [10, 50], "webhook_url": None})
    check("alert-rules: PUT answers the rules", r.status == 200 and
          (r.get("burn_spike"), r.get("thresholds")) == ({"factor": 3, "window_days": 7}, [10, 50]), r)
    check("alert-rules: the answer has webhook_url, and no secret",
          "webhook_url" in (r.doc or {}) and "webhook_secret" not in (r.doc or {}), r)
    for body, param in (({"thresholds": [0]}, "thresholds"), ({"thresholds": "50"}, "thresholds"),
                        ({"burn_spike": {"factor": 0}}, "factor"), ({"burn_spike": {"window_days": 0}}, "window_days"),
                        ({"webhook_url": "ftp://x"}, "webhook_url")):
        r = rd.put("/v1/accounts/al/alert-rules", body)
        check(f"alert-rules: {json.dumps(body)} is 400 with param {param}",
              r.status == 400 and param in str(r.err.get("param")), r)
    r = rd.put("/v1/accounts/al/alert-rules", {"thresholds": [10], "colour": "red"})
    check("alert-rules: an unknown field is 400 unknown_field", r.status == 400 and r.code == "unknown_field"
          and r.err.get("param") == "colour", r)
    c.charge("al", amount=300, kind="integration.send_email")  # 15 %: crosses 10
    r = rd.get("/v1/accounts/al/alerts")
    al = r.get("alerts") or []
    check("alerts: {alerts: [{alert_id, rule, at, message, details}]}", r.status == 200 and al and all(
        fields(x, ["alert_id", "rule", "at", "message", "details"]) and isinstance(x["alert_id"], str)
        and is_instant(x["at"]) and isinstance(x["message"], str) for x in al), r)
    eq("alerts: the 10 % threshold fired once", [x["rule"] for x in al], ["threshold"])
    c.charge("al", amount=10, kind="integration.send_email")
    eq("alerts: a threshold fires once per cycle", len(rd.get("/v1/accounts/al/alerts").get("alerts") or []), 1)
    # Listed by the first read after the charge that fired them (the evaluation is queued
    # on the ledger thread beside that read).
    late = []
    for i in range(50):
        acct = c.create_account(f"al-{i}", "starter")
        c.put(f"/v1/accounts/{acct}/alert-rules", {"thresholds": [10]})
        c.charge(acct, amount=300, kind="integration.send_email")
        if [x["rule"] for x in c.get(f"/v1/accounts/{acct}/alerts").get("alerts") or []] != ["threshold"]:
            late.append(acct)
    eq("alerts: the first read after the crossing charge lists the alert (50 accounts)", late, [],
       bug="DESIGN.md: reads see every event of the batches before them")
    # Imported events never touch thresholds (nor balances).
    line = {"at": "2026-02-12T14:00:00Z", "account_id": "al", "user_id": "x", "type": "charge",
            "kind": "integration.send_email", "credits": 1500, "idempotency_key": "imp-al"}
    r = c.post("/v1/admin/import?mode=analytics", raw=json.dumps(line) + "\n")
    eq("import analytics: the line is imported", (r.status, r.get("imported")), (200, 1))
    eq("import analytics: the balance is untouched", c.pool("al")["used"], 310)
    eq("import analytics: no threshold fires from imported events",
       [x["rule"] for x in rd.get("/v1/accounts/al/alerts").get("alerts") or []], ["threshold"])


def audit():
    base = "/v1/accounts/an/audit"
    r = C.get(base)
    check("audit: JSON by default (application/json)", r.status == 200 and isinstance(r.doc, dict)
          and r.headers.get("content-type", "").startswith("application/json"), r)
    # Default: the last full cycle [01-10, 02-10): the three old.js turns, 60 credits.
    eq("audit: the default range is the last full cycle, and the report covers all of it",
       (r.get("total"), r.get("from"), r.get("to"), r.get("period_days")),
       (60, "2026-01-10T00:00:00Z", "2026-02-10T00:00:00Z", 31))
    eq("audit: a full cycle's burn is its use per cycle", (r.get("advice") or {}).get("used_per_cycle"), 60)
    r2 = C.get(f"{base}?format=json&from=2026-01-10T00:00:00Z&to=2026-02-10T00:00:00Z")
    check("audit: the same range given explicitly", r2.status == 200 and r2.doc == r.doc, r2)
    r = C.get(f"{base}?from=2026-02-10T00:00:00Z&to=2026-03-10T00:00:00Z")
    check("audit: the current cycle, given explicitly", r.status == 200 and r.get("total", 0) > 60, r)
    r = C.get(f"{base}?format=md")
    check("audit: format=md is Markdown", r.status == 200 and r.headers.get("content-type", "").startswith("text/markdown")
          and r.text.startswith("#"), r)
    r = C.get(f"{base}?format=html")
    csp = r.headers.get("content-security-policy", "")
    check("audit: format=html is a self-contained page (text/html, no script, under a CSP)",
          r.status == 200 and r.headers.get("content-type", "").startswith("text/html") and "<html" in r.text
          and "<script" not in r.text.lower() and "default-src" in csp, (r, csp))
    r = SRV.client(K["read"]).get(f"{base}?format=html")
    check("audit: a read key gets the report", r.status == 200, r)
    bad_params("audit", base, (("format=pdf", "format"), ("from=x", "from"), ("to=x", "to"),
                               ("from=2026-02-10T00:00:00Z&to=2026-02-01T00:00:00Z", "to")))
    # A new account has no full cycle: the current one.
    C.create_account("au", "pro")
    C.charge("au", amount=3, kind="integration.send_email")
    r = C.get("/v1/accounts/au/audit")
    eq("audit: with no full cycle, the current one", (r.status, r.get("total")), (200, 3))


# ----------------------------------------------------------------------------- operations

def operations():
    c = C
    r = c.get("/healthz", key=None)
    check("healthz: anyone, {\"status\": \"ok\"}", r.status == 200 and r.doc == {"status": "ok"}, r)
    r = c.get("/metrics", key=None)
    check("metrics: anyone on loopback, Prometheus text", r.status == 200 and
          r.headers.get("content-type", "").startswith("text/plain"), r)
    for name, what in (("creditd_requests_total", "requests"), ("creditd_request_seconds", "latencies"),
                       ('creditd_rejections_total{code="insufficient_credits"}', "rejections by code"),
                       ("creditd_cache_hits", "cache hits"), ("fsync", "fsync time"), ("creditd_batches", "batches")):
        check(f"metrics: {what} ({name})", name in r.text, r.text[:300])
    # The families: latency by route and status, batch sizes, fsync latency, charges.
    for name, what in (('creditd_request_seconds_bucket{route="POST /v1/accounts/{id}/charges",status="201"',
                        "latency by route and status"),
                       ("creditd_batch_ops_bucket", "ops per batch"), ("creditd_fsync_seconds_bucket", "fsync latency"),
                       ("creditd_charges_total ", "charges")):
        check(f"metrics: {what} ({name})", name in r.text, r.text[:300])

    def series(text, prefix):
        return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(prefix))

    # Answers the HTTP server gives from the head alone are counted too, and a made-up
    # method adds no label of its own.
    before = c.get("/metrics", key=None).text
    admin = SRV.admin_key
    h.raw_exchange(SRV.port, ("POST /v1/accounts/an/charges HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                              + admin + "\r\nContent-Length: 1048577\r\n\r\n").encode(), head_only=True)
    h.raw_exchange(SRV.port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", head_only=True)
    h.raw_exchange(SRV.port, b"MADEUPMETHODXYZ /healthz HTTP/1.1\r\nHost: x\r\n\r\n", head_only=True)
    after = c.get("/metrics", key=None).text
    eq("metrics: a 413 from the head is counted by code",
       series(after, 'creditd_rejections_total{code="body_too_large"}')
       - series(before, 'creditd_rejections_total{code="body_too_large"}'), 1)
    eq("metrics: a 401 from the head is counted by code",
       series(after, 'creditd_rejections_total{code="unauthorized"}')
       - series(before, 'creditd_rejections_total{code="unauthorized"}'), 2)
    check("metrics: a made-up method is labelled OTHER", "MADEUPMETHODXYZ" not in after
          and 'route="OTHER /healthz"' in after, [x for x in after.splitlines() if "OTHER" in x][:3])
    # A streamed import's answer is counted and timed like any handled request's.
    before = c.get("/metrics", key=None).text
    imp = c.post("/v1/admin/import?mode=analytics", raw=b"{not json\n")
    after = c.get("/metrics", key=None).text
    prefix = f'creditd_requests_total{{route="POST /v1/admin/import",status="{imp.status}"}}'
    eq(f"metrics: an import answered {imp.status} is counted", series(after, prefix) - series(before, prefix), 1)
    hist = f'creditd_request_seconds_count{{route="POST /v1/admin/import",status="{imp.status}"}}'
    eq("metrics: and timed", series(after, hist) - series(before, hist), 1)
    # A path of route words that is no route of API.md adds no label of its own.
    for path in ("/plans/batch/keys/admin/clock", "/v1/v1/plans/import", "/v1/accounts/a/b/c/d/e"):
        h.raw_exchange(SRV.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), head_only=True)
    after = c.get("/metrics", key=None).text
    routes = {x.split('route="', 1)[1].split('"', 1)[0] for x in after.splitlines() if 'route="' in x}
    check("metrics: paths that are no route are one label, '(unknown route)'",
          "GET (unknown route)" in routes and not any("plans/batch" in x or "v1/v1" in x or "{id}/{id}/{id}" in x
                                                       for x in routes), sorted(routes))
    # The longest step of each kind since the start: a number, and the apply took some time.
    maxima = {}
    for line in r.text.splitlines():
        if line.startswith("creditd_") and "_micro_max" in line.split(" ")[0]:
            maxima[line.split(" ")[0]] = int(line.split(" ")[1])
    eq("metrics: the stall maxima", sorted(maxima), sorted(
        f"creditd_{x}_micro_max" for x in ("log_write", "log_sync", "event_write", "batch_apply", "snapshot_finish")))
    check("metrics: batches were applied, so the longest took > 0 µs",
          maxima.get("creditd_batch_apply_micro_max", 0) > 0, maxima)
    r = c.get("/ui", key=None)
    check("ui: /ui redirects to /ui/", r.status in (301, 302, 308) and r.headers.get("location") == "/ui/", r)
    r = c.get("/ui/", key=None)
    check("ui: /ui/ needs no key", r.status != 401, r)
    if os.path.isdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "web", "dist")):
        check("ui: the dashboard page", r.status == 200 and r.headers.get("content-type", "").startswith("text/html"), r)
    # The manual clock.
    for who in ("read", "meter", "service"):
        r = SRV.client(K[who]).post("/v1/admin/clock", {"now": "2026-02-13T00:00:00Z"})
        check(f"clock: a {who} key is 403 forbidden", is_error(r, 403, "forbidden"), r)
    r = c.post("/v1/admin/clock", {"now": "tomorrow"})
    check("clock: a bad now is 400 param now", bad_param(r, "now"), r)
    r = c.post("/v1/admin/clock", {"now": "2026-02-12T14:00:00Z"})
    eq("clock: the same instant is allowed, {now}", (r.status, r.doc), (200, {"now": "2026-02-12T14:00:00Z"}))
    r = c.post("/v1/admin/clock", {"now": "2026-02-12T13:59:59.999Z"})
    check("clock: backwards is 409 clock_backwards", is_error(r, 409, "clock_backwards"), r)
    # The import.
    for who in ("read", "meter", "service"):
        r = SRV.client(K[who]).post("/v1/admin/import", raw="\n")
        check(f"import: a {who} key is 403 forbidden", is_error(r, 403, "forbidden"), r)
    r = c.post("/v1/admin/import", raw="\n", key=None)
    check("import: no key is 401", is_error(r, 401, "unauthorized"), r)
    r = c.post("/v1/admin/import?mode=replace", raw="\n")
    check("import: mode=replace is 400 param mode", bad_param(r, "mode"), r)
    bad = "\n".join('{"at":"2026-02-12T13:00:00Z","account_id":"nobody","user_id":"u","type":"charge",'
                    '"kind":"agent_prompt","credits":1}' for _ in range(150)) + "\n"
    r = c.post("/v1/admin/import?mode=analytics", raw=bad)
    check("import: the answer is {imported, rejected, errors: [{line, reason}]}",
          r.status == 200 and set(r.doc or {}) == {"imported", "rejected", "errors"} and
          all(set(e) == {"line", "reason"} and isinstance(e["reason"], str) for e in r.get("errors", [])), r)
    eq("import: every line rejected, the first 100 errors listed by line",
       (r.get("imported"), r.get("rejected"), [e["line"] for e in r.get("errors") or []]), (0, 150, list(range(1, 101))))
    r = c.post("/v1/admin/import?mode=apply", raw=bad.replace("nobody", "an").replace("13:00:00Z", "15:00:00Z"))
    check("import apply: a line after the clock's now is 409 backfill_out_of_order",
          is_error(r, 409, "backfill_out_of_order"), r)


def clock_disabled():
    srv = h.start(manual_clock=False)
    r = srv.client().post("/v1/admin/clock", {"now": "2030-01-01T00:00:00Z"})
    check("clock: without --clock manual, 403 clock_disabled", is_error(r, 403, "clock_disabled"), r)
    srv.stop()


def clock_start():
    srv = h.start(manual_clock=True)
    c = srv.client()
    c.create_account("ep", "pro")
    eq("clock: on a fresh data dir the manual clock starts at 1970-01-01T00:00:00Z",
       c.account("ep").get("cycle", {}).get("start"), "1970-01-01T00:00:00Z")
    c.set_clock("2026-05-05T05:05:05Z")
    c.charge("ep", amount=1)
    c.set_clock("2026-05-06T00:00:00Z")  # moving the clock logs nothing
    data = srv.data_dir
    eq("clock: clean stop", srv.stop(), 0)
    srv = h.start(manual_clock=True, data_dir=data)
    c = srv.client()
    r = c.post("/v1/admin/clock", {"now": "2026-05-05T05:05:04Z"})
    check("clock: after a restart, before the last logged instant is 409", is_error(r, 409, "clock_backwards"), r)
    r = c.post("/v1/admin/clock", {"now": "2026-05-05T05:05:05Z"})
    check("clock: after a restart it starts at the ledger's last logged instant", r.status == 200, r)
    srv.stop()


def audit_refund_of_an_earlier_charge():
    """DESIGN.md section 2: refunds are subtracted, under the file of the charge they
    refund. A refund inside the audited range of a charge before it lowers the file in the
    report's hot files and sources as it does in GET hot-files and usage (found by an audit:
    the report kept the charge's 9.92 under the file while its total subtracted it)."""
    srv = h.start(manual_clock=True)
    c = srv.client()
    c.set_clock("2026-04-01T12:00:00Z")
    c.create_account("arf", "pro")
    first = [agent(c, "arf", "src/L.jsx", "fix", f"s{i}") for i in range(4)]
    check("audit refund: four charges", all(r.status == 201 for r in first), first)
    c.set_clock("2026-04-02T12:00:00Z")
    r = c.post(f"/v1/accounts/arf/charges/{first[0]['charge_id']}/refunds",
               {"reason": "bad turn", "idempotency_key": "arf-r1"})
    check("audit refund: the first charge refunded whole", r.status == 201, r)
    agent(c, "arf", "src/L.jsx", "fix", "s5")
    rng = "from=2026-04-02T00:00:00Z&to=2026-04-03T00:00:00Z"
    route = {x["file"]: x["credits"] for x in c.get(f"/v1/accounts/arf/hot-files?{rng}").get("rows", [])}
    usage = {x["key"]: x["credits"] for x in c.get(f"/v1/accounts/arf/usage?group_by=file&{rng}").get("rows", [])}
    report = c.get(f"/v1/accounts/arf/audit?format=json&{rng}")
    files = {x.get("file"): x.get("credits") for x in report.get("hot_files") or []}
    eq("audit refund: hot-files and usage net the refund under the file", (route.get("src/L.jsx"), usage.get("src/L.jsx")),
       (0, 0))
    eq("audit refund: so does the audit's hot_files, and its total", (files.get("src/L.jsx"), report.get("total")),
       (0, 0))
    # creditctl audit of the exported events with the same range says the same.
    import subprocess
    import tempfile
    export = c.get("/v1/accounts/arf/events?format=ndjson&limit=1000").text
    with tempfile.NamedTemporaryFile("w", suffix=".ndjson", delete=False) as fh:
        fh.write(export)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([h.creditctl_path(), "audit", fh.name, "--json", "--plan", "pro",
                           "--from", "2026-04-02T00:00:00Z", "--to", "2026-04-03T00:00:00Z"],
                          capture_output=True, text=True, timeout=60, cwd=root)
    os.unlink(fh.name)
    offline = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else {}
    off_files = {x.get("file"): x.get("credits") for x in offline.get("hot_files") or []}
    eq("audit refund: creditctl audit of the export, same range", (proc.returncode, off_files.get("src/L.jsx")),
       (0, 0))
    srv.stop()



def range_bounds_in_queries():
    """API.md: ranges are half-open [from, to), and any RFC 3339 offset is accepted. A bound
    with a fraction past the millisecond keeps exactly the instants the range holds (found by
    an audit: to=...00.5009 left out a charge at 00.500), and an offset written with a bare
    '+' in the query string (which decodes to a space) is read as the offset it was."""
    srv = h.start(manual_clock=True)
    c = srv.client()
    c.set_clock("2026-03-01T01:30:00.500Z")
    c.create_account("rb", "pro")
    r = c.charge("rb", amount=1)
    eq("range bounds: a charge at 01:30:00.500", r.status, 201)

    def charges(query):
        rr = c.get(f"/v1/accounts/rb/events?type=charge&{query}")
        return (rr.status, len(rr.get("events") or []))

    eq("to=00.5009 holds the charge at 00.500", charges("to=2026-03-01T01:30:00.5009Z"), (200, 1))
    eq("from=00.5009 does not", charges("from=2026-03-01T01:30:00.5009Z"), (200, 0))
    eq("to=00.500 does not (half-open)", charges("to=2026-03-01T01:30:00.500Z"), (200, 0))
    eq("from=00.500 does", charges("from=2026-03-01T01:30:00.500Z"), (200, 1))
    eq("a bare '+' offset: from=02:30:00.500+01:00 holds it", charges("from=2026-03-01T02:30:00.500+01:00"),
       (200, 1))
    eq("... and to=02:30:00.500+01:00 does not", charges("to=2026-03-01T02:30:00.500+01:00"), (200, 0))
    eq("an escaped '+' (%2B) alike", charges("from=2026-03-01T02:30:00.500%2B01:00"), (200, 1))
    rr = c.get("/v1/accounts/rb/events?from=2026-03-01T02:30:00+01")
    eq("a space that is no offset is still refused", (rr.status, rr.err.get("param")), (400, "from"))
    srv.stop()


h.run_section(setup)
for section in (roles, event_format, events_query, usage, hot_files, burn_and_forecast, loops_and_cache, alerts,
                audit, operations, clock_disabled, clock_start, audit_refund_of_an_earlier_charge,
                range_bounds_in_queries):
    h.run_section(section)
h.finish()
