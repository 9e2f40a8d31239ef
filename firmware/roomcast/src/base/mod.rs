//! What every stage shares: the clock, the frame types, the frame bus that
//! carries encoded frames from the encoders to the sinks, counters, and the
//! small helpers (backoff, rate meter, locking) that every sink used to
//! write for itself. Nothing here imports from any other part of the daemon.

pub mod backoff;
pub mod bus;
pub mod clock;
pub mod frame;
pub mod rate;
pub mod stats;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks a mutex, ignoring poisoning: the guarded data are plain counters
/// and queues that stay consistent even if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
