//! Split deployment: apiserver, sfuserver, turnserver and fsserver as separate
//! processes started with the seed's command lines, the node roles registering with the
//! apiserver over the remote bridge.
//!
//! - The one-box scenario (sign in, create, two WebRTC clients exchange media, a host action,
//!   notes with a file, participation history) runs against the split deployment on loopback
//!   (each role on its own 127.0.0.x, MariaDB and a real SMTP sink), and again with every
//!   process in its own network namespace joined by veth links (TLS with self-signed
//!   certificates on private addresses, as separate hosts would have).
//! - The bridge handshake: a wrong secret, a replayed hello and a protocol-version mismatch are
//!   each refused with their message, and never reach the node registry.
//! - Faults: the apiserver killed for 10 s mid-meeting while media keeps flowing, the nodes
//!   re-registering on their own; an sfuserver killed and its clients rejoining on a second.

use crate::support;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

use meeting_appliance::bridge::{self, Hello, ToApi, ToNode};
use meeting_appliance::proto::NodeRole;
use meeting_appliance::tokens::Keys;
use support::api::{call, mail_args, sign_in};
use support::media::{enter_private_netns, sign_in_from_log};
use support::split::{
    Flappy, Hosts, Listener, SECRET, Talker, join, loopback_deployment, s, wait_registered,
};
use support::{Appliance, FakeAllocator, SmtpSink, shared_mariadb};

/// What the scenario leaves for further checks.
struct Meeting {
    id: i64,
    code: String,
    host: String,
}

/// The one-box scenario, against whatever deployment `api` fronts.
async fn scenario(api: &str, host: &str, lan: bool) -> Meeting {
    let m = call(
        "POST",
        &format!("{api}/api/v1/meetings"),
        Some(host),
        Some(json!({"title": "Split"})),
    )
    .await;
    assert_eq!(m.status, 201, "{:?}", m.body);
    let id = m.body["id"].as_i64().expect("id");
    let code = m.body["code"].as_str().expect("code").to_string();

    // Two clients: media goes through the sfuserver on its own host.
    let tj = join(api, &code, Some(host), "Host").await;
    let lj = join(api, &code, None, "Guest").await;
    let talker = Talker::join(&tj, "talker", lan).await;
    let listener = Listener::join(&lj, "listener", lan, Arc::new(AtomicU64::new(0))).await;
    let got = listener
        .wait_more(100, Duration::from_secs(25), "audio through the sfuserver")
        .await;
    println!("listener received {got} packets through the split sfuserver");

    // A host action crosses the bridge to the sfuserver that owns the meeting.
    let guest = listener.client.participant_id().to_string();
    let c = call(
        "POST",
        &format!("{api}/api/v1/meetings/{id}/control"),
        Some(host),
        Some(json!({"action": "mute", "participant_id": guest})),
    )
    .await;
    assert_eq!(c.status, 204, "mute across the bridge: {:?}", c.body);
    listener
        .client
        .wait(Duration::from_secs(10), "the host's mute", |c| {
            c.messages_of("mute")
                .iter()
                .any(|m| m["by_host"] == true && m["participant_id"] == guest.as_str())
        })
        .await;

    // Notes with a file stored on the fsserver on its own host.
    let data: Vec<u8> = (0..150_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let g = call(
        "POST",
        &format!("{api}/api/v1/meetings/{id}/files"),
        Some(host),
        Some(json!({"name": "plan.bin", "content_type": "application/octet-stream", "size": data.len()})),
    )
    .await;
    assert_eq!(g.status, 201, "upload grant: {:?}", g.body);
    let upload_url = g.body["upload_url"].as_str().expect("upload_url");
    let put = support::api::client()
        .put(upload_url)
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {upload_url}: {e}"));
    assert_eq!(put.status().as_u16(), 201);
    let receipt: Value = put.json().await.expect("receipt JSON");
    let fid = g.body["id"].as_str().expect("file id");
    let f = call(
        "POST",
        &format!("{api}/api/v1/meetings/{id}/files/{fid}/commit"),
        Some(host),
        Some(json!({"receipt": receipt["receipt"]})),
    )
    .await;
    assert_eq!(f.status, 201, "commit: {:?}", f.body);
    let text = format!("# Split notes\n\nSee [plan](/api/v1/meetings/{id}/files/{fid}).\n");
    let n = call(
        "PUT",
        &format!("{api}/api/v1/meetings/{id}/notes"),
        Some(host),
        Some(json!({"text": text, "version": 0})),
    )
    .await;
    assert_eq!(n.status, 200, "notes: {:?}", n.body);
    let n = call(
        "GET",
        &format!("{api}/api/v1/meetings/{id}/notes"),
        Some(host),
        None,
    )
    .await;
    assert_eq!(n.body["text"], text.as_str(), "{:?}", n.body);
    let url = f.body["download_url"].as_str().expect("download_url");
    let got = support::api::client()
        .get(url)
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("bytes");
    assert!(got[..] == data[..], "the file came back different");

    // Participation events come back over the bridge: the guest's leave is recorded.
    listener.client.leave().await;
    let t0 = Instant::now();
    loop {
        let p = call(
            "GET",
            &format!("{api}/api/v1/meetings/{id}/participants"),
            Some(host),
            None,
        )
        .await;
        let left = p.body.as_array().is_some_and(|l| {
            l.iter()
                .any(|x| x["participant_id"] == guest.as_str() && x["left_at"].is_i64())
        });
        if left {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the guest's leave never reached the apiserver: {:?}",
            p.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    talker.leave().await;
    Meeting {
        id,
        code,
        host: host.to_string(),
    }
}

/// Host and guest join the meeting again: both are sent to the sfuserver at `sfu` (its
/// address and signaling URL), and audio flows between them there.
async fn rejoin_and_talk(base: &str, code: &str, host: &str, sfu: &str, what: &str) {
    let tj = join(base, code, Some(host), "Host").await;
    let lj = join(base, code, None, "Guest").await;
    for j in [&tj, &lj] {
        assert_eq!(
            j["sfu"]["address"], sfu,
            "a rejoin names another sfuserver: {j}"
        );
        assert!(
            j["sfu"]["signal_url"]
                .as_str()
                .is_some_and(|u| u.contains(sfu)),
            "a rejoin still names the lost sfuserver: {j}"
        );
    }
    let talker = Talker::join(&tj, "talker-again", false).await;
    let listener = Listener::join(&lj, "listener-again", false, Arc::new(AtomicU64::new(0))).await;
    listener.wait_more(100, Duration::from_secs(25), what).await;
    talker.leave().await;
}

fn nodes_table(db_name: &str) -> String {
    shared_mariadb().root_sql(&format!(
        "SELECT id, state FROM `{db_name}`.nodes ORDER BY id"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_roles_on_loopback_run_the_one_box_scenario() {
    if !enter_private_netns("split_roles_on_loopback_run_the_one_box_scenario") {
        return;
    }
    let d = loopback_deployment(support::TEST_LOBBY);
    let api = "http://127.0.0.1:443";
    let host = sign_in(&d.api, &d.sink, "host@corp.test").await;
    let m = scenario(api, &host, false).await;
    println!("scenario passed on the split deployment (meeting {})", m.id);

    // The registry in the database: every node up, nothing else.
    let table = nodes_table(&d.db_name);
    for n in [
        "fsserver@127.0.0.4:443\tup",
        "sfuserver@127.0.0.2:443\tup",
        "turnserver@127.0.0.3:3478\tup",
    ] {
        assert!(table.contains(n), "nodes table lacks {n:?}:\n{table}");
    }
    // The turnserver learned the sfuserver's media addresses from the registry.
    d.turn.wait_log(
        "sfuservers it may relay to sfu_media=[(127.0.0.2",
        Duration::from_secs(5),
    );

    // A node with the wrong secret is refused on both sides and never registered.
    let bad = Appliance::start_exact(
        &[
            "sfuserver",
            "--secret",
            "not-the-deployment-secret",
            "--domainaddress",
            "127.0.0.9:443",
            "--apiserver",
            "127.0.0.1:443",
        ],
        &d.dir.path().join("bad"),
    );
    bad.wait_log(
        "the apiserver refused this node: wrong secret; give this node the same --secret as the apiserver",
        Duration::from_secs(15),
    );
    d.api.wait_log(
        "refused a node: wrong secret (its proof does not match this apiserver's --secret)",
        Duration::from_secs(5),
    );
    let table = nodes_table(&d.db_name);
    assert!(
        !table.contains("127.0.0.9"),
        "a node with a wrong secret was registered:\n{table}"
    );
    let _ = (&d.sfu, &d.fs, &d.alloc, &d.api_args, &m.code, &m.host);
}

/// A raw bridge client speaking the protocol by hand.
async fn bridge_conn(url: &str) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let u = url::Url::parse(url).expect("url");
    let tcp =
        tokio::net::TcpStream::connect((u.host_str().expect("host"), u.port().expect("port")))
            .await
            .expect("connect");
    tokio_tungstenite::client_async(url, tcp)
        .await
        .expect("upgrade")
        .0
}

async fn next_frame(ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> ToNode {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("link open")
            .expect("read");
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap_or_else(|e| panic!("frame {t}: {e}"));
        }
    }
}

async fn challenge(ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> String {
    match next_frame(ws).await {
        ToNode::Challenge { proto, nonce, .. } => {
            assert_eq!(proto, bridge::PROTO);
            nonce
        }
        other => panic!("expected a challenge, got {other:?}"),
    }
}

fn hello_for(challenge: &str, secret: &str, address: &str) -> Hello {
    let mut h = Hello {
        proto: bridge::PROTO,
        version: bridge::version().into(),
        role: NodeRole::Sfuserver,
        address: address.into(),
        capacity: 0,
        media: vec![],
        instance: "hand-made".into(),
        challenge: challenge.into(),
        nonce: bridge::nonce(),
        proof: String::new(),
    };
    h.proof = bridge::node_proof(Keys::derive(secret).bridge_key(), &h, b"");
    h
}

async fn send(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    v: &impl serde::Serialize,
) {
    ws.send(Message::text(serde_json::to_string(v).expect("json")))
        .await
        .expect("send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_refuses_replays_wrong_secrets_and_other_versions() {
    let sink = SmtpSink::start();
    let mut args: Vec<String> = vec!["--secret".into(), SECRET.into()];
    args.extend(mail_args(sink.port()));
    let app = Appliance::start(&s(&args), &[]);
    let url = format!("ws://{}{}", app.addr(), bridge::PATH);

    // A hello recorded on one connection, replayed on another: refused as a replay.
    let mut one = bridge_conn(&url).await;
    let c1 = challenge(&mut one).await;
    let recorded = hello_for(&c1, SECRET, "127.0.0.77:443");
    let mut two = bridge_conn(&url).await;
    let _c2 = challenge(&mut two).await;
    send(&mut two, &ToApi::Hello(recorded.clone())).await;
    match next_frame(&mut two).await {
        ToNode::Refused { reason, message } => {
            assert_eq!(reason, bridge::Refusal::Replayed);
            assert!(message.contains("replayed handshake"), "{message}");
        }
        other => panic!("a replayed hello was not refused: {other:?}"),
    }
    app.wait_log("refused a node: replayed handshake", Duration::from_secs(5));
    // The same hello on its own connection is fine, and the apiserver proves the secret back.
    send(&mut one, &ToApi::Hello(recorded.clone())).await;
    match next_frame(&mut one).await {
        ToNode::Welcome { proof, node_id } => {
            assert_eq!(node_id, "sfuserver@127.0.0.77:443");
            let key = Keys::derive(SECRET);
            assert!(bridge::check_api_proof(
                key.bridge_key(),
                &recorded.nonce,
                &c1,
                b"",
                &proof
            ));
        }
        other => panic!("a good hello was refused: {other:?}"),
    }
    wait_registered(&app, &["sfuserver@127.0.0.77:443"]);

    // A wrong secret.
    let mut three = bridge_conn(&url).await;
    let c3 = challenge(&mut three).await;
    send(
        &mut three,
        &ToApi::Hello(hello_for(&c3, "some other secret", "127.0.0.78:443")),
    )
    .await;
    match next_frame(&mut three).await {
        ToNode::Refused { reason, message } => {
            assert_eq!(reason, bridge::Refusal::WrongSecret);
            assert!(message.contains("wrong secret"), "{message}");
        }
        other => panic!("a wrong secret was not refused: {other:?}"),
    }

    // Other protocol versions, newer and older: refused, naming the side to upgrade.
    for (proto, upgrade) in [
        (bridge::PROTO + 1, "upgrade the apiserver"),
        (0, "upgrade the sfuserver"),
    ] {
        let mut ws = bridge_conn(&url).await;
        let c = challenge(&mut ws).await;
        let mut v = serde_json::to_value(ToApi::Hello(hello_for(&c, SECRET, "127.0.0.79:443")))
            .expect("json");
        v["proto"] = json!(proto);
        v["a_field_from_the_future"] = json!(true);
        send(&mut ws, &v).await;
        match next_frame(&mut ws).await {
            ToNode::Refused { reason, message } => {
                assert_eq!(reason, bridge::Refusal::Version);
                assert!(message.contains(upgrade), "{message}");
                assert!(message.contains("bridge protocol mismatch"), "{message}");
            }
            other => panic!("protocol {proto} was not refused: {other:?}"),
        }
        app.wait_log(upgrade, Duration::from_secs(5));
    }
    // None of the refused nodes is in the registry.
    let db = app.data_dir().join("meeting.db");
    let conn = sea_orm::Database::connect(format!("sqlite://{}?mode=ro", db.display()))
        .await
        .expect("open the database");
    use sea_orm::EntityTrait;
    let ids: Vec<String> = meeting_appliance::db::entities::node::Entity::find()
        .all(&conn)
        .await
        .expect("nodes")
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert!(
        ids.contains(&"sfuserver@127.0.0.77:443".to_string()),
        "{ids:?}"
    );
    for bad in ["127.0.0.78", "127.0.0.79"] {
        assert!(
            !ids.iter().any(|i| i.contains(bad)),
            "{bad} registered: {ids:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_survives_apiserver_restart_and_sfuserver_loss() {
    if !enter_private_netns("split_survives_apiserver_restart_and_sfuserver_loss") {
        return;
    }
    let mut d = loopback_deployment(support::TEST_LOBBY);
    // A second sfuserver, for when the first is lost.
    let sfu2 = Appliance::start_exact(
        &[
            "sfuserver",
            "--secret",
            SECRET,
            "--domainaddress",
            "127.0.0.5:443",
            "--apiserver",
            "127.0.0.1:443",
        ],
        &d.dir.path().join("sfu2"),
    );
    wait_registered(&d.api, &["sfuserver@127.0.0.5:443"]);
    let api = "http://127.0.0.1:443";
    let host = sign_in(&d.api, &d.sink, "host@corp.test").await;
    let m = call(
        "POST",
        &format!("{api}/api/v1/meetings"),
        Some(&host),
        Some(json!({"title": "Faults"})),
    )
    .await;
    assert_eq!(m.status, 201, "{:?}", m.body);
    let id = m.body["id"].as_i64().expect("id");
    let code = m.body["code"].as_str().expect("code").to_string();
    let tj = join(api, &code, Some(&host), "Host").await;
    assert!(
        tj["sfu"]["signal_url"]
            .as_str()
            .is_some_and(|u| u.contains("127.0.0.2:443")),
        "{tj}"
    );
    let lj = join(api, &code, None, "Guest").await;
    let talker = Talker::join(&tj, "talker", false).await;
    let counter = Arc::new(AtomicU64::new(0));
    let listener = Listener::join(&lj, "listener", false, counter.clone()).await;
    listener
        .wait_more(50, Duration::from_secs(25), "audio before the faults")
        .await;

    // 1. The apiserver is killed for 10 s: media between the clients does not stop.
    d.api.signal(libc::SIGKILL);
    let _ = d.api.try_wait();
    let before = listener.count();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = listener.count() - before;
    println!("packets received while the apiserver was down for 10 s: {during}");
    assert!(
        during >= 300,
        "media stopped while the apiserver was down: {during} packets in 10 s"
    );
    // It comes back on the same database; the nodes re-register by themselves.
    let api_dir = d.dir.path().join("api");
    d.api = Appliance::start_exact(&s(&d.api_args), &api_dir);
    let restarted = Instant::now();
    wait_registered(
        &d.api,
        &[
            "sfuserver@127.0.0.2:443",
            "sfuserver@127.0.0.5:443",
            "turnserver@127.0.0.3:3478",
            "fsserver@127.0.0.4:443",
        ],
    );
    println!(
        "all four nodes re-registered {:?} after the apiserver restarted",
        restarted.elapsed()
    );
    // Host actions reach the meeting's sfuserver again (a new link).
    let c = call(
        "POST",
        &format!("{api}/api/v1/meetings/{id}/control"),
        Some(&host),
        Some(json!({"action": "mute", "participant_id": listener.client.participant_id()})),
    )
    .await;
    assert_eq!(c.status, 204, "{:?}", c.body);

    // 2. The meeting's sfuserver is lost: it is marked down at once, and the clients' fresh
    // joins land on the other sfuserver (here the allocator names it; the apiserver asks
    // again because the assigned one is down).
    d.alloc.set_response(
        200,
        r#"{"sfu":"127.0.0.5:443","turn":"127.0.0.3:3478","fs":"127.0.0.4:443"}"#,
    );
    let mark = d.api.log_len();
    d.sfu.signal(libc::SIGKILL);
    let _ = d.sfu.try_wait();
    d.api
        .wait_log_from(mark, "node down", Duration::from_secs(10));
    drop(talker);
    let _ = listener.client.pc.close().await;
    rejoin_and_talk(
        api,
        &code,
        &host,
        "127.0.0.5:443",
        "audio on the second sfuserver",
    )
    .await;
    let _ = (&sfu2, &d.turn, &d.fs);
}

/// Every process on its own host: network namespaces joined by veth links to one switch, TLS
/// with self-signed certificates on the private addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_roles_on_separate_hosts_run_the_one_box_scenario() {
    if !enter_private_netns("split_roles_on_separate_hosts_run_the_one_box_scenario") {
        return;
    }
    support::api::TRUST_ANY_CERTIFICATE.store(true, std::sync::atomic::Ordering::Relaxed);
    let hosts = Hosts::new(&["api", "sfu", "turn", "fs"]);
    let (api_ip, sfu_ip, turn_ip, fs_ip) = (
        hosts.ip("api"),
        hosts.ip("sfu"),
        hosts.ip("turn"),
        hosts.ip("fs"),
    );
    let alloc = FakeAllocator::start_on(support::split::SWITCH_IP.parse().expect("ip"));
    alloc.set_response(
        200,
        &format!(r#"{{"sfu":"{sfu_ip}:443","turn":"{turn_ip}:3478","fs":"{fs_ip}:443"}}"#),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_meeting-appliance");
    let start = |host: &str, args: Vec<String>| {
        let cwd = dir.path().join(host);
        std::fs::create_dir_all(cwd.join("meeting-data")).expect("dirs");
        let mut cmd = hosts.command(host, bin);
        cmd.args(&args).current_dir(&cwd);
        let listener = hosts.bind(host, support::ready::listen_address(&args, None));
        Appliance::spawn_in_netns(cmd, &cwd.join("meeting-data"), listener, hosts.netns(host))
    };
    let apiserver = format!("{api_ip}:443");
    // No mail server reachable from that host: sign-in codes go to its log.
    let api = start(
        "api",
        vec![
            "apiserver".into(),
            "--secret".into(),
            SECRET.into(),
            "--domainaddress".into(),
            apiserver.clone(),
            "--allocateserver".into(),
            alloc.url("/x7Qp-unguessable"),
        ],
    );
    let files = dir.path().join("files");
    let _sfu = start(
        "sfu",
        [
            "sfuserver",
            "--secret",
            SECRET,
            "--domainaddress",
            &format!("{sfu_ip}:443"),
            "--apiserver",
            &apiserver,
        ]
        .map(String::from)
        .to_vec(),
    );
    let turn = start(
        "turn",
        [
            "turnserver",
            "--secret",
            SECRET,
            "--port",
            "3478",
            "--ip",
            &turn_ip.to_string(),
            "--apiserver",
            &apiserver,
        ]
        .map(String::from)
        .to_vec(),
    );
    let _fs = start(
        "fs",
        [
            "fsserver",
            "--secret",
            SECRET,
            "--domainaddress",
            &format!("{fs_ip}:443"),
            "--directory",
            files.to_str().expect("utf-8"),
            "--apiserver",
            &apiserver,
        ]
        .map(String::from)
        .to_vec(),
    );
    wait_registered(
        &api,
        &[
            &format!("sfuserver@{sfu_ip}:443"),
            &format!("turnserver@{turn_ip}:3478"),
            &format!("fsserver@{fs_ip}:443"),
        ],
    );
    // The links are TLS to the apiserver's self-signed certificate, bound to the session.
    turn.wait_log(
        &format!("apiserver=wss://{api_ip}:443/bridge/v1"),
        Duration::from_secs(5),
    );
    let url = format!("https://{api_ip}:443");
    let host = sign_in_from_log(&api, "host@corp.test").await;
    let m = scenario(&url, &host, true).await;
    println!("scenario passed across four hosts (meeting {})", m.id);
}

/// The split from a config file: `roles = [...]` and `apiserver = "…"`, two roles in one
/// process, each registering on its own link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_split_registers_each_role() {
    let api = Appliance::start(&["apiserver", "--secret", SECRET], &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("node.toml");
    std::fs::write(
        &file,
        format!(
            "roles = [\"sfuserver\", \"turnserver\"]\napiserver = \"{}\"\nsecret = \"{SECRET}\"\n\
             domain_address = \"127.0.0.1:1\"\n[sfu]\nip = [\"127.0.0.1\"]\n[turn]\nip = \"127.0.0.1\"\n",
            api.addr()
        ),
    )
    .expect("write config");
    let node = Appliance::start_bin(
        env!("CARGO_BIN_EXE_meeting-appliance"),
        &dir.path().join("data"),
        &["--config", file.to_str().expect("utf-8")],
        &[],
    );
    wait_registered(&api, &["sfuserver@127.0.0.1:1", "turnserver@127.0.0.1:"]);
    // Stopping the node says goodbye: both are marked down at once, not after missed beats.
    let mark = api.log_len();
    node.stop();
    let down = api.wait_log_from(mark, "node down", Duration::from_secs(3));
    assert!(down.contains("bye"), "{down}");
}

/// The bridge to an apiserver whose certificate comes from ACME (Pebble), dialed by its DNS
/// name: the node resolves the name (a hosts file in its own mount namespace) and the proofs
/// bind to that TLS session as they do to a self-signed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_reaches_an_acme_apiserver_by_name() {
    use support::tls::Pebble;
    let pebble = Pebble::start();
    pebble.add_a("api.meet.test");
    let port = support::free_port();
    let dir = tempfile::tempdir().expect("data");
    let public = format!("api.meet.test:{port}");
    let listen = format!("127.0.0.1:{port}");
    let http_port = pebble.http_port.to_string();
    let ca_file = pebble.api_cert.to_str().expect("utf8").to_string();
    let env = [
        ("MEETING_TLS__ACME_DIRECTORY", pebble.directory_url.as_str()),
        ("MEETING_TLS__ACME_CA_FILE", ca_file.as_str()),
        ("MEETING_TLS__HTTP_PORT", http_port.as_str()),
    ];
    let api = Appliance::start_bin(
        env!("CARGO_BIN_EXE_meeting-appliance"),
        &dir.path().join("api"),
        &[
            "apiserver",
            "--secret",
            SECRET,
            "--listen",
            &listen,
            "--domainaddress",
            &public,
        ],
        &env,
    );
    api.wait_log("certificate obtained", Duration::from_secs(60));
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n127.0.0.1 api.meet.test\n").expect("hosts");
    let fs_dir = dir.path().join("files");
    let mut cmd = std::process::Command::new("unshare");
    cmd.args([
        "-m",
        "--",
        "sh",
        "-c",
        "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
    ])
    .arg(&hosts)
    .arg(env!("CARGO_BIN_EXE_meeting-appliance"))
    .args([
        "fsserver",
        "--secret",
        SECRET,
        "--domainaddress",
        "127.0.0.1:1",
        "--listen",
        "127.0.0.1:0",
        "--directory",
        fs_dir.to_str().expect("utf-8"),
        "--apiserver",
        &public,
        "--dataDir",
        dir.path().join("fs").to_str().expect("utf-8"),
    ]);
    std::fs::create_dir_all(dir.path().join("fs")).expect("dir");
    let node = Appliance::spawn(cmd, &dir.path().join("fs"));
    node.wait_log(
        &format!(
            "registered with the apiserver role=\"fsserver\" apiserver=wss://{public}/bridge/v1"
        ),
        Duration::from_secs(20),
    );
    wait_registered(&api, &["fsserver@127.0.0.1:1"]);
}

/// A small split deployment on loopback (inside the test's namespace): the apiserver on
/// 127.0.0.1:443 (built-in allocator, SQLite, codes in its log), an sfuserver on each of
/// `sfu_ips` registering through `sfu_apiserver`, a turnserver on 127.0.0.3; all registered,
/// the host signed in and its instant meeting created.
struct Small {
    api: Appliance,
    sfus: Vec<(String, Appliance)>,
    _turn: Appliance,
    host: String,
    id: i64,
    code: String,
    _dir: tempfile::TempDir,
}

const BASE: &str = "http://127.0.0.1:443";

async fn small_deployment(sfu_ips: &[&str], sfu_apiserver: &str) -> Small {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = Appliance::start_exact(
        &[
            "apiserver",
            "--secret",
            SECRET,
            "--domainaddress",
            "127.0.0.1:443",
        ],
        &dir.path().join("api"),
    );
    let sfus: Vec<(String, Appliance)> = sfu_ips
        .iter()
        .map(|ip| {
            let address = format!("{ip}:443");
            let app = Appliance::start_exact(
                &[
                    "sfuserver",
                    "--secret",
                    SECRET,
                    "--domainaddress",
                    &address,
                    "--apiserver",
                    sfu_apiserver,
                ],
                &dir.path().join(ip),
            );
            (address, app)
        })
        .collect();
    let turn = Appliance::start_exact(
        &[
            "turnserver",
            "--secret",
            SECRET,
            "--port",
            "3478",
            "--ip",
            "127.0.0.3",
            "--apiserver",
            "127.0.0.1:443",
        ],
        &dir.path().join("turn"),
    );
    let mut ids: Vec<String> = sfus.iter().map(|(a, _)| format!("sfuserver@{a}")).collect();
    ids.push("turnserver@127.0.0.3:3478".into());
    wait_registered(&api, &ids.iter().map(String::as_str).collect::<Vec<_>>());
    let host = sign_in_from_log(&api, "host@corp.test").await;
    let m = call(
        "POST",
        &format!("{BASE}/api/v1/meetings"),
        Some(&host),
        Some(json!({})),
    )
    .await;
    assert_eq!(m.status, 201, "{:?}", m.body);
    Small {
        api,
        sfus,
        _turn: turn,
        host,
        id: m.body["id"].as_i64().expect("id"),
        code: m.body["code"].as_str().expect("code").to_string(),
        _dir: dir,
    }
}

/// The built-in allocator takes its pool from the node registry: with two sfuservers
/// registered and no pool configured, a meeting whose sfuserver is lost moves to the other,
/// and a down node is never handed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_allocator_moves_meetings_off_a_lost_sfuserver() {
    if !enter_private_netns("builtin_allocator_moves_meetings_off_a_lost_sfuserver") {
        return;
    }
    let mut d = small_deployment(&["127.0.0.2", "127.0.0.5"], "127.0.0.1:443").await;
    let (base, host, code, api) = (BASE, d.host.clone(), d.code.clone(), &d.api);
    let j = join(base, &code, Some(&host), "Host").await;
    let first = j["sfu"]["address"]
        .as_str()
        .expect("sfu address")
        .to_string();
    assert!(
        j["ice_servers"].to_string().contains("127.0.0.3:3478"),
        "{j}"
    );
    let i = d
        .sfus
        .iter()
        .position(|(a, _)| *a == first)
        .expect("the meeting's sfuserver");
    let other = d.sfus[1 - i].0.clone();
    let lost = &mut d.sfus[i].1;
    let mark = api.log_len();
    lost.signal(libc::SIGKILL);
    let _ = lost.try_wait();
    let down = api.wait_log_from(mark, "node down:", Duration::from_secs(10));
    assert!(down.contains(&format!("sfuserver@{first}")), "{down}");
    // Every join from now on lands on the sfuserver that is up, and media flows there.
    rejoin_and_talk(
        base,
        &code,
        &host,
        &other,
        "audio on the sfuserver that is up",
    )
    .await;
    // A new meeting is never given the down node either.
    let m2 = call(
        "POST",
        &format!("{base}/api/v1/meetings"),
        Some(&host),
        Some(json!({"title": "Later", "begin_at": 4102444800i64, "end_at": 4102448400i64})),
    )
    .await;
    assert_eq!(m2.status, 201, "{:?}", m2.body);
    let j2 = join(
        base,
        m2.body["code"].as_str().expect("code"),
        Some(&host),
        "Host",
    )
    .await;
    assert_eq!(j2["sfu"]["address"], other, "{j2}");
}

/// An sfuserver that is stopped (SIGTERM: a restart, an upgrade) tells its clients, says bye
/// to the apiserver first, and stops at once; the clients' fresh joins go to the other one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sfuserver_restart_tells_clients_who_rejoin_elsewhere() {
    if !enter_private_netns("sfuserver_restart_tells_clients_who_rejoin_elsewhere") {
        return;
    }
    let d = small_deployment(&["127.0.0.2", "127.0.0.5"], "127.0.0.1:443").await;
    let (base, host, code, api) = (BASE, d.host.clone(), d.code.clone(), &d.api);
    let mut sfus = d.sfus;
    let tj = join(base, &code, Some(&host), "Host").await;
    let lj = join(base, &code, None, "Guest").await;
    let first = tj["sfu"]["address"].as_str().expect("address").to_string();
    let talker = Talker::join(&tj, "talker", false).await;
    let listener = Listener::join(&lj, "listener", false, Arc::new(AtomicU64::new(0))).await;
    listener
        .wait_more(50, Duration::from_secs(25), "audio before the restart")
        .await;

    let i = sfus
        .iter()
        .position(|(a, _)| *a == first)
        .expect("the meeting's sfuserver");
    let (_, mut stopping) = sfus.remove(i);
    let other = sfus[0].0.clone();
    let mark = api.log_len();
    let t0 = Instant::now();
    stopping.signal(libc::SIGTERM);
    for c in [&talker.client, &listener.client] {
        c.wait(Duration::from_secs(5), "closed: server_shutdown", |c| {
            c.messages_of("closed")
                .iter()
                .any(|m| m["reason"] == "server_shutdown")
        })
        .await;
    }
    let down = api.wait_log_from(mark, "node down:", Duration::from_secs(5));
    assert!(down.contains("bye") && down.contains(&first), "{down}");
    let status = support::wait_until(Duration::from_secs(5), "the sfuserver to exit", || {
        stopping.try_wait()
    });
    assert!(status.success(), "{status}");
    println!("the sfuserver stopped {:?} after SIGTERM", t0.elapsed());
    // The leaves arrived before the bye: the history says both left.
    let p = call(
        "GET",
        &format!("{base}/api/v1/meetings/{}/participants", d.id),
        Some(&host),
        None,
    )
    .await;
    let left = p
        .body
        .as_array()
        .map_or(0, |l| l.iter().filter(|x| x["left_at"].is_i64()).count());
    assert_eq!(left, 2, "{:?}", p.body);
    drop(talker);
    rejoin_and_talk(
        base,
        &code,
        &host,
        &other,
        "audio after rejoining elsewhere",
    )
    .await;
}

/// A flapping bridge link loses no command and doubles none: a host action sent while the
/// sfuserver's link is down waits for it to come back and is done exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_survive_a_flapping_bridge_link_exactly_once() {
    if !enter_private_netns("commands_survive_a_flapping_bridge_link_exactly_once") {
        return;
    }
    let relay = support::split::Flappy::start("127.0.0.1:443".parse().expect("addr")).await;
    let d = small_deployment(&["127.0.0.2"], &relay.addr.to_string()).await;
    let (base, host, code, api, id) = (BASE, d.host.clone(), d.code.clone(), &d.api, d.id);
    let lj = join(base, &code, None, "Guest").await;
    assert_eq!(lj["sfu"]["address"], "127.0.0.2:443", "{lj}");
    let listener = Listener::join(&lj, "listener", false, Arc::new(AtomicU64::new(0))).await;
    let guest = listener.client.participant_id().to_string();

    relay.wait_for("registrations", Flappy::registered, 1).await;
    // Cut the link (the relay closes both ends); the node dials again through the relay.
    let dialed = relay.accepted();
    relay.cut();
    relay
        .wait_for("new links", Flappy::accepted, dialed + 1)
        .await;
    let control_url = format!("{base}/api/v1/meetings/{id}/control");
    let mute = call(
        "POST",
        &control_url,
        Some(&host),
        Some(json!({"action": "mute", "participant_id": guest})),
    );
    let (answer, _) = tokio::join!(mute, async {
        // Cut again while the command waits, so it rides a later link.
        tokio::time::sleep(Duration::from_millis(100)).await;
        relay.cut();
    });
    assert_eq!(answer.status, 204, "{:?}", answer.body);
    // Answered: a link carried it, so the node is registered again.
    wait_registered(api, &["sfuserver@127.0.0.2:443"]);
    listener
        .client
        .wait(Duration::from_secs(5), "the mute", |c| {
            !c.messages_of("mute").is_empty()
        })
        .await;
    // More flaps after it was done, each until the node is registered again: it is not done
    // again.
    for _ in 0..2 {
        let n = relay.registered();
        relay.cut();
        relay
            .wait_for("registrations", Flappy::registered, n + 1)
            .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mutes = listener.client.messages_of("mute");
    assert_eq!(
        mutes.len(),
        1,
        "the mute arrived {} times: {mutes:?}",
        mutes.len()
    );
}

/// A raw signaling session on the split deployment: `join` sent, the first answer read.
async fn signal_session(
    j: &Value,
) -> (
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    Value,
) {
    let mut ws = support::signal::connect(j).await.ws;
    let first = next_of(&mut ws, "").await;
    (ws, first)
}

/// The next signaling message of type `ty` ("": any), within 10 s.
async fn next_of(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    ty: &str,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).expect("json");
                if ty.is_empty() || v["type"] == ty {
                    return v;
                }
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("no {ty:?} message: {other:?}"),
        }
    }
}

/// Running a meeting on the split deployment: the lobby and a co-host's actions are the
/// sfuserver's on its own host, and what the apiserver must learn crosses the bridge: a
/// lobby guest gets no notes until a co-host admits it, a guest the co-host removes over
/// signaling cannot join again, and the chat is stored by the apiserver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_deployment_runs_the_lobby_cohosts_and_chat() {
    if !enter_private_netns("split_deployment_runs_the_lobby_cohosts_and_chat") {
        return;
    }
    let d = loopback_deployment(support::TEST_LOBBY);
    let api = "http://127.0.0.1:443";
    let owner = sign_in(&d.api, &d.sink, "owner@corp.test").await;
    let co = sign_in(&d.api, &d.sink, "co@corp.test").await;
    let m = call(
        "POST",
        &format!("{api}/api/v1/meetings"),
        Some(&owner),
        Some(json!({"lobby": "guests", "cohosts": ["co@corp.test"]})),
    )
    .await;
    assert_eq!(m.status, 201, "{}", m.body);
    let (id, code) = (
        m.body["id"].as_i64().expect("id"),
        m.body["code"].as_str().expect("code").to_string(),
    );
    let jc = join(api, &code, Some(&co), "Co").await;
    assert_eq!(jc["role"], "cohost");
    let (mut cohost, first) = signal_session(&jc).await;
    assert_eq!(first["type"], "joined", "{first}");
    let jg = join(api, &code, None, "Gina").await;
    assert_eq!(jg["lobby"], true);
    let gpid = jg["participant_id"].as_str().expect("pid").to_string();
    let (mut guest, first) = signal_session(&jg).await;
    assert_eq!(first["type"], "waiting", "{first}");
    let notes = |tok: String| async move {
        support::api::client()
            .get(format!("{api}/api/v1/meetings/{id}/notes"))
            .header("X-Join-Token", tok)
            .send()
            .await
            .expect("notes")
            .status()
            .as_u16()
    };
    let gtok = jg["token"].as_str().expect("token").to_string();
    assert_eq!(notes(gtok.clone()).await, 403, "no notes from the lobby");
    cohost
        .send(Message::text(
            json!({"type": "host", "action": {"action": "admit", "participant_id": gpid}})
                .to_string(),
        ))
        .await
        .expect("admit");
    next_of(&mut guest, "joined").await;
    support::api::eventually(
        "the admitted guest's notes (entry reported over the bridge)",
        || {
            let t = gtok.clone();
            async move { notes(t).await == 200 }
        },
    )
    .await;
    guest
        .send(Message::text(
            json!({"type": "chat", "text": "hello over the bridge"}).to_string(),
        ))
        .await
        .expect("chat");
    next_of(&mut cohost, "chat").await;
    cohost
        .send(Message::text(
            json!({"type": "host", "action": {"action": "remove", "participant_id": gpid}})
                .to_string(),
        ))
        .await
        .expect("remove");
    let closed = next_of(&mut guest, "closed").await;
    assert_eq!(closed["reason"], "removed");
    // The removal reached the apiserver over the bridge: the same browser may not rejoin.
    let db = d.db_name.clone();
    let removed = || {
        shared_mariadb().root_sql(&format!(
            "SELECT COUNT(*) FROM `{db}`.participations WHERE participant_id = '{gpid}' AND removed_at IS NOT NULL"
        ))
    };
    support::wait_until(Duration::from_secs(10), "the removal recorded", || {
        (removed().trim() == "1").then_some(())
    });
    let stored = || {
        shared_mariadb().root_sql(&format!(
            "SELECT text FROM `{db}`.chat_messages WHERE meeting_id = {id}"
        ))
    };
    support::wait_until(Duration::from_secs(10), "the chat stored", || {
        stored().contains("hello over the bridge").then_some(())
    });
}
