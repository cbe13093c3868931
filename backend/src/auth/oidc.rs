//! OpenID Connect against the configured identity provider: the
//! authorization code flow with PKCE, state and nonce for employees, and
//! verification of client-credentials access tokens for machine clients.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreClient, CoreIdToken, CoreIdTokenVerifier, CoreProviderMetadata, CoreResponseType,
};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, TokenResponse,
};
use tokio::sync::RwLock;

use super::{Principal, Scope};
use crate::config::LoginConfig;
use crate::error::Error;

/// How long discovery (and with it the signing keys) is trusted before it is fetched again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// A token whose signature matches no known key fetches the keys again at
/// most this often, so a flood of forged tokens cannot make the portal hammer
/// the identity provider.
const KEY_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// Why a login failed, in words for the person trying.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(
        "the identity provider at {issuer} could not be reached ({cause}); try again in a minute"
    )]
    Unreachable { issuer: String, cause: String },
    #[error("the identity provider did not accept the sign-in ({0}); please sign in again")]
    Refused(String),
    #[error("the identity provider's answer failed verification ({0}); please sign in again")]
    Invalid(String),
    #[error(
        "the identity provider has not verified the email address {0}; the portal knows people by their email, so it signs in only verified addresses (ask the identity provider's administrators to verify it)"
    )]
    UnverifiedEmail(String),
}

/// Who the identity provider says signed in.
#[derive(Debug, Clone)]
pub struct Identity {
    pub subject: String,
    pub email: String,
    pub name: String,
    pub groups: Vec<String>,
}

/// A login sent to the identity provider, to be finished at the callback.
pub struct PendingLogin {
    pub url: String,
    pub state: String,
    pub pkce_verifier: String,
    pub nonce: String,
}

pub struct Login {
    config: LoginConfig,
    issuer: IssuerUrl,
    client_id: ClientId,
    client_secret: ClientSecret,
    http: reqwest::Client,
    discovered: RwLock<Option<(Arc<CoreProviderMetadata>, Instant)>>,
    /// When a bad signature last made the keys be fetched again.
    last_key_refetch: Mutex<Option<Instant>>,
}

async fn send(
    http: reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await?.to_vec();
    let mut answer = openidconnect::HttpResponse::new(body);
    *answer.status_mut() = status;
    *answer.headers_mut() = headers;
    Ok(answer)
}

impl Login {
    /// `None` when login is not configured.
    pub fn new(config: &LoginConfig) -> anyhow::Result<Option<Self>> {
        let (Some(issuer), Some(client_id), Some(secret)) = (
            &config.oidc_issuer,
            &config.oidc_client_id,
            &config.oidc_client_secret,
        ) else {
            return Ok(None);
        };
        let issuer = IssuerUrl::new(issuer.clone())
            .map_err(|e| anyhow::anyhow!("--oidc-issuer is not a URL: {e}"))?;
        // Following redirects would let a hostile answer point the portal at any address.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Some(Self {
            config: config.clone(),
            issuer,
            client_id: ClientId::new(client_id.clone()),
            client_secret: ClientSecret::new(secret.expose().clone()),
            http,
            discovered: RwLock::new(None),
            last_key_refetch: Mutex::new(None),
        }))
    }

    fn http(
        &self,
    ) -> impl Fn(
        openidconnect::HttpRequest,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<openidconnect::HttpResponse, reqwest::Error>> + Send>,
    > {
        let http = self.http.clone();
        move |request| Box::pin(send(http.clone(), request))
    }

    /// The provider's metadata and keys, discovered once and refreshed hourly
    /// or when `refresh` asks (a token signed by an unknown key).
    async fn provider(&self, refresh: bool) -> Result<Arc<CoreProviderMetadata>, LoginError> {
        if !refresh
            && let Some((metadata, at)) = self.discovered.read().await.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(metadata.clone());
        }
        crate::metrics::global().idp_discovery(if refresh { "unknown_key" } else { "expired" });
        let metadata = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http())
            .await
            .map_err(|e| LoginError::Unreachable {
                issuer: self.issuer.to_string(),
                cause: error_chain(&e),
            })?;
        let metadata = Arc::new(metadata);
        *self.discovered.write().await = Some((metadata.clone(), Instant::now()));
        Ok(metadata)
    }

    fn redirect(&self) -> Result<RedirectUrl, LoginError> {
        RedirectUrl::new(self.config.redirect_uri())
            .map_err(|e| LoginError::Invalid(format!("bad redirect URI: {e}")))
    }

    /// Where to send the browser, with the secrets the callback needs.
    pub async fn start(&self) -> Result<PendingLogin, LoginError> {
        let metadata = self.provider(false).await?;
        let client = CoreClient::from_provider_metadata(
            (*metadata).clone(),
            self.client_id.clone(),
            Some(self.client_secret.clone()),
        )
        .set_redirect_uri(self.redirect()?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in self.config.oidc_scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(openidconnect::Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        Ok(PendingLogin {
            url: url.to_string(),
            state: state.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
        })
    }

    /// Exchanges the code and verifies the ID token: signature by the
    /// provider's keys, issuer, audience, expiry and the nonce of this login.
    pub async fn finish(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<Identity, LoginError> {
        let metadata = self.provider(false).await?;
        let client = CoreClient::from_provider_metadata(
            (*metadata).clone(),
            self.client_id.clone(),
            Some(self.client_secret.clone()),
        )
        .set_redirect_uri(self.redirect()?);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| LoginError::Invalid(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
            .request_async(&self.http())
            .await
            .map_err(|e| LoginError::Refused(error_chain(&e)))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| LoginError::Invalid("no ID token in the answer".into()))?;
        let claims = id_token
            .claims(&client.id_token_verifier(), &Nonce::new(nonce.to_string()))
            .map_err(|e| LoginError::Invalid(error_chain(&e)))?;
        let email = verified_email(
            claims.email().map(|e| e.as_str()),
            claims.email_verified(),
            self.config.oidc_trust_unverified_email,
        )?;
        let name = claims
            .name()
            .and_then(|n| n.get(None))
            .map_or_else(|| email.clone(), |n| n.as_str().to_string());
        // The signature was checked above over these same bytes.
        let raw = payload(&id_token.to_string())
            .ok_or_else(|| LoginError::Invalid("unreadable ID token".into()))?;
        Ok(Identity {
            subject: claims.subject().as_str().to_string(),
            email,
            name,
            groups: groups(&raw, &self.config.oidc_groups_claim),
        })
    }

    /// A machine client's access token (a JWT from the same issuer): its
    /// signature, issuer and expiry are checked, its audience must name the
    /// portal (--machine-audience), and its client id maps to scopes in the
    /// configuration.
    pub async fn machine_principal(&self, token: &str) -> Result<Principal, Error> {
        let unauthorized =
            |why: String| Error::Unauthorized(format!("the access token is not accepted: {why}"));
        let claims = payload(token).ok_or_else(|| unauthorized("it is not a JWT".into()))?;
        let client_id = client_of(&claims).ok_or_else(|| {
            unauthorized("it names no client (azp) or more than one audience without one".into())
        })?;
        let machine = self
            .config
            .machine_clients
            .iter()
            .find(|m| m.client_id == client_id)
            .ok_or_else(|| {
                unauthorized(format!(
                    "the client \"{client_id}\" is not configured with --machine-client"
                ))
            })?;
        let audience = self
            .config
            .machine_audience()
            .unwrap_or_default()
            .to_string();
        let parsed: CoreIdToken = token
            .parse()
            .map_err(|_| unauthorized("it is not a signed JWT".into()))?;
        let mut refresh = false;
        loop {
            let metadata = self
                .provider(refresh)
                .await
                .map_err(|e| Error::Unavailable(e.to_string()))?;
            // Audiences are checked below against the portal's own, not the client's.
            let verifier = CoreIdTokenVerifier::new_public_client(
                ClientId::new(client_id.clone()),
                self.issuer.clone(),
                metadata.jwks().clone(),
            )
            .require_audience_match(false);
            match parsed.claims(&verifier, |_: Option<&Nonce>| Ok::<(), String>(())) {
                Ok(verified) if verified.audiences().iter().any(|a| **a == audience) => {
                    let scopes: Vec<Scope> = machine.scopes.clone();
                    let reach = if machine.all_tenants {
                        crate::auth::Reach::All
                    } else {
                        crate::auth::Reach::Only(Vec::new())
                    };
                    return Ok(Principal::Machine {
                        client_id,
                        scopes,
                        reach,
                    });
                }
                Ok(verified) => {
                    let found: Vec<&str> =
                        verified.audiences().iter().map(|a| a.as_str()).collect();
                    return Err(unauthorized(format!(
                        "it is meant for {found:?}, not for this portal: its audience must include \"{audience}\" (--machine-audience)"
                    )));
                }
                // A key rotated since discovery: fetch the keys once more,
                // unless a bad signature did so within the last minute.
                Err(openidconnect::ClaimsVerificationError::SignatureVerification(_))
                    if !refresh && self.may_refetch_keys() =>
                {
                    refresh = true;
                }
                Err(openidconnect::ClaimsVerificationError::SignatureVerification(_)) => {
                    return Err(unauthorized(
                        "its signature matches none of the identity provider's keys".into(),
                    ));
                }
                Err(e) => return Err(unauthorized(error_chain(&e))),
            }
        }
    }

    /// An employee's ID token, as `kubectl oidc-login` sends it: signature,
    /// issuer, audience (the portal's client, or the public client for
    /// kubectl, --oidc-kubectl-client-id) and expiry are checked, and the
    /// email must be verified as at sign-in. No nonce: this portal did not
    /// ask for the token.
    pub async fn id_token_user(&self, token: &str) -> Result<Identity, Error> {
        let unauthorized =
            |why: String| Error::Unauthorized(format!("the ID token is not accepted: {why}"));
        let parsed: CoreIdToken = token
            .parse()
            .map_err(|_| unauthorized("it is not a signed JWT".into()))?;
        let mut refresh = false;
        loop {
            let metadata = self
                .provider(refresh)
                .await
                .map_err(|e| Error::Unavailable(e.to_string()))?;
            let portal = self.client_id.as_str();
            let kubectl = self.config.oidc_kubectl_client_id.as_deref();
            let verifier = CoreIdTokenVerifier::new_public_client(
                self.client_id.clone(),
                self.issuer.clone(),
                metadata.jwks().clone(),
            )
            .require_audience_match(false);
            match parsed.claims(&verifier, |_: Option<&Nonce>| Ok::<(), String>(())) {
                Ok(claims)
                    if !claims
                        .audiences()
                        .iter()
                        .any(|a| a.as_str() == portal || Some(a.as_str()) == kubectl) =>
                {
                    return Err(unauthorized(format!(
                        "it is meant for {:?}, not for this portal's clients",
                        claims
                            .audiences()
                            .iter()
                            .map(|a| a.as_str())
                            .collect::<Vec<_>>()
                    )));
                }
                Ok(claims) => {
                    let email = verified_email(
                        claims.email().map(|e| e.as_str()),
                        claims.email_verified(),
                        self.config.oidc_trust_unverified_email,
                    )
                    .map_err(|e| unauthorized(e.to_string()))?;
                    let raw = payload(token).ok_or_else(|| unauthorized("unreadable".into()))?;
                    return Ok(Identity {
                        subject: claims.subject().as_str().to_string(),
                        name: email.clone(),
                        email,
                        groups: groups(&raw, &self.config.oidc_groups_claim),
                    });
                }
                Err(openidconnect::ClaimsVerificationError::SignatureVerification(_))
                    if !refresh && self.may_refetch_keys() =>
                {
                    refresh = true;
                }
                Err(e) => return Err(unauthorized(error_chain(&e))),
            }
        }
    }

    /// Whether a bad signature may fetch the provider's keys again now; at
    /// most once per [`KEY_REFETCH_INTERVAL`], however many tokens arrive at once.
    fn may_refetch_keys(&self) -> bool {
        let mut last = self
            .last_key_refetch
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|at| at.elapsed() < KEY_REFETCH_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}

/// The email an ID token names, if the portal may know the person by it:
/// only a verified address, unless the configuration trusts unverified ones.
fn verified_email(
    email: Option<&str>,
    verified: Option<bool>,
    trust_unverified: bool,
) -> Result<String, LoginError> {
    let email = email.map(str::to_ascii_lowercase).ok_or_else(|| {
        LoginError::Invalid("the ID token has no email claim; ask for the email scope".into())
    })?;
    if verified == Some(true) || trust_unverified {
        Ok(email)
    } else {
        Err(LoginError::UnverifiedEmail(email))
    }
}

/// The client an access token was issued to: `azp`, or the one audience.
fn client_of(claims: &serde_json::Value) -> Option<String> {
    if let Some(azp) = claims.get("azp").and_then(|v| v.as_str()) {
        return Some(azp.to_string());
    }
    match claims.get("aud")? {
        serde_json::Value::String(one) => Some(one.clone()),
        serde_json::Value::Array(list) if list.len() == 1 => list[0].as_str().map(str::to_string),
        _ => None,
    }
}

/// The JSON payload of a compact JWT, unverified.
fn payload(jwt: &str) -> Option<serde_json::Value> {
    let part = jwt.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?).ok()
}

/// The groups claim; providers send a list, a single string, or nothing.
fn groups(claims: &serde_json::Value, claim: &str) -> Vec<String> {
    match claims.get(claim) {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|g| g.as_str().map(str::to_string))
            .collect(),
        Some(serde_json::Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_come_as_a_list_a_string_or_not_at_all() {
        let claims = serde_json::json!({"groups": ["a", "b"], "team": "x"});
        assert_eq!(groups(&claims, "groups"), ["a", "b"]);
        assert_eq!(groups(&claims, "team"), ["x"]);
        assert!(groups(&claims, "roles").is_empty());
    }

    #[test]
    fn only_a_verified_email_is_accepted_unless_configured_otherwise() {
        assert_eq!(
            verified_email(Some("Alice@Example.com"), Some(true), false).unwrap(),
            "alice@example.com"
        );
        for verified in [Some(false), None] {
            assert!(matches!(
                verified_email(Some("alice@example.com"), verified, false),
                Err(LoginError::UnverifiedEmail(_))
            ));
            assert!(verified_email(Some("alice@example.com"), verified, true).is_ok());
        }
        assert!(matches!(
            verified_email(None, Some(true), true),
            Err(LoginError::Invalid(_))
        ));
    }

    #[test]
    fn the_client_is_the_authorized_party_or_the_only_audience() {
        let client = |claims| client_of(&claims);
        assert_eq!(
            client(serde_json::json!({"azp": "ci", "aud": ["portal", "ci"]})).as_deref(),
            Some("ci")
        );
        assert_eq!(
            client(serde_json::json!({"aud": "ci"})).as_deref(),
            Some("ci")
        );
        assert_eq!(
            client(serde_json::json!({"aud": ["ci"]})).as_deref(),
            Some("ci")
        );
        assert_eq!(client(serde_json::json!({"aud": ["portal", "ci"]})), None);
    }

    #[test]
    fn a_jwt_payload_is_readable() {
        let body = URL_SAFE_NO_PAD.encode(br#"{"aud":"ci"}"#);
        assert_eq!(payload(&format!("h.{body}.s")).unwrap()["aud"], "ci");
        assert!(payload("not a jwt").is_none());
    }
}
