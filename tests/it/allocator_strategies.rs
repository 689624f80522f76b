//! The built-in allocator's strategies, on a simulated clock where time matters:
//! - a week of generated, overlapping scheduled meetings never double-books a dedicated
//!   sfuserver, and every refusal is "not ready" (the seed's non-200) for a good reason;
//! - scheduled on_demand: a recording provisioning script shows create at begin - 2h and
//!   delete at end + 2h, each exactly once, across a restart of the allocator in between;
//! - instant on_demand: "not ready" until the created server registers (node registry
//!   snapshot) or answers `/healthz`, then handed out, then deleted after the idle period.

use actix::prelude::*;
use meeting_appliance::config::{
    Allocator as AllocConfig, Dur, InstantStrategy, PoolEntry, ScheduledStrategy,
};
use meeting_appliance::proto::{
    AllocateServers, AllocationError, NodeInfo, NodeLoad, NodeRole, NodesChanged,
};
use meeting_appliance::roles::allocateserver::engine::{Engine, Settings};
use meeting_appliance::roles::allocateserver::pools::Pools;
use meeting_appliance::roles::allocateserver::state::State;
use meeting_appliance::roles::allocateserver::store::{FileStore, Store};
use meeting_appliance::roles::allocateserver::{Allocator, Clock, GetReport, Tick};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

const H: i64 = 3600;

fn pool(addrs: &[&str]) -> Vec<PoolEntry> {
    addrs.iter().map(|a| PoolEntry::new(*a)).collect()
}

fn no_own() -> [(NodeRole, Option<String>); 3] {
    [
        (NodeRole::Sfuserver, None),
        (NodeRole::Turnserver, None),
        (NodeRole::Fsserver, None),
    ]
}

/// A small deterministic generator (no dependency, same week every run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> i64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        i64::try_from((self.0 >> 33) % n).expect("small")
    }
}

#[test]
fn a_week_of_overlapping_scheduled_meetings_never_double_books_a_dedicated_sfuserver() {
    let servers = ["s1:443", "s2:443", "s3:443", "s4:443"];
    let mut cfg = AllocConfig::default();
    cfg.scheduled.strategy = ScheduledStrategy::Dedicated;
    cfg.sfu = pool(&servers);
    cfg.turn = pool(&["t:3478"]);
    let pools = Pools::new(cfg.sfu.clone(), cfg.turn.clone(), vec![], no_own());
    let mut e = Engine::new(Settings::from_config(&cfg), pools, State::default());

    let week = 1_767_225_600; // a Thursday, 00:00 UTC
    let mut rng = Lcg(42);
    let mut granted: Vec<(String, i64, i64)> = Vec::new();
    let (mut ok, mut refused) = (0, 0);
    for i in 0..160 {
        // Meetings are made during the week before, in no particular order of time.
        let now = week - 7 * 86400 + i * 3000;
        let begin = week + rng.next(7 * 24 * 4) * 900;
        let end = begin + (2 + rng.next(11)) * 900;
        let email = format!("owner{}@corp.test", rng.next(30));
        let (from, until) = (begin - 2 * H, end + 2 * H);
        match e.allocate_servers(&email, begin, end, now) {
            Ok(a) => {
                assert!(servers.contains(&a.sfu.as_str()), "{a:?}");
                assert_eq!(a.turn, "t:3478");
                granted.push((a.sfu, from, until));
                ok += 1;
            }
            Err(AllocationError::NotReady(why)) => {
                // Refused only when every server is held at some time of this window.
                for s in servers {
                    assert!(
                        granted
                            .iter()
                            .any(|(g, f, u)| g == s && *f < until && from < *u),
                        "{s} was free for [{from}, {until}) but the meeting was refused: {why}"
                    );
                }
                refused += 1;
            }
            Err(e) => panic!("not a clean refusal: {e:?}"),
        }
    }
    for s in servers {
        let mut w: Vec<(i64, i64)> = granted
            .iter()
            .filter(|(g, _, _)| g == s)
            .map(|(_, f, u)| (*f, *u))
            .collect();
        w.sort();
        for pair in w.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "{s} double-booked: {:?} and {:?}",
                pair[0],
                pair[1]
            );
        }
    }
    assert!(ok > 40 && refused > 20, "{ok} granted, {refused} refused");
    println!("a week of 160 meetings on 4 dedicated sfuservers: {ok} granted, {refused} refused");
    // The report's figure: hours the pool was reserved vs. keeping it on all week.
    let r = meeting_appliance::roles::allocateserver::report::build(&e, week + 7 * 86400 - 1);
    let reserved: f64 = r.days.iter().map(|d| d.reserved_hours).sum();
    let always: f64 = r.days.iter().rev().take(7).map(|d| d.always_on_hours).sum();
    assert!(
        reserved > 0.0 && reserved <= always,
        "{reserved} of {always}"
    );
    println!(
        "reserved {reserved:.1} server-hours of {always:.0} always-on ({:.0}%)",
        100.0 * reserved / always
    );
    // The reservations survive a restart: the restored allocator refuses the same overlap.
    let saved = e.state.clone();
    let pools = Pools::new(cfg.sfu.clone(), cfg.turn.clone(), vec![], no_own());
    let mut e2 = Engine::new(Settings::from_config(&cfg), pools, saved);
    let (_, f, u) = granted[0].clone();
    let busy = servers.iter().all(|s| {
        granted
            .iter()
            .any(|(g, gf, gu)| g == s && *gf < u - 2 * H && f + 2 * H < *gu)
    });
    if busy {
        assert!(
            e2.allocate_servers("x@corp.test", f + 2 * H, u - 2 * H, week)
                .is_err()
        );
    }
}

/// The allocator's clock in a test: moved by hand.
#[derive(Clone)]
struct SimClock(Arc<AtomicI64>);
impl SimClock {
    fn new(t: i64) -> Self {
        SimClock(Arc::new(AtomicI64::new(t)))
    }
    fn set(&self, t: i64) {
        self.0.store(t, Ordering::SeqCst);
    }
    fn clock(&self) -> Clock {
        let c = self.0.clone();
        Arc::new(move || c.load(Ordering::SeqCst))
    }
}

/// A provisioning script that appends `action name due=… now=…` to a log; its create prints
/// `print` (a server address) on stdout.
fn recording_script(dir: &Path, print: &str) -> (String, String, PathBuf) {
    let log = dir.join("provision.log");
    let script = dir.join("provision.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1 $2 due=$ALLOCATOR_DUE_AT now=$ALLOCATOR_NOW\" >> '{}'\n[ \"$1\" = create ] && echo '{print}'\nexit 0\n",
            log.display()
        ),
    )
    .expect("write script");
    let s = script.display();
    (
        format!("sh '{s}' create {{name}}"),
        format!("sh '{s}' delete {{name}}"),
        log,
    )
}

fn log_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A stand-in for a freshly created sfuserver: answers every HTTP request with 200.
fn healthz_server() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\nconnection: close\r\n\r\n{\"status\":\"ok\"}",
            );
        }
    });
    addr
}

fn start(cfg: &AllocConfig, dir: &Path, clock: &SimClock) -> Addr<Allocator> {
    let store: Arc<dyn Store> = Arc::new(FileStore::in_data_dir(dir));
    Allocator::new(cfg, no_own(), store, clock.clock())
        .expect("allocator")
        .start()
}

async fn ask(
    a: &Addr<Allocator>,
    email: &str,
    begin: i64,
    end: i64,
) -> Result<String, AllocationError> {
    a.send(AllocateServers {
        email: email.into(),
        begin_at: begin,
        end_at: end,
    })
    .await
    .expect("mailbox")
    .map(|s| s.sfu)
}

#[actix_rt::test]
async fn scheduled_on_demand_creates_at_begin_minus_lead_and_deletes_at_end_plus_lag_once_across_a_restart()
 {
    let dir = tempfile::tempdir().expect("tmp");
    let health = healthz_server();
    let (create, delete, log) = recording_script(dir.path(), "ignored");
    let mut cfg = AllocConfig::default();
    cfg.scheduled.strategy = ScheduledStrategy::OnDemand;
    cfg.turn = pool(&["t:3478"]);
    cfg.provision.create = create;
    cfg.provision.delete = delete;
    // Known before the server exists; here, the stand-in that answers /healthz.
    cfg.provision.address = health.to_string();
    cfg.check_every = Dur::secs(3600); // the test ticks by hand
    let t0 = 1_767_225_600;
    let (begin, end) = (t0 + 24 * H, t0 + 25 * H);
    let clock = SimClock::new(t0);

    let a = start(&cfg, dir.path(), &clock);
    let sfu = ask(&a, "ann@corp.test", begin, end)
        .await
        .expect("answered at once");
    assert_eq!(sfu, health.to_string());
    let name = "meeting-sfu-s1";
    for t in [t0, begin - 2 * H - 60, begin - 2 * H - 1] {
        clock.set(t);
        a.send(Tick).await.expect("tick");
    }
    assert!(log_lines(&log).is_empty(), "nothing before begin - 2h");
    for t in [begin - 2 * H, begin - 2 * H + 5, begin - H] {
        clock.set(t);
        a.send(Tick).await.expect("tick");
    }
    let created = format!("create {name} due={} now={}", begin - 2 * H, begin - 2 * H);
    assert_eq!(log_lines(&log), vec![created.clone()]);
    let r = a.send(GetReport).await.expect("report");
    assert_eq!(r.running.len(), 1, "{r:?}");
    assert_eq!(r.reservations.len(), 1);

    // Restart: a new allocator on the same state file.
    drop(a);
    let a = start(&cfg, dir.path(), &clock);
    for t in [begin, end, end + 2 * H - 1] {
        clock.set(t);
        a.send(Tick).await.expect("tick");
    }
    assert_eq!(
        log_lines(&log),
        vec![created.clone()],
        "no second create after the restart"
    );
    for t in [end + 2 * H, end + 2 * H + 5, end + 3 * H] {
        clock.set(t);
        a.send(Tick).await.expect("tick");
    }
    let deleted = format!("delete {name} due={} now={}", end + 2 * H, end + 2 * H);
    assert_eq!(log_lines(&log), vec![created.clone(), deleted.clone()]);
    // And a restart after the delete does nothing again.
    drop(a);
    let a = start(&cfg, dir.path(), &clock);
    clock.set(end + 5 * H);
    a.send(Tick).await.expect("tick");
    assert_eq!(log_lines(&log), vec![created, deleted]);
    let r = a.send(GetReport).await.expect("report");
    assert!(r.running.is_empty() && r.pending.is_empty(), "{r:?}");
    let hours: f64 = r.days.iter().map(|d| d.on_demand_hours).sum();
    assert_eq!(hours, 5.0, "2h lead + 1h meeting + 2h lag: {:?}", r.days);
}

fn sfu_node(address: &str, up: bool, sessions: u32) -> NodeInfo {
    NodeInfo {
        role: NodeRole::Sfuserver,
        address: address.into(),
        up,
        capacity: 100,
        load: NodeLoad {
            sessions,
            ..NodeLoad::default()
        },
        media: Vec::new(),
        version: "test".into(),
        last_seen: 0,
    }
}

#[actix_rt::test]
async fn instant_on_demand_waits_until_the_node_registers_then_deletes_it_after_idle() {
    let dir = tempfile::tempdir().expect("tmp");
    // The created server's address; it never answers HTTP: only the registry can say it is up.
    let (create, delete, log) = recording_script(dir.path(), "10.20.30.40:443");
    let mut cfg = AllocConfig::default();
    cfg.instant.strategy = InstantStrategy::OnDemand;
    cfg.turn = pool(&["t:3478"]);
    cfg.provision.create = create;
    cfg.provision.delete = delete;
    cfg.check_every = Dur::secs(3600);
    let t0 = 1_767_225_600;
    let clock = SimClock::new(t0);
    let a = start(&cfg, dir.path(), &clock);

    let first = ask(&a, "bob@corp.test", 0, 0).await;
    assert!(
        matches!(first, Err(AllocationError::NotReady(_))),
        "{first:?}"
    );
    a.send(Tick).await.expect("tick");
    assert_eq!(
        log_lines(&log),
        vec![format!("create meeting-sfu-i1 due={t0} now={t0}")]
    );
    // Created, not registered: still not ready (and no second server).
    clock.set(t0 + 30);
    let r = ask(&a, "bob@corp.test", 0, 0).await;
    assert!(matches!(r, Err(AllocationError::NotReady(_))), "{r:?}");
    // The registry reports it, down first, then up.
    a.send(NodesChanged {
        nodes: vec![sfu_node("10.20.30.40:443", false, 0)],
    })
    .await
    .expect("snapshot");
    assert!(ask(&a, "bob@corp.test", 0, 0).await.is_err());
    clock.set(t0 + 60);
    a.send(NodesChanged {
        nodes: vec![sfu_node("10.20.30.40:443", true, 0)],
    })
    .await
    .expect("snapshot");
    assert_eq!(
        ask(&a, "bob@corp.test", 0, 0).await.as_deref(),
        Ok("10.20.30.40:443")
    );
    // In use at t0+2h (participants on it): idle counts from then.
    clock.set(t0 + 2 * H);
    a.send(NodesChanged {
        nodes: vec![sfu_node("10.20.30.40:443", true, 4)],
    })
    .await
    .expect("snapshot");
    clock.set(t0 + 2 * H + 60);
    a.send(NodesChanged {
        nodes: vec![sfu_node("10.20.30.40:443", true, 0)],
    })
    .await
    .expect("snapshot");
    clock.set(t0 + 5 * H + 59);
    a.send(Tick).await.expect("tick");
    assert_eq!(log_lines(&log).len(), 1, "not idle for 3h yet");
    clock.set(t0 + 5 * H + 60);
    a.send(Tick).await.expect("tick");
    assert_eq!(
        log_lines(&log)[1],
        format!(
            "delete meeting-sfu-i1 due={} now={}",
            t0 + 5 * H + 60,
            t0 + 5 * H + 60
        )
    );
    // Asked again later: a new server is made.
    clock.set(t0 + 6 * H);
    assert!(ask(&a, "bob@corp.test", 0, 0).await.is_err());
    a.send(Tick).await.expect("tick");
    assert!(
        log_lines(&log)[2].starts_with("create meeting-sfu-i2 "),
        "{:?}",
        log_lines(&log)
    );
}

#[actix_rt::test]
async fn instant_on_demand_without_a_registry_probes_healthz() {
    let dir = tempfile::tempdir().expect("tmp");
    let health = healthz_server();
    let (create, delete, log) = recording_script(dir.path(), &health.to_string());
    let mut cfg = AllocConfig::default();
    cfg.instant.strategy = InstantStrategy::OnDemand;
    cfg.turn = pool(&["t:3478"]);
    cfg.provision.create = create;
    cfg.provision.delete = delete;
    cfg.check_every = Dur::secs(3600);
    let t0 = 1_767_225_600;
    let clock = SimClock::new(t0);
    let a = start(&cfg, dir.path(), &clock);
    assert!(ask(&a, "cy@corp.test", 0, 0).await.is_err());
    a.send(Tick).await.expect("tick: create");
    assert!(
        ask(&a, "cy@corp.test", 0, 0).await.is_err(),
        "created, not checked yet"
    );
    a.send(Tick).await.expect("tick: probe");
    assert_eq!(ask(&a, "cy@corp.test", 0, 0).await, Ok(health.to_string()));
    // Used at t0; deleted 3h later.
    clock.set(t0 + 3 * H);
    a.send(Tick).await.expect("tick");
    assert_eq!(log_lines(&log).len(), 2, "{:?}", log_lines(&log));
    assert!(log_lines(&log)[1].starts_with("delete meeting-sfu-i1 "));
}
