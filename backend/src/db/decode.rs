//! Typed decoders for what the database stores as text and JSON. A stored
//! value that no longer parses fails the read that meets it: it never turns
//! into a default (an unknown state into `active`, a bad budget into none).

use std::collections::BTreeMap;

use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef, Postgres};
use sqlx::types::Json;

use crate::domain::{MemberKind, ResourceList, Role, TenantState};

macro_rules! text_enum {
    ($ty:ty, $what:literal) => {
        impl sqlx::Type<Postgres> for $ty {
            fn type_info() -> PgTypeInfo {
                <str as sqlx::Type<Postgres>>::type_info()
            }

            fn compatible(ty: &PgTypeInfo) -> bool {
                <str as sqlx::Type<Postgres>>::compatible(ty)
            }
        }

        impl<'r> sqlx::Decode<'r, Postgres> for $ty {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <&str as sqlx::Decode<Postgres>>::decode(value)?;
                <$ty>::parse(text).map_err(|_| format!("unknown {} {text:?}", $what).into())
            }
        }
    };
}

text_enum!(TenantState, "tenant state");
text_enum!(MemberKind, "member kind");
text_enum!(Role, "member role");

type Stored = Json<BTreeMap<String, String>>;

impl sqlx::Type<Postgres> for ResourceList {
    fn type_info() -> PgTypeInfo {
        <Stored as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <Stored as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for ResourceList {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let Json(raw) = <Stored as sqlx::Decode<Postgres>>::decode(value)?;
        ResourceList::parse(&raw, "quota").map_err(|errors| {
            let items: Vec<String> = errors.iter().map(ToString::to_string).collect();
            format!("stored quantities do not parse: {}", items.join("; ")).into()
        })
    }
}

/// Whether a query failed on a stored value that does not parse, rather than
/// on the database or the connection.
pub fn is_corrupt(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_))
}

#[cfg(test)]
mod tests {
    use crate::db::{members::MemberRow, namespaces::NamespaceRow};

    fn member(role: &str, kind: &str) -> serde_json::Value {
        serde_json::json!({
            "id": 1, "tenant_id": 1, "kind": kind, "subject": "team", "role": role,
            "created_at": "2026-01-01T00:00:00Z",
        })
    }

    fn namespace(allocations: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "id": 1, "tenant_id": 1, "name": "dev", "full_name": "acme-dev",
            "allocations": allocations, "created_at": "2026-01-01T00:00:00Z",
            "sync_status": "Ready", "sync_message": null, "usage": {}, "usage_at": null,
        })
    }

    #[test]
    fn a_stored_member_with_an_unknown_role_or_kind_does_not_load() {
        assert!(serde_json::from_value::<MemberRow>(member("owner", "group")).is_ok());
        let role = serde_json::from_value::<MemberRow>(member("superuser", "group")).unwrap_err();
        assert!(role.to_string().contains("superuser"), "{role}");
        assert!(serde_json::from_value::<MemberRow>(member("owner", "robot")).is_err());
    }

    #[test]
    fn stored_allocations_that_do_not_parse_fail_instead_of_loading_empty() {
        let good = serde_json::json!({"requests.cpu": "1500m"});
        let loaded = serde_json::from_value::<NamespaceRow>(namespace(good)).unwrap();
        assert!(!loaded.allocations().is_empty());
        for bad in [
            serde_json::json!({"requests.cpu": "lots"}),
            serde_json::json!({"not a resource": "1"}),
            serde_json::json!({"pods": "-1"}),
        ] {
            let error = serde_json::from_value::<NamespaceRow>(namespace(bad.clone()));
            assert!(error.is_err(), "{bad} loaded");
        }
    }
}
