-- The outbox notification names the tenant's cluster as well ("<tenant id>
-- <cluster>"), so a replica wakes one worker of that cluster for each change
-- instead of every idle worker of every cluster: each woken worker runs a
-- claim, and with 16 workers a burst of creates ran about seven claims per
-- tenant, six of them finding nothing (BENCHMARKS.md §1, finding I).
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenant_outbox', NEW.tenant_id::text || ' ' ||
        coalesce((SELECT cluster FROM tenants WHERE id = NEW.tenant_id), ''));
    RETURN NEW;
END;
$$;
