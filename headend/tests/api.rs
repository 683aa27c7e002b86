//! The schedule API of a running daemon: read, write with the revision as precondition,
//! conflicts, validation errors by line and item, undo, and the bearer token (required for
//! changes, never logged).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

mod common;
use common::{free_tcp_port, media, signal_and_wait, Daemon};

const TOKEN: &str = "s3cret-token-for-tests-0123456789";

/// One HTTP/1.0 request: (status, body).
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

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
