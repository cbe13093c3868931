//! The one authorization policy. API handlers and dashboard pages ask these
//! functions; templates only show their answers. No other code decides what
//! a caller may do.

use super::{Principal, Reach, Scope};
use crate::domain::{MemberKind, Role};

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
    ReadClusters,
    RequestQuota,
    ChangePolicy,
    ManageTokens,
    SetPrices,
    SetClusterCapacity,
    PublishPlatformApis,
    ManageTemplates,
    ManageGitops,
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
            Self::ReadClusters => "read the clusters",
            Self::RequestQuota => "ask for more quota",
            Self::ManageTokens => "issue or revoke service tokens",
            Self::SetPrices => "set the prices of resources",
            Self::SetClusterCapacity => "declare what a cluster can hold",
            Self::PublishPlatformApis => "publish platform APIs to tenants",
            Self::ManageTemplates => "write tenant templates or roll them out to their tenants",
            Self::ManageGitops => {
                "have the portal keep GitOps credentials (Argo CD, Flux) for the tenant"
            }
            Self::ChangePolicy => {
                "change tenant policies (Pod Security, Service types, classes, registries, node pools, network)"
            }
        }
    }

    /// The scope a service token or machine client needs (`admin` grants all).
    fn scope(self) -> Scope {
        match self {
            Self::ReadTenants | Self::ReadAudit | Self::ReadClusters => Scope::TenantsRead,
            Self::CreateTenant
            | Self::EditTenant
            | Self::DeleteTenant
            | Self::IssueKubeconfig
            | Self::ManageGitops
            | Self::RequestQuota => Scope::TenantsWrite,
            Self::ChangeBudget => Scope::QuotaWrite,
            Self::SuspendTenant
            | Self::ChangePolicy
            | Self::ManageTokens
            | Self::SetPrices
            | Self::SetClusterCapacity
            | Self::PublishPlatformApis
            | Self::ManageTemplates => Scope::Admin,
        }
    }

    /// The least role in a tenant that allows this action to an employee.
    /// The kubeconfig's account may change what runs in the tenant, so
    /// viewers, who may only look, do not get one.
    fn least_role(self) -> Option<Role> {
        match self {
            Self::ReadTenants => Some(Role::Viewer),
            Self::IssueKubeconfig => Some(Role::Editor),
            // Credentials kept on another cluster outlive any one session.
            Self::EditTenant | Self::DeleteTenant | Self::RequestQuota | Self::ManageGitops => {
                Some(Role::Owner)
            }
            // Budgets, suspension, the audit trail and clusters belong to platform admins.
            Self::ChangeBudget
            | Self::ChangePolicy
            | Self::ManageTokens
            | Self::SetPrices
            | Self::SetClusterCapacity
            | Self::PublishPlatformApis
            | Self::ManageTemplates
            | Self::SuspendTenant
            | Self::ReadAudit
            | Self::ReadClusters
            | Self::CreateTenant => None,
        }
    }
}

/// Why the policy refused. Each door turns it into its answer through the
/// one `From<Denial> for Error`: a caller with no role in a tenant learns no
/// more than that there is no such tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The employee holds no role in the tenant.
    #[error("{who} has no role in the tenant \"{tenant}\"")]
    NoRole { who: String, tenant: String },
    /// The employee's role in the tenant is too small for the action.
    #[error("{who} is {role} of \"{tenant}\"; to {} you need to be {needed}", .action.describe())]
    RoleTooSmall {
        who: String,
        tenant: String,
        role: Role,
        needed: Role,
        action: Action,
    },
    /// Only platform admins may do this.
    #[error("{who} may not {}: that needs a platform admin", .action.describe())]
    NeedsAdmin { who: String, action: Action },
    /// A token or machine client may not reach the tenant: it neither
    /// created it nor names it, and has no all-tenants grant.
    #[error("{who} does not reach the tenant \"{tenant}\"")]
    Unreachable { who: String, tenant: String },
    /// A token or machine client lacks the scope.
    #[error("{who} lacks the scope {scope} needed to {}", .action.describe())]
    MissingScope {
        who: String,
        scope: Scope,
        action: Action,
    },
}

impl Denial {
    /// The tenant the denial hides, when the caller has no role in it.
    pub fn hidden_tenant(&self) -> Option<&str> {
        match self {
            Self::NoRole { tenant, .. } | Self::Unreachable { tenant, .. } => Some(tenant),
            _ => None,
        }
    }
}

fn missing_scope(who: &str, scopes: &[Scope], action: Action) -> Result<(), Denial> {
    let needed = action.scope();
    if scopes.contains(&Scope::Admin) || scopes.contains(&needed) {
        Ok(())
    } else {
        Err(Denial::MissingScope {
            who: who.to_string(),
            scope: needed,
            action,
        })
    }
}

/// Allows an action that concerns no one tenant (listing, creating, the
/// audit trail), or says what is missing.
pub fn authorize(who: &Principal, action: Action) -> Result<(), Denial> {
    match who {
        Principal::ServiceToken { name, scopes, .. } => {
            missing_scope(&format!("the token \"{name}\""), scopes, action)
        }
        Principal::Machine {
            client_id, scopes, ..
        } => missing_scope(&format!("the client \"{client_id}\""), scopes, action),
        Principal::User(user) if user.admin => Ok(()),
        // Every employee may list (they see their own tenants) and create tenants.
        Principal::User(_) if matches!(action, Action::ReadTenants | Action::CreateTenant) => {
            Ok(())
        }
        Principal::User(user) => Err(Denial::NeedsAdmin {
            who: user.email.clone(),
            action,
        }),
    }
}

/// The check that needs no tenant: a token's or machine client's scope. An
/// employee's rights depend on the tenant, so [`authorize_tenant`] decides
/// for them once it is loaded.
pub fn precheck(who: &Principal, action: Action) -> Result<(), Denial> {
    match who {
        Principal::User(_) => Ok(()),
        _ => authorize(who, action),
    }
}

/// Whether a token or machine client reaches the tenant at all; a tenant
/// it does not reach is hidden from it like a missing one.
fn reach(who: &Principal, tenant: &str) -> Result<(), Denial> {
    let (who_name, reach) = match who {
        Principal::ServiceToken { name, reach, .. } => (format!("the token \"{name}\""), reach),
        Principal::Machine {
            client_id, reach, ..
        } => (format!("the client \"{client_id}\""), reach),
        Principal::User(_) => return Ok(()),
    };
    if reach.covers(tenant) {
        Ok(())
    } else {
        Err(Denial::Unreachable {
            who: who_name,
            tenant: tenant.to_string(),
        })
    }
}

/// The tenants a token or machine client is limited to, for lists; `None`
/// for employees (their memberships limit them) and all-tenants grants.
pub fn reach_limit(who: &Principal) -> Option<Vec<String>> {
    match who {
        Principal::ServiceToken {
            reach: Reach::Only(slugs),
            ..
        }
        | Principal::Machine {
            reach: Reach::Only(slugs),
            ..
        } => Some(slugs.clone()),
        _ => None,
    }
}

/// The role `who` holds in a tenant with these members: the highest of the
/// memberships naming their email or one of their groups.
pub fn role_in<'a>(
    who: &Principal,
    members: impl IntoIterator<Item = (MemberKind, &'a str, Role)>,
) -> Option<Role> {
    let Principal::User(user) = who else {
        return None;
    };
    members
        .into_iter()
        .filter(|(kind, subject, _)| match kind {
            MemberKind::User => subject.eq_ignore_ascii_case(&user.email),
            MemberKind::Group => user.groups.iter().any(|g| g == subject),
        })
        .map(|(_, _, role)| role)
        .max()
}

/// Allows an action on one tenant, given its members.
pub fn authorize_tenant<'a>(
    who: &Principal,
    action: Action,
    tenant: &str,
    members: impl IntoIterator<Item = (MemberKind, &'a str, Role)>,
) -> Result<(), Denial> {
    let Principal::User(user) = who else {
        return reach(who, tenant).and_then(|()| authorize(who, action));
    };
    if user.admin {
        return Ok(());
    }
    let role = role_in(who, members);
    match (action.least_role(), role) {
        // Whatever the action, a stranger learns no more than that there is no such tenant.
        (_, None) => Err(Denial::NoRole {
            who: user.email.clone(),
            tenant: tenant.to_string(),
        }),
        (Some(needed), Some(role)) if role >= needed => Ok(()),
        (Some(needed), Some(role)) => Err(Denial::RoleTooSmall {
            who: user.email.clone(),
            tenant: tenant.to_string(),
            role,
            needed,
            action,
        }),
        (None, Some(_)) => authorize(who, action),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::User;

    fn token(scopes: &[Scope]) -> Principal {
        Principal::ServiceToken {
            id: 1,
            name: "ci".into(),
            scopes: scopes.to_vec(),
            reach: Reach::All,
        }
    }

    #[test]
    fn a_token_reaches_only_its_tenants_and_others_are_hidden() {
        let ci = Principal::ServiceToken {
            id: 1,
            name: "ci".into(),
            scopes: vec![Scope::Admin],
            reach: Reach::Only(vec!["builds".into()]),
        };
        assert!(authorize_tenant(&ci, Action::EditTenant, "builds", []).is_ok());
        let hidden = authorize_tenant(&ci, Action::ReadTenants, "acme", ACME).unwrap_err();
        assert_eq!(hidden.hidden_tenant(), Some("acme"));
        assert_eq!(reach_limit(&ci), Some(vec!["builds".to_string()]));
        assert_eq!(reach_limit(&token(&[Scope::TenantsRead])), None);
    }

    fn user(email: &str, groups: &[&str], admin: bool) -> Principal {
        Principal::User(User {
            subject: "sub".into(),
            email: email.into(),
            name: email.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            admin,
            csrf_token: String::new(),
        })
    }

    const ACME: [(MemberKind, &str, Role); 2] = [
        (MemberKind::Group, "team-acme", Role::Owner),
        (MemberKind::User, "bob@example.com", Role::Viewer),
    ];

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
    fn roles_come_from_email_or_group_memberships() {
        assert_eq!(
            role_in(&user("alice@example.com", &["team-acme"], false), ACME),
            Some(Role::Owner)
        );
        assert_eq!(
            role_in(&user("BOB@example.com", &[], false), ACME),
            Some(Role::Viewer)
        );
        assert_eq!(role_in(&user("carol@example.com", &[], false), ACME), None);
    }

    #[test]
    fn owners_edit_viewers_read_strangers_get_nothing() {
        let alice = user("alice@example.com", &["team-acme"], false);
        let bob = user("bob@example.com", &[], false);
        let carol = user("carol@example.com", &[], false);
        assert!(authorize_tenant(&alice, Action::EditTenant, "acme", ACME).is_ok());
        assert!(authorize_tenant(&bob, Action::ReadTenants, "acme", ACME).is_ok());
        assert!(authorize_tenant(&bob, Action::EditTenant, "acme", ACME).is_err());
        assert!(authorize_tenant(&bob, Action::IssueKubeconfig, "acme", ACME).is_err());
        assert!(authorize_tenant(&carol, Action::ReadTenants, "acme", ACME).is_err());
        assert!(
            authorize_tenant(&alice, Action::ChangeBudget, "acme", ACME).is_err(),
            "budgets are for admins"
        );
    }

    #[test]
    fn strangers_are_told_no_role_and_members_the_role_they_lack() {
        let bob = user("bob@example.com", &[], false);
        let carol = user("carol@example.com", &[], false);
        assert_eq!(
            authorize_tenant(&carol, Action::ReadTenants, "acme", ACME)
                .unwrap_err()
                .hidden_tenant(),
            Some("acme")
        );
        let too_small = authorize_tenant(&bob, Action::EditTenant, "acme", ACME).unwrap_err();
        assert!(
            matches!(
                too_small,
                Denial::RoleTooSmall {
                    needed: Role::Owner,
                    ..
                }
            ),
            "{too_small}"
        );
        assert_eq!(too_small.hidden_tenant(), None);
    }

    #[test]
    fn platform_admins_may_do_everything() {
        let admin = user("root@example.com", &["platform-admins"], true);
        for action in [
            Action::ChangeBudget,
            Action::SuspendTenant,
            Action::ReadAudit,
            Action::EditTenant,
        ] {
            assert!(authorize_tenant(&admin, action, "acme", ACME).is_ok());
        }
        let token = token(&[Scope::Admin]);
        assert!(authorize_tenant(&token, Action::SuspendTenant, "acme", []).is_ok());
    }
}
