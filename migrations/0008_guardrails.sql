-- Guardrails: a tenant's policy, set by platform admins, and the rule that a
-- cluster namespace name, once given to a tenant, is never given to another.

-- A tenant without a row here has the policy the configuration gives.
CREATE TABLE tenant_policies (
    tenant_id  bigint      PRIMARY KEY REFERENCES tenants (id),
    policy     jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every full namespace name ever given, and to whom. Rows are never deleted:
-- a removed namespace may still exist in the cluster (terminating, or kept
-- by a finalizer) with the old tenant's data, as slugs are never reused.
CREATE TABLE namespace_names (
    full_name  text        PRIMARY KEY,
    tenant_id  bigint      NOT NULL REFERENCES tenants (id),
    claimed_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO namespace_names (full_name, tenant_id)
SELECT full_name, tenant_id FROM namespaces
ON CONFLICT (full_name) DO NOTHING;

-- Kept by the database, so that no path that adds a namespace can skip it.
CREATE FUNCTION claim_namespace_name() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO namespace_names (full_name, tenant_id)
    VALUES (NEW.full_name, NEW.tenant_id)
    ON CONFLICT (full_name) DO NOTHING;
    IF NOT EXISTS (
        SELECT 1 FROM namespace_names
        WHERE full_name = NEW.full_name AND tenant_id = NEW.tenant_id
    ) THEN
        RAISE EXCEPTION 'the namespace name % was used by another tenant', NEW.full_name
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'namespace_names_pkey';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER namespaces_claim_name
    BEFORE INSERT ON namespaces
    FOR EACH ROW EXECUTE FUNCTION claim_namespace_name();
