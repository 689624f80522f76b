//! Email sign-in: a 6-digit one-time code by mail, then an opaque session token.
//!
//! Codes are stored as keyed hashes, expire (`auth.code_ttl`), allow `auth.code_max_attempts`
//! wrong tries, and a new code voids the previous one. Requests for codes are limited per
//! address and per client IP, counted from the `login_codes` table so limits hold across
//! restarts. Sessions are random 256-bit tokens; only their SHA-256 is stored, so a copy of
//! the database cannot be used to sign in. The browser gets them as an HttpOnly, SameSite=Lax
//! cookie (Secure under TLS); API clients use `Authorization: Bearer`.
//!
//! Beside the codes, per deployment (`auth.methods`): OpenID Connect ([`oidc`]) and
//! LDAP / Active Directory ([`ldap`]). Every method ends in the same kind of session; the
//! session remembers its method, and SSO sessions are re-checked with their provider
//! ([`lifecycle`]). A person is their email address whichever way they signed in.
//! Administrators can disable people (`users.disabled_at`): no sign-in, no session. When a
//! provider stops vouching for someone (`users.idp_disabled_at`), they lose access by every
//! method, codes included, until they sign in through the provider again.

pub mod ldap;
pub mod lifecycle;
pub mod oidc;
pub(crate) mod seal;
mod throttle;

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload, web};
use rand::Rng;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

use super::audit::{self, Entry, Outcome, action};
use super::mail::{Outgoing, enqueue};
use super::{ApiState, client_ip};
use crate::config::{AuthMethod, Config};
use crate::db::entities::{login_code, password_attempt, session, sso_login, user};
use crate::db::models;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::tokens::{Keys, sha256_hex};
use crate::util::{ct_eq, normalize_email, now};

pub const SESSION_COOKIE: &str = "meeting_session";

/// What the apiserver keeps for the sign-in methods beyond email codes: the OpenID Connect
/// provider (discovered on first use) and the directory, when configured; the audit log's
/// limiter; the lifecycle actor (started with the server).
pub struct Sso {
    pub oidc: Option<oidc::Provider>,
    pub ldap: Option<ldap::Directory>,
    pub audit: audit::Limiter,
    pub lifecycle: std::sync::OnceLock<actix::Addr<lifecycle::Lifecycle>>,
    keys: Keys,
}

impl Sso {
    /// Reads CA files and builds the HTTP client; a bad file stops start-up with its name.
    pub fn new(cfg: &Config, keys: &Keys, public_url: &str) -> anyhow::Result<Sso> {
        let a = &cfg.auth;
        Ok(Sso {
            oidc: if a.offers(AuthMethod::Oidc) {
                Some(oidc::Provider::new(&a.oidc, public_url)?)
            } else {
                None
            },
            ldap: if a.offers(AuthMethod::Ldap) {
                Some(ldap::Directory::new(&a.ldap)?)
            } else {
                None
            },
            audit: audit::Limiter::default(),
            lifecycle: std::sync::OnceLock::new(),
            keys: keys.clone(),
        })
    }

    fn seal(&self, plain: &seal::IdpTokens) -> String {
        seal::seal(self.keys.sso_key(), plain)
    }

    fn open(&self, sealed: Option<&str>) -> seal::IdpTokens {
        sealed
            .and_then(|s| seal::open(self.keys.sso_key(), s))
            .unwrap_or_default()
    }
}

/// `GET /api/v1/auth/methods`: what the sign-in page offers, in order.
pub async fn methods(st: web::Data<ApiState>) -> HttpResponse {
    let a = &st.cfg.auth;
    let list: Vec<serde_json::Value> = a
        .methods
        .iter()
        .map(|m| match m {
            AuthMethod::EmailCode => serde_json::json!({ "method": "email_code" }),
            AuthMethod::Oidc => serde_json::json!({
                "method": "oidc", "name": a.oidc.name,
                "login_url": "/api/v1/auth/oidc/login",
            }),
            AuthMethod::Ldap => serde_json::json!({ "method": "ldap", "name": a.ldap.name }),
        })
        .collect();
    HttpResponse::Ok().json(serde_json::json!({ "methods": list }))
}

/// The sign-in routes beyond the codes (the codes' are in `apiserver::routes`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/methods", web::get().to(methods))
        .route("/auth/oidc/login", web::get().to(oidc::login))
        .route("/auth/oidc/callback", web::get().to(oidc::callback))
        .route("/auth/ldap", web::post().to(ldap::sign_in));
}

/// 403 `method_disabled` unless `m` is in `auth.methods`.
fn require_method(st: &ApiState, m: AuthMethod) -> Result<(), ApiError> {
    if st.cfg.auth.offers(m) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "method_disabled",
            "This way of signing in is not enabled here.",
        ))
    }
}

/// Why `u` may not have access now, if so.
fn access_refused(u: &user::Model, m: AuthMethod) -> Option<ApiError> {
    if u.disabled_at.is_some() {
        return Some(ApiError::forbidden(
            "account_disabled",
            "An administrator disabled this account.",
        ));
    }
    // Signing in at the provider is what lifts the provider's block.
    if u.idp_disabled_at.is_some() && m == AuthMethod::EmailCode {
        return Some(ApiError::forbidden(
            "account_disabled",
            "Your company's sign-in service disabled this account.",
        ));
    }
    None
}

/// The person with `email`, made on first sign-in; `name` (from a provider's claims) updates
/// the display name.
async fn upsert_user(
    st: &ApiState,
    email: &str,
    name: Option<&str>,
    t: i64,
) -> Result<user::Model, ApiError> {
    let name = name.map(str::trim).filter(|n| !n.is_empty()).map(|n| {
        n.chars()
            .filter(|c| !c.is_control())
            .take(128)
            .collect::<String>()
    });
    match models::user::by_email(&st.db, email).await? {
        Some(u) => {
            if let Some(n) = &name
                && *n != u.display_name
            {
                let mut a: user::ActiveModel = u.into();
                a.display_name = Set(n.clone());
                return Ok(a.update(&st.db).await?);
            }
            Ok(u)
        }
        None => Ok(user::ActiveModel {
            email: Set(email.to_string()),
            display_name: Set(
                name.unwrap_or_else(|| email.split('@').next().unwrap_or("").to_string())
            ),
            created_at: Set(t),
            last_login_at: Set(t),
            disabled_at: Set(None),
            idp_disabled_at: Set(None),
            ..Default::default()
        }
        .insert(&st.db)
        .await?),
    }
}

/// What a new session records about how it was made.
pub(crate) struct NewSession {
    pub method: AuthMethod,
    pub idp_subject: Option<String>,
    pub idp_tokens: Option<seal::IdpTokens>,
    pub can_create: Option<bool>,
    pub is_admin: Option<bool>,
}

/// Signs `user` in: checks they may, marks the login, writes the session; returns the token,
/// the cookie and what `/me` would say.
async fn open_session(
    st: &ApiState,
    user: user::Model,
    ip: &str,
    ns: NewSession,
) -> Result<(String, Cookie<'static>, UserView), ApiError> {
    if let Some(e) = access_refused(&user, ns.method) {
        st.audit(
            Entry::new(action::SIGN_IN, Outcome::Refused)
                .method(ns.method)
                .ip(ip)
                .actor(Some(user.id), user.email.clone())
                .detail("account disabled"),
        )
        .await;
        return Err(e);
    }
    let t = now();
    let mut a: user::ActiveModel = user.clone().into();
    a.last_login_at = Set(t);
    if ns.method != AuthMethod::EmailCode {
        // The provider vouches for them again.
        a.idp_disabled_at = Set(None);
    }
    let user = a.update(&st.db).await?;
    let token = crate::ids::random_token(32);
    let ttl = st.cfg.auth.session_ttl.as_secs_i64();
    let sso = ns.method != AuthMethod::EmailCode;
    let s = session::ActiveModel {
        token_hash: Set(sha256_hex(&token)),
        user_id: Set(user.id),
        created_at: Set(t),
        expires_at: Set(t + ttl),
        revoked_at: Set(None),
        method: Set(ns.method),
        idp_subject: Set(ns.idp_subject),
        idp_tokens: Set(ns.idp_tokens.as_ref().map(|p| st.sso.seal(p))),
        checked_at: Set(sso.then_some(t)),
        can_create: Set(ns.can_create),
        is_admin: Set(ns.is_admin),
        ip: Set(Some(ip.to_string())),
        ..Default::default()
    }
    .insert(&st.db)
    .await?;
    st.metrics.sign_ins.inc();
    st.audit(
        Entry::new(action::SIGN_IN, Outcome::Ok)
            .method(ns.method)
            .ip(ip)
            .actor(Some(user.id), user.email.clone()),
    )
    .await;
    let cookie = Cookie::build(SESSION_COOKIE, token.clone())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(st.tls)
        .max_age(CookieDuration::seconds(ttl))
        .finish();
    let view = UserView::of(&user, &s, st);
    Ok((token, cookie, view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    pub email: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    pub email: String,
    pub code: String,
}

#[derive(Serialize)]
pub struct UserView {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    /// Whether this person may create meetings: `auth.allowed_domains`, and the provider's
    /// groups when the session came from one with a group rule.
    pub can_create: bool,
    /// `auth.admin_emails`, or an admin group of the session's provider.
    pub admin: bool,
    /// How this session was made.
    pub method: AuthMethod,
}

/// What `u` may do in session `s` (see [`UserView`]).
fn rights(u: &user::Model, s: &session::Model, st: &ApiState) -> (bool, bool) {
    let can_create = st.may_create(&u.email) && s.can_create.unwrap_or(true);
    let admin = super::admin::is_admin(st, &u.email) || s.is_admin == Some(true);
    (can_create, admin)
}

impl UserView {
    pub fn of(u: &user::Model, s: &session::Model, st: &ApiState) -> UserView {
        let (can_create, admin) = rights(u, s, st);
        UserView {
            id: u.id,
            email: u.email.clone(),
            display_name: u.display_name.clone(),
            can_create,
            admin,
            method: s.method,
        }
    }
}

/// `POST /api/v1/auth/code {email}` → 204, and a code is mailed.
pub async fn request_code(
    st: web::Data<ApiState>,
    req: HttpRequest,
    body: web::Json<CodeRequest>,
) -> Result<HttpResponse, ApiError> {
    require_method(&st, AuthMethod::EmailCode)?;
    let email = normalize_email(&body.email).ok_or_else(|| {
        ApiError::bad_request("invalid_email", "That is not a valid email address.")
    })?;
    let ip = client_ip(&req);
    let t = now();
    let hour_ago = t - 3600;
    let db = &st.db;
    // Rate limits, counted from what is stored: they survive restarts. The per-address limit
    // counts requests from this client IP only, so nobody can use up someone else's codes
    // from their own network; a looser limit over all IPs bounds the mail one address gets.
    let auth = &st.cfg.auth;
    use models::login_code::Requester;
    let limits = [
        (
            Requester::EmailFromIp(&email, &ip),
            auth.codes_per_email_per_hour,
            "this address from your network",
        ),
        (
            Requester::Ip(&ip),
            auth.codes_per_ip_per_hour,
            "your network address",
        ),
        (
            Requester::Email(&email),
            auth.codes_per_email_per_hour_all_ips,
            "this address",
        ),
    ];
    for (who, limit, whom) in limits {
        let recent = models::login_code::requested_since(db, who, hour_ago).await?;
        if recent.len() >= limit as usize {
            let oldest = recent.first().map(|r| r.created_at).unwrap_or(t);
            st.metrics
                .sign_in_failures
                .get_or_create(&Metrics::label("reason", "rate_limited"))
                .inc();
            return Err(ApiError::rate_limited(
                u64::try_from(oldest + 3600 - t).unwrap_or(60),
                format!("Too many sign-in codes were requested for {whom}; try again later."),
            ));
        }
    }
    let code = format!("{:06}", rand::rng().random_range(0..1_000_000u32));
    // A new code voids any earlier one for this address.
    models::login_code::replace(
        db,
        models::login_code::NewCode {
            email: email.clone(),
            code_hash: st.keys.hash_code(&email, &code),
            ip,
            now: t,
            expires_at: t + st.cfg.auth.code_ttl.as_secs_i64(),
        },
    )
    .await?;
    let minutes = st.cfg.auth.code_ttl.as_secs().div_ceil(60);
    enqueue(
        db,
        &st.mailer,
        Outgoing {
            to: email.clone(),
            // Not in the subject: subjects show on lock screens and in mail server logs.
            subject: "Your sign-in code".to_string(),
            text: format!(
                "Your sign-in code is {code}\n\nIt is valid for {minutes} minutes. If you did not ask for it, ignore this mail.\n\n{}\n",
                st.public_url
            ),
            calendar: None,
            html: None,
            priority: super::mail::Priority::SignIn,
            user_id: None,
            expires_at: Some(t + st.cfg.auth.code_ttl.as_secs_i64()),
        },
    )
    .await
    .map_err(ApiError::internal)?;
    st.kick_mail();
    st.metrics.login_codes_sent.inc();
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/v1/auth/verify {email, code}` → `{token, user}` and the session cookie.
pub async fn verify(
    st: web::Data<ApiState>,
    req: HttpRequest,
    body: web::Json<VerifyRequest>,
) -> Result<HttpResponse, ApiError> {
    require_method(&st, AuthMethod::EmailCode)?;
    let ip = client_ip(&req);
    match verify_code(&st, &body).await {
        Ok((email, t)) => {
            let user = upsert_user(&st, &email, None, t).await?;
            let (token, cookie, view) = open_session(
                &st,
                user,
                &ip,
                NewSession {
                    method: AuthMethod::EmailCode,
                    idp_subject: None,
                    idp_tokens: None,
                    can_create: None,
                    is_admin: None,
                },
            )
            .await?;
            Ok(HttpResponse::Ok()
                .cookie(cookie)
                .json(serde_json::json!({ "token": token, "user": view })))
        }
        Err((reason, e)) => {
            st.audit(
                Entry::new(action::SIGN_IN, Outcome::Failed)
                    .method(AuthMethod::EmailCode)
                    .ip(ip)
                    .actor(None, body.email.trim().to_ascii_lowercase())
                    .detail(reason),
            )
            .await;
            Err(e)
        }
    }
}

/// Checks and consumes the code; `(email, now)` when it is right, else why not.
async fn verify_code(
    st: &ApiState,
    body: &VerifyRequest,
) -> Result<(String, i64), (&'static str, ApiError)> {
    let fail = |reason: &'static str, e: ApiError| {
        st.metrics
            .sign_in_failures
            .get_or_create(&Metrics::label("reason", reason))
            .inc();
        (reason, e)
    };
    let db_err = |e: sea_orm::DbErr| ("database", ApiError::from(e));
    let invalid = || {
        ApiError::bad_request(
            "invalid_code",
            "That code is not valid. Check it, or ask for a new one.",
        )
    };
    let email = normalize_email(&body.email).ok_or_else(|| {
        (
            "invalid_email",
            ApiError::bad_request("invalid_email", "That is not a valid email address."),
        )
    })?;
    let code = body.code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(fail(
            "malformed",
            ApiError::bad_request("invalid_code", "A sign-in code is 6 digits."),
        ));
    }
    let t = now();
    let db = &st.db;
    let Some(row) = models::login_code::open_for(db, &email)
        .await
        .map_err(db_err)?
    else {
        return Err(fail("no_code", invalid()));
    };
    let consume = |id: i64| models::login_code::consume(db, id, t);
    if row.expires_at < t {
        consume(row.id).await.map_err(db_err)?;
        return Err(fail(
            "expired",
            ApiError::bad_request("code_expired", "That code has expired. Ask for a new one."),
        ));
    }
    let max = i32::try_from(st.cfg.auth.code_max_attempts).unwrap_or(i32::MAX);
    // Claim this attempt before comparing, in one statement: of any number of guesses that
    // arrive together, at most `max` find a row to count themselves against; the rest never
    // reach the comparison.
    let claimed = models::login_code::claim_attempt(db, row.id, max)
        .await
        .map_err(db_err)?;
    let too_many = || {
        ApiError::bad_request(
            "too_many_attempts",
            "Too many wrong tries: this code is void. Ask for a new one.",
        )
    };
    if !claimed {
        consume(row.id).await.map_err(db_err)?;
        return Err(fail("attempts_exhausted", too_many()));
    }
    if !ct_eq(&row.code_hash, &st.keys.hash_code(&email, code)) {
        let used = models::login_code::attempts(db, row.id)
            .await
            .map_err(db_err)?
            .unwrap_or(max);
        if used >= max {
            consume(row.id).await.map_err(db_err)?;
            return Err(fail("too_many_attempts", too_many()));
        }
        return Err(fail(
            "wrong_code",
            ApiError::bad_request(
                "invalid_code",
                format!("That code is not right; {} tries left.", max - used),
            ),
        ));
    }
    // Exactly one request can consume the code, even if two arrive together.
    if !consume(row.id).await.map_err(db_err)? {
        return Err(fail("reused", invalid()));
    }
    Ok((email, t))
}

/// `POST /api/v1/auth/logout` → 204; the session is revoked for good. A session from an
/// OpenID provider that supports RP-initiated logout gets 200 `{logout_url}` instead: the
/// client goes there to end the provider's session too, and comes back to `/`.
pub async fn logout(
    st: web::Data<ApiState>,
    req: HttpRequest,
    me: AuthUser,
) -> Result<HttpResponse, ApiError> {
    models::session::revoke(&st.db, me.session_id, now()).await?;
    st.audit(
        Entry::new(action::SIGN_OUT, Outcome::Ok)
            .method(me.method)
            .ip(client_ip(&req))
            .actor(Some(me.user.id), me.user.email.clone()),
    )
    .await;
    let mut gone = Cookie::build(SESSION_COOKIE, "")
        .path("/")
        .http_only(true)
        .finish();
    gone.make_removal();
    let logout_url = match (&st.sso.oidc, me.method) {
        (Some(p), AuthMethod::Oidc) => {
            let tokens = st.sso.open(me.session.idp_tokens.as_deref());
            p.logout_url(tokens.id_token.as_deref()).await
        }
        _ => None,
    };
    Ok(match logout_url {
        Some(url) => HttpResponse::Ok()
            .cookie(gone)
            .json(serde_json::json!({ "logout_url": url })),
        None => HttpResponse::NoContent().cookie(gone).finish(),
    })
}

/// `GET /api/v1/me`
pub async fn me(st: web::Data<ApiState>, me: AuthUser) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(UserView::of(&me.user, &me.session, &st)))
}

/// A signed-in person, from a Bearer token or the session cookie. Rejects with 401.
pub struct AuthUser {
    pub user: user::Model,
    pub session_id: i64,
    pub session: session::Model,
    pub method: AuthMethod,
    /// May create meetings (see [`UserView::can_create`]).
    pub can_create: bool,
    /// Sees the admin view (see [`UserView::admin`]).
    pub admin: bool,
}

/// A signed-in person or nobody (guests). A Bearer token that is present but invalid is an
/// error (the client is confused); a stale cookie is simply ignored.
pub struct MaybeUser(pub Option<AuthUser>);

enum Presented {
    Bearer(String),
    Cookie(String),
    Nothing,
}

fn presented(req: &HttpRequest) -> Presented {
    if let Some(h) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        let v = h.to_str().unwrap_or("");
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or("");
        return Presented::Bearer(token.trim().to_string());
    }
    match req.cookie(SESSION_COOKIE) {
        Some(c) if !c.value().is_empty() => Presented::Cookie(c.value().to_string()),
        _ => Presented::Nothing,
    }
}

/// Whether a session (by id) is still valid: for connections that outlive a request. The
/// rule is [`models::session::is_valid`], the same as for every request.
pub async fn session_still_valid(st: &ApiState, session_id: i64) -> Result<bool, ApiError> {
    Ok(models::session::still_valid(&st.db, session_id, now()).await?)
}

/// The signed-in person a session token stands for, if the session is valid.
pub async fn lookup(st: &ApiState, token: &str) -> Result<Option<AuthUser>, ApiError> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let Some((s, user)) =
        models::session::valid_by_token_hash(&st.db, &sha256_hex(token), now()).await?
    else {
        return Ok(None);
    };
    let (can_create, admin) = rights(&user, &s, st);
    Ok(Some(AuthUser {
        user,
        session_id: s.id,
        method: s.method,
        session: s,
        can_create,
        admin,
    }))
}

fn state(req: &HttpRequest) -> Result<web::Data<ApiState>, ApiError> {
    req.app_data::<web::Data<ApiState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("ApiState missing from app data"))
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let st = state(&req)?;
            let token = match presented(&req) {
                Presented::Bearer(t) | Presented::Cookie(t) => t,
                Presented::Nothing => return Err(ApiError::unauthorized("Sign in first.")),
            };
            lookup(&st, &token)
                .await?
                .ok_or_else(|| ApiError::unauthorized("Your session has ended; sign in again."))
        })
    }
}

impl FromRequest for MaybeUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let st = state(&req)?;
            match presented(&req) {
                Presented::Nothing => Ok(MaybeUser(None)),
                Presented::Cookie(t) => Ok(MaybeUser(lookup(&st, &t).await?)),
                Presented::Bearer(t) => match lookup(&st, &t).await? {
                    Some(u) => Ok(MaybeUser(Some(u))),
                    None => Err(ApiError::unauthorized(
                        "Your session has ended; sign in again.",
                    )),
                },
            }
        })
    }
}

/// Keeps the table from growing forever: codes older than a day are useless.
pub async fn prune(db: &sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    let day_ago = now() - 86400;
    login_code::Entity::delete_many()
        .filter(login_code::Column::CreatedAt.lt(day_ago))
        .exec(db)
        .await?;
    // OIDC logins are good for minutes; password attempts count for a window of minutes.
    sso_login::Entity::delete_many()
        .filter(sso_login::Column::CreatedAt.lt(day_ago))
        .exec(db)
        .await?;
    password_attempt::Entity::delete_many()
        .filter(password_attempt::Column::CreatedAt.lt(day_ago))
        .exec(db)
        .await?;
    session::Entity::delete_many()
        .filter(session::Column::ExpiresAt.lt(day_ago))
        .exec(db)
        .await?;
    Ok(())
}
