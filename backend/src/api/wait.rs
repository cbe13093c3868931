//! `wait_for=Ready`: answer once the tenant is Ready at its current
//! generation, or with its state when the timeout passes. The request sleeps
//! until the change stream names the tenant; it never polls.

use std::time::Duration;

use serde::Deserialize;
use utoipa::IntoParams;

use crate::db::tenants::TenantRow;
use crate::error::Error;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub enum WaitFor {
    Ready,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Answer only once the tenant is `Ready` at its current generation (or at the timeout).
    pub wait_for: Option<WaitFor>,
    /// How long to wait, such as `30s`; at most just under the request timeout.
    pub timeout: Option<String>,
}

impl WaitQuery {
    /// How long this request may wait; `None` when it asked not to.
    pub fn limit(&self, app: &AppState) -> Result<Option<Duration>, Error> {
        let ceiling = app
            .config
            .request_timeout
            .saturating_sub(Duration::from_secs(1))
            .max(Duration::from_secs(1));
        let asked = match &self.timeout {
            Some(text) => crate::domain::parse_duration(text)
                .map_err(|rule| Error::invalid("query.timeout", rule))?,
            // Unasked, as long as the request may take: a default above the
            // ceiling would refuse every wait that names no timeout.
            None => Duration::from_secs(30).min(ceiling),
        };
        if self.wait_for.is_none() {
            return Ok(None);
        }
        if asked > ceiling {
            return Err(Error::invalid(
                "query.timeout",
                format!("must be at most {}s", ceiling.as_secs()),
            ));
        }
        Ok(Some(asked))
    }
}

/// The tenant once it is Ready, or as it is when `limit` passes.
pub async fn until_ready(app: &AppState, slug: &str, limit: Duration) -> Result<TenantRow, Error> {
    crate::events::until_ready(&app.db, &app.events, slug, limit).await
}
