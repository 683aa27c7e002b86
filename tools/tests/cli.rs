//! hectl's offline helpers: shell completions, and schedule import from CSV and M3U into a
//! file that `hectl validate` accepts.

use std::path::Path;
use std::process::Command;

fn hectl(args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_hectl"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn completions_cover_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let (ok, out) = hectl(&["completions", shell]);
        assert!(ok, "{out}");
        for cmd in ["check", "validate", "schedule", "status", "import"] {
            assert!(out.contains(cmd), "{shell}: {cmd} missing");
        }
    }
}

#[test]
fn imported_schedules_validate() {
    let dir = tempfile::tempdir().unwrap();
    let media = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/media");
    let csv = dir.path().join("day.csv");
    std::fs::write(
        &csv,
        "start,duration,title,file\n00:00:00,,早间,a.ts\n19:00:00,00:00:04,新闻,b.ts\n,,,c.ts\n",
    )
    .unwrap();
    let m3u = dir.path().join("day.m3u");
    std::fs::write(&m3u, "#EXTM3U\n#EXTINF:-1,一\na.ts\n#EXTINF:3,二\ne.ts\n").unwrap();
    for input in [&csv, &m3u] {
        let out = dir.path().join("2026-11-23.toml");
        let (ok, text) = hectl(&[
            "schedule",
            "import",
            input.to_str().unwrap(),
            "--date",
            "2026-11-23",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{text}");
        let mut args = vec![
            "validate",
            out.to_str().unwrap(),
            "--media",
            media.to_str().unwrap(),
        ];
        // Both days leave gaps (the M3U one ends after 8 s): filler fills them.
        args.extend(["--filler", "e.ts"]);
        let (ok, text) = hectl(&args);
        assert!(ok, "{}: {text}", input.display());
    }
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "start,file\n19:00:00,a.ts\n18:00:00,b.ts\n").unwrap();
    let (ok, text) = hectl(&[
        "schedule",
        "import",
        bad.to_str().unwrap(),
        "--date",
        "2026-11-23",
    ]);
    assert!(!ok);
    assert!(text.contains("is not after item 1's start"), "{text}");
}
