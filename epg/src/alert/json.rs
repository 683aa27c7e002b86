//! The JSON form of an alert (see the [module docs](super#json-form)): read into the same
//! element tree as CAP XML, and written from the model.

use std::fmt;

use base64::Engine as _;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Serialize;

use super::element::{self, Element, Syntax};
use super::{format_time, Alert, AlertError, Area, Info, Location, Resource};

/// Parses and validates an alert in the JSON form. Malformed JSON is reported with its line
/// and column; everything else as for [`parse_cap`](super::parse_cap), located by JSON path.
/// A member given twice in one object is an error too (`Duplicate`), not "last one wins".
pub fn parse_json(json: &str) -> Result<Alert, AlertError> {
    let value: Value = serde_json::from_str(json).map_err(|e| {
        let msg = e.to_string();
        // serde_json ends its messages with " at line L column C", which the error carries.
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        AlertError::Json {
            line: e.line(),
            col: e.column(),
            msg: msg.strip_suffix(&suffix).unwrap_or(&msg).to_owned(),
        }
    })?;
    let root = Location::Json {
        path: "$".to_owned(),
    };
    let Value::Object(members) = value else {
        return Err(AlertError::Root {
            found: format!("a json {}", value.kind()),
            at: root,
        });
    };
    let tree = Element {
        name: "alert".to_owned(),
        text: String::new(),
        children: children(members, "$")?,
        at: root,
    };
    element::alert(&tree, Syntax::Json)
}

/// The alert as pretty-printed JSON, in CAP's element order.
pub(super) fn to_json(alert: &Alert) -> String {
    let out = JsonAlert {
        identifier: &alert.identifier,
        sender: &alert.sender,
        sent: format_time(&alert.sent),
        status: alert.status.as_str(),
        msg_type: alert.msg_type.as_str(),
        source: alert.source.as_deref(),
        scope: alert.scope.as_str(),
        restriction: alert.restriction.as_deref(),
        addresses: alert.addresses.as_deref(),
        code: alert.codes.iter().map(String::as_str).collect(),
        note: alert.note.as_deref(),
        references: alert.references.iter().map(|r| r.to_string()).collect(),
        incidents: alert.incidents.as_deref(),
        level: alert.level,
        info: alert.info.iter().map(JsonInfo::from).collect(),
    };
    // Invariant: these structs have string keys and no fallible Serialize impls.
    serde_json::to_string_pretty(&out).expect("alert serialises to json")
}

/// A JSON value that keeps member order and duplicate members, and numbers as written.
enum Value {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a json value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.to_string()))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.to_string()))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        // Display gives the shortest text that parses back to the same f64.
        Ok(Value::Number(n.to_string()))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry::<String, Value>()? {
            members.push(member);
        }
        Ok(Value::Object(members))
    }
}

/// An object's members as child elements: an array is the element repeated (not nested);
/// `null` is absent.
fn children(members: Vec<(String, Value)>, path: &str) -> Result<Vec<Element>, AlertError> {
    let mut out = Vec::new();
    for (name, value) in members {
        let path = format!("{path}.{name}");
        match value {
            // CAP's references is one element; its JSON array form holds one triple per item.
            Value::Array(items) if name == "references" => {
                let mut triples = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(s) => triples.push(s.trim().to_owned()),
                        other => return Err(not_text(&format!("{path}[{i}]"), &other)),
                    }
                }
                out.push(leaf(name, triples.join(" "), path));
            }
            Value::Array(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    out.extend(element(name.clone(), item, format!("{path}[{i}]"))?);
                }
            }
            value => out.extend(element(name, value, path)?),
        }
    }
    Ok(out)
}

fn element(name: String, value: Value, path: String) -> Result<Option<Element>, AlertError> {
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::Bool(b) => leaf(name, b.to_string(), path),
        Value::Number(n) => leaf(name, n, path),
        Value::String(s) => leaf(name, s.trim().to_owned(), path),
        Value::Object(members) => Element {
            name,
            text: String::new(),
            children: children(members, &path)?,
            at: Location::Json { path },
        },
        Value::Array(_) => {
            return Err(AlertError::Unexpected {
                element: format!("{name} (array in an array)"),
                at: Location::Json { path },
            })
        }
    }))
}

fn leaf(name: String, text: String, path: String) -> Element {
    Element {
        name,
        text,
        children: Vec::new(),
        at: Location::Json { path },
    }
}

fn not_text(path: &str, value: &Value) -> AlertError {
    AlertError::Invalid {
        element: "references",
        value: format!("a json {}", value.kind()),
        expected: "a string",
        at: Location::Json {
            path: path.to_owned(),
        },
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonAlert<'a> {
    identifier: &'a str,
    sender: &'a str,
    sent: String,
    status: &'static str,
    msg_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    scope: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    restriction: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    addresses: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    code: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    references: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    incidents: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<u8>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    info: Vec<JsonInfo<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonInfo<'a> {
    language: &'a str,
    category: Vec<&'static str>,
    event: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    response_type: Vec<&'static str>,
    urgency: &'static str,
    severity: &'static str,
    certainty: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    audience: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    event_code: Vec<Pair<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    effective: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    onset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sender_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headline: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instruction: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    web: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    contact: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    parameter: Vec<Pair<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resource: Vec<JsonResource<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    area: Vec<JsonArea<'a>>,
}

impl<'a> From<&'a Info> for JsonInfo<'a> {
    fn from(i: &'a Info) -> Self {
        JsonInfo {
            language: &i.language,
            category: i.categories.iter().map(|c| c.as_str()).collect(),
            event: &i.event,
            response_type: i.response_types.iter().map(|r| r.as_str()).collect(),
            urgency: i.urgency.as_str(),
            severity: i.severity.as_str(),
            certainty: i.certainty.as_str(),
            audience: i.audience.as_deref(),
            event_code: pairs(&i.event_codes),
            effective: i.effective.as_ref().map(format_time),
            onset: i.onset.as_ref().map(format_time),
            expires: i.expires.as_ref().map(format_time),
            sender_name: i.sender_name.as_deref(),
            headline: i.headline.as_deref(),
            description: i.description.as_deref(),
            instruction: i.instruction.as_deref(),
            web: i.web.as_deref(),
            contact: i.contact.as_deref(),
            parameter: pairs(&i.parameters),
            resource: i.resources.iter().map(JsonResource::from).collect(),
            area: i.areas.iter().map(JsonArea::from).collect(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Pair<'a> {
    value_name: &'a str,
    value: &'a str,
}

fn pairs(pairs: &[(String, String)]) -> Vec<Pair<'_>> {
    pairs
        .iter()
        .map(|(n, v)| Pair {
            value_name: n,
            value: v,
        })
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonResource<'a> {
    resource_desc: &'a str,
    mime_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uri: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deref_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
}

impl<'a> From<&'a Resource> for JsonResource<'a> {
    fn from(r: &'a Resource) -> Self {
        JsonResource {
            resource_desc: &r.desc,
            mime_type: &r.mime_type,
            size: r.size,
            uri: r.uri.as_deref(),
            deref_uri: r
                .deref_uri
                .as_ref()
                .map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
            digest: r.digest.as_deref(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonArea<'a> {
    area_desc: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    polygon: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    circle: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    geocode: Vec<Pair<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    altitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ceiling: Option<f64>,
}

impl<'a> From<&'a Area> for JsonArea<'a> {
    fn from(a: &'a Area) -> Self {
        JsonArea {
            area_desc: &a.desc,
            polygon: a.polygons.iter().map(String::as_str).collect(),
            circle: a.circles.iter().map(String::as_str).collect(),
            geocode: pairs(&a.geocodes),
            altitude: a.altitude,
            ceiling: a.ceiling,
        }
    }
}
