//! Throughput of the playout core, in bytes per second: the demuxer over a fixture, whole
//! splice + mux renders in memory, and the TR 101 290 monitor against the input analyser over
//! a channel's output. `cargo bench -p benches --bench core`.

use std::time::Duration;

use benches::{fixture, playlist, render};
use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use playout::analyse::{Analyser, AnalyserConfig};
use playout::demux::{Demux, DemuxEvent};
use playout::monitor::{Monitor, MonitorConfig};
use playout::offline::BATCH;
use playout::schedule::{resolve, Body, Clip, Entry, MediaId, MediaInfo, Start, Utc};
use playout::ts::PACKET_SIZE;

/// Reads of 1024 packets, as `headend`'s file source does.
const CHUNK: usize = 1024 * PACKET_SIZE;

fn demux(c: &mut Criterion) {
    let data = fixture("e.ts");
    let mut g = c.benchmark_group("demux");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("e.ts in 1024-packet chunks", |b| {
        b.iter(|| {
            let mut d = Demux::new();
            let mut pes_starts = 0u64;
            let mut on = |ev: DemuxEvent<'_>| {
                if let DemuxEvent::Packet { packet, .. } = ev {
                    pes_starts += u64::from(packet.pusi());
                }
            };
            let mut at = 0;
            while at < data.len() {
                let end = (at + CHUNK).min(data.len());
                d.push(data.slice(at..end), &mut on);
                at = end;
            }
            d.finish();
            black_box((pes_starts, d.stats()))
        })
    });
    g.bench_function("e.ts in one push", |b| {
        b.iter(|| {
            let mut d = Demux::new();
            let mut packets = 0u64;
            d.push(data.clone(), &mut |ev| {
                if let DemuxEvent::Packet { .. } = ev {
                    packets += 1;
                }
            });
            black_box(packets)
        })
    });
    g.finish();
}

/// What the engine adds per station output and the live input per feed: the TR 101 290
/// monitor (PCR accuracy on; no SI in this render) over 10 s of a channel at 8 Mbit/s in
/// 7-packet datagrams, timed as they would leave; beside it the analyser every live input
/// already runs over the same datagrams.
fn monitor(c: &mut Criterion) {
    const MUXRATE: u64 = 8_000_000;
    let data = benches::rendered_abce(MUXRATE, Duration::from_secs(10));
    let datagrams: Vec<Bytes> = data
        .chunks_exact(7 * PACKET_SIZE)
        .map(|d| data.slice_ref(d))
        .collect();
    let ns = 7 * PACKET_SIZE as u64 * 8 * 1_000_000_000 / MUXRATE;
    let mut g = c.benchmark_group("monitor");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("TR 101 290 monitor, 10 s at 8 Mbit/s", |b| {
        b.iter(|| {
            let mut m = Monitor::new(MonitorConfig {
                si: false,
                nit: false,
                pcr_accuracy: true,
            });
            for (k, d) in datagrams.iter().enumerate() {
                m.push(k as u64 * ns, d);
            }
            black_box(m.counts())
        })
    });
    g.bench_function("input analyser, 10 s at 8 Mbit/s", |b| {
        b.iter(|| {
            let mut a = Analyser::new(AnalyserConfig::default());
            for (k, d) in datagrams.iter().enumerate() {
                a.push(k as u64 * ns, d.clone());
            }
            black_box(a.stats())
        })
    });
    g.finish();
}

/// 60 s of one channel over the playlist a, b, c, e (looped), in [`BATCH`] steps into a
/// reused buffer, as `headend render` does.
fn splice_mux(c: &mut Criterion) {
    let items = playlist(&["a.ts", "b.ts", "c.ts", "e.ts"]);
    let duration = Duration::from_secs(60);
    let mut g = c.benchmark_group("render");
    // 1.6 Mb/s: just above the richest item (e.ts, 1.38 Mb/s), so output ~ input plus
    // stuffing; 6 Mb/s: the example channel, mostly stuffing.
    for muxrate in [1_600_000u64, 6_000_000] {
        let out_bytes = duration.as_secs() * muxrate / 8 / PACKET_SIZE as u64 * PACKET_SIZE as u64;
        g.throughput(Throughput::Bytes(out_bytes));
        let name = format!("60 s of a,b,c,e at {} kb/s (output bytes)", muxrate / 1000);
        g.bench_function(name, |b| {
            b.iter_batched(
                || render(items.clone(), muxrate, duration),
                |mut run| {
                    let mut buf = BytesMut::with_capacity(BATCH * PACKET_SIZE);
                    let mut packets = 0;
                    while !run.done() {
                        buf.clear();
                        packets += run.step(&mut buf, BATCH);
                        while run.mux().poll_event().is_some() {}
                    }
                    black_box(packets)
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

/// The whole render into one buffer with [`playout::offline::Offline::run_to_end`].
fn run_to_end(c: &mut Criterion) {
    let items: Vec<Option<Bytes>> = playlist(&["a.ts", "b.ts", "c.ts", "e.ts"]);
    let muxrate = 1_600_000u64;
    let duration = Duration::from_secs(60);
    let mut g = c.benchmark_group("render");
    let out_bytes = duration.as_secs() * muxrate / 8 / PACKET_SIZE as u64 * PACKET_SIZE as u64;
    g.throughput(Throughput::Bytes(out_bytes));
    g.bench_function("60 s at 1600 kb/s, run_to_end into one buffer", |b| {
        b.iter_batched(
            || render(items.clone(), muxrate, duration),
            |mut run| {
                let mut out = BytesMut::new();
                run.run_to_end(&mut out);
                black_box(out.len())
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// A week of 10,000 entries: a grid of 2,500 hard starts, each followed by three short items,
/// over 20 media, with filler in the gaps.
fn week() -> (Vec<Entry>, Vec<Clip>, Vec<MediaInfo>) {
    const S: u64 = 1_000_000_000;
    let media: Vec<MediaInfo> = (0..20u64)
        .map(|i| MediaInfo {
            duration: if i < 15 {
                (100 + i * 10) * S
            } else {
                (10 + i) * S
            },
        })
        .collect();
    let step = 7 * 24 * 3600 * S / 2500;
    let mut entries = Vec::new();
    for k in 0..2500u64 {
        entries.push(Entry {
            start: Start::Hard(Utc((k * step) as i64)),
            body: Body::Clip(Clip::whole(MediaId((k % 15) as u32))),
        });
        for j in 0..3 {
            entries.push(Entry {
                start: Start::Follow,
                body: Body::Clip(Clip::whole(MediaId(15 + j))),
            });
        }
    }
    let filler = (15..20).map(|m| Clip::whole(MediaId(m))).collect();
    (entries, filler, media)
}

fn schedule(c: &mut Criterion) {
    let (entries, filler, media) = week();
    let until = Utc(7 * 24 * 3600 * 1_000_000_000);
    let mut g = c.benchmark_group("schedule");
    g.bench_function("resolve a 10,000-entry week", |b| {
        b.iter(|| black_box(resolve(&entries, &filler, &media, Utc(0), until).unwrap()))
    });
    let timeline = resolve(&entries, &filler, &media, Utc(0), until).unwrap();
    let mut t = 0i64;
    g.bench_function("what is on air (at) in that week", |b| {
        b.iter(|| {
            t = (t + 7_777_777_777_777) % until.0;
            black_box(timeline.at(Utc(t)))
        })
    });
    g.finish();
}

criterion_group! {
    name = core;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = demux, splice_mux, run_to_end, schedule, monitor
}
criterion_main!(core);
