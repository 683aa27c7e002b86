//! `[channel.scrambling]`: the channel leaves the head-end scrambled (`docs/scrambling.md`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::error::Diagnostics;
use super::units::HumanDuration;
use super::PidPlan;

/// How a channel is scrambled (`[channel.scrambling]`). Absent: the channel is clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ScramblingConfig {
    /// Key `cipher`: `"dvb-cissa"` (default), `"atis-idsa"`, `"aes-ctr"`, `"sm4-cbc"`,
    /// `"sm4-ctr"`.
    pub(crate) cipher: drm::cipher::CipherKind,
    /// Key `iv`: 32 hex digits replacing the cipher's IV (CISSA/SM4-CBC fixed IV, CTR
    /// initial counter). Default the cipher's.
    pub(crate) iv: Option<[u8; 16]>,
    /// Key `crypto_period`: how long each control word is used, 1s..=1h. Default `"10s"`.
    pub(crate) crypto_period: Duration,
    /// Key `keys`: `"random"` (default: a fresh word from the OS random generator every
    /// crypto-period), `"file"` (`key_file`: fixed words, BISS-style), `"simulcrypt"` (random
    /// words, ECMs from the ECMGs of `[[channel.scrambling.simulcrypt]]`, one per CAS).
    pub(crate) keys: KeySourceConfig,
    /// Key `on_failure`: when the key source fails: `"keep"` (default: go on with the last
    /// word and alarm), `"clear"` (send the service clear and alarm), `"stop"` (send none of
    /// the service's elementary streams and alarm).
    pub(crate) on_failure: OnFailure,
    /// Key `ecm_pid`: the ECMs' PID, 0x0020..=0x1FFE, outside the channel's PID plan. Default
    /// 0x1FF0.
    pub(crate) ecm_pid: u16,
    /// Key `ca_system_id`: in the CA_descriptor (and CAT). Default 0x4AFF (the built-in ECMs'
    /// private format; with SimulCrypt, the upper half of `super_cas_id`).
    pub(crate) ca_system_id: u16,
    /// Key `ca_descriptor`: `"program"` (default: in the PMT's program loop) or `"es"` (on
    /// each scrambled stream).
    pub(crate) ca_descriptor_per_es: bool,
    /// Key `ecm_key` (32 hex digits) and `ecm_wrap` (`"aes"` default, `"sm4"`): the built-in
    /// ECM generator's key (keys `random` and `file`): ECMs carry the words wrapped under it
    /// (`drm::ecm`), which `hectl descramble --ecm-key` can open. Without it no ECMs are sent
    /// (receivers need the words some other way).
    pub(crate) ecm_key: Option<(EcmKey, drm::ecm::Wrap)>,
    /// Key `ecm_interval`: how often the ECM repeats, 20ms..=5s. Default `"100ms"` (with
    /// SimulCrypt, the ECMG's ECM_rep_period).
    pub(crate) ecm_interval: Duration,
    /// Key `cat_emm_pid`: when set, a CAT (PID 1) with a CA_descriptor naming this EMM PID.
    pub(crate) cat_emm_pid: Option<u16>,
}

/// The built-in ECM generator's key: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct EcmKey(pub(crate) [u8; 16]);

impl std::fmt::Debug for EcmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EcmKey(<redacted>)")
    }
}

/// Where the control words come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeySourceConfig {
    /// The OS random generator.
    Random,
    /// A key file: 32 hex digits (one word for both parities) or two lines (even, odd); its
    /// permissions must be 0600 or narrower (checked when it is read).
    File(PathBuf),
    /// ECMGs over DVB SimulCrypt, one per CAS (at least one; distinct ECM PIDs and
    /// Super_CAS_ids), all given the same control words.
    Simulcrypt(Vec<SimulcryptConfig>),
}

impl ScramblingConfig {
    /// The ECM streams named in the PMT: (ECM PID, CA_system_id), one per CAS.
    pub(crate) fn ecm_streams(&self) -> Vec<(u16, u16)> {
        match &self.keys {
            KeySourceConfig::Simulcrypt(cas) => {
                cas.iter().map(|c| (c.ecm_pid, c.ca_system_id)).collect()
            }
            _ => vec![(self.ecm_pid, self.ca_system_id)],
        }
    }
}

/// The SimulCrypt protocol version spoken to an ECMG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VersionChoice {
    /// Version 3 first, 2 if the ECMG refuses it.
    Auto,
    Fixed(drm::simulcrypt::ProtocolVersion),
}

/// One `[[channel.scrambling.simulcrypt]]`: a CAS and its ECMG.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SimulcryptConfig {
    /// Key `ecmg`: the ECMG's TCP address. Required.
    pub(crate) ecmg: SocketAddr,
    /// Key `super_cas_id`: CA_system_id (16 bits) and CA_subsystem_id (16 bits). Required.
    pub(crate) super_cas_id: u32,
    /// Key `protocol_version`: `2`, `3` or `"auto"` (default).
    pub(crate) version: VersionChoice,
    /// Key `ecm_pid`: this CAS's ECM PID. Default: the scrambling's `ecm_pid` for the first
    /// CAS, the next PIDs up for the others.
    pub(crate) ecm_pid: u16,
    /// Key `ca_system_id`: in this CAS's CA_descriptor. Default the upper half of
    /// `super_cas_id` (for the first CAS, the scrambling's `ca_system_id` when set).
    pub(crate) ca_system_id: u16,
    /// Keys `ecm_channel_id`, `ecm_stream_id`, `ecm_id`: default 1, 1, the service_id.
    pub(crate) ecm_channel_id: u16,
    pub(crate) ecm_stream_id: u16,
    pub(crate) ecm_id: Option<u16>,
    /// Key `access_criteria`: hex, passed to the ECMG. Default none.
    pub(crate) access_criteria: Vec<u8>,
}

/// What to do when the key source fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnFailure {
    KeepLast,
    Clear,
    Stop,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScrambling {
    cipher: Option<String>,
    iv: Option<String>,
    crypto_period: Option<HumanDuration>,
    keys: Option<String>,
    key_file: Option<PathBuf>,
    on_failure: Option<String>,
    ecm_pid: Option<i64>,
    ca_system_id: Option<i64>,
    ca_descriptor: Option<String>,
    ecm_key: Option<String>,
    ecm_wrap: Option<String>,
    ecm_interval: Option<HumanDuration>,
    cat_emm_pid: Option<i64>,
    simulcrypt: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSimulcrypt {
    ecmg: SocketAddr,
    super_cas_id: i64,
    ecm_channel_id: Option<i64>,
    ecm_stream_id: Option<i64>,
    ecm_id: Option<i64>,
    access_criteria: Option<String>,
    protocol_version: Option<toml::Value>,
    ecm_pid: Option<i64>,
    ca_system_id: Option<i64>,
}

/// 32 hex digits, nothing else but white space around them (no `0x`).
fn hex16(text: &str) -> Option<[u8; 16]> {
    drm::cipher::parse_hex16_strict(text.trim()).ok()
}

fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    let t = text.trim();
    if t.len() % 2 != 0 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..t.len() / 2)
        .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).ok())
        .collect()
}

fn within(d: Duration, low: Duration, high: Duration) -> bool {
    (low..=high).contains(&d)
}

/// `[channel.scrambling]` of the channel at `path`; its PIDs must stay clear of `plan`.
pub(super) fn scrambling_config(
    value: toml::Value,
    path: &str,
    base_dir: &Path,
    service_id: Option<u16>,
    plan: Option<&PidPlan>,
    diag: &mut Diagnostics,
) -> Option<ScramblingConfig> {
    let path = format!("{path}.scrambling");
    let raw: RawScrambling = match value.try_into() {
        Ok(r) => r,
        Err(e) => {
            diag.toml(&path, &e);
            return None;
        }
    };
    let before = diag.len();
    let cipher = match raw.cipher.as_deref().unwrap_or("dvb-cissa").parse() {
        Ok(c) => Some(c),
        Err(_) => {
            diag.push(
                format!("{path}.cipher"),
                "expected `dvb-cissa`, `atis-idsa`, `aes-ctr`, `sm4-cbc` or `sm4-ctr`",
            );
            None
        }
    };
    let iv = raw.iv.as_deref().and_then(|t| {
        let v = hex16(t);
        if v.is_none() {
            diag.push(format!("{path}.iv"), "expected 32 hex digits");
        }
        v
    });
    let crypto_period = raw.crypto_period.map_or(Duration::from_secs(10), |d| d.0);
    if !within(
        crypto_period,
        Duration::from_secs(1),
        Duration::from_secs(3600),
    ) {
        diag.push(format!("{path}.crypto_period"), "must be 1s..=1h");
    }
    let keys = match (
        raw.keys.as_deref().unwrap_or("random"),
        raw.key_file,
        raw.simulcrypt,
    ) {
        ("random", None, None) => Some(KeySourceConfig::Random),
        ("file", Some(f), None) => Some(KeySourceConfig::File(base_dir.join(f))),
        ("file", None, _) => {
            diag.push(format!("{path}.key_file"), "required with keys = \"file\"");
            None
        }
        ("simulcrypt", None, Some(s)) => simulcrypt(
            s,
            &path,
            service_id,
            raw.ecm_pid.unwrap_or(0x1FF0),
            raw.ca_system_id,
            diag,
        ),
        ("simulcrypt", _, None) => {
            diag.push(
                format!("{path}.simulcrypt"),
                "required with keys = \"simulcrypt\"",
            );
            None
        }
        ("random" | "file" | "simulcrypt", _, _) => {
            diag.push(
                format!("{path}.keys"),
                "`key_file` goes with keys = \"file\", `[simulcrypt]` with keys = \"simulcrypt\"",
            );
            None
        }
        (other, _, _) => {
            diag.push(
                format!("{path}.keys"),
                format!(
                    "`{}`: expected `random`, `file` or `simulcrypt`",
                    other.escape_debug()
                ),
            );
            None
        }
    };
    let on_failure = match raw.on_failure.as_deref().unwrap_or("keep") {
        "keep" => OnFailure::KeepLast,
        "clear" => OnFailure::Clear,
        "stop" => OnFailure::Stop,
        other => {
            diag.push(
                format!("{path}.on_failure"),
                format!(
                    "`{}`: expected `keep`, `clear` or `stop`",
                    other.escape_debug()
                ),
            );
            OnFailure::KeepLast
        }
    };
    let ecm_pid = match &keys {
        Some(KeySourceConfig::Simulcrypt(s)) => Some(s[0].ecm_pid),
        _ => diag.ranged(
            format!("{path}.ecm_pid"),
            raw.ecm_pid.unwrap_or(0x1FF0),
            PidPlan::FIRST..=PidPlan::LAST,
        ),
    };
    let cat_emm_pid = raw.cat_emm_pid.and_then(|p| {
        diag.ranged(
            format!("{path}.cat_emm_pid"),
            p,
            PidPlan::FIRST..=PidPlan::LAST,
        )
    });
    if let Some(plan) = plan {
        let mut pids = vec![
            ("ecm_pid".to_owned(), ecm_pid),
            ("cat_emm_pid".to_owned(), cat_emm_pid),
        ];
        if let Some(KeySourceConfig::Simulcrypt(cas)) = &keys {
            for (i, c) in cas.iter().enumerate().skip(1) {
                pids.push((format!("simulcrypt[{i}].ecm_pid"), Some(c.ecm_pid)));
            }
        }
        for (key, pid) in pids {
            let Some(pid) = pid else { continue };
            if let Some((name, _)) = plan.ranges().into_iter().find(|(_, r)| r.contains(&pid)) {
                diag.push(
                    format!("{path}.{key}"),
                    format!("0x{pid:04X} is in the PID plan's `{name}` range"),
                );
            }
        }
    }
    let default_ca = match &keys {
        Some(KeySourceConfig::Simulcrypt(s)) => i64::from(s[0].ca_system_id),
        _ => 0x4AFF,
    };
    let ca_system_id = diag.ranged(
        format!("{path}.ca_system_id"),
        raw.ca_system_id.unwrap_or(default_ca),
        1u16..=0xFFFF,
    );
    let ca_descriptor_per_es = match raw.ca_descriptor.as_deref().unwrap_or("program") {
        "program" => false,
        "es" => true,
        other => {
            diag.push(
                format!("{path}.ca_descriptor"),
                format!("`{}`: expected `program` or `es`", other.escape_debug()),
            );
            false
        }
    };
    let wrap = match raw.ecm_wrap.as_deref().unwrap_or("aes") {
        "aes" => Some(drm::ecm::Wrap::Aes128),
        "sm4" => Some(drm::ecm::Wrap::Sm4),
        other => {
            diag.push(
                format!("{path}.ecm_wrap"),
                format!("`{}`: expected `aes` or `sm4`", other.escape_debug()),
            );
            None
        }
    };
    let ecm_key = match raw.ecm_key.as_deref() {
        None => None,
        Some(t) => match (hex16(t), wrap) {
            (Some(k), Some(w)) => Some((EcmKey(k), w)),
            (None, _) => {
                // The value itself is never repeated.
                diag.push(format!("{path}.ecm_key"), "expected 32 hex digits");
                None
            }
            (_, None) => None,
        },
    };
    if ecm_key.is_some() && matches!(keys, Some(KeySourceConfig::Simulcrypt(_))) {
        diag.push(
            format!("{path}.ecm_key"),
            "with keys = \"simulcrypt\" the ECMG makes the ECMs",
        );
    }
    let ecm_interval = raw.ecm_interval.map_or(Duration::from_millis(100), |d| d.0);
    if !within(
        ecm_interval,
        Duration::from_millis(20),
        Duration::from_secs(5),
    ) {
        diag.push(format!("{path}.ecm_interval"), "must be 20ms..=5s");
    }
    if diag.len() != before {
        return None;
    }
    Some(ScramblingConfig {
        cipher: cipher?,
        iv,
        crypto_period,
        keys: keys?,
        on_failure,
        ecm_pid: ecm_pid?,
        ca_system_id: ca_system_id?,
        ca_descriptor_per_es,
        ecm_key,
        ecm_interval,
        cat_emm_pid,
    })
}

/// `[channel.scrambling.simulcrypt]` (one CAS) or `[[channel.scrambling.simulcrypt]]` (a
/// list): each CAS with its own ECM PID (default `ecm_pid`, `ecm_pid + 1`...) and
/// Super_CAS_id.
fn simulcrypt(
    value: toml::Value,
    path: &str,
    service_id: Option<u16>,
    first_ecm_pid: i64,
    ca_system_id: Option<i64>,
    diag: &mut Diagnostics,
) -> Option<KeySourceConfig> {
    let (items, list) = match value {
        toml::Value::Array(a) => (a, true),
        v => (vec![v], false),
    };
    if items.is_empty() {
        diag.push(format!("{path}.simulcrypt"), "at least one CAS is needed");
        return None;
    }
    let before = diag.len();
    let mut out: Vec<SimulcryptConfig> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let here = if list {
            format!("{path}.simulcrypt[{i}]")
        } else {
            format!("{path}.simulcrypt")
        };
        let raw: RawSimulcrypt = match item.try_into() {
            Ok(r) => r,
            Err(e) => {
                diag.toml(&here, &e);
                continue;
            }
        };
        let default_pid = first_ecm_pid + i as i64;
        let default_ca = (i == 0).then_some(ca_system_id).flatten();
        let Some(c) = one_cas(raw, &here, service_id, default_pid, default_ca, diag) else {
            continue;
        };
        if let Some(o) = out.iter().find(|o| o.ecm_pid == c.ecm_pid) {
            diag.push(
                format!("{here}.ecm_pid"),
                format!(
                    "0x{:04X} is also the ECM PID of Super_CAS_id 0x{:08X}",
                    c.ecm_pid, o.super_cas_id
                ),
            );
        }
        if out.iter().any(|o| o.super_cas_id == c.super_cas_id) {
            diag.push(
                format!("{here}.super_cas_id"),
                format!("0x{:08X} is listed twice", c.super_cas_id),
            );
        }
        out.push(c);
    }
    (diag.len() == before).then_some(KeySourceConfig::Simulcrypt(out))
}

fn one_cas(
    raw: RawSimulcrypt,
    path: &str,
    service_id: Option<u16>,
    default_pid: i64,
    default_ca: Option<i64>,
    diag: &mut Diagnostics,
) -> Option<SimulcryptConfig> {
    let path = path.to_owned();
    let super_cas_id = diag.ranged(
        format!("{path}.super_cas_id"),
        raw.super_cas_id,
        1u32..=u32::MAX,
    );
    let channel = diag.ranged(
        format!("{path}.ecm_channel_id"),
        raw.ecm_channel_id.unwrap_or(1),
        0u16..=0xFFFF,
    );
    let stream = diag.ranged(
        format!("{path}.ecm_stream_id"),
        raw.ecm_stream_id.unwrap_or(1),
        0u16..=0xFFFF,
    );
    let ecm_id = match raw.ecm_id {
        Some(v) => Some(diag.ranged(format!("{path}.ecm_id"), v, 0u16..=0xFFFF)?),
        None => service_id,
    };
    let access_criteria = match raw.access_criteria.as_deref() {
        None => Vec::new(),
        Some(t) => match hex_bytes(t) {
            Some(v) => v,
            None => {
                diag.push(format!("{path}.access_criteria"), "expected hex digits");
                return None;
            }
        },
    };
    let version = match &raw.protocol_version {
        None => Some(VersionChoice::Auto),
        Some(toml::Value::String(t)) if t == "auto" => Some(VersionChoice::Auto),
        Some(toml::Value::Integer(2)) => {
            Some(VersionChoice::Fixed(drm::simulcrypt::ProtocolVersion::V2))
        }
        Some(toml::Value::Integer(3)) => {
            Some(VersionChoice::Fixed(drm::simulcrypt::ProtocolVersion::V3))
        }
        Some(_) => {
            diag.push(
                format!("{path}.protocol_version"),
                "expected 2, 3 or \"auto\"",
            );
            None
        }
    };
    let ecm_pid = diag.ranged(
        format!("{path}.ecm_pid"),
        raw.ecm_pid.unwrap_or(default_pid),
        PidPlan::FIRST..=PidPlan::LAST,
    );
    let super_cas_id = super_cas_id?;
    let ca_system_id = diag.ranged(
        format!("{path}.ca_system_id"),
        raw.ca_system_id
            .or(default_ca)
            .unwrap_or(i64::from(super_cas_id >> 16)),
        1u16..=0xFFFF,
    );
    Some(SimulcryptConfig {
        ecmg: raw.ecmg,
        super_cas_id,
        version: version?,
        ecm_pid: ecm_pid?,
        ca_system_id: ca_system_id?,
        ecm_channel_id: channel?,
        ecm_stream_id: stream?,
        ecm_id,
        access_criteria,
    })
}
