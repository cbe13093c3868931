//! Tenants as code: `PUT /api/v1/tenants/{slug}` makes a tenant exactly as
//! its document says, in one transaction with one audit event, under the
//! rules of the imperative calls; `tenant-portal diff`, `apply` and `export`
//! plan, apply and write folders of documents over the REST API.

mod common;

use std::path::Path;

use common::{create_token, create_token_reaching, problem, spawn_app};
use serde_json::{Value, json};
use sqlx::PgPool;
use tenant_portal::auth::Scope;

const MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

fn acme() -> Value {
    json!({
        "slug": "acme",
        "display_name": "Acme Payments",
        "labels": {"team": "payments"},
        "budget": {"requests.cpu": "4", "requests.memory": "8Gi", "pods": "20"},
        "namespaces": [
            {"name": "dev", "allocations": {"requests.cpu": "1", "requests.memory": "2Gi"}},
            {"name": "prod", "allocations": {"requests.cpu": "2", "requests.memory": "4Gi"}}
        ],
        "members": [
            {"kind": "group", "subject": "team-acme", "role": "owner"},
            {"kind": "user", "subject": "bob@example.com", "role": "viewer"}
        ]
    })
}

async fn put(
    app: &common::TestApp,
    token: &str,
    slug: &str,
    document: &Value,
) -> reqwest::Response {
    app.client
        .put(format!("{}/api/v1/tenants/{slug}", app.base))
        .bearer_auth(token)
        .json(document)
        .send()
        .await
        .unwrap()
}

async fn generation(db: &PgPool, slug: &str) -> i64 {
    sqlx::query_scalar("SELECT generation FROM tenants WHERE slug = $1")
        .bind(slug)
        .fetch_one(db)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_document_creates_the_tenant_and_the_same_document_again_changes_nothing(db: PgPool) {
    let app = spawn_app(db.clone()).await;

    let created = put(&app, &app.token, "acme", &acme()).await;
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["location"], "/api/v1/tenants/acme");
    let etag = created.headers()["etag"].to_str().unwrap().to_string();
    let plan: Value = created.json().await.unwrap();
    assert_eq!(plan["outcome"], "created", "{plan}");
    let said = common::plan_lines(&plan);
    assert_eq!(said[0], "+ tenant acme");
    assert!(said.contains(&"+ namespace prod (requests.cpu=2, requests.memory=4Gi)".to_string()));
    assert!(said.contains(&"+ member group team-acme (owner)".to_string()));

    let tenant: Value = app.get("/api/v1/tenants/acme").await.json().await.unwrap();
    assert_eq!(tenant["display_name"], "Acme Payments");
    assert_eq!(tenant["budget"]["namespaces"], "10", "the configured limit");
    assert_eq!(tenant["namespaces"].as_array().unwrap().len(), 2);

    let before = app.table_counts().await;
    let again = put(&app, &app.token, "acme", &acme()).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    let plan: Value = again.json().await.unwrap();
    assert_eq!(plan["outcome"], "unchanged", "{plan}");
    assert_eq!(plan["changes"], json!([]));
    assert_eq!(
        app.table_counts().await,
        before,
        "no generation bumped, no audit event, no outbox row"
    );
    assert_eq!(common::audit_actions(&db, "acme").await, ["tenant.created"]);

    // The tenant as a document is what makes it so.
    let document = app.get("/api/v1/tenants/acme/document").await;
    assert_eq!(document.headers()["etag"].to_str().unwrap(), etag);
    let document: Value = document.json().await.unwrap();
    assert_eq!(document["slug"], "acme");
    assert_eq!(
        document["namespaces"][1]["allocations"]["requests.memory"],
        "4Gi"
    );
    assert!(document.get("policy").is_none(), "{document}");
    let plan: Value = put(&app, &app.token, "acme", &document)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(plan["outcome"], "unchanged", "{plan}");
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn an_edited_document_changes_what_differs_in_one_audited_step(db: PgPool) {
    let app = spawn_app(db.clone()).await;
    assert_eq!(put(&app, &app.token, "acme", &acme()).await.status(), 201);
    let mut edited = acme();
    edited["budget"]["requests.cpu"] = json!("6");
    edited["namespaces"] = json!([
        {"name": "prod", "allocations": {"requests.cpu": "3", "requests.memory": "4Gi"}},
        {"name": "staging", "allocations": {"requests.cpu": "1"}}
    ]);
    edited["members"] = json!([{"kind": "group", "subject": "team-acme", "role": "editor"}]);
    edited["policy"] = json!({"pod_security": "restricted"});
    let expected = [
        "~ budget requests.cpu: 4 → 6",
        "- namespace dev",
        "~ namespace prod allocation requests.cpu: 2 → 3",
        "+ namespace staging (requests.cpu=1)",
        "- member user bob@example.com (viewer)",
        "~ member group team-acme: owner → editor",
        "~ policy pod_security: \"baseline\" → \"restricted\"",
    ];

    // A dry run plans exactly that and writes nothing.
    let before = app.table_counts().await;
    let dry = app
        .client
        .put(format!("{}/api/v1/tenants/acme?dry_run=true", app.base))
        .bearer_auth(&app.token)
        .json(&edited)
        .send()
        .await
        .unwrap();
    assert_eq!(dry.status(), 200);
    let plan: Value = dry.json().await.unwrap();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["outcome"], "changed");
    assert_eq!(common::plan_lines(&plan), expected);
    assert_eq!(app.table_counts().await, before, "a dry run writes nothing");

    let generation_before = generation(&db, "acme").await;
    let applied = put(&app, &app.token, "acme", &edited).await;
    assert_eq!(applied.status(), 200);
    let plan: Value = applied.json().await.unwrap();
    assert_eq!(common::plan_lines(&plan), expected);
    assert_eq!(plan["generation"], generation_before + 1, "one step");
    assert_eq!(
        common::audit_actions(&db, "acme").await,
        ["tenant.created", "tenant.applied"]
    );
    let (before, after): (Value, Value) =
        sqlx::query_as("SELECT before, after FROM audit_events WHERE action = 'tenant.applied'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(before["budget"]["requests.cpu"], "4");
    assert_eq!(after["budget"]["requests.cpu"], "6");
    assert_eq!(after["namespaces"].as_array().unwrap().len(), 2);
    assert_eq!(after["policy"]["pod_security"], "restricted");

    let tenant: Value = app.get("/api/v1/tenants/acme").await.json().await.unwrap();
    let names: Vec<&str> = tenant["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["prod", "staging"]);
    assert_eq!(tenant["members"].as_array().unwrap().len(), 1);
    assert_eq!(
        put(&app, &app.token, "acme", &edited)
            .await
            .json::<Value>()
            .await
            .unwrap()["outcome"],
        "unchanged"
    );

    // Fields a document leaves out keep their value.
    let plan: Value = put(
        &app,
        &app.token,
        "acme",
        &json!({"description": "Payments"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        common::plan_lines(&plan),
        ["~ description: \"\" → \"Payments\""]
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn documents_that_break_a_rule_are_refused_naming_the_field_and_write_nothing(db: PgPool) {
    let app = spawn_app(db.clone()).await;
    let mut acme = acme();
    acme["namespaces"][1]["name"] = json!("team-dev");
    assert_eq!(put(&app, &app.token, "acme", &acme).await.status(), 201);
    let writer = create_token(
        &db,
        "writer",
        &[Scope::TenantsRead, Scope::TenantsWrite],
        None,
    )
    .await;
    let etag = generation(&db, "acme").await;
    let before = app.table_counts().await;

    let mut raised = acme.clone();
    raised["budget"]["requests.cpu"] = json!("8");
    let mut bad_quantity = acme.clone();
    bad_quantity["namespaces"][0]["allocations"]["requests.cpu"] = json!("lots");
    let mut over_budget = acme.clone();
    over_budget["namespaces"][0]["allocations"]["requests.cpu"] = json!("3");
    let mut policy = acme.clone();
    policy["policy"] = json!({"pod_security": "privileged"});
    let mut unknown = acme.clone();
    unknown["template"] = json!("small");
    // `acme-team` + `dev` is `acme-team-dev`, which tenant acme holds.
    let reused = json!({"slug": "acme-team", "namespaces": [{"name": "dev"}]});
    let cases: Vec<(&str, &str, &str, Value, u16, &str)> = vec![
        (
            "a token without quota:write raising the budget",
            &writer,
            "acme",
            raised,
            403,
            "budget.requests.cpu",
        ),
        (
            "a quantity that is none",
            &app.token,
            "acme",
            bad_quantity,
            422,
            "namespaces[0].allocations.requests.cpu",
        ),
        (
            "allocations over the budget",
            &app.token,
            "acme",
            over_budget,
            422,
            "namespaces[1].allocations.requests.cpu",
        ),
        (
            "a policy change without admin",
            &writer,
            "acme",
            policy,
            403,
            "policy.pod_security",
        ),
        (
            "an unknown field",
            &app.token,
            "acme",
            unknown,
            422,
            "template",
        ),
        (
            "a slug other than the path's",
            &app.token,
            "other",
            acme.clone(),
            422,
            "slug",
        ),
        (
            "a namespace name another tenant holds",
            &app.token,
            "acme-team",
            reused,
            409,
            "namespaces[0].name",
        ),
    ];
    for (case, token, slug, document, status, field) in cases {
        let (got, body) = problem(put(&app, token, slug, &document).await).await;
        assert_eq!(got, status, "{case}: {body}");
        assert!(
            body["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "{case} names {field}: {body}"
        );
    }
    let stale = app
        .client
        .put(format!("{}/api/v1/tenants/acme", app.base))
        .bearer_auth(&app.token)
        .header("if-match", format!("\"{}\"", etag + 5))
        .json(&json!({"description": "late"}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(stale).await.0, 412);
    assert_eq!(app.table_counts().await, before, "nothing was written");

    // The name stays claimed after the namespace goes: never given to a second tenant.
    acme["namespaces"] = json!([acme["namespaces"][0].clone()]);
    let plan: Value = put(&app, &app.token, "acme", &acme)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(common::plan_lines(&plan), ["- namespace team-dev"]);
    put(&app, &app.token, "acme-team", &json!({"namespaces": []})).await;
    let (status, body) = problem(
        put(
            &app,
            &app.token,
            "acme-team",
            &json!({"namespaces": [{"name": "dev"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["errors"][0]["field"], "namespaces[0].name", "{body}");

    // The right If-Match, or none, is accepted.
    let now = generation(&db, "acme").await;
    let fresh = app
        .client
        .put(format!("{}/api/v1/tenants/acme", app.base))
        .bearer_auth(&app.token)
        .header("if-match", format!("\"{now}\""))
        .json(&json!({"description": "on time"}))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn budgets_follow_who_may_grant_them(db: PgPool) {
    let app = spawn_app(db.clone()).await;
    let writer = create_token(
        &db,
        "writer",
        &[Scope::TenantsRead, Scope::TenantsWrite],
        None,
    )
    .await;
    // Without quota:write a new tenant gets the default budget, or less where asked.
    let small = json!({"slug": "small", "budget": {"requests.cpu": "1"},
        "namespaces": [{"name": "dev", "allocations": {"requests.cpu": "1"}}]});
    let created = put(&app, &writer, "small", &small).await;
    assert_eq!(created.status(), 201);
    let tenant: Value = app.get("/api/v1/tenants/small").await.json().await.unwrap();
    assert_eq!(tenant["budget"]["requests.cpu"], "1");
    assert_eq!(tenant["budget"]["requests.memory"], "4Gi", "the default's");
    let plan: Value = put(&app, &writer, "small", &small)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(plan["outcome"], "unchanged", "{plan}");

    let mut big = small.clone();
    big["budget"]["requests.cpu"] = json!("3");
    let mut new_big = big.clone();
    new_big["slug"] = json!("big");
    let (status, body) = problem(put(&app, &writer, "big", &new_big).await).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errors"][0]["field"], "budget.requests.cpu");
    let (status, _) = problem(put(&app, &writer, "small", &big).await).await;
    assert_eq!(status, 403);

    // A platform admin (or quota:write) sets it exactly.
    let plan: Value = put(&app, &app.token, "small", &big)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        common::plan_lines(&plan),
        [
            "- budget pods: 20 → (none)",
            "~ budget requests.cpu: 1 → 3",
            "- budget requests.memory: 4Gi → (none)",
        ],
        "the admin's document is the whole budget"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_token_changes_only_tenants_it_reaches(db: PgPool) {
    let app = spawn_app(db.clone()).await;
    assert_eq!(put(&app, &app.token, "acme", &acme()).await.status(), 201);
    let ci =
        create_token_reaching(&db, "ci", &[Scope::TenantsRead, Scope::TenantsWrite], &[]).await;
    let before = app.table_counts().await;
    let (status, _) = problem(put(&app, &ci, "acme", &json!({"description": "mine"})).await).await;
    assert_eq!(status, 404, "hidden like a missing tenant");
    let hidden = app
        .client
        .get(format!("{}/api/v1/tenants/acme/document", app.base))
        .bearer_auth(&ci)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(hidden).await.0, 404);
    assert_eq!(app.table_counts().await, before);

    // What it creates, it reaches.
    let preview = json!({"slug": "pr-1", "ttl": "2h", "namespaces": [{"name": "app"}]});
    assert_eq!(put(&app, &ci, "pr-1", &preview).await.status(), 201);
    let plan: Value = put(&app, &ci, "pr-1", &preview).await.json().await.unwrap();
    assert_eq!(
        plan["outcome"], "unchanged",
        "a lifetime counts from the creation: {plan}"
    );
    let reader = create_token(&db, "reader", &[Scope::TenantsRead], None).await;
    let (status, _) = problem(put(&app, &reader, "pr-1", &preview).await).await;
    assert_eq!(status, 403, "tenants:write is needed");
}

/// The real binary, as CI runs it.
async fn cli(app: &common::TestApp, args: &[&str]) -> (i32, String) {
    // Awaited, so that the portal in this test's runtime answers meanwhile.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenant-portal"))
        .args(args)
        .args(["--portal", &app.base])
        .env("TP_TOKEN", &app.token)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn the_cli_plans_applies_prunes_and_exports_a_folder(db: PgPool) {
    let app = spawn_app(db.clone()).await;
    let dir = std::env::temp_dir().join(format!("tenants-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let folder = dir.to_str().unwrap();
    write(
        &dir,
        "alpha.yaml",
        "slug: alpha\nbudget:\n  requests.cpu: '2'\nnamespaces:\n  - name: dev\n    allocations:\n      requests.cpu: '1'\n",
    );
    write(&dir, "beta.yaml", "slug: beta\ndisplay_name: Beta\n");
    write(&dir, "notes.txt", "not a document");
    // A tenant of nobody's folder, which --prune never touches.
    assert_eq!(
        put(&app, &app.token, "loner", &json!({"labels": {"team": "x"}}))
            .await
            .status(),
        201
    );

    let managed = ["--managed-by", "platform"];
    let (code, out) = cli(&app, &[&["diff", "-f", folder][..], &managed].concat()).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("tenant alpha: to create"), "{out}");
    assert!(out.contains("+ namespace dev (requests.cpu=1)"), "{out}");
    assert!(out.contains("2 tenant(s): 2 to create"), "{out}");
    assert_eq!(
        app.get("/api/v1/tenants/alpha").await.status(),
        404,
        "diff changes nothing"
    );

    let (code, out) = cli(&app, &[&["apply", "-f", folder][..], &managed].concat()).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("tenant beta: created"), "{out}");
    let (code, out) = cli(&app, &[&["diff", "-f", folder][..], &managed].concat()).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("tenant alpha: no changes"), "{out}");

    // An edit is planned and applied alone.
    write(&dir, "beta.yaml", "slug: beta\ndisplay_name: Beta Team\n");
    let (code, out) = cli(&app, &[&["diff", "-f", folder][..], &managed].concat()).await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("~ display_name: \"Beta\" → \"Beta Team\""),
        "{out}"
    );
    assert!(out.contains("1 to change, 1 unchanged"), "{out}");

    // Pruning deletes what left the folder and carries its label, nothing else.
    std::fs::remove_file(dir.join("alpha.yaml")).unwrap();
    let prune = [&["diff", "-f", folder, "--prune"][..], &managed].concat();
    let (code, out) = cli(&app, &prune).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("tenant alpha: to delete"), "{out}");
    assert!(!out.contains("loner"), "{out}");
    let (code, out) = cli(
        &app,
        &[&["apply", "-f", folder, "--prune"][..], &managed].concat(),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("tenant alpha: deleted"), "{out}");
    let alpha: Value = app.get("/api/v1/tenants/alpha").await.json().await.unwrap();
    assert_eq!(alpha["state"], "deleting");
    let loner: Value = app.get("/api/v1/tenants/loner").await.json().await.unwrap();
    assert_eq!(loner["state"], "active");
    let (code, out) = cli(&app, &prune).await;
    assert_eq!(code, 0, "{out}");

    // Export writes documents that apply to the same tenants unchanged.
    let exported = dir.join("exported");
    let (code, out) = cli(
        &app,
        &[
            "export",
            "--selector",
            "tenant-portal.dev/managed-by=platform",
            "-o",
            exported.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let beta = std::fs::read_to_string(exported.join("beta.yaml")).unwrap();
    assert!(beta.contains("display_name: Beta Team"), "{beta}");
    assert!(!exported.join("loner.yaml").exists());
    let (code, out) = cli(&app, &["diff", "-f", exported.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}");

    // A refused document fails the run, naming the field.
    write(
        &dir,
        "bad.yaml",
        "slug: gamma\nnamespaces:\n  - name: Bad_Name\n",
    );
    let (code, out) = cli(
        &app,
        &["apply", "-f", dir.join("bad.yaml").to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("namespaces[0].name"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A portal that keeps no GitOps credentials refuses a document that asks
/// for them, naming the field and the flag, and creates nothing; a tool it
/// does not know is named too; a token that may only read is refused.
#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_document_asking_for_gitops_credentials_a_portal_cannot_keep_is_refused(db: PgPool) {
    let app = spawn_app(db.clone()).await;
    let mut document = acme();
    document["gitops"] = json!({"argocd": true});
    let (status, refusal) = problem(put(&app, &app.token, "acme", &document).await).await;
    assert_eq!(status, 422, "{refusal}");
    let errors = refusal["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["field"] == "gitops"
                && e["rule"].as_str().unwrap().contains("--gitops-cluster")),
        "{refusal}"
    );
    // Named together with the document's other faults.
    let mut faulty = document.clone();
    faulty["display_name"] = json!("");
    let (status, refusal) = problem(put(&app, &app.token, "acme", &faulty).await).await;
    assert_eq!(status, 422, "{refusal}");
    let fields: Vec<&str> = refusal["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert!(
        fields.contains(&"gitops") && fields.contains(&"display_name"),
        "{refusal}"
    );
    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(tenants, 0, "nothing of a refused document is kept");

    // On an existing tenant too, and asking for none is no change.
    assert_eq!(put(&app, &app.token, "acme", &acme()).await.status(), 201);
    let (status, refusal) = problem(put(&app, &app.token, "acme", &document).await).await;
    assert_eq!(status, 422, "{refusal}");
    document["gitops"] = json!({});
    let plan: Value = put(&app, &app.token, "acme", &document)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(plan["outcome"], "unchanged", "{plan}");

    document["gitops"] = json!({"jenkins": true});
    let (status, refusal) = problem(put(&app, &app.token, "acme", &document).await).await;
    assert_eq!(status, 422, "{refusal}");
    assert!(refusal.to_string().contains("jenkins"), "{refusal}");

    let reader = create_token(&db, "reader", &[Scope::TenantsRead], None).await;
    document["gitops"] = json!({"argocd": true});
    let refused = put(&app, &reader, "acme", &document).await;
    assert_eq!(refused.status(), 403);
}
