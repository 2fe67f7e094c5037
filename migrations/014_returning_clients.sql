-- 018: 查重 and 撞单 (SPEC §14). A second contact phone (a spouse's), the house as a normalised key
-- (compound|building|unit|room, domain/duplicates.py), and the earlier case a returning client's new
-- case is linked to, with the reason shown. Idempotent.
ALTER TABLE cases ADD COLUMN IF NOT EXISTS second_phone text CHECK (second_phone IS NULL OR second_phone ~ '^1[3-9][0-9]{9}$');
ALTER TABLE cases ADD COLUMN IF NOT EXISTS house_key text;
ALTER TABLE cases ADD COLUMN IF NOT EXISTS previous_case_id bigint REFERENCES cases (id);
ALTER TABLE cases ADD COLUMN IF NOT EXISTS returning_reason text;
CREATE INDEX IF NOT EXISTS cases_client_phone_idx ON cases (client_phone);
CREATE INDEX IF NOT EXISTS cases_second_phone_idx ON cases (second_phone) WHERE second_phone IS NOT NULL;
CREATE INDEX IF NOT EXISTS cases_house_key_idx ON cases (house_key) WHERE house_key IS NOT NULL;
