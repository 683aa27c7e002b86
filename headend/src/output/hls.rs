//! HLS on the streaming plane, from the channels' archives (`crate::archive`):
//!
//! - `GET /hls/{channel}/live.m3u8`: the live sliding window (the last
//!   [`LIVE_SEGMENTS`] segments);
//! - `?window=2h`: the same with a time-shift (DVR) window reaching that far back (a
//!   player may seek anywhere in it);
//! - `?from=<RFC 3339>`: a playlist starting at that instant and growing with the channel
//!   (the player starts at its beginning);
//! - `GET /hls/{channel}/event/{event_id}.m3u8`: catch-up of an EIT event as it aired, from
//!   its first frame (a segment begins with every item) to the next programme's, alerts
//!   inside it kept (a VOD playlist once it has ended);
//! - `GET /hls/{channel}/{seq}.ts`: a segment;
//! - `GET /hls/{channel}/key/{period}`: with `[channel.archive] key_file`, segments are
//!   served encrypted (AES-128, the key changing every `key_period`) and this gives a key
//!   period's 16 bytes, to a caller with a token of any role (checked by the HTTP side with
//!   `crate::api::key_refused` before [`handle`]).
//!
//! Playlists are `playout::hls`'s; every answer may be read from another origin (a web
//! player's page).

use bytes::Bytes;
use hyper::StatusCode;
use playout::hls::{KeyRef, Kind, Playlist, Segment};

use crate::archive::index::Run;
use crate::archive::Archives;

/// Segments in the live window (RFC 8216 6.2.2: at least three target durations).
pub(crate) const LIVE_SEGMENTS: usize = 6;

/// An answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) content_type: &'static str,
    pub(crate) cache: &'static str,
    pub(crate) body: Bytes,
}

fn text(status: StatusCode, msg: String) -> Reply {
    Reply {
        status,
        content_type: "text/plain; charset=utf-8",
        cache: "no-cache",
        body: Bytes::from(msg),
    }
}

/// The query parameter `key`, percent-decoded (`crate::config::percent_decode`, as the
/// API's); a bad escape is refused with its name.
fn param(query: Option<&str>, key: &str) -> Result<Option<String>, Reply> {
    let Some(v) = query.and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|kv| kv.1))
    }) else {
        return Ok(None);
    };
    crate::config::percent_decode(v).map(Some).ok_or_else(|| {
        text(
            StatusCode::BAD_REQUEST,
            format!("bad %-escape in `{key}`\n"),
        )
    })
}

/// Whether `path` asks for a key (which needs a token).
pub(crate) fn is_key(path: &str) -> bool {
    path.strip_prefix("/hls/")
        .and_then(|r| r.split_once('/'))
        .is_some_and(|(_, f)| f.starts_with("key/"))
}

/// The answer to `path` (`/hls/...`) with `query`; `None` when `path` is not under `/hls/`.
/// A key is given to whoever asks: the caller checks the token first ([`is_key`]).
pub(crate) fn handle(
    archives: Option<&Archives>,
    path: &str,
    query: Option<&str>,
) -> Option<Reply> {
    let rest = path.strip_prefix("/hls/")?;
    let Some((channel, file)) = rest.split_once('/') else {
        return Some(text(StatusCode::NOT_FOUND, "not found\n".into()));
    };
    let Some(archive) = archives.and_then(|a| a.get(channel)) else {
        return Some(text(
            StatusCode::NOT_FOUND,
            format!("channel `{channel}` is not archived ([channel.archive])\n"),
        ));
    };
    if file == "live.m3u8" {
        return Some(live(archive, query));
    }
    if let Some(id) = file
        .strip_prefix("event/")
        .and_then(|f| f.strip_suffix(".m3u8"))
    {
        let Ok(event_id) = id.parse::<u16>() else {
            return Some(text(
                StatusCode::BAD_REQUEST,
                format!("`{id}` is not an EIT event_id (0..=65535)\n"),
            ));
        };
        let found = archive
            .index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .event(event_id);
        return Some(match found {
            // From the programme's first frame (its first segment begins there) to the
            // next programme's: a VOD playlist once it has ended.
            Some((run, ended)) => playlist(
                archive,
                &run,
                if ended { Kind::Vod } else { Kind::Live },
                None,
            ),
            None => text(
                StatusCode::NOT_FOUND,
                format!("{channel}: event {event_id} is not in the archive\n"),
            ),
        });
    }
    if let Some(period) = file.strip_prefix("key/") {
        let key = period
            .parse::<u64>()
            .ok()
            .and_then(|p| archive.period_key(p));
        return Some(match key {
            Some(k) => Reply {
                status: StatusCode::OK,
                content_type: "application/octet-stream",
                cache: "private, no-store",
                body: Bytes::copy_from_slice(&k),
            },
            None => text(
                StatusCode::NOT_FOUND,
                format!(
                    "{channel}: no key `{period}` (segments are served clear, or not a number)\n"
                ),
            ),
        });
    }
    if let Some(seq) = file.strip_suffix(".ts").and_then(|s| s.parse::<u64>().ok()) {
        let seg = archive.index.read().ok().and_then(|ix| ix.get(seq));
        let Some(seg) = seg else {
            return Some(text(
                StatusCode::NOT_FOUND,
                format!("{channel}: no segment {seq} (gone or not yet written)\n"),
            ));
        };
        return Some(match archive.read_served(&seg) {
            Ok(data) => Reply {
                status: StatusCode::OK,
                content_type: "video/mp2t",
                cache: "max-age=86400, immutable",
                body: Bytes::from(data),
            },
            // Removed by retention between the look-up and the read.
            Err(e) => text(
                StatusCode::NOT_FOUND,
                format!("{channel}: segment {seq}: {e}\n"),
            ),
        });
    }
    Some(text(StatusCode::NOT_FOUND, "not found\n".into()))
}

/// An instant of a query: RFC 3339, or Unix seconds (as IPTV players' `{utc}` gives).
fn instant(key: &str, value: &str) -> Result<i64, Reply> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value
            .parse::<i64>()
            .ok()
            .and_then(|s| s.checked_mul(1_000_000_000))
            .ok_or_else(|| {
                text(
                    StatusCode::BAD_REQUEST,
                    format!("`{key}`: {value} is out of range\n"),
                )
            });
    }
    chrono::DateTime::parse_from_rfc3339(value)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| {
            text(
                StatusCode::BAD_REQUEST,
                format!("`{key}`: `{value}` is not an RFC 3339 instant or Unix seconds\n"),
            )
        })
}

/// `GET /archive/{channel}.ts?from=&to=`: the archive between two instants as one
/// continuous transport stream (`playout::join`: the table copies where segments continue
/// left out, counters carried over gaps), from the random access point that begins the
/// segment holding `from` to the end of the one holding `to`. Read and joined a segment at
/// a time on a blocking thread, sent as it comes (a few segments of memory at most); a
/// segment retention removes meanwhile ends the stream there.
pub(crate) fn export(
    archives: Option<&Archives>,
    path: &str,
    query: Option<&str>,
) -> Option<Result<tokio::sync::mpsc::Receiver<Bytes>, Reply>> {
    let channel = path.strip_prefix("/archive/")?.strip_suffix(".ts")?;
    Some(export_run(archives, channel, query))
}

fn export_run(
    archives: Option<&Archives>,
    channel: &str,
    query: Option<&str>,
) -> Result<tokio::sync::mpsc::Receiver<Bytes>, Reply> {
    let Some(archive) = archives.and_then(|a| a.get(channel)) else {
        return Err(text(
            StatusCode::NOT_FOUND,
            format!("channel `{channel}` is not archived ([channel.archive])\n"),
        ));
    };
    let bad = |m: &str| text(StatusCode::BAD_REQUEST, format!("{m}\n"));
    let (Some(from), Some(to)) = (param(query, "from")?, param(query, "to")?) else {
        return Err(bad("give `from` and `to` (RFC 3339 or Unix seconds)"));
    };
    let (from, to) = (instant("from", &from)?, instant("to", &to)?);
    if to <= from {
        return Err(bad("`to` must be after `from`"));
    }
    let run = archive
        .index
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .between(from, to);
    if run.segs.is_empty() {
        return Err(text(
            StatusCode::NOT_FOUND,
            "nothing archived in that span\n".into(),
        ));
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let archive = archive.clone();
    tokio::task::spawn_blocking(move || {
        let mut joiner = playout::join::Joiner::new();
        for seg in &run.segs {
            let data = match archive.read_clear(seg) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(channel = %archive.channel, seq = seg.seq, error = %e, "archive export: a segment cannot be read (gone by retention, or damaged): the export ends there");
                    return;
                }
            };
            let mut out = Vec::with_capacity(data.len());
            joiner.push(&data, usize::from(seg.psi_packets), seg.disc, &mut out);
            if tx.blocking_send(Bytes::from(out)).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// `live.m3u8`: the live window, or with `window` a time-shift window, or with `from` (and
/// `to`) a playlist from an instant (to an instant: the programme's catch-up, a VOD
/// playlist once it has ended).
fn live(archive: &crate::archive::Shared, query: Option<&str>) -> Reply {
    match live_run(archive, query) {
        Ok((run, kind, start)) => playlist(archive, &run, kind, start),
        Err(r) => r,
    }
}

fn live_run(
    archive: &crate::archive::Shared,
    query: Option<&str>,
) -> Result<(Run, Kind, Option<f64>), Reply> {
    let bad = |m: &str| text(StatusCode::BAD_REQUEST, format!("{m}\n"));
    let window = param(query, "window")?;
    let from = param(query, "from")?
        .map(|f| instant("from", &f))
        .transpose()?;
    let to = param(query, "to")?.map(|t| instant("to", &t)).transpose()?;
    let ix = archive
        .index
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (run, kind, start) = match (window, from, to) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(bad("give `window`, or `from` (and `to`), not both"))
        }
        (None, None, Some(_)) => return Err(bad("`to` goes with `from`")),
        (Some(w), None, None) => match crate::config::parse_duration(&w) {
            Ok(d) if !d.is_zero() => (
                ix.between(
                    crate::schedule::driver::now_utc().0 - d.as_nanos() as i64,
                    i64::MAX,
                ),
                Kind::Live,
                None,
            ),
            Ok(_) => return Err(bad("`window` must be more than 0")),
            Err(e) => return Err(bad(&format!("`window`: {e}"))),
        },
        (None, Some(from), to) => {
            if to.is_some_and(|t| t <= from) {
                return Err(bad("`to` must be after `from`"));
            }
            let run = ix.between(from, to.unwrap_or(i64::MAX));
            let Some(first) = run.segs.first() else {
                return Err(text(
                    StatusCode::NOT_FOUND,
                    "nothing archived in that span\n".into(),
                ));
            };
            // From the instant asked for, inside the first segment.
            let into = (from - first.start_utc_ns).max(0) as f64 / 1e9;
            // Ended and recorded to its end: a VOD playlist; otherwise it still grows.
            let ended = to.is_some_and(|t| run.segs.last().is_some_and(|l| l.end_utc_ns() >= t));
            (run, if ended { Kind::Vod } else { Kind::Live }, Some(into))
        }
        (None, None, None) => (ix.tail(LIVE_SEGMENTS), Kind::Live, None),
    };
    drop(ix);
    if run.segs.is_empty() {
        return Err(text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no segment recorded yet\n".into(),
        ));
    }
    Ok((run, kind, start))
}

fn playlist(
    archive: &crate::archive::Shared,
    run: &Run,
    kind: Kind,
    start_offset_s: Option<f64>,
) -> Reply {
    let segments: Vec<Segment> = run
        .segs
        .iter()
        .map(|s| Segment {
            seq: s.seq,
            uri: format!("/hls/{}/{}.ts", archive.channel, s.seq),
            start_utc_ns: s.start_utc_ns,
            duration_ns: s.duration_ns,
            discontinuity: s.disc,
            // The IV is the media sequence number (RFC 8216 5.2): none given.
            key: archive.key_period(s).map(|p| KeyRef {
                uri: format!("/hls/{}/key/{p}", archive.channel),
                iv: None,
            }),
        })
        .collect();
    // A discontinuity before the first segment listed is counted, not marked.
    let first_disc = u64::from(run.segs.first().is_some_and(|s| s.disc));
    let p = Playlist {
        kind,
        segments: &segments,
        discontinuity_sequence: run.discs_before + first_disc,
        start_offset_s,
    };
    Reply {
        status: StatusCode::OK,
        content_type: "application/vnd.apple.mpegurl",
        cache: "no-cache",
        body: Bytes::from(p.render()),
    }
}

#[cfg(test)]
mod tests {
    use super::param;

    #[test]
    fn queries_are_decoded_and_bad_escapes_refused() {
        let q = Some("window=2h&from=2026-12-06T08%3A00%3A00%2B08%3A00");
        assert_eq!(
            param(q, "from").unwrap().as_deref(),
            Some("2026-12-06T08:00:00+08:00")
        );
        assert_eq!(param(q, "to").unwrap(), None);
        let r = param(Some("from=a%2"), "from").unwrap_err();
        assert_eq!(r.status, hyper::StatusCode::BAD_REQUEST);
    }
}
