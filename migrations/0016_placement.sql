-- Placement by capacity: what each cluster holds and what an admin says it
-- can hold.
--
-- A tenant's budget is a map of quantities that only the portal parses, so
-- the portal also writes the two figures placement adds up: the budget's
-- CPU in millicores and memory in bytes (NULL until the portal has written
-- them for a tenant that predates this migration; it does so at start).
ALTER TABLE tenants ADD COLUMN cpu_millis bigint, ADD COLUMN memory_bytes bigint;

-- One row per cluster that ever held a tenant or was given a capacity. The
-- load columns are kept by the triggers below in the same transaction as the
-- change, so they are never stale; a NULL capacity means no limit.
CREATE TABLE clusters (
    name                 text PRIMARY KEY,
    tenants              bigint NOT NULL DEFAULT 0,
    namespaces           bigint NOT NULL DEFAULT 0,
    cpu_millis           bigint NOT NULL DEFAULT 0,
    memory_bytes         bigint NOT NULL DEFAULT 0,
    max_namespaces       bigint CHECK (max_namespaces >= 0),
    max_cpu_millis       bigint CHECK (max_cpu_millis >= 0),
    max_memory_bytes     bigint CHECK (max_memory_bytes >= 0),
    capacity_set_by      text,
    capacity_set_at      timestamptz
);

INSERT INTO clusters (name, tenants, namespaces)
SELECT t.cluster, count(DISTINCT t.id), count(n.id)
FROM tenants t LEFT JOIN namespaces n ON n.tenant_id = t.id
WHERE t.state <> 'deleted'
GROUP BY t.cluster;

-- Adds to a cluster's load. Growing past a declared capacity raises SQLSTATE
-- TPC01 with a message for people; shrinking never fails, so deleting
-- tenants from a cluster declared smaller than its load still works. The
-- row lock this takes until commit is what makes the check exact.
CREATE FUNCTION cluster_load_add(cluster text, add_tenants bigint, add_namespaces bigint,
                                 add_cpu_millis bigint, add_memory_bytes bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    c clusters%ROWTYPE;
BEGIN
    IF add_tenants = 0 AND add_namespaces = 0 AND add_cpu_millis = 0 AND add_memory_bytes = 0 THEN
        RETURN;
    END IF;
    INSERT INTO clusters AS k (name, tenants, namespaces, cpu_millis, memory_bytes)
    VALUES (cluster, add_tenants, add_namespaces, add_cpu_millis, add_memory_bytes)
    ON CONFLICT (name) DO UPDATE SET
        tenants = k.tenants + EXCLUDED.tenants,
        namespaces = k.namespaces + EXCLUDED.namespaces,
        cpu_millis = k.cpu_millis + EXCLUDED.cpu_millis,
        memory_bytes = k.memory_bytes + EXCLUDED.memory_bytes
    RETURNING * INTO c;
    -- The messages name the declared limit and what was asked, never the
    -- load: a tenant told its cluster is full learns nothing of the others.
    IF add_namespaces > 0 AND c.namespaces > c.max_namespaces THEN
        RAISE EXCEPTION 'cluster "%" cannot take % more namespace(s) within its declared %',
            c.name, add_namespaces, c.max_namespaces
            USING ERRCODE = 'TPC01';
    END IF;
    IF add_cpu_millis > 0 AND c.cpu_millis > c.max_cpu_millis THEN
        RAISE EXCEPTION 'cluster "%" cannot take % more CPU in budgets within its declared %',
            c.name, trim_scale(add_cpu_millis / 1000.0), trim_scale(c.max_cpu_millis / 1000.0)
            USING ERRCODE = 'TPC01';
    END IF;
    IF add_memory_bytes > 0 AND c.memory_bytes > c.max_memory_bytes THEN
        RAISE EXCEPTION 'cluster "%" cannot take % GiB more memory in budgets within its declared % GiB',
            c.name, trim_scale(round(add_memory_bytes / 1073741824.0, 2)),
            trim_scale(round(c.max_memory_bytes / 1073741824.0, 2))
            USING ERRCODE = 'TPC01';
    END IF;
END $$;

-- A live tenant (not yet deleted) counts with its namespaces and budget.
CREATE FUNCTION cluster_load_tenant() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ns bigint;
BEGIN
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

CREATE TRIGGER cluster_load_tenant AFTER INSERT OR UPDATE OF state, cluster, cpu_millis, memory_bytes
    ON tenants FOR EACH ROW EXECUTE FUNCTION cluster_load_tenant();
-- Before the delete, while the tenant's namespaces still exist to be counted
-- (the cascade removes them after, when the tenant is no longer found).
CREATE TRIGGER cluster_load_tenant_deleted BEFORE DELETE
    ON tenants FOR EACH ROW EXECUTE FUNCTION cluster_load_tenant();

CREATE FUNCTION cluster_load_namespace() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t record;
BEGIN
    SELECT cluster, state INTO t FROM tenants
    WHERE id = CASE WHEN TG_OP = 'INSERT' THEN NEW.tenant_id ELSE OLD.tenant_id END;
    IF FOUND AND t.state <> 'deleted' THEN
        PERFORM cluster_load_add(t.cluster, 0, CASE WHEN TG_OP = 'INSERT' THEN 1 ELSE -1 END, 0, 0);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER cluster_load_namespace AFTER INSERT OR DELETE
    ON namespaces FOR EACH ROW EXECUTE FUNCTION cluster_load_namespace();

-- Usage history is forgotten after --usage-retention, oldest first; samples
-- are added in time order, so a BRIN index finds a time range in a few pages
-- and costs next to nothing per insert.
CREATE INDEX usage_samples_sampled_at_brin ON usage_samples USING brin (sampled_at);
