//! When some work last made progress, noted by the task doing it and read by a task
//! that watches it for silence (a connection's watchdog, an upload's timer).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The instant of the latest progress, shareable across tasks without a lock.
#[derive(Debug)]
pub(crate) struct LastProgress {
    started: Instant,
    /// Milliseconds from `started` to the latest progress.
    elapsed_ms: AtomicU64,
}

impl LastProgress {
    /// Starts counting now; the start counts as progress.
    pub(crate) fn new() -> LastProgress {
        LastProgress {
            started: Instant::now(),
            elapsed_ms: AtomicU64::new(0),
        }
    }

    /// Notes progress now.
    pub(crate) fn note(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        // Notes from several tasks may race: keep the latest.
        self.elapsed_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// When the latest progress was.
    pub(crate) fn at(&self) -> Instant {
        self.started + Duration::from_millis(self.elapsed_ms.load(Ordering::Relaxed))
    }
}
