//! The only types roles share: the messages they send each other.
//!
//! Roles never import each other; they hold `Recipient<M>` for the messages here, and the
//! wiring in `node` decides whether a recipient is a local actor or a proxy to another host.
//! Commands are named verb+noun (`AllocateServers`), events in the past tense.
//!
//! # Allocation (apiserver → allocateserver)
//! When a meeting is created (and again at join if its assignment is gone) the apiserver sends
//! [`AllocateServers`] with the owner's email and the meeting's times (both 0 for an instant
//! meeting), and gets the `host:port` of an sfuserver and a turnserver. For notes files it sends
//! [`AllocateFileServer`]. These are exactly the questions of the seed's HTTP protocol
//! (`Kind=SFUTURN&Email&BeginAt&EndAt`, `Kind=FS&Email`), so an enterprise's own allocator
//! answers them over HTTP and the built-in one answers in-process. [`AllocationError::NotReady`]
//! is the seed's non-200: "no capacity right now, ask the user to wait a moment".

//!
//! # Signaling (client ↔ sfuserver, JSON over WebSocket)
//! The join answer's `sfu.signal_url` is a WebSocket. The client's first message is
//! `{"type":"join","token":…}`; the sfuserver checks the token with the deployment secret
//! alone (signature, expiry, meeting, that it names this sfuserver) and answers `joined` with
//! the people already there. Then:
//! - **Negotiation.** Either side may offer. The client offers its own tracks (camera,
//!   microphone, screen) and labels each send m-line with a `source`; the server offers
//!   whenever others' tracks come or go, sending `tracks` (mid → participant and source)
//!   right before each `offer`. One negotiation at a time on each side. When offers cross
//!   (glare) the **server is polite**: it drops its own pending offer, answers the client's,
//!   and offers its changes again afterwards; the **client is impolite**: it ignores a server
//!   offer that arrives while its own offer is pending.
//! - **Media** flows over one UDP port per media worker; the server advertises exactly its
//!   configured address as its only ICE candidate.
//! - **Presence**: `participant_joined`, `participant_left` (with a reason), `mute`,
//!   `hand`, `active_speaker`, `chat`, `reaction` (one a second per person), `spotlight` (a
//!   host's choice for everyone), `quality` (each participant's loss and RTT as the server
//!   measures them, every 2 s). `layer` tells the server the size a received video is shown
//!   at, so it picks the simulcast layer (0×0 pauses it).
//! - **Errors**: a bad message gets `error` and the session goes on; `closed` (removed, ended,
//!   replaced, locked, bad token, timeout) ends it. `ping` → `pong`; the server pings too.
//!
//! # Participation (sfuserver → apiserver)
//! [`ParticipationChanged`] reports joins and leaves for the meeting's history. Host actions
//! travel the other way as [`ControlRoom`].

pub mod allocate;
pub mod files;
pub mod nodes;
pub mod room;
pub mod signal;

pub use nodes::{NodeInfo, NodeLoad, NodeRole, NodesChanged};
pub use room::{
    ChatPosted, ControlRefused, ControlRoom, HostActed, ParticipationChanged, RoomAction,
};

pub use allocate::{
    AllocateFileServer, AllocateServers, AllocationError, FsAssignment, ServerAssignment,
};
