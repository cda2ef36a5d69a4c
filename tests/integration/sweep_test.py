#!/usr/bin/env python3
"""The sweep and the time-driven alerts (DESIGN.md sections 1 and 2), with --clock manual:
what passes with time alone is written as events without any other mutation of the
account. A hold's expiry (`expire`); an idle account's cycle boundary (`reset`, and the
rollover `grant` where its plan rolls over, with `available_after`); the same events
after a SIGKILL and a start (the sweep is logged, so the replay repeats it, no duplicate);
`plan_change` events with `available_after`. An account whose burn projects exhaustion
before the cycle end gets its `projected_exhaustion` alert (and webhook) when the UTC day
changes, without a new charge.
"""
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import D, check, eq, key  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SECRET = "whsec-sweep"

# The default catalog and a plan whose half of the unused allowance rolls over.
ROLL_PLAN = """
[plans.roll]
name = "Roll"
price_usd_cents = 3000
cycle_anchor = "billing"
packs_allowed = false
rollover_percent = 50

[plans.roll.pools.credits]
allowance = 1000
"""


def plans_file():
    with open(os.path.join(ROOT, "config", "plans.toml")) as f:
        text = f.read()
    fd, path = tempfile.mkstemp(prefix="creditd-sweep-plans-", suffix=".toml")
    with os.fdopen(fd, "w") as f:
        f.write(text + ROLL_PLAN)
    return path


def events(c, acct, type_=None):
    q = f"/v1/accounts/{acct}/events?limit=1000" + (f"&type={type_}" if type_ else "")
    r = c.get(q)
    if r.status != 200:
        raise AssertionError(f"events {acct}: {r}")
    return r.get("events")


def brief(evs):
    return [(e["seq"], e["type"], e["at"], e.get("object")) for e in evs]


PLANS = plans_file()
srv = h.start(manual_clock=True, extra_args=["--plans", PLANS])
C = srv.client()


def hold_expires_without_a_mutation():
    C.set_clock("2026-05-01T00:00:00Z")
    C.create_account("h", plan="starter")
    r = C.post("/v1/accounts/h/holds", {"idempotency_key": key(), "kind": "backend_function",
                                        "user_id": "u1", "amount": 5, "ttl_ms": 1000})
    eq("hold: placed", r.status, 201)
    eq("hold: nothing expired yet", events(C, "h", "expire"), [])
    C.set_clock("2026-05-01T00:00:05Z")
    ex = events(C, "h", "expire")
    eq("hold: the clock move writes its expire event",
       [(e["at"], e.get("object"), e.get("hold_id"), h.num_eq(e.get("credits"), 5)) for e in ex],
       [("2026-05-01T00:00:01Z", "hold", r.get("hold_id"), True)])
    check("hold: the expire event says what is available after it",
          ex and h.num_eq(ex[0].get("available_after"), 2000), ex)
    r = C.get("/v1/accounts/h/holds?status=open")
    eq("hold: no open hold left", r.get("holds"), [])


def idle_account_resets_with_rollover():
    C.set_clock("2026-05-01T00:00:10Z")
    C.create_account("r", plan="roll")  # cycle [05-01T00:00:10Z, 06-01T00:00:10Z)
    eq("roll: charge 100", C.charge("r", amount=100).status, 201)
    C.create_account("idle", plan="starter")
    C.set_clock("2026-06-01T00:00:20Z")
    resets = events(C, "r", "reset")
    eq("roll: the boundary writes the reset of an idle account",
       [(e["at"], h.num_eq(e["credits"], 900), h.num_eq(e.get("available_after"), 1450))
        for e in resets],
       [("2026-06-01T00:00:10Z", True, True)])
    grants = [e for e in events(C, "r", "grant") if e.get("object") == "rollover"]
    eq("roll: and the rollover grant, half of the 900 unused, with available_after",
       [(e["at"], h.num_eq(e["credits"], 450), h.num_eq(e.get("available_after"), 1450))
        for e in grants],
       [("2026-06-01T00:00:10Z", True, True)])
    idle = events(C, "idle", "reset")
    eq("idle: a starter account without any charge is reset too",
       [(e["at"], h.num_eq(e.get("available_after"), 2000)) for e in idle],
       [("2026-06-01T00:00:10Z", True)])


def plan_change_says_available_after():
    C.create_account("p", plan="starter")
    eq("plan: charge 300", C.charge("p", amount=300).status, 201)
    r = C.post("/v1/accounts/p/plan", {"plan": "pro", "idempotency_key": key()})
    eq("plan: upgrade", r.status, 200)
    r = C.post("/v1/accounts/p/plan", {"plan": "builder", "idempotency_key": key()})
    eq("plan: downgrade (pending)", r.status, 200)
    pc = events(C, "p", "plan_change")
    eq("plan_change events carry available_after (10000 - 300 after the upgrade)",
       [h.num_eq(e.get("available_after"), 9700) for e in pc], [True, True])


def restart_gives_the_same_events():
    before = {a: brief(events(C, a)) for a in ("h", "r", "idle")}
    srv.kill()
    srv.start()
    c = srv.client()
    after = {a: brief(events(c, a)) for a in ("h", "r", "idle")}
    eq("restart after SIGKILL: the same events, same numbers", after, before)
    c.set_clock("2026-06-01T00:01:00Z")
    eq("restart: still one expire event (no duplicate)", len(events(c, "h", "expire")), 1)
    eq("restart: still one reset", len(events(c, "r", "reset")), 1)


# ------------------------------------------------------------------ alerts at a new day

class Receiver:
    def __init__(self):
        self.lock = threading.Lock()
        self.received = []
        self.server = h.WebhookReceiver(SECRET, self.on_delivery)
        self.port = self.server.port

    def on_delivery(self, delivery_id, body, signature_ok, signature):
        with self.lock:
            self.received.append(body)
        return 204


def projected_exhaustion_at_a_new_day():
    recv = Receiver()
    s = h.start(manual_clock=True, extra_args=["--allow-local-webhooks"])
    c = s.client()
    c.set_clock("2026-05-08T00:00:00Z")
    c.create_account("px", plan="starter")
    r = c.put("/v1/accounts/px/alert-rules",
              {"webhook_url": f"http://127.0.0.1:{recv.port}/hook", "webhook_secret": SECRET})
    eq("px: alert rules", r.status, 200)
    c.set_clock("2026-05-08T12:00:00Z")
    c.charge("px", amount=10)
    c.set_clock("2026-05-09T12:00:00Z")
    c.charge("px", amount=10)
    c.set_clock("2026-05-10T23:00:00Z")
    c.charge("px", amount=1500)
    rules = [a["rule"] for a in c.get("/v1/accounts/px/alerts").get("alerts")]
    eq("px: 05-10, mean 10 over 2 days: no projected_exhaustion yet",
       "projected_exhaustion" in rules, False)
    c.set_clock("2026-05-11T06:00:00Z")
    b = c.get("/v1/accounts/px/burn")
    check("px: /burn projects exhaustion at 05-11", b.get("projected_exhaustion") is not None, b)
    al = [a for a in c.get("/v1/accounts/px/alerts").get("alerts") if a["rule"] == "projected_exhaustion"]
    eq("px: the new day alone raises projected_exhaustion (no charge since)",
       [a["at"][:10] for a in al], ["2026-05-11"])
    deadline = time.time() + 10
    while time.time() < deadline:
        with recv.lock:
            got = [b for b in recv.received if b.get("rule") == "projected_exhaustion"]
        if got:
            break
        time.sleep(0.1)
    eq("px: and its webhook is delivered", [(g["account_id"], g["rule"]) for g in got],
       [("px", "projected_exhaustion")])
    s.stop()
    recv.server.shutdown()


for fn in (hold_expires_without_a_mutation, idle_account_resets_with_rollover,
           plan_change_says_available_after, restart_gives_the_same_events,
           projected_exhaustion_at_a_new_day):
    h.run_section(fn)
os.unlink(PLANS)
h.finish()
