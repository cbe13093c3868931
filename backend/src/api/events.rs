//! `GET /api/v1/events`: the change stream as server-sent events. Every
//! event has an id from Postgres in commit order; a client that reconnects
//! with `Last-Event-ID` gets every later event exactly once.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use sqlx::PgPool;
use tokio::sync::broadcast::{self, error::RecvError};
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::ApiQuery;
use crate::app::AppState;
use crate::auth::Principal;
use crate::auth::policy::{Action, precheck};
use crate::db::{self, events::EventFilter, events::EventRow};
use crate::error::Error;
use crate::events::Notice;
use crate::service::access::load_authorized;

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
    /// Only these types, comma-separated: tenant.created, tenant.updated, tenant.ready, tenant.failed,
    /// tenant.suspended, tenant.resumed, tenant.deleting, tenant.deleted.
    #[serde(rename = "type")]
    kinds: Option<String>,
    /// Start after this id; the `Last-Event-ID` header wins. Without either,
    /// the stream starts with the next event; `0` replays all that are kept.
    after: Option<i64>,
}

/// The change stream (server-sent events; reconnect with `Last-Event-ID`).
#[utoipa::path(get, path = "/events", tag = "events", params(EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received")),
    responses((status = 200, description = "A stream of events", content_type = "text/event-stream", body = String)))]
async fn stream(
    State(app): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Error> {
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
                .and_then(|v| v.trim().parse::<i64>().ok())
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
    let member = match &who {
        Principal::User(user) if !user.admin => Some((user.email.clone(), user.groups.clone())),
        _ => None,
    };
    let filter = EventFilter {
        tenant: query.tenant,
        kinds,
        member,
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
    let reader = Reader {
        db: app.db.clone(),
        filter,
        after,
        notices,
        ready: VecDeque::new(),
    };
    Ok(Sse::new(futures::stream::unfold(reader, Reader::next)).keep_alive(KeepAlive::default()))
}

struct Reader {
    db: PgPool,
    filter: EventFilter,
    after: i64,
    notices: broadcast::Receiver<Notice>,
    ready: VecDeque<EventRow>,
}

impl Reader {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if let Some(row) = self.ready.pop_front() {
                self.after = row.id;
                return Some((Ok(to_sse(&row)), self));
            }
            let batch = match self.db.acquire().await {
                Ok(mut conn) => db::events::after(&mut conn, self.after, &self.filter, 200)
                    .await
                    .ok(),
                Err(_) => None,
            };
            match batch {
                Some(rows) if !rows.is_empty() => self.ready.extend(rows),
                // Nothing new (or the database hiccuped): sleep until the next notice.
                _ => match self.notices.recv().await {
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return None,
                },
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
