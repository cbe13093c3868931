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

/// Watch events, one JSON object per line as the API server streams them,
/// parsed; a line that is not JSON is dropped.
pub fn events<S, E>(bytes: S) -> impl Stream<Item = Value> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display,
{
    event_lines(bytes).filter_map(|line| std::future::ready(serde_json::from_slice(&line).ok()))
}

/// Watch events as the API server writes them, one JSON object a line,
/// each with its newline; lines of whitespace alone are skipped.
pub fn event_lines<S, E>(bytes: S) -> impl Stream<Item = Bytes> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display,
{
    let blank = |line: &[u8]| line.iter().all(u8::is_ascii_whitespace);
    futures::stream::unfold(
        (Box::pin(bytes), Vec::<u8>::new(), false),
        move |(mut bytes, mut buffer, mut ended)| async move {
            loop {
                if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    if blank(&line) {
                        continue;
                    }
                    return Some((Bytes::from(line), (bytes, buffer, ended)));
                }
                if ended {
                    let mut rest = std::mem::take(&mut buffer);
                    if blank(&rest) {
                        return None;
                    }
                    rest.push(b'\n');
                    return Some((Bytes::from(rest), (bytes, buffer, ended)));
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

/// One watch event's line with the tenant's names: as it came when it
/// cannot name them, renamed in one pass over its bytes where it can, and
/// through the tree otherwise (a `Status`); `None` (dropped) when it is not
/// JSON, as [`events`] drops it (checked first, without building a tree:
/// the byte scanner takes any balanced text).
pub fn event_line_outward(names: &super::NameMap, line: Bytes) -> Option<Bytes> {
    serde_json::from_slice::<serde::de::IgnoredAny>(&line).ok()?;
    if !names.may_rename(&line) {
        return Some(line);
    }
    if let Some(renamed) = names.bytes_outward(&line) {
        return Some(Bytes::from(renamed));
    }
    let mut event = serde_json::from_slice::<Value>(&line).ok()?;
    names.body_outward(&mut event);
    let mut out = event.to_string().into_bytes();
    out.push(b'\n');
    Some(Bytes::from(out))
}

/// A watch answer of lines already written (see [`event_lines`]).
pub fn watch_lines_response(lines: impl Stream<Item = Bytes> + Send + 'static) -> Response {
    let mut response = Response::new(Body::from_stream(
        lines.map(Ok::<_, std::convert::Infallible>),
    ));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
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

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> super::super::NameMap {
        super::super::NameMap::new([("dev".to_string(), "acme-dev".to_string())])
    }

    #[tokio::test]
    async fn watch_lines_are_renamed_as_the_tree_walk_renames_events() {
        let written = concat!(
            "{\"type\":\"ADDED\",\"object\":{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\",\"namespace\":\"acme-dev\"},\"data\":{\"namespace\":\"acme-dev\"}}}\n",
            "\n",
            "{\"type\":\"ADDED\",\"object\":{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"b\",\"namespace\":\"other\"}}}\n",
            "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"message\":\"namespaces \\\"acme-dev\\\" not found\"}}\n",
            "not json acme-dev\n",
            "{\"type\":\"DELETED\",\"object\":{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\",\"namespace\":\"acme-dev\"}}}",
        );
        // Cut anywhere, even inside a line.
        let chunks: Vec<Result<Bytes, std::convert::Infallible>> = written
            .as_bytes()
            .chunks(7)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let names = acme();
        let lines: Vec<Bytes> = event_lines(futures::stream::iter(chunks))
            .filter_map(|line| std::future::ready(event_line_outward(&names, line)))
            .collect()
            .await;
        let walked: Vec<Value> =
            events(futures::stream::iter(vec![
                Ok::<_, std::convert::Infallible>(Bytes::from_static(written.as_bytes())),
            ]))
            .map(|mut event| {
                names.body_outward(&mut event);
                event
            })
            .collect()
            .await;
        assert_eq!(lines.len(), walked.len());
        for (line, walked) in lines.iter().zip(&walked) {
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(&serde_json::from_slice::<Value>(line).unwrap(), walked);
        }
        assert_eq!(walked[0]["object"]["metadata"]["namespace"], "dev");
        assert_eq!(walked[0]["object"]["data"]["namespace"], "acme-dev");
        assert_eq!(
            walked[2]["object"]["message"],
            "namespaces \"dev\" not found"
        );
        assert_eq!(walked[3]["object"]["metadata"]["namespace"], "dev");
    }
}
