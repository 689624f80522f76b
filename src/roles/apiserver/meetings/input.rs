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

impl JoinRequest {
    /// The body of a join: empty, or this JSON.
    pub fn parse(body: &[u8]) -> Result<JoinRequest, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(JoinRequest::default());
        }
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request("invalid_json", format!("Invalid JSON: {e}")))
    }

    /// The name given, trimmed (None: none given): 1 to 64 characters, no control characters.
    pub fn name(&self) -> Result<Option<String>, ApiError> {
        match self.display_name.as_deref().map(str::trim) {
            Some(n) if !n.is_empty() => {
                if n.chars().count() > 64 || n.chars().any(char::is_control) {
                    return Err(ApiError::bad_request(
                        "invalid_display_name",
                        "A name has 1 to 64 characters.",
                    ));
                }
                Ok(Some(n.to_string()))
            }
            _ => Ok(None),
        }
    }
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

/// A list of people of a meeting, as given: invitees or co-hosts.
#[derive(Clone, Copy)]
pub enum People {
    Invitees,
    Cohosts,
}

/// `list` checked: valid emails (normalized), not the owner, no repeats, at most
/// `max_invitees`.
pub fn clean_people(
    st: &ApiState,
    list: &[String],
    owner: &str,
    who: People,
) -> Result<Vec<String>, ApiError> {
    let (one, too_many, at_most) = match who {
        People::Invitees => ("Invitee", "too_many_invitees", "invitees per meeting"),
        People::Cohosts => ("Co-host", "too_many_cohosts", "co-hosts"),
    };
    let mut out = BTreeSet::new();
    for raw in list {
        let e = normalize_email(raw).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_email",
                format!("{one} {raw:?} is not a valid email address."),
            )
        })?;
        if e != owner {
            out.insert(e);
        }
    }
    let max = st.cfg.meetings.max_invitees;
    if out.len() > max {
        return Err(ApiError::bad_request(
            too_many,
            format!("At most {max} {at_most}."),
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
