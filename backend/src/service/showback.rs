//! Showback: what the tenants a caller sees reserved and used over a period,
//! priced at the prices in force at each instant, grouped by tenant,
//! namespace, cluster or a tenant label. The method is in
//! `domain/showback.rs` and the README.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, Utc};
use sqlx::PgConnection;

use super::access::visible_to;
use super::showback_rollups::{Fetched, Plan, fetch_batch};
use crate::auth::Principal;
use crate::auth::policy::{Action, authorize, reach_limit};
use crate::db::{self, showback::SampleRow, showback::ScopeFilter, showback::ScopeRow};
use crate::domain::Currency;
use crate::domain::price::{Overflow, PricedResource, format_micros};
use crate::domain::showback::{Amounts, Ledger, standing};
use crate::domain::{FieldError, Quantity};
use crate::error::Error;

/// The longest period one report covers.
pub const MAX_PERIOD_DAYS: i64 = 366;

/// How namespaces are put together into the groups of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    Tenant,
    Namespace,
    Cluster,
    /// The value of a tenant label; tenants without it form the group "".
    Label(String),
}

impl GroupBy {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let rule = "must be tenant, namespace, cluster or label:KEY (such as label:cost-center)";
        match s {
            "tenant" => Ok(Self::Tenant),
            "namespace" => Ok(Self::Namespace),
            "cluster" => Ok(Self::Cluster),
            _ => match s.strip_prefix("label:") {
                Some(key) if crate::domain::is_qualified_name(key) => {
                    Ok(Self::Label(key.to_string()))
                }
                Some(_) => Err(FieldError::new(
                    "query.group_by",
                    "the label key must be a Kubernetes label key, such as cost-center or example.com/team",
                )),
                None => Err(FieldError::new("query.group_by", rule)),
            },
        }
    }

    pub fn as_str(&self) -> String {
        match self {
            Self::Tenant => "tenant".into(),
            Self::Namespace => "namespace".into(),
            Self::Cluster => "cluster".into(),
            Self::Label(key) => format!("label:{key}"),
        }
    }

    pub(super) fn key(&self, ns: &ScopeRow) -> String {
        match self {
            Self::Tenant => ns.slug.clone(),
            Self::Namespace => format!("{}/{}", ns.slug, ns.namespace),
            Self::Cluster => ns.cluster.clone(),
            Self::Label(key) => ns.labels.0.get(key).cloned().unwrap_or_default(),
        }
    }
}

/// A period `[from, to)`, in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Period {
    /// Checks the bounds: `from` before `to`, at most a year apart. Both are
    /// cut to the second, as every sample time is when it is costed.
    pub fn parse(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Self, FieldError> {
        let second = |t: DateTime<Utc>| DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t);
        let (from, to) = (second(from), second(to));
        for (field, t) in [("query.from", from), ("query.to", to)] {
            if !(1970..=9999).contains(&t.year()) {
                return Err(FieldError::new(
                    field,
                    "must lie between the years 1970 and 9999",
                ));
            }
        }
        if from >= to {
            return Err(FieldError::new("query.to", "must be later than from"));
        }
        if to - from > Duration::days(MAX_PERIOD_DAYS) {
            return Err(FieldError::new(
                "query.to",
                format!("the period may span at most {MAX_PERIOD_DAYS} days"),
            ));
        }
        Ok(Self { from, to })
    }
}

/// One resource of one group: amounts over time and their cost, in millionths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportLine {
    pub resource: String,
    /// The unit of `allocated` and `used`: `core-hours`, `GiB-months`.
    pub unit: String,
    pub allocated: i128,
    pub used: i128,
    pub allocated_cost: i128,
    pub used_cost: i128,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportGroup {
    pub name: String,
    pub tenants: Vec<String>,
    pub lines: Vec<ReportLine>,
    /// The sums of the lines' rounded costs.
    pub allocated_cost: i128,
    pub used_cost: i128,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub period: Period,
    pub group_by: GroupBy,
    pub groups: Vec<ReportGroup>,
    pub allocated_cost: i128,
    pub used_cost: i128,
}

/// The report of the tenants `who` sees (all for admins and all-tenant
/// tokens, their own for members), perhaps of one tenant only.
pub async fn report(
    conn: &mut PgConnection,
    who: &Principal,
    period: Period,
    group_by: GroupBy,
    tenant: Option<&str>,
) -> Result<Report, Error> {
    authorize(who, Action::ReadTenants)?;
    let filter = ScopeFilter {
        member: visible_to(who),
        reach: reach_limit(who),
        tenant: tenant.map(String::from),
    };
    compute(conn, &filter, period, group_by).await
}

/// How many namespaces' samples are read at once: bounded memory and sorts.
const BATCH: usize = 500;

/// The report over whatever `filter` lets through, with no policy asked:
/// for callers that already asked it. Reads the hourly rollups where they
/// are sealed and the samples elsewhere; equal to [`compute_raw`].
pub async fn compute(
    conn: &mut PgConnection,
    filter: &ScopeFilter,
    period: Period,
    group_by: GroupBy,
) -> Result<Report, Error> {
    let scope = db::showback::scope(conn, filter).await?;
    let prices = super::prices::book_until(conn, period.to).await?;
    let plan = Plan::new(&prices, period);
    let mut ledger = Ledger::new(period.from.timestamp(), period.to.timestamp(), prices);
    let mut tenants: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let end = period.to.min(Utc::now());
    // One batch is booked (parsed, priced) on a thread of its own while the
    // database reads the next: the two take about as long.
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Fetched>(1);
    let booking = {
        let (plan, group_by) = (plan.clone(), group_by.clone());
        tokio::task::spawn_blocking(move || {
            while let Some(fetched) = receiver.blocking_recv() {
                fetched.book(&plan, &group_by, &mut ledger)?;
            }
            Ok::<_, Error>(ledger)
        })
    };
    for batch in scope.chunks(BATCH) {
        let fetched = fetch_batch(conn, batch, &plan, period, end, &group_by, &mut tenants).await?;
        if sender.send(fetched).await.is_err() {
            // The booking stopped at an error, told below.
            break;
        }
    }
    drop(sender);
    let ledger = booking
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("booking a showback report: {e}")))??;
    finish(ledger, tenants, period, group_by)
}

/// The report computed from every sample of the period, the method itself:
/// what the rollups are checked against.
pub async fn compute_raw(
    conn: &mut PgConnection,
    filter: &ScopeFilter,
    period: Period,
    group_by: GroupBy,
) -> Result<Report, Error> {
    let scope = db::showback::scope(conn, filter).await?;
    let prices = super::prices::book_until(conn, period.to).await?;
    let mut ledger = Ledger::new(period.from.timestamp(), period.to.timestamp(), prices);
    let mut tenants: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Nothing is known of the future: the last samples stand until now at the latest.
    let end = period.to.min(Utc::now());
    let overflow = |_: Overflow| Error::Internal(anyhow::anyhow!("a showback amount overflowed"));
    for batch in scope.chunks(BATCH) {
        let ids: Vec<i64> = batch.iter().map(|n| n.namespace_id).collect();
        let samples = db::showback::samples(conn, &ids, period.from, period.to).await?;
        for (ns, mine) in by_namespace(batch, &samples) {
            if mine.is_empty() {
                continue;
            }
            let group = group_by.key(ns);
            let place = format!("{}/{}", ns.slug, ns.namespace);
            tenants
                .entry(group.clone())
                .or_default()
                .insert(ns.slug.clone());
            let stop = ns.deleted_at.map_or(end, |d| d.min(end));
            let times: Vec<i64> = mine.iter().map(|s| s.sampled_at.timestamp()).collect();
            let mut parsed = Parsed::default();
            for (sample, (start, end)) in mine.iter().zip(standing(&times, stop.timestamp())) {
                let (allocated, used) =
                    parsed.amounts(&place, sample.sampled_at, &sample.allocated, &sample.used)?;
                ledger
                    .book(&group, &ns.cluster, start, end, allocated, used)
                    .map_err(overflow)?;
            }
        }
    }
    finish(ledger, tenants, period, group_by)
}

/// The report of the lines booked, each group naming its tenants.
fn finish(
    ledger: Ledger,
    tenants: BTreeMap<String, BTreeSet<String>>,
    period: Period,
    group_by: GroupBy,
) -> Result<Report, Error> {
    let overflow = |_: Overflow| Error::Internal(anyhow::anyhow!("a showback amount overflowed"));
    let mut groups: BTreeMap<String, ReportGroup> = BTreeMap::new();
    for ((name, _), line) in ledger.into_lines() {
        let group = groups.entry(name.clone()).or_insert_with(|| ReportGroup {
            tenants: tenants
                .get(&name)
                .map(|t| t.iter().cloned().collect())
                .unwrap_or_default(),
            name,
            lines: Vec::new(),
            allocated_cost: 0,
            used_cost: 0,
        });
        let line = ReportLine {
            unit: line.resource.amount_unit(),
            resource: line.resource.name.clone(),
            allocated: line.allocated.micros().map_err(overflow)?,
            used: line.used.micros().map_err(overflow)?,
            allocated_cost: line.allocated_cost.micros().map_err(overflow)?,
            used_cost: line.used_cost.micros().map_err(overflow)?,
        };
        group.allocated_cost += line.allocated_cost;
        group.used_cost += line.used_cost;
        group.lines.push(line);
    }
    let groups: Vec<ReportGroup> = groups.into_values().collect();
    Ok(Report {
        period,
        group_by,
        allocated_cost: groups.iter().map(|g| g.allocated_cost).sum(),
        used_cost: groups.iter().map(|g| g.used_cost).sum(),
        groups,
    })
}

impl Report {
    /// The report as CSV (RFC 4180) that a spreadsheet opens as it is: a
    /// header row, one row per group and resource, amounts as exact decimal
    /// strings with their unit and currency in columns of their own, and a
    /// last row `(total)` with the costs summed and rounded to the
    /// currency's minor unit. No group is named `(total)`: slugs, cluster
    /// names and label values have no parentheses.
    pub fn to_csv(&self, currency: Currency) -> String {
        let mut out = format!(
            "{},resource,unit,allocated,used,allocated_cost,used_cost,currency\r\n",
            csv_field(&self.group_by.as_str())
        );
        for group in &self.groups {
            for line in &group.lines {
                let fields = [
                    csv_field(&group.name),
                    csv_field(&line.resource),
                    csv_field(&line.unit),
                    format_micros(line.allocated),
                    format_micros(line.used),
                    format_micros(line.allocated_cost),
                    format_micros(line.used_cost),
                    currency.to_string(),
                ];
                out.push_str(&fields.join(","));
                out.push_str("\r\n");
            }
        }
        out.push_str(&format!(
            "(total),,,,,{},{},{currency}\r\n",
            currency.round(self.allocated_cost),
            currency.round(self.used_cost)
        ));
        out
    }
}

/// A CSV field, quoted when it must be; a leading `=`, `+`, `-` or `@`
/// gets a `'` so that no spreadsheet runs it as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// Each namespace of `scope` with its samples, from samples in the order
/// [`db::showback::samples`] answers (by namespace id, as `scope` is).
pub(super) fn by_namespace<'a>(
    scope: &'a [ScopeRow],
    samples: &'a [SampleRow],
) -> impl Iterator<Item = (&'a ScopeRow, &'a [SampleRow])> {
    let mut rest = samples;
    scope.iter().map(move |ns| {
        let count = rest
            .iter()
            .take_while(|s| s.namespace_id == ns.namespace_id)
            .count();
        let (mine, later) = rest.split_at(count);
        rest = later;
        (ns, mine)
    })
}

/// The priced amounts of the last sample read, each list kept while the
/// next samples store the same JSON (the allocation mostly does, the use
/// now and then), so each value is parsed once.
#[derive(Default)]
pub(super) struct Parsed {
    allocated: Option<(String, Amounts)>,
    used: Option<(String, Amounts)>,
}

impl Parsed {
    /// The amounts of a sample of namespace `place` (`slug/name`) taken at `at`.
    pub(super) fn amounts(
        &mut self,
        place: &str,
        at: DateTime<Utc>,
        allocated: &str,
        used: &str,
    ) -> Result<(&Amounts, &Amounts), Error> {
        let allocated = fresh(&mut self.allocated, place, at, allocated)?;
        let used = fresh(&mut self.used, place, at, used)?;
        Ok((allocated, used))
    }
}

/// The amounts of `raw`, parsed unless they are those cached.
fn fresh<'a>(
    cached: &'a mut Option<(String, Amounts)>,
    place: &str,
    at: DateTime<Utc>,
    raw: &str,
) -> Result<&'a Amounts, Error> {
    if cached.as_ref().is_some_and(|(text, _)| text != raw) {
        *cached = None;
    }
    let (_, amounts) = match cached {
        Some(entry) => entry,
        None => cached.insert((raw.to_string(), priced_amounts(place, at, raw)?)),
    };
    Ok(amounts)
}

/// The priced resources of a stored resource list. A value that does not
/// parse stops the report, naming where it is, instead of counting as zero.
fn priced_amounts(place: &str, at: DateTime<Utc>, raw: &str) -> Result<Amounts, Error> {
    let corrupt = |what: String| {
        Error::Corrupt(anyhow::anyhow!(
            "usage_samples of namespace {place} at {at}: {what}"
        ))
    };
    let map: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(raw).map_err(|e| corrupt(format!("not a resource list: {e}")))?;
    let mut amounts = Amounts::new();
    for (resource, value) in map {
        if PricedResource::parse(&resource).is_err() {
            continue;
        }
        let text = value
            .as_str()
            .ok_or_else(|| corrupt(format!("{resource} is {value}, not a quantity")))?;
        let quantity: Quantity = text
            .parse()
            .map_err(|e| corrupt(format!("{resource}: {e}")))?;
        amounts.push((resource, quantity.nanos()));
    }
    Ok(amounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_by_names_its_rule() {
        assert_eq!(
            GroupBy::parse("label:cost-center").unwrap(),
            GroupBy::Label("cost-center".into())
        );
        assert_eq!(GroupBy::parse("namespace").unwrap(), GroupBy::Namespace);
        assert_eq!(GroupBy::parse("team").unwrap_err().field, "query.group_by");
        assert!(GroupBy::parse("label:").is_err());
    }

    #[test]
    fn a_period_ends_after_it_starts_and_within_a_year() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert!(Period::parse(t("2026-01-02T00:00:00Z"), t("2026-01-01T00:00:00Z")).is_err());
        assert!(Period::parse(t("2026-01-01T00:00:00Z"), t("2026-01-01T00:00:00Z")).is_err());
        assert!(Period::parse(t("2025-01-01T00:00:00Z"), t("2026-06-01T00:00:00Z")).is_err());
        assert!(Period::parse(t("1960-01-01T00:00:00Z"), t("1960-02-01T00:00:00Z")).is_err());
        let p = Period::parse(t("2026-01-01T00:00:00.9Z"), t("2026-02-01T00:00:00Z")).unwrap();
        assert_eq!(p.from, t("2026-01-01T00:00:00Z"));
    }
}
