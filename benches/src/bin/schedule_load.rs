//! Loading and validating a week of schedules for many channels, as the daemon's scheduler
//! and `hectl validate` do, minus media probing (durations are cached after the first time):
//! read each file, parse it (`epg::schedule`), plan it in the channel's zone and resolve the
//! week's timeline with filler (`playout::schedule`).
//!
//! `cargo run --release -p benches --bin schedule_load -- --channels 300 --days 7 --items 48`

use std::path::Path;
use std::time::Instant;

use clap::Parser;
use epg::schedule::{parse, Tz};
use playout::schedule::{resolve, Clip, MediaId, MediaInfo, Utc};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 300)]
    channels: usize,
    #[arg(long, default_value_t = 7)]
    days: usize,
    /// Items per day: half with a hard start on a grid, half following.
    #[arg(long, default_value_t = 48)]
    items: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench/schedules");
    let _ = std::fs::remove_dir_all(&dir);
    let media: Vec<String> = (0..40).map(|i| format!("media/prog{i:02}.ts")).collect();
    let durations: Vec<MediaInfo> = (0..40u64)
        .map(|i| MediaInfo {
            duration: (600 + i * 60) * 1_000_000_000,
        })
        .collect();
    // Write the files (not timed).
    let step = 86_400 / (args.items / 2).max(1);
    for c in 0..args.channels {
        let cdir = dir.join(format!("ch{c:03}"));
        std::fs::create_dir_all(&cdir)?;
        for d in 0..args.days {
            let date = format!("2026-11-{:02}", 23 + d);
            let mut text = format!("date = \"{date}\"\nrevision = 1\n");
            for k in 0..args.items {
                text.push_str("\n[[item]]\n");
                if k % 2 == 0 {
                    let s = (k / 2) * step;
                    text.push_str(&format!(
                        "start = \"{:02}:{:02}:{:02}\"\n",
                        s / 3600,
                        s / 60 % 60,
                        s % 60
                    ));
                }
                text.push_str(&format!(
                    "file = \"{}\"\ntitle = \"节目 {k} 第{d}天\"\ndescription = \"频道 {c} 的节目介绍。\"\ngenre = \"news\"\n",
                    media[(c + k) % media.len()]
                ));
            }
            std::fs::write(cdir.join(format!("{date}.toml")), text)?;
        }
    }
    let tz: Tz = "Asia/Shanghai".parse().map_err(|_| anyhow::anyhow!("tz"))?;
    let filler = [Clip::whole(MediaId(0))];
    let started = Instant::now();
    let mut segments = 0usize;
    let mut items = 0usize;
    for c in 0..args.channels {
        let mut entries = Vec::new();
        for d in 0..args.days {
            let date = format!("2026-11-{:02}", 23 + d);
            let text = std::fs::read_to_string(dir.join(format!("ch{c:03}/{date}.toml")))?;
            let day = parse(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
            items += day.items.len();
            let planned = day
                .plan(tz, |name| {
                    media
                        .iter()
                        .position(|m| m == name)
                        .map(|i| MediaId(i as u32))
                })
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            entries.extend(planned);
        }
        let from = Utc(1_795_363_200_000_000_000); // 2026-11-22T16:00:00Z = 2026-11-23 00:00 +08
        let until = from.add(args.days as u64 * 86_400 * 1_000_000_000);
        let t = resolve(&entries, &filler, &durations, from, until)
            .map_err(|e| anyhow::anyhow!("ch{c:03}: {e}"))?;
        segments += t.segments().len();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} channels × {} days × {} items = {items} items in {} files: read, parsed, planned and resolved ({segments} segments) in {secs:.3} s",
        args.channels,
        args.days,
        args.items,
        args.channels * args.days
    );
    Ok(())
}
