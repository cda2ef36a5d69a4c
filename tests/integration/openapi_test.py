#!/usr/bin/env python3
"""docs/openapi.json against API.md and against a running creditd.

1. The spec parses, is OpenAPI 3.1.x, has every route of API.md's tables (parsed from
   API.md at test time) and no path that API.md and docs/api-notes.md do not name.
2. Against a running creditd (--clock manual): every spec route is routed (made-up ids get
   a JSON error or a success, never the router's 404 "no such route"); for the write
   routes below, the body of exactly the fields the spec marks required is accepted, and
   leaving out any one of them is 400 with `param` naming it; the answers conform to the
   response schemas the spec gives (a small JSON Schema subset, standard library only).

API.md is ../shared/API.md beside the repository, else the copy in tests/integration/contract/
(--api-md PATH or CREDITD_API_MD to
choose another).
"""
import argparse
import json
import os
import re
import sys
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import check, key  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SPEC_PATH = os.path.join(ROOT, "docs", "openapi.json")
NOTES_PATH = os.path.join(ROOT, "docs", "api-notes.md")


def _api_md_path():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api-md", default=os.environ.get("CREDITD_API_MD"))
    args, _ = ap.parse_known_args()
    if args.api_md:
        return args.api_md
    # The contract beside the repository when it is there; otherwise (a clone elsewhere,
    # CI) the copy of it kept with the tests (tests/integration/contract/API.md).
    beside = os.path.join(os.path.dirname(ROOT), "shared", "API.md")
    if os.path.exists(beside):
        return beside
    return os.path.join(HERE, "contract", "API.md")


API_MD = _api_md_path()
METHODS = ("get", "post", "put", "delete", "patch")
ROUTE_CELL = re.compile(r"^\|\s*`(GET|POST|PUT|DELETE|PATCH) (/[^`\s]*)`")
NOTES_ROUTE = re.compile(r"\b(GET|POST|PUT|DELETE|PATCH) (/v1/[A-Za-z0-9_{}/.:-]*[A-Za-z0-9_}/])")


def norm(path):
    """A path without its query, its placeholders written {}: `/v1/accounts/{}/keys`."""
    return re.sub(r"\{[^}]*\}", "{}", path.split("?", 1)[0])


def api_md_routes(text):
    """(METHOD, normalised path) of every row of API.md's route tables."""
    routes = set()
    for line in text.splitlines():
        m = ROUTE_CELL.match(line)
        if m:
            routes.add((m.group(1), norm(m.group(2))))
    return routes


def notes_routes(text):
    """(METHOD, normalised path) that docs/api-notes.md names in full (`.../x` forms are
    abbreviations of API.md's routes and name nothing new)."""
    return {(m.group(1), norm(m.group(2))) for m in NOTES_ROUTE.finditer(text)}


# --------------------------------------------------------------------------- the spec

spec = None
try:
    with open(SPEC_PATH) as f:
        spec = json.load(f, parse_float=Decimal)
except (OSError, ValueError) as e:
    check("spec: docs/openapi.json reads and parses as JSON", False, repr(e))
    h.finish()


def resolve(node):
    """A `$ref` (local, #/...) resolved; other nodes as they are."""
    seen = 0
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise ValueError("non-local $ref " + ref)
        cur = spec
        for part in ref[2:].split("/"):
            cur = cur[part.replace("~1", "/").replace("~0", "~")]
        node = cur
        seen += 1
        if seen > 20:
            raise ValueError("$ref loop at " + ref)
    return node


def spec_routes():
    return {(m.upper(), norm(p)) for p, item in spec.get("paths", {}).items()
            for m in item if m in METHODS}


def operation(method, path):
    return spec["paths"][path][method.lower()]


def request_schema(method, path):
    body = operation(method, path).get("requestBody")
    if body is None:
        return None
    return resolve(resolve(body)["content"]["application/json"]["schema"])


def required_fields(method, path):
    return list(request_schema(method, path).get("required", []))


def static_spec():
    check("spec: docs/openapi.json parses", isinstance(spec, dict))
    check("spec: openapi is 3.1.x", re.fullmatch(r"3\.1\.\d+", str(spec.get("openapi", ""))),
          spec.get("openapi"))
    check("spec: info.title and info.version", bool(spec.get("info", {}).get("title"))
          and bool(spec.get("info", {}).get("version")), spec.get("info"))
    try:
        with open(API_MD) as f:
            api_md = f.read()
    except OSError as e:
        check(f"spec: API.md is readable at {API_MD} (--api-md PATH)", False, repr(e))
        return
    with open(NOTES_PATH) as f:
        notes = f.read()
    api = api_md_routes(api_md)
    check("spec: API.md's tables list the routes (at least 30 parsed)", len(api) >= 30,
          sorted(api))
    have = spec_routes()
    for method, path in sorted(api, key=lambda r: (r[1], r[0])):
        check(f"spec: has {method} {path} (API.md)", (method, path) in have)
    named_paths = {p for _, p in api} | {p for _, p in notes_routes(notes)}
    for p in spec.get("paths", {}):
        check(f"spec: path {p} is named by API.md or docs/api-notes.md", norm(p) in named_paths)
    named = api | notes_routes(notes)
    for method, path in sorted(have):
        check(f"spec: {method} {path} is a route API.md or docs/api-notes.md names",
              (method, path) in named)

    # Every $ref resolves; every operation has responses, a role and error codes in the
    # shared Error schema; every path parameter is declared.
    def walk(node, where):
        if isinstance(node, dict):
            if "$ref" in node:
                try:
                    resolve(node)
                except (KeyError, ValueError) as e:
                    check(f"spec: $ref {node['$ref']} at {where} resolves", False, repr(e))
            for k, v in node.items():
                walk(v, where + "/" + str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}/{i}")
    walk(spec, "#")
    check("spec: a shared Error schema {error: {code, message}}",
          resolve({"$ref": "#/components/schemas/Error"}).get("required") == ["error"])
    schemes = spec.get("components", {}).get("securitySchemes", {})
    check("spec: a bearer security scheme",
          any(s.get("type") == "http" and s.get("scheme") == "bearer" for s in schemes.values()),
          schemes)
    for p, item in spec["paths"].items():
        declared = {resolve(x)["name"] for x in item.get("parameters", [])
                    if resolve(x)["in"] == "path"}
        for m, o in item.items():
            if m not in METHODS:
                continue
            name = f"{m.upper()} {p}"
            ps = declared | {resolve(x)["name"] for x in o.get("parameters", [])
                             if resolve(x)["in"] == "path"}
            check(f"spec: {name}: its path parameters are declared",
                  ps == set(re.findall(r"\{([^}]+)\}", p)), (ps, p))
            check(f"spec: {name}: names its role",
                  o.get("x-creditd-role") in ("admin", "service", "meter", "read", "anyone",
                                              "loopback")
                  and "Who may call" in o.get("description", ""), o.get("x-creditd-role"))
            rs = o.get("responses", {})
            check(f"spec: {name}: has a success response",
                  any(s.startswith("2") for s in rs), sorted(rs))
            for s, r in rs.items():
                r = resolve(r)
                if s[0] in "45":
                    sch = r.get("content", {}).get("application/json", {}).get("schema", {})
                    check(f"spec: {name} {s}: the Error schema with its codes",
                          sch.get("$ref") == "#/components/schemas/Error"
                          and len(r.get("x-error-codes", [])) > 0, r)
            if o.get("security") != []:
                check(f"spec: {name}: 401 unauthorized", "unauthorized" in
                      rs.get("401", {}).get("x-error-codes", []), sorted(rs))
            body = o.get("requestBody")
            if body and "application/json" in resolve(body)["content"]:
                props = request_schema(m, p).get("properties", {})
                if "idempotency_key" in props:
                    check(f"spec: {name}: the Idempotency-Key header too",
                          any(resolve(x)["name"] == "Idempotency-Key"
                              and resolve(x)["in"] == "header" for x in o.get("parameters", [])))


# --------------------------------------------------------------------------- validation

def type_ok(t, v):
    if t == "null":
        return v is None
    if t == "boolean":
        return isinstance(v, bool)
    if t == "integer":
        return (isinstance(v, int) and not isinstance(v, bool)) or (
            isinstance(v, Decimal) and v == v.to_integral_value())
    if t == "number":
        return isinstance(v, (int, Decimal)) and not isinstance(v, bool)
    if t == "string":
        return isinstance(v, str)
    if t == "array":
        return isinstance(v, list)
    if t == "object":
        return isinstance(v, dict)
    return False


def validate(schema, v, where="$"):
    """Problems of v against schema (the subset the spec uses): type, enum, const,
    properties, required, additionalProperties, items, anyOf, multipleOf 0.001,
    minimum/maximum."""
    schema = resolve(schema)
    out = []
    if "anyOf" in schema and not any(not validate(s, v, where) for s in schema["anyOf"]):
        out.append(f"{where}: matches none of anyOf")
    t = schema.get("type")
    if t is not None:
        ts = t if isinstance(t, list) else [t]
        if not any(type_ok(x, v) for x in ts):
            return out + [f"{where}: {v!r} is not {t}"]
    if "enum" in schema and v not in schema["enum"]:
        out.append(f"{where}: {v!r} not in {schema['enum']}")
    if "const" in schema and v != schema["const"]:
        out.append(f"{where}: {v!r} != {schema['const']!r}")
    if isinstance(v, (int, Decimal)) and not isinstance(v, bool):
        if "multipleOf" in schema and Decimal(v) % Decimal(str(schema["multipleOf"])) != 0:
            out.append(f"{where}: {v} is not a multiple of {schema['multipleOf']}")
        if "minimum" in schema and v < schema["minimum"]:
            out.append(f"{where}: {v} < {schema['minimum']}")
        if "maximum" in schema and v > schema["maximum"]:
            out.append(f"{where}: {v} > {schema['maximum']}")
    if isinstance(v, dict):
        props = schema.get("properties", {})
        for r in schema.get("required", []):
            if r not in v:
                out.append(f"{where}: missing {r}")
        extra = schema.get("additionalProperties", True)
        for k, x in v.items():
            if k in props:
                out += validate(props[k], x, f"{where}.{k}")
            elif extra is False:
                out.append(f"{where}: unexpected {k}")
            elif isinstance(extra, dict):
                out += validate(extra, x, f"{where}.{k}")
    if isinstance(v, list) and "items" in schema:
        for i, x in enumerate(v):
            out += validate(schema["items"], x, f"{where}[{i}]")
    return out


def conforms(name, method, path, r):
    """The answer's status is one the spec lists and its JSON body matches that schema."""
    rs = operation(method, path)["responses"]
    spec_r = rs.get(str(r.status))
    if not check(f"{name}: status {r.status} is in the spec of {method} {path}",
                 spec_r is not None, (sorted(rs), r)):
        return False
    spec_r = resolve(spec_r)
    content = spec_r.get("content", {})
    if r.status == 204 or not content:
        return check(f"{name}: no body ({r.status})", r.text == "", r)
    if "application/json" not in content:
        return True
    problems = validate(content["application/json"]["schema"], r.doc)
    ok = check(f"{name}: {r.status} answer conforms to the spec's schema", not problems,
               (problems[:5], r))
    if r.status >= 400:
        codes = spec_r.get("x-error-codes", [])
        ok = check(f"{name}: error code {r.code} is listed for {method} {path} {r.status}",
                   r.code in codes, (codes, r)) and ok
    return ok


def is_router_404(r):
    return r.status == 404 and r.code == "not_found" and r.err.get("message") == "no such route"


# --------------------------------------------------------------------------- the server

srv = h.start(manual_clock=True)
c = srv.client()
T0 = "2026-03-10T12:00:00Z"


def sample(schema):
    """A value for a required query parameter."""
    schema = resolve(schema)
    if "enum" in schema:
        return str(schema["enum"][0])
    return "x"


def every_route_is_routed():
    c.set_clock(T0)
    real = c.create_account("oa-real", "starter")
    for p, item in spec["paths"].items():
        for m in item:
            if m not in METHODS:
                continue
            o = item[m]
            for acct in ("no-such-acct", real):
                url = re.sub(r"\{[^}]+\}", lambda g: acct if g.group(0) == "{id}" else
                             "made-up-" + g.group(0)[1:-1].replace("_", "-"), p)
                qs = [f"{resolve(x)['name']}={sample(resolve(x)['schema'])}"
                      for x in o.get("parameters", [])
                      if resolve(x)["in"] == "query" and resolve(x).get("required")]
                if qs:
                    url += "?" + "&".join(qs)
                if m in ("post", "put"):
                    ctype = next(iter(resolve(o["requestBody"])["content"]))
                    r = c.call(m.upper(), url, raw="" if ctype != "application/json" else "{}")
                else:
                    r = c.call(m.upper(), url)
                name = f"routed: {m.upper()} {url}"
                check(name + ": not the router's 404", not is_router_404(r), r)
                check(name + ": a success or a JSON error",
                      (200 <= r.status < 400) or bool(r.code), r)
                if r.status in (401, 403, 404) and r.code and m == "get" \
                        and acct == "no-such-acct" and "{id}" in p:
                    check(name + ": 404 account_not_found for a made-up account",
                          r.status == 404 and r.code == "account_not_found", r)
                if m == "get" and not p.startswith("/ui"):
                    conforms(name, "GET", p, r)
                if "{id}" not in p:
                    break


def missing_each(label, method, path, url, values, extra_drop=()):
    """POSTs/PUTs the spec's required fields with one left out: each is 400 naming it."""
    req = required_fields(method, path)
    for f in req:
        if f not in values:
            check(f"{label}: test has a value for the spec's required {f}", False, sorted(values))
            continue
        body = {k: values[k] for k in req if k != f and k in values}
        body.update({k: v for k, v in values.items() if k not in req and k not in extra_drop})
        if "idempotency_key" in body:
            body["idempotency_key"] = key()
        r = c.call(method, url, body)
        check(f"{label}: without required {f}: 400 with param {f}",
              r.status == 400 and r.err.get("param") == f, r)
        if r.status == 400:
            conforms(f"{label} without {f}", method, path, r)
    return req


def with_exactly(label, method, path, url, values, expect):
    """The body of the spec's required fields only (plus `values`' extras): accepted."""
    req = required_fields(method, path)
    body = {k: values[k] for k in req if k in values}
    body.update({k: v for k, v in values.items() if k not in req})
    if "idempotency_key" in body:
        body["idempotency_key"] = key()
    r = c.call(method, url, body)
    check(f"{label}: the spec's required fields are enough: {expect}", r.status == expect, r)
    conforms(label, method, path, r)
    return r


def required_fields_match():
    c.set_clock(T0)
    ik = {"idempotency_key": "filled-in"}
    A = "/v1/accounts/{id}"

    # Accounts and keys.
    v = {"account_id": "oa-new", "plan": "starter", **ik}
    missing_each("create account", "POST", "/v1/accounts", "/v1/accounts", v)
    with_exactly("create account", "POST", "/v1/accounts", "/v1/accounts", v, 201)
    acct = "oa-new"
    ent = c.create_account("oa-ent", "enterprise")
    u = f"/v1/accounts/{acct}"

    missing_each("account key", "POST", A + "/keys", u + "/keys", dict(ik))
    with_exactly("account key", "POST", A + "/keys", u + "/keys", dict(ik), 201)
    v = {"role": "service", **ik}
    missing_each("service key", "POST", "/v1/keys", "/v1/keys", v)
    with_exactly("service key", "POST", "/v1/keys", "/v1/keys", v, 201)

    v = {"plan": "pro", **ik}
    missing_each("plan", "POST", A + "/plan", u + "/plan", v)
    with_exactly("plan", "POST", A + "/plan", u + "/plan", v, 200)

    v = {"pool": "credits", "credits": 100, **ik}
    missing_each("packs", "POST", A + "/packs", f"/v1/accounts/{ent}/packs", v)
    with_exactly("packs", "POST", A + "/packs", f"/v1/accounts/{ent}/packs", v, 201)

    v = {"pool": "credits", "credits": 10, "reason": "goodwill", **ik}
    missing_each("adjustments", "POST", A + "/adjustments", u + "/adjustments", v)
    with_exactly("adjustments", "POST", A + "/adjustments", u + "/adjustments", v, 201)

    # Rate limits: no field is required at the top; a limit needs both of its fields.
    with_exactly("rate limits {}", "PUT", A + "/rate-limits", u + "/rate-limits", {}, 200)
    limit = resolve(request_schema("PUT", A + "/rate-limits")["properties"]["per_user"])
    limit = resolve(next(s for s in limit.get("anyOf", [limit]) if s.get("type") != "null"))
    for f in limit.get("required", []):
        inner = {k: 10 for k in limit["required"] if k != f}
        r = c.put(u + "/rate-limits", {"per_user": inner})
        check(f"rate limits: per_user without {f}: 400 with param per_user.{f}",
              r.status == 400 and r.err.get("param") == f"per_user.{f}", r)
    check("rate limits: the spec requires per_minute and burst of a limit",
          sorted(limit.get("required", [])) == ["burst", "per_minute"], limit)

    # Metering.
    usage = {"model": "gpt-4o-mini", "input_tokens": 500, "output_tokens": 200}
    v = {"kind": "integration.invoke_llm", "usage": usage}
    missing_each("quote", "POST", A + "/quote", u + "/quote", v)
    with_exactly("quote", "POST", A + "/quote", u + "/quote", v, 200)

    for route, what, ok in (("/charges", "charges", 201), ("/holds", "holds", 201)):
        # `amount` is one of the two the anyOf asks for; left out with `usage`, the
        # server names `usage`.
        v = {"kind": "agent_prompt", "user_id": "dana", "amount": 2, **ik}
        missing_each(what, "POST", A + route, u + route, v)
        alts = [s["required"][0] for s in request_schema("POST", A + route).get("anyOf", [])]
        check(f"{what}: the spec asks for one of usage and amount", sorted(alts) ==
              ["amount", "usage"], alts)
        body = {"kind": "agent_prompt", "user_id": "dana", "idempotency_key": key()}
        r = c.post(u + route, body)
        check(f"{what}: without usage and amount: 400 naming one of them",
              r.status == 400 and r.err.get("param") in alts, r)
        with_exactly(what, "POST", A + route, u + route, v, ok)
        v2 = {"kind": "agent_prompt", "user_id": "dana",
              "usage": {"model": "default", "input_tokens": 1000, "output_tokens": 100}, **ik}
        with_exactly(what + " by usage", "POST", A + route, u + route, v2, ok)

    holds = []
    for _ in range(2):
        r = c.post(u + "/holds", {"kind": "agent_prompt", "user_id": "dana", "amount": 5,
                                  "idempotency_key": key()})
        holds.append(r["hold_id"])
    hp = A + "/holds/{hold_id}"
    missing_each("capture", "POST", hp + "/capture", f"{u}/holds/{holds[0]}/capture", dict(ik))
    with_exactly("capture", "POST", hp + "/capture", f"{u}/holds/{holds[0]}/capture", dict(ik),
                 201)
    missing_each("void", "POST", hp + "/void", f"{u}/holds/{holds[1]}/void", dict(ik))
    with_exactly("void", "POST", hp + "/void", f"{u}/holds/{holds[1]}/void", dict(ik), 200)
    r = c.post(f"{u}/holds/{holds[1]}/void", {"idempotency_key": key()})
    conforms("void again (409 hold_not_open)", "POST", hp + "/void", r)

    charge = c.charge(acct, amount=3)["charge_id"]
    cp = A + "/charges/{charge_id}"
    v = {"reason": "a bad answer", **ik}
    missing_each("refunds", "POST", cp + "/refunds", f"{u}/charges/{charge}/refunds", v)
    with_exactly("refunds", "POST", cp + "/refunds", f"{u}/charges/{charge}/refunds", v, 201)
    conforms("charge read", "GET", cp, c.get(f"{u}/charges/{charge}"))

    kp = A + "/cache/{cache_key}"
    v = {"kind": "integration.invoke_llm", "response": {"text": "hello"}}
    missing_each("cache put", "PUT", kp, u + "/cache/ck-1", v)
    with_exactly("cache put", "PUT", kp, u + "/cache/ck-1", v, 204)
    # A hit: the charge's and the hold's cache-hit shapes.
    body = {"kind": "integration.invoke_llm", "user_id": "dana", "usage": usage,
            "cache_key": "ck-1", "idempotency_key": key()}
    r = c.post(u + "/charges", body)
    check("cache hit charge: cached, cost 0", r.status == 201 and r["cached"] is True
          and r["cost"] == 0 and r["drawn_from"] == [], r)
    conforms("cache hit charge", "POST", A + "/charges", r)
    r = c.post(u + "/holds", dict(body, idempotency_key=key()))
    check("cache hit hold: 200 cached", r.status == 200 and r["cached"] is True, r)
    conforms("cache hit hold", "POST", A + "/holds", r)
    conforms("cache get", "GET", kp, c.get(u + "/cache/ck-1?kind=integration.invoke_llm"))

    v = {"ops": [{"op": "charge", "account_id": acct, "kind": "backend_function",
                  "user_id": "u", "amount": 1, "idempotency_key": key()}]}
    missing_each("batch", "POST", "/v1/batch", "/v1/batch", v)
    r = with_exactly("batch", "POST", "/v1/batch", "/v1/batch", v, 200)
    check("batch: the op applied", r.status == 200 and r["results"][0]["status"] == 201, r)

    v = {"now": "2026-03-10T13:00:00Z"}
    missing_each("clock", "POST", "/v1/admin/clock", "/v1/admin/clock", v)
    with_exactly("clock", "POST", "/v1/admin/clock", "/v1/admin/clock", v, 200)

    # The reads of an account with some history conform too.
    for p in ("", "/keys", "/grants", "/holds", "/events", "/usage", "/hot-files", "/burn",
              "/forecast", "/regression-loops", "/cache-stats", "/alerts", "/audit"):
        conforms(f"read {p or 'account'}", "GET", A + p, c.get(u + p))
    conforms("accounts list", "GET", "/v1/accounts", c.get("/v1/accounts?limit=1"))
    conforms("plans", "GET", "/v1/plans", c.get("/v1/plans"))

    v = dict(ik)
    missing_each("close", "POST", A + "/close", u + "/close", v)
    with_exactly("close", "POST", A + "/close", u + "/close", v, 200)


h.run_section(static_spec)
h.run_section(every_route_is_routed)
h.run_section(required_fields_match)
h.finish()
