//! Waste: per namespace and resource, how much of the allocation the usage
//! samples of a period used (p50 and p95 of used ÷ allocated), whether the
//! allocation sat idle, and the allocation that would fit the use.

use std::collections::BTreeMap;

use sqlx::PgConnection;

use super::access::load_authorized;
use super::showback::Period;
use crate::auth::Principal;
use crate::auth::policy::Action;
use crate::db::{self, showback::ScopeFilter, showback::ScopeRow};
use crate::domain::Quantity;
use crate::domain::quantity::Format;
use crate::domain::showback::{percentile, right_size, standing, utilisation};
use crate::error::Error;

/// How one resource of one namespace (or of the whole tenant) was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceUse {
    pub resource: String,
    /// The allocation of the period's last sample.
    pub allocated: Quantity,
    /// Samples with something allocated.
    pub samples: usize,
    /// Used ÷ allocated in millionths, over the samples; `None` without samples.
    pub p50: Option<i128>,
    pub p95: Option<i128>,
    pub p95_used: Quantity,
    /// Allocated in every sample of the period and never used.
    pub idle: bool,
    /// The 95th percentile of use plus the margin, rounded up to a step.
    pub suggested: Quantity,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceUse {
    /// The namespace's name in the tenant; `None` for the tenant as a whole.
    pub namespace: Option<String>,
    pub resources: Vec<ResourceUse>,
}

/// The tenant's use over a period: the whole tenant first, then each namespace.
pub async fn of_tenant(
    conn: &mut PgConnection,
    who: &Principal,
    slug: &str,
    period: Period,
) -> Result<Vec<NamespaceUse>, Error> {
    load_authorized(conn, who, slug, Action::ReadTenants).await?;
    of_tenant_unchecked(conn, slug, period).await
}

/// The same, for callers that already asked the policy (the quota request list).
pub async fn of_tenant_unchecked(
    conn: &mut PgConnection,
    slug: &str,
    period: Period,
) -> Result<Vec<NamespaceUse>, Error> {
    let filter = ScopeFilter {
        tenant: Some(slug.to_string()),
        ..Default::default()
    };
    let scope = db::showback::scope(conn, &filter).await?;
    let ids: Vec<i64> = scope.iter().map(|n| n.namespace_id).collect();
    let samples = db::showback::samples(conn, &ids, period.from, period.to).await?;
    let mut per_namespace: Vec<(Option<String>, Series)> = Vec::new();
    // Every sample of every namespace by time, for the tenant as a whole.
    let mut events: Vec<(i64, usize, Amounts, Amounts)> = Vec::new();
    let end = period.to.min(chrono::Utc::now());
    for (index, (ns, mine)) in super::showback::by_namespace(&scope, &samples).enumerate() {
        let stop = ns.deleted_at.map_or(end, |d| d.min(end));
        let times: Vec<i64> = mine.iter().map(|s| s.sampled_at.timestamp()).collect();
        let mut series = Series::new();
        for (sample, (start, end)) in mine.iter().zip(standing(&times, stop.timestamp())) {
            if start.max(period.from.timestamp()) >= end {
                continue;
            }
            let allocated = parse(ns, &sample.allocated)?;
            let used = parse(ns, &sample.used)?;
            events.push((start, index, allocated.clone(), used.clone()));
            series.push((allocated, used));
        }
        per_namespace.push((Some(ns.namespace.clone()), series));
    }
    let whole = tenant_series(events);
    let mut out = vec![NamespaceUse {
        namespace: None,
        resources: summarise(&whole),
    }];
    out.extend(
        per_namespace
            .into_iter()
            .map(|(namespace, series)| NamespaceUse {
                namespace,
                resources: summarise(&series),
            }),
    );
    Ok(out)
}

type Amounts = BTreeMap<String, Quantity>;
type Series = Vec<(Amounts, Amounts)>;

/// The tenant's series: at each sampling time, the sum of what every
/// namespace's latest sample then says.
fn tenant_series(mut events: Vec<(i64, usize, Amounts, Amounts)>) -> Series {
    events.sort_by_key(|(at, index, _, _)| (*at, *index));
    let mut current: BTreeMap<usize, (Amounts, Amounts)> = BTreeMap::new();
    let mut series = Series::new();
    let mut i = 0;
    while i < events.len() {
        let at = events[i].0;
        while i < events.len() && events[i].0 == at {
            let (_, index, allocated, used) = events[i].clone();
            current.insert(index, (allocated, used));
            i += 1;
        }
        let mut sum = (Amounts::new(), Amounts::new());
        for (allocated, used) in current.values() {
            add_into(&mut sum.0, allocated);
            add_into(&mut sum.1, used);
        }
        series.push(sum);
    }
    series
}

fn add_into(sum: &mut Amounts, more: &Amounts) {
    for (resource, q) in more {
        let total = match sum.get(resource) {
            Some(have) => Quantity::from_nanos(have.nanos() + q.nanos(), have.format()),
            None => Some(q.clone()),
        };
        if let Some(total) = total {
            sum.insert(resource.clone(), total);
        }
    }
}

fn summarise(series: &Series) -> Vec<ResourceUse> {
    let Some((last_allocated, _)) = series.last() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (resource, allocated) in last_allocated {
        let mut ratios = Vec::new();
        let mut used_values = Vec::new();
        let mut idle = true;
        for (a, u) in series {
            let a = a.get(resource).map_or(0, Quantity::nanos);
            let u = u.get(resource).map_or(0, Quantity::nanos);
            idle &= a > 0 && u == 0;
            used_values.push(u);
            if let Some(r) = utilisation(u, a) {
                ratios.push(r);
            }
        }
        ratios.sort_unstable();
        used_values.sort_unstable();
        let p95_used = percentile(&used_values, 95).unwrap_or(0);
        let format = if allocated.format() == Format::BinarySI {
            Format::BinarySI
        } else {
            Format::DecimalSI
        };
        let quantity = |n: i128| Quantity::from_nanos(n, format).unwrap_or_else(Quantity::zero);
        out.push(ResourceUse {
            resource: resource.clone(),
            allocated: allocated.clone(),
            samples: ratios.len(),
            p50: percentile(&ratios, 50),
            p95: percentile(&ratios, 95),
            p95_used: quantity(p95_used),
            idle: idle && !ratios.is_empty(),
            suggested: quantity(right_size(resource, p95_used)),
        });
    }
    out
}

/// A stored resource list; a value that does not parse stops the read.
fn parse(ns: &ScopeRow, raw: &str) -> Result<Amounts, Error> {
    let corrupt = |what: String| {
        Error::Corrupt(anyhow::anyhow!(
            "usage_samples of namespace {}/{}: {what}",
            ns.slug,
            ns.namespace
        ))
    };
    let map: BTreeMap<String, String> =
        serde_json::from_str(raw).map_err(|e| corrupt(format!("not a resource list: {e}")))?;
    map.into_iter()
        .map(|(resource, text)| {
            let q = text
                .parse::<Quantity>()
                .map_err(|e| corrupt(format!("{resource}: {e}")))?;
            Ok((resource, q))
        })
        .collect()
}

/// Millionths as a percentage with one decimal: `37.5%`.
pub fn percent(millionths: i128) -> String {
    let tenths = (millionths + 500) / 1000;
    format!("{}.{}%", tenths / 10, tenths % 10)
}
