-- Templates (tiers): named, versioned starting points for tenants. A
-- version is never changed once written; a change is a new version. A
-- tenant made from a template records which version it is on, and a
-- rollout moves it to a newer one.
CREATE TABLE templates (
    name        text        NOT NULL
        CONSTRAINT templates_name_check CHECK (name ~ '^[a-z]([-a-z0-9]{0,30}[a-z0-9])?$'),
    version     integer     NOT NULL CONSTRAINT templates_version_check CHECK (version > 0),
    -- The template's fields as written (domain/template.rs::TemplateSpec).
    spec        jsonb       NOT NULL,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT templates_pkey PRIMARY KEY (name, version)
);

-- Which template version a tenant is on; at most one.
CREATE TABLE tenant_templates (
    tenant_id   bigint  NOT NULL CONSTRAINT tenant_templates_pkey PRIMARY KEY
        REFERENCES tenants (id) ON DELETE CASCADE,
    template    text    NOT NULL,
    version     integer NOT NULL,
    CONSTRAINT tenant_templates_version_fkey FOREIGN KEY (template, version)
        REFERENCES templates (name, version)
);

CREATE INDEX tenant_templates_template_idx ON tenant_templates (template, version);
