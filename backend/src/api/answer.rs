//! HTTP answers carrying a tenant.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::extract::etag;
use super::model::Tenant;
use crate::service::views::TenantView;

/// A tenant answer with its ETag.
pub fn tenant_response(status: StatusCode, tenant: TenantView) -> Response {
    let tenant = Tenant::from(tenant);
    let mut headers = HeaderMap::new();
    if let Ok(tag) = HeaderValue::from_str(&etag(tenant.generation)) {
        headers.insert(header::ETAG, tag);
    }
    (status, headers, Json(tenant)).into_response()
}
