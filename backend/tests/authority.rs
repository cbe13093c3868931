//! Nobody gets more than they were given: a tenant the caller may not reach
//! answers exactly as a missing one, budgets are granted rather than taken,
//! tokens reach only their tenants, and answers carry only what the caller
//! may read. Real HTTP, real Postgres, employees signed in through Dex.

mod common;

use common::idp::{Browser, login_as, login_config, machine_token};
use common::{TestApp, config, create_token, create_token_reaching, problem, spawn_app_config};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use tenant_portal::auth::Scope;
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

/// A dashboard request: method, path and form.
type PageRequest = (Method, String, Vec<(String, String)>);

/// The dashboard's own routes that name a tenant, as a browser sends them.
fn page_routes(slug: &str, csrf: &str) -> Vec<PageRequest> {
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

fn default_budget() -> Value {
    json!({"namespaces": "10", "pods": "20", "requests.cpu": "2", "requests.memory": "4Gi"})
}

async fn post_as(app: &TestApp, token: &str, path: &str, body: Value) -> reqwest::Response {
    app.client
        .post(format!("{}{path}", app.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_token_without_quota_write_gets_the_default_budget(db: PgPool) {
    let app = spawn(db).await;
    let ci = create_token(
        &app.db,
        "ci",
        &[Scope::TenantsRead, Scope::TenantsWrite],
        None,
    )
    .await;

    let created = post_as(&app, &ci, "/api/v1/tenants", json!({"slug": "builds"})).await;
    assert_eq!(created.status(), 201);
    let tenant: Value = created.json().await.unwrap();
    assert_eq!(tenant["budget"], default_budget());

    let less = post_as(
        &app,
        &ci,
        "/api/v1/tenants",
        json!({"slug": "small", "budget": {"requests.cpu": "500m", "limits.cpu": "1"}}),
    )
    .await;
    assert_eq!(less.status(), 201, "less than the default is granted");
    let tenant: Value = less.json().await.unwrap();
    assert_eq!(
        tenant["budget"],
        json!({"limits.cpu": "1", "namespaces": "10", "pods": "20", "requests.cpu": "500m", "requests.memory": "4Gi"})
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn asking_for_more_than_the_default_at_creation_is_refused_with_how_to_ask(db: PgPool) {
    let app = spawn(db).await;
    let ci = create_token(
        &app.db,
        "ci",
        &[Scope::TenantsRead, Scope::TenantsWrite],
        None,
    )
    .await;
    let carol = login_as(&app, "CAROL").await;
    let before = app.table_counts().await;
    let greedy = json!({"slug": "greedy", "budget": {
        "requests.cpu": "100000", "requests.memory": "100000Gi", "pods": "100000", "namespaces": "1000"}});

    let by_token = post_as(&app, &ci, "/api/v1/tenants", greedy.clone()).await;
    let by_employee = carol
        .change(Method::POST, "/api/v1/tenants")
        .json(&greedy)
        .send()
        .await
        .unwrap();

    for answer in [by_token, by_employee] {
        let (status, body) = problem(answer).await;
        assert_eq!(status, 403, "{body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("namespaces=10, pods=20, requests.cpu=2, requests.memory=4Gi"),
            "names the default: {detail}"
        );
        // In the same words on a page as in the API: no route of either door.
        assert!(
            detail.contains("ask for more with a quota request") && !detail.contains("/api/v1"),
            "says how to ask: {detail}"
        );
        let fields: Vec<&str> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "budget.namespaces",
                "budget.pods",
                "budget.requests.cpu",
                "budget.requests.memory"
            ]
        );
    }
    assert_eq!(app.table_counts().await, before, "nothing was created");
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn admins_and_quota_write_tokens_choose_the_budget(db: PgPool) {
    let app = spawn(db).await;
    let quota = create_token(
        &app.db,
        "quota",
        &[Scope::TenantsWrite, Scope::QuotaWrite],
        None,
    )
    .await;
    let big = |slug: &str| json!({"slug": slug, "budget": {"requests.cpu": "64", "pods": "500"}});

    assert_eq!(
        post_as(&app, &quota, "/api/v1/tenants", big("big-one"))
            .await
            .status(),
        201
    );
    let admin = login_as(&app, "ADMIN").await;
    let by_admin = admin
        .change(Method::POST, "/api/v1/tenants")
        .json(&big("big-two"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_admin.status(), 201);
    let tenant: Value = by_admin.json().await.unwrap();
    assert_eq!(tenant["budget"]["requests.cpu"], "64");
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn an_employee_may_have_only_so_many_tenants(db: PgPool) {
    let app = spawn(db).await;
    let carol = login_as(&app, "CAROL").await;
    let create = |slug: &str| {
        carol
            .change(Method::POST, "/api/v1/tenants")
            .json(&json!({"slug": slug}))
            .send()
    };
    for slug in ["carol-1", "carol-2", "carol-3"] {
        assert_eq!(create(slug).await.unwrap().status(), 201, "{slug}");
    }

    let (status, body) = problem(create("carol-4").await.unwrap()).await;

    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("--max-tenants-per-owner 3"),
        "names the limit: {body}"
    );
    let admin = login_as(&app, "ADMIN").await;
    for i in 1..=4 {
        let made = admin
            .change(Method::POST, "/api/v1/tenants")
            .json(&json!({"slug": format!("platform-{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(made.status(), 201, "admins are exempt");
    }
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn the_new_tenant_page_shows_the_refusal_beside_the_field(db: PgPool) {
    let app = spawn(db).await;
    let carol = login_as(&app, "CAROL").await;

    let page = carol
        .change(Method::POST, "/tenants")
        .form(&[
            ("_csrf", carol.csrf_token.as_str()),
            ("slug", "greedy"),
            ("budget_cpu", "100"),
            ("budget_pods", "10"),
        ])
        .send()
        .await
        .unwrap();

    assert_eq!(page.status(), 403);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("at most 2 (the default budget); ask for more with a quota request"),
        "{html}"
    );
    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(tenants, 0);
}

fn keys(body: &Value) -> Vec<&str> {
    body.as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

async fn put_budget(app: &TestApp, token: &str, slug: &str, budget: Value) -> reqwest::Response {
    app.client
        .put(format!("{}/api/v1/tenants/{slug}/budget", app.base))
        .bearer_auth(token)
        .json(&json!({"budget": budget}))
        .send()
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_budget_change_by_a_caller_who_may_not_read_answers_the_budget_alone(db: PgPool) {
    let app = spawn(db).await;
    globex(&app).await;
    let quota = create_token(&app.db, "quota", &[Scope::QuotaWrite], None).await;
    let both = create_token(
        &app.db,
        "both",
        &[Scope::QuotaWrite, Scope::TenantsRead],
        None,
    )
    .await;

    let changed = put_budget(
        &app,
        &quota,
        "globex",
        json!({"requests.cpu": "3", "pods": "10"}),
    )
    .await;
    assert_eq!(changed.status(), 200);
    assert_eq!(changed.headers()["etag"], "\"2\"");
    let body: Value = changed.json().await.unwrap();
    assert_eq!(
        keys(&body),
        ["allocated", "available", "budget", "generation", "sync"]
    );
    assert_eq!(body["available"]["requests.cpu"], "2");
    assert!(
        !body.to_string().contains("team-globex"),
        "no members: {body}"
    );

    let changed = put_budget(
        &app,
        &both,
        "globex",
        json!({"requests.cpu": "4", "pods": "10"}),
    )
    .await;
    let body: Value = changed.json().await.unwrap();
    assert_eq!(
        body["members"][0]["subject"], "team-globex",
        "a reader gets the tenant"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_write_by_a_caller_who_may_not_read_answers_a_receipt(db: PgPool) {
    let app = spawn(db).await;
    let writer = create_token(&app.db, "writer", &[Scope::TenantsWrite], None).await;

    let created = post_as(
        &app,
        &writer,
        "/api/v1/tenants",
        json!({"slug": "builds", "members": [{"kind": "group", "subject": "team-builds", "role": "owner"}]}),
    )
    .await;
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["etag"], "\"1\"");
    let body: Value = created.json().await.unwrap();
    assert_eq!(
        body,
        json!({"slug": "builds", "state": "active", "generation": 1})
    );

    let member = post_as(
        &app,
        &writer,
        "/api/v1/tenants/builds/members",
        json!({"kind": "user", "subject": "dave@example.com", "role": "viewer"}),
    )
    .await;
    assert_eq!(member.status(), 201);
    let body: Value = member.json().await.unwrap();
    assert_eq!(keys(&body), ["generation", "slug", "state"], "{body}");
    assert_eq!(
        problem(
            app.client
                .get(format!("{}/api/v1/tenants/builds", app.base))
                .bearer_auth(&writer)
                .send()
                .await
                .unwrap()
        )
        .await
        .0,
        403,
        "and it may not read the tenant either"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_token_reaching_only_what_it_creates_reads_the_tenant_it_just_created(db: PgPool) {
    let app = spawn(db).await;
    // As the README's "Integrating a platform" makes it: no --all-tenants.
    let ci = common::create_token_reaching(
        &app.db,
        "ci-previews",
        &[Scope::TenantsRead, Scope::TenantsWrite],
        &[],
    )
    .await;
    let created = post_as(
        &app,
        &ci,
        "/api/v1/tenants?wait_for=Ready&timeout=1s",
        json!({"slug": "pr-1234", "namespaces": [{"name": "app"}]}),
    )
    .await;
    assert_eq!(created.status(), 201);
    let body: Value = created.json().await.unwrap();
    assert_eq!(body["slug"], "pr-1234");
    assert_eq!(
        body["namespaces"][0]["full_name"], "pr-1234-app",
        "the whole tenant, not a receipt: {body}"
    );
    assert!(body["sync"]["status"].is_string(), "{body}");
    let read = get_as(&app, &ci, "/api/v1/tenants/pr-1234").await;
    assert_eq!(read.status(), 200, "and it reads it afterwards too");
}

async fn get_as(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{path}", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn slugs(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect()
}

/// globex and initech, made by the test's admin token.
async fn two_tenants(app: &TestApp) {
    globex(app).await;
    app.create_tenant(json!({"slug": "initech", "namespaces": [{"name": "dev"}]}))
        .await;
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_token_reaches_only_the_tenants_it_created_and_those_named_on_it(db: PgPool) {
    let app = spawn(db).await;
    two_tenants(&app).await;
    let ci = create_token_reaching(
        &app.db,
        "ci",
        &[Scope::TenantsRead, Scope::TenantsWrite],
        &["initech"],
    )
    .await;
    assert_eq!(
        post_as(&app, &ci, "/api/v1/tenants", json!({"slug": "builds"}))
            .await
            .status(),
        201
    );

    let list: Value = get_as(&app, &ci, "/api/v1/tenants")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(slugs(&list), ["initech", "builds"]);
    assert_eq!(
        get_as(&app, &ci, "/api/v1/tenants/builds").await.status(),
        200,
        "its own"
    );
    assert_eq!(
        get_as(&app, &ci, "/api/v1/tenants/initech").await.status(),
        200,
        "named"
    );

    for (method, path) in tenant_routes(&app).await {
        let hidden = answer_of(
            with_body(
                app.client
                    .request(
                        method.clone(),
                        format!("{}{}", app.base, concrete(&path, "globex")),
                    )
                    .bearer_auth(&ci),
                &method,
            ),
            "globex",
        )
        .await;
        let missing = answer_of(
            with_body(
                app.client
                    .request(
                        method.clone(),
                        format!("{}{}", app.base, concrete(&path, "nosuch")),
                    )
                    .bearer_auth(&ci),
                &method,
            ),
            "nosuch",
        )
        .await;
        assert_eq!(hidden, missing, "{method} {path}");
    }
    let audit: Value = get_as(&app, &ci, "/api/v1/audit-events")
        .await
        .json()
        .await
        .unwrap();
    let audited: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["tenant"].as_str().unwrap_or("-"))
        .collect();
    assert!(
        !audited.is_empty() && audited.iter().all(|t| ["initech", "builds"].contains(t)),
        "{audited:?}"
    );
}

/// The events a stream sends within `wait`, as text.
async fn stream_for(app: &TestApp, token: &str, wait: std::time::Duration) -> String {
    let mut response = get_as(app, token, "/api/v1/events?after=0").await;
    assert_eq!(response.status(), 200);
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, response.chunk()).await {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn the_event_stream_shows_a_token_only_the_tenants_it_reaches(db: PgPool) {
    let app = spawn(db).await;
    two_tenants(&app).await;
    let ci = create_token_reaching(&app.db, "ci", &[Scope::TenantsRead], &["initech"]).await;

    let events = stream_for(&app, &ci, std::time::Duration::from_secs(2)).await;

    assert!(events.contains("\"initech\""), "{events}");
    assert!(!events.contains("globex"), "{events}");
    let everything = stream_for(&app, &app.token, std::time::Duration::from_secs(2)).await;
    assert!(
        everything.contains("globex"),
        "an all-tenants token sees all: {everything}"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn tokens_made_at_the_command_line_reach_what_they_name_and_the_list_says_so(db: PgPool) {
    let app = spawn(db).await;
    two_tenants(&app).await;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let server = std::env::var("DATABASE_URL").unwrap();
    let url = format!("{}/{database}", server.rsplit_once('/').unwrap().0);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-portal"))
            .args(args)
            .env("DATABASE_URL", &url)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };

    let named = cli(&[
        "token",
        "create",
        "--name",
        "previews",
        "--scope",
        "tenants:read",
        "--tenant",
        "globex",
    ]);
    let everywhere = cli(&[
        "token",
        "create",
        "--name",
        "auditor",
        "--scope",
        "tenants:read",
        "--all-tenants",
    ]);
    let list = cli(&["token", "list"]);

    let line = |name: &str| {
        list.lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .to_string()
    };
    assert!(line("previews").contains("its own + globex"), "{list}");
    assert!(line("auditor").contains("ALL TENANTS"), "{list}");
    let named = named.trim();
    assert_eq!(
        get_as(&app, named, "/api/v1/tenants/globex").await.status(),
        200
    );
    assert_eq!(
        get_as(&app, named, "/api/v1/tenants/initech")
            .await
            .status(),
        404
    );
    assert_eq!(
        get_as(&app, everywhere.trim(), "/api/v1/tenants/initech")
            .await
            .status(),
        200
    );

    cli(&["token", "revoke", "--name", "previews"]);
    let trail: Vec<(String, String, Value)> = sqlx::query_as(
        "SELECT actor, action, after FROM audit_events WHERE action LIKE 'token.%' AND after->>'name' = 'previews' ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(trail.len(), 2, "{trail:?}");
    assert_eq!(trail[0].1, "token.created");
    assert_eq!(trail[1].1, "token.revoked");
    assert!(trail[0].0.starts_with("operator:"), "{trail:?}");
    for (_, _, token) in &trail {
        assert_eq!(token["scopes"], json!(["tenants:read"]));
        assert_eq!(token["tenants"], json!(["globex"]));
        assert_eq!(token["all_tenants"], false);
    }
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn the_dashboard_gives_tokens_tenants_and_only_admins_give_all_of_them(db: PgPool) {
    let app = spawn(db).await;
    two_tenants(&app).await;
    let admin = login_as(&app, "ADMIN").await;
    let carol = login_as(&app, "CAROL").await;
    let form = |csrf: &str, name: &str| {
        vec![
            ("_csrf".to_string(), csrf.to_string()),
            ("name".to_string(), name.to_string()),
            ("scope".to_string(), "tenants:read".to_string()),
            ("tenants".to_string(), "globex, initech".to_string()),
            ("all_tenants".to_string(), "on".to_string()),
        ]
    };

    let refused = carol
        .change(Method::POST, "/admin/tokens")
        .form(&form(&carol.csrf_token, "sneaky"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    let made = admin
        .change(Method::POST, "/admin/tokens")
        .form(&form(&admin.csrf_token, "everything"))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 200);
    let mut named = form(&admin.csrf_token, "two");
    named.pop();
    let made = admin
        .change(Method::POST, "/admin/tokens")
        .form(&named)
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 200);
    let page = admin.get("/admin").await.text().await.unwrap();
    assert!(
        page.contains("<td>everything</td><td>tenants:read</td><td>all tenants</td>"),
        "{page}"
    );
    assert!(
        page.contains("<td>two</td><td>tenants:read</td><td>its own + globex, initech</td>"),
        "{page}"
    );
    let revoked = admin
        .change(Method::POST, "/admin/tokens/two/revoke")
        .form(&[("_csrf", admin.csrf_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 303);

    let trail: Vec<(String, String, Value)> = sqlx::query_as(
        "SELECT actor, action, after FROM audit_events WHERE action LIKE 'token.%' AND actor LIKE 'user:%' ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let summary: Vec<(&str, &str, &Value, &Value)> = trail
        .iter()
        .map(|(actor, action, t)| {
            (
                actor.as_str(),
                action.as_str(),
                &t["tenants"],
                &t["all_tenants"],
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "user:admin@example.com",
                "token.created",
                &json!(["globex", "initech"]),
                &json!(true)
            ),
            (
                "user:admin@example.com",
                "token.created",
                &json!(["globex", "initech"]),
                &json!(false)
            ),
            (
                "user:admin@example.com",
                "token.revoked",
                &json!(["globex", "initech"]),
                &json!(false)
            ),
        ]
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_machine_client_reaches_only_its_tenants_unless_configured_for_all(db: PgPool) {
    let limited = spawn(db.clone()).await;
    two_tenants(&limited).await;
    let token = machine_token().await;

    let list: Value = get_as(&limited, &token, "/api/v1/tenants")
        .await
        .json()
        .await
        .unwrap();
    assert!(slugs(&list).is_empty(), "{list}");
    assert_eq!(
        problem(get_as(&limited, &token, "/api/v1/tenants/globex").await)
            .await
            .0,
        404
    );

    let mut login = login_config();
    login.machine_clients[0].all_tenants = true;
    let everywhere =
        spawn_app_config(db, ServeConfig { login, ..config() }, Default::default()).await;
    let list: Value = get_as(&everywhere, &token, "/api/v1/tenants")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(slugs(&list), ["globex", "initech"]);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn an_employee_who_gives_up_their_role_gets_a_receipt_not_the_tenant(db: PgPool) {
    let app = spawn(db).await;
    let carol = login_as(&app, "CAROL").await;
    let created = carol
        .change(Method::POST, "/api/v1/tenants")
        .json(&json!({"slug": "handover", "members": [
            {"kind": "user", "subject": "carol@example.com", "role": "owner"},
            {"kind": "user", "subject": "bob@example.com", "role": "owner"}]}))
        .send()
        .await
        .unwrap();
    let tenant: Value = created.json().await.unwrap();
    let mine = tenant["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["subject"] == "carol@example.com")
        .unwrap()["id"]
        .as_i64()
        .unwrap();

    let left = carol
        .change(
            Method::DELETE,
            &format!("/api/v1/tenants/handover/members/{mine}"),
        )
        .send()
        .await
        .unwrap();

    assert_eq!(left.status(), 200);
    let body: Value = left.json().await.unwrap();
    assert_eq!(keys(&body), ["generation", "slug", "state"], "{body}");
    assert_eq!(
        problem(carol.get("/api/v1/tenants/handover").await).await.0,
        404
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn only_an_admin_declares_a_clusters_capacity_from_the_dashboard(db: PgPool) {
    let app = spawn(db).await;
    two_tenants(&app).await;
    let admin = login_as(&app, "ADMIN").await;
    let carol = login_as(&app, "CAROL").await;
    let form = |csrf: &str, cpu: &str| {
        vec![
            ("_csrf".to_string(), csrf.to_string()),
            ("cluster".to_string(), "edge".to_string()),
            ("namespaces".to_string(), "50".to_string()),
            ("cpu".to_string(), cpu.to_string()),
            ("memory".to_string(), String::new()),
        ]
    };
    let refused = carol
        .change(Method::POST, "/admin/capacity")
        .form(&form(&carol.csrf_token, "40"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let forged = admin
        .change(Method::POST, "/admin/capacity")
        .form(&form("not-the-token", "40"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403, "a form without the session's token");

    let bad = admin
        .change(Method::POST, "/admin/capacity")
        .form(&form(&admin.csrf_token, "forty"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let page = bad.text().await.unwrap();
    assert!(page.contains("cpu: "), "the form names the field: {page}");

    let declared = admin
        .change(Method::POST, "/admin/capacity")
        .form(&form(&admin.csrf_token, "40"))
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), 303);
    let page = admin.get("/admin").await.text().await.unwrap();
    assert!(page.contains(" of 50</td>"), "{page}");
    assert!(page.contains(" of 40 / "), "{page}");
    let actors: Vec<String> =
        sqlx::query_scalar("SELECT actor FROM audit_events WHERE action = 'cluster.capacity_set'")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(actors, ["user:admin@example.com"]);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_list_served_from_the_replicas_cache_still_shows_each_caller_only_its_tenants(
    db: PgPool,
) {
    let app = spawn(db).await;
    two_tenants(&app).await;
    let slugs = |page: Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["slug"].as_str().unwrap().to_string())
            .collect()
    };
    // An admin's list puts both tenants' JSON in the replica's cache.
    let all: Value = app.get("/api/v1/tenants").await.json().await.unwrap();
    assert_eq!(slugs(all), ["globex", "initech"]);
    let ci = create_token_reaching(&app.db, "ci", &[Scope::TenantsRead], &["globex"]).await;
    let page: Value = get_as(&app, &ci, "/api/v1/tenants")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        slugs(page),
        ["globex"],
        "a token lists only what it reaches"
    );
    let carol = login_as(&app, "CAROL").await;
    let page: Value = carol.get("/api/v1/tenants").await.json().await.unwrap();
    assert_eq!(
        slugs(page),
        Vec::<String>::new(),
        "an employee with no role lists nothing"
    );
}
