//! The reading of wall time. [`SystemClock`] is the only code in tenure that
//! asks the system clock; everything that needs "now" takes a [`Clock`], so
//! that tests drive time with a fake one.

/// A source of the current time.
pub trait Clock: Send + Sync {
    fn now(&self) -> chrono::DateTime<chrono::Utc>;
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
}
