-- bench/analytics/charge.lua: wrk script for the durable single-charge rounds of
-- bench/analytics/run.sh, one charge per request (bench/http/charge.lua with the account
-- ids of `creditctl simulate`: acct-001 ... acct-N).
-- Every request carries a fresh idempotency key "<run>-<thread>-<n>"; the first PREGEN
-- requests are built in init (before wrk starts its clock).
-- Environment: KEY (bearer key), ACCOUNTS, RUN (a unique prefix), PREGEN, AMOUNT.

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
local headers = { ["Authorization"] = "Bearer " .. (key or ""), ["Content-Type"] = "application/json" }

local reqs = {}
local n = 0
local prefix

local function build(i)
  local acct = string.format("acct-%03d", (i + tid * 7919) % accounts + 1)
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
