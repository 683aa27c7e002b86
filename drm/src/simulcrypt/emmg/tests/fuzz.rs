//! Random and mutated input never panics the decoders or either end (a fixed-seed loop; the
//! cargo-fuzz crate is the place for open-ended fuzzing).

use std::time::{Duration, Instant};

use super::*;

/// Seeds that run every time.
const SEEDS: [u64; 3] = [0x9E37_79B9_7F4A_7C15, 1, 0xDEAD_BEEF];

fn inputs(rng: &mut Rng, valid: &[Vec<u8>]) -> Vec<u8> {
    match rng.below(3) {
        // Pure noise.
        0 => (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
        // A valid message with a few bytes changed.
        1 => {
            let mut m = valid[rng.below(valid.len())].clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(m.len());
                m[i] = rng.next() as u8;
            }
            m
        }
        // A valid message cut short, or with noise after it.
        _ => {
            let mut m = valid[rng.below(valid.len())].clone();
            if rng.below(2) == 0 {
                m.truncate(rng.below(m.len()));
            } else {
                m.extend((0..rng.below(20)).map(|_| rng.next() as u8));
            }
            m
        }
    }
}

/// A MUX side with the channel and stream open, so the noise reaches the open states too.
fn open_mux(now: Instant) -> MuxSide {
    let mut mux = MuxSide::new(MuxSideConfig::new(CLIENT, 500)).unwrap();
    for body in [samples().remove(0), samples().remove(5)] {
        mux.handle_bytes(now, &enc(ProtocolVersion::V3, body));
    }
    assert!(mux.channel().is_some());
    mux
}

#[test]
fn random_bytes_never_panic() {
    let mut valid: Vec<Vec<u8>> = samples()
        .into_iter()
        .map(|b| enc(ProtocolVersion::V3, b))
        .collect();
    valid.push(raw(3, 0x0211, &[(0x0001, &CLIENT.to_be_bytes())]));
    for seed in SEEDS {
        let mut rng = Rng(seed);
        let t0 = origin();
        let mut mux = open_mux(t0);
        let mut emmg = EmmgSide::new(EmmgSideConfig::new(CLIENT, CHANNEL, STREAM, DATA_ID));
        emmg.handle_connected(t0);
        let mut decoder = EmmDecoder::new();
        // Data delivered, errors reported: the noise reaches both.
        let mut seen = (0u32, 0u32);
        for i in 0..4000u64 {
            let now = t0 + Duration::from_millis(i);
            let bytes = inputs(&mut rng, &valid);
            for r in decode_emm_datagram(&Bytes::from(bytes.clone()))
                .into_iter()
                .flatten()
            {
                let _ = mux.handle_udp(now, r);
            }
            // Split at a random point, as TCP may.
            let cut = rng.below(bytes.len() + 1);
            decoder.push(&bytes[..cut]);
            decoder.by_ref().for_each(drop);
            decoder.push(&bytes[cut..]);
            decoder.by_ref().for_each(drop);
            mux.handle_bytes(now, &bytes);
            emmg.handle_bytes(now, &bytes);
            mux.handle_timeout(now);
            emmg.handle_timeout(now);
            while mux.poll_transmit().is_some() {}
            while let Some(e) = mux.poll_event() {
                match e {
                    MuxSideEvent::Data { .. } => seen.0 += 1,
                    MuxSideEvent::Error(_) => seen.1 += 1,
                    _ => {}
                }
            }
            while emmg.poll_transmit().is_some() {}
            while emmg.poll_event().is_some() {}
            // A fresh connection now and then: noise with a large message_length keeps the
            // decoder waiting for the rest of it.
            if mux.is_closed() || i % 16 == 15 {
                mux = open_mux(now);
            }
            if emmg.is_idle() || i % 16 == 15 {
                emmg.handle_connected(now);
            }
        }
        assert!(seen.0 > 10 && seen.1 > 100, "seed {seed:#x}: {seen:?}");
    }
}
