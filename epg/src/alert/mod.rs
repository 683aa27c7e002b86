//! Emergency alerts: OASIS CAP 1.2 XML and a JSON form of the same fields, parsed into one
//! model ([`Alert`]), and their signatures ([`sign`]: SM2 over SM3, Ed25519).
//!
//! Sans-IO: text in, model out; the time comes in as an argument ([`Alert::check_time`]).
//!
//! - [`parse_cap`]: CAP 1.2 XML (OASIS CAP v1.2 §3, namespace [`CAP_NAMESPACE`]).
//! - [`parse_json`] and [`Alert::to_json`]: the same elements with CAP's names as JSON members
//!   (`msgType`, `info[].eventCode[]`, ...; see the [`json`](self#json-form) section below).
//!
//! Both go through one validator, so they accept and reject the same alerts:
//! - required elements (CAP 1.2 §3.2): `identifier`, `sender`, `sent`, `status`, `msgType`,
//!   `scope`; per `info`: `category` (one or more), `event`, `urgency`, `severity`,
//!   `certainty`; per `resource`: `resourceDesc`, `mimeType`; per `area`: `areaDesc`;
//! - the enumerations (case-insensitive on input, CAP spelling on output);
//! - dateTimes as CAP's `YYYY-MM-DDThh:mm:ss±hh:mm`. Fractional seconds are accepted, and so
//!   is `Z`, although CAP 1.2 forbids alphabetic zone designators (tolerant ingest);
//! - `references` for `msgType` Update and Cancel (Ack and Error are accepted without),
//!   `restriction` for `scope` Restricted, `addresses` for Private, `altitude` with `ceiling`;
//! - `identifier` and `sender` without spaces or commas (they are joined into `references`);
//! - an element given twice where CAP allows one is an error, so a signed alert cannot mean two
//!   things; so is an unknown element in the CAP namespace (or an unknown JSON member).
//!   Elements in other namespaces (an XML-DSig `Signature`, say) are skipped.
//!   Element order is not checked.
//! - Leading and trailing whitespace of every text value is trimmed; an empty optional element
//!   counts as absent.
//!
//! Errors name the element and where it is: line and column in the XML, or a JSON path like
//! `$.info[0].urgency` ([`Location`]).
//!
//! # Chinese level
//! [`Alert::level`] is the level 1–4 of the Emergency Response Law (一级, red, highest, to 四级,
//! blue). It is taken from an explicit value when there is one (JSON top-level `level`, else a
//! CAP `parameter` named `level` or `EBM_level`), else from the most severe `info`: Extreme → 1,
//! Severe → 2, Moderate → 3, Minor or Unknown → 4. That mapping is the usual GB/T 35965.1
//! convention, but the exact table is unconfirmed \[U\] (STANDARDS.md §1.3).
//!
//! # JSON form
//! One object with CAP's element names; repeated elements are arrays:
//!
//! ```json
//! { "identifier": "…", "sender": "…", "sent": "2024-07-01T08:00:00+08:00",
//!   "status": "Actual", "msgType": "Alert", "scope": "Public",
//!   "references": ["sender,identifier,sent"], "code": ["…"], "level": 1,
//!   "info": [{ "language": "zh-CN", "category": ["Met"], "event": "台风",
//!              "urgency": "Immediate", "severity": "Extreme", "certainty": "Observed",
//!              "eventCode": [{ "valueName": "…", "value": "…" }],
//!              "parameter": [{ "valueName": "…", "value": "…" }],
//!              "resource": [{ "resourceDesc": "…", "mimeType": "…", "size": 1,
//!                             "uri": "…", "derefUri": "base64…", "digest": "…" }],
//!              "area": [{ "areaDesc": "…", "polygon": ["…"], "circle": ["…"],
//!                         "geocode": [{ "valueName": "GB2260", "value": "310101" }],
//!                         "altitude": 0, "ceiling": 100 }] }] }
//! ```
//!
//! `references` may also be one string of space-separated triples, as in CAP. A single value
//! where an array is expected is taken as a one-element array. `null` is the same as absent.
//! Numbers may be given as JSON numbers or strings.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};

mod cap;
mod element;
mod json;
pub mod sign;

pub use cap::parse_cap;
pub use json::parse_json;

/// The XML namespace of CAP 1.2 (OASIS CAP v1.2 §3).
pub const CAP_NAMESPACE: &str = "urn:oasis:names:tc:emergency:cap:1.2";

/// One alert message: the CAP `<alert>` element.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// `identifier`: unique for the sender; no spaces, commas or `<` `&`.
    pub identifier: String,
    /// `sender`: globally unique originator id; same character rules.
    pub sender: String,
    /// `sent`: when the message was created.
    pub sent: DateTime<FixedOffset>,
    /// `status`: actual, exercise, test, ...
    pub status: Status,
    /// `msgType`: alert, update, cancel, ...
    pub msg_type: MsgType,
    /// `scope`: who may see it.
    pub scope: Scope,
    /// `source`: the operator or device that made it.
    pub source: Option<String>,
    /// `restriction`: the rule for `scope` Restricted (required then).
    pub restriction: Option<String>,
    /// `addresses`: the recipients for `scope` Private (required then), as CAP writes them:
    /// space-separated, an address with spaces in double quotes.
    pub addresses: Option<String>,
    /// `code`*: special handling codes.
    pub codes: Vec<String>,
    /// `note`: free text (required in spirit for msgType Error).
    pub note: Option<String>,
    /// `references`: the earlier messages this one updates, cancels or answers.
    pub references: Vec<Reference>,
    /// `incidents`: related incident names, space-separated.
    pub incidents: Option<String>,
    /// `info`*: the message content, one per language.
    pub info: Vec<Info>,
    /// The Chinese level 1–4 when given explicitly (JSON `level`, or a CAP `parameter` named
    /// `level` / `EBM_level`; the most severe if several infos carry one). See [`Alert::level`].
    pub level: Option<u8>,
}

/// One earlier message named in `references`: `sender,identifier,sent`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The earlier message's `sender`.
    pub sender: String,
    /// The earlier message's `identifier`.
    pub identifier: String,
    /// The earlier message's `sent`, as written (not reparsed, so it compares exactly).
    pub sent: String,
}

impl Reference {
    /// Parses CAP's `references` value: whitespace-separated `sender,identifier,sent` triples.
    /// `None` if a triple does not have three non-empty parts.
    pub fn parse_list(s: &str) -> Option<Vec<Reference>> {
        s.split_whitespace().map(Reference::parse).collect()
    }

    /// Parses one `sender,identifier,sent` triple.
    pub fn parse(triple: &str) -> Option<Reference> {
        let mut parts = triple.trim().split(',');
        let (sender, identifier, sent) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || [sender, identifier, sent].iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(Reference {
            sender: sender.to_owned(),
            identifier: identifier.to_owned(),
            sent: sent.to_owned(),
        })
    }
}

impl fmt::Display for Reference {
    /// `sender,identifier,sent`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{}", self.sender, self.identifier, self.sent)
    }
}

/// One `<info>` block: the content of the alert in one language.
#[derive(Clone, Debug, PartialEq)]
pub struct Info {
    /// `language` (RFC 3066); "en-US" when not given.
    pub language: String,
    /// `category`+.
    pub categories: Vec<Category>,
    /// `event`: the type of event, as text.
    pub event: String,
    /// `responseType`*.
    pub response_types: Vec<ResponseType>,
    /// `urgency`.
    pub urgency: Urgency,
    /// `severity`.
    pub severity: Severity,
    /// `certainty`.
    pub certainty: Certainty,
    /// `audience`.
    pub audience: Option<String>,
    /// `eventCode`*: (valueName, value) pairs.
    pub event_codes: Vec<(String, String)>,
    /// `effective`: when the information takes effect (default: `sent`).
    pub effective: Option<DateTime<FixedOffset>>,
    /// `onset`: the expected time of the beginning of the hazard.
    pub onset: Option<DateTime<FixedOffset>>,
    /// `expires`: when the information stops being valid.
    pub expires: Option<DateTime<FixedOffset>>,
    /// `senderName`: the human-readable issuer.
    pub sender_name: Option<String>,
    /// `headline`: short, for a ticker.
    pub headline: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `instruction`: what to do.
    pub instruction: Option<String>,
    /// `web`: a URL with more.
    pub web: Option<String>,
    /// `contact`.
    pub contact: Option<String>,
    /// `parameter`*: (valueName, value) pairs.
    pub parameters: Vec<(String, String)>,
    /// `resource`*.
    pub resources: Vec<Resource>,
    /// `area`*.
    pub areas: Vec<Area>,
}

/// A `<resource>`: a file that goes with the info (an image, an audio clip).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// `resourceDesc`.
    pub desc: String,
    /// `mimeType`.
    pub mime_type: String,
    /// `size` in bytes.
    pub size: Option<u64>,
    /// `uri`.
    pub uri: Option<String>,
    /// `derefUri`: the content itself, decoded from base64.
    pub deref_uri: Option<Vec<u8>>,
    /// `digest`: SHA-1 of the content, as hex text (not checked here).
    pub digest: Option<String>,
}

/// An `<area>`: where the info applies.
#[derive(Clone, Debug, PartialEq)]
pub struct Area {
    /// `areaDesc`.
    pub desc: String,
    /// `polygon`*: "lat,lon lat,lon ..." as written (WGS 84, first pair = last).
    pub polygons: Vec<String>,
    /// `circle`*: "lat,lon radius_km" as written.
    pub circles: Vec<String>,
    /// `geocode`*: (valueName, value), e.g. ("GB2260", "310101") or ("SAME", "006109").
    pub geocodes: Vec<(String, String)>,
    /// `altitude` in feet above mean sea level (finite).
    pub altitude: Option<f64>,
    /// `ceiling` in feet (requires `altitude`).
    pub ceiling: Option<f64>,
}

macro_rules! cap_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in the order CAP 1.2 lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The allowed values, for error messages.
            pub(crate) const EXPECTED: &'static str = concat!("one of" $(, " ", $text)+);

            /// The CAP 1.2 spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// Parses a CAP value, ignoring ASCII case; `None` if it is not one.
            pub fn from_cap(s: &str) -> Option<$name> {
                $(if s.eq_ignore_ascii_case($text) {
                    return Some($name::$variant);
                })+
                None
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

cap_enum! {
    /// `status`: how to treat the message.
    Status {
        /// Actionable by all targeted recipients.
        Actual = "Actual",
        /// Only for designated participants of an exercise (a drill).
        Exercise = "Exercise",
        /// For messages that support alert network internal functions.
        System = "System",
        /// Technical testing only; all recipients disregard it.
        Test = "Test",
        /// A preliminary template or draft, not actionable.
        Draft = "Draft",
    }
}

cap_enum! {
    /// `msgType`: what the message does.
    MsgType {
        /// Initial information.
        Alert = "Alert",
        /// Updates and supersedes the messages in `references`.
        Update = "Update",
        /// Cancels the messages in `references`.
        Cancel = "Cancel",
        /// Acknowledges the messages in `references`.
        Ack = "Ack",
        /// Rejects the messages in `references`.
        Error = "Error",
    }
}

cap_enum! {
    /// `scope`: the intended distribution.
    Scope {
        /// For general dissemination.
        Public = "Public",
        /// For users with a known operational requirement (`restriction`).
        Restricted = "Restricted",
        /// For the listed `addresses`.
        Private = "Private",
    }
}

cap_enum! {
    /// `category`: the kind of event.
    Category {
        /// Geophysical (including landslide).
        Geo = "Geo",
        /// Meteorological (including flood).
        Met = "Met",
        /// General emergency and public safety.
        Safety = "Safety",
        /// Law enforcement, military, homeland and local/private security.
        Security = "Security",
        /// Rescue and recovery.
        Rescue = "Rescue",
        /// Fire suppression and rescue.
        Fire = "Fire",
        /// Medical and public health.
        Health = "Health",
        /// Pollution and other environmental.
        Env = "Env",
        /// Public and private transportation.
        Transport = "Transport",
        /// Utility, telecommunication, other non-transport infrastructure.
        Infra = "Infra",
        /// Chemical, biological, radiological, nuclear or high-yield explosive.
        Cbrne = "CBRNE",
        /// Other events.
        Other = "Other",
    }
}

cap_enum! {
    /// `responseType`: the recommended action.
    ResponseType {
        /// Take shelter in place.
        Shelter = "Shelter",
        /// Relocate.
        Evacuate = "Evacuate",
        /// Make preparations.
        Prepare = "Prepare",
        /// Execute a pre-planned activity.
        Execute = "Execute",
        /// Avoid the subject event.
        Avoid = "Avoid",
        /// Attend to information sources.
        Monitor = "Monitor",
        /// Evaluate the information.
        Assess = "Assess",
        /// The subject event no longer poses a threat.
        AllClear = "AllClear",
        /// No action recommended.
        None = "None",
    }
}

cap_enum! {
    /// `urgency`: how soon to act.
    Urgency {
        /// Act now.
        Immediate = "Immediate",
        /// Act soon (within the next hour).
        Expected = "Expected",
        /// Act in the near future.
        Future = "Future",
        /// No longer required.
        Past = "Past",
        /// Not known.
        Unknown = "Unknown",
    }
}

cap_enum! {
    /// `severity`: how bad.
    Severity {
        /// Extraordinary threat to life or property.
        Extreme = "Extreme",
        /// Significant threat to life or property.
        Severe = "Severe",
        /// Possible threat to life or property.
        Moderate = "Moderate",
        /// Minimal to no known threat.
        Minor = "Minor",
        /// Not known.
        Unknown = "Unknown",
    }
}

cap_enum! {
    /// `certainty`: how sure.
    Certainty {
        /// Determined to have occurred or to be ongoing.
        Observed = "Observed",
        /// Likely (p > ~50%).
        Likely = "Likely",
        /// Possible but not likely (p <= ~50%).
        Possible = "Possible",
        /// Not expected to occur (p ~ 0).
        Unlikely = "Unlikely",
        /// Not known.
        Unknown = "Unknown",
    }
}

impl Severity {
    /// The Chinese level 1–4 for this severity: Extreme → 1, Severe → 2, Moderate → 3,
    /// Minor and Unknown → 4 (the usual GB/T 35965.1 convention, unconfirmed \[U\]).
    pub fn level(self) -> u8 {
        match self {
            Severity::Extreme => 1,
            Severity::Severe => 2,
            Severity::Moderate => 3,
            Severity::Minor | Severity::Unknown => 4,
        }
    }
}

impl Alert {
    /// The Chinese level, 1 (一级, highest) to 4: the explicit `level` field if
    /// given, else [`Severity::level`] of the most severe info; 4 when there is no info.
    pub fn level(&self) -> u8 {
        self.level.unwrap_or_else(|| {
            self.info
                .iter()
                .map(|i| i.severity.level())
                .min()
                .unwrap_or(4)
        })
    }

    /// The first info's `headline`, else its `event`; empty when there is no info.
    pub fn headline(&self) -> &str {
        match self.info.first() {
            Some(info) => info.headline.as_deref().unwrap_or(&info.event),
            None => "",
        }
    }

    /// When the alert is over: the latest `expires` of its infos. Infos without `expires` are
    /// left out (CAP leaves their end to the recipient's policy); `None` when no info has one.
    pub fn expires(&self) -> Option<DateTime<FixedOffset>> {
        self.info.iter().filter_map(|i| i.expires).max()
    }

    /// When the hazard starts: the earliest over infos of `onset`, or `effective` for an info
    /// without onset; `None` when no info gives either (then `sent` is the usual default).
    pub fn onset_or_effective(&self) -> Option<DateTime<FixedOffset>> {
        self.info
            .iter()
            .filter_map(|i| i.onset.or(i.effective))
            .min()
    }

    /// Every `geocode` (valueName, value) of every area of every info, in document order.
    pub fn geocodes(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.info
            .iter()
            .flat_map(|i| &i.areas)
            .flat_map(|a| &a.geocodes)
            .map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Every `eventCode` (valueName, value) of every info, in document order.
    pub fn event_codes(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.info
            .iter()
            .flat_map(|i| &i.event_codes)
            .map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Whether this is a drill or a test (`status` Exercise or Test), not to be aired as real.
    pub fn is_drill(&self) -> bool {
        matches!(self.status, Status::Exercise | Status::Test)
    }

    /// Checks the alert against the clock: `sent` within `window` of `now` either way, and not
    /// over ([`Alert::expires`] after `now`).
    pub fn check_time(&self, now: DateTime<Utc>, window: Duration) -> Result<(), AlertError> {
        // A window too large for chrono is as good as no limit.
        let limit = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        let sent = self.sent.with_timezone(&Utc);
        if sent < now && now.signed_duration_since(sent) > limit {
            return Err(AlertError::Stale {
                sent: self.sent,
                now,
                window,
            });
        }
        if sent > now && sent.signed_duration_since(now) > limit {
            return Err(AlertError::Future {
                sent: self.sent,
                now,
                window,
            });
        }
        match self.expires() {
            Some(expires) if expires <= now => Err(AlertError::Expired { expires, now }),
            _ => Ok(()),
        }
    }

    /// The alert in the JSON form (pretty-printed); [`parse_json`] reads it back to an equal
    /// alert.
    pub fn to_json(&self) -> String {
        json::to_json(self)
    }
}

/// Where in the input a problem is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// In CAP XML: 1-based line and column (of the element's start tag).
    Xml {
        /// Line, from 1.
        line: u32,
        /// Column in characters, from 1.
        col: u32,
    },
    /// In JSON: the member's path, `$` for the top level, e.g. `$.info[0].area[1]`.
    Json {
        /// The path.
        path: String,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Xml { line, col } => write!(f, "line {line} column {col}"),
            Location::Json { path } => f.write_str(path),
        }
    }
}

/// Why an alert was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AlertError {
    /// The XML is not well-formed (or has a DTD, which is refused).
    #[error("line {line} column {col}: malformed xml: {msg}")]
    Xml {
        /// Line, from 1.
        line: u32,
        /// Column, from 1.
        col: u32,
        /// What the XML parser said.
        msg: String,
    },
    /// The JSON is not well-formed.
    #[error("line {line} column {col}: malformed json: {msg}")]
    Json {
        /// Line, from 1.
        line: usize,
        /// Column, from 1.
        col: usize,
        /// What the JSON parser said.
        msg: String,
    },
    /// The root is not `<alert>` in [`CAP_NAMESPACE`] (or the JSON root is not an object).
    #[error("{at}: root is {found}, expected a cap 1.2 alert")]
    Root {
        /// The root found: `{namespace}name`, or the JSON type.
        found: String,
        /// Where.
        at: Location,
    },
    /// A required element is missing; `at` is its parent.
    #[error("{at}: missing required element {element}")]
    Missing {
        /// The CAP element name.
        element: &'static str,
        /// Where the parent element is.
        at: Location,
    },
    /// An element has a value CAP does not allow.
    #[error("{at}: {element} {value:?} is invalid, expected {expected}")]
    Invalid {
        /// The CAP element name.
        element: &'static str,
        /// The value found.
        value: String,
        /// What is allowed.
        expected: &'static str,
        /// Where the element is.
        at: Location,
    },
    /// An element CAP allows once is given again.
    #[error("{at}: {element} given more than once")]
    Duplicate {
        /// The CAP element name.
        element: &'static str,
        /// Where the second one is.
        at: Location,
    },
    /// An element that CAP does not define here (in the CAP namespace, or a JSON member).
    #[error("{at}: unexpected element {element}")]
    Unexpected {
        /// Its name.
        element: String,
        /// Where it is.
        at: Location,
    },
    /// `sent` is more than the window before now.
    #[error("sent {sent} is more than {window:?} before now ({now})")]
    Stale {
        /// The alert's `sent`.
        sent: DateTime<FixedOffset>,
        /// The time checked against.
        now: DateTime<Utc>,
        /// The allowed difference.
        window: Duration,
    },
    /// `sent` is more than the window after now.
    #[error("sent {sent} is more than {window:?} after now ({now})")]
    Future {
        /// The alert's `sent`.
        sent: DateTime<FixedOffset>,
        /// The time checked against.
        now: DateTime<Utc>,
        /// The allowed difference.
        window: Duration,
    },
    /// The alert is over ([`Alert::expires`] at or before now).
    #[error("expired at {expires} (now {now})")]
    Expired {
        /// The alert's latest `expires`.
        expires: DateTime<FixedOffset>,
        /// The time checked against.
        now: DateTime<Utc>,
    },
}

/// Parses a CAP dateTime: `YYYY-MM-DDThh:mm:ss±hh:mm`, with optional fractional seconds;
/// `Z` is accepted too (see the module docs).
pub fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    if s.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    DateTime::parse_from_rfc3339(s).ok()
}

/// Formats a dateTime the CAP way: `2003-04-02T14:39:01-05:00` (fractional seconds only when
/// there are some).
pub fn format_time(t: &DateTime<FixedOffset>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
}
