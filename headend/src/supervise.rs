//! Panics. A panic is a bug, and it costs only what it happened in:
//! - one station's share of an engine thread ([`contain`]): the caller rebuilds the station,
//!   the other channels keep their timing;
//! - one unit of work of a part that serves many channels ([`contain`] around it, then
//!   [`panicked`]): one channel's scheduler round (what was cued is cued again), one EIT
//!   schedule job (the service's tables stay as they were), one SimulCrypt session (the link
//!   reconnects, as after the ECMG went away), one file open or read (the item fails, as a
//!   bad file does), one XMLTV file read, one UDP input's socket;
//! - a thread run by [`spawn_restarting`] (an SRT or HTTP input's receiver, the record's
//!   writer, a webhook's sender): it starts again after a back-off;
//! - a request on an HTTP thread ([`contain_thread`]): that request.
//!
//! Each raises an alarm by part ([`panic_alarms`], shown by `GET /api/record` and counted
//! in `/metrics`), cleared once the part has run [`PANIC_ALARM_HOLD`] without another. A panic
//! anywhere else (a thread not written to be restarted) ends the process, logged with the
//! thread's name and where it happened, with status 70 (EX_SOFTWARE), so that systemd
//! (`Restart=on-failure`) starts it again: a thread that died quietly would leave channels
//! unscheduled or frozen while the process looks alive.
//!
//! The chaos knob `HEADEND_CHAOS_PANIC=PLACE@SECONDS[,PLACE@SECONDS...]` makes each place
//! panic once, that long after the start, to prove all this (tests, the soak): a station's
//! id, or `scheduler:CHANNEL`, `eit-builder`, `scs:CHANNEL`, `input:CHANNEL/INPUT`,
//! `io`, `xmltv`, `record`.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::alarm::{Alarm, AlarmState};

/// Exit status after a panic (sysexits' EX_SOFTWARE).
pub(crate) const PANIC_STATUS: i32 = 70;

thread_local! {
    /// Set while [`contain`] runs its work on this thread.
    static CONTAINED: Cell<bool> = const { Cell::new(false) };
    /// What the hook saw of a contained panic: the message and where.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `work`; a panic in it is logged (thread, place, message) and returned as
/// `Err("MESSAGE at FILE:LINE")` instead of ending the process. What `work` touched may be
/// half-changed: the caller must drop or rebuild it.
pub(crate) fn contain<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    let outer = CONTAINED.with(|c| c.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    CONTAINED.with(|c| c.set(outer));
    result.map_err(|_| {
        CAUGHT
            .with(|c| c.borrow_mut().take())
            .unwrap_or_else(|| "a panic".to_owned())
    })
}

/// Marks the calling thread's panics as contained for good: for the HTTP runtime's threads,
/// where tokio catches a task's panic (the request's connection is dropped, the server goes
/// on). Call it from `on_thread_start`.
pub(crate) fn contain_thread() {
    CONTAINED.with(|c| c.set(true));
}

/// How long a part runs without another panic before its panic alarm clears.
pub(crate) const PANIC_ALARM_HOLD: Duration = Duration::from_secs(30);

/// A part's panic alarm, and when it last panicked.
struct PanicAlarm {
    place: &'static str,
    alarm: Alarm,
    last: Instant,
}

/// Panic alarms by part, process-wide (as the panic hook is).
static PANIC_ALARMS: Mutex<Vec<PanicAlarm>> = Mutex::new(Vec::new());

/// A contained panic of `place` (`scheduler`, `eit builder`, ...): its alarm is raised with
/// `why` (what the part does about it included).
pub(crate) fn panicked(place: &'static str, why: String) {
    let mut all = PANIC_ALARMS.lock().unwrap_or_else(PoisonError::into_inner);
    let i = match all.iter().position(|a| a.place == place) {
        Some(i) => i,
        None => {
            all.push(PanicAlarm {
                place,
                alarm: Alarm::new(place),
                last: Instant::now(),
            });
            all.len() - 1
        }
    };
    all[i].last = Instant::now();
    all[i].alarm.raise(why);
}

/// The panic alarms of the parts that have panicked in this run; one whose part has run
/// [`PANIC_ALARM_HOLD`] since its last panic is cleared first.
pub(crate) fn panic_alarms() -> Vec<AlarmState> {
    let all = PANIC_ALARMS.lock().unwrap_or_else(PoisonError::into_inner);
    all.iter()
        .map(|a| {
            if a.last.elapsed() >= PANIC_ALARM_HOLD {
                a.alarm.clear("no panic since");
            }
            a.alarm.state()
        })
        .collect()
}

/// How long a part rests after `panics` panics in a row (at least 1) before it tries again:
/// 1 s, doubling to a minute.
pub(crate) fn rest_after(panics: u32) -> Duration {
    Duration::from_secs((1u64 << panics.saturating_sub(1).min(6)).min(60))
}

/// Runs `body` on a thread named `name` until it returns; a panic in it is contained, raises
/// the alarm of `place`, and `body` runs again after a back-off (100 ms, doubling to 5 s;
/// back to 100 ms once it ran a minute). `body` starts afresh each time: what it keeps across
/// runs must be whole after a panic.
pub(crate) fn spawn_restarting(
    name: String,
    place: &'static str,
    mut body: impl FnMut() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let mut backoff = Duration::from_millis(100);
            loop {
                let started = Instant::now();
                let Err(why) = contain(&mut body) else { return };
                if started.elapsed() >= Duration::from_secs(60) {
                    backoff = Duration::from_millis(100);
                }
                panicked(
                    place,
                    format!(
                        "thread {name} panicked ({why}): started again after {} ms",
                        backoff.as_millis()
                    ),
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        })
}

/// The chaos knob's places, each with when it is due (after the start) and whether it fired.
type ChaosPlaces = Vec<(String, Duration, AtomicBool)>;

/// The chaos knob, read once; the start it counts from.
static CHAOS: OnceLock<(Instant, ChaosPlaces)> = OnceLock::new();

/// The places of `HEADEND_CHAOS_PANIC` (`PLACE@SECONDS`, comma-separated), with their times.
pub(crate) fn chaos_places() -> Vec<(String, Duration)> {
    let Ok(v) = std::env::var("HEADEND_CHAOS_PANIC") else {
        return Vec::new();
    };
    v.split(',')
        .filter_map(|p| {
            let (place, secs) = p.trim().rsplit_once('@')?;
            let secs: f64 = secs
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s >= 0.0)?;
            Some((place.to_owned(), Duration::from_secs_f64(secs)))
        })
        .collect()
}

/// Panics (once) when the chaos knob names the place `place()` gives and its time has come;
/// `place` is called only while the knob has places to fire.
pub(crate) fn chaos(place: impl FnOnce() -> String) {
    let (start, places) = CHAOS.get_or_init(|| {
        let places = chaos_places()
            .into_iter()
            .map(|(p, d)| (p, d, AtomicBool::new(false)))
            .collect();
        (Instant::now(), places)
    });
    if places.is_empty() || places.iter().all(|p| p.2.load(Ordering::Relaxed)) {
        return;
    }
    let place = place();
    let elapsed = start.elapsed();
    for (p, at, fired) in places {
        if *p == place && elapsed >= *at && !fired.swap(true, Ordering::Relaxed) {
            panic!("chaos: HEADEND_CHAOS_PANIC={p}@{}", at.as_secs_f64());
        }
    }
}

/// Installs the hook; call once at the start of `main`.
pub(crate) fn install_panic_hook() {
    // The chaos knob counts from here.
    chaos(String::new);
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed").to_owned();
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        let place = info
            .location()
            .map_or_else(String::new, |l| format!("{}:{}", l.file(), l.line()));
        if CONTAINED.with(Cell::get) {
            tracing::error!(thread = %name, at = %place, panic = %what, "a panic, contained: what panicked is rebuilt");
            CAUGHT.with(|c| *c.borrow_mut() = Some(format!("{what} at {place}")));
            return;
        }
        tracing::error!(thread = %name, at = %place, panic = %what, "a thread panicked: exiting so that the service is restarted");
        // Also on stderr as it is: logging may be what failed.
        eprintln!("headend: thread `{name}` panicked at {place}: {what}");
        std::process::exit(PANIC_STATUS);
    }));
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    /// A panic in a task of a runtime whose threads are contained costs that task only, in a
    /// child process (the hook is process-wide).
    #[test]
    fn a_panicking_http_task_costs_its_request_only() {
        if std::env::var_os("HEADEND_HTTP_PANIC_CHILD").is_some() {
            super::install_panic_hook();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .on_thread_start(super::contain_thread)
                .build()
                .unwrap();
            rt.block_on(async {
                let r = tokio::spawn(async { panic!("an API handler's bug") }).await;
                assert!(r.unwrap_err().is_panic());
                let fine = tokio::spawn(async { 7 }).await.unwrap();
                eprintln!("the runtime goes on: {fine}");
            });
            std::process::exit(0);
        }
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "supervise::tests::a_panicking_http_task_costs_its_request_only",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("HEADEND_HTTP_PANIC_CHILD", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(stderr.contains("the runtime goes on: 7"), "{stderr}");
    }

    /// A contained panic comes back as an error naming it, and the thread goes on; one
    /// outside [`super::contain`] afterwards still ends the process. In a child process (the
    /// hook is process-wide).
    #[test]
    fn a_contained_panic_is_handed_back() {
        if std::env::var_os("HEADEND_CONTAIN_CHILD").is_some() {
            super::install_panic_hook();
            let r: Result<(), String> = super::contain(|| panic!("splicer state broken"));
            let e = r.unwrap_err();
            assert!(
                e.contains("splicer state broken") && e.contains("supervise.rs"),
                "{e}"
            );
            assert_eq!(super::contain(|| 7), Ok(7));
            eprintln!("contained: {e}");
            let _ = std::thread::Builder::new()
                .name("eit".to_owned())
                .spawn(|| panic!("not contained"))
                .unwrap()
                .join();
            std::process::exit(0);
        }
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "supervise::tests::a_contained_panic_is_handed_back",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("HEADEND_CONTAIN_CHILD", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(super::PANIC_STATUS), "{stderr}");
        assert!(
            stderr.contains("contained: splicer state broken")
                && stderr.contains("thread `eit` panicked"),
            "{stderr}"
        );
    }

    /// A thread run by `spawn_restarting` starts again after each panic (with a back-off),
    /// ends when its body returns, and each panic is counted in its place's alarm. In a child
    /// process (the hook is process-wide).
    #[test]
    fn a_restarting_thread_comes_back_after_a_panic() {
        if std::env::var_os("HEADEND_RESTART_CHILD").is_some() {
            super::install_panic_hook();
            let runs = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
            let r = runs.clone();
            let t = super::spawn_restarting("in-x-main".to_owned(), "input receiver", move || {
                if r.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 2 {
                    panic!("a bad datagram");
                }
            })
            .unwrap();
            t.join().unwrap();
            let alarms = super::panic_alarms();
            assert_eq!(alarms.len(), 1, "{alarms:?}");
            assert_eq!(alarms[0].place, "input receiver");
            assert_eq!(alarms[0].count, 2);
            assert!(alarms[0]
                .alarm
                .as_deref()
                .unwrap()
                .contains("a bad datagram"));
            eprintln!("runs: {}", runs.load(std::sync::atomic::Ordering::Relaxed));
            std::process::exit(0);
        }
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "supervise::tests::a_restarting_thread_comes_back_after_a_panic",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("HEADEND_RESTART_CHILD", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(stderr.contains("runs: 3"), "{stderr}");
    }

    /// The chaos knob's places and times; malformed ones are left out.
    #[test]
    fn chaos_places_are_read_from_the_knob() {
        if std::env::var_os("HEADEND_CHAOS_CHILD").is_some() {
            let places = super::chaos_places();
            assert_eq!(
                places,
                [
                    ("a".to_owned(), std::time::Duration::from_secs(3)),
                    (
                        "input:x@y".to_owned(),
                        std::time::Duration::from_millis(1500)
                    ),
                ]
            );
            // Not due yet: nothing happens.
            super::chaos(|| "a".to_owned());
            std::process::exit(0);
        }
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "supervise::tests::chaos_places_are_read_from_the_knob",
                "--exact",
                "--test-threads=1",
            ])
            .env("HEADEND_CHAOS_CHILD", "1")
            .env(
                "HEADEND_CHAOS_PANIC",
                "a@3, input:x@y@1.5,b@-1,c@soon,nothing",
            )
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs itself as a child process that panics on a named thread: the child must exit
    /// with [`super::PANIC_STATUS`], naming the thread and the panic.
    #[test]
    fn a_panic_in_any_thread_ends_the_process_naming_the_thread() {
        if std::env::var_os("HEADEND_PANIC_CHILD").is_some() {
            super::install_panic_hook();
            let _ = std::thread::Builder::new()
                .name("scheduler".to_owned())
                .spawn(|| panic!("schedule store gone"))
                .unwrap()
                .join();
            // Not reached: the hook exits first.
            std::process::exit(0);
        }
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "supervise::tests::a_panic_in_any_thread_ends_the_process_naming_the_thread",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("HEADEND_PANIC_CHILD", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(super::PANIC_STATUS), "{stderr}");
        assert!(
            stderr.contains("thread `scheduler` panicked")
                && stderr.contains("schedule store gone"),
            "{stderr}"
        );
    }
}
