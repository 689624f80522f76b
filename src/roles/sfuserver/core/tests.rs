//! Unit tests of the core on simulated time (`sim`).

use super::sim::*;
use super::*;
use crate::proto::RoomAction;
use crate::proto::signal::{ClientMsg, MediaKind, ServerMsg};
use str0m::media::{KeyframeRequestKind, Rid};

/// Counters from `first` on follow each other (no frame lost or repeated).
fn complete(frames: &[Frame]) -> bool {
    frames.windows(2).all(|w| w[1].n == w[0].n + 1)
}

#[test]
fn one_meeting_on_two_workers_carries_audio_and_video_both_ways() {
    let mut sim = Sim::new(2, 0);
    let a = sim.join(0, true, true, false, true);
    let b = sim.join(1, true, true, false, false);
    let c = sim.join(0, false, false, false, false);
    sim.run(3000);
    for (viewer, publisher) in [(b, a), (c, a), (a, b), (c, b)] {
        let v = sim.clients[viewer].frames_from(publisher as u32, true);
        let au = sim.clients[viewer].frames_from(publisher as u32, false);
        assert!(
            v.len() > 40,
            "{viewer} sees {publisher}'s video: {}",
            v.len()
        );
        assert!(au.len() > 100, "{viewer} hears {publisher}: {}", au.len());
        assert!(v[0].key, "video starts at a keyframe");
        assert!(
            complete(&v) && complete(&au),
            "{viewer} from {publisher}: complete"
        );
    }
    for x in [a, b, c] {
        assert!(sim.errors(x).is_empty(), "{:?}", sim.errors(x));
    }
    // Everyone learns of everyone else exactly once, whichever worker they are on (from
    // the `joined` list or a later `participant_joined`).
    for x in [a, b, c] {
        let mut known: Vec<ParticipantId> = Vec::new();
        for m in &sim.clients[x].msgs {
            match m {
                ServerMsg::Joined { participants, .. } => {
                    known.extend(participants.iter().map(|p| p.participant_id.clone()))
                }
                ServerMsg::ParticipantJoined { participant } => {
                    known.push(participant.participant_id.clone())
                }
                _ => {}
            }
        }
        known.sort();
        let mut others: Vec<String> = [a, b, c]
            .iter()
            .filter(|&&y| y != x)
            .map(|&y| sim.clients[y].pid.0.clone())
            .collect();
        others.sort();
        assert_eq!(known, others, "client {x}");
    }
    // B leaves: A and C (on the other worker) are told, B's tracks stop.
    sim.signal(b, ClientMsg::Leave);
    sim.run(200);
    for x in [a, c] {
        assert!(sim.clients[x].msgs.iter().any(|m| matches!(
            m,
            ServerMsg::ParticipantLeft { participant_id, .. } if *participant_id == sim.clients[b].pid
        )));
    }
    let before = sim.clients[c].frames_from(b as u32, true).len();
    sim.run(500);
    assert_eq!(sim.clients[c].frames_from(b as u32, true).len(), before);
    // A newcomer takes over the m-lines B left in C's session (same send streams): C
    // decodes its media completely (the numbering went on from B's).
    let d = sim.join(1, true, true, false, false);
    sim.run(3000);
    let v = sim.clients[c].frames_from(d as u32, true);
    let au = sim.clients[c].frames_from(d as u32, false);
    assert!(v.len() > 40 && complete(&v), "C sees D: {}", v.len());
    assert!(au.len() > 100 && complete(&au), "C hears D: {}", au.len());
    let offered = sim.clients[c]
        .msgs
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Tracks { tracks } => Some(tracks.len()),
            _ => None,
        })
        .max();
    assert_eq!(
        offered,
        Some(4),
        "C's received m-lines were reused, not added"
    );
    assert!(
        sim.jumps.is_empty(),
        "sequence numbers jumped: {:?}",
        sim.jumps
    );
}

#[test]
fn crossing_offers_glare_is_resolved_and_media_flows() {
    let mut sim = Sim::new(1, 0);
    let a = sim.join(0, true, true, false, false);
    sim.run(500);
    // B joins and offers at the same moment as the server offers it A's tracks: B ignores
    // the server's offer (impolite), the server answers B's and offers again.
    let b = sim.join(0, true, true, false, false);
    sim.run(3000);
    let offers_to_b = sim.clients[b]
        .msgs
        .iter()
        .filter(|m| matches!(m, ServerMsg::Offer { .. }))
        .count();
    assert!(
        offers_to_b >= 2,
        "the crossed offer was made again: {offers_to_b}"
    );
    for (viewer, publisher) in [(a, b), (b, a)] {
        let v = sim.clients[viewer].frames_from(publisher as u32, true);
        assert!(
            v.len() > 30 && complete(&v),
            "{viewer} sees {publisher}: {}",
            v.len()
        );
    }
    assert!(sim.errors(a).is_empty() && sim.errors(b).is_empty());
    assert!(sim.jumps.is_empty(), "{:?}", sim.jumps);
}

#[test]
fn host_locks_mutes_removes_and_ends_across_workers() {
    let mut sim = Sim::new(2, 0);
    let host = sim.join(0, false, false, false, true);
    let a = sim.join(1, true, false, false, false);
    let b = sim.join(0, false, false, false, false);
    sim.run(1500);
    assert!(sim.clients[b].frames_from(a as u32, false).len() > 20);
    // Lock: a newcomer on either worker is refused, the host is not.
    assert_eq!(sim.control(RoomAction::Lock), Ok(()));
    let late = sim.join(1, false, false, false, false);
    sim.run(50);
    assert_eq!(sim.clients[late].closed, Some(CloseReason::Locked));
    assert!(
        sim.clients[b]
            .msgs
            .contains(&ServerMsg::Locked { locked: true })
    );
    // Mute A (on worker 1) from the host: everyone hears of it, A's audio stops.
    assert_eq!(
        sim.control(RoomAction::Mute {
            participant_id: sim.clients[a].pid.clone()
        }),
        Ok(())
    );
    sim.run(100);
    let heard = sim.clients[b].frames_from(a as u32, false).len();
    sim.run(1000);
    assert_eq!(sim.clients[b].frames_from(a as u32, false).len(), heard);
    for x in [host, a, b] {
        assert!(sim.clients[x].msgs.iter().any(|m| matches!(
            m,
            ServerMsg::Mute {
                by_host: true,
                muted: true,
                ..
            }
        )));
    }
    // A unmutes itself: heard again.
    sim.signal(
        a,
        ClientMsg::Mute {
            kind: MediaKind::Audio,
            muted: false,
        },
    );
    sim.run(1000);
    assert!(sim.clients[b].frames_from(a as u32, false).len() > heard + 20);
    // An unknown participant is an error; removing A closes its session only.
    assert!(
        sim.control(RoomAction::Remove {
            participant_id: ParticipantId("nobody".into())
        })
        .is_err()
    );
    assert_eq!(
        sim.control(RoomAction::Remove {
            participant_id: sim.clients[a].pid.clone()
        }),
        Ok(())
    );
    sim.run(100);
    assert_eq!(sim.clients[a].closed, Some(CloseReason::Removed));
    assert!(sim.clients[b].closed.is_none());
    assert_eq!(sim.control(RoomAction::End), Ok(()));
    sim.run(100);
    assert_eq!(sim.clients[host].closed, Some(CloseReason::Ended));
    assert_eq!(sim.clients[b].closed, Some(CloseReason::Ended));
}

#[test]
fn simulcast_follows_the_tile_size_with_dynacast_and_switches_at_keyframes() {
    let mut sim = Sim::new(2, 0);
    let a = sim.join(0, false, true, true, false);
    let v = sim.join(1, false, false, false, false);
    sim.run(1500);
    let pid_a = sim.clients[a].pid.clone();
    let mid = sim.clients[v]
        .mid_of(&pid_a, MediaKind::Video)
        .expect("a video track from A");
    // A small tile: the low layer, and A is asked to send only that one.
    sim.signal(
        v,
        ClientMsg::Layer {
            mid: mid.to_string(),
            width: 320,
            height: 180,
        },
    );
    sim.run(1500);
    assert_eq!(
        sim.clients[a].active_layers,
        vec![Rid::from("q")],
        "dynacast: only q is watched"
    );
    let seen = |sim: &Sim| sim.clients[v].frames.get(&mid).cloned().unwrap_or_default();
    let small = seen(&sim);
    assert_eq!(small.last().map(|f| f.layer), Some(1), "layer q");
    // A large tile: A is asked for f, the viewer switches to it at a keyframe, with no
    // frame lost on the viewer's side (its decoder saw continuous numbering).
    sim.signal(
        v,
        ClientMsg::Layer {
            mid: mid.to_string(),
            width: 1280,
            height: 720,
        },
    );
    sim.run(2000);
    // The layer for 720 rows, or "h" if the estimate towards the viewer is not yet above
    // 1 Mbit/s (`wanted_rank`); either way larger than "q", and the only one asked for.
    let frames = seen(&sim);
    let big = frames.last().map_or(0, |f| f.layer);
    assert!(big >= 2, "a larger layer: {big}");
    assert_eq!(
        sim.clients[a].active_layers,
        vec![Rid::from(["q", "h", "f"][usize::from(big) - 1])]
    );
    let first = frames
        .iter()
        .position(|f| f.layer == big)
        .expect("switched");
    assert!(frames[first].key, "the switch happens at a keyframe");
    assert!(frames[first..].iter().all(|f| f.layer == big));
    assert!(complete(&frames[first..]));
    // Not shown (0×0): nothing is forwarded and A is told nobody watches.
    sim.signal(
        v,
        ClientMsg::Layer {
            mid: mid.to_string(),
            width: 0,
            height: 0,
        },
    );
    sim.run(600);
    let paused_at = seen(&sim).len();
    sim.run(1000);
    assert_eq!(seen(&sim).len(), paused_at, "a hidden tile gets no video");
    assert!(sim.clients[a].active_layers.is_empty());
    assert!(sim.errors(v).is_empty());
    assert!(sim.jumps.is_empty(), "{:?}", sim.jumps);
}

#[test]
fn viewer_keyframe_requests_reach_the_publisher_on_another_worker() {
    let mut sim = Sim::new(2, 0);
    let a = sim.join(0, false, true, false, false);
    let v = sim.join(1, false, false, false, false);
    sim.run(1500);
    let mid = sim.clients[v]
        .mid_of(&sim.clients[a].pid.clone(), MediaKind::Video)
        .expect("track");
    let before = sim.clients[a].keyframe_requests;
    for _ in 0..3 {
        let mut w = sim.clients[v].rtc.writer(mid).expect("writer");
        w.request_keyframe(None, KeyframeRequestKind::Pli)
            .expect("pli");
        sim.run(600);
    }
    assert!(
        sim.clients[a].keyframe_requests >= before + 3,
        "{} → {}",
        before,
        sim.clients[a].keyframe_requests
    );
    let keys = sim.clients[v]
        .frames
        .get(&mid)
        .map_or(0, |f| f.iter().filter(|f| f.key).count());
    assert!(keys >= 4, "keyframes arrived: {keys}");
}

#[test]
fn nack_is_answered_from_the_shared_cache_across_workers() {
    let mut sim = Sim::new(2, 0);
    let a = sim.join(0, false, true, false, false);
    let v = sim.join(1, false, false, false, false);
    sim.run(1000);
    // Every 10th RTP datagram to the viewer is lost; NACK repairs every frame.
    sim.lossy = Some((v, 10));
    sim.run(4000);
    assert!(sim.dropped > 20, "{}", sim.dropped);
    assert!(sim.cores[0].counts.retransmitted + sim.cores[1].counts.retransmitted > 0);
    let frames = sim.clients[v].frames_from(a as u32, true);
    assert!(frames.len() > 100 && complete(&frames), "{}", frames.len());
}

#[test]
fn active_speaker_and_top_k_audio() {
    // K = 1: only the loudest of three publishers is heard.
    let mut sim = Sim::new(2, 1);
    let a = sim.join(0, true, false, false, false);
    let b = sim.join(1, true, false, false, false);
    let c = sim.join(0, true, false, false, false);
    let l = sim.join(1, false, false, false, false);
    sim.clients[a].loudness = 90;
    sim.clients[b].loudness = 20;
    sim.clients[c].loudness = 20;
    sim.run(2000);
    let pid_a = sim.clients[a].pid.0.clone();
    for x in [b, l] {
        assert!(
            sim.clients[x].msgs.iter().any(|m| matches!(
                m,
                ServerMsg::ActiveSpeaker { participant_id: Some(p) } if *p == pid_a
            )),
            "{x} is told A speaks"
        );
    }
    let heard = |sim: &Sim, from: usize| sim.clients[l].frames_from(from as u32, false).len();
    assert!(heard(&sim, a) > 50);
    assert_eq!((heard(&sim, b), heard(&sim, c)), (0, 0), "only the loudest");
    // C starts talking: heard from its first loud packet on, and continuously.
    sim.clients[c].loudness = 100;
    let c_sent = sim.clients[c].audio_no;
    sim.run(1000);
    let from_c = sim.clients[l].frames_from(c as u32, false);
    assert_eq!(
        from_c.first().map(|f| f.n),
        Some(c_sent + 1),
        "first syllable"
    );
    assert!(complete(&from_c));
    assert_eq!(heard(&sim, b), 0);
    assert!(sim.jumps.is_empty(), "{:?}", sim.jumps);
}

#[test]
fn ten_people_joining_at_once_all_get_everyone() {
    let mut sim = Sim::new(2, 0);
    let n = 10;
    let people: Vec<usize> = (0..n)
        .map(|i| sim.join(i % 2, true, true, false, false))
        .collect();
    sim.run(4000);
    let mut missing = Vec::new();
    for &v in &people {
        for &p in &people {
            if v != p {
                let video = sim.clients[v].frames_from(p as u32, true).len();
                let audio = sim.clients[v].frames_from(p as u32, false).len();
                if video < 20 || audio < 50 {
                    missing.push((v, p, video, audio));
                }
            }
        }
        assert!(sim.errors(v).is_empty(), "{v}: {:?}", sim.errors(v));
    }
    assert!(
        missing.is_empty(),
        "(viewer, publisher, video, audio): {missing:?}"
    );
}

/// Offers that make str0m 0.25 panic in `accept_offer` (found by the `sdp` fuzz target).
const STR0M_PANICS: [&str; 2] = [
    include_str!("../../../../fuzz/known-crashes/sdp/str0m-pt-locked-twice"),
    include_str!("../../../../fuzz/known-crashes/sdp/str0m-pt-locked-twice-full"),
];

/// The offers that still make str0m panic under the sfuserver's own `Rtc` configuration.
fn panicking_offers(core: &Core, now: Instant) -> Vec<&'static str> {
    STR0M_PANICS
        .into_iter()
        .filter(|sdp| {
            let Ok(offer) = str0m::change::SdpOffer::from_sdp_string(sdp) else {
                return false;
            };
            let mut rtc = core.rtc_config().build(now);
            matches!(
                participant::contained(|| rtc.sdp_api().accept_offer(offer)),
                Err(SdpError::Broken(_))
            )
        })
        .collect()
}

#[test]
fn an_offer_that_makes_str0m_panic_drops_only_its_sender() {
    let mut sim = Sim::new(2, 0);
    let offers = panicking_offers(&sim.cores[0], sim.now);
    // If str0m stops panicking on them, this test proves nothing: say so.
    assert!(
        !offers.is_empty(),
        "str0m no longer panics on fuzz/known-crashes/sdp under our configuration"
    );
    let a = sim.join(0, true, true, false, true);
    let v = sim.join(1, false, false, false, false);
    let w = sim.join(0, false, false, false, false);
    sim.run(1500);
    for (i, sdp) in offers.iter().enumerate() {
        // A newcomer that ignores the server's offer (A's tracks) and sends its own.
        let attacker = sim.join(i % 2, false, false, false, false);
        sim.signal(
            attacker,
            ClientMsg::Offer {
                sdp: sdp.to_string(),
                sources: Default::default(),
            },
        );
        sim.run(100);
        assert_eq!(
            sim.clients[attacker].closed,
            Some(CloseReason::BadSdp),
            "{:?}",
            sim.errors(attacker)
        );
        let pid = sim.clients[attacker].pid.0.clone();
        for x in [a, v, w] {
            assert!(
                sim.clients[x].msgs.iter().any(|m| matches!(
                    m,
                    ServerMsg::ParticipantLeft { participant_id, reason }
                        if *participant_id == pid && *reason == CloseReason::BadSdp
                )),
                "{x} is told the attacker left"
            );
        }
    }
    // Both workers carry on: media still flows to viewers on either, and a newcomer joins.
    let (heard_v, heard_w) = (
        sim.clients[v].frames_from(a as u32, true).len(),
        sim.clients[w].frames_from(a as u32, true).len(),
    );
    let late = sim.join(0, false, false, false, false);
    sim.run(1500);
    assert!(sim.clients[v].frames_from(a as u32, true).len() > heard_v + 20);
    assert!(sim.clients[w].frames_from(a as u32, true).len() > heard_w + 20);
    assert!(sim.clients[late].frames_from(a as u32, true).len() > 20);
    for x in [a, v, w, late] {
        assert!(sim.clients[x].closed.is_none(), "{x}");
    }
}

#[test]
fn a_removed_participant_cannot_come_back_with_its_token() {
    let mut sim = Sim::new(2, 0);
    let host = sim.join(0, false, false, false, true);
    let a = sim.join(1, true, false, false, false);
    let b = sim.join(0, false, false, false, false);
    sim.run(1000);
    assert_eq!(
        sim.control(RoomAction::Remove {
            participant_id: sim.clients[a].pid.clone()
        }),
        Ok(())
    );
    sim.run(100);
    assert_eq!(sim.clients[a].closed, Some(CloseReason::Removed));
    // The same join token (participant id) again, on either worker: refused.
    for worker in [1, 0] {
        let again = sim.join_as(Some(a), worker, true, false, false, false);
        sim.run(100);
        assert_eq!(sim.clients[again].closed, Some(CloseReason::Removed));
    }
    let joined_a = sim.clients[b]
        .msgs
        .iter()
        .filter(|m| matches!(m, ServerMsg::ParticipantJoined { participant } if participant.participant_id == sim.clients[a].pid))
        .count();
    assert_eq!(joined_a, 1, "the others saw A join once, never again");
    // Everyone else stays; a new participant id (a new join the apiserver allowed) enters.
    let c = sim.join(1, false, false, false, false);
    sim.run(100);
    for x in [host, b, c] {
        assert!(sim.clients[x].closed.is_none(), "{x}");
    }
    // A host removing someone who is not (or no longer) here still bars that id.
    let ghost = ParticipantId("ghost".into());
    let _ = sim.control(RoomAction::Remove {
        participant_id: ghost.clone(),
    });
    assert!(sim.cores.iter().all(|c| {
        c.removed
            .get(&MEETING)
            .is_some_and(|r| r.iter().any(|(p, _)| *p == ghost))
    }));
    // Bounded: the oldest are forgotten beyond the per-meeting limit...
    for i in 0..MAX_REMOVED_PER_MEETING + 10 {
        let _ = sim.control(RoomAction::Remove {
            participant_id: ParticipantId(format!("x{i}")),
        });
    }
    for core in &sim.cores {
        assert_eq!(core.removed[&MEETING].len(), MAX_REMOVED_PER_MEETING);
    }
    // ...and every one once its token can no longer be valid.
    for core in &mut sim.cores {
        core.cfg.removed_for = Duration::from_secs(1);
    }
    sim.run(1500);
    assert!(sim.cores.iter().all(|c| c.removed.is_empty()));
}

#[test]
fn reactions_are_relayed_to_the_room_across_workers_at_one_a_second() {
    let mut sim = Sim::new(2, 0);
    let a = sim.join(0, true, false, false, false);
    let b = sim.join(1, true, false, false, false);
    sim.run(500);
    let reactions = |sim: &Sim, x: usize| {
        sim.clients[x]
            .msgs
            .iter()
            .filter(|m| matches!(m, ServerMsg::Reaction { .. }))
            .count()
    };
    sim.signal(
        a,
        ClientMsg::Reaction {
            emoji: "👍".into()
        },
    );
    sim.run(50);
    // Within the second: refused, not relayed.
    sim.signal(
        a,
        ClientMsg::Reaction {
            emoji: "🎉".into()
        },
    );
    // Not one of the reactions: refused.
    sim.signal(
        b,
        ClientMsg::Reaction {
            emoji: "💩".into()
        },
    );
    sim.run(50);
    for x in [a, b] {
        assert_eq!(reactions(&sim, x), 1, "client {x} sees one reaction");
    }
    assert!(sim.clients[b].msgs.iter().any(|m| matches!(
        m,
        ServerMsg::Reaction { participant_id, emoji, .. }
            if *participant_id == sim.clients[a].pid && emoji == "👍"
    )));
    let codes = |sim: &Sim, x: usize| -> Vec<String> {
        sim.errors(x)
            .iter()
            .filter_map(|m| match m {
                ServerMsg::Error { code, .. } => Some(code.clone()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(codes(&sim, a), ["rate_limited"]);
    assert_eq!(codes(&sim, b), ["bad_reaction"]);
    // A second later the next one goes through.
    sim.run(1000);
    sim.signal(
        a,
        ClientMsg::Reaction {
            emoji: "🎉".into()
        },
    );
    sim.run(50);
    assert_eq!(reactions(&sim, b), 2);
}

#[test]
fn only_a_host_spotlights_and_a_newcomer_learns_the_spotlight() {
    let mut sim = Sim::new(2, 0);
    let host = sim.join(0, false, false, false, true);
    let a = sim.join(1, true, true, false, false);
    sim.run(500);
    let a_id = sim.clients[a].pid.clone();
    // Not a host: refused, nobody told.
    sim.signal(
        a,
        ClientMsg::Spotlight {
            participant_id: Some(a_id.clone()),
        },
    );
    // Someone who is not here: refused.
    sim.signal(
        host,
        ClientMsg::Spotlight {
            participant_id: Some("nobody".into()),
        },
    );
    sim.run(50);
    assert!(
        sim.errors(a)
            .iter()
            .any(|m| matches!(m, ServerMsg::Error { code, .. } if code == "not_host"))
    );
    assert!(
        sim.errors(host)
            .iter()
            .any(|m| matches!(m, ServerMsg::Error { code, .. } if code == "not_in_meeting"))
    );
    let spot = |sim: &Sim, x: usize| -> Vec<Option<ParticipantId>> {
        sim.clients[x]
            .msgs
            .iter()
            .filter_map(|m| match m {
                ServerMsg::Spotlight { participant_id, .. } => Some(participant_id.clone()),
                _ => None,
            })
            .collect()
    };
    assert!(spot(&sim, a).is_empty());
    // The host spotlights A (on the other worker): both are told.
    sim.signal(
        host,
        ClientMsg::Spotlight {
            participant_id: Some(a_id.clone()),
        },
    );
    sim.run(50);
    for x in [host, a] {
        assert_eq!(spot(&sim, x), [Some(a_id.clone())], "client {x}");
    }
    // A newcomer on either worker gets it after `joined`.
    let c = sim.join(0, false, false, false, false);
    let d = sim.join(1, false, false, false, false);
    sim.run(200);
    for x in [c, d] {
        assert_eq!(spot(&sim, x), [Some(a_id.clone())], "newcomer {x}");
    }
    // A leaves: the spotlight ends for everyone, and a later newcomer gets none.
    sim.signal(a, ClientMsg::Leave);
    sim.run(200);
    for x in [host, c, d] {
        assert_eq!(spot(&sim, x).last(), Some(&None), "client {x}");
    }
    let e = sim.join(1, false, false, false, false);
    sim.run(200);
    assert!(spot(&sim, e).is_empty());
}

#[test]
fn everyone_learns_everyones_connection_quality_from_both_workers() {
    let mut sim = Sim::new(2, 0);
    let a = sim.join(0, true, true, false, false);
    let b = sim.join(1, true, true, false, false);
    sim.run(5000);
    for x in [a, b] {
        let mut seen: Vec<String> = sim.clients[x]
            .msgs
            .iter()
            .filter_map(|m| match m {
                ServerMsg::Quality { participants } => Some(participants.clone()),
                _ => None,
            })
            .flatten()
            .filter(|q| q.level == 3)
            .map(|q| q.participant_id.0)
            .collect();
        seen.sort();
        seen.dedup();
        let mut both = vec![sim.clients[a].pid.0.clone(), sim.clients[b].pid.0.clone()];
        both.sort();
        assert_eq!(seen, both, "client {x} sees good quality for both");
    }
}

#[test]
fn a_newcomer_sees_video_right_after_it_connects() {
    let mut sim = Sim::new(2, 0);
    let a = sim.join(0, true, true, false, false);
    // Long enough that the publisher's own keyframe cadence is settled.
    sim.run(3000);
    let b = sim.join(1, false, false, false, false);
    let (mut connected, mut first) = (None, None);
    for ms in 0..3000u32 {
        sim.run(1);
        if connected.is_none() && sim.clients[b].connected {
            connected = Some(ms);
        }
        if first.is_none() && !sim.clients[b].frames_from(a as u32, true).is_empty() {
            first = Some(ms);
            break;
        }
    }
    let (connected, first) = (connected.expect("connected"), first.expect("a frame"));
    // Simulated time: the picture does not wait for the publisher's next own keyframe
    // (every 50 frames here). The simulation connects within a millisecond of the answer,
    // so it does not show the difference between asking at the answer and at connection
    // (in browsers, 100-250 ms apart); the browser test's stage marks do.
    assert!(
        first - connected <= 100,
        "connected at {connected} ms, first frame at {first} ms"
    );
    assert!(sim.clients[b].frames_from(a as u32, true)[0].key);
}

/// The ice-lite server answers DTLS on the first pair whose binding request proved the ICE
/// password, without waiting for the peer's nomination (vendor/str0m PATCHES.md, change 5):
/// with every nominating request dropped on the way, the handshake still completes.
#[test]
fn ice_lite_handshakes_before_any_nomination() {
    use std::time::{Duration, Instant};
    use str0m::net::{Protocol, Receive};
    use str0m::{Candidate, Event, Input as RtcInput, Output, Rtc, RtcConfig};

    /// Whether a datagram is a STUN binding request carrying USE-CANDIDATE.
    fn nominates(d: &[u8]) -> bool {
        if d.len() < 20 || d[0] != 0x00 || d[1] != 0x01 {
            return false;
        }
        let mut at = 20;
        while at + 4 <= d.len() {
            let kind = u16::from_be_bytes([d[at], d[at + 1]]);
            let len = usize::from(u16::from_be_bytes([d[at + 2], d[at + 3]]));
            if kind == 0x0025 {
                return true;
            }
            at += 4 + len.div_ceil(4) * 4;
        }
        false
    }

    let mut now = Instant::now();
    let server_addr: std::net::SocketAddr = "10.0.0.1:5000".parse().expect("addr");
    let client_addr: std::net::SocketAddr = "10.0.0.2:6000".parse().expect("addr");
    let mut server = RtcConfig::new().set_ice_lite(true).build(now);
    server.add_local_candidate(Candidate::host(server_addr, "udp").expect("candidate"));
    let mut client = RtcConfig::new().build(now);
    client.add_local_candidate(Candidate::host(client_addr, "udp").expect("candidate"));
    // The server offers (as ours does), the client answers: the client is the DTLS client.
    let mut change = server.sdp_api();
    change.add_channel("x".into());
    let (offer, pending) = change.apply().expect("an offer");
    let answer = client.sdp_api().accept_offer(offer).expect("an answer");
    server
        .sdp_api()
        .accept_answer(pending, answer)
        .expect("answer accepted");

    /// Delivers what `from` sends to `to` (nominating requests dropped when `drop_nominations`)
    /// and runs `from`'s timers; answers (anything moved, `from` connected, dropped).
    fn pump(
        now: Instant,
        from: &mut Rtc,
        to: &mut Rtc,
        (from_addr, to_addr): (std::net::SocketAddr, std::net::SocketAddr),
        drop_nominations: bool,
    ) -> (bool, bool, u32) {
        let (mut moved, mut connected, mut dropped) = (false, false, 0);
        let mut wake = now + Duration::from_millis(5);
        loop {
            match from.poll_output().expect("poll") {
                Output::Timeout(t) => {
                    wake = wake.min(t);
                    break;
                }
                Output::Transmit(t) => {
                    moved = true;
                    if drop_nominations && nominates(&t.contents) {
                        dropped += 1;
                        continue;
                    }
                    let r = Receive::new(Protocol::Udp, from_addr, to_addr, &t.contents)
                        .expect("a datagram str0m reads");
                    to.handle_input(RtcInput::Receive(now, r)).expect("input");
                }
                Output::Event(Event::Connected) => connected = true,
                Output::Event(_) => {}
            }
        }
        from.handle_input(RtcInput::Timeout(wake.max(now)))
            .expect("timeout");
        (moved, connected, dropped)
    }

    let (mut dropped, mut connected) = (0, false);
    for _ in 0..2000 {
        let (m1, c, d) = pump(
            now,
            &mut client,
            &mut server,
            (client_addr, server_addr),
            true,
        );
        let (m2, _, _) = pump(
            now,
            &mut server,
            &mut client,
            (server_addr, client_addr),
            false,
        );
        dropped += d;
        connected |= c;
        if connected {
            break;
        }
        if !m1 && !m2 {
            now += Duration::from_millis(5);
        }
    }
    assert!(
        connected,
        "no DTLS handshake without a nomination ({dropped} nominating requests dropped)"
    );
}

/// A viewer's first picture is the keyframe asked for while it was connecting (its answer
/// goes over signaling well before its DTLS is up): the worker keeps it and sends it, with
/// the packets after it, the moment the viewer is connected, instead of asking then and
/// waiting for the publisher's next frame. Without and with simulcast, with the viewer on the
/// publisher's worker and on another.
#[test]
fn a_new_viewer_starts_at_once_on_the_keyframe_asked_for_while_it_connected() {
    use std::time::Duration;
    for (workers, simulcast) in [(1, false), (2, false), (1, true), (2, true)] {
        let case = format!("{workers} worker(s), simulcast {simulcast}");
        let mut sim = Sim::new(workers, 0);
        let a = sim.join(0, false, true, simulcast, false);
        // Just after the publisher's own keyframe (every 50 frames, 2 s): none of its own
        // comes while the viewer connects.
        sim.run(2100);
        let asked = sim.clients[a].keyframe_requests;
        // Everything to the viewer is late by 300 ms: it is negotiated well before its DTLS
        // completes, while the publisher's frames flow (its own keyframes: every 2 s).
        let v = sim.clients.len();
        sim.hold = Some((v, sim.now + Duration::from_millis(300)));
        assert_eq!(sim.join(workers - 1, false, false, false, false), v);
        let mut at_connect = None;
        for _ in 0..700 {
            sim.run(1);
            if at_connect.is_none() && sim.clients[v].connected {
                at_connect = Some((sim.clients[a].frame_no, sim.clients[a].keyframe_requests));
            }
        }
        let (frame_then, asks_then) = at_connect.expect("connected");
        let pid = sim.clients[a].pid.clone();
        let mid = sim.clients[v]
            .mid_of(&pid, MediaKind::Video)
            .expect("video track");
        let frames = &sim.clients[v].frames[&mid];
        let first = frames.first().expect("a frame");
        assert!(
            first.key,
            "{case}: the first frame is a keyframe: {:?}",
            &frames[..frames.len().min(3)]
        );
        assert!(
            first.n <= frame_then,
            "{case}: it was sent by the publisher before the viewer connected \
             (frame {}, publisher at {frame_then} then)",
            first.n
        );
        // Without simulcast the stream flows and its keyframe is asked for. With it, the
        // publisher alone was sending no layer the viewer wants: dynacast resumed one at the
        // subscription (not at the next housekeeping round, which would be too late here),
        // and a resumed layer starts on a keyframe, so none is asked for.
        let expected = if simulcast { 0 } else { 1 };
        assert_eq!(
            asks_then - asked,
            expected,
            "{case}: keyframes asked for while connecting"
        );
        assert_eq!(
            sim.clients[a].keyframe_requests, asks_then,
            "{case}: none asked for at the connection"
        );
        // And the pictures after it follow on: nothing lost between the kept ones and live.
        let same: Vec<Frame> = frames
            .iter()
            .filter(|f| f.layer == first.layer)
            .copied()
            .collect();
        assert!(complete(&same) && same.len() > 10, "{case}: {same:?}");
        assert!(
            sim.cores
                .iter()
                .map(|c| c.counts.keyframes_replayed)
                .sum::<u64>()
                >= 1
        );
    }
}

/// vendor/str0m change 7: mids and rids are made without a `String` and read without
/// `str::trim`; what they hold is unchanged (each char one byte, `_` for anything not
/// ASCII alphanumeric, at most 16 bytes, space-padded and trimmed when read).
#[test]
fn mids_and_rids_keep_their_text() {
    use str0m::media::Mid;
    for (given, kept) in [
        ("0", "0"),
        ("a b", "a_b"),
        ("äx-1", "_x_1"),
        ("0123456789abcdefXYZ", "0123456789abcdef"),
        ("", ""),
    ] {
        assert_eq!(&*Mid::from(given), kept, "mid {given:?}");
        assert_eq!(
            &*Rid::from(given),
            &kept[..kept.len().min(8)],
            "rid {given:?}"
        );
    }
}

/// A worker makes its DTLS certificate once: every participant it serves sees the same
/// fingerprint (no key pair generated inside a join), and media flows both ways with it.
#[test]
fn a_worker_presents_one_dtls_certificate_to_everyone() {
    let mut sim = Sim::new(2, 0);
    let a = sim.join(0, true, true, false, false);
    let b = sim.join(0, true, true, false, false);
    let c = sim.join(1, true, true, false, false);
    sim.run(2000);
    let fingerprint = |c: usize| {
        let sdps: Vec<String> = sim.clients[c]
            .msgs
            .iter()
            .filter_map(|m| match m {
                ServerMsg::Offer { sdp } | ServerMsg::Answer { sdp } => Some(sdp.clone()),
                _ => None,
            })
            .collect();
        let fp: Vec<String> = sdps
            .iter()
            .flat_map(|s| s.lines())
            .filter(|l| l.starts_with("a=fingerprint:"))
            .map(str::to_owned)
            .collect();
        assert!(!fp.is_empty(), "client {c} got the server's SDP");
        assert!(
            fp.iter().all(|f| *f == fp[0]),
            "one certificate per session"
        );
        fp[0].clone()
    };
    assert_eq!(
        fingerprint(a),
        fingerprint(b),
        "the same worker, the same certificate"
    );
    assert_ne!(fingerprint(a), fingerprint(c), "each worker made its own");
    for (viewer, publisher) in [(a, b), (b, a), (c, a)] {
        let v = sim.clients[viewer].frames_from(publisher as u32, true);
        assert!(
            v.len() > 20 && complete(&v),
            "{viewer} sees {publisher}: {}",
            v.len()
        );
    }
}

/// The worker's certificate is kept for a day, then a new one is made (the generated ones
/// are valid for a year; a long-running worker never presents an expired one).
#[test]
fn a_worker_makes_a_new_dtls_certificate_after_a_day() {
    let mut sim = Sim::new(1, 0);
    let t0 = sim.now;
    let core = &mut sim.cores[0];
    let first = core.dtls_fingerprint(t0);
    assert!(first.is_some());
    assert_eq!(
        core.dtls_fingerprint(t0 + Duration::from_secs(23 * 3600)),
        first
    );
    let next = core.dtls_fingerprint(t0 + Duration::from_secs(24 * 3600 + 1));
    assert!(
        next.is_some() && next != first,
        "a new certificate after a day"
    );
    assert_eq!(
        core.dtls_fingerprint(t0 + Duration::from_secs(30 * 3600)),
        next
    );
}
