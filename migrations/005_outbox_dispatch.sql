-- 005: the outbox is delivered by a dispatcher loop in the worker process, apart from any workflow
-- (SPEC §10). `next_attempt_at` is when a row may be claimed next: now for a new row, the backoff after
-- a retryable failure, the claim's lease while a dispatcher works on it. `failures` counts a row's
-- failed tries (sends and provider checks) and sets the backoff's exponent. Idempotent.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS next_attempt_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS failures integer NOT NULL DEFAULT 0;
-- The dispatcher's claim: due rows of one channel and provider, oldest first; `sent` and `failed` rows
-- stay out of the index.
CREATE INDEX IF NOT EXISTS outbox_due_idx ON outbox (channel, provider, next_attempt_at, id)
    WHERE status IN ('pending', 'sending');
