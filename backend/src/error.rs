//! What can go wrong, in the service's own words: the one error type that
//! `service/`, `db/`, `auth/` and the reconciler return. It knows nothing of
//! HTTP; each door gives it its answer (`problem.rs`: the status codes and
//! problem+json the REST API answers with, which the dashboard's pages and
//! the tenant API's `Status` read too). Database errors are classified in
//! `db/`.

use crate::domain::FieldError;

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

/// Whether an error in a cause chain means PostgreSQL cannot be reached now,
/// as opposed to a query it refused.
fn is_unreachable(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<sqlx::Error>()
        .is_some_and(crate::db::health::is_connection_error)
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
