//! The churn kinds (METRICS.md §13), over one row per customer and snapshot
//! date: `customer_id`, `snapshot_date`, `churned_90d` (NULL while the label
//! is not known yet), and the features, which are every other numeric
//! column (`mrr` and `segment` are carried, not learned from). The model is
//! an L2-regularised logistic regression on standardised features
//! ([`crate::churn`]).
//!
//! - `churn_model_eval`: trained on the observations whose label was known
//!   90 days before D (d + 90 ≤ D − 90), evaluated on the later ones, beside
//!   the `health_score` column scored the same way.
//! - `churn_scores`: refit on every labelled observation; the probability
//!   and the two features that raise it most for each row dated D.
//! - `health_weights`: a fit on the seven component scores alone, turned
//!   into non-negative weights summing to 1, and the test AUC of the health
//!   score under the configured and the proposed weights.
//!
//! Fewer than [`MIN_TRAINING`] observations to learn from, or a single
//! class, fit no model: the tables say so (`status`, NULL figures) and the
//! run goes on.

use super::{require, schema, FitError, Input, Kind, Settings, Wanted};
use crate::churn::{self as math, Logistic, Standardiser};
use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use std::sync::Arc;

/// The health components, in the order of their config weights.
pub const COMPONENTS: [&str; 7] = ["usage", "breadth", "trend", "sentiment", "support", "billing", "email"];
/// The `params` columns of the components' weights.
pub const WEIGHT_PARAMS: [&str; 7] = [
    "weight_usage",
    "weight_breadth",
    "weight_trend",
    "weight_sentiment",
    "weight_support",
    "weight_billing",
    "weight_email",
];
/// The fewest training observations a model is fit on.
pub const MIN_TRAINING: usize = 200;
/// Days after a snapshot at which its label is known (`churned_90d`).
const HORIZON_DAYS: i32 = 90;
/// The name of the learned model's row in `churn_model_eval`.
pub const LOGISTIC: &str = "logistic_regression";

/// Columns that are not features.
const NOT_FEATURES: [&str; 5] = ["customer_id", "snapshot_date", "churned_90d", "segment", "mrr"];

/// The observations of a churn kind's input.
struct Observations {
    customer_id: Vec<Option<String>>,
    snapshot_date: Vec<Option<i32>>,
    churned: Vec<Option<bool>>,
    /// Feature names, in input order.
    features: Vec<String>,
    /// Row-major features; NULL is 0 (the SQL adds indicators where it matters).
    x: Vec<f64>,
    /// Input row of each observation (observations are in canonical order).
    order: Vec<usize>,
}

fn feature_names(kind: &'static str, input: &Schema) -> Result<Vec<String>, FitError> {
    let mut names = Vec::new();
    for field in input.fields() {
        if NOT_FEATURES.contains(&field.name().as_str()) {
            continue;
        }
        require(kind, input, field.name(), Wanted::Number)?;
        names.push(field.name().clone());
    }
    Ok(names)
}

fn require_keys(kind: &'static str, input: &Schema) -> Result<(), FitError> {
    require(kind, input, "customer_id", Wanted::Text)?;
    require(kind, input, "snapshot_date", Wanted::Date)?;
    require(kind, input, "churned_90d", Wanted::Boolean)
}

impl Observations {
    fn read(kind: &'static str, input: &Input) -> Result<Observations, FitError> {
        let schema = input.schema();
        require_keys(kind, &schema)?;
        let features = feature_names(kind, &schema)?;
        let columns: Vec<Vec<Option<f64>>> = features.iter().map(|f| input.numbers(f)).collect::<Result<_, _>>()?;
        let (customer_id, snapshot_date, churned) = (input.texts("customer_id")?, input.dates("snapshot_date")?, input.booleans("churned_90d")?);
        let order = canonical_order(&snapshot_date, &customer_id);
        let mut x = Vec::with_capacity(input.rows() * features.len());
        for &i in &order {
            x.extend(columns.iter().map(|c| c[i].filter(|v| v.is_finite()).unwrap_or(0.0)));
        }
        Ok(Observations {
            customer_id: order.iter().map(|&i| customer_id[i].clone()).collect(),
            snapshot_date: order.iter().map(|&i| snapshot_date[i]).collect(),
            churned: order.iter().map(|&i| churned[i]).collect(),
            features,
            x,
            order,
        })
    }

    /// An input column in the observations' order.
    fn reorder<T: Clone>(&self, column: &[T]) -> Vec<T> {
        self.order.iter().map(|&i| column[i].clone()).collect()
    }

    fn row(&self, i: usize) -> &[f64] {
        let n = self.features.len();
        &self.x[i * n..(i + 1) * n]
    }

    /// The rows with a known label, split into training (label known 90
    /// days before D) and test rows.
    fn split(&self, as_of: i32) -> (Vec<usize>, Vec<usize>) {
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for i in 0..self.churned.len() {
            let (Some(d), Some(_)) = (self.snapshot_date[i], self.churned[i]) else { continue };
            match split_of(d, as_of) {
                Some(Split::Train) => train.push(i),
                Some(Split::Test) => test.push(i),
                None => {}
            }
        }
        (train, test)
    }

    fn labels(&self, rows: &[usize]) -> Vec<bool> {
        rows.iter().map(|&i| self.churned[i].unwrap_or(false)).collect()
    }
}

/// Which side of the time split an observation dated `d` falls on.
enum Split {
    /// Its label was known 90 days before D: d + 90 ≤ D − 90.
    Train,
    /// Labelled later: D − 90 < d + 90 ≤ D.
    Test,
}

/// The split of an observation dated `d` as of `as_of`; `None` while its
/// label is not known (d + 90 > D).
fn split_of(d: i32, as_of: i32) -> Option<Split> {
    if d + HORIZON_DAYS > as_of {
        None
    } else if d + HORIZON_DAYS <= as_of - HORIZON_DAYS {
        Some(Split::Train)
    } else {
        Some(Split::Test)
    }
}

/// The rows in the order a fit reads them: by snapshot date, then
/// customer, then input order. The fit's sums then do not depend on the
/// order the SQL returned the rows in, so the same observations give
/// bit-identical tables however the run computed them.
fn canonical_order(dates: &[Option<i32>], customers: &[Option<String>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..dates.len()).collect();
    order.sort_by(|&l, &r| (dates[l], &customers[l]).cmp(&(dates[r], &customers[r])));
    order
}

/// Why no model was fit, if none was.
fn unfit(labels: &[bool]) -> Option<&'static str> {
    if labels.len() < MIN_TRAINING {
        Some("too_few_observations")
    } else if labels.iter().all(|l| *l) || labels.iter().all(|l| !*l) {
        Some("single_class")
    } else {
        None
    }
}

/// A standardiser and logistic model fit on `rows` of `x` (row-major,
/// `n` features), or why there is none.
fn train(x: &[f64], n: usize, rows: &[usize], labels: &[bool], l2: f64) -> Result<(Standardiser, Logistic), &'static str> {
    if let Some(why) = unfit(labels) {
        return Err(why);
    }
    let mut raw = Vec::with_capacity(rows.len() * n);
    for &i in rows {
        raw.extend_from_slice(&x[i * n..(i + 1) * n]);
    }
    let standardiser = Standardiser::fit(&raw, n);
    let z = standardiser.apply_rows(&raw);
    let model = math::fit_logistic(&z, n, labels, l2).ok_or("no_fit")?;
    Ok((standardiser, model))
}

fn float_column(values: Vec<Option<f64>>) -> ArrayRef {
    Arc::new(Float64Array::from(values.into_iter().map(|v| v.filter(|v| v.is_finite())).collect::<Vec<_>>()))
}

fn arrow_err(kind: &'static str) -> impl Fn(arrow::error::ArrowError) -> FitError {
    move |source| FitError::Arrow { kind, source }
}

/// `churn_model_eval`.
pub struct ChurnModelEval;

const EVAL: &str = "churn_model_eval";

fn eval_output() -> SchemaRef {
    schema(&[
        ("model", DataType::Utf8, false),
        ("train_observations", DataType::Int64, false),
        ("test_observations", DataType::Int64, false),
        ("test_churn_rate", DataType::Float64, true),
        ("auc", DataType::Float64, true),
        ("log_loss", DataType::Float64, true),
        ("brier", DataType::Float64, true),
        ("trained_through", DataType::Date32, true),
        ("status", DataType::Utf8, false),
    ])
}

impl Kind for ChurnModelEval {
    fn name(&self) -> &'static str {
        EVAL
    }

    fn output_schema(&self, input: &Schema) -> Result<SchemaRef, FitError> {
        require_keys(EVAL, input)?;
        require(EVAL, input, "health_score", Wanted::Number)?;
        feature_names(EVAL, input)?;
        Ok(eval_output())
    }

    fn fit(&self, input: &Input, settings: &Settings) -> Result<RecordBatch, FitError> {
        let obs = Observations::read(EVAL, input)?;
        let health = obs.reorder(&input.numbers("health_score")?);
        let (train_rows, test_rows) = obs.split(settings.as_of);
        let (train_labels, test_labels) = (obs.labels(&train_rows), obs.labels(&test_rows));
        let churn_rate = (!test_labels.is_empty()).then(|| test_labels.iter().filter(|l| **l).count() as f64 / test_labels.len() as f64);
        let trained_through = train_rows.iter().filter_map(|&i| obs.snapshot_date[i]).max();
        let n = obs.features.len();

        let (mut auc, mut log_loss, mut brier) = (None, None, None);
        let status = match train(&obs.x, n, &train_rows, &train_labels, settings.churn_l2) {
            Err(why) => {
                tracing::warn!(model = %settings.model, train_observations = train_rows.len(), reason = why, "no churn model fit");
                why
            }
            Ok((standardiser, model)) => {
                let p: Vec<f64> = test_rows.iter().map(|&i| model.probability(&standardiser.apply(obs.row(i)))).collect();
                auc = math::auc(&p, &test_labels);
                log_loss = math::log_loss(&p, &test_labels);
                brier = math::brier(&p, &test_labels);
                if model.converged {
                    "fitted"
                } else {
                    tracing::warn!(model = %settings.model, "the churn model did not converge");
                    "not_converged"
                }
            }
        };
        // The health score, scored by 100 - health_score: a churned row
        // should have the lower score. Negating keeps the order exactly.
        let (risk, labelled): (Vec<f64>, Vec<bool>) = test_rows
            .iter()
            .filter_map(|&i| health[i].map(|h| (-h, obs.churned[i].unwrap_or(false))))
            .unzip();
        let health_auc = math::auc(&risk, &labelled);

        let train_n = train_rows.len() as i64;
        let test_n = test_rows.len() as i64;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![LOGISTIC, "health_score"])),
            Arc::new(Int64Array::from(vec![train_n, train_n])),
            Arc::new(Int64Array::from(vec![test_n, test_n])),
            float_column(vec![churn_rate, churn_rate]),
            float_column(vec![auc, health_auc]),
            float_column(vec![log_loss, None]),
            float_column(vec![brier, None]),
            Arc::new(Date32Array::from(vec![trained_through, None])),
            Arc::new(StringArray::from(vec![status, "baseline"])),
        ];
        RecordBatch::try_new(eval_output(), columns).map_err(arrow_err(EVAL))
    }
}

/// `churn_scores`: the churn probability of each customer scored at D.
pub struct ChurnScores;

const SCORES: &str = "churn_scores";

fn scores_output() -> SchemaRef {
    schema(&[
        ("customer_id", DataType::Utf8, true),
        ("churn_probability_90d", DataType::Float64, true),
        ("top_factors", DataType::Utf8, true),
    ])
}

impl Kind for ChurnScores {
    fn name(&self) -> &'static str {
        SCORES
    }

    fn output_schema(&self, input: &Schema) -> Result<SchemaRef, FitError> {
        require_keys(SCORES, input)?;
        feature_names(SCORES, input)?;
        Ok(scores_output())
    }

    fn fit(&self, input: &Input, settings: &Settings) -> Result<RecordBatch, FitError> {
        let obs = Observations::read(SCORES, input)?;
        let (train_rows, test_rows) = obs.split(settings.as_of);
        let labelled: Vec<usize> = {
            let mut all = train_rows;
            all.extend(test_rows);
            all.sort_unstable();
            all
        };
        let labels = obs.labels(&labelled);
        let n = obs.features.len();
        let fitted = match train(&obs.x, n, &labelled, &labels, settings.churn_l2) {
            Ok(f) => Some(f),
            Err(why) => {
                tracing::warn!(model = %settings.model, observations = labelled.len(), reason = why, "no churn model fit; probabilities are NULL");
                None
            }
        };
        let scored: Vec<usize> = (0..input.rows()).filter(|&i| obs.snapshot_date[i] == Some(settings.as_of)).collect();
        let mut customers = Vec::with_capacity(scored.len());
        let mut probabilities = Vec::with_capacity(scored.len());
        let mut factors = Vec::with_capacity(scored.len());
        for &i in &scored {
            customers.push(obs.customer_id[i].clone());
            match &fitted {
                Some((standardiser, model)) => {
                    let z = standardiser.apply(obs.row(i));
                    probabilities.push(Some(model.probability(&z)));
                    factors.push(Some(math::top_factors(model, &z, &obs.features, 2).join(",")));
                }
                None => {
                    probabilities.push(None);
                    factors.push(None);
                }
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(customers)),
            float_column(probabilities),
            Arc::new(StringArray::from(factors)),
        ];
        RecordBatch::try_new(scores_output(), columns).map_err(arrow_err(SCORES))
    }
}

/// `health_weights_proposed`.
pub struct HealthWeights;

const WEIGHTS: &str = "health_weights";

fn weights_output() -> SchemaRef {
    schema(&[
        ("component", DataType::Utf8, false),
        ("current_weight", DataType::Float64, false),
        ("proposed_weight", DataType::Float64, true),
        ("auc_current", DataType::Float64, true),
        ("auc_proposed", DataType::Float64, true),
    ])
}

/// The health score of one row's components (NULL: missing) under
/// `weights`: the weighted mean over the components present (METRICS.md §7).
fn score(components: &[Option<f64>; 7], weights: &[f64; 7]) -> Option<f64> {
    let (mut sum, mut total) = (0.0, 0.0);
    for (c, w) in components.iter().zip(weights) {
        if let Some(c) = c {
            sum += w * c;
            total += w;
        }
    }
    (total > 0.0).then(|| sum / total)
}

/// The AUC of a health score under `weights` on `rows`: a churned row
/// should score lower.
fn weighted_auc(rows: &[([Option<f64>; 7], bool)], weights: &[f64; 7]) -> Option<f64> {
    let (risk, labels): (Vec<f64>, Vec<bool>) = rows.iter().filter_map(|(c, l)| score(c, weights).map(|s| (-s, *l))).unzip();
    math::auc(&risk, &labels)
}

impl Kind for HealthWeights {
    fn name(&self) -> &'static str {
        WEIGHTS
    }

    fn output_schema(&self, input: &Schema) -> Result<SchemaRef, FitError> {
        require(WEIGHTS, input, "customer_id", Wanted::Text)?;
        require(WEIGHTS, input, "snapshot_date", Wanted::Date)?;
        require(WEIGHTS, input, "churned_90d", Wanted::Boolean)?;
        for c in COMPONENTS {
            require(WEIGHTS, input, &format!("{c}_score"), Wanted::Number)?;
        }
        Ok(weights_output())
    }

    fn fit(&self, input: &Input, settings: &Settings) -> Result<RecordBatch, FitError> {
        let dates = input.dates("snapshot_date")?;
        let churned = input.booleans("churned_90d")?;
        let columns: Vec<Vec<Option<f64>>> = COMPONENTS
            .iter()
            .map(|c| input.numbers(&format!("{c}_score")))
            .collect::<Result<_, _>>()?;
        let row = |i: usize| -> [Option<f64>; 7] { std::array::from_fn(|k| columns[k][i].filter(|v| v.is_finite())) };
        let (mut train_rows, mut test_rows) = (Vec::new(), Vec::new());
        for i in canonical_order(&dates, &input.texts("customer_id")?) {
            let (Some(d), Some(label)) = (dates[i], churned[i]) else { continue };
            match split_of(d, settings.as_of) {
                Some(Split::Train) => train_rows.push((row(i), label)),
                Some(Split::Test) => test_rows.push((row(i), label)),
                None => {}
            }
        }
        let total: f64 = settings.health_weights.iter().sum();
        let current: [f64; 7] = std::array::from_fn(|k| if total > 0.0 { settings.health_weights[k] / total } else { 0.0 });

        // A missing component is the training mean of that component: the
        // health score leaves it out, which is close to scoring it as usual.
        let means: [f64; 7] = std::array::from_fn(|k| {
            let present: Vec<f64> = train_rows.iter().filter_map(|(c, _)| c[k]).collect();
            if present.is_empty() { 0.0 } else { present.iter().sum::<f64>() / present.len() as f64 }
        });
        let x: Vec<f64> = train_rows.iter().flat_map(|(c, _)| (0..7).map(|k| c[k].unwrap_or(means[k]))).collect();
        let labels: Vec<bool> = train_rows.iter().map(|(_, l)| *l).collect();
        let rows: Vec<usize> = (0..train_rows.len()).collect();
        let proposed: Option<[f64; 7]> = match train(&x, 7, &rows, &labels, settings.churn_l2) {
            Ok((standardiser, model)) => math::propose_weights(&model, &standardiser).and_then(|w| <[f64; 7]>::try_from(w).ok()),
            Err(why) => {
                tracing::warn!(model = %settings.model, train_observations = train_rows.len(), reason = why, "no health weights proposed");
                None
            }
        };
        let auc_current = weighted_auc(&test_rows, &current);
        let auc_proposed = proposed.as_ref().and_then(|w| weighted_auc(&test_rows, w));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(COMPONENTS.to_vec())),
            Arc::new(Float64Array::from(current.to_vec())),
            float_column((0..7).map(|k| proposed.map(|w| w[k])).collect()),
            float_column(vec![auc_current; 7]),
            float_column(vec![auc_proposed; 7]),
        ];
        RecordBatch::try_new(weights_output(), columns).map_err(arrow_err(WEIGHTS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_score_renormalises_over_the_components_present() {
        let w = [0.25, 0.15, 0.15, 0.15, 0.10, 0.10, 0.10];
        let c = [Some(100.0), Some(0.0), Some(50.0), None, Some(100.0), Some(100.0), None];
        let expected = (25.0 + 0.0 + 7.5 + 10.0 + 10.0) / 0.75;
        assert!((score(&c, &w).expect("score") - expected).abs() < 1e-12);
        assert_eq!(score(&[None; 7], &w), None);
    }
}
