//! The request grammar the server enforces, stated in the OpenAPI document:
//! patterns for slugs, namespace names, quantities, label keys and durations,
//! the formats of `If-Match`, `Idempotency-Key` and `Last-Event-ID`, the
//! change stream's event types, the configured clusters, and the `Allow`
//! header of every 405 answer. Kept beside the parsers in
//! `domain/` it mirrors; `tests/contract.rs` holds the two together.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{Operation, ParameterIn, ParameterStyle};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{OpenApi, RefOr, Schema};

use crate::error::Error;

/// `domain/slug.rs`: 3 to 20 characters, a letter first, no reserved name or prefix.
pub const SLUG: &str = "^(?!kube|openshift)(?!(system|default|tenant-portal|tenant|admin|api|cluster|node|monitoring|ingress|istio|linkerd|cilium|calico|flux|argocd|cert-manager)$)[a-z][a-z0-9-]{1,18}[a-z0-9]$";
/// `domain/namespace.rs`: a DNS-1123 label of at most 59 characters.
pub const NAMESPACE_NAME: &str = "^[a-z0-9]([a-z0-9-]{0,57}[a-z0-9])?$";
/// A template's name (`domain/template.rs::parse_name`).
pub const TEMPLATE_NAME: &str = "^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$";
/// `domain/platform_api.rs`: `<resource>.<group>`, a DNS label, then a DNS
/// subdomain with at least one dot (Kubernetes' own groups are refused).
pub const PLATFORM_API: &str =
    "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?){2,}$";
/// `domain/quantity.rs`, non-negative: digits with at most one point, then a
/// suffix or an exponent. Magnitudes of 10^21 and more are refused too.
pub const QUANTITY: &str =
    "^\\+?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][-+]?[0-9]+|[KMGTPE]i|[numkMGTPE])?$";
const QUALIFIED_NAME_PART: &str = "[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?";
const DNS_SUBDOMAIN: &str =
    "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*";
/// `domain/quota.rs`: a standard ResourceQuota name, `namespaces`, a
/// hugepages size, or a domain-qualified name.
const RESOURCE_STANDARD: &str = "cpu|memory|ephemeral-storage|requests\\.cpu|requests\\.memory|requests\\.storage|requests\\.ephemeral-storage|limits\\.cpu|limits\\.memory|limits\\.ephemeral-storage|pods|services|replicationcontrollers|resourcequotas|secrets|persistentvolumeclaims|configmaps|services\\.nodeports|services\\.loadbalancers|namespaces";
/// Object counts (`domain/quota.rs::COUNTS`) take whole numbers only.
const COUNT_RESOURCES: &[&str] = &[
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "services.nodeports",
    "services.loadbalancers",
    "namespaces",
];
/// A whole number: digits with a whole-number suffix or a positive exponent.
pub const WHOLE_QUANTITY: &str = "^\\+?[0-9]+([kMGTPE]|[KMGTPE]i|[eE]\\+?[0-9]+)?$";
/// Some visible character, since the server trims (a quota request's reason).
const NOT_BLANK: &str = "\\S";
/// `domain/mod.rs::parse_duration`: a whole number and a unit.
pub const DURATION: &str = "^[0-9]+[smhd]$";
/// `*` or a list of entity tags (RFC 9110); the API's own are quoted generations, `\"3\"`.
pub const IF_MATCH: &str = "^(\\*|(W/)?\"[!#-+\\--~]*\"( *, *(W/)?\"[!#-+\\--~]*\")*)$";
/// `api/events.rs`: the id of an event the stream sent, digits only.
pub const LAST_EVENT_ID: &str = "^[0-9]{1,18}$";
/// `api/idempotency.rs`: 1 to 255 visible ASCII characters.
pub const IDEMPOTENCY_KEY: &str = "^[!-~]{1,255}$";
/// No control characters (`domain/tenant.rs`), at least one visible one.
const DISPLAY_NAME: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$";
/// No control characters but newlines and tabs.
pub const DESCRIPTION: &str = "^[^\\u0000-\\u0008\\u000B-\\u001F\\u007F-\\u009F]*$";

fn resource_name() -> String {
    format!(
        "^({RESOURCE_STANDARD}|(requests\\.)?hugepages-{QUALIFIED_NAME_PART}|{DNS_SUBDOMAIN}/{QUALIFIED_NAME_PART})$"
    )
}

fn label_key() -> String {
    format!("^(?!tenant-portal\\.dev/(?!managed-by$))({DNS_SUBDOMAIN}/)?{QUALIFIED_NAME_PART}$")
}

fn string(pattern: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
}

/// A map of quota resource to quantity: a budget or a namespace's allocations.
pub fn quantities() -> Schema {
    let counts = COUNT_RESOURCES
        .iter()
        .fold(ObjectBuilder::new(), |object, name| {
            object.property(*name, string(WHOLE_QUANTITY))
        });
    counts
        .schema_type(Type::Object)
        .property_names(Some(string(&resource_name())))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(
            string(QUANTITY).into(),
        ))))
        .into()
}

/// Kubernetes labels: at most 32, keys `[prefix/]name`, values empty or a name part.
pub fn labels() -> Schema {
    label_map(false)
}

/// Labels as a merge patch: a `null` value removes the label.
pub fn label_patch() -> Schema {
    label_map(true)
}

fn label_map(nullable: bool) -> Schema {
    let value_pattern = format!("^({QUALIFIED_NAME_PART})?$");
    let or_null = |kind| match nullable {
        true => SchemaType::from_iter([kind, Type::Null]),
        false => SchemaType::Type(kind),
    };
    let value = string(&value_pattern).schema_type(or_null(Type::String));
    ObjectBuilder::new()
        .schema_type(or_null(Type::Object))
        .max_properties(Some(32))
        .property_names(Some(string(&label_key())))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(value.into()))))
        .into()
}

/// States the grammar of the parameters every operation shares, by name, and
/// the configured clusters as the choices for a new tenant's `cluster`.
pub fn describe_requests(doc: &mut OpenApi, clusters: &[&str]) {
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            for param in op.parameters.iter_mut().flatten() {
                let RefOr::T(param) = param else { continue };
                let tighter = match (&param.parameter_in, param.name.as_str()) {
                    (ParameterIn::Path, "slug") => Some(string(SLUG)),
                    (ParameterIn::Path, "name") => Some(string(NAMESPACE_NAME)),
                    (ParameterIn::Path, "api") => Some(string(PLATFORM_API)),
                    (ParameterIn::Path, "template") => Some(string(TEMPLATE_NAME)),
                    (ParameterIn::Path, "id") => Some(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))),
                    ),
                    // An example keeps generators that shy from quotes in headers on the grammar.
                    (ParameterIn::Header, "If-Match") => Some(string(IF_MATCH).examples(["\"3\""])),
                    (ParameterIn::Header, "Idempotency-Key") => {
                        Some(string(IDEMPOTENCY_KEY).examples(["create-acme-1"]))
                    }
                    (ParameterIn::Header, "Last-Event-ID") => {
                        Some(string(LAST_EVENT_ID).examples(["42"]))
                    }
                    (ParameterIn::Query, "timeout") => Some(string(DURATION)),
                    (ParameterIn::Query, "status") => Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some(["pending", "approved", "rejected"])),
                    ),
                    (ParameterIn::Query, "page_size") => Some(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(1))
                            .maximum(Some(500)),
                    ),
                    _ => None,
                };
                if let Some(schema) = tighter {
                    param.schema = Some(RefOr::T(schema.into()));
                }
                // The change stream's types, comma-separated: `type=tenant.ready,tenant.failed`.
                if matches!(param.parameter_in, ParameterIn::Query) && param.name == "type" {
                    param.schema = Some(RefOr::T(event_types()));
                    param.style = Some(ParameterStyle::Form);
                    param.explode = Some(false);
                }
            }
        }
    }
    describe_change_events(doc);
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    for (schema, property, grammar) in properties() {
        let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema) else {
            continue;
        };
        let Some(field) = object.properties.get_mut(property) else {
            continue;
        };
        grammar.apply(field);
    }
    if let Some(RefOr::T(Schema::Object(create))) = components.schemas.get_mut("CreateTenant")
        && let Some(RefOr::T(Schema::Object(cluster))) = create.properties.get_mut("cluster")
    {
        let mut choices: Vec<serde_json::Value> = clusters.iter().map(|c| (*c).into()).collect();
        choices.push(serde_json::Value::Null);
        cluster.enum_values = Some(choices);
    }
}

/// What a request body's field must look like beyond its JSON type.
enum Grammar {
    Text {
        pattern: &'static str,
        max_chars: Option<usize>,
    },
    Whole(fn() -> Schema),
    AtLeast(f64),
}

impl Grammar {
    fn apply(&self, field: &mut RefOr<Schema>) {
        match (self, field) {
            (Self::Text { pattern, max_chars }, RefOr::T(Schema::Object(object))) => {
                object.pattern = Some((*pattern).to_string());
                object.max_length = *max_chars;
            }
            (Self::AtLeast(minimum), RefOr::T(Schema::Object(object))) => {
                object.minimum = Some((*minimum).into());
            }
            (Self::Whole(make), field) => {
                let description = match &*field {
                    RefOr::T(Schema::Object(object)) => object.description.clone(),
                    _ => None,
                };
                let mut whole = make();
                if let Schema::Object(object) = &mut whole {
                    object.description = description;
                }
                *field = RefOr::T(whole);
            }
            _ => {}
        }
    }
}

fn text(pattern: &'static str) -> Grammar {
    Grammar::Text {
        pattern,
        max_chars: None,
    }
}

/// The body fields whose grammar the schema derived from the Rust types leaves out.
fn properties() -> Vec<(&'static str, &'static str, Grammar)> {
    let display_name = || Grammar::Text {
        pattern: DISPLAY_NAME,
        max_chars: Some(100),
    };
    let description = || Grammar::Text {
        pattern: DESCRIPTION,
        max_chars: Some(2000),
    };
    vec![
        ("CreateTenant", "slug", text(SLUG)),
        ("CreateTenant", "display_name", display_name()),
        ("CreateTenant", "description", description()),
        ("CreateTenant", "labels", Grammar::Whole(labels)),
        ("CreateTenant", "budget", Grammar::Whole(quantities)),
        ("CreateTenant", "ttl", text(DURATION)),
        ("TenantDocument", "slug", text(SLUG)),
        ("TenantDocument", "display_name", display_name()),
        ("TenantDocument", "description", description()),
        ("TenantDocument", "labels", Grammar::Whole(labels)),
        ("TenantDocument", "budget", Grammar::Whole(quantities)),
        ("TenantDocument", "ttl", text(DURATION)),
        ("NamespaceDocument", "name", text(NAMESPACE_NAME)),
        (
            "NamespaceDocument",
            "allocations",
            Grammar::Whole(quantities),
        ),
        ("CreateNamespace", "name", text(NAMESPACE_NAME)),
        ("CreateNamespace", "allocations", Grammar::Whole(quantities)),
        ("TenantPatch", "display_name", display_name()),
        ("TenantPatch", "description", description()),
        ("TenantPatch", "labels", Grammar::Whole(label_patch)),
        ("TenantPatch", "ttl", text(DURATION)),
        ("UpdateNamespace", "allocations", Grammar::Whole(quantities)),
        ("SetBudget", "budget", Grammar::Whole(quantities)),
        ("NewQuotaRequest", "tenant", text(SLUG)),
        ("NewQuotaRequest", "resource", Grammar::Whole(resource)),
        ("NewQuotaRequest", "amount", text(QUANTITY)),
        (
            "NewQuotaRequest",
            "reason",
            Grammar::Text {
                pattern: NOT_BLANK,
                max_chars: Some(2000),
            },
        ),
        ("Decision", "amount", text(QUANTITY)),
        ("CapacityRequest", "namespaces", Grammar::AtLeast(0.0)),
        ("CapacityRequest", "cpu", text(QUANTITY)),
        ("CapacityRequest", "memory", text(QUANTITY)),
        (
            "KubeconfigRequest",
            "expiration_seconds",
            Grammar::AtLeast(600.0),
        ),
    ]
}

fn event_type() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(super::events::KINDS))
}

fn event_types() -> Schema {
    ArrayBuilder::new().items(event_type()).into()
}

/// Each event of the change stream: its `data` line, whose `id` and `type`
/// the SSE `id:` and `event:` lines repeat.
fn describe_change_events(doc: &mut OpenApi) {
    let Some(get) = doc
        .paths
        .paths
        .get_mut("/events")
        .and_then(|i| i.get.as_mut())
    else {
        return;
    };
    let Some(RefOr::T(ok)) = get.responses.responses.get_mut("200") else {
        return;
    };
    let Some(RefOr::T(stream)) = ok.content.get_mut("text/event-stream") else {
        return;
    };
    let nullable_string =
        ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null]));
    let event = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "id",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))),
        )
        .property("type", event_type())
        .property("tenant", nullable_string)
        .property(
            "occurred_at",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .property("data", ObjectBuilder::new().schema_type(Type::Object))
        .required("id")
        .required("type")
        .required("tenant")
        .required("occurred_at")
        .required("data");
    stream.schema = Some(RefOr::T(event.into()));
}

fn resource() -> Schema {
    string(&resource_name()).into()
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.patch,
        &mut item.delete,
        &mut item.head,
        &mut item.options,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// What a replica keeps of the OpenAPI document once its routes are built:
/// the document as served, and each path's documented methods for
/// [`allow_on_405`]. The document itself, a tree of small strings and maps
/// several times the size of its JSON, is dropped (BENCHMARKS.md §3).
pub struct Published {
    json: Result<axum::body::Bytes, String>,
    /// (path template, its methods as an `Allow` header).
    paths: Vec<(String, String)>,
}

impl Published {
    pub fn new(doc: &OpenApi) -> Self {
        let json = serde_json::to_vec(doc).map(Into::into).map_err(|e| {
            tracing::error!(error = %e, "the OpenAPI document does not serialize; /api/v1/openapi.json answers 500");
            e.to_string()
        });
        let paths = doc
            .paths
            .paths
            .iter()
            .map(|(template, item)| {
                let methods: Vec<&str> = [
                    ("GET", item.get.is_some()),
                    ("HEAD", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ]
                .into_iter()
                .filter_map(|(method, present)| present.then_some(method))
                .collect();
                (template.clone(), methods.join(", "))
            })
            .collect();
        Self { json, paths }
    }

    /// The document as `/api/v1/openapi.json` serves it.
    pub fn json(&self) -> Result<axum::body::Bytes, Error> {
        self.json.clone().map_err(|e| {
            Error::Internal(anyhow::anyhow!(
                "the OpenAPI document does not serialize: {e}"
            ))
        })
    }

    /// The documented methods of the API path `path` (under `/api/v1`), as
    /// an `Allow` header; the most specific template wins, so
    /// `/tenants/acme:suspend` is `POST` while `/tenants/acme` is `GET, PUT, PATCH, DELETE`.
    pub fn allowed_methods(&self, path: &str) -> Option<&str> {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let (_, methods) = self
            .paths
            .iter()
            .filter_map(|(template, methods)| {
                let parts: Vec<&str> = template.split('/').collect();
                if parts.len() != segments.len() {
                    return None;
                }
                let mut literal = 0;
                for (part, segment) in parts.iter().zip(&segments) {
                    literal += segment_matches(part, segment)?;
                }
                Some((literal, methods))
            })
            .max_by_key(|(literal, _)| *literal)?;
        Some(methods)
    }
}

/// How many literal characters of the template `part` the concrete `segment`
/// matched, or `None` when it does not match.
fn segment_matches(part: &str, segment: &str) -> Option<usize> {
    match part.find('{') {
        None => (part == segment).then_some(part.len()),
        Some(open) => {
            let close = part.find('}')?;
            let (prefix, suffix) = (&part[..open], &part[close + 1..]);
            let middle = segment.strip_prefix(prefix)?.strip_suffix(suffix)?;
            (!middle.is_empty() && !middle.contains(':')).then_some(prefix.len() + suffix.len())
        }
    }
}

/// RFC 9110 §15.5.6: a method the document does not list for a path gets
/// 405 naming the methods it does, before any handler runs; and every 405
/// carries `Allow`.
pub async fn allow_on_405(
    State(published): State<Arc<Published>>,
    request: Request,
    next: Next,
) -> Response {
    let allowed = request
        .uri()
        .path()
        .strip_prefix("/api/v1")
        .and_then(|api_path| published.allowed_methods(api_path))
        .map(str::to_string);
    let method = request.method().as_str().to_string();
    let mut response = match &allowed {
        Some(methods) if !methods.split(", ").any(|m| m == method) => {
            Error::MethodNotAllowed(format!(
                "{method} is not allowed here; this route takes {methods} (see /api/v1/openapi.json)"
            ))
            .into_response()
        }
        _ => next.run(request).await,
    };
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && !response.headers().contains_key(header::ALLOW)
        && let Some(value) = allowed.and_then(|a| HeaderValue::from_str(&a).ok())
    {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}
