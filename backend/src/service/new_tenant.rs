//! Creating a tenant with its namespaces, budget and members: every field
//! checked, every violation reported at once, one transaction, counted on
//! its cluster as it commits (migrations 0025 and 0028).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::Actor;
use super::change::{Record, tenant_event, to_json, write};
use super::placement::Choice;
use super::views::{self, Quantities, TenantView};
use crate::auth::Principal;
use crate::auth::policy::{Action, authorize};
use crate::config::ServeConfig;
use crate::db;
use crate::db::tenants::Counted;
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
///
/// Four round trips to the database in its transaction, besides the
/// creator's limit and the clusters' loads when they apply: `BEGIN`, the
/// rows in one statement, the trail in one statement, `COMMIT`. The
/// tenant is counted on its cluster while PostgreSQL commits (migration
/// 0028), so creates on one cluster wait for each other only that long
/// (BENCHMARKS.md §2).
pub async fn create(
    db: &PgPool,
    config: &ServeConfig,
    clusters: &crate::cluster::Clusters,
    who: &Principal,
    actor: &Actor,
    request: NewTenantRequest,
) -> Result<TenantView, Error> {
    let new = prepare(who, config, request, CreatorOwns::Always, None)?;
    let mut tries = 0;
    loop {
        tries += 1;
        let (tx, choice, written) = write_rows(db, config, clusters, who, &new).await?;
        let id = written.tenant.id;
        let tenant = views::new_tenant(written.tenant, written.namespaces, written.members)?;
        match commit_created(tx, actor, id, &tenant).await? {
            Counted::Yes => {
                drop(choice);
                return Ok(tenant);
            }
            Counted::Full(refusal) => {
                if !choose_again(config, choice.as_ref(), tries) {
                    return Err(refusal);
                }
            }
        }
    }
}

/// Records a new tenant (its audit event, outbox row and change-stream
/// event) and commits its transaction, which counts the tenant on its
/// cluster if it was not counted yet (`db::tenants::commit_counted`).
pub(super) async fn commit_created(
    mut tx: db::Tx,
    actor: &Actor,
    id: i64,
    tenant: &TenantView,
) -> Result<Counted, Error> {
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
    db::tenants::commit_counted(tx).await
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

/// Checks every field of a new tenant, places it and writes its rows,
/// counted on its cluster; the caller records the change and commits.
/// `template_budget`: the budget of the template the tenant is made from,
/// which its creator may take unasked.
pub(super) async fn insert(
    db: &PgPool,
    config: &ServeConfig,
    clusters: &crate::cluster::Clusters,
    who: &Principal,
    request: NewTenantRequest,
    creator_owns: CreatorOwns,
    template_budget: Option<&ResourceList>,
) -> Result<Inserted, Error> {
    let new = prepare(who, config, request, creator_owns, template_budget)?;
    let mut tries = 0;
    loop {
        tries += 1;
        let (mut tx, choice, written) = write_rows(db, config, clusters, who, &new).await?;
        let id = written.tenant.id;
        match db::tenants::count_created(&mut tx, id).await? {
            Counted::Yes => {
                // The answer is built from the rows just written: a new tenant has no
                // policy yet, and nobody else sees its rows before this commits.
                let tenant =
                    views::new_tenant(written.tenant, written.namespaces, written.members)?;
                return Ok(Inserted { tx, id, tenant });
            }
            Counted::Full(refusal) => {
                tx.rollback().await?;
                if !choose_again(config, choice.as_ref(), tries) {
                    return Err(refusal);
                }
            }
        }
    }
}

/// Whether a create refused by its cluster's capacity (filled by others
/// since its choice) chooses again: only when the portal chose the cluster,
/// a few times at most; each choice reads the loads anew, so a cluster
/// found full is not chosen again, and when none has room the refusal names
/// each cluster's reason.
fn choose_again(config: &ServeConfig, choice: Option<&Choice>, tries: usize) -> bool {
    choice.is_some() && tries <= config.cluster_names().len() + 2
}

/// Checks what `who` asked for: may they create a tenant, with this budget,
/// every field at once; the creator made an owner when `creator_owns` says so.
fn prepare(
    who: &Principal,
    config: &ServeConfig,
    request: NewTenantRequest,
    creator_owns: CreatorOwns,
    template_budget: Option<&ResourceList>,
) -> Result<NewTenant, Error> {
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
    Ok(new)
}

/// Opens the create's transaction, chooses its cluster (the one named, or
/// placement's choice), asks the cluster about its namespaces and writes
/// its rows, not yet counted on the cluster (`db::tenants::insert_uncounted`).
async fn write_rows(
    db: &PgPool,
    config: &ServeConfig,
    clusters: &crate::cluster::Clusters,
    who: &Principal,
    new: &NewTenant,
) -> Result<(db::Tx, Option<Choice>, db::tenants::Written), Error> {
    let mut tx = db.begin().await?;
    super::grant::check_tenant_limit(&mut tx, who, config).await?;
    let (choice, cluster) = match &new.cluster {
        // The count before the commit checks the named cluster's room.
        Some(named) => (None, named.clone()),
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
            let choice = super::placement::choose(&mut tx, &candidates, &demand).await?;
            let cluster = choice.cluster.clone();
            (Some(choice), cluster)
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
    let wanted: Vec<(&str, &str, &ResourceList)> = new
        .namespaces
        .iter()
        .zip(&full_names)
        .map(|((name, allocations), (_, full_name))| {
            (name.as_str(), full_name.as_str(), allocations)
        })
        .collect();
    let members: Vec<(MemberKind, &str, Role)> = new
        .members
        .iter()
        .map(|(kind, subject, role)| (*kind, subject.as_str(), *role))
        .collect();
    let written = db::tenants::insert_uncounted(
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
        &wanted,
        &members,
    )
    .await?;
    Ok((tx, choice, written))
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
