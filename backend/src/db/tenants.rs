use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use sqlx::types::Json;

use super::members::MemberRow;
use super::namespaces::NamespaceRow;
use crate::domain::{
    Description, DisplayName, Labels, MemberKind, ResourceList, Role, TenantSlug, TenantState,
};
use crate::error::Error;

/// A tenant row as stored (quantities as canonical strings), parsed on the
/// way out: a row whose state or budget does not parse fails its read.
#[derive(Debug, Clone)]
pub struct TenantRow {
    pub id: i64,
    pub slug: String,
    pub display_name: String,
    pub description: String,
    pub labels: Json<std::collections::BTreeMap<String, String>>,
    pub cluster: String,
    pub state: TenantState,
    pub budget: ResourceList,
    pub generation: i64,
    pub sync_status: String,
    pub observed_generation: i64,
    pub sync_message: Option<String>,
    pub last_synced_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// When the portal deletes the tenant by itself.
    pub expires_at: Option<DateTime<Utc>>,
}

impl TenantRow {
    pub fn state(&self) -> TenantState {
        self.state
    }

    pub fn slug(&self) -> TenantSlug {
        // Not re-parsed: a word reserved later must not make old tenants unreachable.
        TenantSlug::trusted(&self.slug)
    }

    pub fn budget(&self) -> ResourceList {
        self.budget.clone()
    }
}

/// What a new tenant is made of.
pub struct NewTenant<'a> {
    pub slug: &'a TenantSlug,
    pub display_name: &'a DisplayName,
    pub description: &'a Description,
    pub labels: &'a Labels,
    pub cluster: &'a str,
    pub budget: &'a ResourceList,
    pub expires_at: Option<DateTime<Utc>>,
    /// The principal's key (`token:<id>`, `client:<id>`, `user:<subject>`):
    /// what a token or machine client reaches (`db::reach`).
    pub created_by: &'a str,
}

/// The descriptive part of a tenant, written as a whole.
pub struct TenantSpec<'a> {
    pub display_name: &'a DisplayName,
    pub description: &'a Description,
    pub labels: &'a Labels,
    pub expires_at: Option<DateTime<Utc>>,
}

fn slug_taken(slug: &TenantSlug) -> Error {
    Error::Conflict {
        detail: format!(
            "the slug \"{slug}\" is taken; slugs are never reused, even after deletion"
        ),
        errors: vec![crate::domain::FieldError::new("slug", "must be unique")],
    }
}

/// A new tenant's rows as written: the tenant, its namespaces (as given)
/// and its members (oldest first).
pub struct Written {
    pub tenant: TenantRow,
    pub namespaces: Vec<NamespaceRow>,
    pub members: Vec<MemberRow>,
}

/// Writes a new tenant with its namespaces ((short name, full name,
/// allocations)) and members in one statement, not yet counted on its
/// cluster: the transaction counts it whole before it commits, with
/// [`count_created`] or [`created`] (migration 0025; committing it uncounted
/// fails). A taken slug or namespace name is the conflict it was when each
/// was written alone.
pub async fn insert_uncounted(
    conn: &mut PgConnection,
    new: NewTenant<'_>,
    namespaces: &[(&str, &str, &ResourceList)],
    members: &[(MemberKind, &str, Role)],
) -> Result<Written, Error> {
    let demand = new.budget.cluster_demand();
    let names: Vec<&str> = namespaces.iter().map(|n| n.0).collect();
    let full_names: Vec<&str> = namespaces.iter().map(|n| n.1).collect();
    let allocations: Vec<serde_json::Value> = namespaces
        .iter()
        .map(|n| serde_json::to_value(n.2.to_strings()))
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Internal(e.into()))?;
    let kinds: Vec<&str> = members.iter().map(|m| m.0.as_str()).collect();
    let subjects: Vec<&str> = members.iter().map(|m| m.1).collect();
    let roles: Vec<&str> = members.iter().map(|m| m.2.as_str()).collect();
    let row = sqlx::query!(
        r#"WITH t AS (
               INSERT INTO tenants (id, slug, display_name, description, labels, cluster, budget,
                                    expires_at, cpu_millis, memory_bytes, created_by)
               OVERRIDING SYSTEM VALUE
               VALUES (cluster_load_later(), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
               RETURNING id, slug, display_name, description, labels, cluster, state, budget,
                         generation, sync_status, observed_generation, sync_message,
                         last_synced_at, created_at, updated_at, deleted_at, expires_at
           ), n AS (
               INSERT INTO namespaces (tenant_id, name, full_name, allocations)
               SELECT t.id, n.name, n.full_name, n.allocations
               FROM t, unnest($11::text[], $12::text[], $13::jsonb[])
                       WITH ORDINALITY AS n(name, full_name, allocations, i)
               ORDER BY n.i
               RETURNING id, tenant_id, name, full_name, allocations, created_at,
                         sync_status, sync_message, usage, usage_at
           ), m AS (
               INSERT INTO members (tenant_id, kind, subject, role)
               SELECT t.id, m.kind, m.subject, m.role
               FROM t, unnest($14::text[], $15::text[], $16::text[])
                       WITH ORDINALITY AS m(kind, subject, role, i)
               ORDER BY m.i
               RETURNING id, tenant_id, kind, subject, role, created_at
           )
           SELECT t.id AS "id!", t.slug AS "slug!", t.display_name AS "display_name!",
                  t.description AS "description!",
                  t.labels AS "labels!: Json<BTreeMap<String, String>>", t.cluster AS "cluster!",
                  t.state AS "state!: TenantState", t.budget AS "budget!: ResourceList",
                  t.generation AS "generation!", t.sync_status AS "sync_status!",
                  t.observed_generation AS "observed_generation!", t.sync_message AS "sync_message?",
                  t.last_synced_at AS "last_synced_at?", t.created_at AS "created_at!",
                  t.updated_at AS "updated_at!", t.deleted_at AS "deleted_at?",
                  t.expires_at AS "expires_at?",
                  (SELECT COALESCE(json_agg(n), '[]') FROM n) AS "namespaces!: Json<Vec<NamespaceRow>>",
                  (SELECT COALESCE(json_agg(m ORDER BY m.id), '[]') FROM m) AS "members!: Json<Vec<MemberRow>>"
           FROM t"#,
        new.slug.as_str(),
        new.display_name.as_str(),
        new.description.as_str(),
        Json(new.labels.as_map()) as _,
        new.cluster,
        Json(new.budget.to_strings()) as _,
        new.expires_at,
        demand.cpu_millis,
        demand.memory_bytes,
        new.created_by,
        &names as &[&str],
        &full_names as &[&str],
        &allocations,
        &kinds as &[&str],
        &subjects as &[&str],
        &roles as &[&str],
    )
    .fetch_one(conn)
    .await
    .map_err(|e| match super::violated_constraint(&e) {
        Some("tenants_slug_key") => slug_taken(new.slug),
        Some("members_tenant_subject_key") => Error::Conflict {
            detail: "a member appears twice".into(),
            errors: vec![crate::domain::FieldError::new("members", "must be unique")],
        },
        _ => super::namespaces::taken(e, namespaces),
    })?;
    Ok(Written {
        tenant: TenantRow {
            id: row.id,
            slug: row.slug,
            display_name: row.display_name,
            description: row.description,
            labels: row.labels,
            cluster: row.cluster,
            state: row.state,
            budget: row.budget,
            generation: row.generation,
            sync_status: row.sync_status,
            observed_generation: row.observed_generation,
            sync_message: row.sync_message,
            last_synced_at: row.last_synced_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            deleted_at: row.deleted_at,
            expires_at: row.expires_at,
        },
        namespaces: row.namespaces.0,
        members: row.members.0,
    })
}

/// Whether a new tenant was counted on its cluster, or the refusal of a
/// cluster it would fill past its declared capacity (the transaction is
/// then aborted: roll it back, if it was not its commit that was refused).
pub enum Counted {
    Yes,
    Full(Error),
}

fn counted(result: Result<(), sqlx::Error>) -> Result<Counted, Error> {
    match result {
        Ok(()) => Ok(Counted::Yes),
        Err(e) => match super::clusters::over_capacity(&e) {
            Some(refusal) => Ok(Counted::Full(refusal)),
            None => Err(e.into()),
        },
    }
}

/// Counts a tenant written by [`insert_uncounted`] on its cluster now; its
/// cluster's row stays locked until the transaction ends.
pub async fn count_created(conn: &mut PgConnection, tenant_id: i64) -> Result<Counted, Error> {
    counted(
        sqlx::query!("SELECT cluster_load_created($1)", tenant_id)
            .fetch_one(conn)
            .await
            .map(|_| ()),
    )
}

/// Commits a create, which counts the tenant written by
/// [`insert_uncounted`] on its cluster, unless [`count_created`] did, and
/// numbers its events (migration 0028). The cluster's row and the event
/// numbers are held only while PostgreSQL commits; a cluster the tenant
/// would fill past its capacity refuses the commit, and nothing of the
/// create is kept.
pub async fn commit_counted(tx: super::Tx) -> Result<Counted, Error> {
    counted(tx.commit().await)
}

pub async fn get(conn: &mut PgConnection, slug: &str) -> Result<Option<TenantRow>, Error> {
    Ok(sqlx::query_as!(
        TenantRow,
        r#"SELECT id, slug, display_name, description,
                  labels AS "labels: _", cluster, state AS "state: _", budget AS "budget: _", generation,
                  sync_status, observed_generation, sync_message, last_synced_at,
                  created_at, updated_at, deleted_at, expires_at
           FROM tenants WHERE slug = $1"#,
        slug
    )
    .fetch_optional(conn)
    .await?)
}

/// Reads the tenant and locks its row until the transaction ends; every write
/// to a tenant takes this lock first, so checks like the budget rule see no
/// concurrent change.
pub async fn get_for_update(
    conn: &mut PgConnection,
    slug: &str,
) -> Result<Option<TenantRow>, Error> {
    Ok(sqlx::query_as!(
        TenantRow,
        r#"SELECT id, slug, display_name, description,
                  labels AS "labels: _", cluster, state AS "state: _", budget AS "budget: _", generation,
                  sync_status, observed_generation, sync_message, last_synced_at,
                  created_at, updated_at, deleted_at, expires_at
           FROM tenants WHERE slug = $1 FOR UPDATE"#,
        slug
    )
    .fetch_optional(conn)
    .await?)
}

pub async fn update_spec(
    conn: &mut PgConnection,
    id: i64,
    spec: TenantSpec<'_>,
) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE tenants SET display_name = $2, description = $3, labels = $4, expires_at = $5 WHERE id = $1",
        id,
        spec.display_name.as_str(),
        spec.description.as_str(),
        Json(spec.labels.as_map()) as _,
        spec.expires_at,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_budget(
    conn: &mut PgConnection,
    id: i64,
    budget: &ResourceList,
) -> Result<(), Error> {
    let demand = budget.cluster_demand();
    sqlx::query!(
        "UPDATE tenants SET budget = $2, cpu_millis = $3, memory_bytes = $4 WHERE id = $1",
        id,
        Json(budget.to_strings()) as _,
        demand.cpu_millis,
        demand.memory_bytes,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_state(conn: &mut PgConnection, id: i64, state: TenantState) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE tenants SET state = $2,
                deleted_at = CASE WHEN $2 = 'deleted' THEN now() ELSE deleted_at END
         WHERE id = $1",
        id,
        state.as_str()
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a change to the desired state: the generation moves on and the
/// sync status goes back to Pending until the reconciler catches up.
pub async fn bump_generation(conn: &mut PgConnection, id: i64) -> Result<i64, Error> {
    Ok(sqlx::query_scalar!(
        "UPDATE tenants SET generation = generation + 1, updated_at = now(), sync_status = 'Pending'
         WHERE id = $1 RETURNING generation",
        id
    )
    .fetch_one(conn)
    .await?)
}

/// Filters of the tenant list; `None` means no filter.
#[derive(Debug, Default)]
pub struct ListFilter {
    pub state: Option<TenantState>,
    pub cluster: Option<String>,
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    pub search: Option<String>,
    /// Only tenants where this email, or one of these groups, is a member.
    pub member: Option<(String, Vec<String>)>,
    /// Only these tenants (slugs): what a token or machine client reaches.
    pub reach: Option<Vec<String>>,
}

/// One page of tenants in id order, starting after `after_id`.
pub async fn list_page(
    conn: &mut PgConnection,
    filter: &ListFilter,
    after_id: i64,
    limit: i64,
) -> Result<Vec<TenantRow>, Error> {
    let rows = page(conn, filter, after_id, limit).await?;
    Ok(rows.into_iter().map(|row| row.split().0).collect())
}

/// [`list_page`] as each tenant's id and `view_version` (migration 0017)
/// only: what a reader that keeps views needs to tell which of them are
/// still current, without reading (and parsing) the rows it holds.
pub async fn list_page_versions(
    conn: &mut PgConnection,
    filter: &ListFilter,
    after_id: i64,
    limit: i64,
) -> Result<Vec<(i64, i64)>, Error> {
    let rows = match filter.search.as_deref() {
        Some(search) => {
            sqlx::query!(
                r#"SELECT id, view_version FROM tenants
                   WHERE id = ANY(ARRAY(SELECT id FROM tenants WHERE slug ILIKE $5
                                        UNION SELECT id FROM tenants WHERE display_name ILIKE $5))
                     AND id > $1
                     AND (CASE WHEN $2::text IS NULL THEN state <> 'deleted' ELSE state = $2 END)
                     AND ($3::text IS NULL OR cluster = $3)
                     AND ($4::jsonb IS NULL OR labels @> $4)
                     AND ($7::text IS NULL OR EXISTS (
                         SELECT 1 FROM members m WHERE m.tenant_id = tenants.id
                           AND ((m.kind = 'user' AND m.subject = $7) OR (m.kind = 'group' AND m.subject = ANY($8)))))
                     AND ($9::text[] IS NULL OR slug = ANY($9))
                   ORDER BY id
                   LIMIT $6"#,
                after_id,
                filter.state.map(TenantState::as_str),
                filter.cluster.as_deref(),
                filter.labels.as_ref().map(Json) as _,
                search_pattern(search),
                limit,
                filter.member.as_ref().map(|(email, _)| email.as_str()),
                filter.member.as_ref().map(|(_, groups)| groups.as_slice()).unwrap_or(&[]),
                filter.reach.as_deref(),
            )
            .fetch_all(conn)
            .await?
            .into_iter()
            .map(|r| (r.id, r.view_version))
            .collect()
        }
        None => sqlx::query!(
            r#"SELECT id, view_version FROM tenants
               WHERE id > $1
                 AND (CASE WHEN $2::text IS NULL THEN state <> 'deleted' ELSE state = $2 END)
                 AND ($3::text IS NULL OR cluster = $3)
                 AND ($4::jsonb IS NULL OR labels @> $4)
                 AND ($6::text IS NULL OR EXISTS (
                     SELECT 1 FROM members m WHERE m.tenant_id = tenants.id
                       AND ((m.kind = 'user' AND m.subject = $6) OR (m.kind = 'group' AND m.subject = ANY($7)))))
                 AND ($8::text[] IS NULL OR slug = ANY($8))
               ORDER BY id
               LIMIT $5"#,
            after_id,
            filter.state.map(TenantState::as_str),
            filter.cluster.as_deref(),
            filter.labels.as_ref().map(Json) as _,
            limit,
            filter.member.as_ref().map(|(email, _)| email.as_str()),
            filter.member.as_ref().map(|(_, groups)| groups.as_slice()).unwrap_or(&[]),
            filter.reach.as_deref(),
        )
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(|r| (r.id, r.view_version))
        .collect(),
    };
    Ok(rows)
}

/// Tenants `ids` with their children and the version of their view, all
/// read in one statement (so each view is exactly at its version); in no
/// particular order, and without the ids no longer found.
pub async fn with_children_of(
    conn: &mut PgConnection,
    ids: &[i64],
) -> Result<Vec<(TenantRow, i64, Children)>, Error> {
    let rows = sqlx::query!(
        r#"SELECT t.id, t.slug, t.display_name, t.description,
                  t.labels AS "labels: Json<BTreeMap<String, String>>", t.cluster,
                  t.state AS "state: TenantState", t.budget AS "budget: ResourceList",
                  t.generation, t.sync_status, t.observed_generation, t.sync_message,
                  t.last_synced_at, t.created_at, t.updated_at, t.deleted_at, t.expires_at,
                  t.view_version,
                  c.namespaces AS "namespaces!: Json<Vec<NamespaceRow>>",
                  c.members AS "members!: Json<Vec<MemberRow>>",
                  c.policy AS "policy?: Json<serde_json::Value>"
           FROM tenants t, LATERAL tenant_children(t.id) c
           WHERE t.id = ANY($1)"#,
        ids
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let tenant = TenantRow {
                id: r.id,
                slug: r.slug,
                display_name: r.display_name,
                description: r.description,
                labels: r.labels,
                cluster: r.cluster,
                state: r.state,
                budget: r.budget,
                generation: r.generation,
                sync_status: r.sync_status,
                observed_generation: r.observed_generation,
                sync_message: r.sync_message,
                last_synced_at: r.last_synced_at,
                created_at: r.created_at,
                updated_at: r.updated_at,
                deleted_at: r.deleted_at,
                expires_at: r.expires_at,
            };
            let children = Children {
                namespaces: r.namespaces.0,
                members: r.members.0,
                policy: r.policy.map(|Json(policy)| policy),
            };
            (tenant, r.view_version, children)
        })
        .collect())
}

/// The `ILIKE` pattern of a search: the text anywhere, taken literally.
fn search_pattern(search: &str) -> String {
    let escaped = search
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// A tenant row of a page, with the version of its view.
struct PageRow {
    id: i64,
    slug: String,
    display_name: String,
    description: String,
    labels: Json<BTreeMap<String, String>>,
    cluster: String,
    state: TenantState,
    budget: ResourceList,
    generation: i64,
    sync_status: String,
    observed_generation: i64,
    sync_message: Option<String>,
    last_synced_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    view_version: i64,
}

impl PageRow {
    fn split(self) -> (TenantRow, i64) {
        let row = TenantRow {
            id: self.id,
            slug: self.slug,
            display_name: self.display_name,
            description: self.description,
            labels: self.labels,
            cluster: self.cluster,
            state: self.state,
            budget: self.budget,
            generation: self.generation,
            sync_status: self.sync_status,
            observed_generation: self.observed_generation,
            sync_message: self.sync_message,
            last_synced_at: self.last_synced_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            deleted_at: self.deleted_at,
            expires_at: self.expires_at,
        };
        (row, self.view_version)
    }
}

async fn page(
    conn: &mut PgConnection,
    filter: &ListFilter,
    after_id: i64,
    limit: i64,
) -> Result<Vec<PageRow>, Error> {
    if let Some(search) = filter.search.as_deref() {
        return search_page(conn, filter, search, after_id, limit).await;
    }
    Ok(sqlx::query_as!(
        PageRow,
        r#"SELECT id, slug, display_name, description,
                  labels AS "labels: _", cluster, state AS "state: _", budget AS "budget: _", generation,
                  sync_status, observed_generation, sync_message, last_synced_at,
                  created_at, updated_at, deleted_at, expires_at, view_version
           FROM tenants
           WHERE id > $1
             AND (CASE WHEN $2::text IS NULL THEN state <> 'deleted' ELSE state = $2 END)
             AND ($3::text IS NULL OR cluster = $3)
             AND ($4::jsonb IS NULL OR labels @> $4)
             AND ($6::text IS NULL OR EXISTS (
                 SELECT 1 FROM members m WHERE m.tenant_id = tenants.id
                   AND ((m.kind = 'user' AND m.subject = $6) OR (m.kind = 'group' AND m.subject = ANY($7)))))
             AND ($8::text[] IS NULL OR slug = ANY($8))
           ORDER BY id
           LIMIT $5"#,
        after_id,
        filter.state.map(TenantState::as_str),
        filter.cluster.as_deref(),
        filter.labels.as_ref().map(Json) as _,
        limit,
        filter.member.as_ref().map(|(email, _)| email.as_str()),
        filter.member.as_ref().map(|(_, groups)| groups.as_slice()).unwrap_or(&[]),
        filter.reach.as_deref(),
    )
    .fetch_all(conn)
    .await?)
}

/// [`page`] narrowed to tenants whose slug or display name contains
/// `search`: the trigram indexes (migration 0014) find the matching ids, and
/// the page is read by primary key, so no query reads every tenant. A query
/// of its own, since one plan that also serves the unsearched list (where
/// PostgreSQL keeps a generic plan) walks the primary key and filters.
async fn search_page(
    conn: &mut PgConnection,
    filter: &ListFilter,
    search: &str,
    after_id: i64,
    limit: i64,
) -> Result<Vec<PageRow>, Error> {
    let pattern = search_pattern(search);
    Ok(sqlx::query_as!(
        PageRow,
        r#"SELECT id, slug, display_name, description,
                  labels AS "labels: _", cluster, state AS "state: _", budget AS "budget: _", generation,
                  sync_status, observed_generation, sync_message, last_synced_at,
                  created_at, updated_at, deleted_at, expires_at, view_version
           FROM tenants
           WHERE id = ANY(ARRAY(SELECT id FROM tenants WHERE slug ILIKE $5
                                UNION SELECT id FROM tenants WHERE display_name ILIKE $5))
             AND id > $1
             AND (CASE WHEN $2::text IS NULL THEN state <> 'deleted' ELSE state = $2 END)
             AND ($3::text IS NULL OR cluster = $3)
             AND ($4::jsonb IS NULL OR labels @> $4)
             AND ($7::text IS NULL OR EXISTS (
                 SELECT 1 FROM members m WHERE m.tenant_id = tenants.id
                   AND ((m.kind = 'user' AND m.subject = $7) OR (m.kind = 'group' AND m.subject = ANY($8)))))
             AND ($9::text[] IS NULL OR slug = ANY($9))
           ORDER BY id
           LIMIT $6"#,
        after_id,
        filter.state.map(TenantState::as_str),
        filter.cluster.as_deref(),
        filter.labels.as_ref().map(Json) as _,
        pattern,
        limit,
        filter.member.as_ref().map(|(email, _)| email.as_str()),
        filter.member.as_ref().map(|(_, groups)| groups.as_slice()).unwrap_or(&[]),
        filter.reach.as_deref(),
    )
    .fetch_all(conn)
    .await?)
}

/// A tenant's namespaces (by name), members (oldest first) and the policy an
/// admin set for it, as stored (`None`: the configured default).
#[derive(Debug, Clone, Default)]
pub struct Children {
    pub namespaces: Vec<NamespaceRow>,
    pub members: Vec<MemberRow>,
    pub policy: Option<serde_json::Value>,
}

/// The namespaces, members and policies of many tenants in one round trip,
/// aggregated per tenant by PostgreSQL; tenants missing from the answer have none.
pub async fn children(
    conn: &mut PgConnection,
    tenant_ids: &[i64],
) -> Result<BTreeMap<i64, Children>, Error> {
    let rows = sqlx::query!(
        r#"SELECT t.id AS "tenant_id!",
                  c.namespaces AS "namespaces!: Json<Vec<NamespaceRow>>",
                  c.members AS "members!: Json<Vec<MemberRow>>",
                  c.policy AS "policy?: Json<serde_json::Value>"
           FROM unnest($1::bigint[]) AS t(id), LATERAL tenant_children(t.id) c"#,
        tenant_ids
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let children = Children {
                namespaces: r.namespaces.0,
                members: r.members.0,
                policy: r.policy.map(|Json(policy)| policy),
            };
            (r.tenant_id, children)
        })
        .collect())
}

/// A tenant's children as stored text, read beside its row by
/// [`with_children`] and parsed apart, so that a caller can tell a row of
/// the tenant that does not parse from one of its children.
pub struct StoredChildren {
    namespaces: String,
    members: String,
    policy: Option<String>,
    platform_apis: String,
}

impl StoredChildren {
    /// The platform APIs published to the tenant, before its policy
    /// narrows them (`<resource>.<group>`).
    pub fn platform_apis(&self) -> Result<Vec<String>, Error> {
        serde_json::from_str(&self.platform_apis).map_err(|e| {
            Error::Corrupt(anyhow::Error::new(e).context("a stored row does not parse"))
        })
    }

    pub fn parse(&self) -> Result<Children, Error> {
        let corrupt = |e: serde_json::Error| {
            Error::Corrupt(anyhow::Error::new(e).context("a stored row does not parse"))
        };
        Ok(Children {
            namespaces: serde_json::from_str(&self.namespaces).map_err(corrupt)?,
            members: serde_json::from_str(&self.members).map_err(corrupt)?,
            policy: self
                .policy
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(corrupt)?,
        })
    }
}

/// The tenant `id` with its children, in one round trip (the reconciler's
/// read of a tenant). A column of the tenant's row that does not parse fails
/// the read; its children are parsed by the caller.
pub async fn with_children(
    conn: &mut PgConnection,
    id: i64,
) -> Result<Option<(TenantRow, StoredChildren)>, Error> {
    let row = sqlx::query!(
        r#"SELECT t.id, t.slug, t.display_name, t.description,
                  t.labels AS "labels: Json<BTreeMap<String, String>>", t.cluster,
                  t.state AS "state: TenantState", t.budget AS "budget: ResourceList",
                  t.generation, t.sync_status, t.observed_generation, t.sync_message,
                  t.last_synced_at, t.created_at, t.updated_at, t.deleted_at, t.expires_at,
                  c.namespaces::text AS "namespaces!", c.members::text AS "members!",
                  c.policy::text AS "policy?",
                  platform_apis_of(t.id)::text AS "platform_apis!"
           FROM tenants t, LATERAL tenant_children(t.id) c
           WHERE t.id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| {
        let tenant = TenantRow {
            id: r.id,
            slug: r.slug,
            display_name: r.display_name,
            description: r.description,
            labels: r.labels,
            cluster: r.cluster,
            state: r.state,
            budget: r.budget,
            generation: r.generation,
            sync_status: r.sync_status,
            observed_generation: r.observed_generation,
            sync_message: r.sync_message,
            last_synced_at: r.last_synced_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            deleted_at: r.deleted_at,
            expires_at: r.expires_at,
        };
        let children = StoredChildren {
            namespaces: r.namespaces,
            members: r.members,
            policy: r.policy,
            platform_apis: r.platform_apis,
        };
        (tenant, children)
    }))
}

/// Tenants whose time is up. Collecting one locks and checks it again, so
/// replicas that see the same list delete each tenant once.
pub async fn expired(conn: &mut PgConnection, limit: i64) -> Result<Vec<String>, Error> {
    Ok(sqlx::query_scalar!(
        "SELECT slug FROM tenants
         WHERE expires_at <= now() AND state IN ('active', 'suspended')
         ORDER BY expires_at
         LIMIT $1",
        limit
    )
    .fetch_all(conn)
    .await?)
}

/// A tenant's slug and generation by id, read without parsing the rest of
/// its row: the reconciler records a tenant whose row no longer parses.
pub async fn slug_and_generation(
    conn: &mut PgConnection,
    id: i64,
) -> Result<Option<(String, i64)>, Error> {
    Ok(
        sqlx::query!("SELECT slug, generation FROM tenants WHERE id = $1", id)
            .fetch_optional(conn)
            .await?
            .map(|r| (r.slug, r.generation)),
    )
}
