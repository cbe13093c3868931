//! Showback from rollups: each namespace's allocation and use integrated
//! per hour once the hour is over (the catch-up), and a report that prices
//! those integrals by epoch (the stretches between instants where a price
//! starts), reading samples only for what no rollup covers: the partial
//! hours at the period's ends, the hours not sealed yet, and an hour a price
//! starts within. The integrals are the raw method's own sums of
//! amount × seconds, so a report is equal to the one computed from samples
//! (`tests/showback_rollups.rs` compares them).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::showback::{GroupBy, Parsed, Period};
use crate::db::showback::ScopeRow;
use crate::db::showback_rollups::{self as db, DayRows, Pending, RollupQuery, WindowSample};
use crate::domain::price::Overflow;
use crate::domain::showback::{HOUR, Ledger, PriceBook, ceil_hour, floor_hour, hours, standing};
use crate::error::Error;

const DAY: i64 = 86_400;

/// How many namespaces one catch-up transaction rolls up.
const CATCH_UP_BATCH: i64 = 200;

fn overflow(_: Overflow) -> Error {
    Error::Internal(anyhow::anyhow!("a showback amount overflowed"))
}

fn time(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).unwrap_or_default()
}

/// Rolls up every hour that is over in every namespace: each batch in a
/// transaction that holds the samples still, reads the marks after taking
/// that lock, and advances the marks with the hours it adds, so a batch is
/// added once or not at all, whichever replica runs it and wherever it
/// stops. Answers how many namespaces advanced.
pub async fn catch_up(db: &PgPool) -> Result<u64, Error> {
    let mut after = 0;
    let mut advanced = 0;
    loop {
        let mut tx = db.begin().await?;
        db::lock_samples(&mut tx).await?;
        let pending = db::pending(&mut tx, after, CATCH_UP_BATCH).await?;
        let Some(last) = pending.last() else {
            tx.commit().await?;
            return Ok(advanced);
        };
        after = last.namespace_id;
        roll_up(&mut tx, &pending).await?;
        tx.commit().await?;
        advanced += pending.len() as u64;
    }
}

/// The hours of each namespace from its sealed hour to its latest sample's.
async fn roll_up(conn: &mut PgConnection, pending: &[Pending]) -> Result<(), Error> {
    let ids: Vec<i64> = pending.iter().map(|p| p.namespace_id).collect();
    let froms: Vec<DateTime<Utc>> = pending.iter().map(|p| time(p.sealed_until)).collect();
    let tos: Vec<DateTime<Utc>> = pending.iter().map(|p| time(p.seal_to)).collect();
    let samples = db::window_samples(conn, &ids, &froms, &tos).await?;
    type Hours = ([i128; 24], [i128; 24]);
    let mut days: BTreeMap<(i64, i64, String), Hours> = BTreeMap::new();
    for (p, mine) in pending.iter().zip(by_window(pending.len(), &samples)) {
        let place = format!("{}/{}", p.slug, p.namespace);
        let times: Vec<i64> = mine.iter().map(|s| s.sampled_at.timestamp()).collect();
        let mut parsed = Parsed::default();
        for (sample, (start, end)) in mine.iter().zip(standing(&times, p.seal_to)) {
            let start = start.max(p.sealed_until);
            if start >= end {
                continue;
            }
            let (allocated, used) =
                parsed.amounts(&place, sample.sampled_at, &sample.allocated, &sample.used)?;
            for (kind, amounts) in [(0, allocated), (1, used)] {
                for (resource, nanos) in amounts.iter().filter(|(_, n)| *n > 0) {
                    for (hour, seconds) in hours(start, end) {
                        let day = hour.div_euclid(DAY) * DAY;
                        let slot = days
                            .entry((p.namespace_id, day, resource.clone()))
                            .or_insert(([0; 24], [0; 24]));
                        let slot = if kind == 0 { &mut slot.0 } else { &mut slot.1 };
                        let i = ((hour - day) / HOUR) as usize;
                        slot[i] = nanos
                            .checked_mul(i128::from(seconds))
                            .and_then(|n| n.checked_add(slot[i]))
                            .ok_or_else(|| overflow(Overflow))?;
                    }
                }
            }
        }
    }
    let mut rows = DayRows::default();
    // The running sums: before the first hour, then after each.
    let literal = |h: &[i128; 24]| {
        let mut sum = 0;
        let mut cells = vec!["0".to_string()];
        for hour in h {
            sum += hour;
            cells.push(sum.to_string());
        }
        format!("{{{}}}", cells.join(","))
    };
    for ((id, day, resource), (allocated, used)) in days {
        rows.namespace_ids.push(id);
        rows.days.push(day);
        rows.resources.push(resource);
        rows.allocated
            .push(allocated.iter().sum::<i128>().to_string());
        rows.used.push(used.iter().sum::<i128>().to_string());
        rows.allocated_hours.push(literal(&allocated));
        rows.used_hours.push(literal(&used));
    }
    db::add_days(conn, &rows).await?;
    let until: Vec<i64> = pending.iter().map(|p| p.seal_to).collect();
    db::seal(conn, &ids, &until).await
}

/// The samples of each of `count` windows (numbered from 1), from samples
/// in the order [`db::window_samples`] answers.
fn by_window(count: usize, samples: &[WindowSample]) -> impl Iterator<Item = &[WindowSample]> {
    let mut rest = samples;
    (1..=count as i64).map(move |window| {
        let n = rest.iter().take_while(|s| s.window == window).count();
        let (mine, later) = rest.split_at(n);
        rest = later;
        mine
    })
}

/// Where prices may change, as the rollups are read: epochs between
/// hour-aligned boundaries (every price start, an hour a price starts within
/// taken whole), each day of the period cut into runs of hours within
/// one epoch, without the hours a price starts within, and the spans of
/// consecutive days that are one run each, of one epoch.
#[derive(Debug, Clone)]
pub struct Plan {
    boundaries: Vec<i64>,
    broken_hours: Vec<i64>,
    days: Vec<i64>,
    firsts: Vec<i32>,
    lasts: Vec<i32>,
    epochs: Vec<i32>,
    /// Whole days `[from, to)` in one epoch.
    spans: Vec<(i64, i64, i32)>,
}

impl Plan {
    pub fn new(prices: &PriceBook, period: Period) -> Self {
        let (from, to) = (period.from.timestamp(), period.to.timestamp());
        let starts = prices.starts();
        let mut boundaries = vec![floor_hour(from)];
        boundaries.extend(starts.iter().flat_map(|p| [floor_hour(*p), ceil_hour(*p)]));
        boundaries.sort_unstable();
        boundaries.dedup();
        let broken_hours: Vec<i64> = starts
            .iter()
            .filter(|p| p.rem_euclid(HOUR) != 0)
            .map(|p| floor_hour(*p))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut plan = Self {
            boundaries,
            broken_hours,
            days: Vec::new(),
            firsts: Vec::new(),
            lasts: Vec::new(),
            epochs: Vec::new(),
            spans: Vec::new(),
        };
        let mut day = from.div_euclid(DAY) * DAY;
        while day < to {
            let inside = |t: &&i64| (day + 1..day + DAY).contains(*t);
            let mut cuts: BTreeSet<i64> = [day, day + DAY].into();
            cuts.extend(plan.boundaries.iter().filter(inside));
            let cuts: Vec<i64> = cuts.into_iter().collect();
            for run in cuts.windows(2) {
                let (first, last) = (run[0], run[1]);
                if plan.broken_hours.contains(&first) {
                    continue;
                }
                plan.days.push(day);
                plan.firsts.push(((first - day) / HOUR) as i32);
                plan.lasts.push(((last - day) / HOUR) as i32);
                plan.epochs.push(plan.epoch(first));
            }
            day += DAY;
        }
        for i in 0..plan.days.len() {
            if (plan.firsts[i], plan.lasts[i]) != (0, 24) {
                continue;
            }
            let (day, epoch) = (plan.days[i], plan.epochs[i]);
            match plan.spans.last_mut() {
                Some((_, to, e)) if *to == day && *e == epoch => *to = day + DAY,
                _ => plan.spans.push((day, day + DAY, epoch)),
            }
        }
        plan
    }

    /// The epoch `t` lies in: how many boundaries are at or before it.
    fn epoch(&self, t: i64) -> i32 {
        self.boundaries.partition_point(|b| *b <= t) as i32
    }

    /// An instant inside epoch `k`: every price in force then is in force
    /// throughout the epoch.
    fn instant(&self, epoch: i32) -> i64 {
        match usize::try_from(epoch) {
            Ok(k) if k > 0 => self.boundaries[k - 1],
            _ => self.boundaries[0] - 1,
        }
    }
}

/// What one batch of namespaces (in id order) books: rollups for the
/// sealed whole hours of the period, samples for the rest. Read by
/// [`fetch_batch`] and booked by [`Fetched::book`], apart, so that one batch
/// is booked while the next is read.
#[derive(Debug)]
pub(super) struct Fetched {
    batch: Vec<ScopeRow>,
    /// The buckets the rollups are summed into: a group and a cluster.
    buckets: Vec<(String, String)>,
    rolled: Vec<db::Rolled>,
    /// Windows read from samples: the namespace (index in batch) and [a, b).
    windows: Vec<(usize, i64, i64)>,
    samples: Vec<WindowSample>,
}

/// Reads one batch of namespaces, naming in `tenants` the tenants of each
/// group that had samples before the period's end.
pub(super) async fn fetch_batch(
    conn: &mut PgConnection,
    batch: &[ScopeRow],
    plan: &Plan,
    period: Period,
    end: DateTime<Utc>,
    group_by: &GroupBy,
    tenants: &mut BTreeMap<String, BTreeSet<String>>,
) -> Result<Fetched, Error> {
    let ids: Vec<i64> = batch.iter().map(|n| n.namespace_id).collect();
    let marks = db::marks(conn, &ids, period.to).await?;
    let from = period.from.timestamp();
    let mut query = RollupQuery::default();
    // The buckets the rollups are summed into: a group and a cluster (the
    // price may be the cluster's own), numbered in the order met.
    let mut buckets: Vec<(String, String)> = Vec::new();
    let mut numbered: HashMap<(String, String), i32> = HashMap::new();
    // Windows read from samples: the namespace (index in batch) and [a, b).
    let mut windows: Vec<(usize, i64, i64)> = Vec::new();
    for (i, (ns, mark)) in batch.iter().zip(&marks).enumerate() {
        if !mark.seen {
            continue;
        }
        let group = group_by.key(ns);
        let stop = ns.deleted_at.map_or(end, |d| d.min(end)).timestamp();
        let a = ceil_hour(from).max(mark.valid_from);
        let b = floor_hour(stop).min(mark.sealed_until);
        if a < b {
            let key = (group.clone(), ns.cluster.clone());
            let bucket = *numbered.entry(key).or_insert_with_key(|key| {
                buckets.push(key.clone());
                buckets.len() as i32 - 1
            });
            // Whole days from the days' integrals, the rest of the hours
            // from the running sums of their days.
            let (first_day, last_day) =
                ((a + DAY - 1).div_euclid(DAY) * DAY, b.div_euclid(DAY) * DAY);
            for (from, to, epoch) in &plan.spans {
                let (from, to) = ((*from).max(first_day), (*to).min(last_day));
                if from < to {
                    query.ids.push(ns.namespace_id);
                    query.froms.push(from);
                    query.tos.push(to);
                    query.buckets.push(bucket);
                    query.epochs.push(*epoch);
                }
            }
            for k in 0..plan.days.len() {
                let day = plan.days[k];
                if day + DAY <= a || day >= b {
                    continue;
                }
                let first = plan.firsts[k].max(((a - day) / HOUR).clamp(0, 24) as i32);
                let last = plan.lasts[k].min(((b - day) / HOUR).clamp(0, 24) as i32);
                if first < last && (first, last) != (0, 24) {
                    query.part_ids.push(ns.namespace_id);
                    query.part_days.push(day);
                    query.part_firsts.push(first);
                    query.part_lasts.push(last);
                    query.part_buckets.push(bucket);
                    query.part_epochs.push(plan.epochs[k]);
                }
            }
            windows.push((i, from, a));
            windows.push((i, b, stop));
            let broken = plan.broken_hours.iter().filter(|h| (a..b).contains(*h));
            windows.extend(broken.map(|h| (i, *h, h + HOUR)));
        } else {
            windows.push((i, from, stop));
        }
        tenants.entry(group).or_default().insert(ns.slug.clone());
    }
    windows.retain(|(_, a, b)| a < b);

    let rolled = if query.ids.is_empty() && query.part_ids.is_empty() {
        Vec::new()
    } else {
        db::rolled(conn, &query).await?
    };
    let mut fetched = Fetched {
        batch: batch.to_vec(),
        buckets,
        rolled,
        windows,
        samples: Vec::new(),
    };
    if fetched.windows.is_empty() {
        return Ok(fetched);
    }
    let windows = &fetched.windows;
    let ids: Vec<i64> = windows
        .iter()
        .map(|(i, _, _)| batch[*i].namespace_id)
        .collect();
    let froms: Vec<DateTime<Utc>> = windows.iter().map(|(_, a, _)| time(*a)).collect();
    let tos: Vec<DateTime<Utc>> = windows.iter().map(|(_, _, b)| time(*b)).collect();
    fetched.samples = db::window_samples(conn, &ids, &froms, &tos).await?;
    Ok(fetched)
}

impl Fetched {
    /// Books what was read into `ledger`.
    pub(super) fn book(
        &self,
        plan: &Plan,
        group_by: &GroupBy,
        ledger: &mut Ledger,
    ) -> Result<(), Error> {
        let integral = |s: &str| {
            s.parse::<i128>().map_err(|e| {
                Error::Internal(anyhow::anyhow!(
                    "a rolled-up integral {s} is not whole: {e}"
                ))
            })
        };
        // Integrals priced at one price add up before they are priced:
        // the sum of exact products is the product of the exact sum.
        for row in &self.rolled {
            let (group, cluster) = &self.buckets[row.bucket as usize];
            ledger
                .book_integral(
                    group,
                    cluster,
                    &row.resource,
                    plan.instant(row.epoch),
                    integral(&row.allocated)?,
                    integral(&row.used)?,
                )
                .map_err(overflow)?;
        }
        let (batch, windows, samples) = (&self.batch, &self.windows, &self.samples);
        // Kept across windows and namespaces: a list is parsed again only when
        // its text differs from the last one's (allocations mostly repeat).
        let mut parsed = Parsed::default();
        for ((i, a, b), mine) in windows.iter().zip(by_window(windows.len(), samples)) {
            let ns = &batch[*i];
            let group = group_by.key(ns);
            let place = format!("{}/{}", ns.slug, ns.namespace);
            let times: Vec<i64> = mine.iter().map(|s| s.sampled_at.timestamp()).collect();
            for (sample, (start, stop)) in mine.iter().zip(standing(&times, *b)) {
                let start = start.max(*a);
                if start >= stop {
                    continue;
                }
                let (allocated, used) =
                    parsed.amounts(&place, sample.sampled_at, &sample.allocated, &sample.used)?;
                ledger
                    .book(&group, &ns.cluster, start, stop, allocated, used)
                    .map_err(overflow)?;
            }
        }
        Ok(())
    }
}
