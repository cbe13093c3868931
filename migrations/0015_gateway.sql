-- Credentials for the tenant's own Kubernetes API (/k8s/tenants/<slug>):
-- the bearer token of a tenant-view kubeconfig. Like service tokens, the
-- lookup half finds the row and only the SHA-256 of the secret is kept.
-- A token names who it was issued to, never a role: the role is read from
-- the tenant's members on each use, so removing a member ends their access.
CREATE TABLE gateway_tokens (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lookup       text        NOT NULL CONSTRAINT gateway_tokens_lookup_key UNIQUE,
    secret_hash  bytea       NOT NULL,
    tenant_id    bigint      NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- 'user': an employee (email and groups as signed in);
    -- 'automation': the tenant's automation account (editor).
    holder_kind  text        NOT NULL
        CONSTRAINT gateway_tokens_holder_kind_check CHECK (holder_kind IN ('user', 'automation')),
    email        text,
    groups       text[]      NOT NULL DEFAULT '{}',
    -- The principal key of whoever asked for it (user:<subject>, token:<id>, ...).
    issued_by    text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    CONSTRAINT gateway_tokens_user_has_email CHECK (holder_kind <> 'user' OR email IS NOT NULL)
);
CREATE INDEX gateway_tokens_expires_idx ON gateway_tokens (expires_at);
