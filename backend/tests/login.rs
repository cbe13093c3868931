//! Employee login through the real Dex of `deploy/dev/up`: the code flow,
//! sessions, CSRF, the one policy, and client-credentials machine tokens.

mod common;

use common::idp::{
    PUBLIC_URL, browser_client, dex_callback, login_as, login_config, machine_token,
    password_grant_id_token,
};
use common::{TestApp, config, problem, spawn_app_config};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use tenant_portal::config::ServeConfig;

const MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

async fn spawn(db: PgPool) -> TestApp {
    let app = spawn_app_config(
        db,
        ServeConfig {
            login: login_config(),
            ..config()
        },
        Default::default(),
    )
    .await;
    for (slug, group) in [("acme", "team-acme"), ("globex", "team-globex")] {
        app.create_tenant(json!({"slug": slug, "members": [{"kind": "group", "subject": group, "role": "owner"}]})).await;
    }
    app
}

fn slugs(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap().to_string())
        .collect()
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn employees_see_and_do_what_their_groups_and_roles_allow(db: PgPool) {
    let app = spawn(db).await;

    let admin = login_as(&app, "ADMIN").await;
    let me: Value = admin.get("/api/v1/me").await.json().await.unwrap();
    assert_eq!(me["kind"], "user");
    assert_eq!(me["admin"], true, "{me}");
    assert_eq!(
        slugs(&admin.get("/api/v1/tenants").await.json().await.unwrap()),
        ["acme", "globex"]
    );

    let alice = login_as(&app, "ALICE").await;
    let me: Value = alice.get("/api/v1/me").await.json().await.unwrap();
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["groups"], json!(["team-acme"]));
    assert_eq!(me["admin"], false);
    assert_eq!(me["tenants"], json!([{"slug": "acme", "role": "owner"}]));
    assert_eq!(
        slugs(&alice.get("/api/v1/tenants").await.json().await.unwrap()),
        ["acme"],
        "an owner sees exactly her tenants"
    );
    let (status, body) = problem(alice.get("/api/v1/tenants/globex").await).await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (404, Some("there is no tenant \"globex\"")),
        "another team's tenant answers as a missing one: {body}"
    );
    let patched = alice
        .change(Method::PATCH, "/api/v1/tenants/acme")
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"description": "Payments"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200, "owners change their tenant");
    let budget = alice
        .change(Method::PUT, "/api/v1/tenants/acme/budget")
        .json(&json!({"budget": {"pods": "100"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem(budget).await.0,
        403,
        "budgets are for platform admins"
    );

    let carol = login_as(&app, "CAROL").await;
    assert!(
        slugs(&carol.get("/api/v1/tenants").await.json().await.unwrap()).is_empty(),
        "a user in no group sees none"
    );
    assert_eq!(
        problem(carol.get("/api/v1/tenants/acme").await).await.0,
        404
    );
    let created = carol
        .change(Method::POST, "/api/v1/tenants")
        .json(&json!({"slug": "carols"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "every employee may start a tenant");
    let tenant: Value = created.json().await.unwrap();
    assert_eq!(tenant["members"][0]["subject"], "carol@example.com");
    assert_eq!(tenant["members"][0]["role"], "owner", "and owns it");

    let events: Value = admin
        .get("/api/v1/audit-events?tenant=carols")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events["items"][0]["actor"], "user:carol@example.com");
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_forged_or_replayed_state_is_refused(db: PgPool) {
    let app = spawn(db).await;
    let client = browser_client();
    let callback = dex_callback(&client, &app, "ALICE", "/").await;

    let forged = callback.replace("state=", "state=forged");
    let response = client.get(&forged).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("not started in this browser")
    );

    let stranger = browser_client();
    let response = stranger.get(&callback).send().await.unwrap();
    assert_eq!(
        response.status(),
        400,
        "another browser cannot finish this sign-in"
    );

    assert_eq!(
        client.get(&callback).send().await.unwrap().status(),
        303,
        "the real callback signs in"
    );
    assert_eq!(
        client.get(&callback).send().await.unwrap().status(),
        400,
        "the login cookie is gone after use"
    );
    // Even with the login cookie replayed too, the state was used up.
    let state = callback
        .split("state=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let replayed = reqwest::Client::new()
        .get(&callback)
        .header("cookie", format!("tp_login={state}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 400);
    assert!(replayed.text().await.unwrap().contains("already used"));
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(sessions, 1, "one sign-in, one session");
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_wrong_nonce_is_refused(db: PgPool) {
    let app = spawn(db).await;
    let client = browser_client();
    let callback = dex_callback(&client, &app, "ALICE", "/").await;
    sqlx::query("UPDATE login_attempts SET nonce = 'not-the-one-sent'")
        .execute(&app.db)
        .await
        .unwrap();
    let response = client.get(&callback).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let page = response.text().await.unwrap();
    assert!(page.contains("failed verification"), "{page}");
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(sessions, 0);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn sign_in_lands_only_on_local_paths(db: PgPool) {
    let app = spawn(db).await;
    let client = browser_client();
    let callback = dex_callback(&client, &app, "BOB", "https://evil.example/steal").await;
    let landed = client.get(&callback).send().await.unwrap();
    assert_eq!(landed.headers()["location"], "/");
    let cookie = landed
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("tp_session="))
        .unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain http on loopback only: {cookie}"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn sign_in_returns_only_to_a_path_on_the_portal(db: PgPool) {
    let app = spawn(db).await;
    for hostile in [
        "/\t/evil.example",
        "/%09/evil.example",
        "//evil.example",
        "/\\evil",
        "/%5Cevil",
        "/%2F/evil.example",
        "/ /evil.example",
        "https://evil.example/steal",
        "javascript:alert(1)",
    ] {
        let client = browser_client();
        let callback = dex_callback(&client, &app, "BOB", hostile).await;

        let landed = client.get(&callback).send().await.unwrap();

        assert_eq!(landed.status(), 303, "{hostile}");
        assert_eq!(
            landed.headers()["location"],
            "/",
            "{hostile:?} falls back to the portal's home"
        );
    }

    let client = browser_client();
    let callback = dex_callback(&client, &app, "BOB", "/tenants/globex?tab=usage").await;
    let landed = client.get(&callback).send().await.unwrap();
    assert_eq!(
        landed.headers()["location"],
        "/tenants/globex?tab=usage",
        "a path on the portal is kept"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn an_expired_or_idle_session_is_refused(db: PgPool) {
    let app = spawn(db).await;
    let alice = login_as(&app, "ALICE").await;
    assert_eq!(alice.get("/api/v1/me").await.status(), 200);
    sqlx::query("UPDATE sessions SET last_seen_at = now() - interval '2 hours'")
        .execute(&app.db)
        .await
        .unwrap();
    let (status, body) = problem(alice.get("/api/v1/me").await).await;
    assert_eq!(status, 401, "idle too long");
    assert!(body["detail"].as_str().unwrap().contains("sign in again"));

    let bob = login_as(&app, "BOB").await;
    sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE email = 'bob@example.com'")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(
        problem(bob.get("/api/v1/me").await).await.0,
        401,
        "past its lifetime"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_change_without_csrf_token_is_refused_and_changes_nothing(db: PgPool) {
    let app = spawn(db).await;
    let alice = login_as(&app, "ALICE").await;
    let url = format!("{}/api/v1/tenants/acme", alice.base);
    let before: Value = alice
        .get("/api/v1/tenants/acme")
        .await
        .json()
        .await
        .unwrap();

    let forged = alice
        .client
        .patch(&url)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"description": "pwned"}"#);
    assert_eq!(problem(forged.send().await.unwrap()).await.0, 403);
    let foreign = alice
        .client
        .patch(&url)
        .header("origin", "https://evil.example")
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"description": "pwned"}"#);
    assert_eq!(problem(foreign.send().await.unwrap()).await.0, 403);
    let form = alice
        .client
        .post(format!("{}/auth/logout", alice.base))
        .form(&[("x", "y")]);
    assert_eq!(
        form.send().await.unwrap().status(),
        403,
        "a form post without a token does not sign out"
    );

    let after: Value = alice
        .get("/api/v1/tenants/acme")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["generation"], before["generation"], "nothing changed");
    assert_eq!(
        alice.get("/api/v1/me").await.status(),
        200,
        "still signed in"
    );

    let same_origin = alice
        .client
        .patch(&url)
        .header("origin", PUBLIC_URL)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"description": "ok"}"#);
    assert_eq!(
        same_origin.send().await.unwrap().status(),
        200,
        "the portal's own pages may change state"
    );

    let out = alice
        .change(Method::POST, "/auth/logout")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert_eq!(
        problem(alice.get("/api/v1/me").await).await.0,
        401,
        "signed out"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn client_credentials_tokens_get_the_scopes_their_mapping_grants_and_no_more(db: PgPool) {
    let app = spawn(db).await;
    let token = machine_token().await;
    let api = |method: Method, path: &str| {
        app.client
            .request(method, format!("{}{path}", app.base))
            .bearer_auth(&token)
    };
    let me: Value = api(Method::GET, "/api/v1/me")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["kind"], "machine");
    assert_eq!(me["scopes"], json!(["tenants:read"]));
    assert_eq!(
        api(Method::GET, "/api/v1/tenants")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (status, body) = problem(
        api(Method::POST, "/api/v1/tenants")
            .json(&json!({"slug": "robots"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    assert!(body["detail"].as_str().unwrap().contains("tenants:write"));

    // An ID token issued to the portal's own client is for another audience.
    let id_token = password_grant_id_token("ALICE").await;
    let (status, _) = problem(
        app.client
            .get(format!("{}/api/v1/tenants", app.base))
            .bearer_auth(id_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    // Change one character of the signature to another.
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{signed}.{flipped}{}", &signature[1..]);
    let (status, _) = problem(
        app.client
            .get(format!("{}/api/v1/tenants", app.base))
            .bearer_auth(tampered)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401, "a bad signature is refused");
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_machine_token_for_another_audience_than_the_portals_is_refused(db: PgPool) {
    let mut login = login_config();
    login.machine_audience = None;
    let app = spawn_app_config(db, ServeConfig { login, ..config() }, Default::default()).await;
    let token = machine_token().await;

    let response = app
        .client
        .get(format!("{}/api/v1/me", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();

    let (status, body) = problem(response).await;
    assert_eq!(status, 401);
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("--machine-audience") && detail.contains("tenant-portal"),
        "the portal's own audience, by default its client id: {detail}"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_change_stream_ends_when_its_session_is_signed_out(db: PgPool) {
    let app = spawn(db).await;
    let alice = login_as(&app, "ALICE").await;
    let mut stream = alice.get("/api/v1/events?after=0").await;
    assert_eq!(stream.status(), 200);

    let out = alice
        .change(Method::POST, "/auth/logout")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);

    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the stream ends within seconds of signing out"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_change_stream_ends_when_its_session_expires(db: PgPool) {
    let app = spawn(db).await;
    let bob = login_as(&app, "BOB").await;
    let mut stream = bob.get("/api/v1/events?after=0").await;
    assert_eq!(stream.status(), 200);

    sqlx::query("UPDATE sessions SET expires_at = now() WHERE email = 'bob@example.com'")
        .execute(&app.db)
        .await
        .unwrap();

    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the stream ends within seconds of the expiry"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn provider_errors_give_a_clear_page(db: PgPool) {
    let app = spawn(db.clone()).await;
    let refused = app
        .client
        .get(format!(
            "{}/auth/callback?error=access_denied&state=x",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("refused the sign-in")
    );

    let mut unreachable = login_config();
    unreachable.oidc_issuer = Some("http://127.0.0.1:9/dex".into());
    let down = spawn_app_config(
        db,
        ServeConfig {
            login: unreachable,
            ..config()
        },
        Default::default(),
    )
    .await;
    let page = down
        .client
        .get(format!("{}/auth/login", down.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 502);
    assert!(page.text().await.unwrap().contains("could not be reached"));
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn pages_show_text_as_text_and_hide_other_peoples_tenants(db: PgPool) {
    let app = spawn(db).await;
    let alice = login_as(&app, "ALICE").await;
    let home = alice.get("/").await;
    assert_eq!(home.status(), 200);
    assert!(home.text().await.unwrap().contains("Your tenants"));

    let patched = alice
        .change(Method::PATCH, "/api/v1/tenants/acme")
        .header("content-type", "application/merge-patch+json")
        .body(json!({"display_name": "<script>alert(1)</script>"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let page = alice.get("/tenants/acme").await.text().await.unwrap();
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;")
            || page.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "the name is escaped"
    );
    assert!(!page.contains("<script>alert(1)</script>"));

    let bob = login_as(&app, "BOB").await;
    assert_eq!(
        bob.get("/tenants/acme").await.status(),
        404,
        "another team's tenant is not found"
    );
    assert_eq!(bob.get("/tenants/acme/edit").await.status(), 404);

    let anonymous = browser_client();
    let redirect = anonymous
        .get(format!("{}/tenants/acme", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 303);
    assert_eq!(
        redirect.headers()["location"],
        "/auth/login?return_to=%2Ftenants%2Facme"
    );

    let forged = alice
        .client
        .post(format!("{}/tenants/acme/settings", alice.base))
        .form(&[("display_name", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        403,
        "a form without its CSRF token is refused"
    );
    let form = alice
        .client
        .post(format!("{}/tenants/acme/settings", alice.base))
        .header("origin", PUBLIC_URL)
        .form(&[
            ("display_name", "Acme"),
            ("description", ""),
            ("_csrf", alice.csrf_token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        form.status(),
        303,
        "the portal's own form with its token works"
    );
}

/// The generation an edit page put in its forms.
fn shown_generation(page: &str) -> String {
    let marker = r#"name="generation" value=""#;
    let at = page
        .find(marker)
        .expect("the edit page's forms carry the generation")
        + marker.len();
    page[at..].split('"').next().unwrap().to_string()
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_stale_edit_page_is_told_and_overwrites_nothing(db: PgPool) {
    let app = spawn(db).await;
    let alice = login_as(&app, "ALICE").await;
    let opened = alice.get("/tenants/acme/edit").await.text().await.unwrap();
    let generation = shown_generation(&opened);

    let meanwhile = alice
        .change(Method::PATCH, "/api/v1/tenants/acme")
        .header("content-type", "application/merge-patch+json")
        .body(json!({"display_name": "Renamed meanwhile"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(meanwhile.status(), 200);

    let settings = format!("{}/tenants/acme/settings", alice.base);
    let stale = alice
        .client
        .post(&settings)
        .header("origin", PUBLIC_URL)
        .form(&[
            ("display_name", "From the stale page"),
            ("description", ""),
            ("generation", generation.as_str()),
            ("_csrf", alice.csrf_token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 409);
    let page = stale.text().await.unwrap();
    assert!(page.contains("changed since you opened it"), "{page}");
    let tenant: Value = alice
        .get("/api/v1/tenants/acme")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        tenant["display_name"], "Renamed meanwhile",
        "nothing was overwritten"
    );

    let current = shown_generation(&page);
    assert_eq!(
        current,
        tenant["generation"].to_string(),
        "the page shows the tenant as it is now"
    );
    let fresh = alice
        .client
        .post(&settings)
        .header("origin", PUBLIC_URL)
        .form(&[
            ("display_name", "From the fresh page"),
            ("description", ""),
            ("generation", current.as_str()),
            ("_csrf", alice.csrf_token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 303, "the page as it is now saves");
    let tenant: Value = alice
        .get("/api/v1/tenants/acme")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tenant["display_name"], "From the fresh page");
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn only_a_platform_admin_sees_and_saves_the_policy_form(db: PgPool) {
    let app = spawn(db).await;
    let alice = login_as(&app, "ALICE").await;
    let page = alice.get("/tenants/acme").await.text().await.unwrap();
    assert!(
        page.contains(r#"<table id="policy">"#),
        "owners read the policy"
    );
    assert!(
        page.contains("<th scope=\"row\">Pod Security</th><td>baseline</td>"),
        "{page}"
    );
    let edit = alice.get("/tenants/acme/edit").await.text().await.unwrap();
    assert!(!edit.contains("policy-form"), "owners get no policy form");
    let tried = alice
        .client
        .post(format!("{}/tenants/acme/policy", alice.base))
        .header("origin", PUBLIC_URL)
        .form(&[
            ("pod_security", "privileged"),
            ("_csrf", alice.csrf_token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        tried.status(),
        403,
        "an owner may not make the tenant privileged"
    );

    let admin = login_as(&app, "ADMIN").await;
    let edit = admin.get("/tenants/acme/edit").await.text().await.unwrap();
    assert!(edit.contains("policy-form"), "admins get the policy form");
    let generation = shown_generation(&edit);
    let policy_path = format!("{}/tenants/acme/policy", admin.base);
    let save = |fields: Vec<(&'static str, String)>| {
        let mut form: Vec<(&str, String)> = fields;
        form.push(("_csrf", admin.csrf_token.clone()));
        admin
            .client
            .post(&policy_path)
            .header("origin", PUBLIC_URL)
            .form(&form)
            .send()
    };
    let bad = save(vec![
        ("pod_security", "restricted".into()),
        ("registries", "docker.io".into()),
        ("generation", generation.clone()),
    ])
    .await
    .unwrap();
    assert_eq!(bad.status(), 422);
    let page = bad.text().await.unwrap();
    assert!(
        page.contains("registries[0]: must be an image prefix ending in"),
        "{page}"
    );
    let good = save(vec![
        ("pod_security", "restricted".into()),
        ("node_port", "on".into()),
        ("storage_classes", "fast, standard".into()),
        ("generation", generation),
    ])
    .await
    .unwrap();
    assert_eq!(good.status(), 303);
    let policy: Value = admin
        .get("/api/v1/tenants/acme/policy")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(policy["source"], "custom", "{policy}");
    assert_eq!(policy["policy"]["pod_security"], "restricted");
    assert_eq!(
        policy["policy"]["service_types"],
        json!(["ClusterIP", "NodePort"])
    );
    assert_eq!(
        policy["policy"]["storage_classes"],
        json!(["fast", "standard"])
    );
    assert_eq!(
        policy["policy"]["registries"],
        Value::Null,
        "an empty field is any"
    );
    let page = alice.get("/tenants/acme").await.text().await.unwrap();
    assert!(
        page.contains("<th scope=\"row\">StorageClasses</th><td>fast, standard</td>"),
        "{page}"
    );
}

/// The post forms of a dashboard page: each form's action.
fn post_actions(page: &str) -> Vec<String> {
    page.split("<form")
        .skip(1)
        .filter_map(|form| {
            let tag = &form[..form.find('>')?];
            let attribute = |name: &str| {
                let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
                Some(tag[at..].split('"').next()?.replace("&#x2f;", "/"))
            };
            (attribute("method")? == "post").then(|| attribute("action"))?
        })
        .collect()
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn every_dashboard_form_refuses_a_post_without_its_csrf_token(db: PgPool) {
    let app = spawn(db).await;
    app.create_tenant(json!({
        "slug": "initech",
        "budget": {"requests.cpu": "4", "pods": "20"},
        "namespaces": [{"name": "dev", "allocations": {"requests.cpu": "1"}}],
        "members": [{"kind": "group", "subject": "team-acme", "role": "owner"}],
    }))
    .await;
    let asked = app
        .post_json(
            "/api/v1/quota-requests",
            json!({"tenant": "initech", "resource": "pods", "amount": "30", "reason": "more"}),
        )
        .await;
    assert_eq!(asked.status(), 201);
    let admin = login_as(&app, "ADMIN").await;
    let mut actions = Vec::new();
    for page in [
        "/",
        "/tenants/new",
        "/tenants/initech",
        "/tenants/initech/edit",
        "/quota-requests",
        "/admin",
        "/admin/platform-apis",
    ] {
        let html = admin.get(page).await.text().await.unwrap();
        actions.extend(post_actions(&html));
    }
    actions.sort();
    actions.dedup();
    // Signing out is the auth door's: the session's check (header or origin) guards it.
    actions.retain(|a| a != "/auth/logout");
    for form in [
        "/tenants",
        "/tenants/initech/settings",
        "/tenants/initech/namespaces",
        "/tenants/initech/namespaces/dev/allocations",
        "/tenants/initech/namespaces/dev/delete",
        "/tenants/initech/members",
        "/tenants/initech/delete",
        "/tenants/initech/policy",
        "/tenants/initech/kubeconfig",
        "/tenants/initech/quota-requests",
        "/admin/tokens",
        "/admin/capacity",
        "/admin/platform-apis",
    ] {
        assert!(actions.iter().any(|a| a == form), "{form} in {actions:?}");
    }
    for (form, count) in [
        ("/tenants/initech/members/", 1),
        ("/quota-requests/", 1),
        ("/admin/tokens/", 1),
    ] {
        assert_eq!(
            actions.iter().filter(|a| a.starts_with(form)).count(),
            count,
            "{form}… in {actions:?}"
        );
    }
    assert_eq!(actions.len(), 16, "{actions:?}");
    let before = app.table_counts().await;

    for action in &actions {
        for (case, token) in [
            ("no token", None),
            ("a wrong token", Some("0123456789abcdef")),
        ] {
            let mut form = vec![("generation", "1"), ("confirm", "initech")];
            form.extend(token.map(|t| ("_csrf", t)));
            let refused = admin
                .client
                .post(format!("{}{action}", admin.base))
                .header("origin", PUBLIC_URL)
                .form(&form)
                .send()
                .await
                .unwrap();
            assert_eq!(refused.status(), 403, "{action} with {case}");
            let page = refused.text().await.unwrap();
            assert!(page.contains("CSRF token"), "{action} with {case}: {page}");
        }
    }

    assert_eq!(app.table_counts().await, before, "nothing changed");
    assert_eq!(
        admin.get("/api/v1/me").await.status(),
        200,
        "still signed in"
    );
}
