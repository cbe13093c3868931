//! What a tenant-API path asks for, read from its segments the way the API
//! server reads them: `/api/v1/namespaces/dev/pods/web/log`.

use axum::http::Method;

use super::status::KubeStatus;

/// Subresources that reach into a pod or Service over plain HTTP; the
/// gateway does not carry them (port-forward does the same, audited).
const NOT_OFFERED: [&str; 1] = ["proxy"];

/// The path of an API group version: `/api/v1` or `/apis/apps/v1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupVersion {
    pub group: String,
    pub path: String,
}

impl GroupVersion {
    /// `resource.group`, as the API server names a resource in its words
    /// (`storageclasses.storage.k8s.io`; core resources by name alone).
    pub fn qualified(&self, resource: &str) -> String {
        if self.group.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}.{}", self.group)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/version`, `/api`, `/apis`, `/apis/<group>[/<version>]`, `/openapi/...`:
    /// the same for every tenant.
    Discovery,
    /// `/api/v1/namespaces`.
    Namespaces,
    /// `/api/v1/namespaces/<name>[/<subresource>]`.
    Namespace {
        name: String,
        subresource: Option<String>,
    },
    /// A namespaced resource: `/api/v1/namespaces/<ns>/<resource>/...`;
    /// `tail` starts with the resource.
    Namespaced {
        api: GroupVersion,
        namespace: String,
        tail: Vec<String>,
    },
    /// `/api/v1/<resource>[/...]`: cluster-scoped, or a namespaced resource
    /// across all namespaces; discovery tells which.
    ClusterLevel {
        api: GroupVersion,
        tail: Vec<String>,
    },
}

pub fn classify(rest: &str) -> Result<Target, KubeStatus> {
    let segments: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            // `..` (or an escaped `/`) would let a path climb out of the
            // tenant's namespaces once the cluster's client normalises it;
            // a `%` left after decoding is decoded again there (`%252e%252e`
            // is `..` upstream), and `?` or `#` would end the path. No
            // Kubernetes name holds any of them.
            percent_decode(s)
                .filter(|d| {
                    d != "."
                        && d != ".."
                        && !d.contains(['/', '\\', '%', '?', '#'])
                        && !d.chars().any(char::is_control)
                })
                .ok_or_else(|| {
                    KubeStatus::bad_request(format!("the path segment \"{s}\" is not valid"))
                })
        })
        .collect::<Result<_, _>>()?;
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let (api, after): (GroupVersion, &[&str]) = match s.as_slice() {
        [] | ["version"] | ["api"] | ["apis"] | ["api", _] | ["apis", _] | ["apis", _, _] => {
            return Ok(Target::Discovery);
        }
        ["openapi", ..] => return Ok(Target::Discovery),
        ["api", version, rest @ ..] => (
            GroupVersion {
                group: String::new(),
                path: format!("/api/{version}"),
            },
            rest,
        ),
        ["apis", group, version, rest @ ..] => (
            GroupVersion {
                group: group.to_string(),
                path: format!("/apis/{group}/{version}"),
            },
            rest,
        ),
        _ => return Err(KubeStatus::not_found()),
    };
    let core = api.group.is_empty();
    match after {
        ["watch", ..] => Err(KubeStatus::bad_request(
            "the tenant API does not serve the old /watch/ paths; use ?watch=true",
        )),
        ["namespaces"] if core => Ok(Target::Namespaces),
        ["namespaces", name] if core => Ok(Target::Namespace {
            name: name.to_string(),
            subresource: None,
        }),
        ["namespaces", name, sub] if core && matches!(*sub, "status" | "finalize") => {
            Ok(Target::Namespace {
                name: name.to_string(),
                subresource: Some(sub.to_string()),
            })
        }
        ["namespaces", namespace, tail @ ..] if !tail.is_empty() => {
            if let [_, _, sub, ..] = tail
                && NOT_OFFERED.contains(sub)
            {
                return Err(KubeStatus::forbidden(format!(
                    "the tenant API does not offer {sub}; use kubectl port-forward to reach a pod or Service"
                )));
            }
            Ok(Target::Namespaced {
                api,
                namespace: namespace.to_string(),
                tail: tail.iter().map(|t| t.to_string()).collect(),
            })
        }
        [_, ..] => Ok(Target::ClusterLevel {
            api,
            tail: after.iter().map(|t| t.to_string()).collect(),
        }),
        [] => Err(KubeStatus::not_found()),
    }
}

/// Whether the query asks for a watch (`watch=true`, `watch=1`).
pub fn is_watch(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes())
            .any(|(k, v)| k == "watch" && matches!(v.as_ref(), "true" | "1"))
    })
}

/// The verb for metrics, as the API server names verbs.
pub fn verb(method: &Method, rest: &str, query: Option<&str>) -> &'static str {
    let named = {
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let base = if rest.starts_with("/api/") { 2 } else { 3 };
        let after = &segments[base.min(segments.len())..];
        match after {
            // `namespaces/dev/pods` is a list; `namespaces/dev/pods/web[/log]` one object.
            ["namespaces", _, _, ..] => after.len() >= 4,
            _ => after.len() >= 2,
        }
    };
    match *method {
        Method::GET if is_watch(query) => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    }
}

fn percent_decode(segment: &str) -> Option<String> {
    if !segment.contains('%') {
        return Some(segment.to_string());
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_as_the_api_server_reads_them() {
        assert_eq!(classify("/").unwrap(), Target::Discovery);
        assert_eq!(classify("/apis/apps/v1").unwrap(), Target::Discovery);
        assert_eq!(classify("/openapi/v3/api/v1").unwrap(), Target::Discovery);
        assert_eq!(classify("/api/v1/namespaces").unwrap(), Target::Namespaces);
        assert_eq!(
            classify("/api/v1/namespaces/dev").unwrap(),
            Target::Namespace {
                name: "dev".into(),
                subresource: None
            }
        );
        let Target::Namespaced {
            api,
            namespace,
            tail,
        } = classify("/apis/apps/v1/namespaces/dev/deployments/web/scale").unwrap()
        else {
            panic!("not namespaced")
        };
        assert_eq!(api.path, "/apis/apps/v1");
        assert_eq!(namespace, "dev");
        assert_eq!(tail, ["deployments", "web", "scale"]);
        assert!(matches!(
            classify("/api/v1/pods").unwrap(),
            Target::ClusterLevel { .. }
        ));
    }

    #[test]
    fn sessions_are_namespaced_requests_and_proxy_is_refused_with_a_reason() {
        for sub in ["exec", "attach", "portforward", "log"] {
            let target = classify(&format!("/api/v1/namespaces/dev/pods/web/{sub}")).unwrap();
            assert!(matches!(target, Target::Namespaced { .. }), "{sub}");
        }
        let refused = classify("/api/v1/namespaces/dev/services/web/proxy").unwrap_err();
        assert_eq!(refused.code, 403);
        assert!(
            refused.message.contains("port-forward"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn verbs_are_named_as_the_api_server_names_them() {
        assert_eq!(
            verb(&Method::GET, "/api/v1/namespaces/dev/pods", None),
            "list"
        );
        assert_eq!(
            verb(&Method::GET, "/api/v1/namespaces/dev/pods/web", None),
            "get"
        );
        assert_eq!(
            verb(
                &Method::GET,
                "/api/v1/namespaces/dev/pods",
                Some("watch=true")
            ),
            "watch"
        );
        assert_eq!(verb(&Method::GET, "/api/v1/namespaces/dev", None), "get");
        assert_eq!(verb(&Method::GET, "/api/v1/namespaces", None), "list");
        assert_eq!(
            verb(
                &Method::DELETE,
                "/apis/apps/v1/namespaces/dev/deployments/web",
                None
            ),
            "delete"
        );
    }

    #[test]
    fn no_path_climbs_out_of_the_tenant() {
        for path in [
            "/openapi/../api/v1/namespaces",
            "/openapi/%2e%2e/api/v1/namespaces",
            "/api/v1/namespaces/dev/../../namespaces/kube-system/secrets",
            "/openapi/v3%2F..%2F..%2Fapi/v1/secrets",
            "/api/v1/namespaces/dev/./configmaps",
            "/api/v1/namespaces/dev/services/web:80/x/%252e%252e/proxy/admin",
            "/api/v1/namespaces/dev/%252e%252e/other/secrets",
            "/api/v1/namespaces/dev/services/web/proxy%3F",
            "/api/v1/namespaces/dev/services/web/proxy%23",
            "/api/v1/namespaces/dev/pods/web%0Aexec",
        ] {
            assert_eq!(classify(path).unwrap_err().code, 400, "{path}");
        }
    }

    #[test]
    fn escaped_segments_are_decoded_and_broken_ones_refused() {
        assert!(classify("/api/v1/namespaces/d%65v/pods").is_ok());
        assert_eq!(
            classify("/api/v1/namespaces/%zz/pods").unwrap_err().code,
            400
        );
    }
}
