//! Creating a tenant with its namespaces, budget and members: every field
//! checked, every violation reported at once, one transaction.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::Actor;
use super::change::{Record, tenant_event, to_json, write};
use super::views::{self, Quantities, TenantView};
use crate::auth::Principal;
use crate::auth::policy::{Action, authorize};
use crate::config::ServeConfig;
use crate::db;
use crate::domain::quota::check_allocation;
use crate::domain::tenant::expiry;
use crate::domain::{
    Description, DisplayName, FieldError, Labels, MemberKind, NamespaceName, QuotaResource,
    ResourceList, Role, TenantSlug,
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

/// Creates a tenant with its namespaces and members, as `who` asked.
pub async fn create(
    db: &PgPool,
    config: &ServeConfig,
    clusters: &crate::cluster::Clusters,
    who: &Principal,
    actor: &Actor,
    request: NewTenantRequest,
) -> Result<TenantView, Error> {
    let Inserted { tx, id, tenant } = insert(
        db,
        config,
        clusters,
        who,
        request,
        CreatorOwns::Always,
        None,
    )
    .await?;
    commit_created(tx, actor, id, &tenant).await?;
    Ok(tenant)
}

/// Records a new tenant (its audit event, outbox row and change-stream
/// event) and commits its transaction.
pub(super) async fn commit_created(
    mut tx: db::Tx,
    actor: &Actor,
    id: i64,
    tenant: &TenantView,
) -> Result<(), Error> {
    let action = "tenant.created";
    write(
        &mut tx,
        Record {
            actor,
            action,
            tenant: (id, &tenant.slug),
            before: None,
            after: Some(to_json(tenant)?),
            enqueue: Some(tenant.generation),
            events: vec![tenant_event(actor, action, tenant)],
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Whether a person creating a tenant is made its owner when the request
/// does not already name them (or a group of theirs) as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CreatorOwns {
    /// Every person, platform admins too (the form and `POST /tenants`).
    Always,
    /// Never: the request lists every member (a tenant document).
    AsRequested,
}

/// A tenant written in a transaction not yet committed, with no trail yet.
pub(super) struct Inserted {
    pub tx: db::Tx,
    pub id: i64,
    pub tenant: TenantView,
}

/// Checks every field of a new tenant, places it and writes its rows; the
/// caller records the change and commits. `template_budget`: the budget of
/// the template the tenant is made from, which its creator may take unasked.
pub(super) async fn insert(
    db: &PgPool,
    config: &ServeConfig,
    clusters: &crate::cluster::Clusters,
    who: &Principal,
    request: NewTenantRequest,
    creator_owns: CreatorOwns,
    template_budget: Option<&ResourceList>,
) -> Result<Inserted, Error> {
    authorize(who, Action::CreateTenant)?;
    let budget = super::grant::budget_for(who, config, template_budget, &request.budget)?;
    let mut new = NewTenant::parse(NewTenantRequest { budget, ..request }, config)?;
    // Whoever creates a tenant in the browser owns it, unless the request already says so.
    if let Principal::User(user) = who
        && creator_owns == CreatorOwns::Always
    {
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
    super::grant::check_tenant_limit(&mut tx, who, config).await?;
    let cluster = match &new.cluster {
        // The capacity trigger still checks the named cluster's room.
        Some(named) => named.clone(),
        None => {
            let candidates: Vec<_> = config
                .cluster_names()
                .into_iter()
                .map(|name| super::placement::Candidate {
                    name,
                    reachable: clusters.get(name).is_none_or(|c| c.health().reachable),
                })
                .collect();
            let demand = super::placement::Demand::of(new.namespaces.len(), &new.budget);
            super::placement::place(&mut tx, &candidates, &demand, spread(new.slug.as_str()))
                .await?
        }
    };
    let full_names = new
        .namespaces
        .iter()
        .enumerate()
        .map(|(i, (name, _))| Ok((format!("namespaces[{i}].name"), name.full_name(&new.slug)?)))
        .collect::<Result<Vec<_>, FieldError>>()?;
    super::cluster_check::namespaces_free(clusters, &cluster, new.slug.as_str(), &full_names)
        .await?;
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
            created_by: &who.key(),
        },
    )
    .await?;
    let wanted: Vec<(&str, &str, &ResourceList)> = new
        .namespaces
        .iter()
        .zip(&full_names)
        .map(|((name, allocations), (_, full_name))| {
            (name.as_str(), full_name.as_str(), allocations)
        })
        .collect();
    let namespaces = db::namespaces::insert_all(&mut tx, row.id, &wanted).await?;
    let mut members = Vec::with_capacity(new.members.len());
    for (kind, subject, role) in &new.members {
        members.push(db::members::insert(&mut tx, row.id, *kind, subject, *role).await?);
    }
    let id = row.id;
    // The answer is built from the rows just written: a new tenant has no
    // policy yet, and nobody else sees its rows before this commits.
    let tenant = views::new_tenant(row, namespaces, members)?;
    Ok(Inserted { tx, id, tenant })
}

/// Where a create waiting for a busy cluster looks first: a hash of its slug,
/// so that a burst of creates scatters over the clusters with room.
fn spread(slug: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    slug.hash(&mut hasher);
    hasher.finish()
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
