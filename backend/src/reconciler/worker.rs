//! One worker: claim an outbox row, render, apply, record. Top to bottom.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Context, backoff, load_state};
use crate::cluster::objects::Kind;
use crate::cluster::{self, Cluster, SyncError, render};
use crate::db::{self, outbox::Claimed};
use crate::domain::TenantState;
use crate::error::Error;

/// The actor the audit trail names for the reconciler's own acts.
pub const ACTOR: &str = "system:reconciler";
/// How soon a tenant waiting for its namespaces to terminate is looked at again.
const DELETION_RECHECK: Duration = Duration::from_secs(1);

pub async fn run(context: Arc<Context>, cluster: Arc<Cluster>, n: u16, stop: CancellationToken) {
    let worker = format!("{}/{}/{n}", context.identity, cluster.name);
    while !stop.is_cancelled() {
        // Registered before claiming, so a change committed in between still wakes us.
        let woken = context.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        match claim(&context, &cluster, &worker).await {
            Ok(Some(job)) => {
                process(&context, &cluster, &worker, job).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(%worker, error = %e, "failed to claim work; retrying"),
        }
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep(context.settings.poll_interval) => {}
            () = stop.cancelled() => {}
        }
    }
}

async fn claim(
    context: &Context,
    cluster: &Cluster,
    worker: &str,
) -> Result<Option<Claimed>, Error> {
    let mut conn = context.db.acquire().await?;
    db::outbox::claim(&mut conn, &cluster.name, worker, context.settings.lease).await
}

/// What became of one claimed tenant.
enum Outcome {
    /// The cluster holds generation `generation`.
    Synced {
        slug: String,
        generation: i64,
        report: cluster::SyncReport,
    },
    /// Namespaces are still terminating.
    Deleting { remaining: usize },
    /// The namespaces are gone and the tenant is a tombstone.
    Tombstoned,
    /// Nothing to do: the tenant is gone from the database or already a tombstone.
    Nothing,
}

enum Failure {
    Cluster { slug: String, error: SyncError },
    Database(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self::Database(e)
    }
}

async fn process(context: &Context, cluster: &Cluster, worker: &str, job: Claimed) {
    let started = Instant::now();
    let result = reconcile(context, cluster, job.tenant_id).await;
    let recorded = record(context, worker, job, &result).await;
    let outcome = match &result {
        Ok(Outcome::Synced { .. }) => Some("ready"),
        Ok(Outcome::Deleting { .. }) => Some("deleting"),
        Ok(Outcome::Tombstoned) => Some("deleted"),
        Ok(Outcome::Nothing) => None,
        Err(_) => Some("failed"),
    };
    if let Some(outcome) = outcome {
        crate::metrics::global().reconciled(
            &cluster.name,
            outcome,
            started.elapsed().as_secs_f64(),
        );
    }
    let elapsed_ms = started.elapsed().as_millis();
    match (&result, recorded) {
        (_, Err(e)) => tracing::error!(%worker, tenant_id = job.tenant_id, error = %e,
            "failed to record the outcome; the lease expires and another worker retries"),
        (
            Ok(Outcome::Synced {
                generation, report, ..
            }),
            Ok(()),
        ) => tracing::info!(
            cluster = %cluster.name, tenant_id = job.tenant_id, generation, applied = report.applied,
            deleted = report.deleted, unchanged = report.unchanged, elapsed_ms, "tenant in sync"),
        (Ok(Outcome::Deleting { remaining }), Ok(())) => tracing::info!(
            cluster = %cluster.name, tenant_id = job.tenant_id, remaining, "waiting for namespaces to terminate"),
        (Ok(Outcome::Tombstoned), Ok(())) => {
            tracing::info!(cluster = %cluster.name, tenant_id = job.tenant_id, "tenant deleted")
        }
        (Ok(Outcome::Nothing), Ok(())) => {}
        (Err(Failure::Cluster { error, .. }), Ok(())) => tracing::warn!(
            cluster = %cluster.name, tenant_id = job.tenant_id, attempts = job.attempts, %error, "apply failed; will retry"),
        (Err(Failure::Database(e)), Ok(())) => tracing::warn!(
            tenant_id = job.tenant_id, error = %e, "failed to read the tenant; will retry"),
    }
}

/// Renders the tenant's desired objects and brings the cluster to them.
async fn reconcile(
    context: &Context,
    cluster: &Cluster,
    tenant_id: i64,
) -> Result<Outcome, Failure> {
    let loaded = {
        let mut conn = context.db.acquire().await.map_err(Error::from)?;
        load_state(&mut conn, tenant_id, &context.settings.guardrails).await?
    };
    let Some((row, desired_state)) = loaded else {
        return Ok(Outcome::Nothing);
    };
    if row.state() == TenantState::Deleted {
        return Ok(Outcome::Nothing);
    }
    let desired = render::render(&desired_state);
    context.drift.remember(&cluster.name, &row.slug, &desired);
    let report = cluster::sync(cluster, &row.slug, &desired)
        .await
        .map_err(|error| Failure::Cluster {
            slug: row.slug.clone(),
            error,
        })?;
    if row.state() != TenantState::Deleting {
        return Ok(Outcome::Synced {
            slug: row.slug,
            generation: row.generation,
            report,
        });
    }
    let remaining = cluster::remaining_namespaces(cluster, &row.slug)
        .await
        .map_err(|message| {
            let key = crate::cluster::objects::ObjectKey {
                kind: Kind::Namespace,
                namespace: None,
                name: row.slug.clone(),
            };
            Failure::Cluster {
                slug: row.slug.clone(),
                error: SyncError {
                    failures: vec![(key, message)],
                },
            }
        })?;
    if remaining > 0 {
        return Ok(Outcome::Deleting { remaining });
    }
    let mut tx = context.db.begin().await.map_err(Error::from)?;
    crate::service::lifecycle::tombstone(&mut tx, &crate::service::Actor::system(ACTOR), &row)
        .await?;
    tx.commit().await.map_err(Error::from)?;
    Ok(Outcome::Tombstoned)
}

/// Writes the outcome back: status, audit, the outbox row and the change
/// stream (last, as the event sequence asks).
async fn record(
    context: &Context,
    worker: &str,
    job: Claimed,
    result: &Result<Outcome, Failure>,
) -> Result<(), Error> {
    let mut tx = context.db.begin().await?;
    match result {
        Ok(Outcome::Synced {
            slug,
            generation,
            report,
        }) => {
            let marked = db::sync::mark_ready(&mut tx, job.tenant_id, *generation).await?;
            if marked.newly_observed {
                let after = serde_json::json!({
                    "generation": generation, "applied": report.applied, "deleted": report.deleted,
                });
                let event = db::audit::NewEvent {
                    actor: ACTOR,
                    action: "tenant.applied",
                    tenant: Some((job.tenant_id, slug)),
                    before: None,
                    after: Some(&after),
                    request_id: None,
                };
                db::audit::record(&mut tx, event).await?;
            }
            db::outbox::complete(&mut tx, job.tenant_id, *generation, worker).await?;
            if marked.became_ready {
                let data = serde_json::json!({"generation": generation});
                db::events::append(&mut tx, "tenant.ready", job.tenant_id, slug, &data).await?;
            }
        }
        Ok(Outcome::Deleting { .. }) => {
            db::outbox::retry_later(&mut tx, job.tenant_id, worker, DELETION_RECHECK, None).await?;
        }
        Ok(Outcome::Tombstoned) | Ok(Outcome::Nothing) => {
            db::outbox::complete(&mut tx, job.tenant_id, i64::MAX, worker).await?;
        }
        Err(Failure::Cluster { slug, error: e }) => {
            let per_namespace: Vec<(String, String)> = e
                .failures
                .iter()
                .filter_map(|(key, message)| {
                    let namespace = if key.kind == Kind::Namespace {
                        Some(key.name.clone())
                    } else {
                        key.namespace.clone()
                    };
                    Some((namespace?, message.clone()))
                })
                .collect();
            let message = e.to_string();
            let became_failed =
                db::sync::mark_failed(&mut tx, job.tenant_id, &message, &per_namespace).await?;
            let delay = backoff::delay(job.attempts);
            db::outbox::retry_later(&mut tx, job.tenant_id, worker, delay, Some(&message)).await?;
            if became_failed {
                let data = serde_json::json!({"message": message});
                db::events::append(&mut tx, "tenant.failed", job.tenant_id, slug, &data).await?;
            }
        }
        Err(Failure::Database(e)) => {
            let delay = backoff::delay(job.attempts);
            db::outbox::retry_later(&mut tx, job.tenant_id, worker, delay, Some(&e.to_string()))
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}
