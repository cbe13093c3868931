//! An error's HTTP meaning: its status code, its RFC 9457 problem document
//! (`application/problem+json`), and the REST API's answer. The dashboard's
//! pages and the tenant API's `Status` read the same status and detail, so
//! the three doors agree on what each error means.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::FieldError;
use crate::error::Error;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Seconds a client is asked to wait before retrying a 503.
pub const RETRY_AFTER_SECS: &str = "5";

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid(_) | Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::Refused { .. } => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unavailable(_) | Self::DatabaseUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) | Self::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid-request",
            Self::BadRequest(_) => "bad-request",
            Self::Unauthorized(_) => "unauthenticated",
            Self::Forbidden(_) | Self::Refused { .. } => "forbidden",
            Self::NotFound(_) => "not-found",
            Self::MethodNotAllowed(_) => "method-not-allowed",
            Self::Conflict { .. } => "conflict",
            Self::PreconditionFailed(_) => "precondition-failed",
            Self::PayloadTooLarge(_) => "payload-too-large",
            Self::UnsupportedMediaType(_) => "unsupported-media-type",
            Self::Unprocessable(_) => "unprocessable",
            Self::Unavailable(_) | Self::DatabaseUnavailable(_) => "unavailable",
            Self::Internal(_) | Self::Corrupt(_) => "internal",
        }
    }

    /// The problem document a client sees. Server errors stay opaque: their
    /// cause is logged, never sent.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let detail = match self {
            Self::Internal(_) | Self::Corrupt(_) => {
                "the server failed to handle the request; it has been logged, retry later".into()
            }
            Self::Invalid(errors) => errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.rule))
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        };
        let errors = match self {
            Self::Invalid(errors)
            | Self::Conflict { errors, .. }
            | Self::Refused { errors, .. } => errors.clone(),
            _ => Vec::new(),
        };
        Problem {
            kind: format!("https://tenant-portal.dev/problems/{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail,
            errors,
        }
    }
}

/// RFC 9457 problem details, with the list of field violations.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong, in words for a person.
    pub detail: String,
    /// Each violated rule with the field it belongs to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let this = self.classified();
        this.log();
        let status = this.status();
        let mut response = (status, axum::Json(this.problem())).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tenant-portal\""),
            );
        }
        response
    }
}
