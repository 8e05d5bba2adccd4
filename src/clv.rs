//! Probabilistic customer lifetime value (METRICS.md §14): the BG/NBD model
//! of repeat purchasing (Fader, Hardie & Lee, "Counting your customers the
//! easy way", 2005) and the Gamma-Gamma model of spend per purchase (Fader,
//! Hardie & Lee, "RFM and CLV", 2005), fit by maximum likelihood.
//!
//! Both fits minimise the negative log-likelihood over the logarithms of
//! the parameters (so they stay positive) with argmin's L-BFGS and a
//! More-Thuente line search, from the papers' analytic gradients. The
//! log-likelihoods are the papers' full forms, every constant term
//! included. Degenerate inputs (no customer, no repeat customer, spend of
//! zero) give no fit, never a panic; a fit that stops before converging
//! says so (`converged = false`).

use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason, TerminationStatus};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use special::Gamma;

/// One customer's purchase history, in time units (`metrics.clv.time_unit_days`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Customer {
    /// Repeat purchase days: purchase days after the first.
    pub x: f64,
    /// Recency: from the first to the last purchase day.
    pub t_x: f64,
    /// Age: from the first purchase day to the as-of date.
    pub t: f64,
    /// Mean spend of the repeat purchase days; `None` when `x = 0`.
    pub monetary: Option<f64>,
}

/// A fitted BG/NBD model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
    pub log_likelihood: f64,
    pub converged: bool,
}

/// A fitted Gamma-Gamma model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
    pub log_likelihood: f64,
    pub converged: bool,
}

fn ln_gamma(x: f64) -> f64 {
    Gamma::ln_gamma(x).0
}

fn digamma(x: f64) -> f64 {
    Gamma::digamma(x)
}

/// `ln(e^u + e^v)` without overflow.
fn log_add(u: f64, v: f64) -> f64 {
    let (hi, lo) = if u > v { (u, v) } else { (v, u) };
    hi + (lo - hi).exp().ln_1p()
}

/// BG/NBD: one customer's log-likelihood and its gradient in (r, α, a, b).
fn bgnbd_customer(r: f64, alpha: f64, a: f64, b: f64, c: &Customer) -> (f64, [f64; 4]) {
    let x = c.x;
    let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
    let a2 = ln_gamma(a + b) + ln_gamma(b + x) - ln_gamma(b) - ln_gamma(a + b + x);
    let a3 = -(r + x) * (alpha + c.t).ln();
    let d_a1 = [digamma(r + x) - digamma(r) + alpha.ln(), r / alpha, 0.0, 0.0];
    let ab = digamma(a + b) - digamma(a + b + x);
    let d_a2 = [0.0, 0.0, ab, ab + digamma(b + x) - digamma(b)];
    let d_a3 = [-(alpha + c.t).ln(), -(r + x) / (alpha + c.t), 0.0, 0.0];
    let mut grad = [0.0; 4];
    let ll = if x > 0.0 {
        let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + c.t_x).ln();
        let d_a4 = [-(alpha + c.t_x).ln(), -(r + x) / (alpha + c.t_x), 1.0 / a, -1.0 / (b + x - 1.0)];
        let s = log_add(a3, a4);
        let (w3, w4) = ((a3 - s).exp(), (a4 - s).exp());
        for k in 0..4 {
            grad[k] = d_a1[k] + d_a2[k] + w3 * d_a3[k] + w4 * d_a4[k];
        }
        a1 + a2 + s
    } else {
        for k in 0..4 {
            grad[k] = d_a1[k] + d_a2[k] + d_a3[k];
        }
        a1 + a2 + a3
    };
    (ll, grad)
}

/// The BG/NBD log-likelihood of `customers` at (r, α, a, b), and its gradient.
pub fn bgnbd_log_likelihood(params: [f64; 4], customers: &[Customer]) -> (f64, [f64; 4]) {
    let [r, alpha, a, b] = params;
    let mut ll = 0.0;
    let mut grad = [0.0; 4];
    for c in customers {
        let (l, g) = bgnbd_customer(r, alpha, a, b, c);
        ll += l;
        for k in 0..4 {
            grad[k] += g[k];
        }
    }
    (ll, grad)
}

/// Gamma-Gamma: one customer's log-likelihood and gradient in (p, q, γ).
fn gamma_gamma_customer(p: f64, q: f64, gamma: f64, x: f64, m: f64) -> (f64, [f64; 3]) {
    let px = p * x;
    let ll = ln_gamma(px + q) - ln_gamma(px) - ln_gamma(q) + q * gamma.ln() + (px - 1.0) * m.ln() + px * x.ln()
        - (px + q) * (gamma + x * m).ln();
    let d_p = x * (digamma(px + q) - digamma(px) + m.ln() + x.ln() - (gamma + x * m).ln());
    let d_q = digamma(px + q) - digamma(q) + gamma.ln() - (gamma + x * m).ln();
    let d_gamma = q / gamma - (px + q) / (gamma + x * m);
    (ll, [d_p, d_q, d_gamma])
}

/// The Gamma-Gamma log-likelihood of the repeat customers of `customers`
/// (x > 0 and a positive mean spend) at (p, q, γ), and its gradient.
pub fn gamma_gamma_log_likelihood(params: [f64; 3], customers: &[Customer]) -> (f64, [f64; 3]) {
    let [p, q, gamma] = params;
    let mut ll = 0.0;
    let mut grad = [0.0; 3];
    for (x, m) in spenders(customers) {
        let (l, g) = gamma_gamma_customer(p, q, gamma, x, m);
        ll += l;
        for k in 0..3 {
            grad[k] += g[k];
        }
    }
    (ll, grad)
}

/// The customers the Gamma-Gamma model is fit on: (x, mean spend).
fn spenders(customers: &[Customer]) -> impl Iterator<Item = (f64, f64)> + '_ {
    customers
        .iter()
        .filter(|c| c.x > 0.0)
        .filter_map(|c| c.monetary.filter(|m| *m > 0.0 && m.is_finite()).map(|m| (c.x, m)))
}

/// A negative log-likelihood over log-parameters, for argmin.
struct Problem<'a, const N: usize> {
    customers: &'a [Customer],
    log_likelihood: fn([f64; N], &[Customer]) -> (f64, [f64; N]),
}

impl<const N: usize> Problem<'_, N> {
    /// Parameters of log-parameters, kept within e^±30 so that a long
    /// trial step of the line search stays finite.
    fn params(theta: &[f64]) -> [f64; N] {
        let mut p = [0.0; N];
        for (k, t) in theta.iter().take(N).enumerate() {
            p[k] = t.clamp(-30.0, 30.0).exp();
        }
        p
    }

    /// The mean negative log-likelihood per customer (so that the scale of
    /// the first step does not grow with the book), and its gradient in
    /// log-parameters.
    fn evaluate(&self, theta: &[f64]) -> (f64, [f64; N]) {
        let params = Self::params(theta);
        let (ll, grad) = (self.log_likelihood)(params, self.customers);
        let n = self.customers.len().max(1) as f64;
        let mut g = [0.0; N];
        for k in 0..N {
            // d(-LL)/d(ln p) = -p dLL/dp
            g[k] = -params[k] * grad[k] / n;
        }
        (-ll / n, g)
    }
}

impl<const N: usize> CostFunction for Problem<'_, N> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, theta: &Self::Param) -> Result<f64, argmin::core::Error> {
        let (cost, _) = self.evaluate(theta);
        // A step far outside the model's domain: a cost the line search backs off from.
        Ok(if cost.is_finite() { cost } else { 1e30 })
    }
}

impl<const N: usize> Gradient for Problem<'_, N> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, theta: &Self::Param) -> Result<Vec<f64>, argmin::core::Error> {
        let (_, g) = self.evaluate(theta);
        Ok(g.iter().map(|v| if v.is_finite() { *v } else { 0.0 }).collect())
    }
}

/// The tolerance on the gradient's norm (in log-parameters) at which a fit
/// has converged.
pub const GRADIENT_TOLERANCE: f64 = 1e-6;
/// The most L-BFGS iterations of one fit.
pub const MAX_ITERATIONS: u64 = 1000;

/// Minimise `problem` from `start` (parameters, not logarithms). Returns the
/// parameters and whether L-BFGS converged; `None` when it failed outright.
fn minimise<const N: usize>(problem: Problem<'_, N>, start: [f64; N]) -> Option<([f64; N], bool)> {
    let linesearch = MoreThuenteLineSearch::new();
    let solver = LBFGS::new(linesearch, 10)
        .with_tolerance_grad(GRADIENT_TOLERANCE)
        .ok()?
        .with_tolerance_cost(0.0)
        .ok()?;
    let init: Vec<f64> = start.iter().map(|p| p.ln()).collect();
    let result = Executor::new(problem, solver)
        .configure(|state| state.param(init).max_iters(MAX_ITERATIONS))
        .run()
        .ok()?;
    let state = result.state();
    let converged = matches!(state.get_termination_status(), TerminationStatus::Terminated(TerminationReason::SolverConverged));
    let theta = state.get_best_param()?;
    let params = Problem::<N>::params(theta);
    params.iter().all(|p| p.is_finite() && *p > 0.0).then_some((params, converged))
}

/// Fit BG/NBD to `customers` (every customer with a purchase day). `None`
/// when there is nothing to fit: no customer, or no customer with a repeat
/// purchase or any age (the likelihood has no maximum).
pub fn fit_bgnbd(customers: &[Customer]) -> Option<BgNbd> {
    if customers.is_empty() || !customers.iter().any(|c| c.x > 0.0) || !customers.iter().any(|c| c.t > 0.0) {
        return None;
    }
    let problem = Problem::<4> {
        customers,
        log_likelihood: bgnbd_log_likelihood,
    };
    let ([r, alpha, a, b], converged) = minimise(problem, [1.0, 1.0, 1.0, 1.0])?;
    let (log_likelihood, _) = bgnbd_log_likelihood([r, alpha, a, b], customers);
    Some(BgNbd {
        r,
        alpha,
        a,
        b,
        log_likelihood,
        converged,
    })
}

/// Fit Gamma-Gamma to the repeat customers of `customers` with a positive
/// mean spend. `None` when fewer than two such customers, or all spend alike
/// (no maximum).
pub fn fit_gamma_gamma(customers: &[Customer]) -> Option<GammaGamma> {
    let spend: Vec<f64> = spenders(customers).map(|(_, m)| m).collect();
    if spend.len() < 2 || spend.iter().all(|m| *m == spend[0]) {
        return None;
    }
    let problem = Problem::<3> {
        customers,
        log_likelihood: gamma_gamma_log_likelihood,
    };
    let ([p, q, gamma], converged) = minimise(problem, [1.0, 1.0, 1.0])?;
    let (log_likelihood, _) = gamma_gamma_log_likelihood([p, q, gamma], customers);
    Some(GammaGamma {
        p,
        q,
        gamma,
        log_likelihood,
        converged,
    })
}

impl BgNbd {
    /// P(alive at the as-of date | x, t_x, T).
    pub fn p_alive(&self, c: &Customer) -> f64 {
        if c.x <= 0.0 {
            return 1.0;
        }
        let ratio = (self.a / (self.b + c.x - 1.0)).ln() + (self.r + c.x) * ((self.alpha + c.t) / (self.alpha + c.t_x)).ln();
        1.0 / (1.0 + ratio.exp())
    }

    /// Expected purchase days in the next `horizon` time units, given the
    /// customer's history (the paper's equation 10).
    pub fn expected_purchases(&self, c: &Customer, horizon: f64) -> f64 {
        let (r, alpha, a, b) = (self.r, self.alpha, self.a, self.b);
        let x = c.x;
        let z = horizon / (alpha + c.t + horizon);
        let lead = (a + b + x - 1.0) / (a - 1.0);
        // The paper's ((α+T)/(α+T+t))^(r+x) · 2F1(r+x, b+x; a+b+x−1; z),
        // with 1 − z = (α+T)/(α+T+t), by Euler's transformation 2F1(A, B;
        // C; z) = (1−z)^(C−A−B) 2F1(C−A, C−B; C; z): the same value, but
        // its series has small parameters whatever x is, where the
        // paper's terms grow like (1−z)^−(r+x) before they shrink and
        // overflow for a frequent buyer.
        let decayed = (1.0 - z).powf(a - 1.0) * hypergeometric_2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z);
        let numerator = lead * (1.0 - decayed);
        let denominator = if x > 0.0 {
            1.0 + (a / (b + x - 1.0)) * ((alpha + c.t) / (alpha + c.t_x)).powf(r + x)
        } else {
            1.0
        };
        numerator / denominator
    }
}

impl GammaGamma {
    /// The expected spend per purchase of a customer: the conditional mean
    /// given its repeat purchases, or the population mean `p·γ/(q − 1)` when
    /// it has none (NULL when q ≤ 1: no finite mean).
    pub fn expected_avg_value(&self, c: &Customer) -> Option<f64> {
        let (p, q, gamma) = (self.p, self.q, self.gamma);
        match c.monetary.filter(|_| c.x > 0.0) {
            Some(m) => Some(p * (gamma + c.x * m) / (p * c.x + q - 1.0)),
            None => (q > 1.0).then(|| p * gamma / (q - 1.0)),
        }
    }
}

/// Gauss's hypergeometric function 2F1(a, b; c; z) for 0 ≤ z < 1, by its
/// series (terms summed until they no longer change the sum).
pub fn hypergeometric_2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let mut term = 1.0;
    let mut sum = 1.0;
    for n in 0..100_000u32 {
        let n = f64::from(n);
        term *= (a + n) * (b + n) / ((c + n) * (n + 1.0)) * z;
        sum += term;
        if term.abs() <= sum.abs() * 1e-15 {
            break;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customers() -> Vec<Customer> {
        // A small book: a few repeaters of varied recency and spend, and
        // one-time buyers of varied age.
        let mut out = Vec::new();
        for i in 0..60 {
            let i = f64::from(i);
            let x = (i % 7.0).floor();
            let t = 10.0 + (i * 3.7) % 30.0;
            let t_x = if x > 0.0 { t * ((i * 0.37) % 1.0) } else { 0.0 };
            let monetary = (x > 0.0).then(|| 10.0 + (i * 5.3) % 40.0);
            out.push(Customer { x, t_x, t, monetary });
        }
        out
    }

    /// The analytic gradients agree with central differences.
    #[test]
    fn gradients_match_finite_differences() {
        let c = customers();
        let at = [0.7, 3.1, 0.9, 2.2];
        let (_, g) = bgnbd_log_likelihood(at, &c);
        for k in 0..4 {
            let h = 1e-6 * at[k];
            let (mut up, mut down) = (at, at);
            up[k] += h;
            down[k] -= h;
            let numeric = (bgnbd_log_likelihood(up, &c).0 - bgnbd_log_likelihood(down, &c).0) / (2.0 * h);
            assert!((numeric - g[k]).abs() <= 1e-4 * numeric.abs().max(1.0), "BG/NBD d/d{k}: {numeric} vs {}", g[k]);
        }
        let at = [2.5, 3.0, 12.0];
        let (_, g) = gamma_gamma_log_likelihood(at, &c);
        for k in 0..3 {
            let h = 1e-6 * at[k];
            let (mut up, mut down) = (at, at);
            up[k] += h;
            down[k] -= h;
            let numeric = (gamma_gamma_log_likelihood(up, &c).0 - gamma_gamma_log_likelihood(down, &c).0) / (2.0 * h);
            assert!((numeric - g[k]).abs() <= 1e-4 * numeric.abs().max(1.0), "Gamma-Gamma d/d{k}: {numeric} vs {}", g[k]);
        }
    }

    /// A fit is a maximum: every small step away lowers the likelihood (the
    /// BG/NBD fit is checked on the CDNOW sample, tests/it/clv.rs: this
    /// small book has no dropout to speak of, its maximum lies at a, b → ∞).
    #[test]
    fn fits_are_maxima() {
        let c = customers();
        let fit = fit_bgnbd(&c).expect("a fit");
        let start = bgnbd_log_likelihood([1.0; 4], &c).0;
        assert!(fit.log_likelihood > start, "{fit:?} from {start}");
        let gg = fit_gamma_gamma(&c).expect("a fit");
        assert!(gg.converged, "{gg:?}");
        let best = [gg.p, gg.q, gg.gamma];
        for k in 0..3 {
            for step in [0.99, 1.01] {
                let mut p = best;
                p[k] *= step;
                assert!(gamma_gamma_log_likelihood(p, &c).0 < gg.log_likelihood, "{k} {step}: {gg:?}");
            }
        }
    }

    #[test]
    fn degenerate_books_give_no_fit() {
        assert_eq!(fit_bgnbd(&[]), None);
        let once = Customer { x: 0.0, t_x: 0.0, t: 5.0, monetary: None };
        assert_eq!(fit_bgnbd(&[once, once]), None, "nobody repeats");
        let same = Customer { x: 2.0, t_x: 1.0, t: 5.0, monetary: Some(10.0) };
        assert_eq!(fit_gamma_gamma(&[same, same]), None, "all spend alike");
        let zero = Customer { monetary: Some(0.0), ..same };
        assert_eq!(fit_gamma_gamma(&[zero, zero, once]), None, "no positive spend");
    }

    #[test]
    fn predictions_follow_the_papers_formulas() {
        // Published CDNOW estimates (weeks).
        let m = BgNbd { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426, log_likelihood: 0.0, converged: true };
        let newcomer = Customer { x: 0.0, t_x: 0.0, t: 38.86, monetary: None };
        assert_eq!(m.p_alive(&newcomer), 1.0);
        // A customer with 2 repeats, the last at week 30.43, aged 38.86:
        // P(alive) from the closed form, by hand.
        let c = Customer { x: 2.0, t_x: 30.43, t: 38.86, monetary: Some(22.0) };
        let by_hand = 1.0 / (1.0 + (0.793 / (2.426 + 1.0)) * ((4.414f64 + 38.86) / (4.414 + 30.43)).powf(2.243));
        assert!((m.p_alive(&c) - by_hand).abs() < 1e-12);
        // Over a zero horizon nothing is expected; over a longer one more.
        assert!(m.expected_purchases(&c, 0.0).abs() < 1e-12);
        let (e39, e78) = (m.expected_purchases(&c, 39.0), m.expected_purchases(&c, 78.0));
        assert!(e39 > 0.0 && e78 > e39, "{e39} {e78}");
        // 2F1 at z = 0 is 1; 2F1(1, 1; 2; z) = -ln(1 - z) / z.
        assert_eq!(hypergeometric_2f1(1.3, 2.0, 3.0, 0.0), 1.0);
        // The paper's form of the expectation, where it does not overflow.
        let paper = |c: &Customer, h: f64| {
            let (r, alpha, a, b, x) = (m.r, m.alpha, m.a, m.b, c.x);
            let z = h / (alpha + c.t + h);
            let f = hypergeometric_2f1(r + x, b + x, a + b + x - 1.0, z);
            let decay = ((alpha + c.t) / (alpha + c.t + h)).powf(r + x);
            let d = if x > 0.0 { 1.0 + (a / (b + x - 1.0)) * ((alpha + c.t) / (alpha + c.t_x)).powf(r + x) } else { 1.0 };
            (a + b + x - 1.0) / (a - 1.0) * (1.0 - decay * f) / d
        };
        for (x, t_x, t) in [(0.0, 0.0, 5.0), (2.0, 30.43, 38.86), (7.0, 20.0, 70.0), (25.0, 60.0, 61.0)] {
            let c = Customer { x, t_x, t, monetary: None };
            for h in [1.0, 39.0, 52.14] {
                let (ours, theirs) = (m.expected_purchases(&c, h), paper(&c, h));
                assert!((ours - theirs).abs() <= 1e-9 * theirs.abs().max(1.0), "x {x} h {h}: {ours} vs {theirs}");
            }
        }
        // A frequent buyer (days as the unit) over a horizon longer than
        // its age: the paper's series overflows, the transformed one does not.
        let heavy = Customer { x: 1200.0, t_x: 1499.0, t: 1500.0, monetary: None };
        assert!(!paper(&heavy, 36500.0).is_finite(), "the paper's form overflows here");
        let e = m.expected_purchases(&heavy, 36500.0);
        assert!(e.is_finite() && e > 0.0, "{e}");
        let z: f64 = 0.4;
        assert!((hypergeometric_2f1(1.0, 1.0, 2.0, z) - (-(1.0 - z).ln() / z)).abs() < 1e-12);
        let gg = GammaGamma { p: 6.25, q: 3.74, gamma: 15.44, log_likelihood: 0.0, converged: true };
        assert!((gg.expected_avg_value(&newcomer).unwrap_or_default() - 6.25 * 15.44 / 2.74).abs() < 1e-9);
        let by_hand = 6.25 * (15.44 + 2.0 * 22.0) / (6.25 * 2.0 + 3.74 - 1.0);
        assert!((gg.expected_avg_value(&c).unwrap_or_default() - by_hand).abs() < 1e-9);
    }
}
