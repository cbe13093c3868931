-- The service core: tenants, their namespaces and members, service tokens,
-- the audit trail, the reconciler's outbox and idempotency records.
-- Constraint names are part of the API: the service maps them to answers.

CREATE TABLE tenants (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug                text        NOT NULL CONSTRAINT tenants_slug_key UNIQUE,
    display_name        text        NOT NULL,
    description         text        NOT NULL DEFAULT '',
    labels              jsonb       NOT NULL DEFAULT '{}',
    cluster             text        NOT NULL,
    state               text        NOT NULL DEFAULT 'active'
        CONSTRAINT tenants_state_check CHECK (state IN ('active', 'suspended', 'deleting', 'deleted')),
    -- Resource name to canonical quantity string.
    budget              jsonb       NOT NULL DEFAULT '{}',
    -- Bumped by every change to the desired state; the reconciler reports
    -- the generation it last applied.
    generation          bigint      NOT NULL DEFAULT 1,
    sync_status         text        NOT NULL DEFAULT 'Pending'
        CONSTRAINT tenants_sync_status_check CHECK (sync_status IN ('Pending', 'Ready', 'Failed')),
    observed_generation bigint      NOT NULL DEFAULT 0,
    sync_message        text,
    last_synced_at      timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);

CREATE INDEX tenants_state_idx ON tenants (state, id);
CREATE INDEX tenants_cluster_idx ON tenants (cluster, id);
CREATE INDEX tenants_labels_idx ON tenants USING gin (labels jsonb_path_ops);

CREATE TABLE namespaces (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   bigint      NOT NULL REFERENCES tenants (id),
    name        text        NOT NULL,
    -- `<slug>-<name>`; unique across tenants, since `ab` + `c-dev` and
    -- `ab-c` + `dev` would otherwise meet in one cluster namespace.
    full_name   text        NOT NULL CONSTRAINT namespaces_full_name_key UNIQUE,
    allocations jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT namespaces_tenant_name_key UNIQUE (tenant_id, name)
);

CREATE TABLE members (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  bigint      NOT NULL REFERENCES tenants (id),
    kind       text        NOT NULL CONSTRAINT members_kind_check CHECK (kind IN ('user', 'group')),
    subject    text        NOT NULL,
    role       text        NOT NULL CONSTRAINT members_role_check CHECK (role IN ('owner', 'editor', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT members_tenant_subject_key UNIQUE (tenant_id, kind, subject)
);

CREATE INDEX members_subject_idx ON members (kind, subject);

CREATE TABLE service_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text        NOT NULL CONSTRAINT service_tokens_name_key UNIQUE,
    -- The public half of the token, used to find the row; the secret half
    -- is stored only as its SHA-256.
    lookup       text        NOT NULL CONSTRAINT service_tokens_lookup_key UNIQUE,
    secret_hash  bytea       NOT NULL,
    scopes       text[]      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);

CREATE TABLE audit_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL,
    action      text        NOT NULL,
    tenant_id   bigint      REFERENCES tenants (id),
    tenant_slug text,
    before      jsonb,
    after       jsonb,
    request_id  text
);

CREATE INDEX audit_events_tenant_idx ON audit_events (tenant_id, id);
CREATE INDEX audit_events_action_idx ON audit_events (action, id);
CREATE INDEX audit_events_actor_idx ON audit_events (actor, id);

-- One row per tenant with unapplied changes. A newer change overwrites the
-- generation, so the reconciler always applies the latest desired state once.
CREATE TABLE outbox (
    tenant_id    bigint      PRIMARY KEY REFERENCES tenants (id),
    generation   bigint      NOT NULL,
    enqueued_at  timestamptz NOT NULL DEFAULT now(),
    not_before   timestamptz NOT NULL DEFAULT now(),
    attempts     integer     NOT NULL DEFAULT 0,
    leased_by    text,
    leased_until timestamptz,
    last_error   text
);

CREATE INDEX outbox_due_idx ON outbox (not_before);

-- The first answer to a POST carrying an Idempotency-Key, replayed for retries.
CREATE TABLE idempotency_keys (
    principal   text        NOT NULL,
    key         text        NOT NULL,
    fingerprint bytea       NOT NULL,
    status      smallint,
    headers     jsonb,
    body        jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);
