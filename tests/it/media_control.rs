//! Host actions from the apiserver, enforced by the sfuserver, with real browsers: mute,
//! remove (the guest is told why), lock (a newcomer is refused), end for all; and the
//! participation history the sfuserver reports back.

use crate::support;

use serde_json::json;
use std::time::Duration;
use support::Appliance;
use support::api::call;
use support::media::{BrowserRun, enter_private_netns, sign_in_from_log};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_mutes_removes_locks_and_ends() {
    if !enter_private_netns("host_mutes_removes_locks_and_ends") {
        return;
    }
    let app = Appliance::start(&["--udpPort", "0", "--sfuWorkers", "1"], &[]);
    let host = sign_in_from_log(&app, "host@corp.test").await;
    let m = call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&host),
        Some(json!({})),
    )
    .await;
    let (id, code) = (
        m.body["id"].as_i64().expect("id"),
        m.body["code"].as_str().expect("code").to_string(),
    );
    let control = |body: serde_json::Value| {
        let (url, host) = (
            app.url(&format!("/api/v1/meetings/{id}/control")),
            host.clone(),
        );
        async move { call("POST", &url, Some(&host), Some(body)).await }
    };
    let mut run = BrowserRun::start(&app, &code, "host_controls", &[]);
    let ready: serde_json::Value = serde_json::from_str(&tokio::task::block_in_place(|| {
        run.wait_line("READY", Duration::from_secs(120))
    }))
    .expect("ids");
    let guest = ready["guest"].as_str().expect("guest id").to_string();

    // Only the owner may act.
    let other = sign_in_from_log(&app, "other@corp.test").await;
    let a = call(
        "POST",
        &app.url(&format!("/api/v1/meetings/{id}/control")),
        Some(&other),
        Some(json!({"action": "end"})),
    )
    .await;
    assert_eq!(a.status, 404, "a stranger cannot even see the meeting");
    let a = control(json!({"action": "mute", "participant_id": "pnobody"})).await;
    assert_eq!(
        (a.status, a.error_code()),
        (409, "not_in_meeting"),
        "{:?}",
        a.body
    );

    let a = control(json!({"action": "mute", "participant_id": guest})).await;
    assert_eq!(a.status, 204, "{:?}", a.body);
    run.cue("mute");
    tokio::task::block_in_place(|| run.wait_line("STEP muted", Duration::from_secs(30)));
    let a = control(json!({"action": "remove", "participant_id": guest})).await;
    assert_eq!(a.status, 204, "{:?}", a.body);
    run.cue("remove");
    tokio::task::block_in_place(|| run.wait_line("STEP removed", Duration::from_secs(30)));
    let a = control(json!({"action": "lock"})).await;
    assert_eq!(a.status, 204, "{:?}", a.body);
    run.cue("lock");
    tokio::task::block_in_place(|| run.wait_line("STEP locked", Duration::from_secs(60)));
    let a = control(json!({"action": "end"})).await;
    assert_eq!(a.status, 204, "{:?}", a.body);
    run.cue("end");
    let r = tokio::task::block_in_place(|| run.finish());
    println!("host_controls: {r}");
    assert!(r["guest_muted"]["ok"] == true, "{r}");
    // Enforced, not just announced: the guest's audio stopped reaching the others (a few
    // packets may be in flight at the moment of the mute).
    assert!(
        r["audio_packets_while_muted"].as_i64().unwrap_or(999) <= 5,
        "{r}"
    );
    assert_eq!(r["guest_closed"]["reason"], "removed", "{r}");
    assert!(
        r["guest_closed"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("host removed you"),
        "{r}"
    );
    assert_eq!(r["other_told"]["reason"], "removed", "{r}");
    assert_eq!(
        r["late"]["joined"], false,
        "a locked room refuses newcomers: {r}"
    );
    assert!(
        r["late"]["error"].as_str().unwrap_or("").contains("locked"),
        "{r}"
    );
    assert_eq!(r["other_closed"]["reason"], "ended", "{r}");

    // Participation history: everyone who joined has a row; those who left have left_at.
    let h = support::wait_until(Duration::from_secs(10), "participation history", || {
        let h = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(call(
                "GET",
                &app.url(&format!("/api/v1/meetings/{id}/participants")),
                Some(&host),
                None,
            ))
        });
        let rows = h.body.as_array().cloned().unwrap_or_default();
        let names: Vec<&str> = rows
            .iter()
            .filter_map(|r| r["display_name"].as_str())
            .collect();
        (names.contains(&"Guest")
            && names.contains(&"Other")
            && rows
                .iter()
                .filter(|r| r["display_name"] == "Guest" || r["display_name"] == "Other")
                .all(|r| r["left_at"].is_i64()))
        .then_some(rows)
    });
    let guest_row = h
        .iter()
        .find(|r| r["participant_id"] == guest.as_str())
        .expect("guest row");
    assert!(
        guest_row["left_at"].as_i64() >= guest_row["joined_at"].as_i64(),
        "{guest_row}"
    );
}
