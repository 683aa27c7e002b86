//! Realigning a byte stream cut anywhere (HTTP reads, SRT messages) on transport stream
//! packets for a live feed.

use bytes::{Bytes, BytesMut};
use playout::ts::{PACKET_SIZE, SYNC_BYTE};

use super::live::LiveFeed;

/// Hands the feed whole packets, aligned on their sync bytes, from a byte stream cut
/// anywhere (HTTP reads, SRT messages of 1456 bytes).
#[derive(Default)]
pub(crate) struct Align {
    carry: BytesMut,
    /// Bytes seen before the first packet, to tell a transport stream from anything else.
    seen: u64,
    synced: bool,
}

impl Align {
    pub(crate) fn push(&mut self, feed: &LiveFeed, data: &[u8]) -> Result<(), String> {
        self.carry.extend_from_slice(data);
        loop {
            // Find sync: a sync byte with another one packet later (or at the end).
            let c = &self.carry;
            let at = (0..c.len()).find(|&i| {
                c[i] == SYNC_BYTE && c.get(i + PACKET_SIZE).is_none_or(|&b| b == SYNC_BYTE)
            });
            let skip = at.unwrap_or(c.len().saturating_sub(PACKET_SIZE));
            if skip > 0 {
                self.seen += skip as u64;
                let junk = self.carry.split_to(skip).freeze();
                feed.foreign_bytes(junk);
                if !self.synced && self.seen > 64 * 1024 {
                    return Err(
                        "the server sends something that is not a transport stream".to_owned()
                    );
                }
            }
            if at.is_none() {
                return Ok(());
            }
            let whole = self.carry.len() / PACKET_SIZE * PACKET_SIZE;
            if whole == 0 {
                return Ok(());
            }
            // Whole packets while they keep sync.
            let mut n = 0;
            while n < whole && self.carry[n] == SYNC_BYTE {
                n += PACKET_SIZE;
            }
            if n == 0 {
                continue;
            }
            self.synced = true;
            let packets: Bytes = self.carry.split_to(n).freeze();
            feed.arrived_stream(packets);
            if self.carry.len() < PACKET_SIZE || self.carry[0] == SYNC_BYTE {
                return Ok(());
            }
        }
    }
}
