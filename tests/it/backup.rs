//! Backup and restore of a single SQLite box, through the real binary: accounts, meetings,
//! notes and files are made over the API, a backup is taken while the appliance runs (and
//! while notes keep being written), restored into a new data dir, and a new appliance on it
//! must serve every one of them unchanged: sessions, meetings, the notes text of a version
//! that was really written, and every file byte for byte.

use crate::support;

use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::api::call;
use support::files::{get_hashed, pattern_bytes, request, sha256_hex, upload};
use support::media::sign_in_from_log;
use support::{Appliance, appliance_bin, run_cli};

const BIN: &str = appliance_bin!();

fn start(data: &std::path::Path) -> Appliance {
    start_on(data, "127.0.0.1:0")
}

fn start_on(data: &std::path::Path, listen: &str) -> Appliance {
    Appliance::start_bin(
        BIN,
        data,
        &[
            "--listen",
            listen,
            "--udpPort",
            "0",
            "--port",
            "0",
            "--sfuWorkers",
            "1",
        ],
        // The writer below saves as fast as it can: lift the per-member save limit.
        &[
            ("MEETING_NOTES__SAVES_PER_MINUTE", "1000000"),
            ("MEETING_NOTES__SAVE_BURST", "1000000"),
        ],
    )
}

async fn put_notes(app_url: &str, id: i64, token: &str, text: &str, version: i64) -> (u16, Value) {
    let a = call(
        "PUT",
        &format!("{app_url}/api/v1/meetings/{id}/notes"),
        Some(token),
        Some(json!({"text": text, "version": version})),
    )
    .await;
    (a.status, a.body)
}

/// The bytes' SHA-256 of a file as the API serves it (302 to the fsserver, then GET).
async fn file_sha(base: &str, token: &str, meeting: i64, file: &str) -> (u64, String) {
    let url = format!("{base}/api/v1/meetings/{meeting}/files/{file}");
    let auth = format!("Bearer {token}");
    tokio::task::spawn_blocking(move || {
        let r = request("GET", &url, &[("Authorization", &auth)], b"");
        assert_eq!(r.status, 302, "{:?}", String::from_utf8_lossy(&r.body));
        let loc = r.header("location").expect("Location").to_string();
        let (resp, len, sha, _) = get_hashed(&loc, &[]);
        assert_eq!(resp.status, 200, "GET {loc}");
        (len, sha)
    })
    .await
    .expect("thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_running_restores_every_account_meeting_note_and_file() {
    let work = tempfile::tempdir().expect("tmp");
    let old_dir = work.path().join("old");
    let app = start(&old_dir);
    let base = app.base_url();

    // Two accounts, a scheduled meeting with an invitee, an instant meeting.
    let ann = sign_in_from_log(&app, "ann@corp.test").await;
    let bob = sign_in_from_log(&app, "bob@corp.test").await;
    let begin = meeting_appliance::util::now() + 3600;
    let m = call(
        "POST",
        &format!("{base}/api/v1/meetings"),
        Some(&ann),
        Some(json!({"title": "Budget review", "begin_at": begin, "end_at": begin + 1800, "invitees": ["bob@corp.test"]})),
    )
    .await;
    assert_eq!(m.status, 201, "{:?}", m.body);
    let scheduled = m.body["id"].as_i64().expect("id");
    let m = call(
        "POST",
        &format!("{base}/api/v1/meetings"),
        Some(&bob),
        Some(json!({})),
    )
    .await;
    assert!(m.status == 201 || m.status == 200, "{:?}", m.body);
    let instant = m.body["id"].as_i64().expect("id");

    // Notes, and files of several sizes (0 B, small image-ish, 3 MiB) in both meetings.
    let (s, _) = put_notes(&base, scheduled, &ann, "# Budget\n\n- first", 0).await;
    assert_eq!(s, 200);
    let (s, _) = put_notes(&base, instant, &bob, "bob's notes", 0).await;
    assert_eq!(s, 200);
    let mut files: Vec<(i64, String, String, u64)> = Vec::new(); // meeting, id, sha, len
    for (meeting, token, name, len, seed) in [
        (scheduled, &ann, "empty.txt", 0usize, 1u64),
        (scheduled, &ann, "slide.bin", 4096, 2),
        (instant, &bob, "big.bin", 3 << 20, 3),
    ] {
        let data = pattern_bytes(seed, len);
        let sha = sha256_hex(&data);
        let f = upload(
            &base,
            token,
            meeting,
            name,
            "application/octet-stream",
            data,
        )
        .await;
        let id = f["id"].as_str().expect("file id").to_string();
        files.push((meeting, id, sha, len as u64));
    }

    // A writer keeps editing the scheduled meeting's notes during the backup.
    let written: Arc<Mutex<HashMap<i64, String>>> = Arc::new(Mutex::new(HashMap::from([(
        1,
        "# Budget\n\n- first".to_string(),
    )])));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (written, stop, base, ann) = (written.clone(), stop.clone(), base.clone(), ann.clone());
        tokio::spawn(async move {
            let mut version = 1;
            while !stop.load(Ordering::SeqCst) {
                let text = format!("# Budget\n\n- edit {version}");
                let (s, body) = put_notes(&base, scheduled, &ann, &text, version).await;
                assert_eq!(s, 200, "{body:?}");
                version = body["version"].as_i64().expect("version");
                written.lock().expect("lock").insert(version, text);
            }
            version
        })
    };
    // Let a few versions land first.
    support::wait_until(Duration::from_secs(10), "notes edits", || {
        (written.lock().expect("lock").len() > 3).then_some(())
    });
    let acknowledged_before = *written.lock().expect("lock").keys().max().expect("some");

    let backup_dir = work.path().join("backup");
    let (b, d) = (
        backup_dir.to_str().expect("utf8").to_string(),
        old_dir.to_str().expect("utf8").to_string(),
    );
    let started = std::time::Instant::now();
    let o =
        tokio::task::spawn_blocking(move || run_cli(BIN, &["backup", "--to", &b, "--dataDir", &d]))
            .await
            .expect("thread");
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let last = writer.await.expect("writer");
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "backup failed: {out}");
    eprintln!(
        "MEASURED backup of a running box in {:.2}s while notes went from version {acknowledged_before} to {last}: {}",
        took.as_secs_f64(),
        out.trim()
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(backup_dir.join("MANIFEST.json")).expect("manifest"))
            .expect("json");
    assert_eq!(manifest["database"], "sqlite");
    let paths: Vec<&str> = manifest["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["path"].as_str().expect("path"))
        .collect();
    assert!(
        paths.contains(&"meeting.db") && paths.contains(&"secret"),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.starts_with("files/tmp/")),
        "{paths:?}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&backup_dir)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the backup holds the secret");

    // Restore into a new data dir; restoring over it again is refused.
    let new_dir = work.path().join("new");
    let (b, n) = (
        backup_dir.to_str().expect("utf8").to_string(),
        new_dir.to_str().expect("utf8").to_string(),
    );
    let o = run_cli(BIN, &["restore", "--from", &b, "--dataDir", &n]);
    assert!(
        o.status.success(),
        "restore: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run_cli(BIN, &["restore", "--from", &b, "--dataDir", &n]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The old box is gone for good; the new one takes over its address (meetings remember
    // the address of their file server, as a real restore keeps its domain) and serves
    // everything.
    let listed_before = call("GET", &format!("{base}/api/v1/meetings"), Some(&ann), None).await;
    let address = app.addr().to_string();
    drop(app);
    let app = start_on(&new_dir, &address);
    let base = app.base_url();
    for (token, email) in [(&ann, "ann@corp.test"), (&bob, "bob@corp.test")] {
        let me = call("GET", &format!("{base}/api/v1/me"), Some(token), None).await;
        assert_eq!(
            me.status, 200,
            "the session of {email} survives: {:?}",
            me.body
        );
        assert_eq!(me.body["email"], email);
    }
    let listed = call("GET", &format!("{base}/api/v1/meetings"), Some(&ann), None).await;
    assert_eq!(listed.status, 200);
    let ids = |v: &Value| -> Vec<(i64, String)> {
        let arr = v
            .as_array()
            .or_else(|| v["meetings"].as_array())
            .expect("list");
        let mut out: Vec<(i64, String)> = arr
            .iter()
            .map(|m| {
                (
                    m["id"].as_i64().expect("id"),
                    m["title"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        out.sort();
        out
    };
    assert_eq!(ids(&listed.body), ids(&listed_before.body));
    assert!(ids(&listed.body).contains(&(scheduled, "Budget review".to_string())));
    let bobs = call(
        "GET",
        &format!("{base}/api/v1/meetings/{instant}"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(bobs.status, 200, "{:?}", bobs.body);

    let notes = call(
        "GET",
        &format!("{base}/api/v1/meetings/{scheduled}/notes"),
        Some(&ann),
        None,
    )
    .await;
    assert_eq!(notes.status, 200, "{:?}", notes.body);
    let v = notes.body["version"].as_i64().expect("version");
    let written = written.lock().expect("lock").clone();
    assert!(
        v >= acknowledged_before,
        "version {v} is older than the backup start ({acknowledged_before})"
    );
    assert_eq!(
        notes.body["text"].as_str(),
        written.get(&v).map(String::as_str),
        "the restored notes are exactly version {v} as written"
    );
    let notes = call(
        "GET",
        &format!("{base}/api/v1/meetings/{instant}/notes"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(notes.body["text"], "bob's notes");

    for (meeting, id, sha, len) in &files {
        let token = if *meeting == instant { &bob } else { &ann };
        let (got_len, got_sha) = file_sha(&base, token, *meeting, id).await;
        assert_eq!(
            (got_len, &got_sha),
            (*len, sha),
            "file {id} of meeting {meeting}"
        );
    }
    // The restored box still works: a new edit on top of the restored version.
    let (s, body) = put_notes(&base, scheduled, &ann, "after restore", v).await;
    assert_eq!(s, 200, "{body:?}");
}

#[test]
fn a_damaged_backup_is_refused_before_anything_is_written() {
    let work = tempfile::tempdir().expect("tmp");
    let data = work.path().join("data");
    let app = start(&data);
    drop(app);
    let b = work.path().join("b");
    let o = run_cli(
        BIN,
        &[
            "backup",
            "--to",
            b.to_str().expect("utf8"),
            "--dataDir",
            data.to_str().expect("utf8"),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // One flipped byte in the database copy.
    let db = b.join("meeting.db");
    let mut bytes = std::fs::read(&db).expect("read");
    let i = bytes.len() / 2;
    bytes[i] ^= 0xff;
    std::fs::write(&db, bytes).expect("write");
    let new = work.path().join("new");
    let o = run_cli(
        BIN,
        &[
            "restore",
            "--from",
            b.to_str().expect("utf8"),
            "--dataDir",
            new.to_str().expect("utf8"),
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("damaged"), "{err}");
    assert!(!new.exists(), "nothing restored");
}
