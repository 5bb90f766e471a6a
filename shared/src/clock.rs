//! A clock that tests can control: code that checks expiry takes a [`Clock`] instead
//! of reading the system time itself.

use std::sync::Arc;

use chrono::{DateTime, Utc};

/// The current time, as a shareable function.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The system clock.
pub fn system() -> Clock {
    Arc::new(Utc::now)
}
