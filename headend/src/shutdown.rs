//! One shutdown for the whole daemon, in mini-redis' shape: a [`Trigger`] turns every
//! [`Shutdown`] handle (held by the HTTP server, the scheduler, the XMLTV watcher and the
//! alert desk's clock) to "shut down", and [`Trigger::completed`] returns once every handle is
//! gone, that is once each of them has finished. The engine, which sends the last datagrams,
//! stops after that.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

/// Held by each task or thread that must stop on shutdown.
#[derive(Clone)]
pub(crate) struct Shutdown {
    flag: watch::Receiver<bool>,
    /// Dropped with the handle: completion is every sender gone.
    _alive: mpsc::Sender<()>,
}

/// Held by the daemon: starts the shutdown and waits for it.
pub(crate) struct Trigger {
    flag: watch::Sender<bool>,
    done: mpsc::Receiver<()>,
}

impl Trigger {
    /// A trigger and the first handle (clone it for each task).
    pub(crate) fn new() -> (Trigger, Shutdown) {
        let (flag_tx, flag_rx) = watch::channel(false);
        let (alive_tx, alive_rx) = mpsc::channel(1);
        (
            Trigger {
                flag: flag_tx,
                done: alive_rx,
            },
            Shutdown {
                flag: flag_rx,
                _alive: alive_tx,
            },
        )
    }

    /// Tells every handle to stop.
    pub(crate) fn shutdown(&self) {
        self.flag.send_replace(true);
    }

    /// Waits until every handle is dropped, at most `limit`; `false` if some are still held
    /// then (named in the log by the caller).
    pub(crate) async fn completed(mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.done.recv()).await.is_ok()
    }
}

impl Shutdown {
    /// Whether the shutdown has started (for threads, between their steps).
    pub(crate) fn is_shutdown(&self) -> bool {
        *self.flag.borrow()
    }

    /// Returns once the shutdown has started (for tasks, in a `select!`).
    pub(crate) async fn wait(&mut self) {
        let _ = self.flag.wait_for(|s| *s).await;
    }

    /// Sleeps `d` on a thread, waking early on shutdown; `true` once shut down.
    pub(crate) fn sleep(&self, d: Duration) -> bool {
        let step = Duration::from_millis(50);
        let mut left = d;
        while !left.is_zero() {
            if self.is_shutdown() {
                return true;
            }
            let s = left.min(step);
            std::thread::sleep(s);
            left -= s;
        }
        self.is_shutdown()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn completes_when_every_handle_is_gone() {
        let (trigger, shutdown) = Trigger::new();
        let mut task = shutdown.clone();
        let thread = shutdown.clone();
        drop(shutdown);
        let t = std::thread::spawn(move || while !thread.sleep(Duration::from_secs(5)) {});
        let a = tokio::spawn(async move { task.wait().await });
        trigger.shutdown();
        a.await.unwrap();
        t.join().unwrap();
        assert!(trigger.completed(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn a_handle_still_held_is_reported() {
        let (trigger, shutdown) = Trigger::new();
        trigger.shutdown();
        assert!(shutdown.is_shutdown());
        assert!(!trigger.completed(Duration::from_millis(50)).await);
    }
}
