//! Multi-program transport streams (`[[mpts]]`): several channels muxed into one output.

use std::collections::HashMap;

use super::claims::{ChannelFacts, Claims};
use super::error::Diagnostics;
use super::output::{self, OutputConfig};
use super::raw::RawMpts;
use super::units::Bitrate;

/// One multi-program transport stream built from existing channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MptsConfig {
    /// Key `id`: name used by the API, logs and metrics. Required, `[a-z0-9_-]{1,32}`,
    /// unique among mpts and distinct from every channel id.
    pub(crate) id: String,
    /// Key `transport_stream_id`: in the PAT and SDT of the MPTS. Default 1, 0..=65535.
    pub(crate) transport_stream_id: u16,
    /// Key `muxrate`: constant output bitrate. Required, 100 kbit/s..=1 Gbit/s, and at least
    /// the sum of the listed channels' muxrates.
    pub(crate) muxrate: Bitrate,
    /// Key `channels`: ids of `[[channel]]` entries to carry, in PAT order. Required, at
    /// least one, no duplicates; their PID plans must not collide with each other.
    pub(crate) channels: Vec<String>,
    /// Array `[[mpts.output]]`: where the stream is sent. Default empty.
    pub(crate) outputs: Vec<OutputConfig>,
}

/// Converts the `[[mpts]]` table at `path`; every `[[channel]]` must already be claimed.
/// `None` iff an error was reported.
pub(super) fn mpts(
    mut table: toml::Table,
    path: &str,
    diag: &mut Diagnostics,
    claims: &mut Claims,
) -> Option<MptsConfig> {
    let outputs = table.remove("output");
    let id_hint = table
        .get("id")
        .and_then(toml::Value::as_str)
        .map(str::to_owned);
    let raw: RawMpts = match toml::Value::Table(table).try_into() {
        Ok(raw) => raw,
        Err(err) => {
            diag.toml(path, &err);
            if let Some(id) = id_hint {
                claims.id(&id, path, diag);
            }
            output::outputs(outputs, path, diag, claims);
            return None;
        }
    };
    let before = diag.len();
    super::check_id(&raw.id, path, diag);
    claims.id(&raw.id, path, diag);
    let transport_stream_id = diag.ranged(
        format!("{path}.transport_stream_id"),
        raw.transport_stream_id.unwrap_or(1),
        0u16..=65535,
    );
    let muxrate = super::check_muxrate(raw.muxrate, format!("{path}.muxrate"), diag);
    if raw.channels.is_empty() {
        diag.push(format!("{path}.channels"), "must list at least one channel");
    }
    let members = members(&raw, path, diag, claims);
    for (later, (index, name, facts)) in members.iter().enumerate() {
        for (_, earlier_name, earlier_facts) in &members[..later] {
            let (Some(pids), Some(earlier_pids)) = (facts.pids, earlier_facts.pids) else {
                continue;
            };
            if let Some((pid, earlier_key, key)) = earlier_pids.collision(&pids) {
                diag.push(
                    format!("{path}.channels[{index}]"),
                    format!(
                        "PID {pid:#06x} is used by both channel `{earlier_name}` ({earlier_key}) and channel `{name}` ({key})"
                    ),
                );
            }
        }
    }
    let rates: Option<Vec<(&str, Bitrate)>> = members
        .iter()
        .map(|(_, name, facts)| Some((*name, facts.muxrate?)))
        .collect();
    if let (Some(muxrate), Some(rates)) = (muxrate, rates) {
        let sum = rates
            .iter()
            .fold(0u64, |sum, (_, rate)| sum.saturating_add(rate.bps()));
        if sum > muxrate.bps() {
            let terms: Vec<String> = rates
                .iter()
                .map(|(name, rate)| format!("{name} {rate}"))
                .collect();
            diag.push(
                format!("{path}.muxrate"),
                format!(
                    "{muxrate} is less than the sum of its channels' muxrates, {} ({})",
                    Bitrate::from_bps(sum),
                    terms.join(" + ")
                ),
            );
        }
    }
    let outputs = output::outputs(outputs, path, diag, claims);
    let (Some(transport_stream_id), Some(muxrate), Some(outputs)) =
        (transport_stream_id, muxrate, outputs)
    else {
        return None;
    };
    (diag.len() == before).then_some(MptsConfig {
        id: raw.id,
        transport_stream_id,
        muxrate,
        channels: raw.channels,
        outputs,
    })
}

/// The listed channels that exist, as (index in `channels`, id, facts); reports unknown and
/// repeated ones.
fn members<'a>(
    raw: &'a RawMpts,
    path: &str,
    diag: &mut Diagnostics,
    claims: &Claims,
) -> Vec<(usize, &'a str, ChannelFacts)> {
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    let mut members = Vec::new();
    for (index, name) in raw.channels.iter().enumerate() {
        let item = format!("{path}.channels[{index}]");
        let shown = name.escape_debug();
        if let Some(first) = first_index.get(name.as_str()) {
            diag.push(
                item,
                format!("channel `{shown}` is already listed at channels[{first}]"),
            );
            continue;
        }
        first_index.insert(name, index);
        match claims.channel_facts(name) {
            Some(facts) => members.push((index, name.as_str(), facts.clone())),
            None => diag.push(item, format!("unknown channel `{shown}`")),
        }
    }
    members
}
