//! The fleet page for platform admins (`/admin/fleet`), and the month's
//! showback report as CSV (`/admin/fleet.csv`).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;

use super::tenant::RequestRow;
use super::{Nav, PageError, Viewer, render};
use crate::error::Error;
use crate::service::fleet::{self, ClusterLoad};
use crate::state::AppState;

/// A bar of a chart: its label, the number it stands for in text, and its
/// length in percent of the longest a bar can be.
pub struct Bar {
    pub label: String,
    pub value: String,
    pub percent: i128,
}

pub struct ClusterRow {
    pub name: String,
    pub namespaces: usize,
    pub cpu: String,
    pub memory: String,
    pub bars: Vec<Bar>,
}

pub struct FailingRow {
    pub slug: String,
    pub cluster: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "fleet.html")]
struct FleetPage {
    nav: Nav,
    month: String,
    allocated_cost: String,
    used_cost: String,
    clusters: Vec<ClusterRow>,
    top_cost: Vec<Bar>,
    top_waste: Vec<Bar>,
    failing: Vec<FailingRow>,
    pending: Vec<RequestRow>,
}

#[derive(Deserialize, Default)]
pub struct FleetQuery {
    month: Option<String>,
}

/// Bars scaled so the largest value spans the chart.
fn bars(items: &[(String, i128)], show: impl Fn(i128) -> String) -> Vec<Bar> {
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    items
        .iter()
        .map(|(label, v)| Bar {
            label: label.clone(),
            value: show(*v),
            percent: (*v).max(0) * 100 / max,
        })
        .collect()
}

fn cluster_row(c: &ClusterLoad, max_cpu: i128) -> ClusterRow {
    let q = ClusterLoad::quantity;
    let scale = |v: i128| (v.max(0) * 100 / max_cpu.max(1)).min(100);
    ClusterRow {
        name: c.name.clone(),
        namespaces: c.namespaces,
        cpu: format!(
            "{} allocated, {} used",
            q(c.cpu_allocated, false),
            q(c.cpu_used, false)
        ),
        memory: format!(
            "{} allocated, {} used",
            q(c.memory_allocated, true),
            q(c.memory_used, true)
        ),
        bars: vec![
            Bar {
                label: "CPU allocated".into(),
                value: q(c.cpu_allocated, false).to_string(),
                percent: scale(c.cpu_allocated),
            },
            Bar {
                label: "CPU used".into(),
                value: q(c.cpu_used, false).to_string(),
                percent: scale(c.cpu_used),
            },
        ],
    }
}

fn month(q: &FleetQuery) -> Result<(String, crate::service::showback::Period), Error> {
    fleet::month(q.month.as_deref(), Utc::now()).map_err(|e| Error::Invalid(vec![e]))
}

pub async fn page(
    State(app): State<AppState>,
    viewer: Viewer,
    Query(q): Query<FleetQuery>,
) -> Result<Response, PageError> {
    let (month, period) = month(&q)?;
    let mut conn = app.db.acquire().await?;
    let fleet = fleet::overview(
        &mut conn,
        &viewer.principal,
        &app.config.cluster_names(),
        period,
    )
    .await?;
    let currency = app.config.currency;
    let show = |micros| currency.show(micros);
    let max_cpu = fleet
        .clusters
        .iter()
        .map(|c| c.cpu_allocated)
        .max()
        .unwrap_or(0);
    render(&FleetPage {
        nav: viewer.nav("admin", None),
        month,
        allocated_cost: show(fleet.report.allocated_cost),
        used_cost: show(fleet.report.used_cost),
        clusters: fleet
            .clusters
            .iter()
            .map(|c| cluster_row(c, max_cpu))
            .collect(),
        top_cost: bars(&fleet.top_cost, show),
        top_waste: bars(&fleet.top_waste, show),
        failing: fleet
            .failing
            .into_iter()
            .map(|f| FailingRow {
                slug: f.slug,
                cluster: f.cluster,
                message: f.message.unwrap_or_default(),
            })
            .collect(),
        pending: fleet
            .pending
            .into_iter()
            .map(RequestRow::from_row)
            .collect(),
    })
}

/// The month's report by tenant, as the API's CSV.
pub async fn csv(
    State(app): State<AppState>,
    viewer: Viewer,
    Query(q): Query<FleetQuery>,
) -> Result<Response, PageError> {
    let (month, period) = month(&q)?;
    crate::auth::policy::authorize(&viewer.principal, crate::auth::policy::Action::ReadClusters)?;
    let mut conn = app.db.acquire().await?;
    let report = crate::service::showback::report(
        &mut conn,
        &viewer.principal,
        period,
        crate::service::showback::GroupBy::Tenant,
        None,
    )
    .await?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "text/csv; charset=utf-8; header=present".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"showback-{month}.csv\""),
            ),
        ],
        report.to_csv(app.config.currency),
    )
        .into_response())
}
