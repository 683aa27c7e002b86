//! The JSON form: rejections located by path, and round trips (proptest).

use chrono::{DateTime, FixedOffset};
use epg::alert::{
    parse_cap, parse_json, Alert, AlertError, Area, Category, Certainty, Info, MsgType, Reference,
    Resource, ResponseType, Scope, Severity, Status, Urgency,
};
use proptest::prelude::*;

use super::{json_at, AMBER, TYPHOON_JSON};

fn typhoon_json_value() -> serde_json::Value {
    serde_json::from_str(TYPHOON_JSON).unwrap()
}

fn json_with(edit: impl FnOnce(&mut serde_json::Value)) -> Result<Alert, AlertError> {
    let mut v = typhoon_json_value();
    edit(&mut v);
    parse_json(&serde_json::to_string_pretty(&v).unwrap())
}

#[test]
fn json_missing_required_elements() {
    for element in ["identifier", "sender", "sent", "status", "msgType", "scope"] {
        let e = json_with(|v| {
            v.as_object_mut().unwrap().remove(element);
        });
        assert_eq!(
            e,
            Err(AlertError::Missing {
                element,
                at: json_at("$")
            })
        );
    }
    for element in ["category", "event", "urgency", "severity", "certainty"] {
        let e = json_with(|v| {
            v["info"][0].as_object_mut().unwrap().remove(element);
        });
        assert_eq!(
            e,
            Err(AlertError::Missing {
                element,
                at: json_at("$.info[0]")
            })
        );
    }
    let e = json_with(|v| {
        v["info"][0]["area"][0]
            .as_object_mut()
            .unwrap()
            .remove("areaDesc");
    });
    assert_eq!(
        e,
        Err(AlertError::Missing {
            element: "areaDesc",
            at: json_at("$.info[0].area[0]")
        })
    );
    let e = json_with(|v| v["info"][0]["category"] = serde_json::json!([]));
    assert!(matches!(
        e,
        Err(AlertError::Missing {
            element: "category",
            ..
        })
    ));
}

#[test]
fn json_bad_values_are_located_by_path() {
    let e = json_with(|v| v["info"][0]["urgency"] = "Soon".into());
    assert_eq!(
        e,
        Err(AlertError::Invalid {
            element: "urgency",
            value: "Soon".into(),
            expected: "one of Immediate Expected Future Past Unknown",
            at: json_at("$.info[0].urgency")
        })
    );
    assert_eq!(
        e.unwrap_err().to_string(),
        "$.info[0].urgency: urgency \"Soon\" is invalid, expected one of Immediate Expected Future Past Unknown"
    );
    let e = json_with(|v| v["info"][0]["category"][0] = "Weather".into());
    assert!(matches!(
        e,
        Err(AlertError::Invalid { element: "category", at, .. }) if at == json_at("$.info[0].category[0]")
    ));
    let e = json_with(|v| v["sent"] = "2024-09-16 06:00:00".into());
    assert!(matches!(
        e,
        Err(AlertError::Invalid {
            element: "sent",
            ..
        })
    ));
    for level in [
        serde_json::json!(0),
        serde_json::json!(5),
        serde_json::json!("high"),
    ] {
        let e = json_with(|v| v["level"] = level.clone());
        assert!(
            matches!(e, Err(AlertError::Invalid { element: "level", ref at, .. }) if *at == json_at("$.level")),
            "{level}: {e:?}"
        );
    }
    let e = json_with(|v| v["info"][0]["resource"][0]["derefUri"] = "not base64!".into());
    assert!(matches!(
        e,
        Err(AlertError::Invalid {
            element: "derefUri",
            ..
        })
    ));
    let e = json_with(|v| v["info"][0]["resource"][0]["size"] = (-8).into());
    assert!(matches!(
        e,
        Err(AlertError::Invalid {
            element: "size",
            ..
        })
    ));
    let e = json_with(|v| v["info"][0]["event"] = serde_json::json!({"zh": "台风"}));
    assert!(matches!(
        e,
        Err(AlertError::Invalid {
            element: "event",
            ..
        })
    ));
}

#[test]
fn json_rules_match_cap() {
    let e = json_with(|v| v["msgType"] = "Update".into());
    assert_eq!(
        e,
        Err(AlertError::Missing {
            element: "references",
            at: json_at("$")
        })
    );
    let triple = "31000041600000,31000041600000_20240916050000_1,2024-09-16T05:00:00+08:00";
    // Array form and CAP's string form.
    let a = json_with(|v| {
        v["msgType"] = "Update".into();
        v["references"] = serde_json::json!([triple]);
    })
    .unwrap();
    let b = json_with(|v| {
        v["msgType"] = "Update".into();
        v["references"] = triple.into();
    })
    .unwrap();
    assert_eq!(a, b);
    assert_eq!(
        a.references[0].identifier,
        "31000041600000_20240916050000_1"
    );
    let e = json_with(|v| v["references"] = serde_json::json!([1]));
    assert!(matches!(
        e,
        Err(AlertError::Invalid {
            element: "references",
            ..
        })
    ));
    let e = json_with(|v| v["scope"] = "Restricted".into());
    assert!(matches!(
        e,
        Err(AlertError::Missing {
            element: "restriction",
            ..
        })
    ));
    let e = json_with(|v| v["colour"] = "red".into());
    assert_eq!(
        e,
        Err(AlertError::Unexpected {
            element: "colour".into(),
            at: json_at("$.colour")
        })
    );
    // A single value where an array is expected, and null for absent.
    let a = json_with(|v| {
        v["info"][0]["category"] = "Met".into();
        v["note"] = serde_json::Value::Null;
    })
    .unwrap();
    assert_eq!(a.info[0].categories, [Category::Met]);
    let e = json_with(|v| v["info"][0]["category"] = serde_json::json!([["Met"]]));
    assert!(matches!(e, Err(AlertError::Unexpected { .. })));
}

#[test]
fn json_duplicate_member_is_an_error() {
    let json = TYPHOON_JSON.replacen(
        "\"status\": \"Actual\",",
        "\"status\": \"Actual\",\n  \"status\": \"Test\",",
        1,
    );
    assert_eq!(
        parse_json(&json),
        Err(AlertError::Duplicate {
            element: "status",
            at: json_at("$.status")
        })
    );
}

#[test]
fn json_malformed_has_line_and_column() {
    let json = "{\n  \"identifier\": \"x\",\n  \"sender\" \"y\"\n}";
    assert_eq!(
        parse_json(json),
        Err(AlertError::Json {
            line: 3,
            col: 12,
            msg: "expected `:`".into()
        })
    );
    assert!(matches!(
        parse_json("[1]"),
        Err(AlertError::Root { ref found, .. }) if found == "a json array"
    ));
    assert!(matches!(
        parse_json(""),
        Err(AlertError::Json { line: 1, .. })
    ));
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(matches!(parse_json(&deep), Err(AlertError::Json { .. })));
}

#[test]
fn json_truncations_never_panic() {
    for json in [TYPHOON_JSON.to_owned(), parse_cap(AMBER).unwrap().to_json()] {
        for (cut, _) in json.char_indices() {
            let _ = parse_json(&json[..cut]);
        }
    }
}

/// Non-empty, no leading or trailing whitespace (the parsers trim).
fn arb_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9台]([a-zA-Z0-9 台风预警\"<&',.]{0,12}[a-zA-Z0-9台])?"
}

fn arb_id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9@._:-]{1,16}"
}

fn arb_time() -> impl Strategy<Value = DateTime<FixedOffset>> {
    (0i64..4_000_000_000, -48i32..=56, prop::bool::ANY).prop_map(|(secs, quarter_hours, frac)| {
        let offset = FixedOffset::east_opt(quarter_hours * 900).unwrap();
        let nanos = if frac { 250_000_000 } else { 0 };
        DateTime::from_timestamp(secs, nanos)
            .unwrap()
            .with_timezone(&offset)
    })
}

fn arb_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    // Names with a prefix, so none is read as a level parameter.
    let name = arb_id().prop_map(|n| format!("p-{n}"));
    let value = "[a-zA-Z0-9 ]{0,6}".prop_map(|s| s.trim().to_owned());
    prop::collection::vec((name, value), 0..3)
}

fn arb_area() -> impl Strategy<Value = Area> {
    (
        arb_text(),
        prop::collection::vec(arb_text(), 0..2),
        prop::collection::vec(arb_text(), 0..2),
        arb_pairs(),
        prop::option::of((-1e6f64..1e6, prop::option::of(-1e6f64..1e6))),
    )
        .prop_map(|(desc, polygons, circles, geocodes, alt)| Area {
            desc,
            polygons,
            circles,
            geocodes,
            altitude: alt.map(|a| a.0),
            ceiling: alt.and_then(|a| a.1),
        })
}

fn arb_resource() -> impl Strategy<Value = Resource> {
    (
        arb_text(),
        arb_id(),
        prop::option::of(any::<u64>()),
        prop::option::of(arb_id()),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
        prop::option::of(arb_id()),
    )
        .prop_map(|(desc, mime_type, size, uri, deref_uri, digest)| Resource {
            desc,
            mime_type,
            size,
            uri,
            deref_uri,
            digest,
        })
}

fn arb_info() -> impl Strategy<Value = Info> {
    let enums = (
        prop::collection::vec(prop::sample::select(Category::ALL), 1..3),
        prop::collection::vec(prop::sample::select(ResponseType::ALL), 0..2),
        prop::sample::select(Urgency::ALL),
        prop::sample::select(Severity::ALL),
        prop::sample::select(Certainty::ALL),
    );
    let times = (
        prop::option::of(arb_time()),
        prop::option::of(arb_time()),
        prop::option::of(arb_time()),
    );
    let texts = prop::collection::vec(prop::option::of(arb_text()), 8);
    let lists = (
        arb_pairs(),
        arb_pairs(),
        prop::collection::vec(arb_resource(), 0..2),
        prop::collection::vec(arb_area(), 0..2),
    );
    (arb_id(), arb_text(), enums, times, texts, lists).prop_map(
        |(language, event, enums, times, texts, lists)| {
            let (categories, response_types, urgency, severity, certainty) = enums;
            let (effective, onset, expires) = times;
            let (event_codes, parameters, resources, areas) = lists;
            let mut t = texts.into_iter();
            Info {
                language,
                categories,
                event,
                response_types,
                urgency,
                severity,
                certainty,
                audience: t.next().flatten(),
                event_codes,
                effective,
                onset,
                expires,
                sender_name: t.next().flatten(),
                headline: t.next().flatten(),
                description: t.next().flatten(),
                instruction: t.next().flatten(),
                web: t.next().flatten(),
                contact: t.next().flatten(),
                parameters,
                resources,
                areas,
            }
        },
    )
}

fn arb_alert() -> impl Strategy<Value = Alert> {
    let head = (
        arb_id(),
        arb_id(),
        arb_time(),
        prop::sample::select(Status::ALL),
        prop::sample::select(MsgType::ALL),
        prop::sample::select(Scope::ALL),
    );
    let reference =
        (arb_id(), arb_id(), arb_time()).prop_map(|(sender, identifier, sent)| Reference {
            sender,
            identifier,
            sent: epg::alert::format_time(&sent),
        });
    let rest = (
        prop::collection::vec(prop::option::of(arb_text()), 5),
        prop::collection::vec(arb_text(), 0..2),
        prop::collection::vec(reference, 1..3),
        prop::collection::vec(arb_info(), 0..3),
        prop::option::of(1u8..=4),
    );
    (head, rest).prop_map(|(head, rest)| {
        let (identifier, sender, sent, status, msg_type, scope) = head;
        let (texts, codes, references, info, level) = rest;
        let mut t = texts.into_iter();
        Alert {
            identifier,
            sender,
            sent,
            status,
            msg_type,
            scope,
            source: t.next().flatten(),
            restriction: Some(t.next().flatten().unwrap_or_else(|| "r".into())),
            addresses: Some(t.next().flatten().unwrap_or_else(|| "a".into())),
            codes,
            note: t.next().flatten(),
            references,
            incidents: t.next().flatten(),
            info,
            level,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// JSON → Alert → JSON → Alert gives the same alert (and the same text).
    #[test]
    fn json_round_trip(alert in arb_alert()) {
        let json = alert.to_json();
        let back = parse_json(&json).map_err(|e| TestCaseError::fail(format!("{e}\n{json}")))?;
        prop_assert_eq!(&back, &alert);
        prop_assert_eq!(back.to_json(), json);
    }
}
