//! The catalog of platform APIs: platform admins publish a namespaced
//! resource of one of the cluster's custom API groups to every tenant or to
//! a list of tenants; a tenant's policy may narrow what it gets. Each change
//! is audited and queues a check of every tenant it touches, whose
//! namespaces then carry the new list for the admission policy.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::Actor;
use crate::auth::Principal;
use crate::auth::policy::{Action, authorize};
use crate::cluster::{Clusters, resource_scope};
use crate::db::{self, platform_apis::PlatformApiRow};
use crate::domain::{FieldError, PlatformApi};
use crate::error::Error;

/// How long publishing waits for each cluster's discovery.
const ASK_FOR: Duration = Duration::from_secs(5);

/// One published API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub api: PlatformApi,
    pub description: String,
    /// `None`: every tenant; otherwise these, by slug.
    pub tenants: Option<Vec<String>>,
    pub published_by: String,
    pub published_at: DateTime<Utc>,
}

impl Published {
    fn from_row(row: PlatformApiRow) -> Result<Self, Error> {
        let name = format!("{}.{}", row.resource, row.api_group);
        let api = PlatformApi::parse(&name).map_err(|e| {
            Error::Corrupt(anyhow::anyhow!(
                "the platform_apis row of {name} no longer parses: {e}"
            ))
        })?;
        Ok(Self {
            api,
            description: row.description,
            tenants: (!row.all_tenants).then_some(row.tenants),
            published_by: row.published_by,
            published_at: row.published_at,
        })
    }

    fn audit_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.api.to_string(),
            "description": self.description,
            "tenants": self.tenants,
        })
    }
}

/// What publishing asks for.
#[derive(Debug, Clone, Default)]
pub struct Publication {
    pub description: String,
    /// `None`: every tenant.
    pub tenants: Option<Vec<String>>,
}

/// Every published API (platform admins).
pub async fn list(conn: &mut PgConnection, who: &Principal) -> Result<Vec<Published>, Error> {
    authorize(who, Action::PublishPlatformApis)?;
    all(conn).await
}

async fn all(conn: &mut PgConnection) -> Result<Vec<Published>, Error> {
    db::platform_apis::list(conn)
        .await?
        .into_iter()
        .map(Published::from_row)
        .collect()
}

async fn find(conn: &mut PgConnection, api: &PlatformApi) -> Result<Option<Published>, Error> {
    Ok(all(conn).await?.into_iter().find(|p| &p.api == api))
}

/// Publishes `name` (`<resource>.<group>`), or changes to whom: the
/// resource must be namespaced wherever a cluster serves it, and served by
/// at least one. Answers the published API and, per connected cluster,
/// whether it serves the resource (and if not, why).
pub async fn publish(
    db: &PgPool,
    clusters: &Clusters,
    who: &Principal,
    actor: &Actor,
    name: &str,
    publication: &Publication,
) -> Result<(Published, BTreeMap<String, Option<String>>), Error> {
    authorize(who, Action::PublishPlatformApis)?;
    let api = PlatformApi::parse(name).map_err(|rule| Error::invalid("name", rule))?;
    if publication.description.chars().count() > 500 {
        return Err(Error::invalid(
            "description",
            "must be at most 500 characters",
        ));
    }
    let served = served_by(clusters, &api).await?;
    let mut conn = db.begin().await?;
    let tenant_ids = match &publication.tenants {
        None => None,
        Some(slugs) => {
            let (ids, missing) = db::platform_apis::tenant_ids(&mut conn, slugs).await?;
            if !missing.is_empty() {
                return Err(Error::Invalid(
                    slugs
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| missing.contains(s))
                        .map(|(i, s)| {
                            FieldError::new(
                                format!("tenants[{i}]"),
                                format!("there is no tenant \"{s}\""),
                            )
                        })
                        .collect(),
                ));
            }
            Some(ids)
        }
    };
    let before = find(&mut conn, &api).await?;
    db::platform_apis::upsert(
        &mut conn,
        &api.group,
        &api.resource,
        &publication.description,
        tenant_ids.as_deref(),
        &actor.name,
    )
    .await?;
    let after = find(&mut conn, &api)
        .await?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("a published API vanished")))?;
    record(
        &mut conn,
        actor,
        "platform_api.published",
        before.as_ref(),
        Some(&after),
    )
    .await?;
    touch(&mut conn, before.as_ref(), tenant_ids.as_deref()).await?;
    conn.commit().await?;
    Ok((after, served))
}

/// Withdraws a published API: tenants can no longer create or change its
/// objects (they may still delete them).
pub async fn withdraw(
    db: &PgPool,
    who: &Principal,
    actor: &Actor,
    name: &str,
) -> Result<(), Error> {
    authorize(who, Action::PublishPlatformApis)?;
    let mut conn = db.begin().await?;
    // By its name as published: whatever is not in the catalog is not found.
    let Some(before) = all(&mut conn)
        .await?
        .into_iter()
        .find(|p| p.api.to_string() == name)
    else {
        return Err(Error::NotFound(format!("{name} is not published")));
    };
    let api = before.api.clone();
    db::platform_apis::delete(&mut conn, &api.group, &api.resource).await?;
    record(
        &mut conn,
        actor,
        "platform_api.withdrawn",
        Some(&before),
        None,
    )
    .await?;
    touch(&mut conn, Some(&before), Some(&[])).await?;
    conn.commit().await?;
    Ok(())
}

/// The platform APIs a tenant may use, each with `None` when its cluster
/// serves the resource now, else why not in the cluster's words.
pub async fn served_to(
    conn: &mut PgConnection,
    clusters: &Clusters,
    guardrails: &crate::config::GuardrailConfig,
    tenant_id: i64,
    cluster: &str,
) -> Result<Vec<(PlatformApi, Option<String>)>, Error> {
    let published = db::platform_apis::published_to(conn, tenant_id).await?;
    if published.is_empty() {
        return Ok(Vec::new());
    }
    let (policy, _) = super::policy::effective(conn, guardrails, tenant_id).await?;
    let apis = crate::domain::platform_api::in_force(&published, policy.platform_apis.as_ref());
    let Some(cluster) = clusters.get(cluster) else {
        let why = format!("the tenant's cluster \"{cluster}\" is not connected to this portal");
        return Ok(apis
            .into_iter()
            .map(|api| (api, Some(why.clone())))
            .collect());
    };
    let answers = futures::future::join_all(apis.into_iter().map(|api| async move {
        let answer =
            tokio::time::timeout(ASK_FOR, resource_scope(cluster, &api.group, &api.resource)).await;
        let why_not = why_not(&cluster.name, &api, answer);
        (api, why_not)
    }))
    .await;
    Ok(answers)
}

/// Why a cluster's discovery answer means it does not serve `api` as a
/// namespaced resource; `None` when it does.
fn why_not(
    cluster: &str,
    api: &PlatformApi,
    answer: Result<Result<Option<bool>, String>, tokio::time::error::Elapsed>,
) -> Option<String> {
    match answer {
        Ok(Ok(Some(true))) => None,
        Ok(Ok(Some(false))) => Some(format!(
            "the cluster \"{cluster}\" serves {api} cluster-scoped; only namespaced resources can be published"
        )),
        Ok(Ok(None)) => Some(format!(
            "the cluster \"{cluster}\" does not serve {api}: install its CustomResourceDefinition (or API service) there"
        )),
        Ok(Err(e)) => Some(format!(
            "the cluster \"{cluster}\"'s discovery did not answer: {e}"
        )),
        Err(_) => Some(format!(
            "the cluster \"{cluster}\"'s discovery did not answer within {} s",
            ASK_FOR.as_secs()
        )),
    }
}

/// Per connected cluster, `None` when it serves the resource namespaced,
/// else why not; refuses a resource that is cluster-scoped anywhere, or
/// that no cluster serves.
async fn served_by(
    clusters: &Clusters,
    api: &PlatformApi,
) -> Result<BTreeMap<String, Option<String>>, Error> {
    let answers = futures::future::join_all(clusters.iter().map(|cluster| async move {
        let answer =
            tokio::time::timeout(ASK_FOR, resource_scope(cluster, &api.group, &api.resource)).await;
        (cluster.name.clone(), answer)
    }))
    .await;
    let mut served = BTreeMap::new();
    for (cluster, answer) in answers {
        if let Ok(Ok(Some(false))) = answer {
            return Err(Error::invalid(
                "name",
                format!(
                    "{api} is cluster-scoped in the cluster \"{cluster}\"; only namespaced resources can be published to tenants"
                ),
            ));
        }
        let why_not = why_not(&cluster, api, answer);
        served.insert(cluster, why_not);
    }
    if !served.is_empty() && served.values().all(Option::is_some) {
        let reasons: Vec<&str> = served.values().flatten().map(String::as_str).collect();
        return Err(Error::invalid(
            "name",
            format!("no connected cluster serves {api}: {}", reasons.join("; ")),
        ));
    }
    Ok(served)
}

async fn record(
    conn: &mut PgConnection,
    actor: &Actor,
    action: &str,
    before: Option<&Published>,
    after: Option<&Published>,
) -> Result<(), Error> {
    db::audit::record(
        conn,
        db::audit::NewEvent {
            actor: &actor.name,
            action,
            tenant: None,
            before: before.map(Published::audit_json).as_ref(),
            after: after.map(Published::audit_json).as_ref(),
            request_id: actor.request_id.as_deref(),
        },
    )
    .await
}

/// Queues a check of every tenant whose list changes: all of them when the
/// API was or is published to all, else those it was and is published to.
async fn touch(
    conn: &mut PgConnection,
    before: Option<&Published>,
    now: Option<&[i64]>,
) -> Result<(), Error> {
    let was_for_all = before.is_some_and(|b| b.tenants.is_none());
    match now {
        Some(ids) if !was_for_all => {
            let mut touched = ids.to_vec();
            if let Some(slugs) = before.and_then(|b| b.tenants.as_ref()) {
                touched.extend(db::platform_apis::tenant_ids(conn, slugs).await?.0);
            }
            db::outbox::enqueue_checks(conn, Some(&touched)).await?;
        }
        _ => {
            db::outbox::enqueue_checks(conn, None).await?;
        }
    }
    Ok(())
}
