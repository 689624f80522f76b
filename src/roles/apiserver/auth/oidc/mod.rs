//! OpenID Connect sign-in (`auth.methods` has `oidc`) with the `openidconnect` crate: the
//! authorization code flow with PKCE (S256), `state` and `nonce`, against any provider found
//! by discovery (`auth.oidc.discovery_url`), as a confidential client.
//!
//! ```text
//! GET /api/v1/auth/oidc/login?next=/m/abc   → 302 to the provider (+ a login-binding cookie)
//! GET /api/v1/auth/oidc/callback?code&state → 302 to `next` with the session cookie,
//!                                             or 302 to /?sso_error=<why>
//! ```
//! - `state` is random, stored hashed in `sso_logins` with the nonce, the PKCE verifier and a
//!   hash of the binding cookie. The callback must present a known, fresh (10 minutes),
//!   unused state from the same browser; the row is consumed in one statement, so a callback
//!   URL works once (a replay, a tampered or foreign `state` is `state_invalid`).
//! - The code is redeemed with the PKCE verifier and the client secret. A code that was used
//!   already, was issued to another client, or comes with another login's PKCE verifier (as
//!   any code replayed through our callback does) is refused by the provider (`exchange_failed`).
//! - The ID token's signature (the provider's published keys), issuer, audience (our client
//!   id, and no untrusted other), expiry, nonce and `at_hash` are checked by the crate; a token
//!   for another client is `token_invalid`.
//! - The person is their verified email (ID token, else userinfo); the name claim becomes the
//!   display name; `groups_claim` decides `create_groups` / `admin_groups`.
//! - The session keeps the refresh token (sealed) for the lifecycle re-check, and the ID token
//!   for RP-initiated logout when the provider has an `end_session_endpoint`.
//!
//! The provider itself (discovery, the HTTP client, claims, the re-check) is in [`provider`].

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::{HttpRequest, HttpResponse, web};
use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{
    AccessTokenHash, AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RequestTokenError, Scope, TokenResponse,
};
use sea_orm::{ActiveModelTrait, Set};
use serde::Deserialize;

use super::seal::IdpTokens;
use super::{NewSession, client_ip, open_session, upsert_user};
use crate::config::AuthMethod;
use crate::db::entities::sso_login;
use crate::db::models;
use crate::roles::apiserver::ApiState;
use crate::roles::apiserver::audit::{Entry, Outcome, action};
use crate::tokens::sha256_hex;
use crate::util::{ct_eq, normalize_email, now};

mod provider;
use provider::Claims;
pub use provider::{Provider, Recheck};

/// The cookie that binds a login to the browser that started it.
const BINDING_COOKIE: &str = "meeting_sso";
const COOKIE_PATH: &str = "/api/v1/auth/oidc";
/// A login must come back within this long.
const LOGIN_TTL: i64 = 600;
/// Logins one client IP may have in flight (started, not come back) within `LOGIN_TTL`.
pub const LOGINS_IN_FLIGHT_PER_IP: u64 = 30;

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// A path on this site to go to after signing in (never another site: `//host` and `/\host`
/// are refused).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.len() <= 512
                && !n.chars().any(|c| c.is_control() || c == '\\') =>
        {
            n.to_string()
        }
        _ => "/".into(),
    }
}

/// 302 to `location`, never cached.
fn redirect(location: &str) -> actix_web::HttpResponseBuilder {
    let mut r = HttpResponse::Found();
    r.insert_header(("Location", location.to_string()))
        .insert_header(("Cache-Control", "no-store"));
    r
}

/// Back to the sign-in page with an error code the web client shows.
fn back_with_error(code: &str) -> HttpResponse {
    let mut gone = Cookie::build(BINDING_COOKIE, "")
        .path(COOKIE_PATH)
        .http_only(true)
        .finish();
    gone.make_removal();
    redirect(&format!("/?sso_error={code}"))
        .cookie(gone)
        .finish()
}

/// `GET /api/v1/auth/oidc/login?next=…`: off to the provider.
pub async fn login(
    st: web::Data<ApiState>,
    req: HttpRequest,
    q: web::Query<LoginQuery>,
) -> HttpResponse {
    let ip = client_ip(&req);
    let refuse = |why: &'static str, detail: String| {
        let st = st.clone();
        let ip = ip.clone();
        async move {
            st.audit(
                Entry::new(action::SIGN_IN, Outcome::Refused)
                    .method(AuthMethod::Oidc)
                    .ip(ip)
                    .detail(detail),
            )
            .await;
            back_with_error(why)
        }
    };
    let Some(p) = st
        .sso
        .oidc
        .as_ref()
        .filter(|_| st.cfg.auth.offers(AuthMethod::Oidc))
    else {
        return back_with_error("method_disabled");
    };
    let t = now();
    let in_flight = models::sso_login::in_flight_from(&st.db, &ip, t - LOGIN_TTL).await;
    match in_flight {
        Ok(n) if n >= LOGINS_IN_FLIGHT_PER_IP => {
            return refuse(
                "rate_limited",
                format!("{n} sign-ins in flight from this address"),
            )
            .await;
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "OIDC login: database");
            return back_with_error("internal");
        }
    }
    let d = match p.discovered(false).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "OIDC: the provider cannot be reached");
            return refuse("provider_unreachable", e).await;
        }
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut ar = d.client.authorize_url(
        CoreAuthenticationFlow::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for s in &p.cfg.scopes {
        if s != "openid" {
            ar = ar.add_scope(Scope::new(s.clone()));
        }
    }
    if d.offline && !p.cfg.scopes.iter().any(|s| s == "offline_access") {
        ar = ar.add_scope(Scope::new("offline_access".into()));
    }
    let (url, state, nonce) = ar.set_pkce_challenge(challenge).url();
    let binding = crate::ids::random_token(32);
    let row = sso_login::ActiveModel {
        state_hash: Set(sha256_hex(state.secret())),
        binding_hash: Set(sha256_hex(&binding)),
        nonce: Set(nonce.secret().clone()),
        pkce_verifier: Set(verifier.secret().clone()),
        next: Set(safe_next(q.next.as_deref())),
        ip: Set(ip.clone()),
        created_at: Set(t),
        consumed_at: Set(None),
        ..Default::default()
    }
    .insert(&st.db)
    .await;
    if let Err(e) = row {
        tracing::error!(error = %e, "OIDC login: database");
        return back_with_error("internal");
    }
    let cookie = Cookie::build(BINDING_COOKIE, binding)
        .path(COOKIE_PATH)
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(st.tls)
        .max_age(CookieDuration::seconds(LOGIN_TTL))
        .finish();
    redirect(url.as_str()).cookie(cookie).finish()
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    /// RFC 9207: who answered (a mix-up defence when the provider sends it).
    iss: Option<String>,
}

/// Why a callback failed: the code for the page, and what the audit log keeps.
struct Refusal {
    code: &'static str,
    detail: String,
    actor: String,
}

fn refusal(code: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal {
        code,
        detail: detail.into(),
        actor: String::new(),
    }
}

/// `GET /api/v1/auth/oidc/callback?code=…&state=…`: back from the provider.
pub async fn callback(
    st: web::Data<ApiState>,
    req: HttpRequest,
    q: web::Query<CallbackQuery>,
) -> HttpResponse {
    let ip = client_ip(&req);
    match finish_login(&st, &req, &ip, q.into_inner()).await {
        Ok(resp) => resp,
        Err(r) => {
            st.metrics
                .sign_in_failures
                .get_or_create(&crate::metrics::Metrics::label("reason", r.code))
                .inc();
            let outcome = if r.code == "account_disabled" {
                Outcome::Refused
            } else {
                Outcome::Failed
            };
            st.audit(
                Entry::new(action::SIGN_IN, outcome)
                    .method(AuthMethod::Oidc)
                    .ip(ip)
                    .actor(None, r.actor)
                    .detail(format!("{}: {}", r.code, r.detail)),
            )
            .await;
            back_with_error(r.code)
        }
    }
}

async fn finish_login(
    st: &ApiState,
    req: &HttpRequest,
    ip: &str,
    q: CallbackQuery,
) -> Result<HttpResponse, Refusal> {
    let Some(p) = st
        .sso
        .oidc
        .as_ref()
        .filter(|_| st.cfg.auth.offers(AuthMethod::Oidc))
    else {
        return Err(refusal("method_disabled", "oidc is not in auth.methods"));
    };
    let db_err = |e: sea_orm::DbErr| refusal("internal", format!("database: {e}"));
    let t = now();
    // 1. The state: known, fresh, from this browser, unused — and now used.
    let state = q.state.as_deref().unwrap_or("");
    if state.is_empty() || state.len() > 256 {
        return Err(refusal("state_invalid", "no state"));
    }
    let row = models::sso_login::by_state_hash(&st.db, &sha256_hex(state))
        .await
        .map_err(db_err)?
        .ok_or_else(|| refusal("state_invalid", "unknown state"))?;
    if row.consumed_at.is_some() {
        return Err(refusal(
            "state_invalid",
            "state already used (a replayed callback)",
        ));
    }
    if row.created_at < t - LOGIN_TTL {
        return Err(refusal(
            "state_invalid",
            "sign-in took too long (state expired)",
        ));
    }
    let binding = req
        .cookie(BINDING_COOKIE)
        .map(|c| sha256_hex(c.value()))
        .unwrap_or_default();
    if !ct_eq(&binding, &row.binding_hash) {
        return Err(refusal(
            "state_invalid",
            "the sign-in was started in another browser",
        ));
    }
    let consumed = models::sso_login::consume(&st.db, row.id, t)
        .await
        .map_err(db_err)?;
    if !consumed {
        return Err(refusal(
            "state_invalid",
            "state already used (a replayed callback)",
        ));
    }
    // 2. The provider's answer.
    if let Some(iss) = &q.iss
        && iss.trim_end_matches('/') != p.issuer.as_str().trim_end_matches('/')
    {
        return Err(refusal(
            "provider_error",
            format!("the answer names another issuer ({iss})"),
        ));
    }
    if let Some(e) = &q.error {
        let code = if e == "access_denied" {
            "access_denied"
        } else {
            "provider_error"
        };
        return Err(refusal(
            code,
            format!(
                "the provider answered {e}{}",
                q.error_description
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
        ));
    }
    let code = q
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 2048)
        .ok_or_else(|| refusal("provider_error", "no code in the callback"))?;
    let d = p
        .discovered(false)
        .await
        .map_err(|e| refusal("provider_unreachable", e))?;
    // 3. The code, redeemed with the PKCE verifier.
    let tokens = d
        .client
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .map_err(|e| refusal("provider_error", format!("no token endpoint: {e}")))?
        .set_pkce_verifier(PkceCodeVerifier::new(row.pkce_verifier.clone()))
        .request_async(&p.http)
        .await
        .map_err(|e| match e {
            RequestTokenError::ServerResponse(e) => refusal(
                "exchange_failed",
                format!(
                    "the provider refused the code: {}{}",
                    e.error().as_ref(),
                    e.error_description()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
            ),
            e => refusal("provider_unreachable", format!("token endpoint: {e}")),
        })?;
    // 4. The ID token.
    let id_token = tokens
        .id_token()
        .ok_or_else(|| refusal("token_invalid", "the provider sent no ID token"))?;
    let verifier = d.client.id_token_verifier();
    let nonce = Nonce::new(row.nonce.clone());
    let verified = match id_token.claims(&verifier, &nonce) {
        Ok(c) => c.clone(),
        Err(e) => {
            // New signing keys: read discovery again once.
            let d2 = p
                .discovered(true)
                .await
                .map_err(|e2| refusal("token_invalid", format!("{e}; {e2}")))?;
            let v2 = d2.client.id_token_verifier();
            match id_token.claims(&v2, &nonce) {
                Ok(c) => c.clone(),
                Err(_) => return Err(refusal("token_invalid", format!("ID token: {e}"))),
            }
        }
    };
    if let Some(expected) = verified.access_token_hash() {
        let alg = id_token
            .signing_alg()
            .map_err(|e| refusal("token_invalid", format!("ID token: {e}")))?;
        let key = id_token
            .signing_key(&verifier)
            .map_err(|e| refusal("token_invalid", format!("ID token: {e}")))?;
        let actual = AccessTokenHash::from_token(tokens.access_token(), alg, key)
            .map_err(|e| refusal("token_invalid", format!("at_hash: {e}")))?;
        if actual != *expected {
            return Err(refusal(
                "token_invalid",
                "the access token does not match the ID token (at_hash)",
            ));
        }
    }
    // 5. Who it is.
    let sub = verified.subject().clone();
    let mut claims = Claims {
        email: verified.email().map(|e| e.as_str().to_string()),
        verified: verified.email_verified(),
        name: verified
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_string()),
        groups: p.claims_from(verified.additional_claims()),
    };
    p.complete(&d, tokens.access_token(), &sub, &mut claims)
        .await
        .map_err(|e| refusal("provider_unreachable", format!("userinfo: {e}")))?;
    let raw_email = claims.email.clone().unwrap_or_default();
    let Some(email) = claims.email.as_deref().and_then(normalize_email) else {
        return Err(refusal(
            "email_missing",
            format!("no usable email for subject {}", sub.as_str()),
        ));
    };
    if claims.verified != Some(true) && !p.cfg.accept_unverified_email {
        return Err(Refusal {
            code: "email_unverified",
            detail: "the provider does not say the email is verified".into(),
            actor: raw_email,
        });
    }
    let (can_create, is_admin) = p.rights(claims.groups.as_deref());
    let user = upsert_user(st, &email, claims.name.as_deref(), t)
        .await
        .map_err(|e| refusal("internal", e.to_string()))?;
    let session = NewSession {
        method: AuthMethod::Oidc,
        idp_subject: Some(sub.as_str().to_string()),
        idp_tokens: Some(IdpTokens {
            refresh_token: tokens.refresh_token().map(|r| r.secret().clone()),
            access_token: Some(tokens.access_token().secret().clone()),
            access_expires_at: tokens
                .expires_in()
                .map(|e| t + i64::try_from(e.as_secs()).unwrap_or(0)),
            id_token: Some(id_token.to_string()),
            login: None,
        }),
        can_create,
        is_admin,
    };
    let (_, cookie, _) = match open_session(st, user, ip, session).await {
        Ok(x) => x,
        // open_session wrote the audit entry for a disabled account itself.
        Err(e) if e.code == "account_disabled" => return Ok(back_with_error("account_disabled")),
        Err(e) => return Err(refusal("internal", e.to_string())),
    };
    let mut gone = Cookie::build(BINDING_COOKIE, "")
        .path(COOKIE_PATH)
        .http_only(true)
        .finish();
    gone.make_removal();
    Ok(redirect(&row.next).cookie(cookie).cookie(gone).finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/m/abc?x=1")), "/m/abc?x=1");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/a\nb")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
