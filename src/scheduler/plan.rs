//! The scheduler's decisions as pure functions of times: which fire times are
//! due (catch-up policies), which local date a fire computes metrics as of,
//! and how long to wait before a retry. Nothing here reads the clock, sleeps
//! or touches storage; the daemon passes `now` in, and the tests pass any
//! time they like.

use super::cron::CronSchedule;
use crate::config::CatchUp;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use std::time::Duration;

/// A fire time older than this is "missed", not "on time": `catch_up =
/// "none"` skips it.
pub const ON_TIME: Duration = Duration::from_secs(5 * 60);

/// At most this many missed fire times are run by `catch_up = "all"` at once;
/// older ones are skipped with a warning.
pub const CATCH_UP_LIMIT: usize = 1000;

/// One firing of a pipeline's schedule and the local date it computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot {
    pub fire: DateTime<Utc>,
    /// The fire time's local date in the reporting timezone.
    pub as_of: NaiveDate,
}

impl Slot {
    pub fn new(fire: DateTime<Utc>, reporting_tz: Tz) -> Slot {
        Slot {
            fire,
            as_of: fire.with_timezone(&reporting_tz).date_naive(),
        }
    }
}

/// What to run now, and what the policy skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    /// Fire times to run, oldest first.
    pub fires: Vec<DateTime<Utc>>,
    /// Fire times in the window that will not run (at least this many when
    /// `truncated`).
    pub skipped: usize,
    pub truncated: bool,
}

/// The fire times in `(after, now]` to run now under `policy`. The newest
/// one runs under `latest`, every one under `all` (up to [`CATCH_UP_LIMIT`],
/// the newest kept), and under `none` only the newest and only if it fired
/// less than [`ON_TIME`] ago.
pub fn due(schedule: &CronSchedule, after: DateTime<Utc>, now: DateTime<Utc>, policy: CatchUp) -> Due {
    let none = Due {
        fires: Vec::new(),
        skipped: 0,
        truncated: false,
    };
    let Some(latest) = schedule.latest_at_or_before(now) else {
        return none;
    };
    if latest <= after {
        return none;
    }
    match policy {
        CatchUp::All => {
            // Keep the newest CATCH_UP_LIMIT: walk back from `latest`.
            let (older, truncated) = schedule.fires_between(after, latest, CATCH_UP_LIMIT + 1);
            if older.len() <= CATCH_UP_LIMIT && !truncated {
                return Due {
                    fires: older,
                    skipped: 0,
                    truncated: false,
                };
            }
            let mut fires = vec![latest];
            let mut t = latest;
            while fires.len() < CATCH_UP_LIMIT {
                match schedule.latest_at_or_before(t - chrono::Duration::seconds(1)) {
                    Some(f) if f > after => {
                        fires.push(f);
                        t = f;
                    }
                    _ => break,
                }
            }
            fires.reverse();
            Due {
                fires,
                skipped: older.len().saturating_sub(CATCH_UP_LIMIT),
                truncated: true,
            }
        }
        CatchUp::Latest | CatchUp::None => {
            let (older, truncated) = schedule.fires_between(after, latest, CATCH_UP_LIMIT);
            let missed_before_latest = older.len().saturating_sub(1);
            let on_time = (now - latest).to_std().unwrap_or(Duration::ZERO) <= ON_TIME;
            if policy == CatchUp::None && !on_time {
                Due {
                    fires: Vec::new(),
                    skipped: missed_before_latest + 1,
                    truncated,
                }
            } else {
                Due {
                    fires: vec![latest],
                    skipped: missed_before_latest,
                    truncated,
                }
            }
        }
    }
}

/// The newest fire time a successful run covered: the last fire at or before
/// both its start and the end of its as-of day (in the reporting timezone).
/// A scheduled run started after its fire with the fire's date, so it covers
/// that fire; a manual run of today covers today's fires up to its start; a
/// backfill of an old date covers nothing newer than that date.
pub fn covered_fire(
    schedule: &CronSchedule,
    reporting_tz: Tz,
    started_at: DateTime<Utc>,
    as_of: NaiveDate,
) -> Option<DateTime<Utc>> {
    let end_of_day = as_of
        .succ_opt()
        .map(|next| local_midnight(reporting_tz, next) - chrono::Duration::seconds(1));
    let bound = match end_of_day {
        Some(e) if e < started_at => e,
        _ => started_at,
    };
    schedule.latest_at_or_before(bound)
}

/// The first instant of `date` in `tz` (the end of a DST gap if midnight is
/// skipped there).
pub fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let mut t = date.and_time(chrono::NaiveTime::MIN);
    for _ in 0..4 {
        if let Some(d) = tz.from_local_datetime(&t).earliest() {
            return d.with_timezone(&Utc);
        }
        t += chrono::Duration::minutes(30);
    }
    Utc.from_utc_datetime(&date.and_time(chrono::NaiveTime::MIN))
}

/// Retries of one slot: exponential backoff with jitter; permanent errors
/// never retry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub retries: u32,
    /// Delay before the first retry.
    pub base: Duration,
    /// No delay is longer than this.
    pub max: Duration,
}

/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

impl RetryPolicy {
    pub fn new(retries: u32, base: Duration) -> Self {
        RetryPolicy {
            retries,
            base,
            max: MAX_BACKOFF.max(base),
        }
    }

    /// The wait before retry number `retry` (1 = the first retry):
    /// `base * 2^(retry-1)`, capped at `max`, then scaled into [50%, 100%] by
    /// `jitter`, a uniform draw from [0, 1) ("equal jitter": never shorter than
    /// half the step, and two schedulers that failed together drift apart).
    pub fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let exp = retry.saturating_sub(1).min(30);
        let step = self.base.saturating_mul(1u32 << exp).min(self.max);
        let jitter = if jitter.is_finite() { jitter.clamp(0.0, 1.0) } else { 0.0 };
        step.mul_f64(0.5 + 0.5 * jitter)
    }

    /// After attempt number `attempt` (1 = the first) failed: the wait before
    /// the next one, or `None` to give up.
    pub fn after_failure(&self, attempt: u32, permanent: bool, jitter: f64) -> Option<Duration> {
        if permanent || attempt > self.retries {
            None
        } else {
            Some(self.delay(attempt, jitter))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("rfc3339").with_timezone(&Utc)
    }

    fn daily() -> CronSchedule {
        CronSchedule::parse("0 6 * * *", Tz::UTC).expect("parse")
    }

    #[test]
    fn a_fire_on_time_runs_under_every_policy() {
        let after = utc("2026-05-01T06:00:00Z");
        let now = utc("2026-05-02T06:00:01Z");
        for policy in [CatchUp::Latest, CatchUp::All, CatchUp::None] {
            let d = due(&daily(), after, now, policy);
            assert_eq!(d.fires, vec![utc("2026-05-02T06:00:00Z")], "{policy:?}");
            assert_eq!(d.skipped, 0);
        }
    }

    #[test]
    fn nothing_is_due_before_the_next_fire() {
        let after = utc("2026-05-02T06:00:00Z");
        for now in [utc("2026-05-02T06:00:00Z"), utc("2026-05-03T05:59:59Z")] {
            for policy in [CatchUp::Latest, CatchUp::All, CatchUp::None] {
                assert!(due(&daily(), after, now, policy).fires.is_empty());
            }
        }
    }

    #[test]
    fn catch_up_policies_after_downtime() {
        // Last covered fire: May 1st; the daemon comes back on May 4th at noon.
        let after = utc("2026-05-01T06:00:00Z");
        let now = utc("2026-05-04T12:00:00Z");
        let all = due(&daily(), after, now, CatchUp::All);
        assert_eq!(
            all.fires,
            vec![utc("2026-05-02T06:00:00Z"), utc("2026-05-03T06:00:00Z"), utc("2026-05-04T06:00:00Z")]
        );
        let latest = due(&daily(), after, now, CatchUp::Latest);
        assert_eq!(latest.fires, vec![utc("2026-05-04T06:00:00Z")]);
        assert_eq!(latest.skipped, 2);
        let none = due(&daily(), after, now, CatchUp::None);
        assert!(none.fires.is_empty());
        assert_eq!(none.skipped, 3);
        // Back within ON_TIME of a fire, `none` still runs that fire.
        let none = due(&daily(), after, utc("2026-05-04T06:04:00Z"), CatchUp::None);
        assert_eq!(none.fires, vec![utc("2026-05-04T06:00:00Z")]);
        assert_eq!(none.skipped, 2);
    }

    #[test]
    fn catch_up_all_keeps_the_newest_within_the_limit() {
        let every_minute = CronSchedule::parse("* * * * *", Tz::UTC).expect("parse");
        let after = utc("2026-05-01T00:00:00Z");
        let now = utc("2026-05-03T00:00:00Z"); // 2880 fires
        let d = due(&every_minute, after, now, CatchUp::All);
        assert!(d.truncated);
        assert_eq!(d.fires.len(), CATCH_UP_LIMIT);
        assert_eq!(d.fires.last(), Some(&now));
        assert!(d.fires.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn as_of_is_the_local_date_in_the_reporting_timezone() {
        // 23:30 UTC on May 1st is May 2nd in Tokyo and May 1st in New York.
        let fire = utc("2026-05-01T23:30:00Z");
        assert_eq!(Slot::new(fire, chrono_tz::Asia::Tokyo).as_of, NaiveDate::from_ymd_opt(2026, 5, 2).expect("date"));
        assert_eq!(
            Slot::new(fire, chrono_tz::America::New_York).as_of,
            NaiveDate::from_ymd_opt(2026, 5, 1).expect("date")
        );
    }

    #[test]
    fn what_a_successful_run_covers() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        // A scheduled run a second after its fire.
        assert_eq!(
            covered_fire(&daily(), Tz::UTC, utc("2026-05-02T06:00:01Z"), d("2026-05-02")),
            Some(utc("2026-05-02T06:00:00Z"))
        );
        // A manual run at 05:00 covers yesterday's fire only.
        assert_eq!(
            covered_fire(&daily(), Tz::UTC, utc("2026-05-02T05:00:00Z"), d("2026-05-02")),
            Some(utc("2026-05-01T06:00:00Z"))
        );
        // A catch-up run on May 4th for May 2nd covers May 2nd, not the 3rd.
        assert_eq!(
            covered_fire(&daily(), Tz::UTC, utc("2026-05-04T12:00:00Z"), d("2026-05-02")),
            Some(utc("2026-05-02T06:00:00Z"))
        );
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter() {
        let p = RetryPolicy::new(3, Duration::from_secs(10));
        assert_eq!(p.delay(1, 0.999_999).as_secs(), 9); // ~10 s
        assert_eq!(p.delay(1, 0.0), Duration::from_secs(5));
        assert_eq!(p.delay(2, 0.0), Duration::from_secs(10));
        assert_eq!(p.delay(3, 0.0), Duration::from_secs(20));
        for retry in 1..=3 {
            for j in [0.0, 0.3, 0.7, 0.99] {
                let d = p.delay(retry, j);
                let step = 10.0 * 2f64.powi(retry as i32 - 1);
                assert!(d.as_secs_f64() >= step / 2.0 && d.as_secs_f64() <= step, "{retry} {j} {d:?}");
            }
        }
        // Capped.
        assert_eq!(p.delay(40, 0.999_999_9).as_secs(), MAX_BACKOFF.as_secs() - 1);
        assert!(p.delay(40, 1.0) <= MAX_BACKOFF);
        // Attempts 1..=3 failed transiently: retry; the 4th attempt is the last.
        assert!(p.after_failure(1, false, 0.5).is_some());
        assert!(p.after_failure(3, false, 0.5).is_some());
        assert!(p.after_failure(4, false, 0.5).is_none());
        // Permanent errors never retry.
        assert!(p.after_failure(1, true, 0.5).is_none());
        // No retries configured.
        assert!(RetryPolicy::new(0, Duration::from_secs(1)).after_failure(1, false, 0.5).is_none());
    }
}
