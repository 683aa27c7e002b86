//! `GET /metrics`: the daemon's figures in the Prometheus text format (0.0.4), through the
//! `metrics` crate and its Prometheus exporter. Per channel and output: bytes, datagrams,
//! send errors; per station: packets, null packets, late packets, underflows, pacer stalls,
//! items started and failed, what is on air, TR 101 290 counts by rule; per live input: which
//! is active, its health, bytes, errors and TR 101 290 counts by rule; HTTP clients and bytes; alerts on air; scrambling
//! and ECMG link state; the stoppage record and its webhooks; with `[fleet]`, the node's part in
//! its fleet (lease, channels by role, takeovers, peers seen dying, etcd calls); and the
//! process (CPU, memory, file descriptors, threads, start time).
//!
//! The engine already keeps every counter (published twice a second, [`crate::status`]): a
//! scrape copies the latest snapshot into the recorder (counters as absolute values, gauges
//! set) and renders it, so the hot paths carry no metrics calls at all. Names follow the
//! Prometheus conventions: `headend_` prefix, base units, `_total` on counters; labels are
//! the configured names (channel, output, input, rule), never a value that grows without bound.

use std::sync::atomic::Ordering;

use metrics::{counter, gauge, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::api::ApiState;
use crate::feed::FeedStats;
use crate::status::StationStatus;

/// The recorder the scrapes fill.
pub(crate) struct Exporter {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Default for Exporter {
    fn default() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, describe);
        Exporter { recorder, handle }
    }
}

impl Exporter {
    /// The text exposition now: the stations' `status`, each channel's HTTP `feeds` (id,
    /// counters) and what the API holds (alerts, the record, webhooks).
    pub(crate) fn render(
        &self,
        status: &[StationStatus],
        feeds: &[(&str, &FeedStats)],
        api: &ApiState,
    ) -> String {
        metrics::with_local_recorder(&self.recorder, || record(status, feeds, api));
        self.handle.render()
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        "headend_fleet_connected",
        "With [fleet]: 1 while this node's last read of etcd succeeded."
    );
    describe_gauge!(
        "headend_fleet_lease_valid",
        "With [fleet]: 1 while this node's lease is known valid (it may send); 0: it sends nothing."
    );
    describe_gauge!(
        "headend_fleet_nodes",
        "With [fleet]: nodes registered in the fleet, as this node last read it."
    );
    describe_gauge!(
        "headend_fleet_channels",
        "With [fleet]: the fleet's channels by this node's role (sending, warm, dormant) and those no node sends (unowned)."
    );
    describe_gauge!(
        "headend_fleet_out_of_step_channels",
        "With [fleet]: channels this node plays not in step with the fleet (a takeover by it starts a new stream)."
    );
    describe_counter!(
        "headend_fleet_channels_taken_total",
        "With [fleet]: channels this node claimed (began to send) since it started."
    );
    describe_counter!(
        "headend_fleet_peer_deaths_total",
        "With [fleet]: other nodes whose process this node saw end through their beacons (their leases revoked) since it started."
    );
    describe_counter!(
        "headend_fleet_etcd_calls_total",
        "With [fleet]: this node's calls to etcd, by call (kv/range, lease/keepalive, ...)."
    );
    describe_counter!(
        "headend_output_bytes_total",
        Unit::Bytes,
        "Bytes sent by an output (UDP/RTP/SRT payload)."
    );
    describe_counter!(
        "headend_output_datagrams_total",
        Unit::Count,
        "Datagrams sent by an output."
    );
    describe_counter!(
        "headend_output_errors_total",
        Unit::Count,
        "Send errors of an output."
    );
    describe_counter!(
        "headend_packets_total",
        Unit::Count,
        "Transport stream packets a station sent."
    );
    describe_counter!(
        "headend_null_packets_total",
        Unit::Count,
        "Null packets a station sent (stuffing)."
    );
    describe_counter!(
        "headend_late_packets_total",
        Unit::Count,
        "Packets sent after their due time (input over the muxrate)."
    );
    describe_counter!(
        "headend_underflows_total",
        Unit::Count,
        "Packets sent while a program had nothing queued (null packets in place of the programme)."
    );
    describe_counter!(
        "headend_pacer_stalls_total",
        Unit::Count,
        "Times the pacer fell over 100 ms behind and re-anchored."
    );
    describe_counter!(
        "headend_late_datagrams_total",
        Unit::Count,
        "In step with a fleet: datagrams made too late to send after a stall, not sent."
    );
    describe_counter!(
        "headend_items_started_total",
        Unit::Count,
        "Playlist and schedule items put on air."
    );
    describe_counter!(
        "headend_items_failed_total",
        Unit::Count,
        "Items that could not be played."
    );
    describe_gauge!(
        "headend_on_air",
        Unit::Count,
        "1 while a station has an item on air, 0 otherwise."
    );
    describe_gauge!(
        "headend_max_late_seconds",
        Unit::Seconds,
        "The latest datagram's lateness so far."
    );
    describe_counter!(
        "headend_tr101290_errors_total",
        Unit::Count,
        "ETSI TR 101 290 indicator counts on a station's output, by rule."
    );
    describe_counter!(
        "headend_input_tr101290_errors_total",
        Unit::Count,
        "ETSI TR 101 290 indicator counts on what a live input receives, by rule (priority 1 and 2)."
    );
    describe_gauge!(
        "headend_input_active",
        Unit::Count,
        "1 for the live input a channel relays, 0 for the others."
    );
    describe_gauge!(
        "headend_input_good",
        Unit::Count,
        "1 while a live input's verdict is good."
    );
    describe_counter!(
        "headend_input_bytes_total",
        Unit::Bytes,
        "Bytes received on a live input."
    );
    describe_counter!(
        "headend_input_cc_errors_total",
        Unit::Count,
        "Continuity errors on a live input."
    );
    describe_counter!(
        "headend_input_rtp_lost_total",
        Unit::Count,
        "RTP packets lost on a live input."
    );
    describe_counter!(
        "headend_input_overflow_bytes_total",
        Unit::Bytes,
        "Bytes a live input dropped because the channel did not take them in time."
    );
    describe_counter!(
        "headend_input_switches_total",
        Unit::Count,
        "Switches between a channel's live sources (kept in the status)."
    );
    describe_gauge!(
        "headend_http_clients",
        Unit::Count,
        "HTTP clients receiving a channel."
    );
    describe_counter!(
        "headend_http_bytes_total",
        Unit::Bytes,
        "Bytes sent to a channel's HTTP clients."
    );
    describe_counter!(
        "headend_http_skips_total",
        Unit::Count,
        "Times a slow HTTP client skipped ahead."
    );
    describe_gauge!(
        "headend_alerts_active",
        Unit::Count,
        "Emergency alerts on air or queued."
    );
    describe_gauge!(
        "headend_scrambling_alarm",
        Unit::Count,
        "1 while a scrambled program is in its failure policy."
    );
    describe_counter!(
        "headend_scrambled_packets_total",
        Unit::Count,
        "Packets scrambled."
    );
    describe_counter!(
        "headend_scrambling_key_failures_total",
        Unit::Count,
        "Control words or ECMs that did not come in time."
    );
    describe_gauge!(
        "headend_ecmg_up",
        Unit::Count,
        "1 while the ECMG channel of a program's CAS is set up."
    );
    describe_gauge!(
        "headend_cas_alarm",
        Unit::Count,
        "1 while a CAS of a program misses crypto-periods (its ECMG down or late)."
    );
    describe_counter!(
        "headend_emm_packets_total",
        Unit::Count,
        "EMM packets sent on an EMM PID (EMMG-MUX)."
    );
    describe_counter!(
        "headend_emm_dropped_packets_total",
        Unit::Count,
        "EMM packets a station's queue had no room for."
    );
    describe_counter!(
        "headend_emmg_over_allocation_packets_total",
        Unit::Count,
        "EMM packets the EMMG sent beyond its allocation, dropped (its count, shown per station)."
    );
    describe_gauge!(
        "headend_record_alarm",
        Unit::Count,
        "1 while the stoppage record cannot be written."
    );
    describe_gauge!(
        "headend_record_pending_lines",
        Unit::Count,
        "Stoppage record lines held in memory."
    );
    describe_counter!(
        "headend_record_lines_total",
        Unit::Count,
        "Stoppage record lines written."
    );
    describe_gauge!(
        "headend_record_open_events",
        Unit::Count,
        "Events open now, by kind."
    );
    describe_counter!(
        "headend_webhook_delivered_total",
        Unit::Count,
        "Events a webhook received."
    );
    describe_counter!(
        "headend_webhook_failed_attempts_total",
        Unit::Count,
        "Failed webhook deliveries (retried)."
    );
    describe_counter!(
        "headend_webhook_dropped_total",
        Unit::Count,
        "Events dropped from a full webhook queue."
    );
    describe_gauge!(
        "headend_webhook_queued",
        Unit::Count,
        "Events waiting for a webhook."
    );
    describe_gauge!(
        "headend_alarm",
        "1 while the alarm of a part that is not a channel's is raised (place: schedule store, alert media, alert audit log, http)."
    );
    describe_counter!(
        "headend_alarms_raised_total",
        Unit::Count,
        "Times an alarm was raised in this run."
    );
    describe_gauge!(
        "headend_http_connections",
        Unit::Count,
        "HTTP connections open now (players, the API, /metrics)."
    );
    describe_counter!(
        "headend_http_connections_accepted_total",
        Unit::Count,
        "HTTP connections accepted."
    );
    describe_counter!(
        "headend_http_connections_refused_total",
        Unit::Count,
        "HTTP connections refused at http.max_connections with none idle to close (answered 503)."
    );
    describe_counter!(
        "headend_http_connections_refused_per_source_total",
        Unit::Count,
        "HTTP connections refused at http.max_connections_per_source: one address had that many open (answered 503)."
    );
    describe_counter!(
        "headend_http_connections_closed_total",
        Unit::Count,
        "HTTP connections closed by the head-end: an idle one to make room, or a timeout."
    );
    describe_counter!(
        "headend_http_request_timeouts_total",
        Unit::Count,
        "API requests answered 408: the body did not arrive within http.request_timeout (nothing was changed)."
    );
    describe_counter!(
        "process_cpu_seconds_total",
        Unit::Seconds,
        "User and system CPU time of the process."
    );
    describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory."
    );
    describe_gauge!(
        "process_virtual_memory_bytes",
        Unit::Bytes,
        "Virtual memory."
    );
    describe_gauge!("process_open_fds", Unit::Count, "Open file descriptors.");
    describe_gauge!("process_threads", Unit::Count, "Threads.");
    describe_gauge!(
        "process_start_time_seconds",
        Unit::Seconds,
        "Start time of the process since the Unix epoch."
    );
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

fn record(status: &[StationStatus], feeds: &[(&str, &FeedStats)], api: &ApiState) {
    for st in status {
        let ch = st.id.clone();
        for o in &st.outputs {
            let labels = [("channel", ch.clone()), ("output", o.url.clone())];
            counter!("headend_output_bytes_total", &labels).absolute(o.bytes);
            counter!("headend_output_datagrams_total", &labels).absolute(o.datagrams);
            counter!("headend_output_errors_total", &labels).absolute(o.errors);
        }
        let labels = [("channel", ch.clone())];
        counter!("headend_packets_total", &labels).absolute(st.packets);
        counter!("headend_null_packets_total", &labels).absolute(st.null_packets);
        counter!("headend_late_packets_total", &labels).absolute(st.late_packets);
        counter!("headend_underflows_total", &labels).absolute(st.underflows);
        counter!("headend_pacer_stalls_total", &labels).absolute(st.pacer_stalls);
        counter!("headend_late_datagrams_total", &labels).absolute(st.late_datagrams);
        counter!("headend_items_started_total", &labels).absolute(st.items_started);
        counter!("headend_items_failed_total", &labels).absolute(st.items_failed);
        gauge!("headend_on_air", &labels).set(flag(st.on_air.iter().any(Option::is_some)));
        gauge!("headend_max_late_seconds", &labels).set(st.max_late_us as f64 / 1e6);
        for (rule, n) in &st.tr101290 {
            let mut labels = vec![("channel", ch.clone())];
            labels.extend(rule_labels(rule));
            counter!("headend_tr101290_errors_total", &labels).absolute(*n);
        }
        for s in &st.scrambling {
            let labels = [("channel", s.channel.clone()), ("cipher", s.cipher.clone())];
            gauge!("headend_scrambling_alarm", &labels).set(flag(s.alarm));
            counter!("headend_scrambled_packets_total", &labels).absolute(s.packets_scrambled);
            counter!("headend_scrambling_key_failures_total", &labels).absolute(s.key_failures);
            for c in &s.cas {
                let labels = [
                    ("channel", s.channel.clone()),
                    ("super_cas_id", c.super_cas_id.clone()),
                ];
                gauge!("headend_cas_alarm", &labels).set(flag(c.alarm));
            }
        }
        for e in &st.emm {
            let labels = [
                ("channel", ch.clone()),
                ("ca_system_id", e.ca_system_id.clone()),
                ("pid", e.pid.to_string()),
            ];
            counter!("headend_emm_packets_total", &labels).absolute(e.packets);
            counter!("headend_emm_dropped_packets_total", &labels).absolute(e.dropped);
            counter!("headend_emmg_over_allocation_packets_total", &labels)
                .absolute(e.over_allocation);
        }
        for e in &st.ecmg {
            gauge!("headend_ecmg_up", "channel" => e.channel.clone(), "super_cas_id" => e.super_cas_id.clone()).set(flag(e.up));
        }
        for r in &st.relays {
            counter!("headend_input_switches_total", "channel" => r.channel.clone())
                .absolute(r.switches.len() as u64);
            for i in &r.inputs {
                let labels = [("channel", r.channel.clone()), ("input", i.name.clone())];
                gauge!("headend_input_active", &labels)
                    .set(flag(r.active.as_deref() == Some(i.name.as_str())));
                gauge!("headend_input_good", &labels).set(flag(i.health == "good"));
                counter!("headend_input_bytes_total", &labels).absolute(i.bytes);
                counter!("headend_input_cc_errors_total", &labels).absolute(i.cc_errors);
                counter!("headend_input_rtp_lost_total", &labels).absolute(i.rtp_lost);
                counter!("headend_input_overflow_bytes_total", &labels).absolute(i.overflow_bytes);
                for (rule, n) in &i.tr101290 {
                    let mut labels = labels.to_vec();
                    labels.extend(rule_labels(rule));
                    counter!("headend_input_tr101290_errors_total", &labels).absolute(*n);
                }
            }
        }
    }
    for (id, s) in feeds {
        let labels = [("channel", (*id).to_owned())];
        gauge!("headend_http_clients", &labels).set(s.clients.load(Ordering::Relaxed) as f64);
        counter!("headend_http_bytes_total", &labels)
            .absolute(s.bytes_sent.load(Ordering::Relaxed));
        counter!("headend_http_skips_total", &labels).absolute(s.skips.load(Ordering::Relaxed));
    }
    let active = api
        .alerts
        .as_ref()
        .map_or(0, |d| d.list()["active"].as_array().map_or(0, Vec::len));
    gauge!("headend_alerts_active").set(active as f64);
    let h = api.journal.health();
    gauge!("headend_record_alarm").set(flag(h.alarm.is_some()));
    gauge!("headend_record_pending_lines").set(h.pending as f64);
    counter!("headend_record_lines_total").absolute(h.lines_written);
    for kind in ["stoppage", "degradation", "failover", "override"] {
        gauge!("headend_record_open_events", "event" => kind)
            .set(h.open.get(kind).copied().unwrap_or(0) as f64);
    }
    for w in api
        .hooks
        .as_ref()
        .map(crate::record::hooks::Hooks::stats)
        .unwrap_or_default()
    {
        let labels = [("url", w.url.clone())];
        counter!("headend_webhook_delivered_total", &labels).absolute(w.delivered);
        counter!("headend_webhook_failed_attempts_total", &labels).absolute(w.failed_attempts);
        counter!("headend_webhook_dropped_total", &labels).absolute(w.dropped);
        gauge!("headend_webhook_queued", &labels).set(w.queued as f64);
    }
    // The alarms of parts that are not a channel's (a full disk, a client flood, a panic).
    let mut alarms = vec![api.store.alarm().state(), api.listener.alarm.state()];
    if let Some(desk) = &api.alerts {
        alarms.extend(desk.alarms());
    }
    alarms.extend(crate::supervise::panic_alarms());
    for a in alarms {
        let labels = [("place", a.place.to_owned())];
        gauge!("headend_alarm", &labels).set(flag(a.alarm.is_some()));
        counter!("headend_alarms_raised_total", &labels).absolute(a.count);
    }
    let l = &api.listener;
    gauge!("headend_http_connections").set(l.open.load(Ordering::Relaxed) as f64);
    counter!("headend_http_connections_accepted_total")
        .absolute(l.accepted.load(Ordering::Relaxed));
    counter!("headend_http_connections_refused_total").absolute(l.refused.load(Ordering::Relaxed));
    counter!("headend_http_connections_refused_per_source_total")
        .absolute(l.refused_per_source.load(Ordering::Relaxed));
    for (why, n) in [
        ("evicted_idle", &l.evicted),
        ("header_timeout", &l.header_timeouts),
        ("idle_timeout", &l.idle_timeouts),
    ] {
        counter!("headend_http_connections_closed_total", "reason" => why)
            .absolute(n.load(Ordering::Relaxed));
    }
    counter!("headend_http_request_timeouts_total")
        .absolute(l.request_timeouts.load(Ordering::Relaxed));
    if let Some(view) = api.fleet.as_ref().and_then(|(v, _)| v.read().ok()) {
        fleet(&view);
    }
    process();
}

/// This node's part in its fleet (`[fleet]`), as its agent last saw it.
fn fleet(v: &crate::fleet::View) {
    gauge!("headend_fleet_connected").set(flag(v.connected));
    gauge!("headend_fleet_lease_valid").set(flag(v.lease_valid));
    gauge!("headend_fleet_nodes").set(v.nodes.len() as f64);
    let me = v.node.as_str();
    let count = |f: &dyn Fn(&crate::fleet::ChannelView) -> bool| {
        v.channels.iter().filter(|c| f(c)).count() as f64
    };
    gauge!("headend_fleet_channels", "role" => "sending")
        .set(count(&|c| c.owner.as_deref() == Some(me)));
    gauge!("headend_fleet_channels", "role" => "warm")
        .set(count(&|c| c.standbys.iter().any(|n| n == me)));
    gauge!("headend_fleet_channels", "role" => "dormant")
        .set(count(&|c| c.dormant.iter().any(|n| n == me)));
    gauge!("headend_fleet_channels", "role" => "unowned").set(count(&|c| c.owner.is_none()));
    let out_of_step = v
        .nodes
        .iter()
        .find(|n| n.name == me)
        .map_or(0, |n| n.out_of_step.len());
    gauge!("headend_fleet_out_of_step_channels").set(out_of_step as f64);
    counter!("headend_fleet_channels_taken_total").absolute(v.channels_taken);
    counter!("headend_fleet_peer_deaths_total").absolute(v.peer_deaths);
    for (call, n) in &v.etcd_calls {
        counter!("headend_fleet_etcd_calls_total", "call" => call.clone()).absolute(*n);
    }
}

/// The labels of a TR 101 290 rule from its name (`"1.4 Continuity_count_error"`): `rule`
/// (`1.4`), `name` and `priority` (`1`).
fn rule_labels(rule: &str) -> [(&'static str, String); 3] {
    let (number, name) = rule.split_once(' ').unwrap_or((rule, ""));
    let priority = number.split('.').next().unwrap_or("");
    [
        ("rule", number.to_owned()),
        ("name", name.to_owned()),
        ("priority", priority.to_owned()),
    ]
}

/// The process figures, from `/proc/self` (Linux; USER_HZ is 100 in what it reports).
fn process() {
    const TICKS: f64 = 100.0;
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name (which may hold spaces and parentheses).
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // (3-based field numbers of proc(5), less 3): utime 14, stime 15, threads 20,
    // starttime 22, vsize 23, rss 24.
    counter!("process_cpu_seconds_total").absolute(((num(11) + num(12)) / TICKS) as u64);
    gauge!("process_threads").set(num(17));
    gauge!("process_virtual_memory_bytes").set(num(20));
    gauge!("process_resident_memory_bytes").set(num(21) * 4096.0);
    if let Some(boot) = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    }) {
        gauge!("process_start_time_seconds").set(boot + num(19) / TICKS);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge!("process_open_fds").set(fds.count() as f64);
    }
}
