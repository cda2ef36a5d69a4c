-- bench/http/charge.lua: wrk script for (a) and (b), one charge per request.
-- Every request carries a fresh idempotency key: "<run>-<thread>-<n>". The first
-- PREGEN requests of each thread are built in init (before wrk starts its clock);
-- past that, requests are built on the fly with the same scheme.
-- Environment: KEY (bearer key), ACCOUNTS (number of accounts a1..aN), RUN (a unique
-- prefix for this measurement), PREGEN (requests built ahead per thread), AMOUNT.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local key = os.getenv("KEY")
local accounts = tonumber(os.getenv("ACCOUNTS") or "1000")
local run = os.getenv("RUN") or "r"
local pregen = tonumber(os.getenv("PREGEN") or "200000")
local amount = os.getenv("AMOUNT") or "1"
-- Account ids: "a1".."aN" here; bench/analytics uses creditctl's "acct-001".. ("acct-%03d").
local account_format = os.getenv("ACCOUNT_FORMAT") or "a%d"
local headers = { ["Authorization"] = "Bearer " .. (key or ""), ["Content-Type"] = "application/json" }

local reqs = {}
local n = 0
local prefix

local function build(i)
  local acct = string.format(account_format, (i + tid * 7919) % accounts + 1)
  local body = '{"idempotency_key":"' .. prefix .. i ..
      '","kind":"backend_function","user_id":"u' .. (i % 64) .. '","amount":' .. amount .. '}'
  return wrk.format("POST", "/v1/accounts/" .. acct .. "/charges", headers, body)
end

function init(args)
  prefix = run .. "-" .. tid .. "-"
  for i = 1, pregen do reqs[i] = build(i) end
end

function request()
  n = n + 1
  local r = reqs[n]
  if r then
    reqs[n] = nil  -- each key is sent once
    return r
  end
  return build(n)
end
