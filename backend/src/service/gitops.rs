//! GitOps credentials per tenant. An owner asks for an Argo CD cluster
//! Secret and/or a Flux kubeconfig Secret; the keeper (one replica at a
//! time) writes them on the management cluster, each pointing at the
//! tenant's own API with a short-lived token of the tenant's automation
//! account, issues a new token when a third of its lifetime is left,
//! repairs Secrets someone changed or removed, and deletes them when the
//! owner says so or the tenant stops being active or goes.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool};

use super::access::load_authorized;
use super::gateway::Holder;
use super::kubeconfig::{PublicEndpoint, tenant_api_url, tenant_view_yaml};
use super::{Actor, Precondition, TenantChange};
use crate::auth::Principal;
use crate::auth::policy::{Action, precheck};
use crate::cluster::Clusters;
use crate::cluster::gitops::{KeptSecrets, Tool, WantedSecret, Written, portal_label};
use crate::config::{GitopsConfig, ServeConfig};
use crate::db;
use crate::error::Error;

/// Where and how this portal keeps GitOps credentials.
#[derive(Debug, Clone)]
pub struct Keeper {
    pub cluster: String,
    pub namespace: String,
    pub token_ttl: Duration,
    /// The portal's public URL: the Secrets point at its tenant API.
    pub public_url: String,
    /// base64 of the CA that signed the portal's certificate, if private.
    pub ca_data: Option<String>,
}

impl Keeper {
    /// The keeper this portal runs; `None` without `--gitops-cluster`.
    pub fn from_config(config: &ServeConfig) -> Option<Self> {
        Some(Self {
            cluster: config.gitops.cluster.clone()?,
            namespace: config.gitops.namespace.clone(),
            token_ttl: config.gitops.token_ttl,
            public_url: config.login.public_url.clone(),
            // validate() has read the file already; a file gone since
            // leaves the Secrets without a CA, which their clients refuse.
            ca_data: config.tls.ca_data().ok().flatten(),
        })
    }

    /// How often the Secrets are checked: often enough that a token is
    /// replaced well before its last third runs out.
    pub fn interval(&self) -> Duration {
        (self.token_ttl / 12).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    fn endpoint(&self) -> PublicEndpoint<'_> {
        PublicEndpoint {
            url: &self.public_url,
            ca_data: self.ca_data.clone(),
        }
    }
}

/// Which GitOps tools a tenant keeps a credential for.
pub use crate::domain::tenant_document::GitopsTools as Tools;

/// The tools a tenant's row asks for; none without a row.
pub(super) fn tools_of(row: Option<&db::gitops::GitopsRow>) -> Tools {
    row.map_or_else(Tools::default, |row| Tools {
        argocd: row.argocd,
        flux: row.flux,
    })
}

fn tool_list(tools: Tools) -> Vec<Tool> {
    [(tools.argocd, Tool::ArgoCd), (tools.flux, Tool::Flux)]
        .into_iter()
        .filter_map(|(on, tool)| on.then_some(tool))
        .collect()
}

/// A tenant's GitOps credentials as its owners see them.
#[derive(Debug, Clone, Serialize)]
pub struct GitopsStatus {
    #[serde(flatten)]
    pub tools: Tools,
    /// Where the Secrets are kept; `None` when this portal keeps none.
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    /// The Secrets' names, one per tool asked for.
    pub secrets: Vec<SecretRef>,
    /// The tenant API the Secrets point at.
    pub server: String,
    pub token_expires_at: Option<DateTime<Utc>>,
    /// Since when the Secrets have said what they should.
    pub kept_at: Option<DateTime<Utc>>,
    /// What the last attempt to keep them failed with.
    pub error: Option<String>,
    pub requested_by: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SecretRef {
    pub tool: &'static str,
    pub name: String,
}

/// The tenant's GitOps credentials; any member may look.
pub async fn status(
    db: &PgPool,
    who: &Principal,
    slug: &str,
    config: &GitopsConfig,
    public_url: &str,
) -> Result<GitopsStatus, Error> {
    precheck(who, Action::ReadTenants)?;
    let mut conn = db.acquire().await?;
    let tenant = load_authorized(&mut conn, who, slug, Action::ReadTenants).await?;
    of_tenant(&mut conn, tenant.id, slug, config, public_url).await
}

/// [`status`] for a caller that has loaded the tenant with its rights.
pub async fn of_tenant(
    conn: &mut PgConnection,
    tenant_id: i64,
    slug: &str,
    config: &GitopsConfig,
    public_url: &str,
) -> Result<GitopsStatus, Error> {
    let row = db::gitops::get(conn, tenant_id).await?;
    Ok(describe(slug, row, config, public_url))
}

fn describe(
    slug: &str,
    row: Option<db::gitops::GitopsRow>,
    config: &GitopsConfig,
    public_url: &str,
) -> GitopsStatus {
    let tools = tools_of(row.as_ref());
    let kept_where = config.cluster.as_ref();
    GitopsStatus {
        tools,
        cluster: kept_where.cloned(),
        namespace: kept_where.map(|_| config.namespace.clone()),
        secrets: tool_list(tools)
            .into_iter()
            .map(|tool| SecretRef {
                tool: tool.label(),
                name: tool.secret_name(slug),
            })
            .collect(),
        server: tenant_api_url(public_url, slug),
        token_expires_at: row.as_ref().and_then(|r| r.token_expires_at),
        kept_at: row.as_ref().and_then(|r| r.kept_at),
        error: row.as_ref().and_then(|r| r.error.clone()),
        requested_by: row.map(|r| r.requested_by),
    }
}

/// Sets which GitOps credentials the tenant keeps (owners; a token with
/// write scope that reaches the tenant). Neither tool: the Secrets go and
/// their tokens are revoked. The same choice again changes nothing; a new
/// one is a new generation of the tenant, so a tenant document read before
/// it (whose ETag is the generation) cannot undo it unseen.
pub async fn set(
    db: &PgPool,
    who: &Principal,
    actor: &Actor,
    slug: &str,
    tools: Tools,
    config: &GitopsConfig,
    public_url: &str,
) -> Result<GitopsStatus, Error> {
    precheck(who, Action::ManageGitops)?;
    let mut change =
        TenantChange::begin(db, who, Action::ManageGitops, slug, &Precondition::None).await?;
    let tenant_id = change.tenant.id;
    let before = db::gitops::get(&mut change.tx, tenant_id).await?;
    let was = tools_of(before.as_ref());
    if let Err(why) = can_keep(config, tools) {
        return Err(Error::conflict(why));
    }
    if was == tools {
        return Ok(describe(slug, before, config, public_url));
    }
    // A tenant on its way out neither gets credentials nor needs them
    // turned off: the keeper removes them once it stops being active.
    change.require_editable()?;
    write_choice(
        &mut change.tx,
        (tenant_id, &change.tenant.slug),
        tools,
        actor,
    )
    .await?;
    let after = db::gitops::get(&mut change.tx, tenant_id).await?;
    change
        .commit_audited(actor, AUDITED_AS, Some(audited(was, tools)))
        .await?;
    Ok(describe(slug, after, config, public_url))
}

/// The audit action of a change of a tenant's GitOps tools.
const AUDITED_AS: &str = "gitops.changed";

fn audited(was: Tools, tools: Tools) -> (serde_json::Value, serde_json::Value) {
    let json = |t: Tools| serde_json::to_value(t).unwrap_or_default();
    (json(was), json(tools))
}

/// Whether this portal can keep `tools`; keeping none it always can.
pub(super) fn can_keep(config: &GitopsConfig, tools: Tools) -> Result<(), &'static str> {
    if tools.any() && config.cluster.is_none() {
        return Err(
            "this portal keeps no GitOps credentials: its operators have not named the cluster that runs Argo CD or Flux (--gitops-cluster)",
        );
    }
    Ok(())
}

/// Writes a tenant's new choice of tools in the caller's transaction, and
/// wakes the keeper, which PostgreSQL does when the transaction commits.
async fn write_choice(
    conn: &mut PgConnection,
    (tenant_id, slug): (i64, &str),
    tools: Tools,
    actor: &Actor,
) -> Result<(), Error> {
    if tools.any() {
        db::gitops::set(conn, tenant_id, tools.argocd, tools.flux, &actor.name).await?;
    } else {
        db::gitops::clear(conn, tenant_id).await?;
    }
    db::gitops::wake_keeper(conn, slug).await
}

/// [`set`]'s writes within a change audited as something else (a tenant
/// document's apply): the choice, the keeper's wake-up, and the audit event
/// `PUT /tenants/{slug}/gitops` would record, so the trail shows it alike.
pub(super) async fn change_within(
    conn: &mut PgConnection,
    (tenant_id, slug): (i64, &str),
    was: Tools,
    tools: Tools,
    actor: &Actor,
) -> Result<(), Error> {
    write_choice(conn, (tenant_id, slug), tools, actor).await?;
    let (before, after) = audited(was, tools);
    db::audit::record(
        conn,
        db::audit::NewEvent {
            actor: &actor.name,
            action: AUDITED_AS,
            tenant: Some((tenant_id, slug)),
            before: Some(&before),
            after: Some(&after),
            request_id: actor.request_id.as_deref(),
        },
    )
    .await
}

pub use crate::db::gitops::WAKE_CHANNEL;

/// What one pass of the keeper did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// False when another replica held the keeper's turn.
    pub ran: bool,
    pub written: Written,
    pub tokens_issued: usize,
    pub failed: usize,
}

/// One pass: every tenant's Secrets made to say what they should, new
/// tokens where a third of the lifetime is left, Secrets nobody wants any
/// more deleted. One replica at a time.
/// The pass works on the one connection that holds the turn, so it never
/// waits for a second while holding the first.
pub async fn keep(db: &PgPool, clusters: &Clusters, keeper: &Keeper) -> Result<Pass, Error> {
    let mut conn = db.acquire().await?;
    if !db::gitops::try_lock(&mut conn).await? {
        return Ok(Pass::default());
    }
    let outcome = keep_locked(&mut conn, clusters, keeper).await;
    if db::gitops::unlock(&mut conn).await.is_err() {
        // A connection back in the pool must not keep the turn.
        let _ = conn.close().await;
    }
    outcome
}

async fn keep_locked(
    conn: &mut PgConnection,
    clusters: &Clusters,
    keeper: &Keeper,
) -> Result<Pass, Error> {
    let mut pass = Pass {
        ran: true,
        ..Pass::default()
    };
    let rows = db::gitops::all(conn).await?;
    let cluster = clusters.get(&keeper.cluster).ok_or_else(|| {
        Error::Unavailable(format!(
            "the GitOps cluster \"{}\" is not connected to this portal",
            keeper.cluster
        ))
    })?;
    let portal = portal_label(&keeper.public_url);
    let mut kept = match KeptSecrets::list(&cluster.client, &keeper.namespace, &portal).await {
        Ok(kept) => kept,
        Err(message) => {
            for row in &rows {
                db::gitops::record_outcome(conn, row.tenant_id, Some(&message)).await?;
            }
            return Err(Error::Unavailable(message));
        }
    };
    let mut wanted: HashSet<(String, Tool)> = HashSet::new();
    for row in &rows {
        let tools = tool_list(Tools {
            argocd: row.argocd,
            flux: row.flux,
        });
        let outcome = if !row.active {
            // Not active: its Secrets go below and its tokens stop now;
            // resuming brings them back with a new token.
            if row.token_expires_at.is_some() {
                db::gitops::revoke_tokens(conn, row.tenant_id).await?;
            }
            Err("the tenant is not active: its GitOps credentials come back when it is".to_string())
        } else if row.namespaces.is_empty() {
            Err("the tenant has no namespaces yet, so there is nothing for a GitOps tool to reach; add one".to_string())
        } else {
            wanted.extend(tools.iter().map(|tool| (row.slug.clone(), *tool)));
            keep_tenant(conn, keeper, &mut kept, row, &tools, &mut pass).await
        };
        let error = outcome.err();
        pass.failed += usize::from(error.is_some());
        // A pass that finds everything as the last one left it writes (and
        // says) nothing.
        if error != row.error || (error.is_none() && !row.kept) {
            if let Some(message) = &error {
                tracing::warn!(tenant = %row.slug, error = %message, "GitOps credentials not kept; the next pass retries");
            }
            db::gitops::record_outcome(conn, row.tenant_id, error.as_deref()).await?;
        }
    }
    kept.remove_unwanted(
        |slug, tool| wanted.contains(&(slug.to_string(), tool)),
        &mut pass.written,
    )
    .await
    .map_err(Error::Unavailable)?;
    Ok(pass)
}

/// Writes the tenant's Secrets, reusing the token they hold while it has
/// more than a third of its lifetime left, else with a new one.
async fn keep_tenant(
    conn: &mut PgConnection,
    keeper: &Keeper,
    kept: &mut KeptSecrets,
    row: &db::gitops::KeptRow,
    tools: &[Tool],
    pass: &mut Pass,
) -> Result<(), String> {
    let current = current_token(keeper, kept, row, tools);
    let (token, expires_at) = match current {
        Some(current) => current,
        None => {
            let issued = issue_token(conn, keeper, row)
                .await
                .map_err(|e| format!("failed to issue a token: {e}"))?;
            pass.tokens_issued += 1;
            issued
        }
    };
    let expires = stamp(expires_at);
    // Each tool's Secret on its own: one in the way stops only itself.
    let mut errors = Vec::new();
    for tool in tools {
        let wanted = render(keeper, row, *tool, &token).map(|data| WantedSecret {
            slug: row.slug.clone(),
            tool: *tool,
            expires_at: expires.clone(),
            data,
        });
        let kept_one = match wanted {
            Ok(wanted) => kept.keep(&wanted, &mut pass.written).await,
            Err(e) => Err(e),
        };
        if let Err(e) = kept_one {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// How an expiry is written on a Secret and compared with the record.
fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The token the tenant's Secrets hold now, if it is the one on record,
/// has more than a third of its lifetime left, and every Secret asked for
/// holds it.
fn current_token(
    keeper: &Keeper,
    kept: &KeptSecrets,
    row: &db::gitops::KeptRow,
    tools: &[Tool],
) -> Option<(String, DateTime<Utc>)> {
    let expires_at = row.token_expires_at?;
    let left = (expires_at - Utc::now()).to_std().ok()?;
    if left < keeper.token_ttl / 3 {
        return None;
    }
    let mut tokens = tools.iter().map(|tool| {
        (kept.expiry(&row.slug, *tool) == Some(stamp(expires_at).as_str()))
            .then(|| {
                kept.data(&row.slug, *tool)
                    .and_then(|data| token_in(*tool, &data))
            })
            .flatten()
    });
    let first = tokens.next()??;
    tokens
        .all(|token| token.as_deref() == Some(first.as_str()))
        .then_some((first, expires_at))
}

/// The bearer token a Secret of ours carries.
fn token_in(tool: Tool, data: &BTreeMap<String, String>) -> Option<String> {
    match tool {
        Tool::ArgoCd => {
            let config: serde_json::Value = serde_json::from_str(data.get("config")?).ok()?;
            Some(config.get("bearerToken")?.as_str()?.to_string())
        }
        Tool::Flux => {
            let config: serde_json::Value = serde_saphyr::from_str(data.get(FLUX_KEY)?).ok()?;
            Some(config["users"][0]["user"]["token"].as_str()?.to_string())
        }
    }
}

/// The key of the kubeconfig in a Flux Secret (`spec.kubeConfig.secretRef`
/// reads `value` unless told otherwise).
pub const FLUX_KEY: &str = "value";

/// A Secret's data for one tool.
fn render(
    keeper: &Keeper,
    row: &db::gitops::KeptRow,
    tool: Tool,
    token: &str,
) -> Result<BTreeMap<String, String>, String> {
    let server = tenant_api_url(&keeper.public_url, &row.slug);
    match tool {
        Tool::ArgoCd => {
            let mut tls = serde_json::json!({"insecure": false});
            if let Some(ca) = &keeper.ca_data {
                tls["caData"] = ca.clone().into();
            }
            let config = serde_json::json!({"bearerToken": token, "tlsClientConfig": tls});
            Ok(BTreeMap::from([
                ("name".into(), row.slug.clone()),
                ("server".into(), server),
                // A namespaced cluster: Argo CD lists and watches only these.
                ("namespaces".into(), row.namespaces.join(",")),
                ("clusterResources".into(), "false".into()),
                ("config".into(), config.to_string()),
            ]))
        }
        Tool::Flux => {
            let namespaces: Vec<&str> = row.namespaces.iter().map(String::as_str).collect();
            let yaml = tenant_view_yaml(
                &row.slug,
                &keeper.endpoint(),
                &format!("{}-gitops", row.slug),
                serde_json::json!({"token": token}),
                &namespaces,
            )
            .map_err(|e| e.to_string())?;
            Ok(BTreeMap::from([(FLUX_KEY.into(), yaml)]))
        }
    }
}

/// A new token of the tenant's automation account for its Secrets, on
/// record with its expiry and in the tenant's audit trail.
async fn issue_token(
    conn: &mut PgConnection,
    keeper: &Keeper,
    row: &db::gitops::KeptRow,
) -> Result<(String, DateTime<Utc>), Error> {
    let mut tx = conn.begin().await?;
    let (secret, expires_at, token_id) = super::gateway::store_token(
        &mut tx,
        row.tenant_id,
        &Holder::Automation,
        db::gitops::ISSUER,
        keeper.token_ttl,
    )
    .await?;
    db::gitops::set_token(&mut tx, row.tenant_id, token_id, expires_at).await?;
    db::audit::record(
        &mut tx,
        db::audit::NewEvent {
            actor: "system:gitops",
            action: "gitops.token_issued",
            tenant: Some((row.tenant_id, &row.slug)),
            before: None,
            after: Some(&serde_json::json!({
                "holder": format!("{}-automation", row.slug),
                "expires_at": expires_at,
                "argocd": row.argocd,
                "flux": row.flux,
            })),
            request_id: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok((secret.reveal(), expires_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keeper() -> Keeper {
        Keeper {
            cluster: "local".into(),
            namespace: "argocd".into(),
            token_ttl: Duration::from_secs(3600),
            public_url: "https://portal.example.com".into(),
            ca_data: Some("Q0E=".into()),
        }
    }

    fn row() -> db::gitops::KeptRow {
        db::gitops::KeptRow {
            tenant_id: 1,
            slug: "acme".into(),
            argocd: true,
            flux: true,
            active: true,
            token_expires_at: None,
            namespaces: vec!["dev".into(), "prod".into()],
            kept: false,
            error: None,
        }
    }

    #[test]
    fn an_argo_cd_secret_names_a_namespaced_cluster_at_the_tenant_api() {
        let data = render(&keeper(), &row(), Tool::ArgoCd, "tok").unwrap();
        assert_eq!(
            data["server"],
            "https://portal.example.com/k8s/tenants/acme"
        );
        assert_eq!(data["namespaces"], "dev,prod");
        assert_eq!(data["clusterResources"], "false");
        let config: serde_json::Value = serde_json::from_str(&data["config"]).unwrap();
        assert_eq!(config["tlsClientConfig"]["caData"], "Q0E=");
        assert_eq!(token_in(Tool::ArgoCd, &data).as_deref(), Some("tok"));
    }

    #[test]
    fn a_flux_secret_holds_a_kubeconfig_whose_token_is_read_back() {
        let data = render(&keeper(), &row(), Tool::Flux, "tok").unwrap();
        let config: serde_json::Value = serde_saphyr::from_str(&data[FLUX_KEY]).unwrap();
        assert_eq!(
            config["clusters"][0]["cluster"]["server"],
            "https://portal.example.com/k8s/tenants/acme"
        );
        assert_eq!(config["contexts"][0]["context"]["namespace"], "dev");
        assert_eq!(token_in(Tool::Flux, &data).as_deref(), Some("tok"));
    }

    #[test]
    fn the_keeper_looks_twelve_times_a_lifetime_within_a_second_and_a_minute() {
        let mut k = keeper();
        assert_eq!(k.interval(), Duration::from_secs(60));
        k.token_ttl = Duration::from_secs(12);
        assert_eq!(k.interval(), Duration::from_secs(1));
        k.token_ttl = Duration::from_secs(1200);
        assert_eq!(k.interval(), Duration::from_secs(60));
        k.token_ttl = Duration::from_secs(600);
        assert_eq!(k.interval(), Duration::from_secs(50));
    }
}
