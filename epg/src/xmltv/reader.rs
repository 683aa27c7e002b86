//! The XMLTV reader: [`parse`], [`parse_bytes`] and [`parse_time`], over `roxmltree`.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};

use super::{
    Channel, EpisodeNum, Guide, Problem, ProblemKind, Programme, Rating, Text, Url, XmltvError,
    MAX_PROBLEMS,
};

/// Reads an XMLTV document; nothing unless all of it is right.
///
/// Refused, with every problem located (line and column of the element, the attribute named):
/// XML that is not well-formed (the first error only), a root other than `<tv>`, a channel
/// without `id` or `display-name`, two channels with one id, a programme without `channel`,
/// `start` or a non-empty `title`, a time [`parse_time`] does not take, a stop before the start,
/// and, when the document lists channels, a programme on a channel it does not list (without
/// `<channel>` elements any channel id is taken). Unknown elements are skipped (the DTD has
/// more than the model holds).
pub fn parse(text: &str) -> Result<Guide, XmltvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut report = Report::new(text);
    if text.trim().is_empty() {
        report.push(
            0,
            ProblemKind::Syntax,
            None,
            "empty document: expected an XMLTV <tv> element".into(),
        );
        return Err(report.into_error());
    }
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = match roxmltree::Document::parse_with_options(text, options) {
        Ok(doc) => doc,
        Err(e) => return Err(syntax_error(text, &e)),
    };
    let root = doc.root_element();
    if root.tag_name().name() != "tv" {
        report.push(
            root.range().start,
            ProblemKind::Structure,
            None,
            format!(
                "the root element is <{}>, expected <tv>: not an XMLTV document",
                root.tag_name().name()
            ),
        );
        return Err(report.into_error());
    }
    let mut guide = Guide::default();
    // Channel id → byte offset of its element.
    let mut ids: HashMap<String, usize> = HashMap::new();
    for node in root.children().filter(|n| n.has_tag_name("channel")) {
        if let Some(c) = read_channel(node, &mut report) {
            if let Some(&first) = ids.get(&c.id) {
                let message = format!(
                    "id {:?} is already used by the channel on line {}",
                    c.id,
                    report.line_of(first)
                );
                report.push(
                    node.range().start,
                    ProblemKind::Structure,
                    Some("channel"),
                    message,
                );
            } else {
                ids.insert(c.id.clone(), node.range().start);
                guide.channels.push(c);
            }
        }
    }
    for node in root.children().filter(|n| n.has_tag_name("programme")) {
        if let Some(p) = read_programme(node, &ids, &mut report) {
            guide.programmes.push(p);
        }
    }
    if report.problems.is_empty() {
        Ok(guide)
    } else {
        Err(report.into_error())
    }
}

/// Reads an XMLTV document from bytes in its own encoding: the byte-order mark's, else the XML
/// declaration's (`encoding="ISO-8859-1"`, as many grabbers write), else UTF-8. Bytes that are
/// not text in that encoding are an error at their line and column; then as [`parse`].
pub fn parse_bytes(bytes: &[u8]) -> Result<Guide, XmltvError> {
    let (encoding, body) = match encoding_rs::Encoding::for_bom(bytes) {
        Some((encoding, bom)) => (encoding, &bytes[bom..]),
        None => match declared_encoding(bytes) {
            Ok(encoding) => (encoding, bytes),
            Err(label) => {
                let mut report = Report::new("");
                let message = format!("unknown encoding {label:?} in the XML declaration");
                report.push(0, ProblemKind::Syntax, None, message);
                return Err(report.into_error());
            }
        },
    };
    let text: Cow<'_, str> = if encoding == encoding_rs::UTF_8 {
        match std::str::from_utf8(body) {
            Ok(s) => Cow::Borrowed(s),
            Err(e) => {
                let valid = &body[..e.valid_up_to()];
                // Invariant: the bytes before valid_up_to() are valid UTF-8.
                let valid = std::str::from_utf8(valid).expect("valid prefix");
                let mut report = Report::new(valid);
                let message = format!("byte {:#04x} is not UTF-8", body[e.valid_up_to()]);
                report.push(valid.len(), ProblemKind::Syntax, None, message);
                return Err(report.into_error());
            }
        }
    } else {
        let (text, malformed) = encoding.decode_without_bom_handling(body);
        if malformed {
            let at = text.find('\u{fffd}').unwrap_or(0);
            let mut report = Report::new(&text);
            let message = format!("bytes that are not {}", encoding.name());
            report.push(at, ProblemKind::Syntax, None, message);
            return Err(report.into_error());
        }
        text
    };
    parse(&text)
}

/// An XMLTV time: `YYYYMMDDhhmmss`, or the shorter `YYYYMMDDhhmm`, `YYYYMMDDhh`, `YYYYMMDD`
/// (the rest is 0), then an optional zone: `+hhmm`, `-hhmm`, `+hh:mm`, `UTC`, `GMT` or `Z`,
/// with or without a space before it; none is UTC. `None` if it is not one.
pub fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    let s = s.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if !matches!(digits, 8 | 10 | 12 | 14) {
        return None;
    }
    let (num, zone) = s.split_at(digits);
    let field = |i: usize| num.get(i..i + 2).map_or(Some(0), |f| f.parse::<u32>().ok());
    let year: i32 = num[..4].parse().ok()?;
    let date = NaiveDate::from_ymd_opt(year, field(4)?, field(6)?)?;
    let local = date.and_hms_opt(field(8)?, field(10)?, field(12)?)?;
    let offset = parse_zone(zone.trim_start())?;
    offset.from_local_datetime(&local).single()
}

/// Problems as they are found, located in `text`.
struct Report<'t> {
    text: &'t str,
    problems: Vec<Problem>,
    more: usize,
}

impl<'t> Report<'t> {
    fn new(text: &'t str) -> Report<'t> {
        Report {
            text,
            problems: Vec::new(),
            more: 0,
        }
    }

    /// Records a problem at byte offset `at` of the text.
    fn push(&mut self, at: usize, kind: ProblemKind, element: Option<&str>, message: String) {
        if self.problems.len() >= MAX_PROBLEMS {
            self.more += 1;
            return;
        }
        let (line, column) = position(self.text, at);
        self.problems.push(Problem {
            line,
            column,
            kind,
            element: element.map(str::to_owned),
            message,
        });
    }

    fn line_of(&self, at: usize) -> usize {
        position(self.text, at).0
    }

    fn into_error(self) -> XmltvError {
        XmltvError {
            problems: self.problems,
            more: self.more,
        }
    }
}

/// Line and column (from 1, columns in characters) of byte offset `at`.
fn position(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    (line, before[line_start..].chars().count() + 1)
}

fn syntax_error(text: &str, e: &roxmltree::Error) -> XmltvError {
    use roxmltree::Error as E;
    let pos = e.pos();
    let (line, column, message) = match e {
        E::UnclosedRootNode | E::UnexpectedEndOfStream => {
            let (line, column) = position(text, text.len());
            (
                line,
                column,
                "the document ends inside an element (an unclosed tag?)".to_owned(),
            )
        }
        E::UnexpectedCloseTag(expected, actual, _) => (
            pos.row as usize,
            pos.col as usize,
            format!("</{actual}> does not close <{expected}> (an unclosed tag?)"),
        ),
        E::NoRootNode => (
            1,
            1,
            "no root element: expected an XMLTV <tv> element".to_owned(),
        ),
        _ => {
            // roxmltree puts the position at the end of its messages; it is ours to place.
            let message = e.to_string();
            let message = message
                .strip_suffix(&format!(" at {pos}"))
                .unwrap_or(&message)
                .to_owned();
            (pos.row as usize, pos.col as usize, message)
        }
    };
    XmltvError {
        problems: vec![Problem {
            line,
            column,
            kind: ProblemKind::Syntax,
            element: None,
            message: format!("not well-formed XML: {message}"),
        }],
        more: 0,
    }
}

fn declared_encoding(bytes: &[u8]) -> Result<&'static encoding_rs::Encoding, String> {
    let head = &bytes[..bytes.len().min(200)];
    let Some(end) = head
        .strip_prefix(b"<?xml")
        .and_then(|h| h.windows(2).position(|w| w == b"?>"))
    else {
        return Ok(encoding_rs::UTF_8);
    };
    let decl = String::from_utf8_lossy(&head[5..5 + end]);
    let Some(rest) = decl.split_once("encoding").map(|(_, r)| r.trim_start()) else {
        return Ok(encoding_rs::UTF_8);
    };
    let Some(rest) = rest.strip_prefix('=').map(str::trim_start) else {
        return Ok(encoding_rs::UTF_8);
    };
    let label = rest
        .strip_prefix(['"', '\''])
        .and_then(|r| r.split(['"', '\'']).next())
        .unwrap_or("");
    match encoding_rs::Encoding::for_label(label.as_bytes()) {
        // The declaration was read as ASCII, so a UTF-16 label there is wrong: UTF-8 it is.
        Some(encoding) => Ok(encoding.output_encoding()),
        None => Err(label.to_owned()),
    }
}

/// The text of an element (CDATA included), trimmed.
fn text_of(node: roxmltree::Node<'_, '_>) -> String {
    let s: String = node
        .children()
        .filter(|c| c.is_text())
        .filter_map(|c| c.text())
        .collect();
    let trimmed = s.trim();
    if trimmed.len() == s.len() {
        s
    } else {
        trimmed.to_owned()
    }
}

/// The element's `lang` and text; `None` if the text is empty.
fn lang_text(node: roxmltree::Node<'_, '_>) -> Option<Text> {
    let value = text_of(node);
    let lang = node
        .attribute("lang")
        .map(str::trim)
        .filter(|l| !l.is_empty());
    (!value.is_empty()).then(|| Text::new(lang, value))
}

fn read_channel(node: roxmltree::Node<'_, '_>, report: &mut Report<'_>) -> Option<Channel> {
    let at = node.range().start;
    let id = match node.attribute("id").map(str::trim) {
        Some(id) if !id.is_empty() => id.to_owned(),
        found => {
            let message = match found {
                Some(_) => "attribute \"id\" is empty",
                None => "missing attribute \"id\"",
            };
            report.push(
                at,
                ProblemKind::Structure,
                Some("channel"),
                message.to_owned(),
            );
            return None;
        }
    };
    let mut channel = Channel {
        id,
        display_names: Vec::new(),
        lcn: None,
        icon: None,
    };
    let mut ok = true;
    for child in node.children().filter(roxmltree::Node::is_element) {
        match child.tag_name().name() {
            "display-name" => {
                let Some(t) = lang_text(child) else { continue };
                let number = t
                    .value
                    .parse::<u16>()
                    .ok()
                    .filter(|_| t.value.bytes().all(|b| b.is_ascii_digit()));
                match number {
                    Some(n)
                        if !channel.display_names.is_empty()
                            && t.lang.is_none()
                            && channel.lcn.is_none() =>
                    {
                        channel.lcn = Some(n);
                    }
                    _ => channel.display_names.push(t),
                }
            }
            "lcn" => {
                let value = text_of(child);
                match value.parse::<u16>() {
                    Ok(n) => channel.lcn = Some(n),
                    Err(_) => {
                        let message = format!("lcn {value:?}: not a channel number 0..=65535");
                        report.push(
                            child.range().start,
                            ProblemKind::Value,
                            Some("channel"),
                            message,
                        );
                        ok = false;
                    }
                }
            }
            "icon" if channel.icon.is_none() => {
                channel.icon = child
                    .attribute("src")
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty());
            }
            _ => {}
        }
    }
    if channel.display_names.is_empty() {
        let message = format!("{:?} has no display-name", channel.id);
        report.push(at, ProblemKind::Structure, Some("channel"), message);
        ok = false;
    }
    ok.then_some(channel)
}

fn read_programme(
    node: roxmltree::Node<'_, '_>,
    channels: &HashMap<String, usize>,
    report: &mut Report<'_>,
) -> Option<Programme> {
    let at = node.range().start;
    let before = report.problems.len() + report.more;
    let mut fail =
        |kind: ProblemKind, message: String| report.push(at, kind, Some("programme"), message);
    let mut required = |name: &str| match node.attribute(name).map(str::trim) {
        Some(v) if !v.is_empty() => Some(v),
        Some(_) => {
            fail(
                ProblemKind::Structure,
                format!("attribute {name:?} is empty"),
            );
            None
        }
        None => {
            fail(
                ProblemKind::Structure,
                format!("missing attribute {name:?}"),
            );
            None
        }
    };
    let channel = required("channel");
    let start_text = required("start");
    let mut time = |name: &str, value: Option<&str>| {
        let value = value?;
        let t = parse_time(value);
        if t.is_none() {
            fail(
                ProblemKind::Value,
                format!("{name} {value:?}: not a valid XMLTV time"),
            );
        }
        t
    };
    let start = time("start", start_text);
    let stop_text = node
        .attribute("stop")
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let stop = time("stop", stop_text);
    if let (Some(c), false) = (channel, channels.is_empty()) {
        if !channels.contains_key(c) {
            fail(
                ProblemKind::Structure,
                format!("channel {c:?} is not one of the document's <channel> ids"),
            );
        }
    }
    if let (Some(a), Some(b)) = (start, stop) {
        if b < a {
            let message = format!(
                "stop {:?} is before start {:?}",
                stop_text.unwrap_or_default(),
                start_text.unwrap_or_default()
            );
            fail(ProblemKind::Value, message);
        }
    }
    let mut p = Programme {
        channel: channel.unwrap_or_default().to_owned(),
        start: start.unwrap_or_default(),
        stop,
        titles: Vec::new(),
        sub_titles: Vec::new(),
        descs: Vec::new(),
        categories: Vec::new(),
        language: None,
        episode_num: None,
        rating: None,
        urls: Vec::new(),
    };
    for child in node.children().filter(roxmltree::Node::is_element) {
        match child.tag_name().name() {
            "title" => p.titles.extend(lang_text(child)),
            "sub-title" => p.sub_titles.extend(lang_text(child)),
            "desc" => p.descs.extend(lang_text(child)),
            "category" => p.categories.extend(lang_text(child)),
            "language" if p.language.is_none() => {
                p.language = Some(text_of(child)).filter(|l| !l.is_empty());
            }
            "url" => {
                let value = text_of(child);
                if !value.is_empty() {
                    let system = child
                        .attribute("system")
                        .map(str::trim)
                        .filter(|s| !s.is_empty());
                    p.urls.push(Url {
                        system: system.map(str::to_owned),
                        value,
                    });
                }
            }
            "episode-num" => {
                let value = text_of(child);
                let system = child.attribute("system").map_or("onscreen", str::trim);
                let better = p
                    .episode_num
                    .as_ref()
                    .is_none_or(|e| e.system != "onscreen" && system == "onscreen");
                if !value.is_empty() && better {
                    p.episode_num = Some(EpisodeNum {
                        system: system.to_owned(),
                        value,
                    });
                }
            }
            "rating" if p.rating.is_none() => {
                let value = child
                    .children()
                    .find(|c| c.has_tag_name("value"))
                    .map(text_of)
                    .unwrap_or_default();
                if value.is_empty() {
                    let message = "rating has no <value>".to_owned();
                    report.push(
                        child.range().start,
                        ProblemKind::Structure,
                        Some("programme"),
                        message,
                    );
                } else {
                    let system = child
                        .attribute("system")
                        .map(str::trim)
                        .filter(|s| !s.is_empty());
                    p.rating = Some(Rating {
                        system: system.map(str::to_owned),
                        value,
                    });
                }
            }
            _ => {}
        }
    }
    if p.titles.is_empty() {
        report.push(
            at,
            ProblemKind::Structure,
            Some("programme"),
            "missing <title>".to_owned(),
        );
    }
    (report.problems.len() + report.more == before).then_some(p)
}

fn parse_zone(zone: &str) -> Option<FixedOffset> {
    if zone.is_empty() || matches!(zone, "UTC" | "GMT" | "Z") {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match zone.split_at_checked(1)? {
        ("+", rest) => (1, rest),
        ("-", rest) => (-1, rest),
        _ => return None,
    };
    let (hh, mm) = match rest.len() {
        4 => (rest.get(..2)?, rest.get(2..)?),
        5 if rest.as_bytes()[2] == b':' => (rest.get(..2)?, rest.get(3..)?),
        _ => return None,
    };
    if !(hh.bytes().chain(mm.bytes()).all(|b| b.is_ascii_digit())) {
        return None;
    }
    let (h, m): (i32, i32) = (hh.parse().ok()?, mm.parse().ok()?);
    if h > 23 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmltv::format_time;

    fn at(s: &str) -> DateTime<FixedOffset> {
        parse_time(s).unwrap()
    }

    #[test]
    fn times_in_every_form_the_dtd_allows() {
        let full = at("20261201190000 +0800");
        assert_eq!(full.to_rfc3339(), "2026-12-01T19:00:00+08:00");
        assert_eq!(format_time(full), "20261201190000 +0800");
        assert_eq!(at("20261201190000+0800"), full);
        assert_eq!(at("20261201190000 +08:00"), full);
        assert_eq!(at("202612011100").to_rfc3339(), "2026-12-01T11:00:00+00:00");
        assert_eq!(at("2026120111 UTC"), at("20261201110000 +0000"));
        assert_eq!(at("20261201").to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(
            at("20261201000000 -0330").to_rfc3339(),
            "2026-12-01T00:00:00-03:30"
        );
        for bad in [
            "",
            "2026133",
            "202612",
            "20261301000000",
            "20261201250000",
            "20261201190000 +2400",
            "20261201190000 BST",
            "20261201190000 +08",
            "2026120119000 +0800",
            "20261201190000 0800",
            "２０２６１２０１",
            "20261201190000 +08:0",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }
    #[test]
    fn positions_count_characters() {
        let text = "ab\n中文x\n";
        assert_eq!(position(text, 0), (1, 1));
        assert_eq!(position(text, 3), (2, 1));
        assert_eq!(position(text, "ab\n中文".len()), (2, 3));
        assert_eq!(position(text, 4), (2, 1), "inside a character: its start");
        assert_eq!(position(text, 99), (3, 1));
    }
    #[test]
    fn encodings_from_the_declaration() {
        let latin = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<tv><channel id=\"a.de\"><display-name>M\xfcnchen</display-name></channel></tv>";
        let guide = parse_bytes(latin).unwrap();
        assert_eq!(guide.channels[0].display_names[0].value, "München");
        let err = parse_bytes(b"<tv>\n  <x>\xff</x></tv>").unwrap_err();
        assert_eq!((err.first().line, err.first().column), (2, 6), "{err}");
        let err = parse_bytes(b"<?xml version='1.0' encoding='klingon'?><tv/>").unwrap_err();
        assert!(
            err.to_string().contains("unknown encoding \"klingon\""),
            "{err}"
        );
    }
}
