//! Text in DVB SI (EN 300 468 Annex A): UTF-8 (selector 0x15), GB 2312 (0x13), the default
//! Latin table (ISO/IEC 6937, no selector: ASCII and accented letters written as a non-spacing
//! diacritic byte before the base letter) and ISO/IEC 8859 parts 1 to 15 (selectors 0x01..0x0B
//! where Table A.3 has one, else 0x10 0x00 N). Text a character set cannot hold is an error
//! naming the character, never replaced; long text is cut on character boundaries.

/// How text is coded in SI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Charset {
    /// UTF-8, selector 0x15 (the default: every script).
    #[default]
    Utf8,
    /// GB 2312-1980, selector 0x13, for set-top boxes that only know it.
    Gb2312,
    /// The default table (ISO/IEC 6937), no selector.
    Latin,
    /// ISO/IEC 8859 part 1..=15 (not 12, which does not exist).
    Iso8859(u8),
}

impl Charset {
    /// The charset a config or CLI names: `utf-8`, `gb2312`, `latin` (or `iso6937`),
    /// `iso-8859-N`.
    pub fn from_name(name: &str) -> Option<Charset> {
        let n = name.to_ascii_lowercase();
        Some(match n.as_str() {
            "utf-8" | "utf8" => Charset::Utf8,
            "gb2312" | "gb-2312" => Charset::Gb2312,
            "latin" | "iso6937" | "iso-6937" => Charset::Latin,
            _ => {
                let part: u8 = n
                    .strip_prefix("iso-8859-")
                    .or_else(|| n.strip_prefix("iso8859-"))?
                    .parse()
                    .ok()?;
                if !(1..=15).contains(&part) || part == 12 {
                    return None;
                }
                Charset::Iso8859(part)
            }
        })
    }

    /// The selector bytes that start a text in this charset.
    pub fn selector(self) -> Vec<u8> {
        match self {
            Charset::Utf8 => vec![0x15],
            Charset::Gb2312 => vec![0x13],
            Charset::Latin => Vec::new(),
            Charset::Iso8859(n @ 5..=11) => vec![n - 4],
            Charset::Iso8859(n @ 13..=15) => vec![n - 4],
            Charset::Iso8859(n) => vec![0x10, 0x00, n],
        }
    }
}

/// Text that cannot be coded in the chosen character set.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{ch}` (at character {index}) cannot be encoded in {charset:?}")]
pub struct TextError {
    /// The character.
    pub ch: char,
    /// Its position in the text (characters).
    pub index: usize,
    /// The character set.
    pub charset: Charset,
}

/// Codes `text` with its selector, at most `max` bytes in all, cut on a character boundary.
/// Text the charset cannot hold is an error, never replaced.
pub fn encode_text(text: &str, charset: Charset, max: usize) -> Result<Vec<u8>, TextError> {
    let mut out = charset.selector();
    for (index, ch) in text.chars().enumerate() {
        let bytes = encode_char(ch, charset).ok_or(TextError { ch, index, charset })?;
        if out.len() + bytes.len() > max {
            break;
        }
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

/// Whether `text` can be coded in `charset` (the first character that cannot, otherwise).
pub fn check_text(text: &str, charset: Charset) -> Result<(), TextError> {
    encode_text(text, charset, usize::MAX).map(|_| ())
}

/// The DVB CR/LF control code (EN 300 468 Annex A): 0x8A in one-byte tables, 0xE08A in
/// two-byte ones, U+E08A in UTF-8.
const CRLF: char = '\u{E08A}';

/// `text` as SI carries it: line breaks as the DVB CR/LF code, other control characters
/// (CR, tabs, C1 controls) left out.
pub fn si_text(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\n' => Some(CRLF),
            '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

fn encode_char(ch: char, charset: Charset) -> Option<Vec<u8>> {
    if ch == '\n' || ch == CRLF {
        return Some(match charset {
            Charset::Utf8 => CRLF.to_string().into_bytes(),
            Charset::Gb2312 => vec![0xE0, 0x8A],
            Charset::Latin | Charset::Iso8859(_) => vec![0x8A],
        });
    }
    if ch.is_control() {
        return Some(Vec::new());
    }
    match charset {
        Charset::Utf8 => Some(ch.to_string().into_bytes()),
        Charset::Gb2312 => gb2312(ch),
        Charset::Latin => iso6937(ch),
        Charset::Iso8859(n) => iso8859(ch, n).map(|b| vec![b]),
    }
}

/// One character in GB 2312: ASCII as is, else two bytes both in 0xA1..=0xFE (what GBK
/// adds beyond GB 2312 is refused).
fn gb2312(ch: char) -> Option<Vec<u8>> {
    if ch.is_ascii() {
        return Some(vec![ch as u8]);
    }
    let mut s = [0u8; 4];
    let (bytes, _, unmappable) = encoding_rs::GBK.encode(ch.encode_utf8(&mut s));
    (!unmappable && bytes.len() == 2 && bytes.iter().all(|b| (0xA1..=0xFE).contains(b)))
        .then(|| bytes.into_owned())
}

/// The WHATWG encoding that agrees with ISO 8859-`n` on 0x00..=0x7F and 0xA0..=0xFF
/// (WHATWG maps the labels of parts 1, 9 and 11 to windows-1252/1254/874, which differ from
/// them only in 0x80..=0x9F: those bytes are never produced or read here).
fn iso8859_encoding(n: u8) -> Option<&'static encoding_rs::Encoding> {
    encoding_rs::Encoding::for_label(format!("iso-8859-{n}").as_bytes())
}

fn iso8859(ch: char, n: u8) -> Option<u8> {
    if (' '..='~').contains(&ch) {
        return Some(ch as u8);
    }
    let mut s = [0u8; 4];
    let (bytes, _, unmappable) = iso8859_encoding(n)?.encode(ch.encode_utf8(&mut s));
    match bytes.as_ref() {
        [b] if !unmappable && *b >= 0xA0 => Some(*b),
        _ => None,
    }
}

/// ISO/IEC 6937 non-spacing diacritics (0xC1..=0xCF) and the letters they combine with.
const DIACRITICS: &[(u8, &str, &str)] = &[
    (0xC1, "AEIOUaeiou", "ÀÈÌÒÙàèìòù"),
    (
        0xC2,
        "ACEILNORSUYZacegilnorsuyz",
        "ÁĆÉÍĹŃÓŔŚÚÝŹáćéģíĺńóŕśúýź",
    ),
    (0xC3, "ACEGHIJOSUWYaceghijosuwy", "ÂĈÊĜĤÎĴÔŜÛŴŶâĉêĝĥîĵôŝûŵŷ"),
    (0xC4, "AINOUainou", "ÃĨÑÕŨãĩñõũ"),
    (0xC5, "AEIOUaeiou", "ĀĒĪŌŪāēīōū"),
    (0xC6, "AGUagu", "ĂĞŬăğŭ"),
    (0xC7, "CEGIZcegz", "ĊĖĠİŻċėġż"),
    (0xC8, "AEIOUYaeiouy", "ÄËÏÖÜŸäëïöüÿ"),
    (0xCA, "AUau", "ÅŮåů"),
    (0xCB, "CGKLNRSTcklnrst", "ÇĢĶĻŅŖŞŢçķļņŗşţ"),
    (0xCD, "OUou", "ŐŰőű"),
    (0xCE, "AEIUaeiu", "ĄĘĮŲąęįų"),
    (0xCF, "CDELNRSTZcdelnrstz", "ČĎĚĽŇŘŠŤŽčďěľňřšťž"),
];

/// ISO/IEC 6937 single-byte characters beyond ASCII.
const LATIN_SPECIALS: &[(u8, char)] = &[
    (0xA1, '¡'),
    (0xA2, '¢'),
    (0xA3, '£'),
    (0xA5, '¥'),
    (0xA7, '§'),
    (0xA9, '‘'),
    (0xAA, '“'),
    (0xAB, '«'),
    (0xB0, '°'),
    (0xB1, '±'),
    (0xB2, '²'),
    (0xB3, '³'),
    (0xB4, '×'),
    (0xB5, 'µ'),
    (0xB6, '¶'),
    (0xB7, '·'),
    (0xB8, '÷'),
    (0xB9, '’'),
    (0xBA, '”'),
    (0xBB, '»'),
    (0xBC, '¼'),
    (0xBD, '½'),
    (0xBE, '¾'),
    (0xBF, '¿'),
    (0xD2, '®'),
    (0xD3, '©'),
    (0xD4, '™'),
    (0xE1, 'Æ'),
    (0xE2, 'Đ'),
    (0xE8, 'Ł'),
    (0xE9, 'Ø'),
    (0xEA, 'Œ'),
    (0xEC, 'Þ'),
    (0xF1, 'æ'),
    (0xF2, 'đ'),
    (0xF5, 'ı'),
    (0xF8, 'ł'),
    (0xF9, 'ø'),
    (0xFA, 'œ'),
    (0xFB, 'ß'),
    (0xFC, 'þ'),
];

fn iso6937(ch: char) -> Option<Vec<u8>> {
    if (' '..='~').contains(&ch) {
        return Some(vec![ch as u8]);
    }
    if let Some((b, _)) = LATIN_SPECIALS.iter().find(|(_, c)| *c == ch) {
        return Some(vec![*b]);
    }
    DIACRITICS.iter().find_map(|(mark, bases, composed)| {
        let k = composed.chars().position(|c| c == ch)?;
        let base = bases.chars().nth(k)?;
        Some(vec![*mark, base as u8])
    })
}

fn iso6937_decode(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        if (0xC1..=0xCF).contains(&b) {
            let base = bytes.get(i).copied().unwrap_or(b' ') as char;
            i += 1;
            let composed = DIACRITICS
                .iter()
                .find(|(m, _, _)| *m == b)
                .and_then(|(_, bases, c)| {
                    let k = bases.chars().position(|x| x == base)?;
                    c.chars().nth(k)
                });
            out.push(composed.unwrap_or(base));
        } else if let Some((_, c)) = LATIN_SPECIALS.iter().find(|(x, _)| *x == b) {
            out.push(*c);
        } else if (0x20..0x7F).contains(&b) {
            out.push(b as char);
        } else if b == 0x8A {
            out.push('\n'); // CR/LF control code
        }
    }
    out
}

/// Decodes SI text (any selector this module writes; UTF-8 for unknown ones); the CR/LF
/// control code becomes a line break, other control codes are left out.
pub fn decode_text(bytes: &[u8]) -> String {
    let iso = |n: u8, rest: &[u8]| -> String {
        let mut out = String::new();
        // 0x80..=0x9F are DVB control codes, not letters of any 8859 part.
        for run in rest.split_inclusive(|b| (0x80..=0x9F).contains(b)) {
            let (text, control) = match run.split_last() {
                Some((&c, text)) if (0x80..=0x9F).contains(&c) => (text, Some(c)),
                _ => (run, None),
            };
            match iso8859_encoding(n) {
                Some(enc) => out.push_str(&enc.decode_without_bom_handling(text).0),
                None => out.push_str(&String::from_utf8_lossy(text)),
            }
            if control == Some(0x8A) {
                out.push('\n');
            }
        }
        out
    };
    match bytes.first() {
        None => String::new(),
        Some(0x15) => String::from_utf8_lossy(&bytes[1..]).replace(CRLF, "\n"),
        Some(0x13) => encoding_rs::GBK
            .decode_without_bom_handling(&bytes[1..])
            .0
            .into_owned(),
        Some(&s @ 0x01..=0x0B) => iso(s + 4, &bytes[1..]),
        Some(0x10) if bytes.len() >= 3 => iso(bytes[2], &bytes[3..]),
        Some(0x00..=0x1F) => String::from_utf8_lossy(&bytes[1..]).into_owned(),
        Some(_) => iso6937_decode(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_charset_round_trips_what_it_holds() {
        let cases: &[(Charset, &str, &[u8])] = &[
            (Charset::Utf8, "新闻 News", &[0x15]),
            (Charset::Gb2312, "新闻 News", &[0x13]),
            (Charset::Latin, "Ça déménage, Straße Øst ¿qué?", &[]),
            (Charset::Iso8859(1), "Ça déménage ½", &[0x10, 0x00, 0x01]),
            (Charset::Iso8859(2), "Żółć", &[0x10, 0x00, 0x02]),
            (Charset::Iso8859(5), "Новости", &[0x01]),
            (Charset::Iso8859(7), "Ειδήσεις", &[0x03]),
            (Charset::Iso8859(9), "Haberler ğışİ", &[0x05]),
            (Charset::Iso8859(15), "Prix 5 €", &[0x0B]),
        ];
        for (cs, text, selector) in cases {
            let b = encode_text(text, *cs, 255).unwrap();
            assert!(b.starts_with(selector), "{cs:?}: {b:02x?}");
            assert_eq!(decode_text(&b), *text, "{cs:?}");
        }
        assert_eq!(
            encode_text("é", Charset::Latin, 255).unwrap(),
            [0xC2, b'e'],
            "ISO 6937: diacritic first"
        );
    }

    #[test]
    fn what_a_charset_cannot_hold_is_refused() {
        let err = encode_text("News 新闻", Charset::Latin, 255).unwrap_err();
        assert_eq!((err.ch, err.index), ('新', 5));
        assert!(encode_text("Новости", Charset::Iso8859(1), 255).is_err());
        assert!(
            encode_text("€", Charset::Iso8859(1), 255).is_err(),
            "not in 8859-1"
        );
        assert_eq!(
            encode_text("\u{85}", Charset::Iso8859(1), 255).unwrap(),
            [0x10, 0x00, 0x01],
            "a C1 control is left out, never sent as a letter"
        );
        assert!(
            encode_text("新𠀀", Charset::Gb2312, 255).is_err(),
            "beyond GB 2312"
        );
        assert!(check_text("Ελλάδα", Charset::Iso8859(7)).is_ok());
    }

    #[test]
    fn long_text_is_cut_on_character_boundaries() {
        let cut = encode_text("一二三四五", Charset::Utf8, 10).unwrap();
        assert_eq!(decode_text(&cut), "一二三");
        // ISO 6937: an accented letter is two bytes, never split.
        let cut = encode_text("aéé", Charset::Latin, 4).unwrap();
        assert_eq!(decode_text(&cut), "aé");
    }

    #[test]
    fn line_breaks_become_the_dvb_code_and_controls_are_left_out() {
        let text = si_text("Line 1\r\nLine 2\tend\u{85}");
        assert_eq!(text, "Line 1\u{E08A}Line 2 end");
        assert_eq!(
            encode_text(&text, Charset::Latin, 255).unwrap(),
            b"Line 1\x8aLine 2 end"
        );
        for cs in [Charset::Utf8, Charset::Latin, Charset::Iso8859(5)] {
            let b = encode_text("a\nb", cs, 255).unwrap();
            assert_eq!(decode_text(&b), "a\nb", "{cs:?}");
        }
        assert_eq!(
            encode_text("新\n闻", Charset::Gb2312, 255).unwrap(),
            [0x13, 0xD0, 0xC2, 0xE0, 0x8A, 0xCE, 0xC5]
        );
        assert_eq!(
            encode_text("“©½”", Charset::Latin, 255).unwrap(),
            [0xAA, 0xD3, 0xBD, 0xBA]
        );
    }

    #[test]
    fn names() {
        assert_eq!(Charset::from_name("UTF-8"), Some(Charset::Utf8));
        assert_eq!(
            Charset::from_name("iso-8859-15"),
            Some(Charset::Iso8859(15))
        );
        assert_eq!(Charset::from_name("iso-8859-12"), None);
        assert_eq!(Charset::from_name("iso6937"), Some(Charset::Latin));
        assert_eq!(Charset::from_name("big5"), None);
    }

    #[test]
    fn decoding_garbage_never_panics() {
        for b in [
            &[0x10][..],
            &[0x10, 0x00],
            &[0xC2],
            &[0x01, 0xFF],
            &[0x1F, 0x80],
        ] {
            let _ = decode_text(b);
        }
    }
}
