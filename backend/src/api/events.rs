//! `GET /api/v1/events`: the change stream as server-sent events. Every
//! event has an id from Postgres in commit order; a client that reconnects
//! with `Last-Event-ID` gets every later event exactly once. A stream lasts
//! only as long as the session or token that opened it, and each principal
//! may hold a bounded number open.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::Json;
use axum::extract::{FromRef, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, RETRY_AFTER};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::RecvError};
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::ApiQuery;
use crate::auth::policy::{Action, precheck, reach_limit};
use crate::auth::{AuthParts, Principal};
use crate::db::{self, events::EventFilter, events::EventRow};
use crate::error::Error;
use crate::events::Notice;
use crate::problem::{PROBLEM_JSON, Problem};
use crate::service::access::{load_authorized, visible_to};
use crate::state::AppState;

/// How often an open stream checks that the session or token behind it is
/// still valid (not expired, revoked or signed out).
const RECHECK: Duration = Duration::from_secs(5);

/// The event types a client may ask for.
pub const KINDS: [&str; 9] = [
    "tenant.created",
    "tenant.updated",
    "tenant.ready",
    "tenant.failed",
    "tenant.suspended",
    "tenant.resumed",
    "tenant.deleting",
    "tenant.deleted",
    "quota_request.decided",
];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// Only events of this tenant.
    tenant: Option<String>,
    /// Only these types, comma-separated (the document lists them).
    #[serde(rename = "type")]
    kinds: Option<String>,
    /// Start after this id; the `Last-Event-ID` header wins. Without either,
    /// the stream starts with the next event; `0` replays all that are kept.
    after: Option<i64>,
}

/// The change stream (server-sent events; reconnect with `Last-Event-ID`).
#[utoipa::path(get, path = "/events", tag = "events", params(EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received; 400 unless it is one (digits)")),
    responses((status = 200, description = "A stream of events: each one's `data` line is the JSON described here", content_type = "text/event-stream", body = String),
              (status = 429, description = "The caller has as many streams open as it may")))]
async fn stream(
    State(app): State<AppState>,
    Extension(streams): Extension<OpenStreams>,
    who: Principal,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Response, Error> {
    precheck(&who, Action::ReadTenants)?;
    let kinds = match &query.kinds {
        Some(list) => {
            let kinds: Vec<String> = list
                .split(',')
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
                .collect();
            if let Some(bad) = kinds.iter().find(|k| !KINDS.contains(&k.as_str())) {
                return Err(Error::invalid(
                    "query.type",
                    format!("unknown event type \"{bad}\"; use {}", KINDS.join(", ")),
                ));
            }
            Some(kinds)
        }
        None => None,
    };
    let last_event_id = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .filter(|v| (1..=18).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<i64>().ok())
                .ok_or_else(|| {
                    Error::BadRequest("Last-Event-ID must be the id of an event".into())
                })?,
        ),
        None => query.after,
    };
    let mut conn = app.db.acquire().await?;
    if let Some(slug) = &query.tenant {
        load_authorized(&mut conn, &who, slug, Action::ReadTenants).await?;
    }
    let filter = EventFilter {
        tenant: query.tenant,
        kinds,
        member: visible_to(&who),
        reach: reach_limit(&who),
    };
    let limit = app.config.login.max_event_streams;
    let Some(slot) = streams.open(who.key(), limit) else {
        return Ok(too_many_streams(limit));
    };
    // Subscribed before the first read, so no event slips between.
    let notices = app.events.subscribe();
    let after = match last_event_id {
        Some(id) => id,
        None => {
            sqlx::query_scalar!("SELECT last_id FROM event_sequence")
                .fetch_one(&mut *conn)
                .await?
        }
    };
    drop(conn);
    let credentials: HeaderMap = headers
        .iter()
        .filter(|(name, _)| *name == AUTHORIZATION || *name == COOKIE)
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let reader = Reader {
        auth: AuthParts::from_ref(&app),
        credentials,
        checked_at: Instant::now(),
        _slot: slot,
        filter,
        after,
        notices,
        ready: VecDeque::new(),
    };
    let events = futures::stream::unfold(reader, Reader::next);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn too_many_streams(limit: u32) -> Response {
    let problem = Problem {
        kind: "https://tenant-portal.dev/problems/too-many-streams".into(),
        title: "Too Many Requests".into(),
        status: StatusCode::TOO_MANY_REQUESTS.as_u16(),
        detail: format!(
            "this caller already has {limit} change streams open, as many as one principal may (--max-event-streams); close one, or follow several tenants in one stream"
        ),
        errors: Vec::new(),
    };
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(CONTENT_TYPE, PROBLEM_JSON), (RETRY_AFTER, "5")],
        Json(problem),
    )
        .into_response()
}

/// The change streams each principal holds open.
#[derive(Clone, Default)]
pub struct OpenStreams(Arc<Mutex<HashMap<String, u32>>>);

/// One open stream's place; dropped with the stream, which frees it.
struct StreamSlot {
    streams: OpenStreams,
    principal: String,
}

impl OpenStreams {
    /// A place for one more stream of `principal`, unless it holds `limit` already.
    fn open(&self, principal: String, limit: u32) -> Option<StreamSlot> {
        let mut open = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(principal.clone()).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            streams: self.clone(),
            principal,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .streams
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.principal) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.principal);
            }
        }
    }
}

struct Reader {
    auth: AuthParts,
    /// The request's Authorization and Cookie headers, checked again every [`RECHECK`].
    credentials: HeaderMap,
    checked_at: Instant,
    _slot: StreamSlot,
    filter: EventFilter,
    after: i64,
    notices: broadcast::Receiver<Notice>,
    ready: VecDeque<EventRow>,
}

impl Reader {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if self.checked_at.elapsed() >= RECHECK {
                // Fails closed: a database hiccup ends the stream too, and the
                // client resumes with Last-Event-ID.
                // A token's reach is read again: a tenant it created meanwhile
                // joins the stream, one no longer named on it leaves.
                let valid = if self.filter.reach.is_some() {
                    Principal::authenticate(&self.credentials, &self.auth)
                        .await
                        .map(|fresh| self.filter.reach = reach_limit(&fresh))
                } else {
                    Principal::still_valid(&self.credentials, &self.auth).await
                };
                if let Err(e) = valid {
                    tracing::info!(reason = %e, "change stream ended: its credentials are no longer valid");
                    return None;
                }
                self.checked_at = Instant::now();
            }
            if let Some(row) = self.ready.pop_front() {
                self.after = row.id;
                return Some((Ok(to_sse(&row)), self));
            }
            let batch = match self.auth.db.acquire().await {
                Ok(mut conn) => db::events::after(&mut conn, self.after, &self.filter, 200)
                    .await
                    .ok(),
                Err(_) => None,
            };
            match batch {
                Some(rows) if !rows.is_empty() => self.ready.extend(rows),
                // Nothing new (or the database hiccuped): sleep until the
                // next notice or the next check of the credentials.
                _ => {
                    let recheck =
                        tokio::time::sleep(RECHECK.saturating_sub(self.checked_at.elapsed()));
                    tokio::select! {
                        notice = self.notices.recv() => match notice {
                            Ok(_) | Err(RecvError::Lagged(_)) => {}
                            Err(RecvError::Closed) => return None,
                        },
                        () = recheck => {}
                    }
                }
            }
        }
    }
}

fn to_sse(row: &EventRow) -> Event {
    let body = serde_json::json!({
        "id": row.id,
        "type": row.kind,
        "tenant": row.tenant_slug,
        "occurred_at": row.occurred_at,
        "data": row.data,
    });
    Event::default()
        .id(row.id.to_string())
        .event(&row.kind)
        .data(body.to_string())
}
