//! Helpers shared by the hectl tests that run a real daemon.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The headend binary beside hectl (built by `cargo test --workspace`; built here if not).
pub(crate) fn headend() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_hectl")).with_file_name("headend");
    if !path.is_file() {
        let ok = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "headend"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "building headend");
    }
    path
}

/// `headend run`, killed when dropped.
pub(crate) struct Daemon(pub(crate) Child);

impl Daemon {
    /// `headend run --config cfg`, once on air (its first line, within 15 s).
    pub(crate) fn run(cfg: &Path) -> Daemon {
        let mut daemon = Daemon(
            Command::new(headend())
                .args(["run", "--config"])
                .arg(cfg)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut out = daemon.0.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut b = [0u8; 1];
            while out.read(&mut b).unwrap_or(0) == 1 {
                if b[0] == b'\n' {
                    let _ = tx.send(());
                    break;
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(15))
            .expect("the daemon did not start");
        daemon
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A command's stdout and stderr, together.
pub(crate) fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A third-party program, if `name arg` runs (`arg`: the switch it answers with its version),
/// or `None` to skip outside CI. Under `CI=true` a missing one fails the test: scripts/test
/// installs it, and the real check never silently disappears.
pub(crate) fn tool<'a>(name: &'a str, arg: &str) -> Option<&'a str> {
    let found = Command::new(name)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(name);
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(!ci, "{name} is required (scripts/test installs it)");
    eprintln!("skipping: {name} not installed (set CI=true to make this fatal)");
    None
}
