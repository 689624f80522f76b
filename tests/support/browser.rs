//! Runs a node scenario that drives Debian's Chromium through playwright-core (files under
//! `tests/browser/`) and talks to the Rust test over stdio: it prints lines (a cue such as
//! `READY_DISABLE alice`, `RESULT {...}`, or `FAIL reason`), the test answers on its stdin.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

pub struct Scenario {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Scenario {
    /// `node tests/browser/<script> ` with `SCENARIO=<scenario>` and `envs`.
    pub fn start(script: &str, scenario: &str, envs: &[(&str, &str)]) -> Scenario {
        assert!(
            std::path::Path::new("/usr/bin/chromium").exists(),
            "chromium missing: run scripts/test-deps.sh"
        );
        let path = format!("{}/tests/browser/{script}", env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new("timeout")
            .args(["600", "node", &path])
            .env("SCENARIO", scenario)
            .envs(envs.iter().copied())
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
        let stderr = Arc::new(Mutex::new(String::new()));
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
        Scenario {
            child,
            lines: rx,
            seen: Vec::new(),
            stderr,
        }
    }

    /// The next line starting with one of `prefixes`: (prefix, rest). `context` is appended
    /// to the panic message (e.g. the appliance's log tail) when the scenario fails.
    pub fn next(
        &mut self,
        prefixes: &[&'static str],
        context: &dyn Fn() -> String,
    ) -> (&'static str, String) {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(240)) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if let Some(f) = l.strip_prefix("FAIL") {
                        self.fail(&format!("scenario failed: {f}"), context);
                    }
                    for p in prefixes {
                        if let Some(rest) = l.strip_prefix(p) {
                            return (p, rest.trim().to_string());
                        }
                    }
                }
                Err(_) => self.fail(&format!("no line among {prefixes:?}"), context),
            }
        }
    }

    pub fn cue(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("cue the scenario");
        stdin.flush().expect("flush");
    }

    pub fn fail(&mut self, why: &str, context: &dyn Fn() -> String) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let err = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        panic!(
            "{why}\nstdout:\n{}\nstderr:\n{err}\n{}",
            self.seen.join("\n"),
            context()
        )
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
