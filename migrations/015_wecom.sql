-- 015: each person's WeCom (企业微信) member id, for the corp application's personal messages
-- (INTAKE_NOTIFY_CHANNEL=wecom_app) and for signing in to the console from WeCom. Optional; one person
-- per id. Idempotent.
ALTER TABLE staff ADD COLUMN IF NOT EXISTS wecom_userid text;
ALTER TABLE staff DROP CONSTRAINT IF EXISTS staff_wecom_userid_format;
ALTER TABLE staff ADD CONSTRAINT staff_wecom_userid_format
    CHECK (wecom_userid IS NULL OR wecom_userid ~ '^[A-Za-z0-9_.@-]{1,64}$');
CREATE UNIQUE INDEX IF NOT EXISTS staff_wecom_userid_key ON staff (wecom_userid) WHERE wecom_userid IS NOT NULL;
