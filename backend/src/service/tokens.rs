//! Service tokens: given out and revoked by platform admins (the dashboard)
//! or operators (the command line, which holds the database itself), each
//! recorded in the audit trail with its scopes and the tenants it reaches.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::Actor;
use crate::auth::policy::{Action, authorize};
use crate::auth::tokens::TokenSecret;
use crate::auth::{Principal, Scope};
use crate::db::{self, tokens::TokenInfo};
use crate::domain::FieldError;
use crate::error::Error;

/// Who gives a token out or takes it back.
#[derive(Debug, Clone, Copy)]
pub enum Issuer<'a> {
    /// A caller of the portal, who must be a platform admin.
    Caller(&'a Principal),
    /// An operator at the command line.
    Operator,
}

impl Issuer<'_> {
    fn authorize(self) -> Result<(), Error> {
        match self {
            Self::Caller(who) => Ok(authorize(who, Action::ManageTokens)?),
            Self::Operator => Ok(()),
        }
    }
}

/// A token as asked for.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Tenants it reaches besides those it creates (slugs).
    pub tenants: Vec<String>,
    /// Reaches every tenant.
    pub all_tenants: bool,
}

/// Whether `name` can name a token.
pub fn check_name(name: &str) -> Result<(), FieldError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "name",
            "use 1 to 64 letters, digits, '-', '_' or '.'",
        ))
    }
}

/// Makes a token; its secret is in the answer and nowhere else.
pub async fn create(
    db: &PgPool,
    issuer: Issuer<'_>,
    actor: &Actor,
    request: TokenRequest,
) -> Result<(TokenInfo, TokenSecret), Error> {
    issuer.authorize()?;
    check_name(&request.name)?;
    if request.scopes.is_empty() {
        return Err(Error::invalid("scopes", "choose at least one"));
    }
    let mut tenants = request.tenants.clone();
    tenants.sort();
    tenants.dedup();
    let secret = TokenSecret::generate();
    let mut tx = db.begin().await?;
    let mut info = db::tokens::insert(
        &mut tx,
        &db::tokens::NewToken {
            name: &request.name,
            scopes: &request.scopes,
            expires_at: request.expires_at,
            all_tenants: request.all_tenants,
        },
        &secret,
    )
    .await?;
    db::reach::name_on_token(&mut tx, info.id, &tenants).await?;
    info.tenants = tenants;
    let after = serde_json::json!({
        "name": info.name,
        "scopes": info.scopes,
        "tenants": info.tenants,
        "all_tenants": info.all_tenants,
        "expires_at": info.expires_at,
    });
    record(&mut tx, actor, "token.created", &after).await?;
    tx.commit().await?;
    Ok((info, secret))
}

/// Revokes the named live token; `false` when there is none.
pub async fn revoke(
    db: &PgPool,
    issuer: Issuer<'_>,
    actor: &Actor,
    name: &str,
) -> Result<bool, Error> {
    issuer.authorize()?;
    let mut tx = db.begin().await?;
    if !db::tokens::revoke(&mut tx, name).await? {
        return Ok(false);
    }
    let token = db::tokens::list(&mut tx)
        .await?
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("the revoked token vanished")))?;
    let revoked = serde_json::json!({
        "name": token.name,
        "scopes": token.scopes,
        "tenants": token.tenants,
        "all_tenants": token.all_tenants,
    });
    record(&mut tx, actor, "token.revoked", &revoked).await?;
    tx.commit().await?;
    Ok(true)
}

async fn record(
    tx: &mut db::Tx,
    actor: &Actor,
    action: &str,
    token: &serde_json::Value,
) -> Result<(), Error> {
    db::audit::record(
        tx,
        db::audit::NewEvent {
            actor: &actor.name,
            action,
            tenant: None,
            before: None,
            after: Some(token),
            request_id: actor.request_id.as_deref(),
        },
    )
    .await
}
