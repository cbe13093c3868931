-- Employee login: logins in flight and server-side sessions.

-- A login between the redirect to the identity provider and its callback.
-- The row is deleted when used, so a replayed state finds nothing.
CREATE TABLE login_attempts (
    state         text        PRIMARY KEY,
    pkce_verifier text        NOT NULL,
    nonce         text        NOT NULL,
    return_to     text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- A signed-in browser. Only the SHA-256 of the cookie's value is stored.
CREATE TABLE sessions (
    id_hash      bytea       PRIMARY KEY,
    subject      text        NOT NULL,
    email        text        NOT NULL,
    name         text        NOT NULL,
    groups       text[]      NOT NULL,
    csrf_token   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);

CREATE INDEX sessions_expires_idx ON sessions (expires_at);
CREATE INDEX members_tenant_kind_subject_idx ON members (tenant_id, kind, subject);
