-- Dashboard and API search (`?q=`) matches any part of a tenant's slug or
-- display name (ILIKE '%q%'); trigram indexes answer it without reading every
-- tenant. The search query in db/tenants.rs collects the matching ids from
-- these first, then reads the page by primary key.
-- Cost: each insert, and each update that changes a slug or display name, adds
-- about one index entry per three-letter group of each (GIN's pending list
-- batches them); measured in BENCHMARKS.md §2.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX tenants_slug_trgm_idx ON tenants USING gin (slug gin_trgm_ops);
CREATE INDEX tenants_display_name_trgm_idx ON tenants USING gin (display_name gin_trgm_ops);
