-- The trigram indexes of search (migration 0014) take each new entry
-- directly instead of in GIN's pending list: a search reads the whole
-- pending list until a vacuum merges it, which after a burst of creates
-- made a one-match search anywhere from 1 ms to 100 ms. Tenants are created
-- rarely and searched often, so each create pays the merge (about twenty
-- trigrams per index) instead. Measured in BENCHMARKS.md §2.
ALTER INDEX tenants_slug_trgm_idx SET (fastupdate = off);
ALTER INDEX tenants_display_name_trgm_idx SET (fastupdate = off);
