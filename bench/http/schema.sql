-- bench/http/schema.sql: the PostgreSQL peer's tables. Balances and amounts in
-- millicredits, as creditd keeps them. :accounts is set by psql -v.
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE idempotency_keys (key text PRIMARY KEY, account_id int NOT NULL);
CREATE TABLE events (seq bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(),
                     account_id int NOT NULL, idempotency_key text NOT NULL,
                     type text NOT NULL, kind text NOT NULL, credits bigint NOT NULL,
                     available_after bigint NOT NULL);
INSERT INTO accounts SELECT g, 100000000000 FROM generate_series(1, :accounts) g;
VACUUM ANALYZE;
