//! `eit_week`: generating and packetising 7 days of EIT schedule for 300 channels (issue #5).
//!
//! Builds a realistic week per channel (half-hour programmes, 48 a day, Chinese titles and
//! 100–200 character descriptions, genre and rating), then measures, single-threaded:
//!
//! - (a) the full build of every channel's EIT schedule (tables 0x50..) and its packetisation
//!   into 188-byte TS packets on PID 0x12 (`playout::psi::packetize_section`, as
//!   `Mux::set_table` does): wall and CPU time, sections, packets, bytes, peak RSS and the
//!   size of the incremental cache (`epg::eit_cache::EitSchedule`);
//! - (b) one edit (one programme's title, tomorrow 20:00, on one channel): the update of that
//!   channel, and a scheduler pass over every channel with only that one changed;
//! - (c) a day rollover on every channel.
//!
//! There is no peer for EIT generation here: TSDuck is not installable on this machine and
//! ffmpeg cannot generate an EIT. The reference is the from-scratch path,
//! `epg::si::eit_schedule` plus packetisation of every section, on the same input.
//!
//! `cargo run --release -p benches --bin eit_week -- --channels 300 --days 7`

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use chrono::{Duration, NaiveDate};
use clap::Parser;
use epg::eit_cache::{EitSchedule, Update};
use epg::si::{eit_schedule, Charset, Event};
use playout::psi::packetize_section;
use playout::ts::Pid;

const EIT_PID: u16 = 0x12;
const TS_PACKET: usize = 188;

#[derive(Parser)]
#[command(about = "EIT schedule generation and packetisation, full and incremental")]
struct Args {
    /// Channels (services).
    #[arg(long, default_value_t = 300)]
    channels: usize,
    /// Days of schedule (tables of 4 days each).
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Repetitions of the one-edit measurements (the median is shown).
    #[arg(long, default_value_t = 21)]
    reps: usize,
    /// Code texts in GB 2312 instead of UTF-8.
    #[arg(long)]
    gb2312: bool,
}

const TITLES: &[&str] = &[
    "新闻联播",
    "朝闻天下",
    "今日说法",
    "焦点访谈",
    "动物世界",
    "天气预报",
    "体育新闻",
    "国家宝藏",
    "经典咏流传",
    "健康之路",
    "法治在线",
    "中国新闻",
    "电视剧：人世间",
    "电视剧：山海情",
    "纪录片：航拍中国",
    "少儿动画：熊出没",
    "电影：流浪地球",
    "开心辞典",
    "致富经",
    "等着我",
];

const SENTENCES: &[&str] = &[
    "本期节目聚焦国内外重大新闻事件，带您第一时间了解最新动态。",
    "记者深入一线，走访多个城市，记录普通人的奋斗故事。",
    "专家做客演播室，解读政策背后的深层含义与未来走向。",
    "镜头跟随考察队穿越高原与峡谷，展现壮美的自然风光。",
    "剧中主人公面对家庭与事业的双重考验，做出了艰难的选择。",
    "节目现场邀请多位嘉宾，围绕热点话题展开精彩讨论。",
    "今晚的比赛中，两支队伍展开激烈角逐，比分交替上升。",
    "本集讲述了一件珍贵文物跨越千年的传奇经历。",
    "小朋友们将跟随主人公一起探索森林，学习保护环境的知识。",
    "医生提醒观众注意季节变化，合理饮食，适量运动。",
    "律师以真实案例为线索，讲解与日常生活密切相关的法律知识。",
    "乡村振兴带来新变化，农民通过电商把特产卖到全国各地。",
];

const GENRES: &[u8] = &[0x20, 0x20, 0x10, 0x30, 0x40, 0x50, 0x90, 0x60];
const AGES: &[u8] = &[0, 0, 0, 0, 8, 12, 15, 18];

/// A small deterministic generator (xorshift64*), so every run sees the same week.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `days` days of half-hour programmes from `first` 00:00 UTC for one channel.
fn channel_week(rng: &mut Rng, first: NaiveDate, days: u32) -> Vec<Event> {
    let midnight = first.and_hms_opt(0, 0, 0).unwrap_or_default();
    (0..i64::from(days) * 48)
        .map(|k| {
            let title = TITLES[rng.below(TITLES.len())];
            let title = if title.contains('：') {
                format!("{title} 第{}集", 1 + rng.below(40))
            } else {
                title.to_owned()
            };
            let len = 100 + rng.below(101);
            let mut desc = String::new();
            while desc.chars().count() < len {
                desc.push_str(SENTENCES[rng.below(SENTENCES.len())]);
            }
            let extended: String = desc.chars().take(len).collect();
            Event {
                event_id: (k + 1) as u16,
                start: midnight + Duration::minutes(30 * k),
                duration_s: 1800,
                running_status: 1,
                language: "zho".into(),
                title,
                text: String::new(),
                extended,
                content: Some(GENRES[rng.below(GENRES.len())]),
                min_age: AGES[rng.below(AGES.len())],
            }
        })
        .collect()
}

/// Wall and CPU seconds of `f`.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let (w0, c0) = (Instant::now(), cpu_s());
    let out = f();
    (out, w0.elapsed().as_secs_f64(), cpu_s() - c0)
}

/// CPU time of this process (all threads; it has one).
fn cpu_s() -> f64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .map_or(0.0, |t| t.tv_sec() as f64 + t.tv_nsec() as f64 * 1e-9)
}

/// A field of /proc/self/status in kB (VmRSS, VmHWM).
fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Sections into TS packets on PID 0x12, continuity counter carried on.
fn packetize<'a>(sections: impl IntoIterator<Item = &'a [u8]>, cc: &mut u8) -> Bytes {
    let mut out = BytesMut::new();
    for s in sections {
        *cc = packetize_section(Pid::from_bits(EIT_PID), s, *cc, &mut out);
    }
    out.freeze()
}

/// The sections of the tables an update changed, packetised.
fn packetize_changed(s: &EitSchedule, u: &Update, cc: &mut u8) -> Bytes {
    let changed = s
        .tables()
        .filter(|t| u.changed_tables.contains(&t.table_id))
        .flat_map(|t| t.sections.iter().map(|b| &b[..]));
    packetize(changed, cc)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Row {
    what: String,
    wall_s: f64,
    cpu_s: f64,
    segments: String,
    sections: String,
    packets: String,
    bytes: usize,
}

fn ms(s: f64) -> String {
    if s < 0.01 {
        format!("{:.1} µs", s * 1e6)
    } else {
        format!("{:.1} ms", s * 1e3)
    }
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.channels > 0 && args.reps > 0,
        "channels and reps must be > 0"
    );
    let charset = if args.gb2312 {
        Charset::Gb2312
    } else {
        Charset::Utf8
    };
    let today = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap_or_default();
    let tomorrow = today + Duration::days(1);
    let (tsid, onid) = (1u16, 0x2001u16);
    let sid = |c: usize| 101 + c as u16;
    let rss_start = status_kb("VmRSS");
    // One day more than the window, so the rollover has a new day to encode.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut weeks: Vec<Vec<Event>> = (0..args.channels)
        .map(|_| channel_week(&mut rng, today, args.days + 1))
        .collect();
    let event_count: usize = weeks.iter().map(Vec::len).sum();
    let rss_events = status_kb("VmRSS");
    let scratch = |weeks: &[Vec<Event>], day: NaiveDate| -> anyhow::Result<(usize, usize)> {
        let (mut sections, mut bytes) = (0, 0);
        for (c, w) in weeks.iter().enumerate() {
            let s = eit_schedule(sid(c), tsid, onid, 0, w, day, args.days, charset)?;
            let mut cc = 0;
            let ts = packetize(s.iter().map(Vec::as_slice), &mut cc);
            sections += s.len();
            bytes += ts.len();
        }
        Ok((sections, bytes))
    };
    // Warm-up (not reported): the allocator's first growth would be charged to whoever runs first.
    scratch(&weeks, today)?;
    let hwm_scratch = status_kb("VmHWM");

    // (a) Full build: the incremental builder's first update, and from scratch.
    let mut rows = Vec::new();
    let rss_before_cache = status_kb("VmRSS");
    let (built, wall, cpu) = timed(|| -> anyhow::Result<_> {
        let mut caches = Vec::with_capacity(args.channels);
        let (mut segments, mut sections, mut bytes) = (0, 0, 0);
        for (c, w) in weeks.iter().enumerate() {
            let mut s = EitSchedule::new(sid(c), tsid, onid, args.days, charset);
            let u = s.update(w, today)?;
            let mut cc = 0;
            let ts = packetize_changed(&s, &u, &mut cc);
            segments += u.segments_encoded;
            sections += u.sections_emitted;
            bytes += ts.len();
            caches.push((s, cc));
        }
        Ok((caches, segments, sections, bytes))
    });
    let (mut caches, total_segments, total_sections, total_bytes) = built?;
    let rss_cache = status_kb("VmRSS");
    let cache_heap: usize = caches.iter().map(|(s, _)| s.heap_bytes()).sum();
    let section_bytes: usize = caches
        .iter()
        .flat_map(|(s, _)| s.sections())
        .map(Bytes::len)
        .sum();
    let total_packets = total_bytes / TS_PACKET;
    rows.push(Row {
        what: "(a) full build, incremental builder (first update)".into(),
        wall_s: wall,
        cpu_s: cpu,
        segments: total_segments.to_string(),
        sections: total_sections.to_string(),
        packets: total_packets.to_string(),
        bytes: total_bytes,
    });
    let (full, wall_full, cpu_full) = timed(|| scratch(&weeks, today));
    let (full_sections, full_bytes) = full?;
    anyhow::ensure!(
        (full_sections, full_bytes) == (total_sections, total_bytes),
        "both paths must give the same sections"
    );
    rows.push(Row {
        what: "(a) full build, from scratch (eit_schedule)".into(),
        wall_s: wall_full,
        cpu_s: cpu_full,
        segments: total_segments.to_string(),
        sections: full_sections.to_string(),
        packets: (full_bytes / TS_PACKET).to_string(),
        bytes: full_bytes,
    });
    let hwm_a = status_kb("VmHWM");

    // (b) One edit: channel 0, tomorrow 20:00, title changed (alternately, so each
    // repetition is a real change).
    let k = 48 + 40;
    let original = weeks[0][k].title.clone();
    let ch0_sections = caches[0].0.sections().len();
    let ch0_packets: usize = caches[0]
        .0
        .sections()
        .iter()
        .map(|s| (s.len() + 1).div_ceil(TS_PACKET - 4))
        .sum();
    let (mut inc, mut inc_cpu, mut all, mut all_cpu, mut full1, mut full1_cpu) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut last = (Update::default(), 0usize);
    let mut pass = (0usize, 0usize, 0usize);
    for rep in 0..args.reps {
        weeks[0][k].title = if rep % 2 == 0 {
            "特别报道：冬季旅游安全提示".into()
        } else {
            original.clone()
        };
        let (s, cc) = &mut caches[0];
        let (r, w, c) = timed(|| -> anyhow::Result<_> {
            let u = s.update(&weeks[0], today)?;
            let ts = packetize_changed(s, &u, cc);
            Ok((u, ts.len()))
        });
        last = r?;
        inc.push(w);
        inc_cpu.push(c);
        // The same edit from scratch: the whole channel again.
        let (r, w, c) = timed(|| -> anyhow::Result<_> {
            let s = eit_schedule(sid(0), tsid, onid, 0, &weeks[0], today, args.days, charset)?;
            Ok(packetize(s.iter().map(Vec::as_slice), &mut 0).len())
        });
        r?;
        full1.push(w);
        full1_cpu.push(c);
        // A scheduler pass: every channel offered its week, only channel 0 changed (it was
        // already brought up to date above, so flip it once more).
        weeks[0][k].title.push('！');
        let (r, w, c) = timed(|| -> anyhow::Result<_> {
            let (mut segs, mut secs, mut bytes) = (0, 0, 0);
            for (c, ((s, cc), week)) in caches.iter_mut().zip(&weeks).enumerate() {
                let u = s.update(week, today)?;
                anyhow::ensure!(c == 0 || u.sections_emitted == 0, "only channel 0 changed");
                segs += u.segments_encoded;
                secs += u.sections_emitted;
                bytes += packetize_changed(s, &u, cc).len();
            }
            Ok((segs, secs, bytes))
        });
        pass = r?;
        all.push(w);
        all_cpu.push(c);
    }
    let (u, edit_bytes) = last;
    rows.push(Row {
        what: "(b) one edit, that channel, incremental".into(),
        wall_s: median(inc),
        cpu_s: median(inc_cpu),
        segments: format!("{} of {}", u.segments_encoded, caches[0].0.segment_count()),
        sections: format!("{} of {ch0_sections}", u.sections_emitted),
        packets: format!("{} of {ch0_packets}", edit_bytes / TS_PACKET),
        bytes: edit_bytes,
    });
    rows.push(Row {
        what: "(b) one edit, that channel, from scratch".into(),
        wall_s: median(full1),
        cpu_s: median(full1_cpu),
        segments: caches[0].0.segment_count().to_string(),
        sections: ch0_sections.to_string(),
        packets: ch0_packets.to_string(),
        bytes: ch0_packets * TS_PACKET,
    });
    rows.push(Row {
        what: format!("(b) one edit, pass over all {} channels", args.channels),
        wall_s: median(all),
        cpu_s: median(all_cpu),
        segments: format!("{} of {total_segments}", pass.0),
        sections: format!("{} of {total_sections}", pass.1),
        packets: format!("{} of {total_packets}", pass.2 / TS_PACKET),
        bytes: pass.2,
    });
    let edit_tables = u.changed_tables.clone();

    // (c) Day rollover on every channel.
    let (r, wall_roll, cpu_roll) = timed(|| -> anyhow::Result<_> {
        let (mut segs, mut secs, mut tables, mut bytes) = (0, 0, 0, 0);
        for ((s, cc), week) in caches.iter_mut().zip(&weeks) {
            let u = s.update(week, tomorrow)?;
            segs += u.segments_encoded;
            secs += u.sections_emitted;
            tables += u.changed_tables.len();
            bytes += packetize_changed(s, &u, cc).len();
        }
        Ok((segs, secs, tables, bytes))
    });
    let (roll_segs, roll_secs, roll_tables, roll_bytes) = r?;
    let all_sections: usize = caches.iter().map(|(s, _)| s.sections().len()).sum();
    let all_tables: usize = caches.iter().map(|(s, _)| s.tables().count()).sum();
    rows.push(Row {
        what: "(c) day rollover, all channels, incremental".into(),
        wall_s: wall_roll,
        cpu_s: cpu_roll,
        segments: format!("{roll_segs} of {total_segments}"),
        sections: format!("{roll_secs} of {all_sections}"),
        packets: (roll_bytes / TS_PACKET).to_string(),
        bytes: roll_bytes,
    });
    let (r, wall_roll_full, cpu_roll_full) = timed(|| scratch(&weeks, tomorrow));
    let (roll_full_secs, roll_full_bytes) = r?;
    rows.push(Row {
        what: "(c) day rollover, all channels, from scratch".into(),
        wall_s: wall_roll_full,
        cpu_s: cpu_roll_full,
        segments: total_segments.to_string(),
        sections: roll_full_secs.to_string(),
        packets: (roll_full_bytes / TS_PACKET).to_string(),
        bytes: roll_full_bytes,
    });
    let hwm_end = status_kb("VmHWM");

    println!(
        "EIT schedule: {} channels × {} days, {event_count} events ({} generated days per channel), {charset:?}, single thread",
        args.channels,
        args.days,
        args.days + 1
    );
    println!("peer: none for EIT generation (TSDuck not installable here, ffmpeg does not generate EIT); reference: from-scratch epg::si::eit_schedule");
    println!();
    println!(
        "| {:<52} | {:>10} | {:>10} | {:>14} | {:>16} | {:>16} | {:>11} |",
        "what", "wall", "CPU", "segments enc.", "sections", "TS packets", "bytes"
    );
    println!(
        "|{:-<54}|{:->12}|{:->12}|{:->16}|{:->18}|{:->18}|{:->13}|",
        "", "", "", "", "", "", ""
    );
    for r in &rows {
        println!(
            "| {:<52} | {:>10} | {:>10} | {:>14} | {:>16} | {:>16} | {:>11} |",
            r.what,
            ms(r.wall_s),
            ms(r.cpu_s),
            r.segments,
            r.sections,
            r.packets,
            r.bytes
        );
    }
    println!();
    println!(
        "ratios (from scratch / incremental, CPU): full build {:.2}x, one edit on its channel {:.1}x, rollover {:.2}x",
        cpu_full / cpu,
        rows[3].cpu_s / rows[2].cpu_s,
        cpu_roll_full / cpu_roll
    );
    println!(
        "one edit: tables changed on that channel {edit_tables:02x?}; rollover: {roll_tables} of {all_tables} tables got a new version"
    );
    println!(
        "memory: RSS at start {}, with the events {}, peak after a from-scratch build {}, peak after (a) {}, peak at the end {}",
        mib(rss_start),
        mib(rss_events),
        mib(hwm_scratch),
        mib(hwm_a),
        mib(hwm_end)
    );
    println!(
        "cache: {} by heap_bytes() ({} of it sections), RSS growth while building it {}",
        mib(cache_heap as u64 / 1024),
        mib(section_bytes as u64 / 1024),
        mib(rss_cache.saturating_sub(rss_before_cache))
    );
    Ok(())
}
