//! Prometheus metrics, one registry per process, served on `/metrics`.
//!
//! What an operator finds there, by role (all names carry the `meeting_` prefix):
//! - every listener: `http_requests` by status class;
//! - apiserver: sign-ins, `meetings_created`, `joins`, the mail outbox (`mail_pending`,
//!   `mail_sent`, `mail_failed`) and the database pool (`db_pool_*`, [`DbPoolCollector`]);
//! - sfuserver: `sfu_rooms` (live meetings), `sfu_participants`, forwarded packets and bytes
//!   (`sfu_rtp_packets_out`, `sfu_packets_out`, `sfu_bytes_out`, …);
//! - turnserver: `turn_allocations`, relayed packets and bytes, refusals by reason;
//! - fsserver: files stored and served, refusals by reason.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sea_orm::{DatabaseConnection, DbBackend};
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct Metrics {
    /// Locked only at start-up (registration) and per scrape, never on a request path.
    registry: Arc<Mutex<Registry>>,
    pub http_requests: Family<Vec<(String, String)>, Counter>,
    pub login_codes_sent: Counter,
    pub sign_ins: Counter,
    pub sign_in_failures: Family<Vec<(String, String)>, Counter>,
    pub meetings_created: Family<Vec<(String, String)>, Counter>,
    pub joins: Counter,
    pub allocation_failures: Counter,
    pub mail_sent: Counter,
    pub mail_failed: Counter,
    pub mail_pending: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("meeting");
        let m = Metrics {
            registry: Arc::new(Mutex::new(Registry::default())),
            http_requests: Family::default(),
            login_codes_sent: Counter::default(),
            sign_ins: Counter::default(),
            sign_in_failures: Family::default(),
            meetings_created: Family::default(),
            joins: Counter::default(),
            allocation_failures: Counter::default(),
            mail_sent: Counter::default(),
            mail_failed: Counter::default(),
            mail_pending: Gauge::default(),
        };
        r.register(
            "http_requests",
            "HTTP requests by status class",
            m.http_requests.clone(),
        );
        r.register(
            "login_codes_sent",
            "Sign-in codes issued",
            m.login_codes_sent.clone(),
        );
        r.register("sign_ins", "Successful sign-ins", m.sign_ins.clone());
        r.register(
            "sign_in_failures",
            "Rejected sign-in attempts by reason",
            m.sign_in_failures.clone(),
        );
        r.register(
            "meetings_created",
            "Meetings created by kind",
            m.meetings_created.clone(),
        );
        r.register("joins", "Join answers issued", m.joins.clone());
        r.register(
            "allocation_failures",
            "Allocator answers that were not a server",
            m.allocation_failures.clone(),
        );
        r.register(
            "mail_sent",
            "Mails delivered to an SMTP server",
            m.mail_sent.clone(),
        );
        r.register(
            "mail_failed",
            "Failed mail delivery attempts (retried)",
            m.mail_failed.clone(),
        );
        r.register(
            "mail_pending",
            "Mails waiting in the outbox",
            m.mail_pending.clone(),
        );
        Metrics {
            registry: Arc::new(Mutex::new(r)),
            ..m
        }
    }

    pub fn label(k: &str, v: &str) -> Vec<(String, String)> {
        vec![(k.to_string(), v.to_string())]
    }

    /// Adds a role's own collector (read at scrape time).
    pub fn register_collector(&self, c: Box<dyn prometheus_client::collector::Collector>) {
        if let Ok(mut r) = self.registry.lock() {
            r.register_collector(c);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let ok = match self.registry.lock() {
            Ok(r) => encode(&mut out, &r).is_ok(),
            Err(_) => false,
        };
        if !ok {
            out.push_str("# metrics encoding failed\n");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The database connection pool at scrape time: open connections, idle ones, the maximum.
/// A pool that stays at its maximum with no idle connection means requests queue for the
/// database (raise `database.max_connections`, or look for slow queries).
#[derive(Debug)]
pub struct DbPoolCollector {
    db: DatabaseConnection,
    max: u32,
}

impl DbPoolCollector {
    /// Boxed for `Metrics::register_collector`.
    pub fn boxed(db: &DatabaseConnection, cfg: &crate::config::Database) -> Box<Self> {
        Box::new(DbPoolCollector {
            db: db.clone(),
            max: cfg.max_connections,
        })
    }

    /// (open, idle) connections; each pool getter is called only for its own backend.
    fn sizes(&self) -> Option<(u32, usize)> {
        match self.db.get_database_backend() {
            DbBackend::Sqlite => {
                let p = self.db.get_sqlite_connection_pool();
                Some((p.size(), p.num_idle()))
            }
            DbBackend::MySql => {
                let p = self.db.get_mysql_connection_pool();
                Some((p.size(), p.num_idle()))
            }
            DbBackend::Postgres => {
                let p = self.db.get_postgres_connection_pool();
                Some((p.size(), p.num_idle()))
            }
            #[allow(unreachable_patterns)] // sea-orm may add backends
            _ => None,
        }
    }
}

impl Collector for DbPoolCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some((open, idle)) = self.sizes() else {
            return Ok(());
        };
        let gauges: [(&str, &str, i64); 3] = [
            (
                "db_pool_connections",
                "Open database connections",
                i64::from(open),
            ),
            (
                "db_pool_idle",
                "Open database connections not in use",
                i64::try_from(idle).unwrap_or(i64::MAX),
            ),
            (
                "db_pool_max",
                "Largest pool size (database.max_connections)",
                i64::from(self.max),
            ),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(v);
            g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}
