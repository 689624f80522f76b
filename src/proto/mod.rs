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

pub mod allocate;

pub use allocate::{
    AllocateFileServer, AllocateServers, AllocationError, FsAssignment, ServerAssignment,
};
