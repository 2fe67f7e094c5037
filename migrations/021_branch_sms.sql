-- 021: each client SMS in its case's branch's names, sign and template codes; the morning summary per
-- branch. Idempotent.
--
-- A client SMS names the company, its short name and (T4, an office visit) the office address: those of
-- the case's branch (branches' columns, NULL: the deployment's INTAKE_COMPANY_*). Where a branch's SMS
-- account differs, its sign and template codes travel with each row (recorded when the text is, like the
-- text: the first rendering wins, so a transfer changes only the texts decided after it).
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS sms_sign text;           -- NULL: the deployment's sign
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS sms_template_code text;  -- NULL: the deployment's code

-- What a case's SMS read of its branch: one definition for the outbox writer and intake_apply_change.
CREATE OR REPLACE FUNCTION intake_outbox_branch(p_branch_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', b.id, 'company_name', b.company_name,
                              'company_short_name', b.company_short_name, 'company_address', b.company_address,
                              'sms_sign', b.sms_sign, 'sms_template_codes', b.sms_template_codes)
      FROM branches b WHERE b.id = p_branch_id
$$;

-- The morning summary per branch: one row per (day, branch); branch_id NULL is the chain's (the director's,
-- and every summary sent before branches).
ALTER TABLE morning_summaries ADD COLUMN IF NOT EXISTS branch_id bigint REFERENCES branches (id);
ALTER TABLE morning_summaries DROP CONSTRAINT IF EXISTS morning_summaries_pkey;
CREATE UNIQUE INDEX IF NOT EXISTS morning_summaries_day_branch_uq
    ON morning_summaries (day, branch_id) NULLS NOT DISTINCT;

-- intake_apply_change as in migration 018, with two changes: the messages' inputs name the case's branch
-- (`case.branch`: a change of the branch's names or a transfer makes the caller render again), and the
-- outbox rows keep their SMS sign and template code.
CREATE OR REPLACE FUNCTION intake_apply_change(p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_case_id   bigint := (p->>'case_id')::bigint;
    v_version   integer := (p->>'version')::integer;
    v_confirm   boolean := coalesce((p->>'confirm')::boolean, true);
    v_head      jsonb := p->'head';
    v_row       record;
    v_stored    jsonb;
    v_base      jsonb;
    v_merged    jsonb;
    v_newer     boolean;
    v_rewrite   boolean;
    v_status    text;
    v_post_status text;
    v_meeting   jsonb;
    v_measure   jsonb;
    v_inputs    jsonb;
    v_out       jsonb;
    v_open_keys text[];
    v_item      jsonb;
BEGIN
    SELECT c.* INTO v_row FROM cases c WHERE c.id = v_case_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('missing', true);
    END IF;

    -- engine.merge: the stored state (none, or an empty one, counts as none) plus what is new.
    v_stored := CASE WHEN v_row.state IS NULL OR jsonb_typeof(v_row.state) <> 'object' OR v_row.state = '{}'::jsonb
                     THEN NULL ELSE v_row.state END;
    v_base := coalesce(v_stored, v_head);
    v_merged := CASE WHEN v_stored IS NULL OR v_version > coalesce((v_stored->>'version')::integer, 0)
                     THEN v_head ELSE v_base END;
    v_merged := v_merged || jsonb_build_object(
        'done_steps', coalesce(v_base->'done_steps', '[]'::jsonb) || (
            SELECT coalesce(jsonb_agg(f ORDER BY ord), '[]'::jsonb)
              FROM jsonb_array_elements(coalesce(p->'finished_json', '[]'::jsonb)) WITH ORDINALITY AS t(f, ord)
             WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(v_base->'done_steps', '[]'::jsonb)) d
                                WHERE d->>'key' = f->>'key')),
        'notes', coalesce(v_base->'notes', '[]'::jsonb) || (
            SELECT coalesce(jsonb_agg(n ORDER BY ord), '[]'::jsonb)
              FROM jsonb_array_elements(coalesce(p->'note_events', '[]'::jsonb)) WITH ORDINALITY AS t(n, ord)
             WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(v_base->'notes', '[]'::jsonb)) k
                                WHERE k->>'seq' = n->>'seq')),
        'events', '[]'::jsonb, 'sent', '[]'::jsonb, 'handled', '[]'::jsonb);

    v_newer := v_version > v_row.version;
    v_status := v_merged->>'status';
    IF v_row.status = 'starting' AND NOT v_confirm THEN
        v_status := 'starting';
    END IF;
    v_rewrite := NOT v_newer AND (jsonb_array_length(coalesce(p->'finished', '[]'::jsonb)) > 0
                                  OR jsonb_array_length(coalesce(p->'note_events', '[]'::jsonb)) > 0
                                  OR (v_row.status = 'starting' AND v_confirm));
    v_post_status := CASE WHEN v_newer THEN v_status
                          WHEN v_rewrite AND v_row.status = 'starting' THEN v_status
                          ELSE v_row.status END;

    -- Messages: rendered by the caller from inputs that must be those after this change.
    IF p->'outbox' IS NOT NULL AND jsonb_typeof(p->'outbox') = 'object' THEN
        v_inputs := jsonb_build_object(
            'case', jsonb_build_object(
                'id', v_row.id, 'client_name', v_row.client_name, 'client_gender', v_row.client_gender,
                'client_phone', v_row.client_phone, 'created_by', v_row.created_by, 'received_by', v_row.received_by,
                'manager_id', CASE WHEN v_newer THEN (v_merged->'manager'->>'id')::bigint ELSE v_row.manager_id END,
                'designer_id', CASE WHEN v_newer THEN (v_merged->'designer'->>'id')::bigint ELSE v_row.designer_id END,
                'assistant_id', CASE WHEN v_newer THEN (v_merged->'assistant'->>'id')::bigint ELSE v_row.assistant_id END,
                'status', v_post_status, 'policy', v_row.policy,
                'branch', intake_outbox_branch(v_row.branch_id)),
            'staff', intake_outbox_staff(
                ARRAY(SELECT jsonb_array_elements_text(coalesce(p->'outbox'->'staff_ids', '[]'::jsonb))::bigint),
                ARRAY(SELECT jsonb_array_elements_text(coalesce(p->'outbox'->'roles', '[]'::jsonb)))),
            'details', CASE WHEN coalesce((p->'outbox'->>'details')::boolean, false) THEN jsonb_build_object(
                'compound', v_row.compound, 'area_m2', v_row.area_m2, 'budget', v_row.budget,
                'tz', v_row.policy->'calendar'->>'timezone',
                'meeting', intake_state_meeting(v_merged, 'meeting'), 'measure', intake_state_meeting(v_merged, 'measure'),
                'designer_level', v_merged->'designer_level', 'car', v_merged->'car',
                'callback_notes', (
                    SELECT x.notes FROM (
                        SELECT e.seq, e.data->>'notes' AS notes FROM case_events e
                         WHERE e.case_id = v_case_id AND e.step = 'callback' AND e.kind = 'step_done'
                        UNION ALL
                        SELECT (n->>'seq')::integer, n->'data'->>'notes'
                          FROM jsonb_array_elements(coalesce(p->'events', '[]'::jsonb)) n
                         WHERE n->>'step' = 'callback' AND n->>'kind' = 'step_done'
                           AND NOT EXISTS (SELECT 1 FROM case_events e2
                                            WHERE e2.case_id = v_case_id AND e2.seq = (n->>'seq')::integer)
                    ) x ORDER BY x.seq DESC LIMIT 1))
            END);
        IF (p->'outbox'->'expect') IS DISTINCT FROM v_inputs THEN
            RETURN jsonb_build_object('stale', true, 'inputs', v_inputs);  -- nothing written
        END IF;
    END IF;

    IF v_newer THEN
        v_meeting := intake_state_meeting(v_merged, 'meeting');
        v_measure := intake_state_meeting(v_merged, 'measure');
        UPDATE cases SET
            stage = v_merged->>'stage', status = v_status, outcome = v_merged->>'outcome',
            outcome_reason = v_merged->>'outcome_reason',
            meeting_at = (v_meeting->>'at')::timestamptz, meeting_kind = v_meeting->>'kind',
            measure_at = (v_measure->>'at')::timestamptz,
            manager_id = (v_merged->'manager'->>'id')::bigint,
            designer_id = (v_merged->'designer'->>'id')::bigint,
            assistant_id = (v_merged->'assistant'->>'id')::bigint,
            overdue = coalesce((v_merged->>'overdue')::boolean, false),
            escalation_level = coalesce((v_merged->>'escalation_level')::integer, 0),
            step_due_at = (v_merged->>'step_due_at')::timestamptz,
            state = v_merged, version = coalesce((v_merged->>'version')::integer, 0),
            closed_at = (v_merged->>'closed_at')::timestamptz, updated_at = now()
        WHERE id = v_case_id;
        -- One statement per open step, in order (as executemany did).
        FOR v_item IN SELECT value FROM jsonb_array_elements(coalesce(p->'open_steps', '[]'::jsonb)) LOOP
            INSERT INTO case_steps (case_id, step_key, step, attempt, owner_role, owner_id, status,
                                    opened_at, due_at, overdue, escalation_level)
            VALUES (v_case_id, v_item->>'step_key', v_item->>'step', (v_item->>'attempt')::integer,
                    v_item->>'owner_role', (v_item->>'owner_id')::bigint, 'open',
                    (v_item->>'opened_at')::timestamptz, (v_item->>'due_at')::timestamptz,
                    (v_item->>'overdue')::boolean, (v_item->>'escalation_level')::integer)
            ON CONFLICT (case_id, step_key) DO UPDATE SET
                owner_id = EXCLUDED.owner_id, due_at = EXCLUDED.due_at, overdue = EXCLUDED.overdue,
                escalation_level = EXCLUDED.escalation_level
            WHERE case_steps.status = 'open';
        END LOOP;
        -- A step the projection still shows open that this newer state no longer has open is done
        -- (its finished row may come with this change or has come already).
        v_open_keys := ARRAY(SELECT s->>'step_key' FROM jsonb_array_elements(coalesce(p->'open_steps', '[]'::jsonb)) s);
        UPDATE case_steps SET status = 'done', result = COALESCE(result, 'cancelled'),
                              completed_at = COALESCE(completed_at, now())
         WHERE case_id = v_case_id AND status = 'open' AND NOT (step_key = ANY(v_open_keys));
    ELSIF v_rewrite THEN
        UPDATE cases SET state = v_merged, status = CASE WHEN status = 'starting' THEN v_status ELSE status END
         WHERE id = v_case_id;
    END IF;

    FOR v_item IN SELECT value FROM jsonb_array_elements(coalesce(p->'finished', '[]'::jsonb)) LOOP
        INSERT INTO case_steps (case_id, step_key, step, attempt, owner_role, status, result,
                                opened_at, due_at, completed_at, completed_by, overdue, escalation_level)
        VALUES (v_case_id, v_item->>'step_key', v_item->>'step', (v_item->>'attempt')::integer,
                v_item->>'owner_role', 'done', v_item->>'result', (v_item->>'opened_at')::timestamptz,
                (v_item->>'due_at')::timestamptz, (v_item->>'completed_at')::timestamptz,
                (v_item->>'completed_by')::bigint, (v_item->>'overdue')::boolean,
                (v_item->>'escalation_level')::integer)
        ON CONFLICT (case_id, step_key) DO UPDATE SET
            status = 'done', result = EXCLUDED.result, due_at = EXCLUDED.due_at,
            completed_at = EXCLUDED.completed_at, completed_by = EXCLUDED.completed_by,
            overdue = EXCLUDED.overdue, escalation_level = EXCLUDED.escalation_level
        WHERE case_steps.status = 'open' OR case_steps.result = 'cancelled';
    END LOOP;

    INSERT INTO case_events (case_id, seq, at, kind, step, actor_id, text, data)
    SELECT v_case_id, (e->>'seq')::integer, (e->>'at')::timestamptz, e->>'kind', e->>'step',
           (e->>'actor_id')::bigint, e->>'text', coalesce(e->'data', '{}'::jsonb)
      FROM jsonb_array_elements(coalesce(p->'events', '[]'::jsonb)) WITH ORDINALITY AS t(e, ord)
     ORDER BY ord
    ON CONFLICT (case_id, seq) DO NOTHING;

    -- A designer's assignment goes to the allocation ledger, an assistant's to the registrations (备案登记).
    INSERT INTO allocation_ledger (case_id, event_key, designer_id, kind, suggested_id, decided_by, reason)
    SELECT (a->>'case_id')::bigint, a->>'event_key', (a->>'staff_id')::bigint, a->>'kind',
           (a->>'suggested_id')::bigint, (a->>'decided_by')::bigint, a->>'reason'
      FROM jsonb_array_elements(coalesce(p->'assignments', '[]'::jsonb)) WITH ORDINALITY AS t(a, ord)
     WHERE a->>'role' = 'designer' ORDER BY ord
    ON CONFLICT (case_id, event_key) DO NOTHING;
    INSERT INTO assistant_registrations (case_id, event_key, assistant_id, kind, registered_by, reason)
    SELECT (a->>'case_id')::bigint, a->>'event_key', (a->>'staff_id')::bigint, a->>'kind',
           (a->>'decided_by')::bigint, a->>'reason'
      FROM jsonb_array_elements(coalesce(p->'assignments', '[]'::jsonb)) WITH ORDINALITY AS t(a, ord)
     WHERE a->>'role' = 'assistant' ORDER BY ord
    ON CONFLICT (case_id, event_key) DO NOTHING;

    -- The outbox: one row per (case, purpose), the text recorded first wins (store/outbox.py).
    IF p->'outbox' IS NOT NULL AND jsonb_typeof(p->'outbox') = 'object' THEN
        INSERT INTO outbox (case_id, purpose, channel, recipient_id, recipient, template, text, variables,
                            provider, status, last_error, error_code, not_before, next_attempt_at,
                            sms_sign, sms_template_code)
        SELECT (r->>'case_id')::bigint, r->>'purpose', r->>'channel', (r->>'recipient_id')::bigint,
               r->>'recipient', r->>'template', r->>'text', coalesce(r->'variables', '{}'::jsonb),
               r->>'provider', r->>'status', r->>'last_error', r->>'error_code',
               (r->>'not_before')::timestamptz, coalesce((r->>'not_before')::timestamptz, now()),
               r->>'sms_sign', r->>'sms_template_code'
          FROM jsonb_array_elements(coalesce(p->'outbox'->'rows', '[]'::jsonb)) WITH ORDINALITY AS t(r, ord)
         ORDER BY ord
        ON CONFLICT (case_id, purpose) DO NOTHING;
    END IF;

    -- Who was shown the client's full phone in the answer (SPEC §12), recorded with the write.
    IF p->'phone_read' IS NOT NULL AND jsonb_typeof(p->'phone_read') = 'object' THEN
        INSERT INTO phone_reads (staff_id, case_id, route, request_id)
        VALUES ((p->'phone_read'->>'staff_id')::bigint, v_case_id, p->'phone_read'->>'route',
                p->'phone_read'->>'request_id');
    END IF;

    v_out := jsonb_build_object('state', v_merged, 'wrote_state', v_newer OR v_rewrite);
    IF coalesce((p->>'answer')::boolean, false) THEN
        v_out := v_out || jsonb_build_object(
            'events', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                           'seq', e.seq, 'at', e.at, 'kind', e.kind, 'step', e.step, 'actor_id', e.actor_id,
                           'text', e.text, 'data', e.data) ORDER BY e.seq), '[]'::jsonb)
                         FROM case_events e WHERE e.case_id = v_case_id),
            'assignments', (SELECT coalesce(jsonb_agg(to_jsonb(x) - 'case_id' ORDER BY x.at), '[]'::jsonb)
                              FROM case_assignment_rows x WHERE x.case_id = v_case_id));
    END IF;
    RETURN v_out;
END;
$$;
