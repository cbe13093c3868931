use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{FieldError, is_qualified_name};

/// Where a tenant is in its life. Deleted tenants stay as tombstones so the
/// audit trail keeps its subject and the slug is never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TenantState {
    Active,
    Suspended,
    Deleting,
    Deleted,
}

impl TenantState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deleting => "deleting",
            Self::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        match s {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            "deleting" => Ok(Self::Deleting),
            "deleted" => Ok(Self::Deleted),
            _ => Err(FieldError::new(
                "state",
                "must be one of active, suspended, deleting, deleted",
            )),
        }
    }

    /// Whether owners may still change the tenant's spec.
    pub fn is_editable(self) -> bool {
        matches!(self, Self::Active | Self::Suspended)
    }
}

impl fmt::Display for TenantState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn has_control_chars(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
}

/// A human name for the tenant, shown in the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let trimmed = s.trim();
        if trimmed.is_empty() || trimmed.chars().count() > 100 || s.chars().any(char::is_control) {
            return Err(FieldError::new(
                "display_name",
                "must be 1 to 100 characters without control characters",
            ));
        }
        Ok(Self(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A free-text description of what the tenant is for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Description(String);

impl Description {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        if s.chars().count() > 2000 || has_control_chars(s) {
            return Err(FieldError::new(
                "description",
                "must be at most 2000 characters without control characters",
            ));
        }
        Ok(Self(s.trim().to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Labels on a tenant, for filtering; they follow Kubernetes label syntax so
/// they can be copied onto the tenant's namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    const MAX: usize = 32;

    pub fn parse(raw: &BTreeMap<String, String>) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        if raw.len() > Self::MAX {
            errors.push(FieldError::new(
                "labels",
                format!("at most {} labels", Self::MAX),
            ));
        }
        for (key, value) in raw {
            let at = format!("labels.{key}");
            let portals_own = key.starts_with("tenant-portal.dev/")
                && key != super::tenant_document::MANAGED_BY_LABEL;
            if !is_qualified_name(key) || portals_own {
                errors.push(FieldError::new(
                    at.clone(),
                    "key must be a Kubernetes label key ([prefix/]name, name of 1 to 63 alphanumerics, '-', '_' or '.'); the prefix tenant-portal.dev/ is the portal's own (but for tenant-portal.dev/managed-by)",
                ));
            }
            let value_ok = value.is_empty() || super::is_qualified_name_part(value);
            if !value_ok {
                errors.push(FieldError::new(
                    at,
                    "value must be empty or 1 to 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric",
                ));
            }
        }
        if errors.is_empty() {
            Ok(Self(raw.clone()))
        } else {
            Err(errors)
        }
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

/// The longest a short-lived tenant may be given at a time.
const MAX_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::days(366);

/// When a tenant expires, from a lifetime (`ttl`, such as `2h`) or a time;
/// at most one of them, in the future and within a year.
pub fn expiry(
    ttl: Option<&str>,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, FieldError> {
    let at = match (ttl, expires_at) {
        (Some(_), Some(_)) => {
            return Err(FieldError::new("ttl", "give ttl or expires_at, not both"));
        }
        (Some(ttl), None) => {
            let lifetime =
                super::parse_duration(ttl).map_err(|rule| FieldError::new("ttl", rule))?;
            let lifetime = chrono::TimeDelta::from_std(lifetime)
                .map_err(|_| FieldError::new("ttl", "must be at most 366d"))?;
            if lifetime > MAX_LIFETIME || lifetime.is_zero() {
                return Err(FieldError::new("ttl", "must be between 1s and 366d"));
            }
            now + lifetime
        }
        (None, Some(at)) if at <= now => {
            return Err(FieldError::new("expires_at", "must be in the future"));
        }
        (None, Some(at)) if at - now > MAX_LIFETIME => {
            return Err(FieldError::new("expires_at", "must be within 366 days"));
        }
        (None, Some(at)) => at,
        (None, None) => return Ok(None),
    };
    Ok(Some(at))
}

/// Parses a label selector of the form `key=value[,key=value...]`.
pub fn parse_label_selector(s: &str) -> Result<BTreeMap<String, String>, FieldError> {
    let mut selector = BTreeMap::new();
    for term in s.split(',').filter(|t| !t.is_empty()) {
        let Some((key, value)) = term.split_once('=') else {
            return Err(FieldError::new(
                "label",
                "must be key=value pairs separated by commas",
            ));
        };
        selector.insert(key.trim().to_string(), value.trim().to_string());
    }
    Ok(selector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(DisplayName::parse("  Acme  ").unwrap().as_str(), "Acme");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"x".repeat(101)).is_err());
        assert!(DisplayName::parse("a\u{0}b").is_err());
        assert!(DisplayName::parse("<script>alert(1)</script>").is_ok());
    }

    #[test]
    fn labels_follow_kubernetes_syntax() {
        let ok: BTreeMap<_, _> = [
            ("team".into(), "payments".into()),
            ("example.com/tier".into(), "".into()),
        ]
        .into();
        assert!(Labels::parse(&ok).is_ok());
        let bad: BTreeMap<_, _> =
            [("bad key".into(), "v".into()), ("k".into(), "-v".into())].into();
        assert_eq!(Labels::parse(&bad).unwrap_err().len(), 2);
    }

    #[test]
    fn expiry_comes_from_a_lifetime_or_a_future_time() {
        let now = chrono::Utc::now();
        assert_eq!(
            expiry(Some("2h"), None, now).unwrap(),
            Some(now + chrono::TimeDelta::hours(2))
        );
        assert_eq!(expiry(None, None, now).unwrap(), None);
        assert!(expiry(Some("0s"), None, now).is_err());
        assert!(expiry(Some("400d"), None, now).is_err());
        assert!(expiry(Some("soon"), None, now).is_err());
        assert_eq!(
            expiry(None, Some(now - chrono::TimeDelta::seconds(1)), now)
                .unwrap_err()
                .field,
            "expires_at"
        );
        assert!(expiry(Some("1h"), Some(now), now).is_err());
    }

    #[test]
    fn label_selectors_are_key_value_pairs() {
        let s = parse_label_selector("team=payments,tier=gold").unwrap();
        assert_eq!(s.get("tier").map(String::as_str), Some("gold"));
        assert!(parse_label_selector("team").is_err());
    }
}
