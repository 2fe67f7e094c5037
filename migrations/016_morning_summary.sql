-- 016: the morning summary (晨报, SPEC §15). Idempotent.
-- A staff notice may belong to no case (the morning summary goes to each manager and the director):
-- such a row names its recipient and is unique per (purpose, recipient), as a case's rows are unique
-- per (case, purpose). The purpose carries the day ("morning_summary:2025-06-03").
ALTER TABLE outbox ALTER COLUMN case_id DROP NOT NULL;
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_caseless_has_recipient;
ALTER TABLE outbox ADD CONSTRAINT outbox_caseless_has_recipient
    CHECK (case_id IS NOT NULL OR recipient_id IS NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS outbox_caseless_uq ON outbox (purpose, recipient_id) WHERE case_id IS NULL;
-- One row per working day, claimed with INSERT ... ON CONFLICT DO NOTHING in the transaction that
-- writes the day's outbox rows: however many workers run, a day's summary is sent once. The figures
-- and the text as sent are kept (GET /reports/morning-summary, the console board).
CREATE TABLE IF NOT EXISTS morning_summaries (
    day          date PRIMARY KEY,
    since        date NOT NULL,
    figures      jsonb NOT NULL,
    text         text NOT NULL,
    recipients   bigint[] NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now()
);
