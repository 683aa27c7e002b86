//! Single-program channels (`[[channel]]`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::claims::{ChannelFacts, Claims};
use super::error::Diagnostics;
use super::output::{self, OutputConfig};
use super::pids::{self, PidPlan};
use super::raw::{RawChannel, RawSi};
use epg::schedule::Tz;

use super::units::{Bitrate, HumanDuration};

/// One service: a looping playlist muxed at a constant bitrate into its own single-program
/// transport stream, sent to every output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChannelConfig {
    /// Key `id`: name used by the API, logs, metrics and `[[mpts]]` lists. Required,
    /// `[a-z0-9_-]{1,32}`, unique among channels and mpts.
    pub(crate) id: String,
    /// Key `service_id`: MPEG program_number / DVB service_id. Required, 1..=65535, unique
    /// across all channels.
    pub(crate) service_id: u16,
    /// Key `name`: service name in the SDT. Required, 1..=64 bytes.
    pub(crate) name: String,
    /// Key `provider`: service provider name in the SDT. Default `""`, at most 64 bytes.
    pub(crate) provider: String,
    /// Key `muxrate`: constant output bitrate including null packets, e.g. `"6M"`. Required,
    /// 100 kbit/s..=1 Gbit/s.
    pub(crate) muxrate: Bitrate,
    /// Key `transport_stream_id`: in the PAT and SDT. Default 1, 0..=65535.
    pub(crate) transport_stream_id: u16,
    /// Key `playlist`: media files played in order and looped. Required, non-empty; relative
    /// paths are resolved against the config file's directory. Existence is not checked at
    /// load time (see [`super::missing_media`]).
    pub(crate) playlist: Vec<PathBuf>,
    /// Table `[channel.pids]`: the PIDs of the program. Default [`PidPlan::default`].
    pub(crate) pids: PidPlan,
    /// Key `pcr_interval`: time between PCRs. Default `"30ms"`, 5ms..=40ms (ISO/IEC 13818-1
    /// §2.7.2 allows at most 100 ms; DVB recommends 40 ms).
    pub(crate) pcr_interval: Duration,
    /// Key `psi_interval`: repetition period of PAT and PMT. Default `"80ms"`, 10ms..=100ms.
    pub(crate) psi_interval: Duration,
    /// Key `mux_delay`: how long before its decode time a picture or audio frame starts to
    /// leave, at most (plus the time it takes to send at the muxrate). Default `"500ms"`,
    /// 200ms..=10s. What has been sent ahead is presented before anything that replaces it,
    /// so this bounds how soon an emergency alert is on screen; files come muxed with their
    /// own (ffmpeg's is 0.7 s), and packets are only held back, never sent earlier, and
    /// never so far that a stream keeps less than 100 ms (see
    /// [`playout::splice::SpliceConfig::mux_delay`]). A large value keeps each file's own; live
    /// inputs always keep theirs.
    pub(crate) mux_delay: Duration,
    /// Key `clock_origin`: first output PTS/PCR base in 90 kHz ticks. Default 0, 0..2^33
    /// (set it just below 2^33 = 8589934592 to exercise the 33-bit wrap).
    pub(crate) clock_origin_90k: u64,
    /// Array `[[channel.output]]`: where the stream is sent. Default empty.
    pub(crate) outputs: Vec<OutputConfig>,
    /// Array `[[channel.input]]`: live feeds, in priority order (the first is the main). With
    /// any, the channel relays the first that is fit for air and falls back to `playlist`
    /// (its slate or filler) when none is. Default empty (the channel plays files).
    pub(crate) inputs: Vec<super::InputConfig>,
    /// Table `[channel.failover]`: when the channel leaves an input and comes back to it.
    pub(crate) failover: super::FailoverConfig,
    /// Key `timezone`: the zone the channel's schedules are written in, an IANA name such as
    /// `"Asia/Shanghai"`. Default `"UTC"`.
    pub(crate) timezone: Tz,
    /// Key `filler`: media files that fill gaps in the schedule, played in order, looped and
    /// cut to fit. Default empty; relative paths are resolved like `playlist`.
    pub(crate) filler: Vec<PathBuf>,
    /// Table `[channel.si]`: the DVB SI the channel carries. Default [`SiConfig::default`].
    pub(crate) si: SiConfig,
    /// Table `[channel.scrambling]`: how the channel is scrambled. Default none (clear).
    pub(crate) scrambling: Option<super::ScramblingConfig>,
    /// Table `[channel.archive]`: the output recorded for time-shift and catch-up. Default
    /// none (not recorded).
    pub(crate) archive: Option<super::archive::ArchiveConfig>,
    /// Key `prefer`: with `[fleet]`, the nodes that send the channel first, in order (while
    /// live, not drained and with room). Default none: placed by capacity.
    pub(crate) prefer: Vec<String>,
}

/// How a channel's DVB SI is sent (`[channel.si]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SiConfig {
    /// Key `enabled`: send SDT, EIT and TDT/TOT. Default true.
    pub(crate) enabled: bool,
    /// Key `charset`: `"utf-8"` (default), `"gb2312"` (for boxes that only know it),
    /// `"latin"` (ISO 6937) or `"iso-8859-N"` (N 1..=15). Schedule text the charset cannot hold
    /// is refused when the schedule is written; a table that still cannot be coded is not sent,
    /// and that is logged.
    pub(crate) charset: epg::si::Charset,
    /// Key `days`: days of EIT schedule, 1..=64. Default 7.
    pub(crate) days: u32,
    /// Key `country`: ISO 3166 alpha-3 code of the TOT's local time offset. Default `"CHN"`.
    pub(crate) country: String,
    /// Key `original_network_id`: in SDT and EIT, 0..=65535. Default 1.
    pub(crate) original_network_id: u16,
    /// Key `profile`: repetition rates of TS 101 211: `"cable"` or `"satellite"` (default:
    /// EIT schedule every 10 s, EIT p/f other 10 s) or `"terrestrial"` (30 s, 20 s).
    pub(crate) terrestrial: bool,
    /// Key `lcn`: logical channel number in the NIT (`[network]`), 1..=1023, unique among
    /// channels. Default none.
    pub(crate) lcn: Option<u16>,
    /// Key `xmltv_id`: the channel's id in `/epg.xml` and XMLTV imports, RFC 2838 style
    /// (`cctv1.cn`). Default `{id}.headend` (underscores become hyphens).
    pub(crate) xmltv_id: Option<String>,
    /// Key `xmltv`: an XMLTV file (relative to the config file) that is this channel's whole
    /// guide: its programmes for `xmltv_id` become the EIT (present/following by the clock,
    /// and the schedule) instead of what the schedule or playlist says: for channels whose
    /// content comes with its own programme. Re-read when it changes; a malformed file is
    /// logged by line and column and the last good guide stays. Default none.
    pub(crate) xmltv: Option<PathBuf>,
}

impl Default for SiConfig {
    fn default() -> Self {
        SiConfig {
            enabled: true,
            charset: epg::si::Charset::Utf8,
            days: 7,
            country: "CHN".to_owned(),
            original_network_id: 1,
            terrestrial: false,
            lcn: None,
            xmltv_id: None,
            xmltv: None,
        }
    }
}

fn si_config(
    raw: Option<RawSi>,
    path: &str,
    base_dir: &Path,
    diag: &mut Diagnostics,
) -> Option<SiConfig> {
    let Some(raw) = raw else {
        return Some(SiConfig::default());
    };
    let d = SiConfig::default();
    let before = diag.len();
    let charset = charset(raw.charset.as_deref(), &format!("{path}.si.charset"), diag);
    let xmltv_id = raw.xmltv_id;
    if let Some(x) = &xmltv_id {
        let ok = x.split('.').count() >= 2
            && x.split('.').all(|part| {
                !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            diag.push(
                format!("{path}.si.xmltv_id"),
                format!(
                    "`{}` is not an XMLTV channel id like cctv1.cn (letters, digits, hyphens, dot-separated)",
                    x.escape_debug()
                ),
            );
        }
    }
    let lcn = raw
        .lcn
        .map(|v| diag.ranged(format!("{path}.si.lcn"), v, 1u16..=1023));
    let days = raw.days.map_or(Some(d.days), |v| {
        diag.ranged(format!("{path}.si.days"), v, 1u32..=64)
    });
    let onid = raw
        .original_network_id
        .map_or(Some(d.original_network_id), |v| {
            diag.ranged(format!("{path}.si.original_network_id"), v, 0u16..=65535)
        });
    let country = raw.country.unwrap_or(d.country);
    if country.len() != 3 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        diag.push(
            format!("{path}.si.country"),
            format!(
                "`{}` is not an ISO 3166 alpha-3 code like CHN",
                country.escape_debug()
            ),
        );
    }
    let terrestrial = match raw.profile.as_deref() {
        None | Some("cable" | "satellite") => false,
        Some("terrestrial") => true,
        Some(other) => {
            diag.push(
                format!("{path}.si.profile"),
                format!(
                    "`{}`, expected cable, satellite or terrestrial",
                    other.escape_debug()
                ),
            );
            false
        }
    };
    (diag.len() == before).then_some(SiConfig {
        enabled: raw.enabled.unwrap_or(true),
        charset,
        days: days?,
        country,
        original_network_id: onid?,
        terrestrial,
        lcn: lcn.flatten(),
        xmltv_id,
        xmltv: raw.xmltv.map(|p| base_dir.join(p)),
    })
}

impl ChannelConfig {
    /// The channel's XMLTV id: `[channel.si] xmltv_id`, or `{id}.headend` (underscores as
    /// hyphens, so it is a valid RFC 2838 style id).
    pub(crate) fn xmltv_id(&self) -> String {
        self.si
            .xmltv_id
            .clone()
            .unwrap_or_else(|| format!("{}.headend", self.id.replace('_', "-")))
    }
}

/// The SI character set named at `path` (`utf-8` when absent).
pub(super) fn charset(value: Option<&str>, path: &str, diag: &mut Diagnostics) -> epg::si::Charset {
    let Some(name) = value else {
        return epg::si::Charset::Utf8;
    };
    epg::si::Charset::from_name(name).unwrap_or_else(|| {
        diag.push(
            path,
            format!(
                "`{}`, expected utf-8, gb2312, latin (ISO 6937) or iso-8859-1..15",
                name.escape_debug()
            ),
        );
        epg::si::Charset::Utf8
    })
}

const NAME_MAX_BYTES: usize = 64;
const DEFAULT_PCR_INTERVAL: Duration = Duration::from_millis(30);
const DEFAULT_MUX_DELAY: Duration = Duration::from_millis(500);
const MUX_DELAY_MIN: Duration = Duration::from_millis(200);
const MUX_DELAY_MAX: Duration = Duration::from_secs(10);
const PCR_INTERVAL_MIN: Duration = Duration::from_millis(5);
const PCR_INTERVAL_MAX: Duration = Duration::from_millis(40);
const DEFAULT_PSI_INTERVAL: Duration = Duration::from_millis(80);
const PSI_INTERVAL_MIN: Duration = Duration::from_millis(10);
const PSI_INTERVAL_MAX: Duration = Duration::from_millis(100);
const CLOCK_ORIGIN_LIMIT: u64 = 1 << 33;

/// Converts the `[[channel]]` table at `path`. `None` iff an error was reported.
pub(super) fn channel(
    mut table: toml::Table,
    path: &str,
    base_dir: &Path,
    state_dir: &Path,
    diag: &mut Diagnostics,
    claims: &mut Claims,
) -> Option<ChannelConfig> {
    let outputs = table.remove("output");
    let inputs = table.remove("input");
    let failover = table.remove("failover");
    let id_hint = table
        .get("id")
        .and_then(toml::Value::as_str)
        .map(str::to_owned);
    let service_id_hint = table.get("service_id").and_then(toml::Value::as_integer);
    let raw: RawChannel = match toml::Value::Table(table).try_into() {
        Ok(raw) => raw,
        Err(err) => {
            diag.toml(path, &err);
            // Keep what can be trusted, so conflicts with other items are still found and
            // an mpts listing this channel does not also report it as unknown.
            if let Some(id) = id_hint {
                claims.id(&id, path, diag);
                claims.channel(
                    &id,
                    ChannelFacts {
                        muxrate: None,
                        pids: None,
                    },
                );
            }
            if let Some(service_id) = service_id_hint
                .and_then(|v| u16::try_from(v).ok())
                .filter(|v| *v != 0)
            {
                claims.service_id(service_id, path, diag);
            }
            output::outputs(outputs, path, diag, claims);
            return None;
        }
    };
    let before = diag.len();
    super::check_id(&raw.id, path, diag);
    claims.id(&raw.id, path, diag);
    let service_id = diag.ranged(format!("{path}.service_id"), raw.service_id, 1u16..=65535);
    if let Some(service_id) = service_id {
        claims.service_id(service_id, path, diag);
    }
    check_text(&raw.name, &format!("{path}.name"), false, diag);
    let provider = raw.provider.unwrap_or_default();
    check_text(&provider, &format!("{path}.provider"), true, diag);
    let muxrate = super::check_muxrate(raw.muxrate, format!("{path}.muxrate"), diag);
    let transport_stream_id = diag.ranged(
        format!("{path}.transport_stream_id"),
        raw.transport_stream_id.unwrap_or(1),
        0u16..=65535,
    );
    if raw.playlist.is_empty() {
        diag.push(
            format!("{path}.playlist"),
            "must list at least one media file",
        );
    }
    for (i, entry) in raw.playlist.iter().enumerate() {
        if entry.as_os_str().is_empty() {
            diag.push(format!("{path}.playlist[{i}]"), "empty path");
        }
    }
    let playlist = raw
        .playlist
        .iter()
        .map(|entry| base_dir.join(entry))
        .collect();
    let pids = pids::plan(raw.pids, path, diag);
    let si = si_config(raw.si, path, base_dir, diag);
    let archive = raw
        .archive
        .map(|v| super::archive::archive(v, path, base_dir, state_dir, diag));
    let scrambling = raw.scrambling.map(|v| {
        super::scrambling::scrambling_config(v, path, base_dir, service_id, pids.as_ref(), diag)
    });
    claims.channel(&raw.id, ChannelFacts { muxrate, pids });
    let pcr_interval = interval(
        raw.pcr_interval,
        format!("{path}.pcr_interval"),
        DEFAULT_PCR_INTERVAL,
        PCR_INTERVAL_MIN,
        PCR_INTERVAL_MAX,
        diag,
    );
    let psi_interval = interval(
        raw.psi_interval,
        format!("{path}.psi_interval"),
        DEFAULT_PSI_INTERVAL,
        PSI_INTERVAL_MIN,
        PSI_INTERVAL_MAX,
        diag,
    );
    let mux_delay = interval(
        raw.mux_delay,
        format!("{path}.mux_delay"),
        DEFAULT_MUX_DELAY,
        MUX_DELAY_MIN,
        MUX_DELAY_MAX,
        diag,
    );
    let clock_origin = raw.clock_origin.unwrap_or(0);
    let clock_origin_90k = u64::try_from(clock_origin)
        .ok()
        .filter(|v| *v < CLOCK_ORIGIN_LIMIT);
    if clock_origin_90k.is_none() {
        diag.push(
            format!("{path}.clock_origin"),
            format!("{clock_origin} is out of range, expected 0..{CLOCK_ORIGIN_LIMIT} (2^33)"),
        );
    }
    let outputs = output::outputs(outputs, path, diag, claims);
    let inputs = super::input::inputs(inputs, path, base_dir, diag);
    let failover = super::input::failover(failover, path, diag);
    let timezone = match raw.timezone.as_deref() {
        None => Some(Tz::UTC),
        Some(name) => match name.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                diag.push(
                    format!("{path}.timezone"),
                    format!(
                        "unknown time zone `{}`, expected an IANA name such as Asia/Shanghai or UTC",
                        name.escape_debug()
                    ),
                );
                None
            }
        },
    };
    let filler_raw = raw.filler.unwrap_or_default();
    for (i, entry) in filler_raw.iter().enumerate() {
        if entry.as_os_str().is_empty() {
            diag.push(format!("{path}.filler[{i}]"), "empty path");
        }
    }
    let filler = filler_raw
        .iter()
        .map(|entry| base_dir.join(entry))
        .collect();
    let (
        Some(service_id),
        Some(muxrate),
        Some(transport_stream_id),
        Some(pids),
        Some(pcr_interval),
        Some(psi_interval),
        Some(mux_delay),
        Some(clock_origin_90k),
        Some(outputs),
        Some(timezone),
        Some(si),
        Some(inputs),
        Some(failover),
    ) = (
        service_id,
        muxrate,
        transport_stream_id,
        pids,
        pcr_interval,
        psi_interval,
        mux_delay,
        clock_origin_90k,
        outputs,
        timezone,
        si,
        inputs,
        failover,
    )
    else {
        return None;
    };
    (diag.len() == before).then_some(ChannelConfig {
        id: raw.id,
        service_id,
        name: raw.name,
        provider,
        muxrate,
        transport_stream_id,
        playlist,
        pids,
        pcr_interval,
        psi_interval,
        mux_delay,
        clock_origin_90k,
        outputs,
        inputs,
        failover,
        timezone,
        filler,
        si,
        // Reported already when it did not parse.
        scrambling: scrambling.flatten(),
        archive: archive.flatten(),
        prefer: raw.prefer.unwrap_or_default(),
    })
}

/// SDT names: at most 64 bytes; `name` must not be empty.
fn check_text(text: &str, path: &str, may_be_empty: bool, diag: &mut Diagnostics) {
    if text.is_empty() && !may_be_empty {
        diag.push(path, "must not be empty");
    } else if text.len() > NAME_MAX_BYTES {
        diag.push(
            path,
            format!(
                "is {} bytes long, expected at most {NAME_MAX_BYTES}",
                text.len()
            ),
        );
    }
}

/// `value` (or `default`) if within `min..=max`; otherwise the error at `path` and `None`.
pub(super) fn interval(
    value: Option<HumanDuration>,
    path: String,
    default: Duration,
    min: Duration,
    max: Duration,
    diag: &mut Diagnostics,
) -> Option<Duration> {
    let value = value.map_or(default, |v| v.0);
    if (min..=max).contains(&value) {
        Some(value)
    } else {
        diag.push(
            path,
            format!("{value:?} is out of range, expected {min:?}..={max:?}"),
        );
        None
    }
}
