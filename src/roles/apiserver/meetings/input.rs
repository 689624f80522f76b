//! What a meetings request carries, and the checks its values must pass.

use serde::Deserialize;
use std::collections::BTreeSet;

use crate::error::ApiError;
use crate::roles::apiserver::ApiState;
use crate::roles::apiserver::controls::Settings;
use crate::util::{normalize_email, now};

/// The body of `POST /api/v1/meetings` and of `PATCH /api/v1/meetings/{id}` (absent: keep).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MeetingBody {
    pub title: Option<String>,
    pub begin_at: Option<i64>,
    pub end_at: Option<i64>,
    pub invitees: Option<Vec<String>>,
    pub guests_allowed: Option<bool>,
    pub lobby: Option<String>,
    pub passcode: Option<String>,
    pub cohosts: Option<Vec<String>>,
    pub screen_share: Option<String>,
    pub chat_in_notes: Option<bool>,
}

impl MeetingBody {
    /// The running-a-meeting settings of the body.
    pub(super) fn settings(&self) -> Settings {
        Settings {
            lobby: self.lobby.clone(),
            passcode: self.passcode.clone(),
            cohosts: self.cohosts.clone(),
            screen_share: self.screen_share.clone(),
            chat_in_notes: self.chat_in_notes,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub display_name: Option<String>,
    /// The meeting's passcode, when it has one (hosts need none).
    pub passcode: Option<String>,
}

pub(super) fn clean_title(t: &str) -> Result<String, ApiError> {
    let t = t.trim();
    if t.is_empty() || t.chars().count() > 200 {
        return Err(ApiError::bad_request(
            "invalid_title",
            "A title has 1 to 200 characters.",
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_title",
            "A title cannot contain control characters.",
        ));
    }
    Ok(t.to_string())
}

pub(super) fn clean_invitees(
    st: &ApiState,
    list: &[String],
    owner: &str,
) -> Result<Vec<String>, ApiError> {
    let mut out = BTreeSet::new();
    for raw in list {
        let e = normalize_email(raw).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_email",
                format!("Invitee {raw:?} is not a valid email address."),
            )
        })?;
        if e != owner {
            out.insert(e);
        }
    }
    if out.len() > st.cfg.meetings.max_invitees {
        return Err(ApiError::bad_request(
            "too_many_invitees",
            format!(
                "At most {} invitees per meeting.",
                st.cfg.meetings.max_invitees
            ),
        ));
    }
    Ok(out.into_iter().collect())
}

pub(super) fn check_times(st: &ApiState, begin: i64, end: i64) -> Result<(), ApiError> {
    let t = now();
    if begin <= 0 || end <= begin {
        return Err(ApiError::bad_request(
            "invalid_time",
            "The end must be after the beginning.",
        ));
    }
    if begin < t - 300 {
        return Err(ApiError::bad_request(
            "invalid_time",
            "The meeting cannot begin in the past.",
        ));
    }
    if end - begin > st.cfg.meetings.max_duration.as_secs_i64() {
        return Err(ApiError::bad_request(
            "invalid_time",
            format!(
                "A meeting lasts at most {}.",
                humantime::format_duration(st.cfg.meetings.max_duration.0)
            ),
        ));
    }
    Ok(())
}
