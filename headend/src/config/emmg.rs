//! `[[emmg]]`: EMM injection, the MUX side of the DVB SimulCrypt EMMG/PDG⇔MUX interface
//! (ETSI TS 103 197): where an EMMG connects, which CAS it serves and how much it may send.

use std::net::SocketAddr;

use serde::Deserialize;

use super::error::Diagnostics;
use super::units::{self, Bitrate};
use super::{ChannelConfig, KeySourceConfig, PidPlan};

/// One EMMG the head-end takes EMMs from (`[[emmg]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EmmgConfig {
    /// Key `listen`: the TCP address the EMMG connects to (channel and stream set-up, and
    /// data_provision). Required, distinct among EMMGs.
    pub(crate) listen: SocketAddr,
    /// Key `udp`: an address taking data_provision over UDP as well. Default none.
    pub(crate) udp: Option<SocketAddr>,
    /// Key `client_id`: the EMMG's client_id; its upper 16 bits are the CA_system_id of the
    /// CAS whose EMMs it sends. Every station carrying a channel scrambled for that CAS (a
    /// `[[channel.scrambling.simulcrypt]]` with the same CA_system_id) carries its EMMs.
    /// Required.
    pub(crate) client_id: u32,
    /// Key `data_id`: the only data_id accepted. Default any.
    pub(crate) data_id: Option<u16>,
    /// Key `bandwidth`: the most the EMMG is allocated (stream_BW_allocation; counted as TS
    /// packets on air), 1 kbit/s..=10 Mbit/s. What it sends beyond is held back (TCP) or
    /// dropped (UDP). Default `"100k"`.
    pub(crate) bandwidth: Bitrate,
    /// Key `emm_pid`: the EMM PID in each station, 0x0020..=0x1FFE, outside the channels'
    /// PID plans and ECM PIDs; listed in the CAT with the CA_system_id. Required.
    pub(crate) emm_pid: u16,
}

impl EmmgConfig {
    /// The CA_system_id of the CAS it serves.
    pub(crate) fn ca_system_id(&self) -> u16 {
        (self.client_id >> 16) as u16
    }

    /// Whether `ch` is scrambled for its CAS (a CAS of `ch` with its CA_system_id): its EMMs go
    /// into `ch`'s station.
    pub(crate) fn serves(&self, ch: &ChannelConfig) -> bool {
        let Some(sc) = &ch.scrambling else {
            return false;
        };
        match &sc.keys {
            KeySourceConfig::Simulcrypt(cas) => {
                cas.iter().any(|c| c.ca_system_id == self.ca_system_id())
            }
            _ => false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmmg {
    listen: SocketAddr,
    udp: Option<SocketAddr>,
    client_id: i64,
    data_id: Option<i64>,
    #[serde(default, deserialize_with = "optional_bitrate")]
    bandwidth: Option<Bitrate>,
    emm_pid: i64,
}

fn optional_bitrate<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Bitrate>, D::Error> {
    units::bitrate(d).map(Some)
}

/// The `[[emmg]]` table at `path`. `None` iff an error was reported.
pub(super) fn emmg(table: toml::Table, path: &str, diag: &mut Diagnostics) -> Option<EmmgConfig> {
    let raw: RawEmmg = match toml::Value::Table(table).try_into() {
        Ok(r) => r,
        Err(e) => {
            diag.toml(path, &e);
            return None;
        }
    };
    let before = diag.len();
    let client_id = diag.ranged(
        format!("{path}.client_id"),
        raw.client_id,
        0x0001_0000u32..=u32::MAX,
    );
    let data_id = raw
        .data_id
        .and_then(|v| diag.ranged(format!("{path}.data_id"), v, 0u16..=0xFFFF));
    let bandwidth = raw.bandwidth.unwrap_or(Bitrate::from_bps(100_000));
    if !(1_000..=10_000_000).contains(&bandwidth.bps()) {
        diag.push(format!("{path}.bandwidth"), "must be 1k..=10M");
    }
    let emm_pid = diag.ranged(
        format!("{path}.emm_pid"),
        raw.emm_pid,
        PidPlan::FIRST..=PidPlan::LAST,
    );
    if diag.len() != before {
        return None;
    }
    Some(EmmgConfig {
        listen: raw.listen,
        udp: raw.udp,
        client_id: client_id?,
        data_id,
        bandwidth,
        emm_pid: emm_pid?,
    })
}

/// Config-wide checks: distinct addresses, each EMMG's CAS carried by some channel, its EMM
/// PID clear of the PID plans and ECM PIDs of the channels it goes into and of other EMMGs'
/// (a station carrying both).
pub(super) fn check(
    emmgs: &[EmmgConfig],
    channels: &[ChannelConfig],
    mpts: &[super::MptsConfig],
    diag: &mut Diagnostics,
) {
    for (i, e) in emmgs.iter().enumerate() {
        let path = format!("emmg[{i}]");
        for (j, o) in emmgs[..i].iter().enumerate() {
            if o.listen == e.listen || (e.udp.is_some() && o.udp == e.udp) {
                diag.push(
                    format!("{path}.listen"),
                    format!("also emmg[{j}]'s address"),
                );
            }
            if o.emm_pid == e.emm_pid {
                diag.push(
                    format!("{path}.emm_pid"),
                    format!("also emmg[{j}]'s EMM PID"),
                );
            }
        }
        let served: Vec<&ChannelConfig> = channels.iter().filter(|c| e.serves(c)).collect();
        if served.is_empty() {
            diag.push(
                format!("{path}.client_id"),
                format!(
                    "no channel is scrambled for CA_system_id 0x{:04X} (a [[channel.scrambling.simulcrypt]] with that Super_CAS_id)",
                    e.ca_system_id()
                ),
            );
        }
        // The stations it goes into, as (channels, muxrate): a channel on its own or its mpts.
        let mut stations: Vec<(Vec<&ChannelConfig>, u64)> = Vec::new();
        for ch in &served {
            match mpts.iter().find(|m| m.channels.contains(&ch.id)) {
                Some(m) => {
                    let members: Vec<&ChannelConfig> = channels
                        .iter()
                        .filter(|c| m.channels.contains(&c.id))
                        .collect();
                    if !stations
                        .iter()
                        .any(|(s, _)| s.iter().any(|c| c.id == ch.id))
                    {
                        stations.push((members, m.muxrate.bps()));
                    }
                }
                None => stations.push((vec![*ch], ch.muxrate.bps())),
            }
        }
        for (members, muxrate) in &stations {
            if e.bandwidth.bps() * 4 > *muxrate {
                diag.push(
                    format!("{path}.bandwidth"),
                    format!(
                        "{} bit/s is over a quarter of the {muxrate} bit/s muxrate of the station carrying channel `{}`: EMMs go before program packets",
                        e.bandwidth.bps(),
                        members[0].id
                    ),
                );
            }
        }
        for ch in stations.iter().flat_map(|(m, _)| m.iter()) {
            let clash = ch
                .pids
                .ranges()
                .into_iter()
                .find(|(_, r)| r.contains(&e.emm_pid))
                .map(|(name, _)| format!("in channel `{}`'s PID plan (`{name}`)", ch.id))
                .or_else(|| {
                    let sc = ch.scrambling.as_ref()?;
                    let ecm = sc.ecm_streams().into_iter().any(|(p, _)| p == e.emm_pid);
                    let cat = sc.cat_emm_pid == Some(e.emm_pid);
                    (ecm || cat).then(|| format!("used by channel `{}`'s scrambling", ch.id))
                });
            if let Some(why) = clash {
                diag.push(
                    format!("{path}.emm_pid"),
                    format!("0x{:04X} is {why}", e.emm_pid),
                );
            }
        }
    }
}
