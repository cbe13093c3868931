//! A tenant's budget: what is allocated and what is left, computed once for
//! the API and the pages, and the one path that replaces it.

use std::collections::BTreeMap;

use sqlx::{PgConnection, PgPool};

use super::access::load_authorized;
use super::views::{self, TenantView};
use super::{Actor, Precondition, TenantChange};
use crate::auth::Principal;
use crate::auth::policy::{Action, precheck};
use crate::db::{self, namespaces::NamespaceRow, tenants::TenantRow};
use crate::domain::quota::check_budget_covers;
use crate::domain::{Quantity, QuotaResource, ResourceList};
use crate::error::Error;

/// A budget with what its namespaces hold.
#[derive(Debug, Clone)]
pub struct BudgetSummary {
    pub budget: ResourceList,
    /// The sum of the namespaces' allocations.
    pub allocated: ResourceList,
    /// How many namespaces the tenant has.
    pub namespaces: usize,
}

/// One budgeted resource: its limit, what is used of it and what is left.
#[derive(Debug, Clone)]
pub struct BudgetLine {
    pub resource: QuotaResource,
    pub budget: Quantity,
    pub used: Quantity,
    pub available: Quantity,
}

impl BudgetSummary {
    pub fn of(row: &TenantRow, namespaces: &[NamespaceRow]) -> Result<Self, Error> {
        Ok(Self {
            budget: row.budget(),
            allocated: views::allocated(namespaces)?,
            namespaces: namespaces.len(),
        })
    }

    /// Every budgeted resource. Tenant-level items (the namespace count) are
    /// used by the namespaces the tenant has, the others by allocations.
    pub fn lines(&self) -> Vec<BudgetLine> {
        self.budget
            .iter()
            .map(|(resource, limit)| {
                let used = if resource.is_tenant_level() {
                    QuotaResource::count(self.namespaces as u32)
                } else {
                    self.allocated
                        .get(resource)
                        .cloned()
                        .unwrap_or_else(Quantity::zero)
                };
                BudgetLine {
                    resource: resource.clone(),
                    budget: limit.clone(),
                    available: limit.checked_sub(&used).unwrap_or_else(Quantity::zero),
                    used,
                }
            })
            .collect()
    }

    /// What is left to allocate to namespaces, per namespace-level resource.
    pub fn available(&self) -> ResourceList {
        let mut available = ResourceList::default();
        for line in self.lines() {
            if !line.resource.is_tenant_level() {
                available.insert(line.resource, line.available);
            }
        }
        available
    }
}

/// The budget summary of a tenant's view, for an answer to a caller who
/// may change the budget but not read the tenant.
pub fn summary_of(tenant: &TenantView) -> Result<BudgetSummary, Error> {
    let stored = |list: &views::Quantities| {
        ResourceList::parse(list, "budget").map_err(|_| {
            Error::Corrupt(anyhow::anyhow!(
                "tenant {}: a stored budget does not parse",
                tenant.slug
            ))
        })
    };
    Ok(BudgetSummary {
        budget: stored(&tenant.budget)?,
        allocated: stored(&tenant.allocated)?,
        namespaces: tenant.namespaces.len(),
    })
}

/// The tenant row and its budget summary, when `who` may read the tenant.
pub async fn read(
    conn: &mut PgConnection,
    who: &Principal,
    slug: &str,
) -> Result<(TenantRow, BudgetSummary), Error> {
    precheck(who, Action::ReadTenants)?;
    let row = load_authorized(conn, who, slug, Action::ReadTenants).await?;
    let namespaces = db::namespaces::list_for_tenants(conn, &[row.id]).await?;
    let summary = BudgetSummary::of(&row, &namespaces)?;
    Ok((row, summary))
}

/// Replaces the tenant's budget, as a platform admin asked.
pub async fn set(
    db: &PgPool,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    precondition: &Precondition,
    budget: &BTreeMap<String, String>,
) -> Result<TenantView, Error> {
    precheck(who, Action::ChangeBudget)?;
    let budget = ResourceList::parse(budget, "budget")?;
    let mut change = TenantChange::begin(db, who, Action::ChangeBudget, slug, precondition).await?;
    replace(&mut change, &budget).await?;
    change.commit(actor, "budget.changed").await
}

/// Replaces a locked tenant's budget if it still covers every allocation and
/// the namespaces it has; the one path for direct edits and approved requests.
pub(crate) async fn replace(change: &mut TenantChange, budget: &ResourceList) -> Result<(), Error> {
    change.require_editable()?;
    let namespaces = db::namespaces::list_for_tenants(&mut change.tx, &[change.tenant.id]).await?;
    check_budget_covers(
        budget,
        &views::allocated(&namespaces)?,
        namespaces.len(),
        "budget",
    )
    .map_err(|errors| Error::Conflict {
        detail: "the new budget is smaller than what the namespaces already hold".into(),
        errors,
    })?;
    let id = change.tenant.id;
    db::tenants::set_budget(&mut change.tx, id, budget).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[(&str, &str)]) -> ResourceList {
        let raw = items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ResourceList::parse(&raw, "test").unwrap()
    }

    #[test]
    fn what_is_left_counts_allocations_and_for_namespaces_the_namespaces() {
        let summary = BudgetSummary {
            budget: list(&[("requests.cpu", "4"), ("pods", "10"), ("namespaces", "3")]),
            allocated: list(&[("requests.cpu", "1500m"), ("pods", "4")]),
            namespaces: 2,
        };
        let left: Vec<(String, String)> = summary
            .lines()
            .iter()
            .map(|l| (l.resource.to_string(), l.available.to_string()))
            .collect();
        assert_eq!(
            left,
            [
                ("namespaces".to_string(), "1".to_string()),
                ("pods".to_string(), "6".to_string()),
                ("requests.cpu".to_string(), "2500m".to_string()),
            ]
        );
        assert_eq!(
            summary.available().to_strings(),
            [("pods", "6"), ("requests.cpu", "2500m")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into()
        );
    }
}
