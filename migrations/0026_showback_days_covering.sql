-- Showback reads a month of whole days as each day's integrals alone: the
-- primary key carries them, so a report scans the index only (the rows,
-- with their running sums over 25 hours, are some 800 bytes; an index
-- entry is some 70), and reads rows only for the parts of days at the
-- period's ends and around a price change. ON CONFLICT still names the
-- same three key columns.
ALTER TABLE showback_days
    DROP CONSTRAINT showback_days_pkey,
    ADD CONSTRAINT showback_days_pkey PRIMARY KEY (namespace_id, day, resource) INCLUDE (allocated, used);
