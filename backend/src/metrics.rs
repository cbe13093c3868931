//! Prometheus metrics at `/metrics`: HTTP requests, reconciles, the outbox,
//! tenants by state, cluster reachability and sign-ins.

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::cluster::Clusters;
use crate::error::Error;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub cluster: String,
    /// ready, failed, deleting or deleted.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// claim, load, apply or record.
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// expired (first use or hourly) or unknown_key (a signature no known key matched).
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantApiLabels {
    pub tenant: String,
    /// get, list, watch, create, update, patch, delete, deletecollection or other.
    pub verb: String,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantVerbLabels {
    pub tenant: String,
    pub verb: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThrottleLabels {
    pub tenant: String,
    /// rate, in_flight or watches.
    pub reason: String,
}

fn seconds_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_duration: Family<ReconcileLabels, Histogram, fn() -> Histogram>,
    pub reconcile_phase_duration: Family<PhaseLabels, Histogram, fn() -> Histogram>,
    pub outbox_depth: Gauge,
    pub outbox_oldest_age: Gauge<f64, AtomicU64>,
    pub tenants: Family<StateLabels, Gauge>,
    pub cluster_reachable: Family<ClusterLabels, Gauge>,
    pub logins: Family<OutcomeLabels, Counter>,
    pub idp_discoveries: Family<ReasonLabels, Counter>,
    pub tenant_api_requests: Family<TenantApiLabels, Counter>,
    pub tenant_api_duration: Family<TenantVerbLabels, Histogram, fn() -> Histogram>,
    pub tenant_api_throttled: Family<ThrottleLabels, Counter>,
}

/// The process's metrics; every part records into the same registry.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::default();
        let metrics = Metrics {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(seconds_histogram),
            reconciles: Family::default(),
            reconcile_duration: Family::new_with_constructor(seconds_histogram),
            reconcile_phase_duration: Family::new_with_constructor(seconds_histogram),
            outbox_depth: Gauge::default(),
            outbox_oldest_age: Gauge::default(),
            tenants: Family::default(),
            cluster_reachable: Family::default(),
            logins: Family::default(),
            idp_discoveries: Family::default(),
            tenant_api_requests: Family::default(),
            tenant_api_duration: Family::new_with_constructor(seconds_histogram),
            tenant_api_throttled: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered",
            metrics.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests",
            metrics.http_duration.clone(),
        );
        registry.register(
            "reconcile",
            "Tenant reconciles by outcome",
            metrics.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time to reconcile one tenant",
            metrics.reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_phase_duration_seconds",
            "Time a reconcile spends claiming the outbox row, loading the tenant, applying and recording the outcome",
            metrics.reconcile_phase_duration.clone(),
        );
        registry.register(
            "outbox_depth",
            "Tenants with changes not yet applied",
            metrics.outbox_depth.clone(),
        );
        registry.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest unapplied change",
            metrics.outbox_oldest_age.clone(),
        );
        registry.register("tenants", "Tenants by state", metrics.tenants.clone());
        registry.register(
            "cluster_reachable",
            "1 when the cluster's API server answered last time",
            metrics.cluster_reachable.clone(),
        );
        registry.register("login", "Sign-ins by outcome", metrics.logins.clone());
        registry.register(
            "idp_discovery",
            "Fetches of the identity provider's metadata and signing keys, by reason",
            metrics.idp_discoveries.clone(),
        );
        registry.register(
            "tenant_api_requests",
            "Requests to the tenant API, by tenant, verb and answer code",
            metrics.tenant_api_requests.clone(),
        );
        registry.register(
            "tenant_api_request_duration_seconds",
            "Time to answer the tenant API's requests (to the end of the headers for watches), by tenant and verb",
            metrics.tenant_api_duration.clone(),
        );
        registry.register(
            "tenant_api_throttled",
            "Tenant API requests refused with 429 for the tenant's fair share, by tenant and reason",
            metrics.tenant_api_throttled.clone(),
        );
        // Present from the start, so rates and alerts see a zero rather than nothing.
        for outcome in ["success", "refused", "denied", "unreachable"] {
            metrics
                .logins
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.into(),
                })
                .inc_by(0);
        }
        Metrics {
            registry,
            ..metrics
        }
    })
}

impl Metrics {
    pub fn reconciled(&self, cluster: &str, outcome: &str, seconds: f64) {
        let labels = ReconcileLabels {
            cluster: cluster.to_string(),
            outcome: outcome.to_string(),
        };
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(seconds);
    }

    /// One phase of one reconcile: `claim`, `load`, `apply` or `record`.
    pub fn reconcile_phase(&self, phase: &'static str, took: std::time::Duration) {
        self.reconcile_phase_duration
            .get_or_create(&PhaseLabels { phase })
            .observe(took.as_secs_f64());
    }

    pub fn idp_discovery(&self, reason: &str) {
        self.idp_discoveries
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn tenant_api(&self, tenant: &str, verb: &str, code: u16, took: std::time::Duration) {
        self.tenant_api_requests
            .get_or_create(&TenantApiLabels {
                tenant: tenant.to_string(),
                verb: verb.to_string(),
                code,
            })
            .inc();
        self.tenant_api_duration
            .get_or_create(&TenantVerbLabels {
                tenant: tenant.to_string(),
                verb: verb.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn tenant_api_throttled(&self, tenant: &str, reason: &str) {
        self.tenant_api_throttled
            .get_or_create(&ThrottleLabels {
                tenant: tenant.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn login(&self, outcome: &str) {
        self.logins
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }
}

/// The `method` label: one of the standard methods, or `other`, so a client
/// sending made-up methods cannot create a new series per request.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Counts and times every request by its route template, never its raw path.
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method()).to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    let labels = HttpLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    let metrics = global();
    metrics.http_requests.get_or_create(&labels).inc();
    metrics
        .http_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The scrape: gauges read from the database and the clusters, then everything encoded.
pub async fn scrape(db: &sqlx::PgPool, clusters: &Clusters) -> Result<Response, Error> {
    let metrics = global();
    let mut conn = db.acquire().await?;
    let outbox = sqlx::query!(
        r#"SELECT count(*) AS "depth!", COALESCE(EXTRACT(EPOCH FROM now() - min(enqueued_at)), 0)::float8 AS "oldest!"
           FROM outbox"#
    )
    .fetch_one(&mut *conn)
    .await?;
    metrics.outbox_depth.set(outbox.depth);
    metrics.outbox_oldest_age.set(outbox.oldest);
    let states = sqlx::query!(r#"SELECT state, count(*) AS "count!" FROM tenants GROUP BY state"#)
        .fetch_all(&mut *conn)
        .await?;
    for state in ["active", "suspended", "deleting", "deleted"] {
        let count = states
            .iter()
            .find(|s| s.state == state)
            .map_or(0, |s| s.count);
        metrics
            .tenants
            .get_or_create(&StateLabels {
                state: state.into(),
            })
            .set(count);
    }
    for cluster in clusters.iter() {
        let reachable = i64::from(cluster.health().reachable);
        metrics
            .cluster_reachable
            .get_or_create(&ClusterLabels {
                cluster: cluster.name.clone(),
            })
            .set(reachable);
    }
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, &metrics.registry)
        .map_err(|e| Error::Internal(anyhow::anyhow!("failed to encode metrics: {e}")))?;
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_standard_methods_get_their_own_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for made_up in ["FOO", "get", "PROPFIND", "X-1"] {
            let method = Method::from_bytes(made_up.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "other", "{made_up}");
        }
    }
}
