//! A tenant as one document: its whole desired state in the shape the API
//! reads (`PUT /api/v1/tenants/{slug}`) and writes (`GET .../document`),
//! and the plan that takes a tenant from what it is to what a document says.
//! The plan is pure: the server computes it once, for an apply and for a
//! dry run alike, so `tenant-portal diff` shows what `apply` then does.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::template::{Override, TemplateRef};
use super::{MemberKind, ResourceList, Role, TenantPolicy};

/// The label that says which folder of documents manages a tenant:
/// `tenant-portal apply --managed-by NAME` sets it, `--prune` deletes only
/// tenants that carry it with that value and are no longer in the folder.
pub const MANAGED_BY_LABEL: &str = "tenant-portal.dev/managed-by";

/// A tenant's whole desired state. A field left out is not managed by the
/// document: it keeps what the tenant has (at creation: the default). A
/// field given is made exactly so: `namespaces` lists every namespace the
/// tenant keeps, `members` every member, `labels` every label.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantDocument {
    /// The tenant's slug; optional in a PUT body, where it must match the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "acme")]
    pub slug: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Acme Payments")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The template (`GET /templates`) the tenant is made from, chosen at
    /// creation (its newest version; the portal records which) and never
    /// changed by a document: a rollout moves the tenant to a newer version.
    /// The document's other fields are overrides over the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "small")]
    pub template: Option<String>,
    /// Every label of the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// The cluster the tenant lives on: chosen at creation (by default the
    /// least loaded one), never changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The tenant's quota budget. Only platform admins and tokens with
    /// `quota:write` set it exactly (`namespaces` defaults to the configured
    /// limit); for others the amounts given are compared with the tenant's
    /// budget (at creation: the default budget, lowered where the document
    /// asks for less), and a difference is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!({"requests.cpu": "4", "requests.memory": "8Gi", "pods": "20"}))]
    pub budget: Option<BTreeMap<String, String>>,
    /// Every namespace the tenant keeps, with its share of the budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<NamespaceDocument>>,
    /// Every member of the tenant. A person (not a token) applying a document
    /// stays an owner of the tenant unless they are a platform admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<MemberDocument>>,
    /// The tenant's policy (see `PUT /tenants/{slug}/policy`), fields left
    /// out taking the configured default; `null`: the configured default.
    /// Only platform admins change it.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Object>)]
    pub policy: Option<Option<serde_json::Value>>,
    /// A lifetime counted from the tenant's creation (`2h`, `7d`), after
    /// which the portal deletes it; or give `expires_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "7d")]
    pub ttl: Option<String>,
    /// When the portal deletes the tenant; `null`: it lasts.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// The GitOps tools the portal keeps credentials for (see
    /// `PUT /tenants/{slug}/gitops`); `{}`: none. Owners, and tokens that
    /// may change the tenant, set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitops: Option<GitopsTools>,
}

/// The GitOps tools of a tenant document; a tool left out is not kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GitopsTools {
    /// An Argo CD cluster Secret.
    #[serde(default)]
    pub argocd: bool,
    /// A Flux kubeconfig Secret.
    #[serde(default)]
    pub flux: bool,
}

impl GitopsTools {
    /// Each tool by the name the document gives it, and whether it is kept.
    pub fn tools(self) -> [(&'static str, bool); 2] {
        [("argocd", self.argocd), ("flux", self.flux)]
    }

    pub fn any(self) -> bool {
        self.argocd || self.flux
    }
}

/// A namespace of a tenant document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NamespaceDocument {
    #[schema(example = "dev")]
    pub name: String,
    #[serde(default)]
    #[schema(example = json!({"requests.cpu": "2", "requests.memory": "4Gi"}))]
    pub allocations: BTreeMap<String, String>,
}

/// A member of a tenant document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberDocument {
    pub kind: MemberKind,
    #[schema(example = "team-acme")]
    pub subject: String,
    pub role: Role,
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A tenant's state as far as a document manages it, every value parsed:
/// what a tenant is, or what a document makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantShape {
    pub display_name: String,
    pub description: String,
    /// The template version the tenant is on.
    pub template: Option<TemplateRef>,
    pub labels: BTreeMap<String, String>,
    pub budget: ResourceList,
    /// Short name to allocations.
    pub namespaces: BTreeMap<String, ResourceList>,
    /// (kind, subject) to role.
    pub members: BTreeMap<(MemberKind, String), Role>,
    /// The policy in force.
    pub policy: TenantPolicy,
    pub expires_at: Option<DateTime<Utc>>,
    pub gitops: GitopsTools,
}

/// One difference between a tenant and its document, as `diff` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// The tenant does not exist yet; the changes after this one make it.
    TenantCreated {
        slug: String,
    },
    DisplayName {
        from: String,
        to: String,
    },
    Description {
        from: String,
        to: String,
    },
    /// The template version the tenant is on (`from` null: none yet).
    Template {
        from: Option<TemplateRef>,
        to: Option<TemplateRef>,
    },
    /// A label added (`from` null), changed, or removed (`to` null).
    Label {
        key: String,
        from: Option<String>,
        to: Option<String>,
    },
    /// A budget item added (`from` null), changed, or removed (`to` null).
    Budget {
        resource: String,
        from: Option<String>,
        to: Option<String>,
    },
    NamespaceAdded {
        name: String,
        allocations: BTreeMap<String, String>,
    },
    NamespaceRemoved {
        name: String,
    },
    /// An allocation of a namespace that stays, added, changed or removed.
    Allocation {
        namespace: String,
        resource: String,
        from: Option<String>,
        to: Option<String>,
    },
    MemberAdded {
        kind: MemberKind,
        subject: String,
        role: Role,
    },
    MemberRemoved {
        kind: MemberKind,
        subject: String,
        role: Role,
    },
    MemberRole {
        kind: MemberKind,
        subject: String,
        from: Role,
        to: Role,
    },
    /// A field of the policy in force.
    Policy {
        field: String,
        #[schema(value_type = Object)]
        from: serde_json::Value,
        #[schema(value_type = Object)]
        to: serde_json::Value,
    },
    Expiry {
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    },
    /// A GitOps tool's credentials kept (`to` true) or no longer kept.
    Gitops {
        #[schema(example = "argocd")]
        tool: String,
        from: bool,
        to: bool,
    },
}

impl Change {
    /// Whether the change is to the budget, which only some may change.
    pub fn is_budget(&self) -> bool {
        matches!(self, Self::Budget { .. })
    }

    /// Whether the change is to the policy, which only platform admins change.
    pub fn is_policy(&self) -> bool {
        matches!(self, Self::Policy { .. })
    }

    /// Whether the change is to the GitOps credentials the portal keeps.
    pub fn is_gitops(&self) -> bool {
        matches!(self, Self::Gitops { .. })
    }
}

fn or_none(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("(none)")
}

fn list(items: &BTreeMap<String, String>) -> String {
    items
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn when(at: &Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "never".to_string(), |at| at.to_rfc3339())
}

/// `+` adds, `-` removes, `~` changes.
fn mark(from: &Option<String>, to: &Option<String>) -> char {
    match (from, to) {
        (None, _) => '+',
        (_, None) => '-',
        _ => '~',
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TenantCreated { slug } => write!(f, "+ tenant {slug}"),
            Self::DisplayName { from, to } => write!(f, "~ display_name: {from:?} → {to:?}"),
            Self::Description { from, to } => write!(f, "~ description: {from:?} → {to:?}"),
            Self::Template { from, to } => {
                let name = |t: &Option<TemplateRef>| {
                    t.as_ref()
                        .map_or_else(|| "(none)".to_string(), ToString::to_string)
                };
                write!(
                    f,
                    "{} template: {} → {}",
                    if from.is_none() { '+' } else { '~' },
                    name(from),
                    name(to)
                )
            }
            Self::Label { key, from, to } => write!(
                f,
                "{} label {key}: {} → {}",
                mark(from, to),
                or_none(from),
                or_none(to)
            ),
            Self::Budget { resource, from, to } => write!(
                f,
                "{} budget {resource}: {} → {}",
                mark(from, to),
                or_none(from),
                or_none(to)
            ),
            Self::NamespaceAdded { name, allocations } if allocations.is_empty() => {
                write!(f, "+ namespace {name}")
            }
            Self::NamespaceAdded { name, allocations } => {
                write!(f, "+ namespace {name} ({})", list(allocations))
            }
            Self::NamespaceRemoved { name } => write!(f, "- namespace {name}"),
            Self::Allocation {
                namespace,
                resource,
                from,
                to,
            } => write!(
                f,
                "{} namespace {namespace} allocation {resource}: {} → {}",
                mark(from, to),
                or_none(from),
                or_none(to)
            ),
            Self::MemberAdded {
                kind,
                subject,
                role,
            } => write!(f, "+ member {} {subject} ({role})", kind.as_str()),
            Self::MemberRemoved {
                kind,
                subject,
                role,
            } => write!(f, "- member {} {subject} ({role})", kind.as_str()),
            Self::MemberRole {
                kind,
                subject,
                from,
                to,
            } => write!(f, "~ member {} {subject}: {from} → {to}", kind.as_str()),
            Self::Policy { field, from, to } => write!(f, "~ policy {field}: {from} → {to}"),
            Self::Expiry { from, to } => {
                write!(f, "~ expires_at: {} → {}", when(from), when(to))
            }
            Self::Gitops { tool, to, .. } => {
                write!(f, "{} gitops {tool}", if *to { '+' } else { '-' })
            }
        }
    }
}

/// What an apply did to a tenant, or with `dry_run` would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Changed,
    Unchanged,
}

/// The plan of one tenant document: what differs and what was (or, dry,
/// would be) done about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantPlan {
    #[schema(example = "acme")]
    pub slug: String,
    pub outcome: Outcome,
    /// Nothing was committed: the plan says what an apply would do.
    pub dry_run: bool,
    /// The tenant's generation (its ETag) after the apply; with `dry_run`,
    /// the one it has (0: it does not exist yet).
    pub generation: i64,
    /// Every difference, in the order `tenant-portal diff` prints them.
    pub changes: Vec<Change>,
    /// A template rollout's plan: the tenant's own values it keeps where
    /// the template's new version says otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<Override>,
}

/// Items of two maps, by key: (key, before, after) where they differ.
fn differences<'a, V: PartialEq>(
    from: &'a BTreeMap<String, V>,
    to: &'a BTreeMap<String, V>,
) -> Vec<(&'a String, Option<&'a V>, Option<&'a V>)> {
    let mut keys: Vec<&String> = from.keys().chain(to.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| {
            let (a, b) = (from.get(key), to.get(key));
            (a != b).then_some((key, a, b))
        })
        .collect()
}

fn quantities(list: &ResourceList) -> BTreeMap<String, String> {
    list.to_strings()
}

/// Allocations compared as quantities (`1` equals `1000m`), shown as written canonically.
fn list_differences(
    from: &ResourceList,
    to: &ResourceList,
) -> Vec<(String, Option<String>, Option<String>)> {
    let mut keys: Vec<String> = from
        .iter()
        .chain(to.iter())
        .map(|(r, _)| r.to_string())
        .collect();
    keys.sort();
    keys.dedup();
    let (a, b) = (quantities(from), quantities(to));
    keys.into_iter()
        .filter(|key| {
            let (x, y) = (
                from.iter().find(|(r, _)| r.as_str() == key).map(|(_, q)| q),
                to.iter().find(|(r, _)| r.as_str() == key).map(|(_, q)| q),
            );
            x != y
        })
        .map(|key| {
            let (x, y) = (a.get(&key).cloned(), b.get(&key).cloned());
            (key, x, y)
        })
        .collect()
}

/// What takes a tenant from `current` to `desired`, in the order `diff`
/// prints it: the tenant's own fields, budget, namespaces, members, policy,
/// expiry, GitOps credentials. Empty when the tenant already is as desired.
pub fn plan(current: &TenantShape, desired: &TenantShape) -> Vec<Change> {
    let mut changes = Vec::new();
    if current.template != desired.template {
        changes.push(Change::Template {
            from: current.template.clone(),
            to: desired.template.clone(),
        });
    }
    if current.display_name != desired.display_name {
        changes.push(Change::DisplayName {
            from: current.display_name.clone(),
            to: desired.display_name.clone(),
        });
    }
    if current.description != desired.description {
        changes.push(Change::Description {
            from: current.description.clone(),
            to: desired.description.clone(),
        });
    }
    for (key, from, to) in differences(&current.labels, &desired.labels) {
        changes.push(Change::Label {
            key: key.clone(),
            from: from.cloned(),
            to: to.cloned(),
        });
    }
    for (resource, from, to) in list_differences(&current.budget, &desired.budget) {
        changes.push(Change::Budget { resource, from, to });
    }
    for (name, from, to) in differences(&current.namespaces, &desired.namespaces) {
        match (from, to) {
            (None, Some(allocations)) => changes.push(Change::NamespaceAdded {
                name: name.clone(),
                allocations: quantities(allocations),
            }),
            (Some(_), None) => changes.push(Change::NamespaceRemoved { name: name.clone() }),
            (Some(from), Some(to)) => {
                for (resource, from, to) in list_differences(from, to) {
                    changes.push(Change::Allocation {
                        namespace: name.clone(),
                        resource,
                        from,
                        to,
                    });
                }
            }
            (None, None) => {}
        }
    }
    let mut members: Vec<&(MemberKind, String)> = current
        .members
        .keys()
        .chain(desired.members.keys())
        .collect();
    members.sort();
    members.dedup();
    for key in members {
        let (kind, subject) = (key.0, key.1.clone());
        match (current.members.get(key), desired.members.get(key)) {
            (None, Some(&role)) => changes.push(Change::MemberAdded {
                kind,
                subject,
                role,
            }),
            (Some(&role), None) => changes.push(Change::MemberRemoved {
                kind,
                subject,
                role,
            }),
            (Some(&from), Some(&to)) if from != to => changes.push(Change::MemberRole {
                kind,
                subject,
                from,
                to,
            }),
            _ => {}
        }
    }
    changes.extend(policy_differences(&current.policy, &desired.policy));
    if current.expires_at != desired.expires_at {
        changes.push(Change::Expiry {
            from: current.expires_at,
            to: desired.expires_at,
        });
    }
    for ((tool, from), (_, to)) in current
        .gitops
        .tools()
        .into_iter()
        .zip(desired.gitops.tools())
    {
        if from != to {
            changes.push(Change::Gitops {
                tool: tool.to_string(),
                from,
                to,
            });
        }
    }
    changes
}

/// The policy's differences, field by field of its JSON form.
fn policy_differences(from: &TenantPolicy, to: &TenantPolicy) -> Vec<Change> {
    if from == to {
        return Vec::new();
    }
    let as_map = |policy: &TenantPolicy| match serde_json::to_value(policy) {
        Ok(serde_json::Value::Object(map)) => map.into_iter().collect::<BTreeMap<_, _>>(),
        _ => BTreeMap::new(),
    };
    let (a, b) = (as_map(from), as_map(to));
    differences(&a, &b)
        .into_iter()
        .map(|(field, from, to)| Change::Policy {
            field: field.clone(),
            from: from.cloned().unwrap_or_default(),
            to: to.cloned().unwrap_or_default(),
        })
        .collect()
}

/// The plan of a tenant that does not exist yet: its creation, then
/// everything it is made with, as additions to an empty tenant with the
/// default policy.
pub fn plan_new(slug: &str, desired: &TenantShape, default_policy: &TenantPolicy) -> Vec<Change> {
    let empty = TenantShape {
        display_name: desired.display_name.clone(),
        description: desired.description.clone(),
        template: None,
        labels: BTreeMap::new(),
        budget: ResourceList::default(),
        namespaces: BTreeMap::new(),
        members: BTreeMap::new(),
        policy: default_policy.clone(),
        expires_at: None,
        gitops: GitopsTools::default(),
    };
    let mut changes = vec![Change::TenantCreated {
        slug: slug.to_string(),
    }];
    changes.extend(plan(&empty, desired));
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PodSecurityLevel;

    fn quantities(pairs: &[(&str, &str)]) -> ResourceList {
        let raw = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ResourceList::parse(&raw, "test").unwrap()
    }

    fn acme() -> TenantShape {
        TenantShape {
            display_name: "Acme".into(),
            description: String::new(),
            template: None,
            labels: [("team".to_string(), "payments".to_string())].into(),
            budget: quantities(&[("requests.cpu", "4"), ("namespaces", "10")]),
            namespaces: [
                ("dev".to_string(), quantities(&[("requests.cpu", "1")])),
                ("prod".to_string(), quantities(&[("requests.cpu", "2")])),
            ]
            .into(),
            members: [
                ((MemberKind::Group, "team-acme".into()), Role::Owner),
                ((MemberKind::User, "bob@example.com".into()), Role::Viewer),
            ]
            .into(),
            policy: TenantPolicy::defaults(PodSecurityLevel::Baseline, &[]),
            expires_at: None,
            gitops: GitopsTools::default(),
        }
    }

    #[test]
    fn a_tenant_as_its_document_says_needs_no_change() {
        assert_eq!(plan(&acme(), &acme()), []);
    }

    #[test]
    fn quantities_are_compared_by_value_not_by_spelling() {
        let mut desired = acme();
        desired.budget = quantities(&[("requests.cpu", "4000m"), ("namespaces", "10")]);
        assert_eq!(plan(&acme(), &desired), []);
    }

    #[test]
    fn each_difference_is_one_change_in_reading_order() {
        let mut desired = acme();
        desired.display_name = "Acme Payments".into();
        desired.labels.insert("tier".into(), "gold".into());
        desired.budget = quantities(&[("requests.cpu", "8"), ("namespaces", "10")]);
        desired.namespaces.remove("dev");
        desired
            .namespaces
            .insert("prod".into(), quantities(&[("requests.cpu", "3")]));
        desired
            .namespaces
            .insert("staging".into(), quantities(&[("requests.cpu", "1")]));
        desired
            .members
            .remove(&(MemberKind::User, "bob@example.com".into()));
        desired
            .members
            .insert((MemberKind::Group, "team-acme".into()), Role::Editor);
        desired.policy.pod_security = PodSecurityLevel::Restricted;
        desired.gitops.flux = true;
        let lines: Vec<String> = plan(&acme(), &desired)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "~ display_name: \"Acme\" → \"Acme Payments\"",
                "+ label tier: (none) → gold",
                "~ budget requests.cpu: 4 → 8",
                "- namespace dev",
                "~ namespace prod allocation requests.cpu: 2 → 3",
                "+ namespace staging (requests.cpu=1)",
                "- member user bob@example.com (viewer)",
                "~ member group team-acme: owner → editor",
                "~ policy pod_security: \"baseline\" → \"restricted\"",
                "+ gitops flux",
            ]
        );
    }

    #[test]
    fn a_new_tenant_plans_its_creation_then_everything_it_holds() {
        let default = TenantPolicy::defaults(PodSecurityLevel::Baseline, &[]);
        let changes = plan_new("acme", &acme(), &default);
        assert_eq!(
            changes[0],
            Change::TenantCreated {
                slug: "acme".into()
            }
        );
        assert!(changes.iter().any(|c| matches!(c,
            Change::NamespaceAdded { name, .. } if name == "prod")));
        assert!(
            !changes.iter().any(Change::is_policy),
            "the default policy is no change"
        );
        assert_eq!(changes.iter().filter(|c| c.is_budget()).count(), 2);
    }

    #[test]
    fn a_document_refuses_unknown_fields_and_tells_null_from_absent() {
        let doc: TenantDocument =
            serde_json::from_value(serde_json::json!({"policy": null})).unwrap();
        assert_eq!(doc.policy, Some(None));
        assert_eq!(doc.expires_at, None);
        let unknown =
            serde_json::from_value::<TenantDocument>(serde_json::json!({"tier": "small"}));
        assert!(unknown.is_err());
    }

    #[test]
    fn gitops_left_out_is_unmanaged_and_an_unknown_tool_is_refused() {
        let doc: TenantDocument = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(doc.gitops, None);
        let doc: TenantDocument =
            serde_json::from_value(serde_json::json!({"gitops": {"argocd": true}})).unwrap();
        assert_eq!(
            doc.gitops,
            Some(GitopsTools {
                argocd: true,
                flux: false
            })
        );
        let unknown = serde_json::from_value::<TenantDocument>(
            serde_json::json!({"gitops": {"jenkins": true}}),
        );
        assert!(unknown.is_err());
        let mut on = acme();
        on.gitops.argocd = true;
        assert_eq!(
            plan(&on, &acme()),
            [Change::Gitops {
                tool: "argocd".into(),
                from: true,
                to: false
            }]
        );
    }

    #[test]
    fn a_document_reads_back_what_it_writes() {
        let doc = TenantDocument {
            slug: Some("acme".into()),
            budget: Some([("requests.cpu".to_string(), "4".to_string())].into()),
            namespaces: Some(vec![NamespaceDocument {
                name: "dev".into(),
                allocations: BTreeMap::new(),
            }]),
            ..Default::default()
        };
        let text = serde_json::to_string(&doc).unwrap();
        assert!(!text.contains("policy"), "{text}");
        assert_eq!(serde_json::from_str::<TenantDocument>(&text).unwrap(), doc);
    }
}
