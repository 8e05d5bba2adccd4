//! Deterministic sample data: raw event objects, as `spec/EVENTS.md` describes
//! them, written under a raw prefix on the local disk so that the pipeline can be
//! demonstrated, tested and benchmarked without real customer data.
//!
//! This module owns a small simulation of a SaaS business (customers in
//! segments, subscriptions with upgrades, downgrades, pauses, churn and
//! reactivation, payments with failures and refunds, product usage that fades
//! before churn, support tickets, surveys and email campaigns) and its rendering
//! to JSON Lines. In messy mode it adds what real landing zones contain: rows of
//! every reject reason, exact and conflicting duplicates, blank lines, a CSV, a
//! gzip and a zstd object, and files the pipeline must skip or ignore.
//!
//! It must not read the wall clock, use unseeded randomness, hold all events in
//! memory or depend on the rest of the crate: the same [`DemoOptions`] always
//! give byte-identical output, and usage events (the bulk) are streamed to disk
//! day by day. Only the sparse lifecycle events are planned up front.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{Datelike, Days, Months, NaiveDate};
use flate2::write::GzEncoder;
use tracing::info;

/// An object rolls over to the next part once this many (uncompressed) bytes
/// are in it: 10 million events become about two thousand objects of 1 MiB.
const PART_BYTES: u64 = 1 << 20;
/// Days after `end_date` that receive a handful of events (as-of exclusion).
const FUTURE_DAYS: u32 = 3;
/// Capacity of the buffered writer of each object.
const WRITE_BUFFER: usize = 256 * 1024;

/// What to generate. [`DemoOptions::demo`] gives the defaults of `tenure demo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOptions {
    /// Number of customers (`cus_00000`, `cus_00001`, ...). Demo default 400.
    pub customers: usize,
    /// Months of history, ending with the month of `end_date`. Default 24.
    pub months: u32,
    /// Last day of the generated history. Only a handful of events fall on the
    /// three days after it, so that as-of exclusion can be tested.
    pub end_date: NaiveDate,
    /// Seed of the deterministic generator.
    pub seed: u64,
    /// Benchmark mode: scale usage events so that the total number of events is
    /// about this many (it cannot go below one usage event per active
    /// customer-day plus the lifecycle events).
    pub target_events: Option<u64>,
    /// Add bad rows, duplicates, blank lines, CSV, gzip and zstd objects, and
    /// files that the pipeline must skip (`notes.txt`) or ignore (`_SUCCESS`,
    /// `_tmp/`, `.part-*`).
    pub messy: bool,
}

impl DemoOptions {
    /// The demo defaults: 400 customers, 24 months ending at `end_date`,
    /// seed 42, normal data volume, messy input.
    pub fn demo(end_date: NaiveDate) -> Self {
        DemoOptions {
            customers: 400,
            months: 24,
            end_date,
            seed: 42,
            target_events: None,
            messy: true,
        }
    }
}

/// What [`generate`] wrote. For the data objects,
/// `rows read = events + bad_rows + duplicate_rows` (blank lines are not rows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoSummary {
    /// Data objects the pipeline reads (JSON Lines, CSV, gzip, zstd; an empty
    /// object included). Skipped and ignored files are not counted.
    pub objects: usize,
    /// Rows the pipeline must accept: valid events with distinct `event_id`s,
    /// including the few dated after `end_date`.
    pub events: u64,
    /// Rows the pipeline must reject (every reason code of EVENTS.md).
    pub bad_rows: u64,
    /// Valid rows whose `event_id` was already accepted earlier in path order
    /// (exact copies, the same instant in another offset, and a few with a
    /// conflicting payload).
    pub duplicate_rows: u64,
    /// Size on disk of the data objects.
    pub bytes: u64,
    /// Number of customers simulated.
    pub customers: usize,
}

/// Why demo data could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "demo needs at least one customer and one month of history \
         (got {customers} customers, {months} months)"
    )]
    EmptyHistory { customers: usize, months: u32 },
    #[error(
        "demo history of {months} months ending {end_date} is outside the supported \
         dates (years 1 to 9998); choose another end date or fewer months"
    )]
    DateRange { end_date: NaiveDate, months: u32 },
    #[error("cannot create demo directory {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write demo object {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Write demo data under `dir` (the raw prefix): `events/YYYY/MM/DD/part-NNNN.jsonl`
/// objects, one or more per day, plus the messy extras when asked. Objects with
/// the same names are overwritten; other files in `dir` are left alone, so use
/// an empty directory.
pub fn generate(dir: &Path, opts: &DemoOptions) -> Result<DemoSummary, DemoError> {
    let world = World::new(opts)?;
    let mut plan = build_plan(opts, &world);
    let fixed: u64 = plan.buckets.iter().map(|b| b.len() as u64).sum();
    let scale = usage_scale(&plan.customers, &world, opts.target_events, fixed);

    let mut out = Out::new(dir, opts.customers);
    let messy = opts.messy.then(|| Messy::new(&world, &plan));
    let mut fmt_rng = Rng::derive(opts.seed, 0xF0F0_F0F0);
    let mut json = JsonLine::default();
    let mut scratch = Vec::with_capacity(64);
    let mut cursors = vec![0usize; plan.customers.len()];
    let mut pending: Vec<PendingDup> = Vec::new();
    let mut dup_candidates = 0usize;

    for d in 0..world.total_days {
        let date = world.date(d);
        let days = DayStrs::new(date);
        let day_messy = messy.as_ref().map(|m| m.day(d)).unwrap_or_default();
        out.begin_day(date, day_messy.encoding, day_messy.crlf, day_messy.bom);

        let mut sparse = std::mem::take(&mut plan.buckets[d as usize]);
        sparse.sort_by_key(|s| (s.sec, s.cust));
        let mut csv_rows: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut took_candidate = false;
        for ev in &sparse {
            let c = &plan.customers[ev.cust as usize];
            let id = out.next_id();
            if day_messy.csv && ev.kind.is_helpdesk() {
                let mut row = CsvRow::new();
                render_sparse(
                    &mut row,
                    &mut fmt_rng,
                    &mut scratch,
                    id,
                    &days,
                    &world,
                    c,
                    ev,
                );
                csv_rows.push(row.cells);
                out.summary.events += 1;
                continue;
            }
            json.begin();
            render_sparse(
                &mut json,
                &mut fmt_rng,
                &mut scratch,
                id,
                &days,
                &world,
                c,
                ev,
            );
            json.end();
            out.valid_line(&json.buf, id)?;
            if messy.is_some() && d <= world.last && d % 15 == 7 && !took_candidate {
                took_candidate = true;
                let kind = DupKind::cycle(dup_candidates);
                dup_candidates += 1;
                if kind == DupKind::SameObject {
                    out.duplicate_line(&json.buf, false)?;
                } else {
                    let emit_day = d + 1 + (dup_candidates as u32 % 4);
                    pending.push(PendingDup {
                        emit_day,
                        line: json.buf.clone(),
                        kind,
                    });
                }
            }
        }
        drop(sparse);

        if d <= world.last {
            let weekend = (world.start_weekday + d) % 7 >= 5;
            for (ci, c) in plan.customers.iter().enumerate() {
                let Some(u) = c.usage_at(&mut cursors[ci], d, weekend) else {
                    continue;
                };
                if !fmt_rng.chance(u.p) {
                    continue;
                }
                write_usage_day(&mut out, &mut json, &mut fmt_rng, &days, c, &u, scale)?;
            }
        }

        if let Some(m) = &messy {
            m.write_day_extras(&mut out, &mut scratch, d, &days, &day_messy)?;
            let flush_all = d == world.last;
            let mut keep = Vec::with_capacity(pending.len());
            for p in pending.drain(..) {
                if p.emit_day <= d || flush_all {
                    let (line, conflicting) = p.kind.render(&p.line);
                    out.duplicate_line(&line, conflicting)?;
                } else {
                    keep.push(p);
                }
            }
            pending = keep;
            if day_messy.csv {
                let bytes = m.csv_object(&mut out, &csv_rows, &days)?;
                let rel = format!("{}/helpdesk-export.csv", out.day_rel);
                out.whole_object(&rel, &bytes, true)?;
            }
            if day_messy.empty_object {
                let rel = format!("{}/empty-0000.jsonl", out.day_rel);
                out.whole_object(&rel, b"", true)?;
            }
        }
        out.end_day()?;
    }
    if let Some(m) = &messy {
        m.write_side_files(&mut out, &world)?;
    }

    let summary = out.summary.clone();
    info!(
        dir = %dir.display(),
        objects = summary.objects,
        events = summary.events,
        bad_rows = summary.bad_rows,
        duplicate_rows = summary.duplicate_rows,
        conflicting_duplicates = out.conflicting,
        bytes = summary.bytes,
        customers = summary.customers,
        "demo data written"
    );
    Ok(summary)
}

// ---------------------------------------------------------------------------
// Deterministic randomness

/// splitmix64: tiny, fast, and good enough for sample data.
#[derive(Debug, Clone)]
struct Rng(u64);

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// An independent stream for `(seed, stream)`.
    fn derive(seed: u64, stream: u64) -> Rng {
        Rng(mix64(
            seed ^ mix64(stream.wrapping_add(0x9E37_79B9_7F4A_7C15)),
        ))
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }
    /// Uniform in [0, 1).
    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
    /// Uniform in [0, n); 0 when n is 0.
    fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    /// Uniform in [lo, hi], inclusive.
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below(u64::from(hi - lo) + 1) as u32
    }
    /// `x` rounded down or up at random so that the mean is `x` (x ≥ 0).
    fn round(&mut self, x: f64) -> u64 {
        let floor = x as u64;
        floor + u64::from(self.chance(x - floor as f64))
    }
}

// ---------------------------------------------------------------------------
// The business being simulated

const SEGMENTS: [&str; 3] = ["smb", "mid_market", "enterprise"];

struct SegParams {
    tiers: (u32, u32),
    seats: (u32, u32),
    users: (u32, u32),
    /// Monthly churn hazard of an average customer.
    hazard: f64,
    /// Mean usage events on an active day, before engagement.
    usage: f64,
    /// Support tickets per month of an average customer.
    tickets: f64,
}

const SEG: [SegParams; 3] = [
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
const TIERS: [(&str, &str, i64); 4] = [
    ("starter", "starter_annual", 1900),
    ("growth", "growth_annual", 4900),
    ("business", "business_annual", 9900),
    ("enterprise", "enterprise_annual", 14900),
];
/// (name, flat monthly price in cents); plan numbers 4.. in [`Sub::plan`].
const ADDONS: [(&str, i64); 3] = [
    ("addon_analytics", 29900),
    ("addon_premium_support", 49900),
    ("addon_sso", 19900),
];

/// (ISO country, UTC offset in minutes of the customer's office)
const COUNTRIES: [(&str, i32); 12] = [
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
const INDUSTRIES: [&str; 10] = [
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
const OWNERS: [&str; 6] = [
    "alice.martin",
    "bob.nguyen",
    "carla.silva",
    "deepak.rao",
    "emma.schulz",
    "farid.haddad",
];
const NAME_A: [&str; 24] = [
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
const NAME_B: [&str; 16] = [
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
const FEATURES: [&str; 8] = [
    "dashboards",
    "reports",
    "exports",
    "api",
    "integrations",
    "alerts",
    "automation",
    "sharing",
];
const FEATURE_API: u8 = 3;
const SOURCES: [&str; 3] = ["web", "ios", "android"];
const CANCEL_REASONS: [&str; 6] = [
    "too_expensive",
    "switched_competitor",
    "missing_features",
    "no_longer_needed",
    "business_closed",
    "poor_support",
];
const PAUSE_REASONS: [&str; 3] = ["seasonal", "budget_freeze", "migration"];
const FAILURE_CODES: [&str; 3] = ["card_declined", "insufficient_funds", "expired_card"];
/// Survey comments: 1..=4 positive, 5..=8 negative (0 is "no comment").
const COMMENTS: [&str; 9] = [
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
struct World {
    start: NaiveDate,
    /// Index of `end_date`.
    last: u32,
    /// `last + 1 + FUTURE_DAYS`.
    total_days: u32,
    start_weekday: u32,
    /// Days of the fortnightly newsletter.
    campaigns: Vec<u32>,
}

impl World {
    fn new(opts: &DemoOptions) -> Result<World, DemoError> {
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
    fn date(&self, d: u32) -> NaiveDate {
        self.start + Days::new(u64::from(d))
    }

    /// Day index of the `k`-th monthly anniversary of `from` (clamped to month ends).
    fn anniversary(&self, from: NaiveDate, k: u32) -> Option<u32> {
        let date = from.checked_add_months(Months::new(k))?;
        Some((date - self.start).num_days() as u32)
    }
}

/// A subscription's state after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sub {
    no: u16,
    /// 0..=3 a tier of [`TIERS`], 4.. an add-on of [`ADDONS`].
    plan: u8,
    seats: u32,
    discount: u8,
    annual: bool,
    paused: bool,
    /// Monthly recurring revenue in cents (annual plans normalised to a month).
    mrr: i64,
}

impl Sub {
    fn new(no: u16, plan: u8, seats: u32, discount: u8, annual: bool) -> Sub {
        let mut s = Sub {
            no,
            plan,
            seats,
            discount,
            annual,
            paused: false,
            mrr: 0,
        };
        s.reprice();
        s
    }
    fn reprice(&mut self) {
        let list = match TIERS.get(self.plan as usize) {
            Some(t) => t.2 * i64::from(self.seats),
            None => ADDONS[self.plan as usize - TIERS.len()].1,
        };
        let net = list * i64::from(100 - self.discount) / 100;
        // Annual plans cost ten months a year; the monthly figure stays whole cents.
        self.mrr = if self.annual { net * 10 / 12 } else { net };
    }
    /// What one invoice of this subscription charges.
    fn invoice(&self) -> i64 {
        if self.annual {
            self.mrr * 12
        } else {
            self.mrr
        }
    }
    fn plan_name(&self) -> &'static str {
        match TIERS.get(self.plan as usize) {
            Some(t) if self.annual => t.1,
            Some(t) => t.0,
            None => ADDONS[self.plan as usize - TIERS.len()].0,
        }
    }
    fn is_addon(&self) -> bool {
        self.plan as usize >= TIERS.len()
    }
}

#[derive(Debug, Clone, Copy)]
enum Campaign {
    /// Fortnightly newsletter sent on that day.
    Newsletter(u32),
    Onboarding,
    /// Win-back mail after the churn of that day.
    Winback(u32),
}

/// One planned (sparse) event; usage events are not planned but streamed.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Created,
    Updated {
        segment: Option<u8>,
        owner: Option<u8>,
    },
    SubStarted(Sub),
    SubChanged(Sub),
    SubResumed(Sub),
    SubPaused {
        sub: Sub,
        reason: u8,
    },
    SubCancelled {
        no: u16,
        reason: u8,
    },
    PaySucceeded {
        pay: u32,
        amount: i64,
    },
    PayFailed {
        pay: u32,
        amount: i64,
        code: u8,
    },
    PayRefunded {
        pay: u32,
        amount: i64,
    },
    TicketOpened {
        ticket: u32,
        priority: u8,
    },
    TicketResolved {
        ticket: u32,
        priority: u8,
    },
    Nps {
        score: u8,
        comment: u8,
    },
    Csat {
        score: u8,
    },
    EmailSent(Campaign),
    EmailOpened(Campaign),
    EmailClicked(Campaign),
    Login,
}

impl Kind {
    fn event_type(&self) -> &'static str {
        match self {
            Kind::Created => "customer.created",
            Kind::Updated { .. } => "customer.updated",
            Kind::SubStarted(_) => "subscription.started",
            Kind::SubChanged(_) => "subscription.changed",
            Kind::SubResumed(_) => "subscription.resumed",
            Kind::SubPaused { .. } => "subscription.paused",
            Kind::SubCancelled { .. } => "subscription.cancelled",
            Kind::PaySucceeded { .. } => "payment.succeeded",
            Kind::PayFailed { .. } => "payment.failed",
            Kind::PayRefunded { .. } => "payment.refunded",
            Kind::TicketOpened { .. } => "support.ticket_opened",
            Kind::TicketResolved { .. } => "support.ticket_resolved",
            Kind::Nps { .. } => "survey.nps",
            Kind::Csat { .. } => "survey.csat",
            Kind::EmailSent(_) => "email.sent",
            Kind::EmailOpened(_) => "email.opened",
            Kind::EmailClicked(_) => "email.clicked",
            Kind::Login => "usage.login",
        }
    }
    /// Events sent by the customer's own clients carry their local offset.
    fn is_client_side(&self) -> bool {
        matches!(
            self,
            Kind::TicketOpened { .. }
                | Kind::Nps { .. }
                | Kind::Csat { .. }
                | Kind::EmailOpened(_)
                | Kind::EmailClicked(_)
                | Kind::Login
        )
    }
    /// Events that the messy CSV export of the helpdesk carries.
    fn is_helpdesk(&self) -> bool {
        matches!(
            self,
            Kind::TicketOpened { .. }
                | Kind::TicketResolved { .. }
                | Kind::Nps { .. }
                | Kind::Csat { .. }
        )
    }
}

#[derive(Debug, Clone, Copy)]
struct Sparse {
    /// Second of the UTC day.
    sec: u32,
    cust: u32,
    kind: Kind,
}

/// A stretch of days with product usage at a level (1 normal, lower in trials,
/// pauses and evaluations), fading before `churn`.
#[derive(Debug, Clone, Copy)]
struct Span {
    from: u32,
    /// Exclusive.
    to: u32,
    level: f64,
    ramp_from: u32,
    churn: Option<u32>,
}

/// Usage fades over the 90 days before a cancellation.
fn decline(churn: Option<u32>, d: u32) -> f64 {
    match churn {
        Some(c) if d <= c && c - d < 90 => 0.15 + 0.85 * f64::from(c - d) / 90.0,
        _ => 1.0,
    }
}

struct Usage {
    p: f64,
    mean: f64,
    breadth: u64,
}

struct Cust {
    id: String,
    name: String,
    seg0: u8,
    country: u8,
    industry: u8,
    owner0: u8,
    /// Office offset in minutes: shapes the hours of activity.
    home_off: i32,
    /// Offset written on client-side timestamps (`None`: `Z`).
    ts_off: Option<i32>,
    /// Latent engagement in [0.05, 0.95]: usage, sentiment, churn risk.
    eng: f64,
    users: u32,
    features: [u8; 8],
    breadth: u32,
    usage_mean: f64,
    spans: Vec<Span>,
    /// Subscriptions active at `end_date` (for the events after it).
    final_subs: Vec<Sub>,
    seg_final: u8,
}

impl Cust {
    fn span_at(&self, d: u32) -> Option<&Span> {
        self.spans.iter().find(|s| s.from <= d && d < s.to)
    }

    /// Usage intensity on day `d`; `cursor` walks the spans as days increase.
    fn usage_at(&self, cursor: &mut usize, d: u32, weekend: bool) -> Option<Usage> {
        while *cursor < self.spans.len() && self.spans[*cursor].to <= d {
            *cursor += 1;
        }
        let s = self.spans.get(*cursor)?;
        if d < s.from {
            return None;
        }
        let mut f = s.level * decline(s.churn, d);
        if d >= s.ramp_from && d - s.ramp_from < 21 {
            f *= 0.5 + 0.5 * f64::from(d - s.ramp_from) / 21.0;
        }
        let week = if weekend { 0.3 } else { 1.0 };
        let p = ((0.3 + 0.6 * self.eng) * f.min(1.0) * week).min(0.97);
        let mean = (self.usage_mean * (0.5 + self.eng) * f).max(1.0);
        let breadth = (f64::from(self.breadth) * (0.4 + 0.6 * f.min(1.0)) + 0.5) as u64;
        Some(Usage {
            p,
            mean,
            breadth: breadth.clamp(1, 8),
        })
    }
}

/// Planned customers and their sparse events, bucketed by day.
struct Plan {
    customers: Vec<Cust>,
    buckets: Vec<Vec<Sparse>>,
}

fn build_plan(opts: &DemoOptions, w: &World) -> Plan {
    let mut buckets: Vec<Vec<Sparse>> = (0..w.total_days).map(|_| Vec::new()).collect();
    let mut customers = Vec::with_capacity(opts.customers);
    for ci in 0..opts.customers as u32 {
        let mut sim = Sim {
            w,
            rng: Rng::derive(opts.seed, u64::from(ci)),
            ci,
            events: Vec::new(),
            pay_no: 0,
        };
        let c = simulate_customer(&mut sim);
        for (day, ev) in sim.events {
            buckets[day as usize].push(ev);
        }
        customers.push(c);
    }
    plan_future(&customers, w, &mut buckets);
    Plan { customers, buckets }
}

/// A handful of events after `end_date`: each would change a metric if it were
/// (wrongly) counted as of `end_date`. Times are at or after 12:00 UTC on the
/// first day after it, so their local date is after `end_date` in any zone.
fn plan_future(customers: &[Cust], w: &World, buckets: &mut [Vec<Sparse>]) {
    let active: Vec<u32> = customers
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            c.final_subs
                .first()
                .is_some_and(|s| !s.paused && !s.is_addon())
        })
        .map(|(i, _)| i as u32)
        .take(5)
        .collect();
    let d1 = w.last + 1;
    let mut push = |day: u32, sec: u32, cust: u32, kind: Kind| {
        buckets[day as usize].push(Sparse { sec, cust, kind });
    };
    for (n, &ci) in active.iter().enumerate() {
        let c = &customers[ci as usize];
        let main = c.final_subs[0];
        match n {
            0 => {
                let mut up = main;
                up.seats *= 2;
                up.reprice();
                push(d1, 46_000, ci, Kind::SubChanged(up));
                push(d1, 47_000, ci, Kind::Login);
            }
            1 => {
                push(
                    d1,
                    48_000,
                    ci,
                    Kind::SubCancelled {
                        no: main.no,
                        reason: 0,
                    },
                );
                push(d1 + 1, 30_000, ci, Kind::Login);
            }
            2 => push(
                d1,
                50_000,
                ci,
                Kind::PaySucceeded {
                    pay: 9999,
                    amount: main.invoice(),
                },
            ),
            3 => push(
                d1 + 1,
                45_000,
                ci,
                Kind::Updated {
                    segment: Some((c.seg_final + 1) % 3),
                    owner: None,
                },
            ),
            _ => {
                push(
                    d1 + 1,
                    52_000,
                    ci,
                    Kind::Nps {
                        score: 2,
                        comment: 6,
                    },
                );
                push(
                    d1 + 2,
                    600,
                    ci,
                    Kind::TicketOpened {
                        ticket: 9999,
                        priority: 3,
                    },
                );
            }
        }
    }
}

/// The per-customer simulation: its own random stream and its sparse events.
struct Sim<'a> {
    w: &'a World,
    rng: Rng,
    ci: u32,
    events: Vec<(u32, Sparse)>,
    pay_no: u32,
}

impl Sim<'_> {
    fn push(&mut self, day: u32, sec: u32, kind: Kind) {
        if day <= self.w.last {
            self.events.push((
                day,
                Sparse {
                    sec,
                    cust: self.ci,
                    kind,
                },
            ));
        }
    }

    /// A second near midnight now and then, else during the (UTC) business day.
    fn biz_sec(&mut self) -> u32 {
        if self.rng.chance(0.015) {
            near_midnight(&mut self.rng)
        } else {
            self.rng.range(10 * 3600, 20 * 3600 - 1)
        }
    }

    fn client_sec(&mut self, home_off: i32) -> u32 {
        client_sec(&mut self.rng, home_off)
    }

    /// An invoice: usually paid; failures (more of them before churn) are retried.
    fn pay(&mut self, day: u32, amount: i64, eng: f64, near_churn: bool) {
        self.pay_no += 1;
        let pay = self.pay_no;
        let sec = self.biz_sec();
        let p_fail = 0.02 + 0.04 * (1.0 - eng) + if near_churn { 0.3 } else { 0.0 };
        let mut paid_day = day;
        if self.rng.chance(p_fail) {
            let code = self.rng.below(3) as u8;
            self.push(day, sec, Kind::PayFailed { pay, amount, code });
            let retry = day + self.rng.range(1, 4);
            if near_churn && self.rng.chance(0.5) {
                self.push(retry, sec, Kind::PayFailed { pay, amount, code });
                return;
            }
            paid_day = retry;
        }
        self.push(paid_day, sec, Kind::PaySucceeded { pay, amount });
        if self.rng.chance(0.012) {
            let refund = if self.rng.chance(0.6) {
                amount
            } else {
                amount / 2
            };
            let d = paid_day + self.rng.range(2, 20);
            let s = self.biz_sec();
            self.push(
                d,
                s,
                Kind::PayRefunded {
                    pay,
                    amount: refund,
                },
            );
        }
    }
}

fn near_midnight(rng: &mut Rng) -> u32 {
    if rng.chance(0.5) {
        86_399 - rng.below(120) as u32
    } else {
        rng.below(120) as u32
    }
}

/// A UTC second of the day when someone in an office at `home_off` works.
fn client_sec(rng: &mut Rng, home_off: i32) -> u32 {
    if rng.chance(0.01) {
        return near_midnight(rng);
    }
    let local = if rng.chance(0.85) {
        8 * 3600 + rng.below(11 * 3600) as i64
    } else {
        rng.below(86_400) as i64
    };
    (local - i64::from(home_off) * 60).rem_euclid(86_400) as u32
}

fn simulate_customer(sim: &mut Sim) -> Cust {
    let w = sim.w;
    let rng = &mut sim.rng;
    let r = rng.f64();
    let seg0: u8 = if r < 0.60 {
        0
    } else if r < 0.88 {
        1
    } else {
        2
    };
    let p = &SEG[seg0 as usize];
    let country = rng.below(COUNTRIES.len() as u64) as u8;
    let home_off = COUNTRIES[country as usize].1;
    let ts_off = rng.chance(0.3).then_some(home_off);
    let eng = (rng.f64() + rng.f64()) / 2.0 * 0.9 + 0.05;
    let mut features = [0u8, 1, 2, 3, 4, 5, 6, 7];
    for i in (1..features.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        features.swap(i, j);
    }
    let name = format!(
        "{} {}",
        NAME_A[rng.below(NAME_A.len() as u64) as usize],
        NAME_B[rng.below(NAME_B.len() as u64) as usize]
    );
    let mut c = Cust {
        id: format!("cus_{:05}", sim.ci),
        name,
        seg0,
        country,
        industry: rng.below(INDUSTRIES.len() as u64) as u8,
        owner0: rng.below(OWNERS.len() as u64) as u8,
        home_off,
        ts_off,
        eng,
        users: rng.range(p.users.0, p.users.1),
        features,
        breadth: (2 + (eng * 6.0) as u32 + rng.range(0, 1)).min(8),
        usage_mean: p.usage * (0.6 + 0.8 * rng.f64()),
        spans: Vec::new(),
        final_subs: Vec::new(),
        seg_final: seg0,
    };
    let last = w.last;
    let signup = if rng.chance(0.2) {
        rng.range(0, last.min(30))
    } else {
        let u = rng.f64().max(rng.f64()); // more sign-ups as the business grows
        (u * f64::from(last.saturating_sub(14))) as u32
    };
    let kind = rng.f64();
    let sec = rng.range(6 * 3600, 10 * 3600 - 1);
    sim.push(signup, sec, Kind::Created);

    if kind < 0.05 {
        simulate_purchases(sim, &mut c, signup);
    } else if kind < 0.09 {
        c.spans.push(Span {
            from: signup,
            to: (signup + 14).min(last + 1),
            level: 0.6,
            ramp_from: signup,
            churn: None,
        });
    } else {
        simulate_subscriber(sim, &mut c, signup);
    }
    simulate_updates(sim, &c, signup);
    simulate_tickets(sim, &c);
    simulate_nps(sim, &c, signup);
    simulate_emails(sim, &c, signup);
    c
}

fn push_span(c: &mut Cust, span: Span) {
    if span.to > span.from {
        c.spans.push(span);
    }
}

/// Subscription periods: start, monthly invoices, at most one change a month,
/// churn decided up front (so usage and billing can degrade before it), and
/// sometimes a reactivation with a new subscription.
fn simulate_subscriber(sim: &mut Sim, c: &mut Cust, signup: u32) {
    let w = sim.w;
    let last = w.last;
    let trial = sim.rng.range(0, 14);
    let mut period_start = signup + trial;
    push_span(
        c,
        Span {
            from: signup,
            to: period_start.min(last + 1),
            level: 0.7,
            ramp_from: signup,
            churn: None,
        },
    );
    let mut seg = c.seg0;
    let mut sub_no: u16 = 0;
    let mut first = true;
    while period_start <= last {
        let start_date = w.date(period_start);
        let p = &SEG[seg as usize];
        let hazard = p.hazard * (1.6 - 1.2 * c.eng) * if first { 1.0 } else { 1.3 };
        let annual = sim.rng.chance(if seg == 0 { 0.12 } else { 0.22 });
        let mut churn = None;
        let mut k = 1;
        while let Some(a) = w.anniversary(start_date, k) {
            if a > last + 120 {
                break;
            }
            let p_churn = match annual {
                true if k % 12 == 0 => (hazard * 10.0).min(0.9),
                true => 0.0,
                false => hazard,
            };
            if sim.rng.chance(p_churn) {
                churn = Some(a - sim.rng.range(0, 14));
                break;
            }
            k += 1;
        }

        sub_no += 1;
        let tier = sim.rng.range(p.tiers.0, p.tiers.1) as u8;
        let seats = sim.rng.range(p.seats.0, p.seats.1);
        let discount = [0u8, 0, 0, 10, 15, 20][sim.rng.below(6) as usize];
        let mut main = Sub::new(sub_no, tier, seats, discount, annual);
        let mut addon: Option<Sub> = None;
        let sec = sim.biz_sec();
        sim.push(period_start, sec, Kind::SubStarted(main));

        let end_excl = churn.map_or(last + 1, |cd| cd.min(last + 1));
        let ramp_from = if first { signup } else { period_start };
        let mut span_from = period_start;
        let mut level = 1.0;
        let mut k = 0;
        while let Some(a) = w.anniversary(start_date, k) {
            if a >= end_excl {
                break;
            }
            let next = w.anniversary(start_date, k + 1).unwrap_or(u32::MAX);
            let near = churn.is_some_and(|cd| cd - a <= 60);
            if !main.paused && (!main.annual || k % 12 == 0) {
                sim.pay(a, main.invoice(), c.eng, near);
            }
            if let Some(ad) = addon {
                sim.pay(a, ad.invoice(), c.eng, near);
            }
            k += 1;

            let day = a + sim.rng.range(2, 25);
            if day >= next || day >= end_excl {
                continue;
            }
            let sec = sim.biz_sec();
            if main.paused {
                if sim.rng.chance(0.45) || near {
                    main.paused = false;
                    sim.push(day, sec, Kind::SubResumed(main));
                    push_span(
                        c,
                        Span {
                            from: span_from,
                            to: day,
                            level,
                            ramp_from,
                            churn,
                        },
                    );
                    span_from = day;
                    level = 1.0;
                }
                continue;
            }
            let r = sim.rng.f64();
            let p_up = 0.035 * (0.5 + c.eng) * if near { 0.2 } else { 1.0 };
            let p_down = if near { 0.18 } else { 0.015 * (1.5 - c.eng) };
            let p_pause = if seg < 2 && !main.annual && !near {
                0.012
            } else {
                0.0
            };
            let p_add = if seg > 0 && addon.is_none() && !near {
                0.03
            } else {
                0.0
            };
            let p_drop = if addon.is_some() { 0.03 } else { 0.0 };
            if r < p_up {
                if main.plan < 3 && sim.rng.chance(0.3) {
                    main.plan += 1;
                } else {
                    main.seats += (main.seats * sim.rng.range(10, 50) / 100).max(1);
                }
                main.reprice();
                sim.push(day, sec, Kind::SubChanged(main));
                let total = main.mrr + addon.map_or(0, |s| s.mrr);
                let bump = match seg {
                    0 if total >= 150_000 => Some(1),
                    1 if total >= 800_000 => Some(2),
                    _ => None,
                };
                if let Some(to) = bump {
                    seg = to;
                    sim.push(
                        day,
                        (sec + 60).min(86_399),
                        Kind::Updated {
                            segment: Some(to),
                            owner: None,
                        },
                    );
                }
            } else if r < p_up + p_down {
                let cut = (main.seats * sim.rng.range(10, 40) / 100).max(1);
                if main.seats > cut {
                    main.seats -= cut;
                } else if main.plan > 0 {
                    main.plan -= 1;
                } else {
                    continue;
                }
                main.reprice();
                sim.push(day, sec, Kind::SubChanged(main));
            } else if r < p_up + p_down + p_pause {
                main.paused = true;
                let reason = sim.rng.below(PAUSE_REASONS.len() as u64) as u8;
                sim.push(day, sec, Kind::SubPaused { sub: main, reason });
                push_span(
                    c,
                    Span {
                        from: span_from,
                        to: day,
                        level,
                        ramp_from,
                        churn,
                    },
                );
                span_from = day;
                level = 0.05;
            } else if r < p_up + p_down + p_pause + p_add {
                sub_no += 1;
                let plan = (TIERS.len() as u64 + sim.rng.below(ADDONS.len() as u64)) as u8;
                let ad = Sub::new(sub_no, plan, 0, 0, false);
                sim.push(day, sec, Kind::SubStarted(ad));
                sim.pay(day, ad.invoice(), c.eng, false);
                addon = Some(ad);
            } else if r < p_up + p_down + p_pause + p_add + p_drop {
                if let Some(ad) = addon.take() {
                    let reason = sim.rng.below(CANCEL_REASONS.len() as u64) as u8;
                    sim.push(day, sec, Kind::SubCancelled { no: ad.no, reason });
                }
            }
        }

        match churn {
            Some(cd) if cd <= last => {
                push_span(
                    c,
                    Span {
                        from: span_from,
                        to: cd + 1,
                        level,
                        ramp_from,
                        churn,
                    },
                );
                let reason = sim.rng.below(CANCEL_REASONS.len() as u64) as u8;
                let sec = sim.biz_sec();
                if let Some(ad) = addon {
                    sim.push(cd, sec, Kind::SubCancelled { no: ad.no, reason });
                }
                sim.push(
                    cd,
                    sec,
                    Kind::SubCancelled {
                        no: main.no,
                        reason,
                    },
                );
                if sim.rng.chance(0.25) {
                    let next_start = cd + sim.rng.range(45, 300);
                    if next_start <= last {
                        // A short evaluation before coming back.
                        push_span(
                            c,
                            Span {
                                from: next_start - 7,
                                to: next_start,
                                level: 0.4,
                                ramp_from: next_start - 7,
                                churn: None,
                            },
                        );
                        period_start = next_start;
                        first = false;
                        continue;
                    }
                }
                break;
            }
            _ => {
                push_span(
                    c,
                    Span {
                        from: span_from,
                        to: last + 1,
                        level,
                        ramp_from,
                        churn,
                    },
                );
                c.final_subs.push(main);
                c.final_subs.extend(addon);
                c.seg_final = seg;
                break;
            }
        }
    }
}

/// One-off purchases at irregular intervals, no subscription.
fn simulate_purchases(sim: &mut Sim, c: &mut Cust, signup: u32) {
    let last = sim.w.last;
    let base = i64::from(sim.rng.range(2_000, 50_000));
    let mut day = signup + sim.rng.range(0, 5);
    let mut last_paid = day;
    while day <= last {
        let amount = base * i64::from(sim.rng.range(80, 120)) / 100;
        sim.pay(day, amount, c.eng, false);
        last_paid = day;
        if !sim.rng.chance(0.78) {
            break;
        }
        day += sim.rng.range(20, 120);
    }
    push_span(
        c,
        Span {
            from: signup,
            to: (last_paid + 45).min(last + 1),
            level: 0.3,
            ramp_from: signup,
            churn: None,
        },
    );
}

/// Owner reassignments and the odd segment reclassification.
fn simulate_updates(sim: &mut Sim, c: &Cust, signup: u32) {
    if sim.rng.chance(0.10) {
        let day = signup + sim.rng.range(30, 500);
        let owner = ((u64::from(c.owner0) + 1 + sim.rng.below(5)) % OWNERS.len() as u64) as u8;
        let sec = sim.biz_sec();
        sim.push(
            day,
            sec,
            Kind::Updated {
                segment: None,
                owner: Some(owner),
            },
        );
    }
    if sim.rng.chance(0.03) {
        let day = signup + sim.rng.range(60, 400);
        let segment = ((u64::from(c.seg0) + 1 + sim.rng.below(2)) % 3) as u8;
        let sec = sim.biz_sec();
        sim.push(
            day,
            sec,
            Kind::Updated {
                segment: Some(segment),
                owner: None,
            },
        );
    }
}

fn simulate_tickets(sim: &mut Sim, c: &Cust) {
    let last = sim.w.last;
    let rate = SEG[c.seg0 as usize].tickets / 30.0 * (1.5 - c.eng);
    let mut ticket = 0u32;
    for s in &c.spans {
        for d in s.from..s.to.min(last + 1) {
            let pre_churn = s.churn.is_some_and(|cd| d <= cd && cd - d < 45);
            let p = rate * s.level.max(0.3) * if pre_churn { 2.5 } else { 1.0 };
            if !sim.rng.chance(p) {
                continue;
            }
            ticket += 1;
            let r = sim.rng.f64();
            let priority: u8 = if pre_churn {
                if r < 0.1 {
                    0
                } else if r < 0.45 {
                    1
                } else if r < 0.8 {
                    2
                } else {
                    3
                }
            } else if r < 0.25 {
                0
            } else if r < 0.75 {
                1
            } else if r < 0.93 {
                2
            } else {
                3
            };
            let sec = sim.client_sec(c.home_off);
            sim.push(d, sec, Kind::TicketOpened { ticket, priority });
            if sim.rng.chance(0.85) {
                let wait = sim.rng.range(0, 10);
                let rsec = if wait == 0 {
                    (sec + sim.rng.range(600, 7_200)).min(86_399)
                } else {
                    sim.biz_sec()
                };
                sim.push(d + wait, rsec, Kind::TicketResolved { ticket, priority });
                if sim.rng.chance(0.45) {
                    let f = decline(s.churn, d);
                    let x = 1.0 + 4.0 * (0.35 + 0.65 * c.eng * f) + (sim.rng.f64() * 2.0 - 1.0)
                        - if priority >= 2 { 0.5 } else { 0.0 };
                    let score = (x + 0.5).clamp(1.0, 5.0) as u8;
                    let csat_day = d + wait + sim.rng.range(0, 2);
                    let sec = sim.client_sec(c.home_off);
                    sim.push(csat_day, sec, Kind::Csat { score });
                }
            }
        }
    }
}

fn simulate_nps(sim: &mut Sim, c: &Cust, signup: u32) {
    let mut d = signup + sim.rng.range(30, 90);
    while d <= sim.w.last {
        if let Some(s) = c.span_at(d).copied() {
            if s.level >= 0.2 && sim.rng.chance(0.35 + 0.25 * c.eng) {
                let f = decline(s.churn, d);
                let x = 2.0 + 8.0 * c.eng * f + (sim.rng.f64() * 4.0 - 2.0);
                let score = (x + 0.5).clamp(0.0, 10.0) as u8;
                let comment = if sim.rng.chance(0.3) {
                    let k = sim.rng.range(1, 4) as u8;
                    if score >= 7 {
                        k
                    } else {
                        k + 4
                    }
                } else {
                    0
                };
                let sec = sim.client_sec(c.home_off);
                sim.push(d, sec, Kind::Nps { score, comment });
            }
        }
        d += sim.rng.range(80, 100);
    }
}

fn simulate_emails(sim: &mut Sim, c: &Cust, signup: u32) {
    let last = sim.w.last;
    let send = |sim: &mut Sim, day: u32, sec: u32, campaign: Campaign, open_p: f64| {
        sim.push(day, sec, Kind::EmailSent(campaign));
        if sim.rng.chance(open_p) {
            let od = day + sim.rng.range(0, 2);
            let osec = if od == day {
                (sec + sim.rng.range(300, 20_000)).min(86_399)
            } else {
                sim.client_sec(c.home_off)
            };
            sim.push(od, osec, Kind::EmailOpened(campaign));
            if sim.rng.chance(0.3) {
                let csec = (osec + sim.rng.range(5, 600)).min(86_399);
                sim.push(od, csec, Kind::EmailClicked(campaign));
            }
        }
    };
    let w = sim.w;
    let sec = sim.rng.range(10 * 3600, 11 * 3600);
    send(sim, signup, sec, Campaign::Onboarding, 0.6);
    let batch_sec = 14 * 3600 + (sim.ci % 1800);
    for &day in &w.campaigns {
        if day < signup || !c.spans.iter().any(|s| s.from <= day && day < s.to + 60) {
            continue;
        }
        let f = c
            .span_at(day)
            .map_or(0.3, |s| decline(s.churn, day) * s.level.max(0.3));
        send(
            sim,
            day,
            batch_sec,
            Campaign::Newsletter(day),
            0.12 + 0.5 * c.eng * f,
        );
    }
    for s in &c.spans {
        if let Some(cd) = s.churn.filter(|&cd| s.to == cd + 1 && cd + 30 <= last) {
            send(sim, cd + 30, batch_sec, Campaign::Winback(cd), 0.2);
        }
    }
}

/// How much to multiply the usage volume so that the total is about `target`.
fn usage_scale(customers: &[Cust], w: &World, target: Option<u64>, fixed: u64) -> f64 {
    let Some(target) = target else {
        return 1.0;
    };
    // Each active customer-day writes 1 + (mean - 1) · scale · noise events (E noise = 1).
    let (mut days, mut extra) = (0.0, 0.0);
    for c in customers {
        let mut cursor = 0;
        for d in 0..=w.last {
            let weekend = (w.start_weekday + d) % 7 >= 5;
            if let Some(u) = c.usage_at(&mut cursor, d, weekend) {
                days += u.p;
                extra += u.p * (u.mean - 1.0);
            }
        }
    }
    let want = target as f64 - fixed as f64 - days;
    if want <= 0.0 || extra <= 0.0 {
        0.0
    } else {
        want / extra
    }
}

// ---------------------------------------------------------------------------
// Rendering

/// Where the fields of one event go: a JSON object or a CSV record.
trait Fields {
    /// A string value (escaped and quoted in JSON).
    fn string(&mut self, key: &str, val: &[u8]);
    /// A value written as a bare JSON number.
    fn number(&mut self, key: &str, val: &[u8]);
}

#[derive(Default)]
struct JsonLine {
    buf: Vec<u8>,
}

impl JsonLine {
    fn begin(&mut self) {
        self.buf.clear();
        self.buf.push(b'{');
    }
    fn end(&mut self) {
        self.buf.extend_from_slice(b"}\n");
    }
    fn key(&mut self, key: &str) {
        if self.buf.len() > 1 {
            self.buf.push(b',');
        }
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }
}

impl Fields for JsonLine {
    fn string(&mut self, key: &str, val: &[u8]) {
        self.key(key);
        push_json_str(&mut self.buf, val);
    }
    fn number(&mut self, key: &str, val: &[u8]) {
        self.key(key);
        self.buf.extend_from_slice(val);
    }
}

/// Columns of the messy CSV object (every field of EVENTS.md).
const CSV_COLUMNS: [&str; 25] = [
    "event_id",
    "event_type",
    "customer_id",
    "occurred_at",
    "subscription_id",
    "plan",
    "mrr",
    "currency",
    "seats",
    "amount",
    "payment_id",
    "feature",
    "user_id",
    "quantity",
    "ticket_id",
    "priority",
    "score",
    "campaign_id",
    "name",
    "segment",
    "country",
    "industry",
    "owner",
    "reason",
    "comment",
];

struct CsvRow {
    cells: Vec<Vec<u8>>,
}

impl CsvRow {
    fn new() -> Self {
        CsvRow {
            cells: vec![Vec::new(); CSV_COLUMNS.len()],
        }
    }
}

impl Fields for CsvRow {
    fn string(&mut self, key: &str, val: &[u8]) {
        // Extra fields without a column (`failure_code`) are left out.
        if let Some(i) = CSV_COLUMNS.iter().position(|c| *c == key) {
            self.cells[i].clear();
            self.cells[i].extend_from_slice(val);
        }
    }
    fn number(&mut self, key: &str, val: &[u8]) {
        self.string(key, val);
    }
}

fn push_json_str(buf: &mut Vec<u8>, s: &[u8]) {
    buf.push(b'"');
    for &b in s {
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[(b >> 4) as usize]);
                buf.push(HEX[(b & 15) as usize]);
            }
            _ => buf.push(b),
        }
    }
    buf.push(b'"');
}

fn push_u64(buf: &mut Vec<u8>, n: u64) {
    push_padded(buf, n, 1);
}

/// `n` in decimal, left-padded with zeros to `width` digits.
fn push_padded(buf: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut tmp = [b'0'; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = i.min(tmp.len() - width.min(tmp.len()));
    buf.extend_from_slice(&tmp[start..]);
}

/// Cents as a decimal: `99.9` / `490` when `short`, else always two decimals.
fn push_money(buf: &mut Vec<u8>, cents: i64, short: bool) {
    let (int, frac) = (cents / 100, cents % 100);
    push_u64(buf, int as u64);
    if !short {
        buf.push(b'.');
        push_padded(buf, frac as u64, 2);
    } else if frac % 10 == 0 && frac != 0 {
        buf.push(b'.');
        buf.push(b'0' + (frac / 10) as u8);
    } else if frac != 0 {
        buf.push(b'.');
        push_padded(buf, frac as u64, 2);
    }
}

fn date_bytes(d: NaiveDate) -> [u8; 10] {
    let mut v = Vec::with_capacity(10);
    push_date(&mut v, d, b'-');
    let mut out = [0u8; 10];
    out.copy_from_slice(&v[..10]);
    out
}

fn push_date(buf: &mut Vec<u8>, d: NaiveDate, sep: u8) {
    push_padded(buf, d.year() as u64, 4);
    buf.push(sep);
    push_padded(buf, u64::from(d.month()), 2);
    buf.push(sep);
    push_padded(buf, u64::from(d.day()), 2);
}

/// The day being written and its neighbours (for timestamps in other offsets).
struct DayStrs {
    prev: [u8; 10],
    cur: [u8; 10],
    next: [u8; 10],
}

impl DayStrs {
    fn new(d: NaiveDate) -> Self {
        let prev = d.pred_opt().unwrap_or(d);
        let next = d.succ_opt().unwrap_or(d);
        DayStrs {
            prev: date_bytes(prev),
            cur: date_bytes(d),
            next: date_bytes(next),
        }
    }
    fn cur_str(&self) -> &str {
        std::str::from_utf8(&self.cur).unwrap_or("1970-01-01")
    }
}

/// RFC 3339 for UTC second `sec` of the day, written in `offset` minutes (or `Z`).
fn push_ts(buf: &mut Vec<u8>, days: &DayStrs, sec: u32, millis: Option<u32>, offset: Option<i32>) {
    let off = offset.unwrap_or(0);
    let local = i64::from(sec) + i64::from(off) * 60;
    let (date, s) = if local < 0 {
        (&days.prev, local + 86_400)
    } else if local >= 86_400 {
        (&days.next, local - 86_400)
    } else {
        (&days.cur, local)
    };
    let s = s as u64;
    buf.extend_from_slice(date);
    buf.push(b'T');
    push_padded(buf, s / 3600, 2);
    buf.push(b':');
    push_padded(buf, s / 60 % 60, 2);
    buf.push(b':');
    push_padded(buf, s % 60, 2);
    if let Some(ms) = millis {
        buf.push(b'.');
        push_padded(buf, u64::from(ms), 3);
    }
    match offset {
        None => buf.push(b'Z'),
        Some(o) => {
            buf.push(if o < 0 { b'-' } else { b'+' });
            let a = u64::from(o.unsigned_abs());
            push_padded(buf, a / 60, 2);
            buf.push(b':');
            push_padded(buf, a % 60, 2);
        }
    }
}

fn push_event_id(buf: &mut Vec<u8>, id: u64) {
    buf.extend_from_slice(b"evt_");
    push_padded(buf, id, 10);
}

/// `prefix_<customer digits>_<n>`: subscription, payment, ticket and user ids.
fn push_child_id(buf: &mut Vec<u8>, prefix: &[u8], c: &Cust, n: u64, width: usize) {
    buf.extend_from_slice(prefix);
    buf.extend_from_slice(&c.id.as_bytes()[4..]);
    buf.push(b'_');
    push_padded(buf, n, width);
}

/// Money as a JSON number (`99.9`, `99.90`) or a string (`"99.90"`).
fn money_field<F: Fields>(f: &mut F, rng: &mut Rng, s: &mut Vec<u8>, key: &str, cents: i64) {
    let r = rng.f64();
    s.clear();
    push_money(s, cents, r < 0.55);
    if r < 0.70 {
        f.number(key, s);
    } else {
        f.string(key, s);
    }
}

/// Mostly a JSON number, sometimes a numeric string.
fn int_field<F: Fields>(f: &mut F, rng: &mut Rng, s: &mut Vec<u8>, key: &str, v: u64) {
    s.clear();
    push_u64(s, v);
    if rng.chance(0.1) {
        f.string(key, s);
    } else {
        f.number(key, s);
    }
}

/// The reporting currency is mostly implied, sometimes explicit (in any case).
fn currency_field<F: Fields>(f: &mut F, rng: &mut Rng) {
    let r = rng.f64();
    if r < 0.35 {
        f.string("currency", b"USD");
    } else if r < 0.40 {
        f.string("currency", b"usd");
    }
}

fn campaign_id(s: &mut Vec<u8>, w: &World, campaign: Campaign) {
    s.clear();
    match campaign {
        Campaign::Newsletter(d) => {
            s.extend_from_slice(b"nl_");
            push_date(s, w.date(d), b'_');
        }
        Campaign::Onboarding => s.extend_from_slice(b"onb_welcome"),
        Campaign::Winback(d) => {
            s.extend_from_slice(b"wb_");
            push_date(s, w.date(d), b'_');
        }
    }
}

fn sub_fields<F: Fields>(
    f: &mut F,
    rng: &mut Rng,
    s: &mut Vec<u8>,
    c: &Cust,
    sub: &Sub,
    plan_p: f64,
) {
    s.clear();
    push_child_id(s, b"sub_", c, u64::from(sub.no), 1);
    f.string("subscription_id", s);
    money_field(f, rng, s, "mrr", sub.mrr);
    if rng.chance(plan_p) {
        f.string("plan", sub.plan_name().as_bytes());
    }
    currency_field(f, rng);
    if !sub.is_addon() {
        int_field(f, rng, s, "seats", u64::from(sub.seats));
    }
}

fn priority_field<F: Fields>(f: &mut F, rng: &mut Rng, priority: u8) {
    let text: Option<&[u8]> = match priority {
        0 => Some(b"low"),
        1 if rng.chance(0.3) => None, // the default
        1 => Some(b"normal"),
        2 if rng.chance(0.3) => Some(b"High"),
        2 => Some(b"high"),
        _ if rng.chance(0.2) => Some(b"URGENT"),
        _ => Some(b"urgent"),
    };
    if let Some(t) = text {
        f.string("priority", t);
    }
}

#[allow(clippy::too_many_arguments)]
fn render_sparse<F: Fields>(
    f: &mut F,
    rng: &mut Rng,
    s: &mut Vec<u8>,
    id: u64,
    days: &DayStrs,
    w: &World,
    c: &Cust,
    ev: &Sparse,
) {
    s.clear();
    push_event_id(s, id);
    f.string("event_id", s);
    f.string("event_type", ev.kind.event_type().as_bytes());
    f.string("customer_id", c.id.as_bytes());
    s.clear();
    if ev.kind.is_client_side() {
        let millis = rng.chance(0.3).then(|| rng.below(1000) as u32);
        push_ts(s, days, ev.sec, millis, c.ts_off);
    } else {
        push_ts(s, days, ev.sec, None, None);
    }
    f.string("occurred_at", s);
    match ev.kind {
        Kind::Created => {
            f.string("name", c.name.as_bytes());
            f.string("segment", SEGMENTS[c.seg0 as usize].as_bytes());
            if rng.chance(0.95) {
                f.string("country", COUNTRIES[c.country as usize].0.as_bytes());
            }
            f.string("industry", INDUSTRIES[c.industry as usize].as_bytes());
            f.string("owner", OWNERS[c.owner0 as usize].as_bytes());
        }
        Kind::Updated { segment, owner } => {
            if let Some(seg) = segment {
                f.string("segment", SEGMENTS[seg as usize].as_bytes());
            }
            if let Some(o) = owner {
                f.string("owner", OWNERS[o as usize].as_bytes());
            }
        }
        Kind::SubStarted(sub) => sub_fields(f, rng, s, c, &sub, 0.9),
        Kind::SubChanged(sub) | Kind::SubResumed(sub) => sub_fields(f, rng, s, c, &sub, 1.0),
        Kind::SubPaused { sub, reason } => {
            s.clear();
            push_child_id(s, b"sub_", c, u64::from(sub.no), 1);
            f.string("subscription_id", s);
            if rng.chance(0.5) {
                f.string("plan", sub.plan_name().as_bytes());
            }
            f.string("reason", PAUSE_REASONS[reason as usize].as_bytes());
        }
        Kind::SubCancelled { no, reason } => {
            s.clear();
            push_child_id(s, b"sub_", c, u64::from(no), 1);
            f.string("subscription_id", s);
            f.string("reason", CANCEL_REASONS[reason as usize].as_bytes());
        }
        Kind::PaySucceeded { pay, amount } | Kind::PayRefunded { pay, amount } => {
            money_field(f, rng, s, "amount", amount);
            s.clear();
            push_child_id(s, b"pay_", c, u64::from(pay), 4);
            f.string("payment_id", s);
            currency_field(f, rng);
        }
        Kind::PayFailed { pay, amount, code } => {
            money_field(f, rng, s, "amount", amount);
            s.clear();
            push_child_id(s, b"pay_", c, u64::from(pay), 4);
            f.string("payment_id", s);
            currency_field(f, rng);
            f.string("failure_code", FAILURE_CODES[code as usize].as_bytes());
        }
        Kind::TicketOpened { ticket, priority } | Kind::TicketResolved { ticket, priority } => {
            s.clear();
            push_child_id(s, b"tkt_", c, u64::from(ticket), 4);
            f.string("ticket_id", s);
            priority_field(f, rng, priority);
        }
        Kind::Nps { score, comment } => {
            int_field(f, rng, s, "score", u64::from(score));
            if comment > 0 {
                f.string("comment", COMMENTS[comment as usize].as_bytes());
            }
        }
        Kind::Csat { score } => int_field(f, rng, s, "score", u64::from(score)),
        Kind::EmailSent(cmp) | Kind::EmailOpened(cmp) | Kind::EmailClicked(cmp) => {
            if !rng.chance(0.02) {
                campaign_id(s, w, cmp);
                f.string("campaign_id", s);
            }
        }
        Kind::Login => {
            s.clear();
            push_child_id(s, b"usr_", c, 0, 3);
            f.string("user_id", s);
        }
    }
}

/// The usage events of one customer on one active day, straight into the object.
fn write_usage_day(
    out: &mut Out,
    json: &mut JsonLine,
    rng: &mut Rng,
    days: &DayStrs,
    c: &Cust,
    u: &Usage,
    scale: f64,
) -> Result<(), DemoError> {
    let extra = (u.mean - 1.0) * scale * (0.5 + rng.f64());
    let n = 1 + rng.round(extra);
    let users_today = u64::from(c.users).min(n.div_ceil(4).max(1));
    let base_user = rng.below(u64::from(c.users));
    for j in 0..n {
        let id = out.next_id();
        let user = (base_user + j % users_today) % u64::from(c.users);
        let sec = client_sec(rng, c.home_off);
        let millis = rng.chance(0.4).then(|| rng.below(1000) as u32);
        let (event_type, feature): (&[u8], Option<u8>) = if j < users_today {
            (b"usage.login", None)
        } else if rng.below(100) < 8 {
            (b"usage.api_request", Some(FEATURE_API))
        } else {
            (
                b"usage.feature_used",
                Some(c.features[rng.below(u.breadth) as usize]),
            )
        };
        let b = &mut json.buf;
        b.clear();
        b.extend_from_slice(b"{\"event_id\":\"");
        push_event_id(b, id);
        b.extend_from_slice(b"\",\"event_type\":\"");
        b.extend_from_slice(event_type);
        b.extend_from_slice(b"\",\"customer_id\":\"");
        b.extend_from_slice(c.id.as_bytes());
        b.extend_from_slice(b"\",\"occurred_at\":\"");
        push_ts(b, days, sec, millis, c.ts_off);
        b.extend_from_slice(b"\",\"user_id\":\"");
        push_child_id(b, b"usr_", c, user, 3);
        b.push(b'"');
        if let Some(feat) = feature {
            b.extend_from_slice(b",\"feature\":\"");
            b.extend_from_slice(FEATURES[feat as usize].as_bytes());
            b.extend_from_slice(b"\",\"quantity\":");
            push_quantity(b, rng, feat, event_type == b"usage.api_request");
        }
        if rng.chance(0.3) {
            b.extend_from_slice(b",\"source\":\"");
            b.extend_from_slice(SOURCES[rng.below(3) as usize].as_bytes());
            b.push(b'"');
        }
        b.extend_from_slice(b"}\n");
        out.valid_line(&json.buf, id)?;
    }
    Ok(())
}

fn push_quantity(b: &mut Vec<u8>, rng: &mut Rng, feature: u8, api_request: bool) {
    let q = match (feature, api_request) {
        (_, true) => rng.range(1, 500),
        (2, _) => {
            // exports: megabytes with one decimal
            let tenths = u64::from(rng.range(5, 500));
            push_u64(b, tenths / 10);
            b.push(b'.');
            push_u64(b, tenths % 10);
            return;
        }
        (0, _) => rng.range(1, 6),
        (3, _) => rng.range(1, 200),
        (4, _) => 1,
        (5, _) => rng.range(1, 4),
        (6, _) => rng.range(1, 20),
        _ => rng.range(1, 3),
    };
    push_u64(b, u64::from(q));
}

// ---------------------------------------------------------------------------
// Objects on disk

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Encoding {
    #[default]
    Jsonl,
    Ndjson,
    Json,
    Gzip,
    Zstd,
}

impl Encoding {
    fn extension(self) -> &'static str {
        match self {
            Encoding::Jsonl => "jsonl",
            Encoding::Ndjson => "ndjson",
            Encoding::Json => "json",
            Encoding::Gzip => "jsonl.gz",
            Encoding::Zstd => "jsonl.zst",
        }
    }
}

enum Sink {
    Plain(BufWriter<File>),
    Gzip(GzEncoder<BufWriter<File>>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<File>>),
}

impl Sink {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.write_all(bytes),
            Sink::Gzip(w) => w.write_all(bytes),
            Sink::Zstd(w) => w.write_all(bytes),
        }
    }
    fn finish(self) -> io::Result<()> {
        let mut inner = match self {
            Sink::Plain(w) => w,
            Sink::Gzip(w) => w.finish()?,
            Sink::Zstd(w) => w.finish()?,
        };
        inner.flush()
    }
}

struct OpenObject {
    path: PathBuf,
    sink: Sink,
    written: u64,
}

/// Writes the day's objects, rolling parts, and keeps the summary.
struct Out {
    root: PathBuf,
    day_rel: String,
    encoding: Encoding,
    crlf: bool,
    bom: bool,
    part: u32,
    open: Option<OpenObject>,
    next_id: u64,
    last_valid_id: u64,
    conflicting: u64,
    summary: DemoSummary,
}

impl Out {
    fn new(root: &Path, customers: usize) -> Out {
        Out {
            root: root.to_path_buf(),
            day_rel: String::new(),
            encoding: Encoding::Jsonl,
            crlf: false,
            bom: false,
            part: 0,
            open: None,
            next_id: 0,
            last_valid_id: 0,
            conflicting: 0,
            summary: DemoSummary {
                customers,
                ..DemoSummary::default()
            },
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn begin_day(&mut self, date: NaiveDate, encoding: Encoding, crlf: bool, bom: bool) {
        let mut rel = Vec::with_capacity(20);
        rel.extend_from_slice(b"events/");
        push_date(&mut rel, date, b'/');
        self.day_rel = String::from_utf8_lossy(&rel).into_owned();
        self.encoding = encoding;
        self.crlf = crlf;
        self.bom = bom;
        self.part = 0;
    }

    fn end_day(&mut self) -> Result<(), DemoError> {
        self.close()
    }

    fn valid_line(&mut self, line: &[u8], id: u64) -> Result<(), DemoError> {
        self.line(line)?;
        self.summary.events += 1;
        self.last_valid_id = id;
        Ok(())
    }

    fn duplicate_line(&mut self, line: &[u8], conflicting: bool) -> Result<(), DemoError> {
        self.line(line)?;
        self.summary.duplicate_rows += 1;
        self.conflicting += u64::from(conflicting);
        Ok(())
    }

    fn bad_line(&mut self, line: &[u8]) -> Result<(), DemoError> {
        self.line(line)?;
        self.summary.bad_rows += 1;
        Ok(())
    }

    /// Any line (ending in `\n`) into the current object of the day.
    fn line(&mut self, line: &[u8]) -> Result<(), DemoError> {
        if self.open.is_none() {
            self.open_object()?;
        }
        let crlf = self.crlf;
        let Some(obj) = self.open.as_mut() else {
            return Ok(());
        };
        let res = match line.strip_suffix(b"\n") {
            Some(body) if crlf => obj
                .sink
                .write_all(body)
                .and_then(|()| obj.sink.write_all(b"\r\n")),
            _ => obj.sink.write_all(line),
        };
        res.map_err(|source| DemoError::Write {
            path: obj.path.clone(),
            source,
        })?;
        obj.written += line.len() as u64;
        if obj.written >= PART_BYTES {
            self.close()?;
            self.part += 1;
        }
        Ok(())
    }

    fn open_object(&mut self) -> Result<(), DemoError> {
        let dir = self.root.join(&self.day_rel);
        fs::create_dir_all(&dir).map_err(|source| DemoError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let path = dir.join(format!(
            "part-{:04}.{}",
            self.part,
            self.encoding.extension()
        ));
        let write_err = |source| DemoError::Write {
            path: path.clone(),
            source,
        };
        let file = BufWriter::with_capacity(WRITE_BUFFER, File::create(&path).map_err(write_err)?);
        let mut sink = match self.encoding {
            Encoding::Gzip => Sink::Gzip(GzEncoder::new(file, flate2::Compression::fast())),
            Encoding::Zstd => {
                Sink::Zstd(zstd::stream::write::Encoder::new(file, 3).map_err(write_err)?)
            }
            _ => Sink::Plain(file),
        };
        if std::mem::take(&mut self.bom) {
            sink.write_all("\u{feff}".as_bytes()).map_err(write_err)?;
        }
        self.open = Some(OpenObject {
            path,
            sink,
            written: 0,
        });
        Ok(())
    }

    fn close(&mut self) -> Result<(), DemoError> {
        let Some(obj) = self.open.take() else {
            return Ok(());
        };
        let path = obj.path;
        obj.sink.finish().map_err(|source| DemoError::Write {
            path: path.clone(),
            source,
        })?;
        let len = fs::metadata(&path)
            .map_err(|source| DemoError::Write {
                path: path.clone(),
                source,
            })?
            .len();
        self.summary.objects += 1;
        self.summary.bytes += len;
        Ok(())
    }

    /// A complete file at `rel`; counted as a data object when `data`.
    fn whole_object(&mut self, rel: &str, bytes: &[u8], data: bool) -> Result<(), DemoError> {
        let path = self.root.join(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|source| DemoError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        fs::write(&path, bytes).map_err(|source| DemoError::Write {
            path: path.clone(),
            source,
        })?;
        if data {
            self.summary.objects += 1;
            self.summary.bytes += bytes.len() as u64;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Messy input

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DupKind {
    /// The same bytes in a later object.
    Exact,
    /// The same bytes right after the original.
    SameObject,
    /// The same instant written as `+00:00` instead of `Z`: not a conflict.
    OtherOffset,
    /// The same `event_id` an hour later: a conflicting duplicate.
    Conflict,
}

impl DupKind {
    fn cycle(i: usize) -> DupKind {
        match i % 8 {
            4 => DupKind::SameObject,
            5 => DupKind::OtherOffset,
            6 => DupKind::Conflict,
            _ => DupKind::Exact,
        }
    }

    /// The duplicate row, and whether its payload conflicts with the original.
    fn render(self, line: &[u8]) -> (Vec<u8>, bool) {
        let ts = ts_value_range(line);
        match (self, ts) {
            (DupKind::OtherOffset, Some((_, end))) if line[end - 1] == b'Z' => {
                let mut v = line[..end - 1].to_vec();
                v.extend_from_slice(b"+00:00");
                v.extend_from_slice(&line[end..]);
                (v, false)
            }
            (DupKind::Conflict, Some((start, end)))
                if end - start >= 13 && line[start + 10] == b'T' =>
            {
                let hour =
                    u32::from(line[start + 11] - b'0') * 10 + u32::from(line[start + 12] - b'0');
                let hour = (hour + 1) % 24;
                let mut v = line.to_vec();
                v[start + 11] = b'0' + (hour / 10) as u8;
                v[start + 12] = b'0' + (hour % 10) as u8;
                (v, true)
            }
            _ => (line.to_vec(), false),
        }
    }
}

/// Byte range of the `occurred_at` value (inside the quotes).
fn ts_value_range(line: &[u8]) -> Option<(usize, usize)> {
    const KEY: &[u8] = b"\"occurred_at\":\"";
    let start = line.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = line[start..].iter().position(|&b| b == b'"')?;
    Some((start, start + len))
}

struct PendingDup {
    emit_day: u32,
    line: Vec<u8>,
    kind: DupKind,
}

/// What is special about one day in messy mode.
#[derive(Debug, Clone, Copy, Default)]
struct DayMessy {
    encoding: Encoding,
    crlf: bool,
    bom: bool,
    csv: bool,
    empty_object: bool,
    blank: Option<usize>,
    edge_rows: bool,
    fixed_pair: bool,
    reuse_valid_id: bool,
}

/// Number of hand-written bad rows, spread over the history.
const BAD_ROWS: usize = 37;
const BLANK_LINES: [&[u8]; 4] = [b"\n", b"   \n", b"\t\n", b"\r\n"];

struct Messy {
    hist_days: u32,
    /// Customer used by the edge rows (active at the end if any is).
    edge_customer: String,
    other_customer: String,
}

impl Messy {
    fn new(w: &World, plan: &Plan) -> Messy {
        let active = plan
            .customers
            .iter()
            .find(|c| !c.final_subs.is_empty())
            .unwrap_or(&plan.customers[0]);
        let other = &plan.customers[plan.customers.len() / 2];
        Messy {
            hist_days: w.last + 1,
            edge_customer: active.id.clone(),
            other_customer: other.id.clone(),
        }
    }

    fn at(&self, percent: u32) -> u32 {
        self.hist_days * percent / 100
    }

    fn day(&self, d: u32) -> DayMessy {
        if d >= self.hist_days {
            return DayMessy::default();
        }
        let encoding = if d == self.at(50) {
            Encoding::Gzip
        } else if d == self.at(60) {
            Encoding::Zstd
        } else if d == self.at(70) {
            Encoding::Ndjson
        } else if d == self.at(80) {
            Encoding::Json
        } else {
            Encoding::Jsonl
        };
        DayMessy {
            encoding,
            crlf: encoding == Encoding::Ndjson,
            bom: d == self.at(30),
            csv: d == self.at(40),
            empty_object: d == self.at(45),
            blank: (1..=10u32).position(|k| self.hist_days * k / 11 == d),
            edge_rows: d == self.hist_days.saturating_sub(13),
            fixed_pair: d == self.at(55),
            reuse_valid_id: d == self.at(65),
        }
    }

    fn bad_day(&self, i: usize) -> u32 {
        1.min(self.hist_days - 1) + (i as u32 * self.hist_days.saturating_sub(2) / BAD_ROWS as u32)
    }

    fn write_day_extras(
        &self,
        out: &mut Out,
        s: &mut Vec<u8>,
        d: u32,
        days: &DayStrs,
        dm: &DayMessy,
    ) -> Result<(), DemoError> {
        let day = days.cur_str();
        for i in (0..BAD_ROWS).filter(|&i| self.bad_day(i) == d) {
            let id = out.next_id();
            s.clear();
            push_event_id(s, id);
            let id = String::from_utf8_lossy(s).into_owned();
            let (row, _reason) = bad_row(i, &id, &self.other_customer, day);
            out.bad_line(format!("{row}\n").as_bytes())?;
        }
        if let Some(k) = dm.blank {
            out.line(BLANK_LINES[k % BLANK_LINES.len()])?;
        }
        if dm.edge_rows {
            for i in 0..EDGE_ROWS {
                let id = out.next_id();
                s.clear();
                push_event_id(s, id);
                let ids = String::from_utf8_lossy(s).into_owned();
                let row = edge_row(i, &ids, &self.edge_customer, day);
                out.valid_line(format!("{row}\n").as_bytes(), id)?;
            }
        }
        if dm.fixed_pair {
            // Rejected first, then sent again fixed: the fix is accepted (rule 12).
            let cus = &self.other_customer;
            let bad = format!(
                "{{\"event_id\":\"evt_fix_0001\",\"event_type\":\"payment.succeeded\",\"customer_id\":\"{cus}\",\
                 \"occurred_at\":\"{day}T11:00:00Z\",\"amount\":\"12.345678\"}}\n"
            );
            out.bad_line(bad.as_bytes())?;
            let fixed = format!(
                "{{\"event_id\":\"evt_fix_0001\",\"event_type\":\"payment.succeeded\",\"customer_id\":\"{cus}\",\
                 \"occurred_at\":\"{day}T11:05:00Z\",\"amount\":\"12.35\",\"payment_id\":\"pay_fix_0001\"}}\n"
            );
            out.line(fixed.as_bytes())?;
            out.summary.events += 1;
        }
        if dm.reuse_valid_id && out.last_valid_id > 0 {
            // A bad row reusing an accepted id is a reject, not a duplicate (rule 12).
            s.clear();
            push_event_id(s, out.last_valid_id);
            let id = String::from_utf8_lossy(s).into_owned();
            let cus = &self.other_customer;
            let bad = format!(
                "{{\"event_id\":\"{id}\",\"event_type\":\"payment.succeeded\",\"customer_id\":\"{cus}\",\
                 \"occurred_at\":\"{day}T12:00:00Z\",\"payment_id\":\"pay_missing_amount\"}}\n"
            );
            out.bad_line(bad.as_bytes())?;
        }
        Ok(())
    }

    /// The helpdesk export of the day (CRLF, quoted fields, one malformed record).
    fn csv_object(
        &self,
        out: &mut Out,
        rows: &[Vec<Vec<u8>>],
        days: &DayStrs,
    ) -> Result<Vec<u8>, DemoError> {
        let path = out.root.join(&out.day_rel).join("helpdesk-export.csv");
        let err = |e: csv::Error| DemoError::Write {
            path: path.clone(),
            source: io::Error::from(e),
        };
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .flexible(true)
            .from_writer(Vec::new());
        w.write_record(CSV_COLUMNS).map_err(err)?;
        for row in rows {
            w.write_record(row).map_err(err)?;
        }
        // A valid row whose name needs quoting.
        let id = out.next_id();
        let mut s = Vec::new();
        push_event_id(&mut s, id);
        let mut row = CsvRow::new();
        row.string("event_id", &s);
        row.string("event_type", b"customer.updated");
        row.string("customer_id", self.other_customer.as_bytes());
        s.clear();
        push_ts(&mut s, days, 43_200, None, None);
        row.string("occurred_at", &s);
        row.string("name", "Northwind Labs, Inc. (\"NWL\")".as_bytes());
        w.write_record(&row.cells).map_err(err)?;
        out.summary.events += 1;
        // A record with too few cells: malformed.
        let id = out.next_id();
        s.clear();
        push_event_id(&mut s, id);
        w.write_record([
            s.as_slice(),
            &b"support.ticket_opened"[..],
            self.other_customer.as_bytes(),
        ])
        .map_err(err)?;
        out.summary.bad_rows += 1;
        w.into_inner().map_err(|e| DemoError::Write {
            path: path.clone(),
            source: e.into_error(),
        })
    }

    /// Files the pipeline must skip (`notes.txt`) or ignore (`_` and `.` segments).
    fn write_side_files(&self, out: &mut Out, w: &World) -> Result<(), DemoError> {
        let mut rel = Vec::new();
        rel.extend_from_slice(b"events/");
        push_date(&mut rel, w.date(self.at(50)), b'/');
        let day_rel = String::from_utf8_lossy(&rel).into_owned();
        let cus = &self.edge_customer;
        let ts = "2000-01-01T00:00:00Z";
        let line = |id: &str| {
            format!(
                r#"{{"event_id":"{id}","event_type":"usage.login","customer_id":"{cus}","occurred_at":"{ts}"}}"#
            ) + "\n"
        };
        out.whole_object("_SUCCESS", b"", false)?;
        out.whole_object(&format!("{day_rel}/_SUCCESS"), b"", false)?;
        out.whole_object(
            "notes.txt",
            b"Demo data written by `tenure demo`. This file is not an event object and is skipped.\n",
            false,
        )?;
        out.whole_object(
            "_tmp/part-0000.jsonl",
            (line("evt_tmp_1") + &line("evt_tmp_2")).as_bytes(),
            false,
        )?;
        out.whole_object(
            &format!("{day_rel}/.part-0001.jsonl"),
            line("evt_hidden_1").as_bytes(),
            false,
        )?;
        Ok(())
    }
}

/// The `i`-th hand-written bad row and the reject reason EVENTS.md gives it.
fn bad_row(i: usize, id: &str, cus: &str, day: &str) -> (String, &'static str) {
    let ts = format!("{day}T10:{:02}:00Z", i % 60);
    let env = |t: &str| {
        format!(
            r#""event_id":"{id}","event_type":"{t}","customer_id":"{cus}","occurred_at":"{ts}""#
        )
    };
    let (y, m, dd) = (&day[..4], &day[5..7], &day[8..10]);
    match i {
        0 => (
            format!(
                r#"{{"event_id":"{id}","event_type":"usage.login","customer_id":"{cus}","occurred_at":"{ts}""#
            ),
            "malformed",
        ),
        1 => ("this is not json at all".to_string(), "malformed"),
        2 => (
            format!(r#"["{id}","usage.login","{cus}","{ts}"]"#),
            "malformed",
        ),
        3 => (
            format!(
                r#"{{{},"feature":"reports","quantity":NaN}}"#,
                env("usage.feature_used")
            ),
            "malformed",
        ),
        4 => (
            format!(
                r#"{{"event_id":"{id}","event_type":"usage.login","customer_id":true,"occurred_at":"{ts}"}}"#
            ),
            "malformed",
        ),
        5 => (
            format!(r#"{{"event_id":"{id}","event_type":"usage.login","occurred_at":"{ts}"}}"#),
            "missing_field",
        ),
        6 => (
            format!(
                r#"{{"event_id":"","event_type":"usage.login","customer_id":"{cus}","occurred_at":"{ts}"}}"#
            ),
            "missing_field",
        ),
        7 => (
            format!(
                r#"{{"event_id":"{id}","event_type":"email.opened","customer_id":"{cus}","occurred_at":null,"campaign_id":"nl_x"}}"#
            ),
            "missing_field",
        ),
        8 => (
            format!(r#"{{{},"amount":120}}"#, env("invoice.created")),
            "unknown_event_type",
        ),
        9 => (
            format!(r#"{{{}}}"#, env("Usage.login")),
            "unknown_event_type",
        ),
        10 => (
            format!(
                r#"{{{},"subscription_id":"sub_x","mrr":10}}"#,
                env("subscription.renewed")
            ),
            "unknown_event_type",
        ),
        11 => (
            format!(
                r#"{{"event_id":"{id}","event_type":"usage.login","customer_id":"{cus}","occurred_at":"{y}-13-01T10:00:00Z"}}"#
            ),
            "bad_timestamp",
        ),
        12 => (
            format!(
                r#"{{"event_id":"{id}","event_type":"usage.login","customer_id":"{cus}","occurred_at":"{day}"}}"#
            ),
            "bad_timestamp",
        ),
        13 => (
            format!(
                r#"{{"event_id":"{id}","event_type":"usage.login","customer_id":"{cus}","occurred_at":"{day}T23:59:60Z"}}"#
            ),
            "bad_timestamp",
        ),
        14 => (
            format!(
                r#"{{"event_id":"{id}","event_type":"usage.login","customer_id":"{cus}","occurred_at":"{dd}/{m}/{y} 10:00"}}"#
            ),
            "bad_timestamp",
        ),
        15 => (
            format!(
                r#"{{"event_id":"{id}","event_type":"usage.login","customer_id":"{cus}","occurred_at":"{day}T10:00:00+24:00"}}"#
            ),
            "bad_timestamp",
        ),
        16 => (
            format!(
                r#"{{{},"subscription_id":"sub_bad_16","plan":"growth"}}"#,
                env("subscription.started")
            ),
            "missing_field",
        ),
        17 => (
            format!(
                r#"{{{},"payment_id":"pay_bad_17"}}"#,
                env("payment.succeeded")
            ),
            "missing_field",
        ),
        18 => (
            format!(r#"{{{},"priority":"high"}}"#, env("support.ticket_opened")),
            "missing_field",
        ),
        19 => (
            format!(r#"{{{},"score":null}}"#, env("survey.nps")),
            "missing_field",
        ),
        20 => (
            format!(
                r#"{{{},"subscription_id":""}}"#,
                env("subscription.cancelled")
            ),
            "missing_field",
        ),
        21 => (
            format!(r#"{{{},"amount":1.23456}}"#, env("payment.succeeded")),
            "bad_number",
        ),
        22 => (
            format!(
                r#"{{{},"subscription_id":"sub_bad_22","mrr":"12,50"}}"#,
                env("subscription.changed")
            ),
            "bad_number",
        ),
        23 => (
            format!(
                r#"{{{},"feature":"reports","quantity":"abc"}}"#,
                env("usage.feature_used")
            ),
            "bad_number",
        ),
        24 => (
            format!(
                r#"{{{},"subscription_id":"sub_bad_24","mrr":100,"seats":2.5}}"#,
                env("subscription.changed")
            ),
            "bad_number",
        ),
        25 => (
            format!(r#"{{{},"score":"nine"}}"#, env("survey.csat")),
            "bad_number",
        ),
        26 => (
            format!(r#"{{{},"quantity":true}}"#, env("usage.login")),
            "bad_number",
        ),
        27 => (
            format!(r#"{{{},"amount":"+10"}}"#, env("payment.succeeded")),
            "bad_number",
        ),
        28 => (
            format!(r#"{{{},"amount":-49.00}}"#, env("payment.refunded")),
            "negative_amount",
        ),
        29 => (
            format!(
                r#"{{{},"subscription_id":"sub_bad_29","mrr":"-5.00"}}"#,
                env("subscription.started")
            ),
            "negative_amount",
        ),
        30 => (
            format!(r#"{{{},"score":11}}"#, env("survey.nps")),
            "score_out_of_range",
        ),
        31 => (
            format!(r#"{{{},"score":0}}"#, env("survey.csat")),
            "score_out_of_range",
        ),
        32 => (
            format!(r#"{{{},"score":"-1"}}"#, env("survey.nps")),
            "score_out_of_range",
        ),
        33 => (
            format!(
                r#"{{{},"ticket_id":"tkt_bad_33","priority":"critical"}}"#,
                env("support.ticket_opened")
            ),
            "bad_priority",
        ),
        34 => (
            format!(
                r#"{{{},"ticket_id":"tkt_bad_34","priority":"P1"}}"#,
                env("support.ticket_resolved")
            ),
            "bad_priority",
        ),
        35 => (
            format!(
                r#"{{{},"amount":99,"currency":"EUR"}}"#,
                env("payment.succeeded")
            ),
            "unsupported_currency",
        ),
        _ => (
            format!(
                r#"{{{},"subscription_id":"sub_bad_36","mrr":49,"currency":"eur"}}"#,
                env("subscription.started")
            ),
            "unsupported_currency",
        ),
    }
}

/// Number of valid rows that exercise the edges of the contract.
const EDGE_ROWS: usize = 15;

/// The `i`-th valid edge-case row (accepted by EVENTS.md, awkward to parse).
fn edge_row(i: usize, id: &str, cus: &str, day: &str) -> String {
    let head = |t: &str, ts: &str| {
        format!(
            r#""event_id":"{id}","event_type":"{t}","customer_id":"{cus}","occurred_at":"{ts}""#
        )
    };
    let t = |hm: &str| format!("{day}T{hm}:00Z");
    match i {
        0 => format!("{{{}}}", head("usage.login", &format!("{day} 10:00:00"))),
        1 => format!("{{{}}}", head("usage.login", &format!("{day}t10:05:00z"))),
        2 => format!(
            r#"{{{},"feature":"reports","quantity":"2.5e1"}}"#,
            head(
                "usage.feature_used",
                &format!("{day}T10:10:00.123456789+0530")
            )
        ),
        3 => format!(
            r#"{{{},"feature":"dashboards","quantity":1E2,"feature":"alerts"}}"#,
            head("usage.feature_used", &t("10:15"))
        ),
        4 => format!(
            r#"{{{},"score":"9.0","comment":null}}"#,
            head("survey.nps", &t("10:20"))
        ),
        5 => format!(r#"{{{},"score":4.0}}"#, head("survey.csat", &t("10:25"))),
        6 => format!(
            r#"{{{},"ticket_id":98765,"priority":"URGENT"}}"#,
            head("support.ticket_opened", &t("10:30"))
        ),
        7 => format!(
            r#"{{{},"ticket_id":"98765","priority":"Urgent"}}"#,
            head("support.ticket_resolved", &t("10:35"))
        ),
        8 => format!(
            r#"{{{},"amount":"1.50000","currency":"usd","payment_id":"pay_edge_1"}}"#,
            head("payment.succeeded", &t("10:40"))
        ),
        9 => format!(
            r#"{{{},"amount":-0,"payment_id":"pay_edge_1"}}"#,
            head("payment.refunded", &t("10:45"))
        ),
        10 => format!(
            r#"{{{},"amount":2.5e1,"currency":"USD","payment_id":"pay_edge_2"}}"#,
            head("payment.succeeded", &t("10:50"))
        ),
        11 => format!(
            r#"{{{},"segment":"","owner":"grace.kim","crm":{{"synced":true,"tags":["vip"]}}}}"#,
            head("customer.updated", &t("10:55"))
        ),
        12 => format!(
            r#"{{{},"campaign_id":null}}"#,
            head("email.sent", &t("11:00"))
        ),
        13 => format!(
            r#"{{{},"user_id":1234,"quantity":0.25,"source":"api"}}"#,
            head("usage.api_request", &t("11:05"))
        ),
        _ => format!(
            r#"{{{},"priority":"critical"}}"#,
            head("usage.login", &format!("{day}T11:10:00-05:00"))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashSet};

    fn small(end: NaiveDate) -> DemoOptions {
        DemoOptions {
            customers: 40,
            months: 6,
            end_date: end,
            seed: 7,
            target_events: None,
            messy: true,
        }
    }

    fn end() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 11, 22).expect("valid date")
    }

    /// Every file under `dir`, by path relative to it (`/`-separated), sorted bytewise.
    fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
            for entry in fs::read_dir(dir).expect("read dir") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    walk(root, &path, out);
                } else {
                    let rel = path.strip_prefix(root).expect("under root");
                    let rel = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/");
                    out.insert(rel, fs::read(&path).expect("read file"));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(dir, dir, &mut out);
        out
    }

    #[test]
    fn same_options_give_identical_bytes() {
        let (a, b) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let opts = small(end());
        let sa = generate(a.path(), &opts).expect("generate a");
        let sb = generate(b.path(), &opts).expect("generate b");
        assert_eq!(sa, sb);
        let (fa, fb) = (files(a.path()), files(b.path()));
        assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
        for (k, v) in &fa {
            assert!(fb[k] == *v, "{k} differs between runs");
        }
        let other = generate(
            tempfile::tempdir().expect("tempdir").path(),
            &DemoOptions { seed: 8, ..opts },
        )
        .expect("generate other seed");
        assert_ne!(other, sa, "another seed gives other data");
    }

    #[test]
    fn bad_options_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = DemoOptions {
            customers: 0,
            ..small(end())
        };
        assert!(matches!(
            generate(dir.path(), &opts),
            Err(DemoError::EmptyHistory { .. })
        ));
    }

    // --- a small reference reader of EVENTS.md, enough to classify demo rows ---

    enum Str {
        Missing,
        Some(String),
        Malformed,
    }

    fn get_str(o: &serde_json::Map<String, serde_json::Value>, k: &str) -> Str {
        use serde_json::Value;
        match o.get(k) {
            None | Some(Value::Null) => Str::Missing,
            Some(Value::String(s)) if s.is_empty() => Str::Missing,
            Some(Value::String(s)) => Str::Some(s.clone()),
            Some(Value::Number(n)) => Str::Some(n.to_string()),
            Some(_) => Str::Malformed,
        }
    }

    fn is_decimal(s: &str) -> bool {
        let s = s.strip_prefix('-').unwrap_or(s);
        let (int, frac) = s.split_once('.').unwrap_or((s, "0"));
        !int.is_empty()
            && !frac.is_empty()
            && int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    }

    fn is_numeric(s: &str) -> bool {
        let (mant, exp) = match s.find(['e', 'E']) {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        let exp_ok = exp.is_none_or(|e| {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
        });
        is_decimal(mant) && exp_ok
    }

    /// Text of a numeric field; Err(()) when not a number or numeric string.
    fn num_text(v: &serde_json::Value) -> Result<Option<String>, ()> {
        use serde_json::Value;
        match v {
            Value::Null => Ok(None),
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            Value::Number(n) => Ok(Some(n.to_string())),
            _ => Err(()),
        }
    }

    fn check_money(v: Option<&serde_json::Value>, required: bool) -> Result<(), &'static str> {
        let text = match v.map(num_text) {
            None | Some(Ok(None)) if required => return Err("missing_field"),
            None | Some(Ok(None)) => return Ok(()),
            Some(Err(())) => return Err("bad_number"),
            Some(Ok(Some(t))) => t,
        };
        let is_json_number = matches!(v, Some(serde_json::Value::Number(_)));
        let value: f64 = if is_json_number || is_decimal(&text) {
            text.parse().map_err(|_| "bad_number")?
        } else {
            return Err("bad_number");
        };
        // at most 4 fractional digits
        if ((value * 10_000.0).round() - value * 10_000.0).abs() > 1e-6 {
            return Err("bad_number");
        }
        if value < 0.0 {
            return Err("negative_amount");
        }
        Ok(())
    }

    fn check_num(
        v: Option<&serde_json::Value>,
        integer: bool,
    ) -> Result<Option<f64>, &'static str> {
        let text = match v.map(num_text) {
            None | Some(Ok(None)) => return Ok(None),
            Some(Err(())) => return Err("bad_number"),
            Some(Ok(Some(t))) => t,
        };
        let is_json_number = matches!(v, Some(serde_json::Value::Number(_)));
        if !is_json_number && !is_numeric(&text) {
            return Err("bad_number");
        }
        let x: f64 = text.parse().map_err(|_| "bad_number")?;
        if !x.is_finite() || (integer && x.fract() != 0.0) {
            return Err("bad_number");
        }
        Ok(Some(x))
    }

    fn check_ts(s: &str) -> bool {
        let b = s.as_bytes();
        if b.len() < 19 || !matches!(b[10], b'T' | b't' | b' ') || &b[17..19] == b"60" {
            return false;
        }
        let mut norm = format!("{}T{}", &s[..10], &s[11..]);
        let tail_start = norm[19..].find(['Z', 'z', '+', '-']).map(|i| i + 19);
        match tail_start {
            None => norm.push('Z'),
            Some(i) => {
                let off = norm[i..].to_string();
                if off.eq_ignore_ascii_case("z") {
                    norm.replace_range(i.., "Z");
                } else {
                    let digits: String = off[1..].chars().filter(|c| *c != ':').collect();
                    if digits.len() != 4 || digits[..2].parse::<u32>().map_or(true, |h| h >= 24) {
                        return false;
                    }
                    norm.replace_range(
                        i..,
                        &format!("{}{}:{}", &off[..1], &digits[..2], &digits[2..]),
                    );
                }
            }
        }
        chrono::DateTime::parse_from_rfc3339(&norm).is_ok()
    }

    /// The reject reason of a parsed row, or its event_id and type when accepted.
    fn classify(v: &serde_json::Value) -> Result<(String, String), &'static str> {
        let Some(o) = v.as_object() else {
            return Err("malformed");
        };
        let mut env = Vec::new();
        for k in ["event_id", "event_type", "customer_id", "occurred_at"] {
            match get_str(o, k) {
                Str::Malformed => return Err("malformed"),
                Str::Missing => env.push(None),
                Str::Some(s) => env.push(Some(s)),
            }
        }
        if env.iter().any(Option::is_none) {
            return Err("missing_field");
        }
        let [Some(id), Some(t), Some(_), Some(ts)] =
            <[Option<String>; 4]>::try_from(env).expect("four")
        else {
            unreachable!()
        };
        const KNOWN: [&str; 17] = [
            "customer.created",
            "customer.updated",
            "subscription.started",
            "subscription.changed",
            "subscription.resumed",
            "subscription.paused",
            "subscription.cancelled",
            "payment.succeeded",
            "payment.failed",
            "payment.refunded",
            "support.ticket_opened",
            "support.ticket_resolved",
            "survey.nps",
            "survey.csat",
            "email.sent",
            "email.opened",
            "email.clicked",
        ];
        if !KNOWN.contains(&t.as_str()) && !t.starts_with("usage.") {
            return Err("unknown_event_type");
        }
        if !check_ts(&ts) {
            return Err("bad_timestamp");
        }
        let present = |k: &str| matches!(get_str(o, k), Str::Some(_));
        let family = t.split('.').next().unwrap_or("");
        let required: &[&str] = match t.as_str() {
            "subscription.started" | "subscription.changed" | "subscription.resumed" => {
                &["subscription_id"]
            }
            "subscription.paused" | "subscription.cancelled" => &["subscription_id"],
            "support.ticket_opened" | "support.ticket_resolved" => &["ticket_id"],
            _ => &[],
        };
        if required.iter().any(|k| !present(k)) {
            return Err("missing_field");
        }
        let money_key = match t.as_str() {
            "subscription.started" | "subscription.changed" | "subscription.resumed" => Some("mrr"),
            _ if family == "payment" => Some("amount"),
            _ => None,
        };
        if let Some(k) = money_key {
            if o.get(k).is_none_or(|v| num_text(v) == Ok(None)) {
                return Err("missing_field");
            }
        }
        if t.starts_with("survey.") && o.get("score").is_none_or(|v| num_text(v) == Ok(None)) {
            return Err("missing_field");
        }
        if money_key == Some("mrr") {
            check_num(o.get("seats"), true)?;
        }
        if family == "usage" {
            check_num(o.get("quantity"), false)?;
        }
        let score = if family == "survey" {
            check_num(o.get("score"), true)?
        } else {
            None
        };
        if let Some(k) = money_key {
            check_money(o.get(k), true)?;
        }
        if let Some(s) = score {
            let ok = if t == "survey.nps" {
                (0.0..=10.0).contains(&s)
            } else {
                (1.0..=5.0).contains(&s)
            };
            if !ok {
                return Err("score_out_of_range");
            }
        }
        if family == "support" {
            if let Str::Some(p) = get_str(o, "priority") {
                if !["low", "normal", "high", "urgent"].contains(&p.to_ascii_lowercase().as_str()) {
                    return Err("bad_priority");
                }
            }
        }
        if money_key.is_some() {
            if let Str::Some(c) = get_str(o, "currency") {
                if !c.eq_ignore_ascii_case("USD") {
                    return Err("unsupported_currency");
                }
            }
        }
        Ok((id, t))
    }

    #[derive(Default, Debug)]
    struct Tally {
        objects: usize,
        accepted: u64,
        rejected: u64,
        duplicates: u64,
        reasons: BTreeMap<&'static str, u64>,
        types: BTreeMap<String, u64>,
        extensions: HashSet<String>,
        max_date: String,
    }

    /// Reads `dir` the way EVENTS.md says the pipeline does.
    fn tally(dir: &Path) -> Tally {
        let mut t = Tally::default();
        let mut seen = HashSet::new();
        for (rel, bytes) in files(dir) {
            if rel
                .split('/')
                .any(|seg| seg.starts_with('_') || seg.starts_with('.'))
            {
                continue;
            }
            let lower = rel.to_ascii_lowercase();
            let (base, raw) = if let Some(b) = lower.strip_suffix(".gz") {
                let mut v = Vec::new();
                io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut v)
                    .expect("gunzip");
                (b.to_string(), v)
            } else if let Some(b) = lower.strip_suffix(".zst") {
                (b.to_string(), zstd::decode_all(&bytes[..]).expect("unzstd"))
            } else {
                (lower.clone(), bytes)
            };
            let ext = base.rsplit('.').next().unwrap_or("").to_string();
            let mut rows: Vec<Result<serde_json::Value, ()>> = Vec::new();
            match ext.as_str() {
                "jsonl" | "ndjson" | "json" => {
                    let text = String::from_utf8(raw).expect("utf-8");
                    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
                    for line in text.split('\n') {
                        if line.trim().is_empty() {
                            continue;
                        }
                        rows.push(serde_json::from_str(line).map_err(|_| ()));
                    }
                }
                "csv" => {
                    let mut r = csv::ReaderBuilder::new()
                        .flexible(true)
                        .from_reader(&raw[..]);
                    let header = r.headers().expect("csv header").clone();
                    for rec in r.records() {
                        let rec = rec.expect("csv record");
                        if rec.len() != header.len() {
                            rows.push(Err(()));
                            continue;
                        }
                        let mut o = serde_json::Map::new();
                        for (h, v) in header.iter().zip(rec.iter()) {
                            if !v.is_empty() {
                                o.insert(h.to_string(), serde_json::Value::String(v.to_string()));
                            }
                        }
                        rows.push(Ok(serde_json::Value::Object(o)));
                    }
                }
                _ => continue, // skipped
            }
            t.objects += 1;
            t.extensions.insert(
                lower
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .split_once('.')
                    .map_or("", |x| x.1)
                    .to_string(),
            );
            for row in rows {
                let res = row.map_err(|()| "malformed").and_then(|v| classify(&v));
                match res {
                    Err(reason) => {
                        t.rejected += 1;
                        *t.reasons.entry(reason).or_default() += 1;
                    }
                    Ok((id, ty)) => {
                        if seen.insert(id) {
                            t.accepted += 1;
                            *t.types.entry(ty).or_default() += 1;
                            t.max_date = t.max_date.clone().max(rel[7..17].replace('/', "-"));
                        } else {
                            t.duplicates += 1;
                        }
                    }
                }
            }
        }
        t
    }

    #[test]
    fn every_row_is_valid_or_an_intended_reject() {
        let dir = tempfile::tempdir().expect("tempdir");
        let summary = generate(dir.path(), &small(end())).expect("generate");
        let t = tally(dir.path());
        assert_eq!(t.objects, summary.objects, "data objects");
        assert_eq!(t.accepted, summary.events, "accepted events");
        assert_eq!(
            t.rejected, summary.bad_rows,
            "rejected rows: {:?}",
            t.reasons
        );
        assert_eq!(t.duplicates, summary.duplicate_rows, "duplicates");
        for reason in [
            "malformed",
            "missing_field",
            "unknown_event_type",
            "bad_timestamp",
            "bad_number",
            "negative_amount",
            "score_out_of_range",
            "bad_priority",
            "unsupported_currency",
        ] {
            assert!(
                t.reasons.contains_key(reason),
                "no row rejected as {reason}: {:?}",
                t.reasons
            );
        }
        for ext in ["jsonl", "jsonl.gz", "jsonl.zst", "csv", "ndjson", "json"] {
            assert!(
                t.extensions.contains(ext),
                "no .{ext} object: {:?}",
                t.extensions
            );
        }
        let all = files(dir.path());
        for side in ["_SUCCESS", "notes.txt", "_tmp/part-0000.jsonl"] {
            assert!(all.contains_key(side), "{side} missing");
        }
        assert_eq!(t.max_date, "2025-11-25", "a few events after end_date");
    }

    #[test]
    fn clean_mode_has_no_rejects_or_duplicates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = DemoOptions {
            messy: false,
            ..small(end())
        };
        let summary = generate(dir.path(), &opts).expect("generate");
        let t = tally(dir.path());
        assert_eq!((summary.bad_rows, summary.duplicate_rows), (0, 0));
        assert_eq!(
            (t.rejected, t.duplicates, t.accepted),
            (0, 0, summary.events),
            "{:?}",
            t.reasons
        );
        assert_eq!(files(dir.path()).len(), summary.objects);
    }

    #[test]
    fn demo_covers_every_event_type() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = DemoOptions {
            customers: 120,
            months: 13,
            ..small(end())
        };
        generate(dir.path(), &opts).expect("generate");
        let t = tally(dir.path());
        for ty in [
            "customer.created",
            "customer.updated",
            "subscription.started",
            "subscription.changed",
            "subscription.resumed",
            "subscription.paused",
            "subscription.cancelled",
            "payment.succeeded",
            "payment.failed",
            "payment.refunded",
            "support.ticket_opened",
            "support.ticket_resolved",
            "survey.nps",
            "survey.csat",
            "email.sent",
            "email.opened",
            "email.clicked",
            "usage.login",
            "usage.feature_used",
            "usage.api_request",
        ] {
            assert!(
                t.types.get(ty).is_some_and(|&n| n > 0),
                "no {ty}: {:?}",
                t.types
            );
        }
    }

    #[test]
    fn target_events_scales_usage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = DemoOptions {
            customers: 20,
            months: 3,
            target_events: Some(60_000),
            messy: false,
            ..small(end())
        };
        let summary = generate(dir.path(), &opts).expect("generate");
        let off = (summary.events as f64 - 60_000.0).abs() / 60_000.0;
        assert!(
            off < 0.05,
            "{} events for a target of 60000",
            summary.events
        );
    }

    #[test]
    fn duplicate_variants_keep_or_change_the_payload() {
        let line = br#"{"event_id":"evt_1","occurred_at":"2025-01-02T23:10:00Z","amount":1}"#;
        let (same, conflict) = DupKind::OtherOffset.render(line);
        assert!(!conflict);
        assert!(same.windows(25).any(|w| w == b"2025-01-02T23:10:00+00:00"));
        let (other, conflict) = DupKind::Conflict.render(line);
        assert!(conflict);
        assert!(other.windows(19).any(|w| w == b"2025-01-02T00:10:00"));
    }

    #[test]
    fn money_and_timestamps_render_exactly() {
        let mut b = Vec::new();
        push_money(&mut b, 9990, true);
        b.push(b' ');
        push_money(&mut b, 9990, false);
        b.push(b' ');
        push_money(&mut b, 49000, true);
        b.push(b' ');
        push_money(&mut b, 5, true);
        assert_eq!(b, b"99.9 99.90 490 0.05");
        let days = DayStrs::new(end());
        b.clear();
        push_ts(&mut b, &days, 86_000, Some(7), Some(540));
        assert_eq!(b, b"2025-11-23T08:53:20.007+09:00");
        b.clear();
        push_ts(&mut b, &days, 3_600, None, Some(-300));
        assert_eq!(b, b"2025-11-21T20:00:00-05:00");
    }
}
