//! Dates: the conversion of instants to local dates in a timezone, and of
//! dates to day numbers (days since 1970-01-01, Arrow's `Date32`), one rule
//! for ingest, the SQL functions and the incremental plan. It must not know
//! about tables: it takes instants, dates and timezones and returns numbers.

use chrono_tz::Tz;

/// Days since 1970-01-01 of the local date of an instant in `tz`.
pub fn local_date_days(micros: i64, tz: Tz) -> i32 {
    let utc = chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default();
    days_since_epoch(utc.with_timezone(&tz).date_naive())
}

const MICROS_PER_DAY: i64 = 86_400_000_000;
const MICROS_PER_QUARTER_HOUR: i64 = 900_000_000;

/// Local dates of many UTC instants in one timezone, the same as
/// [`local_date_days`] but without a timezone lookup per instant: the UTC
/// offset of the last quarter hour seen is kept when it is the same at both
/// ends of that quarter hour (offsets change at quarter-hour instants; a
/// quarter hour with a change inside is looked up instant by instant).
pub struct LocalDays {
    tz: Tz,
    utc: bool,
    quarter: i64,
    offset: i64,
}

impl LocalDays {
    pub fn new(tz: Tz) -> LocalDays {
        LocalDays {
            tz,
            utc: tz == chrono_tz::UTC || tz == chrono_tz::Etc::UTC,
            quarter: i64::MIN,
            offset: 0,
        }
    }

    fn offset_at(&self, micros: i64) -> Option<i64> {
        use chrono::{Offset, TimeZone};
        let utc = chrono::DateTime::from_timestamp_micros(micros)?.naive_utc();
        Some(i64::from(self.tz.offset_from_utc_datetime(&utc).fix().local_minus_utc()) * 1_000_000)
    }

    pub fn days(&mut self, micros: i64) -> i32 {
        if self.utc {
            return micros.div_euclid(MICROS_PER_DAY) as i32;
        }
        let quarter = micros.div_euclid(MICROS_PER_QUARTER_HOUR);
        if quarter != self.quarter {
            let start = quarter * MICROS_PER_QUARTER_HOUR;
            match (self.offset_at(start), self.offset_at(start + MICROS_PER_QUARTER_HOUR - 1)) {
                (Some(a), Some(b)) if a == b => {
                    self.quarter = quarter;
                    self.offset = a;
                }
                _ => return local_date_days(micros, self.tz),
            }
        }
        (micros + self.offset).div_euclid(MICROS_PER_DAY) as i32
    }
}

/// Days since 1970-01-01 of `date` (an Arrow `Date32` value).
pub fn days_since_epoch(date: chrono::NaiveDate) -> i32 {
    (date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days() as i32
}

/// The date `days` after 1970-01-01, if it is one chrono can hold.
pub fn from_days(days: i32) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(chrono::Duration::days(days as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cached offsets give the date a lookup per instant gives, across
    /// DST changes, half- and quarter-hour zones and the odd offsets of
    /// historical local mean time.
    #[test]
    fn local_days_agree_with_a_lookup_per_instant() {
        let zones = ["UTC", "America/New_York", "Europe/London", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe", "Pacific/Chatham", "Europe/Amsterdam"];
        let micros = |y: i32| chrono::NaiveDate::from_ymd_opt(y, 1, 1).expect("date").and_hms_opt(0, 0, 0).expect("time").and_utc().timestamp_micros();
        for name in zones {
            let tz: Tz = name.parse().expect("zone");
            let mut days = LocalDays::new(tz);
            // Every 37 min 11 s over two recent years, then every 5 h 3 min 7 s from 1880 to 1950.
            for (from, to, step) in [(micros(2025), micros(2027), 2_231_000_000i64), (micros(1880), micros(1950), 18_187_000_000)] {
                let mut t = from;
                while t < to {
                    assert_eq!(days.days(t), local_date_days(t, tz), "{name} at {t} µs");
                    t += step;
                }
            }
            assert_eq!(days.days(-1), local_date_days(-1, tz), "{name} just before the epoch");
        }
    }
}
