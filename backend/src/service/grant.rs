//! What a creator may take without being given it: a new tenant's budget is
//! the configured default (or less) unless the creator may change budgets,
//! and such a creator may have only so many tenants.

use super::views::Quantities;
use crate::auth::Principal;
use crate::auth::policy::{Action, authorize};
use crate::config::ServeConfig;
use crate::db;
use crate::domain::{FieldError, QuotaResource, ResourceList};
use crate::error::Error;

/// Whether `who` chooses budgets, or gets the default.
pub fn chooses_budgets(who: &Principal) -> bool {
    authorize(who, Action::ChangeBudget).is_ok()
}

/// The default budget with its namespace count.
pub fn default_budget(config: &ServeConfig) -> ResourceList {
    let mut budget = config.default_budget.clone();
    if budget.get(&QuotaResource::namespaces()).is_none() {
        budget.insert(
            QuotaResource::namespaces(),
            QuotaResource::count(config.default_namespace_limit),
        );
    }
    budget
}

fn describe(budget: &ResourceList) -> String {
    budget
        .to_strings()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The budget a new tenant gets when `who` asked for `asked`: as asked for
/// those who choose budgets; otherwise the default (or, for a tenant made
/// from a template, the template's budget), lowered where the request asks
/// for less, and refused where it asks for more. A budget that does not
/// parse is left for the field checks to report.
pub fn budget_for(
    who: &Principal,
    config: &ServeConfig,
    template: Option<&ResourceList>,
    asked: &Quantities,
) -> Result<Quantities, Error> {
    if chooses_budgets(who) {
        return Ok(asked.clone());
    }
    let Ok(asked_list) = ResourceList::parse(asked, "budget") else {
        return Ok(asked.clone());
    };
    let (default, what) = match template {
        Some(budget) => (budget.clone(), "the template's budget"),
        None => (default_budget(config), "the default budget"),
    };
    let mut granted = default.clone();
    let mut errors = Vec::new();
    for (resource, amount) in asked_list.iter() {
        match default.get(resource) {
            Some(limit) if amount > limit => errors.push(FieldError::new(
                format!("budget.{resource}"),
                format!("at most {limit} ({what}); ask for more with a quota request once the tenant exists"),
            )),
            // Naming a resource the default leaves out only limits the tenant further.
            _ => granted.insert(resource.clone(), amount.clone()),
        }
    }
    if errors.is_empty() {
        Ok(granted.to_strings())
    } else {
        Err(Error::Refused {
            detail: format!(
                "only platform admins and tokens with quota:write choose a new tenant's budget; others get {what} ({}) or less. Create the tenant within it, then ask for more with a quota request",
                describe(&default)
            ),
            errors,
        })
    }
}

/// Refuses a new tenant when `who`, who gets default budgets, already made
/// as many as one creator may. Holds a lock on the creator until the
/// transaction ends, so concurrent creations count each other.
pub async fn check_tenant_limit(
    tx: &mut db::Tx,
    who: &Principal,
    config: &ServeConfig,
) -> Result<(), Error> {
    if chooses_budgets(who) {
        return Ok(());
    }
    let key = who.key();
    db::reach::lock_creator(tx, &key).await?;
    let made = db::reach::count_created_by(tx, &key).await?;
    let limit = config.max_tenants_per_owner;
    if made >= i64::from(limit) {
        return Err(Error::Conflict {
            detail: format!(
                "{} has created {made} tenants, as many as one creator may have (--max-tenants-per-owner {limit}); delete one, or ask a platform admin to create it",
                who.actor()
            ),
            errors: vec![FieldError::new(
                "slug",
                format!(
                    "you may have at most {limit} tenants; delete one first or ask a platform admin"
                ),
            )],
        });
    }
    Ok(())
}
