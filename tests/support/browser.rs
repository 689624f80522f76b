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

/// A desktop for a headed Chromium: an X server (Xvfb, display number of its choosing) and a
/// PulseAudio server with a null sink, so pages render audio (a tab shared with its audio is
/// captured from what the tab plays; headless Chromium plays nothing and captures silence).
/// Both listen on Unix sockets only, both end with this value.
pub struct Desktop {
    x: Child,
    pulse: Child,
    display: String,
    pulse_server: String,
    _dir: tempfile::TempDir,
}

impl Desktop {
    pub fn start() -> Desktop {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut x = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                "1280x800x24",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb runs (scripts/test-deps.sh installs xvfb)");
        let mut number = String::new();
        BufReader::new(x.stdout.take().expect("Xvfb stdout"))
            .read_line(&mut number)
            .expect("Xvfb tells its display number");
        let display = format!(":{}", number.trim());
        assert!(display.len() > 1, "Xvfb gave no display number");
        let socket = dir.path().join("pulse.sock");
        let pulse = Command::new("pulseaudio")
            .args([
                "--daemonize=no",
                "-n",
                "--exit-idle-time=-1",
                "--disallow-exit",
                "--load=module-null-sink sink_name=null",
                &format!(
                    "--load=module-native-protocol-unix auth-anonymous=1 socket={}",
                    socket.display()
                ),
            ])
            .env("HOME", dir.path())
            .env("XDG_RUNTIME_DIR", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pulseaudio runs (scripts/test-deps.sh installs pulseaudio)");
        let t0 = std::time::Instant::now();
        while !socket.exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "PulseAudio did not open {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Desktop {
            x,
            pulse,
            display,
            pulse_server: format!("unix:{}", socket.display()),
            _dir: dir,
        }
    }

    /// The environment a browser needs to use this desktop.
    pub fn env(&self) -> [(&str, &str); 2] {
        [
            ("DISPLAY", self.display.as_str()),
            ("PULSE_SERVER", self.pulse_server.as_str()),
        ]
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        for c in [&mut self.x, &mut self.pulse] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
