//! `hectl check --muxrate` takes a rate as the config writes it: a 6 Mbit/s render of
//! fixtures/media/a.ts (`headend render` of a channel with `muxrate = "6M"`) passes with
//! `--muxrate "6 Mbit/s"`, `6M` and `6000000`, fails at 5M, and a bad rate is refused with the
//! config's own message (both parse with `playout::units::Bitrate`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn hectl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hectl"))
        .args(args)
        .output()
        .unwrap()
}

/// `headend render` of a.ts at `muxrate` for 5 s into `dir`.
fn render(dir: &Path, muxrate: &str) -> PathBuf {
    let media = root().join("fixtures/media/a.ts");
    let cfg = dir.join("check.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[channel]]\nid = \"a\"\nservice_id = 1\nname = \"A\"\nmuxrate = \"{muxrate}\"\n\
             playlist = [{:?}]\n",
            media.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = dir.join("rendered.ts");
    let o = Command::new(common::headend())
        .args(["render", "--config"])
        .arg(&cfg)
        .args(["--channel", "a", "--duration", "5s", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "render: {}", common::text(&o));
    out
}

#[test]
fn muxrate_accepts_what_the_config_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let file = render(dir.path(), "6M");
    let file = file.to_str().unwrap();
    for rate in ["6 Mbit/s", "6M", "6m", "6000k", "6000000"] {
        let o = hectl(&["check", file, "--muxrate", rate]);
        let text = common::text(&o);
        assert!(o.status.success(), "--muxrate {rate:?}: {text}");
        assert!(text.contains(": OK"), "--muxrate {rate:?}: {text}");
        // TR 101 290 as the daemon counts it on air: every indicator at 0.
        let tr: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("TR 101 290"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .collect();
        assert_eq!(tr.len(), 16, "{text}");
        assert!(tr.iter().all(|l| l.ends_with(" 0")), "{text}");
        assert!(tr[3].contains("1.4 Continuity_count_error"), "{text}");
    }

    // The rate is checked, not only parsed.
    let o = hectl(&["check", file, "--muxrate", "5 Mbit/s"]);
    let text = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("differs from 5000000 b/s"), "{text}");

    // A bad rate is a usage error with the config's wording.
    let o = hectl(&["check", file, "--muxrate", "6X"]);
    let text = common::text(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(
        text.contains("invalid bitrate `6X`: unknown unit, expected a number with an optional k, M or G suffix"),
        "{text}"
    );
    let o = hectl(&["check", file, "--muxrate", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
}
