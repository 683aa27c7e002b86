//! The 13-bit packet identifier.

use std::fmt;

/// A 13-bit PID (ISO/IEC 13818-1 Table 2-3).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Pid(u16);

impl Pid {
    /// Program association table.
    pub const PAT: Pid = Pid(0x0000);
    /// Conditional access table.
    pub const CAT: Pid = Pid(0x0001);
    /// Null packets.
    pub const NULL: Pid = Pid(0x1FFF);
    /// The largest PID.
    pub const MAX: u16 = 0x1FFF;

    /// A PID from its 13-bit value, `None` above 0x1FFF.
    pub const fn new(raw: u16) -> Option<Pid> {
        if raw <= Self::MAX {
            Some(Pid(raw))
        } else {
            None
        }
    }
    /// A PID from the low 13 bits of `raw` (upper bits are ignored, as on the wire).
    pub const fn from_bits(raw: u16) -> Pid {
        Pid(raw & Self::MAX)
    }
    /// The 13-bit value.
    pub const fn value(self) -> u16 {
        self.0
    }
    /// The value as an index into an 8192-entry table.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#06x}", self.0)
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#06x}", self.0)
    }
}
