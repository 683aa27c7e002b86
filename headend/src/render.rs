//! `headend render`: a channel's (or an MPTS's) output rendered to a file as fast as the
//! machine allows, through the same splicer and muxer the daemon runs, minus pacing.

use std::io::Write;
use std::path::PathBuf;

use bytes::BytesMut;
use playout::mux::{Mux, MuxConfig, MuxEvent};
use playout::offline::{Offline, BATCH};
use playout::splice::{OutputPids, SpliceConfig, SpliceEvent, Splicer};
use playout::time::SYSTEM_CLOCK_HZ;
use playout::ts::{Pid, PACKET_SIZE};

use crate::config::{ChannelConfig, Config, PidPlan};
use crate::input::file::FileSource;

/// What a render did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RenderStats {
    pub(crate) packets: u64,
    pub(crate) es_packets: u64,
    pub(crate) null_packets: u64,
    pub(crate) items_started: u64,
    pub(crate) items_failed: u64,
    pub(crate) late_packets: u64,
    pub(crate) input_bytes: u64,
}

/// A muxer and the file sources of its programs.
pub(crate) struct Station {
    run: Offline<FileSource>,
    names: Vec<String>,
    playlists: Vec<Vec<PathBuf>>,
}

impl Station {
    /// One channel on its own (SPTS).
    pub(crate) fn channel(ch: &ChannelConfig) -> Station {
        Station::new(channel_mux_config(ch), &[ch])
    }

    /// Several channels in one multiplex.
    pub(crate) fn mpts(config: &Config, id: &str) -> Option<Station> {
        let (cfg, channels) = mpts_mux_config(config, id)?;
        Some(Station::new(cfg, &channels))
    }

    fn new(cfg: MuxConfig, channels: &[&ChannelConfig]) -> Station {
        let sources = channels
            .iter()
            .map(|ch| FileSource::new(ch.playlist.clone()))
            .collect();
        Station {
            run: Offline::new(Mux::new(cfg, splicers(channels)), sources, 0),
            names: channels.iter().map(|ch| ch.id.clone()).collect(),
            playlists: channels.iter().map(|ch| ch.playlist.clone()).collect(),
        }
    }

    /// Renders `duration` of output into `out`.
    pub(crate) fn render(
        &mut self,
        duration: std::time::Duration,
        out: &mut impl Write,
    ) -> std::io::Result<RenderStats> {
        let total =
            Offline::<FileSource>::packets_for(duration, self.run.mux().config().muxrate_bps);
        self.run.set_total(total);
        let mut buf = BytesMut::with_capacity(BATCH * PACKET_SIZE);
        let mut stats = RenderStats::default();
        while !self.run.done() {
            buf.clear();
            stats.packets += self.run.step(&mut buf, BATCH) as u64;
            out.write_all(&buf)?;
            self.log_events(&mut stats);
        }
        let ms = self.run.mux().stats();
        stats.es_packets = ms.es_packets;
        stats.null_packets = ms.null_packets;
        stats.late_packets = ms.late_packets;
        stats.input_bytes = self.run.sources().iter().map(FileSource::bytes_read).sum();
        out.flush()?;
        Ok(stats)
    }

    /// Logs what the muxer and splicers report, with channel and file names.
    pub(crate) fn log_events(&mut self, stats: &mut RenderStats) {
        while let Some(ev) = self.run.mux().poll_event() {
            log_event(ev, &self.names, &self.playlists, stats);
        }
    }
}

/// The mux settings of one channel on its own.
pub(crate) fn channel_mux_config(ch: &ChannelConfig) -> MuxConfig {
    let mut cfg = MuxConfig::new(ch.muxrate.bps());
    cfg.transport_stream_id = ch.transport_stream_id;
    cfg.pcr_interval = ticks(ch.pcr_interval);
    cfg.psi_interval = ticks(ch.psi_interval);
    cfg.clock_origin = ch.clock_origin_90k * 300;
    cfg
}

/// The mux settings of MPTS `id` and its channels, in program order.
pub(crate) fn mpts_mux_config<'a>(
    config: &'a Config,
    id: &str,
) -> Option<(MuxConfig, Vec<&'a ChannelConfig>)> {
    let m = config.mpts.iter().find(|m| m.id == id)?;
    let channels: Vec<&ChannelConfig> = m
        .channels
        .iter()
        .filter_map(|c| config.channels.iter().find(|ch| &ch.id == c))
        .collect();
    let first = channels.first()?;
    let mut cfg = MuxConfig::new(m.muxrate.bps());
    cfg.transport_stream_id = m.transport_stream_id;
    cfg.pcr_interval = channels
        .iter()
        .map(|c| ticks(c.pcr_interval))
        .min()
        .unwrap_or(cfg.pcr_interval);
    cfg.psi_interval = channels
        .iter()
        .map(|c| ticks(c.psi_interval))
        .min()
        .unwrap_or(cfg.psi_interval);
    cfg.clock_origin = first.clock_origin_90k * 300;
    Some((cfg, channels))
}

/// One splicer per channel, with its output PIDs.
pub(crate) fn splicers(channels: &[&ChannelConfig]) -> Vec<Splicer> {
    channels
        .iter()
        .map(|ch| {
            let mut sc = SpliceConfig::new(ch.service_id);
            sc.pids = output_pids(&ch.pids);
            if let Some(s) = &ch.scrambling {
                (sc.program_info, sc.es_info) = crate::engine::scrambling::pmt_descriptors(s);
            }
            Splicer::new(sc, ch.playlist.len())
        })
        .collect()
}

/// Logs one muxer event; `names[p]` is program `p`'s channel id, `playlists[p]` its files.
pub(crate) fn log_event(
    ev: MuxEvent,
    names: &[String],
    playlists: &[Vec<PathBuf>],
    stats: &mut RenderStats,
) {
    let item_name = |program: usize, item: usize| {
        playlists
            .get(program)
            .and_then(|p| p.get(item))
            .map_or_else(|| format!("#{item}"), |p| p.display().to_string())
    };
    match ev {
        MuxEvent::Splice { program, event } => {
            let channel = names.get(program).map_or("?", String::as_str);
            match event {
                SpliceEvent::ItemStarted {
                    item,
                    at,
                    open_gop,
                    pmt_changed,
                    offset_90k,
                    ..
                } => {
                    stats.items_started += 1;
                    tracing::info!(channel, item = %item_name(program, item), at_s = at as f64 / SYSTEM_CLOCK_HZ as f64, offset_s = offset_90k as f64 / 90_000.0, open_gop, pmt_changed, "item on air");
                }
                SpliceEvent::ItemEnded {
                    item,
                    packets,
                    damage,
                } => {
                    if damage != Default::default() {
                        tracing::warn!(channel, item = %item_name(program, item), packets, cc_errors = damage.cc_errors, sync_losses = damage.sync_losses, skipped_bytes = damage.skipped_bytes, dropped_pes = damage.dropped_pes, "item ended with damaged input");
                    } else {
                        tracing::debug!(channel, item = %item_name(program, item), packets, "item ended");
                    }
                }
                SpliceEvent::ItemFailed { item, error } => {
                    stats.items_failed += 1;
                    tracing::warn!(channel, item = %item_name(program, item), %error, "item skipped");
                }
                SpliceEvent::ItemPreempted {
                    item,
                    presented_until,
                } => {
                    tracing::info!(channel, item = %item_name(program, item), until_s = presented_until as f64 / SYSTEM_CLOCK_HZ as f64, "item pre-empted");
                }
                SpliceEvent::NothingPlayable { retry_at } => {
                    tracing::error!(
                        channel,
                        retry_at_s = retry_at as f64 / SYSTEM_CLOCK_HZ as f64,
                        "no playable item in the playlist: sending PAT/PMT/PCR and null packets"
                    );
                }
                _ => {}
            }
        }
        MuxEvent::Overload { program, late } => {
            let channel = names.get(program).map_or("?", String::as_str);
            tracing::warn!(
                channel,
                late_ms = late / 27_000,
                "input bitrate exceeds the muxrate: packets leave late"
            );
        }
        MuxEvent::OverloadCleared { program } => {
            let channel = names.get(program).map_or("?", String::as_str);
            tracing::info!(channel, "input back within the muxrate");
        }
        _ => {}
    }
}

fn ticks(d: std::time::Duration) -> u64 {
    (d.as_nanos() * u128::from(SYSTEM_CLOCK_HZ) / 1_000_000_000) as u64
}

pub(crate) fn output_pids(p: &PidPlan) -> OutputPids {
    OutputPids {
        pmt: Pid::from_bits(p.pmt),
        video: Pid::from_bits(p.video),
        audio: Pid::from_bits(p.audio),
        subtitle: Pid::from_bits(p.subtitle),
        data: Pid::from_bits(p.data),
    }
}
