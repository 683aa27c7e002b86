//! An independent decoder reads our SI: tshark (Wireshark) decodes SDT, EIT p/f, a day of
//! EIT schedule (multi-packet sections), TDT and TOT from a transport stream file with no
//! malformed-packet warning, and shows the service and event names, Chinese included.

use std::process::Command;

use bytes::BytesMut;
use chrono::NaiveDate;
use epg::si::{eit_pf, eit_schedule, sdt, tdt, tot, Charset, Event, Service};
use playout::psi::{packetize_section, Pat};
use playout::ts::Pid;

/// tshark, or `None` to skip outside CI (under CI=true it must be there: scripts/test installs it).
fn tshark() -> Option<&'static str> {
    let found = Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("tshark");
    }
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") {
        panic!("tshark is required (scripts/test installs it)");
    }
    eprintln!("skipping: tshark not installed (set CI=true to make this fatal)");
    None
}

fn stream(charset: Charset) -> BytesMut {
    let now = NaiveDate::from_ymd_opt(2026, 11, 23)
        .unwrap()
        .and_hms_opt(11, 5, 0)
        .unwrap();
    let mut out = BytesMut::new();
    let pat = Pat {
        transport_stream_id: 1,
        version: 0,
        programs: vec![(101, Pid::from_bits(0x1000))],
        network_pid: None,
    };
    packetize_section(Pid::PAT, &pat.build(), 0, &mut out);
    let service = Service {
        service_id: 101,
        name: "中央一套".into(),
        provider: "Demo 提供".into(),
        service_type: 0x01,
        eit_pf: true,
        eit_schedule: false,
    };
    packetize_section(
        Pid::from_bits(0x11),
        &sdt(1, 1, 0, &[service], charset).unwrap(),
        0,
        &mut out,
    );
    let present = Event {
        event_id: 7,
        start: now - chrono::Duration::minutes(5),
        duration_s: 1800,
        running_status: 4,
        language: "zho".into(),
        title: "新闻联播".into(),
        text: "每晚七点".into(),
        extended: "节目介绍".repeat(100),
        content: Some(0x20),
        min_age: 12,
    };
    let following = Event {
        event_id: 8,
        start: now + chrono::Duration::minutes(25),
        duration_s: 600,
        running_status: 1,
        language: "zho".into(),
        title: "天气预报".into(),
        ..Event::default()
    };
    let [s0, s1] = eit_pf(101, 1, 1, 0, Some(&present), Some(&following), charset).unwrap();
    packetize_section(Pid::from_bits(0x12), &s0, 0, &mut out);
    packetize_section(Pid::from_bits(0x12), &s1, 1, &mut out);
    // A day of EIT schedule: multi-packet sections, several per segment.
    let day: Vec<Event> = (0..48)
        .map(|k| Event {
            event_id: 100 + k,
            start: now.date().and_hms_opt(0, 0, 0).unwrap()
                + chrono::Duration::minutes(30 * i64::from(k)),
            duration_s: 1800,
            running_status: 1,
            language: "zho".into(),
            title: format!("节目{k}"),
            extended: "介绍".repeat(200),
            ..Event::default()
        })
        .collect();
    let mut cc = 2;
    for sec in eit_schedule(101, 1, 1, 0, &day, now.date(), 1, charset).unwrap() {
        cc = packetize_section(Pid::from_bits(0x12), &sec, cc, &mut out);
    }
    packetize_section(Pid::from_bits(0x14), &tdt(now), 0, &mut out);
    packetize_section(Pid::from_bits(0x14), &tot(now, "CHN", 480), 1, &mut out);
    out
}

#[test]
fn tshark_decodes_our_si() {
    let Some(tshark) = tshark() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (charset, name) in [(Charset::Utf8, "utf8"), (Charset::Gb2312, "gb2312")] {
        let file = dir.path().join(format!("si-{name}.ts"));
        std::fs::write(&file, stream(charset)).unwrap();
        let out = Command::new(tshark)
            .args(["-r"])
            .arg(&file)
            .args(["-V"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("Malformed"), "{name}: {text}");
        assert!(
            !text.to_lowercase().contains("expert info (warning"),
            "{name}: {text}"
        );
        for want in [
            "Service Descriptor",
            "Short Event Descriptor",
            "Time and Date Table",
            "Time Offset Table",
            "Local Time Offset",
        ] {
            assert!(text.contains(want), "{name}: no {want} in\n{text}");
        }
        match charset {
            Charset::Gb2312 => {
                // This tshark names the GB 2312 selector but cannot show GB 2312 text.
                assert!(
                    text.contains("Encoding: GB-2312-1980 (Simplified Chinese) (13)"),
                    "{name}: {text}"
                );
            }
            _ => assert!(
                text.contains("Service Name: 中央一套")
                    && text.contains("Event Name: 新闻联播")
                    && text.contains("Event Name: 天气预报"),
                "{name}: names in\n{text}"
            ),
        }
    }
}
