-- GitOps credentials per tenant: an owner asks the portal to keep an Argo CD
-- cluster Secret and/or a Flux kubeconfig Secret for the tenant on the
-- management cluster (--gitops-cluster, --gitops-namespace). Both carry a
-- short-lived tenant-API token of the tenant's automation account, which the
-- portal rotates before it expires. No row: the tenant keeps none.
CREATE TABLE gitops_credentials (
    tenant_id        bigint      PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    argocd           boolean     NOT NULL,
    flux             boolean     NOT NULL,
    -- The principal key of the owner (or token) who asked last.
    requested_by     text        NOT NULL,
    requested_at     timestamptz NOT NULL DEFAULT now(),
    -- The token in the Secrets now; NULL until the first is issued. A token
    -- outlives its rotation until it expires, so a GitOps tool that has not
    -- read the new Secret yet keeps working.
    token_id         bigint      REFERENCES gateway_tokens (id) ON DELETE SET NULL,
    token_expires_at timestamptz,
    -- Since when the Secrets have said what they should (NULL while being
    -- written or failing), and what the last attempt failed with (NULL
    -- when it did not). A pass that finds them unchanged writes neither.
    kept_at          timestamptz,
    error            text,
    CONSTRAINT gitops_credentials_some_tool CHECK (argocd OR flux)
);
CREATE INDEX gateway_tokens_gitops_idx ON gateway_tokens (tenant_id) WHERE issued_by = 'gitops';
