-- For internal platforms: tenants that expire, and a stream of changes.

ALTER TABLE tenants ADD COLUMN expires_at timestamptz;
CREATE INDEX tenants_expiry_idx ON tenants (expires_at) WHERE expires_at IS NOT NULL AND state IN ('active', 'suspended');

-- What happened to tenants, for clients following GET /api/v1/events.
-- Ids come from `event_sequence` under its row lock, taken last in each
-- writing transaction, so ids are handed out in commit order: a reader that
-- has seen id N never later finds a smaller id appear.
CREATE TABLE events (
    id          bigint      PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    type        text        NOT NULL,
    tenant_id   bigint      REFERENCES tenants (id),
    tenant_slug text        NOT NULL,
    data        jsonb       NOT NULL
);

CREATE INDEX events_tenant_idx ON events (tenant_slug, id);
CREATE INDEX events_occurred_idx ON events (occurred_at);

CREATE TABLE event_sequence (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_id   bigint  NOT NULL
);
INSERT INTO event_sequence (last_id) VALUES (0);

CREATE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenant_events', NEW.id::text || ' ' || NEW.tenant_slug);
    RETURN NEW;
END;
$$;

CREATE TRIGGER events_notify AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION events_notify();
