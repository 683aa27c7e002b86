//! The parameters of a SimulCrypt message, read and written the same way on both interfaces
//! (ETSI TS 103 197): after the header (see [`super::frame`]), `message_length` bytes of
//! `parameter_type(16) parameter_length(16) value`, big-endian:
//!
//! ```text
//! +--------------------+----------------------+--------------------------------+
//! | parameter_type(16) | parameter_length(16) | value (parameter_length bytes) |
//! +--------------------+----------------------+--------------------------------+
//! ```
//!
//! Reading is tolerant where the interfaces allow it and strict where they do not: user-defined
//! parameters (0x8000 and up) and defined parameters a message does not use are skipped;
//! unknown defined-range parameters, overruns, wrong fixed lengths, repeated single parameters,
//! missing mandatory ones and out-of-range values are [`Fault`]s, which each interface turns
//! into its own error (with its own error_status codes) through [`Interface`].

use std::marker::PhantomData;

use super::frame::{Oversize, HEADER_LEN};
use super::message::{ProtocolVersion, SectionTspktFlag};

/// What the shared reader and writer need of one interface: its codes, the context that
/// addresses an answer, and its error type.
pub(crate) trait Interface {
    /// message_type.
    type MessageType: Copy;
    /// parameter_type.
    type Parameter: Copy + Eq;
    /// error_status.
    type ErrorStatus: Copy;
    /// The message an error is about, as far as it could be read.
    type Context: Copy;
    /// Why a message could not be decoded or encoded.
    type Error;

    /// error_status (0x7000 on both interfaces).
    const ERROR_STATUS: Self::Parameter;
    /// error_information (0x7001 on both interfaces).
    const ERROR_INFORMATION: Self::Parameter;

    /// The message_type of a code, `None` if the interface has no such message.
    fn message_type(code: u16) -> Option<Self::MessageType>;
    /// The parameter_type of a code.
    fn parameter(code: u16) -> Self::Parameter;
    /// The code of a parameter_type.
    fn parameter_code(parameter: Self::Parameter) -> u16;
    /// Whether a parameter may appear: defined by the interface, or user defined.
    fn is_allowed(parameter: Self::Parameter) -> bool;
    /// The error_status of a code.
    fn error_status(code: u16) -> Self::ErrorStatus;
    /// The code of an error_status.
    fn error_status_code(status: Self::ErrorStatus) -> u16;
    /// The context of a message, read from its parameters before they are checked (so that
    /// even a message whose parameters overrun can be answered on its stream).
    fn context(
        message_type: Self::MessageType,
        params: &Tlvs<'_, Self::Parameter>,
    ) -> Self::Context;
    /// The interface's error for `fault`.
    fn error(fault: Fault<Self::Context, Self::Parameter>) -> Self::Error;
}

/// What is wrong with a message, found by the shared layer. Each interface's error enum has a
/// variant of the same name and fields for each (see [`fault_variants`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault<C, P> {
    /// protocol_version is not 2 or 3.
    UnsupportedVersion { version: u8, message_type: u16 },
    /// message_type is not one of the interface's.
    UnknownMessageType { message_type: u16 },
    /// message_length is over the decoder's limit (or, encoding, over 65 535 bytes).
    MessageTooLong {
        message_type: u16,
        length: usize,
        max: usize,
    },
    /// A parameter runs past the end of the message.
    Overrun { at: C, parameter: P, offset: usize },
    /// A parameter_type neither defined by the interface nor user defined.
    UnknownParameter { at: C, parameter: P },
    /// A fixed-size parameter of the wrong length.
    InconsistentLength {
        at: C,
        parameter: P,
        length: usize,
        expected: usize,
    },
    /// A mandatory parameter is missing.
    MissingParameter { at: C, parameter: P },
    /// A parameter that may appear once appears more often.
    RepeatedParameter { at: C, parameter: P },
    /// A parameter's value is out of its range.
    InvalidValue { at: C, parameter: P },
}

impl<C, P> From<Oversize> for Fault<C, P> {
    fn from(o: Oversize) -> Self {
        Fault::MessageTooLong {
            message_type: o.message_type,
            length: o.length,
            max: o.max,
        }
    }
}

/// For an interface's error enum `$error`, whose variants include those of [`Fault`] with
/// `at: $context` and `parameter: $parameter`: the conversion from a [`Fault`], `context()`,
/// `parameter()` and the error_information that names the parameter at fault.
macro_rules! fault_variants {
    ($error:ident, $context:ty, $parameter:ty) => {
        impl $error {
            /// The message the error is about, when its header could be read.
            pub const fn context(&self) -> Option<&$context> {
                match self {
                    $error::Overrun { at, .. }
                    | $error::UnknownParameter { at, .. }
                    | $error::InconsistentLength { at, .. }
                    | $error::MissingParameter { at, .. }
                    | $error::RepeatedParameter { at, .. }
                    | $error::InvalidValue { at, .. } => Some(at),
                    _ => None,
                }
            }

            /// The parameter at fault, if one is.
            pub const fn parameter(&self) -> Option<$parameter> {
                match self {
                    $error::Overrun { parameter, .. }
                    | $error::UnknownParameter { parameter, .. }
                    | $error::InconsistentLength { parameter, .. }
                    | $error::MissingParameter { parameter, .. }
                    | $error::RepeatedParameter { parameter, .. }
                    | $error::InvalidValue { parameter, .. } => Some(*parameter),
                    _ => None,
                }
            }

            /// error_information for the answer: the parameter at fault, as the interface
            /// suggests (and TSDuck does).
            fn error_information(&self) -> Vec<Vec<u8>> {
                self.parameter()
                    .map(|p| vec![p.0.to_be_bytes().to_vec()])
                    .unwrap_or_default()
            }

            pub(crate) fn from_fault(
                fault: $crate::simulcrypt::tlv::Fault<$context, $parameter>,
            ) -> $error {
                use $crate::simulcrypt::tlv::Fault;
                match fault {
                    Fault::UnsupportedVersion {
                        version,
                        message_type,
                    } => $error::UnsupportedVersion {
                        version,
                        message_type,
                    },
                    Fault::UnknownMessageType { message_type } => {
                        $error::UnknownMessageType { message_type }
                    }
                    Fault::MessageTooLong {
                        message_type,
                        length,
                        max,
                    } => $error::MessageTooLong {
                        message_type,
                        length,
                        max,
                    },
                    Fault::Overrun {
                        at,
                        parameter,
                        offset,
                    } => $error::Overrun {
                        at,
                        parameter,
                        offset,
                    },
                    Fault::UnknownParameter { at, parameter } => {
                        $error::UnknownParameter { at, parameter }
                    }
                    Fault::InconsistentLength {
                        at,
                        parameter,
                        length,
                        expected,
                    } => $error::InconsistentLength {
                        at,
                        parameter,
                        length,
                        expected,
                    },
                    Fault::MissingParameter { at, parameter } => {
                        $error::MissingParameter { at, parameter }
                    }
                    Fault::RepeatedParameter { at, parameter } => {
                        $error::RepeatedParameter { at, parameter }
                    }
                    Fault::InvalidValue { at, parameter } => $error::InvalidValue { at, parameter },
                }
            }
        }
    };
}

pub(crate) use fault_variants;

/// The parameters of one message in order, as views into it.
pub(crate) struct Tlvs<'a, P> {
    list: Vec<(P, &'a [u8])>,
}

impl<'a, P: Copy + Eq> Tlvs<'a, P> {
    /// Every value of `ty`, in order.
    pub(crate) fn all(&self, ty: P) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.list
            .iter()
            .filter(move |(t, _)| *t == ty)
            .map(|(_, v)| *v)
    }

    /// The first value of `ty` that is `N` bytes long, ignoring malformed ones (to address an
    /// answer even to a message that is refused).
    pub(crate) fn first<const N: usize>(&self, ty: P) -> Option<[u8; N]> {
        self.all(ty).find_map(|v| <[u8; N]>::try_from(v).ok())
    }
}

/// One whole message (header included) read: its version, its type and its parameters, with
/// typed getters that answer a missing, repeated, wrongly sized or invalid parameter with the
/// interface's error.
pub(crate) struct Params<'a, I: Interface> {
    version: ProtocolVersion,
    message_type: I::MessageType,
    at: I::Context,
    tlvs: Tlvs<'a, I::Parameter>,
}

impl<'a, I: Interface> Params<'a, I> {
    /// Checks `frame`'s header (at least [`HEADER_LEN`] bytes, message_length already
    /// matched) and splits its parameters.
    pub(crate) fn read(frame: &'a [u8]) -> Result<Params<'a, I>, I::Error> {
        let raw_type = u16::from_be_bytes([frame[1], frame[2]]);
        let Some(version) = ProtocolVersion::from_u8(frame[0]) else {
            return Err(I::error(Fault::UnsupportedVersion {
                version: frame[0],
                message_type: raw_type,
            }));
        };
        let Some(message_type) = I::message_type(raw_type) else {
            return Err(I::error(Fault::UnknownMessageType {
                message_type: raw_type,
            }));
        };
        let mut list = Vec::new();
        let mut pos = HEADER_LEN;
        let mut overrun = None;
        while pos < frame.len() {
            let ty = I::parameter(if pos + 2 <= frame.len() {
                u16::from_be_bytes([frame[pos], frame[pos + 1]])
            } else {
                u16::from(frame[pos]) << 8
            });
            if pos + 4 > frame.len() {
                overrun = Some((ty, pos));
                break;
            }
            let len = usize::from(u16::from_be_bytes([frame[pos + 2], frame[pos + 3]]));
            if pos + 4 + len > frame.len() {
                overrun = Some((ty, pos));
                break;
            }
            list.push((ty, &frame[pos + 4..pos + 4 + len]));
            pos += 4 + len;
        }
        let tlvs = Tlvs { list };
        let at = I::context(message_type, &tlvs);
        if let Some((parameter, offset)) = overrun {
            return Err(I::error(Fault::Overrun {
                at,
                parameter,
                offset,
            }));
        }
        if let Some(&(parameter, _)) = tlvs.list.iter().find(|(t, _)| !I::is_allowed(*t)) {
            return Err(I::error(Fault::UnknownParameter { at, parameter }));
        }
        Ok(Params {
            version,
            message_type,
            at,
            tlvs,
        })
    }

    /// protocol_version.
    pub(crate) fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// message_type.
    pub(crate) fn message_type(&self) -> I::MessageType {
        self.message_type
    }

    /// Every value of `ty`, in order.
    pub(crate) fn all(&self, ty: I::Parameter) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.tlvs.all(ty)
    }

    /// The value of `ty` if present, an error if repeated.
    pub(crate) fn one(&self, ty: I::Parameter) -> Result<Option<&'a [u8]>, I::Error> {
        let mut it = self.all(ty);
        let first = it.next();
        if it.next().is_some() {
            return Err(I::error(Fault::RepeatedParameter {
                at: self.at,
                parameter: ty,
            }));
        }
        Ok(first)
    }

    /// The value of a mandatory `ty`.
    pub(crate) fn required(&self, ty: I::Parameter) -> Result<&'a [u8], I::Error> {
        self.one(ty)?.ok_or_else(|| self.missing(ty))
    }

    /// The value of an optional `ty` of `N` bytes.
    pub(crate) fn opt_fixed<const N: usize>(
        &self,
        ty: I::Parameter,
    ) -> Result<Option<[u8; N]>, I::Error> {
        self.one(ty)?
            .map(|v| <[u8; N]>::try_from(v).map_err(|_| self.length(ty, v.len(), N)))
            .transpose()
    }

    /// The value of a mandatory `ty` of `N` bytes.
    pub(crate) fn fixed<const N: usize>(&self, ty: I::Parameter) -> Result<[u8; N], I::Error> {
        self.opt_fixed(ty)?.ok_or_else(|| self.missing(ty))
    }

    pub(crate) fn u8(&self, ty: I::Parameter) -> Result<u8, I::Error> {
        Ok(self.fixed::<1>(ty)?[0])
    }

    pub(crate) fn u16(&self, ty: I::Parameter) -> Result<u16, I::Error> {
        Ok(u16::from_be_bytes(self.fixed(ty)?))
    }

    pub(crate) fn opt_u16(&self, ty: I::Parameter) -> Result<Option<u16>, I::Error> {
        Ok(self.opt_fixed(ty)?.map(u16::from_be_bytes))
    }

    pub(crate) fn i16(&self, ty: I::Parameter) -> Result<i16, I::Error> {
        Ok(i16::from_be_bytes(self.fixed(ty)?))
    }

    pub(crate) fn opt_i16(&self, ty: I::Parameter) -> Result<Option<i16>, I::Error> {
        Ok(self.opt_fixed(ty)?.map(i16::from_be_bytes))
    }

    pub(crate) fn u32(&self, ty: I::Parameter) -> Result<u32, I::Error> {
        Ok(u32::from_be_bytes(self.fixed(ty)?))
    }

    /// section_TSpkt_flag (parameter `ty`): 0 sections, 1 TS packets.
    pub(crate) fn section_tspkt_flag(
        &self,
        ty: I::Parameter,
    ) -> Result<SectionTspktFlag, I::Error> {
        match self.u8(ty)? {
            0 => Ok(SectionTspktFlag::Sections),
            1 => Ok(SectionTspktFlag::TsPackets),
            _ => Err(self.invalid(ty)),
        }
    }

    /// error_status, one or more, 2 bytes each.
    pub(crate) fn error_status(&self) -> Result<Vec<I::ErrorStatus>, I::Error> {
        let mut out = Vec::new();
        for v in self.all(I::ERROR_STATUS) {
            let b = <[u8; 2]>::try_from(v).map_err(|_| self.length(I::ERROR_STATUS, v.len(), 2))?;
            out.push(I::error_status(u16::from_be_bytes(b)));
        }
        if out.is_empty() {
            return Err(self.missing(I::ERROR_STATUS));
        }
        Ok(out)
    }

    /// error_information, zero or more.
    pub(crate) fn error_information(&self) -> Vec<Vec<u8>> {
        self.all(I::ERROR_INFORMATION).map(<[u8]>::to_vec).collect()
    }

    pub(crate) fn missing(&self, parameter: I::Parameter) -> I::Error {
        I::error(Fault::MissingParameter {
            at: self.at,
            parameter,
        })
    }

    pub(crate) fn invalid(&self, parameter: I::Parameter) -> I::Error {
        I::error(Fault::InvalidValue {
            at: self.at,
            parameter,
        })
    }

    pub(crate) fn length(
        &self,
        parameter: I::Parameter,
        length: usize,
        expected: usize,
    ) -> I::Error {
        I::error(Fault::InconsistentLength {
            at: self.at,
            parameter,
            length,
            expected,
        })
    }
}

/// Builds one message: the header, the parameters in the order written, then
/// [`Writer::finish`] fills in message_length.
pub(crate) struct Writer<I> {
    bytes: Vec<u8>,
    interface: PhantomData<I>,
}

impl<I: Interface> Writer<I> {
    /// A message with this header (raw codes, so that tests can build malformed ones too).
    pub(crate) fn start(version: u8, message_type: u16) -> Writer<I> {
        let mut bytes = Vec::with_capacity(64);
        bytes.push(version);
        bytes.extend_from_slice(&message_type.to_be_bytes());
        bytes.extend_from_slice(&[0, 0]);
        Writer {
            bytes,
            interface: PhantomData,
        }
    }

    /// Room for `additional` more bytes.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.bytes.reserve(additional);
    }

    pub(crate) fn param(&mut self, ty: I::Parameter, value: &[u8]) {
        self.bytes
            .extend_from_slice(&I::parameter_code(ty).to_be_bytes());
        // Longer values make the message too long, which finish() reports.
        let length = value.len().min(usize::from(u16::MAX)) as u16;
        self.bytes.extend_from_slice(&length.to_be_bytes());
        self.bytes.extend_from_slice(value);
    }

    pub(crate) fn u8(&mut self, ty: I::Parameter, v: u8) {
        self.param(ty, &[v]);
    }

    pub(crate) fn u16(&mut self, ty: I::Parameter, v: u16) {
        self.param(ty, &v.to_be_bytes());
    }

    pub(crate) fn opt_u16(&mut self, ty: I::Parameter, v: Option<u16>) {
        if let Some(v) = v {
            self.u16(ty, v);
        }
    }

    pub(crate) fn i16(&mut self, ty: I::Parameter, v: i16) {
        self.param(ty, &v.to_be_bytes());
    }

    pub(crate) fn opt_i16(&mut self, ty: I::Parameter, v: Option<i16>) {
        if let Some(v) = v {
            self.i16(ty, v);
        }
    }

    pub(crate) fn u32(&mut self, ty: I::Parameter, v: u32) {
        self.param(ty, &v.to_be_bytes());
    }

    /// error_status and error_information, as channel_error and stream_error carry them.
    pub(crate) fn errors(&mut self, status: &[I::ErrorStatus], information: &[Vec<u8>]) {
        for s in status {
            self.u16(I::ERROR_STATUS, I::error_status_code(*s));
        }
        for i in information {
            self.param(I::ERROR_INFORMATION, i);
        }
    }

    /// The message, message_length filled in. Fails if its parameters add up to more than
    /// 65 535 bytes, which message_length cannot express.
    pub(crate) fn finish(mut self) -> Result<Vec<u8>, I::Error> {
        let length = self.bytes.len() - HEADER_LEN;
        let Ok(length16) = u16::try_from(length) else {
            return Err(I::error(Fault::MessageTooLong {
                message_type: u16::from_be_bytes([self.bytes[1], self.bytes[2]]),
                length,
                max: usize::from(u16::MAX),
            }));
        };
        self.bytes[3..5].copy_from_slice(&length16.to_be_bytes());
        Ok(self.bytes)
    }
}
