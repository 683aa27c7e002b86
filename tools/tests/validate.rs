//! `hectl validate` as a scheduler runs it: a good day passes; each kind of mistake is named
//! with the file, line, item and field, and the exit status is non-zero.

use std::path::{Path, PathBuf};
use std::process::Command;

fn media_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/media")
}

/// Runs `hectl validate` on `text`; (success, stdout).
fn validate(text: &str, extra: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("2026-11-23.toml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hectl"))
        .arg("validate")
        .arg(&file)
        .arg("--media")
        .arg(media_dir())
        .args(["--timezone", "Asia/Shanghai"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).replace(&file.display().to_string(), "FILE");
    (out.status.success(), stdout)
}

const DAY: &str = r#"date = "2026-11-23"

[[item]]
start = "00:00:00"
file = "a.ts"
title = "早间新闻"

[[item]]
start = "19:00:00"
file = "c.ts"
title = "新闻联播"

[[item]]
file = "b.ts"
in = "00:00:01"
out = "00:00:04"
"#;

#[test]
fn a_good_day_passes() {
    let (ok, out) = validate(DAY, &["--filler", "e.ts"]);
    assert!(ok, "{out}");
    assert!(
        out.starts_with("FILE: OK (3 items, 4 media files,"),
        "{out}"
    );
    let (ok, _) = validate(DAY, &["--filler", "e.ts", "--charset", "gb2312"]);
    assert!(ok, "GB 2312 holds the day's Chinese titles");
    let (ok, json) = validate(DAY, &["--filler", "e.ts", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["items"], 3);
}

#[test]
fn mistakes_are_named() {
    let cases: [(&str, &[&str], &str); 7] = [
        (
            DAY,
            &["--filler", "e.ts", "--charset", "latin"],
            "FILE: line 3: item 1 (00:00:00 \"早间新闻\"): title: `早` (character 1) cannot be encoded in the channel's SI charset Latin",
        ),
        (
            &DAY.replace("title = \"新闻联播\"", "title = \"新闻联播\"\ndescription = \"今天𠀀\""),
            &["--filler", "e.ts", "--charset", "gb2312"],
            "FILE: line 8: item 2 (19:00:00 \"新闻联播\"): description: `𠀀` (character 3) cannot be encoded in the channel's SI charset Gb2312",
        ),
        (
            &DAY.replace("c.ts", "bad/empty.ts"),
            &["--filler", "e.ts"],
            "FILE: line 8: item 2 (19:00:00 \"新闻联播\"): bad/empty.ts: unreadable media: not an MPEG transport stream",
        ),
        (
            &DAY.replace("00:00:04", "00:00:09"),
            &["--filler", "e.ts"],
            "FILE: line 13: item 3 (follows b.ts): out: in 1.000 s / out 9.000 s outside the media's 5.000 s",
        ),
        (
            DAY,
            &[],
            "FILE: gap from 00:00:05 to 19:00:00 (68395.000 s) and no filler (give --filler FILE)",
        ),
        (
            DAY,
            &["--filler", "bad/empty.ts"],
            "FILE: filler bad/empty.ts: unreadable media: not an MPEG transport stream",
        ),
        (
            &DAY.replace("start = \"19:00:00\"", "start = \"19:00:00\"\nmode = \"firm\""),
            &["--filler", "e.ts"],
            "FILE: line 8: item 2 (19:00:00 \"新闻联播\"): mode: `firm`, expected hard or soft",
        ),
    ];
    for (text, extra, expected) in cases {
        let (ok, out) = validate(text, extra);
        assert!(!ok, "{expected}: passed");
        assert!(out.contains(expected), "expected {expected:?} in:\n{out}");
    }
}

#[test]
fn live_items_are_checked_against_the_channels_inputs() {
    let day = r#"date = "2026-11-23"

[[item]]
start = "00:00:00"
file = "a.ts"

[[item]]
start = "19:00:00"
live = "studio-a"
duration = "1h"
backup = ["studio-b"]
title = "直播"

[[item]]
file = "b.ts"
"#;
    // Without --input the names are not checked; the live item lasts its duration.
    let (ok, out) = validate(day, &["--filler", "e.ts"]);
    assert!(ok, "{out}");
    assert!(
        out.starts_with("FILE: OK (3 items, 3 media files,"),
        "{out}"
    );
    let (ok, _) = validate(
        day,
        &[
            "--filler", "e.ts", "--input", "studio-a", "--input", "studio-b",
        ],
    );
    assert!(ok);
    let (ok, out) = validate(day, &["--filler", "e.ts", "--input", "studio-a"]);
    assert!(!ok);
    assert_eq!(
        out.trim(),
        "FILE: line 7: item 2 (19:00:00 \"直播\"): backup: the channel has no live input named `studio-b`"
    );
}

#[test]
fn a_file_not_there_yet_is_a_warning() {
    let (ok, out) = validate(&DAY.replace("c.ts", "news.ts"), &["--filler", "e.ts"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("FILE: warning: line 8: item 2 (19:00:00 \"新闻联播\"): `news.ts` does not exist (yet): until it does, its slot airs the filler"),
        "{out}"
    );
    assert!(out.contains("FILE: OK ("), "{out}");
}

/// Files outside the media directory are refused, as the daemon refuses them: an absolute
/// path, `..` (each with its line and field).
#[test]
fn files_outside_the_media_directory_are_refused() {
    let day = "date = \"2026-11-23\"\n[[item]]\nstart = \"00:00:00\"\nfile = \"/etc/hostname\"\n\
               [[item]]\nblock = [\"a.ts\", \"../media/b.ts\"]\nloop_for = \"1m\"\n";
    let (ok, out) = validate(day, &["--filler", "e.ts"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("FILE: line 2: item 1 (00:00:00 /etc/hostname): file: `/etc/hostname`: an absolute path"),
        "{out}"
    );
    assert!(out.contains("block: `../media/b.ts`: `..`"), "{out}");
}
