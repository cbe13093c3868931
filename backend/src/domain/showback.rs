//! The costing method, pure: each sample's allocation and usage stand from
//! the sample until the next one (or the end of the period, or the tenant's
//! deletion), and every second of that is priced at the price in force then.
//! Sums stay exact fractions; each line is rounded once, half up, to
//! millionths, and a total is the sum of its rounded lines.

use std::collections::{BTreeMap, HashMap};

use super::price::{Exact, Overflow, Price, PricedResource};

/// One stored price: from `from` (Unix seconds) on, for one cluster or all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceRow {
    pub resource: String,
    pub cluster: Option<String>,
    pub price: Price,
    pub from: i64,
}

/// Every price with its history, answering "what did this cost then?".
#[derive(Debug, Clone, Default)]
pub struct PriceBook {
    by_resource: HashMap<String, Vec<PriceRow>>,
}

impl PriceBook {
    pub fn new(rows: impl IntoIterator<Item = PriceRow>) -> Self {
        let mut by_resource: HashMap<String, Vec<PriceRow>> = HashMap::new();
        for row in rows {
            by_resource
                .entry(row.resource.clone())
                .or_default()
                .push(row);
        }
        for rows in by_resource.values_mut() {
            rows.sort_by_key(|r| r.from);
        }
        Self { by_resource }
    }

    /// The price in force at `at`: the cluster's own latest price started by
    /// then, else the latest one for every cluster; zero before any.
    pub fn at(&self, resource: &str, cluster: &str, at: i64) -> i64 {
        let Some(rows) = self.by_resource.get(resource) else {
            return 0;
        };
        let latest = |scope: Option<&str>| {
            rows.iter()
                .rev()
                .find(|r| r.from <= at && r.cluster.as_deref() == scope)
                .map(|r| r.price.micros())
        };
        latest(Some(cluster)).or_else(|| latest(None)).unwrap_or(0)
    }

    /// Every instant any price starts, sorted, without repeats.
    pub fn starts(&self) -> Vec<i64> {
        let mut starts: Vec<i64> = self
            .by_resource
            .values()
            .flatten()
            .map(|r| r.from)
            .collect();
        starts.sort_unstable();
        starts.dedup();
        starts
    }

    /// The prices of a resource in one cluster as steps: from each instant
    /// on, until the next, the price in millionths.
    fn timeline(&self, resource: &str, cluster: &str) -> Vec<(i64, i64)> {
        let mut steps = vec![(i64::MIN, 0)];
        let Some(rows) = self.by_resource.get(resource) else {
            return steps;
        };
        let mut starts: Vec<i64> = rows
            .iter()
            .filter(|r| r.cluster.is_none() || r.cluster.as_deref() == Some(cluster))
            .map(|r| r.from)
            .collect();
        starts.dedup();
        steps.extend(
            starts
                .into_iter()
                .map(|t| (t, self.at(resource, cluster, t))),
        );
        steps
    }
}

/// What one group spent on one resource over the period.
#[derive(Debug, Clone)]
pub struct Line {
    pub resource: PricedResource,
    /// Allocated amount over time, in the resource's units and periods (core-hours).
    pub allocated: Exact,
    pub used: Exact,
    pub allocated_cost: Exact,
    pub used_cost: Exact,
}

impl Line {
    fn new(resource: PricedResource) -> Self {
        let time = resource.time_denominator();
        let cost = resource.cost_denominator();
        Self {
            resource,
            allocated: Exact::zero(time),
            used: Exact::zero(time),
            allocated_cost: Exact::zero(cost),
            used_cost: Exact::zero(cost),
        }
    }
}

/// The amounts of the priced resources one sample names, in nano-units.
pub type Amounts = Vec<(String, i128)>;

/// The running account of a period: lines per group and resource.
#[derive(Debug)]
pub struct Ledger {
    from: i64,
    to: i64,
    prices: PriceBook,
    timelines: HashMap<(String, String), Vec<(i64, i64)>>,
    lines: BTreeMap<(String, String), Line>,
}

impl Ledger {
    /// An empty account of `[from, to)`, in Unix seconds.
    pub fn new(from: i64, to: i64, prices: PriceBook) -> Self {
        Self {
            from,
            to,
            prices,
            timelines: HashMap::new(),
            lines: BTreeMap::new(),
        }
    }

    /// Books what stood in a namespace of `cluster` from `start` to `end`
    /// (clipped to the period) to `group`.
    pub fn book(
        &mut self,
        group: &str,
        cluster: &str,
        start: i64,
        end: i64,
        allocated: &Amounts,
        used: &Amounts,
    ) -> Result<(), Overflow> {
        let (start, end) = (start.max(self.from), end.min(self.to));
        if start >= end {
            return Ok(());
        }
        for (kind, amounts) in [(Kind::Allocated, allocated), (Kind::Used, used)] {
            for (resource, nanos) in amounts {
                if *nanos <= 0 {
                    continue;
                }
                self.book_one(group, cluster, resource, kind, start, end, *nanos)?;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn book_one(
        &mut self,
        group: &str,
        cluster: &str,
        resource: &str,
        kind: Kind,
        start: i64,
        end: i64,
        nanos: i128,
    ) -> Result<(), Overflow> {
        let Ok(priced) = PricedResource::parse(resource) else {
            return Ok(());
        };
        let key = (resource.to_string(), cluster.to_string());
        if !self.timelines.contains_key(&key) {
            let timeline = self.prices.timeline(resource, cluster);
            self.timelines.insert(key.clone(), timeline);
        }
        let timeline = &self.timelines[&key];
        let line = self
            .lines
            .entry((group.to_string(), resource.to_string()))
            .or_insert_with(|| Line::new(priced));
        let (amount, cost) = match kind {
            Kind::Allocated => (&mut line.allocated, &mut line.allocated_cost),
            Kind::Used => (&mut line.used, &mut line.used_cost),
        };
        amount.add_product(nanos, i128::from(end - start), 1)?;
        // The step in force at `start`, then every step that begins before `end`.
        let first = timeline.partition_point(|(from, _)| *from <= start) - 1;
        for (i, (step_from, micros)) in timeline.iter().enumerate().skip(first) {
            if *step_from >= end {
                break;
            }
            let step_end = timeline
                .get(i + 1)
                .map_or(end, |(next, _)| (*next).min(end));
            let seconds = step_end - (*step_from).max(start);
            if seconds > 0 && *micros > 0 {
                cost.add_product(nanos, i128::from(seconds), i128::from(*micros))?;
            }
        }
        Ok(())
    }

    /// Books integrals (nano-units times seconds) of a namespace of
    /// `cluster` to `group`, priced at the price in force at `at`: the
    /// caller answers for no price changing over the time they cover, and
    /// for that time lying in the period.
    pub fn book_integral(
        &mut self,
        group: &str,
        cluster: &str,
        resource: &str,
        at: i64,
        allocated: i128,
        used: i128,
    ) -> Result<(), Overflow> {
        let Ok(priced) = PricedResource::parse(resource) else {
            return Ok(());
        };
        if allocated <= 0 && used <= 0 {
            return Ok(());
        }
        let micros = i128::from(self.prices.at(resource, cluster, at));
        let line = self
            .lines
            .entry((group.to_string(), resource.to_string()))
            .or_insert_with(|| Line::new(priced));
        for (integral, amount, cost) in [
            (allocated, &mut line.allocated, &mut line.allocated_cost),
            (used, &mut line.used, &mut line.used_cost),
        ] {
            if integral > 0 {
                amount.add(integral)?;
                if micros > 0 {
                    cost.add_product(integral, micros, 1)?;
                }
            }
        }
        Ok(())
    }

    /// The lines by group, then resource.
    pub fn into_lines(self) -> BTreeMap<(String, String), Line> {
        self.lines
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Allocated,
    Used,
}

/// The `[from, until)` each of a namespace's samples stands for: until the
/// next sample, the last one until `stop` (the period's end, or the tenant's
/// deletion).
pub fn standing(times: &[i64], stop: i64) -> Vec<(i64, i64)> {
    times
        .iter()
        .enumerate()
        .map(|(i, at)| (*at, times.get(i + 1).copied().unwrap_or(stop).min(stop)))
        .collect()
}

/// Seconds in an hour, the unit of the rollups.
pub const HOUR: i64 = 3600;

/// The start of the hour `t` falls in.
pub fn floor_hour(t: i64) -> i64 {
    t.div_euclid(HOUR) * HOUR
}

/// The start of the first hour that begins at or after `t`.
pub fn ceil_hour(t: i64) -> i64 {
    floor_hour(t + HOUR - 1)
}

/// The hours `[start, end)` covers: each hour's start with the seconds of it covered.
pub fn hours(start: i64, end: i64) -> impl Iterator<Item = (i64, i64)> {
    let mut hour = floor_hour(start);
    std::iter::from_fn(move || {
        if hour >= end {
            return None;
        }
        let seconds = (hour + HOUR).min(end) - hour.max(start);
        let item = (hour, seconds);
        hour += HOUR;
        Some(item)
    })
}

/// The nearest-rank percentile `p` (1 to 100) of sorted values; `None` when there are none.
pub fn percentile(sorted: &[i128], p: usize) -> Option<i128> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// Used ÷ allocated, in millionths (1 000 000 is all of it), rounded down;
/// `None` with nothing allocated.
pub fn utilisation(used: i128, allocated: i128) -> Option<i128> {
    (allocated > 0).then(|| used.max(0).saturating_mul(1_000_000) / allocated)
}

/// The margin a right-sized allocation keeps above the 95th percentile of use.
pub const RIGHT_SIZE_MARGIN_PERCENT: i128 = 20;

/// The allocation that fits the use: the 95th percentile of use plus the
/// margin, rounded up to a step a person would write (10m of CPU, 1Mi of
/// memory or storage, one unit of anything else).
pub fn right_size(resource: &str, p95_used: i128) -> i128 {
    let step = if resource.ends_with(".cpu") {
        10_000_000
    } else if resource.ends_with(".memory") || resource.ends_with("storage") {
        (1 << 20) * 1_000_000_000
    } else {
        1_000_000_000
    };
    let wanted = ceil_div(p95_used.max(0) * (100 + RIGHT_SIZE_MARGIN_PERCENT), 100);
    ceil_div(wanted, step) * step
}

/// `a / b` rounded up, for `a >= 0` and `b > 0`.
fn ceil_div(a: i128, b: i128) -> i128 {
    (a + b - 1) / b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::price::format_micros;

    const CORE: i128 = 1_000_000_000;
    const H: i64 = 3600;

    fn price(resource: &str, cluster: Option<&str>, p: &str, from: i64) -> PriceRow {
        PriceRow {
            resource: resource.into(),
            cluster: cluster.map(String::from),
            price: Price::parse(p).unwrap(),
            from,
        }
    }

    fn cpu(cores: i128) -> Amounts {
        vec![("requests.cpu".into(), cores * CORE)]
    }

    #[test]
    fn a_price_change_splits_the_time_it_falls_in() {
        let book = PriceBook::new([
            price("requests.cpu", None, "0.04", 0),
            price("requests.cpu", None, "0.10", 2 * H),
        ]);
        let mut ledger = Ledger::new(0, 4 * H, book);
        // 2 cores for 4 h: 2 h at 0.04, 2 h at 0.10.
        ledger
            .book("acme", "local", 0, 4 * H, &cpu(2), &cpu(1))
            .unwrap();
        let lines = ledger.into_lines();
        let line = &lines[&("acme".into(), "requests.cpu".into())];
        assert_eq!(format_micros(line.allocated.micros().unwrap()), "8.000000");
        assert_eq!(
            format_micros(line.allocated_cost.micros().unwrap()),
            "0.560000"
        );
        assert_eq!(format_micros(line.used_cost.micros().unwrap()), "0.280000");
    }

    #[test]
    fn a_clusters_own_price_wins_once_it_starts() {
        let book = PriceBook::new([
            price("requests.cpu", None, "1", 0),
            price("requests.cpu", Some("edge"), "3", H),
        ]);
        assert_eq!(book.at("requests.cpu", "edge", 0), 1_000_000);
        assert_eq!(book.at("requests.cpu", "edge", H), 3_000_000);
        assert_eq!(book.at("requests.cpu", "local", H), 1_000_000);
        assert_eq!(book.at("requests.memory", "local", H), 0);
    }

    #[test]
    fn time_outside_the_period_is_not_booked() {
        let book = PriceBook::new([price("requests.cpu", None, "1", -10 * H)]);
        let mut ledger = Ledger::new(H, 2 * H, book);
        ledger
            .book("a", "local", 0, 3 * H, &cpu(1), &vec![])
            .unwrap();
        let lines = ledger.into_lines();
        let line = &lines[&("a".into(), "requests.cpu".into())];
        assert_eq!(line.allocated_cost.micros().unwrap(), 1_000_000);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<i128> = (1..=20).collect();
        assert_eq!(percentile(&v, 50), Some(10));
        assert_eq!(percentile(&v, 95), Some(19));
        assert_eq!(percentile(&[7], 95), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn right_sizing_keeps_a_margin_and_rounds_up_to_a_step() {
        // 95th percentile 500m: 600m.
        assert_eq!(right_size("requests.cpu", 500_000_000), 600_000_000);
        // 333m * 1.2 = 399.6m: 400m.
        assert_eq!(right_size("requests.cpu", 333_000_000), 400_000_000);
        assert_eq!(right_size("requests.memory", 0), 0);
        assert_eq!(utilisation(1, 4), Some(250_000));
        assert_eq!(utilisation(1, 0), None);
    }

    #[test]
    fn a_span_is_cut_at_the_hours() {
        assert_eq!(
            hours(3000, 7300).collect::<Vec<_>>(),
            vec![(0, 600), (3600, 3600), (7200, 100)]
        );
        assert_eq!(hours(3600, 3600).count(), 0);
        assert_eq!(
            (floor_hour(-1), ceil_hour(1), ceil_hour(3600)),
            (-3600, 3600, 3600)
        );
    }

    #[test]
    fn each_sample_stands_until_the_next_and_the_last_until_the_stop() {
        assert_eq!(
            standing(&[0, 10, 30], 100),
            vec![(0, 10), (10, 30), (30, 100)]
        );
        assert_eq!(
            standing(&[0, 10, 30], 20),
            vec![(0, 10), (10, 20), (30, 20)]
        );
    }
}
