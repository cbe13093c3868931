//! The dashboard: server-rendered pages for tenant owners and platform
//! admins. Pages ask the same policy as the API and change state through
//! `service::`; templates only show what they are given.

mod admin;
mod display;
mod edit;
mod fleet;
mod form;
mod gitops;
mod home;
mod platform_apis;
mod policy;
mod quota;
mod showback;
mod tenant;

use askama::Template;
use axum::Router;
use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::auth::{Principal, User};
use crate::error::Error;
use crate::page;
use crate::state::AppState;

pub use form::{DashboardForm, Posted, Refusal};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home::home))
        .route("/tenants", get(home::list).post(home::create))
        .route("/tenants/new", get(home::new_form))
        .route("/tenants/{slug}", get(tenant::show))
        .route("/tenants/{slug}/edit", get(edit::edit))
        .route("/tenants/{slug}/settings", post(edit::settings))
        .route("/tenants/{slug}/namespaces", post(edit::add_namespace))
        .route(
            "/tenants/{slug}/namespaces/{name}/allocations",
            post(edit::allocations),
        )
        .route(
            "/tenants/{slug}/namespaces/{name}/delete",
            post(edit::remove_namespace),
        )
        .route("/tenants/{slug}/members", post(edit::add_member))
        .route(
            "/tenants/{slug}/members/{id}/delete",
            post(edit::remove_member),
        )
        .route("/tenants/{slug}/delete", post(edit::delete))
        .route("/tenants/{slug}/policy", post(policy::set))
        .route("/tenants/{slug}/kubeconfig", post(tenant::kubeconfig))
        .route("/tenants/{slug}/gitops", post(gitops::set))
        .route("/tenants/{slug}/quota-requests", post(quota::ask))
        .route("/quota-requests", get(quota::queue))
        .route("/quota-requests/{id}/decide", post(quota::decide))
        .route("/admin", get(admin::page))
        .route("/admin/tokens", post(admin::create_token))
        .route("/admin/capacity", post(admin::set_capacity))
        .route("/admin/tokens/{name}/revoke", post(admin::revoke_token))
        .route(
            "/admin/platform-apis",
            get(platform_apis::page).post(platform_apis::publish),
        )
        .route(
            "/admin/platform-apis/{name}/withdraw",
            post(platform_apis::withdraw),
        )
        .route("/admin/fleet", get(fleet::page))
        .route("/admin/fleet.csv", get(fleet::csv))
        .route(
            "/static/app.css",
            get(|| {
                asset(
                    "text/css; charset=utf-8",
                    include_str!("../../../static/app.css"),
                )
            }),
        )
        .route(
            "/static/app.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../../../static/app.js"),
                )
            }),
        )
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// A signed-in employee looking at a page. Anyone else is sent to sign in.
pub struct Viewer {
    pub principal: Principal,
    pub user: User,
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let here = parts.extensions.get::<OriginalUri>().map_or_else(
            || parts.uri.path().to_string(),
            |uri| {
                uri.0
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string()
            },
        );
        match Principal::from_request_parts(parts, app).await {
            Ok(Principal::User(user)) => Ok(Self {
                principal: Principal::User(user.clone()),
                user,
            }),
            Ok(_) => Err(page::message(
                StatusCode::FORBIDDEN,
                "The dashboard is for people",
                "Service tokens and machine clients use the API at /api/v1.",
                ("/api/v1/openapi.json", "The API"),
            )),
            Err(Error::Unauthorized(_)) if app.login.is_some() => {
                let target = if parts.method.is_safe() {
                    here.as_str()
                } else {
                    "/"
                };
                Err(
                    Redirect::to(&format!("/auth/login?return_to={}", urlencode(target)))
                        .into_response(),
                )
            }
            Err(Error::Unauthorized(_)) => Err(page::message(
                StatusCode::UNAUTHORIZED,
                "Sign-in is not configured",
                "This portal has no identity provider configured; use the API with a service token.",
                ("/api/v1/openapi.json", "The API"),
            )),
            Err(e) => Err(PageError(e).into_response()),
        }
    }
}

impl Viewer {
    pub fn nav(&self, section: &'static str, notice: Option<String>) -> Nav {
        Nav {
            section,
            name: self.user.name.clone(),
            admin: self.user.admin,
            csrf: self.user.csrf_token.clone(),
            notice,
        }
    }
}

/// What the layout shows around every page.
pub struct Nav {
    pub section: &'static str,
    pub name: String,
    pub admin: bool,
    pub csrf: String,
    pub notice: Option<String>,
}

/// An error as a page. A user without a role in a tenant gets the same 404
/// as for a missing tenant (the policy's denial says so, see `error.rs`), so
/// pages do not tell which tenants exist.
pub struct PageError(pub Error);

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl From<crate::auth::policy::Denial> for PageError {
    fn from(denial: crate::auth::policy::Denial) -> Self {
        Self(denial.into())
    }
}

impl From<sqlx::Error> for PageError {
    fn from(e: sqlx::Error) -> Self {
        Self(e.into())
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        Self(Error::Internal(anyhow::anyhow!(
            "failed to render a page: {e}"
        )))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let error = self.0.classified();
        error.log();
        let problem = error.problem();
        let status = error.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            let mut page = page::message(
                status,
                "Try again shortly",
                "The portal cannot reach its database for a moment. Try again in a few seconds.",
                ("", "Try again"),
            );
            page.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(crate::problem::RETRY_AFTER_SECS),
            );
            return page;
        }
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::CONFLICT => "That did not work",
            s if s.is_server_error() => "Something went wrong",
            _ => "That did not work",
        };
        let detail = if status == StatusCode::NOT_FOUND {
            "There is no such page, or it is not yours to see.".into()
        } else {
            problem.detail
        };
        page::message(status, title, &detail, ("/", "Back to your tenants"))
    }
}

pub fn render(template: &impl Template) -> Result<Response, PageError> {
    Ok(Html(template.render()?).into_response())
}

/// Where to go after a form, with a notice for the next page.
pub fn see_other(path: &str, notice: &str) -> Response {
    Redirect::to(&format!("{path}?notice={}", urlencode(notice))).into_response()
}

/// Back to `path` after a form: with a notice of what was done, or of why
/// not when the request itself was refused (`refused: <detail>`); anything
/// else, a missing tenant or a failure, is an error page.
pub fn back_to<T>(
    path: &str,
    result: Result<T, Error>,
    done: impl FnOnce(T) -> String,
    refused: &str,
) -> Result<Response, PageError> {
    match result {
        Ok(value) => Ok(see_other(path, &done(value))),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => Ok(see_other(
            path,
            &format!("{refused}: {}", e.problem().detail),
        )),
        Err(e) => Err(e.into()),
    }
}

pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
