-- Lists filtered by who may see a case (domain/permissions.py, SPEC §13): a consultant's or site lead's
-- cases by creator and receiver; a former designer's or assistant's through the ledger.
CREATE INDEX IF NOT EXISTS cases_created_by_idx ON cases (created_by, created_at DESC);
CREATE INDEX IF NOT EXISTS cases_received_by_idx ON cases (received_by, created_at DESC) WHERE received_by IS NOT NULL;
CREATE INDEX IF NOT EXISTS allocation_ledger_case_designer_idx ON allocation_ledger (case_id, designer_id);
CREATE INDEX IF NOT EXISTS assistant_registrations_case_assistant_idx ON assistant_registrations (case_id, assistant_id);
