//! What a channel airs for an alert: the clip, the EIT present event, and the in-band
//! emergency tables that `[alerts] tables` names: the Chinese cable EBIT (table_id 0xFD, on
//! `ebit_pid`) and the SCTE 18 Emergency Alert Message (table_id 0xD8, PID 0x1FFB).
//! `epg::emergency` builds the sections (and cites its sources); here the alert's fields are
//! mapped onto them.

use chrono::{DateTime, NaiveDateTime, Utc};
use epg::alert::Status;

use super::policy::{DeskChannel, Live};
use crate::config::{AlertsConfig, EmergencyTable};
use crate::station::{AirAlert, OnAirProgramme};

/// What one channel airs for alert `l`.
pub(super) fn air_alert(
    cfg: &AlertsConfig,
    ch: &DeskChannel,
    l: &Live,
    now: DateTime<Utc>,
) -> AirAlert {
    let a = &l.alert;
    let info = a.info.first();
    let description = info
        .map(|i| {
            [i.description.as_deref(), i.instruction.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let language = info.map(|i| iso639(&i.language)).unwrap_or("und");
    let remaining_ns = (l.expires - now).num_nanoseconds().unwrap_or(0).max(0) as u64;
    let programme = OnAirProgramme {
        title: a.headline().to_owned(),
        description: description.clone(),
        genre: Some("news".to_owned()),
        rating: 0,
        language: Some(language.to_owned()),
        episode: None,
        start: playout::schedule::Utc(now.timestamp_nanos_opt().unwrap_or(0)),
        duration_ns: remaining_ns,
    };
    let mut tables = Vec::new();
    for t in &cfg.tables {
        let built = match t {
            EmergencyTable::Ebit => {
                ebit(cfg, ch, l, now).map(|s| (cfg.ebit_pid, 0xFD_u64 << 32, s))
            }
            EmergencyTable::Scte18 => {
                scte18(l, now, &description, language).map(|s| (0x1FFB, 0xD8_u64 << 32, s))
            }
        };
        match built {
            Ok((pid, key, section)) => tables.push((pid, key, vec![section])),
            Err(e) => {
                tracing::error!(seq = l.seq, error = %e, "emergency table not built; the alert goes on air without it")
            }
        }
    }
    AirAlert {
        seq: l.seq,
        clip: l.clip.clone(),
        programme,
        tables,
    }
}

fn ebit(
    cfg: &AlertsConfig,
    ch: &DeskChannel,
    l: &Live,
    now: DateTime<Utc>,
) -> Result<Vec<u8>, String> {
    use epg::emergency::{
        ebit_section, ebm_id_from, resource_code, DetailsChannel, EbClass, EbMessage,
    };
    let a = &l.alert;
    let start: NaiveDateTime = a
        .onset_or_effective()
        .map_or(now, |t| t.with_timezone(&Utc))
        .min(now)
        .naive_utc();
    let ebm_type = a
        .event_codes()
        .map(|(_, v)| v)
        .find(|v| v.len() == 5 && v.is_ascii())
        .map_or(*b"00000", |v| {
            let mut t = [0u8; 5];
            t.copy_from_slice(v.as_bytes());
            t
        });
    let class = match a.status {
        Status::Actual => EbClass::Emergency,
        Status::Exercise => EbClass::LiveDrill,
        _ => EbClass::PublishingDrill,
    };
    let mut resource_codes = Vec::new();
    for (_, code) in a.geocodes() {
        if code.bytes().all(|b| b.is_ascii_digit()) && code.len() <= 23 {
            if let Ok(r) = resource_code(&format!("{code:0<23}")) {
                if !resource_codes.contains(&r) && resource_codes.len() < 255 {
                    resource_codes.push(r);
                }
            }
        }
    }
    let msg = EbMessage {
        ebm_id: ebm_id_from(
            &cfg.resource_code,
            now.date_naive(),
            (l.seq % 10_000) as u16,
        )
        .map_err(|e| e.to_string())?,
        original_network_id: ch.original_network_id,
        start,
        end: l.expires.naive_utc().max(start),
        ebm_type,
        class,
        level: l.level.min(4),
        resource_codes,
        details: Some(DetailsChannel {
            transport_stream_id: ch.transport_stream_id,
            program_number: ch.service_id,
            pcr_pid: playout::ts::Pid::from_bits(0x1FFF),
            program_info: bytes::Bytes::new(),
            streams: Vec::new(),
        }),
    };
    ebit_section(ch.service_id, (l.revision % 32) as u8, &[msg], None).map_err(|e| e.to_string())
}

fn scte18(
    l: &Live,
    now: DateTime<Utc>,
    description: &str,
    language: &str,
) -> Result<Vec<u8>, String> {
    use epg::emergency::{scte18_section, LocationCode, Scte18Alert};
    let a = &l.alert;
    let remaining = (l.expires - now).num_seconds().max(0);
    let mut lang = [0u8; 3];
    lang.copy_from_slice(language.as_bytes().get(..3).unwrap_or(b"und"));
    let priority = if a.is_drill() {
        0
    } else {
        match l.level {
            1 => 15,
            2 => 11,
            3 => 7,
            _ => 3,
        }
    };
    let event_code = a
        .event_codes()
        .map(|(_, v)| v)
        .find(|v| v.len() == 3 && v.bytes().all(|b| b.is_ascii_uppercase()))
        .unwrap_or(if l.level == 1 { "EAN" } else { "ADR" })
        .to_owned();
    let mut text = a.headline().to_owned();
    if !description.is_empty() {
        text.push('\n');
        text.push_str(description);
    }
    // Keep the section within its 4096 bytes (UTF-16 text: two bytes a character).
    let text: String = text.chars().take(1500).collect();
    let alert = Scte18Alert {
        sequence_number: (l.revision % 32) as u8,
        event_id: (l.seq & 0xFFFF) as u16,
        originator: *b"CIV",
        event_code,
        language: lang,
        nature_of_activation: a
            .info
            .first()
            .map(|i| i.event.chars().take(100).collect())
            .unwrap_or_default(),
        time_remaining_s: remaining.min(120) as u8,
        start_gps_s: 0,
        duration_min: ((remaining + 59) / 60).clamp(15, 6000) as u16,
        priority,
        details_oob_source_id: 0,
        details_major_channel: 0,
        details_minor_channel: 0,
        audio_oob_source_id: 0,
        alert_text: text,
        locations: vec![LocationCode {
            state_code: 0,
            county_subdivision: 0,
            county_code: 0,
        }],
    };
    scte18_section(&alert).map_err(|e| e.to_string())
}

/// ISO 639-2 code of a CAP language tag (`zh-CN` → `zho`); `und` when unknown.
fn iso639(tag: &str) -> &'static str {
    match tag
        .split('-')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
        .as_str()
    {
        "zh" => "zho",
        "en" => "eng",
        "fr" => "fra",
        "es" => "spa",
        "de" => "deu",
        "ja" => "jpn",
        "ko" => "kor",
        "ru" => "rus",
        "ar" => "ara",
        "pt" => "por",
        _ => "und",
    }
}
