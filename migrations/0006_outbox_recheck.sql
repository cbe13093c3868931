-- A check asked for while a worker holds the tenant's row (drift seen during
-- an apply) must not be lost when that worker finishes: it marks the row, and
-- the worker then leaves it for one more pass instead of deleting it.
ALTER TABLE outbox ADD COLUMN recheck boolean NOT NULL DEFAULT false;
