//! `kubectl auth whoami` through the tenant API.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::proxy::Context;
use super::wire::json_response;
use crate::service::gateway::Holder;

impl Context<'_> {
    /// `kubectl auth whoami`: the caller as the portal knows them (the
    /// API server would name the role account the request is sent as).
    pub(super) fn who_am_i(&self, api_path: &str) -> Response {
        let (username, groups) = match &self.caller.holder {
            Holder::User { email, groups } => (email.clone(), groups.clone()),
            Holder::Automation => (self.caller.holder.describe(self.slug), Vec::new()),
        };
        let groups: Vec<String> = groups
            .into_iter()
            .chain(["system:authenticated".to_string()])
            .collect();
        let api_version = api_path.trim_start_matches("/apis/");
        json_response(
            StatusCode::CREATED,
            &json!({
                "apiVersion": api_version,
                "kind": "SelfSubjectReview",
                "metadata": {"creationTimestamp": null},
                "status": {"userInfo": {
                    "username": username,
                    "groups": groups,
                    "extra": {
                        "tenant-portal.dev/tenant": [self.slug],
                        "tenant-portal.dev/role": [self.caller.role.to_string()],
                    },
                }},
            }),
        )
    }
}
