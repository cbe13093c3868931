//! Who has which role in a tenant.

use sqlx::PgPool;

use super::views::TenantView;
use super::{Actor, Precondition, TenantChange};
use crate::auth::Principal;
use crate::auth::policy::{Action, precheck};
use crate::db;
use crate::domain::{MemberKind, Role};
use crate::error::Error;

/// Gives a user or an IdP group a role in the tenant.
#[allow(clippy::too_many_arguments)]
pub async fn add(
    db: &PgPool,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    precondition: &Precondition,
    kind: MemberKind,
    subject: &str,
    role: Role,
) -> Result<TenantView, Error> {
    precheck(who, Action::EditTenant)?;
    let subject = kind.parse_subject(subject)?;
    let mut change = TenantChange::begin(db, who, Action::EditTenant, slug, precondition).await?;
    change.require_editable()?;
    let id = change.tenant.id;
    db::members::insert(&mut change.tx, id, kind, &subject, role).await?;
    change.commit(actor, "member.added").await
}

/// Changes a member's role.
pub async fn set_role(
    db: &PgPool,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    precondition: &Precondition,
    id: i64,
    role: Role,
) -> Result<TenantView, Error> {
    let mut change = begin_member_change(db, who, slug, precondition, id).await?;
    db::members::set_role(&mut change.tx, id, role).await?;
    change.commit(actor, "member.role_changed").await
}

/// Takes a member's role away.
pub async fn remove(
    db: &PgPool,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    precondition: &Precondition,
    id: i64,
) -> Result<TenantView, Error> {
    let mut change = begin_member_change(db, who, slug, precondition, id).await?;
    db::members::delete(&mut change.tx, id).await?;
    change.commit(actor, "member.removed").await
}

/// Locks the tenant for a change to one of its members, which must exist.
async fn begin_member_change(
    db: &PgPool,
    who: &Principal,
    slug: &str,
    precondition: &Precondition,
    id: i64,
) -> Result<TenantChange, Error> {
    precheck(who, Action::EditTenant)?;
    let change = TenantChange::begin(db, who, Action::EditTenant, slug, precondition).await?;
    change.require_editable()?;
    let tenant = change.before();
    if !tenant.members.iter().any(|m| m.id == id) {
        return Err(Error::NotFound(format!(
            "the tenant \"{}\" has no member {id}",
            tenant.slug
        )));
    }
    Ok(change)
}
