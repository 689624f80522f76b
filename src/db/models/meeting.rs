//! Meetings, their invitees and co-hosts: every query the API makes of them.
//!
//! The one rule kept here rather than in a handler: a meeting's server assignment is only ever
//! replaced by compare-and-set ([`reassign_servers`], [`assign_fs_once`]), so joins that race
//! to repair it agree on one answer.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, ExprTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use std::collections::HashMap;

use crate::db::entities::meeting::{self, Kind, Lobby, ScreenShare, Status};
use crate::db::entities::{cohost, invitation, participation, user};

/// What a new meeting is made of; the rest of its row has one default for every kind.
pub struct Draft {
    pub code: String,
    pub owner_id: i64,
    pub title: String,
    pub kind: Kind,
    pub begin_at: i64,
    pub end_at: i64,
    pub guests_allowed: bool,
    pub lobby: Lobby,
    pub sfu: String,
    pub turn: String,
    pub now: i64,
}

/// The row for `d`, not yet inserted (the caller applies the owner's settings to it first).
pub fn draft(d: Draft) -> meeting::ActiveModel {
    meeting::ActiveModel {
        code: Set(d.code),
        owner_id: Set(d.owner_id),
        title: Set(d.title),
        kind: Set(d.kind),
        begin_at: Set(d.begin_at),
        end_at: Set(d.end_at),
        // Stable across updates and the cancellation, as calendars need.
        ical_uid: Set(format!("{}@meeting-appliance", uuid::Uuid::new_v4())),
        sequence: Set(0),
        status: Set(Status::Active),
        guests_allowed: Set(d.guests_allowed),
        sfu: Set(Some(d.sfu)),
        turn: Set(Some(d.turn)),
        fs: Set(None),
        created_at: Set(d.now),
        updated_at: Set(d.now),
        lobby: Set(d.lobby),
        screen_share: Set(ScreenShare::Everyone),
        chat_in_notes: Set(false),
        ..Default::default()
    }
}

pub async fn by_id<C: ConnectionTrait>(db: &C, id: i64) -> Result<Option<meeting::Model>, DbErr> {
    meeting::Entity::find_by_id(id).one(db).await
}

pub async fn by_code<C: ConnectionTrait>(
    db: &C,
    code: &str,
) -> Result<Option<meeting::Model>, DbErr> {
    meeting::Entity::find()
        .filter(meeting::Column::Code.eq(code))
        .one(db)
        .await
}

/// The owner's one instant room, if it was made already.
pub async fn instant_of<C: ConnectionTrait>(
    db: &C,
    owner_id: i64,
) -> Result<Option<meeting::Model>, DbErr> {
    meeting::Entity::find()
        .filter(meeting::Column::OwnerId.eq(owner_id))
        .filter(meeting::Column::Kind.eq(Kind::Instant))
        .one(db)
        .await
}

/// Active meetings `user_id` owns, is invited to (by `email`) or co-hosts; unordered.
pub async fn listed_for<C: ConnectionTrait>(
    db: &C,
    user_id: i64,
    email: &str,
) -> Result<Vec<meeting::Model>, DbErr> {
    let invited: Vec<i64> = invitation::Entity::find()
        .select_only()
        .column(invitation::Column::MeetingId)
        .filter(invitation::Column::Email.eq(email))
        .into_tuple()
        .all(db)
        .await?;
    let cohosted: Vec<i64> = cohost::Entity::find()
        .select_only()
        .column(cohost::Column::MeetingId)
        .filter(cohost::Column::Email.eq(email))
        .into_tuple()
        .all(db)
        .await?;
    meeting::Entity::find()
        .filter(meeting::Column::Status.eq(Status::Active))
        .filter(
            meeting::Column::OwnerId
                .eq(user_id)
                .or(meeting::Column::Id.is_in(invited.into_iter().chain(cohosted))),
        )
        .all(db)
        .await
}

/// The people of a set of meetings, for showing them: owners by user id, invitees and
/// co-hosts by meeting id (each list sorted).
#[derive(Default)]
pub struct People {
    pub owners: HashMap<i64, user::Model>,
    pub invitees: HashMap<i64, Vec<String>>,
    pub cohosts: HashMap<i64, Vec<String>>,
}

pub async fn people_of<C: ConnectionTrait>(db: &C, ms: &[meeting::Model]) -> Result<People, DbErr> {
    let ids: Vec<i64> = ms.iter().map(|m| m.id).collect();
    let owners = user::Entity::find()
        .filter(user::Column::Id.is_in(ms.iter().map(|m| m.owner_id)))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.id, u))
        .collect();
    let mut invitees: HashMap<i64, Vec<String>> = HashMap::new();
    for i in invitation::Entity::find()
        .filter(invitation::Column::MeetingId.is_in(ids.clone()))
        .all(db)
        .await?
    {
        invitees.entry(i.meeting_id).or_default().push(i.email);
    }
    let mut cohosts: HashMap<i64, Vec<String>> = HashMap::new();
    for c in cohost::Entity::find()
        .filter(cohost::Column::MeetingId.is_in(ids))
        .all(db)
        .await?
    {
        cohosts.entry(c.meeting_id).or_default().push(c.email);
    }
    // Sorted here: the database's collation need not be byte order.
    for v in invitees.values_mut().chain(cohosts.values_mut()) {
        v.sort();
    }
    Ok(People {
        owners,
        invitees,
        cohosts,
    })
}

/// The meeting's invitees, sorted.
pub async fn invitees<C: ConnectionTrait>(db: &C, id: i64) -> Result<Vec<String>, DbErr> {
    let mut v: Vec<String> = invitation::Entity::find()
        .select_only()
        .column(invitation::Column::Email)
        .filter(invitation::Column::MeetingId.eq(id))
        .into_tuple()
        .all(db)
        .await?;
    v.sort();
    Ok(v)
}

pub async fn is_invited<C: ConnectionTrait>(db: &C, id: i64, email: &str) -> Result<bool, DbErr> {
    Ok(invitation::Entity::find()
        .filter(invitation::Column::MeetingId.eq(id))
        .filter(invitation::Column::Email.eq(email))
        .one(db)
        .await?
        .is_some())
}

pub async fn invite<C: ConnectionTrait>(
    db: &C,
    id: i64,
    emails: &[String],
    now: i64,
) -> Result<(), DbErr> {
    for e in emails {
        invitation::ActiveModel {
            meeting_id: Set(id),
            email: Set(e.clone()),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(db)
        .await?;
    }
    Ok(())
}

pub async fn uninvite<C: ConnectionTrait>(db: &C, id: i64, emails: &[String]) -> Result<(), DbErr> {
    if emails.is_empty() {
        return Ok(());
    }
    invitation::Entity::delete_many()
        .filter(invitation::Column::MeetingId.eq(id))
        .filter(invitation::Column::Email.is_in(emails.iter().cloned()))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn is_cohost<C: ConnectionTrait>(db: &C, id: i64, email: &str) -> Result<bool, DbErr> {
    Ok(cohost::Entity::find()
        .filter(cohost::Column::MeetingId.eq(id))
        .filter(cohost::Column::Email.eq(email))
        .one(db)
        .await?
        .is_some())
}

/// Replaces the meeting's co-hosts with `list` (already checked).
pub async fn set_cohosts<C: ConnectionTrait>(
    db: &C,
    id: i64,
    list: &[String],
    now: i64,
) -> Result<(), DbErr> {
    cohost::Entity::delete_many()
        .filter(cohost::Column::MeetingId.eq(id))
        .exec(db)
        .await?;
    for e in list {
        cohost::ActiveModel {
            meeting_id: Set(id),
            email: Set(e.clone()),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(db)
        .await?;
    }
    Ok(())
}

/// Cancels `m`: it stays (with its notes) but is no longer listed or joinable. Calendars see
/// a new SEQUENCE.
pub async fn cancel<C: ConnectionTrait>(
    db: &C,
    m: meeting::Model,
    now: i64,
) -> Result<meeting::Model, DbErr> {
    let sequence = m.sequence + 1;
    let mut a: meeting::ActiveModel = m.into();
    a.status = Set(Status::Cancelled);
    a.sequence = Set(sequence);
    a.updated_at = Set(now);
    a.update(db).await
}

/// Replaces the meeting's sfuserver and turnserver with `new` if they are still `old` (what
/// the caller read before it asked the allocator), and answers the assignment in force after:
/// `new` when this call won, or what a concurrent caller wrote first. Two joins that both find
/// the assigned sfuserver down thus send everyone to the same new one.
pub async fn reassign_servers<C: ConnectionTrait>(
    db: &C,
    id: i64,
    old: (Option<&str>, Option<&str>),
    new: (String, String),
) -> Result<(String, String), DbErr> {
    let still = |c: meeting::Column, v: Option<&str>| match v {
        Some(v) => c.eq(v),
        None => c.is_null(),
    };
    let changed = meeting::Entity::update_many()
        .col_expr(meeting::Column::Sfu, Expr::value(new.0.clone()))
        .col_expr(meeting::Column::Turn, Expr::value(new.1.clone()))
        .filter(meeting::Column::Id.eq(id))
        .filter(still(meeting::Column::Sfu, old.0))
        .filter(still(meeting::Column::Turn, old.1))
        .exec(db)
        .await?
        .rows_affected;
    if changed == 1 {
        return Ok(new);
    }
    // Lost the race (or MySQL counted an unchanged row as not affected): what is stored wins.
    match by_id(db, id).await? {
        Some(meeting::Model {
            sfu: Some(sfu),
            turn: Some(turn),
            ..
        }) => Ok((sfu, turn)),
        _ => Ok(new),
    }
}

/// Sets the meeting's fsserver unless one was set meanwhile; answers the one in force.
pub async fn assign_fs_once<C: ConnectionTrait>(
    db: &C,
    id: i64,
    fs: String,
) -> Result<String, DbErr> {
    let changed = meeting::Entity::update_many()
        .col_expr(meeting::Column::Fs, Expr::value(fs.clone()))
        .filter(meeting::Column::Id.eq(id))
        .filter(meeting::Column::Fs.is_null())
        .exec(db)
        .await?
        .rows_affected;
    if changed == 1 {
        return Ok(fs);
    }
    Ok(by_id(db, id).await?.and_then(|m| m.fs).unwrap_or(fs))
}

pub async fn set_locked<C: ConnectionTrait>(db: &C, id: i64, locked: bool) -> Result<(), DbErr> {
    meeting::Entity::update_many()
        .col_expr(meeting::Column::Locked, Expr::value(locked))
        .filter(meeting::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Gives `m` a new code; everyone let in through the old one (participations up to now) loses
/// the access it gave.
pub async fn change_code<C: ConnectionTrait>(
    db: &C,
    m: meeting::Model,
    code: String,
    now: i64,
) -> Result<meeting::Model, DbErr> {
    let last: Option<i64> = participation::Entity::find()
        .select_only()
        .column(participation::Column::Id)
        .filter(participation::Column::MeetingId.eq(m.id))
        .order_by_desc(participation::Column::Id)
        .into_tuple()
        .one(db)
        .await?;
    let mut a: meeting::ActiveModel = m.into();
    a.code = Set(code);
    a.access_since = Set(last.unwrap_or(0));
    a.updated_at = Set(now);
    a.update(db).await
}

/// The sfuserver of each of the meetings `ids` (None: not assigned).
pub async fn sfus_of<C: ConnectionTrait>(
    db: &C,
    ids: impl IntoIterator<Item = i64>,
) -> Result<HashMap<i64, Option<String>>, DbErr> {
    Ok(meeting::Entity::find()
        .select_only()
        .column(meeting::Column::Id)
        .column(meeting::Column::Sfu)
        .filter(meeting::Column::Id.is_in(ids))
        .into_tuple::<(i64, Option<String>)>()
        .all(db)
        .await?
        .into_iter()
        .collect())
}

pub async fn by_ids<C: ConnectionTrait>(
    db: &C,
    ids: impl IntoIterator<Item = i64>,
) -> Result<Vec<meeting::Model>, DbErr> {
    meeting::Entity::find()
        .filter(meeting::Column::Id.is_in(ids))
        .all(db)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::ActiveModelTrait;

    /// Two apiservers that both found the meeting's servers down each got an assignment from
    /// the allocator: the one stored first wins, and the second is answered with it.
    #[actix_rt::test]
    async fn the_first_reassignment_wins() {
        let db = crate::db::connect("sqlite::memory:", 1, std::time::Duration::from_secs(5))
            .await
            .expect("db");
        let m = draft(Draft {
            code: "abc-defg-hij".into(),
            owner_id: 1,
            title: "t".into(),
            kind: Kind::Instant,
            begin_at: 0,
            end_at: 0,
            guests_allowed: true,
            lobby: Lobby::Off,
            sfu: "down:443".into(),
            turn: "turn:3478".into(),
            now: 0,
        })
        .insert(&db)
        .await
        .expect("insert");
        let old = (Some("down:443"), Some("turn:3478"));
        let first = reassign_servers(&db, m.id, old, ("a:443".into(), "turn:3478".into()))
            .await
            .expect("first");
        let second = reassign_servers(&db, m.id, old, ("b:443".into(), "turn:3478".into()))
            .await
            .expect("second");
        assert_eq!(first, ("a:443".to_string(), "turn:3478".to_string()));
        assert_eq!(
            second, first,
            "the later caller takes the stored assignment"
        );
        let stored = by_id(&db, m.id).await.expect("read").expect("row");
        assert_eq!(stored.sfu.as_deref(), Some("a:443"));
    }
}
