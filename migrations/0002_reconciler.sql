-- What the reconciler reports back: per-namespace status, quota usage and
-- its history, and a notification that wakes workers when a change commits.

ALTER TABLE namespaces
    ADD COLUMN sync_status  text NOT NULL DEFAULT 'Pending'
        CONSTRAINT namespaces_sync_status_check CHECK (sync_status IN ('Pending', 'Ready', 'Failed')),
    ADD COLUMN sync_message text,
    -- ResourceQuota status.used, as the cluster last reported it.
    ADD COLUMN usage        jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN usage_at     timestamptz;

-- Usage over time, one row per namespace per sampling interval.
CREATE TABLE usage_samples (
    namespace_id bigint      NOT NULL REFERENCES namespaces (id) ON DELETE CASCADE,
    sampled_at   timestamptz NOT NULL DEFAULT now(),
    used         jsonb       NOT NULL,
    PRIMARY KEY (namespace_id, sampled_at)
);

CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenant_outbox', NEW.tenant_id::text);
    RETURN NEW;
END;
$$;

-- Delivered at commit, so a worker never wakes for a change it cannot see.
CREATE TRIGGER outbox_notify AFTER INSERT OR UPDATE OF generation, not_before ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_notify();
