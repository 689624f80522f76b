//! Split deployments in tests: hosts as network namespaces joined by veth links to one
//! bridge (separate machines, as far as the processes can tell), and two media clients that
//! keep audio flowing and count it.
//!
//! Everything here runs inside the test's own private namespace (`enter_private_netns`), so
//! the bridge, the veth pairs and the host namespaces are the test's and nobody else's.

#![allow(dead_code)]

use serde_json::{Value, json};
use std::net::IpAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use webrtc::api::media_engine::MIME_TYPE_OPUS;
use webrtc::media::Sample;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::track::track_local::TrackLocal;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;

use super::api::{call, mail_args};
use super::rtc_client::{RtcClient, loopback_peer_connection, peer_connection};
use super::{Appliance, FakeAllocator, SmtpSink, shared_mariadb};
use std::path::Path;

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Hosts on one LAN: the test's namespace holds the switch (a bridge at `10.231.0.1/24`) and
/// each host is a named namespace with one veth link to it.
pub struct Hosts {
    names: Vec<(String, String, IpAddr)>,
}

pub const SWITCH_IP: &str = "10.231.0.1";

impl Hosts {
    /// `hosts[i]` gets `10.231.0.(i+2)`.
    pub fn new(hosts: &[&str]) -> Hosts {
        assert_eq!(
            std::env::var("APPLIANCE_IN_NETNS").as_deref(),
            Ok("1"),
            "hosts are built only inside the test's private namespace"
        );
        sh(&["ip", "link", "add", "sw0", "type", "bridge"]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{SWITCH_IP}/24"),
            "dev",
            "sw0",
        ]);
        sh(&["ip", "link", "set", "sw0", "up"]);
        let pid = std::process::id();
        let mut names = Vec::new();
        for (i, h) in hosts.iter().enumerate() {
            let ns = format!("ma-{pid}-{h}");
            let ip: IpAddr = format!("10.231.0.{}", i + 2).parse().expect("ip");
            let veth = format!("v{i}");
            sh(&["ip", "netns", "add", &ns]);
            names.push((h.to_string(), ns.clone(), ip));
            sh(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            sh(&["ip", "link", "set", &veth, "master", "sw0", "up"]);
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ]);
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        Hosts { names }
    }

    pub fn ip(&self, host: &str) -> IpAddr {
        self.names
            .iter()
            .find(|(h, _, _)| h == host)
            .unwrap_or_else(|| panic!("no host {host}"))
            .2
    }

    /// A TCP listener on `addr` in `host`'s namespace, to hand to a process started there
    /// ([`Appliance::spawn_on`]): a socket stays in the namespace it was made in.
    pub fn bind(&self, host: &str, addr: std::net::SocketAddr) -> std::net::TcpListener {
        use std::os::fd::AsRawFd;
        let path = self.netns(host);
        let path = path.display();
        // setns changes the namespace of the calling thread only: a thread that ends here.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let f = std::fs::File::open(self.netns(host))
                        .unwrap_or_else(|e| panic!("open {path}: {e}"));
                    // SAFETY: setns(2) with a namespace fd that stays open for the call.
                    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        panic!("setns {path}: {}", std::io::Error::last_os_error());
                    }
                    std::net::TcpListener::bind(addr)
                        .unwrap_or_else(|e| panic!("bind {addr} on {host}: {e}"))
                })
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// The file of `host`'s network namespace.
    pub fn netns(&self, host: &str) -> std::path::PathBuf {
        let ns = &self
            .names
            .iter()
            .find(|(h, _, _)| h == host)
            .unwrap_or_else(|| panic!("no host {host}"))
            .1;
        std::path::PathBuf::from(format!("/run/netns/{ns}"))
    }

    /// `program` run on `host` (`ip netns exec`, which execs it: the pid is the program's).
    pub fn command(&self, host: &str, program: &str) -> Command {
        let ns = &self
            .names
            .iter()
            .find(|(h, _, _)| h == host)
            .unwrap_or_else(|| panic!("no host {host}"))
            .1;
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for (_, ns, _) in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A peer connection that may use any interface of the test's namespace (its loopback and
/// the switch), for clients on the LAN of [`Hosts`].
pub async fn lan_peer_connection() -> Arc<RTCPeerConnection> {
    peer_connection(false).await
}

/// `POST /api/v1/join/{code}`: as the signed-in `token`, or as a guest named `name`.
pub async fn join(api: &str, code: &str, token: Option<&str>, name: &str) -> Value {
    let a = call(
        "POST",
        &format!("{api}/api/v1/join/{code}"),
        token,
        Some(json!({"display_name": name})),
    )
    .await;
    assert_eq!(a.status, 200, "join {code} as {name}: {:?}", a.body);
    a.body
}

fn signal(j: &Value) -> String {
    j["sfu"]["signal_url"]
        .as_str()
        .expect("signal_url")
        .to_string()
}

fn token(j: &Value) -> String {
    j["token"].as_str().expect("token").to_string()
}

async fn pc(lan: bool) -> Arc<RTCPeerConnection> {
    if lan {
        lan_peer_connection().await
    } else {
        loopback_peer_connection().await
    }
}

/// A client sending Opus-framed audio, 50 packets a second, until dropped.
pub struct Talker {
    pub client: RtcClient,
    stop: Arc<AtomicBool>,
}

impl Talker {
    pub async fn join(j: &Value, name: &str, lan: bool) -> Talker {
        let pc = pc(lan).await;
        let audio = Arc::new(TrackLocalStaticSample::new(
            RTCRtpCodecCapability {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                ..Default::default()
            },
            "audio".to_owned(),
            name.to_owned(),
        ));
        pc.add_transceiver_from_track(
            audio.clone() as Arc<dyn TrackLocal + Send + Sync>,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendonly,
                send_encodings: vec![],
            }),
        )
        .await
        .expect("add audio");
        let client = RtcClient::join(name, &signal(j), &token(j), pc).await;
        client.negotiate();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut n: u32 = 0;
            // Stops when told, or when the Talker is dropped (this task holds the last Arc).
            while !s.load(Ordering::Relaxed) && Arc::strong_count(&s) > 1 {
                tick.tick().await;
                let mut data = vec![0xfcu8];
                data.extend_from_slice(&n.to_be_bytes());
                data.resize(80, 0x55);
                n = n.wrapping_add(1);
                let _ = audio
                    .write_sample(&Sample {
                        data: data.into(),
                        duration: Duration::from_millis(20),
                        ..Default::default()
                    })
                    .await;
            }
        });
        Talker { client, stop }
    }

    pub async fn leave(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.client.leave().await;
    }
}

/// A client that receives whatever the meeting sends and counts RTP packets.
pub struct Listener {
    pub client: RtcClient,
    pub packets: Arc<AtomicU64>,
}

impl Listener {
    pub async fn join(j: &Value, name: &str, lan: bool, packets: Arc<AtomicU64>) -> Listener {
        let pc = pc(lan).await;
        let counter = packets.clone();
        pc.on_track(Box::new(move |track, _, _| {
            let counter = counter.clone();
            Box::pin(async move {
                tokio::spawn(async move {
                    while track.read_rtp().await.is_ok() {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                });
            })
        }));
        let client = RtcClient::join(name, &signal(j), &token(j), pc).await;
        Listener { client, packets }
    }

    pub fn count(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Waits until at least `more` packets arrived after now.
    pub async fn wait_more(&self, more: u64, deadline: Duration, what: &str) -> u64 {
        let start = self.count();
        let t0 = std::time::Instant::now();
        while self.count() < start + more {
            if t0.elapsed() > deadline {
                panic!(
                    "{what}: only {} packets in {deadline:?} (wanted {more})",
                    self.count() - start
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.count() - start
    }
}

/// A TCP relay on loopback whose links can be cut at will: a bridge link that flaps.
///
/// It also tells when a link it carries is registered, without reading any log: a node
/// writes, each only after the apiserver's answer to the one before, its upgrade request,
/// its hello (after the challenge) and its first heartbeat (after the welcome, i.e. after
/// the registry took it). So a link on which the node's side was read from three times
/// carries a registered node.
pub struct Flappy {
    pub addr: std::net::SocketAddr,
    generation: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
    registered: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Flappy {
    pub async fn start(target: std::net::SocketAddr) -> Flappy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind relay");
        let addr = listener.local_addr().expect("addr");
        let generation = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let registered = Arc::new(AtomicU64::new(0));
        let (g, acc, reg) = (generation.clone(), accepted.clone(), registered.clone());
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                acc.fetch_add(1, Ordering::SeqCst);
                let born = g.load(Ordering::SeqCst);
                let (g, reg) = (g.clone(), reg.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut node_r, mut node_w) = inbound.into_split();
                    let (mut api_r, mut api_w) = outbound.into_split();
                    let up = async {
                        let (mut buf, mut reads) = (vec![0u8; 64 * 1024], 0u32);
                        while let Ok(n @ 1..) = node_r.read(&mut buf).await {
                            reads += 1;
                            if reads == 3 {
                                reg.fetch_add(1, Ordering::SeqCst);
                            }
                            if api_w.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut api_r, &mut node_w).await;
                    };
                    let cut = async {
                        while g.load(Ordering::SeqCst) == born {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    };
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                        _ = cut => {}
                    }
                });
            }
        });
        Flappy {
            addr,
            generation,
            accepted,
            registered,
            task,
        }
    }

    /// Drops every link open now (new ones are relayed again).
    pub fn cut(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Links dialed through the relay so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Links that carried a registration so far.
    pub fn registered(&self) -> u64 {
        self.registered.load(Ordering::SeqCst)
    }

    /// Waits (10 s) until `count()` reaches `n`.
    pub async fn wait_for(&self, what: &str, count: impl Fn(&Flappy) -> u64, n: u64) {
        let t0 = std::time::Instant::now();
        while count(self) < n {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the relay saw {} {what} in 10 s, wanted {n}",
                count(self)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Flappy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub const SECRET: &str = "split-deployment-secret-0123456789";

pub fn s(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Waits (30 s) until the apiserver's node registry, in its database (what the admin
/// overview shows), has every node of `ids` (`role@address`; a prefix is enough) up and
/// registered since that apiserver started.
pub fn wait_registered(api: &Appliance, ids: &[&str]) {
    let (url, since) = (api.database_url(), api.started_unix());
    let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    // Its own runtime on its own thread: callers are sync and async tests alike.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime")
                    .block_on(poll_registered(&url, since, &ids))
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    });
}

async fn poll_registered(url: &str, since: i64, ids: &[String]) {
    use sea_orm::{ConnectionTrait, Statement};
    let start = std::time::Instant::now();
    let mut rows: Vec<(String, String, i64)> = Vec::new();
    loop {
        if let Ok(db) = sea_orm::Database::connect(url).await {
            let sql = "SELECT id, state, last_seen FROM nodes";
            if let Ok(found) = db
                .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
                .await
            {
                rows = found
                    .iter()
                    .filter_map(|r| {
                        Some((
                            r.try_get::<String>("", "id").ok()?,
                            r.try_get::<String>("", "state").ok()?,
                            r.try_get::<i64>("", "last_seen").ok()?,
                        ))
                    })
                    .collect();
            }
            let _ = db.close().await;
        }
        let missing: Vec<&String> = ids
            .iter()
            .filter(|id| {
                !rows.iter().any(|(n, state, seen)| {
                    n.starts_with(id.as_str()) && state == "up" && *seen >= since
                })
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not registered after 30 s: {missing:?}; nodes (id, state, last_seen; apiserver started {since}): {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub struct Loopback {
    pub api: Appliance,
    pub api_args: Vec<String>,
    pub sfu: Appliance,
    pub turn: Appliance,
    pub fs: Appliance,
    pub alloc: FakeAllocator,
    pub dir: tempfile::TempDir,
    pub sink: SmtpSink,
    pub db_name: String,
}

pub fn dir_of(root: &Path, name: &str) -> std::path::PathBuf {
    root.join(name)
}

/// The four roles on 127.0.0.1 … 127.0.0.4, port 443 each, seed command lines exactly; new
/// meetings' lobby as `lobby` says (`MEETING_MEETINGS__LOBBY` of the apiserver).
pub fn loopback_deployment(lobby: &str) -> Loopback {
    let sink = SmtpSink::start();
    let db = shared_mariadb();
    let db_name = db.unique_database("split");
    let alloc = FakeAllocator::start();
    alloc.set_response(
        200,
        r#"{"sfu":"127.0.0.2:443","turn":"127.0.0.3:3478","fs":"127.0.0.4:443"}"#,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut api_args: Vec<String> = [
        "apiserver",
        "--secret",
        SECRET,
        "--mysqlAddress",
        &db.address(),
        "--mysqlUser",
        db.user(),
        "--mysqlPassword",
        db.password(),
        "--mysqlDatabase",
        &db_name,
        "--domainaddress",
        "127.0.0.1:443",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    api_args.extend(mail_args(sink.port()));
    api_args.extend(["--allocateserver".into(), alloc.url("/x7Qp-unguessable")]);
    let api = Appliance::start_exact_with(
        &s(&api_args),
        &dir_of(dir.path(), "api"),
        &[("MEETING_MEETINGS__LOBBY", lobby)],
    );
    let sfu = Appliance::start_exact(
        &[
            "sfuserver",
            "--secret",
            SECRET,
            "--domainaddress",
            "127.0.0.2:443",
            "--apiserver",
            "127.0.0.1:443",
        ],
        &dir_of(dir.path(), "sfu"),
    );
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
        &dir_of(dir.path(), "turn"),
    );
    let files = dir.path().join("files");
    let fs = Appliance::start_exact(
        &[
            "fsserver",
            "--secret",
            SECRET,
            "--domainaddress",
            "127.0.0.4:443",
            "--directory",
            files.to_str().expect("utf-8 path"),
            "--apiserver",
            "127.0.0.1:443",
        ],
        &dir_of(dir.path(), "fs"),
    );
    wait_registered(
        &api,
        &[
            "sfuserver@127.0.0.2:443",
            "turnserver@127.0.0.3:3478",
            "fsserver@127.0.0.4:443",
        ],
    );
    Loopback {
        api,
        api_args,
        sfu,
        turn,
        fs,
        alloc,
        dir,
        sink,
        db_name,
    }
}
