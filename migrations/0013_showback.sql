-- Showback: prices with their history, and what each namespace had
-- allocated when its usage was sampled, so a past period is priced with the
-- prices and allocations of that period.

-- A price is never changed: a new price is a new row that starts at its own
-- time, and the row in force at an instant is the latest one started by then
-- (a cluster's own price before the one for every cluster).
CREATE TABLE prices (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resource       text        NOT NULL,
    -- NULL: every cluster without a price of its own for the resource.
    cluster        text,
    -- Millionths of the currency per unit and period of the resource
    -- (domain/price.rs: a core-hour, a GiB-hour, a GiB-month).
    micros         bigint      NOT NULL CONSTRAINT prices_micros_check CHECK (micros >= 0),
    effective_from timestamptz NOT NULL,
    set_by         text        NOT NULL,
    set_at         timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX prices_resource_cluster_from_key
    ON prices (resource, COALESCE(cluster, ''), effective_from);

-- The allocations in force when the sample was taken. Samples taken before
-- this column existed get the allocations of today: the best there is.
ALTER TABLE usage_samples ADD COLUMN allocated jsonb;
UPDATE usage_samples s SET allocated = n.allocations FROM namespaces n WHERE n.id = s.namespace_id;

CREATE FUNCTION usage_sample_allocated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.allocated IS NULL THEN
        SELECT n.allocations INTO NEW.allocated FROM namespaces n WHERE n.id = NEW.namespace_id;
    END IF;
    NEW.allocated := COALESCE(NEW.allocated, '{}');
    RETURN NEW;
END;
$$;

-- Every writer of samples (the sampler, tests, imports) records the
-- allocation beside the usage without knowing of it.
CREATE TRIGGER usage_sample_allocated BEFORE INSERT ON usage_samples
    FOR EACH ROW EXECUTE FUNCTION usage_sample_allocated();

ALTER TABLE usage_samples ALTER COLUMN allocated SET NOT NULL;
