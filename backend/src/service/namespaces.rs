//! A tenant's namespaces and their shares of the budget.

use std::collections::BTreeMap;

use sqlx::PgPool;

use super::views::{self, TenantView};
use super::{Actor, Precondition, TenantChange};
use crate::auth::Principal;
use crate::auth::policy::{Action, precheck};
use crate::db::{self, namespaces::NamespaceRow};
use crate::domain::quota::check_allocation;
use crate::domain::{FieldError, NamespaceName, QuotaResource, ResourceList};
use crate::error::Error;

/// A namespace as a caller asks for it.
pub struct NewNamespace<'a> {
    pub name: &'a str,
    pub allocations: &'a BTreeMap<String, String>,
}

/// Adds a namespace with its share of the budget.
pub async fn create(
    db: &PgPool,
    clusters: &crate::cluster::Clusters,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    precondition: &Precondition,
    new: NewNamespace<'_>,
) -> Result<TenantView, Error> {
    precheck(who, Action::EditTenant)?;
    let name = NamespaceName::parse(new.name)?;
    let allocations = ResourceList::parse(new.allocations, "allocations")?;
    let mut change = TenantChange::begin(db, who, Action::EditTenant, slug, precondition).await?;
    change.require_editable()?;
    let full_name = name.full_name(&change.tenant.slug())?;
    let budget = change.tenant.budget();
    let existing = db::namespaces::list_for_tenants(&mut change.tx, &[change.tenant.id]).await?;
    if let Some(max) = budget.get(&QuotaResource::namespaces())
        && !max.fits_count(existing.len() + 1)
    {
        return Err(Error::Conflict {
            detail: format!(
                "the tenant's budget allows {max} namespaces and it has {}; request more quota",
                existing.len()
            ),
            errors: vec![FieldError::new(
                "name",
                "exceeds the tenant's namespace limit",
            )],
        });
    }
    check_allocation(
        &budget,
        &allocated_elsewhere(&existing, None)?,
        &allocations,
        "allocations",
    )
    .map_err(over_budget)?;
    let names = [("name".to_string(), full_name.clone())];
    let (cluster, slug) = (change.tenant.cluster.clone(), change.tenant.slug.clone());
    super::cluster_check::namespaces_free(clusters, &cluster, slug.as_str(), &names).await?;
    let id = change.tenant.id;
    db::namespaces::insert(&mut change.tx, id, name.as_str(), &full_name, &allocations).await?;
    change.commit(actor, "namespace.created").await
}

/// Replaces a namespace's allocations.
pub async fn set_allocations(
    db: &PgPool,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    precondition: &Precondition,
    name: &str,
    allocations: &BTreeMap<String, String>,
) -> Result<TenantView, Error> {
    precheck(who, Action::EditTenant)?;
    let allocations = ResourceList::parse(allocations, "allocations")?;
    let mut change = TenantChange::begin(db, who, Action::EditTenant, slug, precondition).await?;
    change.require_editable()?;
    let existing = db::namespaces::list_for_tenants(&mut change.tx, &[change.tenant.id]).await?;
    let target = find(&existing, slug, name)?;
    check_allocation(
        &change.tenant.budget(),
        &allocated_elsewhere(&existing, Some(target.id))?,
        &allocations,
        "allocations",
    )
    .map_err(over_budget)?;
    db::namespaces::set_allocations(&mut change.tx, target.id, &allocations).await?;
    change.commit(actor, "namespace.allocations_changed").await
}

/// Removes a namespace; the reconciler deletes it from the cluster.
pub async fn delete(
    db: &PgPool,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    precondition: &Precondition,
    name: &str,
) -> Result<TenantView, Error> {
    precheck(who, Action::EditTenant)?;
    let mut change = TenantChange::begin(db, who, Action::EditTenant, slug, precondition).await?;
    change.require_editable()?;
    let existing = db::namespaces::list_for_tenants(&mut change.tx, &[change.tenant.id]).await?;
    let target = find(&existing, slug, name)?.id;
    db::namespaces::delete(&mut change.tx, target).await?;
    change.commit(actor, "namespace.deleted").await
}

/// What the other namespaces of the tenant hold.
fn allocated_elsewhere(
    namespaces: &[NamespaceRow],
    except: Option<i64>,
) -> Result<ResourceList, Error> {
    let others: Vec<NamespaceRow> = namespaces
        .iter()
        .filter(|n| Some(n.id) != except)
        .cloned()
        .collect();
    views::allocated(&others)
}

/// Going over the budget is a conflict with the tenant's state, not a malformed request.
fn over_budget(errors: Vec<FieldError>) -> Error {
    Error::Conflict {
        detail: "the allocations do not fit the tenant's budget".into(),
        errors,
    }
}

fn find<'a>(
    namespaces: &'a [NamespaceRow],
    slug: &str,
    name: &str,
) -> Result<&'a NamespaceRow, Error> {
    namespaces.iter().find(|n| n.name == name).ok_or_else(|| {
        Error::NotFound(format!("the tenant \"{slug}\" has no namespace \"{name}\""))
    })
}
