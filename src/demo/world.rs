//! The fixed world the simulation runs in: the tables of segments, tiers and
//! add-ons, countries, industries, owners, company names, features and reasons,
//! and the calendar of the history ([`World`]). Plain data and date arithmetic;
//! it holds no state of any customer.

use chrono::{Datelike, Days, Months, NaiveDate};

use super::{DemoError, DemoOptions};

/// Days after `end_date` that receive a handful of events (as-of exclusion).
const FUTURE_DAYS: u32 = 3;

pub(super) const SEGMENTS: [&str; 3] = ["smb", "mid_market", "enterprise"];

pub(super) struct SegParams {
    pub(super) tiers: (u32, u32),
    pub(super) seats: (u32, u32),
    pub(super) users: (u32, u32),
    /// Monthly churn hazard of an average customer.
    pub(super) hazard: f64,
    /// Mean usage events on an active day, before engagement.
    pub(super) usage: f64,
    /// Support tickets per month of an average customer.
    pub(super) tickets: f64,
}

pub(super) const SEG: [SegParams; 3] = [
    SegParams {
        tiers: (0, 1),
        seats: (1, 10),
        users: (1, 8),
        hazard: 0.035,
        usage: 3.0,
        tickets: 0.3,
    },
    SegParams {
        tiers: (1, 2),
        seats: (5, 40),
        users: (5, 40),
        hazard: 0.02,
        usage: 6.0,
        tickets: 0.8,
    },
    SegParams {
        tiers: (2, 3),
        seats: (30, 200),
        users: (25, 150),
        hazard: 0.01,
        usage: 12.0,
        tickets: 1.6,
    },
];

/// (name, annual name, monthly price per seat in cents)
pub(super) const TIERS: [(&str, &str, i64); 4] = [
    ("starter", "starter_annual", 1900),
    ("growth", "growth_annual", 4900),
    ("business", "business_annual", 9900),
    ("enterprise", "enterprise_annual", 14900),
];
/// (name, flat monthly price in cents); plan numbers 4.. in [`Sub::plan`].
pub(super) const ADDONS: [(&str, i64); 3] = [
    ("addon_analytics", 29900),
    ("addon_premium_support", 49900),
    ("addon_sso", 19900),
];

/// (ISO country, UTC offset in minutes of the customer's office)
pub(super) const COUNTRIES: [(&str, i32); 12] = [
    ("US", -300),
    ("US", -480),
    ("GB", 0),
    ("DE", 60),
    ("FR", 60),
    ("JP", 540),
    ("IN", 330),
    ("BR", -180),
    ("AU", 600),
    ("CA", -300),
    ("SG", 480),
    ("NL", 60),
];
pub(super) const INDUSTRIES: [&str; 10] = [
    "software",
    "fintech",
    "healthcare",
    "retail",
    "education",
    "manufacturing",
    "media",
    "logistics",
    "nonprofit",
    "real_estate",
];
pub(super) const OWNERS: [&str; 6] = [
    "alice.martin",
    "bob.nguyen",
    "carla.silva",
    "deepak.rao",
    "emma.schulz",
    "farid.haddad",
];
pub(super) const NAME_A: [&str; 24] = [
    "Acme",
    "Northwind",
    "Blue Harbor",
    "Lumen",
    "Vertex",
    "Quill",
    "Brightpath",
    "Copperleaf",
    "Nimbus",
    "Redwood",
    "Silverline",
    "Tidal",
    "Kestrel",
    "Orchard",
    "Polar",
    "Summit",
    "Ironbridge",
    "Maple & Oak",
    "Müller",
    "Café Olé",
    "O'Brien",
    "\"Blue\" Fox",
    "Atlas",
    "Juniper",
];
pub(super) const NAME_B: [&str; 16] = [
    "Analytics",
    "Labs",
    "Logistics",
    "Health",
    "Studios",
    "Systems",
    "Retail",
    "Partners",
    "GmbH",
    "Foods",
    "Robotics",
    "Media",
    "Learning",
    "Ventures",
    "Co.",
    "Software",
];
pub(super) const FEATURES: [&str; 8] = [
    "dashboards",
    "reports",
    "exports",
    "api",
    "integrations",
    "alerts",
    "automation",
    "sharing",
];
pub(super) const FEATURE_API: u8 = 3;
pub(super) const SOURCES: [&str; 3] = ["web", "ios", "android"];
pub(super) const CANCEL_REASONS: [&str; 6] = [
    "too_expensive",
    "switched_competitor",
    "missing_features",
    "no_longer_needed",
    "business_closed",
    "poor_support",
];
pub(super) const PAUSE_REASONS: [&str; 3] = ["seasonal", "budget_freeze", "migration"];
pub(super) const FAILURE_CODES: [&str; 3] = ["card_declined", "insufficient_funds", "expired_card"];
/// Survey comments: 1..=4 positive, 5..=8 negative (0 is "no comment").
pub(super) const COMMENTS: [&str; 9] = [
    "",
    "Great product, the alerts save us hours.",
    "Love the new \"automation\" builder!",
    "Ça marche très bien 👍",
    "Reports are exactly what our board needs.",
    "Too expensive for what we use.",
    "Support was slow to answer.",
    "Exports keep timing out.\nPlease fix.",
    "We are moving to a cheaper tool, sorry.",
];

/// Dates of the simulation: day indices count from `start`.
pub(super) struct World {
    start: NaiveDate,
    /// Index of `end_date`.
    pub(super) last: u32,
    /// `last + 1 + FUTURE_DAYS`.
    pub(super) total_days: u32,
    pub(super) start_weekday: u32,
    /// Days of the fortnightly newsletter.
    pub(super) campaigns: Vec<u32>,
}

impl World {
    pub(super) fn new(opts: &DemoOptions) -> Result<World, DemoError> {
        if opts.customers == 0 || opts.months == 0 {
            return Err(DemoError::EmptyHistory {
                customers: opts.customers,
                months: opts.months,
            });
        }
        let range_err = || DemoError::DateRange {
            end_date: opts.end_date,
            months: opts.months,
        };
        let start = opts
            .end_date
            .with_day(1)
            .and_then(|d| d.checked_sub_months(Months::new(opts.months - 1)))
            .ok_or_else(range_err)?;
        // Head room for the churn look-ahead of subscriptions (see `simulate_subscriber`).
        let horizon = opts
            .end_date
            .checked_add_days(Days::new(400))
            .ok_or_else(range_err)?;
        if start.year() < 1 || horizon.year() > 9998 {
            return Err(range_err());
        }
        let last = (opts.end_date - start).num_days() as u32;
        Ok(World {
            start,
            last,
            total_days: last + 1 + FUTURE_DAYS,
            start_weekday: start.weekday().num_days_from_monday(),
            campaigns: (5..=last).step_by(14).collect(),
        })
    }

    /// The date of day index `d`; `d` stays within the range checked in `new`.
    pub(super) fn date(&self, d: u32) -> NaiveDate {
        self.start + Days::new(u64::from(d))
    }

    /// Day index of the `k`-th monthly anniversary of `from` (clamped to month ends).
    pub(super) fn anniversary(&self, from: NaiveDate, k: u32) -> Option<u32> {
        let date = from.checked_add_months(Months::new(k))?;
        Some((date - self.start).num_days() as u32)
    }
}
