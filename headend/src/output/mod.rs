//! Network outputs: UDP and RTP datagrams ([`udp`]) and HTTP for set-top boxes ([`http`]).

pub(crate) mod hls;
pub(crate) mod http;
pub(crate) mod tls;
pub(crate) mod udp;
pub(crate) mod ui;
