//! The OpenID Provider as the appliance sees it: discovery (cached for an hour, read again when
//! a token's key is unknown), the HTTP client the crate uses, the claims we read (email,
//! name, the configured groups claim, from the ID token or userinfo), the groups' rights, the
//! RP-initiated logout URL, and the lifecycle re-check (refresh token, else userinfo).

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreRevocableToken,
    CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, Client, ClientId, ClientSecret, EmptyExtraTokenFields, EndSessionUrl,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IdToken, IdTokenFields, IssuerUrl,
    LogoutRequest, Nonce, OAuth2TokenResponse, PostLogoutRedirectUrl, ProviderMetadataWithLogout,
    RedirectUrl, RefreshToken, RequestTokenError, StandardErrorResponse, StandardTokenResponse,
    SubjectIdentifier, TokenResponse, UserInfoClaims, UserInfoError,
};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::seal::IdpTokens;
use crate::config;
use crate::util::now;

/// Discovery (and with it the provider's keys) is read again after this long.
const REDISCOVER_AFTER: Duration = Duration::from_secs(3600);
/// The most a provider's answer may weigh.
const MAX_RESPONSE: usize = 1024 * 1024;

/// Claims beyond the standard ones (the groups claim is looked up by its configured name).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraClaims {
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}
impl AdditionalClaims for ExtraClaims {}

type Fields = IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<Fields, CoreTokenType>;
type Token = IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type OidcClient = Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;
type UserInfo = UserInfoClaims<ExtraClaims, CoreGenderClaim>;

/// Our HTTP client for the crate: reqwest (rustls, ring), no redirects followed (SSRF), a
/// timeout, answers capped at [`MAX_RESPONSE`].
#[derive(Clone)]
pub(super) struct Http(reqwest::Client);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

impl<'c> openidconnect::AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future =
        Pin<Box<dyn Future<Output = Result<openidconnect::HttpResponse, HttpError>> + 'c>>;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let mut resp = self
                .0
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| HttpError(format!("{}: {e}", parts.uri)))?;
            let mut out = openidconnect::http::Response::builder().status(resp.status());
            if let Some(h) = out.headers_mut() {
                *h = resp.headers().clone();
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| HttpError(format!("{}: {e}", parts.uri)))?
            {
                if bytes.len() + chunk.len() > MAX_RESPONSE {
                    return Err(HttpError(format!("{}: answer too large", parts.uri)));
                }
                bytes.extend_from_slice(&chunk);
            }
            out.body(bytes).map_err(|e| HttpError(e.to_string()))
        })
    }
}

/// What discovery told us.
pub(super) struct Discovered {
    pub(super) client: OidcClient,
    end_session: Option<EndSessionUrl>,
    /// The provider offers `offline_access` (refresh tokens on request).
    pub(super) offline: bool,
    at: Instant,
}

/// The configured provider; discovery happens on first use and again every hour.
pub struct Provider {
    pub(super) cfg: config::Oidc,
    pub(super) http: Http,
    pub(super) issuer: IssuerUrl,
    redirect: RedirectUrl,
    post_logout: String,
    cache: tokio::sync::Mutex<Option<Arc<Discovered>>>,
}

/// The answer of a re-check.
pub enum Recheck {
    /// The provider still vouches; new tokens and rights.
    Ok {
        tokens: IdpTokens,
        can_create: Option<bool>,
        is_admin: Option<bool>,
    },
    /// It does not (refused the refresh, or nothing left to ask with).
    Gone(String),
    /// It could not be asked.
    Unreachable(String),
}

/// What the tokens and userinfo said about the person.
pub(super) struct Claims {
    pub(super) email: Option<String>,
    pub(super) verified: Option<bool>,
    pub(super) name: Option<String>,
    pub(super) groups: Option<Vec<String>>,
}

impl Provider {
    pub fn new(cfg: &config::Oidc, public_url: &str) -> anyhow::Result<Provider> {
        crate::util::install_ring_provider();
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.timeout.0)
            .connect_timeout(cfg.timeout.0);
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("`auth.oidc.ca_file` {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("`auth.oidc.ca_file` {}: {e}", path.display()))?;
            b = b.tls_certs_merge(certs);
        }
        let http = Http(
            b.build()
                .map_err(|e| anyhow::anyhow!("OIDC HTTP client: {e}"))?,
        );
        let d = cfg.discovery_url.trim();
        let d = d
            .strip_suffix("/.well-known/openid-configuration")
            .unwrap_or(d);
        let issuer = IssuerUrl::new(d.to_string())
            .map_err(|e| anyhow::anyhow!("`auth.oidc.discovery_url` {d:?}: {e}"))?;
        let redirect = cfg
            .redirect_url
            .clone()
            .unwrap_or_else(|| format!("{public_url}/api/v1/auth/oidc/callback"));
        let redirect = RedirectUrl::new(redirect.clone())
            .map_err(|e| anyhow::anyhow!("OIDC redirect URL {redirect:?}: {e}"))?;
        Ok(Provider {
            cfg: cfg.clone(),
            http,
            issuer,
            redirect,
            post_logout: format!("{public_url}/"),
            cache: tokio::sync::Mutex::new(None),
        })
    }

    /// The discovered provider (cached; read again after an hour or when `fresh`).
    pub(super) async fn discovered(&self, fresh: bool) -> Result<Arc<Discovered>, String> {
        let mut cache = self.cache.lock().await;
        if let Some(d) = cache.as_ref()
            && !fresh
            && d.at.elapsed() < REDISCOVER_AFTER
        {
            return Ok(d.clone());
        }
        let meta = ProviderMetadataWithLogout::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| {
                let mut msg = format!("discovery at {}: {e}", self.issuer.as_str());
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(&format!(": {s}"));
                    src = s.source();
                }
                msg
            })?;
        let end_session = meta.additional_metadata().end_session_endpoint.clone();
        let offline = meta
            .scopes_supported()
            .is_some_and(|s| s.iter().any(|s| s.as_str() == "offline_access"));
        let client: OidcClient = Client::from_provider_metadata(
            meta,
            ClientId::new(self.cfg.client_id.clone()),
            self.cfg.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(self.redirect.clone());
        let d = Arc::new(Discovered {
            client,
            end_session,
            offline,
            at: Instant::now(),
        });
        *cache = Some(d.clone());
        Ok(d)
    }

    /// `true` when the provider's groups matter here.
    pub(super) fn group_rules(&self) -> bool {
        !(self.cfg.create_groups.is_empty() && self.cfg.admin_groups.is_empty())
    }

    pub(super) fn rights(&self, groups: Option<&[String]>) -> (Option<bool>, Option<bool>) {
        let groups = groups.unwrap_or_default();
        let any = |wanted: &[String]| {
            (!wanted.is_empty()).then(|| groups.iter().any(|g| wanted.contains(g)))
        };
        (any(&self.cfg.create_groups), any(&self.cfg.admin_groups))
    }

    pub(super) fn claims_from(&self, extra: &ExtraClaims) -> Option<Vec<String>> {
        match extra.other.get(&self.cfg.groups_claim)? {
            serde_json::Value::Array(a) => Some(
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
            ),
            serde_json::Value::String(s) => Some(vec![s.clone()]),
            _ => None,
        }
    }

    /// Fills what the ID token did not say from userinfo (when the provider has it).
    pub(super) async fn complete(
        &self,
        d: &Discovered,
        access: &openidconnect::AccessToken,
        sub: &SubjectIdentifier,
        c: &mut Claims,
    ) -> Result<(), UserInfoError<HttpError>> {
        let missing = c.email.is_none()
            || c.verified != Some(true)
            || c.name.is_none()
            || (c.groups.is_none() && self.group_rules());
        if !missing {
            return Ok(());
        }
        let Ok(req) = d.client.user_info(access.clone(), Some(sub.clone())) else {
            return Ok(()); // no userinfo endpoint: the ID token is all there is
        };
        let ui: UserInfo = req.request_async(&self.http).await?;
        let ui_email = ui.email().map(|e| e.as_str().to_string());
        if c.email.is_none() || c.email == ui_email {
            if c.email.is_none() {
                c.email = ui_email;
            }
            if c.verified != Some(true) {
                c.verified = ui.email_verified().or(c.verified);
            }
        }
        if c.name.is_none() {
            c.name = ui
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_string());
        }
        if c.groups.is_none() {
            c.groups = self.claims_from(ui.additional_claims());
        }
        Ok(())
    }

    /// The RP-initiated logout URL, when the provider has an end-session endpoint.
    pub async fn logout_url(&self, id_token: Option<&str>) -> Option<String> {
        let d = self.discovered(false).await.ok()?;
        let end = d.end_session.clone()?;
        let mut r = LogoutRequest::from(end)
            .set_client_id(ClientId::new(self.cfg.client_id.clone()))
            .set_post_logout_redirect_uri(
                PostLogoutRedirectUrl::new(self.post_logout.clone()).ok()?,
            );
        if let Some(t) = id_token.and_then(|t| t.parse::<Token>().ok()) {
            r = r.set_id_token_hint(&t);
        }
        Some(r.http_get_url().to_string())
    }

    /// The lifecycle re-check of a session for `sub` with its `tokens`.
    pub async fn recheck(&self, sub: &str, tokens: IdpTokens) -> Recheck {
        let d = match self.discovered(false).await {
            Ok(d) => d,
            Err(e) => return Recheck::Unreachable(e),
        };
        let sub_id = SubjectIdentifier::new(sub.to_string());
        let mut out = tokens.clone();
        let mut claims = Claims {
            email: None,
            verified: None,
            name: Some(String::new()),
            groups: None,
        };
        let access = if let Some(rt) = &tokens.refresh_token {
            let rt = RefreshToken::new(rt.clone());
            let req = match d.client.exchange_refresh_token(&rt) {
                Ok(r) => r,
                Err(e) => return Recheck::Unreachable(format!("no token endpoint: {e}")),
            };
            match req.request_async(&self.http).await {
                Ok(t) => {
                    if let Some(new_rt) = t.refresh_token() {
                        out.refresh_token = Some(new_rt.secret().clone());
                    }
                    out.access_token = Some(t.access_token().secret().clone());
                    out.access_expires_at = t
                        .expires_in()
                        .map(|e| now() + i64::try_from(e.as_secs()).unwrap_or(0));
                    if let Some(idt) = t.id_token() {
                        let verifier = d.client.id_token_verifier();
                        match idt.claims(&verifier, |_: Option<&Nonce>| Ok(())) {
                            Ok(c) if c.subject().as_str() != sub => {
                                return Recheck::Gone(
                                    "the refreshed ID token names another subject".into(),
                                );
                            }
                            Ok(c) => {
                                claims.groups = self.claims_from(c.additional_claims());
                                out.id_token = Some(idt.to_string());
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "OIDC re-check: the refreshed ID token does not verify; using userinfo");
                            }
                        }
                    }
                    t.access_token().clone()
                }
                Err(RequestTokenError::ServerResponse(e)) => {
                    return Recheck::Gone(format!(
                        "the provider refused the refresh: {}{}",
                        e.error().as_ref(),
                        e.error_description()
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default()
                    ));
                }
                Err(e) => return Recheck::Unreachable(format!("refresh: {e}")),
            }
        } else {
            match (&tokens.access_token, tokens.access_expires_at) {
                (Some(a), exp) if exp.is_none_or(|x| x > now()) => {
                    openidconnect::AccessToken::new(a.clone())
                }
                _ => {
                    return Recheck::Gone(
                        "the provider gave no refresh token and the access token expired".into(),
                    );
                }
            }
        };
        if self.group_rules() && claims.groups.is_none() {
            // Only the groups are asked for: email and name were settled at sign-in.
            claims.email = Some(String::new());
            claims.verified = Some(true);
            if let Err(e) = self.complete(&d, &access, &sub_id, &mut claims).await {
                return match e {
                    UserInfoError::Response(status, _, _) if status.as_u16() == 401 => {
                        Recheck::Gone("userinfo refused the access token".into())
                    }
                    e => Recheck::Unreachable(format!("userinfo: {e}")),
                };
            }
        } else if tokens.refresh_token.is_none() {
            // Without a refresh token, userinfo is the only question left to ask.
            let Ok(req) = d.client.user_info(access.clone(), Some(sub_id.clone())) else {
                return Recheck::Gone("no refresh token and no userinfo endpoint".into());
            };
            let r: Result<UserInfo, _> = req.request_async(&self.http).await;
            match r {
                Ok(_) => {}
                Err(UserInfoError::Response(status, _, _)) if status.as_u16() == 401 => {
                    return Recheck::Gone("userinfo refused the access token".into());
                }
                Err(e) => return Recheck::Unreachable(format!("userinfo: {e}")),
            }
        }
        let (can_create, is_admin) = self.rights(claims.groups.as_deref());
        Recheck::Ok {
            tokens: out,
            can_create,
            is_admin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_decide_rights() {
        let cfg = config::Oidc {
            discovery_url: "http://127.0.0.1:1".into(),
            create_groups: vec!["staff".into()],
            admin_groups: vec!["it".into()],
            ..Default::default()
        };
        let p = Provider::new(&cfg, "http://127.0.0.1:1").expect("provider");
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(p.rights(Some(&g(&["staff"]))), (Some(true), Some(false)));
        assert_eq!(p.rights(Some(&g(&["it", "x"]))), (Some(false), Some(true)));
        assert_eq!(p.rights(None), (Some(false), Some(false)));
        let cfg = config::Oidc {
            discovery_url: "http://127.0.0.1:1".into(),
            ..Default::default()
        };
        let p = Provider::new(&cfg, "http://127.0.0.1:1").expect("provider");
        assert_eq!(p.rights(None), (None, None), "no rules: the config decides");
        let extra: ExtraClaims =
            serde_json::from_str(r#"{"groups":["a","b"],"x":1}"#).expect("json");
        assert_eq!(p.claims_from(&extra), Some(vec!["a".into(), "b".into()]));
    }
}
