//! Fleet mode (`[fleet]`) against a real etcd (Debian's `etcd-server`, started here with
//! short election timings so that 1 s leases are honoured): three head-end nodes on loopback
//! share 20 channels; a receiver takes every channel's datagrams with kernel timestamps and
//! the sender's port (each node sends from its own sockets), so it sees who sends what, when.
//!
//! - kill -9 the node that sends the most channels: every one of its channels is back from
//!   another node within 1 s (the others see its process end), and no channel is ever sent
//!   by two nodes at once;
//! - a node frozen (SIGSTOP: its connections stay open) is taken over when its lease ends,
//!   and sends nothing of it once thawed;
//! - a node cut off from etcd (its etcd traffic goes through a relay here that stops
//!   forwarding) stops sending before another node starts: never two senders on a channel;
//! - `hectl fleet drain` moves a node's channels off it, `undrain` lets them come back;
//! - a 3-member etcd cluster loses a member: nothing moves, nothing stops.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_tcp_port, hectl, media, run_bounded, tool_on_path, Daemon};

const CHANNELS: usize = 20;
const MUXRATE: &str = "1M";
/// The nodes' admin token.
const TOKEN: &str = "fleet-test-admin-token-0123456789";

/// One etcd member, stopped (killed) when dropped.
struct Etcd {
    child: Child,
    client: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the members `names` (with their client and peer ports) of one cluster and waits
/// until every one answers.
fn etcd_cluster(members: &[(&str, u16, u16)]) -> Vec<Etcd> {
    let cluster: Vec<String> = members
        .iter()
        .map(|(n, _, peer)| format!("{n}=http://127.0.0.1:{peer}"))
        .collect();
    let cluster = cluster.join(",");
    let started: Vec<Etcd> = members
        .iter()
        .map(|(name, client, peer)| {
            let dir = tempfile::tempdir().unwrap();
            let child = Command::new("etcd")
                .args(["--name", name, "--data-dir"])
                .arg(dir.path())
                .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
                .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
                ))
                .arg(format!("--initial-cluster={cluster}"))
                .args(["--initial-cluster-state", "new"])
                // Short timings: leases down to 1 s (etcd's minimum TTL is 1.5 election
                // timeouts, rounded up to whole seconds).
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .args(["--logger", "zap", "--log-level", "error"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("etcd");
            Etcd {
                child,
                client: *client,
                _dir: dir,
            }
        })
        .collect();
    for e in &started {
        let until = Instant::now() + Duration::from_secs(20);
        while etcd_post(e.client, "/v3/kv/range", r#"{"key":"AA=="}"#).is_none() {
            assert!(
                Instant::now() < until,
                "etcd on {} never answered",
                e.client
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    started
}

/// A POST to etcd's gateway: the body of a 200 answer.
fn etcd_post(port: u16, path: &str, body: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    // HTTP/1.0: the body is not chunked.
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    (raw.starts_with("HTTP/1.") && raw.get(9..12) == Some("200")).then(|| {
        raw.split_once("\r\n\r\n")
            .map_or(String::new(), |b| b.1.to_owned())
    })
}

/// A TCP relay to `to` that can stop forwarding (a node's etcd traffic, cut off).
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
}

impl Relay {
    fn start(to: u16) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let c = cut.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(a) = conn else { return };
                if c.load(Ordering::Relaxed) {
                    // Cut off: the connection is held and nothing comes back.
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_secs(30));
                        drop(a);
                    });
                    continue;
                }
                let Ok(b) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                for (mut from, mut into) in
                    [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)]
                {
                    let c = c.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        from.set_read_timeout(Some(Duration::from_millis(50))).ok();
                        loop {
                            if c.load(Ordering::Relaxed) {
                                return;
                            }
                            match from.read(&mut buf) {
                                Ok(0) => {
                                    let _ = into.shutdown(std::net::Shutdown::Write);
                                    return;
                                }
                                Ok(n) => {
                                    if into.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => return,
                            }
                        }
                    });
                }
            }
        });
        Relay { port, cut }
    }
}

/// Every channel's datagrams as they arrive: (kernel ns, sender's port), by channel.
type Arrivals = Arc<Mutex<BTreeMap<usize, Vec<(u64, u16)>>>>;

/// Receives channel `k`'s datagrams on `base + k` until `stop`.
fn receiver(base: u16, stop: Arc<AtomicBool>) -> (Arrivals, Vec<std::thread::JoinHandle<()>>) {
    use nix::sys::socket::{
        recvmsg, setsockopt, sockopt::ReceiveTimestampns, ControlMessageOwned, MsgFlags, SockaddrIn,
    };
    use std::os::fd::AsRawFd;
    let got: Arrivals = Arc::default();
    let mut threads = Vec::new();
    for k in 0..CHANNELS {
        let s = UdpSocket::bind(("127.0.0.1", base + k as u16)).unwrap();
        setsockopt(&s, ReceiveTimestampns, &true).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let (got, stop) = (got.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 2048];
            let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
            while !stop.load(Ordering::Relaxed) {
                let mut iov = [std::io::IoSliceMut::new(&mut buf)];
                let Ok(msg) = recvmsg::<SockaddrIn>(
                    s.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::empty(),
                ) else {
                    continue;
                };
                let at = msg.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|c| match c {
                        ControlMessageOwned::ScmTimestampns(t) => {
                            Some(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
                        }
                        _ => None,
                    })
                });
                let port = msg.address.map_or(0, |a| a.port());
                if let Some(at) = at {
                    got.lock().unwrap().entry(k).or_default().push((at, port));
                }
            }
        }));
    }
    (got, threads)
}

/// A node's config: the 20 channels, each to `127.0.0.1:{base + k}`.
fn node_config(dir: &Path, node: &str, http: u16, etcd: &[u16], base: u16, lease: &str) -> PathBuf {
    let a = media("a.ts").display().to_string();
    let endpoints: Vec<String> = etcd
        .iter()
        .map(|p| format!("\"http://127.0.0.1:{p}\""))
        .collect();
    let mut text = format!(
        "[http]\nlisten = \"127.0.0.1:{http}\"\napi_token = \"{TOKEN}\"\n\n[engine]\nthreads = 1\n\n\
         [fleet]\netcd = [{}]\nnode = \"{node}\"\nlease = \"{lease}\"\nprefix = \"/fleet-test/\"\n",
        endpoints.join(", ")
    );
    for k in 0..CHANNELS {
        // he-03 lacks a file of c00's (the fleet's status says so).
        let extra = if node == "he-03" && k == 0 {
            ", \"lost.ts\""
        } else {
            ""
        };
        text.push_str(&format!(
            "\n[[channel]]\nid = \"c{k:02}\"\nservice_id = {}\nname = \"C{k}\"\nmuxrate = \"{MUXRATE}\"\n\
             playlist = [{a:?}{extra}]\n[[channel.output]]\nurl = \"udp://127.0.0.1:{}\"\n",
            k + 1,
            base + k as u16
        ));
    }
    let d = dir.join(node);
    std::fs::create_dir_all(&d).unwrap();
    let cfg = d.join("headend.toml");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// `GET /api/fleet` of the node on `http`.
fn fleet(http: u16) -> serde_json::Value {
    serde_json::from_str(&common::http_get(http, "/api/fleet")).unwrap_or_default()
}

/// Waits until `nodes` nodes are registered and every channel is sent from where placement
/// puts it (per `http`'s view), up to `limit`: the owners.
fn settled(http: u16, nodes: usize, limit: Duration) -> HashMap<String, String> {
    let until = Instant::now() + limit;
    loop {
        let v = fleet(http);
        let owners: HashMap<String, String> = v["channels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["owner"] == c["placed"])
            .filter_map(|c| {
                Some((
                    c["id"].as_str()?.to_owned(),
                    c["owner"].as_str()?.to_owned(),
                ))
            })
            .collect();
        let registered = v["nodes"].as_array().map_or(0, Vec::len);
        if owners.len() == CHANNELS && registered == nodes {
            return owners;
        }
        assert!(Instant::now() < until, "not settled: {v:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the fleet is settled (as [`settled`]) with `node` sending `want` channels
/// (`None`: some), up to `limit`: the owners.
fn settled_with(
    http: u16,
    nodes: usize,
    node: &str,
    want: Option<usize>,
    limit: Duration,
) -> HashMap<String, String> {
    let until = Instant::now() + limit;
    loop {
        let owners = settled(http, nodes, limit);
        let n = owners.values().filter(|o| *o == node).count();
        if want.map_or(n > 0, |w| n == w) {
            return owners;
        }
        assert!(Instant::now() < until, "{node} sends {n}: {owners:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Per channel, the senders in the order they sent (one entry per run of datagrams from one
/// sender) and the longest silence (ms) after `from_ns`. Panics if two senders interleave:
/// a run between two others that lasts under 60 ms (two nodes sending at once alternate
/// every datagram or few, 10.5 ms apart at 1 Mbit/s; a handover's runs last as long as
/// a placement change takes to see, 100 ms and more).
fn senders(got: &Arrivals, from_ns: u64) -> BTreeMap<usize, (Vec<u16>, f64)> {
    let got = got.lock().unwrap();
    let mut out = BTreeMap::new();
    for (k, arrivals) in got.iter() {
        // (sender, first, last)
        let mut runs: Vec<(u16, u64, u64)> = Vec::new();
        let mut worst = 0u64;
        for &(at, port) in arrivals.iter().filter(|a| a.0 >= from_ns) {
            match runs.last_mut() {
                Some(r) if r.0 == port => {
                    worst = worst.max(at - r.2);
                    r.2 = at;
                }
                last => {
                    if let Some(r) = last {
                        worst = worst.max(at - r.2);
                    }
                    runs.push((port, at, at));
                }
            }
        }
        for (i, r) in runs.iter().enumerate() {
            if i > 0 && i + 1 < runs.len() {
                assert!(
                    r.2 - r.1 >= 60_000_000,
                    "channel {k}: two senders at once: {:?}",
                    runs.iter()
                        .map(|r| (r.0, (r.2 - r.1) / 1_000_000))
                        .collect::<Vec<_>>()
                );
            }
        }
        out.insert(*k, (runs.iter().map(|r| r.0).collect(), worst as f64 / 1e6));
    }
    out
}

/// Checks that each of `channels` went from one sender to another after `from_ns`, silent
/// under 3 s between (and, through [`senders`], never sent by two at once).
fn moved_once(got: &Arrivals, from_ns: u64, channels: &[usize]) {
    let seen = senders(got, from_ns);
    for k in channels {
        let (order, worst) = &seen[k];
        assert_eq!(order.len(), 2, "channel {k}: {order:?}");
        assert!(*worst < 3000.0, "channel {k}: {worst} ms");
    }
}

/// Waits until, on every node (`https`, in the order of `he-01`...), each channel is
/// `"sending"` where `owners` says, `"warm"` on the one standby its fleet view names, and
/// `"dormant"` on the others, up to `limit`: each channel's standby.
fn modes_settled(
    https: &[u16],
    owners: &HashMap<String, String>,
    limit: Duration,
) -> HashMap<String, String> {
    let until = Instant::now() + limit;
    loop {
        let view = fleet(https[0]);
        let standby: HashMap<String, String> = view["channels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                let s = c["standbys"].as_array().filter(|s| s.len() == 1)?;
                Some((c["id"].as_str()?.to_owned(), s[0].as_str()?.to_owned()))
            })
            .collect();
        let mut wrong = Vec::new();
        for (n, http) in https.iter().enumerate() {
            let node = format!("he-{:02}", n + 1);
            let channels: serde_json::Value =
                serde_json::from_str(&common::http_get(*http, "/channels")).unwrap_or_default();
            for c in channels.as_array().into_iter().flatten() {
                let id = c["id"].as_str().unwrap_or_default().to_owned();
                let want = if owners.get(&id) == Some(&node) {
                    "sending"
                } else if standby.get(&id) == Some(&node) {
                    "warm"
                } else {
                    "dormant"
                };
                let mode = &c["status"]["fleet"];
                if mode != want {
                    wrong.push(format!("{node} {id}: {mode} (want {want})"));
                }
            }
        }
        if wrong.is_empty() && standby.len() == owners.len() {
            for (id, s) in &standby {
                assert_ne!(owners.get(id), Some(s), "{id}: its standby is its owner");
            }
            return standby;
        }
        assert!(
            Instant::now() < until,
            "modes not settled: {wrong:?} {view:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Node `node`'s config (under `dir/node`): one channel `news` at 2 Mbit/s, RTP to
/// `[group]:port` on `lo`, 1 s leases under `prefix` of the etcd on `client`.
fn news_node(
    dir: &Path,
    node: &str,
    http: u16,
    client: u16,
    prefix: &str,
    (group, port): (&str, u16),
) -> PathBuf {
    let a = media("a.ts").display().to_string();
    let d = dir.join(node);
    std::fs::create_dir_all(&d).unwrap();
    let cfg = d.join("headend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\napi_token = \"{TOKEN}\"\n\n\
             [fleet]\netcd = [\"http://127.0.0.1:{client}\"]\nnode = \"{node}\"\nlease = \"1s\"\nprefix = \"{prefix}\"\n\n\
             [[channel]]\nid = \"news\"\nservice_id = 1\nname = \"News\"\nmuxrate = \"2M\"\n\
             playlist = [{a:?}]\n\
             [[channel.output]]\nurl = \"rtp://[{group}]:{port}\"\ninterface = \"lo\"\n"
        ),
    )
    .unwrap();
    cfg
}

/// What the tests of one channel on an IPv6 group share: a directory, one etcd member (its
/// client port), and a receiver joined to the group on `lo` (100 ms read time-out).
struct Rig {
    dir: tempfile::TempDir,
    client: u16,
    _etcd: Vec<Etcd>,
    port: u16,
    rx: UdpSocket,
}

impl Rig {
    fn new(group: &str, member: &str) -> Rig {
        common::multicast_on_lo(group);
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_tcp_port(), free_tcp_port());
        let _etcd = etcd_cluster(&[(member, client, peer)]);
        let port = common::free_udp_port();
        let rx = common::multicast_receiver(group.parse().unwrap(), port);
        rx.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Rig {
            dir,
            client,
            _etcd,
            port,
            rx,
        }
    }
}

/// RTP datagrams as received: (when, sequence number, timestamp, payload).
type Received = Vec<(Instant, u16, u32, Vec<u8>)>;

/// Checks that `got` (received from `began`) has one gap in its sequence numbers and that it
/// is in step: the sequence numbers and timestamps skip what the silence lasted (2 Mbit/s in
/// datagrams of 7 packets: 190 a second), within 100 ms. The gap's index, the silence and the
/// datagrams skipped.
fn one_gap_in_step(got: &Received, began: Instant) -> (usize, Duration, f64) {
    let gaps: Vec<usize> = (1..got.len())
        .filter(|&i| got[i].1 != got[i - 1].1.wrapping_add(1))
        .collect();
    let shown: Vec<String> = gaps
        .iter()
        .map(|&i| {
            format!(
                "{} -> {} after {:?} at {:?}",
                got[i - 1].1,
                got[i].1,
                got[i].0 - got[i - 1].0,
                got[i].0 - began
            )
        })
        .collect();
    assert_eq!(gaps.len(), 1, "one gap in the sequence numbers: {shown:?}");
    let g = gaps[0];
    let (before, after) = (&got[g - 1], &got[g]);
    let silence = after.0 - before.0;
    let per_s = 2_000_000.0 / (7.0 * 188.0 * 8.0);
    let skipped = f64::from(after.1.wrapping_sub(before.1));
    let expected = silence.as_secs_f64() * per_s;
    assert!(
        (skipped - expected).abs() < 0.1 * per_s,
        "in step: {skipped} datagrams skipped in {silence:?} (expected {expected:.0})"
    );
    let ts_s = f64::from(after.2.wrapping_sub(before.2)) / 90_000.0;
    assert!(
        (ts_s - silence.as_secs_f64()).abs() < 0.1,
        "RTP timestamps skip {ts_s} s over a {silence:?} gap"
    );
    (g, silence, skipped)
}

/// Checks that `got` is one stream: every step of the RTP sequence is 1, and from its first
/// PAT on no continuity error (`name` for the checker's report). The payload from there.
fn one_stream(name: &str, got: &Received) -> Vec<u8> {
    assert!(got.len() > 500, "{} datagrams", got.len());
    let steps: Vec<u16> = got
        .windows(2)
        .map(|w| w[1].1.wrapping_sub(w[0].1))
        .filter(|s| *s != 1)
        .collect();
    assert!(
        steps.is_empty(),
        "RTP sequence steps other than 1: {steps:?}"
    );
    let data: Vec<u8> = got.iter().flat_map(|x| x.3.clone()).collect();
    // Tuned in as a receiver does: from the first PAT on, a stream's packets once the PMT
    // that lists them has come (the capture starts anywhere in the mux's cycle).
    let pid = |p: &[u8]| u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]);
    let first_pat = data
        .chunks(188)
        .position(|p| p[1] & 0x40 != 0 && pid(p) == 0)
        .expect("a PAT");
    let pat = &data[first_pat * 188..][..188];
    // The first program's PMT PID (one program: its entry follows the section header).
    let pmt = u16::from(pat[15] & 0x1F) << 8 | u16::from(pat[16]);
    let mut pmt_seen = false;
    let data: Vec<u8> = data[first_pat * 188..]
        .chunks(188)
        .filter(|p| {
            pmt_seen |= pid(p) == pmt && p[1] & 0x40 != 0;
            pmt_seen || pid(p) == 0 || pid(p) == pmt || pid(p) == 0x1FFF
        })
        .flatten()
        .copied()
        .collect();
    let r = common::checked_as(
        name,
        &data,
        &playout::check::CheckLimits::across_joins(2_000_000),
    );
    assert_eq!(r.cc_error_count, 0);
    data
}

/// Drops what queued up on `rx`.
fn drain(rx: &UdpSocket) {
    let mut buf = [0u8; 2048];
    rx.set_nonblocking(true).unwrap();
    while rx.recv(&mut buf).is_ok() {}
    rx.set_nonblocking(false).unwrap();
}

/// One RTP datagram received on `rx`, if one came within its time-out, into `got`.
fn receive(rx: &UdpSocket, got: &mut Received) {
    let mut buf = [0u8; 2048];
    if let Ok(n) = rx.recv(&mut buf) {
        let d = &buf[..n];
        if let Some((seq, p)) = playout::rtp::payload(d) {
            let ts = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
            got.push((Instant::now(), seq, ts, p.to_vec()));
        }
    }
}

fn now_ns() -> u64 {
    common::utc_ns() as u64
}

#[test]
fn a_dead_or_cut_off_node_s_channels_move_and_are_never_sent_twice() {
    if tool_on_path("etcd").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_tcp_port(), free_tcp_port());
    let _etcd = etcd_cluster(&[("t1", client, peer)]);
    let base = 27_000;
    let stop = Arc::new(AtomicBool::new(false));
    let (got, threads) = receiver(base, stop.clone());
    // he-03 reaches etcd through a relay that can cut it off.
    let relay = Relay::start(client);
    let names = ["he-01", "he-02", "he-03"];
    let https: Vec<u16> = names.iter().map(|_| free_tcp_port()).collect();
    let mut nodes: Vec<Option<Daemon>> = names
        .iter()
        .zip(&https)
        .map(|(n, h)| {
            let port = if *n == "he-03" { relay.port } else { client };
            Some(Daemon::run(
                &node_config(dir.path(), n, *h, &[port], base, "1s"),
                "info",
            ))
        })
        .collect();
    let owners = settled(https[0], 3, Duration::from_secs(20));
    // (Before this the nodes were joining one by one: channels moved as each came.)
    let settled_at = now_ns();
    let mut load: HashMap<&str, usize> = HashMap::new();
    for o in owners.values() {
        *load.entry(o.as_str()).or_default() += 1;
    }
    eprintln!("placement: {load:?}");
    assert_eq!(load.len(), 3, "every node sends some: {load:?}");
    // Each channel is sent by its owner, kept warm by one standby (the default `standbys =
    // 1`), the node a takeover would give it to, and dormant on the third.
    let standby = modes_settled(&https, &owners, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));

    // kill -9 the node that sends the most among he-01 and he-02.
    let victim = ["he-01", "he-02"]
        .into_iter()
        .max_by_key(|n| load.get(n).copied().unwrap_or(0))
        .unwrap();
    let vi = names.iter().position(|n| *n == victim).unwrap();
    let theirs: Vec<usize> = owners
        .iter()
        .filter(|(_, o)| o.as_str() == victim)
        .map(|(c, _)| c[1..].parse().unwrap())
        .collect();
    let killed_at = now_ns();
    let mut d = nodes[vi].take().unwrap();
    let _ = d.0.kill();
    let _ = d.0.wait();
    std::thread::sleep(Duration::from_secs(5));
    let seen = senders(&got, killed_at - 1_000_000_000);
    let mut gaps = Vec::new();
    for k in &theirs {
        let (order, worst) = &seen[k];
        assert_eq!(order.len(), 2, "channel {k}: {order:?}");
        gaps.push(*worst);
    }
    // Each went to its warm standby.
    let survivor = names
        .iter()
        .position(|n| *n != victim && *n != "he-03")
        .unwrap();
    let now_owned = settled(https[survivor], 2, Duration::from_secs(10));
    for k in &theirs {
        let id = format!("c{k:02}");
        assert_eq!(
            now_owned[&id], standby[&id],
            "{id}: taken over by its standby"
        );
    }
    gaps.sort_by(f64::total_cmp);
    eprintln!(
        "kill -9 {victim}: {} channels, silence ms {gaps:?}",
        theirs.len()
    );
    // The others hold a connection to each node's beacon and see its process end: its lease
    // is revoked then and there, not waited for (the issue's 1 s target with warm standbys).
    assert!(gaps.iter().all(|g| *g < 1000.0), "{gaps:?}");
    // `/metrics` of the survivor: it saw one peer die, holds its lease, sends its share.
    let text = common::http_get_with(
        https[survivor],
        "/metrics",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
    );
    let value = |name: &str| common::metric(&text, name);
    assert_eq!(value("headend_fleet_peer_deaths_total "), 1.0);
    assert_eq!(value("headend_fleet_lease_valid "), 1.0);
    assert_eq!(value("headend_fleet_nodes "), 2.0);
    let sending = now_owned
        .values()
        .filter(|o| **o == names[survivor])
        .count();
    assert_eq!(
        value("headend_fleet_channels{role=\"sending\"}"),
        sending as f64
    );
    assert!(value("headend_fleet_channels_taken_total ") >= sending as f64);
    assert!(value("headend_fleet_etcd_calls_total{call=\"kv/range\"}") > 10.0);
    common::promtool_check_metrics(&text);
    // The others never paused.
    for (k, (order, worst)) in &seen {
        if !theirs.contains(k) {
            assert_eq!(order.len(), 1, "channel {k} moved: {order:?}");
            assert!(*worst < 500.0, "channel {k}: {worst} ms");
        }
    }

    // he-03 cut off from etcd: it stops before its channels start elsewhere.
    let owners = settled(https[survivor], 2, Duration::from_secs(10));
    let cut_off: Vec<usize> = owners
        .iter()
        .filter(|(_, o)| o.as_str() == "he-03")
        .map(|(c, _)| c[1..].parse().unwrap())
        .collect();
    assert!(!cut_off.is_empty());
    let cut_at = now_ns();
    relay.cut.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(5));
    moved_once(&got, cut_at - 500_000_000, &cut_off);
    // The stop came first: the last datagram of the cut-off sender before the first of the
    // next, on every channel (checked as no interleaving in `senders`) and with a gap.
    eprintln!("he-03 cut off: {} channels moved", cut_off.len());

    // he-03 reaches etcd again: it registers anew and takes its share back.
    relay.cut.store(false, Ordering::Relaxed);
    let limit = Duration::from_secs(15);
    settled_with(https[survivor], 2, "he-03", None, limit);
    let server = format!("http://127.0.0.1:{}", https[survivor]);
    let hectl_fleet = |args: &[&str]| {
        let out = run_bounded(
            Command::new(hectl())
                .arg("fleet")
                .args(args)
                .args(["--server", &server])
                .env("HECTL_TOKEN", TOKEN),
            Duration::from_secs(20),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let status = hectl_fleet(&["status"]);
    eprintln!("{status}");
    assert!(
        status.contains("he-01") && status.contains("he-03"),
        "{status}"
    );
    assert!(
        status.contains("warning: he-03 lacks ") && status.contains("lost.ts"),
        "{status}"
    );
    // Every node has its beacon.
    assert!(!status.contains("has no beacon"), "{status}");
    assert!(
        fleet(https[survivor])["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["watch"]
                .as_str()
                .is_some_and(|w| w.starts_with("127.0.0.1:"))),
        "{:#}",
        fleet(https[survivor])
    );
    // Drained, he-03 sends nothing and keeps its registration; undrained, it takes its share.
    hectl_fleet(&["drain", "he-03"]);
    settled_with(https[survivor], 2, "he-03", Some(0), limit);
    assert!(hectl_fleet(&["status"]).contains("drained"));
    std::thread::sleep(Duration::from_secs(1));
    hectl_fleet(&["undrain", "he-03"]);
    let owners = settled_with(https[survivor], 2, "he-03", None, limit);
    // (Sending what it took back, not about to.)
    std::thread::sleep(Duration::from_secs(2));

    // he-03 frozen (SIGSTOP: a host that stops without its connections ending, so nothing
    // tells the others it is gone but its lease): its channels move when the lease expires.
    // Thawed, it sends none of them again (its gates shut at the instant its lease could
    // have ended), registers anew and takes its share back.
    let frozen: Vec<usize> = owners
        .iter()
        .filter(|(_, o)| o.as_str() == "he-03")
        .map(|(c, _)| c[1..].parse().unwrap())
        .collect();
    let pid = nodes[2].as_ref().unwrap().0.id().to_string();
    let signal = |sig: &str| {
        let st = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(st.success());
    };
    let frozen_at = now_ns();
    signal("-STOP");
    std::thread::sleep(Duration::from_secs(4));
    moved_once(&got, frozen_at - 500_000_000, &frozen);
    signal("-CONT");
    settled_with(https[survivor], 2, "he-03", None, limit);
    // Across all of it, no channel was ever sent by two nodes at once.
    senders(&got, settled_at);

    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    for n in nodes.iter_mut().flatten() {
        let (st, err) = common::signal_and_wait(&mut n.0, "TERM");
        assert!(st.success(), "{err}");
    }
}

/// A 3-member etcd cluster loses a member (each in turn is tried: whichever was the leader
/// goes too): the two nodes, which know all three endpoints, go on; no channel moves or
/// pauses.
#[test]
fn an_etcd_member_lost_moves_nothing_and_stops_nothing() {
    if tool_on_path("etcd").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_tcp_port(), free_tcp_port())).collect();
    let names = ["m1", "m2", "m3"];
    let members: Vec<(&str, u16, u16)> = names
        .iter()
        .zip(&ports)
        .map(|(n, (c, p))| (*n, *c, *p))
        .collect();
    let mut etcd: Vec<Option<Etcd>> = etcd_cluster(&members).into_iter().map(Some).collect();
    let clients: Vec<u16> = ports.iter().map(|p| p.0).collect();
    let base = 27_100;
    let stop = Arc::new(AtomicBool::new(false));
    let (got, threads) = receiver(base, stop.clone());
    let https: Vec<u16> = (0..2).map(|_| free_tcp_port()).collect();
    let mut nodes: Vec<Daemon> = ["he-a", "he-b"]
        .iter()
        .zip(&https)
        .map(|(n, h)| {
            // A lease of a few seconds rides out a leader election (STANDARDS 8.6).
            Daemon::run(
                &node_config(dir.path(), n, *h, &clients, base, "3s"),
                "info",
            )
        })
        .collect();
    let before = settled(https[0], 2, Duration::from_secs(20));
    let from = now_ns();
    // The member that leads goes (found by asking each for its status), then a second
    // one would lose the quorum, so one only.
    let leader = clients
        .iter()
        .position(|c| {
            etcd_post(*c, "/v3/maintenance/status", "{}").is_some_and(|b| {
                let v: serde_json::Value = serde_json::from_str(&b).unwrap_or_default();
                v["leader"] == v["header"]["member_id"]
            })
        })
        .unwrap_or(0);
    eprintln!("killing etcd member {} (the leader)", names[leader]);
    drop(etcd[leader].take());
    std::thread::sleep(Duration::from_secs(8));
    let after = settled(https[1], 2, Duration::from_secs(5));
    assert_eq!(before, after, "channels moved");
    let seen = senders(&got, from);
    let worst = seen.values().map(|s| s.1).fold(0.0, f64::max);
    for (k, (order, _)) in &seen {
        assert_eq!(order.len(), 1, "channel {k}: {order:?}");
    }
    eprintln!("longest silence on any channel: {worst:.1} ms");
    assert!(worst < 300.0, "{worst} ms");
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    for n in &mut nodes {
        let (st, err) = common::signal_and_wait(&mut n.0, "TERM");
        assert!(st.success(), "{err}");
    }
}

/// Two nodes, he-a and he-b, each in its own directory, on the etcd at `client` under
/// `prefix`: `[http]` (with the admin token) and `[fleet]` (1 s lease), then `rest`, the same
/// for both. The daemons, on air, and their HTTP ports.
fn two_nodes(dir: &Path, client: u16, prefix: &str, rest: &str) -> (Vec<Daemon>, Vec<u16>) {
    let https: Vec<u16> = (0..2).map(|_| free_tcp_port()).collect();
    let nodes = ["he-a", "he-b"]
        .iter()
        .zip(&https)
        .map(|(n, h)| {
            let d = dir.join(n);
            std::fs::create_dir_all(&d).unwrap();
            let cfg = d.join("headend.toml");
            std::fs::write(
                &cfg,
                format!(
                    "[http]\nlisten = \"127.0.0.1:{h}\"\napi_token = \"{TOKEN}\"\n\n\
                     [fleet]\netcd = [\"http://127.0.0.1:{client}\"]\nnode = \"{n}\"\nlease = \"1s\"\nprefix = \"{prefix}\"\n\n{rest}"
                ),
            )
            .unwrap();
            Daemon::run(&cfg, "info")
        })
        .collect();
    (nodes, https)
}

/// One HTTP/1.0 request to the node on `port` (`common::request`).
fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    common::request(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        method,
        path,
        headers,
        body,
    )
}

/// Schedules are shared: an edit through the node that sends the channel is agreed in etcd
/// (a second edit of the same revision through the other node is refused, 409), copied to the
/// other node's store, and on air from it after the first is killed.
#[test]
fn a_schedule_edited_through_one_node_is_on_air_from_another_after_a_takeover() {
    if tool_on_path("etcd").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_tcp_port(), free_tcp_port());
    let _etcd = etcd_cluster(&[("s1", client, peer)]);
    let out = free_tcp_port();
    let rx = UdpSocket::bind(("127.0.0.1", out)).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let media = media("a.ts");
    let media_dir = media.parent().unwrap().display().to_string();
    let names = ["he-a", "he-b"];
    let https: Vec<u16> = names.iter().map(|_| free_tcp_port()).collect();
    let mut nodes: Vec<Option<Daemon>> = names
        .iter()
        .zip(&https)
        .map(|(n, h)| {
            let d = dir.path().join(n);
            std::fs::create_dir_all(d.join("sched")).unwrap();
            let cfg = d.join("headend.toml");
            std::fs::write(
                &cfg,
                format!(
                    "[http]\nlisten = \"127.0.0.1:{h}\"\napi_token = \"{TOKEN}\"\n\n\
                     [schedules]\ndir = \"sched\"\nmedia_dir = {media_dir:?}\n\n\
                     [fleet]\netcd = [\"http://127.0.0.1:{client}\"]\nnode = \"{n}\"\nlease = \"1s\"\nprefix = \"/sched-test/\"\n\n\
                     [[channel]]\nid = \"news\"\nservice_id = 1\nname = \"News\"\nmuxrate = \"{MUXRATE}\"\n\
                     playlist = [{:?}]\nfiller = [{:?}]\n[[channel.output]]\nurl = \"udp://127.0.0.1:{out}\"\n",
                    media.display().to_string(),
                    media.display().to_string()
                ),
            )
            .unwrap();
            Some(Daemon::run(&cfg, "info"))
        })
        .collect();
    let owner_of = |http: u16| -> Option<String> {
        fleet(http)["channels"][0]["owner"]
            .as_str()
            .map(str::to_owned)
    };
    let until = Instant::now() + Duration::from_secs(20);
    let owner = loop {
        let v = fleet(https[0]);
        if v["nodes"].as_array().map_or(0, Vec::len) == 2 {
            if let Some(o) = owner_of(https[0]).filter(|o| {
                Some(o)
                    == v["channels"][0]["placed"]
                        .as_str()
                        .map(str::to_owned)
                        .as_ref()
            }) {
                break o;
            }
        }
        assert!(Instant::now() < until, "{v:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let a = names.iter().position(|n| *n == owner).unwrap();
    let b = 1 - a;
    // The edit, through the node that sends the channel: an item 4 s from now.
    let at = chrono::Utc::now() + chrono::Duration::seconds(4);
    let date = at.format("%Y-%m-%d").to_string();
    let title = format!("Edited on {owner}");
    let day = format!(
        "date = \"{date}\"\n\n[[item]]\nstart = \"{}\"\nfile = \"a.ts\"\ntitle = \"{title}\"\n",
        at.format("%H:%M:%S")
    );
    let auth = format!("Bearer {TOKEN}");
    let path = format!("/api/schedules/news/{date}");
    let put = |node: usize, rev: &str| {
        request(
            https[node],
            "PUT",
            &path,
            &[("Authorization", &auth), ("If-Match", rev)],
            &day,
        )
    };
    let (status, body) = put(a, "\"0\"");
    assert_eq!(status, 200, "{body}");
    // The same revision through the other node: someone wrote first.
    let (status, body) = put(b, "\"0\"");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("revision 1"), "{body}");
    // The other node has it.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = request(https[b], "GET", &path, &[], "");
        if status == 200 && body.contains(&title) {
            break;
        }
        assert!(Instant::now() < until, "{status}: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The sender dies; the other takes the channel over and plays the edit.
    let mut d = nodes[a].take().unwrap();
    let _ = d.0.kill();
    let _ = d.0.wait();
    let until = Instant::now() + Duration::from_secs(10);
    while owner_of(https[b]).as_deref() != Some(names[b]) {
        assert!(Instant::now() < until, "{:#}", fleet(https[b]));
        std::thread::sleep(Duration::from_millis(100));
    }
    let wait = (at + chrono::Duration::seconds(2) - chrono::Utc::now())
        .num_milliseconds()
        .max(0) as u64;
    std::thread::sleep(Duration::from_millis(wait));
    let (status, body) = request(https[b], "GET", "/api/channels/news/status", &[], "");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["now"]["label"].as_str().unwrap_or("").contains(&title),
        "{v:#}"
    );
    // And it is sending.
    let mut buf = [0u8; 2048];
    let (n, from) = rx.recv_from(&mut buf).unwrap();
    assert!(n > 0 && from.port() != 0);
    for n in nodes.iter_mut().flatten() {
        let (st, err) = common::signal_and_wait(&mut n.0, "TERM");
        assert!(st.success(), "{err}");
    }
}

/// An input lock set through one node's API is the fleet's: the other node's engine holds it
/// too (a takeover keeps it), and an unlock through the other node ends it on both.
#[test]
fn an_input_lock_set_through_one_node_holds_on_every_node() {
    if tool_on_path("etcd").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_tcp_port(), free_tcp_port());
    let _etcd = etcd_cluster(&[("l1", client, peer)]);
    let slate = media("c.ts").display().to_string();
    let (main, backup, out) = (
        common::free_udp_port(),
        common::free_udp_port(),
        common::free_udp_port(),
    );
    let (mut nodes, https) = two_nodes(
        dir.path(),
        client,
        "/lock-test/",
        &format!(
            "[[channel]]\nid = \"live\"\nservice_id = 1\nname = \"Live\"\nmuxrate = \"{MUXRATE}\"\nplaylist = [{slate:?}]\n\
             [[channel.input]]\nname = \"main\"\nurl = \"udp://127.0.0.1:{main}\"\n\
             [[channel.input]]\nname = \"backup\"\nurl = \"udp://127.0.0.1:{backup}\"\n\
             [[channel.output]]\nurl = \"udp://127.0.0.1:{out}\"\n"
        ),
    );
    let relay = |http: u16| -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&common::http_get(http, "/channels")).unwrap_or_default();
        v.as_array()
            .and_then(|a| a.iter().find(|c| c["id"] == "live"))
            .map(|c| c["status"]["relays"][0].clone())
            .unwrap_or_default()
    };
    let wait_for = |http: u16, locked: bool, active: Option<&str>| {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let r = relay(http);
            if r["locked"] == locked && (active.is_none() || r["active"].as_str() == active) {
                return;
            }
            assert!(
                Instant::now() < until,
                "want locked {locked} {active:?}: {r:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let auth = format!("Bearer {TOKEN}");
    let order = |http: u16, body: &str| {
        let (status, reply) = request(
            http,
            "POST",
            "/api/channels/live/input",
            &[("Authorization", &auth)],
            body,
        );
        assert_eq!(status, 202, "{reply}");
        let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(v["shared_with_fleet"], true, "{reply}");
    };
    order(https[0], r#"{"action":"lock","input":"backup"}"#);
    wait_for(https[0], true, Some("backup"));
    wait_for(https[1], true, Some("backup"));
    order(https[1], r#"{"action":"unlock"}"#);
    wait_for(https[1], false, None);
    wait_for(https[0], false, None);
    // A channel relaying live inputs is not played in step: its standby is marked so (a
    // takeover by it starts a new stream).
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let v = fleet(https[0]);
        let c = v["channels"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["id"] == "live"))
            .cloned()
            .unwrap_or_default();
        if c["standbys"].as_array().is_some_and(|s| s.len() == 1)
            && c["not_in_step"] == c["standbys"]
        {
            break;
        }
        assert!(Instant::now() < until, "{v:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
    for n in &mut nodes {
        let (st, err) = common::signal_and_wait(&mut n.0, "TERM");
        assert!(st.success(), "{err}");
    }
}

/// An alert accepted through one node goes on air on the channels of its area on every node
/// (each node's desk verifies it again); the same message sent to another node after that is
/// a replay there.
#[test]
fn an_alert_sent_to_one_node_is_on_air_on_every_node() {
    use epg::alert::sign::{encode_signature, Algorithm, SigningKey, KEY_HEADER, SIGNATURE_HEADER};
    if tool_on_path("etcd").is_none() {
        return;
    }
    const ALERT_TOKEN: &str = "fleet-emergency-token-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_tcp_port(), free_tcp_port());
    let _etcd = etcd_cluster(&[("a1", client, peer)]);
    let key = SigningKey::generate(Algorithm::Sm2).unwrap();
    let e = media("e.ts").display().to_string();
    let out = common::free_udp_port();
    let (mut nodes, https) = two_nodes(
        dir.path(),
        client,
        "/alert-test/",
        &format!(
            "[alerts]\ntoken = \"{ALERT_TOKEN}\"\naudit_log = \"alerts.jsonl\"\n\
             [alerts.clips]\ndefault = {e:?}\n\n\
             [[alerts.sender]]\nkey_id = \"prov-sm2\"\nalgorithm = \"sm2\"\npublic_key = \"{}\"\nsenders = [\"prov@example.cn\"]\n\n\
             [[alerts.area]]\ncode = \"310104\"\nchannels = [\"ch00\"]\n\n\
             [[channel]]\nid = \"ch00\"\nservice_id = 1\nname = \"C0\"\nmuxrate = \"{MUXRATE}\"\nplaylist = [{e:?}]\n\
             [[channel.output]]\nurl = \"udp://127.0.0.1:{out}\"\n",
            key.verifying_key().to_hex()
        ),
    );
    // Both nodes registered and the channel placed: the agents have read the fleet.
    let until = Instant::now() + Duration::from_secs(20);
    while fleet(https[1])["nodes"].as_array().map_or(0, Vec::len) < 2 {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(100));
    }
    let now = common::utc_ns() / 1_000_000_000;
    let alert = common::cap_alert("FLEET-1", now, now + 60, "310104", "台风");
    let signature = encode_signature(&key.sign(alert.as_bytes()));
    let headers = [
        ("Authorization", format!("Bearer {ALERT_TOKEN}")),
        (KEY_HEADER, "prov-sm2".to_owned()),
        (SIGNATURE_HEADER, signature),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) = request(https[0], "POST", "/api/alerts", &headers, &alert);
    assert_eq!(status, 202, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["shared_with_fleet"], true, "{body}");
    // On air on the other node too.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, list) = request(https[1], "GET", "/api/alerts", &[], "");
        let v: serde_json::Value = serde_json::from_str(&list).unwrap_or_default();
        let on_b =
            v["active"].as_array().into_iter().flatten().any(|a| {
                a["identifier"] == "FLEET-1" && a["on_air"] == serde_json::json!(["ch00"])
            });
        if on_b {
            break;
        }
        assert!(Instant::now() < until, "not on air on he-b: {list}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The same message through he-b: it has it already.
    let (status, body) = request(https[1], "POST", "/api/alerts", &headers, &alert);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("replay"), "{body}");
    // Kept in etcd under a lease of its own, ending a day after the alert expires (60 s).
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let range = etcd_post(
        client,
        "/v3/kv/range",
        &format!(
            r#"{{"key":"{}","range_end":"{}"}}"#,
            b64("/alert-test/alerts/"),
            b64("/alert-test/alerts0")
        ),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&range).unwrap();
    let lease = v["kvs"][0]["lease"].as_str().unwrap_or("0").to_owned();
    assert_ne!(lease, "0", "{range}");
    let ttl = etcd_post(
        client,
        "/v3/lease/timetolive",
        &format!(r#"{{"ID":"{lease}"}}"#),
    )
    .unwrap();
    let ttl: serde_json::Value = serde_json::from_str(&ttl).unwrap();
    let left: i64 = ttl["TTL"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    assert!((86_400..=86_400 + 70).contains(&left), "{ttl}");
    for n in &mut nodes {
        let (st, err) = common::signal_and_wait(&mut n.0, "TERM");
        assert!(st.success(), "{err}");
    }
}

/// Deterministic output: two nodes play one channel from its origin in etcd, the second
/// started 4 s after the first (it plays the channel from the origin up to now before it
/// paces it), and each sends it to its own path of a SMPTE 2022-7 pair (`seamless = true`):
/// the two paths carry the same RTP, byte for byte. The first node is killed (-9): the merge
/// (`hectl receive --merge`) loses nothing, the strict checker and ffmpeg pass it.
#[test]
fn two_nodes_in_step_send_one_stream_and_a_2022_7_pair_survives_a_kill() {
    if tool_on_path("etcd").is_none() {
        return;
    }
    let Some(ffmpeg) = common::tool("ffmpeg") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_tcp_port(), free_tcp_port());
    let _etcd = etcd_cluster(&[("d1", client, peer)]);
    let paths = [common::free_udp_port(), common::free_udp_port()];
    // One file throughout (its layout and coding stay: the splices are the plainest).
    let playlist = [media("a.ts")]
        .map(|m| format!("{:?}", m.display().to_string()))
        .join(", ");
    let media_dir = media("a.ts").parent().unwrap().display().to_string();
    // A schedule (the same on both nodes): the playlist until it takes over, then a fixed
    // start and the items that follow while both nodes send, and after the first is killed.
    let t0 = common::utc_ns() / 1_000_000_000;
    let configs: Vec<PathBuf> = ["he-a", "he-b"]
        .iter()
        .zip(paths)
        .map(|(n, port)| {
            let d = dir.path().join(n);
            std::fs::create_dir_all(&d).unwrap();
            // A fixed start, then items that follow it.
            common::write_schedule(&d.join("sched"), "news", &[(t0 + 7, "a.ts", "Second")]);
            let day = std::fs::read_dir(d.join("sched/news"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path();
            let mut text = std::fs::read_to_string(&day).unwrap();
            text.push_str(
                "\n[[item]]\nfile = \"a.ts\"\ntitle = \"Third\"\n\n[[item]]\nfile = \"a.ts\"\ntitle = \"Fourth\"\n",
            );
            std::fs::write(&day, text).unwrap();
            let cfg = d.join("headend.toml");
            let http = free_tcp_port();
            std::fs::write(
                &cfg,
                format!(
                    "[http]\nlisten = \"127.0.0.1:{http}\"\napi_token = \"{TOKEN}\"\n\n\
                     [schedules]\ndir = \"sched\"\nmedia_dir = {media_dir:?}\n\n\
                     [fleet]\netcd = [\"http://127.0.0.1:{client}\"]\nnode = \"{n}\"\nlease = \"1s\"\nprefix = \"/step-test/\"\n\n\
                     [[channel]]\nid = \"news\"\nservice_id = 1\nname = \"News\"\nmuxrate = \"2M\"\n\
                     playlist = [{playlist}]\n\
                     [[channel.output]]\nurl = \"rtp://127.0.0.1:{port}\"\nseamless = true\n"
                ),
            )
            .unwrap();
            cfg
        })
        .collect();
    let merged = dir.path().join("merged.ts");
    let receiver = {
        let mut cmd = Command::new(hectl());
        cmd.args(["receive", "--merge"])
            .arg(format!("rtp://127.0.0.1:{}", paths[0]))
            .arg(format!("rtp://127.0.0.1:{}", paths[1]))
            .args(["--for", "16s", "-o"])
            .arg(&merged);
        std::thread::spawn(move || run_bounded(&mut cmd, Duration::from_secs(40)))
    };
    std::thread::sleep(Duration::from_millis(300));
    let mut a = Daemon::run(&configs[0], "info");
    std::thread::sleep(Duration::from_secs(4));
    let mut b = Daemon::run(&configs[1], "info");
    std::thread::sleep(Duration::from_secs(6));
    // Both nodes say they play it in step: every standby continues the sender's stream.
    let http_b: u16 = std::fs::read_to_string(&configs[1])
        .unwrap()
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    let v = fleet(http_b);
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(2), "{v:#}");
    assert_eq!(
        v["channels"][0]["standbys"].as_array().map(Vec::len),
        Some(1),
        "{v:#}"
    );
    assert_eq!(
        v["channels"][0]["not_in_step"],
        serde_json::json!([]),
        "{v:#}"
    );
    let _ = a.0.kill();
    let _ = a.0.wait();
    std::thread::sleep(Duration::from_secs(3));
    let (status, stderr) = common::signal_and_wait(&mut b.0, "TERM");
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("played from their origins, in step"),
        "{stderr}"
    );
    let out = receiver.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    eprintln!("{stderr}");
    let stats: serde_json::Value =
        serde_json::from_str(stderr.lines().last().unwrap_or("{}")).unwrap();
    // Both paths carried the stream for seconds (2 Mbit/s: 190 datagrams a second), the
    // same bytes under each sequence number; the second took over alone.
    assert!(stats["duplicates"].as_u64().unwrap() > 500, "{stats}");
    assert_eq!(stats["differing"], 0, "{stats}");
    assert!(stats["taken"][1].as_u64().unwrap() > 300, "{stats}");
    assert_eq!(stats["lost"], 0, "{stats}");
    assert_eq!(stats["late"], 0, "{stats}");
    let data = std::fs::read(&merged).unwrap();
    let limits = playout::check::CheckLimits::across_joins(2_000_000);
    let r = common::checked_as("fleet-2022-7", &data, &limits);
    assert_eq!(r.cc_error_count, 0);
    let errors = common::ffmpeg_errors(ffmpeg, &merged);
    assert!(errors.is_empty(), "ffmpeg: {errors:?}");
}

/// A takeover in step on one path: two nodes play a channel from one origin and only its owner
/// sends it (to an IPv6 group on `lo`); the other listens to the group, keeps what it made
/// and did not send, and when the owner is killed (-9) sends first what the owner never sent,
/// then the rest, at twice the rate until caught up. The receiver sees one RTP stream with no
/// sequence gap and no duplicate, no continuity error across the takeover, and ffmpeg decodes
/// it with no error.
#[test]
fn a_takeover_in_step_continues_the_stream_without_a_gap() {
    if tool_on_path("etcd").is_none() {
        return;
    }
    let Some(ffmpeg) = common::tool("ffmpeg") else {
        return;
    };
    let group = "ff15::1:4e";
    let Rig {
        dir,
        client,
        _etcd,
        port,
        rx,
    } = Rig::new(group, "g1");
    let https: Vec<u16> = (0..2).map(|_| free_tcp_port()).collect();
    let mut nodes: Vec<Option<Daemon>> = ["he-a", "he-b"]
        .iter()
        .zip(&https)
        .map(|(n, http)| {
            let cfg = news_node(dir.path(), n, *http, client, "/gap-test/", (group, port));
            let daemon = Some(Daemon::run(&cfg, "info"));
            // The second a little later: it plays the channel from its origin.
            std::thread::sleep(Duration::from_secs(2));
            daemon
        })
        .collect();
    // Who sends it, once both are registered.
    let until = Instant::now() + Duration::from_secs(20);
    let owner = loop {
        let v = fleet(https[0]);
        let owner = v["channels"][0]["owner"].as_str().map(str::to_owned);
        if v["nodes"].as_array().map_or(0, Vec::len) == 2 {
            if let Some(o) = owner {
                break o;
            }
        }
        assert!(Instant::now() < until, "no owner: {v:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let k = if owner == "he-a" { 0 } else { 1 };
    // Receive 3 s, kill the owner, receive 5 s more.
    let mut got: Received = Vec::new();
    let began = Instant::now();
    let mut killed = false;
    while began.elapsed() < Duration::from_secs(8) {
        if !killed && began.elapsed() >= Duration::from_secs(3) {
            if let Some(mut d) = nodes[k].take() {
                let _ = d.0.kill();
                let _ = d.0.wait();
            }
            killed = true;
        }
        receive(&rx, &mut got);
    }
    let mut survivor = nodes[1 - k].take().unwrap();
    let (status, stderr) = common::signal_and_wait(&mut survivor.0, "TERM");
    assert!(status.success(), "{stderr}");
    // It sent the backlog: what the owner had not sent when it died.
    let line = stderr
        .lines()
        .find(|l| l.contains("taking over where the owner stopped"))
        .unwrap_or_else(|| panic!("no backlog sent: {stderr}"));
    eprintln!("{line}");
    assert!(got.len() > 1200, "{} datagrams", got.len());
    // From the first PAT on (the capture starts mid-stream) to the last PES start of the
    // audio and video (it ends mid-stream: the last access units are cut short).
    let data = one_stream("fleet-takeover", &got);
    let pusi = |p: &[u8], pid: u16| {
        p[1] & 0x40 != 0 && u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]) == pid
    };
    let packets: Vec<&[u8]> = data.chunks(188).collect();
    let end = [0x100, 0x101]
        .iter()
        .map(|&pid| packets.iter().rposition(|p| pusi(p, pid)).unwrap())
        .min()
        .unwrap();
    let path = dir.path().join("received.ts");
    std::fs::write(&path, &data[..end * 188]).unwrap();
    let errors = common::ffmpeg_errors(ffmpeg, &path);
    assert!(errors.is_empty(), "ffmpeg: {errors:?}");
}

/// Three nodes, one channel: its owner sends it, its standby keeps it warm, the third keeps it
/// dormant (muxed in bulk, nothing sent). The owner and the standby die together: the dormant
/// node takes it over, in step: after the lease's gap the RTP sequence numbers and timestamps
/// go on as if the stream had never stopped, and what follows decodes with no error.
#[test]
fn a_dormant_node_takes_over_in_step_after_a_gap() {
    if tool_on_path("etcd").is_none() {
        return;
    }
    let Some(ffmpeg) = common::tool("ffmpeg") else {
        return;
    };
    let group = "ff15::1:4f";
    let Rig {
        dir,
        client,
        _etcd,
        port,
        rx,
    } = Rig::new(group, "d1");
    let names = ["he-a", "he-b", "he-c"];
    let https: Vec<u16> = names.iter().map(|_| free_tcp_port()).collect();
    let mut nodes: Vec<Option<Daemon>> = names
        .iter()
        .zip(&https)
        .map(|(n, http)| {
            let cfg = news_node(
                dir.path(),
                n,
                *http,
                client,
                "/dormant-test/",
                (group, port),
            );
            let daemon = Some(Daemon::run(&cfg, "info"));
            std::thread::sleep(Duration::from_secs(1));
            daemon
        })
        .collect();
    // Settled: each node in its mode.
    let until = Instant::now() + Duration::from_secs(20);
    let modes = loop {
        let modes: Vec<String> = https
            .iter()
            .map(|h| {
                let v: serde_json::Value =
                    serde_json::from_str(&common::http_get(*h, "/channels")).unwrap_or_default();
                v[0]["status"]["fleet"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        let count = |m: &str| modes.iter().filter(|x| *x == m).count();
        if count("sending") == 1 && count("warm") == 1 && count("dormant") == 1 {
            break modes;
        }
        assert!(
            Instant::now() < until,
            "modes {modes:?}: {:#}",
            fleet(https[0])
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let dormant = modes.iter().position(|m| m == "dormant").unwrap();
    // Receive 2 s, kill the owner and the standby, receive 4 s more (what queued up while
    // the fleet settled is dropped first: the socket's buffer overflowed).
    let mut got: Received = Vec::new();
    drain(&rx);
    let began = Instant::now();
    let mut killed = false;
    while began.elapsed() < Duration::from_secs(6) {
        if !killed && began.elapsed() >= Duration::from_secs(2) {
            for k in (0..3).filter(|k| *k != dormant) {
                if let Some(mut d) = nodes[k].take() {
                    let _ = d.0.kill();
                    let _ = d.0.wait();
                }
            }
            killed = true;
        }
        receive(&rx, &mut got);
    }
    let mut survivor = nodes[dormant].take().unwrap();
    let (status, stderr) = common::signal_and_wait(&mut survivor.0, "TERM");
    assert!(status.success(), "{stderr}");
    // One gap: the takeover's time.
    let (g, silence, skipped) = one_gap_in_step(&got, began);
    assert!(silence < Duration::from_secs(3), "back after {silence:?}");
    eprintln!("dormant takeover: silent {silence:?}, {skipped} datagrams skipped");
    // What the dormant node sent decodes, tuned in as a receiver does: from its first PAT
    // on, the video from its first random access point.
    let data: Vec<u8> = got[g..].iter().flat_map(|x| x.3.clone()).collect();
    let packets: Vec<&[u8]> = data.chunks(188).collect();
    let pid = |p: &[u8]| u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]);
    let pusi = |p: &[u8], id: u16| p[1] & 0x40 != 0 && pid(p) == id;
    let first_pat = packets.iter().position(|p| pusi(p, 0)).unwrap();
    // (The first at or after that PAT: a receiver knows the video's PID only from there.)
    let rap = first_pat
        + packets[first_pat..]
            .iter()
            .position(|p| pusi(p, 0x100) && p[3] & 0x20 != 0 && p[4] > 0 && p[5] & 0x40 != 0)
            .expect("a random access point");
    let end = [0x100, 0x101]
        .iter()
        .map(|&id| packets.iter().rposition(|p| pusi(p, id)).unwrap())
        .min()
        .unwrap();
    let tuned: Vec<u8> = packets[first_pat..end]
        .iter()
        .enumerate()
        .filter(|(i, p)| first_pat + i >= rap || pid(p) != 0x100)
        .flat_map(|(_, p)| p.to_vec())
        .collect();
    let path = dir.path().join("after.ts");
    std::fs::write(&path, &tuned).unwrap();
    let errors = common::ffmpeg_errors(ffmpeg, &path);
    assert!(errors.is_empty(), "ffmpeg: {errors:?}");
}

/// A node that starts when the channel's origin is older than its `catch_up` plays the
/// channel from an origin of its own, not in step (registered so). Once it sends the channel
/// (the owner killed, the only other node drained) its origin becomes the fleet's (the
/// drained node, still on the first origin, is then registered out of step): the killed node,
/// started again, plays from it in step and takes its preferred channel back with no gap (one
/// RTP stream, no continuity error).
#[test]
fn an_origin_too_old_to_catch_up_moves_to_the_node_that_sends() {
    if tool_on_path("etcd").is_none() {
        return;
    }
    let group = "ff15::1:50";
    let Rig {
        dir,
        client,
        _etcd,
        port,
        rx,
    } = Rig::new(group, "o1");
    let https: Vec<u16> = (0..3).map(|_| free_tcp_port()).collect();
    let configs: Vec<PathBuf> = ["he-a", "he-b", "he-c"]
        .iter()
        .zip(&https)
        .map(|(n, http)| {
            let cfg = news_node(dir.path(), n, *http, client, "/own-test/", (group, port));
            let mut text = std::fs::read_to_string(&cfg).unwrap();
            // he-a sends it while it is there, then he-b; he-b catches up with no more than
            // 1 s; he-c plays it from the first origin.
            text = text.replace(
                "playlist = [",
                "prefer = [\"he-a\", \"he-b\"]\nplaylist = [",
            );
            if *n == "he-b" {
                text = text.replace("lease = \"1s\"\n", "lease = \"1s\"\ncatch_up = \"1s\"\n");
            }
            std::fs::write(&cfg, text).unwrap();
            cfg
        })
        .collect();
    let mut a = Some(Daemon::run(&configs[0], "info"));
    let c = Daemon::run(&configs[2], "info");
    std::thread::sleep(Duration::from_secs(3));
    let b = Daemon::run(&configs[1], "info");
    // he-b: the origin is 3 s old, over its 1 s: it plays from its own, out of step.
    let wait = |http: u16, what: &str, ok: &dyn Fn(&serde_json::Value) -> bool| {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let v = fleet(http);
            if ok(&v) {
                return v;
            }
            assert!(Instant::now() < until, "{what}: {v:#}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let out_of_step = |v: &serde_json::Value, node: &str| -> Option<Vec<String>> {
        let n = v["nodes"].as_array()?.iter().find(|n| n["name"] == node)?;
        Some(
            n["out_of_step"]
                .as_array()?
                .iter()
                .filter_map(|c| Some(c.as_str()?.to_owned()))
                .collect(),
        )
    };
    wait(https[0], "he-b out of step, he-a sending", &|v| {
        v["channels"][0]["owner"] == "he-a"
            && out_of_step(v, "he-b").is_some_and(|l| l == ["news"])
            && out_of_step(v, "he-c").is_some_and(|l| l.is_empty())
    });
    // he-c drained (it keeps playing the first origin, but is placed nothing: otherwise, in
    // step, it would take the channel before he-b, which is out of step), he-a killed: he-b
    // sends from its own origin, which becomes the fleet's.
    let (code, body) = request(
        https[0],
        "POST",
        "/api/fleet/drain?node=he-c&on=true",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        "",
    );
    assert_eq!(code, 200, "{body}");
    if let Some(mut d) = a.take() {
        let _ = d.0.kill();
        let _ = d.0.wait();
    }
    // he-c, on the first origin, sees the fleet's change: out of step now.
    wait(
        https[1],
        "he-b sending, in step with itself; he-c out of step",
        &|v| {
            v["channels"][0]["owner"] == "he-b"
                && v["nodes"].as_array().map_or(0, Vec::len) == 2
                && out_of_step(v, "he-b").is_some_and(|l| l.is_empty())
                && out_of_step(v, "he-c").is_some_and(|l| l == ["news"])
        },
    );
    // he-a again: it plays from he-b's origin (under a few seconds old) in step, and takes
    // the channel back where he-b stops: receive across the handover.
    let mut got: Received = Vec::new();
    // (What queued up before is dropped first.)
    drain(&rx);
    let a = Daemon::run(&configs[0], "info");
    let began = Instant::now();
    let mut back_at = None;
    while back_at.is_none_or(|t: Instant| t.elapsed() < Duration::from_secs(3)) {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "he-a never took it back: {:#}",
            fleet(https[1])
        );
        if back_at.is_none() && got.len() % 50 == 0 {
            let v = fleet(https[1]);
            if v["channels"][0]["owner"] == "he-a"
                && out_of_step(&v, "he-a").is_some_and(|l| l.is_empty())
            {
                back_at = Some(Instant::now());
            }
        }
        receive(&rx, &mut got);
    }
    let v = fleet(https[1]);
    assert_eq!(
        v["channels"][0]["not_in_step"],
        serde_json::json!(["he-c"]),
        "{v:#}"
    );
    for mut d in [a, b, c] {
        let (status, stderr) = common::signal_and_wait(&mut d.0, "TERM");
        assert!(status.success(), "{stderr}");
    }
    // One stream across the handover: he-a, in step and warm (it registers once its engine
    // runs, and hears he-b until it stops), sends first what he-b did not: no sequence gap,
    // no continuity error.
    one_stream("fleet-own-origin", &got);
}
