//! What the API sends and accepts. Request bodies refuse unknown fields.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::{MemberKind, Role, TenantState};
use crate::service::tenants::{NewTenantRequest, TenantEdit};
use crate::service::views::{MemberView, NamespaceView, SyncView, TenantView};

/// Resource name to quantity, in the Kubernetes quantity grammar (`500m`, `1.5Gi`).
pub type Quantities = BTreeMap<String, String>;

/// Whether the cluster holds what the portal last accepted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SyncStatus {
    /// `Pending` until the reconciler has applied the current generation,
    /// then `Ready`, or `Failed` with the API server's message.
    #[schema(example = "Pending")]
    pub status: String,
    /// The generation the reconciler last applied.
    pub observed_generation: i64,
    /// The API server's own words when the last attempt failed.
    pub message: Option<String>,
    pub last_synced_at: Option<DateTime<Utc>>,
}

/// A tenant: its namespaces, budget, members and sync status.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    #[schema(example = "acme")]
    pub slug: String,
    #[schema(example = "Acme Payments")]
    pub display_name: String,
    pub description: String,
    pub labels: BTreeMap<String, String>,
    /// The cluster the tenant lives on.
    pub cluster: String,
    pub state: TenantState,
    /// The tenant's quota budget; `namespaces` limits how many namespaces it may have.
    pub budget: Quantities,
    /// The sum of the namespaces' allocations.
    pub allocated: Quantities,
    pub namespaces: Vec<Namespace>,
    pub members: Vec<Member>,
    /// The policy a platform admin set for the tenant; `null`: the configured
    /// default, which `GET /tenants/{slug}/policy` shows in full.
    pub policy: Option<crate::domain::TenantPolicy>,
    /// Bumped by every change; also the tenant's ETag.
    pub generation: i64,
    pub sync: SyncStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// When the portal deletes the tenant by itself; absent for lasting tenants.
    pub expires_at: Option<DateTime<Utc>>,
    /// Seconds left until `expires_at` (0 once it has passed).
    pub expires_in_seconds: Option<i64>,
}

/// What a caller who may change a tenant but not read it learns of the
/// change: which tenant, its state and its new generation (the ETag).
// No other fields, so that a whole tenant never also reads as a receipt
// (the answer's schema is one of the two).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantReceipt {
    #[schema(example = "acme")]
    pub slug: String,
    pub state: TenantState,
    pub generation: i64,
}

/// A changed tenant as its caller may see it: the whole tenant when they may
/// read it (`tenants:read`, or a role in it), else a receipt.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum TenantAnswer {
    Tenant(Box<Tenant>),
    Receipt(TenantReceipt),
}

/// A tenant with its new budget when the caller may read it, else the budget alone.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum BudgetAnswer {
    Tenant(Box<Tenant>),
    Budget(Budget),
}

impl From<TenantView> for Tenant {
    fn from(t: TenantView) -> Self {
        Self {
            slug: t.slug,
            display_name: t.display_name,
            description: t.description,
            labels: t.labels,
            cluster: t.cluster,
            state: t.state,
            budget: t.budget,
            allocated: t.allocated,
            namespaces: t.namespaces.into_iter().map(Namespace::from).collect(),
            members: t.members.into_iter().map(Member::from).collect(),
            policy: t.policy,
            generation: t.generation,
            sync: t.sync.into(),
            created_at: t.created_at,
            updated_at: t.updated_at,
            deleted_at: t.deleted_at,
            expires_at: t.expires_at,
            expires_in_seconds: t.expires_in_seconds,
        }
    }
}

impl From<SyncView> for SyncStatus {
    fn from(s: SyncView) -> Self {
        Self {
            status: s.status,
            observed_generation: s.observed_generation,
            message: s.message,
            last_synced_at: s.last_synced_at,
        }
    }
}

impl From<NamespaceView> for Namespace {
    fn from(n: NamespaceView) -> Self {
        Self {
            name: n.name,
            full_name: n.full_name,
            allocations: n.allocations,
            created_at: n.created_at,
        }
    }
}

impl From<MemberView> for Member {
    fn from(m: MemberView) -> Self {
        Self {
            id: m.id,
            kind: m.kind,
            subject: m.subject,
            role: m.role,
            created_at: m.created_at,
        }
    }
}

/// A namespace of a tenant and its share of the budget.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Namespace {
    #[schema(example = "dev")]
    pub name: String,
    /// The namespace's name in the cluster, `<slug>-<name>`.
    #[schema(example = "acme-dev")]
    pub full_name: String,
    pub allocations: Quantities,
    pub created_at: DateTime<Utc>,
}

/// A user or IdP group with a role in a tenant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Member {
    pub id: i64,
    pub kind: MemberKind,
    /// An email for users, the IdP's group name for groups.
    pub subject: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// One page of tenants.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantPage {
    pub items: Vec<Tenant>,
    /// Pass as `page_token` for the next page; absent on the last page.
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TenantListQuery {
    /// At most this many tenants (1 to 500, default 50).
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
    /// Only tenants in this state; by default all but deleted ones.
    pub state: Option<TenantState>,
    /// Only tenants on this cluster.
    pub cluster: Option<String>,
    /// Only tenants with these labels: `key=value[,key=value]`.
    pub label: Option<String>,
    /// Substring of the slug or display name.
    pub q: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// 3 to 20 lowercase letters, digits or '-'; never changes.
    #[schema(example = "acme")]
    pub slug: String,
    /// Defaults to the slug.
    pub display_name: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// One of the configured clusters; defaults to the first.
    pub cluster: Option<String>,
    #[serde(default)]
    #[schema(example = json!({"requests.cpu": "4", "requests.memory": "8Gi", "pods": "20"}))]
    pub budget: Quantities,
    #[serde(default)]
    pub namespaces: Vec<CreateNamespace>,
    #[serde(default)]
    pub members: Vec<CreateMember>,
    /// Lifetime such as `30m`, `12h` or `7d`, after which the portal deletes
    /// the tenant; or give `expires_at`.
    #[schema(example = "2h")]
    pub ttl: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNamespace {
    #[schema(example = "dev")]
    pub name: String,
    #[serde(default)]
    #[schema(example = json!({"requests.cpu": "2", "requests.memory": "4Gi"}))]
    pub allocations: Quantities,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMember {
    pub kind: MemberKind,
    #[schema(example = "alice@example.com")]
    pub subject: String,
    pub role: Role,
}

/// A JSON merge patch (RFC 7396) of a tenant's changeable fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    pub display_name: Option<String>,
    pub description: Option<String>,
    /// Merged key by key; a `null` value removes the label.
    pub labels: Option<BTreeMap<String, Option<String>>>,
    /// A new expiry; `null` makes the tenant last.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// A new lifetime counted from now, such as `2h`: extends a short-lived tenant.
    pub ttl: Option<String>,
}

impl From<CreateTenant> for NewTenantRequest {
    fn from(body: CreateTenant) -> Self {
        Self {
            slug: body.slug,
            display_name: body.display_name,
            description: body.description,
            labels: body.labels,
            cluster: body.cluster,
            budget: body.budget,
            namespaces: body
                .namespaces
                .into_iter()
                .map(|n| (n.name, n.allocations))
                .collect(),
            members: body
                .members
                .into_iter()
                .map(|m| (m.kind, m.subject, m.role))
                .collect(),
            ttl: body.ttl,
            expires_at: body.expires_at,
        }
    }
}

impl From<TenantPatch> for TenantEdit {
    fn from(body: TenantPatch) -> Self {
        Self {
            display_name: body.display_name,
            description: body.description,
            labels: body.labels,
            expires_at: body.expires_at,
            ttl: body.ttl,
        }
    }
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`),
/// as JSON merge patch needs.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateNamespace {
    /// The namespace's new allocations, replacing the old ones.
    pub allocations: Quantities,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    pub role: Role,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetBudget {
    /// The tenant's new budget, replacing the old one.
    pub budget: Quantities,
}

/// A tenant's budget beside what is allocated and what is left.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Budget {
    pub budget: Quantities,
    pub allocated: Quantities,
    /// Budget minus allocations, for each resource in the budget.
    pub available: Quantities,
    pub generation: i64,
    pub sync: SyncStatus,
}

/// A list of items of one tenant, with the tenant's generation and sync status.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantItems<T> {
    pub items: Vec<T>,
    pub generation: i64,
    pub sync: SyncStatus,
}

/// One entry of the audit trail.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    /// `token:<name>` for service tokens.
    pub actor: String,
    #[schema(example = "tenant.created")]
    pub action: String,
    pub tenant: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEvent>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// At most this many events (1 to 500, default 50).
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
    /// Only events of this tenant (slug).
    pub tenant: Option<String>,
    /// Only events by this actor, such as `token:ci`.
    pub actor: Option<String>,
    /// Only events of this action, such as `tenant.created`.
    pub action: Option<String>,
    /// Only events at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
}

/// Where a tenant's sync stands, for the tenant and each namespace.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantStatus {
    pub slug: String,
    pub state: TenantState,
    /// The generation the portal accepted last.
    pub generation: i64,
    #[serde(flatten)]
    pub sync: SyncStatus,
    pub namespaces: Vec<NamespaceStatus>,
    /// The platform APIs the tenant may use, and whether its cluster serves each.
    pub platform_apis: Vec<PlatformApiStatus>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlatformApiStatus {
    /// `<resource>.<group>`.
    pub name: String,
    /// Whether the tenant's cluster serves it now.
    pub served: bool,
    /// Why not, in the cluster's words, when it does not.
    pub message: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NamespaceStatus {
    pub name: String,
    pub full_name: String,
    /// `Pending`, `Ready` or `Failed`.
    pub status: String,
    /// The API server's words when applying to this namespace failed.
    pub message: Option<String>,
}

/// Used, allocated and budgeted amounts for one resource.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResourceUsage {
    pub used: Option<String>,
    pub allocated: Option<String>,
    /// Only in the tenant's total.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NamespaceUsage {
    pub name: String,
    pub full_name: String,
    pub resources: BTreeMap<String, ResourceUsage>,
    /// When the cluster last reported this namespace's usage.
    pub reported_at: Option<DateTime<Utc>>,
}

/// A tenant's quota use, per namespace and in total.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantUsage {
    pub slug: String,
    pub namespaces: Vec<NamespaceUsage>,
    pub total: BTreeMap<String, ResourceUsage>,
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct KubeconfigRequest {
    /// The token's lifetime in seconds (600 to the configured maximum).
    pub expiration_seconds: Option<u64>,
    /// Where the kubeconfig points; the default is `cluster`.
    pub view: Option<KubeconfigView>,
    /// How a tenant-view kubeconfig signs in; the default is `token`.
    pub credentials: Option<KubeconfigCredentials>,
}

/// `token`: a short-lived token in the file; `idp`: `kubectl oidc-login`
/// with the identity provider (tenant view, employees, and only when
/// --oidc-kubectl-client-id is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KubeconfigCredentials {
    Token,
    Idp,
}

/// `tenant`: the tenant API (names without the prefix, your own role);
/// `cluster`: the cluster's API server directly (prefixed names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KubeconfigView {
    Tenant,
    Cluster,
}
