//! The time a breaker is told: a monotonic reading and a wall-clock reading.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One reading of the caller's clocks, passed to every input of the breaker.
///
/// The breaker never reads a clock. Every wait and window is measured on `monotonic`, a
/// reading of the node's monotonic clock as a `Duration` since an arbitrary origin (for
/// sim-core, `sim_core::time::now().since_origin()`). `wall` only stamps events, so a wall-clock
/// jump changes no decision (the `open_wait_wall_clock` mutant breaks exactly that).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Monotonic reading: time since an arbitrary origin that never goes backwards.
    pub monotonic: Duration,
    /// Wall-clock reading, which may jump in either direction.
    pub wall: SystemTime,
}

impl Now {
    /// A reading of both clocks.
    pub fn new(monotonic: Duration, wall: SystemTime) -> Self {
        Now { monotonic, wall }
    }

    /// A reading where the wall clock equals the Unix epoch plus `monotonic` (a wall clock that
    /// never jumps): handy in tests.
    pub fn from_monotonic(monotonic: Duration) -> Self {
        Now {
            monotonic,
            wall: UNIX_EPOCH + monotonic,
        }
    }

    /// Both clocks moved forward by `step`.
    pub fn advanced(self, step: Duration) -> Self {
        Now {
            monotonic: self.monotonic.saturating_add(step),
            wall: self.wall.checked_add(step).unwrap_or(self.wall),
        }
    }
}
