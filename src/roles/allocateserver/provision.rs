//! The I/O of provisioning: running the configured create/delete commands and checking that a
//! created server answers. Used by the `Allocator` actor for the engine's jobs.
//!
//! A command is `sh -c` of the configured text with `{name}` replaced (names are lowercase
//! letters, digits and dashes, so nothing needs quoting). It also gets, in its environment,
//! `ALLOCATOR_ACTION` (create/delete), `ALLOCATOR_SERVER_NAME`, `ALLOCATOR_DUE_AT` (the unix
//! time the action was due: begin - lead, end + lag, last use + idle) and `ALLOCATOR_NOW` (the
//! allocator's clock when it ran it). Exit 0 is success; anything else, or running past
//! `provision.timeout`, is a failure retried with backoff.
//!
//! Up-check ("until it registers"): when the node registry knows the server's address, its
//! snapshot decides (engine). Otherwise the server is probed here: `GET /healthz` over HTTPS
//! (plain HTTP for a loopback address), 200 = up; the certificate is verified, since browsers
//! will verify it too.

use std::process::Stdio;
use std::time::Duration;

use super::engine::{Job, Outcome};
use crate::config::Provision;

pub struct Runner {
    create: String,
    delete: String,
    dry_run: bool,
    timeout: Duration,
    http: reqwest::Client,
}

/// The last `n` characters of a command's output, for an error message.
fn tail(bytes: &[u8], n: usize) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim();
    let start = s.char_indices().rev().nth(n).map_or(0, |(i, _)| i);
    s[start..].to_string()
}

impl Runner {
    pub fn new(p: &Provision) -> anyhow::Result<Self> {
        crate::util::install_ring_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| anyhow::anyhow!("allocator probe client: {e}"))?;
        Ok(Runner {
            create: p.create.clone(),
            delete: p.delete.clone(),
            dry_run: p.dry_run,
            timeout: p.timeout.0,
            http,
        })
    }

    /// Runs one job; never panics, every failure is an `Outcome::Failed` with the reason.
    pub async fn run(&self, job: &Job, now: i64) -> Outcome {
        match job {
            Job::Create { name, due } => {
                match self.command("create", &self.create, name, *due, now).await {
                    Ok(stdout) => Outcome::Created(stdout),
                    Err(e) => Outcome::Failed(e),
                }
            }
            Job::Delete { name, due } => {
                match self.command("delete", &self.delete, name, *due, now).await {
                    Ok(_) => Outcome::Deleted,
                    Err(e) => Outcome::Failed(e),
                }
            }
            Job::Probe { address, .. } => self.probe(address).await,
        }
    }

    async fn command(
        &self,
        action: &str,
        template: &str,
        name: &str,
        due: i64,
        now: i64,
    ) -> Result<String, String> {
        let line = template.replace("{name}", name);
        if self.dry_run {
            // The operator reads this to see what would happen and when.
            println!("dry-run: would run ({action} {name}, due {due}): {line}");
            tracing::info!(action, server = name, due, command = %line, "dry-run: would run");
            return Ok(String::new());
        }
        tracing::info!(action, server = name, due, command = %line, "running provisioning command");
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(&line)
            .env("ALLOCATOR_ACTION", action)
            .env("ALLOCATOR_SERVER_NAME", name)
            .env("ALLOCATOR_DUE_AT", due.to_string())
            .env("ALLOCATOR_NOW", now.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| format!("{action} command: cannot start sh: {e}"))?;
        let out = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return Err(format!("{action} command: {e}")),
            Err(_) => {
                return Err(format!(
                    "{action} command still running after {}; killed",
                    humantime::format_duration(self.timeout)
                ));
            }
        };
        if !out.status.success() {
            return Err(format!(
                "{action} command exited with {}: {}",
                out.status,
                tail(&out.stderr, 300)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    async fn probe(&self, address: &str) -> Outcome {
        let Ok((host, _)) = crate::config::split_host_port(address) else {
            return Outcome::Failed(format!("{address:?} is not host:port"));
        };
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let scheme = if loopback { "http" } else { "https" };
        let url = format!("{scheme}://{address}/healthz");
        match self.http.get(&url).send().await {
            Ok(r) if r.status() == reqwest::StatusCode::OK => Outcome::Answered,
            Ok(r) => Outcome::Failed(format!("{url} answered {}", r.status())),
            Err(e) => Outcome::Failed(format!("{url}: {e}")),
        }
    }
}
