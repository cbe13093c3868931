//! `GET|PUT /prices`: what resources cost, with the history of every price.
//! Anyone who may read tenants reads them; platform admins add prices.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{ApiJson, RequestId};
use crate::auth::Principal;
use crate::domain::Currency;
use crate::error::Error;
use crate::service::prices::{self, NewPrice, PriceEntry};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, set))
}

/// One price, in force from `effective_from` until the next price of the
/// same resource and cluster starts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PriceView {
    #[schema(example = "requests.cpu")]
    pub resource: String,
    /// The cluster it applies to; `null`: every cluster without a price of its own.
    pub cluster: Option<String>,
    /// A decimal string with six digits after the point.
    #[schema(example = "0.031000")]
    pub price: String,
    /// The ISO 4217 code of the price (`--currency`).
    #[schema(example = "EUR")]
    pub currency: String,
    /// What one price is for: `core-hour`, `GiB-hour`, `GiB-month` (730 hours) or `unit-hour`.
    #[schema(example = "core-hour")]
    pub per: String,
    pub effective_from: DateTime<Utc>,
    pub set_by: String,
    pub set_at: DateTime<Utc>,
}

impl PriceView {
    pub fn new(e: PriceEntry, currency: Currency) -> Self {
        Self {
            currency: currency.to_string(),
            per: e.resource.per(),
            resource: e.resource.name,
            cluster: e.cluster,
            price: e.price.to_string(),
            effective_from: e.effective_from,
            set_by: e.set_by,
            set_at: e.set_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PriceList {
    /// Every price ever set, by resource, cluster (every cluster first) and start.
    pub prices: Vec<PriceView>,
}

/// A new price.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceInput {
    #[schema(example = "requests.cpu")]
    pub resource: String,
    /// A decimal amount of zero or more, with at most six digits after the
    /// point, in the portal's currency (`--currency`; see `currency` in the answer).
    #[schema(example = "0.031")]
    pub price: String,
    /// Only for this cluster; left out, for every cluster without a price of its own.
    #[serde(default)]
    pub cluster: Option<String>,
    /// From when (RFC 3339); left out, from now. A past start reprices that past.
    #[serde(default)]
    pub effective_from: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PricesInput {
    pub prices: Vec<PriceInput>,
}

/// Every price with its history.
#[utoipa::path(get, path = "/prices", tag = "showback",
    responses((status = 200, description = "Every price ever set", body = PriceList)))]
async fn list(State(app): State<AppState>, who: Principal) -> Result<Json<PriceList>, Error> {
    let mut conn = app.db.acquire().await?;
    let prices = prices::list(&mut conn, &who).await?;
    Ok(Json(PriceList {
        prices: prices
            .into_iter()
            .map(|p| PriceView::new(p, app.config.currency))
            .collect(),
    }))
}

/// Add prices (platform admins), all or none. A price is never changed: a
/// new one starts at its own time, and earlier periods keep their prices.
#[utoipa::path(put, path = "/prices", tag = "showback", request_body = PricesInput,
    responses((status = 200, description = "Every price, the new ones included", body = PriceList)))]
async fn set(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    ApiJson(body): ApiJson<PricesInput>,
) -> Result<Json<PriceList>, Error> {
    let new: Vec<NewPrice> = body
        .prices
        .into_iter()
        .map(|p| NewPrice {
            resource: p.resource,
            cluster: p.cluster,
            price: p.price,
            effective_from: p.effective_from,
        })
        .collect();
    let prices = prices::set(
        &app.db,
        &who,
        &request_id.actor(&who),
        &app.config.cluster_names(),
        &new,
    )
    .await?;
    Ok(Json(PriceList {
        prices: prices
            .into_iter()
            .map(|p| PriceView::new(p, app.config.currency))
            .collect(),
    }))
}
