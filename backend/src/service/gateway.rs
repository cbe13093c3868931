//! The tenant API's credentials and reads: tokens issued to a member or the
//! tenant's automation account, who holds them, and the role each acts with.
//! The role is never stored on a token; it is read from the tenant's
//! members on every use, so a removed member loses access at once.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::Actor;
use super::access::load_authorized;
use super::views::{self, TenantView};
use crate::auth::policy::{Action, precheck, role_in};
use crate::auth::tokens::TokenSecret;
use crate::auth::{Principal, User};
use crate::db::{self, gateway_tokens::NewGatewayToken};
use crate::domain::Role;
use crate::domain::platform_api::{self, PlatformApi};
use crate::error::Error;

/// Who holds a tenant-API credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// An employee, with the email and groups they signed in with.
    User { email: String, groups: Vec<String> },
    /// The tenant's automation account (what a service token gets).
    Automation,
}

impl Holder {
    /// How refusals and the audit trail name the holder.
    pub fn describe(&self, slug: &str) -> String {
        match self {
            Self::User { email, .. } => email.clone(),
            Self::Automation => format!("{slug}-automation"),
        }
    }

    /// How the audit trail names the holder as an actor.
    pub fn actor(&self, slug: &str) -> String {
        match self {
            Self::User { email, .. } => format!("user:{email}"),
            Self::Automation => format!("automation:{slug}"),
        }
    }

    /// The holder as the authorization policy sees a caller; `None` for the
    /// automation account, which makes no changes through the portal.
    pub fn principal(&self, admin_groups: &[String]) -> Option<Principal> {
        let Self::User { email, groups } = self else {
            return None;
        };
        Some(Principal::User(User {
            subject: format!("tenant-api:{email}"),
            email: email.clone(),
            name: email.clone(),
            groups: groups.clone(),
            admin: groups.iter().any(|g| admin_groups.contains(g)),
            csrf_token: String::new(),
        }))
    }

    /// The role the holder has in the tenant now; `None`: no longer a member.
    /// A platform admin acts as an owner.
    pub fn role(&self, admin_groups: &[String], tenant: &TenantView) -> Option<Role> {
        match self.principal(admin_groups) {
            None => Some(Role::Editor),
            Some(Principal::User(user)) if user.admin => Some(Role::Owner),
            Some(who) => role_in(&who, tenant.memberships()),
        }
    }
}

/// A tenant-API token as presented and found valid.
#[derive(Debug, Clone)]
pub struct Credential {
    pub slug: String,
    pub holder: Holder,
    pub expires_at: DateTime<Utc>,
}

/// A new tenant-API token, shown once.
pub struct Issued {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub holder: Holder,
    pub tenant: TenantView,
}

/// Issues a tenant-API token: for an employee, one that acts with their own
/// role (any member may have one); for a service token or machine client
/// that may issue kubeconfigs, one for the tenant's automation account.
pub async fn issue(
    db: &PgPool,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    ttl: Duration,
) -> Result<Issued, Error> {
    let (action, holder) = match who {
        Principal::User(user) => (
            Action::ReadTenants,
            Holder::User {
                email: user.email.clone(),
                groups: user.groups.clone(),
            },
        ),
        _ => (Action::IssueKubeconfig, Holder::Automation),
    };
    precheck(who, action)?;
    let mut conn = db.acquire().await?;
    let row = load_authorized(&mut conn, who, slug, action).await?;
    if !row.state().is_editable() {
        return Err(Error::conflict(format!(
            "the tenant \"{slug}\" is {} and issues no credentials",
            row.state()
        )));
    }
    let mut tx = db.begin().await?;
    let (secret, expires_at, _) = store_token(&mut tx, row.id, &holder, &who.key(), ttl).await?;
    db::audit::record(
        &mut tx,
        db::audit::NewEvent {
            actor: &actor.name,
            action: "kubeconfig.issued",
            tenant: Some((row.id, &row.slug)),
            before: None,
            after: Some(&serde_json::json!({
                "view": "tenant",
                "holder": holder.describe(slug),
                "expires_at": expires_at,
                "ttl_seconds": ttl.as_secs(),
            })),
            request_id: actor.request_id.as_deref(),
        },
    )
    .await?;
    tx.commit().await?;
    let tenant = views::tenant(&mut conn, row).await?;
    Ok(Issued {
        token: secret.reveal(),
        expires_at,
        holder,
        tenant,
    })
}

/// Stores a new tenant-API token for `holder`, valid for `ttl`: its secret
/// (to show once), its expiry and its id.
pub(super) async fn store_token(
    conn: &mut sqlx::PgConnection,
    tenant_id: i64,
    holder: &Holder,
    issued_by: &str,
    ttl: Duration,
) -> Result<(TokenSecret, DateTime<Utc>, i64), Error> {
    let expires_at = Utc::now()
        + chrono::Duration::from_std(ttl).map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
    let secret = TokenSecret::generate_gateway();
    let (kind, email, groups) = match holder {
        Holder::User { email, groups } => ("user", Some(email.as_str()), groups.as_slice()),
        Holder::Automation => ("automation", None, &[][..]),
    };
    let id = db::gateway_tokens::insert(
        conn,
        &NewGatewayToken {
            tenant_id,
            holder_kind: kind,
            email,
            groups,
            issued_by,
            expires_at,
        },
        &secret,
    )
    .await?;
    Ok((secret, expires_at, id))
}

/// The tenant, for a member (or a platform admin) who signs in to its
/// tenant API with the identity provider; a stranger gets the 404 of a
/// missing tenant.
pub async fn member_view(db: &PgPool, who: &Principal, slug: &str) -> Result<TenantView, Error> {
    precheck(who, Action::ReadTenants)?;
    let mut conn = db.acquire().await?;
    super::access::view_authorized(&mut conn, who, slug, Action::ReadTenants).await
}

/// Writes one event of an exec, attach or port-forward session through the
/// tenant API to the tenant's audit trail.
pub async fn record_session(
    db: &PgPool,
    slug: &str,
    actor: &str,
    action: &str,
    details: &serde_json::Value,
    request_id: Option<&str>,
) -> Result<(), Error> {
    let mut conn = db.acquire().await?;
    let row = db::tenants::get(&mut conn, slug)
        .await?
        .ok_or_else(|| Error::NotFound(format!("tenant \"{slug}\"")))?;
    db::audit::record(
        &mut conn,
        db::audit::NewEvent {
            actor,
            action,
            tenant: Some((row.id, &row.slug)),
            before: None,
            after: Some(details),
            request_id,
        },
    )
    .await
}

/// The live token a client presented, or 401 saying why not.
pub async fn authenticate(db: &PgPool, presented: &TokenSecret) -> Result<Credential, Error> {
    let unknown = || Error::Unauthorized("the tenant API token is not valid".into());
    let row = db::gateway_tokens::find(db, &presented.lookup)
        .await?
        .ok_or_else(unknown)?;
    if !presented.matches(&row.secret_hash) {
        return Err(unknown());
    }
    if row.expires_at <= Utc::now() {
        return Err(Error::Unauthorized(format!(
            "the tenant API token expired at {}; download a new kubeconfig from the portal",
            row.expires_at
        )));
    }
    let holder = match (row.holder_kind.as_str(), row.email) {
        ("user", Some(email)) => Holder::User {
            email,
            groups: row.groups,
        },
        ("automation", _) => Holder::Automation,
        // The table's checks make this unreachable; refuse rather than guess.
        _ => return Err(unknown()),
    };
    Ok(Credential {
        slug: row.slug,
        holder,
        expires_at: row.expires_at,
    })
}

/// A tenant as the tenant API needs it, with no caller's policy applied
/// (the gateway decides by the holder's role), and the platform APIs it
/// may use.
pub async fn tenant(
    db: &PgPool,
    guardrails: &crate::config::GuardrailConfig,
    slug: &str,
) -> Result<Option<(TenantView, BTreeSet<PlatformApi>)>, Error> {
    let mut conn = db.acquire().await?;
    let Some(row) = db::tenants::get(&mut conn, slug).await? else {
        return Ok(None);
    };
    let published = db::platform_apis::published_to(&mut conn, row.id).await?;
    let view = views::tenant(&mut conn, row).await?;
    let (policy, _) = super::policy::in_force(&view, guardrails);
    let apis = platform_api::in_force(&published, policy.platform_apis.as_ref());
    Ok(Some((view, apis)))
}
