-- bench/http/batch.lua: wrk script for (c), POST /v1/batch with OPS charges per request.
-- Every op carries a fresh idempotency key "<run>-<thread>-<request>-<op>". The body is a
-- template built once in init, with the per-request part substituted (one gsub per
-- request, done in C), so the load generator spends little per op.
-- Environment: KEY, ACCOUNTS, RUN, OPS (default 1024), AMOUNT.

local next_id = 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

local key = os.getenv("KEY")
local accounts = tonumber(os.getenv("ACCOUNTS") or "1000")
local run = os.getenv("RUN") or "r"
local ops = tonumber(os.getenv("OPS") or "1024")
local amount = os.getenv("AMOUNT") or "1"
local headers = { ["Authorization"] = "Bearer " .. (key or ""), ["Content-Type"] = "application/json" }

local template
local n = 0
local prefix

function init(args)
  prefix = run .. "-" .. tid .. "-"
  local parts = {}
  for i = 1, ops do
    local acct = "a" .. ((i + tid * 7919) % accounts + 1)
    parts[i] = '{"op":"charge","account_id":"' .. acct .. '","idempotency_key":"@-' .. i ..
        '","kind":"backend_function","user_id":"u' .. (i % 64) .. '","amount":' .. amount .. '}'
  end
  template = '{"ops":[' .. table.concat(parts, ",") .. ']}'
end

function request()
  n = n + 1
  local body = template:gsub("@", prefix .. n)
  return wrk.format("POST", "/v1/batch", headers, body)
end
