//! The apiserver role: accounts and sign-in, meetings and invitations, the mail outbox, and
//! the HTTP API of ARCHITECTURE.md section 4. It asks the allocator (a `Recipient`, local or
//! remote — it cannot tell) for servers, and never talks to other roles any other way.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod bridge;
pub mod controls;
pub mod files;
pub mod ics;
pub mod mail;
pub mod meetings;
pub mod notes;
pub mod registry;
/// The browser client (`web.rs`; named so it does not clash with `actix_web::web`).
#[path = "web.rs"]
pub mod webclient;

use actix::prelude::*;
use actix_web::{HttpResponse, web};
use sea_orm::DatabaseConnection;
use std::sync::Arc;

use crate::config::Config;
use crate::error::{ApiError, json_error, path_error, query_error};
use crate::metrics::Metrics;
use crate::proto::signal::CloseReason;
use crate::proto::{AllocateFileServer, AllocateServers, ParticipationChanged};
use crate::tokens::Keys;

/// Shared by every request handler of the apiserver (cheap to clone: handles and Arcs).
pub struct ApiState {
    pub db: DatabaseConnection,
    pub cfg: Arc<Config>,
    pub keys: Keys,
    pub allocator: Recipient<AllocateServers>,
    pub fs_allocator: Recipient<AllocateFileServer>,
    /// The node registry: which sfuservers, turnservers and fsservers are up; host actions
    /// go through it to the meeting's sfuserver, local or remote.
    pub registry: Addr<registry::Registry>,
    /// Each node over the bridge's end here, across its sessions.
    pub remotes: crate::bridge::remote::Remotes,
    pub mailer: Arc<mail::Mailer>,
    pub outbox: Addr<mail::MailOutbox>,
    pub metrics: Metrics,
    /// `host:port` people reach this box at.
    pub own_address: String,
    /// Base URL of the web client, for links in mail (`http(s)://host[:port]`).
    pub public_url: String,
    /// Whether this box serves HTTPS (cookies get `Secure`, URLs `https`/`wss`).
    pub tls: bool,
    /// The `turns:` URL join answers add, decided by the wiring (`node::wiring::Peers`).
    pub own_turns_url: Option<String>,
    /// This process as reached from itself (`http(s)://<bound ip or 127.0.0.1>:<port>`): for
    /// calls to a role of this box without going out to its public name and back.
    pub self_url: String,
    /// Live notes: accepted changes fanned out to each meeting's followers.
    pub notes_hub: Arc<notes::NotesHub>,
    /// Enterprise sign-in (OIDC, LDAP), the audit log's limiter, the lifecycle actor.
    pub sso: Arc<auth::Sso>,
    /// Rate limits kept in memory (a restart forgives; the database-backed ones are in `auth`).
    pub limits: Arc<ApiLimits>,
    /// Joins that must ask the allocator for a meeting's servers do it one at a time per
    /// meeting: the first asks, the others take its answer.
    pub allocating: Arc<crate::util::KeyedLocks>,
}

/// The apiserver's in-memory rate limits.
pub struct ApiLimits {
    pub joins_per_user: crate::ratelimit::Keyed<i64>,
    pub joins_per_ip: crate::ratelimit::Keyed<String>,
    /// Wrong meeting passcodes per `meeting:person` (or `meeting:ip`): count, window start.
    wrong_passcodes: std::sync::Mutex<std::collections::HashMap<String, (u32, std::time::Instant)>>,
    passcode_limit: (u32, std::time::Duration),
}

impl ApiLimits {
    pub fn new(cfg: &Config) -> ApiLimits {
        ApiLimits {
            joins_per_user: crate::ratelimit::Keyed::per_minute(
                cfg.meetings.joins_per_user_per_minute,
            ),
            joins_per_ip: crate::ratelimit::Keyed::per_minute(cfg.meetings.joins_per_ip_per_minute),
            wrong_passcodes: Default::default(),
            passcode_limit: (
                cfg.meetings.wrong_passcodes,
                cfg.meetings.wrong_passcode_window.0,
            ),
        }
    }

    /// How long `key` must wait before it may try a passcode again, if it must.
    pub fn passcode_blocked(&self, key: &str) -> Option<std::time::Duration> {
        let (max, window) = self.passcode_limit;
        let m = self
            .wrong_passcodes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (n, since) = m.get(key)?;
        let left = window.checked_sub(since.elapsed())?;
        (max > 0 && *n >= max).then_some(left)
    }

    /// One more wrong passcode from `key`.
    pub fn passcode_strike(&self, key: &str) {
        let window = self.passcode_limit.1;
        let mut m = self
            .wrong_passcodes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let e = m
            .entry(key.to_string())
            .or_insert((0, std::time::Instant::now()));
        if e.1.elapsed() >= window {
            *e = (0, std::time::Instant::now());
        }
        e.0 = e.0.saturating_add(1);
    }

    fn prune(&self) {
        self.joins_per_user.prune();
        self.joins_per_ip.prune();
        let window = self.passcode_limit.1;
        self.wrong_passcodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (_, since)| since.elapsed() < window);
    }
}

/// The client's IP address as this server sees it.
pub fn client_ip(req: &actix_web::HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

impl ApiState {
    pub fn may_create(&self, email: &str) -> bool {
        let allowed = &self.cfg.auth.allowed_domains;
        allowed.is_empty()
            || email
                .rsplit_once('@')
                .is_some_and(|(_, d)| allowed.iter().any(|a| a.eq_ignore_ascii_case(d)))
    }

    pub fn join_url(&self, code: &str) -> String {
        format!("{}/m/{code}", self.public_url)
    }

    /// The URL base for another server's `host:port`: this box's own scheme for itself;
    /// plain for loopback and port 80; TLS for everything else.
    /// Where this process calls another server's HTTP API: itself over loopback, the others
    /// at their address.
    pub fn call_url(&self, address: &str) -> String {
        if address == self.own_address {
            self.self_url.clone()
        } else {
            self.base_url(address, false)
        }
    }

    pub fn base_url(&self, address: &str, websocket: bool) -> String {
        let secure = if address == self.own_address {
            self.tls
        } else {
            let host = address.rsplit_once(':').map(|(h, _)| h).unwrap_or(address);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            !(loopback || address.ends_with(":80"))
        };
        let scheme = match (websocket, secure) {
            (true, true) => "wss",
            (true, false) => "ws",
            (false, true) => "https",
            (false, false) => "http",
        };
        format!("{scheme}://{address}")
    }

    pub fn kick_mail(&self) {
        self.outbox.do_send(mail::Kick);
    }
}

/// Routes of the apiserver, with JSON errors for bad bodies, paths and queries.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(64 * 1024)
            .error_handler(|e, _| json_error(e).into()),
    )
    .app_data(web::PathConfig::default().error_handler(|e, _| path_error(e).into()))
    .app_data(web::QueryConfig::default().error_handler(|e, _| query_error(e).into()))
    .app_data(web::PayloadConfig::default().limit(64 * 1024))
    .service(
        web::scope("/api/v1")
            .route("/auth/code", web::post().to(auth::request_code))
            .route("/auth/verify", web::post().to(auth::verify))
            .route("/auth/logout", web::post().to(auth::logout))
            .route("/me", web::get().to(auth::me))
            .route("/meetings", web::post().to(meetings::create))
            .route("/meetings", web::get().to(meetings::list))
            .route("/meetings/{id}", web::get().to(meetings::get))
            .route("/meetings/{id}", web::patch().to(meetings::patch))
            .route("/meetings/{id}", web::delete().to(meetings::cancel))
            .route("/join/{code}", web::post().to(meetings::join))
            .route("/meetings/{id}/control", web::post().to(meetings::control))
            .route("/meetings/{id}/code", web::post().to(meetings::new_code))
            .route(
                "/meetings/{id}/participants",
                web::get().to(meetings::participants),
            )
            .configure(notes::routes)
            .configure(files::routes)
            .configure(admin::routes)
            .configure(auth::routes)
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ApiError::not_found("No such API endpoint."))
            })),
    )
    .route(crate::bridge::PATH, web::get().to(bridge::bridge))
    .route("/static/rtc.js", web::get().to(rtc_js))
    .configure(webclient::routes);
}

/// The browser's meeting connection library (signaling + WebRTC), embedded in the binary.
async fn rtc_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .body(include_str!("../../../web/static/rtc.js"))
}

/// Housekeeping the apiserver does on a timer: prune used sign-in codes and old sessions.
pub struct Janitor {
    pub db: DatabaseConnection,
    pub limits: Arc<ApiLimits>,
}

impl Actor for Janitor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(std::time::Duration::from_secs(3600), |act, ctx| {
            let db = act.db.clone();
            ctx.spawn(
                async move {
                    if let Err(e) = auth::prune(&db).await {
                        tracing::warn!(error = %e, "pruning old sign-in codes failed");
                    }
                }
                .into_actor(act),
            );
        });
        ctx.run_interval(std::time::Duration::from_secs(300), |act, _| {
            act.limits.prune()
        });
    }
}

/// Keeps the participation history: the sfuserver reports when people really entered and
/// left a meeting's media session. Events are written one at a time, in the order they came
/// (a reconnect's leave and join must not swap); while the database is unreachable they wait
/// in memory and are written once it is back.
pub struct ParticipationRecorder {
    db: DatabaseConnection,
    queue: std::collections::VecDeque<Record>,
    busy: bool,
    /// Host actions taken over signaling are all successes or refusals of hosts: the
    /// per-IP failure limiter of the audit log has nothing to count (no client IP).
    audit_limiter: std::sync::Arc<audit::Limiter>,
}

/// What the recorder writes, in arrival order.
#[derive(Clone, Debug)]
enum Record {
    Participation(ParticipationChanged),
    Chat(crate::proto::ChatPosted),
    HostActed(crate::proto::HostActed),
}

/// Chat messages kept per meeting (the oldest go first): what the mailed notes carry.
pub const MAX_STORED_CHAT: u64 = 2000;

/// Events kept while the database is down. Beyond it the oldest are dropped (logged): a
/// day-long outage of a busy box should not take the memory with it.
const RECORDER_BACKLOG: usize = 100_000;

impl ParticipationRecorder {
    pub fn new(db: DatabaseConnection) -> ParticipationRecorder {
        ParticipationRecorder {
            db,
            queue: std::collections::VecDeque::new(),
            busy: false,
            audit_limiter: Default::default(),
        }
    }

    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let Some(m) = self.queue.front().cloned() else {
            return;
        };
        self.busy = true;
        let db = self.db.clone();
        let limiter = self.audit_limiter.clone();
        ctx.spawn(
            async move {
                match &m {
                    Record::Participation(p) => record_participation(&db, p).await,
                    Record::Chat(c) => record_chat(&db, c).await,
                    Record::HostActed(h) => {
                        audit::host_acted(&db, &limiter, h).await;
                        Ok(())
                    }
                }
            }
                .into_actor(self)
                .map(|r, act, ctx| {
                    act.busy = false;
                    match r {
                        Ok(()) => {
                            act.queue.pop_front();
                            act.pump(ctx);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, backlog = act.queue.len(), "recording participation failed; retrying");
                            ctx.run_later(std::time::Duration::from_secs(1), |act, ctx| {
                                act.pump(ctx)
                            });
                        }
                    }
                }),
        );
    }
}

async fn record_participation(
    db: &DatabaseConnection,
    m: &ParticipationChanged,
) -> Result<(), sea_orm::DbErr> {
    use crate::db::entities::participation;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    let mut q = participation::Entity::update_many();
    q = if m.joined {
        q.col_expr(participation::Column::EnteredAt, Expr::value(m.at))
            .col_expr(participation::Column::LeftAt, Expr::value(None::<i64>))
            .filter(participation::Column::RemovedAt.is_null())
    } else if m.reason == Some(CloseReason::Removed) {
        // A host removed them in the meeting: no notes or files any more, no coming back.
        q.col_expr(participation::Column::LeftAt, Expr::value(m.at))
            .col_expr(participation::Column::RemovedAt, Expr::value(m.at))
    } else {
        q.col_expr(participation::Column::LeftAt, Expr::value(m.at))
    };
    q.filter(participation::Column::ParticipantId.eq(m.participant.0.clone()))
        .filter(participation::Column::MeetingId.eq(m.meeting.0))
        .exec(db)
        .await
        .map(|_| ())
}

/// Stores one chat message and forgets the meeting's oldest beyond [`MAX_STORED_CHAT`].
async fn record_chat(
    db: &DatabaseConnection,
    c: &crate::proto::ChatPosted,
) -> Result<(), sea_orm::DbErr> {
    use crate::db::entities::chat_message;
    use sea_orm::{
        ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    };
    let row = chat_message::ActiveModel {
        meeting_id: Set(c.meeting.0),
        at: Set(c.line.at),
        from_participant: Set(c.line.participant_id.0.clone()),
        from_name: Set(c.line.name.chars().take(128).collect()),
        to_participant: Set(c.line.to.as_ref().map(|t| t.0.clone())),
        to_hosts: Set(c.line.to_hosts),
        text: Set(c.line.text.clone()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    // The id below which this meeting's messages are beyond the bound.
    let cut: Option<i64> = chat_message::Entity::find()
        .select_only()
        .column(chat_message::Column::Id)
        .filter(chat_message::Column::MeetingId.eq(c.meeting.0))
        .order_by_desc(chat_message::Column::Id)
        .offset(MAX_STORED_CHAT)
        .limit(1)
        .into_tuple()
        .one(db)
        .await?;
    if let Some(cut) = cut.filter(|cut| *cut < row.id) {
        chat_message::Entity::delete_many()
            .filter(chat_message::Column::MeetingId.eq(c.meeting.0))
            .filter(chat_message::Column::Id.lte(cut))
            .exec(db)
            .await?;
    }
    Ok(())
}

impl Actor for ParticipationRecorder {
    type Context = Context<Self>;
}

impl Handler<ParticipationChanged> for ParticipationRecorder {
    type Result = ();
    fn handle(&mut self, m: ParticipationChanged, ctx: &mut Context<Self>) {
        if self.queue.len() >= RECORDER_BACKLOG {
            let lost = self.queue.pop_front();
            tracing::error!(?lost, "participation backlog full: oldest event dropped");
        }
        self.queue.push_back(Record::Participation(m));
        self.pump(ctx);
    }
}

impl Handler<crate::proto::HostActed> for ParticipationRecorder {
    type Result = ();
    fn handle(&mut self, m: crate::proto::HostActed, ctx: &mut Context<Self>) {
        if self.queue.len() >= RECORDER_BACKLOG {
            let lost = self.queue.pop_front();
            tracing::error!(?lost, "participation backlog full: oldest event dropped");
        }
        self.queue.push_back(Record::HostActed(m));
        self.pump(ctx);
    }
}

impl Handler<crate::proto::ChatPosted> for ParticipationRecorder {
    type Result = ();
    fn handle(&mut self, m: crate::proto::ChatPosted, ctx: &mut Context<Self>) {
        if self.queue.len() >= RECORDER_BACKLOG {
            let lost = self.queue.pop_front();
            tracing::error!(?lost, "participation backlog full: oldest event dropped");
        }
        self.queue.push_back(Record::Chat(m));
        self.pump(ctx);
    }
}

#[cfg(test)]
mod chat_store_tests {
    use super::*;
    use crate::ids::{MeetingId, ParticipantId};
    use crate::proto::ChatPosted;
    use crate::proto::signal::ChatLine;

    #[actix_rt::test]
    async fn a_meeting_keeps_its_newest_chat_only() {
        use crate::db::entities::chat_message;
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
        let db = crate::db::connect("sqlite::memory:", 1, std::time::Duration::from_secs(5))
            .await
            .expect("db");
        let line = |i: u64| ChatPosted {
            meeting: MeetingId(1),
            line: ChatLine {
                participant_id: ParticipantId("p".into()),
                name: "P".into(),
                text: format!("message {i}"),
                at: 1,
                to: None,
                to_hosts: false,
            },
        };
        for i in 0..MAX_STORED_CHAT + 25 {
            record_chat(&db, &line(i)).await.expect("stored");
        }
        // Another meeting's chat is not touched by this one's bound.
        let mut other = line(0);
        other.meeting = MeetingId(2);
        record_chat(&db, &other).await.expect("stored");
        let of =
            |m: i64| chat_message::Entity::find().filter(chat_message::Column::MeetingId.eq(m));
        assert_eq!(of(1).count(&db).await.expect("count"), MAX_STORED_CHAT);
        assert_eq!(of(2).count(&db).await.expect("count"), 1);
        let oldest = of(1)
            .order_by_asc(chat_message::Column::Id)
            .one(&db)
            .await
            .expect("query")
            .expect("a row");
        assert_eq!(oldest.text, "message 25", "the oldest went first");
    }
}
