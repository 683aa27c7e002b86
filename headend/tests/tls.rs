//! The management plane on a listener of its own, speaking TLS (`[management]`, issue #16
//! item 1), checked with curl (a client nobody here wrote) against a test CA made by openssl:
//! the API answers over TLS to a client that trusts the CA, a client that does not refuses
//! the server, plain HTTP and TLS 1.1 get nothing; hectl verifies the server against `--ca`
//! and refuses plain HTTP off this machine; the streams' listener serves the streams
//! and not the API, the management listener the API and not the streams; a renewed
//! certificate (another CA) is served without a restart.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{free_tcp_port, media, run_bounded, signal_and_wait, Daemon};

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir` as `{name}-ca.pem`,
/// `{name}-cert.pem`, `{name}-key.pem`.
fn make_ca(dir: &Path, name: &str) {
    let openssl = common::tool_on_path("openssl").expect("openssl makes the test CA");
    let run = |args: &[&str]| {
        let o = run_bounded(
            Command::new(openssl).current_dir(dir).args(args),
            Duration::from_secs(30),
        );
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let (ca, cakey) = (format!("{name}-ca.pem"), format!("{name}-ca-key.pem"));
    let (key, csr, cert) = (
        format!("{name}-key.pem"),
        format!("{name}.csr"),
        format!("{name}-cert.pem"),
    );
    // A P-256 key and a request (self-signed for the CA) with `extra` arguments.
    let req = |keyout: &str, out: &str, subject: &str, extra: &[&str]| {
        let mut args = vec![
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ];
        args.extend(["-nodes", "-keyout", keyout, "-out", out, "-subj", subject]);
        args.extend(extra);
        run(&args);
    };
    req(
        &cakey,
        &ca,
        &format!("/CN=headend test CA {name}"),
        &["-x509", "-days", "2"],
    );
    req(&key, &csr, "/CN=127.0.0.1", &[]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName = IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &cakey,
        "-CAcreateserial",
        "-out",
        &cert,
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

/// curl's answer: (exit success, HTTP status or 0).
fn curl(args: &[&str]) -> (bool, u16) {
    let curl = common::tool_on_path("curl").expect("curl");
    let o = run_bounded(
        Command::new(curl)
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .args(args),
        Duration::from_secs(10),
    );
    let code = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (o.status.success(), code)
}

#[test]
fn the_management_plane_speaks_tls_on_its_own_listener() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), "one");
    make_ca(dir.path(), "two");
    std::fs::copy(dir.path().join("one-cert.pem"), dir.path().join("cert.pem")).unwrap();
    std::fs::copy(dir.path().join("one-key.pem"), dir.path().join("key.pem")).unwrap();
    let (port, mport) = (free_tcp_port(), free_tcp_port());
    let cfg = dir.path().join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [management]\nlisten = \"127.0.0.1:{mport}\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\n\
             [[channel]]\nid = \"a\"\nservice_id = 1\nname = \"A\"\nmuxrate = \"2M\"\nplaylist = [{:?}]\n",
            media("e.ts").display().to_string()
        ),
    )
    .unwrap();
    let mut daemon = Daemon::run(&cfg, "info");
    let ca1 = dir.path().join("one-ca.pem").display().to_string();
    let ca2 = dir.path().join("two-ca.pem").display().to_string();
    let api = format!("https://127.0.0.1:{mport}/api/record");

    // Over TLS, to a client that trusts the CA; not to one that does not.
    assert_eq!(curl(&["--cacert", &ca1, &api]), (true, 200));
    assert_eq!(curl(&["--cacert", &ca1, "--tlsv1.3", &api]), (true, 200));
    assert_eq!(
        curl(&["--cacert", &ca1, "--tlsv1.2", "--tls-max", "1.2", &api]),
        (true, 200)
    );
    assert!(
        !curl(&["--cacert", &ca2, &api]).0,
        "a client trusting another CA refuses it"
    );
    assert!(!curl(&[&api]).0, "no system root signed it");
    // TLS 1.1 and plain HTTP get nothing.
    assert!(!curl(&["--cacert", &ca1, "--tlsv1.1", "--tls-max", "1.1", &api]).0);
    let plain = curl(&[&format!("http://127.0.0.1:{mport}/api/record")]);
    assert_ne!(plain.1, 200, "plain HTTP on the TLS listener: {plain:?}");
    // Each plane on its own listener.
    assert_eq!(
        curl(&[
            "--cacert",
            &ca1,
            &format!("https://127.0.0.1:{mport}/metrics")
        ]),
        (true, 200)
    );
    assert_eq!(
        curl(&[
            "--cacert",
            &ca1,
            &format!("https://127.0.0.1:{mport}/channels/a.ts")
        ])
        .1,
        404
    );
    assert_eq!(
        curl(&[&format!("http://127.0.0.1:{port}/api/record")]).1,
        404
    );
    assert_eq!(curl(&[&format!("http://127.0.0.1:{port}/metrics")]).1, 404);
    assert_eq!(
        curl(&[&format!("http://127.0.0.1:{port}/playlist.m3u")]).1,
        200
    );

    // hectl: verifies the server against --ca (or the system's roots), and will not send a
    // token over plain HTTP off this machine (refused before connecting).
    let hectl = |args: &[&str]| {
        let o = run_bounded(
            Command::new(common::hectl()).args(args),
            Duration::from_secs(20),
        );
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let server = format!("https://127.0.0.1:{mport}");
    let (ok, err) = hectl(&["--ca", &ca1, "status", "a", "--server", &server]);
    assert!(ok, "{err}");
    let (ok, err) = hectl(&["status", "a", "--server", &server]);
    assert!(!ok && err.contains("certificate"), "{err}");
    let (ok, err) = hectl(&["--ca", &ca2, "status", "a", "--server", &server]);
    assert!(!ok && err.contains("certificate"), "{err}");
    let (ok, err) = hectl(&["status", "a", "--server", "http://192.0.2.1:8080"]);
    assert!(!ok && err.contains("in clear"), "{err}");

    // A renewed certificate (another CA) is served within seconds, without a restart.
    std::fs::copy(dir.path().join("two-key.pem"), dir.path().join("key.pem")).unwrap();
    std::fs::copy(dir.path().join("two-cert.pem"), dir.path().join("cert.pem")).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while curl(&["--cacert", &ca2, &api]) != (true, 200) {
        assert!(
            Instant::now() < until,
            "the renewed certificate is not served"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(!curl(&["--cacert", &ca1, &api]).0, "the old CA no longer");
    let (status, stderr) = signal_and_wait(&mut daemon.0, "TERM");
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("management TLS certificate read again"),
        "{stderr}"
    );
}
