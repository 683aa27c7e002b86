//! The input analyser on a feed made from a.ts (H.264 + AAC, 5 s), sent as 7-packet datagrams
//! at its own rate on a simulated clock, clean and with each kind of damage.

use bytes::{Bytes, BytesMut};
use playout::analyse::{Analyser, AnalyserConfig, Fault, Health};
use playout::ts::{Pid, PACKET_SIZE};

const MS: u64 = 1_000_000;

fn a_ts() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/media/a.ts"
    ))
    .unwrap()
}

/// a.ts as datagrams with their arrival times (ns from 0) at its average rate, after
/// `damage` had its way with each packet (`None`: the packet is lost).
fn feed(damage: impl Fn(usize, &mut [u8]) -> bool) -> Vec<(u64, Bytes)> {
    let data = a_ts();
    let ns_per_byte = 5_020.0 * MS as f64 / data.len() as f64;
    let mut out = Vec::new();
    let mut dgram = BytesMut::new();
    for (k, p) in data.chunks_exact(PACKET_SIZE).enumerate() {
        let mut p = p.to_vec();
        if damage(k, &mut p) {
            dgram.extend_from_slice(&p);
        }
        if (k + 1) % 7 == 0 {
            let at = ((k + 1) * PACKET_SIZE) as f64 * ns_per_byte;
            out.push((at as u64, dgram.split().freeze()));
        }
    }
    out
}

/// Pushes what of the feed arrives after what `a` has had and by `until_ms`; returns the
/// health then.
fn run(a: &mut Analyser, feed: &[(u64, Bytes)], until_ms: u64) -> Health {
    let had = a.stats().bytes;
    let mut sum = 0;
    for (t, d) in feed.iter().filter(|(t, _)| *t <= until_ms * MS) {
        sum += d.len() as u64;
        if sum > had {
            a.push(*t, d.clone());
        }
    }
    a.health(until_ms * MS)
}

fn pid(p: &[u8]) -> u16 {
    u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])
}

#[test]
fn a_clean_feed_is_starting_then_good_and_no_data_is_caught_in_time() {
    let f = feed(|_, _| true);
    let mut a = Analyser::new(AnalyserConfig::default());
    assert_eq!(a.health(0), Health::Bad(Fault::NothingYet));
    assert_eq!(run(&mut a, &f, 100), Health::Starting);
    let h = run(&mut a, &f, 1500);
    assert_eq!(h, Health::Good);
    assert_eq!(run(&mut a, &f, 4000), Health::Good);
    let s = a.stats();
    assert_eq!(
        (s.cc_errors, s.sync_losses, s.pcr_jumps, s.scrambled),
        (0, 0, 0, 0)
    );
    assert_eq!(a.pmt().unwrap().streams.len(), 2);
    // The feed stops at 4 s: still good at 4.15 s, no data from 4.2 s.
    assert_eq!(a.health(4150 * MS), Health::Good);
    assert!(matches!(
        a.health(4250 * MS),
        Health::Bad(Fault::NoData { ms: 200..=260 })
    ));
}

#[test]
fn lost_packets_fail_it_and_it_recovers_a_window_after() {
    // From 1.5 s to 2.5 s, one packet in 50 is lost.
    let data_len = a_ts().len() / PACKET_SIZE;
    let from = data_len * 15 / 50;
    let to = data_len * 25 / 50;
    let f = feed(|k, _| !(from..to).contains(&k) || k % 50 != 0);
    let mut a = Analyser::new(AnalyserConfig::default());
    assert_eq!(run(&mut a, &f, 1400), Health::Good);
    assert!(matches!(
        run(&mut a, &f, 2400),
        Health::Bad(Fault::Continuity { .. })
    ));
    assert_eq!(run(&mut a, &f, 3600), Health::Good);
    assert!(a.stats().cc_errors >= 10, "{}", a.stats().cc_errors);
}

#[test]
fn a_missing_pid_the_wrong_service_and_garbage_are_named() {
    // The audio PID (0x101) disappears after 1.5 s.
    let cut = a_ts().len() / PACKET_SIZE * 15 / 50;
    let f = feed(|k, p| k < cut || pid(p) != 0x101);
    let mut a = Analyser::new(AnalyserConfig::default());
    assert_eq!(run(&mut a, &f, 1400), Health::Good);
    assert_eq!(
        run(&mut a, &f, 2700),
        Health::Bad(Fault::MissingPid {
            pid: Pid::from_bits(0x101),
            stream_type: 0x0F
        })
    );

    let f = feed(|_, _| true);
    let mut a = Analyser::new(AnalyserConfig {
        service_id: Some(7),
        ..AnalyserConfig::default()
    });
    assert_eq!(
        run(&mut a, &f, 1500),
        Health::Bad(Fault::NoService { service_id: 7 })
    );

    // Random bytes: no sync, no PAT.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut a = Analyser::new(AnalyserConfig::default());
    for k in 0..2000u64 {
        let dgram: Vec<u8> = (0..1316)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        a.push(k * MS, Bytes::from(dgram));
    }
    let h = a.health(2000 * MS);
    assert!(
        matches!(h, Health::Bad(Fault::NoPat | Fault::Sync { .. })),
        "{h:?}"
    );
}

#[test]
fn scrambled_es_and_pcr_jumps_are_caught() {
    // Video packets scrambled (even key) after 1.5 s.
    let cut = a_ts().len() / PACKET_SIZE * 15 / 50;
    let f = feed(|k, p| {
        if k >= cut && pid(p) == 0x100 {
            p[3] = (p[3] & 0x3F) | 0x80;
        }
        true
    });
    let mut a = Analyser::new(AnalyserConfig::default());
    assert_eq!(run(&mut a, &f, 1400), Health::Good);
    assert_eq!(
        run(&mut a, &f, 2000),
        Health::Bad(Fault::Scrambled {
            pid: Pid::from_bits(0x100)
        })
    );
    assert!(a.stats().scrambled > 0);

    // Every PCR from 1.5 s on is 10 s later (an encoder restarted without a discontinuity).
    let f = feed(|k, p| {
        let has_pcr = p[3] & 0x20 != 0 && p[4] > 0 && p[5] & 0x10 != 0;
        if k >= cut && has_pcr {
            let base = (u64::from(p[6]) << 25
                | u64::from(p[7]) << 17
                | u64::from(p[8]) << 9
                | u64::from(p[9]) << 1
                | u64::from(p[10] >> 7))
                + 900_000;
            p[6] = (base >> 25) as u8;
            p[7] = (base >> 17) as u8;
            p[8] = (base >> 9) as u8;
            p[9] = (base >> 1) as u8;
            p[10] = (p[10] & 0x7F) | ((base as u8 & 1) << 7);
        }
        true
    });
    let mut a = Analyser::new(AnalyserConfig::default());
    assert_eq!(run(&mut a, &f, 1400), Health::Good);
    assert_eq!(
        run(&mut a, &f, 2000),
        Health::Bad(Fault::PcrJump { jumps: 1 })
    );
    // One jump, then the PCR runs on steadily from there: good a window later.
    assert_eq!(run(&mut a, &f, 3000), Health::Good);
}

#[test]
fn a_bitrate_floor_holds() {
    let f = feed(|_, _| true);
    // a.ts is about 865 kbit/s.
    let mut a = Analyser::new(AnalyserConfig {
        min_bitrate_bps: 2_000_000,
        ..AnalyserConfig::default()
    });
    let h = run(&mut a, &f, 1500);
    assert!(
        matches!(
            h,
            Health::Bad(Fault::LowBitrate {
                bps: 700_000..=1_000_000
            })
        ),
        "{h:?}"
    );
    let mut a = Analyser::new(AnalyserConfig {
        min_bitrate_bps: 500_000,
        ..AnalyserConfig::default()
    });
    assert_eq!(run(&mut a, &f, 1500), Health::Good);
}

/// Only the programme's continuity counts: another programme's PID of an MPTS with its
/// counter broken at every packet (an encoder upstream at fault, not the link) leaves the
/// input good.
#[test]
fn another_programmes_broken_continuity_is_not_this_inputs_fault() {
    let data = a_ts();
    let ns_per_byte = 5_020.0 * MS as f64 / data.len() as f64;
    let foreign = |cc: u8| {
        let mut p = vec![0xFFu8; PACKET_SIZE];
        p[..4].copy_from_slice(&[0x47, 0x03, 0x00, 0x10 | (cc & 0x0F)]);
        p
    };
    let mut f = Vec::new();
    let mut dgram = BytesMut::new();
    for (k, p) in data.chunks_exact(PACKET_SIZE).enumerate() {
        dgram.extend_from_slice(p);
        if k % 5 == 0 {
            // Counter steps of 3: an error every time.
            dgram.extend_from_slice(&foreign((k / 5 * 3) as u8));
        }
        if (k + 1) % 7 == 0 {
            let at = ((k + 1) * PACKET_SIZE) as f64 * ns_per_byte;
            f.push((at as u64, dgram.split().freeze()));
        }
    }
    let mut a = Analyser::new(AnalyserConfig::default());
    assert_eq!(run(&mut a, &f, 1500), Health::Good);
    assert_eq!(run(&mut a, &f, 4000), Health::Good);
    // Errors before the PMT was known counted (nothing told them apart yet); none after.
    let early = a.stats().cc_errors;
    assert!(early < 10, "{early} continuity errors counted");
    assert!(!a
        .pmt()
        .unwrap()
        .streams
        .iter()
        .any(|e| e.pid == Pid::from_bits(0x300)));
    // (A loss on the programme's own PIDs still fails it:
    // `lost_packets_fail_it_and_it_recovers_a_window_after`.)
}
