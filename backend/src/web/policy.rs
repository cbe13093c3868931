//! The tenant's policy on its pages: what every reader sees, and the form
//! platform admins change it with (on the edit page).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;

use super::edit::apply;
use super::{DashboardForm, PageError, Posted};
use crate::domain::tenant_policy::{NetworkDocument, PolicyDocument};
use crate::domain::{ServiceType, TenantPolicy};
use crate::service;
use crate::state::AppState;

/// One line of the policy table.
pub struct PolicyLine {
    pub rule: &'static str,
    pub value: String,
}

/// The policy's values as a form shows and takes them.
#[derive(Default, Deserialize)]
#[serde(default)]
pub struct PolicyForm {
    pub pod_security: String,
    pub node_port: bool,
    pub load_balancer: bool,
    pub external_name: bool,
    pub storage_classes: String,
    pub ingress_classes: String,
    pub priority_classes: String,
    pub runtime_classes: String,
    pub registries: String,
    pub node_selector: String,
    pub ingress_from: String,
    pub egress_cidrs: String,
}

fn joined<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn list_or_any(list: &Option<std::collections::BTreeSet<String>>) -> String {
    match list {
        None => String::new(),
        Some(names) => joined(names),
    }
}

fn shown(list: &Option<std::collections::BTreeSet<String>>) -> String {
    match list {
        None => "any".into(),
        Some(names) if names.is_empty() => "none".into(),
        Some(names) => joined(names),
    }
}

fn or_none(text: String) -> String {
    if text.is_empty() { "none".into() } else { text }
}

pub fn lines(policy: &TenantPolicy) -> Vec<PolicyLine> {
    let selector = joined(policy.node_selector.iter().map(|(k, v)| format!("{k}={v}")));
    vec![
        PolicyLine {
            rule: "Pod Security",
            value: policy.pod_security.as_str().into(),
        },
        PolicyLine {
            rule: "Service types",
            value: joined(policy.service_types.iter().map(|t| t.as_str())),
        },
        PolicyLine {
            rule: "StorageClasses",
            value: shown(&policy.storage_classes),
        },
        PolicyLine {
            rule: "IngressClasses",
            value: shown(&policy.ingress_classes),
        },
        PolicyLine {
            rule: "PriorityClasses",
            value: shown(&policy.priority_classes),
        },
        PolicyLine {
            rule: "RuntimeClasses",
            value: shown(&policy.runtime_classes),
        },
        PolicyLine {
            rule: "Image registries",
            value: shown(&policy.registries),
        },
        PolicyLine {
            rule: "Node pool",
            value: if selector.is_empty() {
                "any node".into()
            } else {
                selector
            },
        },
        PolicyLine {
            rule: "Also reachable from",
            value: or_none(joined(&policy.network.ingress_from_namespaces)),
        },
        PolicyLine {
            rule: "Also may reach",
            value: or_none(joined(&policy.network.egress_cidrs)),
        },
    ]
}

impl PolicyForm {
    pub fn of(policy: &TenantPolicy) -> Self {
        let has = |t| policy.service_types.contains(&t);
        Self {
            pod_security: policy.pod_security.as_str().into(),
            node_port: has(ServiceType::NodePort),
            load_balancer: has(ServiceType::LoadBalancer),
            external_name: has(ServiceType::ExternalName),
            storage_classes: list_or_any(&policy.storage_classes),
            ingress_classes: list_or_any(&policy.ingress_classes),
            priority_classes: list_or_any(&policy.priority_classes),
            runtime_classes: list_or_any(&policy.runtime_classes),
            registries: list_or_any(&policy.registries),
            node_selector: joined(policy.node_selector.iter().map(|(k, v)| format!("{k}={v}"))),
            ingress_from: joined(&policy.network.ingress_from_namespaces),
            egress_cidrs: joined(&policy.network.egress_cidrs),
        }
    }
}

/// One text field of the policy form, with its error if the last save had one.
pub struct PolicyField {
    pub name: &'static str,
    pub label: &'static str,
    pub value: String,
    pub hint: &'static str,
    pub error: Option<String>,
}

/// The policy form as the edit page shows it.
pub struct PolicyFormView {
    pub form: PolicyForm,
    pub fields: Vec<PolicyField>,
    /// Errors of the fields that are not text boxes (level, Service types).
    pub other_errors: Vec<String>,
}

impl PolicyFormView {
    pub fn new(policy: &TenantPolicy, errors: &BTreeMap<String, String>) -> Self {
        let form = PolicyForm::of(policy);
        let texts = [
            (
                "storage_classes",
                "StorageClasses",
                form.storage_classes.clone(),
                "fast, standard",
            ),
            (
                "ingress_classes",
                "IngressClasses",
                form.ingress_classes.clone(),
                "nginx",
            ),
            (
                "priority_classes",
                "PriorityClasses",
                form.priority_classes.clone(),
                "low",
            ),
            (
                "runtime_classes",
                "RuntimeClasses",
                form.runtime_classes.clone(),
                "gvisor",
            ),
            (
                "registries",
                "Image registries (prefixes ending in /)",
                form.registries.clone(),
                "registry.example.com/",
            ),
            (
                "node_selector",
                "Node pool (labels its pods must select)",
                form.node_selector.clone(),
                "pool=tenants",
            ),
            (
                "ingress_from",
                "Also reachable from namespaces",
                form.ingress_from.clone(),
                "monitoring",
            ),
            (
                "egress_cidrs",
                "Also may reach networks",
                form.egress_cidrs.clone(),
                "10.20.0.0/16",
            ),
        ];
        let fields = texts
            .into_iter()
            .map(|(name, label, value, hint)| PolicyField {
                name,
                label,
                value,
                hint,
                error: errors.get(name).cloned(),
            })
            .collect();
        let other_errors = [
            ("pod_security", "Pod Security level"),
            ("service_types", "Service types"),
        ]
        .into_iter()
        .filter_map(|(name, label)| errors.get(name).map(|e| format!("{label}: {e}")))
        .collect();
        Self {
            form,
            fields,
            other_errors,
        }
    }
}

/// Comma- or space-separated words; none at all is `None` ("any").
fn words(text: &str) -> Option<Vec<String>> {
    let items = super::form::names(text);
    (!items.is_empty()).then_some(items)
}

/// The policy form's errors are reported under the document's names.
impl DashboardForm for PolicyForm {
    const ERROR_FIELDS: &'static [(&'static str, &'static str)] = &[
        ("network.ingress_from_namespaces", "ingress_from"),
        ("network.egress_cidrs", "egress_cidrs"),
    ];
}

/// The whole policy as the form says it: every field is set.
fn document(form: &PolicyForm) -> PolicyDocument {
    let service_types = [
        (form.node_port, "NodePort"),
        (form.load_balancer, "LoadBalancer"),
        (form.external_name, "ExternalName"),
    ]
    .into_iter()
    .filter(|(checked, _)| *checked)
    .map(|(_, t)| t.to_string())
    .collect();
    let mut node_selector = BTreeMap::new();
    for pair in words(&form.node_selector).unwrap_or_default() {
        let (key, value) = pair.split_once('=').unwrap_or((pair.as_str(), ""));
        node_selector.insert(key.to_string(), value.to_string());
    }
    PolicyDocument {
        pod_security: Some(form.pod_security.clone()),
        service_types: Some(service_types),
        storage_classes: Some(words(&form.storage_classes)),
        ingress_classes: Some(words(&form.ingress_classes)),
        priority_classes: Some(words(&form.priority_classes)),
        runtime_classes: Some(words(&form.runtime_classes)),
        registries: Some(words(&form.registries)),
        node_selector: Some(node_selector),
        network: Some(NetworkDocument {
            ingress_from_namespaces: Some(words(&form.ingress_from).unwrap_or_default()),
            egress_cidrs: Some(words(&form.egress_cidrs).unwrap_or_default()),
        }),
        // Not on this form: the tenant API share and the platform APIs set
        // through the API stay.
        tenant_api: None,
        platform_apis: None,
    }
}

pub async fn set(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    posted: Posted<PolicyForm>,
) -> Result<Response, PageError> {
    let Posted {
        viewer,
        actor,
        precondition,
        form,
    } = posted;
    let result = service::policy::set(
        &app.db,
        &app.config.guardrails,
        &viewer.principal,
        &actor,
        &slug,
        &precondition,
        &document(&form),
    )
    .await;
    apply::<PolicyForm, _>(
        &app,
        &viewer,
        &slug,
        "Policy saved; the cluster enforces it within seconds.",
        result.map(|_| ()),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_field_means_any_and_words_split_on_commas_and_spaces() {
        assert_eq!(words("  "), None);
        assert_eq!(
            words("fast, standard slow"),
            Some(vec!["fast".into(), "standard".into(), "slow".into()])
        );
    }

    #[test]
    fn the_form_round_trips_a_policy() {
        let base = TenantPolicy::defaults(crate::domain::PodSecurityLevel::Baseline, &[]);
        let form = PolicyForm {
            pod_security: "restricted".into(),
            node_port: true,
            storage_classes: "fast, standard".into(),
            registries: "ghcr.io/acme/".into(),
            node_selector: "pool=tenants".into(),
            egress_cidrs: "10.1.0.0/16".into(),
            ..PolicyForm::default()
        };
        let policy = TenantPolicy::parse(&document(&form), &base).unwrap();
        let again = PolicyForm::of(&policy);
        assert_eq!(again.pod_security, "restricted");
        assert!(again.node_port && !again.load_balancer);
        assert_eq!(again.storage_classes, "fast, standard");
        assert_eq!(again.ingress_classes, "");
        assert_eq!(again.node_selector, "pool=tenants");
        assert_eq!(again.egress_cidrs, "10.1.0.0/16");
    }
}
