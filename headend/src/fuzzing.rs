//! The bodies of the fuzz targets (`fuzz/fuzz_targets/`, docs/fuzzing.md): each takes the
//! bytes a fuzzer makes and hands them to the same function the daemon or `hectl` uses on
//! outside bytes. A body must never panic, whatever the bytes; a panic is a bug in the
//! parser it reached. `headend/tests/fuzz_corpus.rs` replays the corpora and every saved
//! crash through them in the ordinary `cargo test`.
//!
//! Not an API: hidden from the docs, and only the fuzz crate and that test call it.

use std::io::Cursor;
use std::path::Path;

use bytes::Bytes;

/// A target's body: takes any bytes, never panics.
pub type Target = fn(&[u8]);

/// Every target by name (the fuzz crate's target names, `fuzz/corpus/{name}/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("ts_demux", ts_demux),
    ("psi_sections", psi_sections),
    ("pes_header", pes_header),
    ("xmltv", xmltv),
    ("cap_xml", cap_xml),
    ("alert_json", alert_json),
    ("simulcrypt", simulcrypt),
    ("config_toml", config_toml),
    ("schedule_toml", schedule_toml),
    ("http_request", http_request),
];

/// A transport stream as a media file or a live input hands it over: the demuxer (in
/// chunks of a size the first byte picks, as reads split a stream anywhere), the probe that
/// reads a file's head and tail, the TR 101 290 analyser and the offline checker.
pub fn ts_demux(data: &[u8]) {
    let Some((&pick, ts)) = data.split_first() else {
        return;
    };
    let chunk = 1 + usize::from(pick) * 7;
    let mut demux = playout::demux::Demux::new();
    let mut events = 0usize;
    for part in ts.chunks(chunk) {
        demux.push(Bytes::copy_from_slice(part), &mut |_| events += 1);
    }
    demux.finish();
    let _ = demux.stats();
    // The probe's window is small so that short inputs take its head-and-tail path too.
    let window = 188 * (1 + u64::from(pick % 16));
    let _ = playout::probe::read_head_and_tail(Cursor::new(ts), window);
    let mut analyser = playout::analyse::Analyser::new(Default::default());
    for (i, part) in ts.chunks(chunk).enumerate() {
        analyser.push(i as u64 * 1_000_000, Bytes::copy_from_slice(part));
    }
    let _ = analyser.health(ts.len() as u64 * 1_000_000);
    let _ = playout::check::check(ts, &playout::check::CheckLimits::across_joins(3_000_000));
}

/// One PSI/SI section as a demuxer assembles it: PAT, PMT, the long-section header, EIT,
/// SDT, NIT, the emergency tables (EBIT, SCTE 18), an ECM and the SI text in it.
pub fn psi_sections(data: &[u8]) {
    let pid = playout::ts::Pid::from_bits(0x100);
    let _ = playout::psi::parse_long_section(pid, data);
    let _ = playout::psi::Pat::parse(data);
    let _ = playout::psi::Pmt::parse(pid, data);
    let _ = epg::si::parse_eit(data);
    let _ = epg::si::parse_eit_events(data);
    let _ = epg::network::parse_sdt(data);
    let _ = epg::network::parse_nit(data);
    let _ = epg::emergency::parse_ebit_table(data);
    let _ = epg::emergency::parse_scte18(data);
    let _ = epg::text::decode_text(data);
    if let Ok(b) = <&[u8; 5]>::try_from(data.get(..5).unwrap_or_default()) {
        let _ = epg::si::parse_utc_time(b);
    }
    for wrap in [drm::ecm::Wrap::Aes128, drm::ecm::Wrap::Sm4] {
        let _ = drm::ecm::parse_ecm(&[0x5A; 16], wrap, data);
    }
}

/// A PES packet's start as a TS payload holds it: the header and its timestamps, shifting
/// them as a splice does, and the elementary stream scans that find access units and audio
/// frames, for each codec.
pub fn pes_header(data: &[u8]) {
    use playout::es::Codec;
    if let Some(h) = playout::pes::PesHeader::parse(data) {
        let _ = h.decode_time();
    }
    let mut copy = data.to_vec();
    let _ = playout::pes::shift_timestamps(&mut copy, 90_000);
    let _ = playout::pes::shift_timestamps(&mut copy, -(1 << 33));
    for codec in [
        Codec::Mpeg2Video,
        Codec::H264,
        Codec::Hevc,
        Codec::MpegAudio,
        Codec::Aac,
        Codec::AacLatm,
        Codec::Ac3,
        Codec::Eac3,
        Codec::DvbSubtitle,
        Codec::Teletext,
    ] {
        let _ = playout::es::scan_access_unit(codec, data);
        let _ = playout::es::audio_frame_start(codec, data);
    }
}

/// An XMLTV guide file, as the guide watcher and `hectl epg` read it.
pub fn xmltv(data: &[u8]) {
    let _ = epg::xmltv::parse_bytes(data);
}

/// A CAP 1.2 alert, as the alert desk parses a POSTed body that starts with `<`.
pub fn cap_xml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(alert) = epg::alert::parse_cap(text) {
            let _ = alert.check_time(chrono::Utc::now(), std::time::Duration::from_secs(600));
        }
    }
}

/// A JSON alert, as the alert desk parses any other POSTed body; the first line is also
/// tried as the signature header the desk decodes before it.
pub fn alert_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(header) = text.lines().next() {
        let _ = epg::alert::sign::decode_signature(header);
    }
    if let Ok(alert) = epg::alert::parse_json(text) {
        let _ = alert.check_time(chrono::Utc::now(), std::time::Duration::from_secs(600));
    }
}

/// What an ECMG sends on the SimulCrypt link: the message decoder on its own (in chunks of a
/// size the first byte picks), then the SCS's protocol state machine as `cas` drives it.
pub fn simulcrypt(data: &[u8]) {
    use drm::simulcrypt::{Scs, ScsConfig, StreamConfig, SuperCasId, Tenths};
    let Some((&pick, wire)) = data.split_first() else {
        return;
    };
    let chunk = 1 + usize::from(pick);
    let mut decoder = drm::simulcrypt::Decoder::new();
    for part in wire.chunks(chunk) {
        decoder.push(part);
        for msg in decoder.by_ref().flatten() {
            let _ = drm::simulcrypt::encode(&msg);
        }
    }
    let cfg = ScsConfig::new(
        SuperCasId(0x4AE0_0001),
        1,
        vec![StreamConfig {
            ecm_stream_id: 1,
            ecm_id: 1,
            nominal_cp_duration: Tenths(100),
            access_criteria: vec![1, 2, 3],
        }],
    );
    let Ok(mut scs) = Scs::new(cfg) else {
        return;
    };
    let start = std::time::Instant::now();
    scs.handle_connected(start);
    for (i, part) in wire.chunks(chunk).enumerate() {
        let now = start + std::time::Duration::from_millis(100 * i as u64);
        scs.handle_bytes(now, part);
        while scs.poll_transmit().is_some() {}
        while scs.poll_event().is_some() {}
        if scs.is_stream_ready(1) {
            let cws: Vec<(u16, [u8; 16])> = (0..8).map(|cp| (cp, [cp as u8; 16])).collect();
            let _ = scs.provision(now, 1, 2, &cws, None);
        }
        scs.handle_timeout(now);
    }
    let _ = scs.stats();
}

/// A config file, as `headend run` and `check-config` load it.
pub fn config_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cfg) = crate::config::parse(text, Path::new("/nonexistent"), "fuzz.toml") {
            let _ = crate::station::specs(&cfg);
        }
    }
}

/// A day's schedule, as the API's PUT and the scheduler read it: parsed, checked against a
/// channel's character set and inputs, planned with every file found (each lasting a time
/// its name picks) and resolved into the timeline around that day.
pub fn schedule_toml(data: &[u8]) {
    use playout::schedule::{resolve, Clip, MediaId, MediaInfo, Utc};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(day) = epg::schedule::parse(text) else {
        return;
    };
    let _ = day.check_charset(epg::si::Charset::Latin);
    let _ = day.check_inputs(&["main".to_owned(), "backup".to_owned()]);
    let mut names: Vec<String> = Vec::new();
    let mut id_of = |name: &str| {
        let i = names.iter().position(|n| n == name).unwrap_or_else(|| {
            names.push(name.to_owned());
            names.len() - 1
        });
        Some(MediaId(i as u32))
    };
    let live = |name: &str| (name == "main").then_some(MediaId(10_000));
    let tz: epg::schedule::Tz = "Asia/Shanghai".parse().unwrap_or(epg::schedule::Tz::UTC);
    let Ok(entries) = day.plan_with(tz, &mut id_of, live) else {
        return;
    };
    let entries: Vec<_> = entries
        .into_iter()
        .map(|e| e.without_unplayable())
        .collect();
    let mut media: Vec<MediaInfo> = names
        .iter()
        .map(|n| MediaInfo {
            duration: 1_000_000_000 * (1 + n.len() as u64 % 7) * 60,
        })
        .collect();
    media.resize(10_001, MediaInfo { duration: 0 });
    media[10_000].duration = playout::schedule::ENDLESS_NS;
    let midnight = day.date.and_time(chrono::NaiveTime::MIN).and_utc();
    let Some(from) = midnight.timestamp_nanos_opt() else {
        return;
    };
    let filler = media
        .first()
        .map(|_| vec![Clip::whole(MediaId(0))])
        .unwrap_or_default();
    const DAY_NS: i64 = 86_400_000_000_000;
    let _ = resolve(
        &entries,
        &filler,
        &media,
        Utc(from - DAY_NS),
        Utc(from + 2 * DAY_NS),
    );
    let _ = epg::schedule::parse(&day.to_toml());
}

/// An HTTP/1.1 request on the control API's connection: hyper reads the request, and the
/// daemon's API (`crate::api`: routing, the query and its percent-escapes, the bearer token,
/// `If-Match`, bodies: schedules, input orders) answers it, against a config with two
/// channels (one with live inputs), schedules in a scratch directory and no alert desk
/// (alerts must be signed: the CAP and JSON targets fuzz their parsers).
pub fn http_request(data: &[u8]) {
    HTTP.with(|h| h.serve(data));
}

thread_local! {
    static HTTP: HttpHarness = HttpHarness::new();
}

/// The API's state for [`http_request`], built once per thread.
struct HttpHarness {
    /// The scratch directory: the schedules the requests write.
    dir: std::path::PathBuf,
    runtime: tokio::runtime::Runtime,
    api: std::sync::Arc<crate::api::ApiState>,
    inbox: crate::router::Inbox,
    wakes: std::sync::mpsc::Receiver<crate::schedule::driver::Wake>,
}

/// The config the HTTP target serves.
const HTTP_CONFIG: &str = r#"
[http]
api_token = "fuzz-token-0123456789"

[[channel]]
id = "one"
service_id = 1
name = "One"
muxrate = "3M"
playlist = ["a.ts"]
timezone = "Asia/Shanghai"

[channel.si]
charset = "latin"

[[channel]]
id = "two"
service_id = 2
name = "Two"
muxrate = "3M"
playlist = ["b.ts"]

[[channel.input]]
name = "main"
url = "udp://[ff15::10:1]:5000"
interface = "lo"
"#;

impl HttpHarness {
    fn new() -> HttpHarness {
        let dir = std::env::temp_dir().join(format!("headend-fuzz-http-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch directory for the HTTP target");
        let mut config = crate::config::parse(HTTP_CONFIG, &dir, "fuzz.toml")
            .unwrap_or_else(|e| panic!("the HTTP target's config: {e}"));
        config.schedules.dir = dir.join("schedules");
        config.schedules.media_dir = dir.clone();
        let channels = &config.channels;
        let (sink, inbox) = crate::router::ScheduleSink::inbox(channels.len());
        let (requeue, wakes) = std::sync::mpsc::channel();
        let api = crate::api::ApiState {
            alerts: None,
            store: std::sync::Arc::new(crate::schedule::store::Store::new(
                config.schedules.dir.clone(),
            )),
            channels: channels.iter().map(|c| c.id.clone()).collect(),
            auth: crate::auth::Auth::new(Vec::new(), config.http.api_token.clone(), None),
            trail: None,
            views: Default::default(),
            guides: Default::default(),
            guide_channels: crate::guide::channels(&config),
            charsets: channels
                .iter()
                .filter(|c| c.si.enabled)
                .map(|c| (c.id.clone(), c.si.charset))
                .collect(),
            inputs: channels
                .iter()
                .map(|c| {
                    (
                        c.id.clone(),
                        c.inputs.iter().map(|i| i.name.clone()).collect(),
                    )
                })
                .collect(),
            status: Default::default(),
            zones: channels
                .iter()
                .map(|c| (c.id.clone(), c.timezone, c.filler.clone()))
                .collect(),
            media_dir: config.schedules.media_dir.clone(),
            requeue,
            live: channels
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.inputs.is_empty())
                .map(|(i, c)| {
                    (
                        c.id.clone(),
                        i,
                        c.inputs.iter().map(|x| x.name.clone()).collect(),
                    )
                })
                .collect(),
            sink,
            probes: Default::default(),
            journal: crate::record::Journal::none(),
            hooks: None,
            listener: Default::default(),
            archives: None,
            fleet: None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the HTTP target");
        HttpHarness {
            dir,
            runtime,
            api: std::sync::Arc::new(api),
            inbox,
            wakes,
        }
    }

    /// Writes `request` into one connection served as the daemon serves `/api/`, reads the
    /// answer until the server closes, and empties what the API sent to the engine.
    fn serve(&self, request: &[u8]) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let api = self.api.clone();
        self.runtime.block_on(async move {
            let (mut client, server) = tokio::io::duplex(64 << 10);
            let service = hyper::service::service_fn(move |req| {
                let api = api.clone();
                async move {
                    let answer = crate::api::handle(api, req).await;
                    Ok::<_, std::convert::Infallible>(answer.map(http_body_util::Full::new))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .half_close(true)
                .serve_connection(hyper_util::rt::TokioIo::new(server), service);
            let client = async move {
                let _ = client.write_all(request).await;
                let _ = client.shutdown().await;
                let mut answer = Vec::new();
                let _ = client.read_to_end(&mut answer).await;
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                tokio::join!(conn, client)
            })
            .await;
        });
        let _ = self.inbox.drain();
        while self.wakes.try_recv().is_ok() {}
    }
}

impl Drop for HttpHarness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
