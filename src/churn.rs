//! Churn prediction math (METRICS.md §8 and §13): standardising features,
//! an L2-regularised logistic regression, the metrics that judge a risk
//! score (AUC, log loss, Brier), the factors behind one customer's risk, and
//! the health weights a fit on the component scores proposes.
//!
//! Everything here is pure arithmetic over plain slices: a feature matrix is
//! row-major (`x[i * n_features + j]` is feature `j` of observation `i`), a
//! label is `true` for "churned". This module knows nothing of Arrow,
//! DataFusion or the warehouse, and must not: the caller gathers the
//! observations, splits them by time and writes the tables. The logistic fit
//! minimises the mean penalised log-loss with argmin's L-BFGS and a
//! More-Thuente line search from the analytic gradient, single-threaded and
//! in a fixed summation order, so the same input gives bit-identical output.
//! Degenerate input (no observation, a single class, a non-finite value)
//! gives no fit, never a panic; a fit that stops before converging says so
//! (`converged = false`).

use std::cell::RefCell;

use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason, TerminationStatus};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;

/// The tolerance on the Euclidean norm of the gradient of the *mean*
/// penalised log-loss (over the intercept and the coefficients) at which a
/// fit has converged.
pub const GRADIENT_TOLERANCE: f64 = 1e-8;
/// The most L-BFGS iterations of one fit.
pub const MAX_ITERATIONS: u64 = 1000;
/// How many past steps L-BFGS remembers.
const LBFGS_MEMORY: usize = 10;
/// Probabilities are clipped to `[EPS, 1 − EPS]` in [`log_loss`], as
/// scikit-learn does, so that one confident mistake costs a large but
/// finite amount.
const LOG_LOSS_EPS: f64 = 1e-15;

/// Rows of a row-major matrix. `n_features = 0` gives `n` empty rows
/// (`chunks_exact` refuses a chunk size of 0). The caller has checked that
/// `x.len() == n * n_features`.
fn rows(x: &[f64], n_features: usize, n: usize) -> impl Iterator<Item = &[f64]> {
    (0..n).map(move |i| &x[i * n_features..(i + 1) * n_features])
}

/// `v` rounded to 9 decimal places, half away from zero (METRICS.md §10.2):
/// `(v · 1e9).round() / 1e9`, the same arithmetic as DataFusion's
/// `round(v, 9)`, so this agrees with the SQL models bit for bit.
///
/// "Half" is judged on the binary product `v · 1e9`, not on the decimal
/// text of `v`: 0.0000000025 is not exactly representable, and whether it
/// rounds up depends on which side of the half its product lands. What
/// matters is that two values differing by far less than 1e-9 (say 1e-12)
/// round to the same value unless a rounding boundary lies between them.
/// A value too large for the product to be finite (|v| > ~1.8e299) is
/// returned unchanged, as are NaN and the infinities.
pub fn round9(v: f64) -> f64 {
    let scaled = v * 1e9;
    if scaled.is_finite() {
        scaled.round() / 1e9
    } else {
        v
    }
}

/// Per-feature means and population standard deviations of a training set,
/// to put every feature on the same scale before the penalised fit (the
/// penalty would otherwise depend on each feature's unit).
///
/// A feature that is constant on the training set, or whose mean or
/// standard deviation is not finite (a NaN or an infinity among its values),
/// is stored with `sd = 0` and standardises to 0 for every row: it carries
/// no information the intercept does not.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardiser {
    /// The mean of each feature (0 where it is not finite).
    pub means: Vec<f64>,
    /// The population standard deviation of each feature; 0 marks a
    /// constant feature.
    pub sds: Vec<f64>,
}

impl Standardiser {
    /// Fit on the row-major matrix `x` of `n_features` columns. Trailing
    /// values that do not fill a row are ignored; no rows (or no features)
    /// give every feature mean 0 and sd 0.
    pub fn fit(x: &[f64], n_features: usize) -> Self {
        let n = if n_features == 0 { 0 } else { x.len() / n_features };
        let mut means = vec![0.0; n_features];
        let mut sds = vec![0.0; n_features];
        if n == 0 {
            return Standardiser { means, sds };
        }
        let count = n as f64;
        for j in 0..n_features {
            let column = || rows(x, n_features, n).map(move |row| row[j]);
            let (min, max) = column().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
            let mean = column().sum::<f64>() / count;
            // Two passes: the mean first, then squared deviations from it,
            // which does not lose the variance to cancellation as Σv² − n·m² can.
            let sd = (column().map(|v| (v - mean) * (v - mean)).sum::<f64>() / count).sqrt();
            let has_nan = column().any(f64::is_nan);
            if !has_nan && mean.is_finite() {
                means[j] = mean;
            }
            // `min == max` catches a constant column whose computed mean is
            // off by a rounding error (0.1 summed n times, over n, is not
            // 0.1): its sd would be a tiny non-zero number and its
            // standardised values noise of size 1.
            if !has_nan && min < max && sd.is_finite() && sd > 0.0 {
                sds[j] = sd;
            }
        }
        Standardiser { means, sds }
    }

    /// How many features this standardiser was fit on.
    pub fn n_features(&self) -> usize {
        self.means.len()
    }

    /// Standardise one row: `(v − mean) / sd`, or 0 for a constant feature.
    /// The row should hold [`n_features`](Self::n_features) values; the
    /// result has one value per feature present in both.
    pub fn apply(&self, row: &[f64]) -> Vec<f64> {
        row.iter()
            .zip(self.means.iter().zip(&self.sds))
            .map(|(v, (mean, sd))| if *sd == 0.0 { 0.0 } else { (v - mean) / sd })
            .collect()
    }

    /// Standardise a whole row-major matrix of `n_features()` columns (a
    /// trailing partial row is dropped).
    pub fn apply_rows(&self, x: &[f64]) -> Vec<f64> {
        let d = self.n_features();
        if d == 0 {
            return Vec::new();
        }
        x.chunks_exact(d).flat_map(|row| self.apply(row)).collect()
    }
}

/// A fitted logistic regression: P(churn | z) = σ(intercept + Σ βⱼ·zⱼ).
#[derive(Debug, Clone, PartialEq)]
pub struct Logistic {
    pub intercept: f64,
    /// One coefficient per feature, in the feature order of the fit.
    pub coefficients: Vec<f64>,
    /// Whether L-BFGS reached [`GRADIENT_TOLERANCE`].
    pub converged: bool,
    /// L-BFGS iterations taken.
    pub iterations: u64,
}

impl Logistic {
    /// The log-odds of churn for `row` (on the scale the model was fit on,
    /// usually standardised). NaN when the row holds a NaN.
    pub fn log_odds(&self, row: &[f64]) -> f64 {
        self.intercept + self.coefficients.iter().zip(row).map(|(b, v)| b * v).sum::<f64>()
    }

    /// The probability of churn for `row`, in [0, 1] (NaN when the row holds
    /// a NaN).
    pub fn probability(&self, row: &[f64]) -> f64 {
        sigmoid(self.log_odds(row))
    }
}

/// σ(z) = 1 / (1 + e^−z), from e^−|z| so that neither branch overflows.
fn sigmoid(z: f64) -> f64 {
    let e = (-z.abs()).exp();
    if z >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

/// One evaluation of the objective: where, the cost, the gradient.
struct Evaluation {
    theta: Vec<f64>,
    cost: f64,
    gradient: Vec<f64>,
}

/// The mean penalised log-loss over `θ = (intercept, β₁ … β_d)`, for argmin:
///
/// `(1/n) · [Σᵢ ℓ(yᵢ, θ₀ + β·xᵢ) + (l2/2)·Σⱼ βⱼ²]`
///
/// which is scikit-learn's `LogisticRegression(C = 1/l2)` objective divided
/// by n (so the scale of the first step and the meaning of the tolerance do
/// not grow with the data). The intercept is not penalised.
struct Objective<'a> {
    x: &'a [f64],
    y: &'a [bool],
    n_features: usize,
    l2: f64,
    /// argmin asks for the cost and then the gradient at the same point;
    /// one pass over the data computes both, and this keeps the last so
    /// the second request is free.
    last: RefCell<Option<Evaluation>>,
}

impl Objective<'_> {
    /// The cost and gradient at `theta`, computed in one pass over the data
    /// in row order (so the result does not depend on anything but the
    /// input). The cost is summed with Neumaier's compensation: near the
    /// optimum the line search compares costs that differ by ~1e-14, and a
    /// plain sum over half a million rows carries errors of that size.
    fn compute(&self, theta: &[f64]) -> (f64, Vec<f64>) {
        let d = self.n_features;
        let n = self.y.len();
        let mut gradient = vec![0.0; d + 1];
        let (intercept, beta) = match theta.split_first() {
            Some((b0, beta)) if beta.len() == d => (*b0, beta),
            _ => return (f64::NAN, gradient),
        };
        let (mut loss, mut compensation) = (0.0f64, 0.0f64);
        let (g0, g) = gradient.split_at_mut(1);
        for (row, &churned) in rows(self.x, d, n).zip(self.y) {
            let z = intercept + beta.iter().zip(row).map(|(b, v)| b * v).sum::<f64>();
            // ℓ = softplus(−z) for a churner, softplus(z) otherwise, with
            // softplus(t) = max(t, 0) + ln(1 + e^−|t|): no overflow, no
            // loss of the small tail to 1 + tiny.
            let e = (-z.abs()).exp();
            let term = if churned { (-z).max(0.0) } else { z.max(0.0) } + e.ln_1p();
            let sum = loss + term;
            compensation += if loss.abs() >= term.abs() {
                (loss - sum) + term
            } else {
                (term - sum) + loss
            };
            loss = sum;
            let p = if z >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) };
            let residual = p - if churned { 1.0 } else { 0.0 };
            g0[0] += residual;
            for (gj, v) in g.iter_mut().zip(row) {
                *gj += residual * v;
            }
        }
        let count = n.max(1) as f64;
        let penalty = 0.5 * self.l2 * beta.iter().map(|b| b * b).sum::<f64>();
        g0[0] /= count;
        for (gj, b) in g.iter_mut().zip(beta) {
            *gj = (*gj + self.l2 * b) / count;
        }
        ((loss + compensation + penalty) / count, gradient)
    }

    fn evaluate(&self, theta: &[f64]) -> (f64, Vec<f64>) {
        // Compare bit patterns: the same point, not merely an equal one
        // (0.0 and −0.0 give the same cost, but this keeps the rule simple).
        let same = |e: &Evaluation| e.theta.len() == theta.len() && e.theta.iter().zip(theta).all(|(a, b)| a.to_bits() == b.to_bits());
        if let Ok(last) = self.last.try_borrow() {
            if let Some(e) = last.as_ref().filter(|e| same(e)) {
                return (e.cost, e.gradient.clone());
            }
        }
        let (cost, gradient) = self.compute(theta);
        if let Ok(mut last) = self.last.try_borrow_mut() {
            *last = Some(Evaluation {
                theta: theta.to_vec(),
                cost,
                gradient: gradient.clone(),
            });
        }
        (cost, gradient)
    }
}

impl CostFunction for Objective<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, theta: &Self::Param) -> Result<f64, argmin::core::Error> {
        let (cost, _) = self.evaluate(theta);
        // A trial step so long that the loss overflows: a cost the line
        // search backs off from.
        Ok(if cost.is_finite() { cost } else { 1e30 })
    }
}

impl Gradient for Objective<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, theta: &Self::Param) -> Result<Vec<f64>, argmin::core::Error> {
        let (_, g) = self.evaluate(theta);
        Ok(g.iter().map(|v| if v.is_finite() { *v } else { 0.0 }).collect())
    }
}

/// Fit an L2-regularised logistic regression of `y` (true = churned) on the
/// row-major matrix `x` of `n_features` columns (standardised: see
/// [`Standardiser`]), minimising the mean of
/// `Σ log-loss + (l2/2)·Σ βⱼ²` (intercept not penalised) from all zeros
/// with L-BFGS (memory 10) and a More-Thuente line search, to a gradient
/// norm below [`GRADIENT_TOLERANCE`] or [`MAX_ITERATIONS`] iterations.
///
/// `None` when there is nothing to fit or no maximum: no observation,
/// `x.len() != y.len() · n_features`, a single class, a non-finite value in
/// `x`, a negative or non-finite `l2`, or a non-finite result. With
/// `l2 = 0` and separable classes the likelihood has no maximum either: the
/// coefficients grow until the gradient is small or the iterations run out.
pub fn fit_logistic(x: &[f64], n_features: usize, y: &[bool], l2: f64) -> Option<Logistic> {
    let n = y.len();
    if n == 0 || x.len() != n.checked_mul(n_features)? || !l2.is_finite() || l2 < 0.0 || x.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let churned = y.iter().filter(|c| **c).count();
    if churned == 0 || churned == n {
        return None;
    }
    let problem = Objective {
        x,
        y,
        n_features,
        l2,
        last: RefCell::new(None),
    };
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), LBFGS_MEMORY)
        .with_tolerance_grad(GRADIENT_TOLERANCE)
        .ok()?
        // Never stop on a small change of cost: only the gradient says
        // the fit has converged.
        .with_tolerance_cost(0.0)
        .ok()?;
    let result = Executor::new(problem, solver)
        .configure(|state| state.param(vec![0.0; n_features + 1]).max_iters(MAX_ITERATIONS))
        .run()
        .ok()?;
    let state = result.state();
    let converged = matches!(
        state.get_termination_status(),
        TerminationStatus::Terminated(TerminationReason::SolverConverged)
    );
    let iterations = state.get_iter();
    let (intercept, coefficients) = state.get_best_param()?.split_first()?;
    if !intercept.is_finite() || coefficients.iter().any(|b| !b.is_finite()) {
        return None;
    }
    Some(Logistic {
        intercept: *intercept,
        coefficients: coefficients.to_vec(),
        converged,
        iterations,
    })
}

/// The AUC of a risk score: the probability that a randomly chosen churned
/// observation has a **higher** score than a randomly chosen retained one,
/// ties counting one half, after rounding every score with [`round9`]
/// (METRICS.md §10.2).
///
/// §8's AUC of the health score asks for a churner's **lower** health
/// score; pass `100 − health_score` as the risk score for it (or the
/// negated score: only the order matters).
///
/// Computed in O(n log n) by sorting and counting, per group of tied
/// scores, the retained observations below it, in exact integers until the
/// final division. `None` when either class is empty, the lengths differ,
/// or a score is NaN.
pub fn auc(scores: &[f64], churned: &[bool]) -> Option<f64> {
    if scores.len() != churned.len() || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let positives = churned.iter().filter(|c| **c).count() as u128;
    let negatives = churned.len() as u128 - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    // `+ 0.0` makes −0.0 the same score as 0.0 (total_cmp orders them apart).
    let mut pairs: Vec<(f64, bool)> = scores.iter().map(|s| round9(*s) + 0.0).zip(churned.iter().copied()).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Twice the count of (churned, retained) pairs won, ties counting one:
    // an integer, so the sum is exact in any order.
    let (mut doubled_wins, mut retained_below) = (0u128, 0u128);
    let mut i = 0;
    while i < pairs.len() {
        let score = pairs[i].0;
        let group = pairs[i..].iter().take_while(|p| p.0 == score).count();
        let churned_here = pairs[i..i + group].iter().filter(|p| p.1).count() as u128;
        let retained_here = group as u128 - churned_here;
        doubled_wins += churned_here * (2 * retained_below + retained_here);
        retained_below += retained_here;
        i += group;
    }
    Some(doubled_wins as f64 / (2 * positives * negatives) as f64)
}

/// The mean log-loss of probabilities `p` of churn against `y`, with `p`
/// clipped to `[1e-15, 1 − 1e-15]`. `None` when empty, the lengths differ,
/// or a probability is NaN.
pub fn log_loss(p: &[f64], y: &[bool]) -> Option<f64> {
    if p.is_empty() || p.len() != y.len() || p.iter().any(|v| v.is_nan()) {
        return None;
    }
    let total: f64 = p
        .iter()
        .zip(y)
        .map(|(p, churned)| {
            let p = p.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
            -if *churned { p.ln() } else { (1.0 - p).ln() }
        })
        .sum();
    Some(total / p.len() as f64)
}

/// The Brier score: the mean squared difference between the probabilities
/// `p` and the outcomes (1 = churned). `None` when empty, the lengths
/// differ, or a probability is NaN.
pub fn brier(p: &[f64], y: &[bool]) -> Option<f64> {
    if p.is_empty() || p.len() != y.len() || p.iter().any(|v| v.is_nan()) {
        return None;
    }
    let total: f64 = p
        .iter()
        .zip(y)
        .map(|(p, churned)| {
            let miss = p - if *churned { 1.0 } else { 0.0 };
            miss * miss
        })
        .sum();
    Some(total / p.len() as f64)
}

/// The `k` features that raise this customer's log-odds most against the
/// average customer of the training set (who is z = 0 after
/// standardisation): contribution `βⱼ·zⱼ`, largest first, ties broken by
/// name ascending. Contributions are compared after [`round9`], so that
/// ties do not hinge on the last bits. Always `k` names, fewer only when
/// there are fewer features (the shortest of the coefficients, the row and
/// the names); a NaN contribution ranks last.
pub fn top_factors<S: AsRef<str>>(model: &Logistic, row_standardised: &[f64], names: &[S], k: usize) -> Vec<String> {
    let mut contributions: Vec<(f64, &str)> = model
        .coefficients
        .iter()
        .zip(row_standardised)
        .zip(names)
        .map(|((b, z), name)| {
            // `+ 0.0` makes −0.0 the same contribution as 0.0.
            let c = round9(b * z) + 0.0;
            (if c.is_nan() { f64::NEG_INFINITY } else { c }, name.as_ref())
        })
        .collect();
    contributions.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    contributions.into_iter().take(k).map(|(_, name)| name.to_string()).collect()
}

/// Health weights proposed by a logistic fit on the seven component scores
/// (standardised by `standardiser`, in the same order): each coefficient is
/// taken back to the raw 0–100 scale, `β_rawⱼ = βⱼ / sdⱼ` (0 for a constant
/// component); a higher component score should lower the risk, so the
/// weight is `max(0, −β_rawⱼ)`, and the weights are normalised to sum to 1
/// (up to rounding). A component whose higher score raises risk gets 0.
///
/// `None` when every weight would be 0 (no component lowers risk: the
/// caller keeps the current weights), or the model and the standardiser
/// disagree on the number of components.
pub fn propose_weights(model_on_components: &Logistic, standardiser: &Standardiser) -> Option<Vec<f64>> {
    if model_on_components.coefficients.len() != standardiser.sds.len() {
        return None;
    }
    let raw: Vec<f64> = model_on_components
        .coefficients
        .iter()
        .zip(&standardiser.sds)
        .map(|(b, sd)| {
            let w = if *sd > 0.0 && sd.is_finite() { -b / sd } else { 0.0 };
            // `w > 0` is false for NaN: a NaN coefficient proposes nothing.
            if w > 0.0 && w.is_finite() {
                w
            } else {
                0.0
            }
        })
        .collect();
    let total: f64 = raw.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return None;
    }
    Some(raw.iter().map(|w| w / total).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny deterministic generator (Knuth's MMIX LCG), so the simulated
    /// data does not depend on a crate's version.
    struct Lcg(u64);

    impl Lcg {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            self.0
        }

        /// Uniform in (0, 1).
        fn uniform(&mut self) -> f64 {
            ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }

        /// Standard normal (Box-Muller, one of the pair).
        fn normal(&mut self) -> f64 {
            let (u, v) = (self.uniform(), self.uniform());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }
    }

    /// 2,000 rows of three features (on different scales), labels drawn
    /// from a known logistic model.
    fn simulated() -> (Vec<f64>, Vec<bool>, [f64; 4]) {
        let truth = [-0.5, 1.2, -0.8, 0.3]; // intercept, then β on standardised features
        let scales = [1.0, 10.0, 0.1];
        let mut rng = Lcg(42);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..2000 {
            let z: Vec<f64> = (0..3).map(|_| rng.normal()).collect();
            let eta = truth[0] + (0..3).map(|j| truth[j + 1] * z[j]).sum::<f64>();
            y.push(rng.uniform() < sigmoid(eta));
            x.extend((0..3).map(|j| 5.0 + scales[j] * z[j]));
        }
        (x, y, truth)
    }

    /// The gradient of the mean objective, written out plainly (no shared
    /// code with the fit).
    fn gradient_by_hand(x: &[f64], d: usize, y: &[bool], l2: f64, m: &Logistic) -> Vec<f64> {
        let n = y.len();
        let mut g = vec![0.0; d + 1];
        for i in 0..n {
            let mut z = m.intercept;
            for j in 0..d {
                z += m.coefficients[j] * x[i * d + j];
            }
            let r = 1.0 / (1.0 + (-z).exp()) - if y[i] { 1.0 } else { 0.0 };
            g[0] += r;
            for j in 0..d {
                g[j + 1] += r * x[i * d + j];
            }
        }
        for j in 0..d {
            g[j + 1] += l2 * m.coefficients[j];
        }
        g.iter().map(|v| v / n as f64).collect()
    }

    #[test]
    fn fit_recovers_simulated_coefficients() {
        let (x, y, truth) = simulated();
        let s = Standardiser::fit(&x, 3);
        let z = s.apply_rows(&x);
        let l2 = 1e-3;
        let m = fit_logistic(&z, 3, &y, l2).expect("a fit");
        assert!(m.converged, "{m:?}");
        assert!((m.intercept - truth[0]).abs() < 0.25, "{m:?}");
        for j in 0..3 {
            let b = m.coefficients[j];
            assert_eq!(b.signum(), truth[j + 1].signum(), "{m:?}");
            assert!((b - truth[j + 1]).abs() < 0.25, "β{j}: {b} vs {}", truth[j + 1]);
        }
        let g = gradient_by_hand(&z, 3, &y, l2, &m);
        let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(norm < GRADIENT_TOLERANCE, "gradient norm {norm:e} at {m:?}");
        // Probabilities agree with the log-odds, and the fit beats the
        // intercept-only model on its own data.
        let p: Vec<f64> = z.chunks(3).map(|row| m.probability(row)).collect();
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
        let base = y.iter().filter(|c| **c).count() as f64 / y.len() as f64;
        let loss = log_loss(&p, &y).unwrap_or(f64::NAN);
        assert!(loss < log_loss(&vec![base; y.len()], &y).unwrap_or(0.0), "{loss}");
        assert!(auc(&p, &y).unwrap_or(0.0) > 0.75);
    }

    /// Two groups, x = 0 with a churners of n0 and x = 1 with b of n1: with
    /// no penalty the MLE matches each group's rate exactly, so
    /// intercept = logit(a/n0) and slope = logit(b/n1) − logit(a/n0).
    #[test]
    fn fit_matches_closed_form_for_two_groups() {
        let logit = |p: f64| (p / (1.0 - p)).ln();
        let (a, n0, b, n1) = (30, 100, 70, 120);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n0 {
            x.push(0.0);
            y.push(i < a);
        }
        for i in 0..n1 {
            x.push(1.0);
            y.push(i < b);
        }
        let m = fit_logistic(&x, 1, &y, 0.0).expect("a fit");
        assert!(m.converged, "{m:?}");
        let intercept = logit(a as f64 / n0 as f64);
        let slope = logit(b as f64 / n1 as f64) - intercept;
        assert!((m.intercept - intercept).abs() < 1e-6, "{m:?} vs {intercept}");
        assert!((m.coefficients[0] - slope).abs() < 1e-6, "{m:?} vs {slope}");

        // Standardised, then undone: β_raw = β/sd, intercept_raw = β0 − β·mean/sd.
        let s = Standardiser::fit(&x, 1);
        let m = fit_logistic(&s.apply_rows(&x), 1, &y, 0.0).expect("a fit");
        let raw_slope = m.coefficients[0] / s.sds[0];
        let raw_intercept = m.intercept - raw_slope * s.means[0];
        assert!((raw_intercept - intercept).abs() < 1e-6, "{m:?}");
        assert!((raw_slope - slope).abs() < 1e-6, "{m:?}");
    }

    #[test]
    fn standardiser_scales_and_drops_constant_features() {
        // Columns: 1, 2, 3, 4 | 0.1 four times | 5 and a NaN.
        let x = [1.0, 0.1, 5.0, 2.0, 0.1, 5.0, 3.0, 0.1, f64::NAN, 4.0, 0.1, 5.0];
        let s = Standardiser::fit(&x, 3);
        assert_eq!(s.means[0], 2.5);
        assert!((s.sds[0] - 1.25f64.sqrt()).abs() < 1e-15);
        assert_eq!(s.sds[1], 0.0, "constant");
        assert_eq!((s.means[2], s.sds[2]), (0.0, 0.0), "not finite");
        let z = s.apply(&[4.0, 7.0, 9.0]);
        assert!((z[0] - 1.5 / 1.25f64.sqrt()).abs() < 1e-15);
        assert_eq!(&z[1..], &[0.0, 0.0]);
        assert_eq!(s.apply_rows(&x).len(), 12);
        let empty = Standardiser::fit(&[], 2);
        assert_eq!(empty.sds, vec![0.0, 0.0]);
        assert!(Standardiser::fit(&[1.0], 0).apply_rows(&[1.0]).is_empty());
    }

    /// AUC by its definition, over every pair.
    fn auc_brute_force(scores: &[f64], churned: &[bool]) -> f64 {
        let (mut wins, mut pairs) = (0.0, 0.0);
        for (s1, c1) in scores.iter().zip(churned) {
            for (s0, c0) in scores.iter().zip(churned) {
                if *c1 && !*c0 {
                    let (s1, s0) = (round9(*s1), round9(*s0));
                    wins += if s1 > s0 {
                        1.0
                    } else if s1 == s0 {
                        0.5
                    } else {
                        0.0
                    };
                    pairs += 1.0;
                }
            }
        }
        wins / pairs
    }

    #[test]
    fn auc_agrees_with_brute_force_and_rounds() {
        let mut rng = Lcg(7);
        for round in 0..20 {
            let n = 50 + round * 13;
            // Few distinct scores, so many ties; churn more likely at high ones.
            let scores: Vec<f64> = (0..n).map(|_| (rng.next_u64() % 12) as f64 * 0.25 - 1.0).collect();
            let churned: Vec<bool> = scores.iter().map(|s| rng.uniform() < 0.3 + 0.1 * s).collect();
            let fast = auc(&scores, &churned).expect("both classes");
            assert!((fast - auc_brute_force(&scores, &churned)).abs() < 1e-12, "round {round}");
        }
        // Values 1e-12 apart are one score; 1e-8 apart are not.
        assert_eq!(auc(&[0.5 + 1e-12, 0.5], &[true, false]), Some(0.5));
        assert_eq!(auc(&[0.5 + 1e-8, 0.5], &[true, false]), Some(1.0));
        assert_eq!(auc(&[0.5 - 1e-8, 0.5], &[true, false]), Some(0.0));
        // -0.0 and 0.0 are one score.
        assert_eq!(auc(&[-0.0, 0.0, 1.0], &[true, false, false]), Some(0.25));
        // §8: a churner's lower health score is a higher risk score.
        let health = [20.0, 90.0, 55.0, 55.0];
        let risk: Vec<f64> = health.iter().map(|h| 100.0 - h).collect();
        assert_eq!(auc(&risk, &[true, false, true, false]), Some(0.875));
        assert_eq!(round9(1.0000000005), 1.000000001);
        assert_eq!(round9(-1.0000000005), -1.000000001);
        assert_eq!(round9(2.5e-9), 3e-9, "half away from zero");
        assert_eq!(round9(0.1234567894), 0.123456789);
        assert_eq!(round9(f64::MAX), f64::MAX);
    }

    #[test]
    fn degenerate_input_gives_none() {
        assert_eq!(fit_logistic(&[], 2, &[], 1.0), None);
        assert_eq!(fit_logistic(&[1.0, 2.0], 1, &[true, true], 1.0), None, "a single class");
        assert_eq!(fit_logistic(&[1.0, 2.0], 1, &[false, false], 1.0), None, "a single class");
        assert_eq!(fit_logistic(&[1.0, f64::NAN], 1, &[true, false], 1.0), None, "NaN");
        assert_eq!(fit_logistic(&[1.0, 2.0, 3.0], 1, &[true, false], 1.0), None, "ragged");
        assert_eq!(fit_logistic(&[1.0, 2.0], 1, &[true, false], f64::NAN), None, "NaN penalty");
        assert_eq!(fit_logistic(&[1.0, 2.0], 1, &[true, false], -1.0), None, "negative penalty");
        assert_eq!(fit_logistic(&[1.0, 2.0], usize::MAX, &[true, false], 1.0), None, "overflow");
        // No features: the intercept alone, at the base rate.
        let m = fit_logistic(&[], 0, &[true, false, false, false], 0.0).expect("a fit");
        assert!((m.probability(&[]) - 0.25).abs() < 1e-8, "{m:?}");
        assert_eq!(auc(&[], &[]), None);
        assert_eq!(auc(&[1.0, 2.0], &[true, true]), None);
        assert_eq!(auc(&[1.0, 2.0], &[false, false]), None);
        assert_eq!(auc(&[1.0, f64::NAN], &[true, false]), None);
        assert_eq!(auc(&[1.0], &[true, false]), None);
        assert_eq!(log_loss(&[], &[]), None);
        assert_eq!(brier(&[], &[]), None);
        assert_eq!(log_loss(&[f64::NAN], &[true]), None);
        assert_eq!(brier(&[0.5], &[true, false]), None);
        assert!(m.probability(&[f64::NAN]).is_finite(), "extra values are ignored");
        let one = Logistic {
            intercept: 0.0,
            coefficients: vec![1.0],
            converged: true,
            iterations: 0,
        };
        assert!(one.probability(&[f64::NAN]).is_nan());
        assert_eq!(one.probability(&[1e6]), 1.0);
        assert_eq!(one.probability(&[-1e6]), 0.0);
        assert_eq!(top_factors(&one, &[f64::NAN], &["a"], 2), vec!["a".to_string()]);
    }

    #[test]
    fn fits_are_bit_identical() {
        let (x, y, _) = simulated();
        let z = Standardiser::fit(&x, 3).apply_rows(&x);
        let (a, b) = (fit_logistic(&z, 3, &y, 1.0), fit_logistic(&z, 3, &y, 1.0));
        let bits = |m: &Option<Logistic>| {
            m.as_ref().map(|m| {
                (
                    m.intercept.to_bits(),
                    m.coefficients.iter().map(|c| c.to_bits()).collect::<Vec<_>>(),
                )
            })
        };
        assert!(a.is_some());
        assert_eq!(bits(&a), bits(&b));
    }

    #[test]
    fn proposed_weights_are_a_distribution() {
        let s = Standardiser {
            means: vec![50.0; 4],
            sds: vec![10.0, 20.0, 5.0, 0.0],
        };
        // Component 2 raises risk as it rises; component 3 is constant.
        let m = Logistic {
            intercept: 0.1,
            coefficients: vec![-1.0, -1.0, 0.5, -3.0],
            converged: true,
            iterations: 1,
        };
        let w = propose_weights(&m, &s).expect("weights");
        assert!(w.iter().all(|v| *v >= 0.0), "{w:?}");
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-15, "{w:?}");
        // β_raw = -0.1, -0.05: weights 2/3 and 1/3.
        assert!((w[0] - 2.0 / 3.0).abs() < 1e-15 && (w[1] - 1.0 / 3.0).abs() < 1e-15, "{w:?}");
        assert_eq!(&w[2..], &[0.0, 0.0]);
        let harmful = Logistic {
            coefficients: vec![1.0, 0.0, 0.5, -3.0],
            ..m.clone()
        };
        assert_eq!(propose_weights(&harmful, &s), None, "nothing lowers risk");
        let short = Logistic {
            coefficients: vec![-1.0],
            ..m
        };
        assert_eq!(propose_weights(&short, &s), None);
    }

    #[test]
    fn log_loss_and_brier_by_hand() {
        let p = [0.9, 0.2, 0.6];
        let y = [true, false, false];
        let by_hand = -(0.9f64.ln() + 0.8f64.ln() + 0.4f64.ln()) / 3.0;
        assert!((log_loss(&p, &y).unwrap_or(0.0) - by_hand).abs() < 1e-15);
        let by_hand = (0.01 + 0.04 + 0.36) / 3.0;
        assert!((brier(&p, &y).unwrap_or(0.0) - by_hand).abs() < 1e-15);
        // A certain mistake is clipped, not infinite: −ln(1e-15).
        let clipped = log_loss(&[0.0], &[true]).unwrap_or(0.0);
        assert!((clipped - 1e15f64.ln()).abs() < 1e-9, "{clipped}");
    }

    #[test]
    fn top_factors_rank_contributions() {
        let m = Logistic {
            intercept: 0.0,
            coefficients: vec![1.0, -2.0, 0.5, 1.0],
            converged: true,
            iterations: 1,
        };
        let names = ["usage_score", "billing_score", "trend_score", "email_score"];
        // Contributions: 1, 2, 1, -1: billing first, then usage and trend
        // tied, broken by name.
        let row = [1.0, -1.0, 2.0, -1.0];
        assert_eq!(top_factors(&m, &row, &names, 2), vec!["billing_score", "trend_score"]);
        assert_eq!(top_factors(&m, &row, &names, 9).len(), 4);
        let owned: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            top_factors(&m, &[0.0; 4], &owned, 2),
            vec!["billing_score", "email_score"],
            "all zero: by name"
        );
    }
}
