//! How a process tells its roles to stop, and learns that they have.
//!
//! Every role's `start` takes a [`Shutdown`] (the mini-redis shape: a server runs until its
//! shutdown future resolves) and returns a handle holding a [`Stopped`]. The node fires the
//! [`Trigger`] once, on SIGTERM/SIGINT, and then waits for the roles in the order the stop
//! needs (signaling sessions told before the bridge says bye, both before the HTTP server
//! stops): firing is one broadcast, the order lives in the waiting.
//!
//! A watch channel rather than a oneshot: any number of roles, and their helpers on other
//! runtimes (the turnserver's), each hold a clone and all see the one value.

use std::future::Future;
use tokio::sync::{oneshot, watch};

/// Fires the shutdown. Dropping it without firing fires it too: nothing can stop the roles
/// any more, so they are told rather than left waiting for ever.
pub struct Trigger(watch::Sender<bool>);

/// Resolves when the process stops. Cheap to clone; one per role or helper.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A fresh trigger and the shutdown it fires.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Until the trigger fires (or is dropped).
    pub async fn wait(mut self) {
        // An error means the trigger is gone: stop as well.
        let _ = self.0.wait_for(|fired| *fired).await;
    }

    /// Runs `stop` on this thread's runtime once the shutdown fires; the answer resolves when
    /// `stop` has finished.
    pub fn then<F>(self, stop: F) -> Stopped
    where
        F: Future<Output = ()> + 'static,
    {
        let (done, stopped) = Stopped::pair();
        actix_rt::spawn(async move {
            self.wait().await;
            stop.await;
            done.finish();
        });
        stopped
    }
}

/// Resolves once a role has done what it does at a stop.
pub struct Stopped(oneshot::Receiver<()>);

/// The role's side of [`Stopped`]: finished when sent or dropped.
pub struct Done(oneshot::Sender<()>);

impl Stopped {
    pub fn pair() -> (Done, Stopped) {
        let (tx, rx) = oneshot::channel();
        (Done(tx), Stopped(rx))
    }

    pub async fn wait(self) {
        // A dropped sender means the role's stop task is gone: nothing left to wait for.
        let _ = self.0.await;
    }
}

impl Done {
    pub fn finish(self) {
        let _ = self.0.send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn stop_runs_after_the_trigger_and_is_awaited() {
        let (trigger, shutdown) = channel();
        let ran = std::rc::Rc::new(std::cell::Cell::new(false));
        let r = ran.clone();
        let stopped = shutdown.clone().then(async move { r.set(true) });
        tokio::task::yield_now().await;
        assert!(!ran.get());
        trigger.fire();
        stopped.wait().await;
        assert!(ran.get());
        // A late waiter sees the shutdown at once.
        shutdown.wait().await;
    }

    #[actix_rt::test]
    async fn a_dropped_trigger_stops_too() {
        let (trigger, shutdown) = channel();
        drop(trigger);
        shutdown.wait().await;
    }
}
