//! Who else is in the notes and where their cursor is (the y-protocols awareness states),
//! relayed between a meeting's live connections. Nothing here is stored.
//!
//! The server is not a blind relay: a connection may speak only for the awareness client ids
//! it introduced (at most [`MAX_IDS_PER_CONNECTION`]), a state is at most
//! [`MAX_STATE_BYTES`] of JSON, and `user.name` is overwritten with the name the server
//! knows the member by, so nobody shows their cursor under someone else's name.

use std::collections::HashMap;
use std::sync::Arc;
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
use yrs::updates::decoder::Decode;

pub const MAX_IDS_PER_CONNECTION: usize = 4;
pub const MAX_STATE_BYTES: usize = 4096;

struct Entry {
    clock: u32,
    json: Arc<str>,
    conn: u64,
}

/// The awareness states of one meeting's notes.
#[derive(Default)]
pub struct Table {
    entries: HashMap<u64, Entry>,
}

/// The JSON state with the member's name put in `user.name` (other fields kept), or `None`
/// when it is not an object or too large.
fn with_name(json: &str, name: &str) -> Option<String> {
    if json.len() > MAX_STATE_BYTES {
        return None;
    }
    let mut v: serde_json::Value = serde_json::from_str(json).ok()?;
    let obj = v.as_object_mut()?;
    let user = obj.entry("user").or_insert_with(|| serde_json::json!({}));
    if !user.is_object() {
        *user = serde_json::json!({});
    }
    user["name"] = serde_json::Value::from(name);
    Some(v.to_string())
}

impl Table {
    /// Takes an awareness update from connection `conn` (member `name`); returns the update to
    /// pass on to the others, or `None` when nothing in it was acceptable.
    pub fn update(&mut self, conn: u64, name: &str, bytes: &[u8]) -> Option<AwarenessUpdate> {
        let upd = std::panic::catch_unwind(|| AwarenessUpdate::decode_v1(bytes))
            .ok()?
            .ok()?;
        let mut out = HashMap::new();
        for (client, e) in upd.clients {
            let id = client.get();
            let mine = self.entries.values().filter(|x| x.conn == conn).count();
            match self.entries.get(&id) {
                Some(x) if x.conn != conn => continue,    // someone else's id
                Some(x) if e.clock < x.clock => continue, // old news
                None if mine >= MAX_IDS_PER_CONNECTION => continue,
                _ => {}
            }
            let json: Arc<str> = if &*e.json == "null" {
                self.entries.remove(&id);
                e.json.clone()
            } else {
                let Some(j) = with_name(&e.json, name) else {
                    continue;
                };
                let j: Arc<str> = j.into();
                self.entries.insert(
                    id,
                    Entry {
                        clock: e.clock,
                        json: j.clone(),
                        conn,
                    },
                );
                j
            };
            out.insert(
                client,
                AwarenessUpdateEntry {
                    clock: e.clock,
                    json,
                },
            );
        }
        (!out.is_empty()).then_some(AwarenessUpdate { clients: out })
    }

    /// Every state, for a connection that just came (or asked).
    pub fn all(&self) -> Option<AwarenessUpdate> {
        let clients: HashMap<_, _> = self
            .entries
            .iter()
            .map(|(id, e)| {
                (
                    yrs::ClientID::new(*id & ((1 << 53) - 1)),
                    AwarenessUpdateEntry {
                        clock: e.clock,
                        json: e.json.clone(),
                    },
                )
            })
            .collect();
        (!clients.is_empty()).then_some(AwarenessUpdate { clients })
    }

    /// Connection `conn` left: its states are removed; returns the update that says so.
    pub fn leave(&mut self, conn: u64) -> Option<AwarenessUpdate> {
        let gone: Vec<(u64, u32)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.conn == conn)
            .map(|(id, e)| (*id, e.clock))
            .collect();
        let mut clients = HashMap::new();
        for (id, clock) in gone {
            self.entries.remove(&id);
            clients.insert(
                yrs::ClientID::new(id & ((1 << 53) - 1)),
                AwarenessUpdateEntry {
                    clock: clock.wrapping_add(1),
                    json: "null".into(),
                },
            );
        }
        (!clients.is_empty()).then_some(AwarenessUpdate { clients })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::updates::encoder::Encode;

    fn upd(entries: &[(u64, u32, &str)]) -> Vec<u8> {
        AwarenessUpdate {
            clients: entries
                .iter()
                .map(|(id, clock, json)| {
                    (
                        yrs::ClientID::new(*id),
                        AwarenessUpdateEntry {
                            clock: *clock,
                            json: (*json).into(),
                        },
                    )
                })
                .collect(),
        }
        .encode_v1()
    }

    fn decode(u: AwarenessUpdate) -> HashMap<u64, (u32, String)> {
        u.clients
            .into_iter()
            .map(|(k, v)| (k.get(), (v.clock, v.json.to_string())))
            .collect()
    }

    #[test]
    fn names_are_the_servers_and_ids_are_owned() {
        let mut t = Table::default();
        let out = t
            .update(
                1,
                "Ann",
                &upd(&[(10, 1, r##"{"user":{"name":"Mallory","color":"#f00"}}"##)]),
            )
            .expect("passed on");
        let got = decode(out);
        let v: serde_json::Value = serde_json::from_str(&got[&10].1).expect("json");
        assert_eq!(v["user"]["name"], "Ann");
        assert_eq!(v["user"]["color"], "#f00");
        // Connection 2 cannot speak for id 10, nor send non-objects or huge states.
        assert!(t.update(2, "Bob", &upd(&[(10, 5, "{}")])).is_none());
        assert!(t.update(2, "Bob", &upd(&[(11, 1, "[1]")])).is_none());
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_STATE_BYTES));
        assert!(t.update(2, "Bob", &upd(&[(12, 1, &big)])).is_none());
        assert!(t.update(2, "Bob", &[0xff, 0xff]).is_none());
        // At most a few ids per connection.
        for id in 20..30 {
            t.update(3, "Eve", &upd(&[(id, 1, "{}")]));
        }
        assert_eq!(
            t.entries.values().filter(|e| e.conn == 3).count(),
            MAX_IDS_PER_CONNECTION
        );
        // Leaving removes them, with a newer clock.
        let gone = decode(t.leave(1).expect("removal"));
        assert_eq!(gone[&10], (2, "null".to_string()));
        assert!(decode(t.all().expect("others")).keys().all(|k| *k >= 20));
    }
}
