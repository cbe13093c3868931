//! The owner's choice of GitOps credentials, posted from the tenant page.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;

use super::{DashboardForm, PageError, Posted, back_to};
use crate::service::gitops::{self, Tools};
use crate::state::AppState;

/// The two checkboxes; an unchecked box is not posted.
#[derive(Default, Deserialize)]
#[serde(default)]
pub struct GitopsForm {
    argocd: bool,
    flux: bool,
}

impl DashboardForm for GitopsForm {}

pub async fn set(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    posted: Posted<GitopsForm>,
) -> Result<Response, PageError> {
    let Posted {
        viewer,
        actor,
        form,
        ..
    } = posted;
    let tools = Tools {
        argocd: form.argocd,
        flux: form.flux,
    };
    let done = if tools.argocd || tools.flux {
        "GitOps credentials saved; their Secrets are written within seconds."
    } else {
        "GitOps credentials removed; their Secrets go within seconds and their token is revoked."
    };
    let result = gitops::set(
        &app.db,
        &viewer.principal,
        &actor,
        &slug,
        tools,
        &app.config.gitops,
        &app.config.login.public_url,
    )
    .await;
    back_to(
        &format!("/tenants/{slug}"),
        result,
        |_| done.into(),
        "The GitOps credentials were not changed",
    )
}
