//! Config-wide uniqueness (item ids, service_ids, output destinations) and the facts about
//! channels that `[[mpts]]` checks need. Each claim is checked as it is made, so the second
//! occurrence is reported and names the first.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::error::Diagnostics;
use super::pids::PidPlan;
use super::units::Bitrate;

/// What an mpts needs to know about a channel it lists; `None` where the channel's own value
/// was invalid (already reported there).
#[derive(Clone, Debug)]
pub(super) struct ChannelFacts {
    pub(super) muxrate: Option<Bitrate>,
    pub(super) pids: Option<PidPlan>,
}

#[derive(Debug, Default)]
pub(super) struct Claims {
    /// Channel and mpts ids → path of the item (`channel[0]`, `mpts[1]`).
    ids: HashMap<String, String>,
    /// service_id → path of the channel.
    service_ids: HashMap<u16, String>,
    /// Destination → path of the `url` key.
    dests: HashMap<SocketAddr, String>,
    /// Channel id → facts, for the first channel with that id.
    channels: HashMap<String, ChannelFacts>,
}

impl Claims {
    /// Claims the id of the channel or mpts at `item_path`.
    pub(super) fn id(&mut self, id: &str, item_path: &str, diag: &mut Diagnostics) {
        match self.ids.get(id) {
            Some(first) => diag.push(
                format!("{item_path}.id"),
                format!("id `{}` is already used by {first}", id.escape_debug()),
            ),
            None => {
                self.ids.insert(id.to_owned(), item_path.to_owned());
            }
        }
    }

    /// Records a channel for later mpts checks; the first channel with an id wins.
    pub(super) fn channel(&mut self, id: &str, facts: ChannelFacts) {
        self.channels.entry(id.to_owned()).or_insert(facts);
    }

    pub(super) fn channel_facts(&self, id: &str) -> Option<&ChannelFacts> {
        self.channels.get(id)
    }

    /// Claims the service_id of the channel at `channel_path`.
    pub(super) fn service_id(
        &mut self,
        service_id: u16,
        channel_path: &str,
        diag: &mut Diagnostics,
    ) {
        match self.service_ids.get(&service_id) {
            Some(first) => diag.push(
                format!("{channel_path}.service_id"),
                format!("service_id {service_id} is already used by {first}"),
            ),
            None => {
                self.service_ids.insert(service_id, channel_path.to_owned());
            }
        }
    }

    /// Claims the destination of the output whose `url` key is at `url_path`.
    pub(super) fn dest(&mut self, dest: SocketAddr, url_path: &str, diag: &mut Diagnostics) {
        match self.dests.get(&dest) {
            Some(first) => diag.push(
                url_path,
                format!("destination {dest} is already used by {first}"),
            ),
            None => {
                self.dests.insert(dest, url_path.to_owned());
            }
        }
    }
}
