//! The desk's decisions without an engine: every rejection path with its reason and audit
//! line, targeting, drills, priorities and queueing, updates, cancels and expiry.

use std::path::Path;

use chrono::{DateTime, Duration, FixedOffset, Utc};
use epg::alert::sign::{encode_signature, Algorithm, SigningKey};
use serde_json::Value;

use super::*;
use crate::router::Inbox;
use crate::station::OverrideMsg;

struct Fixture {
    desk: Desk,
    sent: Inbox,
    returns: std::sync::mpsc::Receiver<Wake>,
    prov: SigningKey,
    city: SigningKey,
    dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let prov = SigningKey::generate(Algorithm::Sm2).unwrap();
    let city = SigningKey::generate(Algorithm::Ed25519).unwrap();
    let mut text = format!(
        "[alerts]\ntoken = \"0123456789abcdef0123\"\ndrill_channels = [\"c2\"]\nmax_duration = \"10m\"\n\
         tables = [\"ebit\", \"scte18\"]\n\
         [alerts.clips]\ndefault = \"alert.ts\"\n1 = \"red.ts\"\n[alerts.event_clips]\n11B03 = \"typhoon.ts\"\n\
         [[alerts.sender]]\nkey_id = \"prov\"\nalgorithm = \"sm2\"\npublic_key = \"{}\"\nsenders = [\"prov@x\"]\n\
         [[alerts.sender]]\nkey_id = \"city\"\nalgorithm = \"ed25519\"\npublic_key = \"{}\"\nsenders = [\"city@x\"]\n\
         [[alerts.area]]\ncode = \"310101\"\nchannels = [\"c0\", \"c1\"]\n\
         [[alerts.area]]\ncode = \"310102\"\nchannels = [\"c2\", \"c3\"]\n",
        prov.verifying_key().to_hex(),
        city.verifying_key().to_hex()
    );
    for i in 0..4 {
        text.push_str(&format!(
            "[[channel]]\nid = \"c{i}\"\nservice_id = {}\nname = \"C{i}\"\nmuxrate = \"2M\"\nplaylist = [\"a.ts\"]\ntimezone = \"Asia/Shanghai\"\n",
            i + 1
        ));
    }
    std::fs::write(dir.path().join("test.toml"), &text).unwrap();
    let (desk, sent, returns) = open_desk(dir.path());
    Fixture {
        desk,
        sent,
        returns,
        prov,
        city,
        dir,
    }
}

/// A desk on the config and files in `dir` (a daemon starting there).
fn open_desk(dir: &Path) -> (Desk, Inbox, std::sync::mpsc::Receiver<Wake>) {
    let text = std::fs::read_to_string(dir.join("test.toml")).unwrap();
    let config = crate::config::parse(&text, dir, "test.toml").unwrap();
    let (sink, sent) = ScheduleSink::inbox(4);
    let (returns_tx, returns) = std::sync::mpsc::channel();
    let desk = Desk::new(
        &config,
        DeskLinks {
            sink,
            returns: returns_tx,
            reports: None,
            placement: (0..4).map(|i| (format!("c{i}"), i, 0, true)).collect(),
            journal: crate::record::Journal::none(),
        },
    )
    .unwrap()
    .unwrap();
    (desk, sent, returns)
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T10:00:00+08:00")
        .unwrap()
        .with_timezone(&Utc)
}

fn at(t: DateTime<Utc>) -> String {
    t.with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%dT%H:%M:%S+08:00")
        .to_string()
}

/// A JSON alert from `sender`.
fn alert(sender: &str, id: &str, msg: &str, extra: Value) -> String {
    let mut v = serde_json::json!({
        "identifier": id, "sender": sender, "sent": at(now()), "status": "Actual",
        "msgType": msg, "scope": "Public",
        "info": [{"category": ["Met"], "event": "storm", "urgency": "Immediate",
                  "severity": "Severe", "certainty": "Observed", "headline": "Storm warning",
                  "expires": at(now() + Duration::minutes(30)),
                  "area": [{"areaDesc": "d1", "geocode": [{"valueName": "GB2260", "value": "310101"}]}]}]
    });
    if let Value::Object(m) = extra {
        for (k, x) in m {
            if k == "info0" {
                if let Value::Object(i) = x {
                    for (ik, iv) in i {
                        v["info"][0][ik] = iv;
                    }
                }
            } else {
                v[k] = x;
            }
        }
    }
    v.to_string()
}

impl Fixture {
    fn submit_as(&self, key: &SigningKey, key_id: &str, body: &str) -> Result<Value, Rejection> {
        self.submit_at(key, key_id, body, now())
    }

    fn submit_at(
        &self,
        key: &SigningKey,
        key_id: &str,
        body: &str,
        t: DateTime<Utc>,
    ) -> Result<Value, Rejection> {
        let sig = encode_signature(&key.sign(body.as_bytes()));
        self.desk
            .submit(body.as_bytes(), Some(key_id), Some(&sig), t)
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("alerts-audit.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// (station, seq) shown, or (station, None) cleared, in order.
    fn orders(&self) -> Vec<(usize, Option<u64>)> {
        self.sent
            .overrides_sent()
            .into_iter()
            .map(|o| match o {
                OverrideMsg::Show { station, air, .. } => (station, Some(air.seq)),
                OverrideMsg::Clear { station, .. } => (station, None),
            })
            .collect()
    }
}

fn refused(r: Result<Value, Rejection>, kind: RejectKind, needle: &str) {
    match r {
        Ok(v) => panic!("accepted: {v}"),
        Err(e) => {
            assert_eq!(e.kind, kind, "{}", e.reason);
            assert!(e.reason.contains(needle), "{:?} lacks {needle:?}", e.reason);
        }
    }
}

#[test]
fn every_rejection_has_its_reason_and_audit_line() {
    let f = fixture();
    let body = alert("prov@x", "A-1", "Alert", Value::Null);
    let sig = encode_signature(&f.prov.sign(body.as_bytes()));
    // No key id; no signature; an unknown key; a signature that does not verify.
    refused(
        f.desk.submit(body.as_bytes(), None, Some(&sig), now()),
        RejectKind::Unauthenticated,
        "X-Signature-Key",
    );
    refused(
        f.desk.submit(body.as_bytes(), Some("prov"), None, now()),
        RejectKind::Unauthenticated,
        "X-Signature",
    );
    refused(
        f.desk
            .submit(body.as_bytes(), Some("prov"), Some("@@@"), now()),
        RejectKind::Unauthenticated,
        "signature",
    );
    refused(
        f.submit_as(&f.prov, "mallory", &body),
        RejectKind::Unauthenticated,
        "unknown key",
    );
    refused(
        f.submit_as(&f.city, "prov", &body),
        RejectKind::Unauthenticated,
        "bad signature",
    );
    let tampered = body.replace("Storm warning", "Storm warnin!");
    refused(
        f.desk
            .submit(tampered.as_bytes(), Some("prov"), Some(&sig), now()),
        RejectKind::Unauthenticated,
        "bad signature",
    );
    // A key signing for a sender it is not trusted for.
    refused(
        f.submit_as(&f.city, "city", &body),
        RejectKind::Unauthenticated,
        "may not sign for sender",
    );
    // Malformed XML and JSON, with where.
    refused(
        f.submit_as(
            &f.prov,
            "prov",
            "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">\n<identifier>x</identifier>\n<sender>",
        ),
        RejectKind::Invalid,
        "malformed",
    );
    refused(
        f.submit_as(&f.prov, "prov", "{\"identifier\": 1,"),
        RejectKind::Invalid,
        "line",
    );
    // Expired; sent too long ago (replay window 10 min); from the future.
    let expired = alert(
        "prov@x",
        "A-2",
        "Alert",
        serde_json::json!({"info0": {"expires": at(now() - Duration::minutes(1))}}),
    );
    refused(
        f.submit_as(&f.prov, "prov", &expired),
        RejectKind::Invalid,
        "expire",
    );
    let stale = alert("prov@x", "A-3", "Alert", Value::Null);
    refused(
        f.submit_at(&f.prov, "prov", &stale, now() + Duration::minutes(11)),
        RejectKind::Invalid,
        "",
    );
    // No area served; no area at all.
    let nowhere = alert(
        "prov@x",
        "A-4",
        "Alert",
        serde_json::json!({"info0": {"area": [{"areaDesc": "x", "geocode": [{"valueName": "GB2260", "value": "440000"}]}]}}),
    );
    refused(
        f.submit_as(&f.prov, "prov", &nowhere),
        RejectKind::Invalid,
        "unknown area",
    );
    let no_area = alert(
        "prov@x",
        "A-5",
        "Alert",
        serde_json::json!({"info0": {"area": []}}),
    );
    refused(
        f.submit_as(&f.prov, "prov", &no_area),
        RejectKind::Invalid,
        "area",
    );
    // Update and Cancel of nothing on air.
    let upd = alert(
        "prov@x",
        "A-6",
        "Update",
        serde_json::json!({"references": "prov@x,NOPE,2026-12-01T09:00:00+08:00"}),
    );
    refused(
        f.submit_as(&f.prov, "prov", &upd),
        RejectKind::Invalid,
        "references no alert",
    );
    // Accepted once, then a replay.
    assert!(f.submit_as(&f.prov, "prov", &body).is_ok());
    refused(
        f.submit_as(&f.prov, "prov", &body),
        RejectKind::Replay,
        "before",
    );

    let audit = f.audit();
    let rejected = audit.iter().filter(|l| l["event"] == "rejected").count();
    assert_eq!(rejected, 15, "{audit:#?}");
    assert!(audit
        .iter()
        .all(|l| l["utc"].is_string() && l["local"].as_str().unwrap().ends_with("+08:00")));
    assert!(audit
        .iter()
        .any(|l| l["event"] == "accepted" && l["seq"] == 1));
    // Nothing rejected went on air: only the accepted alert's two channels.
    assert_eq!(f.orders(), vec![(0, Some(1)), (1, Some(1))]);
}

#[test]
fn levels_preempt_equal_levels_queue_updates_and_cancels_apply() {
    let f = fixture();
    // Level 2 (Severe) on the first district.
    let a = alert("prov@x", "A-1", "Alert", Value::Null);
    let r = f.submit_as(&f.prov, "prov", &a).unwrap();
    assert_eq!(r["level"], 2);
    assert!(r["clip"].as_str().unwrap().ends_with("alert.ts"), "{r}");
    assert_eq!(f.orders(), vec![(0, Some(1)), (1, Some(1))]);
    // Another level 2 for the same district queues behind it: nothing changes on air.
    let b = alert("prov@x", "A-2", "Alert", Value::Null);
    f.submit_as(&f.prov, "prov", &b).unwrap();
    assert!(f.orders().is_empty());
    // A level 1 pre-empts both, with its level's clip.
    let c = alert("prov@x", "A-3", "Alert", serde_json::json!({"level": 1}));
    let r = f.submit_as(&f.prov, "prov", &c).unwrap();
    assert!(r["clip"].as_str().unwrap().ends_with("red.ts"), "{r}");
    assert_eq!(f.orders(), vec![(0, Some(3)), (1, Some(3))]);
    // An update of the level 1 alert: shown again (same seq, new content).
    let u = alert(
        "prov@x",
        "A-3u",
        "Update",
        serde_json::json!({"level": 1, "references": format!("prov@x,A-3,{}", at(now())), "info0": {"headline": "Storm upgraded"}}),
    );
    f.submit_as(&f.prov, "prov", &u).unwrap();
    assert_eq!(f.orders(), vec![(0, Some(3)), (1, Some(3))]);
    let listed = f.desk.list();
    assert_eq!(listed["active"].as_array().unwrap().len(), 3);
    assert!(listed.to_string().contains("Storm upgraded"));
    // Cancel it: the first level-2 alert (older) comes back, not the second.
    let x = alert(
        "prov@x",
        "A-3x",
        "Cancel",
        serde_json::json!({"references": format!("prov@x,A-3,{}", at(now()))}),
    );
    f.submit_as(&f.prov, "prov", &x).unwrap();
    assert_eq!(f.orders(), vec![(0, Some(1)), (1, Some(1))]);
    // Expiry of everything: the channels are cleared and return to their schedule.
    f.desk.tick(now() + Duration::hours(1));
    let o = f.orders();
    assert_eq!(o, vec![(0, None), (1, None)], "{o:?}");
    let returns: Vec<Wake> = f.returns.try_iter().collect();
    assert!(
        returns.contains(&Wake::AlertEnded("c0".into()))
            && returns.contains(&Wake::AlertEnded("c1".into()))
    );
    let listed = f.desk.list();
    assert_eq!(listed["active"].as_array().unwrap().len(), 0);
    assert_eq!(listed["recent"].as_array().unwrap().len(), 3);
}

#[test]
fn drills_reach_drill_channels_and_event_codes_pick_clips() {
    let f = fixture();
    let drill = alert(
        "city@x",
        "D-1",
        "Alert",
        serde_json::json!({"status": "Exercise", "sender": "city@x", "info0": {
            "eventCode": [{"valueName": "GB/T 35965", "value": "11B03"}],
            "area": [{"areaDesc": "d2", "geocode": [{"valueName": "GB2260", "value": "310102"}]}]}}),
    );
    let r = f.submit_as(&f.city, "city", &drill).unwrap();
    assert_eq!(
        r["channels"],
        serde_json::json!(["c2"]),
        "only the drill channel"
    );
    assert!(r["clip"].as_str().unwrap().ends_with("typhoon.ts"), "{r}");
    // The tables of the drill: EBIT says live drill (class 3); SCTE-18 priority 0 (test).
    let shown = f.sent.overrides_sent();
    let OverrideMsg::Show { air, station, .. } = &shown[0] else {
        panic!("{shown:?}")
    };
    assert_eq!(*station, 2);
    assert_eq!(air.programme.title, "Storm warning");
    let ebit = air.tables.iter().find(|t| t.0 == 0x21).unwrap();
    let (_, m) = epg::emergency::parse_ebit(&ebit.2[0]).unwrap();
    assert_eq!(m[0].class, epg::emergency::EbClass::LiveDrill);
    assert_eq!(&m[0].ebm_type, b"11B03");
    let scte = air.tables.iter().find(|t| t.0 == 0x1FFB).unwrap();
    assert_eq!(
        epg::emergency::parse_scte18(&scte.2[0]).unwrap().priority,
        0
    );
    // Status Draft is not aired.
    let draft = alert(
        "prov@x",
        "D-2",
        "Alert",
        serde_json::json!({"status": "Draft"}),
    );
    refused(
        f.submit_as(&f.prov, "prov", &draft),
        RejectKind::Invalid,
        "Draft",
    );
}

#[test]
fn replays_are_refused_after_a_restart() {
    let f = fixture();
    let a = alert("prov@x", "R-1", "Alert", Value::Null);
    f.submit_as(&f.prov, "prov", &a).unwrap();
    // A second desk on the same audit log (the daemon restarted).
    let log = f.dir.path().join("alerts-audit.jsonl");
    let (_, seen) = audit::Audit::open(&log, epg::schedule::Tz::UTC).unwrap();
    assert!(seen.contains(&("prov@x".to_owned(), "R-1".to_owned())));
    assert!(Path::new(&log).is_file());
}

#[test]
fn alerts_on_air_come_back_after_a_restart() {
    let f = fixture();
    // A on c0/c1 for 30 minutes, updated (a new headline); B on c2/c3, then cancelled.
    let a = alert("prov@x", "A-1", "Alert", Value::Null);
    f.submit_as(&f.prov, "prov", &a).unwrap();
    let update = alert(
        "prov@x",
        "A-2",
        "Update",
        serde_json::json!({"references": format!("prov@x,A-1,{}", at(now())),
                           "info0": {"headline": "Storm warning, updated"}}),
    );
    f.submit_as(&f.prov, "prov", &update).unwrap();
    let b = alert(
        "prov@x",
        "B-1",
        "Alert",
        serde_json::json!({"info0": {"area": [{"areaDesc": "d2", "geocode": [{"valueName": "GB2260", "value": "310102"}]}]}}),
    );
    f.submit_as(&f.prov, "prov", &b).unwrap();
    let cancel = alert(
        "prov@x",
        "B-2",
        "Cancel",
        serde_json::json!({"references": format!("prov@x,B-1,{}", at(now()))}),
    );
    f.submit_as(&f.prov, "prov", &cancel).unwrap();
    drop(f.desk);
    // The daemon restarts 5 minutes later: A is back on air on c0 and c1, updated, until its
    // expiry; B stays ended.
    let (desk, sent, _returns) = open_desk(f.dir.path());
    desk.restore(now() + Duration::minutes(5));
    let shown: Vec<usize> = sent
        .overrides_sent()
        .into_iter()
        .filter_map(|o| match o {
            OverrideMsg::Show { station, air, .. } => {
                assert_eq!(air.programme.title, "Storm warning, updated");
                Some(station)
            }
            OverrideMsg::Clear { .. } => None,
        })
        .collect();
    assert_eq!(shown, vec![0, 1]);
    let list = desk.list();
    let active = list["active"].as_array().unwrap();
    assert_eq!(active.len(), 1, "{list}");
    assert_eq!(active[0]["headline"], "Storm warning, updated", "{list}");
    assert_eq!(
        active[0]["channels"],
        serde_json::json!(["c0", "c1"]),
        "{list}"
    );
    let audit: Vec<Value> = std::fs::read_to_string(f.dir.path().join("alerts-audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let restored = audit.iter().find(|l| l["event"] == "restored").unwrap();
    assert_eq!(restored["identifier"], "A-1");
    // It keeps its number (its EBM_id on air); one accepted after the restart gets a new
    // one, after every number given before.
    let accepted_a = audit
        .iter()
        .find(|l| l["event"] == "accepted" && l["identifier"] == "A-1")
        .unwrap();
    assert_eq!(restored["seq"], accepted_a["seq"]);
    let last = audit
        .iter()
        .filter_map(|l| l["seq"].as_u64())
        .max()
        .unwrap();
    let c = alert("prov@x", "C-1", "Alert", Value::Null);
    let sig = encode_signature(&f.prov.sign(c.as_bytes()));
    let ctx = desk
        .submit(
            c.as_bytes(),
            Some("prov"),
            Some(&sig),
            now() + Duration::minutes(5),
        )
        .unwrap();
    assert!(ctx["seq"].as_u64().unwrap() > last, "{ctx} after {last}");
    // Expired while stopped: not back on air, and forgotten.
    drop(desk);
    let (desk, sent, _returns) = open_desk(f.dir.path());
    desk.restore(now() + Duration::minutes(5));
    drop(desk);
    let (desk, sent2, _returns) = open_desk(f.dir.path());
    desk.restore(now() + Duration::minutes(40));
    assert!(sent2.overrides_sent().is_empty());
    assert_eq!(desk.list()["active"].as_array().map_or(0, Vec::len), 0);
    drop(sent);
    let (desk, sent3, _returns) = open_desk(f.dir.path());
    desk.restore(now() + Duration::minutes(6));
    assert!(sent3.overrides_sent().is_empty(), "forgotten once expired");
}

#[test]
fn uploads_must_be_playable_transport_streams() {
    let f = fixture();
    let junk = f.desk.upload(b"not a transport stream at all");
    assert!(matches!(
        junk,
        Err(Rejection {
            kind: RejectKind::Invalid,
            ..
        })
    ));
    let clip = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/media/a.ts"
    ))
    .unwrap();
    let stored = f.desk.upload(&clip).unwrap();
    let id = stored["media"].as_str().unwrap().to_owned();
    assert!(id.starts_with("media:"));
    // An alert naming it airs it.
    let a = alert(
        "prov@x",
        "M-1",
        "Alert",
        serde_json::json!({"info0": {"resource": [{"resourceDesc": "clip", "mimeType": "video/mp2t", "uri": id}]}}),
    );
    let r = f.submit_as(&f.prov, "prov", &a).unwrap();
    assert!(
        r["clip"].as_str().unwrap().contains(&id["media:".len()..]),
        "{r}"
    );
    // One naming a clip never uploaded is refused.
    let b = alert(
        "prov@x",
        "M-2",
        "Alert",
        serde_json::json!({"info0": {"resource": [{"resourceDesc": "clip", "mimeType": "video/mp2t", "uri": "media:ffff"}]}}),
    );
    refused(
        f.submit_as(&f.prov, "prov", &b),
        RejectKind::Invalid,
        "no such uploaded clip",
    );
}

/// The policy alone, without a desk, files or stations: levels, queueing, an update in
/// place, expiry of a queued and of a shown alert, and a cancel through an update's id.
#[test]
fn the_board_shows_the_highest_level_then_the_oldest() {
    use policy::{Board, Decision::*, DeskChannel, Placement};
    let channel = |i: usize| DeskChannel {
        id: format!("c{i}"),
        station: i,
        program: 0,
        service_id: 1,
        transport_stream_id: 1,
        original_network_id: 1,
        single: true,
        drills: false,
    };
    let parsed =
        |id: &str, msg: &str, extra| epg::alert::parse_json(&alert("prov@x", id, msg, extra));
    let placed = |channels: Vec<usize>, level: u8, minutes: i64| Placement {
        channels,
        level,
        clip: "alert.ts".into(),
        expires: now() + Duration::minutes(minutes),
    };
    let mut b = Board::new(vec![channel(0), channel(1)]);
    let admit = |b: &mut Board, id: &str, p: Placement| {
        let seq = b.take_seq();
        b.admit(seq, parsed(id, "Alert", Value::Null).unwrap(), p, now());
        b.arbitrate()
    };
    assert_eq!(
        admit(&mut b, "A-1", placed(vec![0, 1], 2, 30)),
        vec![Show { channel: 0, seq: 1 }, Show { channel: 1, seq: 1 }]
    );
    // The same level queues; a higher one pre-empts.
    assert_eq!(admit(&mut b, "A-2", placed(vec![1], 2, 10)), vec![]);
    assert_eq!(
        admit(&mut b, "A-3", placed(vec![1], 1, 20)),
        vec![Show { channel: 1, seq: 3 }]
    );
    // An update keeps its number and is shown again where it is on air.
    let refs = |id: &str| serde_json::json!({"references": format!("prov@x,{id},{}", at(now()))});
    let u = parsed("A-1u", "Update", refs("A-1")).unwrap();
    assert_eq!(b.referenced(&u), Some(1));
    assert!(b.update(1, u, placed(vec![0, 1], 2, 30)));
    assert_eq!(b.arbitrate(), vec![Show { channel: 0, seq: 1 }]);
    // The queued alert expires unseen; then the level 1 one, and channel 1 goes back to 1.
    let seqs = |ended: Vec<policy::Live>| ended.iter().map(|l| l.seq).collect::<Vec<_>>();
    assert_eq!(seqs(b.expire(now() + Duration::minutes(15))), vec![2]);
    assert_eq!(b.arbitrate(), vec![]);
    assert_eq!(seqs(b.expire(now() + Duration::minutes(25))), vec![3]);
    assert_eq!(b.arbitrate(), vec![Show { channel: 1, seq: 1 }]);
    // A cancel may name the update's identifier.
    let x = parsed("A-1x", "Cancel", refs("A-1u")).unwrap();
    assert_eq!(seqs(b.cancel(&x)), vec![1]);
    assert_eq!(
        b.arbitrate(),
        vec![Clear { channel: 0 }, Clear { channel: 1 }]
    );
    assert!(b.live().is_empty());
}
