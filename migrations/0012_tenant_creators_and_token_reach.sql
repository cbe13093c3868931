-- Who created a tenant, as the principal key (token:<id>, client:<id>,
-- user:<subject>): a token or machine client reaches the tenants it created,
-- and the tenants-per-owner limit counts an employee's.
ALTER TABLE tenants ADD COLUMN created_by text;
CREATE INDEX tenants_created_by_idx ON tenants (created_by) WHERE created_by IS NOT NULL;

-- Tenants created by a token or machine client before this migration: the
-- audit trail names the creator (token:<name>, client:<id>).
UPDATE tenants t SET created_by = 'token:' || s.id
  FROM audit_events a JOIN service_tokens s ON a.actor = 'token:' || s.name
 WHERE a.action = 'tenant.created' AND a.tenant_id = t.id AND t.created_by IS NULL;
UPDATE tenants t SET created_by = a.actor
  FROM audit_events a
 WHERE a.action = 'tenant.created' AND a.tenant_id = t.id AND t.created_by IS NULL
   AND a.actor LIKE 'client:%';

-- A token reaches every tenant only with an explicit grant by an admin.
-- Tokens made before this migration had no such rule; they keep only what
-- they created and what an admin names on them (fail closed).
ALTER TABLE service_tokens ADD COLUMN all_tenants boolean NOT NULL DEFAULT false;

-- The tenants named on a token when it was made.
CREATE TABLE service_token_tenants (
    token_id  bigint NOT NULL REFERENCES service_tokens (id) ON DELETE CASCADE,
    tenant_id bigint NOT NULL REFERENCES tenants (id),
    CONSTRAINT service_token_tenants_pkey PRIMARY KEY (token_id, tenant_id)
);
CREATE INDEX service_token_tenants_tenant_idx ON service_token_tenants (tenant_id);
