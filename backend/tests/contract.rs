//! The API's contract: every bad input gets a clear 4xx problem answer and
//! changes nothing, and every route is in the OpenAPI document.

mod common;

use common::{acme, problem, spawn_app};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

const MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// One bad request and the answer it must get.
struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    /// Raw body; sent as JSON unless `content_type` says otherwise.
    body: Option<String>,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, &'static str)>,
    /// `None`: the test's admin token; `Some("")`: none at all.
    token: Option<&'static str>,
    status: u16,
    /// The field the answer must name, if any.
    field: Option<&'static str>,
}

fn case(
    name: &'static str,
    method: Method,
    path: &'static str,
    body: Value,
    status: u16,
    field: Option<&'static str>,
) -> Case {
    Case {
        name,
        method,
        path,
        body: Some(body.to_string()),
        content_type: None,
        headers: vec![],
        token: None,
        status,
        field,
    }
}

fn create(name: &'static str, body: Value, field: &'static str) -> Case {
    case(
        name,
        Method::POST,
        "/api/v1/tenants",
        body,
        422,
        Some(field),
    )
}

fn with_budget(name: &'static str, resource: &str, amount: &str, field: &'static str) -> Case {
    create(
        name,
        json!({"slug": "fresh", "budget": {resource: amount}}),
        field,
    )
}

fn cases() -> Vec<Case> {
    let mut cases = vec![
        // Slugs.
        create("slug too short", json!({"slug": "ab"}), "slug"),
        create("slug too long", json!({"slug": "a".repeat(21)}), "slug"),
        create("slug upper case", json!({"slug": "Acme"}), "slug"),
        create("slug leading digit", json!({"slug": "1acme"}), "slug"),
        create("slug trailing dash", json!({"slug": "acme-"}), "slug"),
        create("slug underscore", json!({"slug": "ac_me"}), "slug"),
        create("slug unicode", json!({"slug": "acmé"}), "slug"),
        create("slug reserved kube", json!({"slug": "kube-stuff"}), "slug"),
        create("slug reserved default", json!({"slug": "default"}), "slug"),
        create("slug missing", json!({"display_name": "x"}), "body"),
        create("slug wrong type", json!({"slug": 42}), "slug"),
        // Other tenant fields.
        create(
            "display name too long",
            json!({"slug": "fresh", "display_name": "x".repeat(101)}),
            "display_name",
        ),
        create(
            "display name blank",
            json!({"slug": "fresh", "display_name": "   "}),
            "display_name",
        ),
        create(
            "unknown cluster",
            json!({"slug": "fresh", "cluster": "mars"}),
            "cluster",
        ),
        create(
            "bad label key",
            json!({"slug": "fresh", "labels": {"bad key": "x"}}),
            "labels.bad key",
        ),
        create(
            "bad label value",
            json!({"slug": "fresh", "labels": {"team": "-x-"}}),
            "labels.team",
        ),
        create(
            "unknown field",
            json!({"slug": "fresh", "owner": "me"}),
            "owner",
        ),
        create(
            "labels not an object",
            json!({"slug": "fresh", "labels": ["a"]}),
            "labels",
        ),
        // Quantities and quota resources.
        with_budget(
            "quantity two dots",
            "requests.cpu",
            "1.5.3",
            "budget.requests.cpu",
        ),
        with_budget(
            "quantity Gb suffix",
            "requests.memory",
            "1Gb",
            "budget.requests.memory",
        ),
        with_budget(
            "quantity negative",
            "requests.cpu",
            "-1",
            "budget.requests.cpu",
        ),
        with_budget("quantity empty", "requests.cpu", "", "budget.requests.cpu"),
        with_budget(
            "quantity spaces",
            "requests.cpu",
            " 1",
            "budget.requests.cpu",
        ),
        with_budget(
            "quantity hex",
            "requests.cpu",
            "0x10",
            "budget.requests.cpu",
        ),
        with_budget(
            "quantity overflow",
            "requests.memory",
            "99999999999999999999999E",
            "budget.requests.memory",
        ),
        with_budget(
            "quantity dangling exponent",
            "requests.cpu",
            "1e",
            "budget.requests.cpu",
        ),
        with_budget("fractional pod count", "pods", "1500m", "budget.pods"),
        with_budget(
            "unknown resource",
            "requests.gpu",
            "1",
            "budget.requests.gpu",
        ),
        with_budget(
            "malformed resource",
            "Requests.CPU",
            "1",
            "budget.Requests.CPU",
        ),
        create(
            "quantity as number",
            json!({"slug": "fresh", "budget": {"pods": 10}}),
            "budget.pods",
        ),
        // Namespaces and members inside a create.
        create(
            "namespace bad name",
            json!({"slug": "fresh", "namespaces": [{"name": "Dev"}]}),
            "namespaces[0].name",
        ),
        create(
            "namespace twice",
            json!({"slug": "fresh", "namespaces": [{"name": "dev"}, {"name": "dev"}]}),
            "namespaces[1].name",
        ),
        create(
            "namespace full name too long",
            json!({"slug": "a".repeat(20), "namespaces": [{"name": "b".repeat(45)}]}),
            "namespaces[0].name",
        ),
        create(
            "allocation without budget",
            json!({"slug": "fresh", "namespaces": [{"name": "dev", "allocations": {"limits.cpu": "1"}}]}),
            "namespaces[0].allocations.limits.cpu",
        ),
        create(
            "allocations over budget",
            json!({"slug": "fresh", "budget": {"requests.cpu": "1"}, "namespaces": [
                {"name": "a", "allocations": {"requests.cpu": "600m"}},
                {"name": "b", "allocations": {"requests.cpu": "600m"}}]}),
            "namespaces[1].allocations.requests.cpu",
        ),
        create(
            "more namespaces than allowed",
            json!({"slug": "fresh", "budget": {"namespaces": "1"}, "namespaces": [{"name": "a"}, {"name": "b"}]}),
            "namespaces",
        ),
        create(
            "member bad email",
            json!({"slug": "fresh", "members": [{"kind": "user", "subject": "alice", "role": "owner"}]}),
            "members[0].subject",
        ),
        create(
            "member bad role",
            json!({"slug": "fresh", "members": [{"kind": "user", "subject": "a@b.io", "role": "god"}]}),
            "members[0].role",
        ),
        create(
            "member bad kind",
            json!({"slug": "fresh", "members": [{"kind": "robot", "subject": "r2", "role": "owner"}]}),
            "members[0].kind",
        ),
        create(
            "ttl not a duration",
            json!({"slug": "fresh", "ttl": "soon"}),
            "ttl",
        ),
        create(
            "ttl and expires_at",
            json!({"slug": "fresh", "ttl": "1h", "expires_at": "2099-01-01T00:00:00Z"}),
            "ttl",
        ),
        create(
            "expiry in the past",
            json!({"slug": "fresh", "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
        ),
        case(
            "wait for something else",
            Method::GET,
            "/api/v1/tenants/acme?wait_for=Gone",
            Value::Null,
            422,
            Some("query.wait_for"),
        ),
        case(
            "wait too long",
            Method::GET,
            "/api/v1/tenants/acme?wait_for=Ready&timeout=10m",
            Value::Null,
            422,
            Some("query.timeout"),
        ),
        case(
            "unknown event type",
            Method::GET,
            "/api/v1/events?type=tenant.exploded",
            Value::Null,
            422,
            Some("query.type"),
        ),
        // Requests on an existing tenant.
        case(
            "patch immutable slug",
            Method::PATCH,
            "/api/v1/tenants/acme",
            json!({"slug": "other"}),
            422,
            Some("slug"),
        ),
        case(
            "patch bad label",
            Method::PATCH,
            "/api/v1/tenants/acme",
            json!({"labels": {"a/b/c": "x"}}),
            422,
            Some("labels.a/b/c"),
        ),
        case(
            "budget below allocations",
            Method::PUT,
            "/api/v1/tenants/acme/budget",
            json!({"budget": {"requests.cpu": "1"}}),
            409,
            Some("budget.requests.cpu"),
        ),
        case(
            "budget bad quantity",
            Method::PUT,
            "/api/v1/tenants/acme/budget",
            json!({"budget": {"requests.cpu": "lots"}}),
            422,
            Some("budget.requests.cpu"),
        ),
        case(
            "namespace over budget",
            Method::POST,
            "/api/v1/tenants/acme/namespaces",
            json!({"name": "qa", "allocations": {"requests.cpu": "5"}}),
            409,
            Some("allocations.requests.cpu"),
        ),
        case(
            "namespace taken",
            Method::POST,
            "/api/v1/tenants/acme/namespaces",
            json!({"name": "dev"}),
            409,
            Some("name"),
        ),
        case(
            "namespace update unknown",
            Method::PATCH,
            "/api/v1/tenants/acme/namespaces/nope",
            json!({"allocations": {}}),
            404,
            None,
        ),
        case(
            "member twice",
            Method::POST,
            "/api/v1/tenants/acme/members",
            json!({"kind": "group", "subject": "team-acme", "role": "viewer"}),
            409,
            Some("subject"),
        ),
        case(
            "member id not a number",
            Method::PATCH,
            "/api/v1/tenants/acme/members/abc",
            json!({"role": "owner"}),
            400,
            None,
        ),
        case(
            "unknown tenant",
            Method::GET,
            "/api/v1/tenants/nobody",
            Value::Null,
            404,
            None,
        ),
        case(
            "unknown route",
            Method::GET,
            "/api/v1/nothing-here",
            Value::Null,
            404,
            None,
        ),
        case(
            "wrong method",
            Method::PUT,
            "/api/v1/tenants",
            json!({}),
            405,
            None,
        ),
        case(
            "page size zero",
            Method::GET,
            "/api/v1/tenants?page_size=0",
            Value::Null,
            422,
            Some("query.page_size"),
        ),
        case(
            "page size too big",
            Method::GET,
            "/api/v1/tenants?page_size=501",
            Value::Null,
            422,
            Some("query.page_size"),
        ),
        case(
            "forged page token",
            Method::GET,
            "/api/v1/tenants?page_token=bm9wZQ",
            Value::Null,
            422,
            Some("query.page_token"),
        ),
        case(
            "unknown state filter",
            Method::GET,
            "/api/v1/tenants?state=sleeping",
            Value::Null,
            422,
            Some("query.state"),
        ),
        case(
            "NUL in a query filter",
            Method::GET,
            "/api/v1/quota-requests?tenant=a%00b",
            Value::Null,
            422,
            Some("query.tenant"),
        ),
        case(
            "unknown query parameter",
            Method::GET,
            "/api/v1/tenants?colour=red",
            Value::Null,
            422,
            None,
        ),
    ];
    // Bodies, headers and tokens.
    let raw = |name, body: &str, content_type, status| Case {
        name,
        method: Method::POST,
        path: "/api/v1/tenants",
        body: Some(body.to_string()),
        content_type,
        headers: vec![],
        token: None,
        status,
        field: None,
    };
    cases.push(raw("truncated JSON", r#"{"slug": "fre"#, None, 400));
    cases.push(raw("trailing garbage", r#"{"slug": "fresh"} x"#, None, 400));
    cases.push(raw("not JSON at all", "slug=fresh", None, 400));
    cases.push(raw("JSON array body", "[]", None, 422));
    cases.push(raw(
        "form content type",
        "slug=fresh",
        Some("application/x-www-form-urlencoded"),
        415,
    ));
    cases.push(raw(
        "text content type",
        r#"{"slug": "fresh"}"#,
        Some("text/plain"),
        415,
    ));
    cases.push(raw(
        "no content type",
        r#"{"slug": "fresh"}"#,
        Some(""),
        415,
    ));
    let huge = json!({"slug": "fresh", "description": "x".repeat(70_000)}).to_string();
    cases.push(Case {
        body: Some(huge),
        ..raw("body over the limit", "", None, 413)
    });
    let header = |name, key: &'static str, value: &'static str, status| Case {
        headers: vec![(key, value)],
        ..case(
            name,
            Method::PATCH,
            "/api/v1/tenants/acme",
            json!({"description": "x"}),
            status,
            None,
        )
    };
    cases.push(header("stale If-Match", "if-match", "\"7\"", 412));
    cases.push(header("malformed If-Match", "if-match", "7", 400));
    cases.push(header("weak If-Match", "if-match", "W/\"1\"", 412));
    cases.push(header(
        "If-Match tag with a space",
        "if-match",
        "\"1 2\"",
        400,
    ));
    cases.push(Case {
        headers: vec![("idempotency-key", "")],
        ..case(
            "empty Idempotency-Key",
            Method::POST,
            "/api/v1/tenants",
            json!({"slug": "fresh"}),
            400,
            None,
        )
    });
    let token = |name, token: &'static str, status| Case {
        token: Some(token),
        ..case(
            name,
            Method::GET,
            "/api/v1/tenants",
            Value::Null,
            status,
            None,
        )
    };
    cases.push(token("no token", "", 401));
    cases.push(token(
        "unknown token",
        "tpat_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        401,
    ));
    cases.push(token("foreign token", "ghp_not-ours", 401));
    cases.push(Case {
        headers: vec![("authorization", "Basic dXNlcjpwYXNz")],
        ..token("basic auth", "", 401)
    });
    cases
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn every_bad_input_gets_a_clear_4xx_problem_and_changes_nothing(db: PgPool) {
    let app = spawn_app(db).await;
    app.create_tenant(acme()).await;
    let before = app.table_counts().await;
    let cases = cases();
    assert!(
        cases.len() >= 40,
        "the table covers at least 40 cases, has {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in cases {
        let mut request = app
            .client
            .request(case.method.clone(), format!("{}{}", app.base, case.path));
        match case.token {
            None => request = request.bearer_auth(&app.token),
            Some("") => {}
            Some(token) => request = request.bearer_auth(token),
        }
        if let Some(body) = &case.body
            && body != "null"
        {
            let content_type = case.content_type.unwrap_or("application/json");
            if !content_type.is_empty() {
                request = request.header("content-type", content_type);
            }
            request = request.body(body.clone());
        }
        for (name, value) in &case.headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let field_named = case.field.is_none_or(|field| {
            body["errors"]
                .as_array()
                .is_some_and(|errors| errors.iter().any(|e| e["field"] == field))
        });
        let explained = body["detail"].as_str().is_some_and(|d| !d.is_empty());
        if status != case.status
            || content_type.as_deref() != Some("application/problem+json")
            || !field_named
            || !explained
        {
            failures.push(format!(
                "{}: expected {} naming {:?}, got {status} {content_type:?} {body}",
                case.name, case.status, case.field
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        app.table_counts().await,
        before,
        "no refused request wrote anything"
    );
    assert_eq!(
        app.client
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(app.get("/api/v1/tenants/acme").await.status(), 200);
}

/// Every route the service answers, as the OpenAPI document must list it.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/tenants"),
    ("post", "/tenants"),
    ("get", "/tenants/{slug}"),
    ("put", "/tenants/{slug}"),
    ("patch", "/tenants/{slug}"),
    ("delete", "/tenants/{slug}"),
    ("post", "/tenants/{slug}:suspend"),
    ("post", "/tenants/{slug}:resume"),
    ("get", "/tenants/{slug}/document"),
    ("get", "/tenants/{slug}/namespaces"),
    ("post", "/tenants/{slug}/namespaces"),
    ("patch", "/tenants/{slug}/namespaces/{name}"),
    ("delete", "/tenants/{slug}/namespaces/{name}"),
    ("get", "/tenants/{slug}/budget"),
    ("put", "/tenants/{slug}/budget"),
    ("get", "/tenants/{slug}/policy"),
    ("put", "/tenants/{slug}/policy"),
    ("delete", "/tenants/{slug}/policy"),
    ("get", "/tenants/{slug}/members"),
    ("post", "/tenants/{slug}/members"),
    ("patch", "/tenants/{slug}/members/{id}"),
    ("delete", "/tenants/{slug}/members/{id}"),
    ("get", "/tenants/{slug}/status"),
    ("get", "/tenants/{slug}/usage"),
    ("post", "/tenants/{slug}/kubeconfig"),
    ("get", "/tenants/{slug}/gitops"),
    ("put", "/tenants/{slug}/gitops"),
    ("get", "/clusters"),
    ("put", "/clusters/{name}/capacity"),
    ("get", "/me"),
    ("get", "/events"),
    ("get", "/quota-requests"),
    ("post", "/quota-requests"),
    ("post", "/quota-requests/{id}/approve"),
    ("post", "/quota-requests/{id}/reject"),
    ("get", "/audit-events"),
    ("get", "/prices"),
    ("put", "/prices"),
    ("get", "/platform-apis"),
    ("put", "/platform-apis/{api}"),
    ("delete", "/platform-apis/{api}"),
    ("get", "/showback"),
    ("get", "/tenants/{slug}/utilisation"),
    ("get", "/templates"),
    ("get", "/templates/{template}"),
    ("put", "/templates/{template}"),
    ("post", "/templates/{template}/rollout"),
];

#[sqlx::test(migrator = "MIGRATIONS")]
async fn every_route_is_in_the_openapi_document_with_its_errors(db: PgPool) {
    let app = spawn_app(db).await;
    app.create_tenant(acme()).await;
    let doc: Value = app
        .client
        .get(format!("{}/api/v1/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();

    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            if let Some(op) = item.get(method) {
                documented.push((method.into(), path.clone()));
                for code in ["400", "401", "403", "404", "409", "500"] {
                    assert!(
                        op["responses"].get(code).is_some(),
                        "{method} {path} documents no {code}"
                    );
                }
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                let conditional = params.iter().any(|p| p["name"] == "If-Match");
                let takes_input =
                    op.get("requestBody").is_some() || params.iter().any(|p| p["in"] != "path");
                assert_eq!(
                    op["responses"].get("412").is_some(),
                    conditional,
                    "{method} {path} documents 412 exactly when it takes If-Match"
                );
                assert_eq!(
                    op["responses"].get("422").is_some(),
                    takes_input,
                    "{method} {path} documents 422 exactly when it takes input"
                );
                for (code, response) in op["responses"].as_object().unwrap() {
                    if !code.starts_with('2') {
                        assert!(
                            response["content"]["application/problem+json"].is_object(),
                            "{method} {path}: its {code} is a problem document"
                        );
                    }
                }
            }
        }
    }
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    documented.sort();
    assert_eq!(
        documented, expected,
        "the OpenAPI document and the list of routes differ"
    );

    // And each documented route really answers (not 404 for the route, not 405).
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{slug}", "acme")
            .replace("{name}", "dev")
            .replace("{template}", "small")
            .replace("{id}", "1");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = app
            .request(method.clone(), &format!("/api/v1{concrete}"))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        if *path == "/events" {
            assert_eq!(status, 200, "the change stream answers");
            continue;
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let route_missing = status == 405
            || body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("no such API route"));
        assert!(
            !route_missing,
            "{method} {concrete} is documented but not served: {status} {body}"
        );
    }
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn problems_carry_the_rfc_9457_members(db: PgPool) {
    let app = spawn_app(db).await;
    let (status, body) =
        problem(app.post_json("/api/v1/tenants", json!({"slug": "x"})).await).await;
    assert_eq!(status, 422);
    for member in ["type", "title", "status", "detail", "errors"] {
        assert!(body.get(member).is_some(), "{member} missing from {body}");
    }
}

fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                found.push(target);
            }
            map.values().for_each(|v| refs(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn every_ref_in_the_openapi_document_resolves(db: PgPool) {
    let app = spawn_app(db).await;
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(found.len() > 20, "the document uses $refs: {}", found.len());
    let dangling: Vec<&str> = found
        .into_iter()
        .filter(|target| {
            let pointer = target.strip_prefix('#').unwrap_or("not local");
            doc.pointer(pointer).is_none()
        })
        .collect();
    assert!(dangling.is_empty(), "dangling $refs: {dangling:?}");
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_method_a_route_does_not_take_gets_405_with_allow(db: PgPool) {
    let app = spawn_app(db).await;
    app.create_tenant(acme()).await;
    let cases = [
        (Method::PUT, "/api/v1/tenants", "GET, HEAD, POST"),
        (
            Method::POST,
            "/api/v1/tenants/acme",
            "GET, HEAD, PUT, PATCH, DELETE",
        ),
        (Method::PATCH, "/api/v1/tenants/acme:suspend", "POST"),
        (Method::GET, "/api/v1/tenants/acme:resume", "POST"),
        (
            Method::DELETE,
            "/api/v1/tenants/acme/budget",
            "GET, HEAD, PUT",
        ),
        (Method::OPTIONS, "/api/v1/quota-requests/1/approve", "POST"),
    ];
    for (method, path, allow) in cases {
        let response = app
            .request(method.clone(), path)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(
            response
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok()),
            Some(allow),
            "{method} {path} names what it takes"
        );
        let (_, body) = problem(response).await;
        assert_eq!(body["status"], 405, "{method} {path}: {body}");
    }
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn the_document_states_the_grammar_the_server_enforces(db: PgPool) {
    let app = spawn_app(db).await;
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let param = |path: &str, method: &str, name: &str| {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .map(|p| p["schema"].clone())
            .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))
    };
    let page_size = param("/tenants", "get", "page_size");
    assert_eq!(
        (page_size["minimum"].as_i64(), page_size["maximum"].as_i64()),
        (Some(1), Some(500))
    );
    for (path, method, name) in [
        ("/tenants/{slug}", "patch", "If-Match"),
        ("/tenants", "post", "Idempotency-Key"),
        ("/tenants/{slug}", "get", "slug"),
        ("/tenants/{slug}/namespaces/{name}", "patch", "name"),
    ] {
        assert!(
            param(path, method, name)["pattern"].is_string(),
            "{method} {path}: {name} has a pattern"
        );
    }
    let schemas = &doc["components"]["schemas"];
    let create = &schemas["CreateTenant"];
    assert!(create["properties"]["slug"]["pattern"].is_string());
    assert_eq!(create["additionalProperties"], false);
    let budget = &create["properties"]["budget"];
    assert!(
        budget["additionalProperties"]["pattern"].is_string(),
        "{budget}"
    );
    assert!(budget["propertyNames"]["pattern"].is_string(), "{budget}");
    let clusters = create["properties"]["cluster"]["enum"].as_array().unwrap();
    assert!(
        clusters.contains(&json!("local")) && clusters.contains(&Value::Null),
        "a new tenant's cluster is one of the configured ones: {clusters:?}"
    );

    let kinds = json!([
        "tenant.created",
        "tenant.updated",
        "tenant.ready",
        "tenant.failed",
        "tenant.suspended",
        "tenant.resumed",
        "tenant.deleting",
        "tenant.deleted",
        "quota_request.decided"
    ]);
    let types = param("/events", "get", "type");
    assert_eq!(types["items"]["enum"], kinds, "{types}");
    let event = &doc["paths"]["/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]
        ["schema"];
    assert_eq!(event["properties"]["type"]["enum"], kinds, "{event}");
    let last_event_id = param("/events", "get", "Last-Event-ID");
    assert_eq!(last_event_id["pattern"], "^[0-9]{1,18}$");
    let stream = |last_event_id: &str| {
        app.request(Method::GET, "/api/v1/events")
            .header("last-event-id", last_event_id)
            .timeout(std::time::Duration::from_secs(5))
            .send()
    };
    for refused in ["-1", "1e3", "0x10", "1234567890123456789", "3 4"] {
        let answer = stream(refused).await.unwrap();
        assert_eq!(answer.status(), 400, "Last-Event-ID: {refused}");
    }
    let answer = stream("0").await.unwrap();
    assert_eq!(
        answer.status(),
        200,
        "the pattern's smallest id opens a stream"
    );
}

#[sqlx::test(migrator = "MIGRATIONS")]
async fn a_kubeconfig_for_a_tenant_without_namespaces_is_a_conflict(db: PgPool) {
    let app = spawn_app(db).await;
    app.create_tenant(json!({"slug": "empty"})).await;
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let documented = &doc["paths"]["/tenants/{slug}/kubeconfig"]["post"]["responses"]["409"];
    assert!(documented.is_object(), "the 409 is documented");

    let (status, problem) = problem(
        app.request(
            Method::POST,
            "/api/v1/tenants/empty/kubeconfig?view=cluster",
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("has no namespaces yet"),
        "{problem}"
    );
}
