//! What the tenant page and the quota queue show of showback: the month's
//! cost of the tenant, and how it used its allocations over the last week.

use chrono::{Duration, Utc};
use sqlx::PgConnection;

use crate::auth::Principal;
use crate::domain::Currency;
use crate::domain::price::format_micros;
use crate::error::Error;
use crate::service::showback::{self, GroupBy, Period};
use crate::service::utilisation::{self, NamespaceUse, percent};

/// How far back the use beside a quota request looks.
const USE_DAYS: i64 = 7;

pub struct CostLine {
    pub resource: String,
    pub allocated: String,
    pub used: String,
    pub allocated_cost: String,
    pub used_cost: String,
}

pub struct UseLine {
    pub namespace: String,
    pub resource: String,
    pub allocated: String,
    pub p50: String,
    pub p95: String,
    pub idle: bool,
    pub suggested: String,
}

/// The tenant's showback: this month's cost and the last week's use.
pub struct TenantCost {
    pub month: String,
    pub lines: Vec<CostLine>,
    pub allocated_cost: String,
    pub used_cost: String,
    pub uses: Vec<UseLine>,
}

/// For a tenant the policy already let `who` read.
pub async fn of_tenant(
    conn: &mut PgConnection,
    who: &Principal,
    slug: &str,
    currency: Currency,
) -> Result<TenantCost, Error> {
    let now = Utc::now();
    let (month, period) =
        crate::service::fleet::month(None, now).map_err(|e| Error::Invalid(vec![e]))?;
    let report = showback::report(conn, who, period, GroupBy::Tenant, Some(slug)).await?;
    let group = report.groups.into_iter().next();
    let lines = group
        .as_ref()
        .map(|g| {
            g.lines
                .iter()
                .map(|l| CostLine {
                    resource: l.resource.clone(),
                    allocated: format!("{} {}", format_micros(l.allocated), l.unit),
                    used: format!("{} {}", format_micros(l.used), l.unit),
                    allocated_cost: currency.show(l.allocated_cost),
                    used_cost: currency.show(l.used_cost),
                })
                .collect()
        })
        .unwrap_or_default();
    let week = last_week(now)?;
    let uses = utilisation::of_tenant_unchecked(conn, slug, week).await?;
    Ok(TenantCost {
        month,
        lines,
        allocated_cost: currency.show(group.as_ref().map_or(0, |g| g.allocated_cost)),
        used_cost: currency.show(group.as_ref().map_or(0, |g| g.used_cost)),
        uses: use_lines(&uses),
    })
}

fn last_week(now: chrono::DateTime<Utc>) -> Result<Period, Error> {
    Period::parse(now - Duration::days(USE_DAYS), now).map_err(|e| Error::Invalid(vec![e]))
}

fn use_lines(uses: &[NamespaceUse]) -> Vec<UseLine> {
    uses.iter()
        .flat_map(|n| {
            n.resources.iter().map(|r| UseLine {
                namespace: n
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "(whole tenant)".into()),
                resource: r.resource.clone(),
                allocated: r.allocated.to_string(),
                p50: r.p50.map(percent).unwrap_or_else(|| "–".into()),
                p95: r.p95.map(percent).unwrap_or_else(|| "–".into()),
                idle: r.idle,
                suggested: r.suggested.to_string(),
            })
        })
        .collect()
}

/// The tenant's use of `resource` over the last week, in words, for the
/// admin deciding a quota request.
pub async fn use_of(conn: &mut PgConnection, slug: &str, resource: &str) -> Result<String, Error> {
    let uses = utilisation::of_tenant_unchecked(conn, slug, last_week(Utc::now())?).await?;
    let whole = uses.into_iter().find(|n| n.namespace.is_none());
    let line = whole.and_then(|n| n.resources.into_iter().find(|r| r.resource == resource));
    Ok(match line {
        Some(r) if r.samples > 0 => format!(
            "p50 {}, p95 {} of {} allocated{}; fits {}",
            r.p50.map(percent).unwrap_or_default(),
            r.p95.map(percent).unwrap_or_default(),
            r.allocated,
            if r.idle { ", idle" } else { "" },
            r.suggested
        ),
        _ => format!("no samples in the last {USE_DAYS} days"),
    })
}
