//! The schedule API of a running daemon: read, write with the revision as precondition,
//! conflicts, validation errors by line and item, undo, and the bearer token (required for
//! changes, never logged).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

mod common;
use common::{free_tcp_port, media, request, signal_and_wait, Daemon};

const TOKEN: &str = "s3cret-token-for-tests-0123456789";

/// An authorised PUT of `body` made on revision `if_match`.
fn put(addr: SocketAddr, path: &str, if_match: &str, body: &str) -> (u16, String) {
    let auth = format!("Bearer {TOKEN}");
    request(
        addr,
        "PUT",
        path,
        &[("Authorization", &auth), ("If-Match", if_match)],
        body,
    )
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

const DAY: &str = "date = \"2026-11-23\"\n\n[[item]]\nstart = \"19:00:00\"\nfile = \"news.ts\"\ntitle = \"新闻联播\"\n";

#[test]
fn schedule_api_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\napi_token = \"{TOKEN}\"\n\n[schedules]\ndir = \"sched\"\n\n\
             [[channel]]\nid = \"news\"\nservice_id = 1\nname = \"News\"\nmuxrate = \"2M\"\nplaylist = [{a:?}]\n\n\
             [[channel]]\nid = \"intl\"\nservice_id = 2\nname = \"Intl\"\nmuxrate = \"2M\"\nplaylist = [{a:?}]\n\
             [channel.si]\ncharset = \"iso-8859-1\"\n",
            a = media("a.ts").display().to_string()
        ),
    )
    .unwrap();
    let mut daemon = Daemon::run(&cfg, "debug");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let auth = format!("Bearer {TOKEN}");
    let path = "/api/schedules/news/2026-11-23";

    // Nothing yet: an empty day at revision 0.
    let (status, body) = request(addr, "GET", path, &[], "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["revision"], 0);

    // Changes need the token, and the revision they were made on.
    assert_eq!(
        request(addr, "PUT", path, &[("If-Match", "\"0\"")], DAY).0,
        401
    );
    assert_eq!(
        request(
            addr,
            "PUT",
            path,
            &[
                ("Authorization", "Bearer wrong-token-wrong-token"),
                ("If-Match", "\"0\"")
            ],
            DAY
        )
        .0,
        401
    );
    let (status, body) = request(addr, "PUT", path, &[("Authorization", &auth)], DAY);
    assert_eq!(status, 428, "{body}");

    let (status, body) = put(addr, path, "\"0\"", DAY);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["revision"], 1);
    // A file not uploaded yet is accepted, with a warning (its slot airs the filler until
    // it appears).
    assert_eq!(
        json(&body)["warnings"][0],
        "line 3: item 1 (19:00:00 \"新闻联播\"): `news.ts` does not exist (yet): until it does, its slot airs the filler"
    );
    // A live item on a channel without live inputs: refused.
    let live = "date = \"2026-11-23\"\n[[item]]\nstart = \"20:00:00\"\nlive = \"studio\"\nduration = \"1h\"\n";
    let (status, body) = put(addr, path, "\"1\"", live);
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        json(&body)["errors"][0],
        "line 2: item 1 (20:00:00 live studio): live: `studio`: the channel has no live inputs"
    );
    // Files outside the media directory (the config's directory here): refused, each named.
    std::os::unix::fs::symlink("/etc/hostname", dir.path().join("out.ts")).unwrap();
    let outside =
        "date = \"2026-11-23\"\n[[item]]\nstart = \"20:00:00\"\nfile = \"/etc/hostname\"\n\
                   [[item]]\nblock = [\"../x.ts\"]\nloop_for = \"1m\"\n";
    let (status, body) = put(addr, path, "\"1\"", outside);
    assert_eq!(status, 422, "{body}");
    let errors = &json(&body)["errors"];
    assert_eq!(
        errors[0],
        "line 2: item 1 (20:00:00 /etc/hostname): file: `/etc/hostname`: an absolute path: name files relative to the media directory"
    );
    assert!(
        errors[1]
            .as_str()
            .unwrap()
            .contains("block: `../x.ts`: `..`"),
        "{errors}"
    );
    let link = "date = \"2026-11-23\"\n[[item]]\nstart = \"20:00:00\"\nfile = \"out.ts\"\n";
    let (status, body) = put(addr, path, "\"1\"", link);
    assert_eq!(status, 422, "{body}");
    assert!(
        json(&body)["errors"][0]
            .as_str()
            .unwrap()
            .contains("`out.ts`: a symbolic link out of the media directory"),
        "{body}"
    );
    let on_disk = std::fs::read_to_string(dir.path().join("sched/news/2026-11-23.toml")).unwrap();
    assert!(on_disk.contains("新闻联播"), "{on_disk}");

    // A second scheduler still on revision 0 loses and learns the current revision.
    let (status, body) = put(addr, path, "\"0\"", DAY);
    assert_eq!(status, 409, "{body}");
    assert_eq!(json(&body)["current_revision"], 1);

    // A broken file: every mistake named, nothing changed.
    let broken = "date = \"2026-11-23\"\n[[item]]\nstart = \"19:61:00\"\nfile = \"x.ts\"\n";
    let (status, body) = put(addr, path, "\"1\"", broken);
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        json(&body)["errors"][0],
        "line 2: item 1 (19:61:00 x.ts): start: `19:61:00` is not a time like 19:00:00"
    );
    // Text the channel's SI charset cannot hold: refused by item and field.
    let (status, body) = put(addr, "/api/schedules/intl/2026-11-23", "\"0\"", DAY);
    assert_eq!(status, 422, "{body}");
    assert!(
        json(&body)["errors"][0].as_str().unwrap().contains(
            "title: `新` (character 1) cannot be encoded in the channel's SI charset Iso8859(1)"
        ),
        "{body}"
    );
    let wrong_date = DAY.replace("2026-11-23", "2026-11-24");
    let (status, _) = put(addr, path, "\"1\"", &wrong_date);
    assert_eq!(status, 422);

    // Edit, then undo back to revision 1's content (as revision 3).
    let edited = DAY.replace("新闻联播", "晚间新闻");
    let (status, body) = put(addr, path, "2", &edited);
    assert_eq!(
        (status, json(&body)["revision"].clone()),
        (409, serde_json::Value::Null),
        "{body}"
    );
    let (status, body) = put(addr, path, "1", &edited);
    assert_eq!(
        (status, json(&body)["revision"].clone()),
        (200, serde_json::json!(2)),
        "{body}"
    );
    let (status, body) = request(
        addr,
        "POST",
        &format!("{path}/undo"),
        &[("Authorization", &auth), ("If-Match", "2")],
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["revision"], 3);
    let (_, body) = request(addr, "GET", path, &[], "");
    let v = json(&body);
    assert_eq!(v["revision"], 3);
    assert_eq!(v["items"][0]["title"], "新闻联播");

    // Unknown channel and bad dates.
    assert_eq!(
        request(addr, "GET", "/api/schedules/nope/2026-11-23", &[], "").0,
        404
    );
    assert_eq!(
        request(addr, "GET", "/api/schedules/news/23-11-2026", &[], "").0,
        400
    );

    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("schedule written"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "the token must never be logged");
}

/// Roles and scopes (`[[http.token]]`, issue #16): each token from its own 0600 file. A
/// viewer reads and changes nothing; a scheduler limited to `news` writes news's schedules
/// and no other's; an operator gives input orders and writes no schedule; an admin does
/// both but sends no alert; the emergency token only alerts. Reading needs a token once
/// named tokens exist (the API, `/channels`, `/metrics`); the set-top boxes' `/playlist.m3u`
/// does not. Changes are on the record under the token's name. A source that keeps failing
/// is answered 429. A token file readable by others stops the daemon at start, naming it.
#[test]
fn roles_and_scopes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let tokens = [
        ("view", "viewer", "", "viewer-token-0123456789abcdef"),
        (
            "sched-news",
            "scheduler",
            "channels = [\"news\"]\n",
            "scheduler-token-0123456789abc",
        ),
        ("op", "operator", "", "operator-token-0123456789abcd"),
        ("root", "admin", "", "admin-token-0123456789abcdefg"),
        ("alerter", "emergency", "", "emergency-token-0123456789ab"),
    ];
    let mut http = format!("[http]\nlisten = \"127.0.0.1:{port}\"\n\n");
    for (name, role, extra, secret) in tokens {
        let file = dir.path().join(format!("{name}.token"));
        std::fs::write(&file, format!("{secret}\n")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        http.push_str(&format!(
            "[[http.token]]\nname = \"{name}\"\nrole = \"{role}\"\nfile = \"{name}.token\"\n{extra}\n"
        ));
    }
    let channels = format!(
        "[schedules]\ndir = \"sched\"\n\n[record]\nfile = \"record.jsonl\"\n\n\
         [[channel]]\nid = \"news\"\nservice_id = 1\nname = \"News\"\nmuxrate = \"2M\"\nplaylist = [{a:?}]\n\n\
         [[channel]]\nid = \"intl\"\nservice_id = 2\nname = \"Intl\"\nmuxrate = \"2M\"\nplaylist = [{a:?}]\n",
        a = media("a.ts").display().to_string()
    );
    let cfg = dir.path().join("headend.toml");
    std::fs::write(&cfg, format!("{http}{channels}")).unwrap();
    let mut daemon = Daemon::run(&cfg, "info");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let bearer = |i: usize| format!("Bearer {}", tokens[i].3);
    let as_ = |i: Option<usize>, method: &str, path: &str, body: &str| {
        let auth = i.map(bearer);
        let mut h: Vec<(&str, &str)> = vec![("If-Match", "\"0\"")];
        if let Some(a) = &auth {
            h.push(("Authorization", a));
        }
        request(addr, method, path, &h, body).0
    };
    let (view, sched, op, admin, emergency) = (Some(0), Some(1), Some(2), Some(3), Some(4));
    let news = "/api/schedules/news/2026-11-23";
    let intl = "/api/schedules/intl/2026-11-23";
    let day = DAY;

    // Reading: any token; none is 401. The set-top boxes' playlist needs none.
    assert_eq!(as_(None, "GET", news, ""), 401);
    assert_eq!(as_(view, "GET", news, ""), 200);
    assert_eq!(as_(None, "GET", "/channels", ""), 401);
    assert_eq!(as_(view, "GET", "/channels", ""), 200);
    assert_eq!(as_(None, "GET", "/metrics", ""), 401);
    assert_eq!(as_(op, "GET", "/metrics", ""), 200);
    assert_eq!(as_(None, "GET", "/playlist.m3u", ""), 200);
    // The operator's page: its files need no token, what it shows does.
    assert_eq!(as_(None, "GET", "/", ""), 200);
    assert_eq!(as_(None, "GET", "/ui/app.js", ""), 200);
    assert_eq!(as_(None, "GET", "/api/overview", ""), 401);
    assert_eq!(as_(view, "GET", "/api/overview", ""), 200);

    // Schedules: the scheduler on its channel, the admin anywhere; nobody else.
    assert_eq!(as_(view, "PUT", news, day), 403);
    assert_eq!(as_(op, "PUT", news, day), 403);
    assert_eq!(as_(emergency, "PUT", news, day), 403);
    assert_eq!(as_(sched, "PUT", intl, day), 403);
    assert_eq!(as_(sched, "PUT", news, day), 200);
    assert_eq!(as_(admin, "PUT", intl, day), 200);
    // Input orders: the operator and the admin (news has no live inputs: 404 past the role).
    let order = r#"{"action": "switch", "input": "playlist"}"#;
    assert_eq!(as_(sched, "POST", "/api/channels/news/input", order), 403);
    assert_eq!(as_(op, "POST", "/api/channels/news/input", order), 404);
    assert_eq!(as_(admin, "POST", "/api/channels/news/input", order), 404);
    // Alerts: the emergency role only (no [alerts] here: 404 past the role).
    assert_eq!(as_(admin, "POST", "/api/alerts", "{}"), 403);
    assert_eq!(as_(emergency, "POST", "/api/alerts", "{}"), 404);

    // Failures from one source: 401 up to the 11th in a minute (the 4 reads without a
    // token above count), then 429, even with a good token.
    let wrong = "Bearer wrong-token-wrong-token-wrong";
    let mut codes = Vec::new();
    for _ in 0..10 {
        codes.push(request(addr, "GET", news, &[("Authorization", wrong)], "").0);
    }
    assert_eq!(codes, [401, 401, 401, 401, 401, 401, 401, 429, 429, 429]);
    assert_eq!(as_(view, "GET", news, ""), 429);

    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
    for (_, _, _, secret) in tokens {
        assert!(!stderr.contains(secret), "a token in the log");
    }
    assert!(
        stderr.contains("API calls from this address refused with 429"),
        "{stderr}"
    );
    // The changes on the record, by token name.
    let record = std::fs::read_to_string(dir.path().join("record.jsonl")).unwrap();
    let actors: Vec<String> = record
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "manual")
        .map(|v| v["actor"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(actors, ["sched-news", "root"], "{record}");

    // The audit trail: every change tried, who, from where, the result; the chain verifies,
    // and an edited or deleted line is found.
    let trail_path = dir.path().join("api-audit.jsonl");
    let trail = std::fs::read_to_string(&trail_path).unwrap();
    let lines: Vec<serde_json::Value> = trail.lines().map(json).collect();
    assert_eq!(lines.len(), 11, "{trail}");
    let put = lines
        .iter()
        .find(|l| l["status"] == 200 && l["channel"] == "news")
        .unwrap_or_else(|| panic!("{trail}"));
    assert_eq!(put["who"], "sched-news");
    assert_eq!(put["from"], "127.0.0.1");
    assert_eq!(put["what"], "PUT /api/schedules/news/2026-11-23");
    assert_eq!(
        (put["before"].as_str(), put["after"].as_u64()),
        (Some("0"), Some(1))
    );
    let refused = &lines[0];
    assert_eq!(
        (refused["who"].as_str(), refused["status"].as_u64()),
        (Some("view"), Some(403))
    );
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("token `view`"),
        "{refused}"
    );
    let verify = |path: &std::path::Path| {
        let out = std::process::Command::new(common::hectl())
            .args(["audit", "verify"])
            .arg(path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, out) = verify(&trail_path);
    assert!(ok && out.contains("OK (11 lines"), "{out}");
    let raw: Vec<&str> = trail.lines().collect();
    let edited = dir.path().join("edited.jsonl");
    std::fs::write(
        &edited,
        raw.join("\n")
            .replacen("\"who\":\"root\"", "\"who\":\"view\"", 1)
            + "\n",
    )
    .unwrap();
    let (ok, out) = verify(&edited);
    assert!(!ok, "{out}");
    let root_line = raw
        .iter()
        .position(|l| l.contains("\"who\":\"root\""))
        .unwrap()
        + 1;
    assert!(
        out.contains(&format!("line {}: `prev`", root_line + 1)),
        "{out}"
    );
    let deleted = dir.path().join("deleted.jsonl");
    let mut fewer = raw.clone();
    fewer.remove(4);
    std::fs::write(&deleted, fewer.join("\n") + "\n").unwrap();
    let (ok, out) = verify(&deleted);
    assert!(!ok && out.contains("line 5: `prev`"), "{out}");

    // A token file others may read: the daemon does not start, naming it.
    let file = dir.path().join("view.token");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_headend"))
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("token `view`")
            && stderr.contains("mode 0644")
            && stderr.contains("chmod 600"),
        "{stderr}"
    );
}

/// `headend check-config`: a config holding a secret that others may read is warned about;
/// a token file others may read fails the check, naming it.
#[test]
fn check_config_guards_secrets() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("headend.toml");
    let check = || {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_headend"))
            .arg("check-config")
            .arg(&cfg)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let channel = format!(
        "[[channel]]\nid = \"news\"\nservice_id = 1\nname = \"News\"\nmuxrate = \"2M\"\nplaylist = [{:?}]\n",
        media("a.ts").display().to_string()
    );
    std::fs::write(
        &cfg,
        format!("[http]\napi_token = \"{TOKEN}\"\n\n{channel}"),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, err) = check();
    assert!(ok, "{err}");
    assert!(
        err.contains("mode 0644") && err.contains("http.api_token"),
        "{err}"
    );
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, err) = check();
    assert!(ok && !err.contains("warning"), "{err}");
    // Named tokens: the file others may read fails the check.
    let token = dir.path().join("ann.token");
    std::fs::write(&token, "scheduler-token-0123456789abc\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(
        &cfg,
        format!("[http]\n[[http.token]]\nname = \"ann\"\nrole = \"scheduler\"\nfile = \"ann.token\"\n\n{channel}"),
    )
    .unwrap();
    let (ok, err) = check();
    assert!(
        !ok && err.contains("token `ann`") && err.contains("chmod 600"),
        "{err}"
    );
}

/// Alert clips are spooled to disk as they come and kept whole or not at all, within
/// `[alerts] media_quota_mb` (issue #16 item 4): a clip (a.ts, 0.5 MiB) is kept; the same
/// again is the same clip; a second one (b.ts, 0.7 MiB) would pass the 1 MiB quota and is
/// refused 507 with why; 1.2 MiB, over `max_upload_mb`, is 413; no spool is left behind.
#[test]
fn alert_clips_are_spooled_within_a_quota() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let key = epg::alert::sign::SigningKey::generate(epg::alert::sign::Algorithm::Ed25519)
        .unwrap()
        .verifying_key()
        .to_hex();
    let emergency = "emergency-token-0123456789ab";
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [alerts]\ntoken = \"{emergency}\"\nmedia_quota_mb = 1\nmax_upload_mb = 1\n[alerts.clips]\ndefault = {clip:?}\n\
             [[alerts.sender]]\nkey_id = \"city\"\nalgorithm = \"ed25519\"\npublic_key = \"{key}\"\nsenders = [\"a@b\"]\n\
             [[alerts.area]]\ncode = \"310101\"\nchannels = [\"news\"]\n\n\
             [[channel]]\nid = \"news\"\nservice_id = 1\nname = \"News\"\nmuxrate = \"2M\"\nplaylist = [{clip:?}]\n",
            clip = media("a.ts").display().to_string(),
        ),
    )
    .unwrap();
    let mut daemon = Daemon::run(&cfg, "info");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let clip = |name: &str| std::fs::read(media(name)).unwrap();
    let upload = |data: Vec<u8>| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            s,
            "POST /api/alerts/media HTTP/1.0\r\nAuthorization: Bearer {emergency}\r\nContent-Length: {}\r\n\r\n",
            data.len()
        )
        .unwrap();
        let _ = s.write_all(&data);
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        let status: u16 = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        (
            status,
            text.split_once("\r\n\r\n").map_or("", |x| x.1).to_owned(),
        )
    };
    let (status, body) = upload(clip("a.ts"));
    assert_eq!(status, 201, "{body}");
    let first = json(&body)["media"].as_str().unwrap().to_owned();
    let (status, body) = upload(clip("a.ts"));
    assert_eq!(
        (status, json(&body)["media"].as_str()),
        (201, Some(first.as_str()))
    );
    let (status, body) = upload(clip("b.ts"));
    assert_eq!(status, 507, "{body}");
    assert!(
        body.contains("media_quota_mb") && body.contains("nothing was kept"),
        "{body}"
    );
    let (status, body) = upload([clip("a.ts"), clip("b.ts")].concat());
    assert_eq!(status, 413, "{body}");
    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
    let left: Vec<String> = std::fs::read_dir(dir.path().join("alert-media"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 1, "only the kept clip: {left:?}");
    assert!(left[0].ends_with(".ts"), "{left:?}");
}

/// `http.request_timeout` bounds how long a request takes to arrive, not what it asks: a body
/// still coming at the limit is answered 408 with nothing changed (counted, and on the audit
/// trail as refused); a request that arrived in time is done and answered as it went.
#[test]
fn a_body_late_past_the_request_timeout_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\napi_token = \"{TOKEN}\"\nrequest_timeout = \"1s\"\n\n\
             [schedules]\ndir = \"sched\"\n\n\
             [[channel]]\nid = \"news\"\nservice_id = 1\nname = \"News\"\nmuxrate = \"2M\"\nplaylist = [{a:?}]\n",
            a = media("a.ts").display().to_string()
        ),
    )
    .unwrap();
    let mut daemon = Daemon::run(&cfg, "info");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let path = "/api/schedules/news/2026-11-23";

    // The head and half the body, then nothing: 408 once the second has passed.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "PUT {path} HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\nIf-Match: \"0\"\r\nContent-Length: {}\r\n\r\n",
        DAY.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&DAY.as_bytes()[..DAY.len() / 2]).unwrap();
    let sent = std::time::Instant::now();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let waited = sent.elapsed();
    assert!(answer.starts_with("HTTP/1.0 408"), "{answer}");
    assert!(answer.contains("nothing was changed"), "{answer}");
    assert!(
        waited >= Duration::from_millis(900),
        "answered after {waited:?}"
    );
    // The rest of the body, too late, changes nothing either.
    let _ = s.write_all(&DAY.as_bytes()[DAY.len() / 2..]);
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
    let (status, body) = request(addr, "GET", path, &[], "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["revision"], 0, "{body}");

    // Counted, and on the audit trail as refused.
    let (_, record) = request(addr, "GET", "/api/record", &[], "");
    assert!(record.contains("\"request_timeouts\": 1"), "{record}");
    let metrics = common::http_get(port, "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("headend_http_request_timeouts_total") && l.ends_with(" 1")),
        "{metrics}"
    );
    let trail = std::fs::read_to_string(dir.path().join("api-audit.jsonl")).unwrap();
    let line: serde_json::Value = json(trail.lines().last().unwrap());
    assert_eq!(line["status"], 408, "{trail}");

    // The same edit sent whole is made.
    let (status, body) = put(addr, path, "\"0\"", DAY);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["revision"], 1, "{body}");

    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
}
