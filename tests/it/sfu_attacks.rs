//! Attacks on the sfuserver from a participant, over real signaling (a WebSocket against the
//! appliance binary): each is performed and shown to hit only the attacker, while the media
//! worker and everyone else carry on.
//!
//! - An SDP offer that makes str0m 0.25 panic (fuzz/known-crashes/sdp, found by the `sdp`
//!   fuzz target) closes only its sender (`bad_sdp`); before, it ended the media worker
//!   thread and every meeting on it.
//! - A participant a host removed comes back with its join token, still valid for minutes:
//!   refused (`removed`) on every worker; before, it simply joined again.

use crate::support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::Appliance;
use support::api::call;
use support::media::instant_meeting;
use support::signal::{connect, open};

/// An appliance with a signed-in host and its instant meeting: (app, host token, code, id).
async fn hosted(workers: &str) -> (Appliance, String, String, i64) {
    let app = Appliance::start(&["--udpPort", "0", "--sfuWorkers", workers], &[]);
    let (host, code, id) = instant_meeting(&app).await;
    (app, host, code, id)
}

/// `POST /join/{code}` as a guest: the join answer (participant id, join token, signal URL).
async fn join_answer(app: &Appliance, code: &str, name: &str) -> Value {
    let a = call(
        "POST",
        &app.url(&format!("/api/v1/join/{code}")),
        None,
        Some(json!({"display_name": name})),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    a.body
}

/// A well-formed offer publishing one audio track, as a client makes it (str0m as the client).
fn good_offer() -> (String, String) {
    let mut rtc = str0m::RtcConfig::new().build(Instant::now());
    let host = str0m::Candidate::host(([127, 0, 0, 1], 40_000).into(), "udp").expect("candidate");
    rtc.add_local_candidate(host);
    let mut change = rtc.sdp_api();
    let mid = change.add_media(
        str0m::media::MediaKind::Audio,
        str0m::media::Direction::SendOnly,
        Some("s".into()),
        None,
        None,
    );
    let (offer, _pending) = change.apply().expect("an offer");
    (offer.to_sdp_string(), mid.to_string())
}

/// The offers in fuzz/known-crashes/sdp (str0m panics on them).
fn known_crashes() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/known-crashes/sdp");
    let mut v: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("fuzz/known-crashes/sdp")
        .map(|e| {
            let p = e.expect("entry").path();
            let name = p.file_name().expect("name").to_string_lossy().to_string();
            (name, std::fs::read_to_string(&p).expect("read"))
        })
        .collect();
    v.sort();
    assert!(!v.is_empty());
    v
}

/// Every known str0m-panicking offer, sent by a participant over signaling, closes that
/// participant with `bad_sdp`; the one media worker survives: the bystander keeps being
/// answered and sees the attacker leave with that reason, a newcomer joins and has a real
/// offer answered, and the process is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_that_makes_str0m_panic_closes_only_its_sender() {
    let (app, _host, code, _id) = hosted("1").await;
    let mut bystander = open(&join_answer(&app, &code, "Bystander").await).await;
    for (name, sdp) in known_crashes() {
        let mut attacker = open(&join_answer(&app, &code, "Attacker").await).await;
        assert!(
            attacker
                .send(json!({"type": "offer", "sdp": sdp, "sources": {}}))
                .await
        );
        let reason = attacker.until_closed(Duration::from_secs(10)).await;
        assert_eq!(reason.as_deref(), Some("bad_sdp"), "{name}");
        let closed = attacker
            .seen
            .iter()
            .find(|m| m["type"] == "closed")
            .cloned()
            .unwrap_or_default();
        println!("{name}: the attacker was told {closed}");
        let pid = attacker.participant.clone();
        assert_eq!(
            bystander.left_reason(&pid, Duration::from_secs(10)).await,
            "bad_sdp",
            "{name}"
        );
        bystander.alive().await;
    }
    // The worker still negotiates: a newcomer's well-formed offer is answered.
    let mut newcomer = open(&join_answer(&app, &code, "Newcomer").await).await;
    let (sdp, mid) = good_offer();
    assert!(
        newcomer
            .send(json!({"type": "offer", "sdp": sdp, "sources": {mid: "microphone"}}))
            .await
    );
    let answer = newcomer.until("answer", Duration::from_secs(10)).await;
    assert!(
        answer["sdp"]
            .as_str()
            .is_some_and(|s| s.contains("m=audio")),
        "{answer}"
    );
    bystander.alive().await;
    newcomer.alive().await;
    assert!(
        std::path::Path::new(&format!("/proc/{}", app.pid())).exists(),
        "the appliance process is still running"
    );
}

/// A removed participant's join token stays valid (5 minutes by default); coming back with
/// it, on either of two media workers, is refused with `removed`. Others stay, and a fresh
/// join (a new participant id, which the apiserver only hands to people it lets in) works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_participant_cannot_come_back_with_its_join_token() {
    let (app, host, code, id) = hosted("2").await;
    let mut bystander = open(&join_answer(&app, &code, "Bystander").await).await;
    let guest_answer = join_answer(&app, &code, "Gil").await;
    let mut guest = open(&guest_answer).await;
    let gid = guest.participant.clone();
    let r = call(
        "POST",
        &app.url(&format!("/api/v1/meetings/{id}/control")),
        Some(&host),
        Some(json!({"action": "remove", "participant_id": gid})),
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(
        guest.until_closed(Duration::from_secs(10)).await.as_deref(),
        Some("removed")
    );
    assert_eq!(
        bystander.left_reason(&gid, Duration::from_secs(10)).await,
        "removed"
    );
    // The same token, several times: with two workers, the picks alternate between them.
    for attempt in 0..4 {
        let mut again = connect(&guest_answer).await;
        let reason = again.until_closed(Duration::from_secs(10)).await;
        assert_eq!(reason.as_deref(), Some("removed"), "attempt {attempt}");
        assert!(
            !again.seen.iter().any(|m| m["type"] == "joined"),
            "attempt {attempt}: {:?}",
            again.seen
        );
    }
    // Nobody else saw the removed guest come back.
    bystander.alive().await;
    assert_eq!(
        bystander
            .seen
            .iter()
            .filter(|m| m["type"] == "participant_joined"
                && m["participant"]["participant_id"] == gid.as_str())
            .count(),
        1,
        "{:?}",
        bystander.seen
    );
    let mut other = open(&join_answer(&app, &code, "Other").await).await;
    other.alive().await;
    bystander.alive().await;
}
