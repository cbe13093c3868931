//! A tenant as one document (`domain/tenant_document.rs`): read as a
//! document, and made exactly as a document says in one transaction with one
//! audit event (and `gitops.changed` when its GitOps tools change), under
//! every rule the imperative calls keep (who may change budgets and
//! policies, namespace names never reused, token reach).
//! A dry run takes the same path and rolls back, so its plan is exact.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{PgConnection, PgPool};

use super::gitops::Tools;
use super::new_tenant::{CreatorOwns, Inserted, NewTenantRequest, insert};
use super::views::TenantView;
use super::{Actor, Precondition, TenantChange};
use crate::auth::Principal;
use crate::auth::policy::{Action, authorize, precheck};
use crate::config::ServeConfig;
use crate::db;
use crate::db::tenants::Counted;
use crate::domain::quota::{check_allocation, check_budget_covers};
use crate::domain::template::{Override, TemplateRef, TemplateValues, TemplatedState, roll};
use crate::domain::tenant_document::{
    Change, MemberDocument, NamespaceDocument, Outcome, TenantDocument, TenantPlan, TenantShape,
    plan, plan_new,
};
use crate::domain::{
    Description, DisplayName, FieldError, Labels, MemberKind, NamespaceName, QuotaResource,
    ResourceList, Role, TenantPolicy, TenantSlug, parse_duration,
};
use crate::error::Error;

/// The longest a tenant may live, as `domain::tenant::expiry` allows.
const MAX_LIFETIME: TimeDelta = TimeDelta::days(366);

/// Where a tenant document is applied: the portal's configuration and clusters.
pub struct Portal<'a> {
    pub db: &'a PgPool,
    pub config: &'a ServeConfig,
    pub clusters: &'a crate::cluster::Clusters,
}

/// The tenant `who` may read, as a document, with its generation.
pub async fn read(
    conn: &mut PgConnection,
    who: &Principal,
    slug: &str,
) -> Result<(TenantDocument, i64), Error> {
    precheck(who, Action::ReadTenants)?;
    let tenant = super::access::view_authorized(conn, who, slug, Action::ReadTenants).await?;
    let mut document = document_of(&tenant);
    if let Some(row) = db::tenants::get(conn, slug).await? {
        document.template = db::templates::of_tenant(conn, row.id)
            .await?
            .map(|(name, _)| name);
        document.gitops = Some(super::gitops::tools_of(
            db::gitops::get(conn, row.id).await?.as_ref(),
        ))
        .filter(|tools| tools.any());
    }
    Ok((document, tenant.generation))
}

/// A tenant as the document that makes it: every field it has, its policy
/// only when a platform admin set one, its expiry only when it has one
/// (its template and GitOps tools are not in the view: [`read`] adds them).
pub fn document_of(tenant: &TenantView) -> TenantDocument {
    TenantDocument {
        slug: Some(tenant.slug.clone()),
        display_name: Some(tenant.display_name.clone()),
        description: Some(tenant.description.clone()),
        template: None,
        labels: Some(tenant.labels.clone()),
        cluster: Some(tenant.cluster.clone()),
        budget: Some(tenant.budget.clone()),
        namespaces: Some(
            tenant
                .namespaces
                .iter()
                .map(|n| NamespaceDocument {
                    name: n.name.clone(),
                    allocations: n.allocations.clone(),
                })
                .collect(),
        ),
        members: Some(
            tenant
                .members
                .iter()
                .map(|m| MemberDocument {
                    kind: m.kind,
                    subject: m.subject.clone(),
                    role: m.role,
                })
                .collect(),
        ),
        policy: tenant
            .policy
            .as_ref()
            .and_then(|p| serde_json::to_value(p).ok())
            .map(Some),
        ttl: None,
        expires_at: tenant.expires_at.map(Some),
        gitops: None,
    }
}

/// What an apply did (or, dry, would do), and the tenant after it.
pub struct Applied {
    pub plan: TenantPlan,
    /// The tenant as committed; `None` for a dry run or no change.
    pub tenant: Option<TenantView>,
}

/// Makes the tenant `slug` exactly as `document` says: creates it, or
/// changes whatever differs, in one transaction with one audit event (and
/// `gitops.changed` when the GitOps tools change); the
/// same document again changes nothing. With `dry_run` nothing is committed.
pub async fn put(
    portal: Portal<'_>,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    precondition: &Precondition,
    document: TenantDocument,
    dry_run: bool,
) -> Result<Applied, Error> {
    if let Some(named) = &document.slug
        && named != slug
    {
        return Err(Error::invalid(
            "slug",
            format!("the document is for \"{named}\" but was sent for \"{slug}\""),
        ));
    }
    let exists = {
        let mut conn = portal.db.acquire().await?;
        db::tenants::get(&mut conn, slug).await?.is_some()
    };
    if exists {
        change(portal, who, actor, slug, precondition, document, dry_run).await
    } else if matches!(precondition, Precondition::Generation(_)) {
        Err(Error::PreconditionFailed(format!(
            "there is no tenant \"{slug}\" to match If-Match; send the document without If-Match to create it"
        )))
    } else {
        create(portal, who, actor, slug, document, dry_run).await
    }
}

pub(super) async fn create(
    portal: Portal<'_>,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    document: TenantDocument,
    dry_run: bool,
) -> Result<Applied, Error> {
    authorize(who, Action::CreateTenant)?;
    let default_policy = portal.config.guardrails.default_policy();
    let template = match &document.template {
        Some(name) => {
            let mut conn = portal.db.acquire().await?;
            Some(super::templates::for_new_tenant(&mut conn, portal.config, name).await?)
        }
        None => None,
    };
    let policy = match &document.policy {
        Some(Some(given)) => Some(parse_policy(given, &default_policy)?),
        _ => None,
    }
    .filter(|policy| *policy != default_policy);
    if let Some(policy) = &policy {
        refuse_policy_change(who, &plan_policy(&default_policy, policy))?;
    }
    // The template's policy, unless the document gives its own.
    let policy = match (&document.policy, &template) {
        (None, Some(t)) => t.policy.clone().filter(|p| *p != default_policy),
        _ => policy,
    };
    if document.ttl.is_some() && matches!(document.expires_at, Some(Some(_))) {
        return Err(Error::invalid("ttl", "give ttl or expires_at, not both"));
    }
    // The template's lifetime, unless the document gives one.
    let ttl = match (&document.ttl, &document.expires_at, &template) {
        (None, None, Some(t)) => t.spec.ttl.clone(),
        _ => document.ttl.clone(),
    };
    let mut labels = template
        .as_ref()
        .map(|t| t.spec.labels.clone())
        .unwrap_or_default();
    labels.extend(document.labels.unwrap_or_default());
    let budget = match (document.budget, &template) {
        (Some(given), Some(t)) => {
            let mut budget = t.values.budget.clone();
            budget.extend(given);
            budget
        }
        (Some(given), None) => given,
        (None, Some(t)) => t.values.budget.clone(),
        (None, None) => super::grant::default_budget(portal.config).to_strings(),
    };
    let namespaces = match (document.namespaces, &template) {
        (Some(given), _) => given,
        (None, Some(t)) => t.spec.namespaces.clone(),
        (None, None) => Vec::new(),
    };
    let template_budget = match &template {
        Some(t) => Some(
            ResourceList::parse(&t.values.budget, "template.budget")
                .map_err(|_| Error::Corrupt(anyhow::anyhow!("template {} budget", t.at)))?,
        ),
        None => None,
    };
    let mut members: Vec<(MemberKind, String, Role)> = document
        .members
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.kind, m.subject, m.role))
        .collect();
    keep_person_owner_list(who, &mut members);
    let request = NewTenantRequest {
        slug: slug.to_string(),
        display_name: document.display_name,
        description: document.description.unwrap_or_default(),
        labels,
        cluster: document.cluster,
        budget,
        namespaces: namespaces
            .into_iter()
            .map(|n| (n.name, n.allocations))
            .collect(),
        members,
        ttl: ttl.clone(),
        expires_at: document.expires_at.flatten(),
    };
    let gitops = document.gitops.unwrap_or_default();
    if gitops.any() {
        // Its creator owns it (a person) or reaches it (a token), so only
        // the scope is asked here.
        precheck(who, Action::ManageGitops)?;
    }
    // Named with the other fields' faults; nothing is kept either way.
    let gitops_refusal = super::gitops::can_keep(&portal.config.gitops, gitops)
        .err()
        .map(|why| FieldError::new("gitops", why));
    let names: Vec<String> = request.namespaces.iter().map(|n| n.0.clone()).collect();
    let inserted = insert(
        portal.db,
        portal.config,
        portal.clusters,
        who,
        request,
        CreatorOwns::AsRequested,
        template_budget.as_ref(),
    )
    .await;
    let Inserted { mut tx, id, tenant } = match (inserted, gitops_refusal) {
        (Ok(_), Some(refusal)) => return Err(Error::Invalid(vec![refusal])),
        (Err(Error::Invalid(mut errors)), Some(refusal)) => {
            errors.push(refusal);
            return Err(Error::Invalid(errors));
        }
        (inserted, _) => inserted.map_err(|e| within_namespaces(e, slug, &names))?,
    };
    if let Some(policy) = &policy {
        db::policies::put(&mut tx, id, policy).await?;
    }
    if let Some(t) = &template {
        db::templates::set_tenant(&mut tx, id, &t.at.name, t.at.version).await?;
    }
    if let Some(ttl) = &ttl {
        // A document's lifetime counts from the creation, so that applying
        // it again finds the same expiry.
        let lifetime = lifetime(ttl)?;
        set_expiry(&mut tx, id, &tenant, Some(tenant.created_at + lifetime)).await?;
    }
    if gitops.any() {
        super::gitops::change_within(&mut tx, (id, slug), Tools::default(), gitops, actor).await?;
    }
    let row = db::tenants::get(&mut tx, slug)
        .await?
        .ok_or_else(|| crate::error::tenant_not_found(slug))?;
    let tenant = super::views::tenant(&mut tx, row).await?;
    let at = template.map(|t| t.at);
    let changes = plan_new(
        slug,
        &shape_of(&tenant, at, gitops, &default_policy)?,
        &default_policy,
    );
    let plan = TenantPlan {
        slug: slug.to_string(),
        outcome: Outcome::Created,
        dry_run,
        generation: if dry_run { 0 } else { tenant.generation },
        changes,
        overrides: Vec::new(),
    };
    if dry_run {
        return Ok(Applied { plan, tenant: None });
    }
    // Counted by `insert`, so its commit has nothing left to refuse; were
    // it refused, the refusal is the answer.
    if let Counted::Full(refusal) =
        super::new_tenant::commit_created(tx, actor, id, &tenant).await?
    {
        return Err(refusal);
    }
    Ok(Applied {
        plan,
        tenant: Some(tenant),
    })
}

async fn change(
    portal: Portal<'_>,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    precondition: &Precondition,
    document: TenantDocument,
    dry_run: bool,
) -> Result<Applied, Error> {
    let edit = Edit {
        document,
        template: None,
        overrides: Vec::new(),
        action: "tenant.applied",
    };
    apply(portal, who, actor, slug, precondition, dry_run, |_, _| {
        Ok(edit)
    })
    .await
}

/// What an apply makes of a tenant: a document, and for a rollout the
/// template version it moves to and the overrides it keeps.
struct Edit {
    document: TenantDocument,
    template: Option<TemplateRef>,
    overrides: Vec<Override>,
    /// The audit event's action.
    action: &'static str,
}

/// Moves a tenant on a template from the version it is on (`old`) to `to`
/// (`new`): what the tenant has as `old` says follows `new`, its own values
/// are kept and listed as overrides; one transaction, audited as
/// `tenant.template_rolled_out`. With `dry_run` nothing is committed.
#[allow(clippy::too_many_arguments)]
pub(super) async fn roll_out(
    portal: Portal<'_>,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    old: &TemplateValues,
    new: &TemplateValues,
    to: TemplateRef,
    dry_run: bool,
) -> Result<Applied, Error> {
    let default_policy = portal.config.guardrails.default_policy();
    let default_fields = policy_fields(&default_policy);
    apply(
        portal,
        who,
        actor,
        slug,
        &Precondition::None,
        dry_run,
        |before, current| {
            let state = TemplatedState {
                budget: current.budget.to_strings(),
                namespaces: current
                    .namespaces
                    .iter()
                    .map(|(name, list)| (name.clone(), list.to_strings()))
                    .collect(),
                labels: current.labels.clone(),
                policy: policy_fields(&current.policy),
                created_at: before.created_at,
                expires_at: current.expires_at,
            };
            let rolled = roll(&state, old, new);
            let state = rolled.state;
            let policy = if state.policy == default_fields {
                None
            } else {
                Some(serde_json::Value::Object(
                    state.policy.into_iter().collect(),
                ))
            };
            Ok(Edit {
                document: TenantDocument {
                    labels: Some(state.labels),
                    budget: Some(state.budget),
                    namespaces: Some(
                        state
                            .namespaces
                            .into_iter()
                            .map(|(name, allocations)| NamespaceDocument { name, allocations })
                            .collect(),
                    ),
                    policy: Some(policy),
                    expires_at: Some(state.expires_at),
                    ..Default::default()
                },
                template: Some(to),
                overrides: rolled.overrides,
                action: "tenant.template_rolled_out",
            })
        },
    )
    .await
}

/// A policy's fields, as its JSON form names them.
pub(super) fn policy_fields(
    policy: &TenantPolicy,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    match serde_json::to_value(policy) {
        Ok(serde_json::Value::Object(map)) => map.into_iter().collect(),
        _ => BTreeMap::new(),
    }
}

/// Makes a locked tenant as `edit` (given the tenant and its shape) says.
async fn apply(
    portal: Portal<'_>,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    precondition: &Precondition,
    dry_run: bool,
    edit: impl FnOnce(&TenantView, &TenantShape) -> Result<Edit, Error>,
) -> Result<Applied, Error> {
    precheck(who, Action::EditTenant)?;
    let mut change =
        TenantChange::begin(portal.db, who, Action::EditTenant, slug, precondition).await?;
    change.require_editable()?;
    let before = change.before().clone();
    let default_policy = portal.config.guardrails.default_policy();
    let template = db::templates::of_tenant(&mut change.tx, change.tenant.id)
        .await?
        .map(|(name, version)| TemplateRef { name, version });
    let gitops = db::gitops::get(&mut change.tx, change.tenant.id).await?;
    let current = shape_of(
        &before,
        template,
        super::gitops::tools_of(gitops.as_ref()),
        &default_policy,
    )?;
    let Edit {
        document,
        template,
        overrides,
        action,
    } = edit(&before, &current)?;
    let mut desired = desire(
        &document,
        &before,
        &current,
        who,
        portal.config,
        &default_policy,
    )?;
    if template.is_some() {
        desired.shape.template = template;
    }
    let changes = plan(&current, &desired.shape);
    let mut plan = TenantPlan {
        slug: slug.to_string(),
        outcome: if changes.is_empty() {
            Outcome::Unchanged
        } else {
            Outcome::Changed
        },
        dry_run,
        generation: before.generation,
        changes,
        overrides,
    };
    if plan.changes.is_empty() {
        return Ok(Applied { plan, tenant: None });
    }
    refuse_budget_change(who, &current, &plan.changes)?;
    refuse_policy_change(who, &plan.changes)?;
    if plan.changes.iter().any(Change::is_gitops) {
        change.authorize(who, Action::ManageGitops)?;
    }
    write_changes(
        portal,
        &mut change,
        actor,
        (&before, &current),
        &desired,
        &plan.changes,
    )
    .await?;
    if dry_run {
        return Ok(Applied { plan, tenant: None });
    }
    let after = change.commit(actor, action).await?;
    plan.generation = after.generation;
    Ok(Applied {
        plan,
        tenant: Some(after),
    })
}

/// A tenant's state as a document manages it, its policy the one in force.
fn shape_of(
    tenant: &TenantView,
    template: Option<TemplateRef>,
    gitops: Tools,
    default_policy: &TenantPolicy,
) -> Result<TenantShape, Error> {
    let corrupt = || {
        Error::Corrupt(anyhow::anyhow!(
            "tenant {}: a stored budget or allocation does not parse",
            tenant.slug
        ))
    };
    let namespaces = tenant
        .namespaces
        .iter()
        .map(|n| {
            ResourceList::parse(&n.allocations, "allocations")
                .map(|list| (n.name.clone(), list))
                .map_err(|_| corrupt())
        })
        .collect::<Result<_, _>>()?;
    Ok(TenantShape {
        display_name: tenant.display_name.clone(),
        description: tenant.description.clone(),
        template,
        labels: tenant.labels.clone(),
        budget: ResourceList::parse(&tenant.budget, "budget").map_err(|_| corrupt())?,
        namespaces,
        members: tenant
            .members
            .iter()
            .map(|m| ((m.kind, m.subject.clone()), m.role))
            .collect(),
        policy: tenant
            .policy
            .clone()
            .unwrap_or_else(|| default_policy.clone()),
        expires_at: tenant.expires_at,
        gitops,
    })
}

/// A document's wish, every field parsed and the whole checked together.
struct Desired {
    shape: TenantShape,
    display_name: DisplayName,
    description: Description,
    labels: Labels,
    /// Namespace names in the document's order, for the fields of errors.
    order: Vec<String>,
    /// The document puts the tenant back on the configured default policy.
    default_policy: bool,
}

fn keep<T>(errors: &mut Vec<FieldError>, result: Result<T, FieldError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

/// What `document` makes of a tenant that is `current`: fields it leaves out
/// keep their value; all its broken rules are reported at once.
fn desire(
    document: &TenantDocument,
    tenant: &TenantView,
    current: &TenantShape,
    who: &Principal,
    config: &ServeConfig,
    default_policy: &TenantPolicy,
) -> Result<Desired, Error> {
    let mut errors = Vec::new();
    let slug = TenantSlug::parse(&tenant.slug).map_err(|e| Error::Corrupt(e.into()))?;
    let display_name = keep(
        &mut errors,
        DisplayName::parse(
            document
                .display_name
                .as_deref()
                .unwrap_or(&current.display_name),
        ),
    );
    let description = keep(
        &mut errors,
        Description::parse(
            document
                .description
                .as_deref()
                .unwrap_or(&current.description),
        ),
    );
    let labels = Labels::parse(document.labels.as_ref().unwrap_or(&current.labels))
        .map_err(|e| errors.extend(e))
        .ok();
    if let Some(name) = &document.template
        && current.template.as_ref().is_none_or(|t| t.name != *name)
    {
        errors.push(FieldError::new(
            "template",
            match &current.template {
                Some(t) => format!(
                    "the tenant is on template \"{}\"; a tenant's template is chosen when it is created: write that, or leave template out",
                    t.name
                ),
                None => "the tenant was not made from a template, and a tenant's template is chosen when it is created; leave template out".to_string(),
            },
        ));
    }
    if let Some(cluster) = &document.cluster
        && *cluster != tenant.cluster
    {
        errors.push(FieldError::new(
            "cluster",
            format!(
                "the tenant lives on \"{}\" and never moves; write that cluster or leave cluster out",
                tenant.cluster
            ),
        ));
    }
    let budget = match &document.budget {
        None => Some(current.budget.clone()),
        Some(raw) => match ResourceList::parse(raw, "budget") {
            Err(e) => {
                errors.extend(e);
                None
            }
            Ok(mut asked) if super::grant::chooses_budgets(who) => {
                if asked.get(&QuotaResource::namespaces()).is_none() {
                    asked.insert(
                        QuotaResource::namespaces(),
                        QuotaResource::count(config.default_namespace_limit),
                    );
                }
                Some(asked)
            }
            // Others name amounts to compare with the budget the tenant has.
            Ok(asked) => {
                let mut budget = current.budget.clone();
                for (resource, amount) in asked.iter() {
                    budget.insert(resource.clone(), amount.clone());
                }
                Some(budget)
            }
        },
    };
    let (namespaces, order) = match &document.namespaces {
        None => (
            current.namespaces.clone(),
            current.namespaces.keys().cloned().collect(),
        ),
        Some(given) => namespaces(given, &slug, &mut errors),
    };
    if let Some(budget) = &budget {
        check_budget(budget, &namespaces, &order, document, &mut errors);
    }
    let members = match &document.members {
        None => current.members.clone(),
        Some(given) => {
            let mut members = BTreeMap::new();
            for (i, m) in given.iter().enumerate() {
                let at = format!("members[{i}]");
                match m.kind.parse_subject(&m.subject) {
                    Ok(subject) => {
                        if members.insert((m.kind, subject), m.role).is_some() {
                            errors.push(FieldError::new(format!("{at}.subject"), "appears twice"));
                        }
                    }
                    Err(e) => errors.push(e.within(&at)),
                }
            }
            keep_person_owner(who, &mut members);
            members
        }
    };
    let policy = match &document.policy {
        None => Some(current.policy.clone()),
        Some(None) => Some(default_policy.clone()),
        Some(Some(given)) => parse_policy(given, default_policy)
            .map_err(|e| match e {
                Error::Invalid(e) => errors.extend(e),
                other => errors.push(FieldError::new("policy", other.to_string())),
            })
            .ok(),
    };
    let expires_at = keep(&mut errors, expiry(document, tenant, current.expires_at));
    let gitops = document.gitops.unwrap_or(current.gitops);
    if gitops != current.gitops
        && let Err(why) = super::gitops::can_keep(&config.gitops, gitops)
    {
        errors.push(FieldError::new("gitops", why));
    }
    match (
        display_name,
        description,
        labels,
        budget,
        policy,
        expires_at,
    ) {
        (
            Some(display_name),
            Some(description),
            Some(labels),
            Some(budget),
            Some(policy),
            Some(expires_at),
        ) if errors.is_empty() => Ok(Desired {
            shape: TenantShape {
                display_name: display_name.as_str().to_string(),
                description: description.as_str().to_string(),
                template: current.template.clone(),
                labels: labels.as_map().clone(),
                budget,
                namespaces,
                members,
                policy,
                expires_at,
                gitops,
            },
            display_name,
            description,
            labels,
            order,
            default_policy: matches!(document.policy, Some(None)),
        }),
        _ => Err(Error::Invalid(errors)),
    }
}

/// A document's namespaces by name, and their order.
fn namespaces(
    given: &[NamespaceDocument],
    slug: &TenantSlug,
    errors: &mut Vec<FieldError>,
) -> (BTreeMap<String, ResourceList>, Vec<String>) {
    let mut namespaces = BTreeMap::new();
    let mut order = Vec::new();
    for (i, ns) in given.iter().enumerate() {
        let at = format!("namespaces[{i}]");
        let name = match NamespaceName::parse(&ns.name) {
            Ok(name) => name,
            Err(e) => {
                errors.push(e.within(&at));
                continue;
            }
        };
        if let Err(e) = name.full_name(slug) {
            errors.push(e.within(&at));
        }
        match ResourceList::parse(&ns.allocations, &format!("{at}.allocations")) {
            Ok(list) => {
                if namespaces.insert(name.as_str().to_string(), list).is_some() {
                    errors.push(FieldError::new(format!("{at}.name"), "appears twice"));
                }
            }
            Err(e) => errors.extend(e),
        }
        order.push(name.as_str().to_string());
    }
    (namespaces, order)
}

/// The budget rule on the whole desired tenant: the allocations fit the
/// budget, namespace by namespace in the document's order (as a new tenant
/// is checked), and the namespaces fit its namespace limit.
fn check_budget(
    budget: &ResourceList,
    namespaces: &BTreeMap<String, ResourceList>,
    order: &[String],
    document: &TenantDocument,
    errors: &mut Vec<FieldError>,
) {
    if document.namespaces.is_none() {
        let lists: Vec<&ResourceList> = namespaces.values().collect();
        if let Ok(allocated) = ResourceList::total(lists)
            && let Err(e) = check_budget_covers(budget, &allocated, namespaces.len(), "budget")
        {
            errors.extend(e);
        }
        return;
    }
    let mut allocated = ResourceList::default();
    for (i, name) in order.iter().enumerate() {
        let Some(allocations) = namespaces.get(name) else {
            continue;
        };
        let at = format!("namespaces[{i}].allocations");
        match check_allocation(budget, &allocated, allocations, &at) {
            Ok(()) => {
                if let Err(e) = allocated.add(allocations) {
                    errors.push(e.within(&at));
                }
            }
            Err(e) => errors.extend(e),
        }
    }
    if let Some(max) = budget.get(&QuotaResource::namespaces())
        && !max.fits_count(namespaces.len())
    {
        errors.push(FieldError::new(
            "namespaces",
            format!(
                "the budget allows {max} namespaces, {} were given",
                namespaces.len()
            ),
        ));
    }
}

/// The expiry a document asks for: a lifetime counted from the tenant's
/// creation, a time, `null` (it lasts), or, left out, the one it has. A new
/// expiry must lie ahead and within a year.
fn expiry(
    document: &TenantDocument,
    tenant: &TenantView,
    current: Option<DateTime<Utc>>,
) -> Result<Option<DateTime<Utc>>, FieldError> {
    let (field, at) = match (&document.ttl, &document.expires_at) {
        (Some(_), Some(Some(_))) => {
            return Err(FieldError::new("ttl", "give ttl or expires_at, not both"));
        }
        (Some(ttl), _) => (
            "ttl",
            Some(tenant.created_at + lifetime(ttl).map_err(|e| first(e, "ttl"))?),
        ),
        (None, Some(at)) => ("expires_at", *at),
        (None, None) => return Ok(current),
    };
    let now = Utc::now();
    match at {
        Some(at) if at != current.unwrap_or_default() && at <= now => Err(FieldError::new(
            field,
            format!("makes the tenant expire at {at}, which has passed"),
        )),
        Some(at) if at != current.unwrap_or_default() && at - now > MAX_LIFETIME => Err(
            FieldError::new(field, "makes the tenant expire more than 366 days from now"),
        ),
        at => Ok(at),
    }
}

fn first(error: Error, field: &str) -> FieldError {
    match error {
        Error::Invalid(mut errors) if !errors.is_empty() => errors.remove(0),
        other => FieldError::new(field, other.to_string()),
    }
}

/// A lifetime such as `2h`, between one second and 366 days.
pub(super) fn lifetime(ttl: &str) -> Result<TimeDelta, Error> {
    let lifetime = parse_duration(ttl)
        .ok()
        .and_then(|d| TimeDelta::from_std(d).ok())
        .ok_or_else(|| {
            Error::invalid(
                "ttl",
                format!("\"{ttl}\" is not a duration; write a whole number and a unit: 30s, 15m, 12h or 90d"),
            )
        })?;
    if lifetime.is_zero() || lifetime > MAX_LIFETIME {
        return Err(Error::invalid("ttl", "must be between 1s and 366d"));
    }
    Ok(lifetime)
}

/// A policy written in a document, over the configured default.
pub(super) fn parse_policy(
    given: &serde_json::Value,
    default: &TenantPolicy,
) -> Result<TenantPolicy, Error> {
    let document: crate::domain::tenant_policy::PolicyDocument =
        serde_path_to_error::deserialize(given.clone()).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "policy".to_string()
            } else {
                format!("policy.{path}")
            };
            Error::invalid(field, e.into_inner().to_string())
        })?;
    TenantPolicy::parse(&document, default)
        .map_err(|errors| Error::Invalid(errors.into_iter().map(|e| e.within("policy")).collect()))
}

fn plan_policy(from: &TenantPolicy, to: &TenantPolicy) -> Vec<Change> {
    let shape = |policy: &TenantPolicy| TenantShape {
        display_name: String::new(),
        description: String::new(),
        template: None,
        labels: BTreeMap::new(),
        budget: ResourceList::default(),
        namespaces: BTreeMap::new(),
        members: BTreeMap::new(),
        policy: policy.clone(),
        expires_at: None,
        gitops: Tools::default(),
    };
    plan(&shape(from), &shape(to))
}

/// Only platform admins and tokens with `quota:write` change budgets; others
/// ask with a quota request.
fn refuse_budget_change(
    who: &Principal,
    current: &TenantShape,
    changes: &[Change],
) -> Result<(), Error> {
    if super::grant::chooses_budgets(who) || !changes.iter().any(Change::is_budget) {
        return Ok(());
    }
    let errors = changes
        .iter()
        .filter_map(|c| match c {
            Change::Budget { resource, from, .. } => Some(FieldError::new(
                format!("budget.{resource}"),
                format!(
                    "is {} for this tenant; write that, or leave budget out, and ask for more with a quota request",
                    from.as_deref().unwrap_or("not budgeted")
                ),
            )),
            _ => None,
        })
        .collect();
    let have: Vec<String> = current
        .budget
        .to_strings()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    Err(Error::Refused {
        detail: format!(
            "only platform admins and tokens with quota:write change a tenant's budget; the document asks for a budget other than the tenant's ({}). Ask for more with a quota request",
            have.join(", ")
        ),
        errors,
    })
}

/// Only platform admins change a tenant's policy.
fn refuse_policy_change(who: &Principal, changes: &[Change]) -> Result<(), Error> {
    if !changes.iter().any(Change::is_policy) {
        return Ok(());
    }
    authorize(who, Action::ChangePolicy).map_err(|denial| Error::Refused {
        detail: format!("{denial}; write the tenant's policy as it is, or leave policy out"),
        errors: changes
            .iter()
            .filter_map(|c| match c {
                Change::Policy { field, .. } => Some(FieldError::new(
                    format!("policy.{field}"),
                    "only platform admins change it",
                )),
                _ => None,
            })
            .collect(),
    })
}

/// A person applying a document stays an owner of the tenant, unless a
/// platform admin: naming them (or one of their groups) as owner is kept,
/// another role of theirs is raised, no entry gets one.
fn keep_person_owner(who: &Principal, members: &mut BTreeMap<(MemberKind, String), Role>) {
    let Principal::User(user) = who else { return };
    if user.admin {
        return;
    }
    let owns = members.iter().any(|((kind, subject), role)| {
        *role == Role::Owner
            && match kind {
                MemberKind::User => subject.eq_ignore_ascii_case(&user.email),
                MemberKind::Group => user.groups.contains(subject),
            }
    });
    if !owns {
        members.insert(
            (MemberKind::User, user.email.to_ascii_lowercase()),
            Role::Owner,
        );
    }
}

/// [`keep_person_owner`] on a new tenant's list of members.
fn keep_person_owner_list(who: &Principal, members: &mut Vec<(MemberKind, String, Role)>) {
    let mut map: BTreeMap<(MemberKind, String), Role> = BTreeMap::new();
    for (kind, subject, role) in members.iter() {
        map.insert((*kind, subject.trim().to_ascii_lowercase()), *role);
    }
    let before = map.clone();
    keep_person_owner(who, &mut map);
    for (key, role) in map {
        if before.get(&key) == Some(&role) {
            continue;
        }
        match members
            .iter_mut()
            .find(|(kind, subject, _)| *kind == key.0 && subject.eq_ignore_ascii_case(&key.1))
        {
            Some(entry) => entry.2 = role,
            None => members.push((key.0, key.1, role)),
        }
    }
}

/// Writes the planned changes onto the locked tenant, in an order the
/// database's rules accept: what goes first, then what stays, then what comes.
async fn write_changes(
    portal: Portal<'_>,
    change: &mut TenantChange,
    actor: &Actor,
    (before, current): (&TenantView, &TenantShape),
    desired: &Desired,
    changes: &[Change],
) -> Result<(), Error> {
    let id = change.tenant.id;
    let spec_changed = changes.iter().any(|c| {
        matches!(
            c,
            Change::DisplayName { .. }
                | Change::Description { .. }
                | Change::Label { .. }
                | Change::Expiry { .. }
        )
    });
    if spec_changed {
        db::tenants::update_spec(
            &mut change.tx,
            id,
            db::tenants::TenantSpec {
                display_name: &desired.display_name,
                description: &desired.description,
                labels: &desired.labels,
                expires_at: desired.shape.expires_at,
            },
        )
        .await?;
    }
    if changes.iter().any(Change::is_budget) {
        db::tenants::set_budget(&mut change.tx, id, &desired.shape.budget).await?;
    }
    for c in changes {
        if let Change::Template { to: Some(to), .. } = c {
            db::templates::set_tenant(&mut change.tx, id, &to.name, to.version).await?;
        }
    }
    let rows = db::namespaces::list_for_tenants(&mut change.tx, &[id]).await?;
    let row_of = |name: &str| rows.iter().find(|r| r.name == name).map(|r| r.id);
    for c in changes {
        match c {
            Change::NamespaceRemoved { name } => {
                if let Some(ns) = row_of(name) {
                    db::namespaces::delete(&mut change.tx, ns).await?;
                }
            }
            Change::MemberRemoved { kind, subject, .. } => {
                if let Some(m) = member_id(before, *kind, subject) {
                    db::members::delete(&mut change.tx, m).await?;
                }
            }
            _ => {}
        }
    }
    let mut reallocated = Vec::new();
    for c in changes {
        match c {
            Change::Allocation { namespace, .. } if !reallocated.contains(namespace) => {
                reallocated.push(namespace.clone());
                if let (Some(ns), Some(allocations)) =
                    (row_of(namespace), desired.shape.namespaces.get(namespace))
                {
                    db::namespaces::set_allocations(&mut change.tx, ns, allocations).await?;
                }
            }
            Change::MemberRole {
                kind, subject, to, ..
            } => {
                if let Some(m) = member_id(before, *kind, subject) {
                    db::members::set_role(&mut change.tx, m, *to).await?;
                }
            }
            _ => {}
        }
    }
    let slug = change.tenant.slug();
    let mut added = Vec::new();
    for c in changes {
        if let Change::NamespaceAdded { name, .. } = c {
            let full_name = NamespaceName::parse(name)?.full_name(&slug)?;
            added.push((field_of(&desired.order, name), name.clone(), full_name));
        }
    }
    let free: Vec<(String, String)> = added
        .iter()
        .map(|(field, _, full)| (field.clone(), full.clone()))
        .collect();
    super::cluster_check::namespaces_free(portal.clusters, &before.cluster, &before.slug, &free)
        .await?;
    for (field, name, full_name) in &added {
        let allocations = desired
            .shape
            .namespaces
            .get(name)
            .cloned()
            .unwrap_or_default();
        db::namespaces::insert(&mut change.tx, id, name, full_name, &allocations)
            .await
            .map_err(|e| renamed(e, field))?;
    }
    for c in changes {
        if let Change::MemberAdded {
            kind,
            subject,
            role,
        } = c
        {
            db::members::insert(&mut change.tx, id, *kind, subject, *role)
                .await
                .map_err(|e| renamed(e, "members"))?;
        }
    }
    if changes.iter().any(Change::is_policy) {
        if desired.default_policy {
            db::policies::clear(&mut change.tx, id).await?;
        } else {
            db::policies::put(&mut change.tx, id, &desired.shape.policy).await?;
        }
    }
    if changes.iter().any(Change::is_gitops) {
        let tenant = (id, change.tenant.slug.as_str());
        let (was, tools) = (current.gitops, desired.shape.gitops);
        super::gitops::change_within(&mut change.tx, tenant, was, tools, actor).await?;
    }
    Ok(())
}

fn member_id(tenant: &TenantView, kind: MemberKind, subject: &str) -> Option<i64> {
    tenant
        .members
        .iter()
        .find(|m| m.kind == kind && m.subject == subject)
        .map(|m| m.id)
}

/// The document field of a namespace: `namespaces[i].name`.
fn field_of(order: &[String], name: &str) -> String {
    match order.iter().position(|n| n == name) {
        Some(i) => format!("namespaces[{i}].name"),
        None => "namespaces".to_string(),
    }
}

/// A conflict on a namespace or member, its field named as in the document.
fn renamed(error: Error, field: &str) -> Error {
    match error {
        Error::Conflict { detail, errors } => Error::Conflict {
            detail,
            errors: errors
                .into_iter()
                .map(|e| FieldError::new(field, e.rule))
                .collect(),
        },
        other => other,
    }
}

/// A new tenant's namespace conflict, its field named as in the document.
fn within_namespaces(error: Error, slug: &str, names: &[String]) -> Error {
    let Error::Conflict { detail, .. } = &error else {
        return error;
    };
    match names
        .iter()
        .position(|n| detail.contains(&format!("\"{slug}-{n}\"")))
    {
        Some(i) => renamed(error, &format!("namespaces[{i}].name")),
        None => error,
    }
}

/// Sets a new tenant's expiry, its other fields as they were written.
async fn set_expiry(
    tx: &mut db::Tx,
    id: i64,
    tenant: &TenantView,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(), Error> {
    let stored = |e: FieldError| Error::Internal(anyhow::anyhow!("a new tenant's {e}"));
    let display_name = DisplayName::parse(&tenant.display_name).map_err(stored)?;
    let description = Description::parse(&tenant.description).map_err(stored)?;
    let labels = Labels::parse(&tenant.labels).map_err(|mut e| stored(e.remove(0)))?;
    db::tenants::update_spec(
        tx,
        id,
        db::tenants::TenantSpec {
            display_name: &display_name,
            description: &description,
            labels: &labels,
            expires_at,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::User;

    fn person(admin: bool) -> Principal {
        Principal::User(User {
            subject: "sub".into(),
            email: "alice@example.com".into(),
            name: "Alice".into(),
            groups: vec!["team-a".into()],
            admin,
            csrf_token: String::new(),
        })
    }

    #[test]
    fn a_person_applying_a_document_stays_its_owner() {
        let mut members = vec![(MemberKind::User, "Alice@Example.com".into(), Role::Viewer)];
        keep_person_owner_list(&person(false), &mut members);
        assert_eq!(
            members,
            [(MemberKind::User, "Alice@Example.com".into(), Role::Owner)]
        );
        let mut by_group = vec![(MemberKind::Group, "team-a".into(), Role::Owner)];
        keep_person_owner_list(&person(false), &mut by_group);
        assert_eq!(by_group.len(), 1);
        let mut none = Vec::new();
        keep_person_owner_list(&person(true), &mut none);
        assert!(none.is_empty(), "a platform admin is not made an owner");
    }

    #[test]
    fn a_lifetime_is_between_a_second_and_a_year() {
        assert_eq!(lifetime("2h").unwrap(), TimeDelta::hours(2));
        assert!(lifetime("0s").is_err());
        assert!(lifetime("367d").is_err());
        assert!(lifetime("soon").is_err());
    }
}
