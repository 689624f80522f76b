//! Invitation mails with a calendar invite: new, updated and cancelled meetings. Updates and
//! cancellations keep the invite's UID and carry the meeting's SEQUENCE, as calendars need.

use sea_orm::ConnectionTrait;

use crate::db::entities::{meeting, user};
use crate::error::ApiError;
use crate::roles::apiserver::ApiState;
use crate::roles::apiserver::controls;
use crate::roles::apiserver::ics::{Invite, Method};
use crate::roles::apiserver::mail::{self, Outgoing, enqueue};
use crate::util::now;

/// What an invitation mail tells its recipient.
#[derive(Clone, Copy)]
pub(super) enum Notice {
    Invite,
    Update,
    Cancel,
}

/// Queues one invitation mail (REQUEST or CANCEL) per recipient, in the caller's transaction.
pub(super) async fn send_invites<C: ConnectionTrait>(
    db: &C,
    st: &ApiState,
    m: &meeting::Model,
    owner: &user::Model,
    attendees: &[String],
    recipients: &[String],
    notice: Notice,
) -> Result<(), ApiError> {
    let passcode = controls::passcode_of(st, m);
    let url = match &passcode {
        // Letters and digits only (see `controls::apply`): safe in a URL as they are.
        Some(p) => format!("{}?pwd={p}", st.join_url(&m.code)),
        None => st.join_url(&m.code),
    };
    let pass_line = passcode
        .as_deref()
        .map(|p| format!("Passcode: {p}\n"))
        .unwrap_or_default();
    let when = chrono::DateTime::<chrono::Utc>::from_timestamp(m.begin_at, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let minutes = (m.end_at - m.begin_at) / 60;
    mail::check_quota(db, &st.cfg.mail, owner.id, recipients.len()).await?;
    for to in recipients {
        let inv = Invite {
            method: match notice {
                Notice::Invite | Notice::Update => Method::Request,
                Notice::Cancel => Method::Cancel,
            },
            uid: &m.ical_uid,
            sequence: m.sequence,
            title: &m.title,
            begin_at: m.begin_at,
            end_at: m.end_at,
            organizer_email: &owner.email,
            organizer_name: &owner.display_name,
            attendees,
            join_url: &url,
            now: now(),
        };
        let (subject, text) = match notice {
            Notice::Update => (
                format!("Updated invitation: {} @ {when}", m.title),
                format!(
                    "{} changed the meeting \"{}\".\n\nWhen: {when} ({minutes} minutes)\nJoin: {url}\n{pass_line}",
                    owner.display_name, m.title
                ),
            ),
            Notice::Invite => (
                format!("Invitation: {} @ {when}", m.title),
                format!(
                    "{} ({}) invites you to \"{}\".\n\nWhen: {when} ({minutes} minutes)\nJoin: {url}\n{pass_line}",
                    owner.display_name, owner.email, m.title
                ),
            ),
            Notice::Cancel => (
                format!("Cancelled: {} @ {when}", m.title),
                format!(
                    "{} cancelled the meeting \"{}\" ({when}).\n",
                    owner.display_name, m.title
                ),
            ),
        };
        let ics = inv.render();
        enqueue(
            db,
            &st.mailer,
            Outgoing {
                calendar: Some((inv.method_name(), ics)),
                ..Outgoing::by(owner.id, to.clone(), subject, text)
            },
        )
        .await
        .map_err(ApiError::internal)?;
    }
    Ok(())
}
