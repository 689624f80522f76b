//! The servers the allocator may hand out, per role: the configured pool (or, without one,
//! this box's own roles) merged with the node registry's live snapshot.
//!
//! Rules, in order: a node the snapshot says is down is never a candidate; a registered node
//! that no pool lists joins its role's pool (auto-discovery: without pool config the
//! registered nodes ARE the pool); a configured node the registry has never seen is assumed
//! up (an external pool whose nodes do not register). Without any snapshot the configured
//! pools alone are used. This box's own address is the fallback only while nothing else of
//! that role is known.

use std::collections::BTreeMap;

use crate::config::{PoolEntry, Serves};
use crate::proto::{NodeInfo, NodeRole, NodesChanged};

/// One server that may be handed out right now.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub address: String,
    pub serves: Serves,
    /// Sessions per capacity from the registry (0 when it reports nothing).
    pub load: f64,
    /// At or above its capacity.
    pub full: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Pools {
    configured: BTreeMap<&'static str, Vec<PoolEntry>>,
    own: BTreeMap<&'static str, Vec<PoolEntry>>,
    /// The last snapshot, by address; `None` until the registry sends one.
    live: Option<BTreeMap<String, NodeInfo>>,
}

fn key(role: NodeRole) -> &'static str {
    role.name()
}

impl Pools {
    /// `own`: this box's addresses per role, used while nothing else is known.
    pub fn new(
        sfu: Vec<PoolEntry>,
        turn: Vec<PoolEntry>,
        fs: Vec<PoolEntry>,
        own: [(NodeRole, Option<String>); 3],
    ) -> Self {
        let mut configured = BTreeMap::new();
        configured.insert(key(NodeRole::Sfuserver), sfu);
        configured.insert(key(NodeRole::Turnserver), turn);
        configured.insert(key(NodeRole::Fsserver), fs);
        let mut own_map = BTreeMap::new();
        for (role, a) in own {
            own_map.insert(key(role), a.into_iter().map(PoolEntry::new).collect());
        }
        Pools {
            configured,
            own: own_map,
            live: None,
        }
    }

    pub fn set_live(&mut self, snapshot: &NodesChanged) {
        self.live = Some(
            snapshot
                .nodes
                .iter()
                .map(|n| (n.address.clone(), n.clone()))
                .collect(),
        );
    }

    pub fn has_live(&self) -> bool {
        self.live.is_some()
    }

    /// The registry's view of one address: `Some(up)` when it knows the node.
    pub fn live_up(&self, address: &str) -> Option<bool> {
        self.live.as_ref()?.get(address).map(|n| n.up)
    }

    /// The registry's node at an address.
    pub fn live_node(&self, address: &str) -> Option<&NodeInfo> {
        self.live.as_ref()?.get(address)
    }

    /// Configured entries of a role (or, with none and nothing registered, this box's own).
    pub fn entries(&self, role: NodeRole) -> Vec<PoolEntry> {
        let configured = self.configured.get(key(role)).cloned().unwrap_or_default();
        let mut out = if configured.is_empty() {
            let registered = self
                .live
                .as_ref()
                .is_some_and(|l| l.values().any(|n| n.role == role));
            if registered {
                Vec::new()
            } else {
                self.own.get(key(role)).cloned().unwrap_or_default()
            }
        } else {
            configured
        };
        if let Some(live) = &self.live {
            for n in live.values() {
                if n.role == role && !out.iter().any(|e| e.address == n.address) {
                    let mut e = PoolEntry::new(n.address.clone());
                    e.capacity = n.capacity;
                    out.push(e);
                }
            }
        }
        out
    }

    /// Pool servers that may be handed out now: every entry except those the registry says
    /// are down. Sorted by address, so choices are deterministic.
    pub fn candidates(&self, role: NodeRole) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = self
            .entries(role)
            .into_iter()
            .filter_map(|e| {
                let node = self.live_node(&e.address);
                if node.is_some_and(|n| !n.up) {
                    return None;
                }
                let capacity = match node {
                    Some(n) if n.capacity > 0 => n.capacity,
                    _ => e.capacity,
                };
                // sfuserver: forwarded packets per second against its capacity in packets per
                // second (one meeting spans all of a box's cores; its cost is its packets, not
                // a count of meetings or people); others: sessions against sessions.
                let (used, scale) = match role {
                    NodeRole::Sfuserver => (node.map_or(0, |n| n.load.packets), 1_000_000.0),
                    _ => (node.map_or(0, |n| u64::from(n.load.sessions)), 1000.0),
                };
                let load = if capacity > 0 {
                    used as f64 / f64::from(capacity)
                } else {
                    // No capacity stated: the load still orders nodes, on a fixed scale.
                    used as f64 / scale
                };
                Some(Candidate {
                    address: e.address,
                    serves: e.serves,
                    load,
                    full: capacity > 0 && used >= u64::from(capacity),
                })
            })
            .collect();
        out.sort_by(|a, b| a.address.cmp(&b.address));
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proto::NodeLoad;

    /// A node with `used` of its `capacity` in use (sfuserver: forwarded packets/s, with as
    /// many sessions; others: sessions).
    pub(crate) fn node(
        role: NodeRole,
        address: &str,
        up: bool,
        used: u32,
        capacity: u32,
    ) -> NodeInfo {
        NodeInfo {
            role,
            address: address.into(),
            up,
            capacity,
            load: NodeLoad {
                sessions: used,
                packets: u64::from(used),
                ..NodeLoad::default()
            },
            media: Vec::new(),
            version: "test".into(),
            last_seen: 0,
        }
    }

    #[test]
    fn down_nodes_are_out_registered_nodes_join_and_own_is_the_last_resort() {
        let mut p = Pools::new(
            vec![PoolEntry::new("a:443"), PoolEntry::new("b:443")],
            vec![],
            vec![],
            [
                (NodeRole::Sfuserver, Some("own:443".into())),
                (NodeRole::Turnserver, Some("own:3478".into())),
                (NodeRole::Fsserver, None),
            ],
        );
        let addrs = |p: &Pools, r| {
            p.candidates(r)
                .into_iter()
                .map(|c| c.address)
                .collect::<Vec<_>>()
        };
        // No snapshot: the configured pool; the own turnserver while none is configured.
        assert_eq!(addrs(&p, NodeRole::Sfuserver), ["a:443", "b:443"]);
        assert_eq!(addrs(&p, NodeRole::Turnserver), ["own:3478"]);
        assert!(addrs(&p, NodeRole::Fsserver).is_empty());
        p.set_live(&NodesChanged {
            nodes: vec![
                node(NodeRole::Sfuserver, "a:443", false, 0, 0),
                node(NodeRole::Sfuserver, "c:443", true, 5, 10),
                node(NodeRole::Turnserver, "t:3478", true, 0, 0),
            ],
        });
        assert_eq!(addrs(&p, NodeRole::Sfuserver), ["b:443", "c:443"]);
        assert_eq!(addrs(&p, NodeRole::Turnserver), ["t:3478"]);
        let c = p.candidates(NodeRole::Sfuserver);
        assert_eq!(c[1].load, 0.5);
    }

    #[test]
    fn an_sfuserver_is_loaded_by_its_packets_per_second_not_its_participants() {
        let mut p = Pools::new(
            vec![],
            vec![],
            vec![],
            [
                (NodeRole::Sfuserver, None),
                (NodeRole::Turnserver, None),
                (NodeRole::Fsserver, None),
            ],
        );
        let sfu = |address: &str, sessions: u32, packets: u64, capacity: u32| NodeInfo {
            load: NodeLoad {
                sessions,
                packets,
                ..NodeLoad::default()
            },
            ..node(NodeRole::Sfuserver, address, true, 0, capacity)
        };
        p.set_live(&NodesChanged {
            nodes: vec![
                // Few people in one big meeting: many packets.
                sfu("big:443", 25, 150_000, 200_000),
                // Many people in small meetings: fewer packets.
                sfu("small:443", 60, 40_000, 200_000),
                sfu("full:443", 5, 120_000, 120_000),
            ],
        });
        let c = p.candidates(NodeRole::Sfuserver);
        let get = |a: &str| c.iter().find(|x| x.address == a).expect("candidate");
        assert_eq!(get("big:443").load, 0.75);
        assert_eq!(get("small:443").load, 0.2);
        assert!(get("full:443").full && !get("big:443").full);
    }
}
