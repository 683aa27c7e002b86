//! `headend run`: every channel on air until SIGINT or SIGTERM. The engine thread paces the
//! outputs; a small tokio runtime serves HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api::ApiState;
use crate::config::Config;
use crate::engine::Engine;
use crate::output::http::{self, HttpChannel, HttpState};
use crate::schedule::driver::{self, ScheduledChannel};
use crate::schedule::store::Store;
use crate::shutdown::Trigger;
use crate::station::{self, StationSpec};

/// Runs `config` until a signal; `on_ready` gets the HTTP address once everything is up.
pub(crate) fn run(config: &Config, on_ready: impl FnOnce(SocketAddr)) -> anyhow::Result<()> {
    let specs = station::specs(config);
    // Before any thread: the HTTP store's tmpfs is mounted by a forked child.
    crate::feed::prepare_files();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("http")
        // A panic serving a request costs that request, not the channels (supervise).
        .on_thread_start(crate::supervise::contain_thread)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = rt.block_on(async {
        let listener = TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("http.listen: cannot listen on {}", config.http.listen))?;
        let listen = listener.local_addr()?;
        // The stoppage record first: what the engine, the desk and the API report goes on it.
        let hooks = if config.record.webhooks.is_empty() {
            None
        } else {
            Some(crate::record::hooks::Hooks::start(&config.record.webhooks)?)
        };
        let mut zones: Vec<(String, epg::schedule::Tz)> = config
            .channels
            .iter()
            .map(|c| (c.id.clone(), c.timezone))
            .collect();
        for m in &config.mpts {
            let tz = config
                .channels
                .iter()
                .find(|c| m.channels.contains(&c.id))
                .map_or(epg::schedule::Tz::UTC, |c| c.timezone);
            zones.push((m.id.clone(), tz));
        }
        let journal = crate::record::Journal::start(&config.record.file, &zones, hooks.clone())
            .with_context(|| format!("record.file {}", config.record.file.display()))?;
        // The channels' archives: one writer thread, fed by the engine without waiting.
        let archived: Vec<(String, crate::config::archive::ArchiveConfig, u64)> = config
            .channels
            .iter()
            .filter_map(|c| Some((c.id.clone(), c.archive.clone()?, c.muxrate.bps())))
            .collect();
        let archives = if archived.is_empty() {
            None
        } else {
            Some(Arc::new(crate::archive::Archives::start(&archived)?))
        };
        // With a fleet, the agent first: every station's gate is shut until this node holds
        // the channel in etcd.
        let mut fleet = match &config.fleet {
            Some(f) => {
                let placed = crate::fleet::placed(&specs);
                let missing = crate::config::missing_media(config)
                    .into_iter()
                    .map(|(_, file, _)| file.display().to_string())
                    .collect();
                Some(crate::fleet::Fleet::start(f, placed, missing)?)
            }
            None => None,
        };
        let store = Arc::new(Store::new(config.schedules.dir.clone()));
        // With a fleet, schedules are shared: writes agreed in etcd, every node's copy kept;
        // and each station plays from its origin, in step with the other nodes.
        let origins = match (&fleet, &config.fleet) {
            (Some(_), Some(cfg)) => crate::fleet::origins::origins(cfg, &specs, driver::now_utc().0),
            _ => Vec::new(),
        };
        let in_step = match (&fleet, &config.fleet) {
            (Some(f), Some(cfg)) => {
                f.share_schedules(store.clone());
                Some(crate::engine::InStep {
                    gates: &f.gates,
                    origins: origins.clone(),
                    store: &store,
                    lease: cfg.lease,
                })
            }
            _ => None,
        };
        let engine = Engine::start(
            config,
            &specs,
            config.engine.realtime_priority,
            config.engine.threads,
            &journal,
            archives.as_deref(),
            in_step.as_ref(),
        )?;
        drop(in_step);
        if let Some(f) = &fleet {
            f.set_out_of_step(
                specs
                    .iter()
                    .zip(&engine.in_step)
                    .filter(|(_, ok)| !**ok)
                    .map(|(s, _)| s.id.clone())
                    .collect(),
            );
            // The origins the stations play from (those not caught up play on this node's
            // clock).
            f.set_playing(
                origins
                    .into_iter()
                    .zip(&engine.from_origin)
                    .map(|(o, timed)| o.filter(|_| *timed))
                    .collect(),
            );
            f.set_ready();
        }
        // The live channels: each with its station and its inputs' names.
        let live: Vec<crate::fleet::locks::LiveChannel> = specs
            .iter()
            .enumerate()
            .flat_map(|(i, spec)| {
                spec.channels
                    .iter()
                    .filter(|c| !c.inputs.is_empty())
                    .map(move |c| crate::fleet::locks::LiveChannel {
                        channel: c.id.clone(),
                        station: i,
                        inputs: c.inputs.iter().map(|x| x.name.clone()).collect(),
                    })
            })
            .collect();
        if let Some(f) = &fleet {
            f.share_locks(engine.schedule.clone(), live.clone());
        }
        let channels = config
            .channels
            .iter()
            .filter_map(|ch| {
                let i = specs.iter().position(|s| s.id == ch.id)?;
                let feed = engine.feeds.get(i)?.clone()?;
                Some(HttpChannel {
                    id: ch.id.clone(),
                    name: ch.name.clone(),
                    provider: ch.provider.clone(),
                    service_id: ch.service_id,
                    feed,
                })
            })
            .collect();
        let scheduled = specs
            .iter()
            .enumerate()
            .filter_map(|(i, spec)| {
                Some(ScheduledChannel::of(i, spec.single_channel()?))
            })
            .collect();
        let (trigger, shutdown) = Trigger::new();
        let views: driver::ScheduleViews = Arc::default();
        let guides: crate::guide::Guides = Arc::default();
        let (mailbox, wakes) = std::sync::mpsc::channel();
        let resumed = std::mem::take(
            &mut *engine
                .schedulers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let scheduler = driver::start(
            scheduled,
            resumed,
            driver::SchedulerLinks {
                store: store.clone(),
                media_dir: config.schedules.media_dir.clone(),
                maps: engine.maps.clone(),
                sink: engine.schedule.clone(),
                views: views.clone(),
                guides: guides.clone(),
                wakes,
                shutdown: shutdown.clone(),
            },
        )
        .context("starting the scheduler")?;
        let xmltv: Vec<crate::guide::XmltvChannel> = specs
            .iter()
            .enumerate()
            .filter_map(|(i, spec)| crate::guide::XmltvChannel::of(i, spec.single_channel()?))
            .collect();
        let watcher = if xmltv.is_empty() {
            None
        } else {
            Some(
                crate::guide::watch_xmltv(
                    xmltv,
                    engine.schedule.clone(),
                    guides.clone(),
                    shutdown.clone(),
                )
                .context("starting the XMLTV watcher")?,
            )
        };
        let desk = crate::alert::Desk::new(
            config,
            crate::alert::DeskLinks {
                sink: engine.schedule.clone(),
                returns: mailbox.clone(),
                reports: engine
                    .air_reports
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take(),
                placement: placement(&specs),
                journal: journal.clone(),
            },
        )?
        .map(Arc::new);
        if let Some(desk) = &desk {
            // What was on air when the daemon stopped goes back on air.
            desk.restore(chrono::Utc::now());
            // With a fleet, alerts are the fleet's: what any node accepted goes on air here.
            if let Some(f) = &fleet {
                f.share_alerts(desk.clone());
            }
        }
        if let Some(desk) = desk.clone() {
            // Expiries and the engine's on/off-air reports, a few times a second.
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_millis(50));
                loop {
                    tokio::select! {
                        _ = shutdown.wait() => break,
                        _ = every.tick() => desk.tick(chrono::Utc::now()),
                    }
                }
            });
        }
        let api = Arc::new(ApiState {
            alerts: desk,
            store,
            channels: config.channels.iter().map(|c| c.id.clone()).collect(),
            auth: crate::auth::Auth::new(
                crate::auth::load(&config.http.tokens).map_err(anyhow::Error::msg)?,
                config.http.api_token.clone(),
                config.alerts.as_ref().map(|a| a.token.clone()),
            ),
            trail: Some(Arc::new(
                crate::trail::Trail::open(&config.http.audit_log).with_context(|| {
                    format!("http.audit_log: {}", config.http.audit_log.display())
                })?,
            )),
            views,
            guides,
            guide_channels: crate::guide::channels(config),
            charsets: config
                .channels
                .iter()
                .filter(|c| c.si.enabled)
                .map(|c| (c.id.clone(), c.si.charset))
                .collect(),
            inputs: config
                .channels
                .iter()
                .map(|c| (c.id.clone(), c.inputs.iter().map(|i| i.name.clone()).collect()))
                .collect(),
            status: engine.status.clone(),
            zones: config
                .channels
                .iter()
                // What fills gaps, as the scheduler has it: without filler, the playlist.
                .map(|c| {
                    let filler = if c.filler.is_empty() {
                        c.playlist.clone()
                    } else {
                        c.filler.clone()
                    };
                    (c.id.clone(), c.timezone, filler)
                })
                .collect(),
            media_dir: config.schedules.media_dir.clone(),
            requeue: mailbox,
            live: live
                .iter()
                .map(|l| (l.channel.clone(), l.station, l.inputs.clone()))
                .collect(),
            sink: engine.schedule.clone(),
            probes: Default::default(),
            journal: journal.clone(),
            hooks: hooks.clone(),
            listener: Default::default(),
            archives: archives.clone(),
            fleet: fleet
                .as_ref()
                .zip(config.fleet.clone())
                .map(|(f, c)| (f.view.clone(), c)),
        });
        let state = Arc::new(HttpState {
            channels,
            status: engine.status.clone(),
            listen,
            api,
            metrics: Default::default(),
            limits: http::Limits {
                max_connections: fit_open_files(config.http.max_connections),
                ..http::Limits::of(&config.http)
            },
        });
        // The management plane on a listener of its own (with TLS off loopback), or on the
        // streams' listener.
        let (plane, management) = match &config.management {
            None => (http::Plane::All, None),
            Some(m) => {
                let tls = match &m.tls {
                    Some((cert, key)) => Some(Arc::new(
                        crate::output::tls::Tls::load(cert, key)
                            .map_err(|e| anyhow::anyhow!("management.tls_cert: {e}"))?,
                    )),
                    None => None,
                };
                let l = TcpListener::bind(m.listen).await.with_context(|| {
                    format!("management.listen: cannot listen on {}", m.listen)
                })?;
                let at = l.local_addr()?;
                tracing::info!(management = %at, tls = tls.is_some(), "management plane listening");
                let server = tokio::spawn(http::serve(
                    l,
                    state.clone(),
                    shutdown.clone(),
                    http::Plane::Management,
                    tls,
                ));
                (http::Plane::Streaming, Some(server))
            }
        };
        let server = tokio::spawn(http::serve(listener, state, shutdown.clone(), plane, None));
        drop(shutdown);
        tracing::info!(%listen, channels = config.channels.len(), mpts = config.mpts.len(), "on air");
        on_ready(listen);
        // The service manager (Type=notify): on air, and the watchdog fed by the engine.
        crate::notify::notify("READY=1");
        crate::notify::start_watchdog();
        let signal = wait_for_signal().await?;
        tracing::info!(signal, "shutting down");
        crate::notify::notify("STOPPING=1");
        // One shutdown: HTTP stops accepting, the scheduler, the XMLTV watcher and the desk's
        // clock stop; then the engine sends its last datagrams.
        trigger.shutdown();
        let _ = server.await;
        if let Some(m) = management {
            let _ = m.await;
        }
        if !trigger.completed(Duration::from_secs(5)).await {
            tracing::warn!("a task did not stop within 5 s of the shutdown; stopping the engine anyway");
        }
        // The engine sends its last datagrams and closes the feeds, which ends HTTP bodies.
        tokio::task::spawn_blocking(move || {
            // Leaving the fleet first: this node stops sending and its channels start on
            // the others at once (its lease revoked).
            if let Some(f) = &mut fleet {
                f.stop();
            }
            let _ = scheduler.join();
            if let Some(w) = watcher {
                let _ = w.join();
            }
            engine.stop();
            // The segments being written end where the output did.
            if let Some(a) = &archives {
                a.stop();
            }
            // What is open ends with the run; the webhooks get a little time to deliver.
            journal.stop(signal);
            if let Some(h) = hooks {
                h.stop(Duration::from_secs(2));
            }
        })
            .await
            .context("stopping the engine")?;
        anyhow::Ok(())
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Descriptors kept for what is not an HTTP connection (files, sockets, threads' pipes).
const OTHER_FILES: u64 = 256;

/// `http.max_connections`, once the open-file limit is raised to fit it (to the hard limit
/// at most); lowered, with a warning, to what fits if it cannot be: a connection past the
/// limit would otherwise fail at `accept`, before it could be answered 503.
fn fit_open_files(max_connections: usize) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return max_connections;
    };
    let want = max_connections as u64 + OTHER_FILES;
    let mut have = soft;
    if soft < want {
        let raised = want.min(hard);
        if setrlimit(Resource::RLIMIT_NOFILE, raised, hard).is_ok() {
            have = raised;
        }
    }
    if have >= want {
        return max_connections;
    }
    let fits = have.saturating_sub(OTHER_FILES).max(16) as usize;
    tracing::warn!(
        max_connections,
        open_files = have,
        lowered_to = fits,
        "http.max_connections: the open-file limit (RLIMIT_NOFILE) is too low for it; lowered"
    );
    fits
}

/// Where each channel is: (channel id, station, program, whether it is a station of its own).
fn placement(specs: &[StationSpec]) -> Vec<(String, usize, usize, bool)> {
    specs
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            let single = s.single_channel().is_some();
            s.channels
                .iter()
                .enumerate()
                .map(move |(p, c)| (c.id.clone(), i, p, single))
        })
        .collect()
}

async fn wait_for_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
