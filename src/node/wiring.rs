//! THE one place that decides, per peer role, whether a role talks to a local actor or to a
//! proxy for another host. Callers only ever get `Recipient`s.
//!
//! Today: the allocator is either the built-in actor (single box, or an apiserver without
//! `--allocateserver`) or the HTTP client of the seed's protocol (`--allocateserver URL`).
//! The remote-actor bridge for sfuserver/turnserver/fsserver on other hosts plugs in here.

use actix::prelude::*;

use crate::config::Config;
use crate::proto::{AllocateFileServer, AllocateServers};
use crate::roles::allocateserver::{Allocator, HttpAllocator};

/// What the apiserver needs from other roles.
pub struct Peers {
    pub allocate: Recipient<AllocateServers>,
    pub allocate_fs: Recipient<AllocateFileServer>,
}

/// This box's own addresses, as the built-in allocator hands them out on a single box.
pub struct OwnAddresses {
    pub sfu: String,
    pub turn: String,
    pub fs: String,
}

pub fn wire(
    cfg: &Config,
    own: &OwnAddresses,
    db: &sea_orm::DatabaseConnection,
) -> anyhow::Result<Peers> {
    if let Some(url) = &cfg.allocator.url {
        let a = HttpAllocator::new(url, cfg.allocator.timeout.0)?.start();
        tracing::info!("allocation: external allocateserver (seed protocol)");
        return Ok(Peers {
            allocate: a.clone().recipient(),
            allocate_fs: a.recipient(),
        });
    }
    let a = Allocator::start_in_process(cfg, &own.sfu, &own.turn, &own.fs, db.clone())?;
    tracing::info!("allocation: built-in allocator, in-process");
    Ok(Peers {
        allocate: a.clone().recipient(),
        allocate_fs: a.recipient(),
    })
}
