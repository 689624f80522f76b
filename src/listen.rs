//! The HTTP(S) listener of a process: the socket its service manager passed (socket
//! activation, `sd_listen_fds(3)`), or one bound here from `listen`.
//!
//! Why both: with a systemd `.socket` unit the port is held while the service restarts or
//! upgrades (connections wait in the backlog instead of being refused), and binding a
//! privileged port needs no capability. Tests use the same path: they bind port 0 themselves
//! and hand the socket over, so they know the address before the process starts and never
//! race for a "free" port.
//!
//! The protocol: `LISTEN_PID` is this process's id and `LISTEN_FDS` ≥ 1; the sockets are fds
//! 3, 4, …. The HTTP listener is the first (`ListenStream=` first in the unit);
//! UDP sockets after it are the sfuserver's media sockets ([`media_sockets`]). Without the two
//! variables, or when `LISTEN_PID` names another process (a variable inherited by accident),
//! the configured address is bound as before.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const FIRST_FD: i32 = 3;

/// fd 3 becomes an owned socket at most once per process; a second owner would close it twice.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The same for fds 4 and up.
static MEDIA_TAKEN: AtomicBool = AtomicBool::new(false);

/// The passed listener if there is one, else `want` bound now. Errors tell the operator what
/// to change.
pub fn http_listener(want: SocketAddr) -> anyhow::Result<TcpListener> {
    if let Some(l) = inherited()? {
        tracing::info!(address = %l.local_addr()?, "listening on the socket passed by the service manager (`listen` is not used)");
        return Ok(l);
    }
    TcpListener::bind(want).map_err(|e| {
        anyhow::anyhow!("cannot listen on {want}: {e}; is another server using the port? Change `listen` (--listen)")
    })
}

/// How many sockets `LISTEN_PID`/`LISTEN_FDS` pass this process (0: none, or meant for
/// another process).
fn passed() -> i32 {
    let var = |k: &str| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
    };
    if var("LISTEN_PID") != Some(std::process::id()) {
        return 0;
    }
    var("LISTEN_FDS").map_or(0, |n| i32::try_from(n.min(64)).unwrap_or(0))
}

/// Whether the service manager passed the HTTP listener (and, with `media`, the sfuserver's
/// media sockets too): then those ports are not this process's to bind, or to check.
pub fn handed_over(media: bool) -> bool {
    passed() >= if media { 2 } else { 1 }
}

/// The datagram sockets passed after the HTTP listener (fds 4, 5, ...; `ListenDatagram=` in
/// the unit), in order: the sfuserver's media sockets, one per worker, used instead of binding
/// `sfu.udp_port`. Empty when none were passed.
pub fn media_sockets() -> anyhow::Result<Vec<UdpSocket>> {
    let n = passed();
    if n < 2 || MEDIA_TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for fd in FIRST_FD + 1..FIRST_FD + n {
        // SAFETY: by the protocol checked in `passed`, fds 3 to 3+LISTEN_FDS-1 are open and
        // this process's; `MEDIA_TAKEN` makes this the only owner of fds 4 and up.
        let sock = socket2::Socket::from(unsafe { OwnedFd::from_raw_fd(fd) });
        if sock.r#type().ok() != Some(socket2::Type::DGRAM) {
            anyhow::bail!(
                "LISTEN_FDS: socket {} passed (fd {fd}) is not a UDP socket; after the HTTP listener only media sockets may follow (ListenDatagram=ip:port, one per sfuserver worker)",
                fd - FIRST_FD + 1
            );
        }
        close_on_exec(&sock)?;
        out.push(sock.into());
    }
    Ok(out)
}

fn close_on_exec(sock: &socket2::Socket) -> anyhow::Result<()> {
    // SAFETY: fcntl(2) on a descriptor the caller owns.
    if unsafe { libc::fcntl(sock.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

fn inherited() -> anyhow::Result<Option<TcpListener>> {
    if passed() < 1 || TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(None);
    }
    // SAFETY: by the socket-activation protocol checked in `passed`, fd 3 is open and was given
    // to this process alone; `TAKEN` makes this the only owner.
    let sock = socket2::Socket::from(unsafe { OwnedFd::from_raw_fd(FIRST_FD) });
    let is_tcp = sock.r#type().ok() == Some(socket2::Type::STREAM)
        && sock.local_addr().ok().and_then(|a| a.as_socket()).is_some();
    if !is_tcp {
        anyhow::bail!(
            "LISTEN_FDS: the first socket passed (fd 3) is not a TCP socket; the HTTP listener must come first in the .socket unit (ListenStream=host:port)"
        );
    }
    // Children (provisioning commands) must not inherit it; listening again only sets the
    // backlog when the manager already listens (systemd does).
    close_on_exec(&sock)?;
    sock.listen(1024)?;
    Ok(Some(sock.into()))
}
