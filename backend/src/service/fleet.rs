//! The fleet at a glance, for platform admins: allocated and used per
//! cluster, the tenants that cost and waste the most in a month, the
//! tenants failing to sync and the quota requests waiting.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use sqlx::PgConnection;

use super::showback::{GroupBy, Period, Report};
use crate::auth::Principal;
use crate::auth::policy::{Action, authorize};
use crate::db::{self, fleet::FailingTenant, quota_requests::QuotaRequestRow};
use crate::domain::{FieldError, Quantity};
use crate::error::Error;

/// How many tenants the top lists show.
pub const TOP: usize = 10;

/// A calendar month (UTC), `2026-11`.
pub fn month(s: Option<&str>, now: DateTime<Utc>) -> Result<(String, Period), FieldError> {
    let rule = || FieldError::new("month", "must be a month such as 2026-11");
    let (year, month) = match s {
        None | Some("") => (now.year(), now.month()),
        Some(s) => {
            let (y, m) = s.split_once('-').ok_or_else(rule)?;
            let year: i32 = y.parse().map_err(|_| rule())?;
            let month: u32 = m.parse().map_err(|_| rule())?;
            (year, month)
        }
    };
    let start = NaiveDate::from_ymd_opt(year, month, 1).ok_or_else(rule)?;
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    }
    .ok_or_else(rule)?;
    let at = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).ok_or_else(rule);
    let period = Period::parse(at(start)?, at(next)?)?;
    Ok((format!("{year:04}-{month:02}"), period))
}

/// CPU and memory requests of a cluster's live namespaces.
#[derive(Debug, Clone)]
pub struct ClusterLoad {
    pub name: String,
    pub namespaces: usize,
    pub cpu_allocated: i128,
    pub cpu_used: i128,
    pub memory_allocated: i128,
    pub memory_used: i128,
}

impl ClusterLoad {
    pub fn quantity(nanos: i128, binary: bool) -> Quantity {
        let format = if binary {
            crate::domain::quantity::Format::BinarySI
        } else {
            crate::domain::quantity::Format::DecimalSI
        };
        Quantity::from_nanos(nanos, format).unwrap_or_else(Quantity::zero)
    }
}

pub struct Fleet {
    pub clusters: Vec<ClusterLoad>,
    /// The month's report by tenant.
    pub report: Report,
    /// Tenants by allocated cost, highest first.
    pub top_cost: Vec<(String, i128)>,
    /// Tenants by allocated cost minus used cost: what paid for nothing.
    pub top_waste: Vec<(String, i128)>,
    pub failing: Vec<FailingTenant>,
    pub pending: Vec<QuotaRequestRow>,
}

pub async fn overview(
    conn: &mut PgConnection,
    who: &Principal,
    clusters: &[&str],
    period: Period,
) -> Result<Fleet, Error> {
    authorize(who, Action::ReadClusters)?;
    let mut loads: BTreeMap<String, ClusterLoad> = clusters
        .iter()
        .map(|name| {
            let load = ClusterLoad {
                name: name.to_string(),
                namespaces: 0,
                cpu_allocated: 0,
                cpu_used: 0,
                memory_allocated: 0,
                memory_used: 0,
            };
            (name.to_string(), load)
        })
        .collect();
    for ns in db::fleet::namespace_loads(conn).await? {
        let load = loads
            .entry(ns.cluster.clone())
            .or_insert_with(|| ClusterLoad {
                name: ns.cluster.clone(),
                namespaces: 0,
                cpu_allocated: 0,
                cpu_used: 0,
                memory_allocated: 0,
                memory_used: 0,
            });
        let allocated = amounts(&ns.cluster, &ns.allocations)?;
        let used = amounts(&ns.cluster, &ns.usage)?;
        load.namespaces += 1;
        load.cpu_allocated += allocated.get("requests.cpu").copied().unwrap_or(0);
        load.cpu_used += used.get("requests.cpu").copied().unwrap_or(0);
        load.memory_allocated += allocated.get("requests.memory").copied().unwrap_or(0);
        load.memory_used += used.get("requests.memory").copied().unwrap_or(0);
    }
    let filter = db::showback::ScopeFilter::default();
    let report = super::showback::compute(conn, &filter, period, GroupBy::Tenant).await?;
    let mut top_cost: Vec<(String, i128)> = report
        .groups
        .iter()
        .map(|g| (g.name.clone(), g.allocated_cost))
        .collect();
    top_cost.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top_cost.truncate(TOP);
    let mut top_waste: Vec<(String, i128)> = report
        .groups
        .iter()
        .map(|g| (g.name.clone(), g.allocated_cost - g.used_cost))
        .collect();
    top_waste.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top_waste.truncate(TOP);
    let failing = db::fleet::failing(conn, 50).await?;
    let pending = super::quota_requests::list(conn, who, Some("pending".into()), None).await?;
    Ok(Fleet {
        clusters: loads.into_values().collect(),
        report,
        top_cost,
        top_waste,
        failing,
        pending,
    })
}

/// Nano-units per resource of a stored resource list; a bad value fails the page.
fn amounts(cluster: &str, raw: &str) -> Result<BTreeMap<String, i128>, Error> {
    let corrupt = |what: String| {
        Error::Corrupt(anyhow::anyhow!(
            "a namespace of cluster {cluster} stores {what}"
        ))
    };
    let map: BTreeMap<String, String> =
        serde_json::from_str(raw).map_err(|e| corrupt(format!("a bad resource list: {e}")))?;
    map.into_iter()
        .map(|(resource, text)| {
            let q: Quantity = text
                .parse()
                .map_err(|e| corrupt(format!("{resource} = {text}: {e}")))?;
            Ok((resource, q.nanos()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_is_a_calendar_month() {
        let now = "2026-12-15T10:00:00Z".parse().unwrap();
        let (name, p) = month(None, now).unwrap();
        assert_eq!(name, "2026-12");
        assert_eq!(p.to.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert!(month(Some("2026-13"), now).is_err());
        assert!(month(Some("nope"), now).is_err());
    }
}
