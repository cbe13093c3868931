//! Templates (tiers): anyone who may create tenants reads them and makes
//! tenants from them; platform admins write new versions (audited as
//! `template.created` / `template.changed`) and roll a version out to the
//! tenants on the template, with a dry run that plans each tenant's changes
//! first. The merge itself (what follows the template, what is the tenant's
//! own) is `domain/template.rs::roll`; each tenant's change takes the path of
//! a tenant document (`documents.rs`), one transaction and audit event each.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::Actor;
use super::documents::{self, Applied, Portal};
use crate::auth::Principal;
use crate::auth::policy::{Action, authorize};
use crate::config::ServeConfig;
use crate::db;
use crate::domain::quota::check_allocation;
use crate::domain::template::{TemplateRef, TemplateSpec, TemplateValues, parse_name};
use crate::domain::tenant_document::{
    MemberDocument, NamespaceDocument, TenantDocument, TenantPlan,
};
use crate::domain::{
    FieldError, Labels, MemberKind, NamespaceName, QuotaResource, ResourceList, Role, TenantPolicy,
};
use crate::error::Error;

/// One version of a template.
#[derive(Debug, Clone)]
pub struct Template {
    pub at: TemplateRef,
    pub spec: TemplateSpec,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<db::templates::TemplateRow> for Template {
    type Error = Error;

    fn try_from(row: db::templates::TemplateRow) -> Result<Self, Error> {
        let spec = serde_json::from_value(row.spec).map_err(|e| {
            Error::Corrupt(anyhow::anyhow!(
                "template {} v{} no longer parses: {e}",
                row.name,
                row.version
            ))
        })?;
        Ok(Self {
            at: TemplateRef {
                name: row.name,
                version: row.version,
            },
            spec,
            created_by: row.created_by,
            created_at: row.created_at,
        })
    }
}

fn not_found(name: &str, version: Option<i32>) -> Error {
    match version {
        Some(v) => Error::NotFound(format!("the template \"{name}\" has no version {v}")),
        None => Error::NotFound(format!("there is no template \"{name}\"")),
    }
}

/// The newest version of every template.
pub async fn list(conn: &mut PgConnection, who: &Principal) -> Result<Vec<Template>, Error> {
    authorize(who, Action::CreateTenant)?;
    db::templates::list_latest(conn)
        .await?
        .into_iter()
        .map(Template::try_from)
        .collect()
}

/// A template's newest version, or the one asked for.
pub async fn get(
    conn: &mut PgConnection,
    who: &Principal,
    name: &str,
    version: Option<i32>,
) -> Result<Template, Error> {
    authorize(who, Action::CreateTenant)?;
    let row = match version {
        Some(v) => db::templates::version(conn, name, v).await?,
        None => db::templates::latest(conn, name).await?,
    };
    row.ok_or_else(|| not_found(name, version))?.try_into()
}

/// A template version's values, every field checked (all broken rules at
/// once): the budget (its namespace count defaulted), namespaces whose
/// allocations fit it, labels, the policy over the configured default, the
/// lifetime.
pub fn values(spec: &TemplateSpec, config: &ServeConfig) -> Result<TemplateValues, Error> {
    let mut errors = Vec::new();
    let budget = match ResourceList::parse(&spec.budget, "budget") {
        Ok(mut budget) => {
            if budget.get(&QuotaResource::namespaces()).is_none() {
                budget.insert(
                    QuotaResource::namespaces(),
                    QuotaResource::count(config.default_namespace_limit),
                );
            }
            Some(budget)
        }
        Err(e) => {
            errors.extend(e);
            None
        }
    };
    let mut namespaces = BTreeMap::new();
    let mut allocated = ResourceList::default();
    for (i, ns) in spec.namespaces.iter().enumerate() {
        let at = format!("namespaces[{i}]");
        if let Err(e) = NamespaceName::parse(&ns.name) {
            errors.push(e.within(&at));
            continue;
        }
        let field = format!("{at}.allocations");
        let list = match ResourceList::parse(&ns.allocations, &field) {
            Ok(list) => list,
            Err(e) => {
                errors.extend(e);
                continue;
            }
        };
        if let Some(budget) = &budget {
            match check_allocation(budget, &allocated, &list, &field) {
                Ok(()) => {
                    if let Err(e) = allocated.add(&list) {
                        errors.push(e.within(&field));
                    }
                }
                Err(e) => errors.extend(e),
            }
        }
        if namespaces
            .insert(ns.name.clone(), list.to_strings())
            .is_some()
        {
            errors.push(FieldError::new(format!("{at}.name"), "appears twice"));
        }
    }
    if let Some(max) = budget
        .as_ref()
        .and_then(|b| b.get(&QuotaResource::namespaces()))
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
    if let Err(e) = Labels::parse(&spec.labels) {
        errors.extend(e);
    }
    let default_policy = config.guardrails.default_policy();
    let policy = match &spec.policy {
        None => Some(default_policy.clone()),
        Some(given) => documents::parse_policy(given, &default_policy)
            .map_err(|e| match e {
                Error::Invalid(e) => errors.extend(e),
                other => errors.push(FieldError::new("policy", other.to_string())),
            })
            .ok(),
    };
    let ttl = match &spec.ttl {
        None => None,
        Some(ttl) => documents::lifetime(ttl)
            .map_err(|e| match e {
                Error::Invalid(e) => errors.extend(e),
                other => errors.push(FieldError::new("ttl", other.to_string())),
            })
            .ok(),
    };
    match (budget, policy) {
        (Some(budget), Some(policy)) if errors.is_empty() => Ok(TemplateValues {
            budget: budget.to_strings(),
            namespaces,
            labels: spec.labels.clone(),
            policy: documents::policy_fields(&policy),
            ttl,
        }),
        _ => Err(Error::Invalid(errors)),
    }
}

/// Writes `spec` as the template's next version (platform admins), audited;
/// the same spec as the newest version writes nothing. Answers the newest
/// version and whether it is new.
pub async fn put(
    db: &PgPool,
    config: &ServeConfig,
    who: &Principal,
    actor: &Actor,
    name: &str,
    spec: TemplateSpec,
) -> Result<(Template, bool), Error> {
    authorize(who, Action::ManageTemplates)?;
    parse_name(name)?;
    values(&spec, config)?;
    let json = serde_json::to_value(&spec).map_err(|e| Error::Internal(e.into()))?;
    let mut tx = db.begin().await?;
    db::templates::lock_name(&mut tx, name).await?;
    let latest = db::templates::latest(&mut tx, name).await?;
    if let Some(latest) = &latest
        && latest.spec == json
    {
        return Ok((latest.clone().try_into()?, false));
    }
    let version = latest.as_ref().map_or(1, |l| l.version + 1);
    let row = db::templates::insert(&mut tx, name, version, &json, &actor.name).await?;
    let audit = |t: &db::templates::TemplateRow| serde_json::json!({"name": t.name, "version": t.version, "spec": t.spec});
    let before = latest.as_ref().map(audit);
    let after = audit(&row);
    db::audit::record(
        &mut tx,
        db::audit::NewEvent {
            actor: &actor.name,
            action: if latest.is_some() {
                "template.changed"
            } else {
                "template.created"
            },
            tenant: None,
            before: before.as_ref(),
            after: Some(&after),
            request_id: actor.request_id.as_deref(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((row.try_into()?, true))
}

/// What a new tenant made from the template `name` gets: its newest version.
pub struct ForNewTenant {
    pub at: TemplateRef,
    pub spec: TemplateSpec,
    pub values: TemplateValues,
    /// The policy the template sets, when it sets one.
    pub policy: Option<TenantPolicy>,
}

/// The newest version of `name`, for a new tenant; an unknown name is a 422
/// on the document's `template`.
pub async fn for_new_tenant(
    conn: &mut PgConnection,
    config: &ServeConfig,
    name: &str,
) -> Result<ForNewTenant, Error> {
    let Some(row) = db::templates::latest(conn, name).await? else {
        let known: Vec<String> = db::templates::list_latest(conn)
            .await?
            .into_iter()
            .map(|t| t.name)
            .collect();
        return Err(Error::invalid(
            "template",
            format!(
                "there is no template \"{name}\"; the templates are: {}",
                if known.is_empty() {
                    "(none yet)".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    };
    let template = Template::try_from(row)?;
    let values = stored_values(&template, config)?;
    let policy = match &template.spec.policy {
        Some(given) => Some(documents::parse_policy(
            given,
            &config.guardrails.default_policy(),
        )?),
        None => None,
    };
    Ok(ForNewTenant {
        at: template.at,
        spec: template.spec,
        values,
        policy,
    })
}

/// A stored version's values; one that no longer passes is a stored fault.
fn stored_values(template: &Template, config: &ServeConfig) -> Result<TemplateValues, Error> {
    values(&template.spec, config).map_err(|e| {
        Error::Corrupt(anyhow::anyhow!(
            "template {} no longer passes its rules: {e}",
            template.at
        ))
    })
}

/// Creates a tenant from the template `name` as the dashboard's form asks:
/// the form's fields are overrides over the template (namespaces and budget
/// left empty take the template's). Answers the new tenant's slug.
pub async fn create_tenant(
    portal: Portal<'_>,
    who: &Principal,
    actor: &Actor,
    name: &str,
    request: super::new_tenant::NewTenantRequest,
) -> Result<String, Error> {
    let slug = request.slug.clone();
    let document = TenantDocument {
        slug: Some(slug.clone()),
        display_name: request.display_name.filter(|n| !n.trim().is_empty()),
        description: Some(request.description),
        template: Some(name.to_string()),
        budget: Some(request.budget).filter(|b| !b.is_empty()),
        namespaces: Some(
            request
                .namespaces
                .into_iter()
                .map(|(name, allocations)| NamespaceDocument { name, allocations })
                .collect::<Vec<_>>(),
        )
        .filter(|n| !n.is_empty()),
        // The person creating it owns it.
        members: match who {
            Principal::User(user) => Some(vec![MemberDocument {
                kind: MemberKind::User,
                subject: user.email.clone(),
                role: Role::Owner,
            }]),
            _ => None,
        },
        ..Default::default()
    };
    documents::create(portal, who, actor, &slug, document, false).await?;
    Ok(slug)
}

/// Which tenants a rollout moves, to which version, and whether for real.
#[derive(Debug, Clone, Default)]
pub struct RolloutRequest {
    /// `None`: the newest version.
    pub version: Option<i32>,
    /// `None`: every tenant on the template.
    pub tenants: Option<Vec<String>>,
    pub dry_run: bool,
}

/// A rollout's outcome for one tenant.
#[derive(Debug)]
pub struct TenantRollout {
    pub slug: String,
    /// The version the tenant was on.
    pub from_version: i32,
    /// What changed (or, dry, would change), with the overrides kept;
    /// `None` when the tenant's change was refused.
    pub plan: Option<TenantPlan>,
    /// Why the tenant's change was refused (nothing of it was written).
    pub refused: Option<Error>,
}

/// A rollout: the version and each tenant's outcome.
#[derive(Debug)]
pub struct Rollout {
    pub at: TemplateRef,
    pub dry_run: bool,
    pub tenants: Vec<TenantRollout>,
}

/// Moves the tenants on template `name` (all, or those named) to a version
/// (platform admins), each tenant in its own transaction with its own audit
/// event (`tenant.template_rolled_out`); a tenant's own values are kept and
/// listed as overrides. With `dry_run`, the plan of each, nothing written.
pub async fn roll_out(
    portal: Portal<'_>,
    who: &Principal,
    actor: &Actor,
    name: &str,
    request: RolloutRequest,
) -> Result<Rollout, Error> {
    authorize(who, Action::ManageTemplates)?;
    let (target, on) = {
        let mut conn = portal.db.acquire().await?;
        let row = match request.version {
            Some(v) => db::templates::version(&mut conn, name, v).await?,
            None => db::templates::latest(&mut conn, name).await?,
        };
        let target = match (row, request.version) {
            (Some(row), _) => Template::try_from(row)?,
            (None, Some(v)) if db::templates::latest(&mut conn, name).await?.is_some() => {
                return Err(Error::invalid(
                    "version",
                    format!("the template \"{name}\" has no version {v}"),
                ));
            }
            (None, _) => return Err(not_found(name, None)),
        };
        (target, db::templates::tenants_on(&mut conn, name).await?)
    };
    let chosen: Vec<db::templates::TenantOnTemplate> = match &request.tenants {
        None => on,
        Some(slugs) => {
            let mut errors = Vec::new();
            let mut chosen = Vec::new();
            for (i, slug) in slugs.iter().enumerate() {
                match on.iter().find(|t| t.slug == *slug) {
                    Some(t) => chosen.push(t.clone()),
                    None => errors.push(FieldError::new(
                        format!("tenants[{i}]"),
                        format!("\"{slug}\" is not a tenant on the template \"{name}\""),
                    )),
                }
            }
            if !errors.is_empty() {
                return Err(Error::Invalid(errors));
            }
            chosen
        }
    };
    let new = stored_values(&target, portal.config)?;
    let mut versions: BTreeMap<i32, TemplateValues> = BTreeMap::new();
    let mut tenants = Vec::with_capacity(chosen.len());
    for tenant in chosen {
        if let std::collections::btree_map::Entry::Vacant(entry) = versions.entry(tenant.version) {
            let mut conn = portal.db.acquire().await?;
            let row = db::templates::version(&mut conn, name, tenant.version)
                .await?
                .ok_or_else(|| not_found(name, Some(tenant.version)))?;
            entry.insert(stored_values(&Template::try_from(row)?, portal.config)?);
        }
        let old = &versions[&tenant.version];
        let outcome = documents::roll_out(
            Portal {
                db: portal.db,
                config: portal.config,
                clusters: portal.clusters,
            },
            who,
            actor,
            &tenant.slug,
            old,
            &new,
            target.at.clone(),
            request.dry_run,
        )
        .await;
        tenants.push(match outcome {
            Ok(Applied { plan, .. }) => TenantRollout {
                slug: tenant.slug,
                from_version: tenant.version,
                plan: Some(plan),
                refused: None,
            },
            Err(error @ (Error::Invalid(_) | Error::Refused { .. } | Error::Conflict { .. })) => {
                TenantRollout {
                    slug: tenant.slug,
                    from_version: tenant.version,
                    plan: None,
                    refused: Some(error),
                }
            }
            Err(other) => return Err(other),
        });
    }
    Ok(Rollout {
        at: target.at,
        dry_run: request.dry_run,
        tenants,
    })
}
