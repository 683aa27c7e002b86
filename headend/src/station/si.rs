//! What a station's SI carousel ([`epg::carousel`]) is told of the config: each channel as a
//! [`ServiceSpec`], and the network's transport streams (every MPTS, then every channel not
//! carried in one). The programmes become EIT events in [`super::OnAirProgramme::event`].

use epg::carousel::{NetworkSi, NetworkSpec, ServiceSpec, StreamSpec};
use epg::si::Charset;

use crate::config::{ChannelConfig, Config};

/// Channel `ch` as the SI carousel carries it (a digital television service).
pub(crate) fn service_spec(ch: &ChannelConfig) -> ServiceSpec {
    ServiceSpec {
        service_id: ch.service_id,
        name: ch.name.clone(),
        provider: ch.provider.clone(),
        service_type: 0x01,
        charset: ch.si.charset,
        eit_days: ch.si.days,
        country: ch.si.country.clone(),
        timezone: ch.timezone,
        original_network_id: ch.si.original_network_id,
        terrestrial: ch.si.terrestrial,
        lcn: ch.si.lcn,
    }
}

/// The services of `channels` that have SI on, in program order.
pub(crate) fn service_specs(channels: &[ChannelConfig]) -> Vec<ServiceSpec> {
    channels
        .iter()
        .filter(|c| c.si.enabled)
        .map(service_spec)
        .collect()
}

/// The network of `config` for a start at `utc_ns` (UTC, ns since 1970): its NIT (with a
/// `[network]`) listing every MPTS, then every channel with SI not carried in one, and the
/// MPTS line-up. An MPTS's original_network_id and charset are its first channel's.
pub(crate) fn network(config: &Config, utc_ns: i64) -> NetworkSi {
    let members = |ids: &[String]| -> Vec<&ChannelConfig> {
        ids.iter()
            .filter_map(|id| config.channels.iter().find(|c| &c.id == id))
            .collect()
    };
    let mut streams: Vec<StreamSpec> = config
        .mpts
        .iter()
        .map(|m| {
            let chs = members(&m.channels);
            StreamSpec {
                transport_stream_id: m.transport_stream_id,
                original_network_id: chs.first().map_or(1, |c| c.si.original_network_id),
                charset: chs.first().map_or(Charset::Utf8, |c| c.si.charset),
                mpts: true,
                services: chs
                    .iter()
                    .filter(|c| c.si.enabled)
                    .map(|c| service_spec(c))
                    .collect(),
            }
        })
        .collect();
    for c in &config.channels {
        if !c.si.enabled || config.mpts.iter().any(|m| m.channels.contains(&c.id)) {
            continue;
        }
        streams.push(StreamSpec {
            transport_stream_id: c.transport_stream_id,
            original_network_id: c.si.original_network_id,
            charset: c.si.charset,
            mpts: false,
            services: vec![service_spec(c)],
        });
    }
    let network = config.network.as_ref().map(|n| NetworkSpec {
        network_id: n.network_id,
        name: n.name.clone(),
        charset: n.charset,
    });
    NetworkSi::new(network.as_ref(), &streams, utc_ns)
}
