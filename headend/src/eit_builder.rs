//! EIT schedule encoding off the engine threads. Encoding a service's week (and, at midnight
//! UTC, moving every segment to the new day) takes about 2 ms per channel the first time and
//! 0.4 ms at a day rollover (BENCHMARKS.md §7): on an engine thread pacing 150 channels that
//! would hold every datagram back by up to 300 ms. Here one thread owns every service's
//! `EitSchedule`; the engine hands it the week's events and gets back the tables that changed,
//! which it only has to packetise.

use std::collections::HashMap;
use std::sync::mpsc;

use bytes::Bytes;
use chrono::NaiveDate;
use epg::eit_cache::EitSchedule;
use epg::si::Event;

/// A service's EIT schedule tables that changed: (table_id, sections).
pub(crate) type Tables = Vec<(u8, Vec<Bytes>)>;

/// What the builder sends back.
#[derive(Debug)]
pub(crate) struct Built {
    pub(crate) service_id: u16,
    pub(crate) tables: Tables,
}

/// What a station's SI asks of the builder.
#[derive(Debug)]
pub(crate) enum EitJob {
    /// A service to keep the EIT schedule of.
    Register {
        service_id: u16,
        schedule: Box<EitSchedule>,
    },
    /// The service's events now (its whole week), with `today` (UTC) as the first day.
    Week {
        service_id: u16,
        events: Vec<Event>,
        today: NaiveDate,
    },
}

impl EitJob {
    fn service_id(&self) -> u16 {
        match self {
            EitJob::Register { service_id, .. } | EitJob::Week { service_id, .. } => *service_id,
        }
    }
}

/// Every service's EIT schedule, by (station, service_id): the builder's state, with no
/// thread of its own. `headend render` uses it inline; the engine on [`EitBuilder`]'s thread.
#[derive(Default)]
pub(crate) struct EitBuilds {
    services: HashMap<(usize, u16), EitSchedule>,
}

impl EitBuilds {
    /// Does `job` of station `station`: the tables that changed, if any.
    pub(crate) fn apply(&mut self, station: usize, job: EitJob) -> Option<Built> {
        let key = (station, job.service_id());
        match job {
            EitJob::Register { schedule, .. } => {
                self.services.insert(key, *schedule);
                None
            }
            EitJob::Week { events, today, .. } => {
                let schedule = self.services.get_mut(&key)?;
                match schedule.update(&events, today) {
                    Ok(update) => {
                        let tables: Tables = schedule
                            .tables()
                            .filter(|t| update.changed_tables.contains(&t.table_id))
                            .map(|t| (t.table_id, t.sections.to_vec()))
                            .collect();
                        (!tables.is_empty()).then_some(Built {
                            service_id: key.1,
                            tables,
                        })
                    }
                    Err(e) => {
                        tracing::warn!(service_id = key.1, error = %e, "EIT schedule not sent");
                        None
                    }
                }
            }
        }
    }
}

/// A job of one station, and where its answer goes.
struct Job {
    station: usize,
    job: EitJob,
    reply: mpsc::Sender<(usize, Built)>,
}

/// The handle the engine's threads use; cheap to clone.
#[derive(Clone)]
pub(crate) struct EitBuilder {
    tx: mpsc::Sender<Job>,
}

impl EitBuilder {
    /// Starts the builder thread; it ends when every handle is gone.
    pub(crate) fn start() -> std::io::Result<EitBuilder> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("eit-builder".to_owned())
            .spawn(move || run(&rx))?;
        Ok(EitBuilder { tx })
    }

    /// Hands over `job` of station `station`; the answer comes on `reply` with the station.
    pub(crate) fn send(&self, station: usize, job: EitJob, reply: &mpsc::Sender<(usize, Built)>) {
        let _ = self.tx.send(Job {
            station,
            job,
            reply: reply.clone(),
        });
    }
}

fn run(rx: &mpsc::Receiver<Job>) {
    let mut builds = EitBuilds::default();
    while let Ok(Job {
        station,
        job,
        reply,
    }) = rx.recv()
    {
        if let Some(b) = builds.apply(station, job) {
            let _ = reply.send((station, b));
        }
    }
}
