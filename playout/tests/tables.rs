//! Tables the muxer repeats (DVB SI): each section once per interval, sections of one table at
//! least 25 ms apart, in slots that would be stuffing, with continuity counters and the
//! muxrate intact.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use playout::check::{check, CheckLimits};
use playout::mux::{Mux, MuxConfig};
use playout::offline::{MemorySource, Offline, BATCH};
use playout::splice::{SpliceConfig, Splicer};
use playout::time::SYSTEM_CLOCK_HZ;
use playout::ts::{Pid, TsPacket, PACKET_SIZE};

#[test]
fn tables_repeat_at_their_interval() {
    let muxrate = 3_000_000;
    let clip = Bytes::from(
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/media/a.ts"
        ))
        .unwrap(),
    );
    let total = Offline::<MemorySource>::packets_for(Duration::from_secs(10), muxrate);
    let mut run = Offline::new(
        Mux::new(
            MuxConfig::new(muxrate),
            vec![Splicer::new(SpliceConfig::new(1), 1)],
        ),
        vec![MemorySource::new(vec![Some(clip)])],
        total,
    );
    // Two sections (one of them 3 packets long) every second on PID 0x11.
    let small = vec![0x42u8; 100];
    let big = vec![0x42u8; 500];
    run.mux()
        .set_table(Pid::from_bits(0x11), 0x42, &[&small, &big], SYSTEM_CLOCK_HZ);
    let mut out = BytesMut::new();
    while !run.done() {
        run.step(&mut out, BATCH);
        while run.mux().poll_event().is_some() {}
    }
    // Section starts on PID 0x11, and when (slot → seconds).
    let starts: Vec<f64> = out
        .chunks_exact(PACKET_SIZE)
        .enumerate()
        .filter_map(|(k, raw)| {
            let p = TsPacket::new(Bytes::copy_from_slice(raw)).ok()?;
            (p.pid() == Pid::from_bits(0x11) && p.pusi())
                .then(|| k as f64 * 188.0 * 8.0 / muxrate as f64)
        })
        .collect();
    assert!(
        (19..=21).contains(&starts.len()),
        "{} sections in 10 s",
        starts.len()
    );
    for w in starts.windows(2) {
        let gap = w[1] - w[0];
        assert!((0.025..=0.55).contains(&gap), "sections {gap} s apart");
    }
    let limits = CheckLimits {
        muxrate_bps: Some(muxrate),
        ..CheckLimits::default()
    };
    let r = check(&out, &limits);
    assert!(r.violations(&limits).is_empty(), "{r}");
    assert_eq!(r.cc_error_count, 0);
    assert!(run.mux().stats().si_packets >= 19 * 2);
}
