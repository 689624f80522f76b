//! The allocateserver role: which sfuserver, turnserver and fsserver serve a meeting.
//!
//! `Allocator` is the built-in strategy actor: it answers `AllocateServers` and
//! `AllocateFileServer` in-process. `HttpAllocator` (client.rs) answers the same messages by
//! asking an external allocator over the seed's HTTP protocol. The wiring in `node` hands the
//! apiserver one or the other as a `Recipient`; both are the "allocator" to it.
//!
//! Today the built-in allocator spreads meetings over its configured pools round-robin (a
//! single box's pools are just itself). The seed's strategies (dedicated pools for scheduled
//! meetings, on-demand provisioning, shared pools for instant meetings) and the standalone
//! HTTP endpoint come with the allocateserver issue.

pub mod client;

use actix::prelude::*;

use crate::proto::{
    AllocateFileServer, AllocateServers, AllocationError, FsAssignment, ServerAssignment,
};

pub use client::HttpAllocator;

/// The built-in allocator over fixed pools of addresses.
pub struct Allocator {
    sfu: Vec<String>,
    turn: Vec<String>,
    fs: Vec<String>,
    next: usize,
}

impl Allocator {
    pub fn new(sfu: Vec<String>, turn: Vec<String>, fs: Vec<String>) -> Self {
        Allocator {
            sfu,
            turn,
            fs,
            next: 0,
        }
    }

    fn pick(pool: &[String], i: usize, what: &str) -> Result<String, AllocationError> {
        if pool.is_empty() {
            return Err(AllocationError::NotReady(format!(
                "no {what} is configured"
            )));
        }
        Ok(pool[i % pool.len()].clone())
    }
}

impl Actor for Allocator {
    type Context = Context<Self>;
}

impl Handler<AllocateServers> for Allocator {
    type Result = Result<ServerAssignment, AllocationError>;
    fn handle(&mut self, _: AllocateServers, _: &mut Context<Self>) -> Self::Result {
        let i = self.next;
        self.next = self.next.wrapping_add(1);
        Ok(ServerAssignment {
            sfu: Self::pick(&self.sfu, i, "sfuserver")?,
            turn: Self::pick(&self.turn, i, "turnserver")?,
        })
    }
}

impl Handler<AllocateFileServer> for Allocator {
    type Result = Result<FsAssignment, AllocationError>;
    fn handle(&mut self, _: AllocateFileServer, _: &mut Context<Self>) -> Self::Result {
        Ok(FsAssignment {
            fs: Self::pick(&self.fs, self.next, "fsserver")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn round_robin_over_pools_and_empty_pool_is_not_ready() {
        let a = Allocator::new(
            vec!["s1:443".into(), "s2:443".into()],
            vec!["t:3478".into()],
            vec![],
        )
        .start();
        let q = || AllocateServers {
            email: "a@b.c".into(),
            begin_at: 0,
            end_at: 0,
        };
        let first = a.send(q()).await.expect("mailbox").expect("a server");
        let second = a.send(q()).await.expect("mailbox").expect("a server");
        assert_eq!(
            (first.sfu.as_str(), second.sfu.as_str()),
            ("s1:443", "s2:443")
        );
        assert_eq!(first.turn, "t:3478");
        let fs = a
            .send(AllocateFileServer {
                email: "a@b.c".into(),
            })
            .await
            .expect("mailbox");
        assert!(matches!(fs, Err(AllocationError::NotReady(_))));
    }
}
