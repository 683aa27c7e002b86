//! The XMLTV writer: [`to_xml`] and the time format.

use chrono::{DateTime, FixedOffset};

use super::Guide;

/// The document: UTF-8, with the DOCTYPE, elements in the DTD's order, text escaped, characters
/// XML 1.0 forbids (and the C1 controls it discourages) left out, line breaks in one-line
/// elements (all but `desc`) turned into spaces, empty texts left out. A programme without a
/// non-empty title gets an empty `<title>`, which readers reject: give it one.
pub fn to_xml(guide: &Guide) -> String {
    let mut out =
        String::with_capacity(160 + 120 * guide.channels.len() + 400 * guide.programmes.len());
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str("<!DOCTYPE tv SYSTEM \"xmltv.dtd\">\n");
    out.push_str("<tv generator-info-name=\"headend\">\n");
    for c in &guide.channels {
        out.push_str("  <channel");
        attributes(&mut out, &[("id", Some(&c.id))]);
        out.push_str(">\n");
        let mut named = false;
        for n in &c.display_names {
            named |= element(&mut out, "display-name", n.lang.as_deref(), &n.value, true);
        }
        if !named {
            element(&mut out, "display-name", None, &c.id, true);
        }
        if let Some(lcn) = c.lcn {
            element(&mut out, "display-name", None, &lcn.to_string(), true);
        }
        if let Some(icon) = &c.icon {
            out.push_str("    <icon");
            attributes(&mut out, &[("src", Some(icon))]);
            out.push_str("/>\n");
        }
        out.push_str("  </channel>\n");
    }
    for p in &guide.programmes {
        let stop = p.stop.map(format_time);
        out.push_str("  <programme");
        attributes(
            &mut out,
            &[
                ("start", Some(&format_time(p.start))),
                ("stop", stop.as_deref()),
                ("channel", Some(&p.channel)),
            ],
        );
        out.push_str(">\n");
        let mut titled = false;
        for t in &p.titles {
            titled |= element(&mut out, "title", t.lang.as_deref(), &t.value, true);
        }
        if !titled {
            out.push_str("    <title></title>\n");
        }
        for (name, texts, one_line) in [
            ("sub-title", &p.sub_titles, true),
            ("desc", &p.descs, false),
            ("category", &p.categories, true),
        ] {
            for t in texts {
                element(&mut out, name, t.lang.as_deref(), &t.value, one_line);
            }
        }
        if let Some(l) = &p.language {
            element(&mut out, "language", None, l, true);
        }
        for u in &p.urls {
            out_element(
                &mut out,
                "url",
                &[("system", u.system.as_deref())],
                &u.value,
            );
        }
        if let Some(e) = &p.episode_num {
            let system = Some(e.system.as_str()).filter(|s| !s.is_empty());
            out_element(&mut out, "episode-num", &[("system", system)], &e.value);
        }
        if let Some(r) = &p.rating {
            let value = clean(&r.value, true);
            if !value.is_empty() {
                out.push_str("    <rating");
                attributes(&mut out, &[("system", r.system.as_deref())]);
                out.push_str(">\n      <value>");
                escape_into(&mut out, &value);
                out.push_str("</value>\n    </rating>\n");
            }
        }
        out.push_str("  </programme>\n");
    }
    out.push_str("</tv>\n");
    out
}

/// `YYYYMMDDhhmmss +hhmm`, in the time's own offset.
pub fn format_time(t: DateTime<FixedOffset>) -> String {
    t.format("%Y%m%d%H%M%S %z").to_string()
}

/// Writes `<name lang="..">value</name>` indented by four; nothing (and `false`) if the value
/// is empty once cleaned.
fn element(out: &mut String, name: &str, lang: Option<&str>, value: &str, one_line: bool) -> bool {
    let value = clean(value, one_line);
    if value.is_empty() {
        return false;
    }
    out.push_str("    <");
    out.push_str(name);
    attributes(out, &[("lang", lang)]);
    out.push('>');
    escape_into(out, &value);
    out.push_str("</");
    out.push_str(name);
    out.push_str(">\n");
    true
}

/// [`element`] with other attributes, one line.
fn out_element(out: &mut String, name: &str, attrs: &[(&str, Option<&str>)], value: &str) {
    let value = clean(value, true);
    if value.is_empty() {
        return;
    }
    out.push_str("    <");
    out.push_str(name);
    attributes(out, attrs);
    out.push('>');
    escape_into(out, &value);
    out.push_str("</");
    out.push_str(name);
    out.push_str(">\n");
}

/// ` name="value"` for each present value; line breaks and tabs as character references so
/// that attribute normalisation keeps them.
fn attributes(out: &mut String, attrs: &[(&str, Option<&str>)]) {
    for (name, value) in attrs {
        let Some(value) = value else { continue };
        out.push(' ');
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars().filter(|&c| xml_char(c)) {
            match c {
                '\t' => out.push_str("&#9;"),
                '\n' => out.push_str("&#10;"),
                '\r' => out.push_str("&#13;"),
                c => escape_char(out, c),
            }
        }
        out.push('"');
    }
}

/// The text without characters XML 1.0 forbids or discourages, trimmed; in one line (breaks and
/// tabs as spaces) or with `\n` line breaks.
fn clean(value: &str, one_line: bool) -> String {
    let mut s = String::with_capacity(value.len());
    let mut chars = value.chars().filter(|&c| xml_char(c)).peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if !one_line => {
                if chars.peek() != Some(&'\n') {
                    s.push('\n');
                }
            }
            '\t' | '\n' | '\r' if one_line => s.push(' '),
            c => s.push(c),
        }
    }
    let trimmed = s.trim();
    if trimmed.len() == s.len() {
        s
    } else {
        trimmed.to_owned()
    }
}

/// A character XML 1.0 allows (§2.2 Char) and does not discourage as a control (C1, DEL).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}')
        || c >= '\u{10000}'
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        escape_char(out, c);
    }
}

fn escape_char(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&apos;"),
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_cleaned() {
        assert_eq!(clean("  a\u{1}b\u{85}c\u{7f}\u{fffe}  ", true), "abc");
        assert_eq!(clean("x\r\ny\rz\tw", true), "x  y z w");
        assert_eq!(clean("x\r\ny\rz", false), "x\ny\nz");
        let mut out = String::new();
        escape_into(&mut out, "<a href=\"x\">'&'</a>");
        assert_eq!(
            out,
            "&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;"
        );
        let mut out = String::new();
        attributes(&mut out, &[("id", Some("a\tb\nc\u{0}&")), ("lang", None)]);
        assert_eq!(out, " id=\"a&#9;b&#10;c&amp;\"");
    }
}
