//! `wait_for=Ready`: answer once the tenant is Ready at its current
//! generation, or with its state when the timeout passes. The request sleeps
//! until the change stream names the tenant; it never polls.

use std::time::Duration;

use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use utoipa::IntoParams;

use crate::app::AppState;
use crate::db::{self, tenants::TenantRow};
use crate::domain::TenantState;
use crate::error::Error;

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
            None => Duration::from_secs(30),
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

fn settled(row: &TenantRow) -> bool {
    (row.sync_status == "Ready" && row.observed_generation >= row.generation)
        || row.state() == TenantState::Deleted
}

/// The tenant once it is Ready, or as it is when `limit` passes.
pub async fn until_ready(app: &AppState, slug: &str, limit: Duration) -> Result<TenantRow, Error> {
    let mut notices = app.events.subscribe();
    let deadline = Instant::now() + limit;
    loop {
        let row = {
            let mut conn = app.db.acquire().await?;
            db::tenants::get(&mut conn, slug)
                .await?
                .ok_or_else(|| crate::error::tenant_not_found(slug))?
        };
        if settled(&row) {
            return Ok(row);
        }
        let woken = tokio::time::timeout_at(deadline, async {
            loop {
                match notices.recv().await {
                    Ok(notice) if notice.tenant == slug => return,
                    Ok(_) => {}
                    // Missed some notices: look again in case one was ours.
                    Err(RecvError::Lagged(_)) => return,
                    Err(RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        })
        .await;
        if woken.is_err() {
            return Ok(row);
        }
    }
}
