//! The REST API over real HTTP against real PostgreSQL, a fresh database per test.

mod common;

use common::{acme, create_token, problem, spawn_app};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use tenant_portal::auth::Scope;

const MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[sqlx::test(migrator = "MIGRATIONS")]
async fn creating_a_tenant_answers_pending_with_etag_and_location(db: PgPool) {
    let app = spawn_app(db).await;
    let response = app.post_json("/api/v1/tenants", acme()).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/api/v1/tenants/acme");
    assert_eq!(response.headers()["etag"], "\"1\"");
    assert!(response.headers().contains_key("x-request-id"));
    let tenant: Value = response.json().await.unwrap();
    assert_eq!(tenant["sync"]["status"], "Pending");
    assert_eq!(tenant["generation"], 1);
    assert_eq!(tenant["namespaces"][0]["full_name"], "acme-dev");
    assert_eq!(tenant["allocated"]["requests.cpu"], "3500m");
    assert_eq!(
        tenant["budget"]["namespaces"], "10",
        "the default namespace limit is filled in"
    );

    let outbox: Vec<(i64,)> = sqlx::query_as("SELECT generation FROM outbox")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(
        outbox,
        vec![(1,)],
        "the reconciler is asked to apply generation 1"
    );
    let audit: (String, String) =
        sqlx::query_as("SELECT actor, action FROM audit_events WHERE tenant_id IS NOT NULL")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(audit, ("token:test-admin".into(), "tenant.created".into()));
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn fifty_parallel_creates_of_one_slug_give_one_201_and_the_rest_409(db: PgPool) {
    let app = spawn_app(db).await;
    let attempts = (0..50).map(|i| {
        let body = json!({"slug": "race", "display_name": format!("attempt {i}")});
        app.post_json("/api/v1/tenants", body)
    });
    let statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        49,
        "{statuses:?}"
    );
    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(tenants, 1);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn parallel_allocations_never_exceed_the_budget(db: PgPool) {
    let app = spawn_app(db).await;
    app.create_tenant(
        json!({"slug": "bursty", "budget": {"requests.cpu": "10", "namespaces": "100"}}),
    )
    .await;
    let attempts = (0..50).map(|i| {
        app.post_json(
            "/api/v1/tenants/bursty/namespaces",
            json!({"name": format!("ns{i}"), "allocations": {"requests.cpu": "700m"}}),
        )
    });
    let responses = futures::future::join_all(attempts).await;
    let created = responses.iter().filter(|r| r.status() == 201).count();
    assert!(
        responses
            .iter()
            .all(|r| r.status() == 201 || r.status() == 409)
    );
    assert_eq!(created, 14, "14 x 700m fit in 10 CPUs, the 15th does not");

    let budget: Value = app
        .get("/api/v1/tenants/bursty/budget")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(budget["allocated"]["requests.cpu"], "9800m");
    assert_eq!(budget["available"]["requests.cpu"], "200m");
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn an_allocation_over_the_budget_names_resource_requested_and_available(db: PgPool) {
    let app = spawn_app(db).await;
    app.create_tenant(acme()).await;
    let response = app
        .post_json(
            "/api/v1/tenants/acme/namespaces",
            json!({"name": "qa", "allocations": {"requests.cpu": "1"}}),
        )
        .await;
    let (status, body) = problem(response).await;
    assert_eq!(status, 409);
    assert_eq!(body["errors"][0]["field"], "allocations.requests.cpu");
    let rule = body["errors"][0]["rule"].as_str().unwrap();
    assert!(
        rule.contains("requested 1") && rule.contains("only 500m of the budget 4"),
        "{rule}"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_failed_transaction_leaves_neither_state_nor_outbox_row(db: PgPool) {
    let app = spawn_app(db).await;
    // `ab` + `c-dev` and `ab-c` + `dev` meet in the cluster namespace `ab-c-dev`.
    app.create_tenant(json!({"slug": "abx", "namespaces": [{"name": "c-dev"}]}))
        .await;
    let before = app.table_counts().await;
    let response = app
        .post_json(
            "/api/v1/tenants",
            json!({"slug": "abx-c", "namespaces": [{"name": "qa"}, {"name": "dev"}]}),
        )
        .await;
    let (status, body) = problem(response).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("abx-c-dev"),
        "{body}"
    );
    assert_eq!(
        app.table_counts().await,
        before,
        "the tenant and its first namespace were rolled back"
    );
    assert_eq!(app.get("/api/v1/tenants/abx-c").await.status(), 404);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_stale_if_match_gets_412_and_changes_nothing(db: PgPool) {
    let app = spawn_app(db).await;
    app.create_tenant(acme()).await;
    let patch = |etag: &'static str, name: &'static str| {
        let request = app
            .request(Method::PATCH, "/api/v1/tenants/acme")
            .header("if-match", etag)
            .header("content-type", "application/merge-patch+json")
            .body(json!({"display_name": name}).to_string());
        async move { request.send().await.unwrap() }
    };
    let first = patch("\"1\"", "First").await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["etag"], "\"2\"");
    let (status, _) = problem(patch("\"1\"", "Second").await).await;
    assert_eq!(status, 412);
    let tenant: Value = app.get("/api/v1/tenants/acme").await.json().await.unwrap();
    assert_eq!(tenant["display_name"], "First");
    assert_eq!(tenant["generation"], 2);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn an_idempotency_key_replays_the_first_answer_with_one_effect(db: PgPool) {
    let app = spawn_app(db).await;
    let send = |body: Value| {
        let request = app
            .request(Method::POST, "/api/v1/tenants")
            .header("idempotency-key", "create-acme-1")
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let first = send(acme()).await;
    assert_eq!(first.status(), 201);
    let first_body: Value = first.json().await.unwrap();
    let again = send(acme()).await;
    assert_eq!(
        again.status(),
        201,
        "a retry gets the first answer, not 409"
    );
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["etag"], "\"1\"");
    assert_eq!(again.json::<Value>().await.unwrap(), first_body);
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE tenant_id IS NOT NULL")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(events, 1);

    let mut other = acme();
    other["display_name"] = json!("Someone else");
    let (status, body) = problem(send(other).await).await;
    assert_eq!(status, 422);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("different request")
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn merge_patch_sets_and_removes_labels_and_refuses_immutable_fields(db: PgPool) {
    let app = spawn_app(db).await;
    app.create_tenant(json!({"slug": "acme", "labels": {"team": "payments", "tier": "gold"}}))
        .await;
    let patch = |body: Value| {
        let request = app
            .request(Method::PATCH, "/api/v1/tenants/acme")
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string());
        async move { request.send().await.unwrap() }
    };
    let tenant: Value =
        patch(json!({"labels": {"tier": null, "cost-center": "42"}, "description": "Payments"}))
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(
        tenant["labels"],
        json!({"team": "payments", "cost-center": "42"})
    );
    assert_eq!(tenant["description"], "Payments");
    let (status, body) = problem(patch(json!({"slug": "other"})).await).await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["field"], "slug");
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn lists_page_with_tokens_and_filter_by_label_state_and_text(db: PgPool) {
    let app = spawn_app(db).await;
    for i in 0..7 {
        let team = if i % 2 == 0 { "red" } else { "blue" };
        app.create_tenant(json!({"slug": format!("team{i}"), "display_name": format!("Squad {i}"), "labels": {"team": team}}))
            .await;
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/tenants?page_size=3".to_string();
    loop {
        let page: Value = app.get(&path).await.json().await.unwrap();
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["slug"].as_str().unwrap().to_string()),
        );
        match page["next_page_token"].as_str() {
            Some(token) => path = format!("/api/v1/tenants?page_size=3&page_token={token}"),
            None => break,
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("team{i}")).collect::<Vec<_>>());

    let red: Value = app
        .get("/api/v1/tenants?label=team%3Dred")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(red["items"].as_array().unwrap().len(), 4);
    let found: Value = app
        .get("/api/v1/tenants?q=squad%203")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["items"][0]["slug"], "team3");
    assert_eq!(found["items"].as_array().unwrap().len(), 1);

    app.request(Method::POST, "/api/v1/tenants/team1:suspend")
        .send()
        .await
        .unwrap();
    let suspended: Value = app
        .get("/api/v1/tenants?state=suspended")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(suspended["items"][0]["slug"], "team1");
    assert_eq!(suspended["items"].as_array().unwrap().len(), 1);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn lifecycle_suspend_resume_delete_and_no_changes_while_deleting(db: PgPool) {
    let app = spawn_app(db).await;
    app.create_tenant(acme()).await;
    let post = |path: &'static str| {
        let request = app.request(Method::POST, path);
        async move { request.send().await.unwrap() }
    };
    let suspended: Value = post("/api/v1/tenants/acme:suspend")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(suspended["state"], "suspended");
    let resumed: Value = post("/api/v1/tenants/acme:resume")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(resumed["state"], "active");
    assert_eq!(resumed["generation"], 3);
    let (status, _) = problem(post("/api/v1/tenants/acme:explode").await).await;
    assert_eq!(status, 404);

    let deleted = app
        .request(Method::DELETE, "/api/v1/tenants/acme")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 202);
    assert_eq!(deleted.json::<Value>().await.unwrap()["state"], "deleting");
    let response = app
        .post_json(
            "/api/v1/tenants/acme/members",
            json!({"kind": "user", "subject": "eve@example.com", "role": "owner"}),
        )
        .await;
    let (status, body) = problem(response).await;
    assert_eq!(status, 409, "{body}");

    let (status, body) = problem(
        app.post_json("/api/v1/tenants", json!({"slug": "acme"}))
            .await,
    )
    .await;
    assert_eq!(status, 409, "slugs are never reused: {body}");
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn budgets_cannot_drop_below_allocations_and_members_are_managed(db: PgPool) {
    let app = spawn_app(db).await;
    app.create_tenant(acme()).await;
    let put = |budget: Value| {
        let request = app
            .request(Method::PUT, "/api/v1/tenants/acme/budget")
            .json(&json!({"budget": budget}));
        async move { request.send().await.unwrap() }
    };
    let (status, body) =
        problem(put(json!({"requests.cpu": "3", "requests.memory": "8Gi"})).await).await;
    assert_eq!(status, 409);
    assert_eq!(body["errors"][0]["field"], "budget.requests.cpu");
    let raised: Value =
        put(json!({"requests.cpu": "8", "requests.memory": "16Gi", "namespaces": "5"}))
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(raised["budget"]["requests.cpu"], "8");

    let added: Value = app
        .post_json(
            "/api/v1/tenants/acme/members",
            json!({"kind": "user", "subject": "Alice@Example.com", "role": "viewer"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let alice = added["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["subject"] == "alice@example.com")
        .unwrap();
    let id = alice["id"].as_i64().unwrap();
    let changed: Value = app
        .request(Method::PATCH, &format!("/api/v1/tenants/acme/members/{id}"))
        .json(&json!({"role": "editor"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        changed["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == id && m["role"] == "editor")
    );
    let removed = app
        .request(
            Method::DELETE,
            &format!("/api/v1/tenants/acme/members/{id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);
    let members: Value = app
        .get("/api/v1/tenants/acme/members")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(members["items"].as_array().unwrap().len(), 1);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn the_audit_trail_records_who_changed_what_with_before_and_after(db: PgPool) {
    let app = spawn_app(db).await;
    app.create_tenant(acme()).await;
    app.request(Method::PATCH, "/api/v1/tenants/acme")
        .header("content-type", "application/merge-patch+json")
        .header("x-request-id", "req-42")
        .body(r#"{"display_name": "Acme Pay"}"#)
        .send()
        .await
        .unwrap();
    let page: Value = app
        .get("/api/v1/audit-events?tenant=acme")
        .await
        .json()
        .await
        .unwrap();
    let events = page["items"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["action"], "tenant.updated");
    assert_eq!(events[0]["actor"], "token:test-admin");
    assert_eq!(events[0]["request_id"], "req-42");
    assert_eq!(events[0]["before"]["display_name"], "Acme Payments");
    assert_eq!(events[0]["after"]["display_name"], "Acme Pay");
    assert_eq!(events[1]["action"], "tenant.created");
    let created: Value = app
        .get("/api/v1/audit-events?action=tenant.created&page_size=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(created["items"].as_array().unwrap().len(), 1);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn tokens_are_checked_for_presence_validity_expiry_revocation_and_scope(db: PgPool) {
    let app = spawn_app(db).await;
    let url = format!("{}/api/v1/tenants", app.base);
    let no_token = app.client.get(&url).send().await.unwrap();
    assert_eq!(
        no_token.headers()["www-authenticate"],
        "Bearer realm=\"tenant-portal\""
    );
    assert_eq!(problem(no_token).await.0, 401);

    let forged = tenant_portal::auth::tokens::TokenSecret::generate().reveal();
    assert_eq!(
        problem(
            app.client
                .get(&url)
                .bearer_auth(forged)
                .send()
                .await
                .unwrap()
        )
        .await
        .0,
        401
    );

    let expired = create_token(
        &app.db,
        "old",
        &[Scope::Admin],
        Some(chrono::Utc::now() - chrono::Duration::hours(1)),
    )
    .await;
    let (status, body) = problem(
        app.client
            .get(&url)
            .bearer_auth(&expired)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(body["detail"].as_str().unwrap().contains("expired"));

    let reader = create_token(&app.db, "reader", &[Scope::TenantsRead], None).await;
    assert_eq!(
        app.client
            .get(&url)
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (status, body) = problem(
        app.client
            .post(&url)
            .bearer_auth(&reader)
            .json(&acme())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    assert!(body["detail"].as_str().unwrap().contains("tenants:write"));

    let mut conn = app.db.acquire().await.unwrap();
    assert!(
        tenant_portal::db::tokens::revoke(&mut conn, "reader")
            .await
            .unwrap()
    );
    let (status, body) = problem(
        app.client
            .get(&url)
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(body["detail"].as_str().unwrap().contains("revoked"));
    let used: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_used_at FROM service_tokens WHERE name = 'reader'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(used.is_some(), "last use is recorded");
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn health_and_readiness_answer(db: PgPool) {
    let app = spawn_app(db).await;
    assert_eq!(
        app.client
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(format!("{}/readyz", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn quota_requests_change_the_budget_only_when_an_admin_approves(db: PgPool) {
    let app = spawn_app(db).await;
    app.create_tenant(acme()).await;
    let owner = create_token(
        &app.db,
        "owner-platform",
        &[Scope::TenantsRead, Scope::TenantsWrite],
        None,
    )
    .await;
    let ask = |amount: &str| {
        let request = app
            .client
            .post(format!("{}/api/v1/quota-requests", app.base))
            .bearer_auth(&owner)
            .json(&json!({"tenant": "acme", "resource": "requests.cpu", "amount": amount, "reason": "load test next week"}));
        async move { request.send().await.unwrap() }
    };
    let (status, body) = problem(ask("lots").await).await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (422, Some("amount"))
    );
    let created = ask("8").await;
    assert_eq!(created.status(), 201);
    let request: Value = created.json().await.unwrap();
    assert_eq!(request["status"], "pending");
    let id = request["id"].as_i64().unwrap();

    let by_owner = app
        .client
        .post(format!("{}/api/v1/quota-requests/{id}/approve", app.base))
        .bearer_auth(&owner)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(by_owner).await.0, 403, "owners ask, admins decide");

    let approved: Value = app
        .post_json(
            &format!("/api/v1/quota-requests/{id}/approve"),
            json!({"amount": "6", "comment": "6 is what we have"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["granted_amount"], "6");
    let tenant: Value = app.get("/api/v1/tenants/acme").await.json().await.unwrap();
    assert_eq!(
        tenant["budget"]["requests.cpu"], "6",
        "the smaller amount became the budget"
    );
    let (status, _) = problem(
        app.post_json(&format!("/api/v1/quota-requests/{id}/reject"), json!({}))
            .await,
    )
    .await;
    assert_eq!(status, 409, "a request is decided once");

    let second: Value = ask("100").await.json().await.unwrap();
    let rejected: Value = app
        .post_json(
            &format!("/api/v1/quota-requests/{}/reject", second["id"]),
            json!({"comment": "too much"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rejected["status"], "rejected");
    let tenant: Value = app.get("/api/v1/tenants/acme").await.json().await.unwrap();
    assert_eq!(
        tenant["budget"]["requests.cpu"], "6",
        "a rejection changes nothing"
    );
    let listed: Value = app
        .get("/api/v1/quota-requests?tenant=acme")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_events WHERE tenant_slug = 'acme' ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert!(
        actions.contains(&"budget.changed".to_string())
            && actions.contains(&"quota_request.rejected".to_string())
    );
}

async fn clusters(app: &common::TestApp) -> Vec<Value> {
    let response = app.get("/api/v1/clusters").await;
    assert_eq!(response.status(), 200);
    response.json::<Vec<Value>>().await.unwrap()
}

fn cluster<'a>(all: &'a [Value], name: &str) -> &'a Value {
    all.iter().find(|c| c["name"] == name).unwrap()
}

async fn put_capacity(app: &common::TestApp, name: &str, body: Value) -> reqwest::Response {
    app.request(Method::PUT, &format!("/api/v1/clusters/{name}/capacity"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn placement_spreads_a_burst_and_places_nothing_past_a_declared_capacity(db: PgPool) {
    let app = spawn_app(db).await;
    // Twenty creates at once over two clusters: each must not see the same
    // counts and pick the same cluster.
    let creates = (0..20).map(|i| {
        app.post_json(
            "/api/v1/tenants",
            json!({"slug": format!("burst-{i}"), "budget": {"requests.cpu": "2", "requests.memory": "4Gi"},
                   "namespaces": [{"name": "dev"}]}),
        )
    });
    for response in futures::future::join_all(creates).await {
        assert_eq!(response.status(), 201);
    }
    let all = clusters(&app).await;
    let (local, edge) = (cluster(&all, "local"), cluster(&all, "edge"));
    let placed = (
        local["tenants"].as_i64().unwrap(),
        edge["tenants"].as_i64().unwrap(),
    );
    assert_eq!(placed.0 + placed.1, 20);
    assert!(
        placed.0 >= 5 && placed.1 >= 5,
        "a burst spreads: {placed:?}"
    );
    assert_eq!(local["placed"]["namespaces"], placed.0);
    assert_eq!(
        local["placed"]["cpu"],
        (2 * placed.0).to_string(),
        "{local}"
    );
    assert_eq!(edge["placed"]["memory"], format!("{}Gi", 4 * placed.1));
    assert_eq!(edge["capacity"]["namespaces"], Value::Null);

    // Declaring capacity is for platform admins, and every bad field is named.
    let writer = create_token(&app.db, "writer", &[Scope::TenantsWrite], None).await;
    let refused = app
        .client
        .put(format!("{}/api/v1/clusters/edge/capacity", app.base))
        .bearer_auth(&writer)
        .json(&json!({"namespaces": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(refused).await.0, 403);
    let (status, body) = problem(
        put_capacity(
            &app,
            "edge",
            json!({"namespaces": -1, "cpu": "lots", "memory": "-1Gi"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["namespaces", "cpu", "memory"]);
    assert_eq!(
        problem(put_capacity(&app, "moon", json!({})).await).await.0,
        404
    );
    let (status, body) = problem(put_capacity(&app, "edge", json!({"disks": 3})).await).await;
    assert_eq!(
        (status, &body["errors"][0]["field"]),
        (422, &json!("disks")),
        "{body}"
    );

    // Local is full; a new tenant goes to edge though edge may hold more tenants.
    let full = put_capacity(&app, "local", json!({"namespaces": placed.0})).await;
    assert_eq!(full.status(), 200);
    let full: Value = full.json().await.unwrap();
    assert_eq!(full["capacity"]["namespaces"], placed.0);
    assert_eq!(full["capacity"]["set_by"], "token:test-admin");
    for i in 0..3 {
        let tenant = app
            .create_tenant(
                json!({"slug": format!("late-{i}"), "namespaces": [{"name": "dev"}],
                                  "budget": {"requests.cpu": "2", "requests.memory": "4Gi"}}),
            )
            .await;
        assert_eq!(tenant["cluster"], "edge");
    }

    // Edge has room for one more namespace and 6 CPU more in budgets.
    let edge_cpu = 2 * placed.1 + 12;
    let declared = put_capacity(
        &app,
        "edge",
        json!({"namespaces": placed.1 + 4, "cpu": edge_cpu.to_string(), "memory": "1Ti"}),
    )
    .await;
    assert_eq!(declared.status(), 200);
    let before = app.table_counts().await;
    let (status, body) = problem(
        app.post_json(
            "/api/v1/tenants",
            json!({"slug": "wide", "namespaces": [{"name": "a"}, {"name": "b"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["errors"][0]["field"], "cluster");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!(
            "\"local\" cannot take 2 more namespace(s) within its declared {}",
            placed.0
        )) && detail.contains(&format!(
            "\"edge\" cannot take 2 more namespace(s) within its declared {}",
            placed.1 + 4
        )),
        "{detail}"
    );
    // Naming a full cluster gets the same answer from the database's own rule.
    let (status, body) = problem(
        app.post_json(
            "/api/v1/tenants",
            json!({"slug": "pinned", "cluster": "local", "namespaces": [{"name": "a"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("cluster \"local\" cannot take 1 more namespace(s) within its declared"),
        "{body}"
    );
    assert_eq!(
        app.table_counts().await,
        before,
        "no refusal wrote anything"
    );

    // A budget rise past edge's CPU is refused; one within it is not.
    let raise = |cpu: &str| {
        app.request(Method::PUT, "/api/v1/tenants/late-0/budget")
            .json(&json!({"budget": {"requests.cpu": cpu, "requests.memory": "4Gi", "namespaces": "10"}}))
            .send()
    };
    let (status, body) = problem(raise("9").await.unwrap()).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("cannot take 7 more CPU in budgets within its declared"),
        "{body}"
    );
    assert_eq!(raise("8").await.unwrap().status(), 200);
    let all = clusters(&app).await;
    assert_eq!(
        cluster(&all, "edge")["placed"]["cpu"],
        edge_cpu.to_string(),
        "the rise is counted"
    );

    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE action = 'cluster.capacity_set' AND actor = 'token:test-admin'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        audited, 2,
        "each declaration is audited, each refusal is not"
    );

    // A tenant the reconciler has deleted frees its room, namespaces and all.
    let before = cluster(&clusters(&app).await, "edge")["placed"].clone();
    tenant_portal::db::sync::tombstone(&mut app.db.acquire().await.unwrap(), {
        sqlx::query_scalar::<_, i64>("SELECT id FROM tenants WHERE slug = 'late-2'")
            .fetch_one(&app.db)
            .await
            .unwrap()
    })
    .await
    .unwrap();
    let after = cluster(&clusters(&app).await, "edge")["placed"].clone();
    assert_eq!(
        after["namespaces"].as_i64().unwrap(),
        before["namespaces"].as_i64().unwrap() - 1
    );
    assert_eq!(after["cpu"], (edge_cpu - 2).to_string());
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn budgets_of_tenants_from_before_placement_are_counted_at_start(db: PgPool) {
    let app = spawn_app(db).await;
    // Named: placement counts the creates in flight in this process, other
    // tests' among them, and could choose "edge".
    let mut tenant = acme();
    tenant["cluster"] = json!("local");
    app.create_tenant(tenant).await;
    // As migration 0016 leaves a tenant that existed before it.
    sqlx::query("UPDATE tenants SET cpu_millis = NULL, memory_bytes = NULL")
        .execute(&app.db)
        .await
        .unwrap();
    let local = |all: Vec<Value>| cluster(&all, "local")["placed"].clone();
    assert_eq!(local(clusters(&app).await)["cpu"], "0");
    let counted = tenant_portal::db::clusters::count_old_budgets(&app.db)
        .await
        .unwrap();
    assert_eq!(counted, 1);
    let placed = local(clusters(&app).await);
    assert_eq!(
        (&placed["cpu"], &placed["memory"]),
        (&json!("4"), &json!("8Gi"))
    );
    assert_eq!(placed["namespaces"], 2);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_listed_tenant_shows_every_change_at_once(db: PgPool) {
    let app = spawn_app(db).await;
    app.create_tenant(acme()).await;
    app.create_tenant(json!({"slug": "globex"})).await;
    let listed = || async {
        let page: Value = app.get("/api/v1/tenants").await.json().await.unwrap();
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["slug"] == "acme")
            .cloned()
            .unwrap()
    };
    let first = listed().await;
    let one: Value = app.get("/api/v1/tenants/acme").await.json().await.unwrap();
    assert_eq!(first, one, "a listed tenant is the tenant as read alone");
    assert_eq!(listed().await, first, "and the same when listed again");

    let send = |method: Method, path: &'static str, body: Value| {
        let request = app.request(method, path).json(&body);
        async move {
            let response = request.send().await.unwrap();
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
        }
    };
    send(
        Method::PATCH,
        "/api/v1/tenants/acme",
        json!({"display_name": "Acme Pay"}),
    )
    .await;
    assert_eq!(listed().await["display_name"], "Acme Pay");
    send(
        Method::POST,
        "/api/v1/tenants/acme/members",
        json!({"kind": "user", "subject": "dana@example.com", "role": "viewer"}),
    )
    .await;
    assert_eq!(listed().await["members"].as_array().unwrap().len(), 2);
    send(
        Method::POST,
        "/api/v1/tenants/acme/namespaces",
        json!({"name": "qa"}),
    )
    .await;
    assert_eq!(listed().await["namespaces"].as_array().unwrap().len(), 3);
    send(
        Method::PATCH,
        "/api/v1/tenants/acme/namespaces/dev",
        json!({"allocations": {"requests.cpu": "1", "requests.memory": "2Gi"}}),
    )
    .await;
    assert_eq!(listed().await["allocated"]["requests.cpu"], "3");
    send(
        Method::PUT,
        "/api/v1/tenants/acme/policy",
        json!({"pod_security": "baseline"}),
    )
    .await;
    assert_eq!(listed().await["policy"]["pod_security"], "baseline");
    // Written by the reconciler (or anyone) straight into the database.
    sqlx::query("UPDATE tenants SET sync_status = 'Ready', observed_generation = generation WHERE slug = 'acme'")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(listed().await["sync"]["status"], "Ready");
    let response = app
        .request(Method::DELETE, "/api/v1/tenants/acme/namespaces/prod")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let last = listed().await;
    assert_eq!(last["namespaces"].as_array().unwrap().len(), 2);
    let one: Value = app.get("/api/v1/tenants/acme").await.json().await.unwrap();
    assert_eq!(last, one);
    // The triggers that skip a create's own children (migration 0028)
    // still count every later one on the cluster.
    let rows: (i64, i64) = sqlx::query_as(
        "SELECT count(DISTINCT t.id), count(n.id) FROM tenants t
         LEFT JOIN namespaces n ON n.tenant_id = t.id WHERE t.cluster = 'local'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let all = clusters(&app).await;
    let load = cluster(&all, "local");
    assert_eq!(
        (
            load["tenants"].as_i64(),
            load["placed"]["namespaces"].as_i64()
        ),
        (Some(rows.0), Some(rows.1)),
        "the load kept is the rows': {load}"
    );
}

/// Issue 31: a transaction that wrote change-stream events holds no lock
/// for them until it commits (migration 0028), so one writer never waits
/// for another's round trips; and the numbers follow commit order, so a
/// reader who has seen a number never later finds a smaller one appear.
#[sqlx::test(migrator = "MIGRATIONS")]
async fn event_numbers_are_taken_at_commit_in_commit_order(db: PgPool) {
    let app = spawn_app(db).await;
    app.create_tenant(acme()).await;
    let id: i64 = sqlx::query_scalar("SELECT id FROM tenants WHERE slug = 'acme'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let append = tenant_portal::db::events::append;
    let nothing = Value::Null;
    let last = "SELECT last_id FROM event_sequence";
    let before: i64 = sqlx::query_scalar(last).fetch_one(&app.db).await.unwrap();
    let mut open = app.db.begin().await.unwrap();
    append(&mut open, "written.first", id, "acme", &nothing)
        .await
        .unwrap();
    let other = async {
        let mut tx = app.db.begin().await.unwrap();
        append(&mut tx, "written.second", id, "acme", &nothing)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), other)
        .await
        .expect("another writer's events commit while this transaction is open");
    open.commit().await.unwrap();
    let numbered: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, type FROM events WHERE id > $1 ORDER BY id")
            .bind(before)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(
        numbered,
        [
            (before + 1, "written.second".to_string()),
            (before + 2, "written.first".to_string())
        ],
        "numbered in the order they committed"
    );
    let after: i64 = sqlx::query_scalar(last).fetch_one(&app.db).await.unwrap();
    assert_eq!(after, before + 2);
}

/// Issue 31: a create counts its tenant on its cluster last (migration
/// 0025) and placement locks nothing while it chooses; forty creates at once
/// on two small clusters, named and placed, must still fill each exactly to
/// its capacity, keep the load the rows add up to, and refuse the rest with
/// a 409 problem naming the cluster.
#[sqlx::test(migrator = "MIGRATIONS")]
async fn many_creates_at_once_fill_small_clusters_exactly_and_refuse_the_rest(db: PgPool) {
    let app = spawn_app(db).await;
    for (name, room) in [("local", 7), ("edge", 5)] {
        let declared = put_capacity(&app, name, json!({"namespaces": room})).await;
        assert_eq!(declared.status(), 200);
    }
    let creates = (0..40).map(|i| {
        let cluster = match i % 4 {
            0 | 1 => json!("local"),
            2 => json!("edge"),
            _ => Value::Null,
        };
        app.post_json(
            "/api/v1/tenants",
            json!({"slug": format!("crowd-{i}"), "cluster": cluster, "namespaces": [{"name": "dev"}]}),
        )
    });
    let mut created = 0;
    for response in futures::future::join_all(creates).await {
        if response.status() == 201 {
            created += 1;
            continue;
        }
        let (status, body) = problem(response).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["errors"][0]["field"], "cluster", "{body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("cannot take 1 more namespace(s) within its declared"),
            "{detail}"
        );
    }
    assert_eq!(created, 12, "both clusters filled exactly");
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT t.cluster, count(DISTINCT t.id), count(n.id) FROM tenants t
         LEFT JOIN namespaces n ON n.tenant_id = t.id GROUP BY t.cluster ORDER BY t.cluster",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [("edge".to_string(), 5, 5), ("local".to_string(), 7, 7)]
    );
    let all = clusters(&app).await;
    for (name, room) in [("local", 7), ("edge", 5)] {
        let load = cluster(&all, name);
        assert_eq!(
            (
                load["tenants"].as_i64(),
                load["placed"]["namespaces"].as_i64()
            ),
            (Some(room), Some(room)),
            "the load kept is the rows': {load}"
        );
    }
    // Each created tenant left its trail; no refused one left anything.
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = 'tenant.created'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(audited, 12);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_burst_of_creates_never_fills_a_cluster_past_its_capacity(db: PgPool) {
    let app = spawn_app(db).await;
    let declared = put_capacity(&app, "local", json!({"namespaces": 5})).await;
    assert_eq!(declared.status(), 200);
    // Named and placed creates at once: each holds the cluster's row from
    // the moment it counts until it commits, so none may overfill it.
    let creates = (0..12).map(|i| {
        let cluster = if i % 2 == 0 { json!("local") } else { Value::Null };
        app.post_json(
            "/api/v1/tenants",
            json!({"slug": format!("rush-{i}"), "cluster": cluster, "namespaces": [{"name": "dev"}]}),
        )
    });
    let statuses: Vec<u16> = futures::future::join_all(creates)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    let on_local: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM namespaces n JOIN tenants t ON t.id = n.tenant_id WHERE t.cluster = 'local'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(on_local, 5, "exactly the capacity: {statuses:?}");
    let all = clusters(&app).await;
    assert_eq!(cluster(&all, "local")["placed"]["namespaces"], 5);
    let created = statuses.iter().filter(|s| **s == 201).count() as i64;
    assert_eq!(
        cluster(&all, "edge")["placed"]["namespaces"]
            .as_i64()
            .unwrap(),
        created - 5,
        "the placed ones that did not fit on local went to edge"
    );
}
