-- 016: quiet hours (SPEC §14). A message may be held when it is recorded: a client SMS inside the
-- policy's quiet window until the window ends, a staff notice outside its recipient's working hours
-- until their next working start. `not_before` is when it may go (NULL: at once); the writer sets the
-- row's `next_attempt_at` to it too, so the dispatcher's claim needs no new condition. Idempotent.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS not_before timestamptz;
