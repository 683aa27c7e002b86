//! XMLTV (`epg::xmltv`): a guide with Chinese and English text round-trips through the writer
//! and the reader; what we write is valid for two third-party validators (xmllint against the
//! XMLTV DTD, and XMLTV's own tv_validate_file); a hand-written third-party document imports;
//! malformed documents are refused with the right line and column, never a panic; schedule
//! items take the metadata of programmes starting near them.
//!
//! The validators come from the Debian packages libxml2-utils (xmllint) and xmltv-util
//! (tv_validate_file and /usr/share/xmltv/xmltv.dtd). Without them the check is skipped with a
//! note, unless CI=true, where their absence fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use epg::schedule;
use epg::xmltv::{
    format_time, from_schedule, merge, parse, parse_bytes, parse_time, to_xml, Channel, EpisodeNum,
    Guide, ProblemKind, Programme, Rating, Text, Url, XmltvError, MAX_PROBLEMS,
};
use proptest::prelude::*;

const DTD: &str = "/usr/share/xmltv/xmltv.dtd";

fn at(s: &str) -> DateTime<FixedOffset> {
    parse_time(s).unwrap()
}

fn zh(s: &str) -> Text {
    Text::new(Some("zh"), s)
}

fn en(s: &str) -> Text {
    Text::new(Some("en"), s)
}

/// Two channels, three programmes: Chinese (+0800) and English (+0000), with the characters
/// XML must escape.
fn guide() -> Guide {
    Guide {
        channels: vec![
            Channel {
                id: "cctv1.cn".into(),
                display_names: vec![zh("中央一套"), en("CCTV-1")],
                lcn: Some(1),
                icon: Some("https://example.com/logo?a=1&b=2".into()),
            },
            Channel {
                id: "bbc1.uk".into(),
                display_names: vec![en("BBC One")],
                lcn: None,
                icon: None,
            },
        ],
        programmes: vec![
            Programme {
                channel: "cctv1.cn".into(),
                start: at("20261201190000 +0800"),
                stop: Some(at("20261201193000 +0800")),
                titles: vec![zh("新闻联播"), en("News & <Weather>")],
                sub_titles: vec![],
                descs: vec![zh(
                    "每晚七点的新闻节目。\n第二行：\"引号\" 与 'apostrophes'",
                )],
                categories: vec![zh("新闻"), en("News")],
                language: Some("zh".into()),
                episode_num: Some(EpisodeNum {
                    system: "onscreen".into(),
                    value: "2026-12-01".into(),
                }),
                rating: Some(Rating {
                    system: Some("CHN".into()),
                    value: "12+".into(),
                }),
                urls: vec![Url {
                    system: Some("catchup".into()),
                    value: "http://[::1]:8080/hls/cctv1/event/7.m3u8?a=1&b=2".into(),
                }],
            },
            Programme {
                channel: "cctv1.cn".into(),
                start: at("20261201193000 +0800"),
                stop: None,
                titles: vec![zh("天气预报")],
                sub_titles: vec![],
                descs: vec![],
                categories: vec![],
                language: None,
                episode_num: None,
                rating: None,
                urls: vec![],
            },
            Programme {
                channel: "bbc1.uk".into(),
                start: at("20261201180000 +0000"),
                stop: Some(at("20261201190000 +0000")),
                titles: vec![en("Doctor Who")],
                sub_titles: vec![en("The \"Ood\" & I")],
                descs: vec![en("The Doctor <returns>.")],
                categories: vec![en("Drama"), Text::new(None, "Sci-Fi")],
                language: Some("en".into()),
                episode_num: Some(EpisodeNum {
                    system: "xmltv_ns".into(),
                    value: "13 . 4 . 0/1".into(),
                }),
                rating: Some(Rating {
                    system: None,
                    value: "PG".into(),
                }),
                urls: vec![],
            },
        ],
    }
}

#[test]
fn round_trip_keeps_everything_chinese_included() {
    let original = guide();
    let xml = to_xml(&original);
    assert!(xml.starts_with(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE tv SYSTEM \"xmltv.dtd\">\n<tv generator-info-name=\"headend\">\n"
    ));
    assert!(
        xml.contains("<display-name lang=\"zh\">中央一套</display-name>"),
        "{xml}"
    );
    assert!(xml.contains(
        "start=\"20261201190000 +0800\" stop=\"20261201193000 +0800\" channel=\"cctv1.cn\""
    ));
    assert!(
        xml.contains("<title lang=\"en\">News &amp; &lt;Weather&gt;</title>"),
        "{xml}"
    );
    assert!(xml.contains("src=\"https://example.com/logo?a=1&amp;b=2\""));
    let back = parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    // DateTime equality compares instants; the offsets must survive too.
    assert_eq!(back, original);
    let offsets = |g: &Guide| -> Vec<(FixedOffset, Option<FixedOffset>)> {
        g.programmes
            .iter()
            .map(|p| (*p.start.offset(), p.stop.map(|s| *s.offset())))
            .collect()
    };
    assert_eq!(offsets(&back), offsets(&original));
    assert_eq!(to_xml(&back), xml, "writing is stable");
}

#[test]
fn serializes_to_json_with_rfc3339_times() {
    let json = serde_json::to_value(guide()).unwrap();
    assert_eq!(json["programmes"][0]["start"], "2026-12-01T19:00:00+08:00");
    assert_eq!(json["programmes"][0]["titles"][0]["value"], "新闻联播");
    assert_eq!(json["channels"][0]["lcn"], 1);
}

#[test]
fn what_we_write_is_valid_for_xmllint_and_tv_validate_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut docs = vec![("guide.xml", to_xml(&guide()))];
    // A schedule's programmes, and text that needs cleaning.
    let meta = schedule::Programme {
        title: Some("新闻\u{1}联播\r\n".into()),
        description: Some("line 1\r\nline 2 \u{85}& <tag>".into()),
        genre: Some("news".into()),
        rating: 12,
        language: Some("zho".into()),
        episode: Some("2026-12-01".into()),
    };
    let plain = schedule::Programme::default();
    let programmes = from_schedule(
        "cctv1.cn",
        Some("CHN"),
        [
            (
                at("20261201190000 +0800"),
                at("20261201193000 +0800"),
                &meta,
                "news.ts",
            ),
            (
                at("20261201193000 +0800"),
                at("20261201194000 +0800"),
                &plain,
                "ident.ts",
            ),
        ],
    );
    let scheduled = Guide {
        channels: vec![guide().channels[0].clone()],
        programmes,
    };
    docs.push(("scheduled.xml", to_xml(&scheduled)));
    let dtd = Path::new(DTD).is_file();
    if !dtd {
        missing(DTD, "xmltv-util");
        return;
    }
    // The DOCTYPE names xmltv.dtd: put it beside the files so nothing warns or fetches.
    std::fs::copy(DTD, dir.path().join("xmltv.dtd")).unwrap();
    let xmllint = tool("xmllint", "libxml2-utils");
    let validator = tool("tv_validate_file", "xmltv-util");
    for (name, xml) in &docs {
        let file = dir.path().join(name);
        std::fs::write(&file, xml).unwrap();
        validate(&file, xmllint.as_deref(), validator.as_deref(), xml);
    }
}

/// Both validators (those present) on `file`; `xml` is shown on failure.
fn validate(file: &Path, xmllint: Option<&Path>, validator: Option<&Path>, xml: &str) {
    if let Some(xmllint) = xmllint {
        let out = Command::new(xmllint)
            .args(["--noout", "--nonet", "--dtdvalid", DTD])
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "xmllint: {}\n{}{}\n{xml}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if let Some(validator) = validator {
        // --dtd-file: without it the tool downloads the DTD.
        let out = Command::new(validator)
            .args(["--dtd-file", DTD])
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tv_validate_file: {}\n{}{}\n{xml}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `name` on PATH, or `None` to skip the check outside CI.
fn tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        missing(name, package);
    }
    found
}

fn missing(what: &str, package: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    if ci {
        panic!("{what} is required under CI: install the Debian package {package}");
    }
    eprintln!("note: {what} not found (Debian package {package}): skipping that check (CI=true makes this fatal)");
}

/// As a grabber might write it: internal DTD subset, comments, attributes in any order,
/// entities, CDATA, elements the model does not hold, several ratings and episode numbers.
const THIRD_PARTY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE tv SYSTEM "xmltv.dtd" [
  <!ENTITY cctv "China Central Television">
]>
<!-- grabbed 2026-11-30 -->
<tv source-info-name="Example listings" generator-info-name="tv_grab_example/1.0">
  <channel id="cctv1.cn">
    <display-name lang="zh">中央一套</display-name>
    <display-name lang="en">&cctv; 1</display-name>
    <display-name>1</display-name>
    <icon width="64" src="http://example.com/cctv1.png" height="64"/>
    <url>http://tv.cctv.com/</url>
  </channel>
  <channel id="cctv13.cn"><display-name>CCTV-13</display-name><lcn>13</lcn></channel>
  <programme start="20261201190000 +0800" stop="20261201193000 +0800" channel="cctv1.cn">
    <title lang="zh">新闻联播</title>
    <title lang="en">News &amp; Weather</title>
    <desc lang="zh"><![CDATA[每晚七点 <直播> & 重播]]></desc>
    <credits><presenter>康辉</presenter></credits>
    <date>20261201</date>
    <category lang="zh">新闻</category>
    <language>zh</language>
    <episode-num system="xmltv_ns">. 334 .</episode-num>
    <episode-num>第334期</episode-num>
    <video><aspect>16:9</aspect></video>
    <new/>
    <rating system="CHN"><value>0+</value></rating>
    <rating system="MPAA"><value>G</value></rating>
    <star-rating><value>4/5</value></star-rating>
  </programme>
  <programme channel="cctv1.cn" stop="202612011940" start="202612011930">
    <title>天气预报</title>
  </programme>
  <programme channel='cctv13.cn' start='20261201'>
    <title>全天新闻</title>
  </programme>
</tv>
"#;

#[test]
fn imports_a_third_party_document() {
    let g = parse(THIRD_PARTY).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(g.channels.len(), 2);
    let c = &g.channels[0];
    assert_eq!(
        c.display_names,
        vec![zh("中央一套"), en("China Central Television 1")]
    );
    assert_eq!(c.lcn, Some(1));
    assert_eq!(c.icon.as_deref(), Some("http://example.com/cctv1.png"));
    assert_eq!(g.channels[1].lcn, Some(13));
    assert_eq!(g.programmes.len(), 3);
    let p = &g.programmes[0];
    assert_eq!(p.start.to_rfc3339(), "2026-12-01T19:00:00+08:00");
    assert_eq!(p.stop.unwrap().to_rfc3339(), "2026-12-01T19:30:00+08:00");
    assert_eq!(p.titles, vec![zh("新闻联播"), en("News & Weather")]);
    assert_eq!(p.descs, vec![zh("每晚七点 <直播> & 重播")]);
    assert_eq!(p.categories, vec![zh("新闻")]);
    assert_eq!(p.language.as_deref(), Some("zh"));
    assert_eq!(
        p.episode_num,
        Some(EpisodeNum {
            system: "onscreen".into(),
            value: "第334期".into()
        }),
        "onscreen is preferred"
    );
    assert_eq!(p.rating.as_ref().unwrap().value, "0+", "the first rating");
    // No zone: UTC, as the DTD says; short forms fill in zeros.
    assert_eq!(
        g.programmes[1].start.to_rfc3339(),
        "2026-12-01T19:30:00+00:00"
    );
    assert_eq!(
        g.programmes[2].start.to_rfc3339(),
        "2026-12-01T00:00:00+00:00"
    );
    // Without <channel> elements any channel id is taken.
    let bare =
        "<tv><programme start=\"20261201190000\" channel=\"x\"><title>t</title></programme></tv>";
    assert_eq!(parse(bare).unwrap().programmes[0].channel, "x");
}

/// The first problem's line, column, kind and text.
fn first(text: &str) -> (usize, usize, ProblemKind, String) {
    let e = parse(text).unwrap_err();
    let p = e.first();
    (p.line, p.column, p.kind, p.to_string())
}

const HEAD: &str = "<?xml version=\"1.0\"?>\n<tv>\n  <channel id=\"a.cn\"><display-name>A</display-name></channel>\n";

#[test]
fn malformed_documents_name_line_and_column() {
    use ProblemKind::{Structure, Syntax, Value};
    // (what, document, (line, column, kind), part of the message)
    type Case = (
        &'static str,
        String,
        (usize, usize, ProblemKind),
        &'static str,
    );
    let cases: &[Case] = &[
        (
            "unclosed tag",
            format!("{HEAD}  <programme start=\"20261201190000\" channel=\"a.cn\">\n    <title>新闻\n  </programme>\n</tv>\n"),
            (6, 3, Syntax),
            "</programme> does not close <title>",
        ),
        (
            "unclosed at the end",
            format!("{HEAD}  <programme start=\"20261201190000\" channel=\"a.cn\">\n"),
            (5, 1, Syntax),
            "the document ends inside an element",
        ),
        (
            "bad time",
            format!("{HEAD}    <programme start=\"2026133\" channel=\"a.cn\"><title>x</title></programme>\n</tv>\n"),
            (4, 5, Value),
            "line 4, column 5: programme: start \"2026133\": not a valid XMLTV time",
        ),
        (
            "missing title",
            format!("{HEAD}  <programme start=\"20261201190000\" channel=\"a.cn\">\n    <desc>d</desc>\n  </programme>\n</tv>\n"),
            (4, 3, Structure),
            "line 4, column 3: programme: missing <title>",
        ),
        (
            "empty title",
            format!("{HEAD}  <programme start=\"20261201190000\" channel=\"a.cn\"><title> </title></programme>\n</tv>\n"),
            (4, 3, Structure),
            "programme: missing <title>",
        ),
        (
            "stop before start",
            format!("{HEAD}  <programme start=\"20261201190000 +0800\" stop=\"20261201183000 +0800\" channel=\"a.cn\"><title>x</title></programme>\n</tv>\n"),
            (4, 3, Value),
            "programme: stop \"20261201183000 +0800\" is before start \"20261201190000 +0800\"",
        ),
        (
            "missing start",
            format!("{HEAD}  <programme channel=\"a.cn\"><title>x</title></programme>\n</tv>\n"),
            (4, 3, Structure),
            "programme: missing attribute \"start\"",
        ),
        (
            "unknown channel",
            format!("{HEAD}  <programme start=\"20261201190000\" channel=\"b.cn\"><title>x</title></programme>\n</tv>\n"),
            (4, 3, Structure),
            "programme: channel \"b.cn\" is not one of the document's <channel> ids",
        ),
        (
            "duplicate channel",
            format!("{HEAD}  <channel id=\"a.cn\"><display-name>B</display-name></channel>\n</tv>\n"),
            (4, 3, Structure),
            "channel: id \"a.cn\" is already used by the channel on line 3",
        ),
        (
            "channel without a name",
            "<tv>\n <channel id=\"a.cn\"/>\n</tv>".into(),
            (2, 2, Structure),
            "channel: \"a.cn\" has no display-name",
        ),
        (
            "not XMLTV",
            "<?xml version=\"1.0\"?>\n<html><body>TV</body></html>\n".into(),
            (2, 1, Structure),
            "the root element is <html>, expected <tv>: not an XMLTV document",
        ),
        ("empty", String::new(), (1, 1, Syntax), "empty document"),
        ("blank", " \n\t\n".into(), (1, 1, Syntax), "empty document"),
        (
            "text only",
            "hello".into(),
            (1, 1, Syntax),
            "not well-formed XML",
        ),
        (
            "bad entity",
            "<tv>\n  <channel id=\"a&b\"/>\n</tv>".into(),
            (2, 17, Syntax),
            "not well-formed XML",
        ),
    ];
    for (what, text, (line, column, kind), needle) in cases {
        let (l, c, k, shown) = first(text);
        assert!(shown.contains(needle), "{what}: {shown}");
        assert_eq!((l, c, k), (*line, *column, *kind), "{what}: {shown}");
    }
}

#[test]
fn every_problem_is_listed_up_to_a_limit() {
    let mut text = HEAD.to_owned();
    text.push_str("  <programme start=\"x\" channel=\"a.cn\"><title>1</title></programme>\n");
    text.push_str("  <programme start=\"20261201190000\"><title>2</title></programme>\n");
    text.push_str("  <programme start=\"20261201190000\" stop=\"y\" channel=\"a.cn\"/>\n");
    text.push_str("</tv>\n");
    let e = parse(&text).unwrap_err();
    let shown: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "line 4, column 3: programme: start \"x\": not a valid XMLTV time",
            "line 5, column 3: programme: missing attribute \"channel\"",
            "line 6, column 3: programme: stop \"y\": not a valid XMLTV time",
            "line 6, column 3: programme: missing <title>",
        ]
    );
    let many = format!(
        "<tv>\n{}</tv>\n",
        "<programme channel=\"c\" start=\"0\"><title>t</title></programme>\n".repeat(25)
    );
    let e: XmltvError = parse(&many).unwrap_err();
    assert_eq!(e.problems.len(), MAX_PROBLEMS);
    assert_eq!(e.more, 5);
    assert!(e.to_string().ends_with("\n(and 5 more)"));
}

#[test]
fn binary_garbage_is_an_error() {
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let e = parse_bytes(&garbage).unwrap_err();
    assert_eq!(e.first().kind, ProblemKind::Syntax, "{e}");
    assert!(parse(&String::from_utf8_lossy(&garbage)).is_err());
    assert!(
        parse_bytes(b"\xff\xfe<\0t\0v\0/\0>\0").is_ok(),
        "UTF-16 with a BOM"
    );
    assert!(parse_bytes(b"\0\0\0\0").is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_bytes(&bytes);
    }

    /// Any edit of a valid document is read or refused with a position inside the document.
    #[test]
    fn mutations_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0..4u8, prop::sample::select(vec!["<", ">", "&", "\"", "'", "/", "]]>", "<!--", "中", "\u{0}", " ", "0"])), 1..6)
    ) {
        let mut text = to_xml(&guide());
        for (index, op, piece) in edits {
            let mut at = index.index(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            match op {
                0 => text.insert_str(at, piece),
                1 => {
                    let end = text[at..].chars().next().map_or(at, |c| at + c.len_utf8());
                    text.replace_range(at..end, "");
                }
                2 => text.truncate(at),
                _ => {
                    let end = text[at..].chars().next().map_or(at, |c| at + c.len_utf8());
                    text.replace_range(at..end, piece);
                }
            }
        }
        if let Err(e) = parse(&text) {
            let lines = text.split('\n').count();
            for p in &e.problems {
                prop_assert!(p.line >= 1 && p.line <= lines, "{p} ({lines} lines)");
                prop_assert!(p.column >= 1);
            }
        }
    }

    /// Text without controls round-trips, trimmed (whitespace at the ends is not significant).
    #[test]
    fn text_round_trips(title in "\\PC{1,40}", desc in "[\\PC\n]{0,80}", offset_min in -720i32..=840, secs in 0i64..4_000_000_000) {
        let offset = FixedOffset::east_opt(offset_min / 15 * 15 * 60).unwrap();
        let start = DateTime::<Utc>::from_timestamp(secs, 0).unwrap().with_timezone(&offset);
        prop_assume!(!title.trim().is_empty());
        let g = Guide {
            channels: vec![],
            programmes: vec![Programme {
                channel: "c".into(),
                start,
                stop: None,
                titles: vec![Text::new(None, title.as_str())],
                sub_titles: vec![],
                descs: vec![Text::new(Some("x"), desc.as_str())],
                categories: vec![],
                language: None,
                episode_num: None,
                rating: None,
                urls: vec![],
            }],
        };
        let back = parse(&to_xml(&g)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let p = &back.programmes[0];
        prop_assert_eq!(&p.titles[0].value, title.trim());
        prop_assert_eq!(p.descs.first().map(|d| d.value.as_str()).unwrap_or(""), desc.trim());
        prop_assert_eq!(format_time(p.start), format_time(start));
    }
}

const DAY: &str = r#"date = "2026-12-01"

[[item]]
start = "19:00:00"
file = "news.ts"
title = "placeholder"
language = "zho"

[[item]]
file = "weather.ts"

[[item]]
start = "20:00:00"
file = "film.ts"
title = "Our own film"
description = "Kept as it is"
rating = 15

[[item]]
start = "21:06:00"
file = "late.ts"
"#;

fn utc(s: &str) -> DateTime<Utc> {
    at(s).to_utc()
}

#[test]
fn merge_fills_items_planned_near_a_programme() {
    let mut day = schedule::parse(DAY).unwrap();
    let xml = r#"<tv>
  <programme start="20261201190000 +0800" stop="20261201193000 +0800" channel="cctv1.cn">
    <title lang="en">News</title><title lang="zh">新闻联播</title>
    <desc lang="zh">每晚七点</desc><category lang="zh">新闻</category>
    <language>zh</language><episode-num system="xmltv_ns">1 . 4 . 0/1</episode-num>
    <rating system="US"><value>PG-13</value></rating>
  </programme>
  <programme start="20261201193000 +0800" stop="20261201194000 +0800" channel="cctv1.cn"><title>天气预报</title></programme>
  <programme start="20261201210000 +0800" stop="20261201213000 +0800" channel="cctv1.cn"><title>晚间新闻</title></programme>
  <programme start="20261201230000 +0800" channel="cctv1.cn"><title>Unused</title></programme>
  <programme start="20261201190000 +0800" channel="other.cn"><title>Elsewhere</title></programme>
</tv>"#;
    let guide = parse(xml).unwrap();
    let programmes = guide.programmes_on("cctv1.cn");
    assert_eq!(programmes.len(), 4);
    let s = TimeDelta::seconds(30);
    let planned = [
        (utc("20261201190030 +0800"), utc("20261201192930 +0800")),
        (utc("20261201192930 +0800") - s, utc("20261201193930 +0800")),
        (utc("20261201200000 +0800"), utc("20261201205000 +0800")),
        // 6 minutes late, but most of both overlap.
        (utc("20261201210600 +0800"), utc("20261201213600 +0800")),
    ];
    let report = merge(&mut day.items, &planned, &programmes);
    assert_eq!(report.matched, vec![(0, 0), (1, 1), (3, 2)]);
    assert_eq!(report.unmatched_items, vec![2]);
    assert_eq!(report.unused_programmes, vec![3]);
    let news = &day.items[0].programme;
    assert_eq!(
        news.title.as_deref(),
        Some("新闻联播"),
        "the item's language first"
    );
    assert_eq!(news.description.as_deref(), Some("每晚七点"));
    assert_eq!(news.genre.as_deref(), Some("新闻"));
    assert_eq!(news.rating, 13);
    assert_eq!(news.language.as_deref(), Some("zho"));
    assert_eq!(news.episode.as_deref(), Some("S02E05"));
    assert_eq!(day.items[1].programme.title.as_deref(), Some("天气预报"));
    let film = &day.items[2].programme;
    assert_eq!(film.title.as_deref(), Some("Our own film"));
    assert_eq!(film.description.as_deref(), Some("Kept as it is"));
    assert_eq!(film.rating, 15);
    assert_eq!(day.items[3].programme.title.as_deref(), Some("晚间新闻"));
}

#[test]
fn a_schedule_survives_xmltv_and_merge() {
    let day = schedule::parse(
        r#"date = "2026-12-01"

[[item]]
start = "19:00:00"
file = "news.ts"
title = "新闻联播"
description = "每晚七点 & more"
genre = "news"
rating = 12
language = "zho"
episode = "2026-12-01"

[[item]]
start = "19:30:00"
file = "weather.ts"
"#,
    )
    .unwrap();
    let times = [
        (at("20261201190000 +0800"), at("20261201193000 +0800")),
        (at("20261201193000 +0800"), at("20261201194000 +0800")),
    ];
    let entries = day.items.iter().zip(&times).map(|(item, &(a, b))| {
        let schedule::Source::File { path, .. } = &item.source else {
            unreachable!()
        };
        (a, b, &item.programme, path.as_str())
    });
    let guide = Guide {
        channels: vec![],
        programmes: from_schedule("cctv1.cn", Some("CHN"), entries),
    };
    let xml = to_xml(&guide);
    assert!(
        xml.contains("<rating system=\"CHN\">\n      <value>12+</value>"),
        "{xml}"
    );
    assert!(xml.contains("<title lang=\"zh\">新闻联播</title>"), "{xml}");
    assert!(xml.contains("<episode-num system=\"onscreen\">2026-12-01</episode-num>"));
    assert!(xml.contains("<title>weather.ts</title>"), "{xml}");
    let back = parse(&xml).unwrap();
    let mut blank = day.clone();
    for item in &mut blank.items {
        item.programme = schedule::Programme::default();
    }
    let planned: Vec<_> = times
        .iter()
        .map(|(a, b)| (a.to_utc(), b.to_utc()))
        .collect();
    let report = merge(&mut blank.items, &planned, &back.programmes_on("cctv1.cn"));
    assert_eq!(report.matched, vec![(0, 0), (1, 1)]);
    assert_eq!(blank.items[0].programme, day.items[0].programme);
    assert_eq!(
        blank.items[1].programme.title.as_deref(),
        Some("weather.ts")
    );
}
