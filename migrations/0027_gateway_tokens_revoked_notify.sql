-- Tells every replica at once that tenant-API tokens of a tenant were
-- revoked (deleted), so none of them keeps taking one it checked a moment
-- ago from its cache of checked tokens. The payload is the tenant's slug;
-- the replicas drop what they cached for that tenant and check again.
CREATE FUNCTION gateway_tokens_revoked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenant_credentials', t.slug)
    FROM (SELECT DISTINCT k.slug FROM gone g JOIN tenants k ON k.id = g.tenant_id) AS t;
    RETURN NULL;
END
$$;

CREATE TRIGGER gateway_tokens_revoked
    AFTER DELETE ON gateway_tokens
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION gateway_tokens_revoked();
