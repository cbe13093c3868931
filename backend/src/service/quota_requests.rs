//! Quota requests: an owner asks for a bigger budget with a reason; a
//! platform admin approves (perhaps a smaller amount) or rejects. Both
//! decisions lock the pending request the same way, and an approval changes
//! the budget through the same path as a direct edit.

use sqlx::{PgConnection, PgPool};

use super::{Actor, Precondition, TenantChange, budget};
use crate::auth::Principal;
use crate::auth::policy::{Action, authorize, precheck};
use crate::db::{self, quota_requests::QuotaRequestRow, quota_requests::RequestFilter};
use crate::domain::{FieldError, Quantity, QuotaResource};
use crate::error::Error;

/// The requests `who` may see, newest first: all for admins, those of their
/// tenants for members; perhaps only those with a status or of one tenant.
pub async fn list(
    conn: &mut PgConnection,
    who: &Principal,
    status: Option<String>,
    tenant: Option<String>,
) -> Result<Vec<QuotaRequestRow>, Error> {
    authorize(who, Action::ReadTenants)?;
    if let Some(status) = &status
        && !["pending", "approved", "rejected"].contains(&status.as_str())
    {
        return Err(Error::invalid(
            "query.status",
            "must be pending, approved or rejected",
        ));
    }
    let filter = RequestFilter {
        status,
        tenant,
        member: super::access::visible_to(who),
        reach: crate::auth::policy::reach_limit(who),
        id: None,
    };
    db::quota_requests::list(conn, &filter, 500).await
}

/// The requests of one tenant, newest first, for its page.
pub async fn of_tenant(
    conn: &mut PgConnection,
    slug: &str,
    limit: i64,
) -> Result<Vec<QuotaRequestRow>, Error> {
    let filter = RequestFilter {
        tenant: Some(slug.to_string()),
        ..Default::default()
    };
    db::quota_requests::list(conn, &filter, limit).await
}

async fn get(conn: &mut PgConnection, id: i64) -> Result<Option<QuotaRequestRow>, Error> {
    let filter = RequestFilter {
        id: Some(id),
        ..Default::default()
    };
    Ok(db::quota_requests::list(conn, &filter, 1)
        .await?
        .into_iter()
        .next())
}

/// Asks for a bigger budget for one resource of a tenant, with a reason.
pub async fn ask(
    db: &PgPool,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    resource: &str,
    amount: &str,
    reason: &str,
) -> Result<QuotaRequestRow, Error> {
    precheck(who, Action::RequestQuota)?;
    let mut errors = Vec::new();
    let resource = QuotaResource::parse(resource)
        .map_err(|rule| errors.push(FieldError::new("resource", rule)))
        .ok();
    let amount = Quantity::parse_non_negative(amount)
        .map_err(|e| errors.push(FieldError::new("amount", e.to_string())))
        .ok();
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 2000 {
        errors.push(FieldError::new(
            "reason",
            "must say why, in 1 to 2000 characters",
        ));
    }
    let (Some(resource), Some(amount)) = (resource, amount) else {
        return Err(Error::Invalid(errors));
    };
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let mut change =
        TenantChange::begin(db, who, Action::RequestQuota, slug, &Precondition::None).await?;
    let state = change.tenant.state();
    if !state.is_editable() {
        return Err(Error::conflict(format!(
            "the tenant \"{}\" is {state}",
            change.tenant.slug
        )));
    }
    let id = db::quota_requests::insert(
        &mut change.tx,
        change.tenant.id,
        &who.actor(),
        resource.as_str(),
        &amount.to_string(),
        reason,
    )
    .await?;
    let created = get(&mut change.tx, id).await?;
    let after = serde_json::json!({"request": id, "resource": resource.as_str(), "amount": amount.to_string(), "reason": reason});
    change
        .commit_unchanged(actor, "quota_request.created", after)
        .await?;
    created.ok_or_else(|| Error::Internal(anyhow::anyhow!("the new quota request vanished")))
}

/// Approves a request, granting its amount or `amount`, and raises the budget.
pub async fn approve(
    db: &PgPool,
    who: &Principal,
    actor: &Actor,
    id: i64,
    amount: Option<&str>,
    comment: Option<&str>,
) -> Result<QuotaRequestRow, Error> {
    let (mut change, request) = lock_pending(db, who, id).await?;
    let resource =
        QuotaResource::parse(&request.resource).map_err(|rule| Error::invalid("resource", rule))?;
    let granted = match amount.map(str::trim).filter(|a| !a.is_empty()) {
        Some(amount) => Quantity::parse_non_negative(amount)
            .map_err(|e| Error::invalid("amount", e.to_string()))?,
        None => request
            .amount
            .parse::<Quantity>()
            .map_err(|e| Error::invalid("amount", e.to_string()))?,
    };
    let mut new_budget = change.tenant.budget();
    new_budget.insert(resource, granted.clone());
    budget::replace(&mut change, &new_budget).await?;
    let granted = granted.to_string();
    db::quota_requests::decide(
        &mut change.tx,
        id,
        "approved",
        &actor.name,
        Some(&granted),
        comment_of(comment),
    )
    .await?;
    change.event(
        "quota_request.decided",
        serde_json::json!({"request": id, "status": "approved", "resource": request.resource, "granted": granted}),
    );
    change.commit(actor, "budget.changed").await?;
    decided(db, id).await
}

/// Rejects a request, with a comment for the owner; the budget stays.
pub async fn reject(
    db: &PgPool,
    who: &Principal,
    actor: &Actor,
    id: i64,
    comment: Option<&str>,
) -> Result<QuotaRequestRow, Error> {
    let (mut change, _) = lock_pending(db, who, id).await?;
    let comment = comment_of(comment);
    db::quota_requests::decide(&mut change.tx, id, "rejected", &actor.name, None, comment).await?;
    let data = serde_json::json!({"request": id, "status": "rejected", "comment": comment});
    change.event("quota_request.decided", data.clone());
    change
        .commit_unchanged(actor, "quota_request.rejected", data)
        .await?;
    decided(db, id).await
}

/// Locks a request that is still pending, with its tenant: the tenant
/// first, then the request, the same order as every other change.
async fn lock_pending(
    db: &PgPool,
    who: &Principal,
    id: i64,
) -> Result<(TenantChange, QuotaRequestRow), Error> {
    authorize(who, Action::ChangeBudget)?;
    let slug = {
        let mut conn = db.acquire().await?;
        db::quota_requests::get_for_update(&mut conn, id)
            .await?
            .ok_or_else(|| not_found(id))?
            .tenant_slug
    };
    // Being pending, checked under the lock, is the decision's precondition.
    // A tenant the caller cannot reach hides its requests too.
    let mut change = TenantChange::begin(db, who, Action::ChangeBudget, &slug, &Precondition::None)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => not_found(id),
            other => other,
        })?;
    let request = db::quota_requests::get_for_update(&mut change.tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if request.status != "pending" {
        return Err(Error::conflict(format!(
            "quota request {id} was already {}",
            request.status
        )));
    }
    Ok((change, request))
}

fn comment_of(comment: Option<&str>) -> Option<&str> {
    comment.map(str::trim).filter(|c| !c.is_empty())
}

async fn decided(db: &PgPool, id: i64) -> Result<QuotaRequestRow, Error> {
    get(&mut *db.acquire().await?, id)
        .await?
        .ok_or_else(|| not_found(id))
}

fn not_found(id: i64) -> Error {
    Error::NotFound(format!("there is no quota request {id}"))
}
