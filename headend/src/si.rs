//! DVB SI in each single-channel station's output (EN 300 468, repetition per TS 101 211
//! cable/satellite): SDT actual every second on PID 0x11, EIT present/following every 1.5 s
//! on PID 0x12, TDT and TOT every 5 s on PID 0x14. The present event flips when the splicer
//! reports an item on air (the real transition, not the planned one).

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDateTime, Offset, TimeZone};
use epg::schedule::Tz;
use epg::si::{eit_pf, sdt, tdt, tot, Charset, Event, Service};
use playout::mux::Mux;
use playout::time::SYSTEM_CLOCK_HZ;
use playout::ts::Pid;

const SDT_PID: u16 = 0x11;
const EIT_PID: u16 = 0x12;
const TDT_PID: u16 = 0x14;

/// The SI of one channel.
pub(crate) struct ChannelSi {
    service_id: u16,
    transport_stream_id: u16,
    tz: Tz,
    eit_version: u8,
    event_id: u16,
    present: Option<Event>,
}

fn utc_now() -> NaiveDateTime {
    let ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    DateTime::from_timestamp_nanos(ns).naive_utc()
}

fn ms(ms: u64) -> u64 {
    SYSTEM_CLOCK_HZ * ms / 1000
}

impl ChannelSi {
    /// Starts the channel's SI in `mux`: its SDT, an empty EIT p/f, TDT and TOT.
    pub(crate) fn start(
        mux: &mut Mux,
        service_id: u16,
        transport_stream_id: u16,
        name: &str,
        provider: &str,
        tz: Tz,
    ) -> ChannelSi {
        let service = Service {
            service_id,
            name: name.to_owned(),
            provider: provider.to_owned(),
            service_type: 0x01,
            eit_pf: true,
            eit_schedule: false,
        };
        match sdt(transport_stream_id, 1, 0, &[service], Charset::Utf8) {
            Ok(s) => mux.set_table(Pid::from_bits(SDT_PID), 0x42, &[&s], ms(1000)),
            Err(e) => tracing::error!(service_id, error = %e, "SDT not sent"),
        }
        let si = ChannelSi {
            service_id,
            transport_stream_id,
            tz,
            eit_version: 0,
            event_id: 0,
            present: None,
        };
        si.send_eit(mux);
        si.tick(mux);
        si
    }

    /// An item went on air: it becomes the present event.
    pub(crate) fn on_air(&mut self, mux: &mut Mux, title: &str) {
        self.event_id = self.event_id.wrapping_add(1);
        self.present = Some(Event {
            event_id: self.event_id,
            start: utc_now(),
            duration_s: 0,
            running_status: 4,
            language: "und".to_owned(),
            title: title.to_owned(),
            ..Event::default()
        });
        self.eit_version = (self.eit_version + 1) & 0x1F;
        self.send_eit(mux);
    }

    fn send_eit(&self, mux: &mut Mux) {
        match eit_pf(
            self.service_id,
            self.transport_stream_id,
            1,
            self.eit_version,
            self.present.as_ref(),
            None,
            Charset::Utf8,
        ) {
            Ok([s0, s1]) => mux.set_table(Pid::from_bits(EIT_PID), 0x4E, &[&s0, &s1], ms(1500)),
            Err(e) => tracing::warn!(service_id = self.service_id, error = %e, "EIT not sent"),
        }
    }

    /// Refreshes TDT and TOT with the time now (call about once a second).
    pub(crate) fn tick(&self, mux: &mut Mux) {
        let now = utc_now();
        let offset_min = self
            .tz
            .offset_from_utc_datetime(&now)
            .fix()
            .local_minus_utc()
            / 60;
        let (tdt_s, tot_s) = (tdt(now), tot(now, "CHN", offset_min));
        mux.set_table(Pid::from_bits(TDT_PID), 0x70, &[&tdt_s], ms(5000));
        mux.set_table(Pid::from_bits(TDT_PID), 0x73, &[&tot_s], ms(5000));
    }
}
