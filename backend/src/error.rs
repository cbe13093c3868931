//! The one error type of the service. Every handler returns `Result<_, Error>`,
//! and `IntoResponse` turns it into an RFC 9457 `application/problem+json` answer.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::FieldError;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body or query parsed, but broke domain rules; each violation names its field.
    #[error("the request has {} invalid field(s)", .0.len())]
    Invalid(Vec<FieldError>),
    /// The request cannot be understood at all (malformed JSON, bad header syntax).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// The caller may not have what they asked for (more than the default
    /// budget); each refused field says what they may have.
    #[error("{detail}")]
    Refused {
        detail: String,
        errors: Vec<FieldError>,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The request conflicts with the current state (slug taken, over budget, ...).
    #[error("{detail}")]
    Conflict {
        detail: String,
        errors: Vec<FieldError>,
    },
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unprocessable(String),
    /// A part the request needs (a cluster) cannot serve it now.
    #[error("{0}")]
    Unavailable(String),
    /// PostgreSQL cannot be reached now (stopped, restarting, connections
    /// lost); answered 503 with `Retry-After`, never 500.
    #[error("the database is unreachable for a moment; try again shortly")]
    DatabaseUnavailable(anyhow::Error),
    /// A stored row no longer parses (an unknown state, a budget that is not
    /// quantities); the work that met it stops instead of using a default.
    #[error("{0:#}")]
    Corrupt(anyhow::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(field, rule)])
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::Conflict {
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

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

impl Error {
    /// The same error, as a database outage when its cause is one: a handler
    /// that wrapped a lost connection with context still answers 503.
    pub fn classified(self) -> Self {
        match self {
            Self::Internal(cause) if cause.chain().any(is_unreachable) => {
                crate::db::health::connection_lost();
                Self::DatabaseUnavailable(cause)
            }
            other => other,
        }
    }

    /// Logs a server-side cause once; clients never see it.
    pub fn log(&self) {
        match self {
            Self::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "request failed")
            }
            Self::Corrupt(cause) => {
                tracing::error!(
                    error = format!("{cause:#}"),
                    "request met a stored row that does not parse"
                )
            }
            Self::DatabaseUnavailable(cause) => {
                tracing::warn!(
                    error = format!("{cause:#}"),
                    "request answered 503: the database is unreachable"
                )
            }
            _ => {}
        }
    }
}

/// Seconds a client is asked to wait before retrying a 503.
pub const RETRY_AFTER_SECS: &str = "5";

/// Whether an error in a cause chain means PostgreSQL cannot be reached now,
/// as opposed to a query it refused.
fn is_unreachable(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<sqlx::Error>()
        .is_some_and(crate::db::health::is_connection_error)
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

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::health::is_connection_error(&e) {
            crate::db::health::connection_lost();
            Self::DatabaseUnavailable(anyhow::Error::new(e).context("lost the database"))
        } else if let Some(refusal) = crate::db::clusters::over_capacity(&e) {
            refusal
        } else if crate::db::decode::is_corrupt(&e) {
            Self::Corrupt(anyhow::Error::new(e).context("a stored row does not parse"))
        } else {
            Self::Internal(anyhow::Error::new(e).context("database query failed"))
        }
    }
}

impl From<FieldError> for Error {
    fn from(e: FieldError) -> Self {
        Self::Invalid(vec![e])
    }
}

impl From<Vec<FieldError>> for Error {
    fn from(errors: Vec<FieldError>) -> Self {
        Self::Invalid(errors)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The answer for a tenant that does not exist, and for one the caller has no
/// role in: the same, so answers do not tell which tenants exist.
pub fn tenant_not_found(slug: &str) -> Error {
    Error::NotFound(format!("there is no tenant \"{slug}\""))
}

/// The one place a policy denial becomes an answer, for the API and the pages alike.
impl From<crate::auth::policy::Denial> for Error {
    fn from(denial: crate::auth::policy::Denial) -> Self {
        match denial.hidden_tenant() {
            Some(slug) => tenant_not_found(slug),
            None => Self::Forbidden(denial.to_string()),
        }
    }
}
