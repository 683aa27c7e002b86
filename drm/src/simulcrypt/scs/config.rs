//! What the SCS is configured with: the channel, its ECM streams, keep-alive and timeouts.

use std::time::Duration;

use crate::simulcrypt::message::{ProtocolVersion, SuperCasId, Tenths};

/// Longest access_criteria accepted in the configuration (it must fit a CW_provision).
pub const MAX_ACCESS_CRITERIA_LEN: usize = 4096;

/// What the SCS asks of the ECMG on one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScsConfig {
    /// protocol_version of what the SCS sends first.
    pub version: ProtocolVersion,
    /// Whether to try the other version when the ECMG refuses the channel in this one (answers
    /// channel_setup with channel_error, or drops the connection before channel_status); once
    /// a channel opened, its version stays (`protocol_version = "auto"`).
    pub version_fallback: bool,
    /// Super_CAS_id.
    pub super_cas_id: SuperCasId,
    /// ECM_channel_id.
    pub ecm_channel_id: u16,
    /// The ECM streams, set up in this order once the channel is open.
    pub streams: Vec<StreamConfig>,
    /// How often a channel_test is sent while the channel is open.
    pub keepalive: Duration,
    /// How long to wait for channel_status, stream_status and stream_close_response.
    pub response_timeout: Duration,
    /// How long to wait for an ECM_response; `None` for the ECMG's max_comp_time (or the
    /// response timeout if it announced 0).
    pub ecm_timeout: Option<Duration>,
}

impl ScsConfig {
    /// A version 3 configuration (falling back to 2) with a 10 s keepalive, a 2 s response timeout and the
    /// ECMG's max_comp_time for ECMs.
    pub fn new(super_cas_id: SuperCasId, ecm_channel_id: u16, streams: Vec<StreamConfig>) -> Self {
        ScsConfig {
            version: ProtocolVersion::V3,
            version_fallback: true,
            super_cas_id,
            ecm_channel_id,
            streams,
            keepalive: Duration::from_secs(10),
            response_timeout: Duration::from_secs(2),
            ecm_timeout: None,
        }
    }
}

/// One ECM stream of the channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    /// ECM_stream_id.
    pub ecm_stream_id: u16,
    /// ECM_id.
    pub ecm_id: u16,
    /// nominal_CP_duration.
    pub nominal_cp_duration: Tenths,
    /// access_criteria sent in CW_provision (empty: none).
    pub access_criteria: Vec<u8>,
}
