//! Room control, sans-IO like the rest of the core: roles (owner, co-host, participant,
//! guest), the lobby, host actions, chat with history and private messages.
//!
//! # Who may do what
//! Hosts are the owner and co-hosts (named in the meeting's settings, or promoted in the
//! meeting by a host). Every host may do every host action; the owner's own role cannot be
//! changed, and when the owner leaves the co-hosts keep their powers. A host action comes
//! either from the apiserver (`WorkerCmd::Control`, given to every worker) or from a host's
//! signaling (`ClientMsg::Host`): its worker applies it and passes it on as `Ctl::Control`,
//! so each worker applies what concerns its own participants from its replica of the room.
//!
//! # The lobby
//! A participant whose join token says `lobby` (and who is not a host, nor admitted before
//! under the same participant id) gets a slot but is no member of the room: it is told
//! `waiting`, gets no media, no presence, no chat, no participation event (so the apiserver
//! gives it no notes or files), and any message but `ping`/`leave` is refused (`in_lobby`).
//! Every worker keeps the room's lobby list (`Ctl::WaiterUp`/`WaiterDown`) and sends it to its
//! local hosts whenever it changes. A host admits or denies one or all; the waiter's own
//! worker carries it out (a denied one is told why and its participant id stays refused).

use std::collections::HashMap;
use std::time::Instant;

use super::{Core, Ctl, MAX_REMOVED_PER_MEETING, Outputs, PeerKey, ToClient};
use crate::ids::{MeetingId, ParticipantId};
use crate::proto::signal::{ChatLine, CloseReason, LobbyEntry, MediaKind, Role, ServerMsg, Source};
use crate::proto::{ControlRefused, RoomAction};

/// Chat messages a room keeps for late joiners (the oldest are forgotten first).
pub const MAX_CHAT_HISTORY: usize = 500;
/// The longest chat message, in characters.
pub const MAX_CHAT_CHARS: usize = 4000;
/// People waiting in one room's lobby at most; more are refused (`lobby_full`).
pub const MAX_WAITING: usize = 200;

/// Whether the participant `pid` (a host or not) may read `line`.
pub fn may_read(line: &ChatLine, pid: &str, host: bool) -> bool {
    line.participant_id == pid
        || match (&line.to, line.to_hosts) {
            (Some(to), _) => to == pid,
            (None, true) => host,
            (None, false) => true,
        }
}

impl Core {
    // ---- the lobby -------------------------------------------------------------------

    /// A participant that just joined waits: the room's lobby gets it, hosts are told.
    pub(super) fn wait_in_lobby(&mut self, now: Instant, slot: usize, out: &mut Outputs) {
        let Some(p) = self.peers[slot].as_mut() else {
            return;
        };
        p.lobby = true;
        let (meeting, key) = (p.meeting, p.key);
        let entry = LobbyEntry {
            participant_id: p.pid.clone(),
            name: p.name.clone(),
            role: p.role,
            since: crate::util::now(),
        };
        out.clients.push(ToClient::Msg {
            slot,
            msg: ServerMsg::Waiting {
                participant_id: p.pid.clone(),
                name: p.name.clone(),
            },
        });
        let Some(room) = self.rooms.get_mut(&meeting) else {
            return;
        };
        if room.waiting.len() >= MAX_WAITING {
            // Not yet listed anywhere: only the slot goes.
            self.close_peer(
                now,
                slot,
                CloseReason::LobbyFull,
                "Too many people are waiting to be let in; try again later.",
                out,
            );
            return;
        }
        room.waiting.push((key, entry.clone()));
        self.broadcast_ctl(
            Ctl::WaiterUp {
                meeting,
                key,
                entry,
            },
            out,
        );
        self.send_lobby(meeting, out);
        tracing::info!(worker = self.cfg.worker, %meeting, participant = %key.slot, "waiting in the lobby");
    }

    /// A waiter left the lobby (any worker): the replica forgets it, hosts are told.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_waiter_down(
        &mut self,
        now: Instant,
        meeting: MeetingId,
        key: PeerKey,
        pid: ParticipantId,
        admitted: bool,
        denied: bool,
        out: &mut Outputs,
    ) {
        if denied {
            let list = self.denied.entry(meeting).or_default();
            if list.len() >= MAX_REMOVED_PER_MEETING {
                list.pop_front();
            }
            list.push_back((pid.clone(), now));
        }
        let Some(room) = self.rooms.get_mut(&meeting) else {
            return;
        };
        room.waiting.retain(|(k, _)| *k != key);
        if admitted {
            room.admitted.insert(pid);
        }
        if room.members.is_empty() && room.waiting.is_empty() && room.empty_since.is_none() {
            room.empty_since = Some(now);
        }
        self.send_lobby(meeting, out);
    }

    /// The lobby as it is now, to every local host of the room.
    pub(super) fn send_lobby(&self, meeting: MeetingId, out: &mut Outputs) {
        let Some(room) = self.rooms.get(&meeting) else {
            return;
        };
        for &s in &room.local {
            if self.peers[s].as_ref().is_some_and(|p| p.host) {
                self.send_lobby_to(meeting, s, out);
            }
        }
    }

    pub(super) fn send_lobby_to(&self, meeting: MeetingId, slot: usize, out: &mut Outputs) {
        let Some(room) = self.rooms.get(&meeting) else {
            return;
        };
        out.clients.push(ToClient::Msg {
            slot,
            msg: ServerMsg::Lobby {
                waiting: room.waiting.iter().map(|(_, e)| e.clone()).collect(),
            },
        });
    }

    /// Admits a local waiter: it enters the room like any newcomer.
    fn admit_local(&mut self, now: Instant, slot: usize, out: &mut Outputs) {
        if !self.peers[slot].as_ref().is_some_and(|p| p.lobby) {
            return;
        }
        // A fresh engine: the one made at join has waited, unused, for who knows how long.
        let mut rtc = self.rtc_config().build(now);
        if let Ok(c) = str0m::Candidate::host(self.cfg.advertised, "udp") {
            rtc.add_local_candidate(c);
        }
        let Some(p) = self.peers[slot].as_mut() else {
            return;
        };
        p.rtc = rtc;
        p.next_timeout = now;
        p.lobby = false;
        let (meeting, key, pid) = (p.meeting, p.key, p.pid.clone());
        self.broadcast_ctl(
            Ctl::WaiterDown {
                meeting,
                key,
                pid: pid.clone(),
                admitted: true,
                denied: false,
            },
            out,
        );
        self.apply_waiter_down(now, meeting, key, pid, true, false, out);
        self.enter(now, slot, out);
    }

    /// Turns a local waiter away, with the host's reason.
    fn deny_local(&mut self, now: Instant, slot: usize, reason: Option<&str>, out: &mut Outputs) {
        let Some(p) = self.peers[slot].as_ref() else {
            return;
        };
        if !p.lobby {
            return;
        }
        let message = match reason.map(str::trim).filter(|r| !r.is_empty()) {
            Some(r) => format!("A host did not let you in: {r}"),
            None => "A host did not let you in.".to_string(),
        };
        out.clients.push(ToClient::Msg {
            slot,
            msg: ServerMsg::Closed {
                reason: CloseReason::Denied,
                message,
            },
        });
        self.remove_peer(now, slot, CloseReason::Denied, out);
    }

    /// Local waiters of `meeting` the action names (`None`: all), by slot.
    fn local_waiters(&self, meeting: MeetingId, pid: Option<&ParticipantId>) -> Vec<usize> {
        let Some(room) = self.rooms.get(&meeting) else {
            return Vec::new();
        };
        room.waiting
            .iter()
            .filter(|(k, e)| {
                k.worker == self.cfg.worker && pid.is_none_or(|p| *p == e.participant_id)
            })
            .map(|(k, _)| k.slot as usize)
            .filter(|&s| self.peers[s].as_ref().is_some_and(|p| p.lobby))
            .collect()
    }

    // ---- host actions ----------------------------------------------------------------

    /// `ClientMsg::Host` from a local participant: hosts only; applied here and passed on.
    pub(super) fn host_action(
        &mut self,
        now: Instant,
        slot: usize,
        action: RoomAction,
        out: &mut Outputs,
    ) {
        let Some(p) = self.peers[slot].as_ref() else {
            return;
        };
        let err = |code: &str, m: String| ToClient::Msg {
            slot,
            msg: ServerMsg::error(code, m),
        };
        if !p.host {
            out.clients.push(err(
                "not_host",
                "Only the meeting's hosts can do that.".into(),
            ));
            return;
        }
        if let Err(e) = action.check() {
            out.clients.push(err("bad_action", e));
            return;
        }
        let (meeting, by) = (p.meeting, p.name.clone());
        // Passed on first: every worker then applies it to the same state of its replica
        // (what applying it here changes reaches the others after it).
        self.broadcast_ctl(
            Ctl::Control {
                meeting,
                action: action.clone(),
                by: by.clone(),
            },
            out,
        );
        let pid = p.pid.clone();
        let refused = self
            .apply_action(now, meeting, action.clone(), Some(&by), out)
            .err();
        if let Some(e) = &refused {
            out.clients.push(err("not_done", e.to_string()));
        }
        out.events
            .push(super::CoreEvent::HostActed(crate::proto::HostActed {
                meeting,
                by: pid,
                by_name: by,
                action,
                refused: refused.map(|e| e.to_string()),
            }));
    }

    /// Applies a host action to this worker's participants (every worker gets it). `by`: the
    /// host's name when a host in the meeting asked (else the apiserver did, for the owner).
    pub(super) fn apply_action(
        &mut self,
        now: Instant,
        meeting: MeetingId,
        action: RoomAction,
        by: Option<&str>,
        out: &mut Outputs,
    ) -> Result<(), ControlRefused> {
        if let RoomAction::Remove { participant_id } = &action {
            // Remembered even when the participant is not (or no longer) here: it could
            // come back with its token to any worker.
            let list = self.removed.entry(meeting).or_default();
            if !list.iter().any(|(p, _)| p == participant_id) {
                if list.len() >= MAX_REMOVED_PER_MEETING {
                    list.pop_front();
                }
                list.push_back((participant_id.clone(), now));
            }
        }
        let Some(room) = self.rooms.get_mut(&meeting) else {
            return Err(ControlRefused::NoMeeting);
        };
        let byname = by.map(str::to_string);
        let member = |pid: &ParticipantId| -> Result<(PeerKey, Role), ControlRefused> {
            room.members
                .iter()
                .find(|m| m.info.participant_id == *pid)
                .map(|m| (m.key, m.info.role))
                .ok_or(ControlRefused::NoParticipant)
        };
        match action {
            RoomAction::Lock | RoomAction::Unlock => {
                room.locked = matches!(action, RoomAction::Lock);
                let locked = room.locked;
                self.broadcast_local(meeting, None, &ServerMsg::Locked { locked }, out);
            }
            RoomAction::Mute { participant_id } => {
                let (key, _) = member(&participant_id)?;
                self.force_mute(key, out);
                let m = ServerMsg::Mute {
                    participant_id,
                    kind: MediaKind::Audio,
                    muted: true,
                    by_host: true,
                    by: byname,
                };
                self.broadcast_local(meeting, None, &m, out);
            }
            RoomAction::MuteAll => {
                let targets: Vec<(PeerKey, ParticipantId)> = room
                    .members
                    .iter()
                    .filter(|m| !m.info.role.is_host())
                    .map(|m| (m.key, m.info.participant_id.clone()))
                    .collect();
                for (key, pid) in targets {
                    self.force_mute(key, out);
                    let m = ServerMsg::Mute {
                        participant_id: pid,
                        kind: MediaKind::Audio,
                        muted: true,
                        by_host: true,
                        by: byname.clone(),
                    };
                    self.broadcast_local(meeting, None, &m, out);
                }
            }
            RoomAction::AskUnmute => {
                let by = byname.unwrap_or_default();
                for &s in &room.local {
                    if self.peers[s].as_ref().is_some_and(|p| !p.host) {
                        out.clients.push(ToClient::Msg {
                            slot: s,
                            msg: ServerMsg::AskUnmute { by: by.clone() },
                        });
                    }
                }
            }
            RoomAction::LowerHands | RoomAction::LowerHand { .. } => {
                let only = match &action {
                    RoomAction::LowerHand { participant_id } => {
                        member(participant_id)?;
                        Some(participant_id.clone())
                    }
                    _ => None,
                };
                let targets: Vec<(PeerKey, ParticipantId)> = room
                    .members
                    .iter()
                    .filter(|m| m.info.hand_raised)
                    .filter(|m| only.as_ref().is_none_or(|o| *o == m.info.participant_id))
                    .map(|m| (m.key, m.info.participant_id.clone()))
                    .collect();
                for (key, pid) in targets {
                    if let Some(slot) = self.local_slot(key) {
                        if let Some(p) = self.peers[slot].as_mut() {
                            p.hand = false;
                            p.hand_at = 0;
                        }
                        self.member_changed(slot, out);
                    } else if let Some(m) = self
                        .rooms
                        .get_mut(&meeting)
                        .and_then(|r| r.members.iter_mut().find(|m| m.key == key))
                    {
                        // Its own worker's MemberInfo follows; meanwhile the replica agrees.
                        m.info.hand_raised = false;
                        m.info.hand_at = 0;
                    }
                    let m = ServerMsg::Hand {
                        participant_id: pid,
                        raised: false,
                        at: 0,
                        by: byname.clone(),
                    };
                    self.broadcast_local(meeting, None, &m, out);
                }
            }
            RoomAction::Remove { participant_id } => {
                let (key, role) = member(&participant_id)?;
                if role == Role::Owner && by.is_some() {
                    return Err(ControlRefused::NotAllowed(
                        "The meeting's owner cannot be removed.".into(),
                    ));
                }
                if let Some(slot) = self.local_slot(key) {
                    self.close_peer(
                        now,
                        slot,
                        CloseReason::Removed,
                        "The host removed you from the meeting.",
                        out,
                    );
                }
            }
            RoomAction::End => {
                for s in room.local.clone() {
                    self.close_peer(
                        now,
                        s,
                        CloseReason::Ended,
                        "The host ended the meeting for everyone.",
                        out,
                    );
                }
                // The lobby empties too: nobody is left to let them in.
                for s in self.local_waiters(meeting, None) {
                    self.close_peer(
                        now,
                        s,
                        CloseReason::Ended,
                        "The host ended the meeting for everyone.",
                        out,
                    );
                }
            }
            RoomAction::Admit { participant_id } => {
                if let Some(pid) = &participant_id
                    && !room.waiting.iter().any(|(_, e)| e.participant_id == *pid)
                {
                    return Err(ControlRefused::NotWaiting);
                }
                for s in self.local_waiters(meeting, participant_id.as_ref()) {
                    self.admit_local(now, s, out);
                }
            }
            RoomAction::Deny {
                participant_id,
                reason,
            } => {
                if let Some(pid) = &participant_id
                    && !room.waiting.iter().any(|(_, e)| e.participant_id == *pid)
                {
                    return Err(ControlRefused::NotWaiting);
                }
                for s in self.local_waiters(meeting, participant_id.as_ref()) {
                    self.deny_local(now, s, reason.as_deref(), out);
                }
            }
            RoomAction::SetRole {
                participant_id,
                cohost,
            } => {
                let (key, role) = member(&participant_id)?;
                if role == Role::Owner {
                    return Err(ControlRefused::NotAllowed(
                        "The owner's role cannot change.".into(),
                    ));
                }
                if let Some(slot) = self.local_slot(key)
                    && let Some(p) = self.peers[slot].as_mut()
                {
                    p.host = cohost;
                    p.role = if cohost { Role::Cohost } else { p.base_role };
                    let m = ServerMsg::Role {
                        participant_id,
                        role: p.role,
                        host: p.host,
                        by: byname.unwrap_or_default(),
                    };
                    self.member_changed(slot, out);
                    self.broadcast(meeting, None, m, out);
                    if cohost {
                        self.send_lobby_to(meeting, slot, out);
                    }
                }
            }
            RoomAction::Permissions { cameras, screens } => {
                room.cameras = cameras;
                room.screens = screens;
                let local = room.local.clone();
                let m = ServerMsg::Permissions {
                    cameras,
                    screens,
                    by: byname,
                };
                self.broadcast_local(meeting, None, &m, out);
                for s in local {
                    self.stop_forbidden(now, s, out);
                }
            }
        }
        Ok(())
    }

    /// An invitee claims host powers: allowed only when the meeting allows it for them and no
    /// host (owner or co-host) is in the room; they become a co-host.
    pub(super) fn claim_host(&mut self, slot: usize, out: &mut Outputs) {
        let Some(p) = self.peers[slot].as_ref() else {
            return;
        };
        let refuse = |code: &str, m: &str| ToClient::Msg {
            slot,
            msg: ServerMsg::error(code, m),
        };
        if p.host {
            out.clients
                .push(refuse("not_done", "You are a host already."));
            return;
        }
        if !p.may_claim_host {
            out.clients.push(refuse(
                "not_allowed",
                "Only invitees may claim host, and only where the meeting allows it.",
            ));
            return;
        }
        let meeting = p.meeting;
        let hosts = self
            .rooms
            .get(&meeting)
            .is_some_and(|r| r.members.iter().any(|m| m.info.role.is_host()));
        if hosts {
            out.clients.push(refuse(
                "host_present",
                "A host is in the meeting; ask them instead.",
            ));
            return;
        }
        let Some(p) = self.peers[slot].as_mut() else {
            return;
        };
        p.host = true;
        p.role = Role::Cohost;
        let m = ServerMsg::Role {
            participant_id: p.pid.clone(),
            role: Role::Cohost,
            host: true,
            by: p.name.clone(),
        };
        tracing::info!(%meeting, participant = %p.pid, "an invitee claimed host");
        out.events
            .push(super::CoreEvent::HostActed(crate::proto::HostActed {
                meeting,
                by: p.pid.clone(),
                by_name: p.name.clone(),
                action: RoomAction::SetRole {
                    participant_id: p.pid.clone(),
                    cohost: true,
                },
                refused: None,
            }));
        self.member_changed(slot, out);
        self.broadcast(meeting, None, m, out);
        self.send_lobby_to(meeting, slot, out);
    }

    /// The slot of `key` if it is a participant of this worker.
    fn local_slot(&self, key: PeerKey) -> Option<usize> {
        let slot = key.slot as usize;
        (key.worker == self.cfg.worker
            && self
                .peers
                .get(slot)
                .and_then(Option::as_ref)
                .is_some_and(|p| p.key == key))
        .then_some(slot)
    }

    /// A host muted `key`: if it is ours, its audio is dropped until it unmutes itself.
    fn force_mute(&mut self, key: PeerKey, out: &mut Outputs) {
        if let Some(slot) = self.local_slot(key)
            && let Some(p) = self.peers[slot].as_mut()
        {
            p.forced_mute = true;
            self.member_changed(slot, out);
        }
    }

    /// Why an offer of `slot` declaring `sources` is not allowed now, if it is not.
    pub(super) fn forbidden_source(
        &self,
        slot: usize,
        sources: &HashMap<String, Source>,
    ) -> Option<String> {
        let p = self.peers[slot].as_ref()?;
        if p.host {
            return None;
        }
        let room = self.rooms.get(&p.meeting)?;
        let screens = room.screens && !p.screens_hosts_only;
        sources.values().find_map(|s| match s {
            Source::Camera if !room.cameras => {
                Some("The hosts turned cameras off for participants.".to_string())
            }
            Source::Screen | Source::ScreenAudio if !screens => {
                Some("Only hosts may share their screen in this meeting.".to_string())
            }
            _ => None,
        })
    }

    /// Stops what participant `slot` publishes that is no longer allowed (a host turned
    /// cameras or screens off): the track ends for every viewer, as if the client had.
    fn stop_forbidden(&mut self, now: Instant, slot: usize, out: &mut Outputs) {
        let Some(p) = self.peers[slot].as_mut() else {
            return;
        };
        if p.host {
            return;
        }
        let Some(room) = self.rooms.get(&p.meeting) else {
            return;
        };
        let screens = room.screens && !p.screens_hosts_only;
        let cameras = room.cameras;
        let meeting = p.meeting;
        let mut down = Vec::new();
        for (i, t) in p.tracks_in.iter_mut().enumerate() {
            let forbidden = match t.source {
                Source::Camera => !cameras,
                Source::Screen | Source::ScreenAudio => !screens,
                Source::Microphone => false,
            };
            if forbidden && t.active {
                t.active = false;
                down.push(super::TrackKey {
                    peer: p.key,
                    track: i as u16,
                });
            }
        }
        for key in down {
            self.broadcast_ctl(
                Ctl::TrackDown {
                    meeting,
                    track: key,
                },
                out,
            );
            self.apply_track_down(now, meeting, key, out);
        }
    }

    // ---- chat ------------------------------------------------------------------------

    /// A chat message from a local participant: checked, then kept and delivered on every
    /// worker (each gives it to its own readers).
    pub(super) fn chat(
        &mut self,
        slot: usize,
        text: String,
        to: Option<ParticipantId>,
        to_hosts: bool,
        out: &mut Outputs,
    ) {
        let Some(p) = self.peers[slot].as_ref() else {
            return;
        };
        let refuse = |code: &str, m: &str| ToClient::Msg {
            slot,
            msg: ServerMsg::error(code, m),
        };
        let text = text.trim();
        if text.is_empty() || text.chars().count() > MAX_CHAT_CHARS {
            out.clients.push(refuse(
                "bad_chat",
                "A chat message has 1 to 4000 characters.",
            ));
            return;
        }
        if to.is_some() && to_hosts {
            out.clients.push(refuse(
                "bad_chat",
                "A message goes to one person or to the hosts, not both.",
            ));
            return;
        }
        let meeting = p.meeting;
        if let Some(to) = &to
            && !self.rooms.get(&meeting).is_some_and(|r| {
                r.members
                    .iter()
                    .any(|m| m.info.participant_id == *to && *to != p.pid)
            })
        {
            out.clients.push(refuse(
                "bad_chat",
                "That person is not in the meeting any more.",
            ));
            return;
        }
        let line = ChatLine {
            participant_id: p.pid.clone(),
            name: p.name.clone(),
            text: text.to_string(),
            at: crate::util::now(),
            to,
            to_hosts,
        };
        self.broadcast_ctl(
            Ctl::Chat {
                meeting,
                line: line.clone(),
            },
            out,
        );
        out.events
            .push(super::CoreEvent::Chat(crate::proto::ChatPosted {
                meeting,
                line: line.clone(),
            }));
        self.deliver_chat(meeting, line, out);
    }

    /// Keeps `line` in the room's history and gives it to the local participants who may
    /// read it (everyone, or the sender and its one recipient, or the sender and the hosts).
    pub(super) fn deliver_chat(&mut self, meeting: MeetingId, line: ChatLine, out: &mut Outputs) {
        let Some(room) = self.rooms.get_mut(&meeting) else {
            return;
        };
        if room.chat.len() >= MAX_CHAT_HISTORY {
            room.chat.pop_front();
        }
        room.chat.push_back(line.clone());
        for &s in &room.local {
            if let Some(p) = self.peers[s].as_ref()
                && may_read(&line, &p.pid.0, p.host)
            {
                out.clients.push(ToClient::Msg {
                    slot: s,
                    msg: ServerMsg::Chat(line.clone()),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(to: Option<&str>, to_hosts: bool) -> ChatLine {
        ChatLine {
            participant_id: "a".into(),
            name: "A".into(),
            text: "hi".into(),
            at: 0,
            to: to.map(ParticipantId::from),
            to_hosts,
        }
    }

    #[test]
    fn who_reads_what() {
        let all = line(None, false);
        assert!(may_read(&all, "b", false));
        let to_b = line(Some("b"), false);
        assert!(may_read(&to_b, "a", false) && may_read(&to_b, "b", false));
        assert!(!may_read(&to_b, "c", false) && !may_read(&to_b, "c", true));
        let hosts = line(None, true);
        assert!(may_read(&hosts, "a", false) && may_read(&hosts, "h", true));
        assert!(!may_read(&hosts, "c", false));
    }
}
