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

/// `secs` of a.ts looped, unpaced, at `muxrate`.
fn playing_a(muxrate: u64, secs: u64) -> Offline<MemorySource> {
    let clip = Bytes::from(
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/media/a.ts"
        ))
        .unwrap(),
    );
    let total = Offline::<MemorySource>::packets_for(Duration::from_secs(secs), muxrate);
    Offline::new(
        Mux::new(
            MuxConfig::new(muxrate),
            vec![Splicer::new(SpliceConfig::new(1), 1)],
        ),
        vec![MemorySource::new(vec![Some(clip)])],
        total,
    )
}

#[test]
fn tables_repeat_at_their_interval() {
    let muxrate = 3_000_000;
    let mut run = playing_a(muxrate, 10);
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

/// Big sections (an EIT schedule's are up to 4 KB, 23 packets) at a low muxrate: a PCR, PAT
/// or PMT that falls due goes out between a section's packets, so the PCR interval stays
/// within 40 ms and theirs within 100 ms (sent whole first, one section held the PCR back
/// 35 ms at 1 Mbit/s).
#[test]
fn a_long_section_does_not_hold_the_pcr_back() {
    for muxrate in [1_000_000, 3_000_000] {
        let mut run = playing_a(muxrate, 10);
        let sections: Vec<Vec<u8>> = (0..4u8).map(|k| vec![0x50 | (k & 1); 4093]).collect();
        let refs: Vec<&[u8]> = sections.iter().map(|s| &s[..]).collect();
        run.mux()
            .set_table(Pid::from_bits(0x12), 0x50, &refs, SYSTEM_CLOCK_HZ * 4);
        let mut out = BytesMut::new();
        while !run.done() {
            run.step(&mut out, BATCH);
            while run.mux().poll_event().is_some() {}
        }
        let limits = CheckLimits {
            muxrate_bps: Some(muxrate),
            ..CheckLimits::default()
        };
        let r = check(&out, &limits);
        assert!(
            r.violations(&limits).is_empty(),
            "{muxrate} b/s: {:?}\n{r}",
            r.violations(&limits)
        );
        assert_eq!(r.cc_error_count, 0);
        // Every section went out whole (23 packets each), and the next of the table at least
        // 25 ms after the last packet of the one before, PCRs between its packets or not.
        let on_0x12: Vec<usize> = out
            .chunks_exact(PACKET_SIZE)
            .enumerate()
            .filter(|(_, raw)| {
                TsPacket::new(Bytes::copy_from_slice(raw))
                    .is_ok_and(|p| p.pid() == Pid::from_bits(0x12))
            })
            .map(|(k, _)| k)
            .collect();
        assert!(
            on_0x12.len() >= 2 * 4 * 23,
            "{} packets of sections",
            on_0x12.len()
        );
        let slot_s = 188.0 * 8.0 / muxrate as f64;
        for w in on_0x12.chunks_exact(23).collect::<Vec<_>>().windows(2) {
            let gap = (w[1][0] - w[0][22] - 1) as f64 * slot_s;
            assert!(gap >= 0.025, "{muxrate} b/s: sections {gap} s apart");
        }
    }
}

/// A table replaced twice within one cycle: the later content wins. The first replacement
/// comes mid-cycle (it waits for the cycle to end), the second between cycles (it applies at
/// once); the first must not then overwrite the second when the cycle ends. (An EIT present
/// event set for a short playlist item and then, a frame later, for the programme taking
/// over showed the item's event for another 3.5 s.)
#[test]
fn the_latest_table_wins() {
    let muxrate = 3_000_000;
    let mut run = playing_a(muxrate, 6);
    let pid = Pid::from_bits(0x12);
    // Version v of section s: bytes [v, s, ...].
    let table = |v: u8| [vec![v, 0, 0, 0], vec![v, 1, 0, 0]];
    let set = |run: &mut Offline<MemorySource>, v: u8| {
        let t = table(v);
        run.mux()
            .set_table(pid, 0x4E, &[&t[0], &t[1]], SYSTEM_CLOCK_HZ);
    };
    // The sections sent so far: (version, section).
    let sent = |out: &BytesMut| -> Vec<(u8, u8)> {
        out.chunks_exact(PACKET_SIZE)
            .filter_map(|raw| {
                let p = TsPacket::new(Bytes::copy_from_slice(raw)).ok()?;
                (p.pid() == pid && p.pusi()).then(|| {
                    let pl = p.payload();
                    let at = 1 + usize::from(pl[0]);
                    (pl[at], pl[at + 1])
                })
            })
            .collect()
    };
    set(&mut run, 1);
    let mut out = BytesMut::new();
    // Until section 0 has gone out: mid-cycle, version 2 waits.
    while sent(&out).is_empty() {
        run.step(&mut out, 1);
    }
    set(&mut run, 2);
    // Until section 1 has gone out: between cycles, version 3 applies at once.
    while sent(&out).len() < 2 {
        run.step(&mut out, 1);
    }
    set(&mut run, 3);
    while !run.done() {
        run.step(&mut out, BATCH);
        while run.mux().poll_event().is_some() {}
    }
    let s = sent(&out);
    assert_eq!(&s[..2], &[(1, 0), (1, 1)], "{s:?}");
    assert!(s[2..].iter().all(|(v, _)| *v == 3), "{s:?}");
    assert!(s.len() >= 8, "{s:?}");
}

/// A table whose change is for viewers now (an EIT present event starting): replaced
/// mid-cycle, the new version's sections go out at once, 25 ms apart, and the cycle goes on
/// from the last of them: no old section after it, no mix of versions, no section longer
/// than an interval (and 25 ms) without a repetition, and the interval kept from then on.
#[test]
fn a_table_changed_now_restarts_its_cycle_at_once() {
    let muxrate = 3_000_000;
    let mut run = playing_a(muxrate, 6);
    let pid = Pid::from_bits(0x12);
    let slot_s = 188.0 * 8.0 / muxrate as f64;
    // Version v of section s: bytes [v, s, ...]; when each went out (s).
    let sent = |out: &BytesMut| -> Vec<(u8, u8, f64)> {
        out.chunks_exact(PACKET_SIZE)
            .enumerate()
            .filter_map(|(k, raw)| {
                let p = TsPacket::new(Bytes::copy_from_slice(raw)).ok()?;
                (p.pid() == pid && p.pusi()).then(|| {
                    let pl = p.payload();
                    let at = 1 + usize::from(pl[0]);
                    (pl[at], pl[at + 1], k as f64 * slot_s)
                })
            })
            .collect()
    };
    let t1 = [vec![1u8, 0, 0, 0], vec![1, 1, 0, 0]];
    run.mux()
        .set_table(pid, 0x4E, &[&t1[0], &t1[1]], SYSTEM_CLOCK_HZ);
    let mut out = BytesMut::new();
    // Section 0 of version 1 out, then 100 ms more: mid-cycle.
    while sent(&out).is_empty() {
        run.step(&mut out, 1);
    }
    let first = sent(&out)[0].2;
    while (out.len() / PACKET_SIZE) as f64 * slot_s < first + 0.1 {
        run.step(&mut out, 1);
    }
    let changed_at = (out.len() / PACKET_SIZE) as f64 * slot_s;
    let t2 = [vec![2u8, 0, 0, 0], vec![2, 1, 0, 0]];
    run.mux()
        .set_table_now(pid, 0x4E, &[&t2[0], &t2[1]], SYSTEM_CLOCK_HZ);
    while !run.done() {
        run.step(&mut out, BATCH);
        while run.mux().poll_event().is_some() {}
    }
    let s = sent(&out);
    assert_eq!((s[0].0, s[0].1), (1, 0), "{s:?}");
    assert_eq!((s[1].0, s[1].1), (2, 0), "{s:?}");
    assert!(
        s[1].2 - changed_at < 0.005,
        "the new version {:.3} s after the change",
        s[1].2 - changed_at
    );
    // Its section 1 at once after section 0 (25 ms), then sections 0, 1, 0, ... of version
    // 2 only, half an interval apart.
    assert_eq!((s[2].0, s[2].1), (2, 1), "{s:?}");
    let gap = s[2].2 - s[1].2;
    assert!((0.025..0.03).contains(&gap), "{gap:.4} s: {s:?}");
    for (k, w) in s[2..].windows(2).enumerate() {
        assert_eq!(w[1].0, 2, "{s:?}");
        assert_eq!(usize::from(w[1].1), k % 2, "{s:?}");
        assert!(
            (0.45..=0.55).contains(&(w[1].2 - w[0].2)),
            "sections {:.3} s apart: {s:?}",
            w[1].2 - w[0].2
        );
    }
    assert!(s.len() >= 10, "{s:?}");
}

/// A table that comes as TS packets (an ECMG's ECMs, section_TSpkt_flag 1): re-PIDed, and
/// the continuity counters continue the PID's whatever the packets carried.
#[test]
fn tables_as_packets_get_the_pid_and_continuous_counters() {
    let muxrate = 3_000_000;
    let mut run = playing_a(muxrate, 3);
    let mut group = Vec::new();
    for k in 0..2u8 {
        let mut p = [0xFFu8; PACKET_SIZE];
        p[..4].copy_from_slice(&[0x47, 0x5F, 0xFF, 0x17 + k]);
        group.extend_from_slice(&p);
    }
    run.mux()
        .set_table_packets(Pid::from_bits(0x1F0), 1, &[&group], SYSTEM_CLOCK_HZ / 10);
    let mut out = BytesMut::new();
    while !run.done() {
        run.step(&mut out, BATCH);
        while run.mux().poll_event().is_some() {}
    }
    let ccs: Vec<u8> = out
        .chunks_exact(PACKET_SIZE)
        .filter_map(|raw| {
            let p = TsPacket::new(Bytes::copy_from_slice(raw)).ok()?;
            (p.pid() == Pid::from_bits(0x1F0)).then(|| raw[3] & 0x0F)
        })
        .collect();
    assert!((55..=62).contains(&ccs.len()), "{} packets", ccs.len());
    for w in ccs.windows(2) {
        assert_eq!(w[1], (w[0] + 1) & 0x0F, "{ccs:?}");
    }
    let report = check(&out, &CheckLimits::default());
    assert!(report.cc_errors.is_empty(), "{:?}", report.cc_errors);
}

/// A data stream (EMMs) leaves at its rate however much is queued, in order, and the queue
/// bound holds.
#[test]
fn a_data_stream_keeps_to_its_rate() {
    let muxrate = 3_000_000;
    let mut run = playing_a(muxrate, 4);
    let pid = Pid::from_bits(0x1F1);
    // 100 kbit/s: 66.5 packets a second.
    run.mux().set_stream(pid, 100_000, 1000);
    let mut packets = Vec::new();
    for k in 0..1200u32 {
        let mut p = [0u8; PACKET_SIZE];
        p[..4].copy_from_slice(&[0x47, 0x40, 0x00, 0x10]);
        p[4..8].copy_from_slice(&k.to_be_bytes());
        packets.extend_from_slice(&p);
    }
    assert_eq!(run.mux().push_stream(pid, &packets), 1000, "bounded");
    let mut out = BytesMut::new();
    while !run.done() {
        run.step(&mut out, BATCH);
        while run.mux().poll_event().is_some() {}
    }
    let seqs: Vec<u32> = out
        .chunks_exact(PACKET_SIZE)
        .filter(|raw| u16::from_be_bytes([raw[1], raw[2]]) & 0x1FFF == 0x1F1)
        .map(|raw| u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]))
        .collect();
    // 4 s at 66.5 packets/s.
    assert!((262..=270).contains(&seqs.len()), "{} packets", seqs.len());
    assert!(seqs.iter().enumerate().all(|(i, s)| *s == i as u32));
    let (sent, queued) = run.mux().stream_state(pid).unwrap();
    assert_eq!((sent as usize, queued), (seqs.len(), 1000 - seqs.len()));
    let report = check(&out, &CheckLimits::default());
    assert!(report.cc_errors.is_empty(), "{:?}", report.cc_errors);
}
