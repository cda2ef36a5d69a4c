-- bench/http/charge.pgbench.sql: the charge as one PostgreSQL transaction (one
-- statement, one round trip: the peer's best case). Check and set the idempotency key
-- (ON CONFLICT DO NOTHING: a replay debits nothing), debit only if enough (a conditional
-- UPDATE), record the event. synchronous_commit = on: COMMIT waits for the WAL flush.
-- A fresh key per transaction: client id + a random 62-bit number.
\set aid random(1, :accounts)
\set n random(1, 4611686018427387903)
WITH k AS (
  INSERT INTO idempotency_keys (key, account_id) VALUES ('c' || :client_id || '-' || :n, :aid)
  ON CONFLICT (key) DO NOTHING RETURNING key, account_id),
u AS (
  UPDATE accounts SET balance = balance - 1000
  WHERE id = (SELECT account_id FROM k) AND balance >= 1000 RETURNING id, balance)
INSERT INTO events (account_id, idempotency_key, type, kind, credits, available_after)
SELECT u.id, k.key, 'charge', 'backend_function', 1000, u.balance FROM u, k;
