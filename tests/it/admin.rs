//! The administrators' overview (`GET /api/v1/admin/overview`) against the real binary: only
//! the people in `auth.admin_emails` get it (401 without a session, 403 for anyone else); it
//! lists the registered servers as the `nodes` table has them, the meetings people are in
//! right now with how many, and the mail outbox (a mail to a domain whose mail server is down
//! is counted queued and failing, with the server's error).

use crate::support;

use serde_json::{Value, json};
use std::time::Duration;
use support::api::{Answer, call, mail_args, sign_in};
use support::{Appliance, SmtpSink, free_port};

fn now() -> i64 {
    meeting_appliance::util::now()
}

/// An appliance whose default mail server is `sink`, with `down.test` mail going to a port
/// where nothing listens, and `admin@corp.test` as its administrator.
fn start(sink: &SmtpSink) -> Appliance {
    let dead = free_port().to_string();
    let mut args = mail_args(sink.port());
    args.extend(
        [
            "--mailServer",
            "127.0.0.1",
            "--mailPort",
            dead.as_str(),
            "--mailFrom",
            "meetings@corp.test",
            "--mailTls",
            "none",
            "--mailDomains",
            "down.test",
            "--udpPort",
            "0",
            "--port",
            "0",
            "--sfuWorkers",
            "1",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Appliance::start(
        &args,
        &[
            // Any case: addresses compare case-insensitively.
            (
                "MEETING_AUTH__ADMIN_EMAILS",
                "ops@corp.test,Admin@Corp.test",
            ),
            ("MEETING_MAIL__RETRY_INITIAL", "1s"),
            ("MEETING_MAIL__RETRY_MAX", "2s"),
        ],
    )
}

/// A row in the node registry's table, as a registered server would have it.
async fn insert_node(
    app: &Appliance,
    id: &str,
    state: meeting_appliance::db::entities::node::State,
    last_seen: i64,
) {
    use meeting_appliance::db::entities::node;
    use sea_orm::{ActiveValue::Set, Database, EntityTrait};
    let url = format!(
        "sqlite://{}?mode=rw",
        app.data_dir().join("meeting.db").display()
    );
    let db = Database::connect(&url)
        .await
        .expect("open the appliance's SQLite");
    node::Entity::insert(node::ActiveModel {
        id: Set(id.into()),
        role: Set("sfuserver".into()),
        address: Set("10.9.8.7:8443".into()),
        capacity: Set(250),
        version: Set("9.8.7".into()),
        state: Set(state),
        load: Set(17),
        last_seen: Set(last_seen),
    })
    .exec_without_returning(&db)
    .await
    .expect("insert a node row");
    db.close().await.expect("close");
}

async fn overview(app: &Appliance, token: Option<&str>) -> Answer {
    call("GET", &app.url("/api/v1/admin/overview"), token, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_overview_only_for_admins_with_nodes_live_meetings_and_mail() {
    let sink = SmtpSink::start();
    let app = start(&sink);
    let admin = sign_in(&app, &sink, "admin@corp.test").await;
    let bob = sign_in(&app, &sink, "bob@corp.test").await;

    // Who may look.
    let a = overview(&app, None).await;
    assert_eq!(a.status, 401, "{:?}", a.body);
    let a = overview(&app, Some(&bob)).await;
    assert_eq!(
        (a.status, a.error_code()),
        (403, "not_admin"),
        "{:?}",
        a.body
    );
    let me = call("GET", &app.url("/api/v1/me"), Some(&admin), None).await;
    assert_eq!(
        me.body["admin"], true,
        "/me tells the client: {:?}",
        me.body
    );
    let me = call("GET", &app.url("/api/v1/me"), Some(&bob), None).await;
    assert_eq!(me.body["admin"], false);

    // A meeting two people are in (the owner and a guest), one nobody joined, and an
    // invitation to a domain whose mail server is down.
    let begin = now() + 3600;
    let live = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&bob),
        Some(
            json!({"title": "Quarterly numbers", "begin_at": begin, "end_at": begin + 1800,
                    "invitees": ["carol@down.test"]}),
        ),
    )
    .await;
    assert_eq!(live.status, 201, "{:?}", live.body);
    let (live_id, live_code) = (
        live.body["id"].as_i64().expect("id"),
        live.body["code"].as_str().expect("code").to_string(),
    );
    let idle = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&bob),
        Some(json!({"title": "Nobody comes", "begin_at": begin, "end_at": begin + 1800})),
    )
    .await;
    assert_eq!(idle.status, 201, "{:?}", idle.body);
    let idle_id = idle.body["id"].as_i64().expect("id");
    let join_url = app.url(&format!("/api/v1/join/{live_code}"));
    let j = call("POST", &join_url, Some(&bob), Some(json!({}))).await;
    assert_eq!(j.status, 200, "owner joins: {:?}", j.body);
    // In the meeting: a join answer alone is not presence.
    let _owner_in = support::api::enter(&j.body).await;
    let j = call(
        "POST",
        &join_url,
        None,
        Some(json!({"display_name": "Gus"})),
    )
    .await;
    assert_eq!(j.status, 200, "guest joins: {:?}", j.body);
    let _guest_in = support::api::enter(&j.body).await;
    let joined_by = now();

    // A registered server, as the registry writes it.
    insert_node(
        &app,
        "sfuserver@10.9.8.7:8443",
        meeting_appliance::db::entities::node::State::Down,
        1_700_000_000,
    )
    .await;

    // The invitation to down.test fails at least once; then everything is in the overview.
    let body: Value = support::wait_until(
        Duration::from_secs(30),
        "the failed invitation in the overview",
        || {
            let a = futures_executor(overview(&app, Some(&admin)));
            assert_eq!(a.status, 200, "{:?}", a.body);
            (a.body["mail"]["failed"].as_u64().unwrap_or(0) >= 1).then_some(a.body)
        },
    );
    eprintln!("{body:#}");

    // Nodes: every field, as stored.
    let nodes = body["nodes"].as_array().expect("nodes");
    for n in nodes {
        for (k, ok) in [
            ("id", n["id"].is_string()),
            ("role", n["role"].is_string()),
            ("address", n["address"].is_string()),
            ("capacity", n["capacity"].is_i64()),
            ("version", n["version"].is_string()),
            ("state", n["state"] == "up" || n["state"] == "down"),
            ("load", n["load"].is_i64()),
            ("last_seen", n["last_seen"].is_i64()),
        ] {
            assert!(ok, "node field {k}: {n}");
        }
    }
    let ours = nodes
        .iter()
        .find(|n| n["id"] == "sfuserver@10.9.8.7:8443")
        .expect("the registered node is listed");
    assert_eq!(
        ours,
        &json!({"id": "sfuserver@10.9.8.7:8443", "role": "sfuserver", "address": "10.9.8.7:8443",
                "capacity": 250, "version": "9.8.7", "state": "down", "load": 17,
                "unit": "pkt/s", "last_seen": 1_700_000_000})
    );

    // Live meetings: the one with two people in it, not the one nobody joined.
    let meetings = body["meetings"].as_array().expect("meetings");
    assert!(
        meetings.iter().all(|m| m["id"] != idle_id),
        "nobody is in {idle_id}: {meetings:?}"
    );
    let m = meetings
        .iter()
        .find(|m| m["id"] == live_id)
        .expect("the live meeting is listed");
    assert_eq!(m["code"], live_code.as_str());
    assert_eq!(m["title"], "Quarterly numbers");
    assert_eq!(m["owner_email"], "bob@corp.test");
    assert_eq!(m["participants"], 2, "{m}");
    let since = m["since"].as_i64().expect("since");
    assert!(
        since <= joined_by && since > joined_by - 60,
        "since {since}"
    );
    assert!(m["sfu"].is_string(), "the meeting's sfuserver: {m}");

    // The mail outbox: the invitation to carol@down.test is queued and failing, with why.
    let mail = &body["mail"];
    assert!(mail["queued"].as_u64().unwrap_or(0) >= 1, "{mail}");
    let f = mail["latest_failures"]
        .as_array()
        .expect("latest_failures")
        .iter()
        .find(|f| f["recipient"] == "carol@down.test")
        .expect("the failing invitation is listed");
    assert!(f["attempts"].as_i64().unwrap_or(0) >= 1, "{f}");
    assert!(
        !f["last_error"].as_str().unwrap_or("").is_empty(),
        "the server's error: {f}"
    );
    assert!(
        f["subject"]
            .as_str()
            .unwrap_or("")
            .contains("Quarterly numbers"),
        "{f}"
    );
    assert!(f.get("message").is_none(), "no message bodies: {f}");
    // Mail to the working server was delivered and is not counted.
    assert!(
        mail["latest_failures"]
            .as_array()
            .expect("list")
            .iter()
            .all(|f| f["recipient"] == "carol@down.test"),
        "{mail}"
    );
}

/// Runs a future to completion from inside a sync poll closure on this multi-thread runtime.
fn futures_executor<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}
