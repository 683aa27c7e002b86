//! `hectl epg ...`: the programme guide of a running daemon as XMLTV or JSON, and XMLTV
//! programme metadata merged into a channel's schedule.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};

use crate::client::Server;

/// Writes `text` to `output`, or standard output.
fn emit(text: &str, output: Option<&Path>) -> anyhow::Result<()> {
    match output {
        Some(p) => std::fs::write(p, text).with_context(|| p.display().to_string()),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// `hectl epg export [--channel ID] [-o FILE]`: every channel as XMLTV, or one as JSON.
pub(crate) fn export(
    server: &Server,
    channel: Option<&str>,
    output: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let path = channel.map_or_else(|| "/epg.xml".to_owned(), |c| format!("/epg/{c}.json"));
    let reply = server.request("GET", &path, &[], "", false)?;
    if reply.status != 200 {
        bail!(
            "{path}: the server answered {}: {}",
            reply.status,
            reply.body.trim()
        );
    }
    emit(&reply.body, output)?;
    Ok(ExitCode::SUCCESS)
}

/// Each item's planned (start, end) on `date`, from the daemon's timeline of it.
fn planned(
    server: &Server,
    channel: &str,
    date: NaiveDate,
    items: usize,
) -> anyhow::Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    let t = server
        .request(
            "GET",
            &format!("/api/schedules/{channel}/{date}/timeline"),
            &[],
            "",
            false,
        )?
        .ok()?;
    let tz: epg::schedule::Tz = t["timezone"]
        .as_str()
        .unwrap_or("UTC")
        .parse()
        .map_err(|e| anyhow::anyhow!("the server's time zone: {e}"))?;
    let at = |s: &str, after: Option<DateTime<Utc>>| -> anyhow::Result<DateTime<Utc>> {
        let time = NaiveTime::parse_from_str(s, "%H:%M:%S%.f")
            .with_context(|| format!("the server's timeline time {s:?}"))?;
        let mut t = tz
            .from_local_datetime(&date.and_time(time))
            .earliest()
            .context("a time in a daylight-saving gap")?
            .with_timezone(&Utc);
        // A segment that ends at midnight reads 00:00:00: the next day's.
        if after.is_some_and(|a| t <= a) {
            t += chrono::Duration::days(1);
        }
        Ok(t)
    };
    let epoch = DateTime::<Utc>::MIN_UTC;
    let mut out = vec![(epoch, epoch); items];
    for seg in t["segments"].as_array().into_iter().flatten() {
        let Some(n) = seg["what"]
            .as_str()
            .and_then(|w| w.strip_prefix("item "))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let Some(slot) = out.get_mut(n - 1) else {
            continue;
        };
        let start = at(seg["start"].as_str().unwrap_or_default(), None)?;
        let end = at(seg["end"].as_str().unwrap_or_default(), Some(start))?;
        if slot.0 == epoch {
            *slot = (start, end);
        } else {
            slot.1 = end;
        }
    }
    Ok(out)
}

/// `hectl epg import FILE --channel ID --date D [--xmltv-id X] [--dry-run]`: the XMLTV
/// file's programmes for channel X (default: ID) give their metadata to the items of that
/// date they line up with (by start within 5 minutes, or by overlap); the day is written back
/// on the revision it was read at. A malformed file changes nothing.
pub(crate) fn import(
    server: &Server,
    file: &PathBuf,
    channel: &str,
    date: &str,
    xmltv_id: Option<&str>,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| file.display().to_string())?;
    let guide =
        epg::xmltv::parse_bytes(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let date =
        NaiveDate::parse_from_str(date, "%Y-%m-%d").with_context(|| format!("--date {date}"))?;
    let path = format!("/api/schedules/{channel}/{date}");
    let v = server.request("GET", &path, &[], "", false)?.ok()?;
    if v["revision"].as_u64() == Some(0) {
        bail!("{channel} has no schedule for {date}: nothing to merge into");
    }
    let mut day = epg::schedule::parse(v["toml"].as_str().unwrap_or_default())
        .map_err(|e| anyhow::anyhow!("the server's file: {e}"))?;
    let planned = planned(server, channel, date, day.items.len())?;
    let id = xmltv_id.unwrap_or(channel);
    // Only the programmes around that day: the others would all be "unused".
    let epoch = DateTime::<Utc>::MIN_UTC;
    let lo = planned.iter().filter(|p| p.0 != epoch).map(|p| p.0).min();
    let hi = planned.iter().map(|p| p.1).max();
    let programmes: Vec<&epg::xmltv::Programme> = guide
        .programmes_on(id)
        .into_iter()
        .filter(|p| match (lo, hi) {
            (Some(lo), Some(hi)) => {
                let start = p.start.with_timezone(&Utc);
                start >= lo - chrono::Duration::hours(1) && start < hi + chrono::Duration::hours(1)
            }
            _ => true,
        })
        .collect();
    if programmes.is_empty() {
        bail!(
            "{}: no programme for channel `{id}` on {date} (its XMLTV id is given with --xmltv-id)",
            file.display()
        );
    }
    let report = epg::xmltv::merge(&mut day.items, &planned, &programmes);
    for (i, p) in &report.matched {
        let pr = programmes[*p];
        println!(
            "item {} ({}) ← {} \"{}\"",
            i + 1,
            planned[*i]
                .0
                .with_timezone(&pr.start.timezone())
                .format("%H:%M:%S"),
            epg::xmltv::format_time(pr.start),
            pr.titles.first().map_or("", |t| t.value.as_str())
        );
    }
    for i in &report.unmatched_items {
        println!("item {}: no programme lines up; kept as it was", i + 1);
    }
    let unused = report.unused_programmes.len();
    if dry_run {
        println!(
            "{channel} {date}: {} items would take XMLTV metadata ({unused} programmes unused); nothing written (--dry-run)",
            report.matched.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let revision = server.put_day(channel, &day)?;
    println!(
        "{channel} {date}: {} items took XMLTV metadata ({unused} programmes unused); revision {revision} written",
        report.matched.len(),
    );
    Ok(ExitCode::SUCCESS)
}
