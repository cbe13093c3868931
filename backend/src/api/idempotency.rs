//! `Idempotency-Key` on POST: the first answer is stored and replayed to
//! retries with the same key; a different request under the same key is
//! refused. Keys belong to the principal that sent them, and are looked up
//! only once that principal has authenticated with credentials valid now.
//! Answers that carry secrets are never stored: a retry runs again.

use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::db::idempotency::{self, Claim};
use crate::error::Error;
use crate::state::AppState;

const KEY_HEADER: &str = "idempotency-key";
/// Headers of the first answer that a replay repeats.
const KEPT_HEADERS: [HeaderName; 3] = [header::CONTENT_TYPE, header::ETAG, header::LOCATION];
/// Routes whose answers hold credentials (a kubeconfig's token), by the
/// end of their template: a retry under the same key mints new ones rather
/// than reading the old from the database.
const SECRET_ROUTES: [&str; 1] = ["/tenants/{slug}/kubeconfig"];

pub async fn replay(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let carries_secrets = request
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|route| SECRET_ROUTES.iter().any(|r| route.as_str().ends_with(r)));
    if request.method() != Method::POST
        || !request.headers().contains_key(KEY_HEADER)
        || carries_secrets
    {
        return next.run(request).await;
    }
    match run(app, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn run(app: AppState, request: Request, next: Next) -> Result<Response, Response> {
    let key = request
        .headers()
        .get(KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .ok_or_else(|| {
            Error::BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters".into())
                .into_response()
        })?;
    // Authenticated before anything stored is read: a revoked token or an
    // ended session gets its 401, never its old answer. The handler's
    // extractor finds this principal in the request's extensions.
    let (mut parts, body) = request.into_parts();
    let principal = Principal::from_request_parts(&mut parts, &app)
        .await
        .map_err(IntoResponse::into_response)?;
    let credential = principal.key();
    let bytes = to_bytes(body, app.config.max_body_bytes as usize)
        .await
        .map_err(|_| {
            Error::PayloadTooLarge("the request body is larger than the server accepts".into())
                .into_response()
        })?;
    let mut fingerprint = Sha256::new();
    fingerprint.update(parts.method.as_str());
    fingerprint.update(parts.uri.to_string());
    fingerprint.update(&bytes);
    let fingerprint = fingerprint.finalize().to_vec();

    match idempotency::claim(&app.db, &credential, &key, &fingerprint)
        .await
        .map_err(IntoResponse::into_response)?
    {
        Claim::Fresh => {}
        Claim::InFlight => {
            return Err(Error::conflict(
                "a request with this Idempotency-Key is still being processed; retry shortly",
            )
            .into_response());
        }
        Claim::Mismatch => {
            return Err(Error::Unprocessable(
                "this Idempotency-Key was already used for a different request; use a new key"
                    .into(),
            )
            .into_response());
        }
        Claim::Done {
            status,
            headers,
            body,
        } => return Ok(stored_response(status, &headers, &body)),
    }

    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let status = response.status();
    if status.is_server_error() || status == StatusCode::UNAUTHORIZED || is_no_store(&response) {
        idempotency::release(&app.db, &credential, &key)
            .await
            .map_err(IntoResponse::into_response)?;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, usize::MAX)
        .await
        .map_err(|e| Error::Internal(e.into()).into_response())?;
    let body_json: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
    let kept: serde_json::Map<String, serde_json::Value> = KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            let value = parts.headers.get(name)?.to_str().ok()?;
            Some((name.as_str().to_string(), value.into()))
        })
        .collect();
    idempotency::complete(
        &app.db,
        &credential,
        &key,
        status.as_u16(),
        &kept.into(),
        &body_json,
    )
    .await
    .map_err(IntoResponse::into_response)?;
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// An answer its handler marked `Cache-Control: no-store` holds a secret.
fn is_no_store(response: &Response) -> bool {
    response
        .headers()
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|directive| directive.trim().eq_ignore_ascii_case("no-store"))
}

fn stored_response(status: u16, headers: &serde_json::Value, body: &serde_json::Value) -> Response {
    let mut map = HeaderMap::new();
    if let Some(stored) = headers.as_object() {
        for (name, value) in stored {
            if let (Ok(name), Some(Ok(value))) = (
                HeaderName::try_from(name.as_str()),
                value.as_str().map(HeaderValue::from_str),
            ) {
                map.insert(name, value);
            }
        }
    }
    map.insert("idempotent-replayed", HeaderValue::from_static("true"));
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    *response.headers_mut() = map;
    response
}
