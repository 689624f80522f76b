//! Account lifecycle: SSO sessions are re-checked with their provider, and people whose access
//! ends lose their live meeting connections too.
//!
//! - Every tick (a quarter of `auth.recheck_every`, between 1 s and 30 s) the sessions from
//!   `oidc` and `ldap` not checked for `recheck_every` minus a tick are asked about: OIDC
//!   redeems the refresh token (userinfo for the groups when there are group rules); LDAP
//!   searches the login again and wants the same DN. So a session is confirmed at most
//!   `recheck_every` apart (plus the time the provider takes to answer).
//! - A definite "no" (the refresh refused, the user not found any more) ends the person's
//!   access everywhere: `users.idp_disabled_at` is set, every session is revoked (codes
//!   too — the provider is the authority on that person), and every meeting connection they
//!   hold is closed through the node registry with the host's `remove` action (the same path
//!   as a host removing someone). Signing in at the provider again lifts it.
//! - A provider that cannot be asked (down, timeout) changes nothing; the session is asked
//!   again at the next tick, and the failure is logged once per tick.
//! - Rights follow the provider: group changes reach `can_create`/`is_admin` at the next check.
//! - After access ends, the person's recent participants are removed again on every tick for
//!   `meetings.join_token_ttl`: a join token handed out before could otherwise reconnect.
//! - The audit log is pruned to `audit.retention` at start and hourly.

use actix::prelude::*;
use actix_web::web;
use futures_util::StreamExt;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::oidc::Recheck;
use crate::config::AuthMethod;
use crate::db::entities::{session, user};
use crate::db::models;
use crate::ids::{MeetingId, ParticipantId};
use crate::proto::{ControlRoom, RoomAction};
use crate::roles::apiserver::ApiState;
use crate::roles::apiserver::audit::{self, Entry, Outcome, action};
use crate::roles::apiserver::registry::Control;
use crate::util::now;

/// Sessions asked about per tick at most (the rest wait for the next tick).
const BATCH: u64 = 500;
/// Provider questions in flight at once.
const CONCURRENCY: usize = 8;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub struct Lifecycle {
    st: web::Data<ApiState>,
    busy: bool,
    /// People whose access ended: (user, since, until) — their participants are removed again
    /// until `until`.
    watch: Vec<(i64, i64, i64)>,
    pruned: Option<Instant>,
}

/// Someone's access ended by an administrator: watch their join tokens.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Watch {
    pub user_id: i64,
    pub since: i64,
}

impl Lifecycle {
    /// Starts the actor and makes it known to the handlers (`st.sso.lifecycle`).
    pub fn start_for(st: web::Data<ApiState>) -> Addr<Lifecycle> {
        let addr = Lifecycle {
            st: st.clone(),
            busy: false,
            watch: Vec::new(),
            pruned: None,
        }
        .start();
        let _ = st.sso.lifecycle.set(addr.clone());
        addr
    }

    fn tick_every(st: &ApiState) -> Duration {
        (st.cfg.auth.recheck_every.0 / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let st = self.st.clone();
        let t = now();
        self.watch.retain(|(_, _, until)| *until > t);
        let watch = self.watch.clone();
        let prune = self.pruned.is_none_or(|p| p.elapsed() >= PRUNE_EVERY);
        if prune {
            self.pruned = Some(Instant::now());
        }
        ctx.spawn(
            async move {
                if prune {
                    match audit::prune(&st.db, st.cfg.audit.retention.as_secs_i64()).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(deleted = n, "audit log pruned to its retention"),
                        Err(e) => tracing::warn!(error = %e, "pruning the audit log failed"),
                    }
                }
                for (user_id, since, _) in watch {
                    close_connections(&st, user_id, Some(since)).await;
                }
                recheck_due(&st, Lifecycle::tick_every(&st)).await
            }
            .into_actor(self)
            .map(|ended, act, _| {
                act.busy = false;
                let t = now();
                let until = t + act.st.cfg.meetings.join_token_ttl.as_secs_i64();
                for u in ended {
                    act.watch.push((u, t, until));
                }
            }),
        );
    }
}

impl Actor for Lifecycle {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        self.tick(ctx);
        ctx.run_interval(Lifecycle::tick_every(&self.st), |act, ctx| act.tick(ctx));
    }
}

impl Handler<Watch> for Lifecycle {
    type Result = ();
    fn handle(&mut self, m: Watch, _: &mut Context<Self>) {
        let until = now() + self.st.cfg.meetings.join_token_ttl.as_secs_i64();
        self.watch.push((m.user_id, m.since, until));
    }
}

/// What a check found.
enum Verdict {
    Confirmed {
        tokens: Option<String>,
        can_create: Option<bool>,
        is_admin: Option<bool>,
    },
    Gone(String),
    Unreachable(String),
    /// The session's method is no longer offered: only this session ends.
    MethodOff,
}

async fn check(st: &ApiState, s: &session::Model) -> Verdict {
    let method = Some(s.method);
    let sub = s.idp_subject.clone().unwrap_or_default();
    let tokens = st.sso.open(s.idp_tokens.as_deref());
    match method {
        Some(AuthMethod::Oidc) if st.cfg.auth.offers(AuthMethod::Oidc) => {
            let Some(p) = &st.sso.oidc else {
                return Verdict::MethodOff;
            };
            match p.recheck(&sub, tokens).await {
                Recheck::Ok {
                    tokens,
                    can_create,
                    is_admin,
                } => Verdict::Confirmed {
                    tokens: Some(st.sso.seal(&tokens)),
                    can_create,
                    is_admin,
                },
                Recheck::Gone(why) => Verdict::Gone(why),
                Recheck::Unreachable(why) => Verdict::Unreachable(why),
            }
        }
        Some(AuthMethod::Ldap) if st.cfg.auth.offers(AuthMethod::Ldap) => {
            let Some(dir) = &st.sso.ldap else {
                return Verdict::MethodOff;
            };
            let Some(login) = tokens.login else {
                return Verdict::Gone("the session lost its login".into());
            };
            match dir.lookup(&login, &sub).await {
                Ok(Some(p)) => Verdict::Confirmed {
                    tokens: None,
                    can_create: p.can_create,
                    is_admin: p.is_admin,
                },
                Ok(None) => Verdict::Gone(format!(
                    "the directory no longer finds {login:?} as {sub} (disabled, removed or moved)"
                )),
                Err(e) => Verdict::Unreachable(e),
            }
        }
        _ => Verdict::MethodOff,
    }
}

/// Asks the providers about the sessions that are due (unchecked for `recheck_every` minus
/// one `tick`, so the next tick never comes too late); returns the people whose access ended.
async fn recheck_due(st: &ApiState, tick: Duration) -> Vec<i64> {
    let t = now();
    let every = st.cfg.auth.recheck_every.0.saturating_sub(tick);
    let due = t - i64::try_from(every.as_secs()).unwrap_or(i64::MAX).max(1);
    let methods = [AuthMethod::Oidc.name(), AuthMethod::Ldap.name()];
    let rows = models::session::due_for_recheck(&st.db, &methods, t, due, BATCH).await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "SSO re-check: reading sessions failed");
            return Vec::new();
        }
    };
    if rows.is_empty() {
        return Vec::new();
    }
    let verdicts: Vec<(session::Model, Verdict)> = futures_util::stream::iter(rows)
        .map(|s| async move {
            let v = check(st, &s).await;
            (s, v)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut ended: HashSet<i64> = HashSet::new();
    let mut unreachable = (0usize, String::new());
    for (s, v) in verdicts {
        match v {
            Verdict::Confirmed {
                tokens,
                can_create,
                is_admin,
            } => {
                let mut u = session::Entity::update_many()
                    .col_expr(session::Column::CheckedAt, Expr::value(now()))
                    .col_expr(session::Column::CanCreate, Expr::value(can_create))
                    .col_expr(session::Column::IsAdmin, Expr::value(is_admin));
                if let Some(tk) = tokens {
                    u = u.col_expr(session::Column::IdpTokens, Expr::value(tk));
                }
                if let Err(e) = u
                    .filter(session::Column::Id.eq(s.id))
                    .filter(session::Column::RevokedAt.is_null())
                    .exec(&st.db)
                    .await
                {
                    tracing::warn!(error = %e, "SSO re-check: saving the result failed");
                }
            }
            Verdict::Unreachable(why) => {
                unreachable.0 += 1;
                unreachable.1 = why;
            }
            Verdict::MethodOff => {
                let _ = session::Entity::update_many()
                    .col_expr(session::Column::RevokedAt, Expr::value(now()))
                    .filter(session::Column::Id.eq(s.id))
                    .exec(&st.db)
                    .await;
                tracing::info!(
                    session = s.id,
                    method = s.method.name(),
                    "session ended: its sign-in method is no longer in auth.methods"
                );
            }
            Verdict::Gone(why) => {
                if !ended.insert(s.user_id) {
                    continue;
                }
                let email = models::user::by_id(&st.db, s.user_id)
                    .await
                    .ok()
                    .flatten()
                    .map(|u| u.email)
                    .unwrap_or_default();
                tracing::info!(user = %email, method = s.method.name(), %why, "the provider no longer vouches for this person: access ended");
                let _ = user::Entity::update_many()
                    .col_expr(user::Column::IdpDisabledAt, Expr::value(now()))
                    .filter(user::Column::Id.eq(s.user_id))
                    .exec(&st.db)
                    .await;
                let (revoked, closed) = end_access(st, s.user_id).await;
                let e = Entry::new(action::SESSION_ENDED, Outcome::Ok)
                    .actor(None, "system")
                    .target(email)
                    .method(s.method)
                    .detail(format!(
                        "{why}; {revoked} session(s) revoked, {closed} meeting connection(s) closed"
                    ));
                st.audit(e).await;
            }
        }
    }
    if unreachable.0 > 0 {
        tracing::warn!(
            sessions = unreachable.0,
            error = %unreachable.1,
            "SSO re-check: the provider could not be asked; sessions stay as they are until it answers"
        );
    }
    ended.into_iter().collect()
}

/// Revokes every session of `user_id` and closes their meeting connections; (sessions
/// revoked, connections closed).
pub async fn end_access(st: &ApiState, user_id: i64) -> (u64, usize) {
    let revoked = session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(now()))
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::RevokedAt.is_null())
        .exec(&st.db)
        .await
        .map(|r| r.rows_affected)
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, user_id, "revoking sessions failed");
            0
        });
    let closed = close_connections(st, user_id, None).await;
    (revoked, closed)
}

/// Removes `user_id`'s participants from their meetings through the node registry (the host's
/// `remove`, to whichever sfuserver holds the meeting). Open participations always; with
/// `since`, also those that left after it (a reconnect with an old join token). Returns how
/// many the sfuservers removed.
pub async fn close_connections(st: &ApiState, user_id: i64, since: Option<i64>) -> usize {
    let joined_since = now() - st.cfg.meetings.max_duration.as_secs_i64();
    let rows = models::participation::recent_of_user(&st.db, user_id, joined_since, since)
        .await
        .unwrap_or_default();
    if rows.is_empty() {
        return 0;
    }
    let meetings = models::meeting::sfus_of(&st.db, rows.iter().map(|p| p.meeting_id))
        .await
        .unwrap_or_default();
    let mut closed = 0;
    for p in rows {
        let Some(Some(sfu)) = meetings.get(&p.meeting_id) else {
            continue;
        };
        let r = st
            .registry
            .send(Control {
                sfu: sfu.clone(),
                control: ControlRoom {
                    meeting: MeetingId(p.meeting_id),
                    action: RoomAction::Remove {
                        participant_id: ParticipantId(p.participant_id.clone()),
                    },
                    by: None,
                },
            })
            .await;
        // Anything else: not connected (any more), nothing to close.
        if let Ok(Ok(())) = r {
            closed += 1;
            tracing::info!(participant = %p.participant_id, meeting = p.meeting_id, "meeting connection closed: access ended");
        }
    }
    closed
}
