//! The one path every change to a tenant takes: lock the row, check the
//! precondition, change, then in the same transaction bump the generation,
//! append the audit event, enqueue the reconciler and, last, append the
//! change-stream events queued on the change.

use serde_json::Value;

use super::views::{self, TenantView};
use crate::auth::Principal;
use crate::auth::policy::{Action, authorize_tenant};
use crate::db::{self, Tx, tenants::TenantRow};
use crate::error::{Error, tenant_not_found};

/// Who asked for a change, for the audit trail.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub request_id: Option<String>,
}

impl Actor {
    pub fn of(who: &Principal, request_id: Option<String>) -> Self {
        Self {
            name: who.actor(),
            request_id,
        }
    }

    /// The portal itself, such as `system:expiry`.
    pub fn system(name: &str) -> Self {
        Self {
            name: name.to_string(),
            request_id: None,
        }
    }
}

/// What the caller last saw of the tenant. A change made from an older view
/// is refused instead of overwriting what someone else changed meanwhile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Precondition {
    /// Change the tenant at whatever generation it is.
    #[default]
    None,
    /// Change it only while it is at one of these generations.
    Generation(Vec<i64>),
}

impl Precondition {
    /// The tenant must still be at `generation`.
    pub fn at(generation: i64) -> Self {
        Self::Generation(vec![generation])
    }

    fn check(&self, generation: i64) -> Result<(), Error> {
        match self {
            Self::Generation(expected) if !expected.contains(&generation) => {
                Err(Error::PreconditionFailed(format!(
                    "the tenant changed since you read it (now at ETag \"{generation}\"); read it again and retry"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// A change-stream event (db/events), written last by the commit.
pub type StreamEvent = (&'static str, Value);

/// A change in progress on one locked tenant.
pub struct TenantChange {
    pub tx: Tx,
    pub tenant: TenantRow,
    before: TenantView,
    events: Vec<StreamEvent>,
}

impl TenantChange {
    /// Locks the tenant, asks the policy whether `who` may do `action` to
    /// it, then checks the precondition: a caller the policy hides the
    /// tenant from gets the same 404 as for a missing one, never a 412 that
    /// names its generation.
    pub async fn begin(
        db: &sqlx::PgPool,
        who: &Principal,
        action: Action,
        slug: &str,
        precondition: &Precondition,
    ) -> Result<Self, Error> {
        let change = Self::lock(db, slug).await?;
        change.authorize(who, action)?;
        precondition.check(change.tenant.generation)?;
        Ok(change)
    }

    /// Locks the tenant for a change the portal makes by itself (expiry),
    /// which no policy decides; 404 when there is no such tenant.
    pub async fn begin_system(db: &sqlx::PgPool, slug: &str) -> Result<Self, Error> {
        Self::lock(db, slug).await
    }

    async fn lock(db: &sqlx::PgPool, slug: &str) -> Result<Self, Error> {
        let mut tx = db.begin().await?;
        let tenant = db::tenants::get_for_update(&mut tx, slug)
            .await?
            .ok_or_else(|| tenant_not_found(slug))?;
        let before = views::tenant(&mut tx, tenant.clone()).await?;
        Ok(Self {
            tx,
            tenant,
            before,
            events: Vec::new(),
        })
    }

    /// Refuses changes to tenants on their way out.
    pub fn require_editable(&self) -> Result<(), Error> {
        let state = self.tenant.state();
        if state.is_editable() {
            Ok(())
        } else {
            Err(Error::conflict(format!(
                "the tenant \"{}\" is {state} and can no longer be changed",
                self.tenant.slug
            )))
        }
    }

    /// The tenant as it was when the change began.
    pub fn before(&self) -> &TenantView {
        &self.before
    }

    /// Asks the policy whether `who` may do `action` to this tenant.
    pub fn authorize(&self, who: &Principal, action: Action) -> Result<(), Error> {
        Ok(authorize_tenant(
            who,
            action,
            &self.before.slug,
            self.before.memberships(),
        )?)
    }

    /// Queues a change-stream event; the commit writes it after everything else.
    pub fn event(&mut self, kind: &'static str, data: Value) {
        self.events.push((kind, data));
    }

    /// Bumps the generation, records the change and commits; returns the
    /// tenant as it now is.
    pub async fn commit(self, actor: &Actor, action: &str) -> Result<TenantView, Error> {
        self.commit_audited(actor, action, None).await
    }

    /// [`TenantChange::commit`] with the audit event's before and after
    /// given, for a change of what the tenant's view does not show (its
    /// GitOps tools); `None`: the tenant's view before and after.
    pub async fn commit_audited(
        mut self,
        actor: &Actor,
        action: &str,
        audited: Option<(Value, Value)>,
    ) -> Result<TenantView, Error> {
        db::tenants::bump_generation(&mut self.tx, self.tenant.id).await?;
        let row = db::tenants::get(&mut self.tx, &self.tenant.slug)
            .await?
            .ok_or_else(|| tenant_not_found(&self.tenant.slug))?;
        let after = views::tenant(&mut self.tx, row).await?;
        let (before_json, after_json) = match audited {
            Some(pair) => pair,
            None => (to_json(&self.before)?, to_json(&after)?),
        };
        let mut events = std::mem::take(&mut self.events);
        events.push(tenant_event(actor, action, &after));
        write(
            &mut self.tx,
            Record {
                actor,
                action,
                tenant: (self.tenant.id, &self.tenant.slug),
                before: Some(before_json),
                after: Some(after_json),
                enqueue: Some(after.generation),
                events,
            },
        )
        .await?;
        self.tx.commit().await?;
        Ok(after)
    }

    /// Records an action that leaves the tenant's desired state as it was
    /// (a quota request asked or rejected): the audit event with `after`, and
    /// the queued events; no new generation, nothing for the reconciler.
    pub async fn commit_unchanged(
        mut self,
        actor: &Actor,
        action: &str,
        after: Value,
    ) -> Result<(), Error> {
        let events = std::mem::take(&mut self.events);
        write(
            &mut self.tx,
            Record {
                actor,
                action,
                tenant: (self.tenant.id, &self.tenant.slug),
                before: None,
                after: Some(after),
                enqueue: None,
                events,
            },
        )
        .await?;
        self.tx.commit().await?;
        Ok(())
    }
}

/// What a change leaves behind besides the state itself.
pub(crate) struct Record<'a> {
    pub actor: &'a Actor,
    pub action: &'a str,
    pub tenant: (i64, &'a str),
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// The generation to hand the reconciler; `None` when the cluster need not change.
    pub enqueue: Option<i64>,
    pub events: Vec<StreamEvent>,
}

/// Writes a change's audit event, outbox row and change-stream events (one
/// call, `db::trail`). The only writer of audit events, outbox rows and
/// events for changes made through this layer.
pub(crate) async fn write(tx: &mut Tx, record: Record<'_>) -> Result<(), Error> {
    let (tenant_id, slug) = record.tenant;
    let events: Vec<(&str, &Value)> = record
        .events
        .iter()
        .map(|(kind, data)| (*kind, data))
        .collect();
    db::trail::write(
        tx,
        db::trail::Trail {
            tenant: (tenant_id, slug),
            audit: Some(db::trail::Audit {
                actor: &record.actor.name,
                action: record.action,
                before: record.before.as_ref(),
                after: record.after.as_ref(),
                request_id: record.actor.request_id.as_deref(),
            }),
            enqueue: record.enqueue,
            events: &events,
        },
    )
    .await
}

/// The tenant's own change-stream event for an audited action.
pub(crate) fn tenant_event(actor: &Actor, action: &str, after: &TenantView) -> StreamEvent {
    let data = serde_json::json!({"action": action, "actor": actor.name, "generation": after.generation, "state": after.state});
    (stream_kind(action), data)
}

/// How the change stream names an audited action.
fn stream_kind(action: &str) -> &'static str {
    match action {
        "tenant.created" => "tenant.created",
        "tenant.suspended" => "tenant.suspended",
        "tenant.resumed" => "tenant.resumed",
        "tenant.deletion_requested" | "tenant.expired" => "tenant.deleting",
        _ => "tenant.updated",
    }
}

pub(crate) fn to_json(view: &TenantView) -> Result<Value, Error> {
    serde_json::to_value(view).map_err(|e| Error::Internal(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_precondition_holds_only_at_the_generations_it_names() {
        assert!(Precondition::None.check(7).is_ok());
        assert!(Precondition::at(7).check(7).is_ok());
        assert!(matches!(
            Precondition::at(6).check(7),
            Err(Error::PreconditionFailed(_))
        ));
        assert!(Precondition::Generation(vec![]).check(1).is_err());
    }
}
