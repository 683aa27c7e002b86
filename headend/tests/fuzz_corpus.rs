//! The fuzz targets' corpora, replayed in the ordinary `cargo test` (no fuzzer needed): every
//! seed in `fuzz/corpus/{target}/` and every crash once found in `fuzz/regressions/{target}/`
//! goes through the target's body (`headend::fuzzing`), which must not panic. See
//! docs/fuzzing.md.
//!
//! `make_seeds` (ignored) writes the seeds made with the project's own encoders: SI sections
//! and SimulCrypt messages (`gen-*` files). Run it after an encoder changes:
//! `cargo test -p headend --test fuzz_corpus -- --ignored make_seeds`.

use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveDateTime};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files in `dir`, sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn every_seed_and_saved_crash_runs_clean() {
    let mut ran = 0;
    for (name, body) in headend::fuzzing::TARGETS {
        let seeds = files(&fuzz_dir().join("corpus").join(name));
        assert!(
            !seeds.is_empty(),
            "fuzz/corpus/{name}/ has no seeds: every target keeps some"
        );
        let crashes = files(&fuzz_dir().join("regressions").join(name));
        for path in seeds.iter().chain(&crashes) {
            let data = std::fs::read(path).unwrap();
            let outcome = std::panic::catch_unwind(|| body(&data));
            assert!(outcome.is_ok(), "{name}: {} panicked", path.display());
            ran += 1;
        }
    }
    let targets: Vec<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
        .collect();
    let mut named: Vec<&str> = headend::fuzzing::TARGETS.iter().map(|t| t.0).collect();
    named.sort_unstable();
    assert_eq!(
        targets, named,
        "fuzz/fuzz_targets/ and fuzzing::TARGETS differ"
    );
    assert!(ran > 0);
}

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, mo, d)
        .and_then(|day| day.and_hms_opt(h, mi, s))
        .unwrap()
}

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = fuzz_dir().join("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("gen-{name}")), data).unwrap();
}

/// SI sections for `psi_sections`: SDT, EIT p/f and schedule, TDT, TOT, NIT, EBIT, SCTE 18
/// and an ECM (the target's key).
fn make_sections() {
    use epg::si::{Charset, Event, Service};
    let service = Service {
        service_id: 1,
        name: "新闻 News".into(),
        provider: "headend".into(),
        service_type: 1,
        eit_pf: true,
        eit_schedule: true,
    };
    write(
        "psi_sections",
        "sdt",
        &epg::si::sdt(1, 0x2000, 3, &[service], Charset::Utf8).unwrap(),
    );
    let event = Event {
        event_id: 7,
        start: at(2026, 12, 5, 19, 0, 0),
        duration_s: 1800,
        running_status: 4,
        language: "zho".into(),
        title: "新闻联播".into(),
        text: "每晚七点的新闻节目。".into(),
        extended: "A longer text about the programme.".into(),
        content: epg::si::content_nibble("news"),
        min_age: 0,
    };
    let [present, following] =
        epg::si::eit_pf(1, 1, 0x2000, 2, Some(&event), None, Charset::Gb2312).unwrap();
    write("psi_sections", "eit-present", &present);
    write("psi_sections", "eit-following", &following);
    let schedule = epg::si::eit_schedule(
        1,
        1,
        0x2000,
        2,
        &[Event {
            title: "Café crème".into(),
            text: "Nachrichten für Österreich".into(),
            extended: String::new(),
            language: "deu".into(),
            ..event.clone()
        }],
        NaiveDate::from_ymd_opt(2026, 12, 5).unwrap(),
        1,
        Charset::Latin,
    )
    .unwrap();
    if let Some(first) = schedule.iter().find(|s| s.len() > 16) {
        write("psi_sections", "eit-schedule", first);
    }
    write(
        "psi_sections",
        "tdt",
        &epg::si::tdt(at(2026, 12, 5, 19, 0, 0)),
    );
    write(
        "psi_sections",
        "tot",
        &epg::si::tot(at(2026, 12, 5, 19, 0, 0), "CHN", 480),
    );
    let nit = epg::network::nit(
        0x2000,
        1,
        "城市有线",
        &[epg::network::TransportStream {
            transport_stream_id: 1,
            original_network_id: 0x2000,
            services: vec![epg::network::NitService {
                service_id: 1,
                service_type: 1,
                lcn: Some(1),
            }],
        }],
        Charset::Utf8,
    )
    .unwrap();
    write("psi_sections", "nit", &nit[0]);
    let message = epg::emergency::EbMessage {
        ebm_id: epg::emergency::ebm_id("00000000000000000000000202401010001").unwrap(),
        original_network_id: 0x2000,
        start: at(2026, 12, 5, 19, 0, 0),
        end: at(2026, 12, 5, 19, 30, 0),
        ebm_type: *b"11B00",
        class: epg::emergency::EbClass::Emergency,
        level: 2,
        resource_codes: vec![epg::emergency::resource_code("34152300000000000000001").unwrap()],
        details: None,
    };
    write(
        "psi_sections",
        "ebit",
        &epg::emergency::ebit_section(1, 0, &[message], Some(b"sig")).unwrap(),
    );
    let alert = epg::emergency::Scte18Alert {
        sequence_number: 1,
        event_id: 0x0102,
        originator: *b"WXR",
        event_code: "TOR".into(),
        language: *b"eng",
        nature_of_activation: "Tornado warning".into(),
        time_remaining_s: 30,
        start_gps_s: 0,
        duration_min: 30,
        priority: 15,
        details_oob_source_id: 1,
        details_major_channel: 2,
        details_minor_channel: 1,
        audio_oob_source_id: 0,
        alert_text: "Take shelter now.".into(),
        locations: vec![epg::emergency::LocationCode {
            state_code: 6,
            county_subdivision: 0,
            county_code: 37,
        }],
    };
    write(
        "psi_sections",
        "scte18",
        &epg::emergency::scte18_section(&alert).unwrap(),
    );
    write(
        "psi_sections",
        "ecm",
        &drm::ecm::build_ecm(&[0x5A; 16], drm::ecm::Wrap::Aes128, 3, &[1; 16], &[2; 16]),
    );
}

/// What an ECMG answers for `simulcrypt`: channel status, stream status, two ECMs and an
/// error, as one connection's bytes (the first byte picks the read size).
fn make_simulcrypt() {
    use drm::simulcrypt::{
        encode, ChannelError, ChannelStatus, EcmResponse, ErrorStatus, Message, ProtocolVersion,
        SectionTspktFlag, StreamStatus, Tenths,
    };
    let v = ProtocolVersion::V3;
    let status = ChannelStatus {
        ecm_channel_id: 1,
        section_tspkt_flag: SectionTspktFlag::Sections,
        ac_delay_start_ms: None,
        ac_delay_stop_ms: None,
        delay_start_ms: 0,
        delay_stop_ms: 0,
        transition_delay_start_ms: None,
        transition_delay_stop_ms: None,
        ecm_rep_period_ms: 100,
        max_streams: 4,
        min_cp_duration: Tenths(10),
        lead_cw: 1,
        cw_per_msg: 2,
        max_comp_time_ms: 100,
    };
    let stream = StreamStatus {
        ecm_channel_id: 1,
        ecm_stream_id: 1,
        ecm_id: 1,
        access_criteria_transfer_mode: false,
    };
    let ecm = |cp: u16| EcmResponse {
        ecm_channel_id: 1,
        ecm_stream_id: 1,
        cp_number: cp,
        ecm_datagram: drm::ecm::build_ecm(
            &[0x5A; 16],
            drm::ecm::Wrap::Aes128,
            cp,
            &[1; 16],
            &[2; 16],
        )
        .into(),
    };
    let error = ChannelError {
        ecm_channel_id: 1,
        error_status: vec![ErrorStatus(0x000E)],
        error_information: vec![b"busy".to_vec()],
    };
    let mut session = vec![61];
    for m in [
        Message::new(v, status.clone()),
        Message::new(v, stream),
        Message::new(v, ecm(2)),
        Message::new(v, ecm(3)),
    ] {
        session.extend_from_slice(&encode(&m).unwrap());
    }
    write("simulcrypt", "session", &session);
    let mut one = vec![255];
    one.extend_from_slice(&encode(&Message::new(v, status)).unwrap());
    write("simulcrypt", "channel-status", &one);
    let mut err = vec![7];
    err.extend_from_slice(&encode(&Message::new(v, error)).unwrap());
    write("simulcrypt", "channel-error", &err);
}

#[test]
#[ignore = "writes fuzz/corpus/: run by hand after an encoder changes"]
fn make_seeds() {
    make_sections();
    make_simulcrypt();
}
