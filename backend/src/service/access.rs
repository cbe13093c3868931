//! Reads of one tenant after the policy allowed them.

use sqlx::PgConnection;

use super::views::{self, TenantView};
use crate::auth::Principal;
use crate::auth::policy::{Action, authorize_tenant};
use crate::db::{self, tenants::TenantRow};
use crate::error::{Error, tenant_not_found};

/// Loads a tenant row for a read or an action outside a change, after the
/// policy allowed `action` to `who` on it.
pub async fn load_authorized(
    conn: &mut PgConnection,
    who: &Principal,
    slug: &str,
    action: Action,
) -> Result<TenantRow, Error> {
    let row = db::tenants::get(conn, slug)
        .await?
        .ok_or_else(|| tenant_not_found(slug))?;
    let members = db::members::list_for_tenants(conn, &[row.id]).await?;
    let memberships = members.iter().map(|m| (m.kind, m.subject.as_str(), m.role));
    authorize_tenant(who, action, slug, memberships)?;
    Ok(row)
}

/// The tenant's view, after the policy allowed `action` to `who` on it; the
/// view already holds the members the policy needs.
pub async fn view_authorized(
    conn: &mut PgConnection,
    who: &Principal,
    slug: &str,
    action: Action,
) -> Result<TenantView, Error> {
    let row = db::tenants::get(conn, slug)
        .await?
        .ok_or_else(|| tenant_not_found(slug))?;
    let tenant = views::tenant(conn, row).await?;
    authorize_tenant(who, action, slug, tenant.memberships())?;
    Ok(tenant)
}

/// Whether the policy would allow `action` to `who` on this tenant, for
/// pages that show only what the caller may do.
pub fn may(who: &Principal, action: Action, tenant: &TenantView) -> bool {
    authorize_tenant(who, action, &tenant.slug, tenant.memberships()).is_ok()
}

/// The memberships that limit what an employee sees in lists; `None` for
/// admins and tokens, whose lists [`crate::auth::policy::reach_limit`] narrows.
pub fn visible_to(who: &Principal) -> Option<(String, Vec<String>)> {
    match who {
        Principal::User(user) if !user.admin => Some((user.email.clone(), user.groups.clone())),
        _ => None,
    }
}
