//! The in-band emergency tables: EBIT (0xFD, vendor layout [V]) and SCTE 18 (0xD8).
//! Hand-computed byte layouts, round trips (Chinese text included), CRC, truncation, bit
//! flips, garbage that must not panic, and out-of-range fields that must be named.
//!
//! No tshark test: tshark 4.0 has no SCTE 18 / EAS dissector (`tshark -G protocols` lists
//! none, and no dissector registers mpeg_sect.tid 0xD8), nor one for the Chinese EB tables.

use bytes::Bytes;
use chrono::{NaiveDate, NaiveDateTime};
use epg::emergency::{
    code_digits, ebit_section, ebm_id, ebm_id_from, gps_seconds, parse_ebit, parse_ebit_table,
    parse_scte18, resource_code, scte18_section, utc_from_gps, DetailsChannel, EbClass, EbMessage,
    Ebit, EmergencyError, LocationCode, Scte18Alert, EBIT_TABLE_ID, SCTE18_TABLE_ID,
};
use playout::psi::{crc32_mpeg2, EsInfo};
use playout::ts::Pid;
use proptest::prelude::*;

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, mo, d)
        .unwrap()
        .and_hms_opt(h, mi, s)
        .unwrap()
}

/// 23-digit platform resource code used throughout.
const PLATFORM: &str = "12345678901234567890123";

fn message() -> EbMessage {
    EbMessage {
        ebm_id: ebm_id_from(PLATFORM, NaiveDate::from_ymd_opt(2024, 5, 1).unwrap(), 7).unwrap(),
        original_network_id: 0x1234,
        // The DVB example of EN 300 468 Annex C: 1993-10-13 12:45:00 is C0 79 12 45 00.
        start: at(1993, 10, 13, 12, 45, 0),
        end: at(1993, 10, 13, 13, 0, 30),
        ebm_type: *b"11B00",
        class: EbClass::Emergency,
        level: 2,
        resource_codes: vec![resource_code("34152300000000000000001").unwrap()],
        details: None,
    }
}

fn with_details() -> EbMessage {
    // cable_delivery_system_descriptor: 331 MHz, 64-QAM, 6875 kSym/s.
    let cable = [
        0x44, 0x0B, 0x03, 0x31, 0x00, 0x00, 0xFF, 0xF2, 0x03, 0x00, 0x68, 0x75, 0x02,
    ];
    EbMessage {
        ebm_id: ebm_id("00000000000000000000000202401010001").unwrap(),
        class: EbClass::LiveDrill,
        level: 0,
        resource_codes: vec![
            resource_code("34152300000000000000001").unwrap(),
            resource_code("34152300000000000000002").unwrap(),
        ],
        details: Some(DetailsChannel {
            transport_stream_id: 0x0101,
            program_number: 0x0ED8,
            pcr_pid: Pid::from_bits(0x0100),
            program_info: Bytes::copy_from_slice(&cable),
            streams: vec![
                EsInfo {
                    stream_type: 0x02,
                    pid: Pid::from_bits(0x0100),
                    descriptors: Bytes::new(),
                },
                EsInfo {
                    stream_type: 0x04,
                    pid: Pid::from_bits(0x0101),
                    descriptors: Bytes::from_static(&[0x0A, 0x04, b'z', b'h', b'o', 0x00]),
                },
            ],
        }),
        ..message()
    }
}

fn alert() -> Scte18Alert {
    Scte18Alert {
        sequence_number: 3,
        event_id: 0xBEEF,
        originator: *b"CIV",
        event_code: "EAN".into(),
        language: *b"zho",
        nature_of_activation: "紧急行动通知".into(),
        time_remaining_s: 30,
        start_gps_s: 0,
        duration_min: 60,
        priority: 15,
        details_oob_source_id: 0x0102,
        details_major_channel: 1000,
        details_minor_channel: 1,
        audio_oob_source_id: 0x0304,
        alert_text: "台风红色预警：请立即撤离到安全地带。".into(),
        locations: vec![LocationCode {
            state_code: 6,
            county_subdivision: 0,
            county_code: 37,
        }],
    }
}

/// Recomputes the CRC after editing a section.
fn recrc(s: &mut [u8]) {
    let n = s.len() - 4;
    let crc = crc32_mpeg2(&s[..n]);
    s[n..].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn ebm_id_is_f_then_35_bcd_digits() {
    let id = ebm_id_from(PLATFORM, NaiveDate::from_ymd_opt(2024, 5, 1).unwrap(), 7).unwrap();
    // 1111 + "12345678901234567890123" + "20240501" + "0007".
    assert_eq!(
        id,
        [
            0xF1, 0x23, 0x45, 0x67, 0x89, 0x01, 0x23, 0x45, 0x67, 0x89, 0x01, 0x23, 0x20, 0x24,
            0x05, 0x01, 0x00, 0x07
        ]
    );
    assert_eq!(
        code_digits(&id).unwrap(),
        "12345678901234567890123202405010007"
    );
    let rc = resource_code("34152300000000000000001").unwrap();
    assert_eq!(rc, [0xF3, 0x41, 0x52, 0x30, 0, 0, 0, 0, 0, 0, 0, 0x01]);
    assert_eq!(code_digits(&[0xE1, 0x23]), None, "first nibble must be F");
    assert_eq!(code_digits(&[0xF1, 0x2A]), None, "digits only");
}

#[test]
fn ebit_layout_field_by_field() {
    let s = ebit_section(0x0001, 5, &[message()], None).unwrap();
    // 8 header + reserved + EBM_number + EBM_length(2) + 50 message + signature_length(2) + CRC.
    assert_eq!(s.len(), 8 + 2 + 2 + 50 + 2 + 4);
    assert_eq!(s[0], EBIT_TABLE_ID);
    assert_eq!(
        s[1..3],
        [0xB0, 65],
        "SSI 1, private 0, reserved 11, section_length"
    );
    assert_eq!(s[3..5], [0x00, 0x01], "table_id_extension");
    assert_eq!(s[5], 0xC0 | (5 << 1) | 1, "reserved, version 5, current");
    assert_eq!(s[6..8], [0, 0], "section 0 of 0");
    assert_eq!(s[8], 0xFF, "reserved");
    assert_eq!(s[9], 1, "EBM_number");
    assert_eq!(s[10..12], [0, 50], "EBM_length");
    let m = &s[12..62];
    assert_eq!(m[..18], message().ebm_id);
    assert_eq!(m[18..20], [0x12, 0x34], "EBM_original_network_id");
    assert_eq!(
        m[20..25],
        [0xC0, 0x79, 0x12, 0x45, 0x00],
        "EN 300 468 Annex C"
    );
    assert_eq!(m[25..30], [0xC0, 0x79, 0x13, 0x00, 0x30], "end");
    assert_eq!(&m[30..35], b"11B00", "EBM_type");
    assert_eq!(m[35], 0x42, "class 4, level 2");
    assert_eq!(m[36], 1, "EBM_resource_number");
    assert_eq!(
        m[37..49],
        [0xF3, 0x41, 0x52, 0x30, 0, 0, 0, 0, 0, 0, 0, 0x01]
    );
    assert_eq!(m[49], 0xFE, "reserved 1111111, no details channel");
    assert_eq!(s[62..64], [0, 0], "signature_length");
    assert_eq!(crc32_mpeg2(&s), 0, "CRC-32/MPEG-2 over the whole section");
}

#[test]
fn ebit_details_channel_layout() {
    let m = with_details();
    let s = ebit_section(0, 0, &[m], None).unwrap();
    let body = &s[12..s.len() - 6];
    // After EBM_id .. resource codes (18+2+15+1+1+24) comes the indicate byte.
    let d = &body[61..];
    assert_eq!(d[0], 0xFF, "details_channel_indicate");
    assert_eq!(d[1..5], [0x01, 0x01, 0x0E, 0xD8]);
    assert_eq!(d[5..7], [0xE1, 0x00], "111 PCR_PID");
    assert_eq!(d[7..9], [0xF0, 13], "1111 program_info_length");
    assert_eq!(d[9], 0x44);
    assert_eq!(d[22..24], [0, 5 + 5 + 6], "stream_info_length");
    assert_eq!(d[24..29], [0x02, 0xE1, 0x00, 0xF0, 0x00]);
    assert_eq!(d[29..34], [0x04, 0xE1, 0x01, 0xF0, 0x06]);
    assert_eq!(d.len(), 40);
}

#[test]
fn ebit_roundtrip_with_signature() {
    let messages = vec![message(), with_details(), message()];
    let signature: Vec<u8> = (0..74).collect();
    let s = ebit_section(0x0A0B, 17, &messages, Some(&signature)).unwrap();
    assert_eq!(crc32_mpeg2(&s), 0);
    assert_eq!(
        parse_ebit_table(&s).unwrap(),
        Ebit {
            table_ext: 0x0A0B,
            version: 17,
            messages: messages.clone(),
            signature,
        }
    );
    assert_eq!(parse_ebit(&s).unwrap(), (17, messages));
    let empty = ebit_section(0, 0, &[], None).unwrap();
    assert_eq!(parse_ebit(&empty).unwrap(), (0, vec![]));
}

#[test]
fn scte18_layout_field_by_field() {
    let a = Scte18Alert {
        event_code: "EAN".into(),
        language: *b"eng",
        nature_of_activation: "Test".into(),
        alert_text: "中".into(),
        start_gps_s: 0x1234_5678,
        ..alert()
    };
    let s = scte18_section(&a).unwrap();
    assert_eq!(s[0], SCTE18_TABLE_ID);
    assert_eq!(
        usize::from(s[1] & 0x0F) << 8 | usize::from(s[2]),
        s.len() - 3
    );
    assert_eq!(s[1] & 0xF0, 0xB0);
    assert_eq!(s[3..5], [0, 0], "table_id_extension 0");
    assert_eq!(
        s[5],
        0xC0 | (3 << 1) | 1,
        "sequence_number 3 in the version field"
    );
    assert_eq!(s[6..8], [0, 0]);
    let b = &s[8..s.len() - 4];
    let want: Vec<u8> = [
        &[0x00][..],                              // protocol_version
        &[0xBE, 0xEF],                            // EAS_event_ID
        b"CIV",                                   // EAS_originator_code
        &[3, b'E', b'A', b'N'],                   // EAS_event_code
        &[12, 1, b'e', b'n', b'g', 1],            // MSS: length, 1 string, eng, 1 segment
        &[0x00, 0x00, 4, b'T', b'e', b's', b't'], // uncompressed, mode 0 (Latin-1), 4 bytes
        &[30],                                    // alert_message_time_remaining
        &[0x12, 0x34, 0x56, 0x78],                // event_start_time
        &[0, 60],                                 // event_duration
        &[0xFF, 0xFF],                            // 1111 1111 1111 alert_priority 15
        &[0x01, 0x02],                            // details_OOB_source_ID
        &[0xFF, 0xE8],                            // 111111 + 1000
        &[0xFC, 0x01],                            // 111111 + 1
        &[0x03, 0x04],                            // audio_OOB_source_ID
        &[0, 10, 1, b'e', b'n', b'g', 1],         // alert_text: 2-byte length, MSS
        &[0x00, 0x3F, 2, 0x4E, 0x2D],             // mode 0x3F UTF-16: U+4E2D
        &[1, 6, 0x0C, 37],                        // one location: 6, 0, 11, 37
        &[0],                                     // exception_count
        &[0xFC, 0x00],                            // descriptors_length 0
    ]
    .concat();
    assert_eq!(b, &want[..]);
    assert_eq!(crc32_mpeg2(&s), 0);
    assert_eq!(parse_scte18(&s).unwrap(), a);
}

#[test]
fn scte18_roundtrip_chinese_and_long_text() {
    let a = alert();
    let s = scte18_section(&a).unwrap();
    assert_eq!(parse_scte18(&s).unwrap(), a);
    // Over 127 UTF-16 units: several segments; a surrogate pair (U+1F6A8) right at the first
    // segment boundary must not be split.
    let long = format!("{}🚨{}", "应".repeat(126), "急广播".repeat(200));
    let b = Scte18Alert {
        alert_text: long.clone(),
        sequence_number: 31,
        locations: (0..31)
            .map(|k| LocationCode {
                state_code: k,
                county_subdivision: k % 10,
                county_code: 909 - u16::from(k),
            })
            .collect(),
        ..alert()
    };
    let s = scte18_section(&b).unwrap();
    let got = parse_scte18(&s).unwrap();
    assert_eq!(got.alert_text, long);
    assert_eq!(got, b);
    // Text in Latin-1 only, English.
    let c = Scte18Alert {
        language: *b"eng",
        nature_of_activation: "Emergency Action Notification".into(),
        alert_text: "Tornado warning until 6 pm. Café closed. ".repeat(20),
        ..alert()
    };
    assert_eq!(parse_scte18(&scte18_section(&c).unwrap()).unwrap(), c);
}

#[test]
fn every_truncation_and_bit_flip_is_an_error() {
    let sections = [
        ebit_section(1, 2, &[message(), with_details()], Some(&[7; 74])).unwrap(),
        scte18_section(&alert()).unwrap(),
    ];
    for s in &sections {
        let parse = |b: &[u8]| match s[0] {
            EBIT_TABLE_ID => parse_ebit(b).map(|_| ()),
            _ => parse_scte18(b).map(|_| ()),
        };
        parse(s).unwrap();
        for n in 0..s.len() {
            assert!(parse(&s[..n]).is_err(), "prefix of {n} bytes parsed");
        }
        for i in 0..s.len() {
            for bit in 0..8 {
                let mut f = s.clone();
                f[i] ^= 1 << bit;
                assert!(parse(&f).is_err(), "flip of bit {bit} in byte {i} parsed");
            }
        }
        let mut f = s.clone();
        let last = f.len() - 1;
        f[last] ^= 0x80;
        assert!(matches!(parse(&f), Err(EmergencyError::Crc { .. })));
    }
}

#[test]
fn inner_lengths_are_checked_with_a_valid_crc() {
    let s = ebit_section(0, 0, &[message()], None).unwrap();
    let mut f = s.clone();
    f[11] = 60; // EBM_length past the end of the body
    recrc(&mut f);
    let e = parse_ebit(&f).unwrap_err();
    assert!(matches!(e, EmergencyError::Truncated { .. }), "{e}");
    let mut f = s.clone();
    f[12 + 35] = 0x02; // EBM_class 0 is reserved
    recrc(&mut f);
    let e = parse_ebit(&f).unwrap_err();
    assert!(
        matches!(
            e,
            EmergencyError::Value {
                field: "EBM_class",
                offset: 47,
                value: 0,
                ..
            }
        ),
        "{e}"
    );
    let mut f = s.clone();
    f[12 + 22] = 0x25; // start hour 25
    recrc(&mut f);
    let e = parse_ebit(&f).unwrap_err();
    assert!(
        matches!(
            e,
            EmergencyError::Value {
                field: "EBM_start_time",
                ..
            }
        ),
        "{e}"
    );
    let a = scte18_section(&alert()).unwrap();
    let mut f = a.clone();
    f[8] = 1; // protocol_version
    recrc(&mut f);
    let e = parse_scte18(&f).unwrap_err();
    assert!(
        matches!(
            e,
            EmergencyError::Value {
                field: "protocol_version",
                ..
            }
        ),
        "{e}"
    );
    assert!(matches!(
        parse_ebit(&a),
        Err(EmergencyError::TableId {
            found: 0xD8,
            expected: 0xFD
        })
    ));
}

fn field_of(e: EmergencyError) -> String {
    match e {
        EmergencyError::Range { field, .. }
        | EmergencyError::Digits { field, .. }
        | EmergencyError::Invalid { field, .. } => field,
        e => panic!("not a field error: {e}"),
    }
}

#[test]
fn out_of_range_ebit_fields_are_named() {
    let ebit = |m: EbMessage| field_of(ebit_section(0, 0, &[message(), m], None).unwrap_err());
    assert_eq!(
        ebit(EbMessage {
            level: 5,
            ..message()
        }),
        "messages[1].level"
    );
    let mut bad = message();
    bad.ebm_id[17] = 0x0A;
    assert_eq!(ebit(bad), "messages[1].ebm_id");
    let mut bad = message();
    bad.resource_codes.push([0; 12]);
    assert_eq!(ebit(bad), "messages[1].resource_codes[1]");
    let bad = EbMessage {
        resource_codes: vec![resource_code("00000000000000000000000").unwrap(); 256],
        ..message()
    };
    assert_eq!(ebit(bad), "messages[1].resource_codes");
    let bad = EbMessage {
        end: at(2038, 4, 23, 0, 0, 0),
        ..message()
    };
    assert_eq!(ebit(bad), "messages[1].end");
    let bad = EbMessage {
        end: at(1993, 10, 13, 12, 44, 59),
        ..message()
    };
    assert_eq!(ebit(bad), "messages[1].end");
    assert_eq!(
        ebit(EbMessage {
            ebm_type: *b"11\nB0",
            ..message()
        }),
        "messages[1].ebm_type"
    );
    let mut bad = with_details();
    if let Some(d) = bad.details.as_mut() {
        d.streams[1].descriptors = Bytes::from_static(&[0x0A, 0x09, 0]);
    }
    assert_eq!(ebit(bad), "messages[1].details.streams[1].descriptors");
    assert_eq!(
        field_of(ebit_section(0, 32, &[], None).unwrap_err()),
        "version"
    );
    assert_eq!(
        field_of(resource_code("3415230000000000000000").unwrap_err()),
        "resource_code"
    );
    assert_eq!(
        field_of(ebm_id("1234567890123456789012345678901234x").unwrap_err()),
        "ebm_id"
    );
    let day = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
    assert_eq!(
        field_of(ebm_id_from(PLATFORM, day, 10000).unwrap_err()),
        "seq"
    );
    assert_eq!(
        field_of(ebm_id_from("123", day, 1).unwrap_err()),
        "platform_code"
    );
    let e = ebm_id_from("1234567890123456789012a", day, 1).unwrap_err();
    assert_eq!(
        e.to_string(),
        "platform_code: expected 23 decimal digits, found \"1234567890123456789012a\""
    );
    // 30 messages of 255 resource codes: far over 4096 bytes.
    let big = EbMessage {
        resource_codes: vec![resource_code("00000000000000000000000").unwrap(); 255],
        ..message()
    };
    let e = ebit_section(0, 0, &vec![big; 30], None).unwrap_err();
    assert!(
        matches!(
            e,
            EmergencyError::TooLong {
                table_id: 0xFD,
                max: 4096,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn out_of_range_scte18_fields_are_named() {
    let f = |a: Scte18Alert| field_of(scte18_section(&a).unwrap_err());
    assert_eq!(
        f(Scte18Alert {
            sequence_number: 32,
            ..alert()
        }),
        "sequence_number"
    );
    assert_eq!(
        f(Scte18Alert {
            time_remaining_s: 121,
            ..alert()
        }),
        "time_remaining_s"
    );
    assert_eq!(
        f(Scte18Alert {
            duration_min: 6001,
            ..alert()
        }),
        "duration_min"
    );
    assert_eq!(
        f(Scte18Alert {
            priority: 16,
            ..alert()
        }),
        "priority"
    );
    assert_eq!(
        f(Scte18Alert {
            details_major_channel: 1024,
            ..alert()
        }),
        "details_major_channel"
    );
    assert_eq!(
        f(Scte18Alert {
            originator: *b"CI\0",
            ..alert()
        }),
        "originator"
    );
    assert_eq!(
        f(Scte18Alert {
            event_code: "紧急".into(),
            ..alert()
        }),
        "event_code"
    );
    assert_eq!(
        f(Scte18Alert {
            language: *b"ZH ",
            ..alert()
        }),
        "language"
    );
    assert_eq!(
        f(Scte18Alert {
            locations: vec![],
            ..alert()
        }),
        "locations"
    );
    let loc = LocationCode {
        state_code: 1,
        county_subdivision: 1,
        county_code: 1,
    };
    assert_eq!(
        f(Scte18Alert {
            locations: vec![loc; 32],
            ..alert()
        }),
        "locations"
    );
    let bad = LocationCode {
        county_code: 910,
        ..loc
    };
    assert_eq!(
        f(Scte18Alert {
            locations: vec![loc, bad],
            ..alert()
        }),
        "locations[1].county_code"
    );
    assert_eq!(
        f(Scte18Alert {
            nature_of_activation: "长".repeat(126),
            ..alert()
        }),
        "nature_of_activation"
    );
    let e = scte18_section(&Scte18Alert {
        alert_text: "长".repeat(2100),
        ..alert()
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            EmergencyError::TooLong {
                table_id: 0xD8,
                max: 4096,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        scte18_section(&Scte18Alert {
            priority: 16,
            ..alert()
        })
        .unwrap_err()
        .to_string(),
        "priority: 16 is outside 0..=15"
    );
}

#[test]
fn gps_seconds_count_leap_seconds() {
    // GPS epoch: 1980-01-06 00:00:00 UTC; GPS − UTC = 18 s since 2017-01-01.
    assert_eq!(gps_seconds(at(1980, 1, 6, 0, 0, 0)), Some(18));
    // 2017-01-01 00:00:00 UTC = GPS 1167264018 (Unix 1483228800 − 315964800 + 18).
    assert_eq!(gps_seconds(at(2017, 1, 1, 0, 0, 0)), Some(1_167_264_018));
    assert_eq!(utc_from_gps(1_167_264_018), at(2017, 1, 1, 0, 0, 0));
    assert_eq!(gps_seconds(at(1979, 12, 31, 0, 0, 0)), None);
    assert_eq!(gps_seconds(at(2200, 1, 1, 0, 0, 0)), None);
    let t = at(2026, 3, 1, 8, 30, 15);
    assert_eq!(utc_from_gps(gps_seconds(t).unwrap()), t);
}

fn arb_code<const N: usize>() -> impl Strategy<Value = [u8; N]> {
    proptest::collection::vec(0u8..10, 2 * N - 1).prop_map(|d| {
        let s: String = d.iter().map(|&n| char::from(b'0' + n)).collect();
        let mut out = [0u8; N];
        for (i, n) in std::iter::once(0x0F).chain(d).enumerate() {
            out[i / 2] |= if i % 2 == 0 { n << 4 } else { n };
        }
        assert_eq!(code_digits(&out).as_deref(), Some(s.as_str()));
        out
    })
}

fn arb_message() -> impl Strategy<Value = EbMessage> {
    let t0 = at(1990, 1, 1, 0, 0, 0);
    (
        arb_code::<18>(),
        any::<u16>(),
        0i64..1_500_000_000,
        0i64..1_000_000,
        proptest::array::uniform5(0x20u8..0x7F),
        1u8..=5,
        0u8..=4,
        proptest::collection::vec(arb_code::<12>(), 0..5),
        proptest::option::of((any::<u16>(), any::<u16>(), 0u16..0x2000, 0usize..3)),
    )
        .prop_map(move |(id, onid, s, d, ty, class, level, codes, details)| {
            let start = t0 + chrono::Duration::seconds(s);
            EbMessage {
                ebm_id: id,
                original_network_id: onid,
                start,
                end: start + chrono::Duration::seconds(d),
                ebm_type: ty,
                class: EbClass::from_code(class).unwrap(),
                level,
                resource_codes: codes,
                details: details.map(|(ts, pn, pid, n)| DetailsChannel {
                    transport_stream_id: ts,
                    program_number: pn,
                    pcr_pid: Pid::from_bits(pid),
                    program_info: Bytes::from([0x44, 1, 2].repeat(n)),
                    streams: (0..n)
                        .map(|k| EsInfo {
                            stream_type: k as u8,
                            pid: Pid::from_bits(pid ^ k as u16),
                            descriptors: Bytes::from([0x52, 1, k as u8].repeat(k)),
                        })
                        .collect(),
                }),
            }
        })
}

fn arb_alert() -> impl Strategy<Value = Scte18Alert> {
    (
        (0u8..32, any::<u16>(), "[A-Z]{3}", "[ -~]{0,8}", "[a-z]{3}"),
        ("\\PC{0,20}", 0u8..=120, any::<u32>(), 0u16..=6000, 0u8..16),
        (
            any::<u16>(),
            0u16..1024,
            0u16..1024,
            any::<u16>(),
            "\\PC{0,300}",
        ),
        proptest::collection::vec((0u8..100, 0u8..10, 0u16..910), 1..32),
    )
        .prop_map(|(a, b, c, locs)| Scte18Alert {
            sequence_number: a.0,
            event_id: a.1,
            originator: a.2.as_bytes().try_into().unwrap(),
            event_code: a.3,
            language: a.4.as_bytes().try_into().unwrap(),
            nature_of_activation: b.0,
            time_remaining_s: b.1,
            start_gps_s: b.2,
            duration_min: b.3,
            priority: b.4,
            details_oob_source_id: c.0,
            details_major_channel: c.1,
            details_minor_channel: c.2,
            audio_oob_source_id: c.3,
            alert_text: c.4,
            locations: locs
                .into_iter()
                .map(|(s, sub, county)| LocationCode {
                    state_code: s,
                    county_subdivision: sub,
                    county_code: county,
                })
                .collect(),
        })
}

proptest! {
    #[test]
    fn ebit_roundtrip(
        messages in proptest::collection::vec(arb_message(), 0..6),
        ext in any::<u16>(),
        version in 0u8..32,
        sig in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80)),
    ) {
        let s = ebit_section(ext, version, &messages, sig.as_deref()).unwrap();
        prop_assert!(s.len() <= 4096);
        let t = parse_ebit_table(&s).unwrap();
        prop_assert_eq!(t.table_ext, ext);
        prop_assert_eq!(t.version, version);
        prop_assert_eq!(t.signature, sig.unwrap_or_default());
        prop_assert_eq!(t.messages, messages);
    }

    #[test]
    fn scte18_roundtrip(a in arb_alert()) {
        match scte18_section(&a) {
            Ok(s) => prop_assert_eq!(parse_scte18(&s).unwrap(), a),
            // Long nature-of-activation text in UTF-16 can exceed its 8-bit length.
            Err(e) => prop_assert_eq!(field_of(e), "nature_of_activation"),
        }
    }

    /// Any body under a valid CRC parses or fails cleanly, never panics.
    #[test]
    fn garbage_bodies_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..300),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
    ) {
        for (tid, valid) in [
            (EBIT_TABLE_ID, ebit_section(0, 0, &[message(), with_details()], None).unwrap()),
            (SCTE18_TABLE_ID, scte18_section(&alert()).unwrap()),
        ] {
            // Random body.
            let mut s = playout::psi::build_long_section(tid, 0, 0, &body).to_vec();
            let _ = parse_ebit(&s);
            let _ = parse_scte18(&s);
            s[0] ^= 0xFF;
            let _ = parse_ebit(&s);
            // A valid section with a few bytes changed, CRC fixed.
            let mut v = valid.clone();
            for &(i, b) in &edits {
                let i = 8 + i % (v.len() - 12);
                v[i] = b;
            }
            recrc(&mut v);
            let _ = parse_ebit(&v);
            let _ = parse_scte18(&v);
            let _ = parse_ebit(&body);
            let _ = parse_scte18(&body);
        }
    }
}
