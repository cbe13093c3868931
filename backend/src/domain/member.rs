use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::FieldError;

/// Who a membership names: one person by email, or everyone in an IdP group.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum MemberKind {
    User,
    Group,
}

impl MemberKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Group => "group",
        }
    }

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        match s {
            "user" => Ok(Self::User),
            "group" => Ok(Self::Group),
            _ => Err(FieldError::new("kind", "must be user or group")),
        }
    }

    /// Checks a subject for this kind: an email for users, an IdP group name for groups.
    pub fn parse_subject(self, s: &str) -> Result<String, FieldError> {
        match self {
            Self::User => {
                let email = s.trim().to_ascii_lowercase();
                let ok = email.len() <= 254
                    && !email.chars().any(|c| c.is_whitespace() || c.is_control())
                    && matches!(email.split_once('@'), Some((local, domain))
                        if !local.is_empty() && domain.contains('.') && !domain.contains('@')
                            && !domain.starts_with('.') && !domain.ends_with('.'));
                if ok {
                    Ok(email)
                } else {
                    Err(FieldError::new(
                        "subject",
                        "must be an email address such as alice@example.com",
                    ))
                }
            }
            Self::Group => {
                let ok = !s.is_empty()
                    && s.len() <= 256
                    && !s.chars().any(char::is_control)
                    && s.trim() == s;
                if ok {
                    Ok(s.to_string())
                } else {
                    Err(FieldError::new(
                        "subject",
                        "must be an IdP group name of 1 to 256 characters without control characters or surrounding spaces",
                    ))
                }
            }
        }
    }
}

/// What a member may do in a tenant. Ordered: an owner may do all an editor may.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Editor,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Editor => "editor",
            Self::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        match s {
            "viewer" => Ok(Self::Viewer),
            "editor" => Ok(Self::Editor),
            "owner" => Ok(Self::Owner),
            _ => Err(FieldError::new("role", "must be owner, editor or viewer")),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_subjects_are_lowercased_emails() {
        assert_eq!(
            MemberKind::User.parse_subject("Alice@Example.com").unwrap(),
            "alice@example.com"
        );
        for bad in [
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "a b@example.com",
            "a@b@c.d",
        ] {
            assert!(MemberKind::User.parse_subject(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn group_subjects_are_taken_as_the_idp_spells_them() {
        assert_eq!(
            MemberKind::Group.parse_subject("Team Acme").unwrap(),
            "Team Acme"
        );
        assert!(MemberKind::Group.parse_subject("").is_err());
        assert!(MemberKind::Group.parse_subject(" padded ").is_err());
    }

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(Role::Owner > Role::Editor && Role::Editor > Role::Viewer);
    }
}
