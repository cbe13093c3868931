use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::change::{Actor, TenantChange, record, tenant_response, view_authorized};
use super::extract::{ApiJson, ApiQuery, IfMatch, RequestId};
use super::model::{CreateTenant, Tenant, TenantListQuery, TenantPage, TenantPatch};
use super::wait::{WaitQuery, until_ready};
use super::{pagination, views};
use crate::app::AppState;
use crate::auth::Principal;
use crate::auth::policy::{Action, authorize, precheck};
use crate::db::{self, tenants::ListFilter};
use crate::domain::quota::check_allocation;
use crate::domain::tenant::{expiry, parse_label_selector};
use crate::domain::{
    Description, DisplayName, FieldError, Labels, MemberKind, NamespaceName, QuotaResource,
    ResourceList, Role, TenantSlug, TenantState,
};
use crate::error::Error;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, patch, delete))
}

/// List tenants, a page at a time.
#[utoipa::path(get, path = "/tenants", tag = "tenants", params(TenantListQuery),
    responses((status = 200, description = "A page of tenants", body = TenantPage)))]
async fn list(
    State(app): State<AppState>,
    who: Principal,
    ApiQuery(query): ApiQuery<TenantListQuery>,
) -> Result<axum::Json<TenantPage>, Error> {
    authorize(&who, Action::ReadTenants)?;
    let limit = pagination::page_size(query.page_size)?;
    let after = match &query.page_token {
        Some(token) => pagination::position("tenants", token)?,
        None => 0,
    };
    let labels = query
        .label
        .as_deref()
        .map(parse_label_selector)
        .transpose()
        .map_err(|e| e.within("query"))?;
    let filter = ListFilter {
        state: query.state,
        cluster: query.cluster,
        labels,
        search: query.q.filter(|q| !q.is_empty()),
        // Employees see the tenants they have a role in; admins and tokens see all.
        member: match &who {
            Principal::User(user) if !user.admin => Some((user.email.clone(), user.groups.clone())),
            _ => None,
        },
    };
    let mut conn = app.db.acquire().await?;
    let mut rows = db::tenants::list_page(&mut conn, &filter, after, limit + 1).await?;
    let next_page_token = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last()
            .map(|last| pagination::token("tenants", last.id))
    } else {
        None
    };
    let items = views::tenants(&mut conn, rows).await?;
    Ok(axum::Json(TenantPage {
        items,
        next_page_token,
    }))
}

/// Create a tenant, optionally with namespaces, allocations and members.
#[utoipa::path(post, path = "/tenants", tag = "tenants", request_body = CreateTenant,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key get the first answer"), WaitQuery),
    responses((status = 201, description = "Created; sync status Pending", body = Tenant,
        headers(("ETag" = String), ("Location" = String)))))]
async fn create(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    ApiQuery(wait): ApiQuery<WaitQuery>,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<Response, Error> {
    let wait_limit = wait.limit(&app)?;
    let mut tenant = create_tenant(&app, &who, &Actor::of(&who, &request_id), body).await?;
    if let Some(limit) = wait_limit {
        let row = until_ready(&app, &tenant.slug, limit).await?;
        tenant = views::tenant(&mut *app.db.acquire().await?, row).await?;
    }
    let location = format!("/api/v1/tenants/{}", tenant.slug);
    let mut response = tenant_response(StatusCode::CREATED, tenant);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Creates a tenant with its namespaces and members, as `who` asked; the
/// one path for the API and the dashboard.
pub async fn create_tenant(
    app: &AppState,
    who: &Principal,
    actor: &Actor,
    body: CreateTenant,
) -> Result<Tenant, Error> {
    authorize(who, Action::CreateTenant)?;
    let mut new = NewTenant::parse(body, app)?;
    // Whoever creates a tenant in the browser owns it, unless the request already says so.
    if let Principal::User(user) = who {
        let named = new.members.iter().any(|(kind, subject, role)| {
            *role == Role::Owner
                && (*kind == MemberKind::User && *subject == user.email
                    || user.groups.contains(subject))
        });
        if !named {
            new.members
                .push((MemberKind::User, user.email.clone(), Role::Owner));
        }
    }
    let mut tx = app.db.begin().await?;
    let cluster = match &new.cluster {
        Some(named) => named.clone(),
        None => db::tenants::least_loaded_cluster(&mut tx, &app.config.cluster_names())
            .await?
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("no cluster is configured")))?,
    };
    let row = db::tenants::insert(
        &mut tx,
        db::tenants::NewTenant {
            slug: &new.slug,
            display_name: &new.display_name,
            description: &new.description,
            labels: &new.labels,
            cluster: &cluster,
            budget: &new.budget,
            expires_at: new.expires_at,
        },
    )
    .await?;
    for (name, allocations) in &new.namespaces {
        let full_name = name.full_name(&new.slug)?;
        db::namespaces::insert(&mut tx, row.id, name.as_str(), &full_name, allocations).await?;
    }
    for (kind, subject, role) in &new.members {
        db::members::insert(&mut tx, row.id, *kind, subject, *role).await?;
    }
    let id = row.id;
    let tenant = views::tenant(&mut tx, row).await?;
    record(&mut tx, actor, "tenant.created", id, None, &tenant).await?;
    tx.commit().await?;
    Ok(tenant)
}

/// The value, or `None` with the error noted.
fn keep<T>(errors: &mut Vec<FieldError>, result: Result<T, FieldError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

/// A create request that passed every rule.
struct NewTenant {
    slug: TenantSlug,
    display_name: DisplayName,
    description: Description,
    labels: Labels,
    /// `None`: the least loaded cluster.
    cluster: Option<String>,
    budget: ResourceList,
    namespaces: Vec<(NamespaceName, ResourceList)>,
    members: Vec<(MemberKind, String, Role)>,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl NewTenant {
    /// Checks every field and reports all violations at once.
    fn parse(body: CreateTenant, app: &AppState) -> Result<Self, Error> {
        let mut errors: Vec<FieldError> = Vec::new();
        let slug = keep(&mut errors, TenantSlug::parse(&body.slug));
        let display_name = keep(
            &mut errors,
            DisplayName::parse(body.display_name.as_deref().unwrap_or(&body.slug)),
        );
        let description = keep(&mut errors, Description::parse(&body.description));
        let expires_at = keep(
            &mut errors,
            expiry(body.ttl.as_deref(), body.expires_at, chrono::Utc::now()),
        );
        let names = app.config.cluster_names();
        if let Some(cluster) = &body.cluster
            && !names.contains(&cluster.as_str())
        {
            errors.push(FieldError::new(
                "cluster",
                format!("unknown cluster; use one of {}", names.join(", ")),
            ));
        }
        let cluster = body.cluster;
        let labels = Labels::parse(&body.labels)
            .map_err(|e| errors.extend(e))
            .ok();
        let mut budget = ResourceList::parse(&body.budget, "budget")
            .map_err(|e| errors.extend(e))
            .ok();
        if let Some(budget) = &mut budget
            && budget.get(&QuotaResource::namespaces()).is_none()
        {
            budget.insert(
                QuotaResource::namespaces(),
                QuotaResource::count(app.config.default_namespace_limit),
            );
        }

        let mut namespaces = Vec::new();
        let mut seen = BTreeSet::new();
        let mut allocated = ResourceList::default();
        for (i, ns) in body.namespaces.iter().enumerate() {
            let at = format!("namespaces[{i}]");
            let name = match NamespaceName::parse(&ns.name) {
                Ok(name) => name,
                Err(e) => {
                    errors.push(e.within(&at));
                    continue;
                }
            };
            if let Some(slug) = &slug
                && let Err(e) = name.full_name(slug)
            {
                errors.push(e.within(&at));
            }
            if !seen.insert(name.clone()) {
                errors.push(FieldError::new(format!("{at}.name"), "appears twice"));
            }
            let allocations =
                match ResourceList::parse(&ns.allocations, &format!("{at}.allocations")) {
                    Ok(list) => list,
                    Err(e) => {
                        errors.extend(e);
                        continue;
                    }
                };
            if let Some(budget) = &budget {
                match check_allocation(
                    budget,
                    &allocated,
                    &allocations,
                    &format!("{at}.allocations"),
                ) {
                    Ok(()) => {
                        if let Err(e) = allocated.add(&allocations) {
                            errors.push(e.within(&at));
                        }
                    }
                    Err(e) => errors.extend(e),
                }
            }
            namespaces.push((name, allocations));
        }
        if let Some(budget) = &budget
            && let Some(max) = budget.get(&QuotaResource::namespaces())
            && !max.fits_count(body.namespaces.len())
        {
            errors.push(FieldError::new(
                "namespaces",
                format!(
                    "the budget allows {max} namespaces, {} were given",
                    body.namespaces.len()
                ),
            ));
        }

        let mut members = Vec::new();
        let mut seen_members = BTreeSet::new();
        for (i, m) in body.members.iter().enumerate() {
            let at = format!("members[{i}]");
            match m.kind.parse_subject(&m.subject) {
                Ok(subject) => {
                    if !seen_members.insert((m.kind.as_str(), subject.clone())) {
                        errors.push(FieldError::new(format!("{at}.subject"), "appears twice"));
                    }
                    members.push((m.kind, subject, m.role));
                }
                Err(e) => errors.push(e.within(&at)),
            }
        }

        match (slug, display_name, description, labels, budget, expires_at) {
            (
                Some(slug),
                Some(display_name),
                Some(description),
                Some(labels),
                Some(budget),
                Some(expires_at),
            ) if errors.is_empty() => Ok(Self {
                slug,
                display_name,
                description,
                labels,
                cluster,
                budget,
                namespaces,
                members,
                expires_at,
            }),
            _ => Err(Error::Invalid(errors)),
        }
    }
}

/// Get one tenant, with its namespaces, budget, members and sync status.
/// With `wait_for=Ready`, answers once the tenant is Ready at its current
/// generation, or with its current state when the timeout passes.
#[utoipa::path(get, path = "/tenants/{slug}", tag = "tenants",
    params(("slug" = String, Path, description = "The tenant's slug"), WaitQuery),
    responses((status = 200, description = "The tenant", body = Tenant, headers(("ETag" = String)))))]
async fn get(
    State(app): State<AppState>,
    who: Principal,
    Path(slug): Path<String>,
    ApiQuery(wait): ApiQuery<WaitQuery>,
) -> Result<Response, Error> {
    precheck(&who, Action::ReadTenants)?;
    let limit = wait.limit(&app)?;
    let mut conn = app.db.acquire().await?;
    let mut tenant = view_authorized(&mut conn, &who, &slug, Action::ReadTenants).await?;
    if let Some(limit) = limit {
        drop(conn);
        let row = until_ready(&app, &slug, limit).await?;
        tenant = views::tenant(&mut *app.db.acquire().await?, row).await?;
    }
    Ok(tenant_response(StatusCode::OK, tenant))
}

/// Change the display name, description or labels (JSON merge patch).
#[utoipa::path(patch, path = "/tenants/{slug}", tag = "tenants",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read; 412 if the tenant changed since")),
    request_body(content = TenantPatch, content_type = "application/merge-patch+json"),
    responses((status = 200, description = "The changed tenant", body = Tenant, headers(("ETag" = String)))))]
pub(crate) async fn patch(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<TenantPatch>,
) -> Result<Response, Error> {
    precheck(&who, Action::EditTenant)?;
    let mut change = TenantChange::begin(&app.db, &slug, &precondition).await?;
    change.authorize(&who, Action::EditTenant)?;
    change.require_editable()?;
    let current = change.before().clone();
    let mut errors = Vec::new();
    let display_name = DisplayName::parse(
        body.display_name
            .as_deref()
            .unwrap_or(&current.display_name),
    )
    .map_err(|e| errors.push(e))
    .ok();
    let description =
        Description::parse(body.description.as_deref().unwrap_or(&current.description))
            .map_err(|e| errors.push(e))
            .ok();
    let mut labels = current.labels.clone();
    for (key, value) in body.labels.unwrap_or_default() {
        match value {
            Some(value) => labels.insert(key, value),
            None => labels.remove(&key),
        };
    }
    let labels = Labels::parse(&labels).map_err(|e| errors.extend(e)).ok();
    // A ttl counts from now; `expires_at: null` makes the tenant last.
    let expires_at = match (body.ttl.as_deref(), body.expires_at) {
        (None, None) => Some(change.tenant.expires_at),
        (None, Some(None)) => Some(None),
        (ttl, at) => expiry(ttl, at.flatten(), chrono::Utc::now())
            .map_err(|e| errors.push(e))
            .ok(),
    };
    let (Some(display_name), Some(description), Some(labels), Some(expires_at)) =
        (display_name, description, labels, expires_at)
    else {
        return Err(Error::Invalid(errors));
    };
    let id = change.tenant.id;
    db::tenants::update_spec(
        &mut change.tx,
        id,
        db::tenants::TenantSpec {
            display_name: &display_name,
            description: &description,
            labels: &labels,
            expires_at,
        },
    )
    .await?;
    let tenant = change
        .commit(&Actor::of(&who, &request_id), "tenant.updated")
        .await?;
    Ok(tenant_response(StatusCode::OK, tenant))
}

/// Delete a tenant: it moves to `deleting` until its namespaces are gone.
#[utoipa::path(delete, path = "/tenants/{slug}", tag = "tenants",
    params(("slug" = String, Path, description = "The tenant's slug"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    responses((status = 202, description = "Deletion accepted", body = Tenant)))]
pub(crate) async fn delete(
    State(app): State<AppState>,
    who: Principal,
    request_id: RequestId,
    precondition: IfMatch,
    Path(slug): Path<String>,
) -> Result<Response, Error> {
    precheck(&who, Action::DeleteTenant)?;
    let mut change = TenantChange::begin(&app.db, &slug, &precondition).await?;
    change.authorize(&who, Action::DeleteTenant)?;
    if !change.tenant.state().is_editable() {
        // Deleting twice is not an error: the first request is under way.
        let tenant = change.before().clone();
        return Ok(tenant_response(StatusCode::ACCEPTED, tenant));
    }
    let id = change.tenant.id;
    db::tenants::set_state(&mut change.tx, id, TenantState::Deleting).await?;
    let tenant = change
        .commit(&Actor::of(&who, &request_id), "tenant.deletion_requested")
        .await?;
    Ok(tenant_response(StatusCode::ACCEPTED, tenant))
}
