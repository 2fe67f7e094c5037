-- 020: a notice addressed to a role (the assistant lead's "assign an assistant", the manager of a case
-- that has none) reaches that role in the case's branch (issue 22). Idempotent (CREATE OR REPLACE).
--
-- intake_outbox_staff (migration 018) takes each role asked for as "role" (the chain's first active member,
-- as before) or "role:branch" (the first active member of that branch: its own people first, then those
-- who cover it; the chain's first when the branch has none). `for_role` answers with the key as asked,
-- so the writer finds the row it asked for; the signature is unchanged, so intake_apply_change calls it
-- as before.
CREATE OR REPLACE FUNCTION intake_outbox_staff(p_ids bigint[], p_roles text[]) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH wanted AS (
        SELECT DISTINCT r AS for_role, split_part(r, ':', 1) AS role,
               nullif(split_part(r, ':', 2), '')::bigint AS branch_id
          FROM unnest(p_roles) AS r
    ), named AS (
        SELECT id, name, phone, role, status, office_schedule, deputy_id, NULL::text AS for_role
          FROM staff WHERE id = ANY(p_ids)
        UNION ALL
        SELECT p.id, p.name, p.phone, p.role, p.status, p.office_schedule, p.deputy_id, w.for_role
          FROM wanted w CROSS JOIN LATERAL (
            SELECT s.* FROM staff s
             WHERE s.role = w.role AND s.status = 'active'
             ORDER BY (w.branch_id IS NOT NULL AND s.branch_id <> w.branch_id AND NOT EXISTS (
                          SELECT 1 FROM staff_branches sb WHERE sb.staff_id = s.id AND sb.branch_id = w.branch_id)),
                      (w.branch_id IS NOT NULL AND s.branch_id <> w.branch_id), s.id
             LIMIT 1) p
    ), everyone AS (
        SELECT * FROM named
        UNION ALL
        SELECT id, name, phone, role, status, office_schedule, deputy_id, NULL::text FROM staff
         WHERE id IN (SELECT deputy_id FROM named) AND id NOT IN (SELECT id FROM named)
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', id, 'name', name, 'phone', phone, 'role', role, 'status', status,
               'office_schedule', office_schedule, 'deputy_id', deputy_id, 'for_role', for_role)
             ORDER BY coalesce(for_role, '') COLLATE "C", id), '[]'::jsonb)
      FROM everyone
$$;
