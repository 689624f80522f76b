//! Prometheus metrics, one registry per process, served on `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
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
