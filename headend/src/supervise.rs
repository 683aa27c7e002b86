//! A panic anywhere ends the process. The engine, the scheduler, the EIT builder, the
//! SimulCrypt links and the HTTP workers are threads of one process: one that died quietly
//! would leave channels unscheduled or frozen while the process looks alive. Instead, the
//! panic is logged with the thread's name and where it happened, and the process exits with
//! status 70 (EX_SOFTWARE), so that systemd (`Restart=on-failure`) starts it again.

/// Exit status after a panic (sysexits' EX_SOFTWARE).
pub(crate) const PANIC_STATUS: i32 = 70;

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
        tracing::error!(thread = %name, at = %place, panic = %what, "a thread panicked: exiting so that the service is restarted");
        // Also on stderr as it is: logging may be what failed.
        eprintln!("headend: thread `{name}` panicked at {place}: {what}");
        std::process::exit(PANIC_STATUS);
    }));
}

#[cfg(test)]
mod tests {
    use std::process::Command;

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
