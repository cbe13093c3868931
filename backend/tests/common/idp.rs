//! Dex from `deploy/dev/up`, and a cookie-keeping HTTP client that signs in
//! through its real login form, as a browser would.

#![allow(dead_code)]

use std::time::Duration;

use reqwest::redirect::Policy;
use serde_json::Value;
use tenant_portal::config::{LoginConfig, MachineClient, Secret};

use super::TestApp;

/// The public URL registered at Dex as the portal's redirect URI. Test
/// servers listen elsewhere; the sign-in helper carries the callback over.
pub const PUBLIC_URL: &str = "http://127.0.0.1:8080";

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the local stack with deploy/dev/up and source the stack.env it prints")
    })
}

/// Login against the stack's Dex, with `ci-platform` as a read-only machine client.
pub fn login_config() -> LoginConfig {
    LoginConfig {
        public_url: PUBLIC_URL.into(),
        oidc_issuer: Some(env("TP_IDP_ISSUER")),
        oidc_client_id: Some(env("TP_IDP_CLIENT_ID")),
        oidc_kubectl_client_id: Some(env("TP_IDP_KUBECTL_CLIENT_ID")),
        oidc_client_secret: Some(Secret::new(env("TP_IDP_CLIENT_SECRET"))),
        oidc_scopes: ["openid", "email", "profile", "groups"]
            .map(String::from)
            .to_vec(),
        oidc_groups_claim: "groups".into(),
        admin_groups: vec![env("TP_IDP_ADMIN_GROUP")],
        machine_clients: vec![MachineClient {
            client_id: env("TP_IDP_CI_CLIENT_ID"),
            scopes: vec![tenant_portal::auth::Scope::TenantsRead],
            all_tenants: false,
        }],
        session_idle_timeout: Duration::from_secs(3600),
        session_lifetime: Duration::from_secs(7200),
        oidc_trust_unverified_email: false,
        // The dev Dex has no trusted peers, so a client-credentials token names
        // only its own client as audience; production names the portal's
        // (Dex: trustedPeers and scope audience:server:client_id:<portal>).
        machine_audience: Some(env("TP_IDP_CI_CLIENT_ID")),
        max_event_streams: 5,
    }
}

/// A browser: cookies kept, redirects followed by hand.
pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
    pub csrf_token: String,
}

pub fn browser_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap()
}

fn location(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
}

fn absolute(url: &str, issuer: &str) -> String {
    if url.starts_with("http") {
        url.to_string()
    } else {
        let origin = issuer.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
        format!("{origin}{url}")
    }
}

/// Starts a sign-in at the portal and completes Dex's login form; answers
/// the callback URL Dex sends the browser to (not yet visited).
pub async fn dex_callback(
    client: &reqwest::Client,
    app: &TestApp,
    user: &str,
    return_to: &str,
) -> String {
    let issuer = env("TP_IDP_ISSUER");
    let start = client
        .get(format!(
            "{}/auth/login?return_to={}",
            app.base,
            urlencode(return_to)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        start.status(),
        303,
        "the portal sends the browser to the identity provider"
    );
    let mut url = location(&start).unwrap();
    let mut page = String::new();
    for _ in 0..10 {
        let response = client.get(&url).send().await.unwrap();
        match location(&response) {
            Some(next) => url = absolute(&next, &issuer),
            None => {
                page = response.text().await.unwrap();
                break;
            }
        }
    }
    let action = page
        .split("<form method=\"post\" action=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no login form at {url}: {page}"))
        .replace("&amp;", "&");
    let mut response = client
        .post(absolute(&action, &issuer))
        .form(&[
            ("login", env(&format!("TP_IDP_{user}_EMAIL"))),
            ("password", env(&format!("TP_IDP_{user}_PASSWORD"))),
        ])
        .send()
        .await
        .unwrap();
    for _ in 0..10 {
        let next = location(&response)
            .unwrap_or_else(|| panic!("Dex did not redirect after the login form"));
        if next.starts_with(PUBLIC_URL) {
            return next.replacen(PUBLIC_URL, &app.base, 1);
        }
        response = client.get(absolute(&next, &issuer)).send().await.unwrap();
    }
    panic!("Dex never redirected back to the portal");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Signs `user` (ADMIN, ALICE, BOB, CAROL) in and answers their browser.
pub async fn login_as(app: &TestApp, user: &str) -> Browser {
    let client = browser_client();
    let callback = dex_callback(&client, app, user, "/api/v1/me").await;
    let landed = client.get(&callback).send().await.unwrap();
    assert_eq!(
        landed.status(),
        303,
        "callback: {}",
        landed.text().await.unwrap()
    );
    assert_eq!(
        location(&landed).as_deref(),
        Some("/api/v1/me"),
        "back on the page asked for"
    );
    let me: Value = client
        .get(format!("{}/api/v1/me", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let csrf_token = me["csrf_token"]
        .as_str()
        .unwrap_or_else(|| panic!("not signed in: {me}"))
        .to_string();
    Browser {
        client,
        base: app.base.clone(),
        csrf_token,
    }
}

impl Browser {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    /// A change, with the session's CSRF token as the portal's pages send it.
    pub fn change(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .header("x-csrf-token", &self.csrf_token)
    }
}

/// A client-credentials access token for `ci-platform` from Dex.
pub async fn machine_token() -> String {
    let response: Value = reqwest::Client::new()
        .post(format!("{}/token", env("TP_IDP_ISSUER")))
        .basic_auth(
            env("TP_IDP_CI_CLIENT_ID"),
            Some(env("TP_IDP_CI_CLIENT_SECRET")),
        )
        .form(&[("grant_type", "client_credentials"), ("scope", "openid")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    response["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token: {response}"))
        .to_string()
}

/// An ID token for the portal's own client, by the password grant.
pub async fn password_grant_id_token(user: &str) -> String {
    id_token_by_password(user, None).await
}

/// An ID token for the public client `kubectl oidc-login` uses, by the
/// password grant (no secret, as a public client has none).
pub async fn kubectl_client_id_token(user: &str) -> String {
    id_token_by_password(user, Some(env("TP_IDP_KUBECTL_CLIENT_ID"))).await
}

async fn id_token_by_password(user: &str, public_client: Option<String>) -> String {
    let mut form = vec![
        ("grant_type", "password".to_string()),
        ("scope", "openid email groups".to_string()),
        ("username", env(&format!("TP_IDP_{user}_EMAIL"))),
        ("password", env(&format!("TP_IDP_{user}_PASSWORD"))),
    ];
    let request = reqwest::Client::new().post(format!("{}/token", env("TP_IDP_ISSUER")));
    let request = match public_client {
        Some(client_id) => {
            form.push(("client_id", client_id));
            request
        }
        None => request.basic_auth(env("TP_IDP_CLIENT_ID"), Some(env("TP_IDP_CLIENT_SECRET"))),
    };
    let response: Value = request
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    response["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no ID token: {response}"))
        .to_string()
}
