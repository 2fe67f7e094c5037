-- 002: the outbox records when a delivery attempt started and why a row failed.
-- `sending_at` dates the provider call (the day to ask the provider about, and how long to leave an
-- attempt alone before asking); `error_code` is the stable reason of a `failed` row.
ALTER TABLE outbox ADD COLUMN sending_at timestamptz;
ALTER TABLE outbox ADD COLUMN error_code text;
UPDATE outbox SET error_code = 'no_recipient' WHERE status = 'failed' AND last_error LIKE 'no_recipient%';
ALTER TABLE outbox ADD CONSTRAINT outbox_sending_has_time CHECK (status <> 'sending' OR sending_at IS NOT NULL)
    NOT VALID;
