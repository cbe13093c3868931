//! Templates (tiers): `GET /templates`, `GET|PUT /templates/{name}` and
//! `POST /templates/{name}/rollout`. Anyone who may create tenants reads
//! them; platform admins write versions and roll them out.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{ApiJson, ApiQuery, RequestId};
use crate::auth::Principal;
use crate::domain::template::TemplateSpec;
use crate::domain::tenant_document::TenantPlan;
use crate::error::Error;
use crate::problem::Problem;
use crate::service::documents::Portal;
use crate::service::templates::{self, RolloutRequest, Template};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get, put))
        .routes(routes!(rollout))
}

/// One version of a template.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TemplateView {
    #[schema(example = "small")]
    pub name: String,
    /// Counted from 1; every change is a new version.
    #[schema(example = 2)]
    pub version: i32,
    /// The template's fields as written (nested: they are closed to
    /// unknown fields, the view is not).
    pub spec: TemplateSpec,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl From<Template> for TemplateView {
    fn from(t: Template) -> Self {
        Self {
            name: t.at.name,
            version: t.at.version,
            spec: t.spec,
            created_by: t.created_by,
            created_at: t.created_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TemplateList {
    /// The newest version of every template, by name.
    pub templates: Vec<TemplateView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// A version other than the newest.
    #[param(minimum = 1)]
    pub version: Option<i32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RolloutQuery {
    /// Plan each tenant's change without committing anything.
    #[serde(default)]
    pub dry_run: bool,
}

/// Which tenants a rollout moves, to which version.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutInput {
    /// The version to move to; left out, the newest.
    #[schema(minimum = 1, example = 2)]
    #[serde(default)]
    pub version: Option<i32>,
    /// The tenants (slugs) to move, each on the template; left out, all of them.
    #[serde(default)]
    #[schema(example = json!(["acme"]))]
    pub tenants: Option<Vec<String>>,
}

/// A rollout's outcome for one tenant.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantRolloutView {
    #[schema(example = "acme")]
    pub slug: String,
    /// The version the tenant was on.
    pub from_version: i32,
    /// Its changes (made, or with `dry_run` planned) and the overrides it keeps.
    pub plan: Option<TenantPlan>,
    /// Why this tenant's change was refused; nothing of it was written.
    pub refused: Option<Problem>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RolloutView {
    #[schema(example = "small")]
    pub template: String,
    pub version: i32,
    pub dry_run: bool,
    pub tenants: Vec<TenantRolloutView>,
}

/// The newest version of every template (to anyone who may create tenants).
#[utoipa::path(get, path = "/templates", tag = "templates",
    responses((status = 200, description = "Every template, newest version", body = TemplateList)))]
async fn list(State(app): State<AppState>, who: Principal) -> Result<Json<TemplateList>, Error> {
    let mut conn = app.db.acquire().await?;
    let templates = templates::list(&mut conn, &who).await?;
    Ok(Json(TemplateList {
        templates: templates.into_iter().map(TemplateView::from).collect(),
    }))
}

/// A template: its newest version, or the one asked for.
#[utoipa::path(get, path = "/templates/{template}", tag = "templates",
    params(("template" = String, Path, description = "The template's name"), VersionQuery),
    responses((status = 200, description = "The template", body = TemplateView)))]
async fn get(
    State(app): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
) -> Result<Json<TemplateView>, Error> {
    let mut conn = app.db.acquire().await?;
    let template = templates::get(&mut conn, &who, &name, query.version).await?;
    Ok(Json(template.into()))
}

/// Write a template (platform admins): its first version, or, when it
/// differs from the newest, the next one, audited as `template.created` or
/// `template.changed`. The same fields again write nothing. Tenants move to
/// a new version only by a rollout.
#[utoipa::path(put, path = "/templates/{template}", tag = "templates",
    params(("template" = String, Path, description = "The template's name: 1 to 32 lowercase letters, digits or '-', starting with a letter")),
    request_body = TemplateSpec,
    responses(
        (status = 200, description = "Unchanged: the newest version", body = TemplateView),
        (status = 201, description = "A new version", body = TemplateView)))]
async fn put(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<TemplateSpec>,
) -> Result<(StatusCode, Json<TemplateView>), Error> {
    let (template, new) = templates::put(
        &app.db,
        &app.config,
        &who,
        &request_id.actor(&who),
        &name,
        body,
    )
    .await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(template.into())))
}

/// Move the tenants on a template (all, or those named) to a version
/// (platform admins): what a tenant has as its version says follows the
/// new one; its own values (a budget raised by a quota request, labels its
/// document sets) are kept and listed as `overrides`. Each tenant changes in
/// its own transaction, audited as `tenant.template_rolled_out`; a tenant
/// whose change breaks a rule is `refused` and left as it was. With
/// `dry_run=true`, each tenant's plan and nothing written.
#[utoipa::path(post, path = "/templates/{template}/rollout", tag = "templates",
    params(("template" = String, Path, description = "The template's name"), RolloutQuery),
    request_body = RolloutInput,
    responses((status = 200, description = "Each tenant's plan", body = RolloutView)))]
async fn rollout(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<RolloutQuery>,
    ApiJson(body): ApiJson<RolloutInput>,
) -> Result<Json<RolloutView>, Error> {
    let rollout = templates::roll_out(
        Portal {
            db: &app.db,
            config: &app.config,
            clusters: &app.clusters,
        },
        &who,
        &request_id.actor(&who),
        &name,
        RolloutRequest {
            version: body.version,
            tenants: body.tenants,
            dry_run: query.dry_run,
        },
    )
    .await?;
    Ok(Json(RolloutView {
        template: rollout.at.name,
        version: rollout.at.version,
        dry_run: rollout.dry_run,
        tenants: rollout
            .tenants
            .into_iter()
            .map(|t| TenantRolloutView {
                slug: t.slug,
                from_version: t.from_version,
                plan: t.plan,
                refused: t.refused.map(|e| e.problem()),
            })
            .collect(),
    }))
}
