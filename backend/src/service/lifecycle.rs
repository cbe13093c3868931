//! Suspending, resuming and expiring tenants, and the tombstone the
//! reconciler leaves once a deleted tenant's namespaces are gone.

use sqlx::PgPool;

use super::change::{Record, write};
use super::views::TenantView;
use super::{Actor, Precondition, TenantChange};
use crate::auth::Principal;
use crate::auth::policy::{Action, precheck};
use crate::db::{self, Tx, tenants::TenantRow};
use crate::domain::TenantState;
use crate::error::Error;

/// Where a lifecycle request takes a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Suspend,
    Resume,
}

impl Transition {
    fn target(self) -> (TenantState, &'static str) {
        match self {
            Self::Suspend => (TenantState::Suspended, "tenant.suspended"),
            Self::Resume => (TenantState::Active, "tenant.resumed"),
        }
    }
}

/// Suspends or resumes a tenant. A tenant already there is answered as it
/// is: nothing changes, nothing is recorded.
pub async fn transition(
    db: &PgPool,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    precondition: &Precondition,
    transition: Transition,
) -> Result<TenantView, Error> {
    let (to, action) = transition.target();
    precheck(who, Action::SuspendTenant)?;
    let mut change =
        TenantChange::begin(db, who, Action::SuspendTenant, slug, precondition).await?;
    change.require_editable()?;
    if change.tenant.state() == to {
        return Ok(change.before().clone());
    }
    let id = change.tenant.id;
    db::tenants::set_state(&mut change.tx, id, to).await?;
    change.commit(actor, action).await
}

/// Starts deleting a tenant whose time is up, through the same path as a
/// delete request. `false` when another replica got there first or the
/// tenant was extended meanwhile.
pub async fn expire(db: &PgPool, actor: &Actor, slug: &str) -> Result<bool, Error> {
    // The expiry time, checked under the lock, is this change's precondition.
    let mut change = TenantChange::begin_system(db, slug).await?;
    let due = change
        .tenant
        .expires_at
        .is_some_and(|at| at <= chrono::Utc::now());
    if !change.tenant.state().is_editable() || !due {
        return Ok(false);
    }
    let id = change.tenant.id;
    db::tenants::set_state(&mut change.tx, id, TenantState::Deleting).await?;
    change.commit(actor, "tenant.expired").await?;
    Ok(true)
}

/// Marks a tenant whose namespaces are gone as deleted, in the caller's
/// transaction: its slug stays taken for good. The caller commits.
pub async fn tombstone(tx: &mut Tx, actor: &Actor, row: &TenantRow) -> Result<(), Error> {
    db::sync::tombstone(tx, row.id).await?;
    write(
        tx,
        Record {
            actor,
            action: "tenant.deleted",
            tenant: (row.id, &row.slug),
            before: None,
            after: Some(serde_json::json!({"state": "deleted", "generation": row.generation})),
            enqueue: None,
            events: vec![(
                "tenant.deleted",
                serde_json::json!({"generation": row.generation}),
            )],
        },
    )
    .await
}
