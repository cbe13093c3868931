-- members_tenant_subject_key (the UNIQUE constraint of 0001) already indexes
-- (tenant_id, kind, subject); a second index on the same columns only costs
-- every member write.
DROP INDEX IF EXISTS members_tenant_kind_subject_idx;
