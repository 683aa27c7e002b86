//! `hectl alert`: keys are written private and usable; a malformed alert or a key file others
//! can read sends nothing; against a running daemon with `[alerts]`, a signed alert is
//! accepted, its replay refused, a clip uploaded for a second one, `list` shows them and
//! `cancel` ends the first (then listed as recent).

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use epg::alert::sign::KeyFile;

mod common;
use common::{text, Daemon};

const TOKEN: &str = "emergency-role-token-for-hectl-tests";
const SENDER: &str = "prov@example.cn";

/// Runs `hectl alert ARGS` with no token or server from the environment.
fn hectl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hectl"))
        .arg("alert")
        .args(args)
        .env_remove("HECTL_ALERT_TOKEN")
        .env_remove("HECTL_TOKEN")
        .env_remove("HECTL_SERVER")
        .output()
        .unwrap()
}

fn media(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/media")
        .join(name)
        .display()
        .to_string()
}

fn cap_time(t: u64) -> String {
    chrono::DateTime::from_timestamp(t as i64, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string()
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A CAP alert for area 310104, on air for two minutes; `resource` goes inside its info.
fn cap(identifier: &str, resource: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>{SENDER}</sender>
  <sent>{sent}</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <category>Met</category>
    <event>台风</event>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Observed</certainty>
    <expires>{expires}</expires>
    <headline>台风预警 {identifier}</headline>{resource}
    <area><areaDesc>徐汇区</areaDesc><geocode><valueName>GB2260</valueName><value>310104</value></geocode></area>
  </info>
</alert>
"#,
        sent = cap_time(now_s()),
        expires = cap_time(now_s() + 120),
    )
}

/// `hectl alert keygen` into `path`; (the command's stdout, the key file).
fn keygen(path: &Path, algorithm: &str) -> (String, KeyFile) {
    let o = hectl(&[
        "keygen",
        "--algorithm",
        algorithm,
        "--id",
        "prov-key",
        "--sender",
        SENDER,
        "--out",
        path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let key = KeyFile::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
    (String::from_utf8_lossy(&o.stdout).into_owned(), key)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn keygen_writes_a_private_usable_key() {
    let dir = tempfile::tempdir().unwrap();
    for algorithm in ["sm2", "ed25519"] {
        let path = dir.path().join(format!("{algorithm}.toml"));
        let (out, key) = keygen(&path, algorithm);
        assert_eq!(mode(&path), 0o600, "{algorithm}");
        assert_eq!(key.id, "prov-key");
        assert_eq!(key.key.algorithm().as_str(), algorithm);
        let public = key.key.verifying_key();
        assert!(out.contains("[[alerts.sender]]"), "{out}");
        assert!(
            out.contains(&format!("public_key = \"{}\"", public.to_hex())),
            "{out}"
        );
        assert!(out.contains(&format!("senders = [\"{SENDER}\"]")), "{out}");
        assert!(
            !out.contains(&key.key.to_hex()),
            "the private key was printed"
        );
        let sig = key.key.sign(b"alert");
        public.verify(b"alert", &sig).unwrap();

        // Not over an existing file, unless --force (which also narrows its mode).
        let o = hectl(&[
            "keygen",
            "--algorithm",
            algorithm,
            "--id",
            "other",
            "--out",
            path.to_str().unwrap(),
        ]);
        assert!(!o.status.success());
        assert!(text(&o).contains("--force"), "{}", text(&o));
        assert_eq!(
            KeyFile::parse(&std::fs::read_to_string(&path).unwrap())
                .unwrap()
                .id,
            "prov-key"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let o = hectl(&[
            "keygen",
            "--algorithm",
            algorithm,
            "--id",
            "other",
            "--out",
            path.to_str().unwrap(),
            "--force",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(mode(&path), 0o600);
        let replaced = KeyFile::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(replaced.id, "other");
        assert_ne!(replaced.key.verifying_key(), public);
    }
}

#[test]
fn bad_alerts_and_open_keys_send_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Something listening where the daemon would be: nothing may connect to it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let key = dir.path().join("key.toml");
    keygen(&key, "sm2");
    let send = |file: &Path| {
        hectl(&[
            "--server",
            &server,
            "--token-file",
            token.to_str().unwrap(),
            "send",
            file.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
    };

    let cases = [
        // Not well-formed: the closing tag does not match (line 3).
        (
            "bad.xml",
            "<?xml version=\"1.0\"?>\n<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">\n  <identifier>X</sender>\n</alert>\n".to_owned(),
            "line 3 column",
        ),
        // Malformed JSON (line 2).
        ("bad.json", "{\n  \"identifier\": ,\n}\n".to_owned(), "line 2 column"),
        // Well-formed, but no <urgency>: the info element's position.
        (
            "incomplete.xml",
            cap("X-1", "").replace("    <urgency>Immediate</urgency>\n", ""),
            "line 9 column 3: missing required element urgency",
        ),
    ];
    for (name, body, expected) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, body).unwrap();
        let o = send(&file);
        assert!(!o.status.success(), "{name}: {}", text(&o));
        assert!(text(&o).contains(expected), "{name}: {}", text(&o));
        assert!(text(&o).contains("nothing sent"), "{name}: {}", text(&o));
    }

    // A good alert with a key file others can read: refused, and why.
    let good = dir.path().join("good.xml");
    std::fs::write(&good, cap("X-2", "")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = send(&good);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("mode 0644") && text(&o).contains("chmod 600"),
        "{}",
        text(&o)
    );
    assert!(
        listener.accept().is_err(),
        "hectl connected to the server although nothing was to be sent"
    );

    // With the key narrowed, --dry-run signs and still sends nothing.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = hectl(&[
        "--server",
        &server,
        "send",
        good.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("X-Signature: "), "{}", text(&o));
    assert!(listener.accept().is_err(), "--dry-run connected");
}

#[test]
fn alerts_on_a_running_daemon() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.toml");
    let (snippet, _) = keygen(&key, "sm2");
    // The config keygen printed, as the operator would paste it.
    let snippet = &snippet[snippet.find("[[alerts.sender]]").unwrap()..];
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [alerts]\ntoken = \"{TOKEN}\"\naudit_log = \"audit/alerts.jsonl\"\n\n\
             [alerts.clips]\ndefault = {clip:?}\n\n{snippet}\n\n\
             [[alerts.area]]\ncode = \"310104\"\nchannels = [\"one\"]\n\n\
             [[channel]]\nid = \"one\"\nservice_id = 1\nname = \"One\"\nmuxrate = \"2M\"\n\
             playlist = [{a:?}]\nfiller = [{e:?}]\n\n\
             [[channel.output]]\nurl = \"udp://{udp}\"\n",
            clip = media("c.ts"),
            a = media("a.ts"),
            e = media("e.ts"),
            udp = udp.local_addr().unwrap(),
        ),
    )
    .unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let daemon = Daemon::run(&cfg);

    let server = format!("http://127.0.0.1:{port}");
    let token = token.to_str().unwrap();
    let key = key.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["--server", &server, "--token-file", token];
        all.extend_from_slice(args);
        hectl(&all)
    };
    let list_json = || -> serde_json::Value {
        let o = run(&["list", "--json"]);
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };

    // Accepted, then the same bytes again: a replay.
    let first = dir.path().join("first.xml");
    std::fs::write(&first, cap("SH-T-1", "")).unwrap();
    let o = run(&["send", first.to_str().unwrap(), "--key", key]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("accepted (202): seq ")
            && text(&o).contains(", level 2, channels one, expires "),
        "{}",
        text(&o)
    );
    let seq = |o: &Output| -> u64 {
        let out = text(o);
        out.split("seq ")
            .nth(1)
            .and_then(|x| x.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(|| panic!("no seq: {out}"))
    };
    let first_seq = seq(&o);
    let o = run(&["send", first.to_str().unwrap(), "--key", key]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("409 replay") && text(&o).contains("received before"),
        "{}",
        text(&o)
    );

    // The wrong token is the daemon's 401.
    let bad_token = dir.path().join("bad-token");
    std::fs::write(&bad_token, "not-the-emergency-token").unwrap();
    let o = hectl(&[
        "--server",
        &server,
        "--token-file",
        bad_token.to_str().unwrap(),
        "send",
        first.to_str().unwrap(),
        "--key",
        key,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("401 unauthorized"), "{}", text(&o));

    // A clip for a second alert: uploaded and its id printed; an alert that does not name it
    // is not sent; one that does is accepted (and queues behind the first, same level).
    let second = dir.path().join("second.xml");
    std::fs::write(&second, cap("SH-T-2", "")).unwrap();
    let o = run(&[
        "send",
        second.to_str().unwrap(),
        "--key",
        key,
        "--media",
        &media("c.ts"),
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    let out = text(&o);
    let media_id = out
        .split_whitespace()
        .find(|w| w.starts_with("media:"))
        .unwrap_or_else(|| panic!("no media id: {out}"))
        .to_owned();
    assert!(out.contains("nothing sent"), "{out}");
    let resource = format!(
        "\n    <resource><resourceDesc>clip</resourceDesc><mimeType>video/mp2t</mimeType><uri>{media_id}</uri></resource>"
    );
    std::fs::write(&second, cap("SH-T-2", &resource)).unwrap();
    let o = run(&[
        "send",
        second.to_str().unwrap(),
        "--key",
        key,
        "--media",
        &media("c.ts"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(seq(&o) > first_seq, "{}", text(&o));

    let o = run(&["list"]);
    assert!(o.status.success(), "{}", text(&o));
    let table = text(&o);
    assert!(table.contains("active: 2"), "{table}");
    assert!(
        table.contains("SH-T-1") && table.contains("SH-T-2"),
        "{table}"
    );
    assert!(table.contains("queued"), "{table}");
    assert!(table.contains("recent: 0"), "{table}");

    // Cancel the first: it ends and is listed as recent; the second goes on air.
    let o = run(&["cancel", "SH-T-1", "--key", key, "--sender", SENDER]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("cancelled alert seq {first_seq}")),
        "{}",
        text(&o)
    );
    let v = list_json();
    let active = v["active"].as_array().unwrap();
    assert_eq!(active.len(), 1, "{v}");
    assert_eq!(active[0]["identifier"], "SH-T-2", "{v}");
    assert_eq!(v["recent"][0]["identifier"], "SH-T-1", "{v}");
    assert_eq!(v["recent"][0]["why"], "cancelled", "{v}");
    let o = run(&["list"]);
    let table = text(&o);
    assert!(table.contains("recent: 1"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("SH-T-1") && l.contains("cancelled")),
        "{table}"
    );
    // A cancel for nothing on air is refused with the daemon's reason.
    let o = run(&["cancel", "SH-T-1", "--key", key, "--sender", SENDER]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("references no alert on air"),
        "{}",
        text(&o)
    );

    drop(daemon);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}
