//! EIT schedule encoding off the engine threads. Encoding a service's week (and, at midnight
//! UTC, moving every segment to the new day) takes about 2 ms per channel the first time and
//! 0.4 ms at a day rollover (BENCHMARKS.md §7): on an engine thread pacing 150 channels that
//! would hold every datagram back by up to 300 ms. Here one thread owns every service's
//! `EitSchedule` ([`EitBuilds`], by station); the engine hands it the jobs of each station's SI
//! carousel and gets back the tables that changed, which it only has to packetise.

use std::sync::mpsc;

use epg::eit_cache::{Built, EitBuilds, EitJob};
use playout::time::Ticks27M;

/// A job of one station, and where its answer goes.
struct Job {
    station: usize,
    job: EitJob,
    /// The output time the station gave it at, handed back with the answer.
    at: Ticks27M,
    reply: mpsc::Sender<Answer>,
}

/// An answer: the station, the output time its job was given at, the tables built.
pub(crate) type Answer = (usize, Ticks27M, Built);

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

    /// Hands over `job` of station `station`, given at output time `at`; the answer comes on
    /// `reply` with both.
    pub(crate) fn send(
        &self,
        station: usize,
        job: EitJob,
        at: Ticks27M,
        reply: &mpsc::Sender<Answer>,
    ) {
        let _ = self.tx.send(Job {
            station,
            job,
            at,
            reply: reply.clone(),
        });
    }
}

fn run(rx: &mpsc::Receiver<Job>) {
    let mut builds = EitBuilds::default();
    while let Ok(Job {
        station,
        job,
        at,
        reply,
    }) = rx.recv()
    {
        // A panic costs the job: the service's schedule is put back as it was (its tables on
        // air stay; a service being registered is registered), and its next week is built
        // afresh.
        let service_id = job.service_id();
        let before = match &job {
            EitJob::Register { schedule, .. } => Some((**schedule).clone()),
            EitJob::Week { .. } => builds.get(station, service_id).cloned(),
        };
        let built = crate::supervise::contain(|| {
            crate::supervise::chaos(|| "eit-builder".to_owned());
            builds.apply(station, job)
        });
        match built {
            Ok(Some(b)) => {
                let _ = reply.send((station, at, b));
            }
            Ok(None) => {}
            Err(why) => {
                if let Some(s) = before {
                    builds.restore(station, s);
                }
                crate::supervise::panicked(
                    "eit builder",
                    format!("service {service_id}: an EIT schedule job panicked ({why}): its tables on air stay"),
                );
            }
        }
    }
}
