//! The allocator's sans-IO core: questions, node snapshots and the passing of time go in (each
//! with the `now` it happens at), answers and provisioning jobs come out. It runs no command,
//! opens no socket and reads no clock, so every strategy is tested on simulated time; the
//! `Allocator` actor (mod.rs) moves the bytes, runs the jobs and saves the state.
//!
//! Provisioned servers follow one life: Planned → Creating → Starting → Up → Deleting →
//! Deleted. A server is created when `create_at` comes, counts as up when the node registry
//! says so (or, for a node the registry does not know, when `/healthz` answers), and is
//! deleted at `delete_at` (scheduled) or after `idle` without use (instant). A failed command
//! is retried with exponential backoff; `Creating`/`Deleting` are persisted before the command
//! runs, so a restart re-runs an interrupted one (the commands are idempotent by name).

use std::collections::{BTreeMap, BTreeSet};

use super::pools::Pools;
use super::state::{DayHours, Phase, Purpose, ReservationKind, STATE_VERSION, State};
use super::strategy::{
    Ask, Dedicated, InstantOnDemand, ScheduledOnDemand, SfuStrategy, Shared, World,
};
use crate::config::{self, InstantStrategy, ScheduledStrategy};
use crate::proto::{AllocationError, FsAssignment, NodeRole, NodesChanged, ServerAssignment};

/// Records older than this (after their end) are folded into the per-day archive.
const RETAIN_SECS: i64 = 40 * 86400;

/// Work for the actor: run a provisioning command or check that a server answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Job {
    Create { name: String, due: i64 },
    Delete { name: String, due: i64 },
    Probe { name: String, address: String },
}

impl Job {
    pub fn name(&self) -> &str {
        match self {
            Job::Create { name, .. } | Job::Delete { name, .. } | Job::Probe { name, .. } => name,
        }
    }
}

/// How a job went. `Created` carries the create command's stdout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created(String),
    Deleted,
    Answered,
    Failed(String),
}

/// The settings the engine needs, taken from `[allocator]`.
#[derive(Clone, Debug)]
pub struct Settings {
    pub scheduled: ScheduledStrategy,
    pub instant: InstantStrategy,
    pub lead: i64,
    pub lag: i64,
    pub idle: i64,
    pub max_owners: u32,
    pub address: String,
    pub prefix: String,
    pub dry_run: bool,
    pub retry_initial: i64,
    pub retry_max: i64,
    pub cost_per_server_hour: f64,
}

impl Settings {
    pub fn from_config(a: &config::Allocator) -> Self {
        Settings {
            scheduled: a.scheduled.strategy,
            instant: a.instant.strategy,
            lead: a.scheduled.lead.as_secs_i64(),
            lag: a.scheduled.lag.as_secs_i64(),
            idle: a.instant.idle.as_secs_i64(),
            max_owners: a.instant.max_owners_per_sfu,
            address: a.provision.address.clone(),
            prefix: a.provision.name_prefix.clone(),
            dry_run: a.provision.dry_run,
            retry_initial: a.provision.retry_initial.as_secs_i64().max(1),
            retry_max: a.provision.retry_max.as_secs_i64().max(1),
            cost_per_server_hour: a.cost_per_server_hour,
        }
    }
}

pub struct Engine {
    pub settings: Settings,
    pub state: State,
    pub pools: Pools,
    scheduled: Box<dyn SfuStrategy>,
    instant: Box<dyn SfuStrategy>,
    /// Servers with a job running (memory only: after a restart nothing runs).
    inflight: BTreeSet<String>,
    /// Answers given per turn/fs address since start, to spread equally loaded nodes.
    handed: BTreeMap<String, usize>,
    dirty: bool,
}

impl Engine {
    pub fn new(settings: Settings, pools: Pools, state: State) -> Self {
        let scheduled: Box<dyn SfuStrategy> = match settings.scheduled {
            ScheduledStrategy::Dedicated => Box::new(Dedicated {
                lead: settings.lead,
                lag: settings.lag,
            }),
            ScheduledStrategy::OnDemand => Box::new(ScheduledOnDemand {
                lead: settings.lead,
                lag: settings.lag,
                prefix: settings.prefix.clone(),
                address: settings.address.clone(),
            }),
            ScheduledStrategy::Shared => Box::new(Shared {
                max_owners: 0,
                idle: settings.idle,
                lead: settings.lead,
                lag: settings.lag,
            }),
        };
        let instant: Box<dyn SfuStrategy> = match settings.instant {
            InstantStrategy::Shared => Box::new(Shared {
                max_owners: settings.max_owners,
                idle: settings.idle,
                lead: settings.lead,
                lag: settings.lag,
            }),
            InstantStrategy::OnDemand => Box::new(InstantOnDemand {
                prefix: settings.prefix.clone(),
            }),
        };
        let mut e = Engine {
            settings,
            state: State {
                version: STATE_VERSION,
                ..State::default()
            },
            pools,
            scheduled,
            instant,
            inflight: BTreeSet::new(),
            handed: BTreeMap::new(),
            dirty: false,
        };
        e.restore(state);
        e
    }

    /// Takes over a loaded state and reconciles it: servers believed up are checked again
    /// (by the registry's next snapshot or a probe) before anyone is sent to them;
    /// interrupted commands run again at the next tick.
    pub fn restore(&mut self, mut state: State) {
        state.version = STATE_VERSION;
        let mut rechecked = 0;
        for s in state.servers.values_mut() {
            if s.phase == Phase::Up {
                s.phase = Phase::Starting;
                rechecked += 1;
            }
            s.next_try = 0;
        }
        let interrupted = state
            .servers
            .values()
            .filter(|s| matches!(s.phase, Phase::Creating | Phase::Deleting))
            .count();
        if !state.servers.is_empty() || !state.reservations.is_empty() {
            tracing::info!(
                reservations = state.reservations.len(),
                servers = state.servers.len(),
                rechecked,
                interrupted,
                "allocator state restored"
            );
        }
        self.state = state;
        self.inflight.clear();
        self.dirty = true;
    }

    /// Whether the state changed since the last call (and must be saved).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    pub fn strategy_names(&self) -> (&'static str, &'static str) {
        (self.scheduled.name(), self.instant.name())
    }

    /// The seed's `Kind=SFUTURN` question.
    pub fn allocate_servers(
        &mut self,
        email: &str,
        begin_at: i64,
        end_at: i64,
        now: i64,
    ) -> Result<ServerAssignment, AllocationError> {
        let instant = begin_at == 0 && end_at == 0;
        if !instant && end_at < begin_at {
            return Err(AllocationError::Failed(format!(
                "EndAt {end_at} is before BeginAt {begin_at}"
            )));
        }
        // The turnserver first: it has no side effects, so a refusal reserves nothing.
        let turn = self.least_loaded(NodeRole::Turnserver)?;
        let ask = Ask {
            email,
            begin_at,
            end_at,
        };
        let mut w = World {
            state: &mut self.state,
            pools: &self.pools,
            now,
        };
        // Every answer may have changed the state (a seat's last use counts too).
        self.dirty = true;
        let sfu = if instant {
            self.instant.allocate(&mut w, &ask)?
        } else {
            self.scheduled.allocate(&mut w, &ask)?
        };
        self.count(&turn);
        Ok(ServerAssignment { sfu, turn })
    }

    /// The seed's `Kind=FS` question.
    pub fn allocate_fs(&mut self, _email: &str) -> Result<FsAssignment, AllocationError> {
        let fs = self.least_loaded(NodeRole::Fsserver)?;
        self.count(&fs);
        Ok(FsAssignment { fs })
    }

    fn count(&mut self, address: &str) {
        *self.handed.entry(address.to_string()).or_insert(0) += 1;
    }

    /// turnserver and fsserver: the least loaded of the pool.
    fn least_loaded(&self, role: NodeRole) -> Result<String, AllocationError> {
        let cands = self.pools.candidates(role);
        let handed = |a: &str| self.handed.get(a).copied().unwrap_or(0);
        cands
            .iter()
            .filter(|c| !c.full)
            .min_by(|a, b| {
                a.load
                    .total_cmp(&b.load)
                    .then_with(|| handed(&a.address).cmp(&handed(&b.address)))
                    .then_with(|| a.address.cmp(&b.address))
            })
            .map(|c| c.address.clone())
            .ok_or_else(|| {
                AllocationError::NotReady(if cands.is_empty() {
                    format!("no {} is configured or up", role.name())
                } else {
                    format!("every {} is at its capacity", role.name())
                })
            })
    }

    /// The node registry's full snapshot.
    pub fn nodes_changed(&mut self, snapshot: &NodesChanged, now: i64) {
        let busy = |n: &crate::proto::NodeInfo| n.load.sessions > 0 || n.load.meetings > 0;
        // Nodes busy in the previous snapshot: their last participant left since.
        let was_busy: BTreeSet<String> = self
            .state
            .servers
            .values()
            .filter_map(|s| s.address.clone())
            .filter(|a| self.pools.live_node(a).is_some_and(busy))
            .collect();
        self.pools.set_live(snapshot);
        for s in self.state.servers.values_mut() {
            let Some(addr) = &s.address else { continue };
            let Some(node) = self.pools.live_node(addr) else {
                continue;
            };
            match (s.phase, node.up) {
                (Phase::Starting, true) => {
                    s.phase = Phase::Up;
                    s.up_at = Some(now);
                    tracing::info!(server = %s.name, address = %addr, "provisioned sfuserver registered");
                    self.dirty = true;
                }
                (Phase::Up, false) => {
                    s.phase = Phase::Starting;
                    tracing::warn!(server = %s.name, address = %addr, "provisioned sfuserver is down; not handed out until it is back");
                    self.dirty = true;
                }
                _ => {}
            }
            if node.up
                && (busy(node) || was_busy.contains(addr))
                && matches!(s.purpose, Purpose::Instant { .. })
            {
                // In use counts as use: idle is measured from the last participant.
                s.last_used = s.last_used.max(now);
                self.dirty = true;
            }
        }
    }

    fn should_delete(&self, name: &str, now: i64) -> bool {
        let Some(s) = self.state.servers.get(name) else {
            return false;
        };
        match &s.purpose {
            Purpose::Scheduled { .. } => s.delete_at.is_some_and(|d| now >= d),
            Purpose::Instant { .. } => now >= s.last_used + self.settings.idle,
        }
    }

    /// Time passes: the jobs due at `now`. The phases they move to are recorded at once (and
    /// saved before the jobs run), so a restart in the middle re-runs them.
    pub fn tick(&mut self, now: i64) -> Vec<Job> {
        self.prune(now);
        let mut jobs = Vec::new();
        let names: Vec<String> = self.state.servers.keys().cloned().collect();
        for name in names {
            if self.inflight.contains(&name) {
                continue;
            }
            let delete = self.should_delete(&name, now);
            let dry_run = self.settings.dry_run;
            let Some(s) = self.state.servers.get_mut(&name) else {
                continue;
            };
            let due_retry = now >= s.next_try;
            let job = match s.phase {
                Phase::Planned if delete => {
                    // Its time passed before it was ever created (the allocator was down).
                    s.phase = Phase::Deleted;
                    self.dirty = true;
                    None
                }
                Phase::Planned if now >= s.create_at => {
                    s.phase = Phase::Creating;
                    s.attempts = 0;
                    Some(Job::Create {
                        name: name.clone(),
                        due: s.create_at,
                    })
                }
                Phase::Creating if due_retry && !delete => Some(Job::Create {
                    name: name.clone(),
                    due: s.create_at,
                }),
                Phase::Creating | Phase::Starting | Phase::Up if delete => {
                    s.attempts = 0;
                    s.next_try = 0;
                    s.phase = Phase::Deleting;
                    Some(Job::Delete {
                        name: name.clone(),
                        due: s.delete_at.unwrap_or(s.last_used + self.settings.idle),
                    })
                }
                Phase::Deleting if due_retry => Some(Job::Delete {
                    name: name.clone(),
                    due: s.delete_at.unwrap_or(s.last_used + self.settings.idle),
                }),
                Phase::Starting if dry_run => {
                    s.phase = Phase::Up;
                    s.up_at = Some(now);
                    self.dirty = true;
                    None
                }
                Phase::Starting => match s.address.as_deref() {
                    Some(a) => match self.pools.live_up(a) {
                        Some(true) => {
                            s.phase = Phase::Up;
                            s.up_at = Some(now);
                            self.dirty = true;
                            None
                        }
                        // The registry knows it and says down: wait for it.
                        Some(false) => None,
                        None if due_retry => Some(Job::Probe {
                            name: name.clone(),
                            address: a.to_string(),
                        }),
                        None => None,
                    },
                    None => None,
                },
                _ => None,
            };
            if let Some(j) = job {
                if !matches!(j, Job::Probe { .. }) {
                    self.dirty = true;
                }
                self.inflight.insert(name);
                jobs.push(j);
            }
        }
        jobs
    }

    /// The wait before try `attempts + 1`: `retry_initial`, doubling, at most `retry_max`.
    fn backoff(&self, attempts: u32) -> i64 {
        let exp = attempts.saturating_sub(1).min(30);
        self.settings
            .retry_initial
            .saturating_mul(1i64 << exp)
            .min(self.settings.retry_max)
    }

    /// A job finished at `now`.
    pub fn job_done(&mut self, job: &Job, outcome: Outcome, now: i64) {
        let name = job.name().to_string();
        self.inflight.remove(&name);
        let template = self.settings.address.clone();
        let dry_run = self.settings.dry_run;
        let Some(s) = self.state.servers.get(&name) else {
            return;
        };
        let mut s = s.clone();
        let retry_at = now + self.backoff(s.attempts + 1);
        match (job, outcome) {
            (Job::Create { .. }, Outcome::Created(stdout)) if s.phase == Phase::Creating => {
                let address = if !template.is_empty() {
                    Some(template.replace("{name}", &name))
                } else if dry_run {
                    Some(format!("{name}.dry-run.invalid:443"))
                } else {
                    stdout
                        .lines()
                        .map(str::trim)
                        .rfind(|l| !l.is_empty())
                        .filter(|l| config::split_host_port(l).is_ok())
                        .map(str::to_string)
                };
                match address {
                    Some(a) => {
                        tracing::info!(server = %name, address = %a, "sfuserver created; waiting for it to come up");
                        s.address = Some(a);
                        s.phase = Phase::Starting;
                        s.created_at = Some(now);
                        s.attempts = 0;
                        s.next_try = 0;
                        s.last_error = None;
                    }
                    None => {
                        s.attempts += 1;
                        s.next_try = retry_at;
                        s.last_error = Some(
                            "the create command printed no host:port on its last line (or set provision.address)"
                                .into(),
                        );
                        tracing::error!(server = %name, "{}", s.last_error.as_deref().unwrap_or(""));
                    }
                }
            }
            (Job::Delete { .. }, Outcome::Deleted) if s.phase == Phase::Deleting => {
                tracing::info!(server = %name, "sfuserver deleted");
                s.phase = Phase::Deleted;
                s.deleted_at = Some(now);
                s.attempts = 0;
                s.last_error = None;
                if let Purpose::Instant { email } = &s.purpose
                    && self
                        .state
                        .seats
                        .get(email)
                        .is_some_and(|seat| seat.server.as_deref() == Some(&name))
                {
                    self.state.seats.remove(email);
                }
            }
            (Job::Probe { .. }, Outcome::Answered) if s.phase == Phase::Starting => {
                tracing::info!(server = %name, "provisioned sfuserver answers; handing it out");
                s.phase = Phase::Up;
                s.up_at = Some(now);
            }
            (Job::Probe { .. }, _) => {
                // Not up yet: probed again at the next tick.
                return;
            }
            (Job::Create { .. } | Job::Delete { .. }, Outcome::Failed(e)) => {
                s.attempts += 1;
                s.next_try = retry_at;
                tracing::warn!(server = %name, attempts = s.attempts, retry_at = s.next_try, error = %e, "provisioning command failed; retrying with backoff");
                s.last_error = Some(e);
            }
            _ => return,
        }
        if s.phase == Phase::Up
            && let Purpose::Instant { email } = &s.purpose
            && let Some(seat) = self.state.seats.get_mut(email)
        {
            seat.sfu = s.address.clone().unwrap_or_default();
        }
        self.state.servers.insert(name, s);
        self.dirty = true;
    }

    /// Folds records long past into the per-day archive, and forgets idle shared seats.
    fn prune(&mut self, now: i64) {
        let cutoff = now - RETAIN_SECS;
        let idle = self.settings.idle;
        let before = self.state.seats.len();
        self.state
            .seats
            .retain(|_, s| s.server.is_some() || s.last_used + idle > now);
        if self.state.seats.len() != before {
            self.dirty = true;
        }
        let (old, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.state.reservations)
            .into_iter()
            .partition(|r| r.until < cutoff);
        self.state.reservations = keep;
        for r in &old {
            if r.kind == ReservationKind::Dedicated {
                add_hours(&mut self.state.archive, r.from, r.until, |d, h| {
                    d.reserved += h
                });
            }
        }
        let gone: Vec<String> = self
            .state
            .servers
            .values()
            .filter(|s| s.phase == Phase::Deleted && s.deleted_at.unwrap_or(0) < cutoff)
            .map(|s| s.name.clone())
            .collect();
        for name in &gone {
            if let Some(s) = self.state.servers.remove(name)
                && let (Some(c), Some(d)) = (s.created_at, s.deleted_at)
            {
                add_hours(&mut self.state.archive, c, d, |day, h| day.on_demand += h);
            }
        }
        if !old.is_empty() || !gone.is_empty() {
            self.dirty = true;
        }
    }
}

/// Adds the hours of `[from, until)` to each UTC day it touches.
pub fn add_hours(
    days: &mut BTreeMap<i64, DayHours>,
    from: i64,
    until: i64,
    add: impl Fn(&mut DayHours, f64),
) {
    let mut t = from;
    while t < until {
        let day = t.div_euclid(86400);
        let end = ((day + 1) * 86400).min(until);
        add(days.entry(day).or_default(), (end - t) as f64 / 3600.0);
        t = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PoolEntry;
    use crate::roles::allocateserver::pools::tests::node;

    fn engine(f: impl FnOnce(&mut config::Allocator)) -> Engine {
        let mut a = config::Allocator::default();
        f(&mut a);
        let pools = Pools::new(
            a.sfu.clone(),
            a.turn.clone(),
            a.fs.clone(),
            [
                (NodeRole::Sfuserver, None),
                (NodeRole::Turnserver, None),
                (NodeRole::Fsserver, None),
            ],
        );
        Engine::new(Settings::from_config(&a), pools, State::default())
    }

    fn pool(addrs: &[&str]) -> Vec<PoolEntry> {
        addrs.iter().map(|a| PoolEntry::new(*a)).collect()
    }

    #[test]
    fn shared_instant_caps_owners_per_sfu_least_loaded_first_and_keeps_seats() {
        let mut e = engine(|a| {
            a.instant.max_owners_per_sfu = 2;
            a.sfu = pool(&["s1:443", "s2:443"]);
            a.turn = pool(&["t:3478"]);
        });
        let t = 1_000_000;
        let ask =
            |e: &mut Engine, who: &str, now| e.allocate_servers(who, 0, 0, now).map(|a| a.sfu);
        assert_eq!(ask(&mut e, "a@x", t).as_deref(), Ok("s1:443"));
        assert_eq!(ask(&mut e, "b@x", t).as_deref(), Ok("s2:443"));
        assert_eq!(ask(&mut e, "c@x", t).as_deref(), Ok("s1:443"));
        assert_eq!(ask(&mut e, "d@x", t).as_deref(), Ok("s2:443"));
        assert!(matches!(
            ask(&mut e, "e@x", t),
            Err(AllocationError::NotReady(_))
        ));
        // An owner keeps their server.
        assert_eq!(ask(&mut e, "a@x", t + 60).as_deref(), Ok("s1:443"));
        // Live load wins over owner counts; a down node is never handed out.
        e.nodes_changed(
            &NodesChanged {
                nodes: vec![
                    node(NodeRole::Sfuserver, "s1:443", false, 0, 100),
                    node(NodeRole::Sfuserver, "s3:443", true, 10, 100),
                ],
            },
            t,
        );
        assert_eq!(
            ask(&mut e, "a@x", t + 120).as_deref(),
            Ok("s3:443"),
            "s1 is down"
        );
        // After idle, seats are given up.
        e.tick(t + 4 * 3600);
        assert!(e.state.seats.is_empty());
    }

    #[test]
    fn turn_and_fs_are_the_least_loaded_up_node() {
        let mut e = engine(|a| {
            a.sfu = pool(&["s:443"]);
            a.turn = pool(&["t1:3478", "t2:3478"]);
            a.fs = pool(&["f1:443", "f2:443"]);
        });
        // No snapshot: spread by answers given.
        let turns: Vec<String> = (0..4)
            .map(|_| e.allocate_servers("a@x", 0, 0, 1).expect("servers").turn)
            .collect();
        assert_eq!(turns, ["t1:3478", "t2:3478", "t1:3478", "t2:3478"]);
        e.nodes_changed(
            &NodesChanged {
                nodes: vec![
                    node(NodeRole::Fsserver, "f1:443", true, 9, 10),
                    node(NodeRole::Fsserver, "f2:443", true, 1, 10),
                    node(NodeRole::Turnserver, "t2:3478", false, 0, 0),
                ],
            },
            1,
        );
        for _ in 0..3 {
            assert_eq!(e.allocate_fs("a@x").expect("fs").fs, "f2:443");
            assert_eq!(
                e.allocate_servers("a@x", 0, 0, 1).expect("s").turn,
                "t1:3478"
            );
        }
        // Full nodes are skipped; none left is "not ready".
        e.nodes_changed(
            &NodesChanged {
                nodes: vec![
                    node(NodeRole::Fsserver, "f1:443", true, 10, 10),
                    node(NodeRole::Fsserver, "f2:443", false, 0, 10),
                ],
            },
            2,
        );
        assert!(matches!(
            e.allocate_fs("a@x"),
            Err(AllocationError::NotReady(_))
        ));
    }

    #[test]
    fn dedicated_refuses_overlaps_but_not_back_to_back_windows() {
        let mut e = engine(|a| {
            a.scheduled.strategy = ScheduledStrategy::Dedicated;
            a.sfu = pool(&["s1:443"]);
            a.turn = pool(&["t:3478"]);
        });
        let h = 3600;
        let b = 100 * h;
        assert!(e.allocate_servers("a@x", b, b + h, 0).is_ok());
        // [b-2h, b+3h) is held: an overlapping meeting is refused, and reserves nothing.
        let r = e.allocate_servers("b@x", b + 4 * h, b + 5 * h, 0);
        assert!(matches!(r, Err(AllocationError::NotReady(_))), "{r:?}");
        assert_eq!(e.state.reservations.len(), 1);
        // A meeting whose lead (begin - 2h) starts when the first's lag ends: free again.
        assert!(e.allocate_servers("c@x", b + 5 * h, b + 6 * h, 0).is_ok());
    }

    #[test]
    fn failed_commands_back_off_and_an_interrupted_create_runs_again_after_restart() {
        let mut e = engine(|a| {
            a.instant.strategy = InstantStrategy::OnDemand;
            a.turn = pool(&["t:3478"]);
            a.provision.retry_initial = config::Dur::secs(30);
            a.provision.retry_max = config::Dur::secs(100);
        });
        assert!(e.allocate_servers("a@x", 0, 0, 0).is_err());
        let jobs = e.tick(0);
        assert!(matches!(&jobs[..], [Job::Create { .. }]), "{jobs:?}");
        assert!(e.tick(1).is_empty(), "in flight");
        for (i, wait) in [30, 60, 100, 100].into_iter().enumerate() {
            let t = i64::try_from(i).expect("small") * 1000;
            e.job_done(&jobs[0], Outcome::Failed("boom".into()), t);
            assert!(e.tick(t + wait - 1).is_empty());
            assert_eq!(e.tick(t + wait), jobs);
        }
        // A restart while it runs: the persisted phase is Creating; it runs again.
        let saved = e.state.clone();
        let mut e2 = engine(|a| {
            a.instant.strategy = InstantStrategy::OnDemand;
            a.turn = pool(&["t:3478"]);
        });
        e2.restore(saved);
        assert_eq!(e2.tick(5000), jobs);
        e2.job_done(&jobs[0], Outcome::Created("10.1.1.1:443\n".into()), 5000);
        assert_eq!(
            e2.state
                .servers
                .values()
                .next()
                .and_then(|s| s.address.clone())
                .as_deref(),
            Some("10.1.1.1:443")
        );
    }

    #[test]
    fn a_provisioned_server_that_registers_does_not_join_the_shared_pool() {
        let mut e = engine(|a| {
            a.turn = pool(&["t:3478"]);
        });
        // A server made for someone (e.g. before a switch to shared), registered and up.
        e.state.servers.insert(
            "meeting-sfu-i1".into(),
            super::super::state::Server {
                name: "meeting-sfu-i1".into(),
                purpose: Purpose::Instant {
                    email: "a@x".into(),
                },
                phase: Phase::Up,
                address: Some("mine:443".into()),
                create_at: 0,
                delete_at: None,
                last_used: 0,
                created_at: Some(0),
                up_at: Some(0),
                deleted_at: None,
                attempts: 0,
                next_try: 0,
                last_error: None,
            },
        );
        e.nodes_changed(
            &NodesChanged {
                nodes: vec![
                    node(NodeRole::Sfuserver, "mine:443", true, 0, 100),
                    node(NodeRole::Sfuserver, "pool:443", true, 50, 100),
                ],
            },
            0,
        );
        let a = e.allocate_servers("b@x", 0, 0, 0).expect("a pool server");
        assert_eq!(a.sfu, "pool:443");
    }

    #[test]
    fn hours_split_at_midnight() {
        let mut d = BTreeMap::new();
        add_hours(&mut d, 86400 - 1800, 86400 + 3600, |x, h| x.on_demand += h);
        assert_eq!(d[&0].on_demand, 0.5);
        assert_eq!(d[&1].on_demand, 1.0);
    }
}
