//! The CAP element tree that both syntaxes are read into, and its validation into the model
//! (OASIS CAP v1.2 §3.2; the rules are listed in the [module docs](super)).

use base64::Engine as _;
use chrono::{DateTime, FixedOffset};

use super::{
    parse_time, Alert, AlertError, Area, Category, Certainty, Info, Location, MsgType, Reference,
    Resource, ResponseType, Scope, Severity, Status, Urgency,
};

/// One element: its local name, its text (trimmed) and its child elements.
pub(super) struct Element {
    pub(super) name: String,
    pub(super) text: String,
    pub(super) children: Vec<Element>,
    pub(super) at: Location,
}

/// Which syntax the tree came from: JSON has a top-level `level`, CAP has not.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Syntax {
    Xml,
    Json,
}

/// (element name, may repeat) in the order CAP 1.2 §3.2 lists them.
type Spec = &'static [(&'static str, bool)];

const ALERT: Spec = &[
    ("identifier", false),
    ("sender", false),
    ("sent", false),
    ("status", false),
    ("msgType", false),
    ("source", false),
    ("scope", false),
    ("restriction", false),
    ("addresses", false),
    ("code", true),
    ("note", false),
    ("references", false),
    ("incidents", false),
    ("info", true),
    ("level", false),
];
const INFO: Spec = &[
    ("language", false),
    ("category", true),
    ("event", false),
    ("responseType", true),
    ("urgency", false),
    ("severity", false),
    ("certainty", false),
    ("audience", false),
    ("eventCode", true),
    ("effective", false),
    ("onset", false),
    ("expires", false),
    ("senderName", false),
    ("headline", false),
    ("description", false),
    ("instruction", false),
    ("web", false),
    ("contact", false),
    ("parameter", true),
    ("resource", true),
    ("area", true),
];
const RESOURCE: Spec = &[
    ("resourceDesc", false),
    ("mimeType", false),
    ("size", false),
    ("uri", false),
    ("derefUri", false),
    ("digest", false),
];
const AREA: Spec = &[
    ("areaDesc", false),
    ("polygon", true),
    ("circle", true),
    ("geocode", true),
    ("altitude", false),
    ("ceiling", false),
];
const PAIR: Spec = &[("valueName", false), ("value", false)];

const NON_EMPTY: &str = "non-empty text";
const ID_TEXT: &str = "non-empty text without spaces, commas, < or &";
const DATE_TIME: &str = "a dateTime like 2003-04-02T14:39:01-05:00";
const REFERENCES: &str = "space-separated sender,identifier,sent triples";
const LEVEL: &str = "a level from 1 to 4";
/// The parameter names that carry the Chinese level explicitly.
const LEVEL_PARAMETERS: [&str; 2] = ["level", "EBM_level"];

/// Validates an `<alert>` tree into the model.
pub(super) fn alert(root: &Element, syntax: Syntax) -> Result<Alert, AlertError> {
    let g = Group::new(root, ALERT)?;
    let identifier = g.id_text("identifier")?;
    let sender = g.id_text("sender")?;
    let sent = g.required_time("sent")?;
    let status = g.required_enum("status", Status::from_cap, Status::EXPECTED)?;
    let msg_type = g.required_enum("msgType", MsgType::from_cap, MsgType::EXPECTED)?;
    let scope = g.required_enum("scope", Scope::from_cap, Scope::EXPECTED)?;
    let references = match g.text("references")? {
        Some(list) => Reference::parse_list(&list)
            .ok_or_else(|| invalid("references", &list, REFERENCES, g.at("references")))?,
        None => Vec::new(),
    };
    let mut level = None;
    let mut info = Vec::new();
    for e in g.many("info") {
        let (i, explicit) = self::info(e)?;
        if let Some(l) = explicit {
            level = Some(level.map_or(l, |m: u8| m.min(l)));
        }
        info.push(i);
    }
    if let Some(e) = g.one("level") {
        if syntax == Syntax::Xml {
            return Err(AlertError::Unexpected {
                element: e.name.clone(),
                at: e.at.clone(),
            });
        }
        level = Some(parse_level(leaf_text("level", e)?, e)?);
    }
    let alert = Alert {
        identifier,
        sender,
        sent,
        status,
        msg_type,
        scope,
        source: g.text("source")?,
        restriction: g.text("restriction")?,
        addresses: g.text("addresses")?,
        codes: g.texts("code")?,
        note: g.text("note")?,
        references,
        incidents: g.text("incidents")?,
        info,
        level,
    };
    let missing = |element: &'static str| AlertError::Missing {
        element,
        at: root.at.clone(),
    };
    if matches!(alert.msg_type, MsgType::Update | MsgType::Cancel) && alert.references.is_empty() {
        return Err(missing("references"));
    }
    if alert.scope == Scope::Restricted && alert.restriction.is_none() {
        return Err(missing("restriction"));
    }
    if alert.scope == Scope::Private && alert.addresses.is_none() {
        return Err(missing("addresses"));
    }
    Ok(alert)
}

/// An `<info>`, and the level its parameters give explicitly (the most severe one).
fn info(el: &Element) -> Result<(Info, Option<u8>), AlertError> {
    let g = Group::new(el, INFO)?;
    let categories = g.enums("category", Category::from_cap, Category::EXPECTED)?;
    if categories.is_empty() {
        return Err(AlertError::Missing {
            element: "category",
            at: el.at.clone(),
        });
    }
    let parameters = g.pairs("parameter")?;
    let mut level: Option<u8> = None;
    for ((name, value), e) in parameters.iter().zip(g.many("parameter")) {
        if LEVEL_PARAMETERS
            .iter()
            .any(|l| name.eq_ignore_ascii_case(l))
        {
            let l = parse_level(value, e)?;
            level = Some(level.map_or(l, |m| m.min(l)));
        }
    }
    let info = Info {
        language: g.text("language")?.unwrap_or_else(|| "en-US".to_owned()),
        categories,
        event: g.required_text("event")?.to_owned(),
        response_types: g.enums(
            "responseType",
            ResponseType::from_cap,
            ResponseType::EXPECTED,
        )?,
        urgency: g.required_enum("urgency", Urgency::from_cap, Urgency::EXPECTED)?,
        severity: g.required_enum("severity", Severity::from_cap, Severity::EXPECTED)?,
        certainty: g.required_enum("certainty", Certainty::from_cap, Certainty::EXPECTED)?,
        audience: g.text("audience")?,
        event_codes: g.pairs("eventCode")?,
        effective: g.time("effective")?,
        onset: g.time("onset")?,
        expires: g.time("expires")?,
        sender_name: g.text("senderName")?,
        headline: g.text("headline")?,
        description: g.text("description")?,
        instruction: g.text("instruction")?,
        web: g.text("web")?,
        contact: g.text("contact")?,
        parameters,
        resources: g
            .many("resource")
            .iter()
            .map(|e| resource(e))
            .collect::<Result<_, _>>()?,
        areas: g
            .many("area")
            .iter()
            .map(|e| area(e))
            .collect::<Result<_, _>>()?,
    };
    Ok((info, level))
}

fn resource(el: &Element) -> Result<Resource, AlertError> {
    let g = Group::new(el, RESOURCE)?;
    let deref_uri = match g.one("derefUri") {
        Some(e) => {
            let b64: String = leaf_text("derefUri", e)?
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&b64)
                .map_err(|_| invalid("derefUri", &b64, "base64 (standard alphabet)", &e.at))?;
            Some(bytes)
        }
        None => None,
    };
    Ok(Resource {
        desc: g.required_text("resourceDesc")?.to_owned(),
        mime_type: g.required_text("mimeType")?.to_owned(),
        size: g.number("size", "a size in bytes")?,
        uri: g.text("uri")?,
        deref_uri,
        digest: g.text("digest")?,
    })
}

fn area(el: &Element) -> Result<Area, AlertError> {
    let g = Group::new(el, AREA)?;
    let altitude = g.feet("altitude")?;
    let ceiling = g.feet("ceiling")?;
    if ceiling.is_some() && altitude.is_none() {
        return Err(AlertError::Missing {
            element: "altitude",
            at: el.at.clone(),
        });
    }
    Ok(Area {
        desc: g.required_text("areaDesc")?.to_owned(),
        polygons: g.texts("polygon")?,
        circles: g.texts("circle")?,
        geocodes: g.pairs("geocode")?,
        altitude,
        ceiling,
    })
}

fn parse_level(value: &str, e: &Element) -> Result<u8, AlertError> {
    match value.parse::<u8>() {
        Ok(l @ 1..=4) => Ok(l),
        _ => Err(invalid("level", value, LEVEL, &e.at)),
    }
}

fn invalid(
    element: &'static str,
    value: &str,
    expected: &'static str,
    at: &Location,
) -> AlertError {
    AlertError::Invalid {
        element,
        value: value.to_owned(),
        expected,
        at: at.clone(),
    }
}

/// The text of an element that must not have child elements.
fn leaf_text<'e>(name: &'static str, e: &'e Element) -> Result<&'e str, AlertError> {
    if e.children.is_empty() {
        Ok(&e.text)
    } else {
        Err(invalid(name, "(nested elements)", "text", &e.at))
    }
}

/// The children of one element, sorted by name and checked against a [`Spec`].
struct Group<'e> {
    parent: &'e Element,
    spec: Spec,
    found: Vec<Vec<&'e Element>>,
}

impl<'e> Group<'e> {
    fn new(parent: &'e Element, spec: Spec) -> Result<Self, AlertError> {
        let mut found = vec![Vec::new(); spec.len()];
        for child in &parent.children {
            let Some(i) = spec.iter().position(|(n, _)| *n == child.name) else {
                return Err(AlertError::Unexpected {
                    element: child.name.clone(),
                    at: child.at.clone(),
                });
            };
            let (name, repeats) = spec[i];
            if !repeats && !found[i].is_empty() {
                return Err(AlertError::Duplicate {
                    element: name,
                    at: child.at.clone(),
                });
            }
            found[i].push(child);
        }
        Ok(Group {
            parent,
            spec,
            found,
        })
    }

    fn many(&self, name: &str) -> &[&'e Element] {
        match self.spec.iter().position(|(n, _)| *n == name) {
            Some(i) => &self.found[i],
            None => &[],
        }
    }

    fn one(&self, name: &str) -> Option<&'e Element> {
        self.many(name).first().copied()
    }

    /// Where the named child is, else where the parent is.
    fn at(&self, name: &str) -> &Location {
        self.one(name).map_or(&self.parent.at, |e| &e.at)
    }

    fn required(&self, name: &'static str) -> Result<&'e Element, AlertError> {
        self.one(name).ok_or_else(|| AlertError::Missing {
            element: name,
            at: self.parent.at.clone(),
        })
    }

    fn required_text(&self, name: &'static str) -> Result<&'e str, AlertError> {
        let e = self.required(name)?;
        match leaf_text(name, e)? {
            "" => Err(invalid(name, "", NON_EMPTY, &e.at)),
            t => Ok(t),
        }
    }

    /// `identifier` and `sender`: also no spaces, commas or XML-restricted characters.
    fn id_text(&self, name: &'static str) -> Result<String, AlertError> {
        let t = self.required_text(name)?;
        if t.contains(|c: char| c.is_whitespace() || matches!(c, ',' | '<' | '&')) {
            return Err(invalid(name, t, ID_TEXT, self.at(name)));
        }
        Ok(t.to_owned())
    }

    /// An optional text; empty counts as absent.
    fn text(&self, name: &'static str) -> Result<Option<String>, AlertError> {
        match self.one(name) {
            Some(e) => Ok(Some(leaf_text(name, e)?)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)),
            None => Ok(None),
        }
    }

    /// A repeated text; empty ones are skipped.
    fn texts(&self, name: &'static str) -> Result<Vec<String>, AlertError> {
        let mut out = Vec::new();
        for e in self.many(name) {
            match leaf_text(name, e)? {
                "" => {}
                t => out.push(t.to_owned()),
            }
        }
        Ok(out)
    }

    fn time(&self, name: &'static str) -> Result<Option<DateTime<FixedOffset>>, AlertError> {
        match self.text(name)? {
            Some(t) => match parse_time(&t) {
                Some(time) => Ok(Some(time)),
                None => Err(invalid(name, &t, DATE_TIME, self.at(name))),
            },
            None => Ok(None),
        }
    }

    fn required_time(&self, name: &'static str) -> Result<DateTime<FixedOffset>, AlertError> {
        let t = self.required_text(name)?;
        parse_time(t).ok_or_else(|| invalid(name, t, DATE_TIME, self.at(name)))
    }

    fn required_enum<T>(
        &self,
        name: &'static str,
        parse: fn(&str) -> Option<T>,
        expected: &'static str,
    ) -> Result<T, AlertError> {
        let e = self.required(name)?;
        let t = leaf_text(name, e)?;
        parse(t).ok_or_else(|| invalid(name, t, expected, &e.at))
    }

    fn enums<T>(
        &self,
        name: &'static str,
        parse: fn(&str) -> Option<T>,
        expected: &'static str,
    ) -> Result<Vec<T>, AlertError> {
        self.many(name)
            .iter()
            .map(|e| {
                let t = leaf_text(name, e)?;
                parse(t).ok_or_else(|| invalid(name, t, expected, &e.at))
            })
            .collect()
    }

    fn number<T: std::str::FromStr>(
        &self,
        name: &'static str,
        expected: &'static str,
    ) -> Result<Option<T>, AlertError> {
        match self.text(name)? {
            Some(t) => match t.parse() {
                Ok(n) => Ok(Some(n)),
                Err(_) => Err(invalid(name, &t, expected, self.at(name))),
            },
            None => Ok(None),
        }
    }

    /// `altitude` / `ceiling`: a finite number of feet.
    fn feet(&self, name: &'static str) -> Result<Option<f64>, AlertError> {
        const FEET: &str = "a number of feet";
        match self.number::<f64>(name, FEET)? {
            Some(f) if !f.is_finite() => Err(invalid(name, &f.to_string(), FEET, self.at(name))),
            n => Ok(n),
        }
    }

    /// `eventCode`, `parameter`, `geocode`: (valueName, value); the value may be empty.
    fn pairs(&self, name: &'static str) -> Result<Vec<(String, String)>, AlertError> {
        self.many(name)
            .iter()
            .map(|e| {
                let g = Group::new(e, PAIR)?;
                let value = leaf_text("value", g.required("value")?)?;
                Ok((g.required_text("valueName")?.to_owned(), value.to_owned()))
            })
            .collect()
    }
}
