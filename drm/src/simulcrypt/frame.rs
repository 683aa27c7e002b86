//! Whole messages out of a TCP byte stream or a UDP datagram, for both SimulCrypt interfaces
//! (ETSI TS 103 197: ECMG⇔SCS and EMMG/PDG⇔MUX frame their messages the same way).
//!
//! Every message is a 5-byte header, then `message_length` bytes of parameters:
//!
//! ```text
//!  0        1                  3                    5
//! +--------+------------------+--------------------+----------------------------+
//! | ver(8) | message_type(16) | message_length(16) | parameters (TLVs, see tlv) |
//! +--------+------------------+--------------------+----------------------------+
//! ```
//!
//! Only the header is read here; what the bytes mean is each interface's business (through
//! [`super::tlv`]).

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

/// protocol_version(8) message_type(16) message_length(16).
pub const HEADER_LEN: usize = 5;

/// A message whose message_length is over the limit: skipped, never buffered whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Oversize {
    /// The header's message_type.
    pub(crate) message_type: u16,
    /// The header's message_length.
    pub(crate) length: usize,
    /// The limit.
    pub(crate) max: usize,
}

/// A UDP datagram that ends inside a message (its header, or before message_length bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Truncated {
    /// Offset of the cut message in the datagram.
    pub(crate) offset: usize,
    /// Bytes left from there.
    pub(crate) remaining: usize,
}

/// Splits a TCP byte stream into whole messages (header included): push what was read (any
/// amount, split anywhere), then take frames with [`Iterator::next`] until it returns `None`
/// ("need more bytes"). A message over the limit is an [`Oversize`], and its bytes are thrown
/// away as they come, so the stream stays in step.
pub(crate) struct FrameDecoder {
    buf: BytesMut,
    /// Bytes of an over-long message still to be thrown away.
    skip: usize,
    max_message_length: usize,
}

impl FrameDecoder {
    /// A decoder that refuses messages longer than `max` bytes after the header.
    pub(crate) fn new(max_message_length: usize) -> FrameDecoder {
        FrameDecoder {
            buf: BytesMut::new(),
            skip: 0,
            max_message_length,
        }
    }

    /// Appends bytes read from the connection.
    pub(crate) fn push(&mut self, data: &[u8]) {
        let drop = self.skip.min(data.len());
        self.skip -= drop;
        self.buf.extend_from_slice(&data[drop..]);
    }

    /// Bytes buffered that do not make a whole message yet.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// `Debug` as the interface's decoder `name`: how much is buffered, never the bytes (they
    /// may hold control words).
    pub(crate) fn fmt_as(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("buffered", &self.buf.len())
            .field("skip", &self.skip)
            .field("max_message_length", &self.max_message_length)
            .finish()
    }
}

impl Iterator for FrameDecoder {
    type Item = Result<Bytes, Oversize>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.len() < HEADER_LEN {
            return None;
        }
        let message_type = u16::from_be_bytes([self.buf[1], self.buf[2]]);
        let length = usize::from(u16::from_be_bytes([self.buf[3], self.buf[4]]));
        if length > self.max_message_length {
            let total = HEADER_LEN + length;
            let drop = total.min(self.buf.len());
            self.buf.advance(drop);
            self.skip = total - drop;
            return Some(Err(Oversize {
                message_type,
                length,
                max: self.max_message_length,
            }));
        }
        if self.buf.len() < HEADER_LEN + length {
            return None;
        }
        Some(Ok(self.buf.split_to(HEADER_LEN + length).freeze()))
    }
}

/// The whole messages of one UDP datagram (one or more back to back), in order, as views into
/// it; a rest that is not a whole message ends them with a [`Truncated`].
pub(crate) fn split_datagram(
    datagram: &Bytes,
) -> impl Iterator<Item = Result<Bytes, Truncated>> + '_ {
    let mut offset = 0;
    std::iter::from_fn(move || {
        let rest = datagram.get(offset..).filter(|r| !r.is_empty())?;
        let total = if rest.len() >= HEADER_LEN {
            HEADER_LEN + usize::from(u16::from_be_bytes([rest[3], rest[4]]))
        } else {
            usize::MAX
        };
        if total > rest.len() {
            let cut = Truncated {
                offset,
                remaining: rest.len(),
            };
            // Nothing follows a cut message.
            offset = datagram.len();
            return Some(Err(cut));
        }
        let frame = datagram.slice(offset..offset + total);
        offset += total;
        Some(Ok(frame))
    })
}
