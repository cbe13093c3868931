-- Creates no longer wait for each other across a round trip, and call
-- fewer triggers (BENCHMARKS.md §2, issue 31 item 2).
--
-- 1. Counted and numbered at commit. A create counted its tenant on its
-- cluster and took its change-stream event numbers in its last statement
-- (migration 0025), then the portal sent COMMIT: the cluster's row and the
-- `event_sequence` row stayed locked across that round trip, while the
-- portal's task waited for a core on a busy machine. Every create queued
-- behind the one before it: sampled during a run of creates, nine of
-- sixteen backends were waiting on that lock, and the holder was mostly
-- idle in its transaction, waiting for COMMIT. Both now happen in deferred
-- triggers, which PostgreSQL runs inside COMMIT: the locks are held from
-- there to the end of the commit, no round trip. The rules stay as they
-- were: the count is exact under the cluster's row lock (a count past a
-- declared capacity raises TPC01, now from COMMIT, and nothing of the
-- create is kept), the cluster's row is locked before `event_sequence`
-- (the tenant's trigger is queued before its events', and deferred
-- triggers run in the order they were queued), and event numbers are
-- handed out in commit order, each in the transaction that wrote it.
--
-- 2. Fewer trigger calls. A create of a tenant with two namespaces and one
-- member called PL/pgSQL some fifteen times, each call through SPI and an
-- executor start-up (44 % of PostgreSQL's CPU in a run of creates); six of
-- them did nothing. A create's children belong to the tenant counted at
-- commit, whose row was written in this transaction: bumping its view
-- version changes nothing (migration 0017), and its namespaces are counted
-- with it. The triggers below say so in their WHEN, which PostgreSQL
-- evaluates as an expression before queueing a call; every other write
-- calls what it called before. A trigger's WHEN may not name NEW for a
-- delete nor OLD for an insert, so the triggers that fired on both are
-- split by event; their functions still skip that tenant themselves.

-- A tenant still waiting to be counted when its transaction commits is
-- counted then (it was refused before: every create counted it itself).
CREATE FUNCTION cluster_load_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF cluster_load_is_later(NEW.id) THEN
        PERFORM cluster_load_created(NEW.id);
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER cluster_load_none_later ON tenants;
DROP FUNCTION cluster_load_none_later();
CREATE CONSTRAINT TRIGGER cluster_load_at_commit AFTER INSERT ON tenants
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION cluster_load_at_commit();

-- A create's trail is the trail of any change now.
DROP FUNCTION tenant_created(bigint, text, text, text, jsonb, text, bigint, text[], jsonb[]);

-- Events are written with a provisional number, negative so that no
-- reader's cursor ever passes it, and numbered at commit. No reader sees
-- one before: rows are seen only once committed.
CREATE SEQUENCE events_provisional;

CREATE OR REPLACE FUNCTION tenant_trail(
    tenant_id bigint, tenant_slug text,
    actor text, action text, before jsonb, after jsonb, request_id text,
    enqueue bigint,
    event_types text[], event_data jsonb[])
RETURNS bigint LANGUAGE plpgsql AS $$
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
    -- In their order: each is numbered at commit in the order it was written.
    INSERT INTO events (id, type, tenant_id, tenant_slug, data)
    SELECT -nextval('events_provisional'), e.type, tenant_trail.tenant_id,
           tenant_trail.tenant_slug, e.data
    FROM unnest(event_types, event_data) WITH ORDINALITY AS e(type, data, i)
    ORDER BY e.i;
    -- The events are numbered at commit; none has its number yet.
    RETURN NULL;
END $$;

CREATE FUNCTION events_numbered() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    number bigint;
BEGIN
    UPDATE event_sequence SET last_id = last_id + 1 RETURNING last_id INTO number;
    UPDATE events SET id = number WHERE id = NEW.id;
    PERFORM pg_notify('tenant_events', number::text || ' ' || NEW.tenant_slug);
    RETURN NULL;
END $$;

DROP TRIGGER events_notify ON events;
DROP FUNCTION events_notify();
CREATE CONSTRAINT TRIGGER events_numbered AFTER INSERT ON events
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION events_numbered();

DROP TRIGGER tenant_view_namespace_changed ON namespaces;
CREATE TRIGGER tenant_view_namespace_added AFTER INSERT ON namespaces
    FOR EACH ROW
    WHEN (current_setting('tenant_portal.count_later', true) IS DISTINCT FROM NEW.tenant_id::text)
    EXECUTE FUNCTION tenant_view_child_changed();
CREATE TRIGGER tenant_view_namespace_changed
    AFTER DELETE OR UPDATE OF name, full_name, allocations, created_at ON namespaces
    FOR EACH ROW EXECUTE FUNCTION tenant_view_child_changed();

DROP TRIGGER tenant_view_member_changed ON members;
CREATE TRIGGER tenant_view_member_added AFTER INSERT ON members
    FOR EACH ROW
    WHEN (current_setting('tenant_portal.count_later', true) IS DISTINCT FROM NEW.tenant_id::text)
    EXECUTE FUNCTION tenant_view_child_changed();
CREATE TRIGGER tenant_view_member_changed AFTER UPDATE OR DELETE ON members
    FOR EACH ROW EXECUTE FUNCTION tenant_view_child_changed();

DROP TRIGGER cluster_load_namespace ON namespaces;
CREATE TRIGGER cluster_load_namespace_added AFTER INSERT ON namespaces
    FOR EACH ROW
    WHEN (current_setting('tenant_portal.count_later', true) IS DISTINCT FROM NEW.tenant_id::text)
    EXECUTE FUNCTION cluster_load_namespace();
CREATE TRIGGER cluster_load_namespace_removed AFTER DELETE ON namespaces
    FOR EACH ROW
    WHEN (current_setting('tenant_portal.count_later', true) IS DISTINCT FROM OLD.tenant_id::text)
    EXECUTE FUNCTION cluster_load_namespace();

DROP TRIGGER cluster_load_tenant ON tenants;
CREATE TRIGGER cluster_load_tenant_added AFTER INSERT ON tenants
    FOR EACH ROW
    WHEN (current_setting('tenant_portal.count_later', true) IS DISTINCT FROM NEW.id::text)
    EXECUTE FUNCTION cluster_load_tenant();
CREATE TRIGGER cluster_load_tenant AFTER UPDATE OF state, cluster, cpu_millis, memory_bytes
    ON tenants FOR EACH ROW
    WHEN (current_setting('tenant_portal.count_later', true) IS DISTINCT FROM NEW.id::text)
    EXECUTE FUNCTION cluster_load_tenant();

-- A namespace's name is claimed in one statement instead of two: a name
-- new to the database is inserted; a name this tenant held before is
-- claimed again (the row rewritten to itself); a name another tenant held
-- is not, and nothing comes back.
CREATE OR REPLACE FUNCTION claim_namespace_name() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO namespace_names AS held (full_name, tenant_id)
    VALUES (NEW.full_name, NEW.tenant_id)
    ON CONFLICT (full_name) DO UPDATE SET tenant_id = held.tenant_id
    WHERE held.tenant_id = EXCLUDED.tenant_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the namespace name % was used by another tenant', NEW.full_name
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'namespace_names_pkey';
    END IF;
    RETURN NEW;
END
$$;

-- An inserted tenant's row is marked as written by its transaction by the
-- column's default instead of a trigger; an update still goes through
-- tenant_view_changed, which bumps the version once per transaction.
ALTER TABLE tenants ALTER COLUMN view_xact SET DEFAULT pg_current_xact_id();
DROP TRIGGER tenant_view_changed ON tenants;
CREATE TRIGGER tenant_view_changed BEFORE UPDATE ON tenants
    FOR EACH ROW EXECUTE FUNCTION tenant_view_changed();
