//! exec, attach and port-forward: connections the client upgrades (SPDY/3.1,
//! or WebSocket with the `v5.channel.k8s.io` family and port-forward's
//! tunnelled SPDY) and the gateway carries byte for byte. The upgrade is
//! asked of the API server as the caller's role account, on the path with
//! the cluster's names, so its RBAC and admission (a suspended tenant's
//! cordon) decide; a refusal comes back as the API server's `Status`. The
//! stream's content is never read; each session is in the audit trail with
//! who opened it, the pod, the container, the command and how it ended.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::fair::Admission;
use super::proxy::Context;
use super::status::KubeStatus;
use super::wire::{convert_query, user_agent};

/// Bytes read at a time each way (tokio's default is 8 KiB): a TLS record
/// holds up to 16 KiB, and a bulk copy (`exec -i`, port-forward) takes
/// fewer, larger reads and writes.
const COPY_BUFFER: usize = 64 * 1024;

/// What an upgraded request of the tenant API asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Attach,
    PortForward,
}

impl Kind {
    /// The subresource `pods/<name>/<sub>` names, if it is one of these.
    pub fn of(subresource: &str) -> Option<Self> {
        match subresource {
            "exec" => Some(Self::Exec),
            "attach" => Some(Self::Attach),
            "portforward" => Some(Self::PortForward),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Exec => "exec",
            Self::Attach => "attach",
            Self::PortForward => "portforward",
        }
    }
}

/// Request headers the handshake needs upstream, as the client sent them.
const HANDSHAKE_REQUEST: [HeaderName; 5] = [
    header::UPGRADE,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
    HeaderName::from_static("x-stream-protocol-version"),
];

/// Answer headers that complete the handshake for the client.
const HANDSHAKE_ANSWER: [HeaderName; 5] = [
    header::UPGRADE,
    header::CONNECTION,
    header::SEC_WEBSOCKET_ACCEPT,
    header::SEC_WEBSOCKET_PROTOCOL,
    HeaderName::from_static("x-stream-protocol-version"),
];

/// WebSocket clients may carry a bearer token as a subprotocol; only the
/// role account's token may reach the API server, so those entries go.
const BEARER_SUBPROTOCOL: &str = "base64url.bearer.authorization.k8s.io.";

/// The subprotocols offered, without any that carry a credential.
fn without_credentials(offered: &HeaderValue) -> Option<HeaderValue> {
    let kept: Vec<&str> = offered
        .to_str()
        .ok()?
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.starts_with(BEARER_SUBPROTOCOL))
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join(", ")).ok()
}

/// Whether the client asks to upgrade the connection.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Where a session's events are written.
struct Trail {
    db: sqlx::PgPool,
    slug: String,
    actor: String,
    request_id: Option<String>,
}

impl Trail {
    async fn write(&self, action: &str, details: &Value) -> Result<(), crate::error::Error> {
        crate::service::gateway::record_session(
            &self.db,
            &self.slug,
            &self.actor,
            action,
            details,
            self.request_id.as_deref(),
        )
        .await
    }

    /// The session's end, with how it ended; the session is over either way.
    async fn ended(&self, mut details: Value, outcome: String) {
        details["outcome"] = json!(outcome);
        if let Err(e) = self.write("tenant_api.session.ended", &details).await {
            tracing::error!(error = %e, tenant = %self.slug, session = %details,
                "failed to write a session's end to the audit trail");
        }
    }
}

/// One session as the audit trail shows it: who is added by the trail.
fn describe(kind: Kind, namespace: &str, pod: &str, query: &str) -> Value {
    let mut command = Vec::new();
    let mut ports = Vec::new();
    let mut container = None;
    let mut tty = false;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "command" => command.push(value.into_owned()),
            "ports" => ports.extend(value.split(',').map(str::to_string)),
            "container" => container = Some(value.into_owned()),
            "tty" => tty = matches!(value.as_ref(), "true" | "1"),
            _ => {}
        }
    }
    let mut details = json!({
        "kind": kind.name(),
        "namespace": namespace,
        "pod": pod,
        "container": container,
    });
    match kind {
        Kind::Exec => {
            details["command"] = json!(command);
            details["tty"] = json!(tty);
        }
        Kind::Attach => details["tty"] = json!(tty),
        // SPDY clients name their ports inside the stream, never in the URL.
        Kind::PortForward if ports.is_empty() => {
            details["ports"] = json!("named inside the stream")
        }
        Kind::PortForward => details["ports"] = json!(ports),
    }
    details
}

/// Opens the session: asks the API server to upgrade, answers the client's
/// upgrade with its answer, and carries the bytes until either side ends.
/// `path` is the cluster's; `namespace` and `pod` the tenant's names.
pub async fn open(
    ctx: &Context<'_>,
    kind: Kind,
    namespace: &str,
    path: &str,
    mut request: Request<Body>,
    admission: Admission,
) -> Result<Response, KubeStatus> {
    let pod = path.rsplit('/').nth(1).unwrap_or_default().to_string();
    if !matches!(*request.method(), Method::GET | Method::POST) {
        return Err(KubeStatus::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "{} is opened with GET (WebSocket) or POST (SPDY)",
                kind.name()
            ),
        ));
    }
    if !is_upgrade(request.headers()) {
        return Err(KubeStatus::bad_request(format!(
            "{} needs an upgraded connection (SPDY/3.1 or WebSocket over HTTP/1.1); kubectl and client-go open one",
            kind.name()
        )));
    }
    let query = request.uri().query().unwrap_or("").to_string();
    let session = describe(kind, namespace, &pod, &query);
    let converted = convert_query(&query, &ctx.caller.names, &[], false);
    let token = ctx.role_token().await?;
    // An upgrade is HTTP/1.1's.
    let mut upstream = ctx
        .upstream
        .http1
        .request(
            request.method().clone(),
            ctx.upstream.url(&format!("{path}{converted}")),
        )
        .bearer_auth(&*token)
        .header(header::CONNECTION, "Upgrade")
        .header(header::USER_AGENT, user_agent(request.headers(), ctx.slug));
    for name in &HANDSHAKE_REQUEST {
        for value in request.headers().get_all(name) {
            if *name == header::SEC_WEBSOCKET_PROTOCOL {
                if let Some(kept) = without_credentials(value) {
                    upstream = upstream.header(name, kept);
                }
                continue;
            }
            upstream = upstream.header(name, value);
        }
    }
    let trail = Trail {
        db: ctx.app.db.clone(),
        slug: ctx.slug.to_string(),
        actor: ctx.caller.holder.actor(ctx.slug),
        request_id: request
            .headers()
            .get(crate::state::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    // Fail closed, before the API server is asked (with WebSocket the
    // command starts at its upgrade): a session the trail cannot show is
    // not opened.
    trail
        .write("tenant_api.session.started", &session)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "failed to write a session's start to the audit trail");
            KubeStatus::unavailable(
                "the portal could not write the session to its audit trail; try again shortly",
            )
        })?;
    let client_side = hyper::upgrade::on(&mut request);
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(e) => {
            trail
                .ended(session, format!("the cluster did not answer: {e}"))
                .await;
            return Err(KubeStatus::unavailable(format!(
                "the tenant's cluster \"{}\" did not answer: {e}",
                ctx.upstream.cluster.name
            )));
        }
    };
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        // RBAC's or admission's refusal, in the API server's words.
        let outcome = format!("refused by the API server: {}", answer.status());
        trail.ended(session, outcome).await;
        return ctx.converted(answer).await;
    }
    let mut handshake = HeaderMap::new();
    for name in &HANDSHAKE_ANSWER {
        for value in answer.headers().get_all(name) {
            handshake.append(name, value.clone());
        }
    }
    let server_side = match answer.upgrade().await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            let outcome = format!("the cluster broke off after its upgrade: {e}");
            trail.ended(session, outcome).await;
            return Err(KubeStatus::unavailable(format!(
                "the tenant's cluster accepted the {} upgrade but broke off: {e}",
                kind.name()
            )));
        }
    };
    tokio::spawn(async move {
        let started = Instant::now();
        let _held = admission;
        let (outcome, sent, received) = match client_side.await {
            Ok(client) => {
                let mut client = TokioIo::new(client);
                let mut server = server_side;
                match tokio::io::copy_bidirectional_with_sizes(
                    &mut client,
                    &mut server,
                    COPY_BUFFER,
                    COPY_BUFFER,
                )
                .await
                {
                    Ok((sent, received)) => ("closed".to_string(), sent, received),
                    Err(e) => (format!("broken: {e}"), 0, 0),
                }
            }
            Err(e) => (
                format!("the client did not complete its upgrade: {e}"),
                0,
                0,
            ),
        };
        let mut details = session;
        details["seconds"] = json!(started.elapsed().as_secs_f64());
        details["bytes_from_client"] = json!(sent);
        details["bytes_to_client"] = json!(received);
        trail.ended(details, outcome).await;
    });
    let mut response = Response::new(Body::from(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = handshake;
    if !response.headers().contains_key(header::CONNECTION) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subprotocol_carrying_a_token_is_not_passed_on() {
        let offered = HeaderValue::from_static(
            "v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.c2VjcmV0, v4.channel.k8s.io",
        );
        assert_eq!(
            without_credentials(&offered).unwrap(),
            "v5.channel.k8s.io, v4.channel.k8s.io"
        );
        let only_a_token =
            HeaderValue::from_static("base64url.bearer.authorization.k8s.io.c2VjcmV0");
        assert!(without_credentials(&only_a_token).is_none());
    }

    #[test]
    fn the_audit_names_the_command_or_the_ports() {
        let exec = describe(
            Kind::Exec,
            "dev",
            "web",
            "command=sh&command=-c&command=date&container=app&stdout=true",
        );
        assert_eq!(exec["command"], json!(["sh", "-c", "date"]));
        assert_eq!(exec["container"], "app");
        let forward = describe(Kind::PortForward, "dev", "web", "ports=8080,9090");
        assert_eq!(forward["ports"], json!(["8080", "9090"]));
        let spdy = describe(Kind::PortForward, "dev", "web", "");
        assert_eq!(spdy["ports"], "named inside the stream");
    }
}
