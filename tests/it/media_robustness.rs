//! The sfuserver under bad input and bad networks, with real Chromium calls running, in a
//! private network namespace: garbage on the media port and on signaling must not disturb
//! a running call; loss on one subscriber's path, or on a publisher's way in, is repaired by
//! NACK/RTX.

use crate::support;

use meeting_appliance::roles::sfuserver::core::is_rtp;
use rand::Rng;
use serde_json::json;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use support::Appliance;
use support::api::call;
use support::media::{BrowserRun, enter_private_netns, instant_meeting, media_addr, metric};

/// Datagrams that look like every protocol on the port, and like none.
fn garbage(rng: &mut impl Rng) -> Vec<u8> {
    let len = rng.random_range(0..1400);
    let mut b = vec![0u8; len];
    rng.fill(&mut b[..]);
    if len >= 20 {
        match rng.random_range(0..4) {
            0 => {
                // STUN binding request shape with a bad MESSAGE-INTEGRITY.
                b[0] = 0;
                b[1] = 1;
                b[4..8].copy_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
            }
            1 => b[0] = 0x80, // RTP
            2 => b[0] = 22,   // DTLS handshake
            _ => {}
        }
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_signaling_and_media_port_leaves_the_call_running() {
    if !enter_private_netns("garbage_on_signaling_and_media_port_leaves_the_call_running") {
        return;
    }
    let app = Appliance::start_with_media(&["--sfuWorkers", "1"], &[]);
    let (_, code, _) = instant_meeting(&app).await;
    let target = media_addr(&app);
    let mut run = BrowserRun::start(&app, &code, "under_fire", &[]);
    tokio::task::block_in_place(|| run.wait_line("READY", Duration::from_secs(120)));
    // 20 000 garbage datagrams from 8 source ports while the signaling garbage runs.
    let sent = tokio::task::spawn_blocking(move || {
        let mut rng = rand::rng();
        let socks: Vec<UdpSocket> = (0..8)
            .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
            .collect();
        for i in 0..20_000 {
            let _ = socks[i % 8].send_to(&garbage(&mut rng), target);
            if i % 500 == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        20_000
    })
    .await
    .expect("sender");
    run.cue("done");
    let r = tokio::task::block_in_place(|| run.finish());
    println!("under_fire: {r}");
    // The call kept going: frames decoded rose after the barrage, both ways.
    for dir in ["ab", "ba"] {
        let (b, a, l) = (
            r["before"][dir].as_i64(),
            r["after"][dir].as_i64(),
            r["later"][dir].as_i64(),
        );
        assert!(
            a > b && l > a,
            "{dir}: frames before {b:?}, after {a:?}, later {l:?}"
        );
        assert!(
            l.unwrap_or(0) - a.unwrap_or(0) >= 15,
            "{dir}: video still flows at a normal rate: {r}"
        );
    }
    // Signaling garbage: refused with the stated reasons; a bad message did not end the session.
    let s = &r["signaling"];
    let closed_reason = |k: &str| {
        s[k]["got"]
            .as_array()
            .and_then(|v| v.iter().find(|m| m["type"] == "closed"))
            .map(|m| m["reason"].clone())
    };
    assert_eq!(closed_reason("no_join"), Some(json!("bad_join")), "{s}");
    assert_eq!(closed_reason("not_json"), Some(json!("bad_join")), "{s}");
    assert_eq!(closed_reason("forged"), Some(json!("bad_token")), "{s}");
    assert_eq!(closed_reason("binary"), Some(json!("bad_join")), "{s}");
    assert_eq!(
        closed_reason("oversized"),
        Some(json!("protocol_error")),
        "{s}"
    );
    let bad = s["bad_messages"]["got"].as_array().expect("messages");
    let errors: Vec<&str> = bad
        .iter()
        .filter(|m| m["type"] == "error")
        .filter_map(|m| m["code"].as_str())
        .collect();
    assert!(
        errors.contains(&"bad_sdp") && errors.contains(&"bad_message"),
        "{s}"
    );
    assert!(
        bad.iter()
            .any(|m| m["type"] == "chat" && m["text"] == "still here"),
        "session survived bad messages: {s}"
    );
    // The server counted the garbage it dropped and is healthy.
    let g = metric(&app, "meeting_sfu_packets_garbage_total").await;
    assert!(g >= f64::from(sent) * 0.5, "garbage counted: {g}");
    assert_eq!(
        call("GET", &app.url("/healthz"), None, None).await.status,
        200
    );
}

/// A UDP relay between one browser and the SFU that drops 10 % of the RTP towards the
/// browser (or, `uplink`, from it) while `lossy` is set.
fn lossy_relay(
    sfu: std::net::SocketAddr,
    uplink: bool,
    lossy: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
) -> u16 {
    let front = UdpSocket::bind("127.0.0.1:0").expect("bind front");
    let back = UdpSocket::bind("127.0.0.1:0").expect("bind back");
    let port = front.local_addr().expect("addr").port();
    let client = Arc::new(std::sync::Mutex::new(None::<std::net::SocketAddr>));
    // RTP (not RTCP, STUN or DTLS: the sfuserver's own test) is lost at random while
    // `lossy` is set.
    let lose = move |buf: &[u8], rng: &mut rand::rngs::ThreadRng| {
        let lost = is_rtp(buf) && lossy.load(Ordering::Relaxed) && rng.random_bool(0.10);
        if lost {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
        lost
    };
    let lose_up = lose.clone();
    {
        let (front, back, client) = (
            front.try_clone().expect("clone"),
            back.try_clone().expect("clone"),
            client.clone(),
        );
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut rng = rand::rng();
            while let Ok((n, from)) = front.recv_from(&mut buf) {
                if let Ok(mut c) = client.lock() {
                    *c = Some(from);
                }
                if uplink && lose_up(&buf[..n], &mut rng) {
                    continue;
                }
                let _ = back.send_to(&buf[..n], sfu);
            }
        });
    }
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut rng = rand::rng();
        while let Ok((n, _)) = back.recv_from(&mut buf) {
            if !uplink && lose(&buf[..n], &mut rng) {
                continue;
            }
            let to = client.lock().ok().and_then(|c| *c);
            if let Some(to) = to {
                let _ = front.send_to(&buf[..n], to);
            }
        }
    });
    port
}

/// A call between Alice and Bob (browser scenario `scenario`) with Bob's media through a
/// [`lossy_relay`], running and decoding (`READY`).
struct LossyCall {
    app: Appliance,
    run: BrowserRun,
    lossy: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
}

impl LossyCall {
    async fn start(uplink: bool, scenario: &str) -> LossyCall {
        let app = Appliance::start_with_media(&["--sfuWorkers", "1"], &[]);
        let (_, code, _) = instant_meeting(&app).await;
        let (lossy, dropped) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let via = lossy_relay(media_addr(&app), uplink, lossy.clone(), dropped.clone());
        let mut run = BrowserRun::start(&app, &code, scenario, &[("VIA_PORT", via.to_string())]);
        tokio::task::block_in_place(|| run.wait_line("READY", Duration::from_secs(120)));
        LossyCall {
            app,
            run,
            lossy,
            dropped,
        }
    }

    /// A 3-second burst of 10 % loss; then the scenario's result and the packets dropped.
    /// (Beyond ~15 % str0m stops resending on purpose: retransmissions would deepen
    /// congestion; a keyframe request recovers then.)
    async fn burst(self) -> (Appliance, serde_json::Value, u64) {
        let LossyCall {
            app,
            mut run,
            lossy,
            dropped,
        } = self;
        lossy.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(3)).await;
        lossy.store(false, Ordering::Relaxed);
        run.cue("burst over");
        let r = tokio::task::block_in_place(|| run.finish());
        (app, r, dropped.load(Ordering::Relaxed))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_on_a_subscriber_path_is_repaired_by_nack() {
    if !enter_private_netns("loss_on_a_subscriber_path_is_repaired_by_nack") {
        return;
    }
    // The loss is on Bob's downlink.
    let call = LossyCall::start(false, "lossy").await;
    let nacks_before = metric(&call.app, "meeting_sfu_nacks_received_total").await;
    let (app, r, dropped) = call.burst().await;
    // NACK stats arrive with the next 1 s stats report.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let nacks = metric(&app, "meeting_sfu_nacks_received_total").await - nacks_before;
    println!("lossy: dropped {dropped} RTP packets; NACKs at the server {nacks}; {r}");
    let (b, a) = (&r["before"], &r["after"]);
    assert!(dropped >= 5, "the burst dropped packets: {dropped}");
    assert!(
        a["nackCount"].as_i64().unwrap_or(0) > b["nackCount"].as_i64().unwrap_or(0),
        "Bob sent NACKs: {r}"
    );
    assert!(nacks > 0.0, "the server received them: {nacks}");
    // Repaired: retransmissions (RTX) reached Bob for the dropped packets. (Chromium's
    // packetsLost counts the primary stream only, so it does not go down when RTX repairs.)
    let rtx = a["retransmittedPacketsReceived"].as_i64().unwrap_or(0)
        - b["retransmittedPacketsReceived"].as_i64().unwrap_or(0);
    assert!(
        rtx as f64 >= dropped as f64 * 0.5,
        "retransmissions received {rtx} for {dropped} dropped: {r}"
    );
    let frozen = a["totalFreezesDuration"].as_f64().unwrap_or(0.0)
        - b["totalFreezesDuration"].as_f64().unwrap_or(0.0);
    assert!(frozen < 3.0, "no freeze beyond the 3 s burst: {frozen} s");
    assert!(
        a["framesDecoded"].as_i64().unwrap_or(0) - b["framesDecoded"].as_i64().unwrap_or(0) >= 40,
        "video went on: {r}"
    );
}

/// The other direction: 10 % of a publisher's RTP lost on its way to the server. The
/// server's receive side NACKs the publisher (str0m's NACK timer, which runs only while a
/// packet is missing: vendor/str0m change 8), the publisher resends, and the viewer gets
/// the stream without the holes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_on_a_publisher_uplink_is_repaired_by_the_servers_nack() {
    if !enter_private_netns("loss_on_a_publisher_uplink_is_repaired_by_the_servers_nack") {
        return;
    }
    let (_app, r, dropped) = LossyCall::start(true, "lossy_up").await.burst().await;
    let delta = |who: &str, k: &str| {
        r["after"][who][k].as_f64().unwrap_or(0.0) - r["before"][who][k].as_f64().unwrap_or(0.0)
    };
    let (nacked, resent, lost) = (
        delta("bob", "nackCount"),
        delta("bob", "retransmittedPacketsSent"),
        delta("alice", "packetsLost"),
    );
    println!(
        "uplink loss: dropped {dropped} of Bob's RTP packets; the server NACKed {nacked} times, Bob resent {resent}; Alice lost {lost}"
    );
    assert!(dropped >= 5, "the burst dropped packets: {dropped}");
    assert!(nacked > 0.0, "the server NACKed the publisher: {r}");
    assert!(
        resent >= dropped as f64 * 0.5,
        "the publisher resent {resent} for {dropped} dropped: {r}"
    );
    // Without the server's repair every dropped packet is a hole in what Alice gets.
    assert!(
        lost <= dropped as f64 * 0.25,
        "Alice lost {lost} of the {dropped} dropped: {r}"
    );
    assert!(
        delta("alice", "totalFreezesDuration") < 3.0,
        "no freeze beyond the 3 s burst: {r}"
    );
    assert!(
        delta("alice", "framesDecoded") >= 40.0,
        "video went on: {r}"
    );
}
