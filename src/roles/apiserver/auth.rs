//! Email sign-in: a 6-digit one-time code by mail, then an opaque session token.
//!
//! Codes are stored as keyed hashes, expire (`auth.code_ttl`), allow `auth.code_max_attempts`
//! wrong tries, and a new code voids the previous one. Requests for codes are limited per
//! address and per client IP, counted from the `login_codes` table so limits hold across
//! restarts. Sessions are random 256-bit tokens; only their SHA-256 is stored, so a copy of
//! the database cannot be used to sign in. The browser gets them as an HttpOnly, SameSite=Lax
//! cookie (Secure under TLS); API clients use `Authorization: Bearer`.

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload, web};
use rand::Rng;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, ExprTrait, QueryFilter, QueryOrder, Set,
};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

use super::ApiState;
use super::mail::{Outgoing, enqueue};
use crate::db::entities::{login_code, session, user};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::tokens::sha256_hex;
use crate::util::{ct_eq, normalize_email, now};

pub const SESSION_COOKIE: &str = "meeting_session";

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
    /// Whether this person may create meetings (`auth.allowed_domains`).
    pub can_create: bool,
    pub admin: bool,
}

impl UserView {
    pub fn of(u: &user::Model, st: &ApiState) -> UserView {
        UserView {
            id: u.id,
            email: u.email.clone(),
            display_name: u.display_name.clone(),
            can_create: st.may_create(&u.email),
            admin: st
                .cfg
                .auth
                .admin_emails
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&u.email)),
        }
    }
}

fn client_ip(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// `POST /api/v1/auth/code {email}` → 204, and a code is mailed.
pub async fn request_code(
    st: web::Data<ApiState>,
    req: HttpRequest,
    body: web::Json<CodeRequest>,
) -> Result<HttpResponse, ApiError> {
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
    let recent = |filter: sea_orm::Condition| async move {
        login_code::Entity::find()
            .filter(filter)
            .filter(login_code::Column::CreatedAt.gt(hour_ago))
            .order_by_asc(login_code::Column::CreatedAt)
            .all(db)
            .await
    };
    let limits = [
        (
            sea_orm::Condition::all()
                .add(login_code::Column::Email.eq(email.clone()))
                .add(login_code::Column::Ip.eq(ip.clone())),
            auth.codes_per_email_per_hour,
            "this address from your network",
        ),
        (
            sea_orm::Condition::all().add(login_code::Column::Ip.eq(ip.clone())),
            auth.codes_per_ip_per_hour,
            "your network address",
        ),
        (
            sea_orm::Condition::all().add(login_code::Column::Email.eq(email.clone())),
            auth.codes_per_email_per_hour_all_ips,
            "this address",
        ),
    ];
    for (filter, limit, whom) in limits {
        let recent = recent(filter).await?;
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
    login_code::Entity::update_many()
        .col_expr(login_code::Column::ConsumedAt, Expr::value(t))
        .filter(login_code::Column::Email.eq(email.clone()))
        .filter(login_code::Column::ConsumedAt.is_null())
        .exec(db)
        .await?;
    login_code::ActiveModel {
        email: Set(email.clone()),
        code_hash: Set(st.keys.hash_code(&email, &code)),
        ip: Set(ip),
        created_at: Set(t),
        expires_at: Set(t + st.cfg.auth.code_ttl.as_secs_i64()),
        attempts: Set(0),
        consumed_at: Set(None),
        ..Default::default()
    }
    .insert(db)
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
    body: web::Json<VerifyRequest>,
) -> Result<HttpResponse, ApiError> {
    let fail = |reason: &'static str, e: ApiError| {
        st.metrics
            .sign_in_failures
            .get_or_create(&Metrics::label("reason", reason))
            .inc();
        e
    };
    let invalid = || {
        ApiError::bad_request(
            "invalid_code",
            "That code is not valid. Check it, or ask for a new one.",
        )
    };
    let email = normalize_email(&body.email).ok_or_else(|| {
        ApiError::bad_request("invalid_email", "That is not a valid email address.")
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
    let Some(row) = login_code::Entity::find()
        .filter(login_code::Column::Email.eq(email.clone()))
        .filter(login_code::Column::ConsumedAt.is_null())
        .order_by_desc(login_code::Column::Id)
        .one(db)
        .await?
    else {
        return Err(fail("no_code", invalid()));
    };
    let consume = |id: i64| async move {
        login_code::Entity::update_many()
            .col_expr(login_code::Column::ConsumedAt, Expr::value(t))
            .filter(login_code::Column::Id.eq(id))
            .filter(login_code::Column::ConsumedAt.is_null())
            .exec(db)
            .await
            .map(|r| r.rows_affected == 1)
    };
    if row.expires_at < t {
        consume(row.id).await?;
        return Err(fail(
            "expired",
            ApiError::bad_request("code_expired", "That code has expired. Ask for a new one."),
        ));
    }
    let max = i32::try_from(st.cfg.auth.code_max_attempts).unwrap_or(i32::MAX);
    // Claim this attempt before comparing, in one statement: of any number of guesses that
    // arrive together, at most `max` find a row to count themselves against; the rest never
    // reach the comparison.
    let claimed = login_code::Entity::update_many()
        .col_expr(
            login_code::Column::Attempts,
            Expr::col(login_code::Column::Attempts).add(1),
        )
        .filter(login_code::Column::Id.eq(row.id))
        .filter(login_code::Column::ConsumedAt.is_null())
        .filter(login_code::Column::Attempts.lt(max))
        .exec(db)
        .await?
        .rows_affected
        == 1;
    let too_many = || {
        ApiError::bad_request(
            "too_many_attempts",
            "Too many wrong tries: this code is void. Ask for a new one.",
        )
    };
    if !claimed {
        consume(row.id).await?;
        return Err(fail("attempts_exhausted", too_many()));
    }
    if !ct_eq(&row.code_hash, &st.keys.hash_code(&email, code)) {
        let used = login_code::Entity::find_by_id(row.id)
            .one(db)
            .await?
            .map_or(max, |r| r.attempts);
        if used >= max {
            consume(row.id).await?;
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
    if !consume(row.id).await? {
        return Err(fail("reused", invalid()));
    }
    let user = match user::Entity::find()
        .filter(user::Column::Email.eq(email.clone()))
        .one(db)
        .await?
    {
        Some(u) => {
            let mut a: user::ActiveModel = u.into();
            a.last_login_at = Set(t);
            a.update(db).await?
        }
        None => {
            let name = email.split('@').next().unwrap_or("").to_string();
            user::ActiveModel {
                email: Set(email.clone()),
                display_name: Set(name),
                created_at: Set(t),
                last_login_at: Set(t),
                ..Default::default()
            }
            .insert(db)
            .await?
        }
    };
    let token = crate::ids::random_token(32);
    let ttl = st.cfg.auth.session_ttl.as_secs_i64();
    session::ActiveModel {
        token_hash: Set(sha256_hex(&token)),
        user_id: Set(user.id),
        created_at: Set(t),
        expires_at: Set(t + ttl),
        revoked_at: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await?;
    st.metrics.sign_ins.inc();
    let cookie = Cookie::build(SESSION_COOKIE, token.clone())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(st.tls)
        .max_age(CookieDuration::seconds(ttl))
        .finish();
    Ok(HttpResponse::Ok()
        .cookie(cookie)
        .json(serde_json::json!({ "token": token, "user": UserView::of(&user, &st) })))
}

/// `POST /api/v1/auth/logout` → 204; the session is revoked for good.
pub async fn logout(st: web::Data<ApiState>, me: AuthUser) -> Result<HttpResponse, ApiError> {
    session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(now()))
        .filter(session::Column::Id.eq(me.session_id))
        .exec(&st.db)
        .await?;
    let mut gone = Cookie::build(SESSION_COOKIE, "")
        .path("/")
        .http_only(true)
        .finish();
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}

/// `GET /api/v1/me`
pub async fn me(st: web::Data<ApiState>, me: AuthUser) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(UserView::of(&me.user, &st)))
}

/// A signed-in person, from a Bearer token or the session cookie. Rejects with 401.
pub struct AuthUser {
    pub user: user::Model,
    pub session_id: i64,
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

async fn lookup(st: &ApiState, token: &str) -> Result<Option<AuthUser>, ApiError> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let Some(s) = session::Entity::find()
        .filter(session::Column::TokenHash.eq(sha256_hex(token)))
        .one(&st.db)
        .await?
    else {
        return Ok(None);
    };
    if s.revoked_at.is_some() || s.expires_at < now() {
        return Ok(None);
    }
    let user = user::Entity::find_by_id(s.user_id).one(&st.db).await?;
    Ok(user.map(|user| AuthUser {
        user,
        session_id: s.id,
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
    session::Entity::delete_many()
        .filter(session::Column::ExpiresAt.lt(day_ago))
        .exec(db)
        .await?;
    Ok(())
}
