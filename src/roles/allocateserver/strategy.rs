//! The sfuserver strategies, one small trait and one implementation each, chosen per meeting
//! kind in config (`[scheduled] strategy`, `[instant] strategy`), in the manner of LiveKit's
//! node selectors. A strategy is pure: it reads the pools, changes the persisted `State` and
//! answers, all at the `now` it is given; the engine does timing and provisioning.

use std::collections::BTreeMap;

use super::pools::{Candidate, Pools};
use super::state::{Phase, Purpose, Reservation, ReservationKind, Seat, Server, State};
use crate::config::Serves;
use crate::proto::{AllocationError, NodeRole};

/// One question: the seed's `Email`, `BeginAt`, `EndAt` (both 0: instant).
#[derive(Clone, Copy, Debug)]
pub struct Ask<'a> {
    pub email: &'a str,
    pub begin_at: i64,
    pub end_at: i64,
}

/// What a strategy may read and change.
pub struct World<'a> {
    pub state: &'a mut State,
    pub pools: &'a Pools,
    pub now: i64,
}

pub trait SfuStrategy: Send {
    fn name(&self) -> &'static str;
    /// The sfuserver's `host:port`, or `NotReady` (the seed's non-200: ask again later).
    fn allocate(&self, w: &mut World<'_>, ask: &Ask<'_>) -> Result<String, AllocationError>;
}

fn not_ready(why: impl Into<String>) -> AllocationError {
    AllocationError::NotReady(why.into())
}

fn next_id(state: &mut State) -> u64 {
    state.seq += 1;
    state.seq
}

/// Records that `ask`'s meeting holds `sfu` from `from` to `until` (its own `server` when
/// one is made for it).
fn reserve(
    w: &mut World<'_>,
    id: u64,
    kind: ReservationKind,
    ask: &Ask<'_>,
    (from, until): (i64, i64),
    sfu: &str,
    server: Option<String>,
) {
    w.state.reservations.push(Reservation {
        id,
        kind,
        email: ask.email.to_string(),
        begin_at: ask.begin_at,
        end_at: ask.end_at,
        from,
        until,
        sfu: sfu.to_string(),
        server,
        made_at: w.now,
    });
}

/// Pool sfuservers for this kind of meeting. A server we provisioned for one meeting or owner
/// registers like any other node; it is theirs, never part of a pool.
fn sfu_candidates(pools: &Pools, state: &State, kind: Serves) -> Vec<Candidate> {
    pools
        .candidates(NodeRole::Sfuserver)
        .into_iter()
        .filter(|c| c.serves == Serves::All || c.serves == kind)
        .filter(|c| {
            !state.servers.values().any(|s| {
                s.phase != Phase::Deleted && s.address.as_deref() == Some(c.address.as_str())
            })
        })
        .collect()
}

/// The lowest by (registry load, our own count, address); candidates come sorted by address.
fn least_loaded<'c>(
    cands: impl Iterator<Item = &'c Candidate>,
    count: impl Fn(&str) -> usize,
) -> Option<&'c Candidate> {
    cands.min_by(|a, b| {
        a.load
            .total_cmp(&b.load)
            .then_with(|| count(&a.address).cmp(&count(&b.address)))
            .then_with(|| a.address.cmp(&b.address))
    })
}

/// Whether a dedicated reservation holds `address` at `now`.
fn held_now(state: &State, address: &str, now: i64) -> bool {
    state.reservations.iter().any(|r| {
        r.kind == ReservationKind::Dedicated && r.sfu == address && r.from <= now && now < r.until
    })
}

/// Seed option: a pre-created pool, one sfuserver per scheduled meeting for
/// `[begin - lead, end + lag]`; overlapping meetings never share one.
pub struct Dedicated {
    pub lead: i64,
    pub lag: i64,
}

impl SfuStrategy for Dedicated {
    fn name(&self) -> &'static str {
        "dedicated"
    }
    fn allocate(&self, w: &mut World<'_>, ask: &Ask<'_>) -> Result<String, AllocationError> {
        let (from, until) = (ask.begin_at - self.lead, ask.end_at + self.lag);
        let cands = sfu_candidates(w.pools, w.state, Serves::Scheduled);
        if cands.is_empty() {
            return Err(not_ready(
                "no sfuserver is up in the pool for scheduled meetings",
            ));
        }
        let taken = |a: &str| {
            w.state.reservations.iter().any(|r| {
                r.kind == ReservationKind::Dedicated && r.sfu == a && r.overlaps(from, until)
            })
        };
        let free: Vec<&Candidate> = cands.iter().filter(|c| !taken(&c.address)).collect();
        let Some(pick) = least_loaded(free.into_iter(), |_| 0) else {
            return Err(not_ready(format!(
                "all {} dedicated sfuservers are reserved at some time between {from} and {until} (begin - lead .. end + lag)",
                cands.len()
            )));
        };
        let sfu = pick.address.clone();
        let id = next_id(w.state);
        reserve(
            w,
            id,
            ReservationKind::Dedicated,
            ask,
            (from, until),
            &sfu,
            None,
        );
        Ok(sfu)
    }
}

/// Seed option: create the meeting's own server `lead` before it begins and delete it `lag`
/// after it ends. The address is known now from `provision.address`; the engine runs the
/// commands when their time comes.
pub struct ScheduledOnDemand {
    pub lead: i64,
    pub lag: i64,
    pub prefix: String,
    pub address: String,
}

impl SfuStrategy for ScheduledOnDemand {
    fn name(&self) -> &'static str {
        "on_demand"
    }
    fn allocate(&self, w: &mut World<'_>, ask: &Ask<'_>) -> Result<String, AllocationError> {
        let (from, until) = (ask.begin_at - self.lead, ask.end_at + self.lag);
        let id = next_id(w.state);
        let name = format!("{}-s{id}", self.prefix);
        let sfu = self.address.replace("{name}", &name);
        w.state.servers.insert(
            name.clone(),
            Server {
                name: name.clone(),
                purpose: Purpose::Scheduled { reservation: id },
                phase: Phase::Planned,
                address: Some(sfu.clone()),
                create_at: from,
                delete_at: Some(until),
                last_used: w.now,
                created_at: None,
                up_at: None,
                deleted_at: None,
                attempts: 0,
                next_try: 0,
                last_error: None,
            },
        );
        reserve(
            w,
            id,
            ReservationKind::OnDemand,
            ask,
            (from, until),
            &sfu,
            Some(name),
        );
        Ok(sfu)
    }
}

/// Seed option: several owners share a pool sfuserver, up to `max_owners` each (0: no limit),
/// least loaded first. An owner keeps their server while it is up and they use it within
/// `idle`. Scheduled meetings may use it too (a single box): least loaded, no limit.
pub struct Shared {
    pub max_owners: u32,
    pub idle: i64,
    pub lead: i64,
    pub lag: i64,
}

impl Shared {
    fn owners(state: &State, now: i64, idle: i64) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for s in state.seats.values() {
            if s.server.is_none() && s.last_used + idle > now {
                *m.entry(s.sfu.clone()).or_insert(0) += 1;
            }
        }
        m
    }
}

impl SfuStrategy for Shared {
    fn name(&self) -> &'static str {
        "shared"
    }
    fn allocate(&self, w: &mut World<'_>, ask: &Ask<'_>) -> Result<String, AllocationError> {
        let now = w.now;
        if ask.begin_at != 0 {
            // A scheduled meeting on shared servers: least loaded, then fewest overlapping.
            let (from, until) = (ask.begin_at - self.lead, ask.end_at + self.lag);
            let cands = sfu_candidates(w.pools, w.state, Serves::Scheduled);
            let overlapping = |a: &str| {
                w.state
                    .reservations
                    .iter()
                    .filter(|r| r.sfu == a && r.overlaps(from, until))
                    .count()
            };
            let pick = least_loaded(
                cands
                    .iter()
                    .filter(|c| !c.full && !held_now(w.state, &c.address, now)),
                overlapping,
            )
            .ok_or_else(|| not_ready("no sfuserver is up with room for a scheduled meeting"))?;
            let sfu = pick.address.clone();
            let id = next_id(w.state);
            reserve(
                w,
                id,
                ReservationKind::Shared,
                ask,
                (from, until),
                &sfu,
                None,
            );
            return Ok(sfu);
        }
        let cands: Vec<Candidate> = sfu_candidates(w.pools, w.state, Serves::Instant)
            .into_iter()
            .filter(|c| !held_now(w.state, &c.address, now))
            .collect();
        if let Some(seat) = w.state.seats.get_mut(ask.email)
            && seat.server.is_none()
            && seat.last_used + self.idle > now
            && cands.iter().any(|c| c.address == seat.sfu && !c.full)
        {
            seat.last_used = now;
            return Ok(seat.sfu.clone());
        }
        let owners = Self::owners(w.state, now, self.idle);
        let count = |a: &str| owners.get(a).copied().unwrap_or(0);
        let max = usize::try_from(self.max_owners).unwrap_or(usize::MAX);
        let pick = least_loaded(
            cands
                .iter()
                .filter(|c| !c.full && (max == 0 || count(&c.address) < max)),
            count,
        )
        .ok_or_else(|| {
            not_ready(format!(
                "all {} shared sfuservers are full ({} owners each at most)",
                cands.len(),
                self.max_owners
            ))
        })?;
        let sfu = pick.address.clone();
        w.state.seats.insert(
            ask.email.to_string(),
            Seat {
                sfu: sfu.clone(),
                server: None,
                since: now,
                last_used: now,
            },
        );
        Ok(sfu)
    }
}

/// Seed option: a server per owner, created when asked; until it is up the answer is
/// `NotReady` (the user is asked to wait). The engine deletes it after `idle` without use.
pub struct InstantOnDemand {
    pub prefix: String,
}

impl SfuStrategy for InstantOnDemand {
    fn name(&self) -> &'static str {
        "on_demand"
    }
    fn allocate(&self, w: &mut World<'_>, ask: &Ask<'_>) -> Result<String, AllocationError> {
        let now = w.now;
        let existing = w
            .state
            .seats
            .get(ask.email)
            .and_then(|s| s.server.clone())
            .filter(|name| {
                w.state
                    .servers
                    .get(name)
                    .is_some_and(|s| !matches!(s.phase, Phase::Deleting | Phase::Deleted))
            });
        if let Some(name) = existing {
            let (phase, address) = match w.state.servers.get_mut(&name) {
                Some(s) => {
                    s.last_used = now;
                    (s.phase, s.address.clone())
                }
                None => (Phase::Deleted, None),
            };
            if let Some(seat) = w.state.seats.get_mut(ask.email) {
                seat.last_used = now;
            }
            return match (phase, address) {
                (Phase::Up, Some(a)) => Ok(a),
                _ => Err(not_ready(format!(
                    "the sfuserver {name} for {} is being created; ask again shortly",
                    ask.email
                ))),
            };
        }
        let id = next_id(w.state);
        let name = format!("{}-i{id}", self.prefix);
        w.state.servers.insert(
            name.clone(),
            Server {
                name: name.clone(),
                purpose: Purpose::Instant {
                    email: ask.email.to_string(),
                },
                phase: Phase::Planned,
                address: None,
                create_at: now,
                delete_at: None,
                last_used: now,
                created_at: None,
                up_at: None,
                deleted_at: None,
                attempts: 0,
                next_try: 0,
                last_error: None,
            },
        );
        w.state.seats.insert(
            ask.email.to_string(),
            Seat {
                sfu: String::new(),
                server: Some(name.clone()),
                since: now,
                last_used: now,
            },
        );
        Err(not_ready(format!(
            "creating the sfuserver {name} for {}; ask again shortly",
            ask.email
        )))
    }
}
