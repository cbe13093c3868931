-- A tenant's view (the tenant with its namespaces, members and policy, as
-- the API answers it) changes exactly when this number does, so a replica
-- may keep a page's views and read only (id, view_version) to know which
-- ones are still current. Every write that changes a part of the view
-- bumps it, in the same transaction, whoever writes (portal, reconciler,
-- migration, an operator in psql).
--
-- Readers only ever see committed rows, so one bump per transaction is
-- enough, and `view_xact` (the transaction that bumped last) keeps a
-- transaction that writes a tenant and its children from making more than
-- one new row version for it: a create, which inserts the tenant, its
-- namespaces and members, bumps nothing after the insert.
ALTER TABLE tenants ADD COLUMN view_version bigint NOT NULL DEFAULT 0,
                    ADD COLUMN view_xact xid8;

CREATE FUNCTION tenant_view_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.view_xact = pg_current_xact_id() THEN
            RETURN NEW;
        END IF;
        IF NEW IS NOT DISTINCT FROM OLD THEN
            RETURN NEW;
        END IF;
        NEW.view_version := OLD.view_version + 1;
    END IF;
    NEW.view_xact := pg_current_xact_id();
    RETURN NEW;
END $$;

CREATE TRIGGER tenant_view_changed BEFORE INSERT OR UPDATE ON tenants
    FOR EACH ROW EXECUTE FUNCTION tenant_view_changed();

-- A namespace's usage and sync status are not part of the tenant's view;
-- its name, allocations and existence are.
CREATE FUNCTION tenant_view_child_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tenants SET view_version = view_version + 1
    WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.tenant_id ELSE NEW.tenant_id END
      AND view_xact IS DISTINCT FROM pg_current_xact_id();
    RETURN NULL;
END $$;

CREATE TRIGGER tenant_view_namespace_changed
    AFTER INSERT OR DELETE OR UPDATE OF name, full_name, allocations, created_at ON namespaces
    FOR EACH ROW EXECUTE FUNCTION tenant_view_child_changed();
CREATE TRIGGER tenant_view_member_changed AFTER INSERT OR UPDATE OR DELETE ON members
    FOR EACH ROW EXECUTE FUNCTION tenant_view_child_changed();
CREATE TRIGGER tenant_view_policy_changed AFTER INSERT OR UPDATE OR DELETE ON tenant_policies
    FOR EACH ROW EXECUTE FUNCTION tenant_view_child_changed();
