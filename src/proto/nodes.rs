//! The node registry's messages: which servers of which role exist, whether they are up, and
//! how loaded they are.
//!
//! Every sfuserver, turnserver and fsserver registers with the apiserver's registry, over the
//! remote bridge from another host or in-process on a single box (same messages). The registry
//! keeps the truth in the database and pushes a full [`NodesChanged`] snapshot to whoever
//! subscribed (the allocator; turnservers, which learn the sfuservers' media addresses from it)
//! whenever a node registers, goes down, or reports load.

use actix::Message;
use serde::{Deserialize, Serialize};

/// The roles that register as nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    Sfuserver,
    Turnserver,
    Fsserver,
}

impl NodeRole {
    pub fn name(self) -> &'static str {
        match self {
            NodeRole::Sfuserver => "sfuserver",
            NodeRole::Turnserver => "turnserver",
            NodeRole::Fsserver => "fsserver",
        }
    }
    pub fn parse(s: &str) -> Option<NodeRole> {
        match s {
            "sfuserver" => Some(NodeRole::Sfuserver),
            "turnserver" => Some(NodeRole::Turnserver),
            "fsserver" => Some(NodeRole::Fsserver),
            _ => None,
        }
    }
}

/// What a node reports about its load (heartbeat). Fields a role does not have stay 0.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeLoad {
    /// sfuserver: meetings (rooms) live on it.
    pub meetings: u32,
    /// sfuserver: participants connected; turnserver: allocations.
    pub sessions: u32,
    /// Bits per second forwarded or relayed (both directions), over the last report interval.
    pub bitrate: u64,
    /// CPU busy share of the whole host, 0.0 ..= 1.0.
    pub cpu: f32,
    /// sfuserver: RTP packets forwarded per second over the last report interval, the unit
    /// its capacity is stated in (a box carries packets per second in proportion to its
    /// cores, whatever the meetings' sizes).
    #[serde(default)]
    pub packets: u64,
}

/// One node as the registry knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub role: NodeRole,
    /// The `host:port` the allocator hands out (the seed's protocol names nodes by this).
    pub address: String,
    /// false once heartbeats stop or its bridge link closed; a down node is never allocated.
    pub up: bool,
    /// What the node can carry; 0 = no limit stated. sfuserver: forwarded packets per second;
    /// turnserver: allocations.
    pub capacity: u32,
    pub load: NodeLoad,
    /// sfuserver: the UDP addresses its media arrives on (turnservers may relay to these).
    #[serde(default)]
    pub media: Vec<std::net::SocketAddr>,
    pub version: String,
    /// Unix seconds of the last heartbeat.
    pub last_seen: i64,
}

/// The registry's full snapshot, sent on every change. Nodes never seen are absent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
pub struct NodesChanged {
    pub nodes: Vec<NodeInfo>,
}
