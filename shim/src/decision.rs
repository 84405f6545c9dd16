//! What the shim does to one call: the strategy's or a replay's answer,
//! which the output layer records and the call path carries out.

use crate::faults::Fault;
use crate::pct::Turn;

/// What the shim does to one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decision {
    pub before_nanos: u64,
    pub after_nanos: u64,
    pub fault: Option<Fault>,
    /// `pct`: `before_nanos` is a bound, and the call waits for this
    /// task's turn, at most that long.
    pub turn: Option<Turn>,
}

impl Decision {
    pub fn is_nothing(&self) -> bool {
        *self == Decision::default()
    }
}
