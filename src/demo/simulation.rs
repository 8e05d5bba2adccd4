//! The simulation of the business: each customer's life (sign-up, trials,
//! subscriptions and their changes, churn and reactivation, payments, tickets,
//! surveys, emails) from its own random stream, the few events after
//! `end_date`, and the usage scale of benchmark mode. It plans only the sparse
//! events; usage events are not planned but streamed by the renderer.

use super::model::{decline, Campaign, Cust, Kind, Plan, Span, Sparse, Sub};
use super::rng::Rng;
use super::world::{
    World, ADDONS, CANCEL_REASONS, COUNTRIES, INDUSTRIES, NAME_A, NAME_B, OWNERS, PAUSE_REASONS,
    SEG, TIERS,
};
use super::DemoOptions;

pub(super) fn build_plan(opts: &DemoOptions, w: &World) -> Plan {
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
pub(super) fn client_sec(rng: &mut Rng, home_off: i32) -> u32 {
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
pub(super) fn usage_scale(customers: &[Cust], w: &World, target: Option<u64>, fixed: u64) -> f64 {
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
