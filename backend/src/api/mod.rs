//! The REST API under `/api/v1`: one router per resource, merged here, with
//! the OpenAPI document generated from the same handlers.

mod answer;
mod audit;
mod budget;
mod clusters;
pub mod contract;
mod documents;
pub(crate) mod events;
pub mod extract;
mod gitops;
mod idempotency;
mod kubeconfig;
mod lifecycle;
mod me;
mod members;
pub mod model;
mod namespaces;
mod platform_apis;
mod policy;
mod prices;
mod quota_requests;
mod showback;
mod status;
mod templates;
pub mod tenant_json;
mod tenants;
mod wait;

use std::sync::Arc;

use axum::middleware;
use axum::routing::{get, post};
use axum::{Extension, Router};
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as OpenApiDoc, RefOr, ResponseBuilder};
use utoipa::{OpenApi, PartialSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::error::Error;
use crate::problem::{PROBLEM_JSON, Problem};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    servers((url = "/api/v1", description = "This portal")),
    info(title = "Tenant Portal API", description = "Self-service tenants on shared Kubernetes clusters: namespaces, quota budgets, members."),
    paths(lifecycle::suspend, lifecycle::resume),
    components(schemas(Problem, crate::domain::FieldError, wait::WaitFor)),
    tags(
        (name = "tenants", description = "Tenants and their lifecycle"),
        (name = "namespaces", description = "A tenant's namespaces and their allocations"),
        (name = "quota", description = "A tenant's budget"),
        (name = "members", description = "Who has which role in a tenant"),
        (name = "audit", description = "Who changed what"),
        (name = "clusters", description = "The clusters tenants live on"),
        (name = "me", description = "The caller"),
        (name = "events", description = "The change stream"),
        (name = "showback", description = "Prices, and what tenants cost"),
        (name = "platform-apis", description = "The clusters' custom APIs published to tenants"),
        (name = "templates", description = "Templates (tiers) tenants are made from, and their rollouts"),
    )
)]
struct ApiDoc;

/// The `/api/v1` router and what is kept of its OpenAPI document.
pub fn router(app: AppState) -> (Router<AppState>, Arc<contract::Published>) {
    let (routes, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(tenants::router())
        .merge(documents::router())
        .merge(templates::router())
        .merge(namespaces::router())
        .merge(budget::router())
        .merge(policy::router())
        .merge(members::router())
        .merge(audit::router())
        .merge(status::router())
        .merge(kubeconfig::router())
        .merge(gitops::router())
        .merge(clusters::router())
        .merge(me::router())
        .merge(events::router())
        .merge(quota_requests::router())
        .merge(prices::router())
        .merge(platform_apis::router())
        .merge(showback::router())
        .split_for_parts();
    document_errors_and_security(&mut doc);
    contract::describe_requests(&mut doc, &app.config.cluster_names());
    let published = Arc::new(contract::Published::new(&doc));
    drop(doc);
    let routes = routes
        // `{slug}:suspend` and `{slug}:resume`, documented above as their own paths.
        .route("/tenants/{slug}", post(lifecycle::dispatch))
        .layer(middleware::from_fn_with_state(app, idempotency::replay))
        .route("/openapi.json", get(openapi_json))
        // The API's own caches, with the API: the change streams open per
        // principal, and tenants' list JSON by view version.
        .layer(Extension(events::OpenStreams::default()))
        .layer(Extension(Arc::new(tenant_json::TenantJson::default())))
        .layer(Extension(published.clone()))
        .fallback(|| async {
            Error::NotFound("there is no such API route; see /api/v1/openapi.json".into())
        })
        .method_not_allowed_fallback(|| async {
            Error::MethodNotAllowed(
                "this route does not take that method; see /api/v1/openapi.json".into(),
            )
        });
    (routes, published)
}

/// Rejections from axum and tower layers (a path segment of the wrong type,
/// a body over the limit) come as plain text; API clients get every error
/// as a problem document instead.
pub async fn problems_for_plain_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let is_api = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    if !is_api || is_problem || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let allow = response.headers().get(axum::http::header::ALLOW).cloned();
    let text = axum::body::to_bytes(response.into_body(), 16 * 1024)
        .await
        .unwrap_or_default();
    let detail = String::from_utf8_lossy(&text).trim().to_string();
    let error = match status.as_u16() {
        404 => Error::NotFound(detail),
        405 => Error::MethodNotAllowed(detail),
        413 => Error::PayloadTooLarge("the request body is larger than the server accepts".into()),
        415 => Error::UnsupportedMediaType(detail),
        422 => Error::Unprocessable(detail),
        503 => return (status, [(axum::http::header::CONTENT_TYPE, PROBLEM_JSON)], axum::Json(serde_json::json!({
            "type": "https://tenant-portal.dev/problems/unavailable", "title": "Service Unavailable",
            "status": 503, "detail": "the request took too long and was stopped; retry later"}))).into_response(),
        code if code >= 500 => Error::Internal(anyhow::anyhow!("{status}: {detail}")),
        _ => Error::BadRequest(if detail.is_empty() { status.to_string() } else { detail }),
    };
    let mut answer = error.into_response();
    if let Some(allow) = allow {
        answer
            .headers_mut()
            .insert(axum::http::header::ALLOW, allow);
    }
    answer
}

async fn openapi_json(
    Extension(published): Extension<Arc<contract::Published>>,
) -> Result<axum::response::Response, Error> {
    use axum::response::IntoResponse;
    let json = published.json()?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json,
    )
        .into_response())
}

/// Every operation can answer with these problems; saying so once here keeps
/// the handlers' annotations about what is particular to them. A 412 is
/// documented only where the operation takes `If-Match`, a 422 only where it
/// takes input beyond its path (a body, a query or a header), since only
/// those can break a rule; every error answer is a problem document.
fn document_errors_and_security(doc: &mut OpenApiDoc) {
    let common = [
        ("400", "Malformed request (bad JSON or header)"),
        ("401", "No valid service token"),
        ("403", "The token lacks the needed scope"),
        ("404", "No such tenant or item"),
        (
            "409",
            "Conflicts with the current state (taken name, over budget, no cluster with room, tenant being deleted)",
        ),
        ("412", "If-Match did not match the current ETag"),
        ("413", "Body too large"),
        ("415", "Body is not JSON"),
        ("422", "A field breaks a rule; `errors` names each field"),
        ("500", "The server failed; retry later"),
    ];
    let problem = |text: &str| {
        ResponseBuilder::new()
            .description(text)
            .content(
                PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "Problem",
                    ))))
                    .build(),
            )
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            let params = || {
                op.parameters.iter().flatten().filter_map(|p| match p {
                    RefOr::T(p) => Some(p),
                    RefOr::Ref(_) => None,
                })
            };
            let conditional = params().any(|p| p.name == "If-Match");
            let takes_input = op.request_body.is_some()
                || params().any(|p| !matches!(p.parameter_in, ParameterIn::Path));
            for (code, text) in common {
                let applies = match code {
                    "412" => conditional,
                    "422" => takes_input,
                    _ => true,
                };
                if applies {
                    op.responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| RefOr::T(problem(text)));
                }
            }
            for (code, response) in op.responses.responses.iter_mut() {
                if let RefOr::T(response) = response
                    && (code.starts_with('4') || code.starts_with('5'))
                    && response.content.is_empty()
                {
                    *response = problem(&response.description);
                }
            }
            op.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
                "service_token",
                Vec::<String>::new(),
            )]);
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "service_token",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("A service token from `tenant-portal token create`"))
                .build(),
        ),
    );
    let _ = Problem::schema();
}
