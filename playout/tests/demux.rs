//! The demuxer over real fixtures: any chunking gives the same packets, and arbitrary bytes
//! (garbage, corruption at random places) never panic.

use bytes::Bytes;
use playout::demux::{Demux, DemuxEvent};
use proptest::prelude::*;

fn fixture(name: &str) -> Bytes {
    let path = format!("{}/../fixtures/media/{name}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

/// (packets reported, CC errors, programs found) after pushing `data` in `cuts` pieces.
fn run(data: &Bytes, cuts: &[usize]) -> (u64, u64, usize, u64) {
    let mut d = Demux::new();
    let mut packets = 0u64;
    let mut checksum = 0u64;
    let mut on = |e: DemuxEvent<'_>| {
        if let DemuxEvent::Packet { packet, index, .. } = e {
            packets += 1;
            checksum = checksum
                .wrapping_mul(31)
                .wrapping_add(u64::from(packet.pid().value()) ^ index);
        }
    };
    let mut at = 0;
    for &c in cuts {
        let end = (at + c).min(data.len());
        d.push(data.slice(at..end), &mut on);
        at = end;
    }
    d.push(data.slice(at..), &mut on);
    d.finish();
    let programs = d.pat().map_or(0, |p| p.programs.len());
    (packets, d.stats().cc_errors, programs, checksum)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn chunking_does_not_change_the_packets(cuts in proptest::collection::vec(1usize..5000, 0..200)) {
        let data = fixture("d.ts");
        let whole = run(&data, &[]);
        prop_assert_eq!(run(&data, &cuts), whole);
        prop_assert_eq!(whole.1, 0);
        prop_assert_eq!(whole.2, 2, "the MPTS fixture has two programs");
    }

    #[test]
    fn corruption_never_panics(flips in proptest::collection::vec((0usize..500_000, any::<u8>()), 1..64),
                               cuts in proptest::collection::vec(1usize..3000, 0..50)) {
        let mut data = fixture("b.ts").to_vec();
        for (at, byte) in flips {
            let n = data.len();
            data[at % n] = byte;
        }
        let data = Bytes::from(data);
        let (packets, _, _, _) = run(&data, &cuts);
        prop_assert!(packets > 0);
    }
}
