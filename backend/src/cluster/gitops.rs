//! The GitOps credentials as Secrets on the management cluster: an Argo CD
//! cluster Secret and a Flux kubeconfig Secret per tenant that asks. The
//! portal reads, replaces and deletes only the Secrets that carry its marks
//! (managed-by, the GitOps tool, and this portal's own label), and never
//! writes over a Secret of the same name that someone else made.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use super::apply::describe;
use super::objects::{MANAGED_BY, MANAGER, TENANT_LABEL};

/// Which tool a Secret is for; also the value of [`TOOL_LABEL`].
pub const TOOL_LABEL: &str = "tenant-portal.dev/gitops";
/// Which portal keeps the Secret (its public host), so two portals sharing
/// a namespace never remove each other's.
pub const PORTAL_LABEL: &str = "tenant-portal.dev/portal";
/// When the token in the Secret expires (RFC 3339).
pub const EXPIRES_ANNOTATION: &str = "tenant-portal.dev/token-expires-at";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tool {
    ArgoCd,
    Flux,
}

impl Tool {
    pub const ALL: [Tool; 2] = [Tool::ArgoCd, Tool::Flux];

    pub fn label(self) -> &'static str {
        match self {
            Self::ArgoCd => "argocd",
            Self::Flux => "flux",
        }
    }

    fn from_label(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|tool| tool.label() == value)
    }

    /// The Secret's name for a tenant: `tenant-acme-argocd`, `tenant-acme-flux`.
    pub fn secret_name(self, slug: &str) -> String {
        format!("tenant-{slug}-{}", self.label())
    }
}

/// The value of [`PORTAL_LABEL`] for a portal at `public_url`: its host and
/// port, in the characters a label value may hold.
pub fn portal_label(public_url: &str) -> String {
    let host = public_url
        .split_once("://")
        .map_or(public_url, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let value: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    value
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// One Secret as the portal wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedSecret {
    pub slug: String,
    pub tool: Tool,
    pub expires_at: String,
    pub data: BTreeMap<String, String>,
}

impl WantedSecret {
    fn labels(&self, portal: &str) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            (MANAGED_BY.to_string(), MANAGER.to_string()),
            (TENANT_LABEL.to_string(), self.slug.clone()),
            (TOOL_LABEL.to_string(), self.tool.label().to_string()),
            (PORTAL_LABEL.to_string(), portal.to_string()),
        ]);
        if self.tool == Tool::ArgoCd {
            // What makes Argo CD read the Secret as a cluster.
            labels.insert("argocd.argoproj.io/secret-type".into(), "cluster".into());
        }
        labels
    }

    fn secret(&self, namespace: &str, portal: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.tool.secret_name(&self.slug)),
                namespace: Some(namespace.to_string()),
                labels: Some(self.labels(portal)),
                annotations: Some(BTreeMap::from([(
                    EXPIRES_ANNOTATION.to_string(),
                    self.expires_at.clone(),
                )])),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(
                self.data
                    .iter()
                    .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    /// Whether a Secret the portal keeps already says this.
    fn is_in(&self, live: &Secret, portal: &str) -> bool {
        let labels_hold = self
            .labels(portal)
            .iter()
            .all(|(k, v)| live.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v));
        let expiry = live
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(EXPIRES_ANNOTATION));
        decoded(live) == self.data && labels_hold && expiry == Some(&self.expires_at)
    }
}

fn decoded(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

/// The Secrets of this portal in the namespace, by (tenant, tool).
pub struct KeptSecrets {
    api: Api<Secret>,
    namespace: String,
    portal: String,
    live: HashMap<(String, Tool), Secret>,
}

/// What one pass did to the Secrets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub created: usize,
    pub replaced: usize,
    pub deleted: usize,
}

impl KeptSecrets {
    /// Lists the portal's Secrets in `namespace`; an error says what to fix.
    pub async fn list(
        client: &kube::Client,
        namespace: &str,
        portal: &str,
    ) -> Result<Self, String> {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let selector = format!("{MANAGED_BY}={MANAGER},{TOOL_LABEL},{PORTAL_LABEL}={portal}");
        let listed = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| match &e {
                kube::Error::Api(status) if status.code == 404 => format!(
                    "the namespace \"{namespace}\" for GitOps credentials does not exist on the management cluster; create it, or name another with --gitops-namespace"
                ),
                kube::Error::Api(status) if status.code == 403 => format!(
                    "the portal may not read Secrets in \"{namespace}\" on the management cluster: {}; grant it the Role of deploy/kubernetes/examples/gitops-credentials.yaml there",
                    status.message
                ),
                _ => format!("failed to list the GitOps Secrets in \"{namespace}\": {}", describe(&e)),
            })?;
        let live = listed
            .items
            .into_iter()
            .filter_map(|secret| {
                let labels = secret.metadata.labels.as_ref()?;
                let slug = labels.get(TENANT_LABEL)?.clone();
                let tool = Tool::from_label(labels.get(TOOL_LABEL)?)?;
                Some(((slug, tool), secret))
            })
            .collect();
        Ok(Self {
            api,
            namespace: namespace.to_string(),
            portal: portal.to_string(),
            live,
        })
    }

    /// The tenants that have a Secret of this portal here.
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.live.keys().map(|(slug, _)| slug.as_str())
    }

    /// What a kept Secret holds, if it is there.
    pub fn data(&self, slug: &str, tool: Tool) -> Option<BTreeMap<String, String>> {
        let live = self.live.get(&(slug.to_string(), tool))?;
        Some(decoded(live))
    }

    /// The token expiry a kept Secret states, if it is there.
    pub fn expiry(&self, slug: &str, tool: Tool) -> Option<&str> {
        self.live
            .get(&(slug.to_string(), tool))?
            .metadata
            .annotations
            .as_ref()?
            .get(EXPIRES_ANNOTATION)
            .map(String::as_str)
    }

    /// Makes the tenant's Secret for `wanted.tool` say exactly `wanted`:
    /// nothing when it does, a replace when it differs, a create when it
    /// is missing. A Secret of that name that the portal did not make is
    /// left alone, and the error names it.
    pub async fn keep(
        &mut self,
        wanted: &WantedSecret,
        written: &mut Written,
    ) -> Result<(), String> {
        let name = wanted.tool.secret_name(&wanted.slug);
        let key = (wanted.slug.clone(), wanted.tool);
        let mut secret = wanted.secret(&self.namespace, &self.portal);
        match self.live.get(&key) {
            Some(live) if wanted.is_in(live, &self.portal) => Ok(()),
            Some(live) => {
                secret.metadata.resource_version = live.metadata.resource_version.clone();
                let replaced = self
                    .api
                    .replace(&name, &PostParams::default(), &secret)
                    .await
                    .map_err(|e| {
                        format!(
                            "failed to replace the Secret {}/{name}: {}",
                            self.namespace,
                            describe(&e)
                        )
                    })?;
                self.live.insert(key, replaced);
                written.replaced += 1;
                Ok(())
            }
            None => match self.api.create(&PostParams::default(), &secret).await {
                Ok(created) => {
                    self.live.insert(key, created);
                    written.created += 1;
                    Ok(())
                }
                Err(kube::Error::Api(status)) if status.code == 409 => Err(format!(
                    "a Secret named \"{name}\" already exists in \"{}\" and was not made by this portal; it is left alone: remove or rename it",
                    self.namespace
                )),
                Err(e) => Err(format!(
                    "failed to create the Secret {}/{name}: {}",
                    self.namespace,
                    describe(&e)
                )),
            },
        }
    }

    /// Deletes every Secret of this portal here that `keep` does not want.
    pub async fn remove_unwanted(
        &mut self,
        keep: impl Fn(&str, Tool) -> bool,
        written: &mut Written,
    ) -> Result<(), String> {
        let unwanted: Vec<(String, Tool)> = self
            .live
            .keys()
            .filter(|(slug, tool)| !keep(slug, *tool))
            .cloned()
            .collect();
        for (slug, tool) in unwanted {
            let name = tool.secret_name(&slug);
            match self.api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => written.deleted += 1,
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => {
                    return Err(format!(
                        "failed to delete the Secret {}/{name}: {}",
                        self.namespace,
                        describe(&e)
                    ));
                }
            }
            self.live.remove(&(slug, tool));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_portal_is_labelled_by_its_host_and_port() {
        assert_eq!(portal_label("https://127.0.0.1:8443"), "127.0.0.1-8443");
        assert_eq!(
            portal_label("https://portal.example.com/"),
            "portal.example.com"
        );
        assert_eq!(portal_label("http://[::1]:80/x"), "1--80");
    }

    #[test]
    fn an_argo_cd_secret_carries_the_cluster_label_and_the_portal_s_marks() {
        let wanted = WantedSecret {
            slug: "acme".into(),
            tool: Tool::ArgoCd,
            expires_at: "2026-12-07T00:00:00Z".into(),
            data: BTreeMap::from([("server".into(), "https://p/k8s/tenants/acme".into())]),
        };
        let secret = wanted.secret("argocd", "p");
        let labels = secret.metadata.labels.clone().unwrap();
        assert_eq!(labels["argocd.argoproj.io/secret-type"], "cluster");
        assert_eq!(labels[MANAGED_BY], MANAGER);
        assert_eq!(labels[TENANT_LABEL], "acme");
        assert_eq!(secret.metadata.name.as_deref(), Some("tenant-acme-argocd"));
        assert!(wanted.is_in(&secret, "p"));
        assert!(!wanted.is_in(&secret, "another-portal"));
        let flux = WantedSecret {
            tool: Tool::Flux,
            ..wanted.clone()
        };
        assert!(
            !flux
                .secret("argocd", "p")
                .metadata
                .labels
                .unwrap()
                .contains_key("argocd.argoproj.io/secret-type"),
            "Argo CD must not read the Flux Secret as a cluster"
        );
    }
}
