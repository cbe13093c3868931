-- Showback rollups: what each namespace had allocated and used, integrated
-- over each hour (nano-units times seconds, exact), so a month is read as a
-- few rows a namespace instead of every sample. Prices are not rolled up:
-- an hour's integral is priced when read, at the price in force in that
-- hour, and an hour a price starts within is read from the samples.
--
-- Times are Unix seconds: no session time zone can shift a day.

-- A namespace's rollups are valid for the hours in [valid_from, sealed_until):
-- sealed_until is the start of the hour of its latest sample at the last
-- catch-up (every hour before it is over and its samples known); valid_from
-- rises when the oldest samples are forgotten.
CREATE TABLE showback_marks (
    namespace_id bigint PRIMARY KEY,
    valid_from   bigint NOT NULL DEFAULT 0,
    sealed_until bigint NOT NULL DEFAULT 0
);

-- One row per namespace, UTC day and priced resource: the day's integrals,
-- and the running sums over its hours (25 of them: before hour 0, after
-- hour 0, ... after hour 23), so any run of its hours is one subtraction.
CREATE TABLE showback_days (
    namespace_id    bigint    NOT NULL,
    day             bigint    NOT NULL,
    resource        text      NOT NULL,
    allocated       numeric   NOT NULL,
    used            numeric   NOT NULL,
    allocated_hours numeric[] NOT NULL,
    used_hours      numeric[] NOT NULL,
    PRIMARY KEY (namespace_id, day, resource)
);

-- A sample written, changed or removed before a namespace's sealed hour
-- makes its rollups from that day on stale: they are removed and the
-- catch-up redoes them. The sampler writes at the present, after every
-- sealed hour, so it costs nothing. Forgetting the oldest samples only
-- raises valid_from, since the hours after the first kept sample do not
-- depend on what came before it.
CREATE FUNCTION showback_unseal(ns bigint, at timestamptz) RETURNS void LANGUAGE sql AS $$
    WITH m AS (
        UPDATE showback_marks
        SET sealed_until = least(sealed_until, (floor(extract(epoch FROM at) / 86400) * 86400)::bigint)
        WHERE namespace_id = ns AND extract(epoch FROM at) < sealed_until
        RETURNING sealed_until
    )
    DELETE FROM showback_days d USING m WHERE d.namespace_id = ns AND d.day >= m.sealed_until;
$$;

CREATE FUNCTION showback_samples_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM showback_unseal(a.namespace_id, a.at)
    FROM (SELECT namespace_id, min(sampled_at) AS at FROM added GROUP BY namespace_id) a
    JOIN showback_marks m ON m.namespace_id = a.namespace_id
    WHERE extract(epoch FROM a.at) < m.sealed_until;
    RETURN NULL;
END;
$$;

CREATE TRIGGER showback_samples_added AFTER INSERT ON usage_samples
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION showback_samples_added();

CREATE FUNCTION showback_samples_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM showback_unseal(c.namespace_id, c.at)
    FROM (SELECT namespace_id, min(sampled_at) AS at
          FROM (SELECT namespace_id, sampled_at FROM before_change
                UNION ALL SELECT namespace_id, sampled_at FROM after_change) x
          GROUP BY namespace_id) c
    JOIN showback_marks m ON m.namespace_id = c.namespace_id
    WHERE extract(epoch FROM c.at) < m.sealed_until;
    RETURN NULL;
END;
$$;

CREATE TRIGGER showback_samples_changed AFTER UPDATE ON usage_samples
    REFERENCING OLD TABLE AS before_change NEW TABLE AS after_change
    FOR EACH STATEMENT EXECUTE FUNCTION showback_samples_changed();

CREATE FUNCTION showback_samples_removed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT g.namespace_id, g.first_gone, g.last_gone, m.sealed_until,
               (SELECT min(s.sampled_at) FROM usage_samples s WHERE s.namespace_id = g.namespace_id) AS first_kept
        FROM (SELECT namespace_id, min(sampled_at) AS first_gone, max(sampled_at) AS last_gone
              FROM removed GROUP BY namespace_id) g
        JOIN showback_marks m ON m.namespace_id = g.namespace_id
        WHERE extract(epoch FROM g.first_gone) < m.sealed_until
    LOOP
        IF r.first_kept IS NULL OR r.first_kept > r.last_gone THEN
            -- The oldest samples went: nothing stands before the first kept
            -- one, and the hours from the one after it on are unchanged.
            UPDATE showback_marks
            SET valid_from = greatest(valid_from, least(sealed_until,
                    COALESCE((ceil(extract(epoch FROM r.first_kept) / 3600) * 3600)::bigint, sealed_until)))
            WHERE namespace_id = r.namespace_id;
            DELETE FROM showback_days d USING showback_marks m
            WHERE d.namespace_id = r.namespace_id AND m.namespace_id = r.namespace_id
              AND d.day + 86400 <= m.valid_from;
        ELSE
            PERFORM showback_unseal(r.namespace_id, r.first_gone);
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER showback_samples_removed AFTER DELETE ON usage_samples
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION showback_samples_removed();

CREATE FUNCTION showback_samples_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM showback_days;
    DELETE FROM showback_marks;
    RETURN NULL;
END;
$$;

CREATE TRIGGER showback_samples_truncated AFTER TRUNCATE ON usage_samples
    FOR EACH STATEMENT EXECUTE FUNCTION showback_samples_truncated();
