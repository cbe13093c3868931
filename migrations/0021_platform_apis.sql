-- Platform APIs: namespaced resources of the cluster's custom API groups
-- that platform admins publish to tenants, to all of them or to a list.
CREATE TABLE platform_apis (
    id bigserial PRIMARY KEY,
    api_group text NOT NULL,
    resource text NOT NULL,
    description text NOT NULL DEFAULT '',
    -- true: every tenant; false: the tenants in platform_api_tenants.
    all_tenants boolean NOT NULL,
    published_by text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (api_group, resource)
);

CREATE TABLE platform_api_tenants (
    platform_api_id bigint NOT NULL REFERENCES platform_apis (id) ON DELETE CASCADE,
    tenant_id bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    PRIMARY KEY (platform_api_id, tenant_id)
);
CREATE INDEX platform_api_tenants_tenant ON platform_api_tenants (tenant_id);

-- The platform APIs published to a tenant (`<resource>.<group>`, sorted),
-- before its policy narrows them: for the reconciler's read of a tenant
-- and the tenant API's.
CREATE FUNCTION platform_apis_of(tenant_id bigint)
RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(json_agg(a.resource || '.' || a.api_group
                             ORDER BY a.resource || '.' || a.api_group COLLATE "C"), '[]')
    FROM platform_apis a
    WHERE a.all_tenants
       OR EXISTS (SELECT 1 FROM platform_api_tenants t
                  WHERE t.platform_api_id = a.id AND t.tenant_id = platform_apis_of.tenant_id)
$$;
