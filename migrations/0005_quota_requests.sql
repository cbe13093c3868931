-- Owners ask for a bigger budget; platform admins decide.

CREATE TABLE quota_requests (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      bigint      NOT NULL REFERENCES tenants (id),
    requested_by   text        NOT NULL,
    resource       text        NOT NULL,
    -- The budget the owner asks for, as a canonical quantity.
    amount         text        NOT NULL,
    reason         text        NOT NULL,
    status         text        NOT NULL DEFAULT 'pending'
        CONSTRAINT quota_requests_status_check CHECK (status IN ('pending', 'approved', 'rejected')),
    decided_by     text,
    granted_amount text,
    comment        text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    decided_at     timestamptz
);

CREATE INDEX quota_requests_pending_idx ON quota_requests (status, id);
CREATE INDEX quota_requests_tenant_idx ON quota_requests (tenant_id, id);
