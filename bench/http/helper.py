#!/usr/bin/env python3
"""bench/http/helper.py: the parts of bench/http/run.sh that are easier in Python.

  setup URL ADMIN_KEY ACCOUNTS   create a service key and accounts a1..aN (enterprise);
                                 prints the service key
  used URL KEY                   total credits used over all accounts (to check that
                                 what wrk counted was applied)
  wrk FILE                       -> "rps p50_ms p99_ms errors" from wrk --latency output
  redis FILE                     -> "rps p50_ms p99_ms 0" from redis-benchmark --csv
  pgbench FILE LOG...            -> "tps p50_ms p99_ms errors" from pgbench output + -l logs
  table RESULTS.tsv              the medians and ratios, as a markdown table
"""
import concurrent.futures
import http.client
import json
import re
import statistics
import sys
import urllib.parse


def call(conn, method, path, key, body=None):
    headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = conn.getresponse()
    data = r.read()
    if r.status >= 300:
        raise SystemExit(f"{method} {path}: {r.status} {data[:300]!r}")
    return json.loads(data) if data else None


def connect(url):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=60)


def setup(url, admin, n):
    conn = connect(url)
    svc = call(conn, "POST", "/v1/keys", admin,
               {"idempotency_key": "bench-service", "role": "service", "label": "bench"})["key"]

    def create(ids):
        c = connect(url)
        for i in ids:
            call(c, "POST", "/v1/accounts", admin,
                 {"account_id": f"a{i}", "plan": "enterprise", "idempotency_key": f"acct-{i}"})

    workers = 32
    chunks = [list(range(w + 1, n + 1, workers)) for w in range(workers)]
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        list(ex.map(create, chunks))
    print(svc)


def used(url, key):
    conn = connect(url)
    total, after = 0.0, None
    while True:
        q = "/v1/accounts?limit=1000" + (f"&after={urllib.parse.quote(after)}" if after else "")
        page = call(conn, "GET", q, key)
        for a in page["accounts"]:
            total += a["pools"]["credits"]["used"]
        after = page["next"]
        if not after:
            break
    print(f"{total:.3f}")


def to_ms(v, unit):
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def parse_wrk(path):
    text = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    pct = {m.group(1): to_ms(m.group(2), m.group(3))
           for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)}
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(x) for x in m.groups())
    print(f"{rps:.1f} {pct['50']:.3f} {pct['99']:.3f} {errors}")


def parse_redis(path):
    lines = [l for l in open(path).read().splitlines() if l.startswith('"')]
    head = [h.strip('"') for h in lines[0].split('","')]
    row = [v.strip('"') for v in lines[-1].split('","')]
    d = dict(zip(head, row))
    print(f"{float(d['rps']):.1f} {float(d['p50_latency_ms']):.3f} {float(d['p99_latency_ms']):.3f} 0")


def parse_pgbench(path, logs):
    text = open(path).read()
    tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", text).group(1))
    failed = 0
    m = re.search(r"number of failed transactions: (\d+)", text)
    if m:
        failed = int(m.group(1))
    if "aborted" in text and re.search(r"client \d+ aborted", text):
        failed += len(re.findall(r"client \d+ aborted", text))
    lat = []
    for log in logs:
        for line in open(log):
            f = line.split()
            if len(f) >= 3 and f[2].isdigit():
                lat.append(int(f[2]) / 1000.0)  # microseconds -> ms
    lat.sort()

    def q(p):
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    print(f"{tps:.1f} {q(0.50):.3f} {q(0.99):.3f} {failed}")


CASES = [
    ("a", "creditd, single charges, durable (fdatasync)", "requests/s = charges/s"),
    ("b", "creditd, single charges, `--no-fsync`", "requests/s = charges/s"),
    ("c", "creditd, /v1/batch × OPS, durable", "charges/s (requests/s × OPS)"),
    ("d1", "Redis 7, EVALSHA, appendfsync always, unpipelined", "commands/s = charges/s"),
    ("d16", "Redis 7, EVALSHA, appendfsync always, pipeline 16", "commands/s = charges/s"),
    ("e", "PostgreSQL 15, one-statement transaction, synchronous_commit on", "transactions/s = charges/s"),
]


def table(path):
    rows = {}
    meta = {}
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if f[0] == "#":
            meta[f[1]] = f[2]
            continue
        rnd, case, rate, p50, p99, errors = f[:6]
        m = re.search(r"cpu_us_per_charge=([\d.]+)", f[6] if len(f) > 6 else "")
        cpu = float(m.group(1)) if m else float("nan")
        rows.setdefault(case, []).append((float(rate), float(p50), float(p99), int(errors), rnd, cpu))
    ops = int(meta.get("ops", "1024"))
    med = {}
    out = []
    out.append("| case | charges/s (median) | rounds (charges/s) | p50 ms | p99 ms | server CPU µs/charge | errors |")
    out.append("|---|---|---|---|---|---|---|")
    for case, name, _ in CASES:
        if case not in rows:
            continue
        r = rows[case]
        mult = ops if case == "c" else 1
        rates = [x[0] * mult for x in r]
        m = statistics.median(rates)
        med[case] = m
        p50 = statistics.median(x[1] for x in r)
        p99 = statistics.median(x[2] for x in r)
        err = sum(x[3] for x in r)
        cpu = statistics.median(x[5] for x in r)
        label = name.replace("OPS", str(ops))
        if case == "c":
            label += f" ({statistics.median(x[0] for x in r):,.0f} requests/s)"
        out.append(f"| ({case}) {label} | {m:,.0f} | {' / '.join(f'{v:,.0f}' for v in rates)} | "
                   f"{p50:.2f} | {p99:.2f} | {cpu:.1f} | {err} |")
    out.append("")
    out.append("| ratio | value | target |")
    out.append("|---|---|---|")

    def ratio(name, a, b, target):
        if a in med and b in med and med[b] > 0:
            out.append(f"| {name} | {med[a] / med[b]:.2f}× | {target} |")

    ratio("(a) durable single vs Redis unpipelined (d1)", "a", "d1", "≥ 2×")
    ratio("(a) durable single vs PostgreSQL (e)", "a", "e", "≥ 10×")
    ratio("(a) durable / (b) no fsync", "a", "b", "≥ 0.90")
    ratio("(c) batch charges/s vs (a) single", "c", "a", "≥ 5× (and ≥ 1,000,000/s)")
    ratio("(c) batch charges/s vs Redis pipeline 16 (d16)", "c", "d16", "> 1×")
    print("\n".join(out))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "setup":
        setup(args[0], args[1], int(args[2]))
    elif cmd == "used":
        used(args[0], args[1])
    elif cmd == "wrk":
        parse_wrk(args[0])
    elif cmd == "redis":
        parse_redis(args[0])
    elif cmd == "pgbench":
        parse_pgbench(args[0], args[1:])
    elif cmd == "table":
        table(args[0])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
