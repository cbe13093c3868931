-- Two reads and writes of a tenant as functions, each the one place of its
-- rules: the trail of a change, and the tenant's children.

-- The trail of a change of a tenant (its audit event, the outbox row that
-- hands it to the reconciler and its change-stream events) as one function,
-- so the rules of writing it live here once and a statement that changes a
-- tenant can leave its trail in the same round trip (the reconciler records
-- a tenant Ready in one statement: BENCHMARKS.md §1, finding I).
--
-- Each argument that is NULL (or an empty array of events) writes nothing of
-- its part. The events take their numbers from `event_sequence`, whose row
-- stays locked until the transaction ends, so numbers are handed out in
-- commit order and a reader who sees a number sees everything the
-- transaction wrote: call it last in the transaction. The outbox keeps one
-- row per tenant: a newer change replaces the generation of an older one not
-- yet applied, and makes the row due at once. Returns the number of the
-- last event written, NULL when none.
CREATE FUNCTION tenant_trail(
    tenant_id bigint, tenant_slug text,
    actor text, action text, before jsonb, after jsonb, request_id text,
    enqueue bigint,
    event_types text[], event_data jsonb[])
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    last bigint;
BEGIN
    IF action IS NOT NULL THEN
        INSERT INTO audit_events (actor, action, tenant_id, tenant_slug, before, after, request_id)
        VALUES (tenant_trail.actor, tenant_trail.action, tenant_trail.tenant_id,
                tenant_trail.tenant_slug, tenant_trail.before, tenant_trail.after,
                tenant_trail.request_id);
    END IF;
    IF enqueue IS NOT NULL THEN
        INSERT INTO outbox AS o (tenant_id, generation) VALUES (tenant_trail.tenant_id, enqueue)
        ON CONFLICT ON CONSTRAINT outbox_pkey DO UPDATE
        SET generation = GREATEST(o.generation, excluded.generation),
            enqueued_at = now(), not_before = now(), attempts = 0;
    END IF;
    IF cardinality(event_types) > 0 THEN
        UPDATE event_sequence SET last_id = last_id + cardinality(event_types)
        RETURNING last_id INTO last;
        INSERT INTO events (id, type, tenant_id, tenant_slug, data)
        SELECT last - cardinality(event_types) + e.i, e.type, tenant_trail.tenant_id,
               tenant_trail.tenant_slug, e.data
        FROM unnest(event_types, event_data) WITH ORDINALITY AS e(type, data, i);
    END IF;
    RETURN last;
END $$;

-- A tenant's children as the portal reads them: its namespaces ordered by
-- name byte by byte (the order the API answers and a create's answer is
-- built in, on any database collation), its members oldest first and the
-- policy an admin set for it (NULL: the configured default). One place for
-- the batched read of many tenants and the reconciler's read of one tenant
-- with its row; a single SELECT, so PostgreSQL inlines it into either.
CREATE FUNCTION tenant_children(tenant_id bigint)
RETURNS TABLE (namespaces json, members json, policy jsonb)
LANGUAGE sql STABLE AS $$
    SELECT (SELECT COALESCE(json_agg(n ORDER BY n.name COLLATE "C"), '[]') FROM namespaces n
            WHERE n.tenant_id = tenant_children.tenant_id),
           (SELECT COALESCE(json_agg(m ORDER BY m.id), '[]') FROM members m
            WHERE m.tenant_id = tenant_children.tenant_id),
           (SELECT p.policy FROM tenant_policies p WHERE p.tenant_id = tenant_children.tenant_id)
$$;
