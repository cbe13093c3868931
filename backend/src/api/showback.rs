//! `GET /showback`: what the caller's tenants reserved and used over a
//! period, priced, grouped; JSON, or CSV with `Accept: text/csv`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::ApiQuery;
use crate::auth::Principal;
use crate::domain::Currency;
use crate::domain::price::format_micros;
use crate::error::Error;
use crate::service::showback::{self, GroupBy, Period, Report};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get))
        .routes(routes!(utilisation))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ShowbackQuery {
    /// The start of the period (RFC 3339, cut to the second).
    pub from: DateTime<Utc>,
    /// The end of the period, excluded; later than `from`, at most 366 days on.
    pub to: DateTime<Utc>,
    /// `tenant` (the default), `namespace`, `cluster` or `label:KEY` (a tenant label such as `label:cost-center`).
    pub group_by: Option<String>,
    /// Only this tenant (slug).
    pub tenant: Option<String>,
}

/// One resource of one group. Amounts are decimal strings with six digits
/// after the point, rounded once, half up; costs are in the report's `currency`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShowbackLine {
    #[schema(example = "requests.cpu")]
    pub resource: String,
    /// The unit of `allocated` and `used`: `core-hours`, `GiB-hours`, `GiB-months`, `unit-hours`.
    #[schema(example = "core-hours")]
    pub unit: String,
    /// What was reserved over the period (allocations, time-weighted).
    pub allocated: String,
    /// What was used over the period (usage samples, time-weighted).
    pub used: String,
    pub allocated_cost: String,
    pub used_cost: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShowbackGroup {
    /// The tenant slug, `tenant/namespace`, cluster or label value ("" for tenants without the label).
    pub group: String,
    /// The tenants in the group.
    pub tenants: Vec<String>,
    /// The sum of the lines' allocated costs.
    pub allocated_cost: String,
    pub used_cost: String,
    pub resources: Vec<ShowbackLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShowbackReport {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub group_by: String,
    /// How the amounts were computed.
    pub method: String,
    pub groups: Vec<ShowbackGroup>,
    pub allocated_cost: String,
    pub used_cost: String,
    /// The ISO 4217 code of every cost in the report (`--currency`).
    #[schema(example = "EUR")]
    pub currency: String,
}

pub const METHOD: &str = "time-weighted: each usage sample (with the allocations in force when it was taken) \
    stands from its time until the next sample, the last one until the end of the period, the tenant's deletion or now, whichever is first; \
    each second is priced at the price in force then (the cluster's own, else the one for every cluster); \
    each line is rounded once, half up, to six decimals, and totals are sums of rounded lines";

impl ShowbackReport {
    pub fn new(r: Report, currency: Currency) -> Self {
        Self {
            currency: currency.to_string(),
            from: r.period.from,
            to: r.period.to,
            group_by: r.group_by.as_str(),
            method: METHOD.into(),
            allocated_cost: format_micros(r.allocated_cost),
            used_cost: format_micros(r.used_cost),
            groups: r
                .groups
                .into_iter()
                .map(|g| ShowbackGroup {
                    group: g.name,
                    tenants: g.tenants,
                    allocated_cost: format_micros(g.allocated_cost),
                    used_cost: format_micros(g.used_cost),
                    resources: g
                        .lines
                        .into_iter()
                        .map(|l| ShowbackLine {
                            resource: l.resource,
                            unit: l.unit,
                            allocated: format_micros(l.allocated),
                            used: format_micros(l.used),
                            allocated_cost: format_micros(l.allocated_cost),
                            used_cost: format_micros(l.used_cost),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// What the caller's tenants (all, for admins) reserved and used over a
/// period, priced at the prices of that period.
#[utoipa::path(get, path = "/showback", tag = "showback", params(ShowbackQuery),
    responses((status = 200, description = "The report", content(
        (ShowbackReport = "application/json"),
        (String = "text/csv", example = "tenant,resource,unit,allocated,used,allocated_cost,used_cost,currency\r\nacme,requests.cpu,core-hours,24.000000,12.000000,0.960000,0.480000,EUR\r\n(total),,,,,0.96,0.48,EUR\r\n")))))]
async fn get(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<ShowbackQuery>,
) -> Result<Response, Error> {
    let period = Period::parse(query.from, query.to);
    let group_by = GroupBy::parse(query.group_by.as_deref().unwrap_or("tenant"));
    let (period, group_by) = match (period, group_by) {
        (Ok(p), Ok(g)) => (p, g),
        (p, g) => {
            return Err(Error::Invalid(
                [p.err(), g.err()].into_iter().flatten().collect(),
            ));
        }
    };
    let mut conn = app.db.acquire().await?;
    let report =
        showback::report(&mut conn, &who, period, group_by, query.tenant.as_deref()).await?;
    if wants_csv(&headers) {
        let name = format!(
            "attachment; filename=\"showback-{}-{}.csv\"",
            report.period.from.format("%Y%m%dT%H%M%SZ"),
            report.period.to.format("%Y%m%dT%H%M%SZ")
        );
        return Ok((
            [
                (
                    header::CONTENT_TYPE,
                    "text/csv; charset=utf-8; header=present".to_string(),
                ),
                (header::CONTENT_DISPOSITION, name),
            ],
            report.to_csv(app.config.currency),
        )
            .into_response());
    }
    Ok(Json(ShowbackReport::new(report, app.config.currency)).into_response())
}

/// Whether the client asks for CSV before JSON.
fn wants_csv(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept
        .split(',')
        .map(|m| {
            m.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .find(|m| m == "text/csv" || m == "application/json" || m == "*/*")
        .is_some_and(|m| m == "text/csv")
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UtilisationQuery {
    /// The start of the period (RFC 3339); by default seven days before `to`.
    pub from: Option<DateTime<Utc>>,
    /// The end of the period, excluded; by default now.
    pub to: Option<DateTime<Utc>>,
}

/// How one resource was used over the period.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResourceUseView {
    #[schema(example = "requests.cpu")]
    pub resource: String,
    /// The allocation at the period's last sample.
    pub allocated: String,
    /// Samples with something allocated.
    pub samples: usize,
    /// The median of used ÷ allocated over the samples, as a percentage (`37.5%`).
    pub p50: Option<String>,
    /// The 95th percentile of used ÷ allocated.
    pub p95: Option<String>,
    /// The 95th percentile of use, as a quantity.
    pub p95_used: String,
    /// Allocated in every sample and never used.
    pub idle: bool,
    /// The allocation that fits: the 95th percentile of use plus 20 %, rounded up (10m CPU, 1Mi memory).
    pub suggested: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NamespaceUseView {
    /// The namespace; `null` for the tenant as a whole (samples summed at each sampling time).
    pub namespace: Option<String>,
    pub resources: Vec<ResourceUseView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UtilisationReport {
    pub tenant: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub namespaces: Vec<NamespaceUseView>,
}

/// How much of its allocations the tenant used over a period, what sat
/// idle, and the allocations that would fit its use.
#[utoipa::path(get, path = "/tenants/{slug}/utilisation", tag = "showback",
    params(("slug" = String, Path, description = "The tenant's slug"), UtilisationQuery),
    responses((status = 200, description = "The tenant's use", body = UtilisationReport)))]
async fn utilisation(
    State(app): State<AppState>,
    who: Principal,
    Path(slug): Path<String>,
    ApiQuery(query): ApiQuery<UtilisationQuery>,
) -> Result<Json<UtilisationReport>, Error> {
    let to = query.to.unwrap_or_else(Utc::now);
    let from = match query.from {
        Some(from) => from,
        None => to
            .checked_sub_signed(chrono::Duration::days(7))
            .ok_or_else(|| {
                Error::invalid("query.to", "must lie between the years 1970 and 9999")
            })?,
    };
    let period = Period::parse(from, to).map_err(|e| Error::Invalid(vec![e]))?;
    let mut conn = app.db.acquire().await?;
    let uses = crate::service::utilisation::of_tenant(&mut conn, &who, &slug, period).await?;
    let percent = crate::service::utilisation::percent;
    Ok(Json(UtilisationReport {
        tenant: slug,
        from: period.from,
        to: period.to,
        namespaces: uses
            .into_iter()
            .map(|n| NamespaceUseView {
                namespace: n.namespace,
                resources: n
                    .resources
                    .into_iter()
                    .map(|r| ResourceUseView {
                        resource: r.resource,
                        allocated: r.allocated.to_string(),
                        samples: r.samples,
                        p50: r.p50.map(percent),
                        p95: r.p95.map(percent),
                        p95_used: r.p95_used.to_string(),
                        idle: r.idle,
                        suggested: r.suggested.to_string(),
                    })
                    .collect(),
            })
            .collect(),
    }))
}
