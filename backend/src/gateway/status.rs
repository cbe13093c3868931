//! Refusals as the API server writes them: a `Status` object, which
//! kubectl and client libraries print as they print the API server's own.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::Error;

#[derive(Debug, Clone)]
pub struct KubeStatus {
    pub code: StatusCode,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    pub retry_after: Option<Duration>,
}

impl KubeStatus {
    pub fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(Duration::from_secs(1)),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                message,
            )
        }
    }

    /// `namespaces "x" not found`, as the API server says it.
    pub fn namespace_not_found(name: &str) -> Self {
        Self {
            details: Some(json!({"name": name, "kind": "namespaces"})),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("namespaces \"{name}\" not found"),
            )
        }
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn body(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        let mut details = self.details.clone();
        if let Some(after) = self.retry_after {
            details.get_or_insert_with(|| json!({}))["retryAfterSeconds"] = after.as_secs().into();
        }
        if let Some(details) = details {
            status["details"] = details;
        }
        status
    }
}

impl IntoResponse for KubeStatus {
    fn into_response(self) -> Response {
        let mut response = (
            self.code,
            [(header::CONTENT_TYPE, "application/json")],
            self.body().to_string(),
        )
            .into_response();
        if let Some(after) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&after.as_secs().to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// The portal's own refusals (the budget, the policy) in the API server's words.
impl From<Error> for KubeStatus {
    fn from(error: Error) -> Self {
        let problem = error.problem();
        let mut message = problem.detail.clone();
        if !problem.errors.is_empty() && !matches!(error, Error::Invalid(_)) {
            let fields: Vec<String> = problem
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.rule))
                .collect();
            message = format!("{message} ({})", fields.join("; "));
        }
        let code = error.status();
        let reason = match code {
            StatusCode::BAD_REQUEST => "BadRequest",
            StatusCode::UNAUTHORIZED => "Unauthorized",
            StatusCode::FORBIDDEN => "Forbidden",
            StatusCode::NOT_FOUND => "NotFound",
            StatusCode::CONFLICT => "Conflict",
            StatusCode::UNPROCESSABLE_ENTITY => "Invalid",
            StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLarge",
            StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
            _ => "InternalError",
        };
        if code.is_server_error() && !matches!(error, Error::Unavailable(_)) {
            tracing::error!(error = %error, "the tenant API failed a request");
        }
        let retry_after =
            (code == StatusCode::SERVICE_UNAVAILABLE).then_some(Duration::from_secs(1));
        Self {
            code,
            reason,
            message,
            details: None,
            retry_after,
        }
    }
}
