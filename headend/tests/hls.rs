//! The rolling archive and HLS (issue #17): a channel recorded as segments cut at random
//! access points, each starting with PAT and PMT; the live playlist played by hls.js in
//! headless Chromium for 60 s with no stall and no error, read by ffmpeg, every segment
//! decoded by ffmpeg and passed by the strict checker; a playlist from an instant starts in
//! the segment holding it; retention by bytes never leaves a playlist naming a missing
//! segment; a kill -9 while recording loses at most the segment being written, and the
//! archive resumes numbering on after a discontinuity.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use playout::check::CheckLimits;

mod common;
use common::{checked_as, free_tcp_port, http_get, media, run_bounded, tool, tool_on_path, Daemon};

const MUXRATE: u64 = 3_000_000;
const ADMIN: &str = "admin-token-0123456789abcdef";

/// Chromium, node, playwright-core and hls.js (`tests/page/hls.mjs`), or `None` to skip
/// outside CI.
fn hlsjs() -> Option<()> {
    common::browser_with(&["playwright-core/package.json", "hls.js/dist/hls.min.js"])
}

/// Decodes the picture and the first sound of `file` with ffmpeg and fails on any error
/// line (`what` names it). Only those: a stream the PMT announces near a segment's end, with
/// no frame yet, has nothing to decode and ffmpeg cannot set up its filter.
fn decodes(ffmpeg: &str, file: &Path, what: &str) {
    let out = run_bounded(
        Command::new(ffmpeg)
            .args(["-nostdin", "-v", "error", "-threads", "1", "-i"])
            .arg(file)
            .args(["-map", "0:v", "-map", "0:a:0", "-f", "null", "-"]),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Plays `url` with hls.js for `secs`; its report.
fn play(url: &str, secs: u32) -> serde_json::Value {
    play_with(url, secs, None)
}

/// [`play`], sending `token` with key requests.
fn play_with(url: &str, secs: u32, token: Option<&str>) -> serde_json::Value {
    let mut cmd = Command::new("node");
    cmd.arg(common::page_dir().join("hls.mjs"))
        .arg(url)
        .arg(secs.to_string())
        .current_dir(common::page_dir());
    if let Some(t) = token {
        cmd.arg(t);
    }
    let out = run_bounded(&mut cmd, Duration::from_secs(u64::from(secs) + 90));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .unwrap_or_else(|_| panic!("hls.mjs: {text}\n{}", String::from_utf8_lossy(&out.stderr)))
}

fn config(dir: &Path, http: u16, archive: &str) -> PathBuf {
    let cfg = dir.join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n\n\
             [[channel]]\nid = \"news\"\nservice_id = 1\nname = \"News\"\nmuxrate = \"{MUXRATE}\"\n\
             playlist = [{a:?}, {e:?}]\n\n[channel.archive]\ndir = \"archive\"\nsegment = \"2s\"\n{archive}\n",
            a = media("a.ts").display().to_string(),
            e = media("e.ts").display().to_string(),
        ),
    )
    .unwrap();
    cfg
}

/// A playlist's segments: (sequence, URI, its PROGRAM-DATE-TIME, duration s, after a
/// discontinuity tag).
fn segments(m3u8: &str) -> Vec<(u64, String, String, f64, bool)> {
    let mut seq: u64 = m3u8
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no media sequence: {m3u8}"));
    let (mut date, mut dur, mut disc) = (None, None, false);
    let mut out = Vec::new();
    for l in m3u8.lines() {
        if let Some(d) = l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            date = Some(d.to_owned());
        } else if let Some(d) = l.strip_prefix("#EXTINF:") {
            dur = d.trim_end_matches(',').parse::<f64>().ok();
        } else if l == "#EXT-X-DISCONTINUITY" {
            disc = true;
        } else if !l.starts_with('#') && !l.is_empty() {
            let date = date
                .take()
                .unwrap_or_else(|| panic!("{l} has no date: {m3u8}"));
            out.push((seq, l.to_owned(), date, dur.take().unwrap(), disc));
            disc = false;
            seq += 1;
        }
    }
    out
}

fn get_status(port: u16, path: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&raw[..head_end])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    (status, raw[head_end + 4..].to_vec())
}

#[test]
fn the_live_playlist_plays_in_hlsjs_and_ffmpeg_and_every_segment_is_conformant() {
    let Some(ffmpeg) = tool("ffmpeg") else { return };
    if hlsjs().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let http = free_tcp_port();
    let cfg = config(dir.path(), http, "");
    let mut daemon = Daemon::run(&cfg, "info");
    std::thread::sleep(Duration::from_secs(7));

    // hls.js plays the live window for 60 s: no stall, no error.
    let url = format!("http://127.0.0.1:{http}/hls/news/live.m3u8");
    let r = play(&url, 60);
    eprintln!("hls.js, live: {r}");
    assert_eq!(r["event"], "played", "{r}");
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert_eq!(r["stalls"], 0, "{r}");
    assert!(r["played_s"].as_f64().unwrap() > 55.0, "{r}");

    // ffmpeg reads the live playlist.
    let out = run_bounded(
        Command::new(ffmpeg)
            .args(["-nostdin", "-v", "error", "-i", &url])
            .args(["-map", "0:v", "-frames:v", "150", "-f", "null", "-"]),
        Duration::from_secs(60),
    );
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every segment of the window: a date, PAT then PMT first, decoded by ffmpeg, passed by
    // the strict checker.
    let m3u8 = http_get(http, "/hls/news/live.m3u8?window=1h");
    let segs = segments(&m3u8);
    assert!(segs.len() >= 25, "{m3u8}");
    assert!(m3u8.contains("#EXT-X-TARGETDURATION:"));
    assert_eq!(m3u8.matches("#EXT-X-DISCONTINUITY\n").count(), 0, "{m3u8}");
    for (seq, uri, _, dur, _) in segs.iter().take(8) {
        assert!((1.5..=6.5).contains(dur), "segment {seq}: {dur} s");
        let (status, data) = get_status(http, uri);
        assert_eq!(status, 200);
        let pid =
            |k: usize| u16::from(data[k * 188 + 1] & 0x1F) << 8 | u16::from(data[k * 188 + 2]);
        assert_eq!(
            (pid(0), pid(1)),
            (0, 0x1000),
            "segment {seq}: PAT, PMT first"
        );
        let file = dir.path().join(format!("seg{seq}.ts"));
        std::fs::write(&file, &data).unwrap();
        decodes(ffmpeg, &file, &format!("segment {seq}"));
        checked_as(
            &format!("hls-segment-{seq}"),
            &data,
            &CheckLimits::default(),
        );
    }
    // Dates follow durations.
    let t = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    };
    for w in segs.windows(2) {
        let gap = t(&w[1].2) - t(&w[0].2) - (w[0].3 * 1000.0).round() as i64;
        assert!(gap.abs() <= 2, "{:?} then {:?}", w[0], w[1]);
    }

    // A playlist from an instant: its first segment holds it, and hls.js starts there.
    let (seq, _, date, dur, _) = &segs[10];
    let from = chrono::DateTime::parse_from_rfc3339(date).unwrap()
        + chrono::TimeDelta::milliseconds((dur * 500.0) as i64);
    let q = from
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        .replace('+', "%2B");
    let m3u8 = http_get(http, &format!("/hls/news/live.m3u8?from={q}"));
    assert_eq!(segments(&m3u8)[0].0, *seq, "{m3u8}");
    assert!(m3u8.contains("#EXT-X-START:TIME-OFFSET="), "{m3u8}");
    let r = play(&format!("{url}?from={q}"), 6);
    assert_eq!(r["first_frag"], *seq, "{r}");
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    // Catch-up of a span that has ended (Unix seconds, as IPTV players' `{utc}` give): a
    // VOD playlist, played by hls.js to its end.
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp();
    let (from, to) = (t(&segs[3].2), t(&segs[6].2));
    let vod = http_get(http, &format!("/hls/news/live.m3u8?from={from}&to={to}"));
    assert!(
        vod.contains("#EXT-X-PLAYLIST-TYPE:VOD\n") && vod.ends_with("#EXT-X-ENDLIST\n"),
        "{vod}"
    );
    let r = play(&format!("{url}?from={from}&to={to}"), 30);
    eprintln!("hls.js, catch-up: {r}");
    assert_eq!(r["ended"], true, "{r}");
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    // The M3U offers catch-up as IPTV players take it.
    let m3u = http_get(http, "/playlist.m3u");
    assert!(
        m3u.contains(&format!("catchup=\"default\" catchup-days=\"7\" catchup-source=\"http://127.0.0.1:{http}/hls/news/live.m3u8?from={{utc}}&to={{utcend}}\"")),
        "{m3u}"
    );
    // Bad queries are refused with the reason.
    let (status, body) = get_status(http, "/hls/news/live.m3u8?from=yesterday");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, _) = get_status(http, "/hls/news/live.m3u8?window=2x");
    assert_eq!(status, 400);
    let (status, _) = get_status(http, &format!("/hls/news/live.m3u8?from={to}&to={from}"));
    assert_eq!(status, 400);
    let (status, _) = get_status(http, "/hls/nosuch/live.m3u8");
    assert_eq!(status, 404);

    let (status, stderr) = common::signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
}

#[test]
fn retention_never_leaves_a_missing_segment_and_a_kill_loses_at_most_one() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_tcp_port();
    // About four 2-3 s segments at 3 Mbit/s.
    let cfg = config(dir.path(), http, "max_bytes = \"3M\"\n");
    // An API token (an export needs one).
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "[http]\n",
        &format!("[http]\napi_token = \"{ADMIN}\"\n"),
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let mut daemon = Daemon::run(&cfg, "info");
    let started = Instant::now();
    let mut seen = 0;
    let mut removed_some = false;
    let arch = dir.path().join("archive/news");
    while started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(700));
        let (status, body) = get_status(http, "/hls/news/live.m3u8?window=1h");
        if status != 200 {
            continue;
        }
        let m3u8 = String::from_utf8(body).unwrap();
        let segs = segments(&m3u8);
        removed_some |= segs[0].0 > 0;
        for (seq, uri, ..) in &segs {
            let (status, _) = get_status(http, uri);
            assert_eq!(status, 200, "segment {seq} named but gone: {m3u8}");
            seen += 1;
        }
        let bytes: u64 = walk(&arch)
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "ts"))
            .map(|p| p.metadata().unwrap().len())
            .sum();
        assert!(bytes <= 3_000_000, "{bytes} bytes kept");
    }
    assert!(
        removed_some && seen > 20,
        "retention never removed a segment ({seen} seen)"
    );
    let before = segments(&http_get(http, "/hls/news/live.m3u8?window=1h"));
    let last = before.last().unwrap().0;

    // kill -9 while a segment is being written; the next run resumes.
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();
    let parts: Vec<PathBuf> = walk(&arch)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "part"))
        .collect();
    eprintln!("after kill -9: {parts:?}");
    let mut daemon = Daemon::run(&cfg, "info");
    std::thread::sleep(Duration::from_secs(8));
    for p in &parts {
        assert!(!p.exists(), "{} left after the restart", p.display());
    }
    let m3u8 = http_get(http, "/hls/news/live.m3u8?window=1h");
    let after = segments(&m3u8);
    let first_new = after
        .iter()
        .find(|s| s.0 > last)
        .unwrap_or_else(|| panic!("nothing new after {last}: {m3u8}"));
    assert_eq!(first_new.0, last + 1, "numbering goes on: {m3u8}");
    assert!(
        first_new.4,
        "a discontinuity before the first segment after the restart: {m3u8}"
    );
    // What was on disk before the kill is still served (those retention kept).
    for (seq, uri, ..) in after.iter().filter(|s| s.0 <= last) {
        let (status, _) = get_status(http, uri);
        assert_eq!(status, 200, "segment {seq}");
    }

    // Exports with hectl (a token is needed). Within the run after the restart: one stream
    // the strict checker passes. Across the restart: counters carried over the gap and the
    // first PCR after it flagged (the new run's clock starts a new timebase, which the strict
    // checker does not follow), ffmpeg decodes it.
    let (status, _) = get_status(http, "/archive/news.ts?from=0&to=4000000000");
    assert_eq!(status, 401, "an export without a token");
    let t = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    };
    let export = |from_ms: i64, to_ms: i64, name: &str| {
        let file = dir.path().join(name);
        let out = run_bounded(
            Command::new(common::hectl())
                .args(["archive", "export", "news"])
                .args(["--from", &format!("{}", (from_ms + 999) / 1000)])
                .args(["--to", &format!("{}", to_ms / 1000 + 1), "-o"])
                .arg(&file)
                .args(["--server", &format!("http://127.0.0.1:{http}")])
                .env("HECTL_TOKEN", ADMIN),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (file.clone(), std::fs::read(&file).unwrap())
    };
    let new: Vec<_> = after.iter().filter(|s| s.0 > last).collect();
    let (_, data) = export(t(&new[0].2), t(&new.last().unwrap().2), "run.ts");
    eprintln!(
        "export within the run: {} bytes, {} segments",
        data.len(),
        new.len()
    );
    checked_as("archive-export", &data, &CheckLimits::default());
    let (file, data) = export(t(&after[0].2), t(&after.last().unwrap().2), "all.ts");
    let out = run_bounded(
        Command::new(common::hectl()).arg("check").arg(&file),
        Duration::from_secs(60),
    );
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("export across the restart: {} bytes\n{report}", data.len());
    assert!(report.contains("continuity 0,"), "{report}");
    if let Some(ffmpeg) = tool("ffmpeg") {
        decodes(ffmpeg, &file, "file");
    }
    // hectl archive ls: the items that began today.
    let out = run_bounded(
        Command::new(common::hectl())
            .args(["archive", "ls", "news", "--json"])
            .args(["--server", &format!("http://127.0.0.1:{http}")])
            .env("HECTL_TOKEN", ADMIN),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ls: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // (Retention goes on meanwhile: the count is the index's at the time.)
    assert!(ls["segments"].as_u64().unwrap() >= 1, "{ls}");
    assert!(
        ls["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "item"),
        "{ls}"
    );
    let (status, stderr) = common::signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// One request on a keep-alive connection: (status, head, body read to its length).
fn exchange(
    conn: &mut std::io::BufReader<std::net::TcpStream>,
    method: &str,
    path: &str,
) -> (u16, String, Vec<u8>) {
    use std::io::{BufRead, Read, Write};
    write!(
        conn.get_mut(),
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .unwrap();
    let mut head = String::new();
    loop {
        let n = conn.read_line(&mut head).unwrap();
        assert!(n > 0, "closed after: {head}");
        if head.ends_with("\r\n\r\n") {
            break;
        }
    }
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("content-length: ").map(str::to_owned))
        .unwrap_or_else(|| panic!("no length: {head}"))
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0; if method == "HEAD" { 0 } else { length }];
    conn.read_exact(&mut body).unwrap();
    (status, head, body)
}

/// `GET path` with a bearer token: (status, body).
fn get_with_token(port: u16, path: &str, token: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let status = String::from_utf8_lossy(&raw[9..12]).parse().unwrap();
    (status, raw[at..].to_vec())
}

/// HLS AES-128 (`[channel.archive] key_file`), segments stored encrypted
/// (`encrypt_on_disk`): the playlist names a key per key period, the segments are served as
/// stored (openssl decrypts one into a stream ffmpeg decodes), the export is clear, a key
/// needs a token of any role, and hls.js plays the channel with the token and fails without.
#[test]
fn encrypted_segments_play_with_a_token_and_not_without() {
    let Some(ffmpeg) = tool("ffmpeg") else { return };
    let Some(openssl) = tool_on_path("openssl") else {
        return;
    };
    if hlsjs().is_none() {
        return;
    }
    const KEY: &str = "00112233445566778899aabbccddeeff";
    const TOKEN: &str = "wall-viewer-token-0123456789abcdef";
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [("hls.key", KEY), ("wall.token", TOKEN)] {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("{text}\n")).unwrap();
        common::set_mode_600(&p);
    }
    let http = free_tcp_port();
    let cfg = config(
        dir.path(),
        http,
        "key_file = \"hls.key\"\nkey_period = \"1m\"\nencrypt_on_disk = true\n",
    );
    // A viewer's token, in [http].
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "[[channel]]",
        "[[http.token]]\nname = \"wall\"\nrole = \"viewer\"\nfile = \"wall.token\"\n\n[[channel]]",
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let mut daemon = Daemon::run(&cfg, "info");
    std::thread::sleep(Duration::from_secs(7));

    let m3u8 = http_get(http, "/hls/news/live.m3u8");
    let key_line = m3u8
        .lines()
        .find(|l| l.starts_with("#EXT-X-KEY:"))
        .unwrap_or_else(|| panic!("no key: {m3u8}"));
    assert!(
        key_line.starts_with("#EXT-X-KEY:METHOD=AES-128,URI=\"/hls/news/key/"),
        "{key_line}"
    );
    let key_uri = key_line.split('"').nth(1).unwrap();
    let (status, _) = get_status(http, key_uri);
    assert_eq!(status, 401, "a key without a token");
    let (status, key) = get_with_token(http, key_uri, TOKEN);
    assert_eq!(status, 200);
    assert_eq!(key.len(), 16);
    let segs = segments(&m3u8);
    let (seq, uri, ..) = &segs[0];
    let (status, data) = get_status(http, uri);
    assert_eq!(status, 200);
    assert_ne!(data[0], 0x47, "served encrypted");
    // One keep-alive connection as a player uses it: the playlist, a segment's HEAD, the
    // segment (sent from its file), a key without a token (refused: hyper takes the
    // connection over from there), the segment again; every answer with its length.
    {
        let s = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut conn = std::io::BufReader::new(s);
        let (status, head, body) = exchange(&mut conn, "GET", "/hls/news/live.m3u8");
        assert_eq!(status, 200, "{head}");
        assert!(body.starts_with(b"#EXTM3U"));
        let (status, head, body) = exchange(&mut conn, "HEAD", uri);
        assert_eq!(status, 200);
        assert!(body.is_empty());
        assert!(
            head.contains(&format!("content-length: {}\r\n", data.len())),
            "{head}"
        );
        for _ in 0..2 {
            let (status, head, body) = exchange(&mut conn, "GET", uri);
            assert_eq!(status, 200);
            assert!(head.contains("access-control-allow-origin: *"), "{head}");
            assert_eq!(body, data);
            let (status, _, _) = exchange(&mut conn, "GET", key_uri);
            assert_eq!(status, 401);
        }
    }
    let enc = dir.path().join("enc.ts");
    let plain = dir.path().join("plain.ts");
    std::fs::write(&enc, &data).unwrap();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let out = run_bounded(
        Command::new(openssl)
            .args(["aes-128-cbc", "-d", "-K", &hex(&key)])
            .args(["-iv", &format!("{seq:032x}")])
            .arg("-in")
            .arg(&enc)
            .arg("-out")
            .arg(&plain),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let clear = std::fs::read(&plain).unwrap();
    assert_eq!(clear.len() % 188, 0);
    assert_eq!(clear[0], 0x47);
    decodes(ffmpeg, &plain, "plain");
    // Stored encrypted (`encrypt_on_disk`): the file on disk is what was served, and the
    // export is clear and decodes.
    let name = format!("{seq:010}.ts");
    let stored = walk(&dir.path().join("archive/news"))
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == name.as_str()))
        .unwrap_or_else(|| panic!("no {name} on disk"));
    assert_eq!(std::fs::read(&stored).unwrap(), data, "stored as served");
    let (status, export) = get_with_token(http, "/archive/news.ts?from=0&to=4000000000", TOKEN);
    assert_eq!(status, 200);
    assert!(export.len() > 188 * 100 && export.chunks(188).all(|p| p[0] == 0x47));
    let exported = dir.path().join("export.ts");
    std::fs::write(&exported, &export).unwrap();
    decodes(ffmpeg, &exported, "export");

    // hls.js: with the token it plays; without, the key is refused and playback fails.
    let url = format!("http://127.0.0.1:{http}/hls/news/live.m3u8");
    let r = play_with(&url, 10, Some(TOKEN));
    eprintln!("hls.js with the token: {r}");
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert!(r["played_s"].as_f64().unwrap() > 7.0, "{r}");
    let r = play_with(&url, 10, None);
    eprintln!("hls.js without: {r}");
    assert_eq!(r["fatal"], true, "{r}");
    assert!(r["errors"].to_string().contains("keyLoadError"), "{r}");
    assert!(r["played_s"].as_f64().unwrap() < 0.5, "{r}");

    let (status, stderr) = common::signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
    assert!(
        !stderr.contains(TOKEN) && !stderr.contains(KEY),
        "a secret in the log"
    );
}

/// Catch-up of an EIT event as it aired (`/hls/CH/event/ID.m3u8`): three scheduled
/// programmes, blue, red and green pictures; the red one's playlist, found through the
/// guide's `catchup_event`, is a VOD playlist that hls.js plays from its first frame (red,
/// not the blue before it) to its last (red, not the green after it).
#[test]
fn an_eit_event_is_replayed_from_its_first_frame_to_its_last() {
    if tool("ffmpeg").is_none() {
        return;
    }
    if hlsjs().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Every picture of a programme one colour: the frame marker.
    for c in ["blue", "red", "green"] {
        let video = format!("color=c={c}:size=320x180:rate=25");
        common::lavfi_source(dir.path(), c, &video, 6, false);
    }
    let t0 = chrono::Utc::now().timestamp() + 8;
    common::write_schedule(
        &dir.path().join("sched"),
        "news",
        &[
            (t0, "blue.ts", "Blue"),
            (t0 + 6, "red.ts", "Red"),
            (t0 + 12, "green.ts", "Green"),
        ],
    );
    let http = free_tcp_port();
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n\n[schedules]\ndir = \"sched\"\nmedia_dir = \".\"\n\n\
             [[channel]]\nid = \"news\"\nservice_id = 1\nname = \"News\"\nmuxrate = \"{MUXRATE}\"\n\
             playlist = [\"blue.ts\"]\n\n[channel.archive]\ndir = \"archive\"\nsegment = \"2s\"\n"
        ),
    )
    .unwrap();
    let mut daemon = Daemon::run(&cfg, "info");
    // The green programme begins at t0 + 12: the red one has ended by then.
    let wait = (t0 + 15 - chrono::Utc::now().timestamp()).max(0) as u64;
    std::thread::sleep(Duration::from_secs(wait));

    let guide: serde_json::Value = serde_json::from_str(&http_get(http, "/epg/news.json")).unwrap();
    let red = guide["programmes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["titles"].to_string().contains("Red"))
        .unwrap_or_else(|| panic!("no Red in {guide:#}"));
    let link = red["catchup_event"]
        .as_str()
        .unwrap_or_else(|| panic!("no catch-up link: {red:#}"));
    // XMLTV links to the same playlist, absolute, for middleware that reads the guide there.
    let xmltv = epg::xmltv::parse(&http_get(http, "/epg.xml")).unwrap();
    let urls: Vec<(Option<&str>, &str)> = xmltv
        .programmes
        .iter()
        .filter(|p| p.titles.iter().any(|t| t.value == "Red"))
        .flat_map(|p| &p.urls)
        .map(|u| (u.system.as_deref(), u.value.as_str()))
        .collect();
    let absolute = format!("http://127.0.0.1:{http}{link}");
    assert_eq!(urls, [(Some("catchup"), absolute.as_str())]);
    let m3u8 = http_get(http, link);
    assert!(
        m3u8.contains("#EXT-X-PLAYLIST-TYPE:VOD\n") && m3u8.ends_with("#EXT-X-ENDLIST\n"),
        "{m3u8}"
    );
    let total: f64 = segments(&m3u8).iter().map(|s| s.3).sum();
    assert!((5.5..=6.5).contains(&total), "{total} s: {m3u8}");
    let r = play(&format!("http://127.0.0.1:{http}{link}"), 30);
    eprintln!("hls.js, the red programme: {r}");
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert_eq!(r["ended"], true, "{r}");
    let is_red = |v: &serde_json::Value| {
        let c: Vec<u64> = v
            .as_array()
            .map_or(vec![], |a| a.iter().filter_map(|x| x.as_u64()).collect());
        c.len() == 3 && c[0] > 180 && c[1] < 80 && c[2] < 80
    };
    assert!(is_red(&r["first_rgb"]), "the first frame: {r}");
    assert!(is_red(&r["last_rgb"]), "the last frame: {r}");
    let (status, _) = get_status(http, "/hls/news/event/65000.m3u8");
    assert_eq!(status, 404);
    let (status, stderr) = common::signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
}
