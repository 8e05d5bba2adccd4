//! Cron expressions and their fire times. The one parser of schedules: the
//! config check and the scheduler both go through [`CronSchedule::parse`], so
//! what validates is exactly what fires. Standard 5-field cron read in an IANA
//! timezone (Vixie semantics: a restricted day-of-month and day-of-week match
//! when either does; DST gaps fire at the first valid minute after the gap,
//! DST overlaps fire once). Pure: every time is an argument, nothing here reads
//! the clock.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// A parsed schedule in its timezone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expr: String,
    cron: Cron,
    tz: Tz,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.tz == other.tz
    }
}

impl CronSchedule {
    /// Parse a 5-field expression (`minute hour day-of-month month
    /// day-of-week`, names such as `MON` and `JAN`, or an alias such as
    /// `@daily`). The error says what is wrong and how the expression is shaped.
    pub fn parse(expr: &str, tz: Tz) -> Result<Self, String> {
        let fields = expr.split_whitespace().count();
        if !expr.trim_start().starts_with('@') && fields != 5 {
            return Err(format!(
                "cron expression {expr:?} has {fields} field(s); use 5: minute hour day-of-month month day-of-week, e.g. \"0 6 * * *\""
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .dom_and_dow(false)
            .build()
            .parse(expr)
            .map_err(|e| {
                format!("cron expression {expr:?} is invalid ({e}); use 5 fields: minute hour day-of-month month day-of-week, e.g. \"0 6 * * *\"")
            })?;
        Ok(CronSchedule {
            expr: expr.to_string(),
            cron,
            tz,
        })
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The last fire time at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Fire times are whole minutes: search from the end of t's second so
        // that a fire at exactly `t` (with sub-second noise) is found.
        let t = truncate_to_second(t);
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.tz), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// Fire times in `(after, until]`, oldest first, at most `limit`; the
    /// flag says whether the limit cut the list short.
    pub fn fires_between(&self, after: DateTime<Utc>, until: DateTime<Utc>, limit: usize) -> (Vec<DateTime<Utc>>, bool) {
        let mut out = Vec::new();
        let mut t = after;
        while let Some(next) = self.next_after(t) {
            if next > until {
                return (out, false);
            }
            if out.len() == limit {
                return (out, true);
            }
            out.push(next);
            t = next;
        }
        (out, false)
    }
}

fn truncate_to_second(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_opt(t.timestamp(), 0).single().unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("rfc3339").with_timezone(&Utc)
    }

    #[test]
    fn daily_fires_in_the_schedule_timezone() {
        let s = CronSchedule::parse("0 6 * * *", chrono_tz::Europe::Berlin).expect("parse");
        // Winter: Berlin is UTC+1.
        assert_eq!(s.next_after(utc("2026-01-10T12:00:00Z")), Some(utc("2026-01-11T05:00:00Z")));
        // Summer: UTC+2.
        assert_eq!(s.next_after(utc("2026-07-10T12:00:00Z")), Some(utc("2026-07-11T04:00:00Z")));
        // Across the spring-forward night the offset changes from one fire to the next.
        let (fires, cut) = s.fires_between(utc("2026-03-27T12:00:00Z"), utc("2026-03-30T12:00:00Z"), 10);
        assert!(!cut);
        assert_eq!(
            fires,
            vec![utc("2026-03-28T05:00:00Z"), utc("2026-03-29T04:00:00Z"), utc("2026-03-30T04:00:00Z")]
        );
    }

    #[test]
    fn latest_at_or_before_includes_the_exact_instant() {
        let s = CronSchedule::parse("30 * * * *", Tz::UTC).expect("parse");
        assert_eq!(s.latest_at_or_before(utc("2026-05-01T10:30:00Z")), Some(utc("2026-05-01T10:30:00Z")));
        assert_eq!(s.latest_at_or_before(utc("2026-05-01T10:29:59Z")), Some(utc("2026-05-01T09:30:00Z")));
        let t = utc("2026-05-01T10:30:00Z") + chrono::Duration::milliseconds(400);
        assert_eq!(s.latest_at_or_before(t), Some(utc("2026-05-01T10:30:00Z")));
    }

    #[test]
    fn day_of_month_or_day_of_week_as_in_standard_cron() {
        // The 1st of the month OR any Monday.
        let s = CronSchedule::parse("0 0 1 * MON", Tz::UTC).expect("parse");
        let (fires, _) = s.fires_between(utc("2026-06-01T00:00:00Z"), utc("2026-06-16T00:00:00Z"), 10);
        // 2026-06-01 is a Monday; then Mondays 8 and 15.
        assert_eq!(fires, vec![utc("2026-06-08T00:00:00Z"), utc("2026-06-15T00:00:00Z")]);
        let (fires, _) = s.fires_between(utc("2026-06-28T00:00:00Z"), utc("2026-07-02T00:00:00Z"), 10);
        assert_eq!(fires, vec![utc("2026-06-29T00:00:00Z"), utc("2026-07-01T00:00:00Z")]);
    }

    #[test]
    fn fires_between_respects_the_limit() {
        let s = CronSchedule::parse("*/15 * * * *", Tz::UTC).expect("parse");
        let (fires, cut) = s.fires_between(utc("2026-05-01T00:00:00Z"), utc("2026-05-02T00:00:00Z"), 3);
        assert!(cut);
        assert_eq!(fires.len(), 3);
        let (fires, cut) = s.fires_between(utc("2026-05-01T00:00:00Z"), utc("2026-05-01T01:00:00Z"), 100);
        assert!(!cut);
        assert_eq!(fires.len(), 4);
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (expr, needle) in [
            ("0 6 * *", "4 field(s)"),
            ("0 0 6 * * *", "6 field(s)"),
            ("61 6 * * *", "is invalid"),
            ("0 25 * * *", "is invalid"),
            ("0 6 * * FUNDAY", "is invalid"),
            ("every day", "2 field(s)"),
        ] {
            let e = CronSchedule::parse(expr, Tz::UTC).expect_err(expr);
            assert!(e.contains(needle), "{expr}: {e}");
            assert!(e.contains(expr), "{expr}: {e}");
        }
        assert!(CronSchedule::parse("@daily", Tz::UTC).is_ok());
        assert!(CronSchedule::parse("15 6 * * mon-fri", Tz::UTC).is_ok());
    }
}
