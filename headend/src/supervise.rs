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
