-- A create counts its tenant on its cluster last (BENCHMARKS.md §2, issue 31).
--
-- Migration 0016's triggers count a tenant on its cluster when its row is
-- inserted, and the cluster's row stays locked from there to commit: every
-- create on a cluster waited for the one before it through the inserts of
-- its namespaces and members, its trail and its commit, five round trips.
-- A create now writes its rows first, uncounted, and counts the tenant whole
-- (its namespaces and budget, read from its rows) in the statement that also
-- writes its trail, just before it commits: the cluster's row is held for
-- one round trip, and the capacity stays exact (the count still happens
-- under that row lock, and a count past a declared capacity still raises
-- TPC01, refusing the whole create).
--
-- Which tenant is waiting to be counted is a setting of the transaction
-- (`tenant_portal.count_later`, the tenant's id), set when its row is
-- written and cleared when it is counted. No trigger counts that tenant
-- meanwhile, whatever is written of it; a transaction that would commit
-- with it still uncounted fails instead, so no tenant is ever left out of
-- its cluster's load. One tenant at a time per transaction.

-- Reserves the next tenant id as the one counted later; answers it.
CREATE FUNCTION cluster_load_later() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    id bigint;
BEGIN
    IF coalesce(current_setting('tenant_portal.count_later', true), '') <> '' THEN
        RAISE EXCEPTION 'tenant % is still waiting to be counted on its cluster',
            current_setting('tenant_portal.count_later');
    END IF;
    id := nextval(pg_get_serial_sequence('tenants', 'id'));
    PERFORM set_config('tenant_portal.count_later', id::text, true);
    RETURN id;
END $$;

-- Whether tenant `id` is the one this transaction counts later.
CREATE FUNCTION cluster_load_is_later(id bigint) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT current_setting('tenant_portal.count_later', true) = id::text
$$;

-- Counts the tenant waiting to be counted on its cluster, whole, and clears
-- the wait: the row lock on the cluster and the capacity check are
-- cluster_load_add's.
CREATE FUNCTION cluster_load_created(tenant_id bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t record;
    ns bigint;
BEGIN
    IF NOT coalesce(cluster_load_is_later(tenant_id), false) THEN
        RAISE EXCEPTION 'tenant % is not waiting to be counted on its cluster', tenant_id;
    END IF;
    PERFORM set_config('tenant_portal.count_later', '', true);
    SELECT k.cluster, k.state, k.cpu_millis, k.memory_bytes INTO t
    FROM tenants k WHERE k.id = tenant_id;
    IF FOUND AND t.state <> 'deleted' THEN
        SELECT count(*) INTO ns FROM namespaces n WHERE n.tenant_id = cluster_load_created.tenant_id;
        PERFORM cluster_load_add(t.cluster, 1, ns,
            coalesce(t.cpu_millis, 0), coalesce(t.memory_bytes, 0));
    END IF;
END $$;

-- A create's last statement: count the tenant, then write its trail (whose
-- event numbers are taken last, as tenant_trail asks). The cluster's row is
-- locked before `event_sequence`, the order every other writer takes them in.
CREATE FUNCTION tenant_created(
    tenant_id bigint, tenant_slug text,
    actor text, action text, after jsonb, request_id text,
    enqueue bigint,
    event_types text[], event_data jsonb[])
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cluster_load_created(tenant_id);
    RETURN tenant_trail(tenant_id, tenant_slug, actor, action, NULL, after, request_id,
                        enqueue, event_types, event_data);
END $$;

-- 0016's triggers, leaving alone the tenant counted later.
CREATE OR REPLACE FUNCTION cluster_load_tenant() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ns bigint;
BEGIN
    IF cluster_load_is_later(CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END) THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NULL END;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.state <> 'deleted' AND NEW.state <> 'deleted'
       AND OLD.cluster = NEW.cluster THEN
        PERFORM cluster_load_add(NEW.cluster, 0, 0,
            coalesce(NEW.cpu_millis, 0) - coalesce(OLD.cpu_millis, 0),
            coalesce(NEW.memory_bytes, 0) - coalesce(OLD.memory_bytes, 0));
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.state <> 'deleted' THEN
        SELECT count(*) INTO ns FROM namespaces WHERE tenant_id = OLD.id;
        PERFORM cluster_load_add(OLD.cluster, -1, -ns,
            -coalesce(OLD.cpu_millis, 0), -coalesce(OLD.memory_bytes, 0));
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.state <> 'deleted' THEN
        SELECT count(*) INTO ns FROM namespaces WHERE tenant_id = NEW.id;
        PERFORM cluster_load_add(NEW.cluster, 1, ns,
            coalesce(NEW.cpu_millis, 0), coalesce(NEW.memory_bytes, 0));
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION cluster_load_namespace() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t record;
    tenant bigint := CASE WHEN TG_OP = 'INSERT' THEN NEW.tenant_id ELSE OLD.tenant_id END;
BEGIN
    IF cluster_load_is_later(tenant) THEN
        RETURN NULL;
    END IF;
    SELECT cluster, state INTO t FROM tenants WHERE id = tenant;
    IF FOUND AND t.state <> 'deleted' THEN
        PERFORM cluster_load_add(t.cluster, 0, CASE WHEN TG_OP = 'INSERT' THEN 1 ELSE -1 END, 0, 0);
    END IF;
    RETURN NULL;
END $$;

-- At commit: no tenant written in the transaction is left uncounted.
CREATE FUNCTION cluster_load_none_later() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF cluster_load_is_later(NEW.id) THEN
        RAISE EXCEPTION 'tenant % would be committed without being counted on its cluster', NEW.id;
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER cluster_load_none_later AFTER INSERT ON tenants
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION cluster_load_none_later();
