//! The tenant API's wire: paths and queries with the cluster's names,
//! bodies read within the limit and converted inward, the headers kept on
//! answers, and watch streams as the API server writes them.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde_json::Value;

use super::MAX_BODY;
use super::fair::Admission;
use super::status::KubeStatus;

/// Query parameters a fanned-out list cannot honour across namespaces.
const PER_NAMESPACE_ONLY: [&str; 2] = ["limit", "continue"];

/// The path and query below `/k8s/tenants/<slug>`.
pub fn tenant_path(uri: &axum::http::Uri) -> String {
    let path = uri.path();
    let below = path
        .strip_prefix("/k8s/tenants/")
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("/");
    match uri.query() {
        Some(query) => format!("{below}?{query}"),
        None => below.to_string(),
    }
}

/// The query with field selectors in cluster names, `extra` set, and for a
/// fanned-out list, no paging.
pub fn convert_query(
    query: &str,
    names: &super::NameMap,
    extra: &[(&str, &str)],
    fanned_out: bool,
) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if extra.iter().any(|(k, _)| *k == key)
            || (fanned_out && PER_NAMESPACE_ONLY.contains(&key.as_ref()))
        {
            continue;
        }
        if key == "fieldSelector" {
            out.append_pair(&key, &names.field_selector_inward(&value));
        } else {
            out.append_pair(&key, &value);
        }
    }
    for (key, value) in extra {
        out.append_pair(key, value);
    }
    let encoded = out.finish();
    if encoded.is_empty() {
        String::new()
    } else {
        format!("?{encoded}")
    }
}

pub async fn read_body(body: Body) -> Result<Bytes, KubeStatus> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        KubeStatus::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("the request body is larger than the tenant API's limit of {MAX_BODY} bytes"),
        )
    })
}

/// An answer of the cluster read whole as JSON.
pub async fn json_body(body: Body) -> Result<Value, KubeStatus> {
    let bytes = read_body(body).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        KubeStatus::unavailable(format!(
            "the tenant's cluster answered something that is not JSON: {e}"
        ))
    })
}

/// A request body with the cluster's names. JSON in every patch flavour,
/// server-side apply's YAML, and in a protobuf object the namespace field
/// at `protobuf_namespace` (an object's metadata, or a review's).
pub fn body_inward(
    names: &super::NameMap,
    headers: &HeaderMap,
    body: Bytes,
    protobuf_namespace: &[u64],
) -> Result<Bytes, KubeStatus> {
    if body.is_empty() {
        return Ok(body);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if content_type.contains("protobuf") || super::protobuf::is_protobuf(&body) {
        let rename = |ns: &str| names.to_cluster(ns).map(str::to_string);
        // What cannot be read goes on as it is: the API server says what is wrong.
        return Ok(
            super::protobuf::rename_at(&body, protobuf_namespace, &rename)
                .map_or(body, Bytes::from),
        );
    }
    let parsed = serde_json::from_slice::<Value>(&body).ok().or_else(|| {
        content_type
            .contains("yaml")
            .then(|| {
                std::str::from_utf8(&body)
                    .ok()
                    .and_then(|s| serde_saphyr::from_str::<Value>(s).ok())
            })
            .flatten()
    });
    let Some(mut value) = parsed else {
        // The API server says what is wrong with it.
        return Ok(body);
    };
    names.body_inward(&mut value);
    Ok(Bytes::from(value.to_string()))
}

/// Whether the client asks for a `Table` (`kubectl get`).
pub fn is_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

/// The Accept header without protobuf: answers must be JSON to be converted.
pub fn json_accept(headers: &HeaderMap) -> HeaderValue {
    let asked = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let kept: Vec<&str> = asked
        .split(',')
        .map(str::trim)
        .filter(|range| !range.contains("protobuf"))
        .collect();
    if kept.is_empty() {
        return HeaderValue::from_static("application/json");
    }
    HeaderValue::from_str(&kept.join(",")).unwrap_or(HeaderValue::from_static("application/json"))
}

pub fn user_agent(headers: &HeaderMap, slug: &str) -> String {
    let client = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    format!("{client} via tenant-portal tenant API ({slug})")
}

pub fn kept_headers(from: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for name in [header::CONTENT_TYPE, header::RETRY_AFTER, header::WARNING] {
        if let Some(value) = from.get(&name) {
            kept.insert(name, value.clone());
        }
    }
    kept
}

/// An answer of the portal's own request, streamed through unchanged.
pub fn raw(answer: axum::http::Response<kube::client::Body>) -> Response {
    let (parts, body) = answer.into_parts();
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = parts.status;
    *response.headers_mut() = kept_headers(&parts.headers);
    response
}

pub fn json_response(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// Watch events, one JSON object per line as the API server streams them.
pub fn events<S, E>(bytes: S) -> impl Stream<Item = Value> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display,
{
    futures::stream::unfold(
        (Box::pin(bytes), Vec::<u8>::new(), false),
        |(mut bytes, mut buffer, mut ended)| async move {
            loop {
                if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    match serde_json::from_slice::<Value>(&line) {
                        Ok(event) => return Some((event, (bytes, buffer, ended))),
                        Err(_) => continue,
                    }
                }
                if ended {
                    let rest = std::mem::take(&mut buffer);
                    let event = serde_json::from_slice::<Value>(&rest).ok()?;
                    return Some((event, (bytes, buffer, ended)));
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "a watch of the tenant's cluster ended");
                        ended = true;
                    }
                    None => ended = true,
                }
            }
        },
    )
}

/// A watch answer: the events as the API server writes them, one per line.
pub fn watch_response(events: impl Stream<Item = Value> + Send + 'static) -> Response {
    let lines = events.map(|event| {
        let mut line = event.to_string().into_bytes();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    let mut response = Response::new(Body::from_stream(lines));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Keeps the tenant's in-flight (or watch) slot until the answer is sent:
/// at once for an answer already in memory, at its end for a stream.
pub fn hold_until_done(response: Response, admission: Admission) -> Response {
    use axum::body::HttpBody;
    if response.body().size_hint().exact().is_some() {
        drop(admission);
        return response;
    }
    let (parts, body) = response.into_parts();
    let stream = body.into_data_stream().map(move |chunk| {
        let _held = &admission;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}
