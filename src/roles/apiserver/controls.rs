//! A meeting's settings for running it: the lobby, the passcode, co-hosts, who may share a
//! screen, whether mailed notes carry the chat (`PATCH /api/v1/meetings/{id}` and create),
//! and what `POST /api/v1/join/{code}` makes of them: the person's role, whether they wait in
//! the lobby, and the passcode check with its limit on wrong attempts.
//!
//! The passcode is stored twice: as an Argon2id hash, which is what a join is checked
//! against, and sealed under a key derived from the deployment secret, so invitation mails
//! (sent again when a meeting changes) can carry it. A copy of the database alone gives
//! neither away.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sea_orm::{ConnectionTrait, Set};
use serde::Deserialize;

use super::ApiState;
use crate::config::LobbyMode;
use crate::db::entities::meeting::{self, Lobby, ScreenShare};
use crate::db::entities::user;
use crate::db::models;
use crate::error::ApiError;
use crate::proto::signal::Role;

/// The settings a meeting's owner may set (all optional: absent keeps the current value).
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// "off", "guests" or "everyone" (see [`LobbyMode`]).
    pub lobby: Option<String>,
    /// 4 to 32 letters and digits; "" removes the passcode.
    pub passcode: Option<String>,
    /// Emails of co-hosts (replaces the list).
    pub cohosts: Option<Vec<String>>,
    /// Who may share a screen: "everyone" or "hosts".
    pub screen_share: Option<String>,
    /// Mailed notes include the meeting's chat (messages to everyone).
    pub chat_in_notes: Option<bool>,
}

impl Settings {
    pub fn is_empty(&self) -> bool {
        self.lobby.is_none()
            && self.passcode.is_none()
            && self.cohosts.is_none()
            && self.screen_share.is_none()
            && self.chat_in_notes.is_none()
    }
}

/// Checks `s` and writes its meeting fields into `a` (co-hosts: [`set_cohosts`]).
pub fn apply(st: &ApiState, a: &mut meeting::ActiveModel, s: &Settings) -> Result<(), ApiError> {
    if let Some(l) = &s.lobby {
        let mode = LobbyMode::parse(l).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_lobby",
                "The lobby is \"off\", \"guests\" or \"everyone\".",
            )
        })?;
        a.lobby = Set(mode.into());
    }
    if let Some(p) = &s.passcode {
        if p.is_empty() {
            a.passcode_hash = Set(None);
            a.passcode_sealed = Set(None);
        } else {
            if !(4..=32).contains(&p.len()) || !p.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(ApiError::bad_request(
                    "invalid_passcode",
                    "A passcode has 4 to 32 letters and digits.",
                ));
            }
            a.passcode_hash = Set(Some(hash_passcode(p)?));
            a.passcode_sealed = Set(Some(super::auth::seal::seal(
                st.keys.passcode_key(),
                &p.to_string(),
            )));
        }
    }
    if let Some(w) = &s.screen_share {
        let who = ScreenShare::parse(w).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_screen_share",
                "Screen sharing is for \"everyone\" or \"hosts\".",
            )
        })?;
        a.screen_share = Set(who);
    }
    if let Some(c) = s.chat_in_notes {
        a.chat_in_notes = Set(c);
    }
    Ok(())
}

/// Owner or co-host of `m`.
pub async fn is_host<C: ConnectionTrait>(
    db: &C,
    m: &meeting::Model,
    me: &user::Model,
) -> Result<bool, ApiError> {
    Ok(m.owner_id == me.id || models::meeting::is_cohost(db, m.id, &me.email).await?)
}

/// The role `user` (None: a guest) has in `m`, and whether they are invited.
pub async fn role_of<C: ConnectionTrait>(
    db: &C,
    m: &meeting::Model,
    user: Option<&user::Model>,
) -> Result<(Role, bool), ApiError> {
    let Some(u) = user else {
        return Ok((Role::Guest, false));
    };
    if u.id == m.owner_id {
        return Ok((Role::Owner, true));
    }
    if models::meeting::is_cohost(db, m.id, &u.email).await? {
        return Ok((Role::Cohost, true));
    }
    let invited = models::meeting::is_invited(db, m.id, &u.email).await?;
    Ok((Role::Participant, invited))
}

/// Whether someone of `role` (`invited` or not) waits in `m`'s lobby.
pub fn waits_in_lobby(m: &meeting::Model, role: Role, invited: bool) -> bool {
    if role.is_host() {
        return false;
    }
    match m.lobby {
        Lobby::Off => false,
        Lobby::Guests => !invited,
        Lobby::Everyone => true,
    }
}

fn hash_passcode(p: &str) -> Result<String, ApiError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| ApiError::internal(format_args!("passcode salt: {e}")))?;
    Argon2::default()
        .hash_password(p.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal(format_args!("passcode hash: {e}")))
}

fn passcode_matches(hash: &str, given: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(given.as_bytes(), &h)
            .is_ok()
    })
}

/// The meeting's passcode in clear (for its owner and the invitation mails).
pub fn passcode_of(st: &ApiState, m: &meeting::Model) -> Option<String> {
    m.passcode_sealed
        .as_deref()
        .and_then(|s| super::auth::seal::open::<String>(st.keys.passcode_key(), s))
}

/// Checks the passcode of a join (hosts need none). Wrong ones are limited per meeting and
/// per signed-in person (or, for a guest, per client IP): after `wrong_passcodes` of them
/// every attempt, right or wrong, is refused until their window is over.
pub fn check_passcode(
    st: &ApiState,
    m: &meeting::Model,
    who: &str,
    given: Option<&str>,
) -> Result<(), ApiError> {
    let Some(hash) = &m.passcode_hash else {
        return Ok(());
    };
    let key = format!("{}:{who}", m.id);
    if let Some(wait) = st.limits.passcode_blocked(&key) {
        return Err(ApiError::rate_limited(
            wait.as_secs().max(1),
            "Too many wrong passcodes; wait a moment before trying again.",
        ));
    }
    let Some(given) = given.filter(|g| !g.is_empty()) else {
        return Err(ApiError::forbidden(
            "passcode_required",
            "This meeting has a passcode; enter it to join.",
        ));
    };
    // Bounded before hashing: a megabyte "passcode" costs nothing to refuse.
    if given.len() <= 64 && passcode_matches(hash, given) {
        return Ok(());
    }
    st.limits.passcode_strike(&key);
    Err(ApiError::forbidden(
        "wrong_passcode",
        "That passcode is not right.",
    ))
}
