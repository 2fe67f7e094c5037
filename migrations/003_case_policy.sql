-- 003: the policy a case started with, as the API gave it to the workflow (SPEC §4: a running case is
-- never changed by a policy edit; reads such as designer suggestions use this copy too).
ALTER TABLE cases ADD COLUMN policy jsonb;
