//! The turnserver against real clients, each test in its own private network namespace (only
//! loopback, plus addresses the test adds to it): coturn's own `turnutils_uclient` with
//! credentials from our apiserver, coturn itself with the same secret (drop-in both ways),
//! our `turn-check`, and our TURN client for the safety rules (private peers, quota,
//! lifetime, bandwidth, rate limits, TCP disconnects).

use crate::support;

use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use meeting_appliance::roles::turnserver::client::{Transport, TurnClient};
use meeting_appliance::tokens::{Keys, turn_password};
use support::api::call;
use support::media::{browser_scenario, enter_private_netns, media_addr, metric, sign_in_from_log};
use support::{Appliance, TiedChild, appliance_bin, port_open, run_cli, wait_until};

/// The deployment secret of every appliance here; the TURN key derives from it.
const SECRET: &str = "turn-tests-deployment-secret";

fn turn_key() -> String {
    Keys::derive(SECRET).turn_secret().to_string()
}

fn tool(name: &str) -> &'static str {
    let path: &'static str = Box::leak(format!("/usr/bin/{name}").into_boxed_str());
    assert!(
        std::path::Path::new(path).exists(),
        "{name} missing: run scripts/test-deps.sh (Debian package coturn)"
    );
    path
}

/// Our appliance on loopback with the TURN port chosen by the system.
fn appliance(env: &[(&str, &str)], extra: &[&str]) -> Appliance {
    let mut args = vec!["--secret", SECRET, "--port", "0"];
    if !extra.contains(&"--udpPort") {
        args.extend(["--udpPort", "0"]);
    }
    args.extend(extra);
    Appliance::start(&args, env)
}

/// What a join answer hands a browser for TURN: the server and REST credentials.
struct TurnCreds {
    server: SocketAddr,
    username: String,
    password: String,
}

/// A new instant meeting's join code.
async fn meeting_code(app: &Appliance) -> String {
    let token = sign_in_from_log(app, "host@corp.test").await;
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&token),
        Some(json!({})),
    )
    .await;
    assert_eq!(m.status, 201, "{:?}", m.body);
    m.body["code"].as_str().expect("code").to_string()
}

async fn join_credentials(app: &Appliance) -> TurnCreds {
    let code = meeting_code(app).await;
    let j = call(
        "POST",
        &app.url(&format!("/api/v1/join/{code}")),
        None,
        Some(json!({"display_name": "Guest"})),
    )
    .await;
    assert_eq!(j.status, 200, "{:?}", j.body);
    let turn = j.body["ice_servers"]
        .as_array()
        .expect("ice_servers")
        .iter()
        .find(|s| s["username"].is_string())
        .expect("an ICE server with credentials")
        .clone();
    let urls: Vec<&str> = turn["urls"]
        .as_array()
        .expect("urls")
        .iter()
        .filter_map(|u| u.as_str())
        .collect();
    assert!(
        urls.iter().any(|u| u.ends_with("?transport=udp"))
            && urls.iter().any(|u| u.ends_with("?transport=tcp")),
        "turn: URLs for UDP and TCP: {urls:?}"
    );
    let hostport = urls[0]
        .strip_prefix("turn:")
        .and_then(|u| u.split('?').next())
        .expect("turn:host:port");
    TurnCreds {
        server: hostport.parse().expect("the turn URL names an address"),
        username: turn["username"].as_str().expect("username").to_string(),
        password: turn["credential"].as_str().expect("credential").to_string(),
    }
}

/// coturn's UDP peer (echoes what it gets) on 127.0.0.1:`port`.
fn uclient_peer(port: u16) -> TiedChild {
    let mut cmd = Command::new(tool("turnutils_peer"));
    cmd.args(["-L", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    TiedChild::spawn(cmd).expect("turnutils_peer starts")
}

/// One `turnutils_uclient` run, its summary read from its output.
#[derive(Debug)]
struct Uclient {
    success: bool,
    sent: u64,
    received: u64,
    lost: Option<u64>,
    output: String,
}

impl Uclient {
    fn run(args: &[&str]) -> Uclient {
        let o = run_cli(tool("turnutils_uclient"), args);
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let num_after = |key: &str| -> Option<u64> {
            output.lines().rev().find_map(|l| {
                let rest = &l[l.find(key)? + key.len()..];
                let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                digits.parse().ok()
            })
        };
        Uclient {
            success: o.status.success(),
            sent: num_after("tot_send_msgs=").unwrap_or(0),
            received: num_after("tot_recv_msgs=").unwrap_or(0),
            lost: num_after("Total lost packets "),
            output,
        }
    }

    /// Every message came back: the run's own loss figure is 0 and nothing is missing.
    fn assert_lossless(&self, what: &str) {
        assert!(self.success, "{what}: uclient failed:\n{}", self.output);
        assert!(self.sent > 0, "{what}: nothing sent:\n{}", self.output);
        assert_eq!(
            (self.received, self.lost),
            (self.sent, Some(0)),
            "{what}: loss:\n{}",
            self.output
        );
        assert!(
            self.output.contains("Total lost packets 0 (0.000000%)"),
            "{what}:\n{}",
            self.output
        );
    }

    fn assert_cannot_allocate(&self, what: &str) {
        assert!(
            !self.success && self.output.contains("Cannot complete Allocation"),
            "{what}: expected the allocation to be refused:\n{}",
            self.output
        );
    }
}

/// The standard load: 5 clients (each with an RTP and an RTCP allocation), 100 messages of
/// 170 bytes every 20 ms, DONT-FRAGMENT included (`-g`).
fn load_args<'a>(port: &'a str, peer: &'a str, auth: &[&'a str], tcp: bool) -> Vec<&'a str> {
    let mut a = vec![
        "-p",
        port,
        "-e",
        "127.0.0.1",
        "-r",
        peer,
        "-m",
        "5",
        "-n",
        "100",
        "-l",
        "170",
        "-z",
        "20",
    ];
    if tcp {
        a.push("-t");
    } else {
        a.push("-g");
    }
    a.extend(auth);
    a.push("127.0.0.1");
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_relays_over_udp_and_tcp_with_apiserver_credentials() {
    if !enter_private_netns("uclient_relays_over_udp_and_tcp_with_apiserver_credentials") {
        return;
    }
    // The uclient peer is on loopback, which only the allowlist opens.
    let app = appliance(
        &[
            ("MEETING_TURN__ALLOWED_PEERS", "127.0.0.1/32"),
            ("MEETING_TURN__MAX_ALLOCATIONS_PER_USER", "100"),
        ],
        &[],
    );
    let creds = join_credentials(&app).await;
    let _peer = uclient_peer(3480);
    let port = creds.server.port().to_string();
    let user = ["-u", creds.username.as_str(), "-w", creds.password.as_str()];
    tokio::task::block_in_place(|| {
        Uclient::run(&load_args(&port, "3480", &user, false)).assert_lossless("UDP");
        Uclient::run(&load_args(&port, "3480", &user, true)).assert_lossless("TCP");
        // uclient making its own REST credentials from the secret, as with coturn.
        let key = turn_key();
        let rest = ["-W", key.as_str(), "-u", "alice"];
        Uclient::run(&load_args(&port, "3480", &rest, false)).assert_lossless("UDP, -W");
    });
    // Three runs of five clients, each with at least one allocation.
    let created = metric(&app, "meeting_turn_allocations_created_total").await;
    assert!(created >= 15.0, "{created} allocations");
    assert!(
        metric(
            &app,
            "meeting_turn_relayed_bytes_total{direction=\"to_peer\"}"
        )
        .await
            >= 3.0 * 500.0 * 170.0
    );
    // TCP clients' allocations went away with their connections, without waiting 10 min.
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(20), "TCP connections to close", || {
            let n = rt.block_on(metric(&app, "meeting_turn_tcp_connections"));
            (n == 0.0).then_some(())
        })
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_wrong_password_and_expired_username_cannot_allocate() {
    if !enter_private_netns("wrong_secret_wrong_password_and_expired_username_cannot_allocate") {
        return;
    }
    let app = appliance(&[("MEETING_TURN__ALLOWED_PEERS", "127.0.0.1/32")], &[]);
    let creds = join_credentials(&app).await;
    let _peer = uclient_peer(3480);
    let port = creds.server.port().to_string();
    let expired_user = "1000000000:bob";
    let expired_pw = turn_password(&turn_key(), expired_user);
    tokio::task::block_in_place(|| {
        let wrong = ["-W", "not-the-deployment-turn-key", "-u", "alice"];
        Uclient::run(&load_args(&port, "3480", &wrong, false))
            .assert_cannot_allocate("wrong secret");
        let wrong_pw = [
            "-u",
            creds.username.as_str(),
            "-w",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ];
        Uclient::run(&load_args(&port, "3480", &wrong_pw, true))
            .assert_cannot_allocate("wrong password over TCP");
        let expired = ["-u", expired_user, "-w", expired_pw.as_str()];
        Uclient::run(&load_args(&port, "3480", &expired, false))
            .assert_cannot_allocate("expired username");
    });
    assert!(
        metric(
            &app,
            "meeting_turn_rejected_requests_total{reason=\"bad_credentials\"}"
        )
        .await
            >= 2.0
    );
    assert!(
        metric(
            &app,
            "meeting_turn_rejected_requests_total{reason=\"expired_credentials\"}"
        )
        .await
            >= 1.0
    );
    assert_eq!(
        metric(&app, "meeting_turn_allocations_created_total").await,
        0.0
    );

    // Our own client sees the exact answer: 401, for a password from another deployment.
    let other = Keys::derive("another-deployment-secret");
    let (u, p) = other.turn_credentials(
        meeting_appliance::ids::MeetingId(1),
        &meeting_appliance::ids::ParticipantId("p1".into()),
        meeting_appliance::util::now() + 600,
    );
    let mut c = TurnClient::connect(creds.server, Transport::Udp, &u, &p)
        .await
        .expect("client");
    let err = c.allocate(None, false).await.expect_err("refused");
    assert_eq!(err.code(), Some(401), "{err}");
}

/// coturn started with our derived TURN key accepts what our apiserver hands out, and our
/// `turn-check` passes against it: either server can replace the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_with_our_secret_accepts_apiserver_credentials() {
    if !enter_private_netns("coturn_with_our_secret_accepts_apiserver_credentials") {
        return;
    }
    let app = appliance(&[], &[]);
    let creds = join_credentials(&app).await;
    let dir = tempfile::tempdir().expect("tmp");
    let coturn_port = 3478u16;
    let mut cmd = Command::new(tool("turnserver"));
    cmd.args([
        "-n",
        "--listening-ip=127.0.0.1",
        &format!("--listening-port={coturn_port}"),
        "--relay-ip=127.0.0.1",
        "--min-port=49160",
        "--max-port=49400",
        "--use-auth-secret",
        &format!("--static-auth-secret={}", turn_key()),
        "--realm=coturn.test",
        "--fingerprint",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--allow-loopback-peers",
        &format!("--pidfile={}", dir.path().join("coturn.pid").display()),
        "--log-file=stdout",
        "--simple-log",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let _coturn = TiedChild::spawn(cmd).expect("coturn starts");
    tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(15), "coturn to listen", || {
            port_open(coturn_port).then_some(())
        })
    });
    let _peer = uclient_peer(3480);
    let port = coturn_port.to_string();
    let user = ["-u", creds.username.as_str(), "-w", creds.password.as_str()];
    tokio::task::block_in_place(|| {
        Uclient::run(&load_args(&port, "3480", &user, false)).assert_lossless("coturn, UDP");
        Uclient::run(&load_args(&port, "3480", &user, true)).assert_lossless("coturn, TCP");
        let o = run_cli(
            appliance_bin!(),
            &[
                "turn-check",
                "--server",
                &format!("127.0.0.1:{coturn_port}"),
                "--secret",
                SECRET,
            ],
        );
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "turn-check against coturn:\n{out}");
        assert!(out.contains("allocate over TCP: relay address"), "{out}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_check_reports_what_works_and_what_does_not() {
    if !enter_private_netns("turn_check_reports_what_works_and_what_does_not") {
        return;
    }
    let app = appliance(&[], &[]);
    let creds = join_credentials(&app).await;
    let server = creds.server.to_string();
    tokio::task::block_in_place(|| {
        let o = run_cli(
            appliance_bin!(),
            &["turn-check", "--server", &server, "--secret", SECRET],
        );
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{out}");
        for line in [
            "ok    STUN binding over UDP",
            "ok    allocate over UDP",
            "ok    allocate over TCP",
            "ok    relay UDP -> TCP (Send indication)",
            "ok    relay TCP -> UDP (ChannelData)",
            "all 5 checks passed",
        ] {
            assert!(out.contains(line), "missing {line:?} in:\n{out}");
        }
        // Without --secret it reads the secret a single box generated: here, none there.
        let o = run_cli(
            appliance_bin!(),
            &[
                "turn-check",
                "--server",
                &server,
                "--secret",
                "some-other-secret",
            ],
        );
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(1), "{out}");
        assert!(
            out.contains("FAIL  allocate over UDP: credentials refused (401)"),
            "{out}"
        );
    });
    // The checker gave its allocations back (Refresh 0) instead of leaving them to expire.
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        wait_until(
            Duration::from_secs(10),
            "allocations to be released",
            || {
                let n = rt.block_on(metric(&app, "meeting_turn_allocations"));
                (n == 0.0).then_some(())
            },
        )
    });
}

/// A UDP socket that counts what it receives and, when `echo`, sends it back.
struct CountingPeer {
    addr: SocketAddr,
    packets: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

impl CountingPeer {
    async fn start(ip: &str, echo: bool) -> CountingPeer {
        let sock = tokio::net::UdpSocket::bind((ip.parse::<IpAddr>().expect("ip"), 0))
            .await
            .expect("bind the peer");
        let addr = sock.local_addr().expect("addr");
        let packets = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let (p, b) = (packets.clone(), bytes.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                p.fetch_add(1, Ordering::Relaxed);
                b.fetch_add(n as u64, Ordering::Relaxed);
                if echo {
                    let _ = sock.send_to(&buf[..n], from).await;
                }
            }
        });
        CountingPeer {
            addr,
            packets,
            bytes,
        }
    }
    fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }
}

fn ip_add(addr: &str) {
    let st = Command::new("ip")
        .args(["addr", "add", addr, "dev", "lo"])
        .status()
        .expect("ip runs");
    assert!(st.success(), "ip addr add {addr} dev lo");
}

/// Two allocations of the same server: each is the other's permitted peer (this server's own
/// relay ports are always allowed). Used as a barrier: a marker sent from `a` after other
/// packets arrives at `b` only after the server has dealt with those packets.
async fn pair(creds: &TurnCreds) -> (TurnClient, SocketAddr, TurnClient, SocketAddr) {
    let mut a = TurnClient::connect(
        creds.server,
        Transport::Udp,
        &creds.username,
        &creds.password,
    )
    .await
    .expect("client a");
    let mut b = TurnClient::connect(
        creds.server,
        Transport::Udp,
        &creds.username,
        &creds.password,
    )
    .await
    .expect("client b");
    let ra = a.allocate(None, false).await.expect("allocate a").relayed;
    let rb = b.allocate(None, false).await.expect("allocate b").relayed;
    a.create_permission(&[rb]).await.expect("a may reach b");
    b.create_permission(&[ra]).await.expect("b may reach a");
    (a, ra, b, rb)
}

async fn barrier(a: &mut TurnClient, b: &mut TurnClient, rb: SocketAddr) {
    let marker = format!("marker {}", rand::random::<u64>()).into_bytes();
    a.send_indication(rb, &marker).await.expect("send marker");
    loop {
        let r = b
            .recv_data(Duration::from_secs(5))
            .await
            .expect("marker arrives");
        if r.data == marker {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_peers_are_refused_unless_listed_but_our_sfu_is_reachable() {
    if !enter_private_netns("private_peers_are_refused_unless_listed_but_our_sfu_is_reachable") {
        return;
    }
    // Addresses that exist only inside this namespace.
    ip_add("10.0.0.1/32");
    ip_add("169.254.10.1/32");
    let peers = [
        CountingPeer::start("127.0.0.1", true).await,
        CountingPeer::start("10.0.0.1", true).await,
        CountingPeer::start("169.254.10.1", true).await,
    ];

    // Default policy. The sfuserver's one media socket is handed over by the test, so its
    // address is known: only it is trusted on 127.0.0.1.
    let app = Appliance::start_with_media(
        &["--secret", SECRET, "--port", "0", "--sfuWorkers", "1"],
        &[],
    );
    let creds = join_credentials(&app).await;
    let (mut a, _ra, mut b, rb) = pair(&creds).await;
    for p in &peers {
        let err = a
            .create_permission(&[p.addr])
            .await
            .expect_err("CreatePermission to a private peer is refused");
        assert_eq!(err.code(), Some(403), "{}: {err}", p.addr);
        let err = a
            .channel_bind(0x4001, p.addr)
            .await
            .expect_err("ChannelBind to a private peer is refused");
        assert_eq!(err.code(), Some(403), "{}: {err}", p.addr);
        a.send_indication(p.addr, b"let me in").await.expect("send");
    }
    barrier(&mut a, &mut b, rb).await;
    for p in &peers {
        assert_eq!(p.packets(), 0, "{} got a packet through the relay", p.addr);
    }
    assert!(
        metric(
            &app,
            "meeting_turn_rejected_requests_total{reason=\"forbidden_peer\"}"
        )
        .await
            >= 6.0
    );
    // This deployment's own sfuserver is always reachable, with no setting.
    let sfu = media_addr(&app);
    a.create_permission(&[sfu])
        .await
        .expect("the sfuserver is a permitted peer");
    let before = metric(&app, "meeting_sfu_packets_in_total").await;
    a.send_indication(sfu, b"not really STUN")
        .await
        .expect("send");
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        wait_until(
            Duration::from_secs(10),
            "the sfuserver to get the packet",
            || {
                let n = rt.block_on(metric(&app, "meeting_sfu_packets_in_total"));
                (n > before).then_some(())
            },
        )
    });

    // Listed: the same peers are reached, and answer back through the relay.
    let app = appliance(
        &[(
            "MEETING_TURN__ALLOWED_PEERS",
            "127.0.0.1/32,10.0.0.1/32,169.254.0.0/16",
        )],
        &[],
    );
    let creds = join_credentials(&app).await;
    let mut c = TurnClient::connect(
        creds.server,
        Transport::Udp,
        &creds.username,
        &creds.password,
    )
    .await
    .expect("client");
    c.allocate(None, false).await.expect("allocate");
    for (i, p) in peers.iter().enumerate() {
        c.create_permission(&[p.addr]).await.expect("listed peer");
        let msg = format!("hello {i}").into_bytes();
        c.send_indication(p.addr, &msg).await.expect("send");
        let r = c
            .recv_data(Duration::from_secs(5))
            .await
            .expect("the echo comes back");
        assert_eq!((r.peer, r.data), (Some(p.addr), msg));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_lifetime_cap_bandwidth_cap_and_tcp_disconnect() {
    if !enter_private_netns("quota_lifetime_cap_bandwidth_cap_and_tcp_disconnect") {
        return;
    }
    let app = appliance(
        &[
            ("MEETING_TURN__MAX_ALLOCATIONS_PER_USER", "2"),
            ("MEETING_TURN__MAX_LIFETIME", "5m"),
            ("MEETING_TURN__MAX_BANDWIDTH_KBPS", "800"),
            ("MEETING_TURN__ALLOWED_PEERS", "127.0.0.1/32"),
        ],
        &[],
    );
    let creds = join_credentials(&app).await;
    let connect = |t| TurnClient::connect(creds.server, t, &creds.username, &creds.password);

    // Lifetime: asked for a day, granted the cap, on Allocate and on Refresh.
    let mut a = connect(Transport::Udp).await.expect("a");
    let alloc = a.allocate(Some(86400), true).await.expect("allocate a");
    assert_eq!(alloc.lifetime, 300);
    assert_eq!(a.refresh(86400).await.expect("refresh"), 300);
    assert_eq!(a.refresh(120).await.expect("refresh"), 120);

    // Quota: two per username; a third is refused with 486 until one is given back.
    let mut b = connect(Transport::Tcp).await.expect("b");
    b.allocate(None, false).await.expect("allocate b");
    let mut c = connect(Transport::Udp).await.expect("c");
    let err = c.allocate(None, false).await.expect_err("over quota");
    assert_eq!(err.code(), Some(486), "{err}");
    assert_eq!(metric(&app, "meeting_turn_allocations").await, 2.0);

    // A TCP client that disconnects frees its allocation at once.
    drop(b);
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(10), "the TCP allocation to go", || {
            let n = rt.block_on(metric(&app, "meeting_turn_allocations"));
            (n == 1.0).then_some(())
        })
    });
    let relayed_c = c.allocate(None, false).await.expect("room again").relayed;
    assert!(
        relayed_c.port() >= 49152,
        "relay port from the range: {relayed_c}"
    );

    // Bandwidth: 800 kbit/s = 100 kB/s per allocation. 150 kB sent at once mostly drops.
    let sink = CountingPeer::start("127.0.0.1", false).await;
    a.channel_bind(0x4000, sink.addr).await.expect("channel");
    let n = 150u64;
    let start = Instant::now();
    for _ in 0..n {
        a.send_channel(0x4000, &[7u8; 1000]).await.expect("send");
    }
    let to_peer = "meeting_turn_relayed_packets_total{direction=\"to_peer\"}";
    let dropped = "meeting_turn_dropped_packets_total{reason=\"bandwidth\"}";
    let (relayed, dropped) = tokio::task::block_in_place(|| {
        wait_until(
            Duration::from_secs(20),
            "every packet relayed or dropped",
            || {
                let r = rt.block_on(metric(&app, to_peer));
                let d = rt.block_on(metric(&app, dropped));
                (r + d >= n as f64).then_some((r as u64, d as u64))
            },
        )
    });
    let elapsed = start.elapsed().as_secs_f64();
    tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(5), "the sink to count", || {
            (sink.packets() >= relayed).then_some(())
        })
    });
    let bytes = sink.bytes.load(Ordering::Relaxed) as f64;
    // Burst (25 kB) plus the rate over the time it took, plus one packet.
    let bound = 25_000.0 + 100_000.0 * elapsed + 1000.0;
    assert!(dropped > 0, "nothing was dropped: {relayed} relayed");
    assert!(
        bytes > 0.0 && bytes <= bound,
        "{bytes} bytes through in {elapsed:.2} s, cap allows {bound:.0}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_are_rate_limited_per_source() {
    if !enter_private_netns("unauthenticated_requests_are_rate_limited_per_source") {
        return;
    }
    let app = appliance(&[("MEETING_TURN__UNAUTHENTICATED_PER_SECOND", "5")], &[]);
    let creds = join_credentials(&app).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let n = 200u64;
    let start = Instant::now();
    for i in 0..n {
        // Each would get a 401 with a fresh nonce.
        let m = unauthenticated_allocate(u32::try_from(i).expect("small"));
        sock.send_to(&m, creds.server).await.expect("send");
    }
    // Garbage is dropped and counted, and the server keeps going.
    sock.send_to(b"\xff\xffnot TURN at all", creds.server)
        .await
        .expect("send");
    let limited = "meeting_turn_rejected_requests_total{reason=\"rate_limited\"}";
    let rt = tokio::runtime::Handle::current();
    let mut answers = 0u64;
    let mut buf = [0u8; 1500];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let dropped = metric(&app, limited).await as u64;
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(50), sock.recv_from(&mut buf)).await
        {
            assert_eq!(&buf[..2], &[0x01, 0x13], "an Allocate error answer (401)");
            answers += 1;
        }
        if answers + dropped >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{answers} answered, {dropped} dropped"
        );
    }
    let elapsed = start.elapsed().as_secs_f64();
    // A burst of 5 s worth (25), then 5 per second.
    let bound = 25.0 + 5.0 * elapsed + 1.0;
    assert!(
        answers >= 25 && (answers as f64) <= bound,
        "{answers} answers in {elapsed:.2} s"
    );
    tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(5), "garbage counted", || {
            let m = rt.block_on(metric(
                &app,
                "meeting_turn_rejected_requests_total{reason=\"malformed\"}",
            ));
            (m >= 1.0).then_some(())
        })
    });
    // Another source address is not affected: it gets its 401 at once.
    let other = tokio::net::UdpSocket::bind("127.0.0.2:0")
        .await
        .expect("bind");
    other
        .send_to(&unauthenticated_allocate(1), creds.server)
        .await
        .expect("send");
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), other.recv_from(&mut buf))
        .await
        .expect("an answer for another address")
        .expect("recv");
    assert!(n > 20 && buf[..2] == [0x01, 0x13], "a 401");
}

/// An Allocate without credentials (REQUESTED-TRANSPORT UDP), transaction id from `i`.
fn unauthenticated_allocate(i: u32) -> Vec<u8> {
    let mut m = vec![0x00, 0x03, 0x00, 0x08, 0x21, 0x12, 0xA4, 0x42];
    m.extend_from_slice(&i.to_be_bytes());
    m.extend_from_slice(&[0u8; 8]);
    m.extend_from_slice(&[0x00, 0x19, 0x00, 0x04, 17, 0, 0, 0]);
    m
}

/// Chromium allowed only relay candidates, as behind a firewall that blocks the sfuserver:
/// both browsers reach the meeting through our turnserver, with no TURN setting at all (the
/// sfuserver on loopback is a permitted peer by default), and decode each other's video.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_with_relay_only_meets_through_our_turnserver() {
    if !enter_private_netns("chromium_with_relay_only_meets_through_our_turnserver") {
        return;
    }
    let app = appliance(&[], &[]);
    let code = meeting_code(&app).await;
    let r = tokio::task::block_in_place(|| browser_scenario(&app, &code, "relay_only"));
    println!("relay_only: {r}");
    for k in ["alice_sees_bob", "bob_sees_alice"] {
        assert!(
            r[k]["framesDecoded"].as_i64().unwrap_or(0) >= 10,
            "{k}: {}",
            r[k]
        );
        assert!(
            r[k]["frameWidth"].as_i64().unwrap_or(0) > 0,
            "{k}: {}",
            r[k]
        );
    }
    for k in ["alice_pair", "bob_pair"] {
        assert_eq!(r[k]["type"], "relay", "{k}: {}", r[k]);
    }
    // The media really went through our relay, both ways.
    assert!(metric(&app, "meeting_turn_allocations").await >= 2.0);
    for dir in ["to_peer", "from_peer"] {
        let m = format!("meeting_turn_relayed_bytes_total{{direction=\"{dir}\"}}");
        let v = metric(&app, &m).await;
        assert!(v > 100_000.0, "{m} = {v}");
    }
}

/// One JSON request over HTTPS checked against `ca_pem` (the appliance serves TLS here).
fn https_json(
    addr: SocketAddr,
    ca_pem: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut c = support::tls::TlsConn::connect(addr, "127.0.0.1", ca_pem).expect("TLS");
    let body = body.to_string();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        c.stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    c.stream.flush().expect("flush");
    let mut raw = Vec::new();
    let _ = c.stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// With a certificate (the same one HTTPS serves), the turnserver also speaks TURN over TLS:
/// the join answer lists `turns:`, coturn's client relays through it without loss, and
/// turn-check verifies the certificate and relays through it.
#[test]
fn turns_with_this_box_certificate() {
    if !enter_private_netns("turns_with_this_box_certificate") {
        return;
    }
    let ca = support::tls::TestCa::new();
    let dir = tempfile::tempdir().expect("tmp");
    let (cert, key) = ca.leaf(&["127.0.0.1"], 86400);
    let paths = ["cert.pem", "key.pem", "ca.pem"].map(|f| dir.path().join(f));
    for (p, content) in paths.iter().zip([&cert, &key, &ca.pem]) {
        std::fs::write(p, content).expect("write");
    }
    let [cert, key, ca_file] = paths.map(|p| p.to_str().expect("utf8").to_string());
    let listen = "127.0.0.1:8443";
    let app = appliance(
        &[
            ("MEETING_TURN__ALLOWED_PEERS", "127.0.0.1/32"),
            ("MEETING_TURN__MAX_ALLOCATIONS_PER_USER", "100"),
            // This test owns its namespace: the default TLS port is free here.
            ("MEETING_TURN__TLS_PORT", "5349"),
        ],
        &[
            "--listen",
            listen,
            "--domainaddress",
            listen,
            "--cert",
            &cert,
            "--certkey",
            &key,
        ],
    );
    let addr: SocketAddr = listen.parse().expect("addr");
    let (s, _) = https_json(
        addr,
        &ca.pem,
        "POST",
        "/api/v1/auth/code",
        None,
        json!({"email": "host@corp.test"}),
    );
    assert_eq!(s, 204);
    let line = app.wait_log("Your sign-in code is ", Duration::from_secs(10));
    let at = line.find("Your sign-in code is ").expect("code") + 21;
    let (s, v) = https_json(
        addr,
        &ca.pem,
        "POST",
        "/api/v1/auth/verify",
        None,
        json!({"email": "host@corp.test", "code": &line[at..at + 6]}),
    );
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().expect("token").to_string();
    let (s, m) = https_json(
        addr,
        &ca.pem,
        "POST",
        "/api/v1/meetings",
        Some(&token),
        json!({}),
    );
    assert_eq!(s, 201, "{m}");
    let code = m["code"].as_str().expect("code");
    let (s, j) = https_json(
        addr,
        &ca.pem,
        "POST",
        &format!("/api/v1/join/{code}"),
        None,
        json!({"display_name": "Guest"}),
    );
    assert_eq!(s, 200, "{j}");
    let turn = &j["ice_servers"][1];
    let urls = turn["urls"].to_string();
    assert!(
        urls.contains("\"turns:127.0.0.1:5349?transport=tcp\""),
        "join answer: {j}"
    );
    let (user, pw) = (
        turn["username"].as_str().expect("username"),
        turn["credential"].as_str().expect("credential"),
    );
    let _peer = uclient_peer(3480);
    let creds = ["-u", user, "-w", pw];
    let mut args = load_args("5349", "3480", &creds, true);
    args.insert(0, "-S");
    Uclient::run(&args).assert_lossless("TLS");

    let server = j["ice_servers"][0]["urls"][0]
        .as_str()
        .and_then(|u| u.strip_prefix("stun:"))
        .expect("stun:host:port")
        .to_string();
    let o = run_cli(
        appliance_bin!(),
        &[
            "turn-check",
            "--server",
            &server,
            "--secret",
            SECRET,
            "--tlsCa",
            &ca_file,
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    for line in [
        "ok    allocate over TLS (port 5349)",
        "ok    relay TLS -> UDP (ChannelData)",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    // Without the private CA the certificate is not trusted, and the report says so.
    let o = run_cli(
        appliance_bin!(),
        &["turn-check", "--server", &server, "--secret", SECRET],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("needs --tlsCa"), "{out}");
}
