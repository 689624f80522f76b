//! `meeting-appliance loadtest`: real WebRTC participants (str0m: ICE, DTLS, SRTP) against
//! a running appliance, stepping the load up until it no longer holds, with a report of what
//! the server forwarded, how late and how lossy, and what it cost the server (CPU, memory).
//!
//! The generator is separate from the roles: it only talks to the public API
//! (`POST /api/v1/meetings`, `POST /api/v1/join/{code}`) and the signaling WebSocket, like
//! any client. See `peer` for what each simulated participant does.
//!
//! Scenarios (each step is a fresh set of participants; a fresh meeting when `--token` is
//! given): `meeting` (N people, everyone publishes audio+video and receives everyone),
//! `fanout` (one publisher, M subscribers), `audio` (`--publishers` audio-only publishers, M
//! listeners); `--no-video` makes a meeting audio-only and `--talkers` lets the publishers
//! take turns talking (audio level), which a server forwarding only the loudest follows.
//! Against our appliance the report also gives the server's own added latency (its
//! `sfu_added_latency_seconds` histogram on `/metrics`, read before and after the window).
//! A step *holds* when every participant got media from everyone it should,
//! nobody failed, loss after retransmission ≤ `--max-loss` % and p99 added latency ≤
//! `--max-p99-ms`. Stepping stops at the first step that does not hold.

pub mod janus;
pub mod peer;
pub mod srtp;
pub mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use stats::{Latency, Shared, Window, cpu_times, per_core_busy, proc_sample};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// N×N: every participant publishes audio and video and receives everyone else.
    Meeting,
    /// 1→M: one publisher (audio+video), M subscribers.
    Fanout,
    /// `--publishers` audio-only publishers, M listeners.
    Audio,
}

#[derive(clap::Args, Debug, Clone)]
pub struct LoadtestArgs {
    /// The appliance (apiserver) base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Join this meeting (guests must be allowed). Without it, `--token` creates one per step.
    #[arg(long)]
    pub code: Option<String>,
    /// A session token (from signing in) used to create a fresh instant meeting per step.
    #[arg(long, env = "MEETING_LOADTEST_TOKEN")]
    pub token: Option<String>,
    #[arg(long, value_enum, default_value = "meeting")]
    pub scenario: Scenario,
    /// The loads to step through, comma-separated: participants (meeting) or subscribers
    /// (fanout, audio). Default: meeting 5,10,25; fanout 10,25,50,100,200; audio 10,50,100,200.
    #[arg(long, value_delimiter = ',')]
    pub steps: Vec<usize>,
    /// Audio publishers in the `audio` scenario.
    #[arg(long, default_value_t = 10)]
    pub publishers: usize,
    /// Measurement time per step (after everyone is up and the warm-up).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Video bitrate per publisher (the top layer with --simulcast), kbit/s.
    #[arg(long = "video-kbps", default_value_t = 1000)]
    pub video_kbps: u32,
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// Bytes per audio packet (one every 20 ms).
    #[arg(long = "audio-bytes", default_value_t = 100)]
    pub audio_bytes: usize,
    #[arg(long = "keyframe-interval", default_value = "3s", value_parser = humantime::parse_duration)]
    pub keyframe_interval: Duration,
    /// Publish video as three simulcast layers (q, h, f at 1/16, 1/4, 1 of the bitrate).
    #[arg(long)]
    pub simulcast: bool,
    /// `meeting`: audio only (nobody publishes video).
    #[arg(long = "no-video")]
    pub no_video: bool,
    /// Audio publishers talk in turns, this many at once, 3 s a turn (the others are quiet);
    /// 0: everyone talks all the time.
    #[arg(long, default_value_t = 0)]
    pub talkers: usize,
    /// The server forwards only the K loudest audio streams to each listener (our
    /// `sfu.audio_top_k`; 0: every stream). A listener is then ready with K audio streams, and
    /// the stretches the server held back between a publisher's audio frames are not loss.
    #[arg(long = "audio-top-k", default_value_t = 0)]
    pub audio_top_k: usize,
    /// Subscribers per step that depacketize and check every frame (latency, loss after
    /// retransmission), spread evenly over the join order; the others decrypt and acknowledge
    /// every packet (str0m in RTP mode) and count them. Publishers always check frames.
    #[arg(long = "full-check", default_value_t = 8)]
    pub full_check: usize,
    /// The server's process id: its CPU and memory go into the report.
    #[arg(long = "server-pid")]
    pub server_pid: Option<u32>,
    /// Local address the participants' UDP sockets bind to.
    #[arg(long = "local-ip", default_value = "127.0.0.1")]
    pub local_ip: std::net::IpAddr,
    /// A step fails above this loss (percent of frames, after retransmission).
    #[arg(long = "max-loss", default_value_t = 1.0)]
    pub max_loss: f64,
    /// A step fails above this p99 added latency (ms).
    #[arg(long = "max-p99-ms", default_value_t = 5.0)]
    pub max_p99_ms: f64,
    /// Generator threads (tokio workers). One keeps the generator on one core.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Run every step even after one did not hold.
    #[arg(long = "keep-going")]
    pub keep_going: bool,
    /// Drive a Janus videoroom through its HTTP API at this URL (e.g.
    /// `http://10.99.0.1:8088/janus`) instead of the appliance: the same participants and
    /// figures, for a side-by-side run. Janus carries one direction per connection, so a
    /// `meeting` participant is a publishing and a subscribing connection there.
    #[arg(long)]
    pub janus: Option<String>,
    /// Also write the report as JSON to this file ("-" = stdout, the text report then goes
    /// to stderr).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct ServerUse {
    /// CPU seconds per second during the window (1.0 = one core busy).
    pub cpu_cores: f64,
    /// Forwarded RTP packets per server CPU-second.
    pub pps_per_core: f64,
    pub rss_mib: f64,
    /// (RSS during the step − RSS before it) / participants.
    pub rss_per_participant_kib: f64,
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct StepReport {
    pub load: usize,
    pub publishers: usize,
    pub subscribers: usize,
    pub participants: usize,
    /// Media connections: one per participant with the appliance; in Janus a participant who
    /// publishes and subscribes has two.
    pub connections: usize,
    /// Seconds from the first join request until everyone had media from everyone.
    pub join_s: f64,
    pub joins_per_s: f64,
    pub all_ready: bool,
    pub ready: usize,
    pub failures: Vec<String>,
    pub window_s: f64,
    pub forwarded_pps: f64,
    pub forwarded_mbps: f64,
    pub rtp_packets: u64,
    pub frames_sent: u64,
    pub frames_received: u64,
    pub frames_lost: u64,
    /// Percent of frames lost after retransmission (fully checking subscribers).
    pub loss_pct: f64,
    /// Percent of RTP packets missing at the other subscribers (RTP mode: after
    /// retransmission, by sequence number).
    pub light_loss_pct: f64,
    pub keyframes_sent: u64,
    pub keyframe_requests: u64,
    pub latency: Latency,
    pub latency_audio: Latency,
    pub latency_video: Latency,
    /// The server's own added latency in the window (datagram received → each copy sent),
    /// from its histogram on `/metrics` (our appliance only; bucket resolution √2).
    pub server_latency: Option<Latency>,
    pub server: Option<ServerUse>,
    /// Busy percent of every CPU of the host during the window.
    pub host_cpu_busy: Vec<(String, f64)>,
    pub generator_cpu_cores: f64,
    pub held: bool,
}

#[derive(Serialize, Clone, Debug)]
pub struct Report {
    pub scenario: Scenario,
    /// "appliance" or "janus".
    pub target: &'static str,
    pub url: String,
    pub video_kbps: u32,
    pub simulcast: bool,
    pub steps: Vec<StepReport>,
    /// The highest load that held (None: not even the first).
    pub highest_held: Option<usize>,
    pub highest_held_pps: Option<f64>,
}

pub fn main(args: &LoadtestArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(args)) {
        Ok(report) => {
            let to_stdout = args.json.as_deref() == Some(std::path::Path::new("-"));
            let text = render(&report);
            if to_stdout {
                eprint!("{text}");
            } else {
                print!("{text}");
            }
            if let Some(path) = &args.json {
                let j = serde_json::to_string_pretty(&report).unwrap_or_default();
                if to_stdout {
                    println!("{j}");
                } else if let Err(e) = std::fs::write(path, j) {
                    eprintln!("error: write {}: {e}", path.display());
                    return ExitCode::from(1);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> anyhow::Result<Value> {
        let mut rb = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        let r = rb.send().await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            anyhow::bail!("POST {path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn meeting_code(&self, args: &LoadtestArgs) -> anyhow::Result<String> {
        if let Some(c) = &args.code {
            return Ok(c.clone());
        }
        let Some(token) = &args.token else {
            anyhow::bail!("give --code (a meeting that admits guests) or --token (to create one)");
        };
        let m = self
            .post(
                "/api/v1/meetings",
                Some(token),
                json!({"title": "loadtest", "guests_allowed": true, "lobby": "off"}),
            )
            .await?;
        m["code"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("meeting created without a code: {m}"))
    }

    /// (join token, signal URL) for a guest.
    async fn join(&self, code: &str, name: &str) -> anyhow::Result<(String, String)> {
        let j = self
            .post(
                &format!("/api/v1/join/{code}"),
                None,
                json!({ "display_name": name }),
            )
            .await?;
        match (j["token"].as_str(), j["sfu"]["signal_url"].as_str()) {
            (Some(t), Some(u)) => Ok((t.to_string(), u.to_string())),
            _ => anyhow::bail!("join answer without token or signal_url: {j}"),
        }
    }
}

fn default_steps(s: Scenario) -> Vec<usize> {
    match s {
        Scenario::Meeting => vec![5, 10, 25],
        Scenario::Fanout => vec![10, 25, 50, 100, 200],
        Scenario::Audio => vec![10, 50, 100, 200],
    }
}

/// The participants of one step: (audio, video, expected incoming streams), publishers first.
fn plan(args: &LoadtestArgs, load: usize) -> Vec<(bool, bool, usize)> {
    // Audio streams a listener gets of `n` publishers (top-K: the loudest K).
    let audio = |n: usize| match args.audio_top_k {
        0 => n,
        k => n.min(k),
    };
    match args.scenario {
        Scenario::Meeting if args.no_video => {
            vec![(true, false, audio(load.saturating_sub(1))); load]
        }
        Scenario::Meeting => {
            let others = load.saturating_sub(1);
            vec![(true, true, others + audio(others)); load]
        }
        Scenario::Fanout => {
            let mut v = vec![(true, true, 0)];
            v.extend(std::iter::repeat_n((false, false, 2), load));
            v
        }
        Scenario::Audio => {
            let p = args.publishers.max(1);
            let mut v = vec![(true, false, audio(p - 1)); p];
            v.extend(std::iter::repeat_n((false, false, audio(p)), load));
            v
        }
    }
}

async fn run(args: &LoadtestArgs) -> anyhow::Result<Report> {
    crate::util::install_ring_provider();
    let http = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(20))
        .build()?;
    let api = Api {
        http,
        base: args.url.trim_end_matches('/').to_string(),
    };
    let steps = if args.steps.is_empty() {
        default_steps(args.scenario)
    } else {
        args.steps.clone()
    };
    let mut report = Report {
        scenario: args.scenario,
        target: if args.janus.is_some() {
            "janus"
        } else {
            "appliance"
        },
        url: args.janus.clone().unwrap_or_else(|| args.url.clone()),
        video_kbps: args.video_kbps,
        simulcast: args.simulcast,
        steps: Vec::new(),
        highest_held: None,
        highest_held_pps: None,
    };
    for load in steps {
        eprintln!("loadtest: {:?} step {load}", args.scenario);
        let step = run_step(args, &api, load).await?;
        eprint!("{}", render_step(&step));
        let held = step.held;
        if held {
            report.highest_held = Some(load);
            report.highest_held_pps = Some(step.forwarded_pps);
        }
        report.steps.push(step);
        if !held && !args.keep_going {
            break;
        }
    }
    Ok(report)
}

/// One media connection of a step: (audio, video, expected streams, Janus role).
type Conn = (bool, bool, usize, Option<janus::JanusRole>);

/// Janus: a room for the step, and each participant split into a publishing and a
/// subscribing connection (feed id = participant index + 1).
async fn janus_plan(janus_url: &str, people: &[(bool, bool, usize)]) -> anyhow::Result<Vec<Conn>> {
    let j = janus::Janus::new(janus_url).map_err(anyhow::Error::msg)?;
    let feeds: Vec<u64> = people
        .iter()
        .enumerate()
        .filter(|(_, (a, v, _))| *a || *v)
        .map(|(i, _)| i as u64 + 1)
        .collect();
    let room = j
        .create_room(feeds.len() + 1)
        .await
        .map_err(anyhow::Error::msg)?;
    let mut out = Vec::new();
    for (i, &(audio, video, expect)) in people.iter().enumerate() {
        let own = i as u64 + 1;
        if audio || video {
            let role = janus::JanusRole {
                room,
                feed: Some(own),
                subscribe: Vec::new(),
            };
            out.push((audio, video, 0, Some(role)));
        }
        if expect > 0 {
            let role = janus::JanusRole {
                room,
                feed: None,
                subscribe: feeds.iter().copied().filter(|f| *f != own).collect(),
            };
            out.push((false, false, expect, Some(role)));
        }
    }
    Ok(out)
}

async fn run_step(args: &LoadtestArgs, api: &Api, load: usize) -> anyhow::Result<StepReport> {
    let people = plan(args, load);
    let publishers = people.iter().filter(|(a, v, _)| *a || *v).count();
    let subscribers = people.iter().filter(|(_, _, e)| *e > 0).count();
    // Who connects: (audio, video, expected streams, Janus role when driving Janus).
    let (code, conns): (String, Vec<Conn>) = match &args.janus {
        Some(url) => (String::new(), janus_plan(url, &people).await?),
        None => (
            api.meeting_code(args).await?,
            people.iter().map(|&(a, v, e)| (a, v, e, None)).collect(),
        ),
    };
    let shared = Arc::new(Mutex::new(Shared::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let before = args.server_pid.and_then(proc_sample);
    let started = Instant::now();
    let mut tasks = Vec::new();
    // Publishers are always fully checked: they write frames that str0m packetizes, which
    // its RTP mode (the light subscribers') does not do; so in a meeting everyone is. Of the
    // others, `--full-check` are, spread evenly over the join order: a server serves its
    // subscribers in some order, and checking only the first to join would see only the
    // front of every fan-out.
    let always_full = |c: &Conn| c.0 || c.1;
    let others = conns.iter().filter(|c| !always_full(c)).count();
    let mut ordinal = 0usize;
    let audio_publishers = conns.iter().filter(|c| c.0).count();
    let mut talker = 0usize;
    for (i, conn) in conns.into_iter().enumerate() {
        let full = always_full(&conn) || {
            ordinal += 1;
            spread_pick(ordinal, args.full_check, others)
        };
        let (audio, video, expect, role) = conn;
        let (token, signal_url) = match &args.janus {
            Some(url) => (String::new(), url.clone()),
            None => api.join(&code, &format!("lt-{i}")).await?,
        };
        let spec = peer::PeerSpec {
            index: i as u32,
            signal_url,
            token,
            local_ip: args.local_ip,
            audio,
            video,
            simulcast: args.simulcast,
            video_kbps: args.video_kbps,
            fps: args.fps,
            audio_bytes: args.audio_bytes,
            keyframe_every: args.keyframe_interval,
            full,
            expect_streams: expect,
            janus: role,
            audio_held: args.audio_top_k > 0,
            talk: (args.talkers > 0 && audio).then(|| {
                talker += 1;
                (talker - 1, args.talkers, audio_publishers)
            }),
        };
        tasks.push(tokio::spawn(peer::run(
            spec,
            shared.clone(),
            stop_rx.clone(),
        )));
    }
    let total = tasks.len();
    // Everyone up, and getting media from everyone they should.
    let limit = Duration::from_secs(20) + Duration::from_millis(200) * total as u32;
    let ready_at = loop {
        let (ready, failed) = {
            let s = lock(&shared);
            (s.ready, s.failures.len())
        };
        if ready + failed >= total {
            break started.elapsed();
        }
        if started.elapsed() > limit {
            break started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(args.warmup).await;

    // The measurement window.
    let metrics_url = format!("{}/metrics", api.base);
    let lat0 = match &args.janus {
        None => server_latency(&api.http, &metrics_url).await,
        Some(_) => None,
    };
    let cpu0 = cpu_times();
    let gen0 = proc_sample(std::process::id());
    let srv0 = args.server_pid.and_then(proc_sample);
    let t0 = Instant::now();
    lock(&shared).window = Window::default();
    tokio::time::sleep(args.duration).await;
    let w = std::mem::take(&mut lock(&shared).window);
    let window_s = t0.elapsed().as_secs_f64();
    let srv1 = args.server_pid.and_then(proc_sample);
    let gen1 = proc_sample(std::process::id());
    let cpu1 = cpu_times();
    let server_lat = match (lat0, &args.janus) {
        (Some(a), None) => server_latency(&api.http, &metrics_url)
            .await
            .map(|b| window_latency(&a, &b)),
        _ => None,
    };

    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    // Let the server see everyone leave before the next step.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (ready, failures) = {
        let s = lock(&shared);
        (s.ready, s.failures.clone())
    };
    let forwarded_pps = w.rtp_packets as f64 / window_s;
    let server = match (srv0, srv1) {
        (Some(a), Some(b)) => {
            let cores = (b.cpu_s - a.cpu_s) / b.at.duration_since(a.at).as_secs_f64();
            let base = before.map(|s| s.rss).unwrap_or(0);
            Some(ServerUse {
                cpu_cores: cores,
                pps_per_core: if cores > 0.0 {
                    forwarded_pps / cores
                } else {
                    0.0
                },
                rss_mib: b.rss as f64 / 1048576.0,
                rss_per_participant_kib: b.rss.saturating_sub(base) as f64
                    / 1024.0
                    / people.len().max(1) as f64,
            })
        }
        _ => None,
    };
    let generator_cpu_cores = match (gen0, gen1) {
        (Some(a), Some(b)) => (b.cpu_s - a.cpu_s) / b.at.duration_since(a.at).as_secs_f64(),
        _ => 0.0,
    };
    let checked = w.frames_received + w.frames_lost;
    let loss_pct = if checked > 0 {
        100.0 * w.frames_lost as f64 / checked as f64
    } else {
        0.0
    };
    let light = w.light_packets + w.light_gaps;
    let latency = Latency::from(&w.latency);
    let join_s = ready_at.as_secs_f64();
    let all_ready = ready == total && failures.is_empty();
    let held = all_ready
        && loss_pct <= args.max_loss
        && (latency.p99_us as f64) <= args.max_p99_ms * 1000.0
        && w.rtp_packets > 0;
    Ok(StepReport {
        load,
        publishers,
        subscribers,
        participants: people.len(),
        connections: total,
        join_s,
        joins_per_s: if join_s > 0.0 {
            people.len() as f64 / join_s
        } else {
            0.0
        },
        all_ready,
        ready,
        failures,
        window_s,
        forwarded_pps,
        forwarded_mbps: w.rtp_bytes as f64 * 8.0 / window_s / 1e6,
        rtp_packets: w.rtp_packets,
        frames_sent: w.frames_sent,
        frames_received: w.frames_received,
        frames_lost: w.frames_lost,
        loss_pct,
        light_loss_pct: if light > 0 {
            100.0 * w.light_gaps as f64 / light as f64
        } else {
            0.0
        },
        keyframes_sent: w.keyframes_sent,
        keyframe_requests: w.keyframe_requests,
        latency,
        latency_audio: Latency::from(&w.latency_audio),
        latency_video: Latency::from(&w.latency_video),
        server_latency: server_lat,
        server,
        host_cpu_busy: per_core_busy(&cpu0, &cpu1),
        generator_cpu_cores,
        held,
    })
}

/// The cumulative buckets of the server's `sfu_added_latency_seconds` histogram (upper bound
/// in seconds, count), or None when it has none (not our appliance, not reachable).
async fn server_latency(http: &reqwest::Client, url: &str) -> Option<Vec<(f64, u64)>> {
    let text = http.get(url).send().await.ok()?.text().await.ok()?;
    let v = parse_latency_buckets(&text);
    (!v.is_empty()).then_some(v)
}

fn parse_latency_buckets(text: &str) -> Vec<(f64, u64)> {
    let mut v = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("meeting_sfu_added_latency_seconds_bucket{le=\"") else {
            continue;
        };
        let Some((le, count)) = rest.split_once("\"}") else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::NAN)
        };
        if let Ok(c) = count.trim().parse::<u64>()
            && !le.is_nan()
        {
            v.push((le, c));
        }
    }
    v
}

/// Quantiles of what happened between two scrapes of cumulative buckets.
fn window_latency(a: &[(f64, u64)], b: &[(f64, u64)]) -> Latency {
    let mut per = Vec::with_capacity(b.len());
    let mut prev = 0u64;
    for (i, &(le, cum)) in b.iter().enumerate() {
        let before = a.get(i).map_or(0, |x| x.1);
        let d = cum.saturating_sub(before);
        per.push((le, d.saturating_sub(prev)));
        prev = d;
    }
    let us = |q: f64| {
        crate::roles::sfuserver::latency::quantile(&per, q).map_or(0, |s| (s * 1e6).round() as u64)
    };
    let samples: u64 = per.iter().map(|x| x.1).sum();
    Latency {
        samples,
        p50_us: us(0.5),
        p99_us: us(0.99),
        p999_us: us(0.999),
        max_us: per.iter().rev().find(|x| x.1 > 0).map_or(0, |x| {
            if x.0.is_finite() {
                (x.0 * 1e6) as u64
            } else {
                u64::MAX
            }
        }),
    }
}

/// Whether the `ordinal`-th (from 1) of `of` is among `wanted` picked evenly across them
/// (all of them when `wanted >= of`).
fn spread_pick(ordinal: usize, wanted: usize, of: usize) -> bool {
    let wanted = wanted.min(of);
    ordinal >= 1 && ordinal <= of && ordinal * wanted / of > (ordinal - 1) * wanted / of
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn render_step(s: &StepReport) -> String {
    let mut o = format!(
        "  load {:>4}: {} publishers, {} subscribers; {}/{} connections up in {:.2} s ({:.1} joins/s)\n",
        s.load, s.publishers, s.subscribers, s.ready, s.connections, s.join_s, s.joins_per_s
    );
    o += &format!(
        "    forwarded {:.0} pkt/s, {:.1} Mbit/s; frames {} received, {} lost ({:.3} %), packets lost at RTP-mode subscribers {:.3} %\n",
        s.forwarded_pps,
        s.forwarded_mbps,
        s.frames_received,
        s.frames_lost,
        s.loss_pct,
        s.light_loss_pct
    );
    o += &format!(
        "    latency p50 {} µs, p99 {} µs, p999 {} µs, max {} µs ({} samples); keyframes sent {}, PLI/FIR answered {}\n",
        s.latency.p50_us,
        s.latency.p99_us,
        s.latency.p999_us,
        s.latency.max_us,
        s.latency.samples,
        s.keyframes_sent,
        s.keyframe_requests
    );
    o += &format!(
        "      audio p50/p99 {}/{} µs ({} samples), video p50/p99 {}/{} µs ({} samples)\n",
        s.latency_audio.p50_us,
        s.latency_audio.p99_us,
        s.latency_audio.samples,
        s.latency_video.p50_us,
        s.latency_video.p99_us,
        s.latency_video.samples
    );
    if let Some(l) = &s.server_latency {
        o += &format!(
            "    server-side added latency p50 {} µs, p99 {} µs, p999 {} µs ({} copies)\n",
            l.p50_us, l.p99_us, l.p999_us, l.samples
        );
    }
    if let Some(sv) = &s.server {
        o += &format!(
            "    server: {:.2} cores, {:.0} pkt/s per core, RSS {:.1} MiB ({:.0} KiB per participant)\n",
            sv.cpu_cores, sv.pps_per_core, sv.rss_mib, sv.rss_per_participant_kib
        );
    }
    let cores: Vec<String> = s
        .host_cpu_busy
        .iter()
        .map(|(c, b)| format!("{c} {b:.0}%"))
        .collect();
    o += &format!(
        "    generator {:.2} cores; host {}; {}\n",
        s.generator_cpu_cores,
        cores.join(", "),
        if s.held { "HELD" } else { "did not hold" }
    );
    for f in s.failures.iter().take(5) {
        o += &format!("    failure: {f}\n");
    }
    o
}

fn render(r: &Report) -> String {
    let mut o = format!(
        "loadtest {:?} against {} {} (video {} kbit/s{})\n",
        r.scenario,
        r.target,
        r.url,
        r.video_kbps,
        if r.simulcast { ", simulcast" } else { "" }
    );
    for s in &r.steps {
        o += &render_step(s);
    }
    match (r.highest_held, r.highest_held_pps) {
        (Some(l), Some(p)) => {
            o += &format!("highest load that held: {l} ({p:.0} forwarded pkt/s)\n")
        }
        _ => o += "no step held\n",
    }
    o
}

#[cfg(test)]
mod tests {
    use super::{parse_latency_buckets, spread_pick, window_latency};

    #[test]
    fn server_latency_is_the_difference_of_two_scrapes() {
        let scrape = |a: u64, b: u64, c: u64| {
            format!(
                "# TYPE meeting_sfu_added_latency_seconds histogram\n\
                 meeting_sfu_added_latency_seconds_bucket{{le=\"0.0001\"}} {a}\n\
                 meeting_sfu_added_latency_seconds_bucket{{le=\"0.001\"}} {b}\n\
                 meeting_sfu_added_latency_seconds_bucket{{le=\"+Inf\"}} {c}\n\
                 meeting_sfu_added_latency_seconds_count {c}\n"
            )
        };
        let a = parse_latency_buckets(&scrape(10, 10, 10));
        assert_eq!(a.len(), 3);
        // In between: 100 copies under 100 µs, 100 between 100 µs and 1 ms.
        let b = parse_latency_buckets(&scrape(110, 210, 210));
        let l = window_latency(&a, &b);
        assert_eq!(l.samples, 200);
        assert_eq!(l.p50_us, 100);
        assert!((900..=1000).contains(&l.p99_us), "{}", l.p99_us);
    }

    fn picked(wanted: usize, of: usize) -> Vec<usize> {
        (1..=of).filter(|&o| spread_pick(o, wanted, of)).collect()
    }

    #[test]
    fn fully_checked_subscribers_are_spread_over_the_join_order() {
        assert_eq!(picked(4, 100), vec![25, 50, 75, 100]);
        assert_eq!(picked(8, 8), (1..=8).collect::<Vec<_>>());
        assert_eq!(picked(8, 3), vec![1, 2, 3]);
        assert_eq!(picked(2, 5), vec![3, 5]);
        assert!(picked(0, 10).is_empty());
        assert!(picked(3, 0).is_empty());
    }
}
