//! Media tests: a private network namespace (only loopback exists, so WebRTC can gather no
//! other address and no packet can leave the machine), sign-in from the dev-mode log, and
//! the Chromium harness in `tests/browser/harness.cjs`.

use super::{Appliance, wait_until};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// Runs the calling test in a fresh network namespace. Call first thing in the test:
/// `if !enter_private_netns("name") { return; }`. Outside a namespace it re-runs this test
/// binary, filtered to `test`, under `unshare -n` with loopback up, asserts that run passed,
/// and returns false; inside, it returns true and the test body runs.
pub fn enter_private_netns(test: &str) -> bool {
    if std::env::var("APPLIANCE_IN_NETNS").as_deref() == Ok("1") {
        return true;
    }
    // One media test at a time across every test binary: two browsers sending media and a
    // server on two cores is the whole machine; a second such test beside it starves both
    // (noise suppression, blur and frame-rate measurements go wrong under starvation).
    let lock = std::fs::File::create(std::env::temp_dir().join("meeting-appliance-media.lock"))
        .expect("media test lock file");
    lock.lock().expect("media test lock");
    let exe = std::env::current_exe().expect("test binary path");
    // libtest runs each test on a thread named with its whole path (`module::test`), which
    // `--exact` needs in the one test binary.
    let test = std::thread::current()
        .name()
        .filter(|n| n.ends_with(test))
        .map_or_else(|| test.to_string(), str::to_string);
    let test = test.as_str();
    let out = Command::new("unshare")
        .args([
            "-n",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$@\"",
            "sh",
        ])
        .arg(&exe)
        // The parent runs this test, so the child does too, ignored or not (`--ignored` by hand).
        .args([
            "--exact",
            test,
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("APPLIANCE_IN_NETNS", "1")
        .output()
        .expect("unshare (util-linux) runs; tests run as root");
    drop(lock);
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "test {test} failed inside its private network namespace:\n{text}"
    );
    assert!(
        text.contains("1 passed"),
        "test {test} did not run inside the namespace:\n{text}"
    );
    // What the test printed (figures), for `--nocapture` here.
    print!("{}", String::from_utf8_lossy(&out.stdout));
    false
}

/// Signs in on a dev-mode appliance (no mail server: the code is in its log).
pub async fn sign_in_from_log(app: &Appliance, email: &str) -> String {
    let before = app.log_len();
    let a = super::api::call(
        "POST",
        &app.url("/api/v1/auth/code"),
        None,
        Some(serde_json::json!({"email": email})),
    )
    .await;
    assert_eq!(a.status, 204, "{:?}", a.body);
    let line = app.wait_log_from(before, "Your sign-in code is ", Duration::from_secs(10));
    let at = line.find("Your sign-in code is ").expect("code line");
    let code = &line[at + 21..at + 27];
    let v = super::api::call(
        "POST",
        &app.url("/api/v1/auth/verify"),
        None,
        Some(serde_json::json!({"email": email, "code": code})),
    )
    .await;
    assert_eq!(v.status, 200, "{:?}", v.body);
    v.body["token"].as_str().expect("token").to_string()
}

/// Runs a Chromium scenario of `tests/browser/harness.cjs`; returns its RESULT object.
pub fn browser_scenario(app: &Appliance, code: &str, scenario: &str) -> Value {
    let harness = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/harness.cjs");
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "chromium missing: run scripts/test-deps.sh"
    );
    let out = Command::new("timeout")
        .args(["300", "node", harness])
        .env("BASE", app.base_url())
        .env("CODE", code)
        .env("SCENARIO", scenario)
        .output()
        .expect("node runs (scripts/test-deps.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let result = stdout.lines().find_map(|l| l.strip_prefix("RESULT "));
    match (out.status.success(), result) {
        (true, Some(r)) => serde_json::from_str(r).expect("RESULT is JSON"),
        _ => {
            let log = app.log_lines();
            let tail = log[log.len().saturating_sub(60)..].join("\n");
            panic!(
                "browser scenario {scenario} failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}\nappliance log tail:\n{tail}",
                out.status
            )
        }
    }
}

/// Reads one metric value (first sample line starting with `name`) from `/metrics`.
pub async fn metric(app: &Appliance, name: &str) -> f64 {
    let text = reqwest::get(app.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing:\n{text}"))
}

#[allow(dead_code)]
pub fn wait_metric(
    app: &Appliance,
    rt: &tokio::runtime::Handle,
    name: &str,
    pred: impl Fn(f64) -> bool,
) -> f64 {
    wait_until(Duration::from_secs(20), name, || {
        let v = rt.block_on(metric(app, name));
        pred(v).then_some(v)
    })
}

/// A Chromium scenario running in the background, cued through stdin and read line by line.
pub struct BrowserRun {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl BrowserRun {
    pub fn start(
        app: &Appliance,
        code: &str,
        scenario: &str,
        env: &[(&str, String)],
    ) -> BrowserRun {
        use std::io::{BufRead, BufReader, Read};
        use std::process::Stdio;
        let harness = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/harness.cjs");
        let mut cmd = Command::new("timeout");
        cmd.args(["300", "node", harness])
            .env("BASE", app.base_url())
            .env("CODE", code)
            .env("SCENARIO", scenario)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("node runs");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr");
        let keep = stderr.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            if let Ok(mut k) = keep.lock() {
                k.push_str(&s);
            }
        });
        BrowserRun {
            child,
            lines: rx,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Waits for a stdout line starting with `prefix`; returns the rest of it.
    pub fn wait_line(&mut self, prefix: &str, deadline: Duration) -> String {
        let end = std::time::Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if let Some(rest) = l.strip_prefix(prefix) {
                        return rest.trim().to_string();
                    }
                    if let Some(f) = l.strip_prefix("FAIL") {
                        self.fail(&format!("scenario failed: {f}"));
                    }
                }
                Err(_) => self.fail(&format!("no {prefix:?} line within {deadline:?}")),
            }
        }
    }

    pub fn cue(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("cue the scenario");
        stdin.flush().expect("flush");
    }

    /// Waits for the RESULT line and the process to end.
    pub fn finish(mut self) -> Value {
        let r = self.wait_line("RESULT ", Duration::from_secs(120));
        let _ = self.child.wait();
        serde_json::from_str(&r).expect("RESULT is JSON")
    }

    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let err = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        panic!("{why}\nstdout:\n{}\nstderr:\n{err}", self.seen.join("\n"))
    }
}

impl Drop for BrowserRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The media UDP address of worker 0: the socket the test handed over
/// ([`Appliance::start_with_media`]).
pub fn media_addr(app: &Appliance) -> std::net::SocketAddr {
    *app.media()
        .first()
        .expect("start the appliance with Appliance::start_with_media to know its media address")
}

/// Signs in a host from the log and creates its instant meeting: (token, code, id).
pub async fn instant_meeting(app: &Appliance) -> (String, String, i64) {
    let token = sign_in_from_log(app, "host@corp.test").await;
    let m = super::api::call(
        "POST",
        &app.url("/api/v1/meetings"),
        Some(&token),
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(m.status, 201, "{:?}", m.body);
    (
        token,
        m.body["code"].as_str().expect("code").to_string(),
        m.body["id"].as_i64().expect("id"),
    )
}
