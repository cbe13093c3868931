//! One LISTEN per process on the change stream, fanned out to the requests
//! waiting on it (`wait_for=Ready`, `GET /api/v1/events`), so none of them polls.

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
