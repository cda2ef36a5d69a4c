#!/usr/bin/env python3
"""Event retention and the analytics: when the event log deletes a day (by age,
--events-retain-days, or by the byte budget, --events-bytes-max), the rollup routes
(usage, hot-files, burn, cache-stats) stop counting it at once, as the events and audit
routes do, and answer after a restart exactly what they answered before it (DESIGN.md
section 3: a restart never changes an acknowledged answer; the rollups are rebuilt from
the days left). A refund kept whose charge's day is deleted is then booked under its own
(empty) metadata, as a start books it.
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import D, check, eq  # noqa: E402

ROUTES = [
    "usage",
    "usage?group_by=day",
    "usage?group_by=file",
    "usage?group_by=call_site",
    "usage?group_by=day&from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z",
    "hot-files",
    "hot-files?order_by=credits",
    "burn",
    "cache-stats",
    "events?limit=1000",
    "audit?from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z",
]


def answers(c, account):
    out = {}
    for route in ROUTES:
        r = c.get(f"/v1/accounts/{account}/{route}")
        out[route] = (r.status, r.doc)
    return out


def day_files(srv):
    return sorted(f for f in os.listdir(os.path.join(srv.data_dir, "events")) if f.endswith(".log"))


def scenario(srv, c):
    """Jan 10: a charge of 3 on x.js and an integration call with a cache key (a miss);
    Jan 11: a refund of 1 of the Jan 10 charge and a cache hit; Jan 13: a charge of 5 on
    x.js. With 2 days of retention the Jan 13 charge lets Jan 10 go."""
    c.set_clock("2026-01-10T12:00:00Z")
    c.create_account("a", plan="pro")
    r = c.charge("a", amount=3, kind="agent_prompt", user_id="u", metadata={"file": "x.js"})
    check("jan 10 charge", r.status == 201, r)
    first_charge = r["charge_id"]
    r = c.charge("a", amount=2, kind="integration.invoke_llm", user_id="u", cache_key="ck",
                 metadata={"call_site": "page:home"})
    check("jan 10 cached call", r.status == 201, r)
    r = c.put("/v1/accounts/a/cache/ck", {"kind": "integration.invoke_llm", "response": {"t": 1},
                                          "call_site": "page:home"})
    check("jan 10 cache entry", r.status == 204, r)
    c.set_clock("2026-01-11T09:00:00Z")
    r = c.post(f"/v1/accounts/a/charges/{first_charge}/refunds",
               {"idempotency_key": h.key(), "credits": 1, "reason": "bad turn"})
    check("jan 11 refund of the jan 10 charge", r.status == 201, r)
    r = c.charge("a", amount=2, kind="integration.invoke_llm", user_id="u", cache_key="ck",
                 metadata={"call_site": "page:home"})
    check("jan 11 cache hit", r.status in (200, 201) and r.get("cached") is True, r)
    c.set_clock("2026-01-13T00:00:00Z")
    r = c.charge("a", amount=5, kind="agent_prompt", user_id="u", metadata={"file": "x.js"})
    check("jan 13 charge", r.status == 201, r)
    # A read runs after the ledger thread wrote the batch's events and ran retention
    # (the answer to the charge may come before).
    c.get("/v1/accounts/a")


def retain_days():
    srv = h.start(manual_clock=True, extra_args=["--events-retain-days", "2"])
    c = srv.client()
    scenario(srv, c)
    eq("retain-days: jan 10's file is deleted", "events-2026-01-10.log" in day_files(srv), False)
    before = answers(c, "a")
    usage = before["usage?group_by=day"][1]
    eq("retain-days: usage by day counts the days the log holds",
       [(row["key"], D(str(row["credits"]))) for row in usage["rows"]],
       [("2026-01-11", D(-1)), ("2026-01-13", D(5))],
       bug="DESIGN.md 2: the analytics are computed from the events (a deleted day is gone)")
    eq("retain-days: usage total is the events'", D(str(usage["total"])), D(4))
    hot = before["hot-files"][1]["rows"]
    eq("retain-days: hot files count the kept turn only",
       [(x["file"], x["turns"], D(str(x["credits"]))) for x in hot], [("x.js", 1, D(5))])
    by_file = before["usage?group_by=file"][1]["rows"]
    eq("retain-days: the kept refund of a deleted charge is under its own (no) file",
       sorted((x["key"], D(str(x["credits"]))) for x in by_file
              if x["key"] is not None) + [(None, D(str(x["credits"]))) for x in by_file
                                           if x["key"] is None],
       [("x.js", D(5)), (None, D(-1))])
    burn = before["burn"][1]
    eq("retain-days: burn has no jan 10",
       [d for d in burn["days"] if d["date"] == "2026-01-10" and D(str(d["credits"])) != 0], [])
    cache = before["cache-stats"][1]
    eq("retain-days: cache stats: jan 10's miss is gone, jan 11's hit stays",
       (cache["hits"], cache["misses"]), (1, 0))
    events = before["events?limit=1000"][1]["events"]
    eq("retain-days: events list none of jan 10",
       [e for e in events if e["at"].startswith("2026-01-10")], [])
    for how in (signal.SIGTERM, signal.SIGKILL):
        if how == signal.SIGTERM:
            srv.stop()
        else:
            srv.kill()
        srv.start()
        c = srv.client()
        after = answers(c, "a")
        for route in ROUTES:
            eq(f"retain-days: {route} after a restart ({how.name}) as before it",
               after[route], before[route],
               bug="DESIGN.md 3: a restart never changes an acknowledged answer")
    srv.stop()


def bytes_budget():
    # A budget of one byte: every day but the one being written goes at each batch.
    srv = h.start(manual_clock=True, extra_args=["--events-bytes-max", "1"])
    c = srv.client()
    scenario(srv, c)
    eq("bytes-max: only jan 13's file is left", day_files(srv), ["events-2026-01-13.log"])
    before = answers(c, "a")
    usage = before["usage?group_by=day"][1]
    eq("bytes-max: usage by day counts jan 13 only",
       [(row["key"], D(str(row["credits"]))) for row in usage["rows"]], [("2026-01-13", D(5))],
       bug="DESIGN.md 2: the analytics are computed from the events (a deleted day is gone)")
    eq("bytes-max: burn's trailing mean has no earlier event to start from",
       before["burn"][1]["trailing_mean"], None)
    srv.stop()
    srv.start()
    c = srv.client()
    after = answers(c, "a")
    for route in ROUTES:
        eq(f"bytes-max: {route} after a restart as before it", after[route], before[route],
           bug="DESIGN.md 3: a restart never changes an acknowledged answer")
    srv.stop()


if __name__ == "__main__":
    h.run_section(retain_days)
    h.run_section(bytes_budget)
    h.finish()
