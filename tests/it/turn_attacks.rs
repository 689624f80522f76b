//! Attacks on the turnserver (allocation exhaustion, idle slots, peer policy), each run against
//! the real binary in its own private network namespace (loopback, plus addresses the test
//! adds to it), and each showing the limit holding while another client is unharmed:
//!
//! - many credentials from one address cannot take every relay port (UDP, TCP and TLS alike);
//! - one meeting's credentials cannot hold more than its share;
//! - a TCP/TLS connection flood from one address is capped, another address still connects;
//! - an unauthenticated Binding does not keep a TCP connection open past 10 s;
//! - relaying to this box's own addresses and to the NAT64 local-use prefix is refused.
//!
//! Credentials are minted with the deployment's keys exactly as `POST /api/v1/join` mints
//! them (one join checks that), so an attacker's hundreds of joins take no time here.

use crate::support;

use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use meeting_appliance::ids::{MeetingId, ParticipantId};
use meeting_appliance::roles::turnserver::client::{Transport, TurnClient, TurnError};
use meeting_appliance::tokens::Keys;
use support::Appliance;
use support::api::call;
use support::media::{enter_private_netns, metric, sign_in_from_log};

const SECRET: &str = "turn-attack-tests-deployment-secret";
/// Fixed ports: each test owns its namespace.
const TURN: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 3478);
const TURNS: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5349);
const OTHER_CLIENT: &str = "127.0.0.2";

fn appliance(env: &[(&str, &str)], extra: &[&str]) -> Appliance {
    let mut envs = vec![
        ("MEETING_TURN__PORT", "3478"),
        ("MEETING_TURN__TLS_PORT", "5349"),
    ];
    envs.extend_from_slice(env);
    let mut args = vec!["--secret", SECRET, "--udpPort", "0"];
    args.extend_from_slice(extra);
    Appliance::start(&args, &envs)
}

/// An appliance with a certificate from `ca` (so it serves TURN over TLS too).
fn tls_appliance(
    ca: &support::tls::TestCa,
    dir: &std::path::Path,
    env: &[(&str, &str)],
) -> Appliance {
    let (cert, key) = ca.leaf(&["127.0.0.1"], 86400);
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert).expect("write cert");
    std::fs::write(&k, key).expect("write key");
    let (c, k) = (c.to_str().expect("utf8"), k.to_str().expect("utf8"));
    let listen = "127.0.0.1:8443";
    appliance(
        env,
        &[
            "--listen",
            listen,
            "--domainaddress",
            listen,
            "--cert",
            c,
            "--certkey",
            k,
        ],
    )
}

/// What `/join` hands a participant of `meeting`: fresh REST credentials.
fn credentials(meeting: i64) -> (String, String) {
    Keys::derive(SECRET).turn_credentials(
        MeetingId(meeting),
        &ParticipantId::random(),
        meeting_appliance::util::now() + 600,
    )
}

/// A client of `transport` (from `from`, else the default 127.0.0.1) with `creds`.
async fn client(
    transport: Transport,
    from: Option<&str>,
    creds: &(String, String),
    ca: Option<&str>,
) -> TurnClient {
    let (u, p) = creds;
    match transport {
        Transport::Tls => TurnClient::connect_tls(TURNS, "127.0.0.1", ca, u, p).await,
        t => {
            let from = from.map(|ip| ip.parse().expect("ip"));
            TurnClient::connect_from(from, TURN, t, u, p).await
        }
    }
    .expect("connects")
}

fn code(r: &Result<impl std::fmt::Debug, TurnError>) -> Option<u16> {
    r.as_ref().err().and_then(|e| e.code())
}

/// 40 relay ports, and an attacker with 40 fresh credentials (as 40 joins give) from one
/// address over UDP, TCP and TLS: before the per-address cap it took all 40 ports and the
/// next person got none. Now it gets 10 (`max_allocations_per_ip`), the rest 486, and a client
/// from another address still gets a relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_credentials_from_one_address_cannot_take_every_relay_port() {
    if !enter_private_netns("many_credentials_from_one_address_cannot_take_every_relay_port") {
        return;
    }
    let ca = support::tls::TestCa::new();
    let dir = tempfile::tempdir().expect("tmp");
    let _app = tls_appliance(
        &ca,
        dir.path(),
        &[
            ("MEETING_TURN__RELAY_PORT_MIN", "50000"),
            ("MEETING_TURN__RELAY_PORT_MAX", "50039"),
            ("MEETING_TURN__MAX_ALLOCATIONS_PER_IP", "10"),
            // coturn's echo peer (below) is on loopback.
            ("MEETING_TURN__ALLOWED_PEERS", "127.0.0.1/32"),
        ],
    );
    let mut held = Vec::new();
    let (mut granted, mut refused) = (0, 0);
    for i in 0..40 {
        let transport = [Transport::Udp, Transport::Tcp, Transport::Tls][i % 3];
        // Every credential of another meeting too: only the per-address cap applies.
        let creds = credentials(1000 + i as i64);
        let mut c = client(transport, None, &creds, Some(&ca.pem)).await;
        let r = c.allocate(None, false).await;
        match code(&r) {
            None => {
                r.expect("allocated");
                granted += 1;
                held.push(c);
            }
            Some(486) => refused += 1,
            other => panic!("allocation {i} over {}: {other:?} {r:?}", transport.name()),
        }
    }
    assert_eq!((granted, refused), (10, 30), "one address's allocations");
    // Another address: relay ports are left, over each transport.
    let victim = credentials(2000);
    let mut v = client(Transport::Udp, Some(OTHER_CLIENT), &victim, None).await;
    let a = v
        .allocate(None, false)
        .await
        .expect("another address still gets a relay");
    assert!((50000..=50039).contains(&a.relayed.port()), "{a:?}");
    assert_eq!(a.mapped.ip().to_string(), OTHER_CLIENT);
    let mut t = client(Transport::Tcp, Some(OTHER_CLIENT), &credentials(2001), None).await;
    t.allocate(None, false).await.expect("and over TCP");
    // coturn's client sees the same: refused from the attacker's address, relaying without
    // loss from the other one.
    let key = Keys::derive(SECRET).turn_secret().to_string();
    let _peer = support::TiedChild::spawn({
        let mut c = std::process::Command::new("/usr/bin/turnutils_peer");
        c.args(["-L", "127.0.0.1", "-p", "3480"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    })
    .expect("turnutils_peer (Debian package coturn) starts");
    let uclient = |from: &str| {
        let o = support::run_cli(
            "/usr/bin/turnutils_uclient",
            &[
                "-W",
                &key,
                "-u",
                "someone",
                "-c",
                "-n",
                "20",
                "-z",
                "10",
                "-e",
                "127.0.0.1",
                "-r",
                "3480",
                "-L",
                from,
                "-p",
                "3478",
                "127.0.0.1",
            ],
        );
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.success(), out)
    };
    let (ok, out) = tokio::task::block_in_place(|| uclient("127.0.0.1"));
    assert!(
        !ok && out.contains("error 486") && !out.contains("Total lost packets"),
        "{out}"
    );
    let (ok, out) = tokio::task::block_in_place(|| uclient(OTHER_CLIENT));
    assert!(
        ok && out.contains("Total lost packets 0 (0.000000%)"),
        "{out}"
    );
    // A TCP allocation given back (its connection closed) makes room for the attacker again:
    // the count follows the allocations, it does not leak.
    let tcp_at = held
        .iter()
        .position(|c| c.transport() == Transport::Tcp)
        .expect("the attacker holds a TCP allocation");
    drop(held.remove(tcp_at));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = client(Transport::Udp, None, &credentials(3000), None).await;
        match c.allocate(None, false).await {
            Ok(_) => break,
            Err(e) if e.code() == Some(486) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the freed slot never came back: {e}"),
        }
    }
}

/// One meeting's credentials hold at most `max_allocations_per_meeting` allocations, from
/// any addresses; other meetings and credentials of the old form (`expiry:participant`,
/// handed out before the upgrade) are not affected, and a freed allocation makes room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_meeting_cannot_hold_more_than_its_share() {
    if !enter_private_netns("one_meeting_cannot_hold_more_than_its_share") {
        return;
    }
    let app = appliance(&[("MEETING_TURN__MAX_ALLOCATIONS_PER_MEETING", "5")], &[]);
    // The credentials of a real join name the meeting.
    let token = sign_in_from_log(&app, "host@corp.test").await;
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&token),
        Some(json!({})),
    )
    .await;
    assert_eq!(m.status, 201, "{:?}", m.body);
    let code_ = m.body["code"].as_str().expect("code");
    let j = call(
        "POST",
        &app.url(&format!("/api/v1/join/{code_}")),
        None,
        Some(json!({"display_name": "Guest"})),
    )
    .await;
    assert_eq!(j.status, 200, "{:?}", j.body);
    let meeting = j.body["meeting"]["id"].as_i64().expect("meeting id");
    let turn = &j.body["ice_servers"][1];
    let joined = (
        turn["username"].as_str().expect("username").to_string(),
        turn["credential"].as_str().expect("credential").to_string(),
    );
    let (expiry, user) = joined.0.split_once(':').expect("expiry:user");
    let ttl = expiry.parse::<i64>().expect("expiry") - meeting_appliance::util::now();
    assert!(
        (6 * 3600 - 60..=6 * 3600).contains(&ttl),
        "credentials last 6 h: {ttl}"
    );
    assert!(user.starts_with(&format!("{meeting}.p")), "{}", joined.0);

    // Seven participants of the meeting, from two addresses: five get a relay.
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..7 {
        let creds = if i == 0 {
            joined.clone()
        } else {
            credentials(meeting)
        };
        let from = [None, Some(OTHER_CLIENT)][i % 2];
        let mut c = client(Transport::Udp, from, &creds, None).await;
        match c.allocate(None, false).await {
            Ok(_) => held.push(c),
            Err(e) if e.code() == Some(486) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((held.len(), refused), (5, 2));
    assert_eq!(
        metric(
            &app,
            "meeting_turn_rejected_requests_total{reason=\"quota_meeting\"}"
        )
        .await,
        2.0
    );
    // Another meeting, and old-form credentials, are not held back by it.
    let mut other = client(Transport::Udp, None, &credentials(meeting + 1), None).await;
    other.allocate(None, false).await.expect("another meeting");
    let old_user = format!("{}:pOldForm", meeting_appliance::util::now() + 600);
    let old_pw =
        meeting_appliance::tokens::turn_password(Keys::derive(SECRET).turn_secret(), &old_user);
    let mut old = client(Transport::Tcp, None, &(old_user, old_pw), None).await;
    old.allocate(None, false)
        .await
        .expect("old-form credentials");
    // One participant leaves (Refresh 0): one more may come in (as soon as the engine has
    // closed the allocation), and then no more.
    held[0].refresh(0).await.expect("deallocate");
    let deadline = Instant::now() + Duration::from_secs(10);
    let _late = loop {
        let mut late = client(Transport::Udp, None, &credentials(meeting), None).await;
        match late.allocate(None, false).await {
            Ok(_) => break late,
            Err(e) if e.code() == Some(486) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the freed place never came back: {e}"),
        }
    };
    let mut later = client(Transport::Udp, None, &credentials(meeting), None).await;
    assert_eq!(code(&later.allocate(None, false).await), Some(486));
}

/// Opens `n` TCP connections to `to` from this address; those the server resets before the
/// connect call returns are left out.
async fn open(n: usize, to: SocketAddr) -> Vec<tokio::net::TcpStream> {
    let mut v = Vec::new();
    for _ in 0..n {
        match tokio::net::TcpStream::connect(to).await {
            Ok(s) => v.push(s),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connect: {e}"),
        }
    }
    v
}

/// How many of `conns` the server keeps open (the others it resets at once).
async fn still_open(conns: &mut [tokio::net::TcpStream]) -> usize {
    let mut open = 0;
    for c in conns.iter_mut() {
        let mut b = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(200), c.read(&mut b))
            .await
            .is_err()
        {
            open += 1;
        }
    }
    open
}

/// A flood of TCP and TLS connections from one address (before: 10,000 slots for anyone) is
/// capped at `max_tcp_connections_per_ip` for both listeners together, while another address
/// connects and allocates; once the flood ends its slots serve again (over TLS here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_tls_connection_flood_from_one_address_is_capped() {
    if !enter_private_netns("tcp_and_tls_connection_flood_from_one_address_is_capped") {
        return;
    }
    let ca = support::tls::TestCa::new();
    let dir = tempfile::tempdir().expect("tmp");
    let _app = tls_appliance(
        &ca,
        dir.path(),
        &[("MEETING_TURN__MAX_TCP_CONNECTIONS_PER_IP", "16")],
    );
    let started = Instant::now();
    let mut flood = open(60, TURN).await;
    flood.extend(open(60, TURNS).await);
    // The server has accepted and judged them all once a later connection is served.
    let mut probe = client(Transport::Tcp, Some(OTHER_CLIENT), &credentials(1), None).await;
    probe.binding().await.expect("another address is served");
    let open_now = still_open(&mut flood).await;
    // Well inside the 10 s a connection without allocation gets.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "too slow to judge"
    );
    assert_eq!(open_now, 16, "connections kept from one address");
    // Another address connects and allocates, over TCP and over TLS.
    let (u, p) = credentials(2);
    probe
        .allocate(None, false)
        .await
        .expect("TCP from another address");
    let mut other = TurnClient::connect_tls(TURNS, "127.0.0.1", Some(&ca.pem), &u, &p)
        .await
        .map(Some)
        .unwrap_or(None);
    // From 127.0.0.1 the TLS port is full: the handshake fails (reset).
    assert!(other.is_none() || other.as_mut().expect("some").binding().await.is_err());
    drop(flood);
    // Once the flood is gone its slots are free again.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut tls = loop {
        if let Ok(mut c) = TurnClient::connect_tls(TURNS, "127.0.0.1", Some(&ca.pem), &u, &p).await
            && c.binding().await.is_ok()
        {
            break c;
        }
        assert!(Instant::now() < deadline, "the slots were not given back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tls.allocate(None, false).await.expect("TLS allocation");
}

/// A STUN Binding request (unauthenticated: anyone may send one).
fn binding_request(i: u8) -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
    m.extend_from_slice(&[i; 12]);
    m
}

/// Before, one unauthenticated Binding raised a TCP connection's idle timeout from 10 s to
/// 1 h. Now only an allocation does: a connection sending nothing but Bindings (one every
/// 2 s) is closed about 10 s after it was accepted, while one holding an allocation stays
/// open past that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_bindings_do_not_keep_a_tcp_connection_open() {
    if !enter_private_netns("unauthenticated_bindings_do_not_keep_a_tcp_connection_open") {
        return;
    }
    let _app = appliance(&[], &[]);
    let mut allocated = client(Transport::Tcp, Some(OTHER_CLIENT), &credentials(1), None).await;
    allocated.allocate(None, false).await.expect("allocate");
    let mut idle = tokio::net::TcpStream::connect(TURN).await.expect("connect");
    let started = Instant::now();
    let mut answers = 0;
    let closed_after = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the connection is still open after 30 s ({answers} Bindings answered)"
        );
        if idle
            .write_all(&binding_request(answers as u8))
            .await
            .is_err()
        {
            break started.elapsed();
        }
        let mut hdr = [0u8; 20];
        match tokio::time::timeout(Duration::from_secs(2), idle.read_exact(&mut hdr)).await {
            Ok(Ok(_)) => {
                assert_eq!(&hdr[..2], &[0x01, 0x01], "a Binding success answer");
                let len = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
                let mut body = vec![0u8; len];
                idle.read_exact(&mut body).await.expect("body");
                answers += 1;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Ok(Err(_)) => break started.elapsed(),
            Err(_) => {}
        }
    };
    assert!(answers >= 3, "Bindings were answered meanwhile: {answers}");
    assert!(
        closed_after >= Duration::from_secs(8),
        "closed after {closed_after:?}: not by the 10 s limit"
    );
    // The allocated connection outlived it and still works.
    assert_eq!(
        allocated
            .refresh(300)
            .await
            .expect("refresh on the old connection"),
        300
    );
}

fn ip_add(addr: &str) {
    let st = std::process::Command::new("ip")
        .args(["addr", "add", addr, "dev", "lo"])
        .status()
        .expect("ip runs");
    assert!(st.success(), "ip addr add {addr} dev lo");
}

/// A UDP service on `ip` that counts what it gets.
async fn service(ip: &str) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let sock = tokio::net::UdpSocket::bind((ip.parse::<IpAddr>().expect("ip"), 0))
        .await
        .expect("bind");
    let addr = sock.local_addr().expect("addr");
    let n = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = n.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while sock.recv_from(&mut buf).await.is_ok() {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    (addr, n)
}

/// The box's own public addresses are not private, so before, the relay reached services on
/// them (the apiserver, `/metrics`, a database bound to all addresses) from the box itself.
/// Now every interface address (re-read while running), the configured public IP (`turn.ip`,
/// which a VM behind 1:1 NAT has on no interface) and the NAT64 local-use prefix
/// 64:ff9b:1::/48 are refused with 403, and nothing reaches such a service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaying_to_this_box_and_to_nat64_local_use_is_refused() {
    if !enter_private_netns("relaying_to_this_box_and_to_nat64_local_use_is_refused") {
        return;
    }
    meeting_appliance::util::install_ring_provider();
    // A public-looking address of this box (it exists only inside this namespace).
    ip_add("203.0.113.7/32");
    let (svc, got) = service("203.0.113.7").await;
    // The advertised IP is on no interface, as behind 1:1 NAT.
    let app = appliance(&[("MEETING_TURN__IP", "198.51.100.9")], &[]);
    let mut c = client(Transport::Udp, None, &credentials(1), None).await;
    let a = c.allocate(None, false).await.expect("allocate");
    assert_eq!(a.relayed.ip().to_string(), "198.51.100.9");
    let public_ip_service: SocketAddr = "198.51.100.9:8080".parse().expect("addr");
    let api_on_public_address = SocketAddr::new(svc.ip(), app.addr().port());
    for peer in [
        svc,
        api_on_public_address,
        public_ip_service,
        "[64:ff9b:1::cb00:7107]:53".parse().expect("addr"),
        "[64:ff9b:1:ab::1]:9".parse().expect("addr"),
    ] {
        assert_eq!(
            code(&c.create_permission(&[peer]).await),
            Some(403),
            "{peer}"
        );
        assert_eq!(
            code(&c.channel_bind(0x4001, peer).await),
            Some(403),
            "{peer}"
        );
    }
    // A Send indication without permission does not get through either.
    c.send_indication(svc, b"hello").await.expect("send");
    // Another public address is a peer like any other (the permission sends nothing).
    c.create_permission(&["198.51.100.10:9".parse().expect("addr")])
        .await
        .expect("another host is allowed");
    // An address the box gets while running is refused once the list is read again (10 s).
    ip_add("203.0.113.8/32");
    let new_own: SocketAddr = "203.0.113.8:9".parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        match c.create_permission(&[new_own]).await {
            Err(e) if e.code() == Some(403) => break,
            Ok(()) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            r => panic!("{new_own} after 25 s: {r:?}"),
        }
    }
    assert!(
        metric(
            &app,
            "meeting_turn_rejected_requests_total{reason=\"forbidden_peer\"}"
        )
        .await
            >= 10.0
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        got.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "the service got packets"
    );
}
