//! Real headless Chromium browsers (fake camera and microphone) meeting through our
//! sfuserver, inside a private network namespace on loopback.

use crate::support;

use support::Appliance;
use support::media::{browser_scenario, enter_private_netns, instant_meeting, metric};

fn frames(v: &serde_json::Value) -> i64 {
    v["framesDecoded"].as_i64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_browsers_meet_late_joiner_and_leave() {
    if !enter_private_netns("three_browsers_meet_late_joiner_and_leave") {
        return;
    }
    let app = Appliance::start(&["--udpPort", "0"], &[]);
    let (_, code, _) = instant_meeting(&app).await;
    let r = tokio::task::block_in_place(|| browser_scenario(&app, &code, "three_party"));
    println!("three_party: {r}");
    for k in [
        "alice_sees_bob",
        "bob_sees_alice",
        "carol_sees_alice",
        "carol_sees_bob",
        "alice_sees_carol",
    ] {
        assert!(frames(&r[k]) >= 10, "{k}: {}", r[k]);
        // Chrome adapts the size to CPU and bandwidth; the picture keeps the camera's 4:3.
        let (w, h) = (
            r[k]["frameWidth"].as_i64().unwrap_or(0),
            r[k]["frameHeight"].as_i64().unwrap_or(0),
        );
        assert!(w >= 160 && w * 3 == h * 4, "{k}: {w}x{h}");
        assert!(
            r[k]["audioPackets"].as_i64().unwrap_or(0) > 25,
            "{k}: audio flows"
        );
    }
    // The media really went through our server: its counters saw it.
    assert!(metric(&app, "meeting_sfu_packets_in_total").await > 500.0);
    assert!(metric(&app, "meeting_sfu_packets_out_total").await > 500.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_joins_survive_glare() {
    if !enter_private_netns("simultaneous_joins_survive_glare") {
        return;
    }
    let app = Appliance::start(&["--udpPort", "0"], &[]);
    let (_, code, _) = instant_meeting(&app).await;
    let r = tokio::task::block_in_place(|| browser_scenario(&app, &code, "glare"));
    println!("glare: {r}");
    assert!(
        frames(&r["ann_sees_ben"]) >= 10 && frames(&r["ben_sees_ann"]) >= 10,
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_layer_follows_the_requested_size() {
    if !enter_private_netns("simulcast_layer_follows_the_requested_size") {
        return;
    }
    let app = Appliance::start(&["--udpPort", "0"], &[]);
    let (_, code, _) = instant_meeting(&app).await;
    let r = tokio::task::block_in_place(|| browser_scenario(&app, &code, "simulcast"));
    println!("simulcast: {r}");
    let small = r["small_width"].as_i64().expect("small");
    let large = r["large_width"].as_i64().expect("large");
    assert!(small <= 400, "the low layer for a small tile: {r}");
    assert!(large >= 2 * small, "a higher layer for a large tile: {r}");
    // Dynacast: while only the small tile was watched, the publisher sent only "q"; for the
    // large tile it sends a larger layer and has stopped "q".
    assert_eq!(r["small_layers"], serde_json::json!(["q"]), "{r}");
    let large_layers: Vec<&str> = r["large_layers"]
        .as_array()
        .expect("layers")
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    assert!(
        !large_layers.contains(&"q") && !large_layers.is_empty(),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_camera_screen_share_and_active_speaker() {
    if !enter_private_netns("h264_camera_screen_share_and_active_speaker") {
        return;
    }
    let app = Appliance::start(&["--udpPort", "0"], &[]);
    let (_, code, _) = instant_meeting(&app).await;
    let r = tokio::task::block_in_place(|| browser_scenario(&app, &code, "codecs_screen_speaker"));
    println!("codecs_screen_speaker: {r}");
    assert_eq!(
        r["camera"]["codec"], "video/H264",
        "the camera was relayed as H.264: {r}"
    );
    assert!(frames(&r["camera"]) >= 10, "{r}");
    // The screen is its own track, labelled as such, with its own 16:9 picture.
    assert_eq!(r["screen"]["source"], "screen", "{r}");
    let (w, h) = (
        r["screen"]["frameWidth"].as_i64().unwrap_or(0),
        r["screen"]["frameHeight"].as_i64().unwrap_or(0),
    );
    assert!(
        frames(&r["screen"]) >= 5 && w >= 320 && w * 9 == h * 16,
        "{r}"
    );
    assert_eq!(
        r["active_speaker"], r["speaker_id"],
        "the only one talking is the active speaker: {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaver_frees_m_lines_for_the_next_person() {
    if !enter_private_netns("a_leaver_frees_m_lines_for_the_next_person") {
        return;
    }
    let app = Appliance::start(&["--udpPort", "0"], &[]);
    let (_, code, _) = instant_meeting(&app).await;
    let r = tokio::task::block_in_place(|| browser_scenario(&app, &code, "leave_and_return"));
    println!("leave_and_return: {r}");
    assert_eq!(
        r["errors"],
        serde_json::json!([]),
        "no negotiation step was refused: {r}"
    );
    assert!(frames(&r["stayer_sees_newcomer"]) >= 10, "{r}");
    // Stayer's own two m-lines plus two received ones, reused for the newcomer: not six.
    assert_eq!(r["transceivers"], 4, "{r}");
    assert!(
        !app.log_lines().iter().any(|l| l.contains("answer refused")),
        "the server refused an answer"
    );
}
