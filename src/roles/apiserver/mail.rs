//! Mail: a persistent outbox in the database and an actor that delivers it.
//!
//! `enqueue` formats the whole message and stores it before any delivery attempt, so a mail
//! accepted by the API survives an SMTP outage and a restart. The `MailOutbox` actor delivers
//! due rows, sign-in codes first, routes each recipient to the SMTP server that serves its
//! domain (else the default server), and retries failures with doubling back-off. A mail is
//! given up (status `failed`, listed on the admin page) on a permanent refusal (SMTP 5xx) or
//! after `mail.max_attempts` tries; a sign-in code is given up once it has expired (`expired`).
//! Once a mail is sent or given up its body is purged: the outbox keeps who, when and the
//! subject, never a sign-in code. Each person's actions may queue `mail.per_user_per_day`.
//! With no SMTP server configured (a development box) the mail is written to the log instead.

use actix::prelude::*;
use lettre::message::{Mailbox, Message, MultiPart, SinglePart, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor, address::Envelope};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, Set};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Mail as MailConfig, MailServer, MailTls};
use crate::db::entities::mail::{self, Status};
use crate::db::models;
use crate::metrics::Metrics;
use crate::util::now;

/// A message ready to queue: who gets it, and its parts.
pub struct Outgoing {
    pub to: String,
    pub subject: String,
    pub text: String,
    /// A text/calendar part (`method`, body) for invitations.
    pub calendar: Option<(&'static str, String)>,
    /// An HTML alternative.
    pub html: Option<String>,
    /// Sign-in codes go before everything else.
    pub priority: Priority,
    /// Whose action caused the mail (for `mail.per_user_per_day`).
    pub user_id: Option<i64>,
    /// Not worth delivering after this (unix seconds): a sign-in code's expiry.
    pub expires_at: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    SignIn = 0,
    Normal = 1,
}

impl Outgoing {
    /// A mail of normal priority caused by `user_id`.
    pub fn by(user_id: i64, to: String, subject: String, text: String) -> Outgoing {
        Outgoing {
            to,
            subject,
            text,
            calendar: None,
            html: None,
            priority: Priority::Normal,
            user_id: Some(user_id),
            expires_at: None,
        }
    }
}

/// Refuses to queue `n` more mails for `user_id` beyond `mail.per_user_per_day`.
pub async fn check_quota<C: ConnectionTrait>(
    db: &C,
    cfg: &MailConfig,
    user_id: i64,
    n: usize,
) -> Result<(), crate::error::ApiError> {
    let day_ago = now() - 86_400;
    let used = models::mail::caused_by_since(db, user_id, day_ago).await?;
    let limit = u64::from(cfg.per_user_per_day);
    if used.saturating_add(n as u64) > limit {
        return Err(crate::error::ApiError::rate_limited(
            3600,
            format!(
                "This would send {n} mails; your account may send {limit} a day and has sent {used}. Try again tomorrow, or ask your administrator."
            ),
        ));
    }
    Ok(())
}

/// How mail leaves this box: the configured servers, or the log.
pub struct Mailer {
    cfg: MailConfig,
    transports: Vec<(MailServer, AsyncSmtpTransport<Tokio1Executor>)>,
}

impl Mailer {
    pub fn new(cfg: &MailConfig) -> anyhow::Result<Arc<Mailer>> {
        let mut transports = Vec::new();
        for s in &cfg.servers {
            transports.push((s.clone(), transport(s)?));
        }
        Ok(Arc::new(Mailer {
            cfg: cfg.clone(),
            transports,
        }))
    }

    /// Which of `transports` serves a recipient.
    fn route_index(&self, recipient: &str) -> Option<usize> {
        let domain = recipient
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        self.transports
            .iter()
            .position(|(s, _)| s.domains.contains(&domain))
            .or_else(|| {
                self.transports
                    .iter()
                    .position(|(s, _)| s.domains.is_empty())
            })
            .or_else(|| (!self.transports.is_empty()).then_some(0))
    }

    /// The sender address for a recipient (the routed server's `from`).
    fn route(&self, recipient: &str) -> Option<&(MailServer, AsyncSmtpTransport<Tokio1Executor>)> {
        let domain = recipient
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        self.transports
            .iter()
            .find(|(s, _)| s.domains.contains(&domain))
            .or_else(|| self.transports.iter().find(|(s, _)| s.domains.is_empty()))
            .or_else(|| self.transports.first())
    }

    fn sender_for(&self, recipient: &str) -> String {
        self.route(recipient)
            .map(|(s, _)| s.from_address())
            .unwrap_or_else(|| "meetings@localhost".to_string())
    }
}

fn transport(s: &MailServer) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let params = || {
        TlsParameters::new(s.host.clone())
            .map_err(|e| anyhow::anyhow!("mail server {}: TLS setup failed: {e}", s.host))
    };
    let tls = match s.tls {
        MailTls::None => Tls::None,
        MailTls::Tls => Tls::Wrapper(params()?),
        MailTls::Starttls => Tls::Required(params()?),
        MailTls::Auto if s.port == 465 => Tls::Wrapper(params()?),
        MailTls::Auto if s.username.is_some() => Tls::Required(params()?),
        MailTls::Auto => Tls::Opportunistic(params()?),
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.clone())
        .port(s.port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(20)));
    if let Some(u) = &s.username {
        b = b.credentials(Credentials::new(
            u.clone(),
            s.password.clone().unwrap_or_default(),
        ));
    }
    Ok(b.build())
}

/// Formats and stores a mail. Returns once it is durable; delivery happens in the actor.
pub async fn enqueue<C: ConnectionTrait>(
    db: &C,
    mailer: &Mailer,
    m: Outgoing,
) -> anyhow::Result<()> {
    let sender = mailer.sender_for(&m.to);
    let from = Mailbox::new(Some(mailer.cfg.from_name.clone()), sender.parse()?);
    let to: Mailbox = m.to.parse()?;
    let mut alt = MultiPart::alternative().singlepart(SinglePart::plain(m.text.clone()));
    if let Some(html) = &m.html {
        alt = alt.singlepart(SinglePart::html(html.clone()));
    }
    let body = if let Some((method, ics)) = &m.calendar {
        let ct = ContentType::parse(&format!("text/calendar; charset=UTF-8; method={method}"))?;
        alt = alt.singlepart(SinglePart::builder().header(ct).body(ics.clone()));
        // The same calendar as an attachment too: some clients only look there.
        MultiPart::mixed().multipart(alt).singlepart(
            SinglePart::builder()
                .header(ContentType::parse("application/ics; name=\"invite.ics\"")?)
                .header(lettre::message::header::ContentDisposition::attachment(
                    "invite.ics",
                ))
                .body(ics.clone()),
        )
    } else {
        alt
    };
    let msg = Message::builder()
        .from(from)
        .to(to)
        .subject(m.subject.clone())
        .message_id(None)
        .multipart(body)?;
    let raw = String::from_utf8(msg.formatted())?;
    let logged = mailer.transports.is_empty();
    let t = now();
    if logged {
        tracing::warn!(
            to = %m.to,
            subject = %m.subject,
            "NO MAIL SERVER CONFIGURED: this mail is written to the log instead of being sent:\n{}",
            m.text
        );
    }
    mail::ActiveModel {
        recipient: Set(m.to.clone()),
        sender: Set(sender),
        subject: Set(m.subject.chars().take(255).collect()),
        // Written to the log: nothing to keep.
        message: Set(if logged { String::new() } else { raw }),
        status: Set(if logged {
            Status::Logged
        } else {
            Status::Pending
        }),
        attempts: Set(0),
        next_attempt_at: Set(t),
        last_error: Set(None),
        created_at: Set(t),
        sent_at: Set(None),
        priority: Set(m.priority as i32),
        user_id: Set(m.user_id),
        expires_at: Set(m.expires_at),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

/// Delivers due mail from the outbox. Started once per apiserver.
pub struct MailOutbox {
    db: DatabaseConnection,
    mailer: Arc<Mailer>,
    metrics: Metrics,
    /// Per lane (sign-in codes, everything else): a pass is under way. Two lanes, so a pass
    /// stuck on a slow or dead mail server never holds up a sign-in code.
    busy: [bool; 2],
}

impl MailOutbox {
    pub fn new(db: DatabaseConnection, mailer: Arc<Mailer>, metrics: Metrics) -> Self {
        MailOutbox {
            db,
            mailer,
            metrics,
            busy: [false; 2],
        }
    }
}

/// "There may be new mail": sent after `enqueue` so delivery does not wait for the next tick.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Kick;

impl Actor for MailOutbox {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_secs(1), |_, ctx| ctx.notify(Kick));
        ctx.notify(Kick);
    }
}

impl Handler<Kick> for MailOutbox {
    type Result = ();
    fn handle(&mut self, _: Kick, ctx: &mut Context<Self>) {
        if self.mailer.transports.is_empty() {
            return;
        }
        for lane in [Priority::SignIn, Priority::Normal] {
            let i = lane as usize;
            if self.busy[i] {
                continue;
            }
            self.busy[i] = true;
            let (db, mailer, metrics) =
                (self.db.clone(), self.mailer.clone(), self.metrics.clone());
            ctx.spawn(
                async move {
                    match deliver_due(&db, &mailer, &metrics, lane).await {
                        Ok(n) => n,
                        Err(e) => {
                            tracing::error!(error = %e, "mail outbox pass failed");
                            0
                        }
                    }
                }
                .into_actor(self)
                .map(move |attempted, act, ctx| {
                    act.busy[i] = false;
                    // More may be due already: go on at once rather than at the next tick.
                    if attempted > 0 {
                        ctx.notify(Kick);
                    }
                }),
            );
        }
    }
}

/// One delivery attempt of one stored mail, and its outcome written back.
async fn attempt(
    db: &DatabaseConnection,
    mailer: &Mailer,
    metrics: &Metrics,
    server: &MailServer,
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    row: mail::Model,
) -> anyhow::Result<()> {
    let result = match (row.sender.parse(), row.recipient.parse()) {
        (Ok(from), Ok(to)) => match Envelope::new(Some(from), vec![to]) {
            Ok(env) => transport
                .send_raw(&env, row.message.as_bytes())
                .await
                .map(|_| ())
                .map_err(|e| (e.is_permanent(), e.to_string())),
            Err(e) => Err((true, e.to_string())),
        },
        _ => Err((
            true,
            "stored sender or recipient is not an address".to_string(),
        )),
    };
    let attempts = row.attempts + 1;
    let mut upd: mail::ActiveModel = row.clone().into();
    upd.attempts = Set(attempts);
    let max = i32::try_from(mailer.cfg.max_attempts).unwrap_or(i32::MAX);
    match result {
        Ok(()) => {
            tracing::info!(id = row.id, to = %row.recipient, server = %server.host, "mail sent");
            metrics.mail_sent.inc();
            upd.status = Set(Status::Sent);
            upd.sent_at = Set(Some(now()));
            upd.last_error = Set(None);
            upd.message = Set(String::new());
        }
        Err((permanent, e)) if permanent || attempts >= max => {
            tracing::warn!(id = row.id, to = %row.recipient, server = %server.host, attempts, permanent, error = %e, "mail given up");
            metrics.mail_failed.inc();
            upd.status = Set(Status::Failed);
            upd.last_error = Set(Some(e.chars().take(1000).collect()));
            upd.message = Set(String::new());
        }
        Err((_, e)) => {
            let shift = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
            let delay = mailer
                .cfg
                .retry_initial
                .as_secs()
                .saturating_mul(1u64 << shift)
                .min(mailer.cfg.retry_max.as_secs())
                .max(1);
            tracing::warn!(id = row.id, to = %row.recipient, server = %server.host, attempts, retry_in_s = delay, error = %e, "mail not delivered yet; will retry");
            metrics.mail_failed.inc();
            upd.next_attempt_at = Set(now() + i64::try_from(delay).unwrap_or(i64::MAX / 2));
            upd.last_error = Set(Some(e.chars().take(1000).collect()));
        }
    }
    upd.update(db).await?;
    Ok(())
}

/// One pass over a lane's due mail: per mail server at most 50 mails, and no new attempt after
/// `PASS_BUDGET` (the next tick goes on).
async fn deliver_due(
    db: &DatabaseConnection,
    mailer: &Mailer,
    metrics: &Metrics,
    lane: Priority,
) -> anyhow::Result<usize> {
    const PASS_BUDGET: Duration = Duration::from_secs(10);
    const PER_SERVER: usize = 8;
    let started = std::time::Instant::now();
    let t = now();
    // Sign-in codes nobody can use any more are not worth a try.
    models::mail::expire(db, t).await?;
    let lane = match lane {
        Priority::SignIn => models::mail::Lane::Only(Priority::SignIn as i32),
        Priority::Normal => models::mail::Lane::AllBut(Priority::SignIn as i32),
    };
    let due = models::mail::due(db, t, lane, 500).await?;
    // Each mail server gets its own sequence of attempts: a server that never answers delays
    // only the mail it is to deliver.
    let mut by_server: Vec<Vec<mail::Model>> = vec![Vec::new(); mailer.transports.len()];
    for row in due {
        if let Some(i) = mailer.route_index(&row.recipient)
            && by_server[i].len() < 50
        {
            by_server[i].push(row);
        }
    }
    let counts: Vec<usize> = by_server.iter().map(Vec::len).collect();
    let passes = by_server
        .into_iter()
        .enumerate()
        .map(|(i, rows)| async move {
            use futures_util::StreamExt;
            let (server, transport) = &mailer.transports[i];
            // A few SMTP transactions at once per server (lettre pools the connections):
            // a morning's sign-in codes go out in seconds, not one round trip after another.
            let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(rows)
                .take_while(|_| std::future::ready(started.elapsed() <= PASS_BUDGET))
                .map(|row| attempt(db, mailer, metrics, server, transport, row))
                .buffer_unordered(PER_SERVER)
                .collect()
                .await;
            results.into_iter().collect::<anyhow::Result<()>>()
        });
    for r in futures_util::future::join_all(passes).await {
        r?;
    }
    let pending = models::mail::pending_count(db).await?;
    metrics
        .mail_pending
        .set(i64::try_from(pending).unwrap_or(i64::MAX));
    Ok(counts.iter().sum())
}
