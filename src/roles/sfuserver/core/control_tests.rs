//! Room control on simulated time with real str0m clients, across two workers: the lobby,
//! co-hosts, mute all, the hand queue, chat with private messages and history, permissions.

use super::sim::*;
use crate::ids::ParticipantId;
use crate::proto::RoomAction;
use crate::proto::signal::{ChatLine, ClientMsg, CloseReason, MediaKind, Role, ServerMsg};

fn host(action: RoomAction) -> ClientMsg {
    ClientMsg::Host { action }
}

fn chat(text: &str, to: Option<&ParticipantId>, to_hosts: bool) -> ClientMsg {
    ClientMsg::Chat {
        text: text.into(),
        to: to.cloned(),
        to_hosts,
    }
}

fn has_error(sim: &Sim, c: usize, code: &str) -> bool {
    sim.errors(c)
        .iter()
        .any(|m| matches!(m, ServerMsg::Error { code: c, .. } if c == code))
}

fn lobby_of(sim: &Sim, c: usize) -> Option<Vec<String>> {
    sim.clients[c].msgs.iter().rev().find_map(|m| match m {
        ServerMsg::Lobby { waiting } => {
            Some(waiting.iter().map(|w| w.participant_id.0.clone()).collect())
        }
        _ => None,
    })
}

fn chats(sim: &Sim, c: usize) -> Vec<ChatLine> {
    sim.clients[c]
        .msgs
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Chat(l) => Some(l.clone()),
            _ => None,
        })
        .collect()
}

fn joined(sim: &Sim, c: usize) -> bool {
    sim.clients[c]
        .msgs
        .iter()
        .any(|m| matches!(m, ServerMsg::Joined { .. }))
}

#[test]
fn a_lobby_guest_gets_nothing_until_a_cohost_admits_and_a_denied_one_is_told_why() {
    let mut sim = Sim::new(2, 0);
    let owner = sim.join(0, true, false, false, true);
    sim.role_next = Some(Role::Cohost);
    let cohost = sim.join(1, false, false, false, true);
    sim.role_next = None;
    let member = sim.join(0, false, false, false, false);
    sim.run(1000);
    sim.lobby_next = true;
    let guest = sim.join(1, true, false, false, false);
    sim.run(500);
    let gpid = sim.clients[guest].pid.clone();

    // Waiting: told so, not joined, nobody sees it as a participant, no media.
    assert!(
        sim.clients[guest]
            .msgs
            .iter()
            .any(|m| matches!(m, ServerMsg::Waiting { .. }))
    );
    assert!(!joined(&sim, guest));
    for h in [owner, cohost] {
        assert_eq!(lobby_of(&sim, h), Some(vec![gpid.0.clone()]), "host {h}");
    }
    assert_eq!(
        lobby_of(&sim, member),
        None,
        "participants do not see the lobby"
    );
    assert!(!sim.clients[member].msgs.iter().any(|m| matches!(
        m,
        ServerMsg::ParticipantJoined { participant } if participant.participant_id == gpid
    )));
    assert!(!sim.events.iter().any(|e| e.participant == gpid && e.joined));
    // Its direct signaling is refused: offers, chat, hands, host actions.
    sim.signal(
        guest,
        ClientMsg::Offer {
            sdp: "v=0".into(),
            sources: Default::default(),
        },
    );
    sim.signal(guest, chat("let me in", None, false));
    sim.signal(guest, ClientMsg::Hand { raised: true });
    sim.signal(
        guest,
        host(RoomAction::Admit {
            participant_id: None,
        }),
    );
    sim.run(100);
    let refused = sim
        .errors(guest)
        .iter()
        .filter(|m| matches!(m, ServerMsg::Error { code, .. } if code == "in_lobby"))
        .count();
    assert_eq!(refused, 4, "{:?}", sim.errors(guest));
    assert!(chats(&sim, member).is_empty());
    assert!(sim.clients[guest].tracks.is_empty());

    // A participant may not admit; the co-host (on the other worker) does.
    sim.signal(
        member,
        host(RoomAction::Admit {
            participant_id: Some(gpid.clone()),
        }),
    );
    sim.run(50);
    assert!(has_error(&sim, member, "not_host"));
    assert!(!joined(&sim, guest));
    sim.signal(
        cohost,
        host(RoomAction::Admit {
            participant_id: Some(gpid.clone()),
        }),
    );
    sim.run(1500);
    assert!(joined(&sim, guest));
    assert!(sim.events.iter().any(|e| e.participant == gpid && e.joined));
    assert_eq!(lobby_of(&sim, owner), Some(vec![]));
    assert!(
        sim.clients[owner].frames_from(guest as u32, false).len() > 20,
        "the admitted guest is heard"
    );
    assert!(
        sim.clients[guest].frames_from(owner as u32, false).len() > 20,
        "and hears"
    );

    // A second guest is denied with a reason; its token cannot bring it back to knock.
    let second = sim.join(0, false, false, false, false);
    sim.run(100);
    let spid = sim.clients[second].pid.clone();
    assert_eq!(lobby_of(&sim, cohost), Some(vec![spid.0.clone()]));
    sim.signal(
        owner,
        host(RoomAction::Deny {
            participant_id: Some(spid.clone()),
            reason: Some("This is a closed review".into()),
        }),
    );
    sim.run(100);
    assert!(sim.errors(owner).is_empty(), "{:?}", sim.errors(owner));
    assert_eq!(
        sim.clients[second].closed,
        Some(CloseReason::Denied),
        "{:?}",
        sim.clients[second].msgs
    );
    assert!(sim.clients[second].msgs.iter().any(|m| matches!(
        m,
        ServerMsg::Closed { message, .. } if message.contains("This is a closed review")
    )));
    assert_eq!(lobby_of(&sim, cohost), Some(vec![]));
    let again = sim.join_as(Some(second), 1, false, false, false, false);
    sim.run(50);
    assert_eq!(sim.clients[again].closed, Some(CloseReason::Denied));
    // The admitted guest reconnecting with its token skips the lobby.
    let back = sim.join_as(Some(guest), 0, false, false, false, false);
    sim.run(100);
    assert!(joined(&sim, back));
}

#[test]
fn the_cohost_keeps_host_powers_after_the_owner_leaves_and_mutes_everyone() {
    let mut sim = Sim::new(2, 0);
    let owner = sim.join(0, false, false, false, true);
    sim.role_next = Some(Role::Cohost);
    let cohost = sim.join(1, true, false, false, true);
    sim.role_next = None;
    let a = sim.join(0, true, false, false, false);
    let b = sim.join(1, true, false, false, false);
    sim.run(1500);
    assert!(sim.clients[b].frames_from(a as u32, false).len() > 20);
    sim.signal(owner, ClientMsg::Leave);
    sim.run(50);
    sim.signal(cohost, host(RoomAction::MuteAll));
    sim.run(100);
    let (ab, ba) = (
        sim.clients[b].frames_from(a as u32, false).len(),
        sim.clients[a].frames_from(b as u32, false).len(),
    );
    let from_cohost = sim.clients[a].frames_from(cohost as u32, false).len();
    sim.run(1000);
    assert_eq!(sim.clients[b].frames_from(a as u32, false).len(), ab);
    assert_eq!(sim.clients[a].frames_from(b as u32, false).len(), ba);
    assert!(
        sim.clients[a].frames_from(cohost as u32, false).len() > from_cohost + 20,
        "the co-host itself is not muted"
    );
    for (x, other) in [(a, b), (b, a)] {
        for who in [x, other] {
            let pid = sim.clients[who].pid.0.clone();
            assert!(
                sim.clients[x].msgs.iter().any(|m| matches!(
                    m,
                    ServerMsg::Mute { participant_id, by_host: true, muted: true, by: Some(by), .. }
                        if *participant_id == pid && by == "Client 1"
                )),
                "{x} sees {who} muted by the co-host"
            );
        }
    }
    // Ask to unmute: a request, not a force.
    sim.signal(cohost, host(RoomAction::AskUnmute));
    sim.run(50);
    for x in [a, b] {
        assert!(
            sim.clients[x]
                .msgs
                .iter()
                .any(|m| matches!(m, ServerMsg::AskUnmute { .. }))
        );
    }
    assert_eq!(sim.clients[b].frames_from(a as u32, false).len(), ab);
    // A participant's own unmute is theirs to make.
    sim.signal(
        a,
        ClientMsg::Mute {
            kind: MediaKind::Audio,
            muted: false,
        },
    );
    sim.run(1000);
    assert!(sim.clients[b].frames_from(a as u32, false).len() > ab + 20);
}

#[test]
fn hands_queue_in_raise_order_and_a_host_lowers_them_all() {
    let mut sim = Sim::new(2, 0);
    let owner = sim.join(0, false, false, false, true);
    let ps: Vec<usize> = (0..3)
        .map(|i| sim.join(i % 2, false, false, false, false))
        .collect();
    sim.run(200);
    // Raised in the order 2, 0, 1 (on both workers).
    for &i in &[2usize, 0, 1] {
        sim.signal(ps[i], ClientMsg::Hand { raised: true });
        sim.run(20);
    }
    let ups: Vec<(String, i64)> = sim.clients[owner]
        .msgs
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Hand {
                participant_id,
                raised: true,
                at,
                ..
            } => Some((participant_id.0.clone(), *at)),
            _ => None,
        })
        .collect();
    let mut queue = ups.clone();
    queue.sort_by_key(|(_, at)| *at);
    let order: Vec<String> = queue.into_iter().map(|(p, _)| p).collect();
    let want: Vec<String> = [2usize, 0, 1]
        .iter()
        .map(|&i| sim.clients[ps[i]].pid.0.clone())
        .collect();
    assert_eq!(order, want, "{ups:?}");
    // A newcomer host sees the raised hands (with their times) in the participant list.
    let late = sim.join(1, false, false, false, true);
    sim.run(50);
    let listed = sim.clients[late].msgs.iter().find_map(|m| match m {
        ServerMsg::Joined { participants, .. } => Some(
            participants
                .iter()
                .filter(|p| p.hand_raised && p.hand_at > 0)
                .count(),
        ),
        _ => None,
    });
    assert_eq!(listed, Some(3));
    // A participant cannot lower others' hands; a host lowers all.
    sim.signal(ps[0], host(RoomAction::LowerHands));
    sim.run(20);
    assert!(has_error(&sim, ps[0], "not_host"));
    sim.signal(late, host(RoomAction::LowerHands));
    sim.run(50);
    for &x in ps.iter().chain([owner].iter()) {
        let downs = sim.clients[x]
            .msgs
            .iter()
            .filter(|m| {
                matches!(
                    m,
                    ServerMsg::Hand {
                        raised: false,
                        by: Some(_),
                        ..
                    }
                )
            })
            .count();
        assert_eq!(downs, 3, "{x}");
    }
    let newest = sim.join(0, false, false, false, false);
    sim.run(50);
    assert!(sim.clients[newest].msgs.iter().any(|m| matches!(
        m,
        ServerMsg::Joined { participants, .. } if participants.iter().all(|p| !p.hand_raised)
    )));
}

#[test]
fn private_chat_reaches_only_its_reader_and_late_joiners_get_the_history() {
    let mut sim = Sim::new(2, 0);
    let owner = sim.join(0, false, false, false, true);
    let a = sim.join(1, false, false, false, false);
    let b = sim.join(0, false, false, false, false);
    let c = sim.join(1, false, false, false, false);
    sim.run(200);
    let (pb, pc) = (sim.clients[b].pid.clone(), sim.clients[c].pid.clone());
    sim.signal(a, chat("hello all", None, false));
    sim.signal(a, chat("psst, only for B", Some(&pb), false));
    sim.signal(c, chat("hosts: my mic is broken", None, true));
    sim.signal(
        a,
        chat("to nobody", Some(&ParticipantId("gone".into())), false),
    );
    sim.signal(a, chat("both", Some(&pc), true));
    sim.run(50);
    let texts = |sim: &Sim, x: usize| -> Vec<String> {
        chats(sim, x).into_iter().map(|l| l.text).collect()
    };
    assert_eq!(
        texts(&sim, a),
        ["hello all", "psst, only for B"],
        "the sender sees its own"
    );
    assert_eq!(texts(&sim, b), ["hello all", "psst, only for B"]);
    assert_eq!(texts(&sim, c), ["hello all", "hosts: my mic is broken"]);
    assert_eq!(texts(&sim, owner), ["hello all", "hosts: my mic is broken"]);
    assert_eq!(
        sim.errors(a)
            .iter()
            .filter(|m| matches!(m, ServerMsg::Error { code, .. } if code == "bad_chat"))
            .count(),
        2
    );
    // Late joiners (either worker) get what they may read, in order.
    let late = sim.join(1, false, false, false, false);
    let late_host = sim.join(0, false, false, false, true);
    sim.run(50);
    let history = |x: usize| -> Vec<String> {
        sim.clients[x]
            .msgs
            .iter()
            .find_map(|m| match m {
                ServerMsg::ChatHistory { messages } => {
                    Some(messages.iter().map(|l| l.text.clone()).collect())
                }
                _ => None,
            })
            .unwrap_or_default()
    };
    assert_eq!(history(late), ["hello all"]);
    assert_eq!(history(late_host), ["hello all", "hosts: my mic is broken"]);
}

#[test]
fn promote_demote_and_permissions_hold_at_the_server() {
    let mut sim = Sim::new(2, 0);
    let owner = sim.join(0, false, false, false, true);
    let a = sim.join(1, true, true, false, false);
    let b = sim.join(0, false, false, false, false);
    sim.run(1500);
    let (pa, powner) = (sim.clients[a].pid.clone(), sim.clients[owner].pid.clone());
    assert!(sim.clients[b].frames_from(a as u32, true).len() > 10);
    // Cameras off for participants: A's camera stops reaching B; its microphone goes on.
    sim.signal(
        owner,
        host(RoomAction::Permissions {
            cameras: false,
            screens: true,
        }),
    );
    sim.run(100);
    let (video, audio) = (
        sim.clients[b].frames_from(a as u32, true).len(),
        sim.clients[b].frames_from(a as u32, false).len(),
    );
    sim.run(1000);
    assert_eq!(sim.clients[b].frames_from(a as u32, true).len(), video);
    assert!(sim.clients[b].frames_from(a as u32, false).len() > audio + 20);
    assert!(
        sim.clients[a]
            .msgs
            .iter()
            .any(|m| matches!(m, ServerMsg::Permissions { cameras: false, .. }))
    );
    // Promoted, A may act as a host (and may publish); the owner cannot be demoted.
    sim.signal(
        owner,
        host(RoomAction::SetRole {
            participant_id: pa.clone(),
            cohost: true,
        }),
    );
    sim.run(50);
    assert!(sim.clients[b].msgs.iter().any(|m| matches!(
        m,
        ServerMsg::Role { participant_id, role: Role::Cohost, host: true, .. } if *participant_id == pa
    )));
    sim.signal(
        a,
        host(RoomAction::SetRole {
            participant_id: powner,
            cohost: false,
        }),
    );
    sim.signal(a, host(RoomAction::LowerHands));
    sim.run(50);
    assert!(has_error(&sim, a, "not_done"));
    assert!(!has_error(&sim, a, "not_host"));
    // Demoted again: host actions are refused.
    sim.signal(
        owner,
        host(RoomAction::SetRole {
            participant_id: pa,
            cohost: false,
        }),
    );
    sim.run(50);
    sim.signal(a, host(RoomAction::MuteAll));
    sim.run(50);
    assert!(has_error(&sim, a, "not_host"));
}

#[test]
fn an_invitee_claims_host_only_when_no_host_is_left() {
    let mut sim = Sim::new(2, 0);
    let owner = sim.join(0, false, false, false, true);
    let stranger = sim.join(1, false, false, false, false);
    sim.may_claim_next = true;
    let invitee = sim.join(0, false, false, false, false);
    let other = sim.join(1, false, false, false, false);
    sim.may_claim_next = false;
    sim.run(100);
    // While the owner is here: refused.
    sim.signal(invitee, ClientMsg::ClaimHost);
    sim.run(20);
    assert!(has_error(&sim, invitee, "host_present"));
    sim.signal(owner, ClientMsg::Leave);
    sim.run(50);
    // Not invited: refused; invited: a co-host now, everyone sees it; then the next claim
    // finds a host.
    sim.signal(stranger, ClientMsg::ClaimHost);
    sim.run(20);
    assert!(has_error(&sim, stranger, "not_allowed"));
    sim.signal(invitee, ClientMsg::ClaimHost);
    sim.run(50);
    let ipid = sim.clients[invitee].pid.0.clone();
    for x in [stranger, invitee, other] {
        assert!(sim.clients[x].msgs.iter().any(|m| matches!(
            m,
            ServerMsg::Role { participant_id, role: Role::Cohost, host: true, .. } if *participant_id == ipid
        )), "{x}");
    }
    sim.signal(other, ClientMsg::ClaimHost);
    sim.run(20);
    assert!(has_error(&sim, other, "host_present"));
    // The new co-host acts as one.
    sim.signal(invitee, host(RoomAction::MuteAll));
    sim.run(20);
    assert!(!has_error(&sim, invitee, "not_host"));
    assert!(
        sim.clients[other]
            .msgs
            .iter()
            .any(|m| matches!(m, ServerMsg::Mute { by_host: true, .. }))
    );
}

#[test]
fn the_lobby_and_the_chat_history_are_bounded() {
    use super::control::{MAX_CHAT_HISTORY, MAX_WAITING};
    let mut sim = Sim::new(2, 0);
    let owner = sim.join(0, false, false, false, true);
    let talker = sim.join(1, false, false, false, false);
    sim.run(50);
    // More chat than a room keeps: a late joiner gets the newest MAX_CHAT_HISTORY, in order.
    for i in 0..MAX_CHAT_HISTORY + 30 {
        sim.signal(talker, chat(&format!("m{i}"), None, false));
        if i % 100 == 99 {
            sim.run(2); // the clients read
        }
    }
    sim.run(20);
    let late = sim.join(0, false, false, false, false);
    sim.run(20);
    let history: Vec<String> = sim.clients[late]
        .msgs
        .iter()
        .find_map(|m| match m {
            ServerMsg::ChatHistory { messages } => {
                Some(messages.iter().map(|l| l.text.clone()).collect())
            }
            _ => None,
        })
        .expect("a history");
    assert_eq!(history.len(), MAX_CHAT_HISTORY);
    assert_eq!(history.first().map(String::as_str), Some("m30"));
    assert_eq!(
        history.last().cloned(),
        Some(format!("m{}", MAX_CHAT_HISTORY + 29))
    );
    // A full lobby refuses the next one (told why); the room goes on.
    sim.lobby_next = true;
    let first = sim.clients.len();
    for i in 0..MAX_WAITING {
        sim.join(i % 2, false, false, false, false);
        if i % 50 == 49 {
            sim.run(2);
        }
    }
    sim.run(20);
    let extra = sim.join(1, false, false, false, false);
    sim.run(20);
    assert_eq!(sim.clients[extra].closed, Some(CloseReason::LobbyFull));
    assert_eq!(
        lobby_of(&sim, owner).map(|l| l.len()),
        Some(MAX_WAITING),
        "the hosts see everyone who waits"
    );
    assert!(sim.clients[first].closed.is_none());
    sim.signal(
        owner,
        host(RoomAction::Deny {
            participant_id: None,
            reason: None,
        }),
    );
    sim.run(50);
    assert_eq!(lobby_of(&sim, owner), Some(vec![]));
    assert!((first..extra).all(|c| sim.clients[c].closed == Some(CloseReason::Denied)));
}
