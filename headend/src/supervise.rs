//! Panics. A panic in work that can be contained ([`contain`]: one station's share of an
//! engine thread) is logged and handed back to the caller, which rebuilds what panicked; the
//! other channels keep their timing and the process keeps running. A panic on an HTTP thread
//! ([`contain_thread`]) is logged and costs the request it served. A panic anywhere else
//! ends the process: the scheduler, the EIT builder, the SimulCrypt links and the inputs'
//! receivers are threads of one process, and one that died quietly would leave channels
//! unscheduled or frozen while the process looks alive. Instead, the panic is logged with
//! the thread's name and where it happened, and the process exits with status 70
//! (EX_SOFTWARE), so that systemd (`Restart=on-failure`) starts it again.

use std::cell::{Cell, RefCell};

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

/// Installs the hook; call once at the start of `main`.
pub(crate) fn install_panic_hook() {
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
