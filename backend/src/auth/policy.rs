//! The one authorization policy. API handlers (and, later, dashboard pages)
//! ask these functions; no other code decides what a caller may do.

use super::{Principal, Scope};
use crate::error::Error;

/// Something a caller may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ReadTenants,
    CreateTenant,
    EditTenant,
    DeleteTenant,
    ChangeBudget,
    SuspendTenant,
    ReadAudit,
    IssueKubeconfig,
}

impl Action {
    fn describe(self) -> &'static str {
        match self {
            Self::ReadTenants => "read tenants",
            Self::CreateTenant => "create tenants",
            Self::EditTenant => "change tenants, their namespaces, allocations and members",
            Self::DeleteTenant => "delete tenants",
            Self::ChangeBudget => "change tenant budgets",
            Self::SuspendTenant => "suspend or resume tenants",
            Self::ReadAudit => "read the audit trail",
            Self::IssueKubeconfig => {
                "download kubeconfigs, which can change what runs in the tenant"
            }
        }
    }

    /// The scope a service token needs for this action (`admin` grants all).
    fn scope(self) -> Scope {
        match self {
            Self::ReadTenants | Self::ReadAudit => Scope::TenantsRead,
            Self::CreateTenant | Self::EditTenant | Self::DeleteTenant | Self::IssueKubeconfig => {
                Scope::TenantsWrite
            }
            Self::ChangeBudget => Scope::QuotaWrite,
            Self::SuspendTenant => Scope::Admin,
        }
    }
}

/// Allows `action` to `who`, or answers 403 naming what is missing.
pub fn authorize(who: &Principal, action: Action) -> Result<(), Error> {
    match who {
        Principal::ServiceToken { name, scopes, .. } => {
            let needed = action.scope();
            if scopes.contains(&Scope::Admin) || scopes.contains(&needed) {
                Ok(())
            } else {
                Err(Error::Forbidden(format!(
                    "the token \"{name}\" lacks the scope {needed} needed to {}",
                    action.describe()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(scopes: &[Scope]) -> Principal {
        Principal::ServiceToken {
            id: 1,
            name: "ci".into(),
            scopes: scopes.to_vec(),
        }
    }

    #[test]
    fn a_read_scope_reads_but_does_not_write() {
        let reader = token(&[Scope::TenantsRead]);
        assert!(authorize(&reader, Action::ReadTenants).is_ok());
        let err = authorize(&reader, Action::CreateTenant).unwrap_err();
        assert!(err.to_string().contains("tenants:write"), "{err}");
    }

    #[test]
    fn budgets_need_quota_write_and_suspension_needs_admin() {
        let writer = token(&[Scope::TenantsWrite]);
        assert!(authorize(&writer, Action::ChangeBudget).is_err());
        assert!(authorize(&token(&[Scope::QuotaWrite]), Action::ChangeBudget).is_ok());
        assert!(authorize(&writer, Action::SuspendTenant).is_err());
    }

    #[test]
    fn admin_may_do_everything() {
        let admin = token(&[Scope::Admin]);
        for action in [
            Action::ReadTenants,
            Action::CreateTenant,
            Action::ChangeBudget,
            Action::SuspendTenant,
            Action::ReadAudit,
        ] {
            assert!(authorize(&admin, action).is_ok());
        }
    }
}
