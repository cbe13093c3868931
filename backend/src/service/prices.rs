//! Prices with their history: anyone who may read tenants reads them; only
//! platform admins set them, each new price audited beside the one it follows.

use chrono::{DateTime, Datelike, Utc};
use sqlx::{PgConnection, PgPool};

use super::Actor;
use crate::auth::Principal;
use crate::auth::policy::{Action, authorize};
use crate::db;
use crate::domain::FieldError;
use crate::domain::price::{Price, PricedResource};
use crate::domain::showback::{PriceBook, PriceRow};
use crate::error::Error;

/// A stored price, decoded.
#[derive(Debug, Clone)]
pub struct PriceEntry {
    pub resource: PricedResource,
    /// `None`: every cluster without a price of its own.
    pub cluster: Option<String>,
    pub price: Price,
    pub effective_from: DateTime<Utc>,
    pub set_by: String,
    pub set_at: DateTime<Utc>,
}

impl TryFrom<db::prices::PriceRow> for PriceEntry {
    type Error = Error;

    /// A stored row that no longer parses fails the read, never prices at zero.
    fn try_from(row: db::prices::PriceRow) -> Result<Self, Error> {
        let corrupt = |what: String| {
            Error::Corrupt(anyhow::anyhow!(
                "prices row {} holds {what}, which no longer parses",
                row.id
            ))
        };
        let resource = PricedResource::parse(&row.resource)
            .map_err(|_| corrupt(format!("the resource \"{}\"", row.resource)))?;
        let price = Price::from_micros(row.micros)
            .map_err(|_| corrupt(format!("the amount {}", row.micros)))?;
        Ok(Self {
            resource,
            cluster: row.cluster,
            price,
            effective_from: row.effective_from,
            set_by: row.set_by,
            set_at: row.set_at,
        })
    }
}

impl PriceEntry {
    fn row(&self) -> PriceRow {
        PriceRow {
            resource: self.resource.name.clone(),
            cluster: self.cluster.clone(),
            price: self.price,
            from: self.effective_from.timestamp(),
        }
    }

    fn audit_json(&self) -> serde_json::Value {
        serde_json::json!({
            "resource": self.resource.name,
            "cluster": self.cluster,
            "price": self.price.to_string(),
            "per": self.resource.per(),
            "effective_from": self.effective_from,
        })
    }
}

/// Every price ever set, oldest first within a resource and cluster.
pub async fn list(conn: &mut PgConnection, who: &Principal) -> Result<Vec<PriceEntry>, Error> {
    authorize(who, Action::ReadTenants)?;
    all(conn).await
}

async fn all(conn: &mut PgConnection) -> Result<Vec<PriceEntry>, Error> {
    db::prices::list(conn)
        .await?
        .into_iter()
        .map(PriceEntry::try_from)
        .collect()
}

/// The prices that can apply to a period ending at `to`, for costing.
pub async fn book_until(conn: &mut PgConnection, to: DateTime<Utc>) -> Result<PriceBook, Error> {
    let entries: Vec<PriceEntry> = db::prices::list_started_before(conn, to)
        .await?
        .into_iter()
        .map(PriceEntry::try_from)
        .collect::<Result<_, _>>()?;
    Ok(PriceBook::new(entries.iter().map(PriceEntry::row)))
}

/// A price as asked for, before its rules are checked.
#[derive(Debug, Clone)]
pub struct NewPrice {
    pub resource: String,
    pub cluster: Option<String>,
    pub price: String,
    /// `None`: from now on.
    pub effective_from: Option<DateTime<Utc>>,
}

/// Adds prices (platform admins), all or none; each is audited as
/// `price.set` with the price it follows in its scope. Answers every price.
pub async fn set(
    db: &PgPool,
    who: &Principal,
    actor: &Actor,
    clusters: &[&str],
    prices: &[NewPrice],
) -> Result<Vec<PriceEntry>, Error> {
    authorize(who, Action::SetPrices)?;
    if prices.is_empty() {
        return Err(Error::invalid("prices", "name at least one price"));
    }
    let now = Utc::now();
    let mut errors = Vec::new();
    let mut parsed = Vec::new();
    for (i, new) in prices.iter().enumerate() {
        let field = format!("prices[{i}]");
        let resource = PricedResource::parse(&new.resource)
            .map_err(|rule| errors.push(FieldError::new(format!("{field}.resource"), rule)))
            .ok();
        let price = Price::parse(&new.price)
            .map_err(|rule| errors.push(FieldError::new(format!("{field}.price"), rule)))
            .ok();
        if let Some(cluster) = &new.cluster
            && !clusters.contains(&cluster.as_str())
        {
            errors.push(FieldError::new(
                format!("{field}.cluster"),
                format!(
                    "must be one of the configured clusters ({}), or left out for every cluster",
                    clusters.join(", ")
                ),
            ));
        }
        if let Some(from) = new.effective_from
            && !(1970..=9999).contains(&from.year())
        {
            errors.push(FieldError::new(
                format!("{field}.effective_from"),
                "must lie between the years 1970 and 9999",
            ));
        }
        if let (Some(resource), Some(price)) = (resource, price) {
            parsed.push((
                field,
                resource,
                price,
                new.effective_from.unwrap_or(now),
                new,
            ));
        }
    }
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let mut tx = db.begin().await?;
    for (field, resource, price, from, new) in parsed {
        let before = all(&mut tx)
            .await?
            .into_iter()
            .rev()
            .find(|e| {
                e.resource == resource && e.cluster == new.cluster && e.effective_from <= from
            })
            .map(|e| e.audit_json());
        let row = db::prices::insert(
            &mut tx,
            &resource.name,
            new.cluster.as_deref(),
            price.micros(),
            from,
            &actor.name,
            &field,
        )
        .await?;
        let after = PriceEntry::try_from(row)?.audit_json();
        db::audit::record(
            &mut tx,
            db::audit::NewEvent {
                actor: &actor.name,
                action: "price.set",
                tenant: None,
                before: before.as_ref(),
                after: Some(&after),
                request_id: actor.request_id.as_deref(),
            },
        )
        .await?;
    }
    let entries = all(&mut tx).await?;
    tx.commit().await?;
    Ok(entries)
}
