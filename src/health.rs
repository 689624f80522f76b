//! `/healthz` and `/readyz` for every listener of the appliance ([`routes`]; `/metrics` is
//! added by `node::ops_routes`).
//!
//! Liveness (`/healthz`) says the process answers; readiness says it can do its work, so a
//! load balancer or orchestrator sends traffic only then:
//! - a process with the apiserver: its database answers a ping (within 2 s);
//! - every other role: its sockets are bound before the HTTP listener starts, so answering
//!   at all means ready.

use actix_web::{HttpResponse, web};
use std::time::Duration;

use crate::roles::apiserver::ApiState;

/// How long the database may take to answer the readiness ping.
const DB_PING: Duration = Duration::from_secs(2);

/// Registers `/healthz` (200 `{"status":"ok"}`) and `/readyz`.
pub fn routes(c: &mut web::ServiceConfig) {
    c.route(
        "/healthz",
        web::get().to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
    )
    .route("/readyz", web::get().to(readyz));
}

/// `GET /readyz`: 200 `{"status":"ready"}` or 503 `{"status":"not_ready","reason":…}`.
pub async fn readyz(api: Option<web::Data<ApiState>>) -> HttpResponse {
    let Some(api) = api else {
        return ready();
    };
    let reason = match tokio::time::timeout(DB_PING, api.db.ping()).await {
        Ok(Ok(())) => return ready(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            "database unreachable"
        }
        Err(_) => {
            tracing::warn!("readiness: the database did not answer within 2 s");
            "database slow to answer"
        }
    };
    HttpResponse::ServiceUnavailable()
        .json(serde_json::json!({"status": "not_ready", "reason": reason}))
}

fn ready() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ready"}))
}
