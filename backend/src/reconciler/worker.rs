//! One worker: claim an outbox row, render, apply, record. Top to bottom.
//! The claim is a lease the worker renews while it works; the record is
//! written only while the lease is still this claim's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
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

pub async fn run(
    context: Arc<Context>,
    cluster: Arc<Cluster>,
    wake: Arc<Notify>,
    n: u16,
    stop: CancellationToken,
) {
    let worker = format!("{}/{}/{n}", context.identity, cluster.name);
    let mut claims: u64 = 0;
    while !stop.is_cancelled() {
        // Registered before claiming, so a change committed in between still wakes us.
        let mut woken = Box::pin(wake.notified());
        woken.as_mut().enable();
        claims += 1;
        let holder = format!("{worker}#{claims}");
        let claiming = Instant::now();
        match claim(&context, &cluster, &holder).await {
            Ok(Some(job)) => {
                crate::metrics::global().reconcile_phase("claim", claiming.elapsed());
                // Waiters are woken oldest first: a busy worker still waiting
                // would take the next change's wake-up and sit on it until
                // done. Dropped, it hands a wake-up it got to an idle worker.
                drop(woken);
                process(&context, &cluster, job).await;
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
    holder: &str,
) -> Result<Option<Claimed>, Error> {
    let mut conn = context.db.acquire().await?;
    db::outbox::claim(&mut conn, &cluster.name, holder, context.settings.lease).await
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
    Deleting { generation: i64, remaining: usize },
    /// The namespaces are gone and the tenant is a tombstone.
    Tombstoned,
    /// Nothing to do: the tenant is gone from the database or already a tombstone.
    Nothing,
    /// Another worker holds the tenant now; what this one did is not recorded.
    Overtaken,
}

/// Whether an outcome was written.
enum Recorded {
    Kept,
    /// The lease is another claim's (or nobody's) now: nothing was written.
    Dropped {
        holder: Option<String>,
    },
}

enum Failure {
    /// The cluster refused or did not answer in time.
    Cluster {
        slug: String,
        generation: i64,
        message: String,
        /// Full namespace name and the failure that belongs to it.
        per_namespace: Vec<(String, String)>,
    },
    /// A stored row of the tenant does not parse: nothing is applied until
    /// it is fixed, since a default (an empty quota) would unlimit the tenant.
    Corrupt {
        /// The tenant's slug and generation, when its row is still there.
        tenant: Option<(String, i64)>,
        message: String,
    },
    Database(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self::Database(e)
    }
}

impl Failure {
    fn cluster(slug: &str, generation: i64, error: &SyncError) -> Self {
        let per_namespace = error
            .failures
            .iter()
            .filter_map(|(key, message)| {
                let namespace = if key.kind == Kind::Namespace {
                    Some(key.name.clone())
                } else {
                    key.namespace.clone()
                };
                Some((namespace?.to_string(), message.clone()))
            })
            .collect();
        Self::Cluster {
            slug: slug.to_string(),
            generation,
            message: error.to_string(),
            per_namespace,
        }
    }
}

async fn process(context: &Context, cluster: &Cluster, job: Claimed) {
    let started = Instant::now();
    let result = tokio::select! {
        result = reconcile(context, cluster, &job) => result,
        () = keep_lease(context, &job) => {
            crate::metrics::global().reconciled(&cluster.name, "overtaken", started.elapsed().as_secs_f64());
            tracing::warn!(cluster = %cluster.name, tenant_id = job.tenant_id, generation = job.generation,
                holder = %job.holder, "lost the lease while at work: another worker has the tenant; this attempt stops");
            return;
        }
    };
    let recording = Instant::now();
    let recorded = record(context, &job, &result).await;
    crate::metrics::global().reconcile_phase("record", recording.elapsed());
    let outcome = match (&result, &recorded) {
        (_, Ok(Recorded::Dropped { .. })) => Some("overtaken"),
        (Ok(Outcome::Synced { .. }), _) => Some("ready"),
        (Ok(Outcome::Deleting { .. }), _) => Some("deleting"),
        (Ok(Outcome::Tombstoned), _) => Some("deleted"),
        (Ok(_), _) => None,
        (Err(_), _) => Some("failed"),
    };
    if let Some(outcome) = outcome {
        crate::metrics::global().reconciled(
            &cluster.name,
            outcome,
            started.elapsed().as_secs_f64(),
        );
    }
    let elapsed_ms = started.elapsed().as_millis();
    let tenant_id = job.tenant_id;
    match (&result, recorded) {
        (_, Err(e)) => tracing::error!(holder = %job.holder, tenant_id, error = %e,
            "failed to record the outcome; the lease expires and another worker retries"),
        (_, Ok(Recorded::Dropped { holder })) => {
            let generation = match &result {
                Ok(Outcome::Synced { generation, .. })
                | Ok(Outcome::Deleting { generation, .. })
                | Err(Failure::Cluster { generation, .. }) => *generation,
                _ => job.generation,
            };
            tracing::warn!(cluster = %cluster.name, tenant_id, generation, holder = %job.holder,
                now_held_by = holder.as_deref().unwrap_or("nobody"),
                "dropped a stale outcome: the lease expired and another worker took the tenant")
        }
        (
            Ok(Outcome::Synced {
                generation, report, ..
            }),
            Ok(_),
        ) => tracing::info!(
            cluster = %cluster.name, tenant_id, generation, applied = report.applied,
            deleted = report.deleted, unchanged = report.unchanged, elapsed_ms, "tenant in sync"),
        (Ok(Outcome::Deleting { remaining, .. }), Ok(_)) => tracing::info!(
            cluster = %cluster.name, tenant_id, remaining, "waiting for namespaces to terminate"),
        (Ok(Outcome::Tombstoned), Ok(_)) => {
            tracing::info!(cluster = %cluster.name, tenant_id, "tenant deleted")
        }
        (Ok(_), Ok(_)) => {}
        (Err(Failure::Cluster { message, .. }), Ok(_)) => tracing::warn!(
            cluster = %cluster.name, tenant_id, attempts = job.attempts, error = %message, "apply failed; will retry"),
        (Err(Failure::Corrupt { tenant, message }), Ok(_)) => tracing::error!(
            cluster = %cluster.name, tenant_id, slug = tenant.as_ref().map_or("?", |t| t.0.as_str()),
            error = %message,
            "a stored row of the tenant does not parse; nothing is applied until it is fixed"),
        (Err(Failure::Database(e)), Ok(_)) => tracing::warn!(
            tenant_id, error = %e, "failed to read the tenant; will retry"),
    }
}

/// Renews the lease while the work runs; returns only when the lease is
/// lost (another worker claimed the row after it expired).
async fn keep_lease(context: &Context, lease: &Claimed) {
    let mut every = tokio::time::interval(context.settings.lease_renewal);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let renewed = match context.db.acquire().await {
            Ok(mut conn) => db::outbox::renew(&mut conn, lease, context.settings.lease).await,
            Err(e) => Err(e.into()),
        };
        match renewed {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(tenant_id = lease.tenant_id, holder = %lease.holder, error = %e,
                "failed to renew the lease; trying again")
            }
        }
    }
}

/// Renders the tenant's desired objects and brings the cluster to them.
async fn reconcile(
    context: &Context,
    cluster: &Cluster,
    lease: &Claimed,
) -> Result<Outcome, Failure> {
    let tenant_id = lease.tenant_id;
    let loading = Instant::now();
    let loaded = {
        let mut conn = context.db.acquire().await.map_err(Error::from)?;
        match load_state(&mut conn, tenant_id, &context.settings.guardrails).await {
            Err(Error::Corrupt(cause)) => {
                let tenant = db::tenants::slug_and_generation(&mut conn, tenant_id).await?;
                return Err(Failure::Corrupt {
                    tenant,
                    message: format!("nothing applied: {cause:#}"),
                });
            }
            other => other?,
        }
    };
    crate::metrics::global().reconcile_phase("load", loading.elapsed());
    let Some((row, desired_state)) = loaded else {
        return Ok(Outcome::Nothing);
    };
    if row.state() == TenantState::Deleted {
        return Ok(Outcome::Nothing);
    }
    let generation = row.generation;
    let desired = render::render(&desired_state);
    context.drift.remember(&cluster.name, &row.slug, &desired);
    let timeout = context.settings.sync_timeout;
    let applying = Instant::now();
    let synced = tokio::time::timeout(timeout, cluster::sync(cluster, &row.slug, &desired)).await;
    crate::metrics::global().reconcile_phase("apply", applying.elapsed());
    let report = match synced {
        Ok(synced) => synced.map_err(|e| Failure::cluster(&row.slug, generation, &e))?,
        Err(_) => {
            return Err(Failure::Cluster {
                slug: row.slug.clone(),
                generation,
                message: format!("the API server did not finish the apply within {timeout:?}"),
                per_namespace: Vec::new(),
            });
        }
    };
    if row.state() != TenantState::Deleting {
        return Ok(Outcome::Synced {
            slug: row.slug,
            generation,
            report,
        });
    }
    let remaining = cluster::remaining_namespaces(cluster, &row.slug)
        .await
        .map_err(|message| {
            let key = crate::cluster::objects::ObjectKey {
                kind: Kind::Namespace,
                namespace: None,
                name: row.slug.as_str().into(),
            };
            let error = SyncError {
                failures: vec![(key, message)],
            };
            Failure::cluster(&row.slug, generation, &error)
        })?;
    if remaining > 0 {
        return Ok(Outcome::Deleting {
            generation,
            remaining,
        });
    }
    let mut tx = context.db.begin().await.map_err(Error::from)?;
    let holder = db::outbox::holder(&mut tx, row.id).await?;
    if holder.as_deref() != Some(&lease.holder) {
        return Ok(Outcome::Overtaken);
    }
    crate::service::lifecycle::tombstone(&mut tx, &crate::service::Actor::system(ACTOR), &row)
        .await?;
    tx.commit().await.map_err(Error::from)?;
    Ok(Outcome::Tombstoned)
}

/// Writes the outcome back: status, audit, the outbox row and the change
/// stream (last, as the event sequence asks). Nothing is written unless the
/// lease is still this claim's: a worker slower than its lease, overtaken by
/// another, answers `Overtaken` and leaves the newer outcome standing.
async fn record(
    context: &Context,
    job: &Claimed,
    result: &Result<Outcome, Failure>,
) -> Result<Recorded, Error> {
    let tenant_id = job.tenant_id;
    if let Ok(Outcome::Tombstoned) = result {
        // Written under the lease already; the outbox row went with it.
        return Ok(Recorded::Kept);
    }
    if let Ok(Outcome::Synced {
        slug,
        generation,
        report,
    }) = result
    {
        let after = serde_json::json!({
            "generation": generation, "applied": report.applied, "deleted": report.deleted,
        });
        let mut conn = context.db.acquire().await?;
        return Ok(
            match db::sync::record_ready(&mut conn, job, *generation, slug, ACTOR, &after).await? {
                db::sync::ReadyRecord::Kept => Recorded::Kept,
                db::sync::ReadyRecord::Dropped { holder } => Recorded::Dropped { holder },
            },
        );
    }
    let mut tx = context.db.begin().await?;
    // The tenant's row first, as every change takes it; then the outbox row,
    // which no other worker can claim until this commits.
    let holder = db::outbox::holder(&mut tx, tenant_id).await?;
    if holder.as_deref() != Some(&job.holder) {
        return Ok(Recorded::Dropped { holder });
    }
    let dropped = || Recorded::Dropped {
        holder: holder.clone(),
    };
    match result {
        // Recorded above, in a statement of its own.
        Ok(Outcome::Synced { .. }) => {}
        Ok(Outcome::Deleting { generation, .. }) => {
            db::outbox::retry_later(&mut tx, job, *generation, DELETION_RECHECK, None).await?;
        }
        Ok(Outcome::Overtaken) => return Ok(dropped()),
        Ok(Outcome::Tombstoned) | Ok(Outcome::Nothing) => {
            db::outbox::complete(&mut tx, job, i64::MAX).await?;
        }
        Err(Failure::Cluster {
            slug,
            generation,
            message,
            per_namespace,
        }) => {
            let marked =
                db::sync::mark_failed(&mut tx, job, *generation, message, per_namespace).await?;
            let delay = backoff::delay(job.attempts);
            db::outbox::retry_later(&mut tx, job, *generation, delay, Some(message)).await?;
            if marked == Some(true) {
                let data = serde_json::json!({"message": message});
                db::events::append(&mut tx, "tenant.failed", tenant_id, slug, &data).await?;
            }
        }
        Err(Failure::Corrupt { tenant, message }) => {
            let delay = backoff::delay(job.attempts);
            let Some((slug, generation)) = tenant else {
                db::outbox::complete(&mut tx, job, i64::MAX).await?;
                tx.commit().await?;
                return Ok(Recorded::Kept);
            };
            let marked = db::sync::mark_failed(&mut tx, job, *generation, message, &[]).await?;
            db::outbox::retry_later(&mut tx, job, *generation, delay, Some(message)).await?;
            if marked == Some(true) {
                let data = serde_json::json!({"message": message});
                db::events::append(&mut tx, "tenant.failed", tenant_id, slug, &data).await?;
            }
        }
        Err(Failure::Database(e)) => {
            let delay = backoff::delay(job.attempts);
            db::outbox::retry_later(&mut tx, job, job.generation, delay, Some(&e.to_string()))
                .await?;
        }
    }
    tx.commit().await?;
    Ok(Recorded::Kept)
}
