//! One LISTEN per process on the change stream, fanned out to the requests
//! waiting on it (`wait_for=Ready`, `GET /api/v1/events`, the tenant API's
//! `kubectl create namespace`), so none of them polls.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::broadcast;

/// A new event: its id and the tenant it concerns.
#[derive(Debug, Clone)]
pub struct Notice {
    pub id: i64,
    pub tenant: String,
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
            listener.listen("tenant_events").await?;
            loop {
                let notification = listener.recv().await?;
                if let Some((id, tenant)) = notification.payload().split_once(' ')
                    && let Ok(id) = id.parse()
                {
                    // No subscriber is not an error.
                    let _ = sender.send(Notice {
                        id,
                        tenant: tenant.to_string(),
                    });
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
