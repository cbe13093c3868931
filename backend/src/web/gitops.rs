//! The owner's choice of GitOps credentials, posted from the tenant page.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;

use super::{DashboardForm, PageError, Posted, see_other};
use crate::error::Error;
use crate::service::gitops::{self, Keeper, Tools};
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
    let keeper = Keeper::from_config(&app.config);
    let tools = Tools {
        argocd: form.argocd,
        flux: form.flux,
    };
    let page = format!("/tenants/{slug}");
    match gitops::set(
        &app.db,
        &viewer.principal,
        &actor,
        &slug,
        tools,
        keeper.as_ref(),
        &app.config.login.public_url,
    )
    .await
    {
        Ok(_) if tools.argocd || tools.flux => Ok(see_other(
            &page,
            "GitOps credentials saved; their Secrets are written within seconds.",
        )),
        Ok(_) => Ok(see_other(
            &page,
            "GitOps credentials removed; their Secrets go within seconds and their token is revoked.",
        )),
        Err(e @ (Error::Invalid(_) | Error::Conflict { .. })) => Ok(see_other(
            &page,
            &format!(
                "The GitOps credentials were not changed: {}",
                e.problem().detail
            ),
        )),
        Err(e) => Err(e.into()),
    }
}
