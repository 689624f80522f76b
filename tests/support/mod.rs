//! Shared helpers for the integration tests: real peers (an SMTP sink, a throwaway MariaDB,
//! a scriptable allocator over HTTP) and the appliance binary run as a child process.
//!
//! The one test binary (`tests/it/main.rs`) includes it as `support`. Everything here is plain std (threads, processes, sockets), so
//! it works from sync tests and from `#[tokio::test]` alike. Every peer listens on loopback
//! only, every wait polls with a deadline, and a missing tool panics with what to install
//! (`scripts/test-deps.sh`). Child processes are tied to the test process with
//! `PR_SET_PDEATHSIG`, so a killed test run leaves no server behind.

#![allow(dead_code, unused_macros)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use tempfile::TempDir;

/// Interval between two polls of [`wait_until`].
const POLL: Duration = Duration::from_millis(50);

// ------------------------------------------------------------------------------------------
// Small helpers
// ------------------------------------------------------------------------------------------

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read, released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("local address of a freshly bound listener")
        .port()
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `deadline`; panics naming `what`.
pub fn wait_until<T>(deadline: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() >= deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        thread::sleep(POLL);
    }
}

/// True when something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide the data from the others.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn file_tail(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            tail(&lines, n)
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Panics with an install hint when `tool` is not an executable on PATH (or an absolute path).
fn require_tool(tool: &str, package_hint: &str) -> PathBuf {
    find_tool(tool).unwrap_or_else(|| {
        panic!("`{tool}` not found: {package_hint} missing: run scripts/test-deps.sh")
    })
}

fn find_tool(tool: &str) -> Option<PathBuf> {
    let candidate = Path::new(tool);
    if candidate.is_absolute() {
        return candidate.is_file().then(|| candidate.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

// ------------------------------------------------------------------------------------------
// Child processes tied to the test process
// ------------------------------------------------------------------------------------------

/// A child process that gets SIGKILL when the test process dies (`PR_SET_PDEATHSIG`).
///
/// The kernel sends the parent-death signal when the *thread* that forked the child ends, and
/// libtest runs each test in its own short-lived thread. So the fork happens on a keeper thread
/// that stays parked until the child has been reaped (or forever, for a `static` server).
pub struct TiedChild {
    child: Option<Child>,
    release: Option<mpsc::Sender<()>>,
    keeper: Option<JoinHandle<()>>,
}

impl TiedChild {
    pub fn spawn(mut cmd: Command) -> io::Result<TiedChild> {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs between fork and exec and only calls the async-signal-safe
        // functions prctl, getppid and _exit.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    // The test process died before prctl took effect.
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let (child_tx, child_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let keeper = thread::Builder::new()
            .name("tied-child-keeper".into())
            .spawn(move || {
                let spawned = cmd.spawn();
                let ok = spawned.is_ok();
                let _ = child_tx.send(spawned);
                if ok {
                    // Park until the owner has reaped the child (sender dropped).
                    let _ = release_rx.recv();
                }
            })?;
        let child = child_rx
            .recv()
            .map_err(|_| io::Error::other("keeper thread died before spawning"))??;
        Ok(TiedChild {
            child: Some(child),
            release: Some(release_tx),
            keeper: Some(keeper),
        })
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child already reaped")
    }

    /// `Some(status)` once the child has exited (it is then reaped).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        match self.child.as_mut() {
            Some(c) => c.try_wait().expect("try_wait on child"),
            None => None,
        }
    }

    /// Sends `signal` unless the child has already been reaped.
    pub fn signal(&mut self, signal: libc::c_int) {
        if let Some(c) = self.child.as_mut()
            && c.try_wait().ok().flatten().is_none()
        {
            // SAFETY: plain kill(2) on our own, not yet reaped, child.
            unsafe {
                libc::kill(c.id() as libc::pid_t, signal);
            }
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = match child.try_wait().expect("try_wait on child") {
            Some(s) => s,
            None => {
                // SAFETY: kill(2) on our own child that has not been reaped yet.
                unsafe {
                    libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
                }
                let start = Instant::now();
                loop {
                    if let Some(s) = child.try_wait().expect("try_wait on child") {
                        break s;
                    }
                    if start.elapsed() >= grace {
                        let _ = child.kill();
                        break child.wait().expect("wait for killed child");
                    }
                    thread::sleep(POLL);
                }
            }
        };
        self.release_keeper();
        Some(status)
    }

    /// SIGKILL (if still running) and reap.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let _ = child.kill();
        let status = child.wait().ok();
        self.release_keeper();
        status
    }

    fn release_keeper(&mut self) {
        self.child = None;
        drop(self.release.take());
        if let Some(k) = self.keeper.take() {
            let _ = k.join();
        }
    }
}

impl Drop for TiedChild {
    fn drop(&mut self) {
        self.kill();
    }
}

// ------------------------------------------------------------------------------------------
// Python with aiosmtpd
// ------------------------------------------------------------------------------------------

const VENV_PYTHON: &str = "/var/tmp/meeting-appliance-venv/bin/python";

/// The Python interpreter that has aiosmtpd: `$APPLIANCE_TEST_PYTHON`, else the venv made by
/// `scripts/test-deps.sh`, else `python3`. Checked once per test binary.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let py = match std::env::var_os("APPLIANCE_TEST_PYTHON") {
                Some(p) if !p.is_empty() => PathBuf::from(p),
                _ if Path::new(VENV_PYTHON).exists() => PathBuf::from(VENV_PYTHON),
                _ => PathBuf::from("python3"),
            };
            let check = Command::new(&py)
                .args(["-c", "import aiosmtpd"])
                .stdin(Stdio::null())
                .output();
            match check {
                Ok(out) if out.status.success() => py,
                Ok(out) => panic!(
                    "aiosmtpd missing: run scripts/test-deps.sh ({} -c 'import aiosmtpd' failed: {})",
                    py.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                Err(e) => panic!(
                    "aiosmtpd missing: run scripts/test-deps.sh (cannot run {}: {e})",
                    py.display()
                ),
            }
        })
        .clone()
}

// ------------------------------------------------------------------------------------------
// SMTP sink (aiosmtpd writing a Maildir)
// ------------------------------------------------------------------------------------------

/// A real SMTP server (aiosmtpd) on 127.0.0.1 that stores every message in a Maildir.
pub struct SmtpSink {
    port: u16,
    child: TiedChild,
    maildir: PathBuf,
    stderr_path: PathBuf,
    dir: TempDir,
}

impl SmtpSink {
    /// Starts on a free port.
    pub fn start() -> SmtpSink {
        SmtpSink::start_on(free_port())
    }

    /// Starts on `port` (e.g. one the appliance was already configured with).
    pub fn start_on(port: u16) -> SmtpSink {
        let py = python();
        let dir = tempfile::Builder::new()
            .prefix("smtp-sink-")
            .tempdir()
            .expect("create temp dir for the SMTP sink");
        let maildir = dir.path().join("Maildir");
        let stderr_path = dir.path().join("aiosmtpd.log");
        let stderr = File::create(&stderr_path).expect("create aiosmtpd log file");
        let mut cmd = Command::new(&py);
        cmd.args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().expect("clone log file handle"))
            .stderr(stderr);
        let child = TiedChild::spawn(cmd)
            .unwrap_or_else(|e| panic!("spawn {} -m aiosmtpd: {e}", py.display()));
        let mut sink = SmtpSink {
            port,
            child,
            maildir,
            stderr_path,
            dir,
        };
        let what = format!("the SMTP sink to accept TCP on 127.0.0.1:{port}");
        wait_until(Duration::from_secs(15), &what, || {
            if let Some(status) = sink.child.try_wait() {
                panic!(
                    "aiosmtpd on 127.0.0.1:{port} exited early ({status}):\n{}",
                    file_tail(&sink.stderr_path, 40)
                );
            }
            port_open(port).then_some(())
        });
        sink
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// "127.0.0.1:PORT"
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn maildir(&self) -> &Path {
        &self.maildir
    }

    /// Every message received so far, oldest first (by file mtime).
    pub fn messages(&self) -> Vec<Mail> {
        let mut files: Vec<(SystemTime, PathBuf)> = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = fs::read_dir(self.maildir.join(sub)) else {
                continue; // Maildir is created on the first delivery.
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if let Ok(meta) = entry.metadata()
                    && meta.is_file()
                {
                    let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    files.push((mtime, path));
                }
            }
        }
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, path)| fs::read(&path).ok().map(|raw| Mail { raw, path }))
            .collect()
    }

    /// Polls until at least `n` messages arrived; returns all of them.
    pub fn wait_for(&self, n: usize, deadline: Duration) -> Vec<Mail> {
        let start = Instant::now();
        loop {
            let msgs = self.messages();
            if msgs.len() >= n {
                return msgs;
            }
            if start.elapsed() >= deadline {
                let summary: Vec<String> = msgs
                    .iter()
                    .map(|m| format!("  to={:?} subject={:?}", m.to(), m.subject()))
                    .collect();
                panic!(
                    "timed out after {deadline:?} waiting for {n} mail(s) on 127.0.0.1:{}; got {}:\n{}\naiosmtpd log:\n{}",
                    self.port,
                    msgs.len(),
                    summary.join("\n"),
                    file_tail(&self.stderr_path, 20)
                );
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.child.kill();
    }
}

/// One stored message.
#[derive(Clone)]
pub struct Mail {
    pub raw: Vec<u8>,
    pub path: PathBuf,
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("path", &self.path)
            .field("raw", &String::from_utf8_lossy(&self.raw))
            .finish()
    }
}

impl Mail {
    pub fn parsed(&self) -> mailparse::ParsedMail<'_> {
        mailparse::parse_mail(&self.raw).expect("stored mail parses as RFC 5322")
    }

    /// First value of header `name` (RFC 2047 decoded), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        use mailparse::MailHeaderMap;
        self.parsed().headers.get_first_value(name)
    }

    /// The To header ("" when absent).
    pub fn to(&self) -> String {
        self.header("To").unwrap_or_default()
    }

    pub fn from(&self) -> String {
        self.header("From").unwrap_or_default()
    }

    /// The envelope recipients as aiosmtpd recorded them (X-RcptTo).
    pub fn envelope_to(&self) -> String {
        self.header("X-RcptTo").unwrap_or_default()
    }

    pub fn subject(&self) -> String {
        self.header("Subject").unwrap_or_default()
    }

    /// The first text/plain part, transfer- and charset-decoded, line endings as `\n`
    /// ("" when there is none).
    pub fn text_body(&self) -> String {
        self.part("text/plain")
            .map(|(_, body)| body.replace("\r\n", "\n"))
            .unwrap_or_default()
    }

    /// The first MIME part (depth first, any nesting) whose type starts with `mimetype_prefix`:
    /// (full Content-Type header value with parameters, decoded body with its line endings
    /// as sent, e.g. CRLF in text/calendar).
    pub fn part(&self, mimetype_prefix: &str) -> Option<(String, String)> {
        fn find(p: &mailparse::ParsedMail<'_>, prefix: &str) -> Option<(String, String)> {
            use mailparse::MailHeaderMap;
            if p.subparts.is_empty() && p.ctype.mimetype.starts_with(prefix) {
                let ctype = p
                    .headers
                    .get_first_value("Content-Type")
                    .unwrap_or_else(|| {
                        format!("{}; charset={}", p.ctype.mimetype, p.ctype.charset)
                    });
                let body = p.get_body().expect("decode MIME part body");
                return Some((ctype, body));
            }
            p.subparts.iter().find_map(|s| find(s, prefix))
        }
        find(&self.parsed(), &mimetype_prefix.to_ascii_lowercase())
    }

    /// Mimetypes of all leaf parts, depth first.
    pub fn mimetypes(&self) -> Vec<String> {
        fn walk(p: &mailparse::ParsedMail<'_>, out: &mut Vec<String>) {
            if p.subparts.is_empty() {
                out.push(p.ctype.mimetype.clone());
            }
            for s in &p.subparts {
                walk(s, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.parsed(), &mut out);
        out
    }
}

// ------------------------------------------------------------------------------------------
// MariaDB, throwaway
// ------------------------------------------------------------------------------------------

const MARIADB_MISSING: &str = "mariadb-server missing: run scripts/test-deps.sh";

/// A throwaway MariaDB server on 127.0.0.1 with database `meeting` and user `meet`/`pw`.
///
/// Data lives under `$TMPDIR/meeting-appliance-mariadb/<pid>-*`; directories of dead test
/// processes are swept at the next start. A pristine data directory made by
/// `mariadb-install-db` is cached beside them (per MariaDB version), so a start costs
/// about half a second instead of five.
pub struct MariaDb {
    port: u16,
    dir: PathBuf,
    socket: PathBuf,
    child: Mutex<Option<TiedChild>>,
    owned_dir: Option<TempDir>,
}

/// mariadbd on `dir` (data in `dir/data`, socket `dir/s.sock`, log `dir/err.log`), 127.0.0.1:`port`.
fn mariadbd_command(mariadbd: &Path, dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(mariadbd);
    cmd.arg("--no-defaults")
        .arg("--user=root")
        .arg(format!("--datadir={}", dir.join("data").display()))
        .arg(format!("--socket={}", dir.join("s.sock").display()))
        .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--port={port}"))
        .arg(format!("--log-error={}", dir.join("err.log").display()))
        .args(MARIADBD_FAST_ARGS)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

impl MariaDb {
    /// Kills the server at once (SIGKILL). The throwaway server is started without
    /// durability, so recent writes may be lost: use [`Self::stop`] to keep them.
    pub fn kill(&self) {
        if let Some(mut c) = lock(&self.child).take() {
            c.kill();
        }
        let _ = fs::remove_file(&self.socket);
    }

    /// Stops the server as an administrator would (SIGTERM, it flushes); its data stays for
    /// [`Self::restart`].
    pub fn stop(&self) {
        if let Some(mut c) = lock(&self.child).take() {
            c.terminate(Duration::from_secs(30));
        }
        let _ = fs::remove_file(&self.socket);
    }

    /// Starts the server again on the same data and port; returns once it answers.
    pub fn restart(&self) {
        self.stop();
        let mariadbd = find_tool("mariadbd").unwrap_or_else(|| panic!("{MARIADB_MISSING}"));
        let child = TiedChild::spawn(mariadbd_command(&mariadbd, &self.dir, self.port))
            .unwrap_or_else(|e| panic!("spawn mariadbd: {e}"));
        *lock(&self.child) = Some(child);
        wait_until(
            Duration::from_secs(60),
            "MariaDB back after a restart",
            || (self.socket.exists() && admin_ping(&self.socket)).then_some(()),
        );
    }
}

impl MariaDb {
    /// Starts a new server owned by the returned value (stopped and removed on drop).
    pub fn start() -> MariaDb {
        let mariadbd = find_tool("mariadbd").unwrap_or_else(|| panic!("{MARIADB_MISSING}"));
        require_tool("mariadb", "mariadb-client");
        require_tool("mariadb-admin", "mariadb-client");
        let root = mariadb_root();
        sweep_stale(&root);
        let template = datadir_template(&root, &mariadbd);

        let mut last_error = String::new();
        for _attempt in 0..3 {
            let tmp = tempfile::Builder::new()
                .prefix(&format!("{}-", std::process::id()))
                .tempdir_in(&root)
                .expect("create MariaDB instance dir");
            let dir = tmp.path().to_path_buf();
            let data = dir.join("data");
            copy_dir(&template, &data);
            let port = free_port();
            let socket = dir.join("s.sock");
            let err_log = dir.join("err.log");
            let cmd = mariadbd_command(&mariadbd, &dir, port);
            let mut child = TiedChild::spawn(cmd).unwrap_or_else(|e| panic!("spawn mariadbd: {e}"));
            let started = Instant::now();
            let outcome = loop {
                if let Some(status) = child.try_wait() {
                    break Err(format!("mariadbd exited early ({status})"));
                }
                if socket.exists() && admin_ping(&socket) {
                    break Ok(());
                }
                if started.elapsed() > Duration::from_secs(60) {
                    break Err("mariadbd not answering ping after 60s".to_string());
                }
                thread::sleep(POLL);
            };
            match outcome {
                Ok(()) => {
                    let db = MariaDb {
                        port,
                        dir,
                        socket,
                        child: Mutex::new(Some(child)),
                        owned_dir: Some(tmp),
                    };
                    db.root_sql(
                        "CREATE DATABASE meeting CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci; \
                         CREATE USER 'meet'@'%' IDENTIFIED BY 'pw'; \
                         GRANT ALL ON meeting.* TO 'meet'@'%';",
                    );
                    return db;
                }
                Err(why) => {
                    child.kill();
                    let log = file_tail(&err_log, 40);
                    last_error = format!("{why}; err.log:\n{log}");
                    if !(log.contains("Address already in use")
                        || log.contains("Do you already have another"))
                    {
                        break; // Not a port race: retrying will not help.
                    }
                }
            }
        }
        panic!("could not start MariaDB: {last_error}");
    }

    /// "127.0.0.1:PORT"
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn user(&self) -> &'static str {
        "meet"
    }

    pub fn password(&self) -> &'static str {
        "pw"
    }

    pub fn database(&self) -> &'static str {
        "meeting"
    }

    /// "mysql://meet:pw@127.0.0.1:PORT/meeting"
    pub fn url(&self) -> String {
        self.url_for(self.database())
    }

    /// The URL of database `db` on this server, as user meet.
    pub fn url_for(&self, db: &str) -> String {
        format!("mysql://meet:pw@127.0.0.1:{}/{db}", self.port)
    }

    /// The root-only unix socket (for the `mariadb` CLI).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Creates a fresh utf8mb4 database `name`, grants it to meet, returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "database name {name:?}: use [A-Za-z0-9_] only"
        );
        self.root_sql(&format!(
            "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci; \
             GRANT ALL ON `{name}`.* TO 'meet'@'%';"
        ));
        self.url_for(name)
    }

    /// A new database with a name unique in this process (`{prefix}_{n}`); returns its name.
    pub fn unique_database(&self, prefix: &str) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("{prefix}_{}", N.fetch_add(1, Ordering::Relaxed));
        self.create_database(&name);
        name
    }

    /// Runs SQL as root over the unix socket; panics on failure. Returns stdout (tab separated,
    /// no column names).
    pub fn root_sql(&self, sql: &str) -> String {
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-uroot", "--batch", "--skip-column-names", "-e", sql])
            .stdin(Stdio::null())
            .output()
            .expect("run the mariadb client (mariadb-client missing: run scripts/test-deps.sh)");
        assert!(
            out.status.success(),
            "SQL as root failed ({}): {sql}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The server's error log so far.
    pub fn error_log(&self) -> String {
        file_tail(&self.dir.join("err.log"), 200)
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Options that make a throwaway server small and quick (no durability needed).
const MARIADBD_FAST_ARGS: &[&str] = &[
    "--skip-log-bin",
    "--skip-name-resolve",
    "--innodb-buffer-pool-size=64M",
    "--innodb-log-file-size=8M",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_unicode_ci",
    "--loose-performance-schema=OFF",
    "--loose-innodb-doublewrite=0",
    "--loose-innodb-flush-log-at-trx-commit=0",
    "--loose-innodb-flush-method=nosync",
    "--loose-innodb-buffer-pool-load-at-startup=OFF",
    "--loose-innodb-buffer-pool-dump-at-shutdown=OFF",
    "--loose-feedback=OFF",
];

/// One server per test binary, started on first use; it dies with the test process.
pub fn shared_mariadb() -> &'static MariaDb {
    static SHARED: OnceLock<MariaDb> = OnceLock::new();
    SHARED.get_or_init(|| {
        let db = MariaDb::start();
        // Statics are never dropped: stop the server and remove its files at exit.
        SHARED_DIR
            .set(db.dir.clone())
            .expect("shared MariaDB initialised once");
        SHARED_PID.store(db.child_pid(), Ordering::SeqCst);
        // SAFETY: registers a plain extern "C" function with no captured state.
        unsafe {
            libc::atexit(cleanup_shared_mariadb);
        }
        db
    })
}

static SHARED_DIR: OnceLock<PathBuf> = OnceLock::new();
static SHARED_PID: AtomicUsize = AtomicUsize::new(0);

extern "C" fn cleanup_shared_mariadb() {
    let pid = SHARED_PID.load(Ordering::SeqCst);
    if pid != 0 {
        // SAFETY: our own child, still unreaped (its keeper thread never releases it).
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
            libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
        }
    }
    if let Some(dir) = SHARED_DIR.get() {
        let _ = fs::remove_dir_all(dir);
    }
}

impl MariaDb {
    fn child_pid(&self) -> usize {
        lock(&self.child)
            .as_ref()
            .map(|c| c.id() as usize)
            .unwrap_or(0)
    }
}

fn mariadb_root() -> PathBuf {
    let root = std::env::temp_dir().join("meeting-appliance-mariadb");
    fs::create_dir_all(&root).expect("create MariaDB root dir under TMPDIR");
    root
}

/// Removes instance dirs `<pid>-*` whose test process is gone.
fn sweep_stale(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .split('-')
            .next()
            .and_then(|p| p.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// A pristine data dir from mariadb-install-db, made once per MariaDB version and reused.
fn datadir_template(root: &Path, mariadbd: &Path) -> PathBuf {
    let version = Command::new(mariadbd)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| panic!("{MARIADB_MISSING} (mariadbd --version: {e})"));
    let key: String = version
        .split_whitespace()
        .nth(2)
        .unwrap_or("unknown")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let template = root.join(format!("template-{key}"));
    if template.join(".complete").exists() {
        return template;
    }
    let install = require_tool("mariadb-install-db", "mariadb-server");
    let staging = tempfile::Builder::new()
        .prefix(&format!("{}-staging-", std::process::id()))
        .tempdir_in(root)
        .expect("create staging dir for mariadb-install-db");
    let data = staging.path().join("data");
    let out = Command::new(install)
        .arg("--no-defaults")
        .arg("--user=root")
        .arg(format!("--datadir={}", data.display()))
        .args([
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-log-file-size=8M",
            "--innodb-buffer-pool-size=64M",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run mariadb-install-db: {e}"));
    assert!(
        out.status.success(),
        "mariadb-install-db failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    File::create(data.join(".complete")).expect("mark MariaDB template complete");
    // Atomic publish; if another test process won the race, use theirs.
    if fs::rename(&data, &template).is_err() && !template.join(".complete").exists() {
        panic!(
            "could not publish MariaDB template at {}",
            template.display()
        );
    }
    template
}

fn copy_dir(from: &Path, to: &Path) {
    let out = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .expect("run cp");
    assert!(
        out.status.success(),
        "cp -a {} {} failed: {}",
        from.display(),
        to.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = fs::remove_file(to.join(".complete"));
}

fn admin_ping(socket: &Path) -> bool {
    Command::new("mariadb-admin")
        .arg("--no-defaults")
        .arg(format!("--socket={}", socket.display()))
        .args(["-uroot", "--connect-timeout=2", "ping"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

// ------------------------------------------------------------------------------------------
// Fake allocator (scriptable HTTP/1.1 server)
// ------------------------------------------------------------------------------------------

/// A tiny HTTP/1.1 server on 127.0.0.1 that records each request target (path and raw query,
/// exactly as received) and answers with a programmable JSON response.
pub struct FakeAllocator {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    response: Arc<Mutex<(u16, String)>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeAllocator {
    /// Starts on a free port, answering `200 {}` until told otherwise.
    pub fn start() -> FakeAllocator {
        FakeAllocator::start_on("127.0.0.1".parse().expect("ip"))
    }

    /// Starts on a free port of `ip` (an address of a namespace the test made).
    pub fn start_on(ip: std::net::IpAddr) -> FakeAllocator {
        let listener = TcpListener::bind((ip, 0)).expect("bind fake allocator");
        let addr = listener.local_addr().expect("fake allocator address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let response = Arc::new(Mutex::new((200u16, "{}".to_string())));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, response, stop) = (requests.clone(), response.clone(), stop.clone());
            thread::Builder::new()
                .name("fake-allocator".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        if let Ok(stream) = conn {
                            let _ = serve_one(stream, &requests, &response);
                        }
                    }
                })
                .expect("spawn fake allocator thread")
        };
        FakeAllocator {
            addr,
            requests,
            response,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// "http://127.0.0.1:PORT" + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// What the next requests get.
    pub fn set_response(&self, status: u16, body: &str) {
        *lock(&self.response) = (status, body.to_string());
    }

    /// Request targets received so far, in order.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.requests).clone()
    }

    /// Polls until at least `n` requests arrived.
    pub fn wait_requests(&self, n: usize, deadline: Duration) -> Vec<String> {
        wait_until(
            deadline,
            &format!("{n} request(s) at the fake allocator"),
            || {
                let r = self.requests();
                (r.len() >= n).then_some(r)
            },
        )
    }
}

impl Drop for FakeAllocator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(
    mut stream: TcpStream,
    requests: &Mutex<Vec<String>>,
    response: &Mutex<(u16, String)>,
) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(io::Error::other("request head too large"));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(()); // e.g. the wake-up connection from Drop
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let target = request_line
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let content_length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut have = buf.len() - head_end;
    while have < content_length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        have += n;
    }
    lock(requests).push(target);
    let (status, body) = lock(response).clone();
    let reply = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    );
    stream.write_all(reply.as_bytes())?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

// ------------------------------------------------------------------------------------------
// The appliance binary as a child process
// ------------------------------------------------------------------------------------------

/// Path of the appliance binary built by cargo for this integration test.
macro_rules! appliance_bin {
    () => {
        env!("CARGO_BIN_EXE_meeting-appliance")
    };
}
#[allow(unused_imports)] // not every test file starts the appliance
pub(crate) use appliance_bin;

/// The real binary, running; its stdout and stderr lines are kept and written to
/// `<data_dir>/appliance.log`.
pub struct Appliance {
    child: TiedChild,
    addr: SocketAddr,
    /// `/readyz` answered over TLS.
    https: bool,
    /// The command line it was started with (without the socket-activation wrapper).
    args: Vec<String>,
    /// When it was started (unix seconds): what its database wrote before is older.
    started_unix: i64,
    /// The media sockets the test handed over (empty: the appliance bound its own).
    media: Vec<SocketAddr>,
    data_dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    own_dir: Option<TempDir>,
}

/// New meetings' lobby in tests: off, so the many scenarios where a guest joins by link are
/// about what they test; the lobby's own tests (tests/it/meeting_controls.rs) turn it on (the
/// product's default, "guests", is checked there too).
pub const TEST_LOBBY: &str = "off";

impl Appliance {
    /// Runs this package's binary with a fresh temporary data dir.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Appliance {
        let dir = tempfile::Builder::new()
            .prefix("appliance-")
            .tempdir()
            .expect("create appliance data dir");
        let mut app = Appliance::start_bin(appliance_bin!(), dir.path(), args, envs);
        app.own_dir = Some(dir);
        app
    }

    /// [`Appliance::start`] with the sfuserver's one media socket bound by the test on
    /// 127.0.0.1 and handed over, so its address is known ([`Appliance::media`]).
    pub fn start_with_media(args: &[&str], envs: &[(&str, &str)]) -> Appliance {
        let dir = tempfile::Builder::new()
            .prefix("appliance-")
            .tempdir()
            .expect("create appliance data dir");
        let media = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a media socket");
        let mut app =
            Appliance::start_bin_with(appliance_bin!(), dir.path(), args, envs, vec![media]);
        app.own_dir = Some(dir);
        app
    }

    /// Runs `bin` with `args` + `--dataDir <data_dir> --listen 127.0.0.1:0` (each left out when
    /// `args` already has it) and waits (60 s) until it is ready (`GET /readyz`).
    pub fn start_bin(
        bin: &str,
        data_dir: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Appliance {
        Appliance::start_bin_with(bin, data_dir, args, envs, Vec::new())
    }

    /// [`Appliance::start_bin`] handing over `media` as the sfuserver's media sockets.
    pub fn start_bin_with(
        bin: &str,
        data_dir: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        media: Vec<std::net::UdpSocket>,
    ) -> Appliance {
        fs::create_dir_all(data_dir).expect("create appliance data dir");
        let has = |flag: &str| {
            args.iter()
                .any(|a| *a == flag || a.starts_with(&format!("{flag}=")))
        };
        let mut cmd = Command::new(bin);
        cmd.args(args);
        if !has("--dataDir") {
            cmd.arg("--dataDir").arg(data_dir);
        }
        if !has("--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        // Media and TURN ports default to fixed numbers; tests run many appliances at once,
        // so each takes free ports unless the test sets them (flags win over these).
        cmd.env("MEETING_SFU__UDP_PORT", "0")
            .env("MEETING_TURN__PORT", "0")
            .env("MEETING_TURN__TLS_PORT", "0");
        cmd.envs(envs.iter().copied());
        let listener = ready::bind(ready::listen_address(
            &cmd.get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>(),
            envs.iter()
                .find(|(k, _)| *k == "MEETING_LISTEN")
                .map(|(_, v)| v.to_string()),
        ));
        Appliance::spawn_with(cmd, data_dir, listener, media)
    }

    /// Runs this package's binary with exactly `args` (nothing added: the seed's command
    /// lines) in the working directory `cwd`, whose `meeting-data` is then the data dir.
    pub fn start_exact(args: &[&str], cwd: &Path) -> Appliance {
        Appliance::start_exact_with(args, cwd, &[])
    }

    /// [`Appliance::start_exact`] with environment variables `envs` (the appliance's
    /// `MEETING_…` settings: the command line stays the seed's).
    pub fn start_exact_with(args: &[&str], cwd: &Path, envs: &[(&str, &str)]) -> Appliance {
        fs::create_dir_all(cwd).expect("create the working dir");
        let mut cmd = Command::new(appliance_bin!());
        cmd.args(args).current_dir(cwd).envs(envs.iter().copied());
        let data_dir = cwd.join("meeting-data");
        fs::create_dir_all(&data_dir).expect("create appliance data dir");
        Appliance::spawn(cmd, &data_dir)
    }

    /// Starts `cmd` on a listener this test binds (the address `cmd`'s `--listen` or
    /// `--domainaddress` names, as the appliance would; [`ready::listen_address`]), keeps its
    /// log, and waits (60 s) until `GET /readyz` answers 200.
    pub fn spawn(cmd: Command, data_dir: &Path) -> Appliance {
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let env_listen = cmd.get_envs().find_map(|(k, v)| {
            (k == "MEETING_LISTEN")
                .then(|| v.map(|v| v.to_string_lossy().into_owned()))
                .flatten()
        });
        let listener = ready::bind(ready::listen_address(&args, env_listen));
        Appliance::spawn_on(cmd, data_dir, listener)
    }

    /// Starts `cmd` with `listener` handed over by socket activation (fd 3), keeps its log, and
    /// waits (60 s) until `GET /readyz` on the listener's address answers 200.
    pub fn spawn_on(cmd: Command, data_dir: &Path, listener: TcpListener) -> Appliance {
        Appliance::spawn_with(cmd, data_dir, listener, Vec::new())
    }

    /// [`Appliance::spawn_on`] with `media`, the sfuserver's media sockets (one per worker),
    /// handed over after the listener (fds 4, …).
    pub fn spawn_with(
        cmd: Command,
        data_dir: &Path,
        listener: TcpListener,
        media: Vec<std::net::UdpSocket>,
    ) -> Appliance {
        Appliance::spawn_full(cmd, data_dir, listener, media, None)
    }

    /// [`Appliance::spawn_on`] for a process in the network namespace at `netns` (a file in
    /// /run/netns): readiness is asked from inside it, where its listener is reachable.
    pub fn spawn_in_netns(
        cmd: Command,
        data_dir: &Path,
        listener: TcpListener,
        netns: PathBuf,
    ) -> Appliance {
        Appliance::spawn_full(cmd, data_dir, listener, Vec::new(), Some(netns))
    }

    fn spawn_full(
        cmd: Command,
        data_dir: &Path,
        listener: TcpListener,
        media: Vec<std::net::UdpSocket>,
        netns: Option<PathBuf>,
    ) -> Appliance {
        let addr = listener.local_addr().expect("the listener's address");
        let media_addrs: Vec<SocketAddr> = media
            .iter()
            .map(|m| m.local_addr().expect("a media socket's address"))
            .collect();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let started_unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut cmd = ready::socket_activated(&cmd, &listener, &media);
        if !cmd.get_envs().any(|(k, _)| k == "MEETING_MEETINGS__LOBBY") {
            cmd.env("MEETING_MEETINGS__LOBBY", TEST_LOBBY);
        }
        let bin = format!("{:?}", cmd.get_args().nth(2).unwrap_or_default());
        cmd.env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child =
            TiedChild::spawn(cmd).unwrap_or_else(|e| panic!("spawn appliance {bin}: {e}"));
        // The child holds the sockets now; closing ours lets the ports go when it exits.
        drop(listener);
        drop(media);

        let log = Arc::new(Mutex::new(Vec::new()));
        let log_file = Arc::new(Mutex::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(data_dir.join("appliance.log"))
                .expect("open appliance.log"),
        ));
        let echo = std::env::var_os("APPLIANCE_TEST_ECHO").is_some();
        let mut readers = Vec::new();
        let stdout = child
            .child_mut()
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        let stderr = child
            .child_mut()
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        for (name, stream) in [("stdout", stdout), ("stderr", stderr)] {
            let Some(stream) = stream else { continue };
            let (log, log_file) = (log.clone(), log_file.clone());
            readers.push(
                thread::Builder::new()
                    .name(format!("appliance-{name}"))
                    .spawn(move || {
                        let mut reader = BufReader::new(stream);
                        let mut raw = Vec::new();
                        loop {
                            raw.clear();
                            match reader.read_until(b'\n', &mut raw) {
                                Ok(0) | Err(_) => break,
                                Ok(_) => {}
                            }
                            let line = strip_ansi(String::from_utf8_lossy(&raw).trim_end());
                            let _ = writeln!(lock(&log_file), "{line}");
                            if echo {
                                eprintln!("[appliance {name}] {line}");
                            }
                            lock(&log).push(line);
                        }
                    })
                    .expect("spawn appliance log reader"),
            );
        }

        let started = Instant::now();
        let https = loop {
            match ready::probe_in(netns.as_deref(), addr) {
                ready::Probe::Http => break false,
                ready::Probe::Https => break true,
                ready::Probe::NotYet => {}
            }
            if let Some(status) = child.try_wait() {
                // Give the readers a moment to drain the pipes.
                thread::sleep(Duration::from_millis(200));
                panic!(
                    "appliance exited ({status}) before it was ready; last log lines:\n{}",
                    tail(&lock(&log), 40)
                );
            }
            if started.elapsed() > Duration::from_secs(60) {
                panic!(
                    "appliance not ready after 60s (GET {addr}/readyz); last log lines:\n{}",
                    tail(&lock(&log), 40)
                );
            }
            thread::sleep(POLL);
        };
        Appliance {
            child,
            addr,
            https,
            args,
            started_unix,
            media: media_addrs,
            data_dir: data_dir.to_path_buf(),
            log,
            readers,
            own_dir: None,
        }
    }

    /// "http://127.0.0.1:PORT" ("https://…" when it serves TLS)
    pub fn base_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// base_url() + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The sfuserver's media addresses handed over by [`Appliance::start_with_media`].
    pub fn media(&self) -> &[SocketAddr] {
        &self.media
    }

    /// When it was started, in unix seconds.
    pub fn started_unix(&self) -> i64 {
        self.started_unix
    }

    /// Its database, as its command line names it: the seed's `--mysql…` flags, else the
    /// SQLite file in its data dir (the appliance's default), opened read-only.
    pub fn database_url(&self) -> String {
        let flag = |name: &str| {
            self.args
                .iter()
                .position(|a| a == name)
                .and_then(|i| self.args.get(i + 1).cloned())
        };
        match flag("--mysqlAddress") {
            Some(addr) => format!(
                "mysql://{}:{}@{addr}/{}",
                flag("--mysqlUser").unwrap_or_else(|| "root".into()),
                flag("--mysqlPassword").unwrap_or_default(),
                flag("--mysqlDatabase").unwrap_or_else(|| "Meeting".into()),
            ),
            None => format!(
                "sqlite://{}?mode=ro",
                self.data_dir.join("meeting.db").display()
            ),
        }
    }

    /// Every line printed so far (stdout and stderr interleaved as read).
    pub fn log_lines(&self) -> Vec<String> {
        lock(&self.log).clone()
    }

    /// Number of log lines so far (a start index for [`Appliance::wait_log_from`]).
    pub fn log_len(&self) -> usize {
        lock(&self.log).len()
    }

    /// The first log line containing `needle`, waiting up to `deadline`.
    pub fn wait_log(&self, needle: &str, deadline: Duration) -> String {
        self.wait_log_from(0, needle, deadline)
    }

    /// Like [`Appliance::wait_log`] but only considers lines from index `from` on.
    pub fn wait_log_from(&self, from: usize, needle: &str, deadline: Duration) -> String {
        let start = Instant::now();
        loop {
            {
                let log = lock(&self.log);
                if let Some(l) = log.iter().skip(from).find(|l| l.contains(needle)) {
                    return l.clone();
                }
                if start.elapsed() >= deadline {
                    panic!(
                        "timed out after {deadline:?} waiting for log line containing {needle:?}; last log lines:\n{}",
                        tail(&log, 40)
                    );
                }
            }
            thread::sleep(POLL);
        }
    }

    /// Sends a signal (e.g. `libc::SIGHUP`).
    pub fn signal(&mut self, signal: libc::c_int) {
        self.child.signal(signal);
    }

    /// `Some(status)` if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait()
    }

    /// SIGTERM, wait up to 15 s, then SIGKILL; returns the exit status.
    pub fn stop(mut self) -> ExitStatus {
        let status = self
            .child
            .terminate(Duration::from_secs(15))
            .expect("appliance still owned");
        self.join_readers();
        status
    }

    fn join_readers(&mut self) {
        // The pipes close when the process exits (unless it left children holding them).
        let start = Instant::now();
        while self.readers.iter().any(|r| !r.is_finished())
            && start.elapsed() < Duration::from_secs(2)
        {
            thread::sleep(Duration::from_millis(10));
        }
        for r in self.readers.drain(..) {
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        self.child.kill();
        self.join_readers();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs `bin args…` to completion (60 s at most) and returns its output.
pub fn run_cli(bin: &str, args: &[&str]) -> Output {
    run_cli_env(bin, args, &[])
}

/// [`run_cli`] with extra environment variables.
pub fn run_cli_env(bin: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env("NO_COLOR", "1")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = TiedChild::spawn(cmd).unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
    // Drain both pipes on threads so a chatty process cannot block on a full pipe.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_t = drain(
        child
            .child_mut()
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err_t = drain(
        child
            .child_mut()
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            child.kill();
            panic!("{bin} {args:?} still running after 60s");
        }
        thread::sleep(Duration::from_millis(20));
    };
    child.kill(); // already exited: just releases the keeper thread
    Output {
        status,
        stdout: out_t.join().expect("stdout drain thread"),
        stderr: err_t.join().expect("stderr drain thread"),
    }
}

pub mod api;
pub mod browser;
pub mod files;
pub mod ldap;
pub mod media;
pub mod oidc;
pub mod postgres;
pub mod ready;
pub mod rtc_client;
pub mod signal;
pub mod split;
pub mod tls;
