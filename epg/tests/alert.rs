//! `epg::alert`: CAP 1.2 ingest and the model's methods here; the JSON form in `alert/json.rs`,
//! signatures in `alert/sign.rs`.
//!
//! Fixtures and their provenance: `tests/data/cap/README.md`. Test vectors name their source
//! where they are used.

use std::time::Duration;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use epg::alert::{
    parse_cap, parse_json, AlertError, Category, Certainty, Location, MsgType, Reference, Resource,
    ResponseType, Scope, Severity, Status, Urgency,
};

#[path = "alert/json.rs"]
mod json;
#[path = "alert/sign.rs"]
mod sign;

const HSAS: &str = include_str!("data/cap/hsas.xml");
const THUNDERSTORM: &str = include_str!("data/cap/thunderstorm.xml");
const EARTHQUAKE: &str = include_str!("data/cap/earthquake.xml");
const AMBER: &str = include_str!("data/cap/amber.xml");
const TYPHOON_XML: &str = include_str!("data/cap/typhoon-zh.xml");
const TYPHOON_JSON: &str = include_str!("data/cap/typhoon-zh.json");
const ALL_XML: [&str; 5] = [HSAS, THUNDERSTORM, EARTHQUAKE, AMBER, TYPHOON_XML];

fn t(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap()
}

fn xml_at(line: u32, col: u32) -> Location {
    Location::Xml { line, col }
}

fn json_at(path: &str) -> Location {
    Location::Json {
        path: path.to_owned(),
    }
}

/// A minimal valid alert; `{alert}` and `{info}` are replaced by extra elements.
const MINIMAL: &str = r#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
<identifier>id-1</identifier>
<sender>sender@example.org</sender>
<sent>2024-01-01T00:00:00+08:00</sent>
<status>Actual</status>
<msgType>Alert</msgType>
<scope>Public</scope>{alert}
<info>
<category>Met</category>
<event>Fog</event>
<urgency>Expected</urgency>
<severity>Moderate</severity>
<certainty>Likely</certainty>{info}
</info>
</alert>"#;

fn minimal(alert: &str, info: &str) -> String {
    MINIMAL.replace("{alert}", alert).replace("{info}", info)
}

/// `MINIMAL` with one line replaced (found by its start).
fn minimal_without(line_start: &str, replacement: &str) -> String {
    minimal("", "")
        .lines()
        .map(|l| {
            if l.starts_with(line_start) {
                replacement
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---- CAP 1.2 Appendix A examples ---------------------------------------------------------

#[test]
fn cap_homeland_security_advisory() {
    let a = parse_cap(HSAS).unwrap();
    assert_eq!(a.identifier, "43b080713727");
    assert_eq!(a.sender, "hsas@dhs.gov");
    assert_eq!(a.sent, t("2003-04-02T14:39:01-05:00"));
    assert_eq!(a.sent.offset().local_minus_utc(), -5 * 3600);
    assert_eq!(
        (a.status, a.msg_type, a.scope),
        (Status::Actual, MsgType::Alert, Scope::Public)
    );
    assert_eq!(a.info.len(), 1);
    let i = &a.info[0];
    assert_eq!(i.language, "en-US", "default language");
    assert_eq!(i.categories, [Category::Security]);
    assert_eq!(
        (i.urgency, i.severity, i.certainty),
        (Urgency::Immediate, Severity::Severe, Certainty::Likely)
    );
    assert_eq!(a.headline(), "Homeland Security Sets Code ORANGE");
    assert!(i
        .description
        .as_deref()
        .unwrap()
        .starts_with("The Department"));
    assert!(
        i.instruction
            .as_deref()
            .unwrap()
            .starts_with("A High Condition"),
        "text is trimmed"
    );
    assert_eq!(i.parameters, [("HSAS".to_owned(), "ORANGE".to_owned())]);
    assert_eq!(
        i.resources,
        [Resource {
            desc: "Image file (GIF)".into(),
            mime_type: "image/gif".into(),
            size: None,
            uri: Some("http://www.dhs.gov/dhspublic/getAdvisoryImage".into()),
            deref_uri: None,
            digest: None,
        }]
    );
    assert_eq!(i.areas[0].desc, "U.S. nationwide and interests worldwide");
    assert_eq!(a.level, None);
    assert_eq!(a.level(), 2, "Severe → 二级");
    assert_eq!(a.expires(), None);
    assert!(!a.is_drill());
}

#[test]
fn cap_severe_thunderstorm_warning() {
    let a = parse_cap(THUNDERSTORM).unwrap();
    assert_eq!(a.identifier, "KSTO1055887203");
    let i = &a.info[0];
    assert_eq!(i.response_types, [ResponseType::Shelter]);
    assert_eq!(a.event_codes().collect::<Vec<_>>(), [("SAME", "SVR")]);
    assert_eq!(a.expires(), Some(t("2003-06-17T16:00:00-07:00")));
    assert_eq!(i.contact.as_deref(), Some("BARUFFALDI/JUSKIE"));
    assert_eq!(
        i.areas[0].polygons,
        ["38.47,-120.14 38.34,-119.95 38.52,-119.74 38.62,-119.89 38.47,-120.14"]
    );
    assert_eq!(
        a.geocodes().collect::<Vec<_>>(),
        [("SAME", "006109"), ("SAME", "006009"), ("SAME", "006003")]
    );
    assert_eq!(a.level(), 2);
}

#[test]
fn cap_earthquake_update_with_references() {
    let a = parse_cap(EARTHQUAKE).unwrap();
    assert_eq!(a.msg_type, MsgType::Update);
    assert_eq!(
        a.references,
        [Reference {
            sender: "trinet@caltech.edu".into(),
            identifier: "TRI13970876.1".into(),
            sent: "2003-06-11T20:30:00-07:00".into(),
        }]
    );
    assert_eq!(
        a.references[0].to_string(),
        "trinet@caltech.edu,TRI13970876.1,2003-06-11T20:30:00-07:00"
    );
    let i = &a.info[0];
    assert_eq!(i.urgency, Urgency::Past);
    assert_eq!(i.parameters.len(), 5);
    assert_eq!(i.parameters[2], ("Magnitude".into(), "3.4 Ml".into()));
    assert_eq!(i.areas[0].circles, ["32.9525,-115.5527 0"]);
    assert_eq!(a.level(), 4, "Minor → 四级");
}

#[test]
fn cap_amber_alert_multilingual() {
    let a = parse_cap(AMBER).unwrap();
    assert_eq!(a.source.as_deref(), Some("SW"));
    let languages: Vec<_> = a.info.iter().map(|i| i.language.as_str()).collect();
    assert_eq!(languages, ["en-US", "es-US"]);
    assert_eq!(a.headline(), "Amber Alert in Los Angeles County");
    assert_eq!(a.info[1].event, "Abducción de Niño");
    assert_eq!(a.info[1].areas[0].desc, "condado de Los Ángeles");
    assert_eq!(a.geocodes().count(), 2);
    assert_eq!(a.event_codes().collect::<Vec<_>>(), [("SAME", "CAE"); 2]);
}

#[test]
fn cap_chinese_typhoon_red_warning() {
    let a = parse_cap(TYPHOON_XML).unwrap();
    assert_eq!(a.identifier, "31000041600000_20240916060000_1");
    assert_eq!(a.identifier.len(), 31, "GB/T 35965.1 identifier length");
    let i = &a.info[0];
    assert_eq!(i.language, "zh-CN");
    assert_eq!(i.event, "台风");
    assert_eq!(a.headline(), "上海中心气象台发布台风红色预警信号");
    assert_eq!(a.level, Some(1), "from parameter EBM_level");
    assert_eq!(a.level(), 1);
    assert_eq!(
        a.geocodes().collect::<Vec<_>>(),
        [("GB2260", "310101"), ("GB2260", "310104")]
    );
    assert_eq!(
        i.resources[0].deref_uri.as_deref(),
        Some(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A][..]),
        "base64 split over lines"
    );
    assert_eq!(i.resources[0].size, Some(8));
    assert_eq!(
        (i.areas[0].altitude, i.areas[0].ceiling),
        (Some(0.0), Some(30000.0))
    );
    assert_eq!(a.onset_or_effective(), Some(t("2024-09-16T08:00:00+08:00")));
    assert_eq!(a.expires(), Some(t("2024-09-17T06:00:00+08:00")));
}

#[test]
fn json_and_cap_give_the_same_alert() {
    assert_eq!(
        parse_json(TYPHOON_JSON).unwrap(),
        parse_cap(TYPHOON_XML).unwrap()
    );
}

#[test]
fn json_round_trip_of_every_fixture() {
    for xml in ALL_XML {
        let alert = parse_cap(xml).unwrap();
        let json = alert.to_json();
        let back = parse_json(&json).unwrap_or_else(|e| panic!("{e}\n{json}"));
        assert_eq!(back, alert);
        assert_eq!(back.to_json(), json, "stable text");
    }
}

#[test]
fn to_json_uses_cap_names() {
    let json = parse_cap(EARTHQUAKE).unwrap().to_json();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["msgType"], "Update");
    assert_eq!(
        v["references"][0],
        "trinet@caltech.edu,TRI13970876.1,2003-06-11T20:30:00-07:00"
    );
    assert_eq!(v["info"][0]["category"][0], "Geo");
    assert_eq!(v["info"][0]["parameter"][0]["valueName"], "EventID");
    assert_eq!(v["info"][0]["area"][0]["circle"][0], "32.9525,-115.5527 0");
    assert_eq!(v["sent"], "2003-06-11T20:56:00-07:00");
    assert!(v.get("level").is_none(), "no explicit level");
}

// ---- model methods ------------------------------------------------------------------------

#[test]
fn level_from_explicit_or_most_severe_info() {
    let mut a = parse_cap(AMBER).unwrap();
    a.info[1].severity = Severity::Extreme;
    assert_eq!(a.level(), 1, "most severe info wins");
    a.info[0].severity = Severity::Unknown;
    a.info[1].severity = Severity::Moderate;
    assert_eq!(a.level(), 3);
    a.level = Some(2);
    assert_eq!(a.level(), 2, "explicit level wins");
    a.info.clear();
    a.level = None;
    assert_eq!(a.level(), 4);
    assert_eq!(a.headline(), "");
    // `level` parameter, case-insensitive name; the most severe of several.
    let xml = minimal(
        "",
        "<parameter><valueName>LEVEL</valueName><value>3</value></parameter>\
         <parameter><valueName>EBM_level</valueName><value>2</value></parameter>",
    );
    assert_eq!(parse_cap(&xml).unwrap().level, Some(2));
}

#[test]
fn headline_falls_back_to_event() {
    let a = parse_cap(&minimal("", "")).unwrap();
    assert_eq!(a.headline(), "Fog");
}

#[test]
fn expires_is_the_latest_given() {
    let mut a = parse_cap(AMBER).unwrap();
    a.info[0].expires = Some(t("2003-06-12T10:00:00-07:00"));
    assert_eq!(a.expires(), Some(t("2003-06-12T10:00:00-07:00")));
    a.info[1].expires = Some(t("2003-06-12T12:00:00-07:00"));
    assert_eq!(a.expires(), Some(t("2003-06-12T12:00:00-07:00")));
    a.info[0].onset = Some(t("2003-06-11T23:00:00-07:00"));
    a.info[1].effective = Some(t("2003-06-11T22:45:00-07:00"));
    assert_eq!(a.onset_or_effective(), Some(t("2003-06-11T22:45:00-07:00")));
}

#[test]
fn drills() {
    for (status, drill) in [
        ("Actual", false),
        ("Exercise", true),
        ("System", false),
        ("Test", true),
        ("Draft", false),
    ] {
        let xml = minimal_without("<status>", &format!("<status>{status}</status>"));
        assert_eq!(parse_cap(&xml).unwrap().is_drill(), drill, "{status}");
    }
}

#[test]
fn check_time_window_and_expiry() {
    let a = parse_cap(THUNDERSTORM).unwrap(); // sent 21:57Z, expires 23:00Z
    let window = Duration::from_secs(600);
    let now = Utc.with_ymd_and_hms(2003, 6, 17, 22, 0, 0).unwrap();
    assert_eq!(a.check_time(now, window), Ok(()));
    let late = Utc.with_ymd_and_hms(2003, 6, 17, 22, 7, 1).unwrap();
    assert!(matches!(
        a.check_time(late, window),
        Err(AlertError::Stale { .. })
    ));
    let early = Utc.with_ymd_and_hms(2003, 6, 17, 21, 47, 0).unwrap();
    assert_eq!(a.check_time(early, window), Ok(()), "exactly the window");
    let earlier = Utc.with_ymd_and_hms(2003, 6, 17, 21, 46, 59).unwrap();
    assert!(matches!(
        a.check_time(earlier, window),
        Err(AlertError::Future { .. })
    ));
    let expiry = Utc.with_ymd_and_hms(2003, 6, 17, 23, 0, 0).unwrap();
    let e = a
        .check_time(expiry, Duration::from_secs(86_400))
        .unwrap_err();
    assert_eq!(
        e,
        AlertError::Expired {
            expires: t("2003-06-17T16:00:00-07:00"),
            now: expiry
        }
    );
    assert_eq!(
        e.to_string(),
        "expired at 2003-06-17 16:00:00 -07:00 (now 2003-06-17 23:00:00 UTC)"
    );
    // No expires: only the window counts.
    let hsas = parse_cap(HSAS).unwrap();
    let now = Utc.with_ymd_and_hms(2003, 4, 2, 19, 40, 0).unwrap();
    assert_eq!(hsas.check_time(now, Duration::from_secs(120)), Ok(()));
    assert_eq!(hsas.check_time(now, Duration::MAX), Ok(()), "huge window");
}

// ---- CAP rejections -----------------------------------------------------------------------

#[test]
fn cap_missing_required_alert_elements() {
    for element in ["identifier", "sender", "sent", "status", "msgType", "scope"] {
        let xml = minimal_without(&format!("<{element}>"), "");
        assert_eq!(
            parse_cap(&xml),
            Err(AlertError::Missing {
                element,
                at: xml_at(1, 1)
            }),
            "{element}"
        );
    }
}

#[test]
fn cap_missing_required_info_elements() {
    for element in ["category", "event", "urgency", "severity", "certainty"] {
        let xml = minimal_without(&format!("<{element}>"), "");
        assert_eq!(
            parse_cap(&xml),
            Err(AlertError::Missing {
                element,
                at: xml_at(8, 1)
            }),
            "{element}"
        );
    }
}

#[test]
fn cap_missing_area_and_resource_elements() {
    let xml = minimal("", "\n<area><polygon>1,1 2,2 3,1 1,1</polygon></area>");
    assert_eq!(
        parse_cap(&xml),
        Err(AlertError::Missing {
            element: "areaDesc",
            at: xml_at(14, 1)
        })
    );
    let xml = minimal(
        "",
        "\n<resource><resourceDesc>map</resourceDesc></resource>",
    );
    assert_eq!(
        parse_cap(&xml),
        Err(AlertError::Missing {
            element: "mimeType",
            at: xml_at(14, 1)
        })
    );
    let xml = minimal(
        "",
        "\n<area><areaDesc>x</areaDesc><ceiling>10</ceiling></area>",
    );
    assert_eq!(
        parse_cap(&xml),
        Err(AlertError::Missing {
            element: "altitude",
            at: xml_at(14, 1)
        })
    );
    let xml = minimal("", "\n<parameter><value>1</value></parameter>");
    assert_eq!(
        parse_cap(&xml),
        Err(AlertError::Missing {
            element: "valueName",
            at: xml_at(14, 1)
        })
    );
}

#[test]
fn cap_bad_enumerations() {
    let cases = [
        ("<status>", "<status>Real</status>", "status", "Real"),
        (
            "<msgType>",
            "<msgType>Notice</msgType>",
            "msgType",
            "Notice",
        ),
        ("<scope>", "<scope>Everyone</scope>", "scope", "Everyone"),
        (
            "<category>",
            "<category>Weather</category>",
            "category",
            "Weather",
        ),
        ("<urgency>", "<urgency>Soon</urgency>", "urgency", "Soon"),
        ("<severity>", "<severity>Red</severity>", "severity", "Red"),
        (
            "<certainty>",
            "<certainty>Sure</certainty>",
            "certainty",
            "Sure",
        ),
    ];
    for (start, replacement, element, value) in cases {
        let xml = minimal_without(start, replacement);
        let line = 1 + xml.lines().position(|l| l == replacement).unwrap() as u32;
        match parse_cap(&xml) {
            Err(AlertError::Invalid {
                element: e,
                value: v,
                at,
                expected,
            }) => {
                assert_eq!((e, v.as_str(), at), (element, value, xml_at(line, 1)));
                assert!(expected.starts_with("one of "), "{expected}");
            }
            other => panic!("{element}: {other:?}"),
        }
    }
    let xml = minimal("", "\n<responseType>Run</responseType>");
    assert!(matches!(
        parse_cap(&xml),
        Err(AlertError::Invalid {
            element: "responseType",
            ..
        })
    ));
    // Case is not significant on input.
    let xml = minimal_without("<status>", "<status>actual</status>");
    assert_eq!(parse_cap(&xml).unwrap().status, Status::Actual);
}

#[test]
fn cap_date_times() {
    for bad in [
        "2024-01-01 00:00:00+08:00",
        "2024-01-01T00:00:00",
        "2024-01-01",
        "2024-13-01T00:00:00+08:00",
        "yesterday",
    ] {
        let xml = minimal_without("<sent>", &format!("<sent>{bad}</sent>"));
        assert_eq!(
            parse_cap(&xml),
            Err(AlertError::Invalid {
                element: "sent",
                value: bad.to_owned(),
                expected: "a dateTime like 2003-04-02T14:39:01-05:00",
                at: xml_at(4, 1)
            }),
            "{bad}"
        );
    }
    let xml = minimal("", "\n<expires>2024-01-02</expires>");
    assert!(matches!(
        parse_cap(&xml),
        Err(AlertError::Invalid {
            element: "expires",
            ..
        })
    ));
    // Tolerated: "Z" (CAP forbids it) and fractional seconds.
    for ok in ["2024-01-01T00:00:00Z", "2024-01-01T00:00:00.250+08:00"] {
        let xml = minimal_without("<sent>", &format!("<sent>{ok}</sent>"));
        assert_eq!(parse_cap(&xml).unwrap().sent, t(ok), "{ok}");
    }
}

#[test]
fn cap_wrong_namespace_and_root() {
    let cap11 = minimal("", "").replace(
        "urn:oasis:names:tc:emergency:cap:1.2",
        "urn:oasis:names:tc:emergency:cap:1.1",
    );
    let e = parse_cap(&cap11).unwrap_err();
    assert_eq!(
        e,
        AlertError::Root {
            found: "{urn:oasis:names:tc:emergency:cap:1.1}alert".into(),
            at: xml_at(1, 1)
        }
    );
    let no_ns = "<?xml version=\"1.0\"?>\n<alert><identifier>x</identifier></alert>";
    assert!(matches!(
        parse_cap(no_ns),
        Err(AlertError::Root { at, .. }) if at == xml_at(2, 1)
    ));
    let other = "<feed xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"/>";
    assert!(matches!(parse_cap(other), Err(AlertError::Root { .. })));
}

#[test]
fn cap_malformed_xml_has_line_and_column() {
    let xml = "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">\n  <identifier>x</sender>\n</alert>";
    match parse_cap(xml) {
        Err(AlertError::Xml { line, col, msg }) => {
            assert_eq!((line, col), (2, 16), "{msg}");
            assert!(!msg.contains(" at 2:16"), "position not repeated: {msg}");
        }
        other => panic!("{other:?}"),
    }
    let e = parse_cap("").unwrap_err();
    assert!(
        matches!(
            e,
            AlertError::Xml {
                line: 1,
                col: 1,
                ..
            }
        ),
        "{e:?}"
    );
    let e = parse_cap("<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">").unwrap_err();
    assert!(matches!(e, AlertError::Xml { .. }), "{e:?}");
    assert!(e.to_string().starts_with("line "), "{e}");
}

#[test]
fn cap_dtd_is_refused() {
    let xml = format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE alert [<!ENTITY x \"boom\">]>\n{}",
        minimal("", "")
    );
    assert!(matches!(parse_cap(&xml), Err(AlertError::Xml { .. })));
}

#[test]
fn cap_references_rules() {
    for msg_type in ["Update", "Cancel"] {
        let xml = minimal_without("<msgType>", &format!("<msgType>{msg_type}</msgType>"));
        assert_eq!(
            parse_cap(&xml),
            Err(AlertError::Missing {
                element: "references",
                at: xml_at(1, 1)
            }),
            "{msg_type}"
        );
    }
    let xml = minimal_without("<msgType>", "<msgType>Cancel</msgType>").replace(
        "<scope>Public</scope>",
        "<scope>Public</scope><references>a@b,id-0,2024-01-01T00:00:00+08:00 a@b,id-00,2024-01-01T00:00:01+08:00</references>",
    );
    let a = parse_cap(&xml).unwrap();
    assert_eq!(a.references.len(), 2);
    assert_eq!(a.references[1].identifier, "id-00");
    let xml = minimal("\n<references>a@b,id-0</references>", "");
    assert!(matches!(
        parse_cap(&xml),
        Err(AlertError::Invalid {
            element: "references",
            ..
        })
    ));
}

#[test]
fn cap_scope_rules() {
    let xml = minimal_without("<scope>", "<scope>Restricted</scope>");
    assert!(matches!(
        parse_cap(&xml),
        Err(AlertError::Missing {
            element: "restriction",
            ..
        })
    ));
    let xml = minimal_without("<scope>", "<scope>Private</scope>");
    assert!(matches!(
        parse_cap(&xml),
        Err(AlertError::Missing {
            element: "addresses",
            ..
        })
    ));
    let xml = minimal_without(
        "<scope>",
        "<scope>Private</scope><addresses>ops@a.example \"Duty Officer\"</addresses>",
    );
    assert_eq!(
        parse_cap(&xml).unwrap().addresses.as_deref(),
        Some("ops@a.example \"Duty Officer\"")
    );
}

#[test]
fn cap_structure_errors() {
    let xml = minimal("\n<identifier>again</identifier>", "");
    assert_eq!(
        parse_cap(&xml),
        Err(AlertError::Duplicate {
            element: "identifier",
            at: xml_at(8, 1)
        })
    );
    let xml = minimal("", "\n<colour>red</colour>");
    assert_eq!(
        parse_cap(&xml),
        Err(AlertError::Unexpected {
            element: "colour".into(),
            at: xml_at(14, 1)
        })
    );
    let xml = minimal("\n<level>1</level>", "");
    assert!(
        matches!(parse_cap(&xml), Err(AlertError::Unexpected { element, .. }) if element == "level"),
        "level is JSON-only"
    );
    let xml = minimal_without("<event>", "<event><b>Fog</b></event>");
    assert!(matches!(
        parse_cap(&xml),
        Err(AlertError::Invalid {
            element: "event",
            ..
        })
    ));
    let xml = minimal_without("<identifier>", "<identifier>id 1</identifier>");
    assert!(matches!(
        parse_cap(&xml),
        Err(AlertError::Invalid {
            element: "identifier",
            ..
        })
    ));
    let xml = minimal_without("<sender>", "<sender>a,b</sender>");
    assert!(matches!(
        parse_cap(&xml),
        Err(AlertError::Invalid {
            element: "sender",
            ..
        })
    ));
    let xml = minimal_without("<identifier>", "<identifier> </identifier>");
    assert!(matches!(
        parse_cap(&xml),
        Err(AlertError::Invalid {
            element: "identifier",
            ..
        })
    ));
    let xml = minimal(
        "",
        "\n<parameter><valueName>EBM_level</valueName><value>5</value></parameter>",
    );
    assert!(matches!(
        parse_cap(&xml),
        Err(AlertError::Invalid { element: "level", at, .. }) if at == xml_at(14, 1)
    ));
    let xml = minimal(
        "",
        "\n<resource><resourceDesc>x</resourceDesc><mimeType>a/b</mimeType><derefUri>@@@</derefUri></resource>",
    );
    assert!(matches!(
        parse_cap(&xml),
        Err(AlertError::Invalid {
            element: "derefUri",
            ..
        })
    ));
    let xml = minimal(
        "",
        "\n<resource><resourceDesc>x</resourceDesc><mimeType>a/b</mimeType><size>-1</size></resource>",
    );
    assert!(matches!(
        parse_cap(&xml),
        Err(AlertError::Invalid {
            element: "size",
            ..
        })
    ));
    let xml = minimal(
        "",
        "\n<area><areaDesc>x</areaDesc><altitude>NaN</altitude></area>",
    );
    assert!(matches!(
        parse_cap(&xml),
        Err(AlertError::Invalid {
            element: "altitude",
            ..
        })
    ));
}

#[test]
fn cap_tolerated_variations() {
    // Other namespaces (an XML-DSig signature), comments, CDATA, prefixes, empty optionals.
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<cap:alert xmlns:cap="urn:oasis:names:tc:emergency:cap:1.2" xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
  <!-- a comment -->
  <cap:identifier>id-2</cap:identifier>
  <cap:sender>s</cap:sender>
  <cap:sent>2024-01-01T00:00:00+00:00</cap:sent>
  <cap:status>Test</cap:status>
  <cap:msgType>Alert</cap:msgType>
  <cap:scope>Public</cap:scope>
  <cap:note></cap:note>
  <cap:info>
    <cap:category>Other</cap:category>
    <cap:event><![CDATA[A & B]]></cap:event>
    <cap:urgency>Unknown</cap:urgency>
    <cap:severity>Unknown</cap:severity>
    <cap:certainty>Unknown</cap:certainty>
  </cap:info>
  <ds:Signature><ds:SignedInfo/></ds:Signature>
</cap:alert>"#;
    let a = parse_cap(xml).unwrap();
    assert_eq!(a.note, None, "empty optional is absent");
    assert_eq!(a.info[0].event, "A & B");
    assert!(a.is_drill());
}

#[test]
fn cap_error_messages_are_lowercase_without_period() {
    let errors = [
        parse_cap(&minimal_without("<status>", "<status>Real</status>")).unwrap_err(),
        parse_cap(&minimal_without("<sender>", "")).unwrap_err(),
        parse_cap("<a>").unwrap_err(),
        parse_json("{}").unwrap_err(),
        parse_json("[").unwrap_err(),
    ];
    for e in errors {
        let s = e.to_string();
        assert!(!s.ends_with('.'), "{s}");
        assert!(s.starts_with(|c: char| !c.is_uppercase()), "{s}");
    }
    assert_eq!(
        parse_cap(&minimal_without("<status>", "<status>Real</status>"))
            .unwrap_err()
            .to_string(),
        "line 5 column 1: status \"Real\" is invalid, expected one of Actual Exercise System Test Draft"
    );
}

#[test]
fn cap_truncations_never_panic() {
    for xml in ALL_XML {
        for (cut, _) in xml.char_indices() {
            let _ = parse_cap(&xml[..cut]);
        }
        assert!(parse_cap(xml).is_ok());
    }
}

#[test]
fn cap_deep_nesting_is_refused_not_overflowed() {
    let depth = 20_000;
    let nested = format!("{}{}", "<area>".repeat(depth), "</area>".repeat(depth));
    // Either the XML parser's limit or a validation error; never a stack overflow.
    assert!(parse_cap(&minimal("", &nested)).is_err());
}
