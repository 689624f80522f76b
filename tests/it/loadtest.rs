//! `meeting-appliance loadtest` against a real appliance, inside a private network namespace
//! (loopback only): a small `meeting` (3×3) and a small `fanout` (1→4, two subscribers
//! checked fully and two counting only). The report must be real: every participant got media
//! from everyone, packet and frame counts match what the publishers sent, nothing was lost at
//! this tiny load, latency samples exist for every checked frame, and the server's CPU and
//! memory were read. No timing assertions: the box is shared.

use crate::support;

use serde_json::Value;
use std::process::Command;

use support::Appliance;
use support::media::{enter_private_netns, sign_in_from_log};

const SECS: f64 = 3.0;

fn loadtest(app: &Appliance, token: &str, extra: &[&str]) -> Value {
    let pid = app.pid().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_meeting-appliance"))
        .args(["loadtest", "--url", &app.base_url(), "--token", token])
        .args(["--server-pid", &pid, "--duration", "3s", "--warmup", "1s"])
        // `held` then means: everyone up, no failure, loss within 1 %; latency is not judged.
        .args(["--json", "-", "--keep-going", "--max-p99-ms", "1000000"])
        .args(extra)
        .output()
        .expect("run loadtest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadtest failed: {stderr}\n{stdout}");
    eprintln!("{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("report is JSON ({e}):\n{stdout}"))
}

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} missing in {v:#}"))
}

/// What every step report must show at a load this small.
fn check_step(s: &Value) {
    assert_eq!(s["all_ready"], true, "everyone got media: {s:#}");
    assert_eq!(s["failures"].as_array().map(Vec::len), Some(0), "{s:#}");
    assert_eq!(num(s, "frames_lost"), 0.0, "no loss at tiny load: {s:#}");
    assert_eq!(num(s, "light_loss_pct"), 0.0, "{s:#}");
    assert_eq!(
        num(&s["latency"], "samples"),
        num(s, "frames_received"),
        "one latency sample per checked frame: {s:#}"
    );
    assert!(num(&s["latency"], "p50_us") > 0.0, "{s:#}");
    let server = &s["server"];
    assert!(num(server, "cpu_cores") > 0.0, "server CPU read: {s:#}");
    assert!(num(server, "rss_mib") > 1.0, "server RSS read: {s:#}");
    assert!(num(s, "forwarded_mbps") > 0.0, "{s:#}");
    assert_eq!(s["held"], true, "{s:#}");
}

/// Our appliance's own added latency: one histogram sample per forwarded copy, in the
/// window (the subscribers' received RTP packets; the server publishes its histogram every
/// 250 ms, so each end of a 3 s window may be off by that much).
fn check_server_latency(s: &Value) {
    let l = &s["server_latency"];
    let copies = num(l, "samples");
    let received = num(s, "rtp_packets");
    assert!(
        copies >= 0.7 * received && copies <= 1.3 * received,
        "{copies} latency samples for {received} packets: {s:#}"
    );
    assert!(
        num(l, "p50_us") > 0.0 && num(l, "p99_us") >= num(l, "p50_us"),
        "{s:#}"
    );
}

/// `got` is within [lo, hi] × `expected`.
fn about(what: &str, got: f64, expected: f64, lo: f64, hi: f64, s: &Value) {
    assert!(
        got >= expected * lo && got <= expected * hi,
        "{what}: {got} not within {lo}..{hi} × the expected {expected}: {s:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadtest_reports_real_media_for_meeting_and_fanout() {
    if !enter_private_netns("loadtest_reports_real_media_for_meeting_and_fanout") {
        return;
    }
    let app = Appliance::start(&["--udpPort", "0"], &[]);
    let token = sign_in_from_log(&app, "host@corp.test").await;

    // 3×3 at 300 kbit/s video (30 fps) and 50 audio packets/s: every participant is checked
    // fully and receives 2 × (50 + 30) frames per second.
    let r = loadtest(
        &app,
        &token,
        &[
            "--scenario",
            "meeting",
            "--steps",
            "3",
            "--video-kbps",
            "300",
        ],
    );
    assert_eq!(r["scenario"], "meeting");
    let s = &r["steps"][0];
    check_step(s);
    assert_eq!(num(s, "participants"), 3.0);
    check_server_latency(s);
    let window = num(s, "window_s");
    assert!(window >= SECS, "{s:#}");
    about(
        "meeting frames received",
        num(s, "frames_received"),
        3.0 * 2.0 * 80.0 * window,
        0.8,
        1.1,
        s,
    );
    // Every frame sent in the window reaches the two others (edges aside).
    about(
        "meeting frames received vs sent",
        num(s, "frames_received"),
        2.0 * num(s, "frames_sent"),
        0.9,
        1.1,
        s,
    );
    // 300 kbit/s at 30 fps is 1 250-byte frames, two RTP packets each; audio one each.
    about(
        "meeting RTP packets",
        num(s, "rtp_packets"),
        3.0 * 2.0 * (50.0 + 2.0 * 30.0) * window,
        0.8,
        1.2,
        s,
    );
    assert_eq!(r["highest_held"], 3);

    // 1 → 4, two subscribers fully checked, two counting packets without decrypting.
    let r = loadtest(
        &app,
        &token,
        &[
            "--scenario",
            "fanout",
            "--steps",
            "4",
            "--video-kbps",
            "300",
            "--full-check",
            "2",
        ],
    );
    let s = &r["steps"][0];
    check_step(s);
    assert_eq!(num(s, "publishers"), 1.0);
    assert_eq!(num(s, "subscribers"), 4.0);
    check_server_latency(s);
    let window = num(s, "window_s");
    about(
        "fanout frames received (two checked subscribers)",
        num(s, "frames_received"),
        2.0 * 80.0 * window,
        0.8,
        1.1,
        s,
    );
    about(
        "fanout RTP packets (all four subscribers)",
        num(s, "rtp_packets"),
        4.0 * (50.0 + 2.0 * 30.0) * window,
        0.8,
        1.2,
        s,
    );
    assert_eq!(r["highest_held"], 4);

    // Audio: 2 audio-only publishers, 2 listeners; everyone is checked. Publishers hear
    // each other, listeners hear both: (2 × 1 + 2 × 2) × 50 frames (= RTP packets) per second.
    let r = loadtest(
        &app,
        &token,
        &["--scenario", "audio", "--publishers", "2", "--steps", "2"],
    );
    let s = &r["steps"][0];
    check_step(s);
    assert_eq!(
        (num(s, "publishers"), num(s, "subscribers")),
        (2.0, 4.0),
        "{s:#}"
    );
    let window = num(s, "window_s");
    about(
        "audio frames received",
        num(s, "frames_received"),
        300.0 * window,
        0.8,
        1.1,
        s,
    );
    about(
        "audio RTP packets",
        num(s, "rtp_packets"),
        300.0 * window,
        0.8,
        1.2,
        s,
    );
    assert_eq!(
        num(&s["latency_video"], "samples"),
        0.0,
        "no video in `audio`: {s:#}"
    );

    // Stepping stops at the first step that does not hold (no loss can be ≤ -1 %).
    let pid = app.pid().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_meeting-appliance"))
        .args(["loadtest", "--url", &app.base_url(), "--token", &token])
        .args(["--server-pid", &pid, "--duration", "1s", "--warmup", "0s"])
        .args(["--json", "-", "--scenario", "fanout", "--steps", "1,2"])
        .args(["--max-loss=-1"])
        .output()
        .expect("run loadtest");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("report is JSON");
    assert_eq!(
        r["steps"].as_array().map(Vec::len),
        Some(1),
        "stopped after step 1: {r:#}"
    );
    assert_eq!(r["steps"][0]["held"], false, "{r:#}");
    assert_eq!(r["highest_held"], Value::Null, "{r:#}");
}

/// The same generator driving Janus' videoroom through its HTTP API (the reference SFU of
/// BENCHMARKS.md): 1 → 3 and a 3-person meeting, with the counts the appliance gets above.
/// Janus cannot use `lo` for media, so it gets a veth pair inside this test's own namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadtest_drives_janus_videoroom_with_the_same_participants() {
    if !enter_private_netns("loadtest_drives_janus_videoroom_with_the_same_participants") {
        return;
    }
    let sh = |cmd: &str| {
        let ok = Command::new("sh").args(["-c", cmd]).status().expect("sh");
        assert!(ok.success(), "{cmd}");
    };
    sh(
        "ip link add jv0 type veth peer name jv1 && ip addr add 10.99.0.1/24 dev jv0 \
        && ip link set jv0 up && ip link set jv1 up",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().to_str().expect("utf-8 path");
    sh(&format!(
        "{}/scripts/janus-conf.sh {conf} 10.99.0.1 jv0 1",
        env!("CARGO_MANIFEST_DIR")
    ));
    let log = std::fs::File::create(dir.path().join("janus.log")).expect("log");
    /// Janus stops with the test, also when an assertion fails.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let janus = Reap(
        Command::new("janus")
            .args(["-C", &format!("{conf}/janus.jcfg"), "-F", conf])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("janus runs (scripts/test-deps.sh installs it)"),
    );
    let api = "http://10.99.0.1:8088/janus";
    meeting_appliance::util::install_ring_provider();
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if http
            .get(format!("{api}/info"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let janus_log = || std::fs::read_to_string(dir.path().join("janus.log")).unwrap_or_default();
    assert!(up, "Janus answers on {api}: {}", janus_log());

    let run = |extra: &[&str]| {
        let pid = janus.0.id().to_string();
        let out = Command::new(env!("CARGO_BIN_EXE_meeting-appliance"))
            .args(["loadtest", "--janus", api, "--local-ip", "10.99.0.1"])
            .args(["--server-pid", &pid, "--duration", "3s", "--warmup", "1s"])
            .args(["--json", "-", "--keep-going", "--max-p99-ms", "1000000"])
            .args(["--video-kbps", "300"])
            .args(extra)
            .output()
            .expect("run loadtest");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "loadtest against Janus failed: {stderr}\n{stdout}\n{}",
            janus_log()
        );
        eprintln!("{stderr}");
        serde_json::from_str::<Value>(&stdout)
            .unwrap_or_else(|e| panic!("report is JSON ({e}):\n{stdout}"))
    };

    let r = run(&["--scenario", "fanout", "--steps", "3", "--full-check", "1"]);
    assert_eq!(r["target"], "janus", "{r:#}");
    let s = &r["steps"][0];
    check_step(s);
    let window = num(s, "window_s");
    about(
        "Janus fanout frames received (one checked subscriber)",
        num(s, "frames_received"),
        80.0 * window,
        0.8,
        1.1,
        s,
    );
    about(
        "Janus fanout RTP packets (all three subscribers)",
        num(s, "rtp_packets"),
        3.0 * (50.0 + 2.0 * 30.0) * window,
        0.8,
        1.2,
        s,
    );

    // A meeting: in Janus every participant is a publishing and a subscribing connection.
    let r = run(&["--scenario", "meeting", "--steps", "3"]);
    let s = &r["steps"][0];
    check_step(s);
    assert_eq!(num(s, "participants"), 3.0);
    assert_eq!(num(s, "connections"), 6.0, "{s:#}");
    let window = num(s, "window_s");
    about(
        "Janus meeting frames received",
        num(s, "frames_received"),
        3.0 * 2.0 * 80.0 * window,
        0.8,
        1.1,
        s,
    );
    drop(janus);
}
