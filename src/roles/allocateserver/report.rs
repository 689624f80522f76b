//! What the allocator holds and what it cost: reservations, running and pending servers, and
//! server-hours per day, to compare with keeping a pool always on (the seed: an n2-standard-16
//! SFU server is about $1/hour). Served as JSON at `GET <path>/report` by the standalone
//! allocateserver and printed by `meeting-appliance allocateserver --config f --report`.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

use super::engine::{Engine, add_hours};
use super::state::{DayHours, Phase, ReservationKind};
use crate::proto::NodeRole;

/// Days shown: this many before today, and the reserved days ahead.
const DAYS_BACK: i64 = 13;
const DAYS_AHEAD: i64 = 7;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub now: i64,
    pub strategies: Strategies,
    pub pools: Pools,
    /// Scheduled meetings whose window has not ended.
    pub reservations: Vec<ReservationRow>,
    /// Provisioned servers that exist (starting, up, or being deleted).
    pub running: Vec<ServerRow>,
    /// Provisioned servers planned or being created.
    pub pending: Vec<ServerRow>,
    /// Instant-meeting owners holding a server.
    pub seats: usize,
    pub cost_per_server_hour: f64,
    pub days: Vec<DayRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Strategies {
    pub scheduled: &'static str,
    pub instant: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct Pools {
    pub sfu: Vec<String>,
    pub turn: Vec<String>,
    pub fs: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReservationRow {
    pub id: u64,
    pub kind: ReservationKind,
    pub email: String,
    pub begin_at: i64,
    pub end_at: i64,
    pub from: i64,
    pub until: i64,
    pub sfu: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServerRow {
    pub name: String,
    pub phase: Phase,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub create_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_at: Option<i64>,
    pub last_used: i64,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One UTC day. `used_hours` = on-demand servers' lifetime + dedicated reservations;
/// `always_on_hours` = the servers that would otherwise run all day (the larger of the sfu
/// pool and the day's peak of servers in use) × 24.
#[derive(Clone, Debug, Serialize)]
pub struct DayRow {
    pub day: String,
    pub on_demand_hours: f64,
    pub reserved_hours: f64,
    pub used_hours: f64,
    pub always_on_hours: f64,
    pub used_cost: f64,
    pub always_on_cost: f64,
}

fn day_name(day: i64) -> String {
    chrono::DateTime::from_timestamp(day * 86400, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| day.to_string())
}

fn time_name(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// The most intervals overlapping at once within one day.
fn peak(intervals: &[(i64, i64)], day: i64) -> usize {
    let (lo, hi) = (day * 86400, (day + 1) * 86400);
    let mut edges: Vec<(i64, i32)> = Vec::new();
    for &(a, b) in intervals {
        let (a, b) = (a.max(lo), b.min(hi));
        if a < b {
            edges.push((a, 1));
            edges.push((b, -1));
        }
    }
    edges.sort();
    let (mut cur, mut best) = (0i32, 0i32);
    for (_, d) in edges {
        cur += d;
        best = best.max(cur);
    }
    usize::try_from(best).unwrap_or(0)
}

pub fn build(e: &Engine, now: i64) -> Report {
    let st = &e.state;
    let addrs = |r| {
        e.pools
            .candidates(r)
            .into_iter()
            .map(|c| c.address)
            .collect::<Vec<_>>()
    };
    let pools = Pools {
        sfu: addrs(NodeRole::Sfuserver),
        turn: addrs(NodeRole::Turnserver),
        fs: addrs(NodeRole::Fsserver),
    };
    let mut reservations: Vec<ReservationRow> = st
        .reservations
        .iter()
        .filter(|r| r.until > now)
        .map(|r| ReservationRow {
            id: r.id,
            kind: r.kind,
            email: r.email.clone(),
            begin_at: r.begin_at,
            end_at: r.end_at,
            from: r.from,
            until: r.until,
            sfu: r.sfu.clone(),
            server: r.server.clone(),
        })
        .collect();
    reservations.sort_by_key(|r| (r.from, r.id));
    let row = |s: &super::state::Server| ServerRow {
        name: s.name.clone(),
        phase: s.phase,
        address: s.address.clone(),
        create_at: s.create_at,
        delete_at: s.delete_at,
        last_used: s.last_used,
        attempts: s.attempts,
        last_error: s.last_error.clone(),
    };
    let running = st
        .servers
        .values()
        .filter(|s| matches!(s.phase, Phase::Starting | Phase::Up | Phase::Deleting))
        .map(row)
        .collect();
    let pending = st
        .servers
        .values()
        .filter(|s| matches!(s.phase, Phase::Planned | Phase::Creating))
        .map(row)
        .collect();

    // Hours per day: the archive, plus what is still on record.
    let mut hours: BTreeMap<i64, DayHours> = st.archive.clone();
    let mut intervals = Vec::new();
    for s in st.servers.values() {
        if let Some(c) = s.created_at {
            let end = s.deleted_at.unwrap_or(now).max(c);
            add_hours(&mut hours, c, end, |d, h| d.on_demand += h);
            intervals.push((c, end));
        }
    }
    for r in &st.reservations {
        if r.kind == ReservationKind::Dedicated {
            add_hours(&mut hours, r.from, r.until, |d, h| d.reserved += h);
            intervals.push((r.from, r.until));
        }
    }
    let today = now.div_euclid(86400);
    let pool = pools.sfu.len();
    let cost = e.settings.cost_per_server_hour;
    let days = (today - DAYS_BACK..=today + DAYS_AHEAD)
        .filter(|d| *d <= today || hours.get(d).is_some_and(|h| h.reserved > 0.0))
        .map(|d| {
            let h = hours.get(&d).copied().unwrap_or_default();
            let used = h.on_demand + h.reserved;
            let always = (pool.max(peak(&intervals, d)) * 24) as f64;
            let r2 = |x: f64| (x * 100.0).round() / 100.0;
            DayRow {
                day: day_name(d),
                on_demand_hours: r2(h.on_demand),
                reserved_hours: r2(h.reserved),
                used_hours: r2(used),
                always_on_hours: always,
                used_cost: r2(used * cost),
                always_on_cost: r2(always * cost),
            }
        })
        .collect();
    let (scheduled, instant) = e.strategy_names();
    Report {
        now,
        strategies: Strategies { scheduled, instant },
        pools,
        reservations,
        running,
        pending,
        seats: st.seats.len(),
        cost_per_server_hour: cost,
        days,
    }
}

/// The report for a terminal.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "allocator report at {} UTC (scheduled: {}, instant: {})",
        time_name(r.now),
        r.strategies.scheduled,
        r.strategies.instant
    );
    let _ = writeln!(
        o,
        "pools: sfu [{}]  turn [{}]  fs [{}]",
        r.pools.sfu.join(", "),
        r.pools.turn.join(", "),
        r.pools.fs.join(", ")
    );
    let _ = writeln!(o, "\nreservations ({}):", r.reservations.len());
    for x in &r.reservations {
        let _ = writeln!(
            o,
            "  #{:<5} {:<10} {:<28} meeting {} .. {}  held {} .. {}  {}",
            x.id,
            format!("{:?}", x.kind).to_lowercase(),
            x.email,
            time_name(x.begin_at),
            time_name(x.end_at),
            time_name(x.from),
            time_name(x.until),
            x.sfu
        );
    }
    for (title, rows) in [
        ("running servers", &r.running),
        ("pending servers", &r.pending),
    ] {
        let _ = writeln!(o, "\n{title} ({}):", rows.len());
        for s in rows {
            let _ = writeln!(
                o,
                "  {:<24} {:<9} {:<32} create {}  delete {}{}",
                s.name,
                format!("{:?}", s.phase).to_lowercase(),
                s.address.as_deref().unwrap_or("-"),
                time_name(s.create_at),
                s.delete_at
                    .map_or_else(|| "after idle".to_string(), time_name),
                s.last_error
                    .as_deref()
                    .map(|e| format!("  (failed {}x: {e})", s.attempts))
                    .unwrap_or_default()
            );
        }
    }
    let _ = writeln!(
        o,
        "\nserver-hours per day (at {:.2}/server-hour; always-on = the pool or the day's peak, all day):",
        r.cost_per_server_hour
    );
    let _ = writeln!(
        o,
        "  {:<10} {:>9} {:>9} {:>9} {:>10} {:>10} {:>12}",
        "day", "on-demand", "reserved", "used", "cost", "always-on", "always cost"
    );
    for d in &r.days {
        let _ = writeln!(
            o,
            "  {:<10} {:>9.2} {:>9.2} {:>9.2} {:>10.2} {:>10.0} {:>12.2}",
            d.day,
            d.on_demand_hours,
            d.reserved_hours,
            d.used_hours,
            d.used_cost,
            d.always_on_hours,
            d.always_on_cost
        );
    }
    o
}
