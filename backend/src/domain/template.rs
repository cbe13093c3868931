//! Templates (tiers): named, versioned starting points for tenants (budget,
//! policy, default namespaces with allocations, labels, lifetime), and the
//! rollout of a new version onto the tenants made from an older one.
//!
//! A rollout is a three-way merge, field by field: where a tenant still has
//! the value of the version it is on, it follows the template to the new
//! version; where it differs (a budget raised by a quota request, a label its
//! document sets), the tenant's own value is an override, kept and reported,
//! never overwritten. A rollout never removes a namespace.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::FieldError;
use super::tenant_document::NamespaceDocument;

/// A template's fields as a platform admin writes them
/// (`PUT /api/v1/templates/{name}`); every version keeps its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    #[serde(default)]
    #[schema(example = "Two namespaces for a small team")]
    pub description: String,
    /// The budget of a tenant made from the template (`namespaces` defaults
    /// to the configured limit). Anyone who may create tenants gets it.
    #[serde(default)]
    #[schema(example = json!({"requests.cpu": "2", "requests.memory": "4Gi", "pods": "20"}))]
    pub budget: BTreeMap<String, String>,
    /// The namespaces a new tenant starts with, and their allocations.
    #[serde(default)]
    pub namespaces: Vec<NamespaceDocument>,
    /// Labels every tenant of the template carries.
    #[serde(default)]
    #[schema(example = json!({"tier": "small"}))]
    pub labels: BTreeMap<String, String>,
    /// The tenants' policy (as `PUT /tenants/{slug}/policy` takes it), over
    /// the configured default; left out: the configured default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub policy: Option<serde_json::Value>,
    /// The tenants' lifetime, counted from each one's creation (`7d`); left
    /// out: they last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "30d")]
    pub ttl: Option<String>,
}

/// A template's name: a DNS label of 1 to 32 characters.
pub fn parse_name(name: &str) -> Result<(), FieldError> {
    let ok = (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && super::is_dns_label(name);
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "template",
            "must be 1 to 32 lowercase letters, digits or '-', starting with a letter",
        ))
    }
}

/// Which version of which template a tenant is on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub struct TemplateRef {
    #[schema(example = "small")]
    pub name: String,
    #[schema(example = 1)]
    pub version: i32,
}

impl fmt::Display for TemplateRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} v{}", self.name, self.version)
    }
}

/// A template version's values, every one parsed and in canonical form: what
/// a tenant on it has, unless it overrides them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateValues {
    pub budget: BTreeMap<String, String>,
    /// Short name to allocations.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pub labels: BTreeMap<String, String>,
    /// The policy in force, as its JSON fields.
    pub policy: BTreeMap<String, serde_json::Value>,
    pub ttl: Option<TimeDelta>,
}

/// A tenant's state, as far as a template reaches it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplatedState {
    pub budget: BTreeMap<String, String>,
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pub labels: BTreeMap<String, String>,
    pub policy: BTreeMap<String, serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A value of the tenant's own that a rollout keeps where the template says
/// otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Override {
    /// The field, as a tenant document names it: `budget.requests.cpu`,
    /// `labels.team`, `namespaces.dev.allocations.pods`, `namespaces.dev`,
    /// `policy.pod_security`, `expires_at`.
    #[schema(example = "budget.requests.cpu")]
    pub field: String,
    /// What the tenant keeps (`null`: it has none).
    #[schema(example = "8")]
    pub tenant: Option<String>,
    /// What the template's new version says (`null`: nothing).
    #[schema(example = "4")]
    pub template: Option<String>,
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        write!(
            f,
            "= {}: keeps {} (template: {})",
            self.field,
            or_none(&self.tenant),
            or_none(&self.template)
        )
    }
}

/// What a rollout makes of a tenant, and the overrides it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rolled {
    pub state: TemplatedState,
    pub overrides: Vec<Override>,
}

/// Three-way merge of one map: a key whose value is still the old
/// version's follows the new version; another is the tenant's own, kept and
/// reported as an override where the new version says otherwise.
fn merge_map<V: Clone + PartialEq>(
    field: &str,
    current: &BTreeMap<String, V>,
    old: &BTreeMap<String, V>,
    new: &BTreeMap<String, V>,
    show: impl Fn(&V) -> String,
    overrides: &mut Vec<Override>,
) -> BTreeMap<String, V> {
    let mut keys: Vec<&String> = current.keys().chain(old.keys()).chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut merged = BTreeMap::new();
    for key in keys {
        let (have, was, will) = (current.get(key), old.get(key), new.get(key));
        let value = if have == was {
            will
        } else {
            // A key the template never had is the tenant's own, no override.
            if have != will && (was.is_some() || will.is_some()) {
                overrides.push(Override {
                    field: format!("{field}.{key}"),
                    tenant: have.map(&show),
                    template: will.map(&show),
                });
            }
            have
        };
        if let Some(value) = value {
            merged.insert(key.clone(), value.clone());
        }
    }
    merged
}

/// What moving a tenant from template version `old` to `new` makes of it:
/// every field it has as `old` says follows `new`; its own values are kept
/// and listed as overrides. Namespaces are never removed: one the new
/// version drops stays (an override), one the tenant removed is not added
/// again.
pub fn roll(current: &TemplatedState, old: &TemplateValues, new: &TemplateValues) -> Rolled {
    let mut overrides = Vec::new();
    let text = |v: &String| v.clone();
    let budget = merge_map(
        "budget",
        &current.budget,
        &old.budget,
        &new.budget,
        text,
        &mut overrides,
    );
    let labels = merge_map(
        "labels",
        &current.labels,
        &old.labels,
        &new.labels,
        text,
        &mut overrides,
    );
    let mut names: Vec<&String> = current
        .namespaces
        .keys()
        .chain(old.namespaces.keys())
        .chain(new.namespaces.keys())
        .collect();
    names.sort();
    names.dedup();
    let mut namespaces = BTreeMap::new();
    let empty = BTreeMap::new();
    for name in names {
        let field = format!("namespaces.{name}");
        match (
            current.namespaces.get(name),
            old.namespaces.get(name),
            new.namespaces.get(name),
        ) {
            (Some(have), was, Some(will)) => {
                let allocations = merge_map(
                    &format!("{field}.allocations"),
                    have,
                    was.unwrap_or(&empty),
                    will,
                    text,
                    &mut overrides,
                );
                namespaces.insert(name.clone(), allocations);
            }
            (Some(have), Some(_), None) => {
                overrides.push(Override {
                    field,
                    tenant: Some("kept".into()),
                    template: None,
                });
                namespaces.insert(name.clone(), have.clone());
            }
            (Some(have), None, None) => {
                namespaces.insert(name.clone(), have.clone());
            }
            (None, Some(_), Some(_)) => overrides.push(Override {
                field,
                tenant: None,
                template: Some("removed by the tenant; not added again".into()),
            }),
            (None, None, Some(will)) => {
                namespaces.insert(name.clone(), will.clone());
            }
            (None, _, None) => {}
        }
    }
    let policy = merge_map(
        "policy",
        &current.policy,
        &old.policy,
        &new.policy,
        |v: &serde_json::Value| v.to_string(),
        &mut overrides,
    );
    let at = |ttl: Option<TimeDelta>| ttl.map(|ttl| current.created_at + ttl);
    let expires_at = if current.expires_at == at(old.ttl) {
        at(new.ttl)
    } else {
        if current.expires_at != at(new.ttl) {
            overrides.push(Override {
                field: "expires_at".into(),
                tenant: current.expires_at.map(|t| t.to_rfc3339()),
                template: at(new.ttl).map(|t| t.to_rfc3339()),
            });
        }
        current.expires_at
    };
    Rolled {
        state: TemplatedState {
            budget,
            namespaces,
            labels,
            policy,
            created_at: current.created_at,
            expires_at,
        },
        overrides,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn small(cpu: &str, dev_cpu: &str) -> TemplateValues {
        TemplateValues {
            budget: map(&[("requests.cpu", cpu), ("namespaces", "10")]),
            namespaces: [("dev".to_string(), map(&[("requests.cpu", dev_cpu)]))].into(),
            labels: map(&[("tier", "small")]),
            policy: BTreeMap::new(),
            ttl: None,
        }
    }

    fn on(values: &TemplateValues) -> TemplatedState {
        TemplatedState {
            budget: values.budget.clone(),
            namespaces: values.namespaces.clone(),
            labels: values.labels.clone(),
            policy: values.policy.clone(),
            created_at: DateTime::UNIX_EPOCH,
            expires_at: None,
        }
    }

    #[test]
    fn a_tenant_as_its_template_follows_the_new_version() {
        let (v1, v2) = (small("2", "1"), small("4", "2"));
        let rolled = roll(&on(&v1), &v1, &v2);
        assert_eq!(rolled.state, on(&v2));
        assert!(rolled.overrides.is_empty());
    }

    #[test]
    fn a_raised_budget_and_own_labels_are_kept_and_reported() {
        let (v1, mut v2) = (small("2", "1"), small("4", "2"));
        v2.ttl = Some(TimeDelta::days(30));
        let mut tenant = on(&v1);
        tenant.budget.insert("requests.cpu".into(), "8".into());
        tenant.labels.insert("team".into(), "payments".into());
        tenant.namespaces.insert("prod".into(), BTreeMap::new());
        let rolled = roll(&tenant, &v1, &v2);
        assert_eq!(rolled.state.budget["requests.cpu"], "8");
        assert_eq!(rolled.state.labels["team"], "payments");
        assert_eq!(rolled.state.namespaces["dev"]["requests.cpu"], "2");
        assert!(rolled.state.namespaces.contains_key("prod"));
        assert_eq!(
            rolled.state.expires_at,
            Some(DateTime::UNIX_EPOCH + TimeDelta::days(30))
        );
        let lines: Vec<String> = rolled.overrides.iter().map(ToString::to_string).collect();
        assert_eq!(lines, ["= budget.requests.cpu: keeps 8 (template: 4)"]);
    }

    #[test]
    fn a_rollout_never_removes_a_namespace_nor_adds_back_a_removed_one() {
        let v1 = small("2", "1");
        let mut v2 = small("2", "1");
        v2.namespaces.clear();
        v2.namespaces.insert("prod".into(), BTreeMap::new());
        let rolled = roll(&on(&v1), &v1, &v2);
        assert!(rolled.state.namespaces.contains_key("dev"));
        assert!(rolled.state.namespaces.contains_key("prod"));
        assert_eq!(rolled.overrides[0].field, "namespaces.dev");
        let mut gone = on(&v1);
        gone.namespaces.clear();
        let rolled = roll(&gone, &v1, &small("2", "1"));
        assert!(rolled.state.namespaces.is_empty());
        assert_eq!(rolled.overrides[0].field, "namespaces.dev");
    }

    #[test]
    fn template_names_are_short_dns_labels() {
        assert!(parse_name("small").is_ok());
        assert!(parse_name("team-2").is_ok());
        for bad in ["", "Small", "-x", "x-", "9lives", &"a".repeat(33)] {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
    }
}
