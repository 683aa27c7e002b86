//! The network as every carousel sees it (EN 300 468 §5.2.1 NIT, §5.2.3 SDT other): the NIT
//! actual, the same in every transport stream, and the MPTS whose services each MPTS
//! describes as "other" (its peers). Built once, for a start instant, from a list of
//! transport streams the caller makes from its configuration.

use crate::network::{nit, NitService, TransportStream};
use crate::si::{Charset, Service};

use super::{first_version, ServiceSpec};

/// The network of a NIT: its id and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkSpec {
    /// network_id.
    pub network_id: u16,
    /// The network_name_descriptor's text.
    pub name: String,
    /// The character set of the name.
    pub charset: Charset,
}

/// One transport stream of the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSpec {
    /// transport_stream_id.
    pub transport_stream_id: u16,
    /// original_network_id (in the NIT, and for an MPTS in its peers' SDT other and EIT other).
    pub original_network_id: u16,
    /// The character set of its SDT other (for an MPTS).
    pub charset: Charset,
    /// Whether it is an MPTS: every other MPTS carries SDT other and EIT p/f other for it.
    pub mpts: bool,
    /// Its services that have SI, in program order.
    pub services: Vec<ServiceSpec>,
}

/// The network as every carousel sees it, built once ([`NetworkSi::new`]) and shared.
#[derive(Clone, Debug)]
pub struct NetworkSi {
    /// The NIT sections (none without a network).
    pub(super) nit: Vec<Vec<u8>>,
    /// Each MPTS: (transport_stream_id, original_network_id), its services as SDT other
    /// lists them, the charset of its tables.
    pub(super) mpts: Vec<((u16, u16), Vec<Service>, Charset)>,
    /// First version numbers of the tables (from the start instant).
    pub(super) version: u8,
}

impl NetworkSi {
    /// The NIT of `network` (if any) listing `streams` in their order, and the MPTS line-up
    /// (the streams marked `mpts`), for a start at `utc_ns` (UTC, ns since 1970). A NIT that
    /// cannot be coded is not sent (and that is logged).
    pub fn new(network: Option<&NetworkSpec>, streams: &[StreamSpec], utc_ns: i64) -> NetworkSi {
        let version = first_version(utc_ns);
        let mpts = streams
            .iter()
            .filter(|s| s.mpts)
            .map(|s| {
                // As another stream's SDT other describes them: EIT p/f (other) is sent for
                // them, an EIT schedule other is not.
                let services = s
                    .services
                    .iter()
                    .map(|c| Service {
                        eit_schedule: false,
                        ..c.service()
                    })
                    .collect();
                (
                    (s.transport_stream_id, s.original_network_id),
                    services,
                    s.charset,
                )
            })
            .collect();
        let nit = network
            .map(|n| network_nit(n, streams, version))
            .unwrap_or_default();
        NetworkSi { nit, mpts, version }
    }

    /// The NIT sections (empty without a network).
    pub fn nit(&self) -> &[Vec<u8>] {
        &self.nit
    }

    /// The version every table starts at (the start instant's minute, mod 32): after a
    /// restart a receiver that kept the old tables does not take new content for them.
    pub fn version(&self) -> u8 {
        self.version
    }
}

/// The NIT: every stream with its service list and logical channel numbers.
fn network_nit(n: &NetworkSpec, streams: &[StreamSpec], version: u8) -> Vec<Vec<u8>> {
    let streams: Vec<TransportStream> = streams
        .iter()
        .map(|s| TransportStream {
            transport_stream_id: s.transport_stream_id,
            original_network_id: s.original_network_id,
            services: s
                .services
                .iter()
                .map(|c| NitService {
                    service_id: c.service_id,
                    service_type: c.service_type,
                    lcn: c.lcn,
                })
                .collect(),
        })
        .collect();
    match nit(n.network_id, version, &n.name, &streams, n.charset) {
        Ok(sections) => sections,
        Err(e) => {
            tracing::error!(error = %e, "NIT not sent");
            Vec::new()
        }
    }
}
