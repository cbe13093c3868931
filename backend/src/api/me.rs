use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::Principal;
use crate::auth::policy::role_in;
use crate::db::{self, tenants::ListFilter};
use crate::domain::Role;
use crate::error::Error;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me))
}

/// Who is calling, with what rights.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Me {
    /// `user`, `service_token` or `machine`.
    pub kind: String,
    /// The audit trail's name for the caller.
    pub actor: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub admin: bool,
    /// The scopes of a token or machine client.
    pub scopes: Vec<String>,
    /// Tenants the user has a role in.
    pub tenants: Vec<MyTenant>,
    /// Send as `X-CSRF-Token` with every change made with the session cookie.
    pub csrf_token: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MyTenant {
    pub slug: String,
    pub role: Role,
}

/// The caller: identity, admin rights, scopes and the tenants they have a role in.
#[utoipa::path(get, path = "/me", tag = "me", responses((status = 200, description = "The caller", body = Me)))]
async fn me(State(app): State<AppState>, who: Principal) -> Result<Json<Me>, Error> {
    let actor = who.actor();
    Ok(Json(match &who {
        Principal::ServiceToken { scopes, .. } | Principal::Machine { scopes, .. } => Me {
            kind: if matches!(who, Principal::Machine { .. }) {
                "machine"
            } else {
                "service_token"
            }
            .into(),
            actor,
            email: None,
            name: None,
            groups: vec![],
            admin: scopes.contains(&crate::auth::Scope::Admin),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            tenants: vec![],
            csrf_token: None,
        },
        Principal::User(user) => {
            let mut conn = app.db.acquire().await?;
            let filter = ListFilter {
                member: Some((user.email.clone(), user.groups.clone())),
                ..Default::default()
            };
            let rows = db::tenants::list_page(&mut conn, &filter, 0, 1000).await?;
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            let members = db::members::list_for_tenants(&mut conn, &ids).await?;
            let tenants = rows
                .iter()
                .filter_map(|row| {
                    let memberships = members
                        .iter()
                        .filter(|m| m.tenant_id == row.id)
                        .map(|m| (m.kind, m.subject.as_str(), m.role));
                    Some(MyTenant {
                        slug: row.slug.clone(),
                        role: role_in(&who, memberships)?,
                    })
                })
                .collect();
            Me {
                kind: "user".into(),
                actor,
                email: Some(user.email.clone()),
                name: Some(user.name.clone()),
                groups: user.groups.clone(),
                admin: user.admin,
                scopes: vec![],
                tenants,
                csrf_token: Some(user.csrf_token.clone()),
            }
        }
    }))
}
