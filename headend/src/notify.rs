//! The service manager's notification protocol (systemd's `sd_notify`, `Type=notify`): a
//! datagram to the Unix socket `$NOTIFY_SOCKET` (a path, or `@name` for an abstract one)
//! saying `READY=1` once the daemon is on air, `STOPPING=1` when it shuts down, and, when
//! `$WATCHDOG_USEC` asks for a watchdog, `WATCHDOG=1` every half of it — but only while every
//! engine thread has gone round its loop within that half: a thread stuck (a hang, a
//! livelock) lets the manager's watchdog run out and restart the service. Without
//! `$NOTIFY_SOCKET` nothing is sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// When each engine thread last went round its loop (ms since [`start`]), by shard.
static BEATS: Mutex<Vec<Arc<AtomicU64>>> = Mutex::new(Vec::new());
static START: OnceLock<Instant> = OnceLock::new();

fn ms() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// An engine thread's heartbeat: [`Beat::now`] each time round its loop.
pub(crate) struct Beat(Arc<AtomicU64>);

impl Beat {
    pub(crate) fn now(&self) {
        self.0.store(ms(), Ordering::Relaxed);
    }
}

impl Drop for Beat {
    fn drop(&mut self) {
        // A thread that ended (the shutdown) is no longer watched.
        BEATS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|b| !Arc::ptr_eq(b, &self.0));
    }
}

/// Registers the calling engine thread with the watchdog.
pub(crate) fn heartbeat() -> Beat {
    let b = Arc::new(AtomicU64::new(ms()));
    BEATS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(b.clone());
    Beat(b)
}

/// Sends `state` (`READY=1`, ...) to `$NOTIFY_SOCKET`, if set; an error is logged once.
pub(crate) fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, state) {
        static LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !LOGGED.swap(true, Ordering::Relaxed) {
            tracing::warn!(socket = ?path, error = %e, "cannot notify the service manager");
        }
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(std::path::Path::new(path))?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// Starts the watchdog thread when `$WATCHDOG_USEC` asks for one (and `$WATCHDOG_PID`, if
/// set, is this process).
pub(crate) fn start_watchdog() {
    START.get_or_init(Instant::now);
    let Some(usec) = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|u| *u > 0)
    else {
        return;
    };
    if let Some(pid) = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    {
        if pid != std::process::id() {
            return;
        }
    }
    let half = Duration::from_micros(usec / 2);
    let spawned = std::thread::Builder::new()
        .name("watchdog".to_owned())
        .spawn(move || loop {
            std::thread::sleep(half);
            let now = ms();
            let stale: Vec<usize> = BEATS
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .enumerate()
                .filter(|(_, b)| now.saturating_sub(b.load(Ordering::Relaxed)) > half.as_millis() as u64)
                .map(|(i, _)| i)
                .collect();
            if stale.is_empty() {
                notify("WATCHDOG=1");
            } else {
                tracing::error!(?stale, "an engine thread has not gone round its loop for half the watchdog interval: the watchdog is not fed");
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the watchdog thread");
    }
}
