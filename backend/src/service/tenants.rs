//! Changing, deleting and listing tenants; creating one is in `new_tenant.rs`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::access::visible_to;
use super::views::TenantView;
use super::{Actor, Precondition, TenantChange};
use crate::auth::Principal;
use crate::auth::policy::{Action, authorize, precheck, reach_limit};
use crate::db::{self, tenants::ListFilter, tenants::TenantRow};
use crate::domain::tenant::expiry;
use crate::domain::{Description, DisplayName, Labels, TenantState};
use crate::error::Error;

pub use super::new_tenant::{NewTenantRequest, create};

/// A change to a tenant's own fields; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TenantEdit {
    pub display_name: Option<String>,
    pub description: Option<String>,
    /// Merged key by key; `None` removes the label.
    pub labels: Option<BTreeMap<String, Option<String>>>,
    /// `Some(None)` makes the tenant last.
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// A new lifetime counted from now.
    pub ttl: Option<String>,
}

/// What a list of tenants is narrowed to.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub state: Option<TenantState>,
    pub cluster: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub search: Option<String>,
}

/// A page of the tenants `who` may see, after position `after`, and the
/// position to continue from when there are more.
pub async fn list_page(
    conn: &mut PgConnection,
    who: &Principal,
    query: ListQuery,
    after: i64,
    limit: i64,
) -> Result<(Vec<TenantRow>, Option<i64>), Error> {
    let filter = list_filter(who, query)?;
    let rows = db::tenants::list_page(conn, &filter, after, limit + 1).await?;
    Ok(next_position(rows, limit, |row| row.id))
}

/// A tenant of a page: its whole view, or only its version when the reader
/// said it holds the view at that version already.
pub enum PageEntry {
    Held {
        id: i64,
        version: i64,
    },
    Fresh {
        id: i64,
        version: i64,
        view: Box<TenantView>,
    },
}

/// [`list_page`] as the tenants' whole views, for a reader that keeps the
/// views it has seen: `held(id, version)` says whether it has that one.
/// The page itself is read as ids and versions only; the tenants not held
/// are read whole (row, children, version) in one more query, so a view is
/// built from one snapshot and kept at the version it was built from. The
/// version changes with every write to any part of a view (migration 0017),
/// so a held view is never stale.
pub async fn list_views(
    conn: &mut PgConnection,
    who: &Principal,
    query: ListQuery,
    after: i64,
    limit: i64,
    held: impl Fn(i64, i64) -> bool,
) -> Result<(Vec<PageEntry>, Option<i64>), Error> {
    let filter = list_filter(who, query)?;
    let rows = db::tenants::list_page_versions(conn, &filter, after, limit + 1).await?;
    let (rows, next) = next_position(rows, limit, |(id, _)| *id);
    let missing: Vec<i64> = rows
        .iter()
        .filter(|(id, version)| !held(*id, *version))
        .map(|(id, _)| *id)
        .collect();
    let mut fresh: BTreeMap<i64, (TenantRow, i64, db::tenants::Children)> = if missing.is_empty() {
        BTreeMap::new()
    } else {
        db::tenants::with_children_of(conn, &missing)
            .await?
            .into_iter()
            .map(|(row, version, own)| (row.id, (row, version, own)))
            .collect()
    };
    let missing: BTreeSet<i64> = missing.into_iter().collect();
    let mut entries = Vec::with_capacity(rows.len());
    for (id, version) in rows {
        if !missing.contains(&id) {
            entries.push(PageEntry::Held { id, version });
            continue;
        }
        // Gone since the page was read (never, short of an operator's DELETE).
        let Some((row, version, own)) = fresh.remove(&id) else {
            continue;
        };
        entries.push(PageEntry::Fresh {
            id,
            version,
            view: Box::new(super::views::assemble_with(row, &own)?),
        });
    }
    Ok((entries, next))
}

fn list_filter(who: &Principal, query: ListQuery) -> Result<ListFilter, Error> {
    authorize(who, Action::ReadTenants)?;
    Ok(ListFilter {
        state: query.state,
        cluster: query.cluster,
        labels: query.labels,
        search: query.search.filter(|q| !q.is_empty()),
        // Employees see the tenants they have a role in; admins and tokens see all.
        member: visible_to(who),
        // Tokens and machine clients see the tenants they reach.
        reach: reach_limit(who),
    })
}

/// Cuts the one row read past the page, which says whether a next page
/// exists; the position to continue from is the last row kept.
fn next_position<T>(mut rows: Vec<T>, limit: i64, id: impl Fn(&T) -> i64) -> (Vec<T>, Option<i64>) {
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(id)
    } else {
        None
    };
    (rows, next)
}

/// Changes the display name, description, labels or expiry.
pub async fn edit(
    db: &PgPool,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    precondition: &Precondition,
    edit: TenantEdit,
) -> Result<TenantView, Error> {
    precheck(who, Action::EditTenant)?;
    let mut change = TenantChange::begin(db, who, Action::EditTenant, slug, precondition).await?;
    change.require_editable()?;
    let current = change.before().clone();
    let mut errors = Vec::new();
    let display_name = DisplayName::parse(
        edit.display_name
            .as_deref()
            .unwrap_or(&current.display_name),
    )
    .map_err(|e| errors.push(e))
    .ok();
    let description =
        Description::parse(edit.description.as_deref().unwrap_or(&current.description))
            .map_err(|e| errors.push(e))
            .ok();
    let mut labels = current.labels.clone();
    for (key, value) in edit.labels.unwrap_or_default() {
        match value {
            Some(value) => labels.insert(key, value),
            None => labels.remove(&key),
        };
    }
    let labels = Labels::parse(&labels).map_err(|e| errors.extend(e)).ok();
    // A ttl counts from now; `expires_at: null` makes the tenant last.
    let expires_at = match (edit.ttl.as_deref(), edit.expires_at) {
        (None, None) => Some(change.tenant.expires_at),
        (None, Some(None)) => Some(None),
        (ttl, at) => expiry(ttl, at.flatten(), Utc::now())
            .map_err(|e| errors.push(e))
            .ok(),
    };
    let (Some(display_name), Some(description), Some(labels), Some(expires_at)) =
        (display_name, description, labels, expires_at)
    else {
        return Err(Error::Invalid(errors));
    };
    let id = change.tenant.id;
    db::tenants::update_spec(
        &mut change.tx,
        id,
        db::tenants::TenantSpec {
            display_name: &display_name,
            description: &description,
            labels: &labels,
            expires_at,
        },
    )
    .await?;
    change.commit(actor, "tenant.updated").await
}

/// Asks for a tenant's deletion: it moves to `deleting` until its
/// namespaces are gone. Asking twice answers the tenant as it is.
pub async fn delete(
    db: &PgPool,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    precondition: &Precondition,
) -> Result<TenantView, Error> {
    precheck(who, Action::DeleteTenant)?;
    let mut change = TenantChange::begin(db, who, Action::DeleteTenant, slug, precondition).await?;
    if !change.tenant.state().is_editable() {
        // Deleting twice is not an error: the first request is under way.
        return Ok(change.before().clone());
    }
    let id = change.tenant.id;
    db::tenants::set_state(&mut change.tx, id, TenantState::Deleting).await?;
    change.commit(actor, "tenant.deletion_requested").await
}

#[cfg(test)]
mod tests {
    use super::next_position;

    #[test]
    fn a_page_read_one_row_past_its_size_continues_after_its_last_row() {
        let (rows, next) = next_position(vec![3, 5, 8], 2, |id| *id);
        assert_eq!(rows, [3, 5]);
        assert_eq!(next, Some(5));
    }

    #[test]
    fn a_page_that_holds_every_row_left_has_no_next_page() {
        let (rows, next) = next_position(vec![3, 5], 2, |id| *id);
        assert_eq!(rows, [3, 5]);
        assert_eq!(next, None);
    }
}
