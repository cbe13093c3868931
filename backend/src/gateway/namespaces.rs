//! The tenant's namespaces as the tenant API serves them: read from the
//! cluster (only the tenant's, without the prefix), created and deleted
//! through the portal's own service calls, so the budget, the policy, the
//! audit trail and the sync status are the same as from the API or the
//! dashboard.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};

use super::proxy::Context;
use super::request::is_watch;
use super::status::KubeStatus;
use super::wire::{events, is_table, json_body, json_response, read_body, watch_response};
use crate::cluster::objects::{MANAGED_BY, MANAGER, TENANT_LABEL};
use crate::domain::Role;
use crate::error::Error;
use crate::service::{self, Precondition};

/// How long `kubectl create namespace` waits for the tenant to be Ready with
/// the new namespace, so the next command can use it.
const CREATE_WAIT: Duration = Duration::from_secs(10);

/// `/api/v1/namespaces`: list, watch, create.
pub async fn collection(ctx: &Context<'_>, request: Request<Body>) -> Result<Response, KubeStatus> {
    match *request.method() {
        Method::GET => list_or_watch(ctx, request.uri().query(), request.headers(), None).await,
        Method::POST => create(ctx, request).await,
        _ => Err(not_managed_here()),
    }
}

/// `/api/v1/namespaces/<name>`: get, delete, and server-side apply, which
/// creates a namespace the tenant does not have yet (Helm's
/// `--create-namespace`) and leaves one it has as it is.
pub async fn one(
    ctx: &Context<'_>,
    name: &str,
    subresource: Option<&str>,
    request: Request<Body>,
) -> Result<Response, KubeStatus> {
    if request.method() == Method::PATCH && subresource.is_none() && is_apply(request.headers()) {
        return apply(ctx, name, request).await;
    }
    let full = ctx
        .caller
        .names
        .to_cluster(name)
        .ok_or_else(|| KubeStatus::namespace_not_found(name))?
        .to_string();
    match (request.method().clone(), subresource) {
        (Method::GET, None | Some("status")) => {
            let answer = list_or_watch(ctx, None, request.headers(), Some(&full)).await?;
            if is_table(request.headers()) {
                return Ok(answer);
            }
            let list = json_body(answer.into_body()).await?;
            let namespace = list["items"]
                .get(0)
                .cloned()
                .ok_or_else(|| KubeStatus::namespace_not_found(name))?;
            Ok(json_response(StatusCode::OK, &as_namespace(namespace)))
        }
        (Method::DELETE, None) => delete(ctx, name, &full, request.headers()).await,
        _ => Err(not_managed_here()),
    }
}

fn not_managed_here() -> KubeStatus {
    KubeStatus::forbidden(
        "the portal manages the tenant's namespaces: kubectl may list, watch, get, create and delete them; labels, annotations and budgets are changed in the portal",
    )
}

/// Lists (or watches) the tenant's namespaces in the cluster, as the
/// portal, keeping only the tenant's and naming them as the tenant does.
async fn list_or_watch(
    ctx: &Context<'_>,
    query: Option<&str>,
    headers: &HeaderMap,
    only: Option<&str>,
) -> Result<Response, KubeStatus> {
    let names = ctx.caller.names.clone();
    let slug = ctx.slug.to_string();
    let path = namespaces_query(&names, ctx.slug, query, only);
    let answer = ctx.send_as_portal(&path, headers).await?;
    if is_watch(query) && answer.status().is_success() {
        let stream = Body::new(answer.into_body()).into_data_stream();
        let kept = events(stream).filter_map(move |mut event| {
            let keep =
                event["type"] == "BOOKMARK" || rename(&names, &slug, &mut event["object"], true);
            futures::future::ready(keep.then_some(event))
        });
        return Ok(watch_response(kept));
    }
    let status = answer.status();
    let mut value = json_body(Body::new(answer.into_body())).await?;
    if status.is_success() {
        for key in ["items", "rows"] {
            if let Some(items) = value.get_mut(key).and_then(Value::as_array_mut) {
                items.retain_mut(|item| {
                    let object = if key == "rows" {
                        &mut item["object"]
                    } else {
                        &mut *item
                    };
                    let kept = rename(&names, &slug, object, false);
                    if kept
                        && key == "rows"
                        && let Some(first) = item["cells"].get_mut(0)
                        && let Some(full) = first.as_str()
                        && let Some(short) = names.to_tenant(full)
                    {
                        *first = Value::String(short.to_string());
                    }
                    kept
                });
            }
        }
    } else {
        names.body_outward(&mut value);
    }
    Ok(json_response(status, &value))
}

/// `/api/v1/namespaces?…` for the tenant's namespaces only.
fn namespaces_query(
    names: &super::NameMap,
    slug: &str,
    query: Option<&str>,
    only: Option<&str>,
) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    let mut selector = format!("{TENANT_LABEL}={slug},{MANAGED_BY}={MANAGER}");
    let mut fields: Vec<String> = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "labelSelector" if !value.is_empty() => selector = format!("{selector},{value}"),
            "fieldSelector" => {
                fields.extend(value.split(',').map(|term| namespace_field(names, term)))
            }
            _ => {
                out.append_pair(&key, &value);
            }
        }
    }
    if let Some(full) = only {
        fields.push(format!("metadata.name={full}"));
    }
    out.append_pair("labelSelector", &selector);
    if !fields.is_empty() {
        out.append_pair("fieldSelector", &fields.join(","));
    }
    format!("/api/v1/namespaces?{}", out.finish())
}

/// A field selector term on namespaces, with the cluster's names.
fn namespace_field(names: &super::NameMap, term: &str) -> String {
    for op in ["!=", "==", "="] {
        if let Some((field, value)) = term.split_once(op) {
            if field.trim() == "metadata.name" {
                // A name that is not the tenant's matches nothing of the tenant's.
                let full = names.to_cluster(value.trim()).map_or_else(
                    || format!("{}-not-a-tenant-namespace", value.trim()),
                    str::to_string,
                );
                return format!("{field}{op}{full}");
            }
            return term.to_string();
        }
    }
    term.to_string()
}

/// Names a Namespace as the tenant does; `false` when it is not the tenant's.
/// A watch (`watching`) also sees namespaces made or removed after it began:
/// the tenant's when the portal labelled them so, since only the portal
/// labels namespaces, never for two tenants, and it never adopts one.
fn rename(names: &super::NameMap, slug: &str, object: &mut Value, watching: bool) -> bool {
    let Some(full) = object["metadata"]["name"].as_str() else {
        return false;
    };
    let labels = &object["metadata"]["labels"];
    let labelled = labels[TENANT_LABEL] == slug && labels[MANAGED_BY] == MANAGER;
    let short = match names.to_tenant(full) {
        Some(short) => short.to_string(),
        None => match full.strip_prefix(&format!("{slug}-")) {
            Some(short) if labelled && watching => short.to_string(),
            _ => return false,
        },
    };
    object["metadata"]["name"] = Value::String(short.clone());
    if let Some(labels) = object["metadata"]["labels"].as_object_mut()
        && labels.contains_key("kubernetes.io/metadata.name")
    {
        labels.insert("kubernetes.io/metadata.name".into(), Value::String(short));
    }
    true
}

fn as_namespace(mut namespace: Value) -> Value {
    namespace["kind"] = "Namespace".into();
    namespace["apiVersion"] = "v1".into();
    namespace
}

/// The caller as the portal's policy sees them, or a refusal for the
/// automation account, which changes nothing through the portal.
fn principal(ctx: &Context<'_>, doing: &str) -> Result<crate::auth::Principal, KubeStatus> {
    ctx.caller
        .holder
        .principal(&ctx.app.config.login.admin_groups)
        .ok_or_else(|| {
            KubeStatus::forbidden(format!(
                "namespaces \"{doing}\" is forbidden: the tenant's automation account is an editor; only an owner may create or delete namespaces"
            ))
        })
}

fn actor(who: &crate::auth::Principal, headers: &HeaderMap) -> service::Actor {
    let request_id = headers
        .get(crate::state::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    service::Actor::of(who, request_id)
}

/// The portal's refusal, as the API server would word it for namespaces.
fn refused(error: Error, name: &str) -> KubeStatus {
    match error {
        // The budget's namespace limit and the like: the tenant may not, now.
        Error::Conflict { .. } | Error::Refused { .. } | Error::NotFound(_) => {
            let status = KubeStatus::from(error);
            KubeStatus::forbidden(format!(
                "namespaces \"{name}\" is forbidden: {}",
                status.message
            ))
        }
        Error::Forbidden(message) => {
            KubeStatus::forbidden(format!("namespaces \"{name}\" is forbidden: {message}"))
        }
        other => other.into(),
    }
}

fn is_apply(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/apply-patch"))
}

fn refuse_dry_run(query: Option<&str>) -> Result<(), KubeStatus> {
    if form_urlencoded::parse(query.unwrap_or("").as_bytes()).any(|(k, _)| k == "dryRun") {
        return Err(KubeStatus::bad_request(
            "the tenant API does not dry-run namespace creation; the portal's checks run when you create it",
        ));
    }
    Ok(())
}

/// A Namespace as the client sent it: JSON, YAML or protobuf (name only).
fn namespace_body(body: &Bytes) -> Result<Value, KubeStatus> {
    if super::protobuf::is_protobuf(body) {
        let name = super::protobuf::read_at(body, super::protobuf::METADATA_NAME);
        return Ok(json!({"metadata": {"name": name}}));
    }
    let namespace: Value = serde_json::from_slice(body)
        .ok()
        .or_else(|| {
            std::str::from_utf8(body)
                .ok()
                .and_then(|s| serde_saphyr::from_str(s).ok())
        })
        .ok_or_else(|| {
            KubeStatus::bad_request("the body is not a Namespace in JSON, YAML or protobuf")
        })?;
    refuse_metadata(&namespace)?;
    Ok(namespace)
}

/// Labels a client may restate with the namespace's own name: the one every
/// namespace carries, and the one Helm puts on each namespace it creates.
const NAME_LABELS: [&str; 2] = ["kubernetes.io/metadata.name", "name"];

/// Namespace labels and annotations are the portal's (the tenant, its
/// policy, Pod Security); a client's own are refused naming the key rather
/// than dropped, except a label that only restates the name.
fn refuse_metadata(namespace: &Value) -> Result<(), KubeStatus> {
    let name = namespace["metadata"]["name"].as_str().unwrap_or_default();
    for field in ["labels", "annotations"] {
        let Some(entries) = namespace["metadata"][field].as_object() else {
            continue;
        };
        for (key, value) in entries {
            if field == "labels" && NAME_LABELS.contains(&key.as_str()) && value == name {
                continue;
            }
            let why = if key.contains("kubernetes.io/")
                || key.contains("k8s.io/")
                || key.starts_with("tenant-portal.dev/")
            {
                "it is reserved for the cluster and the portal"
            } else {
                "the portal sets a namespace's labels and annotations from the tenant and its policy"
            };
            return Err(KubeStatus {
                details: Some(json!({"name": name, "kind": "namespaces",
                    "causes": [{"field": format!("metadata.{field}"), "message": format!("{key}: {why}")}]})),
                ..KubeStatus::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    format!("Namespace \"{name}\" is invalid: metadata.{field}[{key}]: {why}"),
                )
            });
        }
    }
    Ok(())
}

/// `generateName`: the prefix and five characters of the API server's alphabet.
fn generated(prefix: &str) -> String {
    use rand::RngExt;
    // The API server's own alphabet: no vowels, no look-alike digits.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("{prefix}{suffix}")
}

/// `kubectl apply --server-side` of a Namespace: made when the tenant does
/// not have it, answered as it is when it does.
async fn apply(
    ctx: &Context<'_>,
    name: &str,
    request: Request<Body>,
) -> Result<Response, KubeStatus> {
    let (parts, body) = request.into_parts();
    refuse_dry_run(parts.uri.query())?;
    let body = read_body(body).await?;
    let namespace = namespace_body(&body)?;
    if let Some(named) = namespace["metadata"]["name"].as_str()
        && named != name
    {
        return Err(KubeStatus::bad_request(format!(
            "the body names the namespace \"{named}\" but the path \"{name}\""
        )));
    }
    if let Some(full) = ctx.caller.names.to_cluster(name) {
        let mut found = in_cluster(ctx, full)
            .await
            .unwrap_or_else(|| json!({"metadata": {"name": full}}));
        rename(&ctx.caller.names, ctx.slug, &mut found, false);
        return Ok(json_response(StatusCode::OK, &as_namespace(found)));
    }
    create_named(ctx, name, &parts.headers).await
}

async fn create(ctx: &Context<'_>, request: Request<Body>) -> Result<Response, KubeStatus> {
    let (parts, body) = request.into_parts();
    refuse_dry_run(parts.uri.query())?;
    let body: Bytes = read_body(body).await?;
    let namespace = namespace_body(&body)?;
    let name = match (
        namespace["metadata"]["name"].as_str(),
        namespace["metadata"]["generateName"].as_str(),
    ) {
        (Some(name), _) if !name.is_empty() => Some(name.to_string()),
        (_, Some(prefix)) if !prefix.is_empty() => Some(generated(prefix)),
        _ => None,
    };
    let Some(name) = name else {
        return Err(KubeStatus {
            details: Some(
                json!({"kind": "namespaces", "causes": [{"field": "metadata.name", "message": "Required value: name is required"}]}),
            ),
            ..KubeStatus::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                "Namespace \"\" is invalid: metadata.name: Required value: name is required",
            )
        });
    };
    if ctx.caller.names.to_cluster(&name).is_some() {
        return Err(KubeStatus {
            details: Some(json!({"name": name, "kind": "namespaces"})),
            ..KubeStatus::new(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("namespaces \"{name}\" already exists"),
            )
        });
    }
    create_named(ctx, &name, &parts.headers).await
}

async fn create_named(
    ctx: &Context<'_>,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response, KubeStatus> {
    let who = principal(ctx, name)?;
    let actor = actor(&who, headers);
    let created = service::namespaces::create(
        &ctx.app.db,
        &ctx.app.clusters,
        &who,
        &actor,
        ctx.slug,
        &Precondition::None,
        service::namespaces::NewNamespace {
            name,
            allocations: &BTreeMap::new(),
        },
    )
    .await
    .map_err(|e| refused(e, name))?;
    ctx.gateway.forget(ctx.slug);
    let full = created
        .namespaces
        .iter()
        .find(|n| n.name == name)
        .map(|n| n.full_name.clone())
        .unwrap_or_default();
    let names = ctx.caller.names.clone().plus(name, &full);
    // Answer once the namespace, its quota and its bindings are in the
    // cluster, so the next kubectl command can use it.
    crate::events::until_ready(&ctx.app.db, &ctx.app.events, ctx.slug, CREATE_WAIT).await?;
    if let Some(mut found) = in_cluster(ctx, &full).await {
        rename(&names, ctx.slug, &mut found, false);
        return Ok(json_response(StatusCode::CREATED, &as_namespace(found)));
    }
    // Accepted and on its way: the reconciler creates it shortly.
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "status": {"phase": "Active"}}),
    ))
}

/// The namespace as the cluster has it now, read as the portal.
async fn in_cluster(ctx: &Context<'_>, full: &str) -> Option<Value> {
    let path = format!(
        "/api/v1/namespaces?labelSelector={TENANT_LABEL}%3D{}%2C{MANAGED_BY}%3D{MANAGER}&fieldSelector=metadata.name%3D{full}",
        ctx.slug
    );
    let answer = ctx.send_as_portal(&path, &HeaderMap::new()).await.ok()?;
    if !answer.status().is_success() {
        return None;
    }
    let list = json_body(Body::new(answer.into_body())).await.ok()?;
    list["items"].get(0).cloned()
}

async fn delete(
    ctx: &Context<'_>,
    name: &str,
    full: &str,
    headers: &HeaderMap,
) -> Result<Response, KubeStatus> {
    let who = principal(ctx, name)?;
    let actor = actor(&who, headers);
    let before = in_cluster(ctx, full).await;
    service::namespaces::delete(
        &ctx.app.db,
        &who,
        &actor,
        ctx.slug,
        &Precondition::None,
        name,
    )
    .await
    .map_err(|e| refused(e, name))?;
    ctx.gateway.forget(ctx.slug);
    let mut namespace = before.unwrap_or_else(|| json!({"metadata": {"name": full}}));
    rename(&ctx.caller.names, ctx.slug, &mut namespace, false);
    namespace["status"] = json!({"phase": "Terminating"});
    Ok(json_response(StatusCode::OK, &as_namespace(namespace)))
}

/// `kubectl auth can-i create namespaces`: answered by the portal's policy,
/// which is what decides; `None` for any other review.
pub fn review(ctx: &Context<'_>, body: &[u8]) -> Option<Response> {
    use super::protobuf::{
        ACCESS_REVIEW_GROUP, ACCESS_REVIEW_RESOURCE, ACCESS_REVIEW_VERB, read_at,
    };
    let (mut review, verb) = if super::protobuf::is_protobuf(body) {
        let resource = read_at(body, ACCESS_REVIEW_RESOURCE)?;
        let group = read_at(body, ACCESS_REVIEW_GROUP).unwrap_or_default();
        let verb = read_at(body, ACCESS_REVIEW_VERB).unwrap_or_default();
        let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "metadata": {}, "spec": {"resourceAttributes": {"group": group, "resource": resource, "verb": verb}}});
        (review, verb)
    } else {
        let review: Value = serde_json::from_slice(body).ok()?;
        let verb = review["spec"]["resourceAttributes"]["verb"]
            .as_str()
            .unwrap_or("")
            .to_string();
        (review, verb)
    };
    let attributes = &review["spec"]["resourceAttributes"];
    if review["kind"] != "SelfSubjectAccessReview"
        || attributes["resource"] != "namespaces"
        || !attributes["group"].as_str().unwrap_or("").is_empty()
    {
        return None;
    }
    let verb = verb.as_str();
    let editable = ctx.caller.tenant.view.state.is_editable();
    let allowed = match verb {
        "get" | "list" | "watch" => true,
        "create" | "delete" => {
            ctx.caller.role == Role::Owner && editable && ctx.caller.holder.principal(&[]).is_some()
        }
        _ => false,
    };
    let reason = if allowed {
        format!("the tenant API allows {verb} on the tenant's namespaces to this role")
    } else {
        format!(
            "the tenant API allows list, watch and get of namespaces to every member, and create and delete to owners; {verb} is not allowed to this caller"
        )
    };
    review["status"] = json!({"allowed": allowed, "reason": reason});
    Some(json_response(StatusCode::CREATED, &review))
}
