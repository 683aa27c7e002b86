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
pub(crate) struct Built {
    pub(crate) service_id: u16,
    pub(crate) tables: Tables,
}

enum Job {
    Register {
        key: (usize, u16),
        schedule: Box<EitSchedule>,
        reply: mpsc::Sender<Built>,
    },
    Week {
        key: (usize, u16),
        events: Vec<Event>,
        today: NaiveDate,
    },
}

/// The handle the engine's stations use; cheap to clone.
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

    /// Registers service `service_id` of station `station`; its results come on `reply`.
    pub(crate) fn register(
        &self,
        station: usize,
        service_id: u16,
        schedule: EitSchedule,
        reply: mpsc::Sender<Built>,
    ) {
        let _ = self.tx.send(Job::Register {
            key: (station, service_id),
            schedule: Box::new(schedule),
            reply,
        });
    }

    /// The service's events now (its whole week), with `today` (UTC) as the first day.
    pub(crate) fn week(
        &self,
        station: usize,
        service_id: u16,
        events: Vec<Event>,
        today: NaiveDate,
    ) {
        let _ = self.tx.send(Job::Week {
            key: (station, service_id),
            events,
            today,
        });
    }
}

fn run(rx: &mpsc::Receiver<Job>) {
    let mut services: HashMap<(usize, u16), (EitSchedule, mpsc::Sender<Built>)> = HashMap::new();
    while let Ok(job) = rx.recv() {
        match job {
            Job::Register {
                key,
                schedule,
                reply,
            } => {
                services.insert(key, (*schedule, reply));
            }
            Job::Week { key, events, today } => {
                // Only the latest week of each service matters: skip ones already replaced.
                let Some((schedule, reply)) = services.get_mut(&key) else {
                    continue;
                };
                match schedule.update(&events, today) {
                    Ok(update) => {
                        let tables: Tables = schedule
                            .tables()
                            .filter(|t| update.changed_tables.contains(&t.table_id))
                            .map(|t| (t.table_id, t.sections.to_vec()))
                            .collect();
                        if !tables.is_empty() {
                            let _ = reply.send(Built {
                                service_id: key.1,
                                tables,
                            });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(service_id = key.1, error = %e, "EIT schedule not sent")
                    }
                }
            }
        }
    }
}
