//! OpenID Connect against the configured identity provider: the
//! authorization code flow with PKCE, state and nonce for employees, and
//! verification of client-credentials access tokens for machine clients.

use std::sync::Arc;
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
        let email = claims
            .email()
            .map(|e| e.as_str().to_ascii_lowercase())
            .ok_or_else(|| {
                LoginError::Invalid(
                    "the ID token has no email claim; ask for the email scope".into(),
                )
            })?;
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
    /// signature, issuer, expiry and audience are checked, and its client id
    /// maps to scopes in the configuration.
    pub async fn machine_principal(&self, token: &str) -> Result<Principal, Error> {
        let unauthorized =
            |why: String| Error::Unauthorized(format!("the access token is not accepted: {why}"));
        let claims = payload(token).ok_or_else(|| unauthorized("it is not a JWT".into()))?;
        let client_id = claims
            .get("azp")
            .and_then(|v| v.as_str())
            .or_else(|| {
                claims
                    .get("aud")
                    .and_then(|a| a.as_str().or_else(|| a.get(0).and_then(|v| v.as_str())))
            })
            .ok_or_else(|| unauthorized("it names no audience".into()))?
            .to_string();
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
        let parsed: CoreIdToken = token
            .parse()
            .map_err(|_| unauthorized("it is not a signed JWT".into()))?;
        for refresh in [false, true] {
            let metadata = self
                .provider(refresh)
                .await
                .map_err(|e| Error::Unavailable(e.to_string()))?;
            let verifier = CoreIdTokenVerifier::new_public_client(
                ClientId::new(client_id.clone()),
                self.issuer.clone(),
                metadata.jwks().clone(),
            );
            match parsed.claims(&verifier, |_: Option<&Nonce>| Ok::<(), String>(())) {
                Ok(_) => {
                    let scopes: Vec<Scope> = machine.scopes.clone();
                    return Ok(Principal::Machine { client_id, scopes });
                }
                // A key rotated since discovery: fetch the keys once more.
                Err(openidconnect::ClaimsVerificationError::SignatureVerification(_))
                    if !refresh =>
                {
                    continue;
                }
                Err(e) => return Err(unauthorized(error_chain(&e))),
            }
        }
        Err(unauthorized(
            "its signature matches none of the identity provider's keys".into(),
        ))
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
    fn a_jwt_payload_is_readable() {
        let body = URL_SAFE_NO_PAD.encode(br#"{"aud":"ci"}"#);
        assert_eq!(payload(&format!("h.{body}.s")).unwrap()["aud"], "ci");
        assert!(payload("not a jwt").is_none());
    }
}
