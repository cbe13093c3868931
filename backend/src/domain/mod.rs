//! Pure types and rules. Every type here has a constructor that checks its
//! rule, so code past the edge of the system never re-validates.

pub mod currency;
mod field;
pub mod member;
pub mod namespace;
pub mod platform_api;
pub mod price;
pub mod quantity;
pub mod quota;
pub mod showback;
pub mod slug;
pub mod template;
pub mod tenant;
pub mod tenant_document;
pub mod tenant_policy;

pub use currency::Currency;
pub use field::FieldError;
pub use member::{MemberKind, Role};
pub use namespace::NamespaceName;
pub use platform_api::PlatformApi;
pub use quantity::Quantity;
pub use quota::{QuotaResource, ResourceList};
pub use slug::TenantSlug;
pub use tenant::{Description, DisplayName, Labels, TenantState};
pub use tenant_policy::{PodSecurityLevel, ServiceType, TenantPolicy};

/// Parses durations written as a number and a unit: `30s`, `15m`, `12h`, `90d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let rule = || {
        format!("\"{s}\" is not a duration; write a whole number and a unit: 30s, 15m, 12h or 90d")
    };
    let unit_at = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(rule)?;
    let (number, unit) = s.split_at(unit_at);
    let n: u64 = number.parse().map_err(|_| rule())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(rule()),
    };
    n.checked_mul(seconds)
        .map(std::time::Duration::from_secs)
        .ok_or_else(rule)
}

/// Whether `s` is a DNS-1123 label: lowercase letters, digits and `-`,
/// starting and ending with a letter or digit, at most 63 characters.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Whether `s` is the name part of a Kubernetes qualified name (label keys,
/// resource names): alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
pub(crate) fn is_qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A Kubernetes qualified name: `[prefix/]name` with a DNS subdomain prefix.
pub(crate) fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty() && is_dns_subdomain(prefix) && is_qualified_name_part(name)
        }
        None => is_qualified_name_part(s),
    }
}
