//! The cluster-wide admission policies that hold every tenant to its policy.
//! They are built-in ValidatingAdmissionPolicies (CEL run by the API server
//! itself, no webhook that can fail open), installed once per cluster, and
//! read each tenant's rules from its Namespace, which tenants cannot edit.
//! The annotations they read are written by `render.rs`.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use super::objects::{MANAGED_BY, MANAGER, TENANT_LABEL, is_satisfied_value};
use super::render::{AUTOMATION_ACCOUNT, OWNER_ACCOUNT, VIEWER_ACCOUNT};
use crate::config::ServeConfig;
use crate::domain::TenantPolicy;
use crate::domain::tenant_policy::Cidr;

/// Namespace label set while the tenant is suspended: the cordon's selector.
pub const SUSPENDED_LABEL: &str = "tenant-portal.dev/suspended";
/// Namespace annotations the policies read, one per rule.
pub const SERVICE_TYPES: &str = "tenant-portal.dev/service-types";
pub const STORAGE_CLASSES: &str = "tenant-portal.dev/storage-classes";
pub const INGRESS_CLASSES: &str = "tenant-portal.dev/ingress-classes";
pub const PRIORITY_CLASSES: &str = "tenant-portal.dev/priority-classes";
pub const RUNTIME_CLASSES: &str = "tenant-portal.dev/runtime-classes";
pub const REGISTRIES: &str = "tenant-portal.dev/registries";
pub const NODE_SELECTOR: &str = "tenant-portal.dev/node-selector";
/// The platform APIs the tenant may use, `<resource>.<group>`, comma-separated.
pub const PLATFORM_APIS: &str = "tenant-portal.dev/platform-apis";
/// The annotation value meaning "no list: anything".
pub const ANY: &str = "*";

/// The portal's role accounts: tokens of theirs are the portal's to issue.
const ROLE_ACCOUNTS: [&str; 3] = [OWNER_ACCOUNT, AUTOMATION_ACCOUNT, VIEWER_ACCOUNT];

/// The role accounts as a CEL list literal.
fn role_accounts_list() -> String {
    format!("[{}]", ROLE_ACCOUNTS.map(|a| format!("'{a}'")).join(", "))
}

/// Addresses no tenant pod may reach, whatever the configuration: the cloud
/// providers' instance metadata services (credentials of the node).
const METADATA_ADDRESSES: [&str; 2] = ["169.254.169.254/32", "fd00:ec2::254/128"];

/// Cluster-wide rules from the configuration, the same for every tenant.
#[derive(Debug, Clone)]
pub struct Guardrails {
    /// Namespaces whose pods may connect to every tenant's.
    pub ingress_from_namespaces: Vec<String>,
    /// Networks tenant pods may not reach.
    pub egress_deny: Vec<Cidr>,
    /// Longest ServiceAccount token a tenant may request.
    pub token_max_seconds: u64,
    /// The policy of a tenant no admin has set one for.
    pub default_policy: TenantPolicy,
}

impl Default for Guardrails {
    fn default() -> Self {
        Self {
            ingress_from_namespaces: Vec::new(),
            egress_deny: Vec::new(),
            token_max_seconds: 3600,
            default_policy: crate::config::GuardrailConfig::default().default_policy(),
        }
    }
}

impl Guardrails {
    pub fn from_config(config: &ServeConfig) -> Self {
        Self {
            ingress_from_namespaces: config.guardrails.ingress_from_namespaces.clone(),
            egress_deny: config.guardrails.egress_deny.clone(),
            token_max_seconds: config.tenant_token_max_ttl().as_secs(),
            default_policy: config.guardrails.default_policy(),
        }
    }

    /// The denied networks of one address family, metadata addresses first.
    pub fn egress_deny(&self, ipv4: bool) -> Vec<String> {
        let mut denied: Vec<String> = METADATA_ADDRESSES
            .iter()
            .filter(|c| c.contains('.') == ipv4)
            .map(|c| c.to_string())
            .collect();
        for cidr in &self.egress_deny {
            let text = cidr.to_string();
            if cidr.is_ipv4() == ipv4 && !denied.contains(&text) {
                denied.push(text);
            }
        }
        denied
    }

    /// The policies and their bindings, in apply order (each policy before
    /// the binding that names it).
    pub fn objects(&self) -> Vec<Value> {
        let mut objects = Vec::new();
        for (name, spec) in [
            ("tenant-portal-services", services()),
            ("tenant-portal-workloads", workloads()),
            ("tenant-portal-classes", classes()),
            (
                "tenant-portal-credentials",
                credentials(self.token_max_seconds),
            ),
            ("tenant-portal-managed-objects", managed_objects()),
            ("tenant-portal-suspended", suspended()),
            ("tenant-portal-role-accounts", role_accounts()),
            ("tenant-portal-platform-apis", platform_apis()),
        ] {
            objects.push(json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicy",
                "metadata": {"name": name, "labels": {MANAGED_BY: MANAGER}},
                "spec": spec,
            }));
            objects.push(json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": {"name": name, "labels": {MANAGED_BY: MANAGER}},
                "spec": {"policyName": name, "validationActions": ["Deny"]},
            }));
        }
        objects
    }
}

/// Namespaces of any tenant.
fn tenant_namespaces() -> Value {
    json!({"matchExpressions": [{"key": TENANT_LABEL, "operator": "Exists"}]})
}

fn rule(group: &str, resources: &[&str], operations: &[&str]) -> Value {
    json!({"apiGroups": [group], "apiVersions": ["*"], "operations": operations, "resources": resources})
}

/// Variables every policy shares: the tenant's name and its rules.
fn common_variables() -> Vec<Value> {
    vec![
        json!({"name": "tenant",
               "expression": format!("namespaceObject.metadata.labels[?'{TENANT_LABEL}'].orValue('')")}),
        json!({"name": "rules", "expression": "namespaceObject.metadata.?annotations.orValue({})"}),
    ]
}

/// A list-valued rule: `*` for any, else comma-separated names.
fn list_variable(name: &str, annotation: &str) -> Value {
    json!({"name": name, "expression": format!("variables.rules[?'{annotation}'].orValue('{ANY}')")})
}

/// Whether the request comes from the portal itself, a cluster admin, or the
/// control plane's own components, whose work (quota status, garbage
/// collection, namespace deletion) tenants' objects depend on. The portal's
/// ClusterRole holds the `bypass` verb; tenants cannot be given it, since
/// RBAC lets nobody grant what they do not hold.
fn trusted_variable() -> Value {
    json!({"name": "trusted", "expression": concat!(
        "authorizer.group('tenant-portal.dev').resource('guardrails').check('bypass').allowed()",
        " || request.userInfo.username in ['system:kube-controller-manager', 'system:kube-scheduler']",
        " || request.userInfo.?groups.orValue([]).exists(g, g == 'system:serviceaccounts:kube-system' || g == 'system:nodes')",
    )})
}

fn policy(
    rules: Vec<Value>,
    namespaces: Value,
    variables: Vec<Value>,
    validations: Vec<Value>,
) -> Value {
    let mut all = common_variables();
    all.extend(variables);
    json!({
        "failurePolicy": "Fail",
        "matchConstraints": {"namespaceSelector": namespaces, "resourceRules": rules},
        "variables": all,
        "validations": validations,
    })
}

fn validation(expression: &str, message: &str) -> Value {
    json!({"expression": expression, "messageExpression": message, "reason": "Forbidden"})
}

fn services() -> Value {
    policy(
        vec![rule("", &["services"], &["CREATE", "UPDATE"])],
        tenant_namespaces(),
        vec![json!({"name": "types",
                    "expression": format!("variables.rules[?'{SERVICE_TYPES}'].orValue('ClusterIP').split(',')")})],
        vec![
            validation(
                "object.spec.?externalIPs.orValue([]).size() == 0",
                "'tenant ' + variables.tenant + ' may not set externalIPs on a Service: they would capture traffic to those addresses for the whole cluster'",
            ),
            validation(
                "object.spec.?type.orValue('ClusterIP') in variables.types",
                "'tenant ' + variables.tenant + ' may use Service types ' + variables.types.join(', ') + '; this Service asks for ' + object.spec.?type.orValue('ClusterIP')",
            ),
        ],
    )
}

fn workloads() -> Value {
    let mut spec = policy(
        vec![
            rule(
                "",
                &["pods", "replicationcontrollers"],
                &["CREATE", "UPDATE"],
            ),
            rule("", &["pods/ephemeralcontainers"], &["UPDATE"]),
            rule(
                "apps",
                &["deployments", "replicasets", "statefulsets", "daemonsets"],
                &["CREATE", "UPDATE"],
            ),
            rule("batch", &["jobs", "cronjobs"], &["CREATE", "UPDATE"]),
        ],
        tenant_namespaces(),
        vec![
            json!({"name": "pod", "expression": concat!(
                "request.resource.resource == 'pods' ? object.spec",
                " : request.resource.resource == 'cronjobs' ? object.spec.jobTemplate.spec.template.spec",
                " : object.spec.template.spec")}),
            json!({"name": "images", "expression": concat!(
                "variables.pod.containers.map(c, c.image)",
                " + variables.pod.?initContainers.orValue([]).map(c, c.image)",
                " + variables.pod.?ephemeralContainers.orValue([]).map(c, c.image)")}),
            list_variable("registries", REGISTRIES),
            json!({"name": "prefixes", "expression": "variables.registries.split(',').filter(p, p != '')"}),
            json!({"name": "outside", "expression":
                "variables.registries == '*' ? [] : variables.images.filter(i, !variables.prefixes.exists(p, i.startsWith(p)))"}),
            json!({"name": "nodeSelector", "expression": format!("variables.rules[?'{NODE_SELECTOR}'].orValue('')")}),
            json!({"name": "pairs", "expression":
                "variables.nodeSelector == '' ? [] : variables.nodeSelector.split(',').map(kv, kv.split('='))"}),
            list_variable("priorityClasses", PRIORITY_CLASSES),
            list_variable("runtimeClasses", RUNTIME_CLASSES),
        ],
        vec![
            // A pod of a role account would mount its token: an editor
            // would read the owners' account's token out of it.
            validation(
                &format!(
                    "!(variables.pod.?serviceAccountName.orValue('') in {0}) && !(variables.pod.?serviceAccount.orValue('') in {0})",
                    role_accounts_list()
                ),
                "'tenant ' + variables.tenant + ' may not run pods as the portal\\'s role account ' + variables.pod.?serviceAccountName.orValue(variables.pod.?serviceAccount.orValue('')) + ': its token would carry that role past the portal'",
            ),
            validation(
                "variables.outside.size() == 0",
                "'tenant ' + variables.tenant + ' may use images from ' + variables.prefixes.join(', ') + '; this ' + request.kind.kind + ' uses ' + variables.outside.join(', ')",
            ),
            validation(
                "variables.pairs.all(p, p[0] in variables.pod.?nodeSelector.orValue({}) && variables.pod.nodeSelector[p[0]] == p[1])",
                "'tenant ' + variables.tenant + ' runs on nodes labelled ' + variables.nodeSelector + '; this ' + request.kind.kind + ' must set spec.nodeSelector to include it'",
            ),
            validation(
                "variables.nodeSelector == '' || request.operation != 'CREATE' || !has(variables.pod.nodeName)",
                "'tenant ' + variables.tenant + ' runs on nodes labelled ' + variables.nodeSelector + '; pods may not name a node'",
            ),
            validation(
                "variables.priorityClasses == '*' || !has(variables.pod.priorityClassName) || variables.pod.priorityClassName in variables.priorityClasses.split(',')",
                "'tenant ' + variables.tenant + ' may use PriorityClasses ' + variables.priorityClasses.split(',').join(', ') + '; this ' + request.kind.kind + ' asks for ' + variables.pod.priorityClassName",
            ),
            validation(
                "variables.runtimeClasses == '*' || !has(variables.pod.runtimeClassName) || variables.pod.runtimeClassName in variables.runtimeClasses.split(',')",
                "'tenant ' + variables.tenant + ' may use RuntimeClasses ' + variables.runtimeClasses.split(',').join(', ') + '; this ' + request.kind.kind + ' asks for ' + variables.pod.runtimeClassName",
            ),
        ],
    );
    // Controllers update their objects' status and metadata all the time;
    // only a changed spec can break a rule. An admission request leaves out
    // the fields it has no value for (`subResource` of a plain update), and
    // selecting an absent field is an evaluation error, which a policy that
    // fails closed turns into a refusal: every optional field is tested first.
    spec["matchConditions"] = json!([{
        "name": "spec-changed",
        "expression": "request.operation == 'CREATE' || (has(request.subResource) && request.subResource == 'ephemeralcontainers') || object.spec != oldObject.spec",
    }]);
    spec
}

fn classes() -> Value {
    policy(
        vec![
            rule("", &["persistentvolumeclaims"], &["CREATE"]),
            rule("networking.k8s.io", &["ingresses"], &["CREATE", "UPDATE"]),
        ],
        tenant_namespaces(),
        vec![
            list_variable("storageClasses", STORAGE_CLASSES),
            list_variable("ingressClasses", INGRESS_CLASSES),
            json!({"name": "isClaim", "expression": "request.resource.resource == 'persistentvolumeclaims'"}),
            json!({"name": "ingressClass", "expression":
                "variables.isClaim ? '' : object.spec.?ingressClassName.orValue(object.metadata.?annotations[?'kubernetes.io/ingress.class'].orValue(''))"}),
            trusted_variable(),
        ],
        vec![
            validation(
                "!variables.isClaim || variables.storageClasses == '*' || object.spec.?storageClassName.orValue('') in variables.storageClasses.split(',')",
                "'tenant ' + variables.tenant + ' may use StorageClasses ' + variables.storageClasses.split(',').join(', ') + '; this claim asks for ' + object.spec.?storageClassName.orValue('none')",
            ),
            validation(
                "!variables.isClaim || variables.trusted || object.spec.?volumeName.orValue('') == ''",
                "'tenant ' + variables.tenant + ' may not bind a claim to a named PersistentVolume (' + object.spec.?volumeName.orValue('') + '); volumes come from its StorageClasses'",
            ),
            validation(
                "variables.isClaim || variables.ingressClasses == '*' || variables.ingressClass in variables.ingressClasses.split(',')",
                "'tenant ' + variables.tenant + ' may use IngressClasses ' + variables.ingressClasses.split(',').join(', ') + '; this Ingress asks for ' + (variables.ingressClass == '' ? 'none' : variables.ingressClass)",
            ),
        ],
    )
}

fn credentials(token_max_seconds: u64) -> Value {
    policy(
        vec![
            rule("", &["secrets"], &["CREATE", "UPDATE"]),
            rule("", &["serviceaccounts/token"], &["CREATE"]),
        ],
        tenant_namespaces(),
        vec![
            trusted_variable(),
            // The API server defaults a TokenRequest to one hour.
            json!({"name": "seconds", "expression":
                "request.resource.resource == 'serviceaccounts' ? object.spec.?expirationSeconds.orValue(3600) : 0"}),
        ],
        vec![
            validation(
                "request.resource.resource != 'secrets' || object.?type.orValue('') != 'kubernetes.io/service-account-token'",
                "'tenant ' + variables.tenant + ' may not create Secrets of type kubernetes.io/service-account-token: their tokens never expire; use short-lived tokens (kubectl create token)'",
            ),
            validation(
                &format!(
                    "variables.trusted || request.resource.resource != 'serviceaccounts' || !(request.name in {})",
                    role_accounts_list()
                ),
                "'tenant ' + variables.tenant + ' may not request tokens of the portal\\'s role account ' + request.name + ': the tenant API acts as it for members of that role, and a token would carry the role past the portal'",
            ),
            validation(
                &format!("variables.trusted || variables.seconds <= {token_max_seconds}"),
                &format!(
                    "'tenant ' + variables.tenant + ' may request ServiceAccount tokens valid for at most {token_max_seconds} seconds; this request asks for ' + string(variables.seconds)"
                ),
            ),
        ],
    )
}

/// Nothing the portal manages in a tenant's namespaces can be changed,
/// relabelled or deleted from inside the tenant, and no one can make an
/// object look like the portal's. Deleting a namespace deletes its contents.
fn managed_objects() -> Value {
    let mut spec = policy(
        vec![
            json!({"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE", "DELETE"],
                    "resources": ["*"], "scope": "Namespaced"}),
        ],
        tenant_namespaces(),
        vec![trusted_variable()],
        vec![validation(
            "variables.trusted || has(namespaceObject.metadata.deletionTimestamp)",
            "'tenant ' + variables.tenant + ': ' + request.kind.kind + (has(request.name) ? ' ' + request.name : '') + ' is managed by the tenant portal and cannot be created, changed or deleted from inside the tenant; change the tenant in the portal'",
        )],
    );
    spec["matchConstraints"]["objectSelector"] = json!({"matchLabels": {MANAGED_BY: MANAGER}});
    spec
}

/// A suspended tenant's namespaces are read-only for everyone but the
/// portal, whichever RoleBinding a request comes through. Subresources
/// are writes too (`scale`, `serviceaccounts/token`, `pods/eviction`): `*`
/// does not match them, `*/*` matches every resource and subresource.
fn suspended() -> Value {
    policy(
        vec![
            json!({"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE", "DELETE"],
                   "resources": ["*/*"], "scope": "Namespaced"}),
            // Commands in running containers are writes too.
            rule(
                "",
                &["pods/exec", "pods/attach", "pods/portforward"],
                &["CONNECT", "CREATE"],
            ),
        ],
        json!({"matchLabels": {SUSPENDED_LABEL: "true"}}),
        vec![trusted_variable()],
        vec![validation(
            "variables.trusted || has(namespaceObject.metadata.deletionTimestamp)",
            "'tenant ' + variables.tenant + ' is suspended: nothing in its namespaces can be created, changed or deleted until a platform admin resumes it'",
        )],
    )
}

/// The portal's role accounts act only with the tokens the portal issues,
/// which carry a credential id. `edit` may impersonate every ServiceAccount
/// of its namespaces, and an editor impersonating the owners' account would
/// write as an owner (RoleBindings, to anyone); an impersonated request
/// carries no credential id, and no tenant role may impersonate extras.
fn role_accounts() -> Value {
    let mut spec = policy(
        vec![
            json!({"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE", "DELETE", "CONNECT"],
                   "resources": ["*/*"], "scope": "Namespaced"}),
        ],
        tenant_namespaces(),
        vec![],
        vec![validation(
            "'authentication.kubernetes.io/credential-id' in request.userInfo.?extra.orValue({})",
            "'tenant ' + variables.tenant + ': ' + request.userInfo.username + ' is the portal\\'s role account and acts only with the tokens the portal issues; impersonating it is refused'",
        )],
    );
    spec["matchConditions"] = json!([{
        "name": "a-role-account",
        "expression": format!(
            "request.userInfo.username.startsWith('system:serviceaccount:') && request.userInfo.username.split(':').size() == 4 && request.userInfo.username.split(':')[3] in {}",
            role_accounts_list()
        ),
    }]);
    spec
}

/// Objects of API groups that are not Kubernetes' own (custom resources,
/// aggregated APIs) are created and changed by a tenant's own identities
/// (its members, the ServiceAccounts of its namespaces) only when the API
/// is published to the tenant. Deleting stays possible, so a tenant can
/// clean up after an API is withdrawn; operators, whose accounts live in
/// their own namespaces, keep writing to the tenant's objects.
fn platform_apis() -> Value {
    let built_in = crate::domain::platform_api::BUILT_IN_GROUPS
        .map(|g| format!("'{g}'"))
        .join(", ");
    let mut spec = policy(
        vec![
            json!({"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
                   "resources": ["*/*"], "scope": "Namespaced"}),
        ],
        tenant_namespaces(),
        vec![
            json!({"name": "api", "expression": "request.resource.resource + '.' + request.resource.group"}),
            json!({"name": "published",
                   "expression": format!("variables.rules[?'{PLATFORM_APIS}'].orValue('').split(',')")}),
            json!({"name": "tenantIdentity", "expression": concat!(
                "!request.userInfo.username.startsWith('system:serviceaccount:')",
                " || request.userInfo.username.split(':')[2].startsWith(variables.tenant + '-')",
            )}),
            trusted_variable(),
        ],
        vec![validation(
            "variables.trusted || !variables.tenantIdentity || variables.api in variables.published",
            "'tenant ' + variables.tenant + ' may not use ' + variables.api + ': it is not a platform API published to the tenant; platform admins publish APIs in the portal'",
        )],
    );
    spec["matchConditions"] = json!([{
        "name": "a-custom-api-group",
        "expression": format!("!(request.resource.group in [{built_in}])"),
    }]);
    spec
}

fn api_for(object: &Value, client: &kube::Client) -> Api<DynamicObject> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    let plural = match kind {
        "ValidatingAdmissionPolicy" => "validatingadmissionpolicies",
        _ => "validatingadmissionpolicybindings",
    };
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

/// Brings the cluster's policies to `objects`, writing only those that
/// differ. Returns how many were written.
pub async fn install(client: &kube::Client, objects: &[Value]) -> Result<usize, String> {
    let name_of = |object: &Value| {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        (kind, name)
    };
    // Read all at once: a reconciler's start waits for this.
    let lives = futures::future::join_all(objects.iter().map(|object| async move {
        let (kind, name) = name_of(object);
        match api_for(object, client).get_opt(&name).await {
            Ok(live) => Ok(live.and_then(|l| serde_json::to_value(l).ok())),
            Err(e) => Err(format!(
                "failed to read {kind} {name}: {}",
                super::describe(&e)
            )),
        }
    }))
    .await;
    let params = PatchParams::apply(MANAGER).force();
    let mut written = 0;
    for (object, live) in objects.iter().zip(lives) {
        if live?.is_some_and(|live| is_satisfied_value(object, &live, &["spec"])) {
            continue;
        }
        let (kind, name) = name_of(object);
        api_for(object, client)
            .patch(&name, &params, &Patch::Apply(object))
            .await
            .map_err(|e| format!("failed to install {kind} {name}: {}", super::describe(&e)))?;
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policies_render_as_committed() {
        let guardrails = Guardrails::default();
        let yaml = serde_saphyr::to_string(&guardrails.objects()).unwrap();
        crate::cluster::render::tests::assert_snapshot_text("guardrails.yaml", &yaml);
    }

    #[test]
    fn every_policy_has_a_binding_that_denies() {
        let objects = Guardrails::default().objects();
        let policies: Vec<&str> = objects
            .iter()
            .filter(|o| o["kind"] == "ValidatingAdmissionPolicy")
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect();
        let bound: Vec<&str> = objects
            .iter()
            .filter(|o| o["kind"] == "ValidatingAdmissionPolicyBinding")
            .map(|o| o["spec"]["policyName"].as_str().unwrap())
            .collect();
        assert_eq!(policies, bound);
        assert!(
            objects
                .iter()
                .filter(|o| o["kind"] == "ValidatingAdmissionPolicyBinding")
                .all(|o| o["spec"]["validationActions"] == json!(["Deny"]))
        );
    }

    #[test]
    fn the_metadata_service_is_always_denied() {
        let guardrails = Guardrails {
            egress_deny: vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()],
            ..Guardrails::default()
        };
        assert_eq!(
            guardrails.egress_deny(true),
            ["169.254.169.254/32", "10.0.0.0/8"]
        );
        assert_eq!(
            guardrails.egress_deny(false),
            ["fd00:ec2::254/128", "fd00::/8"]
        );
    }
}
