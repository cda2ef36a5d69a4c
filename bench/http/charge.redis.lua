-- bench/http/charge.redis.lua: the same charge as creditd's, in Redis (EVALSHA).
-- KEYS[1] = "idem:<n>" (redis-benchmark replaces __rand_int__ with a fresh random
-- number per command, so the keys are fresh); ARGV[1] = amount in millicredits,
-- ARGV[2] = the number of accounts.
-- The account is one of ACCOUNTS balance keys "bal:<n mod ACCOUNTS>", as creditd's
-- requests spread over its accounts (a single Redis thread has no row contention, so
-- the spread neither helps nor hurts it).
-- Check the key (replay: answer the stored result), debit if enough, SET the key, XADD
-- the event. Everything runs atomically; with appendonly yes + appendfsync always the
-- reply is sent only after the AOF write is fdatasync'ed (group commit per event loop).
local idem = KEYS[1]
local prior = redis.call('GET', idem)
if prior then return prior end
local amount = tonumber(ARGV[1])
local acct = 'bal:' .. (tonumber(string.sub(idem, 6)) % tonumber(ARGV[2]) + 1)
local bal = tonumber(redis.call('GET', acct) or '0')
if bal < amount then
  redis.call('SET', idem, 'refused')
  return 'refused'
end
local after = redis.call('DECRBY', acct, amount)
redis.call('SET', idem, after)
redis.call('XADD', 'events', '*', 'account', acct, 'idem', idem, 'type', 'charge',
           'kind', 'backend_function', 'credits', amount, 'available_after', after)
return after
