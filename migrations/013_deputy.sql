-- 017: a deputy for the manager (SPEC §13, §14). While a manager is on leave or off schedule (and the
-- deputy is at work), their steps and notices go to the deputy, who acts with the manager's rights on
-- the manager's cases; the director hears only after the deputy. Idempotent.
ALTER TABLE staff ADD COLUMN IF NOT EXISTS deputy_id bigint REFERENCES staff (id) ON DELETE SET NULL;
ALTER TABLE staff DROP CONSTRAINT IF EXISTS staff_deputy_not_self;
ALTER TABLE staff ADD CONSTRAINT staff_deputy_not_self CHECK (deputy_id IS DISTINCT FROM id);
CREATE INDEX IF NOT EXISTS staff_deputy_idx ON staff (deputy_id) WHERE deputy_id IS NOT NULL;
