//! One LISTEN per process on the change stream, fanned out to the requests
//! waiting on it (`wait_for=Ready`, `GET /api/v1/events`, the tenant API's
//! `kubectl create namespace`), so none of them polls.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::broadcast;

/// What the change stream tells the process, and the tenant it concerns.
#[derive(Debug, Clone)]
pub enum Notice {
    /// A new event, by its id.
    Event { id: i64, tenant: String },
    /// Tenant-API tokens of the tenant were revoked (migration 0027).
    TokensRevoked { tenant: String },
}

impl Notice {
    pub fn tenant(&self) -> &str {
        match self {
            Self::Event { tenant, .. } | Self::TokensRevoked { tenant } => tenant,
        }
    }
}

#[derive(Clone)]
pub struct EventHub(broadcast::Sender<Notice>);

impl EventHub {
    /// Starts listening; notices go to every subscriber.
    pub fn start(db: PgPool) -> Self {
        let (sender, _) = broadcast::channel(1024);
        tokio::spawn(listen(db, sender.clone()));
        Self(sender)
    }

    /// Subscribe before reading the state you wait on, so no notice falls between.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.0.subscribe()
    }
}

async fn listen(db: PgPool, sender: broadcast::Sender<Notice>) {
    loop {
        let session = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&db).await?;
            listener
                .listen_all(["tenant_events", "tenant_credentials"])
                .await?;
            loop {
                let notification = listener.recv().await?;
                let payload = notification.payload();
                let notice = if notification.channel() == "tenant_credentials" {
                    Some(Notice::TokensRevoked {
                        tenant: payload.to_string(),
                    })
                } else {
                    payload.split_once(' ').and_then(|(id, tenant)| {
                        Some(Notice::Event {
                            id: id.parse().ok()?,
                            tenant: tenant.to_string(),
                        })
                    })
                };
                if let Some(notice) = notice {
                    // No subscriber is not an error.
                    let _ = sender.send(notice);
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        if let Err(e) = session.await {
            tracing::warn!(error = %e, "lost the change-stream notifications; waiting requests fall back to their timeouts until they are back");
        }
        if sender.receiver_count() == 0 && db.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn settled(row: &crate::db::tenants::TenantRow) -> bool {
    (row.sync_status == "Ready" && row.observed_generation >= row.generation)
        || row.state() == crate::domain::TenantState::Deleted
}

/// The tenant once it is Ready at its current generation, or as it is when
/// `limit` passes. Sleeps until the change stream names the tenant.
pub async fn until_ready(
    db: &PgPool,
    events: &EventHub,
    slug: &str,
    limit: Duration,
) -> Result<crate::db::tenants::TenantRow, crate::error::Error> {
    use tokio::sync::broadcast::error::RecvError;
    let mut notices = events.subscribe();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let row = {
            let mut conn = db.acquire().await?;
            crate::db::tenants::get(&mut conn, slug)
                .await?
                .ok_or_else(|| crate::error::tenant_not_found(slug))?
        };
        if settled(&row) {
            return Ok(row);
        }
        let woken = tokio::time::timeout_at(deadline, async {
            loop {
                match notices.recv().await {
                    Ok(notice) if notice.tenant() == slug => return,
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
