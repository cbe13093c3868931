//! `/auth/login`, `/auth/callback` and `/auth/logout`: the browser side of
//! the authorization code flow.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::AuthParts;
use super::oidc::LoginError;
use super::session::{self, LOGIN_COOKIE, SESSION_COOKIE};
use super::{Principal, constant_time_eq};
use crate::db;
use crate::error::Error;
use crate::page;

/// The sign-in routes, over any state that hands over [`AuthParts`].
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    AuthParts: axum::extract::FromRef<S>,
{
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", post(logout))
}

/// Only a path on this site: it starts with one `/`, and neither it nor its
/// percent-decoded form holds a backslash, a control or a whitespace
/// character, or a second `/` right after the first. Browsers read `//host`,
/// `/\host` and `/\t/host` as another site.
pub fn local_path(requested: Option<&str>) -> String {
    match requested {
        Some(path)
            if is_local_path(path) && percent_decode(path).is_some_and(|d| is_local_path(&d)) =>
        {
            path.to_string()
        }
        _ => "/".to_string(),
    }
}

fn is_local_path(path: &str) -> bool {
    let mut chars = path.chars();
    chars.next() == Some('/')
        && !matches!(chars.next(), Some('/' | '\\'))
        && !path
            .chars()
            .any(|c| c == '\\' || c.is_control() || c.is_whitespace())
}

/// `%XX` escapes decoded; `None` when the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn failed(status: StatusCode, text: &str) -> Response {
    crate::metrics::global().login(match status {
        StatusCode::FORBIDDEN => "denied",
        StatusCode::BAD_GATEWAY => "unreachable",
        _ => "refused",
    });
    page::message(
        status,
        "Sign-in failed",
        text,
        ("/auth/login", "Sign in again"),
    )
}

#[derive(Deserialize)]
struct LoginQuery {
    return_to: Option<String>,
}

async fn login(
    State(app): State<AuthParts>,
    Query(query): Query<LoginQuery>,
) -> Result<Response, Error> {
    let Some(login) = &app.login else {
        return Ok(page::message(
            StatusCode::NOT_FOUND,
            "Sign-in is not configured",
            "This portal has no identity provider configured (--oidc-issuer); use a service token for the API.",
            ("/", "Home"),
        ));
    };
    let pending = match login.start().await {
        Ok(pending) => pending,
        Err(e) => {
            tracing::warn!(error = %e, "login could not start");
            return Ok(failed(StatusCode::BAD_GATEWAY, &e.to_string()));
        }
    };
    let return_to = local_path(query.return_to.as_deref());
    let mut conn = app.db.acquire().await?;
    db::sessions::insert_login(
        &mut conn,
        &pending.state,
        &pending.pkce_verifier,
        &pending.nonce,
        &return_to,
    )
    .await?;
    let mut response = Redirect::to(&pending.url).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(&app, LOGIN_COOKIE, &pending.state, 600, "/auth"),
    );
    Ok(response)
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(
    State(app): State<AuthParts>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, Error> {
    let Some(login) = &app.login else {
        return Ok(failed(StatusCode::NOT_FOUND, "sign-in is not configured"));
    };
    if let Some(error) = &query.error {
        let why = query
            .error_description
            .as_deref()
            .unwrap_or(match error.as_str() {
                "access_denied" => "access was denied",
                _ => "no reason given",
            });
        return Ok(failed(
            StatusCode::FORBIDDEN,
            &format!("the identity provider refused the sign-in ({error}: {why})"),
        ));
    }
    let (Some(code), Some(state)) = (&query.code, &query.state) else {
        return Ok(failed(
            StatusCode::BAD_REQUEST,
            "the identity provider sent no code or state",
        ));
    };
    let started_here =
        session::cookie(&headers, LOGIN_COOKIE).is_some_and(|c| constant_time_eq(&c, state));
    if !started_here {
        return Ok(failed(
            StatusCode::BAD_REQUEST,
            "this sign-in was not started in this browser (the state does not match)",
        ));
    }
    let mut conn = app.db.acquire().await?;
    let Some(attempt) = db::sessions::take_login(&mut conn, state).await? else {
        return Ok(failed(
            StatusCode::BAD_REQUEST,
            "this sign-in was already used or has expired",
        ));
    };
    drop(conn);
    let identity = match login
        .finish(code, &attempt.pkce_verifier, &attempt.nonce)
        .await
    {
        Ok(identity) => identity,
        Err(e) => {
            tracing::warn!(error = %e, "login failed");
            let status = match e {
                LoginError::Unreachable { .. } => StatusCode::BAD_GATEWAY,
                LoginError::Refused(_) | LoginError::Invalid(_) => StatusCode::BAD_REQUEST,
                LoginError::UnverifiedEmail(_) => StatusCode::FORBIDDEN,
            };
            return Ok(failed(status, &e.to_string()));
        }
    };
    let cookie = session::create(&app, &identity).await?;
    crate::metrics::global().login("success");
    tracing::info!(email = %identity.email, groups = ?identity.groups, "signed in");
    let lifetime = app.config.login.session_lifetime.as_secs();
    // Checked again: the row may predate a stricter rule.
    let mut response = Redirect::to(&local_path(Some(&attempt.return_to))).into_response();
    let cookies = response.headers_mut();
    cookies.append(
        header::SET_COOKIE,
        session::set_cookie(&app, SESSION_COOKIE, &cookie, lifetime, "/"),
    );
    cookies.append(
        header::SET_COOKIE,
        session::set_cookie(&app, LOGIN_COOKIE, "", 0, "/auth"),
    );
    Ok(response)
}

/// Ends the session. The Principal extractor has checked the CSRF token.
async fn logout(
    State(app): State<AuthParts>,
    headers: HeaderMap,
    who: Principal,
) -> Result<Response, Error> {
    if let (Principal::User(_), Some(cookie)) = (&who, session::from_cookies(&headers)) {
        session::end(&app, &cookie).await?;
    }
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(&app, SESSION_COOKIE, "", 0, "/"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(
            local_path(Some("/tenants/acme?tab=usage")),
            "/tenants/acme?tab=usage"
        );
        for hostile in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "evil",
            "/a\r\nSet-Cookie: x",
            "/%09/evil.example",
            "/\t/evil.example",
            "/%2F/evil.example",
            "/%5Cevil.example",
            "/%5cevil.example",
            "/a%0d%0aSet-Cookie:%20x",
            "/a b",
            "/%E2%80%A8evil",
            "/%FF",
            "",
        ] {
            assert_eq!(local_path(Some(hostile)), "/", "{hostile}");
        }
        assert_eq!(local_path(None), "/");
        assert_eq!(
            local_path(Some("/tenants/acme%2Dprod?tab=usage")),
            "/tenants/acme%2Dprod?tab=usage",
            "escapes that decode to plain characters stay"
        );
    }
}
