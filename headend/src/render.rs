//! `headend render`: a channel's (or an MPTS's) output rendered to a file as fast as the
//! machine allows, through the same splicer and muxer the daemon runs, minus pacing.

use std::io::Write;

use bytes::BytesMut;
use playout::mux::{Mux, MuxConfig, MuxEvent, Underflow};
use playout::splice::{OutputPids, SpliceConfig, SpliceEvent, Splicer};
use playout::time::SYSTEM_CLOCK_HZ;
use playout::ts::{Pid, PACKET_SIZE};

use crate::config::{ChannelConfig, Config, PidPlan};
use crate::input::file::FileSource;

/// Packets per write: 7 × 64, a whole number of UDP datagrams.
const BATCH: usize = 7 * 64;

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
    pub(crate) mux: Mux,
    pub(crate) sources: Vec<FileSource>,
    pub(crate) names: Vec<String>,
}

impl Station {
    /// One channel on its own (SPTS).
    pub(crate) fn channel(ch: &ChannelConfig) -> Station {
        let mut cfg = MuxConfig::new(ch.muxrate.bps());
        cfg.transport_stream_id = ch.transport_stream_id;
        cfg.pcr_interval = ticks(ch.pcr_interval);
        cfg.psi_interval = ticks(ch.psi_interval);
        cfg.clock_origin = ch.clock_origin_90k * 300;
        Station::new(cfg, &[ch])
    }

    /// Several channels in one multiplex.
    pub(crate) fn mpts(config: &Config, id: &str) -> Option<Station> {
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
        Some(Station::new(cfg, &channels))
    }

    fn new(cfg: MuxConfig, channels: &[&ChannelConfig]) -> Station {
        let splicers = channels
            .iter()
            .map(|ch| {
                let mut sc = SpliceConfig::new(ch.service_id);
                sc.pids = output_pids(&ch.pids);
                Splicer::new(sc, ch.playlist.len())
            })
            .collect();
        Station {
            mux: Mux::new(cfg, splicers),
            sources: channels
                .iter()
                .map(|ch| FileSource::new(ch.playlist.clone()))
                .collect(),
            names: channels.iter().map(|ch| ch.id.clone()).collect(),
        }
    }

    /// Renders `duration_s` seconds of output into `out`.
    pub(crate) fn render(
        &mut self,
        duration: std::time::Duration,
        out: &mut impl Write,
    ) -> std::io::Result<RenderStats> {
        let rate = u128::from(self.mux.config().muxrate_bps);
        let total = (duration.as_nanos() * rate / (8 * PACKET_SIZE as u128 * 1_000_000_000)) as u64;
        let mut buf = BytesMut::with_capacity(BATCH * PACKET_SIZE);
        let mut stats = RenderStats::default();
        // End on whole frames: stop starting new access units shortly before the end, so the
        // file does not finish mid-frame; the last moments are PSI, PCR and stuffing.
        let close_at = total.saturating_sub(self.close_slots().min(total / 4));
        let mut closed = false;
        while self.mux.slot() < total {
            if !closed && self.mux.slot() >= close_at {
                // Every access unit that starts goes out whole before the end.
                let end = self.mux.slot_time(total);
                let margin = (end - self.mux.now()) / 2;
                self.mux.close(end - margin);
                closed = true;
            }
            self.serve_io(&mut stats);
            let limit = if closed {
                total
            } else {
                close_at.max(self.mux.slot() + 1)
            };
            let want = BATCH.min((limit - self.mux.slot()) as usize);
            buf.clear();
            let mut n = self.mux.emit(&mut buf, want, Underflow::Wait);
            if n == 0 {
                // Starved and nothing to read: cannot happen with blocking reads, but never
                // spin: stuff one packet.
                n = self.mux.emit(&mut buf, 1, Underflow::Stuff);
            }
            out.write_all(&buf)?;
            stats.packets += n as u64;
            self.log_events(&mut stats);
        }
        let ms = self.mux.stats();
        stats.es_packets = ms.es_packets;
        stats.null_packets = ms.null_packets;
        stats.late_packets = ms.late_packets;
        out.flush()?;
        Ok(stats)
    }

    /// Slots in the closing stretch: 3 s, room for the read-ahead (horizon plus one read)
    /// to drain and for the last access units to complete.
    fn close_slots(&self) -> u64 {
        let rate = self.mux.config().muxrate_bps;
        3 * rate / (8 * PACKET_SIZE as u64)
    }

    fn serve_io(&mut self, stats: &mut RenderStats) {
        while let Some((p, req)) = self.mux.poll_io() {
            let now = self.mux.now();
            if let playout::splice::IoRequest::Read { .. } = req {
                stats.input_bytes += crate::input::file::CHUNK as u64;
            }
            self.sources[p].serve(self.mux.program_mut(p), now, req);
            self.log_events(stats);
        }
    }

    /// Logs what the muxer and splicers report, with channel and file names.
    pub(crate) fn log_events(&mut self, stats: &mut RenderStats) {
        while let Some(ev) = self.mux.poll_event() {
            match ev {
                MuxEvent::Splice { program, event } => {
                    let channel = &self.names[program];
                    let src = &self.sources[program];
                    match event {
                        SpliceEvent::ItemStarted {
                            item,
                            at,
                            open_gop,
                            pmt_changed,
                        } => {
                            stats.items_started += 1;
                            tracing::info!(channel, item = %src.name(item), at_s = at as f64 / SYSTEM_CLOCK_HZ as f64, open_gop, pmt_changed, "item on air");
                        }
                        SpliceEvent::ItemEnded {
                            item,
                            packets,
                            damage,
                        } => {
                            if damage != Default::default() {
                                tracing::warn!(channel, item = %src.name(item), packets, cc_errors = damage.cc_errors, sync_losses = damage.sync_losses, skipped_bytes = damage.skipped_bytes, dropped_pes = damage.dropped_pes, "item ended with damaged input");
                            } else {
                                tracing::debug!(channel, item = %src.name(item), packets, "item ended");
                            }
                        }
                        SpliceEvent::ItemFailed { item, error } => {
                            stats.items_failed += 1;
                            tracing::warn!(channel, item = %src.name(item), %error, "item skipped");
                        }
                        SpliceEvent::NothingPlayable { retry_at } => {
                            tracing::error!(channel, retry_at_s = retry_at as f64 / SYSTEM_CLOCK_HZ as f64, "no playable item in the playlist: sending PAT/PMT/PCR and null packets");
                        }
                        _ => {}
                    }
                }
                MuxEvent::Overload { program, late } => {
                    tracing::warn!(channel = %self.names[program], late_ms = late / 27_000, "input bitrate exceeds the muxrate: packets leave late");
                }
                MuxEvent::OverloadCleared { program } => {
                    tracing::info!(channel = %self.names[program], "input back within the muxrate");
                }
                _ => {}
            }
        }
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
