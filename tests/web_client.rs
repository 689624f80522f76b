//! The web client end to end: the real binary with the client built into it, Debian's headless
//! Chromium driven by `tests/browser/web.cjs` (playwright-core), inside a private network
//! namespace (only loopback). What a person does is typed and clicked; what they see is read
//! from the page. Needs `make web` (or `scripts/test-deps.sh`) before the build.

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::api::{code_in, mail_args, mails_to, nth_mail_to};
use support::media::enter_private_netns;
use support::{Appliance, SmtpSink, appliance_bin};

/// `tests/browser/web.cjs` running one scenario; lines on stdout, cues on stdin.
struct Web {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Web {
    fn start(base: &str, scenario: &str) -> Web {
        assert!(
            std::path::Path::new("/usr/bin/chromium").exists(),
            "chromium missing: run scripts/test-deps.sh"
        );
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/web.cjs");
        let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/screenshots");
        let mut child = Command::new("timeout")
            .args(["300", "node", script])
            .env("BASE", base)
            .env("SCENARIO", scenario)
            .env("SHOTS", shots)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node runs (scripts/test-deps.sh installs it)");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
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
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut k) = keep.lock() {
                    k.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Web {
            child,
            lines: rx,
            seen: Vec::new(),
            stderr,
        }
    }

    /// The next line that starts with one of `prefixes`: (prefix, rest).
    fn next(&mut self, prefixes: &[&'static str], app: &Appliance) -> (&'static str, String) {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(180)) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if let Some(f) = l.strip_prefix("FAIL") {
                        self.fail(&format!("scenario failed: {f}"), app);
                    }
                    for p in prefixes {
                        if let Some(rest) = l.strip_prefix(p) {
                            return (p, rest.trim().to_string());
                        }
                    }
                }
                Err(_) => self.fail(&format!("no line among {prefixes:?}"), app),
            }
        }
    }

    fn cue(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("cue the scenario");
        stdin.flush().expect("flush");
    }

    fn fail(&mut self, why: &str, app: &Appliance) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let err = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        let log = app.log_lines();
        let tail = log[log.len().saturating_sub(60)..].join("\n");
        panic!(
            "{why}\nstdout:\n{}\nstderr:\n{err}\nappliance log tail:\n{tail}",
            self.seen.join("\n")
        )
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sign-in by the mailed code, scheduling (the invitee's mail has the join link), host and a
/// guest by the deep link seeing each other, chat both ways, the guest's screen shown large,
/// switching microphones mid-call, the host muting and removing the guest, locking (a
/// latecomer is refused) and ending, the language switch; writes the screenshots.
#[test]
fn web_client_meeting() {
    if !enter_private_netns("web_client_meeting") {
        return;
    }
    let sink = SmtpSink::start();
    let args = mail_args(sink.port());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = Appliance::start(&args, &[]);
    let mut web = Web::start(&app.base_url(), "meeting");
    let result = loop {
        match web.next(&["NEED_CODE ", "SCHEDULED ", "RESULT "], &app) {
            ("NEED_CODE ", email) => {
                let n = mails_to(&sink, &email).len();
                let code = code_in(&nth_mail_to(&sink, &email, n.max(1)));
                web.cue(&code);
            }
            ("SCHEDULED ", code) => {
                let mail = nth_mail_to(&sink, "guest@corp.test", 1);
                let link = format!("{}/m/{code}", app.base_url());
                assert!(
                    mail.text_body().contains(&link),
                    "the invitation carries the join link {link}:\n{}",
                    mail.text_body()
                );
                web.cue("ok");
            }
            (_, r) => break serde_json::from_str::<Value>(&r).expect("RESULT is JSON"),
        }
    };
    eprintln!("{result:#}");
    assert_eq!(result["host_sees_guest"]["ok"], true);
    assert_eq!(result["guest_sees_host"]["ok"], true);
    assert!(
        result["host_sees_guest"]["tileVideoWidth"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    assert_eq!(result["chat"], true);
    let switch = &result["device_switch"];
    assert!(
        switch["microphones"].as_u64().unwrap_or(0) > 1
            && switch["audio_packets_after"].as_u64().unwrap_or(0) > 25,
        "microphone switched mid-call and audio kept flowing: {switch}"
    );
    let stage = &result["screen"]["stage"];
    assert_eq!(
        stage["pid"], result["host_sees_guest"]["pid"],
        "the guest's screen is on the stage"
    );
    assert!(
        stage["w"].as_u64().unwrap_or(0) > 0,
        "screen decoded: {stage}"
    );
    assert_eq!(result["guest_muted"]["ok"], true);
    assert_eq!(result["guest_removed"]["reason"], "removed");
    assert_eq!(
        result["guest_removed"]["text"],
        "The host removed you from the meeting."
    );
    assert_eq!(result["host_alone"]["ok"], true);
    assert_eq!(
        result["late"]["reason"], "locked",
        "a latecomer is refused while locked"
    );
    assert_eq!(result["host_ended"], "ended");
    assert_eq!(result["zh_button"], "开始我的即时会议");
    for f in ["home.png", "meeting.png", "screen-share.png"] {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/screenshots")
            .join(f);
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 10_000, "{} written ({len} bytes)", p.display());
    }
}

/// The appliance is killed (SIGKILL) mid-meeting and started again on the same address and
/// data: both browsers rejoin on their own and see each other's video within 20 s of the kill.
#[test]
fn web_client_reconnects_after_restart() {
    if !enter_private_netns("web_client_reconnects_after_restart") {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("appliance-")
        .tempdir()
        .expect("data dir");
    let listen = format!("127.0.0.1:{}", support::free_port());
    let args = ["--listen", listen.as_str()];
    let mut app = Appliance::start_bin(appliance_bin!(), dir.path(), &args, &[]);
    let mut web = Web::start(&app.base_url(), "restart");
    let result = loop {
        match web.next(&["NEED_CODE ", "READY_RESTART", "RESULT "], &app) {
            ("NEED_CODE ", _) => {
                let line = app.wait_log("Your sign-in code is ", Duration::from_secs(10));
                let at = line.find("Your sign-in code is ").expect("code") + 21;
                web.cue(&line[at..at + 6]);
            }
            ("READY_RESTART", _) => {
                app.signal(libc::SIGKILL);
                support::wait_until(Duration::from_secs(10), "the appliance to die", || {
                    app.try_wait()
                });
                drop(app);
                app = Appliance::start_bin(appliance_bin!(), dir.path(), &args, &[]);
                web.cue("restarted");
            }
            (_, r) => break serde_json::from_str::<Value>(&r).expect("RESULT is JSON"),
        }
    };
    eprintln!("{result:#}");
    let after = result["reconnected_after_s"].as_f64().expect("seconds");
    assert!(
        after < 20.0,
        "both see each other again {after} s after the kill"
    );
    assert_eq!(result["after"]["host"]["ok"], true);
    assert_eq!(result["after"]["guest"]["ok"], true);
    assert_eq!(result["new_ids"], true, "they rejoined as new participants");
}
