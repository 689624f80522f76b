//! The allocateserver role: which sfuserver, turnserver and fsserver serve a meeting.
//!
//! Layout:
//! - `engine` is the sans-IO core (questions, node snapshots and time in; answers and
//!   provisioning jobs out), `strategy` the four sfuserver strategies behind one small trait,
//!   `pools` the configured pools merged with the node registry's snapshot, `state` what is
//!   persisted;
//! - `Allocator` (this file) is the actor around the engine: it answers `AllocateServers` and
//!   `AllocateFileServer`, takes `NodesChanged` snapshots, runs the engine's jobs (`provision`)
//!   on a timer and saves the state (`store`) before it answers;
//! - `server` is the standalone role (`meeting-appliance allocateserver --config allocate.toml`)
//!   serving the seed's HTTP protocol; `report` the report of reservations and server-hours;
//! - `HttpAllocator` (client.rs) answers the same messages by asking an external allocator.
//!
//! The wiring in `node` hands the apiserver one or the other as a `Recipient`; both are "the
//! allocator" to it.

pub mod client;
pub mod engine;
pub mod pools;
pub mod provision;
pub mod report;
pub mod server;
pub mod state;
pub mod store;
pub mod strategy;

use actix::prelude::*;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::proto::{
    AllocateFileServer, AllocateServers, AllocationError, FsAssignment, NodeRole, NodesChanged,
    ServerAssignment,
};

pub use client::HttpAllocator;
use engine::{Engine, Settings};
use pools::Pools;
use provision::Runner;
use state::State;
use store::Store;

/// The allocator's clock: unix seconds. Tests pass a simulated one.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(crate::util::now)
}

/// Run the due provisioning jobs now; resolves when they finished and the state is saved.
/// Sent by the actor's own timer every `check_every`, and by tests on a simulated clock.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Tick;

/// The report (see `report`).
#[derive(Message)]
#[rtype(result = "report::Report")]
pub struct GetReport;

/// Saves go through one task, in order, so the last write is always the newest state; each
/// answer waits for its save.
type SaveQueue = mpsc::UnboundedSender<(State, oneshot::Sender<()>)>;

/// The built-in allocator.
pub struct Allocator {
    engine: Engine,
    clock: Clock,
    runner: Arc<Runner>,
    store: Arc<dyn Store>,
    saves: Option<SaveQueue>,
    check_every: std::time::Duration,
    /// Set when the stored state could not be read: then every question is refused rather
    /// than answered from an empty state (which would double-book).
    broken: Option<String>,
}

impl Allocator {
    /// `own`: this box's addresses per role, handed out while no pool is configured and no
    /// node of that role registered (a single box).
    pub fn new(
        cfg: &crate::config::Allocator,
        own: [(NodeRole, Option<String>); 3],
        store: Arc<dyn Store>,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let pools = Pools::new(cfg.sfu.clone(), cfg.turn.clone(), cfg.fs.clone(), own);
        Ok(Allocator {
            engine: Engine::new(Settings::from_config(cfg), pools, State::default()),
            clock,
            runner: Arc::new(Runner::new(&cfg.provision)?),
            store,
            saves: None,
            check_every: cfg.check_every.0,
            broken: None,
        })
    }

    /// The in-process allocator of an apiserver without `--allocateserver`: state in the main
    /// database; this box's addresses as the pools' fallback. Subscribe the returned address
    /// to the node registry's `NodesChanged` for live load and auto-discovery.
    pub fn start_in_process(
        cfg: &Config,
        own_sfu: &str,
        own_turn: &str,
        own_fs: &str,
        db: sea_orm::DatabaseConnection,
    ) -> anyhow::Result<Addr<Allocator>> {
        let own = [
            (NodeRole::Sfuserver, Some(own_sfu.to_string())),
            (NodeRole::Turnserver, Some(own_turn.to_string())),
            (NodeRole::Fsserver, Some(own_fs.to_string())),
        ];
        let a = Allocator::new(
            &cfg.allocator,
            own,
            Arc::new(store::DbStore::new(db)),
            system_clock(),
        )?;
        Ok(a.start())
    }

    /// Queues a save of the current state if it changed; the future resolves once written.
    fn persist(&mut self) -> impl Future<Output = ()> + use<> {
        let rx = match (&self.saves, self.engine.take_dirty()) {
            (Some(q), true) => {
                let (tx, rx) = oneshot::channel();
                if q.send((self.engine.state.clone(), tx)).is_err() {
                    tracing::error!("allocator state saver is gone; state is not saved");
                }
                Some(rx)
            }
            _ => None,
        };
        async move {
            if let Some(rx) = rx {
                let _ = rx.await;
            }
        }
    }

    fn refuse_if_broken(&self) -> Result<(), AllocationError> {
        match &self.broken {
            Some(why) => Err(AllocationError::Failed(why.clone())),
            None => Ok(()),
        }
    }
}

impl Actor for Allocator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<(State, oneshot::Sender<()>)>();
        let store = self.store.clone();
        actix_rt::spawn(async move {
            while let Some((st, done)) = rx.recv().await {
                if let Err(e) = store.save(&st).await {
                    tracing::error!("{e:#}");
                }
                let _ = done.send(());
            }
        });
        self.saves = Some(tx);
        // Nothing is answered before the state is back: `wait` holds the mailbox.
        let store = self.store.clone();
        ctx.wait(
            async move { store.load().await }
                .into_actor(self)
                .map(|loaded, act, _| match loaded {
                    Ok(Some(st)) => act.engine.restore(st),
                    Ok(None) => {
                        tracing::info!(store = %act.store.describe(), "allocator starts with no saved state")
                    }
                    Err(e) => {
                        tracing::error!("{e:#}");
                        act.broken = Some(format!("{e:#}"));
                    }
                }),
        );
        let (s, i) = self.engine.strategy_names();
        tracing::info!(scheduled = s, instant = i, store = %self.store.describe(), "built-in allocator started");
        ctx.run_interval(self.check_every, |_, ctx| ctx.notify(Tick));
    }
}

impl Handler<AllocateServers> for Allocator {
    type Result = ResponseFuture<Result<ServerAssignment, AllocationError>>;
    fn handle(&mut self, m: AllocateServers, _: &mut Context<Self>) -> Self::Result {
        let r = self.refuse_if_broken().and_then(|()| {
            let now = (self.clock)();
            self.engine
                .allocate_servers(&m.email, m.begin_at, m.end_at, now)
        });
        let saved = self.persist();
        Box::pin(async move {
            saved.await;
            r
        })
    }
}

impl Handler<AllocateFileServer> for Allocator {
    type Result = Result<FsAssignment, AllocationError>;
    fn handle(&mut self, m: AllocateFileServer, _: &mut Context<Self>) -> Self::Result {
        self.refuse_if_broken()?;
        self.engine.allocate_fs(&m.email)
    }
}

impl Handler<NodesChanged> for Allocator {
    type Result = ();
    fn handle(&mut self, m: NodesChanged, ctx: &mut Context<Self>) {
        let now = (self.clock)();
        self.engine.nodes_changed(&m, now);
        let saved = self.persist();
        ctx.spawn(saved.into_actor(self));
    }
}

impl Handler<Tick> for Allocator {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: Tick, _: &mut Context<Self>) -> Self::Result {
        if self.broken.is_some() {
            return Box::pin(fut::ready(()));
        }
        let now = (self.clock)();
        let jobs = self.engine.tick(now);
        // The phases the jobs moved to are saved before any command runs.
        let saved = self.persist();
        let runner = self.runner.clone();
        let clock = self.clock.clone();
        let run = async move {
            saved.await;
            let runs = jobs.into_iter().map(|j| {
                let runner = runner.clone();
                let clock = clock.clone();
                async move {
                    let outcome = runner.run(&j, clock()).await;
                    (j, outcome, clock())
                }
            });
            futures_util::future::join_all(runs).await
        };
        Box::pin(run.into_actor(self).then(|done, act, _| {
            for (job, outcome, at) in done {
                act.engine.job_done(&job, outcome, at);
            }
            let saved = act.persist();
            fut::wrap_future::<_, Allocator>(saved)
        }))
    }
}

impl Handler<GetReport> for Allocator {
    type Result = MessageResult<GetReport>;
    fn handle(&mut self, _: GetReport, _: &mut Context<Self>) -> Self::Result {
        MessageResult(report::build(&self.engine, (self.clock)()))
    }
}
