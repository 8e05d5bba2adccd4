//! What the simulation plans and the renderer reads: subscriptions ([`Sub`]),
//! the sparse lifecycle events ([`Kind`], [`Sparse`]), customers with their
//! stretches of usage ([`Cust`], [`Span`], [`Usage`]) and the [`Plan`] of them
//! all, bucketed by day. Types and their small rules (pricing, usage intensity
//! of a day); no randomness and no I/O.

use super::world::{ADDONS, TIERS};

/// A subscription's state after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sub {
    pub(super) no: u16,
    /// 0..=3 a tier of [`TIERS`], 4.. an add-on of [`ADDONS`].
    pub(super) plan: u8,
    pub(super) seats: u32,
    discount: u8,
    pub(super) annual: bool,
    pub(super) paused: bool,
    /// Monthly recurring revenue in cents (annual plans normalised to a month).
    pub(super) mrr: i64,
}

impl Sub {
    pub(super) fn new(no: u16, plan: u8, seats: u32, discount: u8, annual: bool) -> Sub {
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
    pub(super) fn reprice(&mut self) {
        let list = match TIERS.get(self.plan as usize) {
            Some(t) => t.2 * i64::from(self.seats),
            None => ADDONS[self.plan as usize - TIERS.len()].1,
        };
        let net = list * i64::from(100 - self.discount) / 100;
        // Annual plans cost ten months a year; the monthly figure stays whole cents.
        self.mrr = if self.annual { net * 10 / 12 } else { net };
    }
    /// What one invoice of this subscription charges.
    pub(super) fn invoice(&self) -> i64 {
        if self.annual {
            self.mrr * 12
        } else {
            self.mrr
        }
    }
    pub(super) fn plan_name(&self) -> &'static str {
        match TIERS.get(self.plan as usize) {
            Some(t) if self.annual => t.1,
            Some(t) => t.0,
            None => ADDONS[self.plan as usize - TIERS.len()].0,
        }
    }
    pub(super) fn is_addon(&self) -> bool {
        self.plan as usize >= TIERS.len()
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Campaign {
    /// Fortnightly newsletter sent on that day.
    Newsletter(u32),
    Onboarding,
    /// Win-back mail after the churn of that day.
    Winback(u32),
}

/// One planned (sparse) event; usage events are not planned but streamed.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
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
    pub(super) fn event_type(&self) -> &'static str {
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
    pub(super) fn is_client_side(&self) -> bool {
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
    pub(super) fn is_helpdesk(&self) -> bool {
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
pub(super) struct Sparse {
    /// Second of the UTC day.
    pub(super) sec: u32,
    pub(super) cust: u32,
    pub(super) kind: Kind,
}

/// A stretch of days with product usage at a level (1 normal, lower in trials,
/// pauses and evaluations), fading before `churn`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    pub(super) from: u32,
    /// Exclusive.
    pub(super) to: u32,
    pub(super) level: f64,
    pub(super) ramp_from: u32,
    pub(super) churn: Option<u32>,
}

/// Usage fades over the 90 days before a cancellation.
pub(super) fn decline(churn: Option<u32>, d: u32) -> f64 {
    match churn {
        Some(c) if d <= c && c - d < 90 => 0.15 + 0.85 * f64::from(c - d) / 90.0,
        _ => 1.0,
    }
}

pub(super) struct Usage {
    pub(super) p: f64,
    pub(super) mean: f64,
    pub(super) breadth: u64,
}

pub(super) struct Cust {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) seg0: u8,
    pub(super) country: u8,
    pub(super) industry: u8,
    pub(super) owner0: u8,
    /// Office offset in minutes: shapes the hours of activity.
    pub(super) home_off: i32,
    /// Offset written on client-side timestamps (`None`: `Z`).
    pub(super) ts_off: Option<i32>,
    /// Latent engagement in [0.05, 0.95]: usage, sentiment, churn risk.
    pub(super) eng: f64,
    pub(super) users: u32,
    pub(super) features: [u8; 8],
    pub(super) breadth: u32,
    pub(super) usage_mean: f64,
    pub(super) spans: Vec<Span>,
    /// Subscriptions active at `end_date` (for the events after it).
    pub(super) final_subs: Vec<Sub>,
    pub(super) seg_final: u8,
}

impl Cust {
    pub(super) fn span_at(&self, d: u32) -> Option<&Span> {
        self.spans.iter().find(|s| s.from <= d && d < s.to)
    }

    /// Usage intensity on day `d`; `cursor` walks the spans as days increase.
    pub(super) fn usage_at(&self, cursor: &mut usize, d: u32, weekend: bool) -> Option<Usage> {
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
pub(super) struct Plan {
    pub(super) customers: Vec<Cust>,
    pub(super) buckets: Vec<Vec<Sparse>>,
}
