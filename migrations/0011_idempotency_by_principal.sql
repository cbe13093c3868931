-- Idempotency keys now belong to the authenticated principal (token:<id>,
-- client:<id>, user:<subject>) instead of a hash of the Authorization header.
-- Rows keyed the old way can no longer be replayed, and some hold
-- kubeconfig answers with live ServiceAccount tokens: forget them all.
DELETE FROM idempotency_keys;
