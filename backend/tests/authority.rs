//! Nobody gets more than they were given: a tenant the caller may not reach
//! answers exactly as a missing one, budgets are granted rather than taken,
//! tokens reach only their tenants, and answers carry only what the caller
//! may read. Real HTTP, real Postgres, employees signed in through Dex.

mod common;

use common::idp::{Browser, login_as, login_config};
use common::{TestApp, config, problem, spawn_app_config};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use tenant_portal::config::ServeConfig;

const MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

async fn spawn(db: PgPool) -> TestApp {
    spawn_app_config(
        db,
        ServeConfig {
            login: login_config(),
            ..config()
        },
        Default::default(),
    )
    .await
}

/// globex exists, with a namespace, a member and a pending quota request;
/// `nosuch` does not.
async fn globex(app: &TestApp) {
    app.create_tenant(json!({
        "slug": "globex",
        "budget": {"requests.cpu": "2", "pods": "10"},
        "namespaces": [{"name": "dev", "allocations": {"requests.cpu": "1"}}],
        "members": [{"kind": "group", "subject": "team-globex", "role": "owner"}]
    }))
    .await;
}

/// Every route of the API document that names a tenant, with its methods.
async fn tenant_routes(app: &TestApp) -> Vec<(Method, String)> {
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.contains("{slug}") {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            if let Ok(method) = Method::from_bytes(method.to_uppercase().as_bytes())
                && method != Method::OPTIONS
            {
                routes.push((method, format!("/api/v1{path}")));
            }
        }
    }
    assert!(
        routes.len() >= 15,
        "the document lists the tenant routes: {routes:?}"
    );
    routes
}

fn concrete(path: &str, slug: &str) -> String {
    path.replace("{slug}", slug)
        .replace("{name}", "dev")
        .replace("{id}", "1")
}

/// The answer with the tenant's name taken out, to compare a hidden tenant's with a missing one's.
async fn answer_of(request: reqwest::RequestBuilder, slug: &str) -> (u16, String) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (status, body.replace(slug, "SLUG"))
}

fn with_body(request: reqwest::RequestBuilder, method: &Method) -> reqwest::RequestBuilder {
    let request = request.header("if-match", "\"999\"");
    match *method {
        Method::PATCH => request
            .header("content-type", "application/merge-patch+json")
            .body(r#"{"description": "mine now", "allocations": {"requests.cpu": "1"}, "role": "viewer"}"#),
        Method::POST | Method::PUT => request.json(&json!({
            "budget": {"pods": "5"},
            "name": "qa",
            "allocations": {},
            "kind": "user",
            "subject": "carol@example.com",
            "role": "owner",
            "resource": "pods",
            "amount": "50",
            "reason": "more",
            "pod_security": "privileged"
        })),
        _ => request,
    }
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_tenant_without_a_role_answers_as_a_missing_one_on_every_api_route(db: PgPool) {
    let app = spawn(db).await;
    globex(&app).await;
    let carol = login_as(&app, "CAROL").await;
    let before = app.table_counts().await;

    for (method, path) in tenant_routes(&app).await {
        let hidden = answer_of(
            with_body(
                carol.change(method.clone(), &concrete(&path, "globex")),
                &method,
            ),
            "globex",
        )
        .await;
        let missing = answer_of(
            with_body(
                carol.change(method.clone(), &concrete(&path, "nosuch")),
                &method,
            ),
            "nosuch",
        )
        .await;
        assert_eq!(hidden, missing, "{method} {path}");
        assert!(
            hidden.0 == 404 || hidden.0 == 422 || hidden.0 == 400,
            "{method} {path}: {hidden:?}"
        );
    }
    assert_eq!(app.table_counts().await, before, "and nothing changed");
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_wrong_if_match_on_a_hidden_tenant_is_a_404_not_a_412(db: PgPool) {
    let app = spawn(db).await;
    globex(&app).await;
    let carol = login_as(&app, "CAROL").await;

    let patched = carol
        .change(Method::PATCH, "/api/v1/tenants/globex")
        .header("if-match", "\"999\"")
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"description": "mine now"}"#)
        .send()
        .await
        .unwrap();
    let (status, body) = problem(patched).await;

    assert_eq!(status, 404, "{body}");
    assert_eq!(body["detail"], "there is no tenant \"globex\"");
    assert!(!body.to_string().contains("ETag"), "{body}");
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn admin_only_actions_on_a_hidden_tenant_answer_404_too(db: PgPool) {
    let app = spawn(db).await;
    globex(&app).await;
    let carol = login_as(&app, "CAROL").await;

    for (method, path, body) in [
        (
            Method::PUT,
            "/api/v1/tenants/globex/budget",
            json!({"budget": {"pods": "5"}}),
        ),
        (Method::POST, "/api/v1/tenants/globex:suspend", json!({})),
    ] {
        let answer = carol
            .change(method.clone(), path)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(problem(answer).await.0, 404, "{method} {path}");
    }
}

/// The dashboard's own routes that name a tenant, as a browser sends them.
fn page_routes(slug: &str, csrf: &str) -> Vec<(Method, String, Vec<(String, String)>)> {
    let form = |extra: &[(&str, &str)]| {
        let mut form = vec![
            ("_csrf".to_string(), csrf.to_string()),
            ("generation".to_string(), "999".to_string()),
        ];
        form.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        form
    };
    let t = format!("/tenants/{slug}");
    vec![
        (Method::GET, t.clone(), vec![]),
        (Method::GET, format!("{t}/edit"), vec![]),
        (
            Method::POST,
            format!("{t}/settings"),
            form(&[("display_name", "x"), ("description", "y")]),
        ),
        (
            Method::POST,
            format!("{t}/namespaces"),
            form(&[("name", "qa")]),
        ),
        (
            Method::POST,
            format!("{t}/namespaces/dev/allocations"),
            form(&[("requests.cpu", "1")]),
        ),
        (
            Method::POST,
            format!("{t}/namespaces/dev/delete"),
            form(&[]),
        ),
        (
            Method::POST,
            format!("{t}/members"),
            form(&[
                ("kind", "user"),
                ("subject", "carol@example.com"),
                ("role", "owner"),
            ]),
        ),
        (Method::POST, format!("{t}/members/1/delete"), form(&[])),
        (Method::POST, format!("{t}/delete"), form(&[])),
        (Method::POST, format!("{t}/kubeconfig"), form(&[])),
        (
            Method::POST,
            format!("{t}/quota-requests"),
            form(&[("resource", "pods"), ("amount", "50"), ("reason", "more")]),
        ),
    ]
}

async fn page_answer(
    browser: &Browser,
    method: Method,
    path: &str,
    form: &[(String, String)],
    slug: &str,
) -> (u16, String) {
    let request = browser.change(method.clone(), path);
    let request = if method == Method::POST {
        request.form(form)
    } else {
        request
    };
    answer_of(request, slug).await
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_tenant_without_a_role_answers_as_a_missing_one_on_every_page(db: PgPool) {
    let app = spawn(db).await;
    globex(&app).await;
    let carol = login_as(&app, "CAROL").await;
    let before = app.table_counts().await;

    let hidden = page_routes("globex", &carol.csrf_token);
    let missing = page_routes("nosuch", &carol.csrf_token);
    for ((method, path, form), (_, missing_path, missing_form)) in hidden.into_iter().zip(missing) {
        let shown = page_answer(&carol, method.clone(), &path, &form, "globex").await;
        let absent = page_answer(
            &carol,
            method.clone(),
            &missing_path,
            &missing_form,
            "nosuch",
        )
        .await;
        assert_eq!(shown, absent, "{method} {path}");
        assert_eq!(shown.0, 404, "{method} {path}: {}", shown.1);
    }
    assert_eq!(app.table_counts().await, before, "and nothing changed");
}
