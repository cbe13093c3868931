//! Creating, changing and deleting tenants, and listing them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::access::visible_to;
use super::change::{Record, tenant_event, to_json, write};
use super::views::{self, Quantities, TenantView};
use super::{Actor, Precondition, TenantChange};
use crate::auth::Principal;
use crate::auth::policy::{Action, authorize, precheck};
use crate::config::ServeConfig;
use crate::db::{self, tenants::ListFilter, tenants::TenantRow};
use crate::domain::quota::check_allocation;
use crate::domain::tenant::expiry;
use crate::domain::{
    Description, DisplayName, FieldError, Labels, MemberKind, NamespaceName, QuotaResource,
    ResourceList, Role, TenantSlug, TenantState,
};
use crate::error::Error;

/// A tenant as someone asked for it, before any rule was checked.
#[derive(Debug, Clone, Default)]
pub struct NewTenantRequest {
    pub slug: String,
    /// Defaults to the slug.
    pub display_name: Option<String>,
    pub description: String,
    pub labels: BTreeMap<String, String>,
    /// `None`: the least loaded cluster.
    pub cluster: Option<String>,
    pub budget: Quantities,
    /// Short names with their allocations.
    pub namespaces: Vec<(String, Quantities)>,
    pub members: Vec<(MemberKind, String, Role)>,
    pub ttl: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

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

/// Creates a tenant with its namespaces and members, as `who` asked.
pub async fn create(
    db: &PgPool,
    config: &ServeConfig,
    who: &Principal,
    actor: &Actor,
    request: NewTenantRequest,
) -> Result<TenantView, Error> {
    authorize(who, Action::CreateTenant)?;
    let mut new = NewTenant::parse(request, config)?;
    // Whoever creates a tenant in the browser owns it, unless the request already says so.
    if let Principal::User(user) = who {
        let named = new.members.iter().any(|(kind, subject, role)| {
            *role == Role::Owner
                && (*kind == MemberKind::User && *subject == user.email
                    || user.groups.contains(subject))
        });
        if !named {
            new.members
                .push((MemberKind::User, user.email.clone(), Role::Owner));
        }
    }
    let mut tx = db.begin().await?;
    let cluster = match &new.cluster {
        Some(named) => named.clone(),
        None => db::tenants::least_loaded_cluster(&mut tx, &config.cluster_names())
            .await?
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("no cluster is configured")))?,
    };
    let row = db::tenants::insert(
        &mut tx,
        db::tenants::NewTenant {
            slug: &new.slug,
            display_name: &new.display_name,
            description: &new.description,
            labels: &new.labels,
            cluster: &cluster,
            budget: &new.budget,
            expires_at: new.expires_at,
        },
    )
    .await?;
    for (name, allocations) in &new.namespaces {
        let full_name = name.full_name(&new.slug)?;
        db::namespaces::insert(&mut tx, row.id, name.as_str(), &full_name, allocations).await?;
    }
    for (kind, subject, role) in &new.members {
        db::members::insert(&mut tx, row.id, *kind, subject, *role).await?;
    }
    let id = row.id;
    let tenant = views::tenant(&mut tx, row).await?;
    let action = "tenant.created";
    write(
        &mut tx,
        Record {
            actor,
            action,
            tenant: (id, &tenant.slug),
            before: None,
            after: Some(to_json(&tenant)?),
            enqueue: Some(tenant.generation),
            events: vec![tenant_event(actor, action, &tenant)],
        },
    )
    .await?;
    tx.commit().await?;
    Ok(tenant)
}

/// The value, or `None` with the error noted.
fn keep<T>(errors: &mut Vec<FieldError>, result: Result<T, FieldError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

/// A create request that passed every rule.
struct NewTenant {
    slug: TenantSlug,
    display_name: DisplayName,
    description: Description,
    labels: Labels,
    /// `None`: the least loaded cluster.
    cluster: Option<String>,
    budget: ResourceList,
    namespaces: Vec<(NamespaceName, ResourceList)>,
    members: Vec<(MemberKind, String, Role)>,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl NewTenant {
    /// Checks every field and reports all violations at once.
    fn parse(body: NewTenantRequest, config: &ServeConfig) -> Result<Self, Error> {
        let mut errors: Vec<FieldError> = Vec::new();
        let slug = keep(&mut errors, TenantSlug::parse(&body.slug));
        let display_name = keep(
            &mut errors,
            DisplayName::parse(body.display_name.as_deref().unwrap_or(&body.slug)),
        );
        let description = keep(&mut errors, Description::parse(&body.description));
        let expires_at = keep(
            &mut errors,
            expiry(body.ttl.as_deref(), body.expires_at, chrono::Utc::now()),
        );
        let names = config.cluster_names();
        if let Some(cluster) = &body.cluster
            && !names.contains(&cluster.as_str())
        {
            errors.push(FieldError::new(
                "cluster",
                format!("unknown cluster; use one of {}", names.join(", ")),
            ));
        }
        let cluster = body.cluster;
        let labels = Labels::parse(&body.labels)
            .map_err(|e| errors.extend(e))
            .ok();
        let mut budget = ResourceList::parse(&body.budget, "budget")
            .map_err(|e| errors.extend(e))
            .ok();
        if let Some(budget) = &mut budget
            && budget.get(&QuotaResource::namespaces()).is_none()
        {
            budget.insert(
                QuotaResource::namespaces(),
                QuotaResource::count(config.default_namespace_limit),
            );
        }

        let mut namespaces = Vec::new();
        let mut seen = BTreeSet::new();
        let mut allocated = ResourceList::default();
        for (i, (ns_name, ns_allocations)) in body.namespaces.iter().enumerate() {
            let at = format!("namespaces[{i}]");
            let name = match NamespaceName::parse(ns_name) {
                Ok(name) => name,
                Err(e) => {
                    errors.push(e.within(&at));
                    continue;
                }
            };
            if let Some(slug) = &slug
                && let Err(e) = name.full_name(slug)
            {
                errors.push(e.within(&at));
            }
            if !seen.insert(name.clone()) {
                errors.push(FieldError::new(format!("{at}.name"), "appears twice"));
            }
            let allocations =
                match ResourceList::parse(ns_allocations, &format!("{at}.allocations")) {
                    Ok(list) => list,
                    Err(e) => {
                        errors.extend(e);
                        continue;
                    }
                };
            if let Some(budget) = &budget {
                match check_allocation(
                    budget,
                    &allocated,
                    &allocations,
                    &format!("{at}.allocations"),
                ) {
                    Ok(()) => {
                        if let Err(e) = allocated.add(&allocations) {
                            errors.push(e.within(&at));
                        }
                    }
                    Err(e) => errors.extend(e),
                }
            }
            namespaces.push((name, allocations));
        }
        if let Some(budget) = &budget
            && let Some(max) = budget.get(&QuotaResource::namespaces())
            && !max.fits_count(body.namespaces.len())
        {
            errors.push(FieldError::new(
                "namespaces",
                format!(
                    "the budget allows {max} namespaces, {} were given",
                    body.namespaces.len()
                ),
            ));
        }

        let mut members = Vec::new();
        let mut seen_members = BTreeSet::new();
        for (i, (kind, subject, role)) in body.members.iter().enumerate() {
            let at = format!("members[{i}]");
            match kind.parse_subject(subject) {
                Ok(subject) => {
                    if !seen_members.insert((kind.as_str(), subject.clone())) {
                        errors.push(FieldError::new(format!("{at}.subject"), "appears twice"));
                    }
                    members.push((*kind, subject, *role));
                }
                Err(e) => errors.push(e.within(&at)),
            }
        }

        match (slug, display_name, description, labels, budget, expires_at) {
            (
                Some(slug),
                Some(display_name),
                Some(description),
                Some(labels),
                Some(budget),
                Some(expires_at),
            ) if errors.is_empty() => Ok(Self {
                slug,
                display_name,
                description,
                labels,
                cluster,
                budget,
                namespaces,
                members,
                expires_at,
            }),
            _ => Err(Error::Invalid(errors)),
        }
    }
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
    authorize(who, Action::ReadTenants)?;
    let filter = ListFilter {
        state: query.state,
        cluster: query.cluster,
        labels: query.labels,
        search: query.search.filter(|q| !q.is_empty()),
        // Employees see the tenants they have a role in; admins and tokens see all.
        member: visible_to(who),
    };
    let mut rows = db::tenants::list_page(conn, &filter, after, limit + 1).await?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|last| last.id)
    } else {
        None
    };
    Ok((rows, next))
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
    let mut change = TenantChange::begin(db, slug, precondition).await?;
    change.authorize(who, Action::EditTenant)?;
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
    let mut change = TenantChange::begin(db, slug, precondition).await?;
    change.authorize(who, Action::DeleteTenant)?;
    if !change.tenant.state().is_editable() {
        // Deleting twice is not an error: the first request is under way.
        return Ok(change.before().clone());
    }
    let id = change.tenant.id;
    db::tenants::set_state(&mut change.tx, id, TenantState::Deleting).await?;
    change.commit(actor, "tenant.deletion_requested").await
}
