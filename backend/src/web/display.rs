//! Numbers as pages show them: bars, time left, usage lines.

use std::collections::BTreeMap;

use crate::domain::{Quantity, QuotaResource};

/// One used-of-limit bar; the numbers are in text beside it too.
pub struct Bar {
    pub resource: String,
    pub used: String,
    pub limit: String,
    /// Of 96 pixels.
    pub width: u32,
    pub colour: &'static str,
}

pub fn bar(resource: &str, used: Option<&str>, limit: &str) -> Bar {
    let parse = |s: &str| s.parse::<Quantity>().ok().map(|q| q.approx_f64());
    let used_value = used.and_then(parse).unwrap_or(0.0);
    let limit_value = parse(limit).unwrap_or(0.0);
    let share = if limit_value > 0.0 {
        (used_value / limit_value).clamp(0.0, 1.0)
    } else if used_value > 0.0 {
        1.0
    } else {
        0.0
    };
    Bar {
        resource: resource.to_string(),
        used: used.unwrap_or("0").to_string(),
        limit: limit.to_string(),
        width: (share * 96.0).round() as u32,
        colour: if share >= 0.9 {
            "#b3261e"
        } else if share >= 0.7 {
            "#9a6200"
        } else {
            "#2952cc"
        },
    }
}

/// Bars for each allocated resource of a namespace.
pub fn bars(allocations: &BTreeMap<String, String>, usage: &serde_json::Value) -> Vec<Bar> {
    allocations
        .iter()
        .filter(|(resource, _)| QuotaResource::parse(resource).is_ok_and(|r| !r.is_tenant_level()))
        .map(|(resource, limit)| {
            bar(
                resource,
                usage.get(resource).and_then(|v| v.as_str()),
                limit,
            )
        })
        .collect()
}

/// "3 h 20 min", "45 s": what is left until `at`.
pub fn time_left(at: Option<chrono::DateTime<chrono::Utc>>) -> Option<String> {
    let left = (at? - chrono::Utc::now()).num_seconds().max(0);
    Some(match left {
        s if s >= 86_400 => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    })
}

pub fn when(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A usage line: points for a 300×100 SVG box, the latest point (marked with
/// a dot), the peak, and the sample count. One sample draws a level line.
pub struct Chart {
    pub resource: String,
    pub points: String,
    pub last: (String, String),
    pub peak: String,
    pub samples: usize,
}

/// Charts from (time, total used by resource) samples, oldest first.
pub fn charts(samples: &[BTreeMap<String, Quantity>]) -> Vec<Chart> {
    let resources: std::collections::BTreeSet<&String> =
        samples.iter().flat_map(|s| s.keys()).collect();
    resources
        .into_iter()
        .map(|resource| {
            let values: Vec<(f64, String)> = samples
                .iter()
                .map(|s| {
                    s.get(resource)
                        .map_or((0.0, "0".to_string()), |q| (q.approx_f64(), q.to_string()))
                })
                .collect();
            let (peak_value, peak) =
                values
                    .iter()
                    .cloned()
                    .fold(
                        (0.0, "0".to_string()),
                        |best, v| if v.0 > best.0 { v } else { best },
                    );
            let step = if values.len() > 1 {
                300.0 / (values.len() - 1) as f64
            } else {
                0.0
            };
            let mut xy: Vec<(f64, f64)> = values
                .iter()
                .enumerate()
                .map(|(i, (v, _))| {
                    let y = if peak_value > 0.0 {
                        100.0 - v / peak_value * 95.0
                    } else {
                        100.0
                    };
                    (i as f64 * step, y)
                })
                .collect();
            if let [(_, y)] = xy[..] {
                xy.push((300.0, y));
            }
            let (x, y) = xy.last().copied().unwrap_or((300.0, 100.0));
            let points = xy
                .iter()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect::<Vec<_>>()
                .join(" ");
            Chart {
                resource: resource.clone(),
                points,
                last: (format!("{x:.1}"), format!("{y:.1}")),
                peak,
                samples: values.len(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_show_the_share_used_and_turn_red_near_the_limit() {
        let half = bar("requests.cpu", Some("500m"), "1");
        assert_eq!((half.width, half.colour), (48, "#2952cc"));
        assert_eq!(bar("pods", Some("10"), "10").colour, "#b3261e");
        assert_eq!(bar("pods", None, "0").width, 0);
    }

    #[test]
    fn one_sample_draws_a_level_line_ending_in_a_dot() {
        let sample = BTreeMap::from([("requests.cpu".to_string(), "500m".parse().unwrap())]);
        let chart = charts(&[sample]).remove(0);
        assert_eq!(chart.points, "0.0,5.0 300.0,5.0");
        assert_eq!(chart.last, ("300.0".to_string(), "5.0".to_string()));
        assert_eq!((chart.peak.as_str(), chart.samples), ("500m", 1));
    }

    #[test]
    fn time_left_reads_like_a_person_would_say_it() {
        let now = chrono::Utc::now();
        assert_eq!(
            time_left(Some(now + chrono::TimeDelta::seconds(7_300))).unwrap(),
            "2 h 1 min"
        );
        assert_eq!(
            time_left(Some(now - chrono::TimeDelta::seconds(5))).unwrap(),
            "0 s"
        );
    }
}
