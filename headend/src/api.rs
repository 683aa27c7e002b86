//! The control API (`/api/...` on the HTTP listener). HTTP status codes are chosen here, and
//! only here, from error kinds.
//!
//! - `GET /api/schedules/{channel}/{date}`: the schedule file of a channel for a date (an
//!   empty day at revision 0 if there is none) as JSON, with the file's text.
//!   `?revision=N` gives an earlier revision from the history.
//! - `PUT /api/schedules/{channel}/{date}[?now=1]`: replaces it. With `now`, the change
//!   applies at once (what plays is cut a few seconds later) instead of at the next boundary. The body is the schedule file
//!   (TOML, `epg::schedule`); `If-Match: "N"` names the revision the edit was made on.
//! - `POST /api/schedules/{channel}/{date}/undo`: puts the previous revision back (as a new
//!   revision), `If-Match` as for PUT.
//! - `GET /api/schedules/{channel}/{date}/timeline`: the day resolved in the channel's time
//!   zone (media probed), every segment with start, end and duration; filler in the gaps;
//!   items cut short by a later hard start.
//! - `GET /api/channels/{channel}/status`: what the schedule has on air now (label, file,
//!   position, remaining) and next, and the engine's counters.
//! - `POST /api/channels/{channel}/input`: an operator's input order (`{"action": "switch" |
//!   "lock" | "unlock", "input": NAME | "playlist"}`), on the stoppage record with the
//!   `X-Operator` who gave it (as are schedule writes and undos).
//! - `GET /api/overview`: every channel's state (on air, stoppage, alert, failover,
//!   degraded), what is on it (the engine's file, the schedule's and the guide's now and
//!   next, the alert, scrambling, the live input on air), its counters, the record's open
//!   and last events and the alarms raised: what the operator's page (`GET /`) draws.
//! - `GET /api/report?from=&to=&channel=`: the stoppage record's events and per-channel
//!   figures over a period; `GET /api/record`: the record's and webhooks' health, the alarms
//!   of the disks the daemon writes (schedule store, alert media and audit log) and of the
//!   HTTP listener, and the listener's counters (see `docs/record.md`).
//!
//! - `POST /api/alerts`: an emergency alert (CAP 1.2 XML or JSON), signed (`X-Signature-Key`,
//!   `X-Signature`); `GET /api/alerts`: active and recent alerts; `POST /api/alerts/media`: a
//!   clip to air with a later alert. These need the `emergency` role's token
//!   (`[alerts] token`) instead; see `docs/alerts.md`.
//!
//! Every other mutating call needs `Authorization: Bearer` with a token whose role allows it
//! (`crate::auth`: `[[http.token]]`, or `http.api_token` as an admin); once named tokens are
//! configured, reads need one too. Tokens are never logged. Answers to mistakes are JSON `{"error": KIND, "message": ...}`. A write the disk
//! refuses (a schedule, a clip) changes nothing and raises the part's alarm: `507
//! insufficient_storage` when it is full, `500 storage` otherwise, the message naming the file
//! and the OS error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use chrono::NaiveDate;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, IF_MATCH, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use playout::schedule::{Source, Utc};

use crate::alarm::Alarm;
use crate::auth::{Caller, Need};
use crate::record::{Kind, Mark};
use crate::schedule::driver::ScheduleViews;
use crate::schedule::store::{Store, StoreError};
use crate::status::Status;

/// Largest schedule file accepted (a busy day is a few hundred KB).
const MAX_BODY: usize = 4 << 20;

/// What the API handlers share.
pub(crate) struct ApiState {
    /// Emergency alerts, when `[alerts]` is configured.
    pub(crate) alerts: Option<Arc<crate::alert::Desk>>,
    pub(crate) store: Arc<Store>,
    /// Channel ids from the config.
    pub(crate) channels: Vec<String>,
    /// Who may call it, and what they may do (`crate::auth`).
    pub(crate) auth: crate::auth::Auth,
    /// The audit trail of every change (`[http] audit_log`), when kept.
    pub(crate) trail: Option<Arc<crate::trail::Trail>>,
    /// What each channel's schedule says is on air.
    pub(crate) views: ScheduleViews,
    /// The coming days' events of each scheduled channel, and the channels of the guide.
    pub(crate) guides: crate::guide::Guides,
    pub(crate) guide_channels: Vec<crate::guide::GuideChannel>,
    /// Each channel's SI character set: schedule text it cannot hold is refused.
    pub(crate) charsets: Vec<(String, epg::si::Charset)>,
    /// Each channel's live input names: a schedule's live items must name one.
    pub(crate) inputs: Vec<(String, Vec<String>)>,
    /// The engine's counters.
    pub(crate) status: Status,
    /// Per channel id: its time zone and filler, for timelines.
    pub(crate) zones: Vec<(String, epg::schedule::Tz, Vec<std::path::PathBuf>)>,
    /// What schedule file names are relative to.
    pub(crate) media_dir: std::path::PathBuf,
    /// Channels whose schedule edit must apply now (see `schedule::driver`).
    /// The scheduler's mailbox (edits that apply now).
    pub(crate) requeue: crate::schedule::driver::Mailbox,
    /// Channels relaying live inputs: (channel, its station, its inputs' names in order).
    pub(crate) live: Vec<(String, usize, Vec<String>)>,
    /// Where operators' input orders go (the engine).
    pub(crate) sink: crate::router::ScheduleSink,
    /// Media probed for timelines: (size, modification time, duration) by path.
    pub(crate) probes: std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, Probed>>,
    /// The stoppage record: operators' actions go on it; reports come from it.
    pub(crate) journal: crate::record::Journal,
    /// The webhooks its events go to, if any.
    pub(crate) hooks: Option<crate::record::hooks::Hooks>,
    /// The HTTP listener's counters and alarm (kept by `output::http`).
    pub(crate) listener: Arc<ListenerStats>,
    /// The channels' archives (`[channel.archive]`), for HLS and catch-up.
    pub(crate) archives: Option<Arc<crate::archive::Archives>>,
    /// With `[fleet]`: the fleet as this node last read it, and the config (for drains).
    pub(crate) fleet: Option<(
        Arc<std::sync::RwLock<crate::fleet::View>>,
        crate::config::FleetConfig,
    )>,
}

/// The HTTP listener's counters (`output::http` keeps them; `GET /api/record` shows them)
/// and its alarm, raised while connections are refused or idle ones closed to make room (a
/// client flood).
#[derive(Debug)]
pub(crate) struct ListenerStats {
    /// Connections open now.
    pub(crate) open: AtomicU64,
    pub(crate) accepted: AtomicU64,
    /// Refused at `http.max_connections` with none idle to close (answered 503).
    pub(crate) refused: AtomicU64,
    /// Refused at `http.max_connections_per_source` (answered 503).
    pub(crate) refused_per_source: AtomicU64,
    /// Idle connections (no request in progress) closed to make room for a new one.
    pub(crate) evicted: AtomicU64,
    /// Closed for not sending a whole request head within `http.header_timeout`.
    pub(crate) header_timeouts: AtomicU64,
    /// Closed for moving no byte either way for `http.idle_timeout`.
    pub(crate) idle_timeouts: AtomicU64,
    /// API requests answered 408: the body did not arrive within `http.request_timeout`.
    pub(crate) request_timeouts: AtomicU64,
    pub(crate) alarm: Alarm,
}

impl Default for ListenerStats {
    fn default() -> ListenerStats {
        ListenerStats {
            open: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            refused_per_source: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            header_timeouts: AtomicU64::new(0),
            idle_timeouts: AtomicU64::new(0),
            request_timeouts: AtomicU64::new(0),
            alarm: Alarm::new("http"),
        }
    }
}

impl ListenerStats {
    fn json(&self) -> serde_json::Value {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "open": n(&self.open),
            "accepted": n(&self.accepted),
            "refused": n(&self.refused),
            "refused_per_source": n(&self.refused_per_source),
            "evicted_idle": n(&self.evicted),
            "header_timeouts": n(&self.header_timeouts),
            "idle_timeouts": n(&self.idle_timeouts),
            "request_timeouts": n(&self.request_timeouts),
        })
    }
}

/// A media file's duration as probed, with the size and modification time it had then.
pub(crate) type Probed = (u64, Option<std::time::SystemTime>, u64);

/// What went wrong, by kind; the status code follows from the kind.
enum ApiError {
    BadRequest(String),
    /// An alert refused: the kind picks the status.
    Alert(crate::alert::Rejection),
    Unauthorized,
    NoToken,
    /// A token that does not allow this (its role, its channels).
    Forbidden(String),
    /// Too many failed authentications from the caller's address.
    TooManyFailures,
    NotFound(String),
    /// A part it needs does not answer (etcd).
    Unavailable(String),
    MethodNotAllowed,
    PreconditionRequired,
    /// The body is over this many bytes.
    TooLarge(u64),
    Conflict {
        current: u64,
        message: String,
    },
    NothingToUndo(String),
    Invalid {
        errors: Vec<String>,
    },
    /// A stored day that cannot be resolved into a timeline (a GET: nothing was changed).
    NotLaidOut {
        errors: Vec<String>,
    },
    Internal(String),
    /// A write the disk refused: `full` (ENOSPC, EDQUOT) or another error; the message names
    /// the file and the OS error.
    Storage {
        full: bool,
        message: String,
    },
    /// The request's body did not arrive within `http.request_timeout` of its head.
    Timeout(std::time::Duration),
}

impl ApiError {
    fn into_response(self) -> Response<Bytes> {
        let (status, kind, message, extra) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m, None),
            ApiError::Alert(r) => {
                use crate::alert::RejectKind;
                let (status, kind) = match r.kind {
                    RejectKind::Unauthenticated => (StatusCode::FORBIDDEN, "unauthenticated"),
                    RejectKind::Replay => (StatusCode::CONFLICT, "replay"),
                    RejectKind::Invalid => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
                    RejectKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
                    RejectKind::InsufficientStorage => {
                        (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
                    }
                };
                (status, kind, r.reason, None)
            }
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid `Authorization: Bearer` token is required".to_owned(),
                None,
            ),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m, None),
            ApiError::TooManyFailures => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failures",
                format!(
                    "more than {} failed authentications from this address in {} s: try again later",
                    crate::auth::MAX_FAILURES,
                    crate::auth::FAILURE_WINDOW.as_secs()
                ),
                None,
            ),
            ApiError::NoToken => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "no http.api_token or [[http.token]] is configured: changes are refused".to_owned(),
                None,
            ),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m, None),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m, None),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "not allowed here".to_owned(),
                None,
            ),
            ApiError::PreconditionRequired => (
                StatusCode::PRECONDITION_REQUIRED,
                "precondition_required",
                "`If-Match: \"REVISION\"` is required: the revision the edit was made on"
                    .to_owned(),
                None,
            ),
            ApiError::TooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is over {limit} bytes"),
                None,
            ),
            ApiError::Conflict { current, message } => (
                StatusCode::CONFLICT,
                "conflict",
                message,
                Some(("current_revision", serde_json::json!(current))),
            ),
            ApiError::NothingToUndo(m) => (StatusCode::CONFLICT, "nothing_to_undo", m, None),
            ApiError::Invalid { errors } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "the schedule was rejected; nothing changed".to_owned(),
                Some(("errors", serde_json::json!(errors))),
            ),
            ApiError::NotLaidOut { errors } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_laid_out",
                "the day as stored cannot be laid out on a timeline".to_owned(),
                Some(("errors", serde_json::json!(errors))),
            ),
            ApiError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", m, None),
            ApiError::Storage {
                full: true,
                message,
            } => (
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                message,
                None,
            ),
            ApiError::Storage {
                full: false,
                message,
            } => (StatusCode::INTERNAL_SERVER_ERROR, "storage", message, None),
            ApiError::Timeout(limit) => (
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "the request's body did not arrive within {} s of its head (http.request_timeout); nothing was changed",
                    limit.as_secs_f64()
                ),
                None,
            ),
        };
        let mut v = serde_json::json!({ "error": kind, "message": message });
        if let Some((k, x)) = extra {
            v[k] = x;
        }
        let mut r = json(status, &v);
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Bytes> {
    let mut text = serde_json::to_string_pretty(v).unwrap_or_default();
    text.push('\n');
    let mut r = Response::new(Bytes::from(text));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Answers one `/api/...` request.
pub(crate) async fn handle(state: Arc<ApiState>, req: Request<Incoming>) -> Response<Bytes> {
    let change = !matches!(*req.method(), Method::GET | Method::HEAD);
    let audit = state
        .trail
        .clone()
        .filter(|_| change)
        .map(|trail| (trail, audit_entry(&state, &req)));
    let answer = match route(&state, req).await {
        Ok(r) => r,
        Err(e) => {
            if matches!(e, ApiError::Timeout(_)) {
                state
                    .listener
                    .request_timeouts
                    .fetch_add(1, Ordering::Relaxed);
            }
            e.into_response()
        }
    };
    if let Some((trail, mut entry)) = audit {
        // The result: the status, the revision made, and why when refused.
        let body: serde_json::Value = serde_json::from_slice(answer.body()).unwrap_or_default();
        entry.insert("status".into(), answer.status().as_u16().into());
        if let Some(r) = body
            .get("revision")
            .filter(|_| answer.status().is_success())
        {
            entry.insert("after".into(), r.clone());
        }
        if let Some(m) = body
            .get("message")
            .filter(|_| !answer.status().is_success())
        {
            entry.insert("message".into(), m.clone());
        }
        let written =
            tokio::task::spawn_blocking(move || trail.append(entry).map_err(|e| (trail, e))).await;
        if let Ok(Err((trail, e))) = written {
            tracing::error!(file = %trail.path().display(), error = %e, "the API audit trail cannot be written");
        }
    }
    answer
}

/// What the audit trail says of a change before it is made: who (the token's name), from
/// where, what (method, path, channel), the revision it was made on, and the `X-Operator`.
fn audit_entry<B>(
    state: &ApiState,
    req: &Request<B>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut e = serde_json::Map::new();
    let given = bearer(req);
    e.insert("who".into(), state.auth.name_of(given).into());
    if let Some(op) = header_text(req, "x-operator") {
        e.insert("operator".into(), op.into());
    }
    let from = req.extensions().get::<Peer>().map(|p| p.0.ip().to_string());
    e.insert("from".into(), from.into());
    let path = req.uri().path();
    e.insert("what".into(), format!("{} {path}", req.method()).into());
    let channel = match path
        .trim_start_matches("/api/")
        .split('/')
        .collect::<Vec<_>>()[..]
    {
        ["schedules", c, ..] | ["channels", c, ..] => Some(c.to_owned()),
        _ => None,
    };
    e.insert("channel".into(), channel.into());
    if let Some(before) = header_text(req, "if-match") {
        e.insert("before".into(), before.trim_matches('"').into());
    }
    e
}

async fn route(state: &Arc<ApiState>, req: Request<Incoming>) -> Result<Response<Bytes>, ApiError> {
    // Reading needs a token (any role) once named tokens are configured.
    if matches!(*req.method(), Method::GET | Method::HEAD) && state.auth.reads_need_a_token() {
        authorize(state, &req, Need::Read)?;
    }
    let path = req.uri().path().to_owned();
    let parts: Vec<&str> = path.trim_start_matches("/api/").split('/').collect();
    match parts.as_slice() {
        ["schedules", channel, date] => {
            let (channel, date) = target(state, channel, date)?;
            match *req.method() {
                Method::GET | Method::HEAD => {
                    let revision = req
                        .uri()
                        .query()
                        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("revision=")))
                        .map(|r| {
                            r.parse::<u64>().map_err(|_| {
                                ApiError::BadRequest(format!("revision `{r}` is not a number"))
                            })
                        })
                        .transpose()?;
                    get(state, channel, date, revision).await
                }
                Method::PUT => {
                    let caller = authorize(state, &req, Need::Schedule(&channel))?;
                    let expected = if_match(&req)?;
                    let who = actor(&caller, &req);
                    let now = req
                        .uri()
                        .query()
                        .is_some_and(|q| q.split('&').any(|kv| kv == "now=1" || kv == "now"));
                    let body = read_body(req).await?;
                    let r = put(state, channel.clone(), date, expected, body, who).await?;
                    if now {
                        // Apply at once: the scheduler takes over again, cutting what plays.
                        let _ = state
                            .requeue
                            .send(crate::schedule::driver::Wake::EditNow(channel));
                    }
                    Ok(r)
                }
                _ => Err(ApiError::MethodNotAllowed),
            }
        }
        ["schedules", channel, date, "timeline"] => {
            let (channel, date) = target(state, channel, date)?;
            let state = state.clone();
            tokio::task::spawn_blocking(move || timeline(&state, &channel, date))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
        }
        ["schedules", channel, date, "undo"] => {
            let (channel, date) = target(state, channel, date)?;
            if req.method() != Method::POST {
                return Err(ApiError::MethodNotAllowed);
            }
            let caller = authorize(state, &req, Need::Schedule(&channel))?;
            let expected = if_match(&req)?;
            let who = actor(&caller, &req);
            let store = state.store.clone();
            let ch = channel.clone();
            let result = tokio::task::spawn_blocking(move || {
                let rev = store.undo(&ch, date, expected)?;
                Ok::<_, StoreError>((ch, rev))
            })
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
            let (channel, revision) = result.map_err(|e| {
                let what = format!("undo of the schedule of {date}");
                refused_write(state, &e, &channel, &who, &what);
                store_error(e)
            })?;
            tracing::info!(%channel, %date, revision, "schedule undone");
            note_manual(
                state,
                &channel,
                "schedule",
                format!("schedule of {date} undone: revision {revision}"),
                who,
            );
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "channel": channel, "date": date.to_string(), "revision": revision }),
            ))
        }
        ["alerts"] => {
            if req.method() == Method::POST {
                authorize(state, &req, Need::Emergency)?;
            }
            let desk = alert_desk(state)?;
            match *req.method() {
                Method::GET | Method::HEAD => Ok(json(StatusCode::OK, &desk.list())),
                Method::POST => {
                    let header = |name: &str| {
                        req.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let key = header(epg::alert::sign::KEY_HEADER);
                    let sig = header(epg::alert::sign::SIGNATURE_HEADER);
                    let body = read_bytes(req, MAX_BODY as u64).await?;
                    let now = chrono::Utc::now();
                    let d = desk.clone();
                    let fleet = state.fleet.as_ref().map(|(_, c)| c.clone());
                    let (mut accepted, shared) = tokio::task::spawn_blocking(move || {
                        let accepted = d.submit(&body, key.as_deref(), sig.as_deref(), now)?;
                        let expires = accepted
                            .get("expires")
                            .and_then(|e| e.as_str())
                            .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
                            .map(|e| e.with_timezone(&chrono::Utc));
                        // With a fleet, every node's desk takes it too.
                        let shared = fleet.map(|cfg| {
                            crate::fleet::alerts::publish(&cfg, &body, key.as_deref(), sig.as_deref(), expires)
                                .inspect_err(|e| tracing::error!(error = %e, "alert accepted here but not shared with the fleet: other nodes' channels are not pre-empted"))
                                .is_ok()
                        });
                        Ok((accepted, shared))
                    })
                    .await
                    .map_err(|e| ApiError::Internal(e.to_string()))?
                    .map_err(ApiError::Alert)?;
                    if let (Some(s), Some(o)) = (shared, accepted.as_object_mut()) {
                        o.insert("shared_with_fleet".into(), s.into());
                    }
                    Ok(json(StatusCode::ACCEPTED, &accepted))
                }
                _ => Err(ApiError::MethodNotAllowed),
            }
        }
        ["alerts", "media"] => {
            if req.method() != Method::POST {
                return Err(ApiError::MethodNotAllowed);
            }
            authorize(state, &req, Need::Emergency)?;
            let desk = alert_desk(state)?;
            // Spooled to disk as it comes (no client holds more than a frame of memory),
            // then kept or dropped whole.
            let spool = desk.spool();
            let len = match spool_body(req, &spool, desk.max_upload()).await {
                Ok(len) => len,
                Err(e) => {
                    let _ = tokio::fs::remove_file(&spool).await;
                    return Err(match e {
                        // The disk: the desk's alarm, as for any clip it cannot keep.
                        Spooled::Io(e) => ApiError::Alert(desk.spool_failed(&spool, e)),
                        Spooled::Api(e) => e,
                    });
                }
            };
            let d = desk.clone();
            let stored = tokio::task::spawn_blocking(move || d.upload_spooled(&spool, len))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .map_err(ApiError::Alert)?;
            Ok(json(StatusCode::CREATED, &stored))
        }
        ["channels", channel, "input"] => {
            if req.method() != Method::POST {
                return Err(ApiError::MethodNotAllowed);
            }
            let caller = authorize(state, &req, Need::Operate(channel))?;
            let who = actor(&caller, &req);
            let Some((channel, station, names)) = state.live.iter().find(|(c, _, _)| c == channel)
            else {
                let known = state.zones.iter().any(|(c, _, _)| c == channel);
                return Err(ApiError::NotFound(if known {
                    format!("channel `{channel}` has no live inputs")
                } else {
                    format!("no channel `{channel}`")
                }));
            };
            let body = read_body(req).await?;
            let order: serde_json::Value = serde_json::from_str(&body)
                .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
            let input = match order.get("input") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(n)) if n == "playlist" => None,
                Some(serde_json::Value::String(n)) => match names.iter().position(|x| x == n) {
                    Some(i) => Some(i),
                    None => {
                        return Err(ApiError::BadRequest(format!(
                            "channel `{channel}` has no input `{n}` (it has {})",
                            names.join(", ")
                        )))
                    }
                },
                Some(other) => {
                    return Err(ApiError::BadRequest(format!(
                        "`input` must be an input's name or \"playlist\", not {other}"
                    )))
                }
            };
            let action = match order.get("action").and_then(serde_json::Value::as_str) {
                Some("switch") => crate::router::InputAction::Switch(input),
                Some("lock") => crate::router::InputAction::Lock(input),
                Some("unlock") => crate::router::InputAction::Unlock,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "`action` must be \"switch\", \"lock\" or \"unlock\", not {other:?}"
                    )))
                }
            };
            let sent = state.sink.send_input(crate::router::InputOrder {
                station: *station,
                channel: channel.clone(),
                action: action.clone(),
            });
            if !sent {
                return Err(ApiError::Internal("the engine has stopped".to_owned()));
            }
            let what = input.map_or("playlist", |i| names[i].as_str());
            // With a fleet, a lock is the fleet's: every node holds it (a takeover keeps it).
            let shared = match &state.fleet {
                Some((_, cfg)) if !matches!(action, crate::router::InputAction::Switch(_)) => {
                    let (cfg, ch, a, w) = (
                        cfg.clone(),
                        channel.clone(),
                        action.clone(),
                        what.to_owned(),
                    );
                    let r = tokio::task::spawn_blocking(move || {
                        crate::fleet::locks::publish(&cfg, &ch, &a, Some(&w))
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r);
                    if let Err(e) = &r {
                        tracing::warn!(%channel, error = %e, "input lock applied here but not shared with the fleet");
                    }
                    Some(r.is_ok())
                }
                _ => None,
            };
            let done = match &action {
                crate::router::InputAction::Switch(_) => format!("input switch to {what}"),
                crate::router::InputAction::Lock(_) => format!("input switch to {what}, locked"),
                crate::router::InputAction::Unlock => "input unlocked".to_owned(),
            };
            note_manual(state, channel, "input", done, who);
            Ok(json(
                StatusCode::ACCEPTED,
                &serde_json::json!({
                    "channel": channel,
                    "action": order.get("action"),
                    "input": input.map_or("playlist", |i| names[i].as_str()),
                    "shared_with_fleet": shared,
                }),
            ))
        }
        ["report"] => {
            if !matches!(*req.method(), Method::GET | Method::HEAD) {
                return Err(ApiError::MethodNotAllowed);
            }
            let q = query(&req)?;
            let now = chrono::Utc::now();
            let to = q
                .get("to")
                .map(|t| instant(t, now))
                .transpose()?
                .unwrap_or(now);
            let from = q
                .get("from")
                .map(|t| instant(t, now))
                .transpose()?
                .unwrap_or(to - chrono::TimeDelta::days(1));
            if from >= to {
                return Err(ApiError::BadRequest(format!(
                    "`from` ({from}) is not before `to` ({to})"
                )));
            }
            let channel = q.get("channel").cloned();
            if let Some(c) = &channel {
                if !state.channels.contains(c) {
                    return Err(ApiError::NotFound(format!("no channel `{c}`")));
                }
            }
            let Some(path) = state.journal.path().map(std::path::Path::to_owned) else {
                return Err(ApiError::NotFound("no stoppage record".to_owned()));
            };
            let r = tokio::task::spawn_blocking(move || {
                let (lines, _) = crate::jsonl::read(&path, "stoppage record");
                let lines: Vec<serde_json::Value> = lines.into_iter().map(|(_, v)| v).collect();
                crate::record::report::report(&lines, from, to, channel.as_deref(), now)
            })
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
            Ok(json(
                StatusCode::OK,
                &serde_json::to_value(r).map_err(|e| ApiError::Internal(e.to_string()))?,
            ))
        }
        ["record"] => {
            if !matches!(*req.method(), Method::GET | Method::HEAD) {
                return Err(ApiError::MethodNotAllowed);
            }
            let alarms = alarms(state);
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({
                    "journal": state.journal.health(),
                    "webhooks": state.hooks.as_ref().map(crate::record::hooks::Hooks::stats).unwrap_or_default(),
                    "alarms": alarms,
                    "http": state.listener.json(),
                }),
            ))
        }
        ["fleet"] => {
            if !matches!(*req.method(), Method::GET | Method::HEAD) {
                return Err(ApiError::MethodNotAllowed);
            }
            let (view, _) = fleet_of(state)?;
            let v = view
                .read()
                .map(|v| serde_json::to_value(&*v))
                .map_err(|_| ApiError::Internal("the fleet view is poisoned".to_owned()))?;
            Ok(json(
                StatusCode::OK,
                &v.map_err(|e| ApiError::Internal(e.to_string()))?,
            ))
        }
        ["fleet", "drain"] => {
            if req.method() != Method::POST {
                return Err(ApiError::MethodNotAllowed);
            }
            authorize(state, &req, Need::Fleet)?;
            let (_, cfg) = fleet_of(state)?;
            let q = query(&req)?;
            let node = q
                .get("node")
                .filter(|n| !n.is_empty())
                .ok_or_else(|| ApiError::BadRequest("give `node`".to_owned()))?
                .clone();
            let on = match q.get("on").map(String::as_str) {
                None | Some("true") => true,
                Some("false") => false,
                Some(o) => {
                    return Err(ApiError::BadRequest(format!(
                        "`on`: `{o}`, expected true or false"
                    )))
                }
            };
            let (cfg, n) = (cfg.clone(), node.clone());
            tokio::task::spawn_blocking(move || crate::fleet::set_drain(&cfg, &n, on))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .map_err(ApiError::Unavailable)?;
            tracing::info!(%node, drained = on, "fleet: drain set");
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "node": node, "drained": on }),
            ))
        }
        ["archive", channel] => {
            if !matches!(*req.method(), Method::GET | Method::HEAD) {
                return Err(ApiError::MethodNotAllowed);
            }
            let q = query(&req)?;
            Ok(json(
                StatusCode::OK,
                &archive_listing(state, channel, q.get("date"))?,
            ))
        }
        ["overview"] => {
            if !matches!(*req.method(), Method::GET | Method::HEAD) {
                return Err(ApiError::MethodNotAllowed);
            }
            Ok(json(StatusCode::OK, &overview(state)))
        }
        ["channels", channel, "status"] => {
            if !state.channels.iter().any(|c| c == channel) {
                return Err(ApiError::NotFound(format!("no channel `{channel}`")));
            }
            Ok(json(StatusCode::OK, &channel_status(state, channel)))
        }
        _ => Err(ApiError::NotFound(format!("no API resource {path}"))),
    }
}

/// Who acts, as the request says (`X-Operator`: visible characters, at most 64); `None`
/// (the API) without one.
/// Who acted, for the record: a named token's name (with the `X-Operator` it gives, if
/// any); for the unnamed `http.api_token`, the `X-Operator` alone (`api` when empty).
fn actor<B>(caller: &Caller, req: &Request<B>) -> Option<String> {
    let operator = header_text(req, "x-operator");
    if caller.legacy {
        return operator.map(|v| if v.is_empty() { "api".to_owned() } else { v });
    }
    Some(match operator.filter(|v| !v.is_empty()) {
        Some(op) => format!("{} ({op})", caller.name),
        None => caller.name.clone(),
    })
}

/// Header `name` as text to record: trimmed, without control characters, at most 64
/// characters.
fn header_text<B>(req: &Request<B>, name: &str) -> Option<String> {
    let v = req.headers().get(name)?.to_str().ok()?;
    Some(
        v.trim()
            .chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect(),
    )
}

/// The query's `key=value` pairs, percent-decoded (a bad escape is named).
/// The fleet's view and config, or 404 without `[fleet]`.
fn fleet_of(
    state: &ApiState,
) -> Result<
    &(
        Arc<std::sync::RwLock<crate::fleet::View>>,
        crate::config::FleetConfig,
    ),
    ApiError,
> {
    state
        .fleet
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("this head-end runs alone (no [fleet])".to_owned()))
}

fn query<B>(req: &Request<B>) -> Result<std::collections::HashMap<String, String>, ApiError> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v = crate::config::percent_decode(v)
                .ok_or_else(|| ApiError::BadRequest(format!("bad %-escape in `{k}`")))?;
            Ok((k.to_owned(), v))
        })
        .collect()
}

/// Notes an operator's action on `channel` in the stoppage record.
fn note_manual(state: &ApiState, channel: &str, subject: &str, what: String, who: Option<String>) {
    state
        .journal
        .mark(Mark::instant(Kind::Manual, channel, "operator", subject, what).actor(who));
}

/// An instant in a report query: RFC 3339, a date (its 00:00 UTC), or `now`.
fn instant(
    t: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    if t == "now" {
        return Ok(now);
    }
    if let Some(u) = crate::record::parse_utc(t) {
        return Ok(u);
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(ApiError::BadRequest(format!(
        "`{t}` is not an instant (RFC 3339 such as 2026-12-05T08:00:00+08:00, a date YYYY-MM-DD, or now)"
    )))
}

/// A date's schedule resolved in the channel's zone: every segment with its times and
/// duration, filler in the gaps, and items cut short by a later hard start.
fn timeline(state: &ApiState, channel: &str, date: NaiveDate) -> Result<Response<Bytes>, ApiError> {
    use chrono::TimeZone;
    use playout::schedule::{resolve, Clip, MediaId, MediaInfo, Start, ENDLESS_NS, UNPLAYABLE};
    let Some((_, tz, filler)) = state.zones.iter().find(|(c, _, _)| c == channel) else {
        return Err(ApiError::NotFound(format!("no channel `{channel}`")));
    };
    let day = state.store.read(channel, date).map_err(store_error)?;
    let mut names: Vec<std::path::PathBuf> = Vec::new();
    let mut table: Vec<MediaInfo> = Vec::new();
    let mut problems = Vec::new();
    let mut lookup = |path: std::path::PathBuf| -> Option<MediaId> {
        if let Some(i) = names.iter().position(|n| *n == path) {
            return Some(MediaId(i as u32));
        }
        let stamp = std::fs::metadata(&path)
            .ok()
            .map(|m| (m.len(), m.modified().ok()));
        let cached = state
            .probes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&path)
            .copied()
            .filter(|(size, time, _)| Some((*size, *time)) == stamp);
        let duration = match cached {
            Some((_, _, d)) => d,
            None => match crate::input::probe::probe_file(&path) {
                Ok(info) => {
                    if let Some((size, time)) = stamp {
                        state
                            .probes
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(path.clone(), (size, time, info.duration_ns));
                    }
                    info.duration_ns
                }
                Err(e) => {
                    // As on air: its slot is a gap the filler fills.
                    problems.push((path.clone(), e.to_string()));
                    return Some(UNPLAYABLE);
                }
            },
        };
        names.push(path);
        table.push(MediaInfo { duration });
        Some(MediaId(names.len() as u32 - 1))
    };
    // A live input's stand-in, replaced once the plan is made (a file that cannot be played
    // is `UNPLAYABLE`).
    const LIVE: MediaId = MediaId(u32::MAX - 1);
    let filler_clips: Vec<Clip> = filler
        .iter()
        .filter_map(|p| {
            lookup(p.clone())
                .filter(|m| *m != UNPLAYABLE)
                .map(Clip::whole)
        })
        .collect();
    let inputs = state
        .inputs
        .iter()
        .find(|(c, _)| c == channel)
        .map(|(_, i)| i.clone())
        .unwrap_or_default();
    let entries = day
        .plan_with(
            *tz,
            |name| lookup(state.media_dir.join(name)),
            |name| inputs.iter().any(|i| i == name).then_some(LIVE),
        )
        .map_err(|e| ApiError::Invalid {
            errors: e.0.iter().map(ToString::to_string).collect(),
        })?;
    // Each file that cannot be played, by the item (or the filler) that names it.
    let mut warnings: Vec<String> = Vec::new();
    for (path, why) in &problems {
        let items: Vec<String> = day
            .items
            .iter()
            .enumerate()
            .filter(|(_, it)| it.paths().iter().any(|p| state.media_dir.join(p) == *path))
            .map(|(i, it)| format!("line {}: item {} ({})", it.line, i + 1, it.label()))
            .collect();
        let at = if items.is_empty() {
            "filler".to_owned()
        } else {
            items.join(", ")
        };
        warnings.push(format!(
            "{at}: {}: {why}: its slot airs the filler until it can be played",
            path.display()
        ));
    }
    // A live input lasts as long as its item says; a file that cannot be played is a gap.
    let live_media = MediaId(table.len() as u32);
    table.push(MediaInfo {
        duration: ENDLESS_NS,
    });
    let entries: Vec<_> = entries
        .into_iter()
        .map(|mut e| {
            if let playout::schedule::Body::Clip(c) = &mut e.body {
                if c.media == LIVE {
                    c.media = live_media;
                }
            }
            e.without_unplayable()
        })
        .collect();
    let midnight = |d: NaiveDate| {
        tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
            .earliest()
            .map_or(0, |t| t.timestamp())
            * 1_000_000_000
    };
    let from = Utc(midnight(date));
    let until = Utc(midnight(date.succ_opt().unwrap_or(date)));
    let local = |u: Utc| tz.timestamp_nanos(u.0).format("%H:%M:%S%.3f").to_string();
    let t = resolve(&entries, &filler_clips, &table, from, until).map_err(|e| {
        let message = match e {
            playout::schedule::ScheduleError::GapWithoutFiller { from, to } => format!(
                "a gap from {} to {} with nothing to fill it (the channel has no filler and its playlist none that plays)",
                local(from),
                local(to)
            ),
            e => e.to_string(),
        };
        ApiError::NotLaidOut {
            errors: vec![message],
        }
    })?;
    let segs = t.segments();
    let rows: Vec<serde_json::Value> = segs
        .iter()
        .enumerate()
        .map(|(k, seg)| {
            let (what, label) = match seg.source {
                Source::Entry(i) => (
                    format!("item {}", i + 1),
                    day.items.get(i).map(|it| it.label()).unwrap_or_default(),
                ),
                Source::Filler => ("filler".to_owned(), "gap".to_owned()),
            };
            // Cut short by the next entry's hard start: an overlap in the plan.
            let cut_by = segs.get(k + 1).and_then(|n| match n.source {
                Source::Entry(j) if seg.cut => match entries.get(j).map(|e| e.start) {
                    Some(Start::Hard(at)) if at == n.start => Some(format!("item {}", j + 1)),
                    _ => None,
                },
                _ => None,
            });
            serde_json::json!({
                "start": local(seg.start),
                "end": local(seg.end),
                "duration_s": seg.duration() as f64 / 1e9,
                "what": what,
                "label": label,
                "file": names.get(seg.media.0 as usize).map(|p| p.display().to_string()),
                "live": (seg.media == live_media).then(|| match seg.source {
                    Source::Entry(i) => day.items.get(i).map(|it| it.what()),
                    Source::Filler => None,
                }),
                "offset_s": seg.offset as f64 / 1e9,
                "cut_by": cut_by,
            })
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "channel": channel,
            "date": date.to_string(),
            "revision": day.revision,
            "timezone": tz.name(),
            "segments": rows,
            "warnings": warnings,
        }),
    ))
}

/// Now, next, position and remaining from the schedule, and the engine's counters.
fn channel_status(state: &ApiState, channel: &str) -> serde_json::Value {
    let now = crate::schedule::driver::now_utc();
    let engine = state
        .status
        .borrow()
        .iter()
        .find(|s| s.id == channel)
        .cloned();
    let views = state.views.borrow();
    let (now_json, next_json) = match views
        .get(channel)
        .and_then(|v| crate::overview::schedule_now_next(v, now))
    {
        Some((cur, next)) => (Some(cur), next),
        None => (None, None),
    };
    serde_json::json!({
        "channel": channel,
        "now_utc": crate::overview::utc(now),
        "scheduled": now_json.is_some(),
        "now": now_json,
        "next": next_json,
        "engine": engine,
    })
}

/// Every alarm, raised or not: the disks the daemon writes, the HTTP listener, panics.
fn alarms(state: &ApiState) -> Vec<crate::alarm::AlarmState> {
    let mut alarms = vec![state.store.alarm().state()];
    if let Some(desk) = &state.alerts {
        alarms.extend(desk.alarms());
    }
    alarms.push(state.listener.alarm.state());
    if let Some(a) = &state.archives {
        alarms.push(a.alarm.state());
    }
    alarms.extend(crate::supervise::panic_alarms());
    alarms
}

/// `GET /api/archive/{channel}[?date=YYYY-MM-DD]`: what the channel's archive holds (span,
/// segments, bytes) and the items that began on a day in the channel's zone (default today),
/// each with its catch-up playlists.
fn archive_listing(
    state: &ApiState,
    channel: &str,
    date: Option<&String>,
) -> Result<serde_json::Value, ApiError> {
    use chrono::TimeZone;
    let Some(archive) = state.archives.as_ref().and_then(|a| a.get(channel)) else {
        return Err(ApiError::NotFound(format!(
            "channel `{channel}` is not archived ([channel.archive])"
        )));
    };
    let tz = state
        .zones
        .iter()
        .find(|z| z.0 == channel)
        .map_or(epg::schedule::Tz::UTC, |z| z.1);
    let day = match date {
        Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map_err(|_| ApiError::BadRequest(format!("`{d}` is not a date like 2026-12-06")))?,
        None => chrono::Utc::now().with_timezone(&tz).date_naive(),
    };
    let at = |d: NaiveDate| {
        tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
            .earliest()
            .and_then(|t| t.timestamp_nanos_opt())
            .unwrap_or(0)
    };
    let (from, to) = (at(day), at(day.succ_opt().unwrap_or(day)));
    let ix = archive.index.read().unwrap_or_else(PoisonError::into_inner);
    let utc = |ns: i64| crate::overview::utc(Utc(ns));
    let items: Vec<serde_json::Value> = ix
        .marks_between(from, to)
        .into_iter()
        .map(|(m, end)| {
            let secs = m.utc_ns.div_euclid(1_000_000_000);
            serde_json::json!({
                "kind": m.mark,
                "title": m.title,
                "event_id": m.event_id,
                "start": utc(m.utc_ns),
                "end": end.map(utc),
                "catchup": format!(
                    "/hls/{channel}/live.m3u8?from={secs}{}",
                    end.map_or(String::new(), |e| format!("&to={}", e.div_euclid(1_000_000_000) + 1))
                ),
                "catchup_event": m.event_id.map(|e| format!("/hls/{channel}/event/{e}.m3u8")),
            })
        })
        .collect();
    Ok(serde_json::json!({
        "channel": channel,
        "date": day.to_string(),
        "timezone": tz.name(),
        "segments": ix.len(),
        "bytes": ix.bytes(),
        "first": ix.first().map(|s| utc(s.start_utc_ns)),
        "last_end": ix.last().map(|s| utc(s.end_utc_ns())),
        "keep_s": archive.keep_ns / 1_000_000_000,
        "items": items,
    }))
}

/// `GET /api/overview`: the whole station at a glance (`crate::overview`).
fn overview(state: &ApiState) -> serde_json::Value {
    let (recent, open) = state.journal.shown();
    let status = state.status.borrow().clone();
    let views = state.views.borrow();
    let guides = state.guides.borrow();
    let parts = crate::overview::Parts {
        now: crate::schedule::driver::now_utc(),
        channels: state
            .guide_channels
            .iter()
            .map(|c| (c.id(), c.name()))
            .collect(),
        status: &status,
        views: &views,
        guides: &guides,
        alerts: state.alerts.as_ref().map(|d| d.list()),
        recent,
        open,
        alarms: alarms(state),
    };
    crate::overview::build(&parts)
}

fn target(state: &ApiState, channel: &str, date: &str) -> Result<(String, NaiveDate), ApiError> {
    if !state.channels.iter().any(|c| c == channel) {
        return Err(ApiError::NotFound(format!("no channel `{channel}`")));
    }
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map_err(|_| ApiError::BadRequest(format!("`{date}` is not a date like 2026-11-23")))?;
    // The playout clock counts nanoseconds from 1970 in 64 bits (fuzz/regressions/http_request).
    let (first, last) = (epg::schedule::FIRST_DATE, epg::schedule::LAST_DATE);
    if !(first..=last).contains(&date) {
        return Err(ApiError::BadRequest(format!(
            "{date} is outside {first}..={last}, the days the playout clock can hold"
        )));
    }
    Ok((channel.to_owned(), date))
}

/// The answer to a read of `/channels` or `/metrics` (they show addresses and paths) that
/// may not be made: once named tokens are configured, reading needs one (any role).
pub(crate) fn read_refused<B>(state: &ApiState, req: &Request<B>) -> Option<Response<Bytes>> {
    if !state.auth.reads_need_a_token() {
        return None;
    }
    authorize(state, req, Need::Read)
        .err()
        .map(ApiError::into_response)
}

/// The answer to a request for an HLS key (`/hls/CHANNEL/key/N`) that may not be made: it
/// needs a valid token of any role, whatever else the config says.
pub(crate) fn key_refused<B>(state: &ApiState, req: &Request<B>) -> Option<Response<Bytes>> {
    authorize(state, req, Need::Read)
        .err()
        .map(ApiError::into_response)
}

/// The request's bearer token (`Authorization: Bearer ...`), `""` when none.
fn bearer<B>(req: &Request<B>) -> &str {
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("")
        .trim()
}

/// The source address of a request, put in its extensions by the listener.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer(pub(crate) std::net::SocketAddr);

/// When a request must have arrived whole (`http.request_timeout` after its head), put in its
/// extensions by the listener: a body still coming then is answered 408. What a request asks
/// is never cut short once it has arrived, so a 408 always means nothing was changed (and the
/// audit trail has every change with its real answer).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline {
    pub(crate) at: tokio::time::Instant,
    pub(crate) limit: std::time::Duration,
}

/// `body` (reading a request's body), unless the request's [`Deadline`] comes first.
async fn by_deadline<T, E>(
    deadline: Option<Deadline>,
    body: impl std::future::Future<Output = Result<T, E>>,
    late: impl FnOnce(ApiError) -> E,
) -> Result<T, E> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d.at, body)
            .await
            .unwrap_or_else(|_| Err(late(ApiError::Timeout(d.limit)))),
        None => body.await,
    }
}

/// Who sent `req` (its `Authorization: Bearer` token), if they may do `need`.
fn authorize<B>(state: &ApiState, req: &Request<B>, need: Need<'_>) -> Result<Caller, ApiError> {
    use crate::auth::Denied;
    let changes = !matches!(need, Need::Read | Need::Emergency);
    if changes && !state.auth.any() {
        return Err(ApiError::NoToken);
    }
    let given = bearer(req);
    let from = req.extensions().get::<Peer>().map(|p| p.0.ip());
    state.auth.check(given, from, need).map_err(|d| match d {
        Denied::Unauthenticated => ApiError::Unauthorized,
        Denied::TooManyFailures => ApiError::TooManyFailures,
        Denied::Forbidden { caller, role } => ApiError::Forbidden(format!(
            "token `{caller}` ({} role) may not do this{}",
            role.name(),
            match need {
                Need::Schedule(c) | Need::Operate(c) => format!(" on channel `{c}`"),
                _ => String::new(),
            }
        )),
    })
}

fn alert_desk(state: &ApiState) -> Result<Arc<crate::alert::Desk>, ApiError> {
    state
        .alerts
        .clone()
        .ok_or_else(|| ApiError::NotFound("no [alerts] is configured: alerts are refused".into()))
}

/// The body, at most `limit` bytes.
async fn read_bytes(req: Request<Incoming>, limit: u64) -> Result<Vec<u8>, ApiError> {
    let deadline = req.extensions().get::<Deadline>().copied();
    let body = req.into_body();
    let collected = by_deadline(
        deadline,
        async {
            Limited::new(body, limit as usize)
                .collect()
                .await
                .map_err(|e| {
                    if e.to_string().contains("length limit exceeded") {
                        ApiError::TooLarge(limit)
                    } else {
                        ApiError::BadRequest(format!("reading the body: {e}"))
                    }
                })
        },
        |e| e,
    )
    .await?;
    Ok(collected.to_bytes().to_vec())
}

/// Why a body was not spooled.
enum Spooled {
    /// The disk refused it.
    Io(std::io::Error),
    Api(ApiError),
}

/// Writes the body to `spool` as it comes, at most `limit` bytes; its length.
async fn spool_body(
    req: Request<Incoming>,
    spool: &std::path::Path,
    limit: u64,
) -> Result<u64, Spooled> {
    use tokio::io::AsyncWriteExt;
    let deadline = req.extensions().get::<Deadline>().copied();
    let mut file = tokio::fs::File::create(spool).await.map_err(Spooled::Io)?;
    let mut body = req.into_body();
    let spooled = async {
        let mut len = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                Spooled::Api(ApiError::BadRequest(format!("reading the body: {e}")))
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            len += data.len() as u64;
            if len > limit {
                return Err(Spooled::Api(ApiError::TooLarge(limit)));
            }
            file.write_all(&data).await.map_err(Spooled::Io)?;
        }
        file.flush().await.map_err(Spooled::Io)?;
        Ok(len)
    };
    by_deadline(deadline, spooled, Spooled::Api).await
}

/// The revision named by `If-Match: "N"` (quotes optional).
fn if_match<B>(req: &Request<B>) -> Result<u64, ApiError> {
    let value = req
        .headers()
        .get(IF_MATCH)
        .ok_or(ApiError::PreconditionRequired)?;
    let text = value.to_str().unwrap_or("").trim().trim_matches('"');
    text.parse()
        .map_err(|_| ApiError::BadRequest(format!("If-Match `{text}` is not a revision number")))
}

async fn read_body(req: Request<Incoming>) -> Result<String, ApiError> {
    String::from_utf8(read_bytes(req, MAX_BODY as u64).await?)
        .map_err(|e| ApiError::BadRequest(format!("the body is not UTF-8: {e}")))
}

async fn get(
    state: &ApiState,
    channel: String,
    date: NaiveDate,
    revision: Option<u64>,
) -> Result<Response<Bytes>, ApiError> {
    let store = state.store.clone();
    let day = tokio::task::spawn_blocking(move || {
        let day = match revision {
            None => Some(store.read(&channel, date)?),
            Some(r) => store.read_revision(&channel, date, r)?,
        };
        Ok::<_, StoreError>((channel, day))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(store_error)?;
    let (channel, day) = day;
    let Some(day) = day else {
        return Err(ApiError::NotFound(format!(
            "{channel} {date}: no revision {} (kept: the current one and those it replaced)",
            revision.unwrap_or(0)
        )));
    };
    let items: Vec<serde_json::Value> = day
        .items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            serde_json::json!({
                "n": i + 1,
                "line": it.line,
                "start": it.start.map(|(t, _)| t.to_string()),
                "mode": it.start.map(|(_, m)| format!("{m:?}").to_lowercase()),
                "files": it.paths(),
                "title": it.programme.title,
                "label": it.label(),
            })
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "channel": channel,
            "date": day.date.to_string(),
            "revision": day.revision,
            "items": items,
            "toml": day.to_toml(),
        }),
    ))
}

async fn put(
    state: &Arc<ApiState>,
    channel: String,
    date: NaiveDate,
    expected: u64,
    body: String,
    who: Option<String>,
) -> Result<Response<Bytes>, ApiError> {
    // Parsing and checking a large day (tens of thousands of items, each file looked up) is
    // work for the blocking pool, not for the threads that serve the set-top boxes.
    let (st, ch) = (state.clone(), channel.clone());
    let (day, warnings) = tokio::task::spawn_blocking(move || checked_day(&st, &ch, date, &body))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let store = state.store.clone();
    let items = day.items.len();
    let ch = channel.clone();
    let revision = tokio::task::spawn_blocking(move || store.write(&ch, &day, expected))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| {
            let what = format!("write of the schedule of {date}");
            refused_write(state, &e, &channel, &who, &what);
            store_error(e)
        })?;
    tracing::info!(%channel, %date, revision, items, missing_files = warnings.len(), "schedule written");
    note_manual(
        state,
        &channel,
        "schedule",
        format!(
            "schedule of {date} written: revision {revision}, {items} item(s), {} warning(s)",
            warnings.len()
        ),
        who,
    );
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "channel": channel,
            "date": date.to_string(),
            "revision": revision,
            "warnings": warnings,
        }),
    ))
}

/// The day a schedule PUT carries, checked (its date, text encoding, live inputs, files
/// confined to the media directory), with a warning for each file not there yet.
fn checked_day(
    state: &ApiState,
    channel: &str,
    date: NaiveDate,
    body: &str,
) -> Result<(epg::schedule::Day, Vec<String>), ApiError> {
    let day = epg::schedule::parse(body).map_err(|errors| ApiError::Invalid {
        errors: errors.0.iter().map(ToString::to_string).collect(),
    })?;
    if day.date != date {
        return Err(ApiError::Invalid {
            errors: vec![format!(
                "date: {} in the file is not {date} in the URL",
                day.date
            )],
        });
    }
    if let Some((_, charset)) = state.charsets.iter().find(|(c, _)| *c == channel) {
        let errors = day.check_charset(*charset);
        if !errors.is_empty() {
            return Err(ApiError::Invalid {
                errors: errors.iter().map(ToString::to_string).collect(),
            });
        }
    }
    if let Some((_, inputs)) = state.inputs.iter().find(|(c, _)| *c == channel) {
        let errors = day.check_inputs(inputs);
        if !errors.is_empty() {
            return Err(ApiError::Invalid {
                errors: errors.iter().map(ToString::to_string).collect(),
            });
        }
    }
    // Files only inside the media directory (no absolute path, no `..`, no symbolic link
    // out of it), regular files only.
    let mut errors: Vec<String> = day.check_paths().iter().map(ToString::to_string).collect();
    if errors.is_empty() {
        for (i, it) in day.items.iter().enumerate() {
            for p in it.paths() {
                if let Err(why) = crate::schedule::confine::media_file(&state.media_dir, p) {
                    errors.push(format!(
                        "line {}: item {} ({}): `{p}`: {why}",
                        it.line,
                        i + 1,
                        it.label()
                    ));
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid { errors });
    }
    // Files not there yet are accepted (they may be uploaded later), with a warning each.
    let warnings: Vec<String> = day
        .items
        .iter()
        .enumerate()
        .flat_map(|(i, it)| {
            it.paths()
                .into_iter()
                .filter(|p| !state.media_dir.join(p).is_file())
                .map(move |p| {
                    format!(
                        "line {}: item {} ({}): `{p}` does not exist (yet): until it does, its slot airs the filler",
                        it.line,
                        i + 1,
                        it.label()
                    )
                })
        })
        .collect();
    Ok((day, warnings))
}

/// A schedule write the disk refused goes on the stoppage record as the operator's action
/// that did not happen (the alarm is the store's).
fn refused_write(
    state: &ApiState,
    e: &StoreError,
    channel: &str,
    who: &Option<String>,
    what: &str,
) {
    if let StoreError::Io { .. } = e {
        note_manual(
            state,
            channel,
            "schedule",
            format!("{what} refused, nothing changed: {e}"),
            who.clone(),
        );
    }
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict { current, .. } => ApiError::Conflict {
            current,
            message: e.to_string(),
        },
        StoreError::Invalid { errors, .. } => ApiError::Invalid {
            errors: errors.0.iter().map(ToString::to_string).collect(),
        },
        StoreError::BadChannel(c) => ApiError::NotFound(format!("no channel `{c}`")),
        StoreError::NoHistory { .. } => ApiError::NothingToUndo(e.to_string()),
        StoreError::Unshared(_) => ApiError::Unavailable(e.to_string()),
        StoreError::Io { .. } => {
            tracing::error!(error = %e, "schedule store: a write failed; nothing changed");
            ApiError::Storage {
                full: e.is_full(),
                message: format!("{e}; nothing changed, the schedule in force stays"),
            }
        }
        StoreError::Corrupt { .. } => {
            tracing::error!(error = %e, "schedule store");
            ApiError::Internal(e.to_string())
        }
    }
}
