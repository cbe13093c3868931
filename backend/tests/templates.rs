//! Templates (tiers): tenants made from a named, versioned template record
//! it; a new version is planned (a dry run naming each tenant's changes) and
//! rolled out to all or a chosen set of the template's tenants, each audited,
//! keeping what a tenant has of its own (a budget raised by a quota request).

mod common;

use common::{create_token, problem, spawn_app};
use serde_json::{Value, json};
use sqlx::PgPool;
use tenant_portal::auth::Scope;

const MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

fn small_v1() -> Value {
    json!({
        "description": "Two namespaces for a small team",
        "budget": {"requests.cpu": "4", "requests.memory": "8Gi", "pods": "20"},
        "namespaces": [
            {"name": "dev", "allocations": {"requests.cpu": "1", "requests.memory": "2Gi"}},
            {"name": "prod", "allocations": {"requests.cpu": "2", "requests.memory": "4Gi"}}
        ],
        "labels": {"tier": "small"}
    })
}

fn small_v2() -> Value {
    let mut v2 = small_v1();
    v2["budget"] = json!({"requests.cpu": "6", "requests.memory": "8Gi", "pods": "30"});
    v2["namespaces"][0]["allocations"]["requests.cpu"] = json!("2");
    v2["labels"]["cost-center"] = json!("shared");
    v2
}

async fn send(
    app: &common::TestApp,
    method: reqwest::Method,
    token: &str,
    path: &str,
    body: &Value,
) -> reqwest::Response {
    app.client
        .request(method, format!("{}/api/v1{path}", app.base))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn tenant_plan<'a>(rollout: &'a Value, slug: &str) -> &'a Value {
    let tenant = rollout["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["slug"] == slug)
        .unwrap_or_else(|| panic!("{slug} is not in {rollout}"));
    &tenant["plan"]
}

async fn on_version(db: &PgPool, slug: &str) -> i32 {
    sqlx::query_scalar(
        "SELECT tt.version FROM tenant_templates tt JOIN tenants t ON t.id = tt.tenant_id WHERE t.slug = $1",
    )
    .bind(slug)
    .fetch_one(db)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_new_template_version_is_planned_then_rolled_out_keeping_overrides(db: PgPool) {
    let app = spawn_app(db.clone()).await;
    let put = reqwest::Method::PUT;
    let post = reqwest::Method::POST;

    // A platform admin writes the template; the same fields again write nothing.
    let created = send(
        &app,
        put.clone(),
        &app.token,
        "/templates/small",
        &small_v1(),
    )
    .await;
    assert_eq!(created.status(), 201);
    let template: Value = created.json().await.unwrap();
    assert_eq!(
        (template["name"].as_str(), template["version"].as_i64()),
        (Some("small"), Some(1))
    );
    let again = send(
        &app,
        put.clone(),
        &app.token,
        "/templates/small",
        &small_v1(),
    )
    .await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["version"], 1);

    // An owner's token (no quota:write) makes a tenant from it, with the
    // template's budget (more than the default budget) and its own label.
    let owner = create_token(
        &db,
        "owner",
        &[Scope::TenantsRead, Scope::TenantsWrite],
        None,
    )
    .await;
    let listed: Value = send(
        &app,
        reqwest::Method::GET,
        &owner,
        "/templates",
        &json!(null),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(listed["templates"][0]["name"], "small");
    let document = json!({"template": "small", "labels": {"team": "payments"}});
    let made = send(&app, put.clone(), &owner, "/tenants/acme", &document).await;
    assert_eq!(made.status(), 201);
    let plan: Value = made.json().await.unwrap();
    assert_eq!(
        common::plan_lines(&plan)[..2],
        ["+ tenant acme", "+ template: (none) → small v1"]
    );
    let tenant: Value = app.get("/api/v1/tenants/acme").await.json().await.unwrap();
    assert_eq!(tenant["budget"]["requests.cpu"], "4", "{tenant}");
    assert_eq!(
        tenant["labels"],
        json!({"tier": "small", "team": "payments"})
    );
    assert_eq!(tenant["namespaces"].as_array().unwrap().len(), 2);
    let read: Value = app
        .get("/api/v1/tenants/acme/document")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["template"], "small");
    assert_eq!(
        send(&app, put.clone(), &owner, "/tenants/acme", &read)
            .await
            .json::<Value>()
            .await
            .unwrap()["outcome"],
        "unchanged",
        "the document read back changes nothing"
    );
    // A second tenant from the template, by a platform admin.
    let beta = send(
        &app,
        put.clone(),
        &app.token,
        "/tenants/beta",
        &json!({"template": "small"}),
    )
    .await;
    assert_eq!(beta.status(), 201);

    // acme's budget is raised by an approved quota request: its own override.
    let asked: Value = send(
        &app,
        post.clone(),
        &owner,
        "/quota-requests",
        &json!({"tenant": "acme", "resource": "requests.cpu", "amount": "8", "reason": "launch"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let approve = format!("/quota-requests/{}/approve", asked["id"]);
    assert_eq!(
        send(&app, post.clone(), &app.token, &approve, &json!({}))
            .await
            .status(),
        200
    );

    // Version 2, and its dry run: each tenant's changes, acme's override kept.
    let v2 = send(
        &app,
        put.clone(),
        &app.token,
        "/templates/small",
        &small_v2(),
    )
    .await;
    assert_eq!(v2.json::<Value>().await.unwrap()["version"], 2);
    let before = app.table_counts().await;
    let dry: Value = send(
        &app,
        post.clone(),
        &app.token,
        "/templates/small/rollout?dry_run=true",
        &json!({}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(app.table_counts().await, before, "a dry run writes nothing");
    assert_eq!(
        (dry["version"].as_i64(), dry["dry_run"].as_bool()),
        (Some(2), Some(true))
    );
    let acme = tenant_plan(&dry, "acme");
    assert_eq!(
        common::plan_lines(acme),
        [
            "~ template: small v1 → small v2",
            "+ label cost-center: (none) → shared",
            "~ budget pods: 20 → 30",
            "~ namespace dev allocation requests.cpu: 1 → 2",
        ]
    );
    assert_eq!(
        acme["overrides"],
        json!([{"field": "budget.requests.cpu", "tenant": "8", "template": "6"}])
    );
    assert!(
        common::plan_lines(tenant_plan(&dry, "beta"))
            .contains(&"~ budget requests.cpu: 4 → 6".to_string()),
        "{dry}"
    );

    // Rolled out to a chosen set: beta moves, acme stays on v1.
    let chosen: Value = send(
        &app,
        post.clone(),
        &app.token,
        "/templates/small/rollout",
        &json!({"tenants": ["beta"]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(chosen["tenants"].as_array().unwrap().len(), 1, "{chosen}");
    assert_eq!(tenant_plan(&chosen, "beta")["outcome"], "changed");
    assert_eq!(
        (on_version(&db, "beta").await, on_version(&db, "acme").await),
        (2, 1)
    );

    // Then to all: acme moves, keeping its budget; beta has nothing left to change.
    let all: Value = send(
        &app,
        post.clone(),
        &app.token,
        "/templates/small/rollout",
        &json!({}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(tenant_plan(&all, "acme")["outcome"], "changed", "{all}");
    assert_eq!(tenant_plan(&all, "beta")["outcome"], "unchanged", "{all}");
    assert_eq!(on_version(&db, "acme").await, 2);
    let tenant: Value = app.get("/api/v1/tenants/acme").await.json().await.unwrap();
    assert_eq!(
        tenant["budget"]["requests.cpu"], "8",
        "the granted override is kept"
    );
    assert_eq!(tenant["budget"]["pods"], "30");
    assert_eq!(tenant["labels"]["team"], "payments");
    assert_eq!(tenant["labels"]["cost-center"], "shared");

    // The audit trail shows each step, per tenant and for the template.
    let acme_trail = common::audit_actions(&db, "acme").await;
    assert_eq!(
        acme_trail.first().map(String::as_str),
        Some("tenant.created")
    );
    assert_eq!(
        acme_trail
            .iter()
            .filter(|a| *a == "tenant.template_rolled_out")
            .count(),
        1,
        "{acme_trail:?}"
    );
    assert_eq!(
        common::audit_actions(&db, "beta").await,
        ["tenant.created", "tenant.template_rolled_out"]
    );
    let template_trail: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_events WHERE action LIKE 'template.%' ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(template_trail, ["template.created", "template.changed"]);
    let (before, after): (Value, Value) = sqlx::query_as(
        "SELECT before, after FROM audit_events WHERE action = 'tenant.template_rolled_out' AND tenant_slug = 'acme'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(before["budget"]["pods"], "20");
    assert_eq!(after["budget"]["pods"], "30");

    // Once rolled out, a rollout changes nothing.
    let before = app.table_counts().await;
    let again: Value = send(
        &app,
        post,
        &app.token,
        "/templates/small/rollout",
        &json!({}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(
        again["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["plan"]["outcome"] == "unchanged"),
        "{again}"
    );
    assert_eq!(app.table_counts().await, before);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn templates_refuse_what_breaks_their_rules(db: PgPool) {
    let app = spawn_app(db.clone()).await;
    let put = reqwest::Method::PUT;
    let owner = create_token(
        &db,
        "owner",
        &[Scope::TenantsRead, Scope::TenantsWrite],
        None,
    )
    .await;

    // Only platform admins write templates.
    let (status, body) =
        problem(send(&app, put.clone(), &owner, "/templates/small", &small_v1()).await).await;
    assert_eq!(status, 403, "{body}");

    // Bad quantities, allocations over the budget, bad names: 422, each field named.
    let mut bad = small_v1();
    bad["budget"]["requests.cpu"] = json!("lots");
    bad["namespaces"][1]["allocations"]["requests.memory"] = json!("16Gi");
    let (status, body) =
        problem(send(&app, put.clone(), &app.token, "/templates/small", &bad).await).await;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"budget.requests.cpu"), "{body}");
    let (status, body) = problem(
        send(
            &app,
            put.clone(),
            &app.token,
            "/templates/Small",
            &small_v1(),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (422, Some("template"))
    );
    let (status, body) = problem(
        send(
            &app,
            put.clone(),
            &app.token,
            "/templates/small",
            &json!({"tier": "gold"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422, "an unknown field: {body}");
    let mut over = small_v1();
    over["namespaces"][1]["allocations"]["requests.memory"] = json!("16Gi");
    let (status, body) =
        problem(send(&app, put.clone(), &app.token, "/templates/small", &over).await).await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (422, Some("namespaces[1].allocations.requests.memory")),
        "{body}"
    );
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM templates")
            .fetch_one(&db)
            .await
            .unwrap(),
        0,
        "nothing written"
    );

    // An unknown template: 422 naming the document's field, nothing written.
    let (status, body) = problem(
        send(
            &app,
            put.clone(),
            &owner,
            "/tenants/acme",
            &json!({"template": "large"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (422, Some("template")),
        "{body}"
    );
    assert_eq!(app.get("/api/v1/tenants/acme").await.status(), 404);

    // A tenant's template is chosen at creation, never by a later document.
    assert_eq!(
        send(
            &app,
            put.clone(),
            &app.token,
            "/templates/small",
            &small_v1()
        )
        .await
        .status(),
        201
    );
    assert_eq!(
        send(
            &app,
            put.clone(),
            &app.token,
            "/templates/team",
            &small_v1()
        )
        .await
        .status(),
        201
    );
    assert_eq!(
        send(
            &app,
            put.clone(),
            &owner,
            "/tenants/acme",
            &json!({"template": "small"})
        )
        .await
        .status(),
        201
    );
    let (status, body) = problem(
        send(
            &app,
            put.clone(),
            &owner,
            "/tenants/acme",
            &json!({"template": "team"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (422, Some("template")),
        "{body}"
    );

    // Rollouts: admins only, to tenants on the template, of versions it has.
    let post = reqwest::Method::POST;
    let (status, _) = problem(
        send(
            &app,
            post.clone(),
            &owner,
            "/templates/small/rollout",
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = problem(
        send(
            &app,
            post.clone(),
            &app.token,
            "/templates/small/rollout",
            &json!({"tenants": ["nobody"]}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (422, Some("tenants[0]")),
        "{body}"
    );
    let (status, body) = problem(
        send(
            &app,
            post.clone(),
            &app.token,
            "/templates/small/rollout",
            &json!({"version": 9}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (422, Some("version")),
        "{body}"
    );
    let (status, _) = problem(
        send(
            &app,
            post,
            &app.token,
            "/templates/huge/rollout",
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(app.get("/api/v1/templates/huge").await.status(), 404);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn owners_pick_a_template_on_the_dashboard_and_admins_see_templates(db: PgPool) {
    let app = common::spawn_app_config(
        db.clone(),
        tenant_portal::config::ServeConfig {
            login: common::idp::login_config(),
            ..common::config()
        },
        Default::default(),
    )
    .await;
    let written = send(
        &app,
        reqwest::Method::PUT,
        &app.token,
        "/templates/small",
        &small_v1(),
    )
    .await;
    assert_eq!(written.status(), 201);

    let alice = common::idp::login_as(&app, "ALICE").await;
    let form = alice.get("/tenants/new").await.text().await.unwrap();
    assert!(
        form.contains(
            r#"<option value="small">small (v1): Two namespaces for a small team</option>"#
        ),
        "{form}"
    );
    let created = alice
        .change(reqwest::Method::POST, "/tenants")
        .form(&[
            ("_csrf", alice.csrf_token.as_str()),
            ("slug", "alpha"),
            ("description", "From the small tier"),
            ("template", "small"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 303, "{}", created.text().await.unwrap());
    let tenant: Value = app.get("/api/v1/tenants/alpha").await.json().await.unwrap();
    assert_eq!(
        tenant["budget"]["requests.cpu"], "4",
        "the template's, not the default"
    );
    assert_eq!(tenant["labels"]["tier"], "small");
    assert_eq!(tenant["namespaces"].as_array().unwrap().len(), 2);
    assert_eq!(tenant["members"][0]["role"], "owner", "{tenant}");
    assert_eq!(on_version(&db, "alpha").await, 1);

    // An unknown template is refused beside the field.
    let refused = alice
        .change(reqwest::Method::POST, "/tenants")
        .form(&[
            ("_csrf", alice.csrf_token.as_str()),
            ("slug", "beta"),
            ("template", "huge"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains(r#"id="template-error""#)
    );

    let admin = common::idp::login_as(&app, "ADMIN").await;
    let page = admin.get("/admin").await.text().await.unwrap();
    assert!(page.contains(r#"<table id="templates">"#), "{page}");
    assert!(page.contains("1 of 1 on v1"), "{page}");
}
