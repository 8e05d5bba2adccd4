//! Model kinds: Rust steps that fit a statistical model to the rows of a
//! SQL model. A model whose header says `-- kind: <name>` is planned and run
//! as SQL like any other; its rows are the kind's input, and the table the
//! kind returns is the model's. The catalog knows the kinds by name
//! ([`names`]), `tenure validate` plans them ([`Kind::output_schema`]), and
//! the runner builds them with the others, so a kind is reused by writing
//! another SQL file over other inputs, and a new kind is one entry of
//! [`KINDS`].
//!
//! Kinds read their settings from the run's `params` table, as SQL does, and
//! never the clock or the warehouse. They are deterministic: the same rows
//! in the same order give bit-identical tables.

mod churn;
mod clv;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type, Schema, SchemaRef};
use std::sync::Arc;

/// A Rust step that turns the rows of a SQL model into a table.
pub trait Kind: Sync {
    /// The name a model's header gives (`-- kind: <name>`).
    fn name(&self) -> &'static str;
    /// The schema of the table it returns for input of schema `input`; an
    /// error names the input column that is missing or of the wrong type.
    fn output_schema(&self, input: &Schema) -> Result<SchemaRef, FitError>;
    /// Fit and return the table.
    fn fit(&self, input: &Input, settings: &Settings) -> Result<RecordBatch, FitError>;
}

/// Every kind, by name.
pub const KINDS: [&dyn Kind; 4] = [
    &clv::BgNbdGammaGamma,
    &churn::ChurnModelEval,
    &churn::ChurnScores,
    &churn::HealthWeights,
];

/// The names of the kinds, for the catalog.
pub fn names() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|k| k.name())
}

pub fn kind(name: &str) -> Option<&'static dyn Kind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error("kind {kind}: the input has no column {column:?} ({wanted})")]
    MissingColumn {
        kind: &'static str,
        column: String,
        wanted: &'static str,
    },
    #[error("kind {kind}: column {column:?} is {found}, not {wanted}")]
    WrongType {
        kind: &'static str,
        column: String,
        found: DataType,
        wanted: &'static str,
    },
    #[error("kind {kind}: {source}")]
    Arrow {
        kind: &'static str,
        source: arrow::error::ArrowError,
    },
    #[error("the run's params table has no usable {0:?}")]
    Setting(&'static str),
}

/// What a kind wants of an input column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// Any number (integer, decimal, float), read as a double.
    Number,
    Date,
    Boolean,
    Text,
}

impl Wanted {
    fn describe(self) -> &'static str {
        match self {
            Wanted::Number => "a number",
            Wanted::Date => "a date",
            Wanted::Boolean => "a boolean",
            Wanted::Text => "text",
        }
    }

    fn accepts(self, t: &DataType) -> bool {
        match self {
            Wanted::Number => t.is_numeric() || *t == DataType::Null,
            Wanted::Date => matches!(t, DataType::Date32 | DataType::Null),
            Wanted::Boolean => matches!(t, DataType::Boolean | DataType::Null),
            Wanted::Text => matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null),
        }
    }
}

/// Check that `input` has `column` of the wanted type.
pub fn require(kind: &'static str, input: &Schema, column: &str, wanted: Wanted) -> Result<(), FitError> {
    let field = input.field_with_name(column).map_err(|_| FitError::MissingColumn {
        kind,
        column: column.to_string(),
        wanted: wanted.describe(),
    })?;
    if wanted.accepts(field.data_type()) {
        Ok(())
    } else {
        Err(FitError::WrongType {
            kind,
            column: column.to_string(),
            found: field.data_type().clone(),
            wanted: wanted.describe(),
        })
    }
}

/// The rows of a kind's input, as one batch.
pub struct Input {
    kind: &'static str,
    batch: RecordBatch,
}

impl Input {
    pub fn new(kind: &'static str, schema: SchemaRef, batches: &[RecordBatch]) -> Result<Input, FitError> {
        let batch = arrow::compute::concat_batches(&schema, batches).map_err(|source| FitError::Arrow { kind, source })?;
        Ok(Input { kind, batch })
    }

    pub fn rows(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn schema(&self) -> SchemaRef {
        self.batch.schema()
    }

    /// The column `name` as it is.
    pub fn column(&self, name: &str) -> Result<&ArrayRef, FitError> {
        self.batch.column_by_name(name).ok_or_else(|| FitError::MissingColumn {
            kind: self.kind,
            column: name.to_string(),
            wanted: "a column",
        })
    }

    fn cast(&self, name: &str, to: &DataType, wanted: Wanted) -> Result<ArrayRef, FitError> {
        require(self.kind, &self.batch.schema(), name, wanted)?;
        let column = self.column(name)?;
        arrow::compute::cast(column, to).map_err(|source| FitError::Arrow { kind: self.kind, source })
    }

    /// A number column as doubles (NULL: `None`).
    pub fn numbers(&self, name: &str) -> Result<Vec<Option<f64>>, FitError> {
        let a = self.cast(name, &DataType::Float64, Wanted::Number)?;
        Ok(a.as_primitive::<Float64Type>().iter().collect())
    }

    /// A date column as days since 1970-01-01.
    pub fn dates(&self, name: &str) -> Result<Vec<Option<i32>>, FitError> {
        let a = self.cast(name, &DataType::Date32, Wanted::Date)?;
        Ok(a.as_primitive::<Date32Type>().iter().collect())
    }

    pub fn booleans(&self, name: &str) -> Result<Vec<Option<bool>>, FitError> {
        let a = self.cast(name, &DataType::Boolean, Wanted::Boolean)?;
        Ok(a.as_boolean().iter().collect())
    }

    pub fn texts(&self, name: &str) -> Result<Vec<Option<String>>, FitError> {
        let a = self.cast(name, &DataType::Utf8, Wanted::Text)?;
        Ok(a.as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect())
    }
}

/// The run's settings a kind reads, from the `params` table.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The model being built, for logs.
    pub model: String,
    /// The as-of date D, in days since 1970-01-01.
    pub as_of: i32,
    pub clv_time_unit_days: i64,
    pub clv_horizon_days: i64,
    pub churn_l2: f64,
    /// The health weights of config, in [`churn::COMPONENTS`] order.
    pub health_weights: [f64; 7],
}

impl Settings {
    /// Read the settings from the one-row `params` batch.
    pub fn from_params(model: &str, params: &RecordBatch) -> Result<Settings, FitError> {
        let value = |name: &'static str| params.column_by_name(name).filter(|c| c.len() == 1 && c.is_valid(0)).ok_or(FitError::Setting(name));
        let int = |name: &'static str| -> Result<i64, FitError> {
            let c = value(name)?;
            c.as_primitive_opt::<Int64Type>().map(|a| a.value(0)).ok_or(FitError::Setting(name))
        };
        let float = |name: &'static str| -> Result<f64, FitError> {
            let c = value(name)?;
            c.as_primitive_opt::<Float64Type>().map(|a| a.value(0)).ok_or(FitError::Setting(name))
        };
        let as_of = value("as_of")?.as_primitive_opt::<Date32Type>().map(|a| a.value(0)).ok_or(FitError::Setting("as_of"))?;
        let mut health_weights = [0.0; 7];
        for (w, name) in health_weights.iter_mut().zip(churn::WEIGHT_PARAMS) {
            *w = float(name)?;
        }
        Ok(Settings {
            model: model.to_string(),
            as_of,
            clv_time_unit_days: int("clv_time_unit_days")?,
            clv_horizon_days: int("clv_horizon_days")?,
            churn_l2: float("churn_l2")?,
            health_weights,
        })
    }
}

/// A schema of not-null and nullable fields, for the kinds' outputs.
fn schema(fields: &[(&str, DataType, bool)]) -> SchemaRef {
    Arc::new(Schema::new(
        fields
            .iter()
            .map(|(name, t, nullable)| arrow::datatypes::Field::new(*name, t.clone(), *nullable))
            .collect::<Vec<_>>(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BooleanArray, Date32Array, Float64Array, StringArray};

    fn settings(as_of: i32) -> Settings {
        Settings {
            model: "m".into(),
            as_of,
            clv_time_unit_days: 7,
            clv_horizon_days: 365,
            churn_l2: 1.0,
            health_weights: [0.25, 0.15, 0.15, 0.15, 0.10, 0.10, 0.10],
        }
    }

    /// `n` observations of customers scored monthly over two years before
    /// D = day 1000, churning more often with a low score; row `i` of the
    /// batch is observation `order[i]`.
    fn observations(n: usize, order: &[usize]) -> Input {
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let rows: Vec<(String, i32, Option<bool>, f64, Option<f64>)> = (0..n)
            .map(|i| {
                let score = 100.0 * next();
                let churn = next() < 0.6 - 0.005 * score;
                let date = 1000 - 30 * (i % 24) as i32;
                let label = (date + 90 <= 1000).then_some(churn);
                let sentiment = (i % 3 != 0).then(|| 100.0 * next());
                (format!("c{:04}", i / 24), date, label, score, sentiment)
            })
            .collect();
        let pick = |f: &dyn Fn(&(String, i32, Option<bool>, f64, Option<f64>)) -> Option<f64>| -> ArrayRef {
            Arc::new(Float64Array::from(order.iter().map(|&i| f(&rows[i])).collect::<Vec<_>>()))
        };
        let mut columns: Vec<(&str, ArrayRef)> = vec![
            ("customer_id", Arc::new(StringArray::from(order.iter().map(|&i| rows[i].0.clone()).collect::<Vec<_>>()))),
            ("snapshot_date", Arc::new(Date32Array::from(order.iter().map(|&i| rows[i].1).collect::<Vec<_>>()))),
            ("churned_90d", Arc::new(BooleanArray::from(order.iter().map(|&i| rows[i].2).collect::<Vec<_>>()))),
            ("health_score", pick(&|r| Some(r.3))),
        ];
        for c in churn::COMPONENTS {
            let column = match c {
                "sentiment" => pick(&|r| r.4),
                "usage" => pick(&|r| Some(r.3)),
                _ => pick(&|r| Some((r.3 * 7.0) % 100.0)),
            };
            columns.push((Box::leak(format!("{c}_score").into_boxed_str()), column));
        }
        let batch = RecordBatch::try_from_iter(columns).expect("batch");
        Input::new("test", batch.schema(), &[batch]).expect("input")
    }

    /// The same observations in another order give bit-identical tables
    /// (what an incremental run relies on to equal a full rebuild).
    #[test]
    fn churn_kinds_do_not_depend_on_the_order_of_their_rows() {
        let n = 24 * 60;
        let forward: Vec<usize> = (0..n).collect();
        let shuffled: Vec<usize> = (0..n).map(|i| (i * 7919) % n).collect();
        for name in ["churn_model_eval", "churn_scores", "health_weights"] {
            let k = kind(name).expect("kind");
            let a = k.fit(&observations(n, &forward), &settings(1000)).expect("fit");
            let b = k.fit(&observations(n, &shuffled), &settings(1000)).expect("fit");
            assert_eq!(a, b, "{name}");
            assert_eq!(k.output_schema(&observations(1, &[0]).schema()).expect("schema"), a.schema(), "{name}");
        }
        let eval = kind("churn_model_eval").expect("kind").fit(&observations(n, &forward), &settings(1000)).expect("fit");
        let status = eval.column_by_name("status").expect("status").as_string::<i32>().value(0).to_string();
        assert_eq!(status, "fitted");
        let auc = eval.column_by_name("auc").expect("auc").as_primitive::<Float64Type>();
        assert!(auc.value(0) > 0.6 && auc.value(1) > 0.6, "{auc:?}");
        let weights = kind("health_weights").expect("kind").fit(&observations(n, &forward), &settings(1000)).expect("fit");
        let proposed = weights.column_by_name("proposed_weight").expect("weights").as_primitive::<Float64Type>();
        let sum: f64 = proposed.iter().map(|w| w.expect("a weight")).sum();
        assert!((sum - 1.0).abs() < 1e-12 && proposed.iter().all(|w| w >= Some(0.0)), "{proposed:?}");
    }

    /// Too few observations: no model, the tables say so, nothing fails.
    #[test]
    fn churn_kinds_without_enough_history_say_so() {
        let small = observations(24 * 5, &(0..120).collect::<Vec<_>>());
        let eval = kind("churn_model_eval").expect("kind").fit(&small, &settings(1000)).expect("fit");
        assert_eq!(eval.column_by_name("status").expect("status").as_string::<i32>().value(0), "too_few_observations");
        assert!(eval.column_by_name("auc").expect("auc").is_null(0));
        let scores = kind("churn_scores").expect("kind").fit(&small, &settings(1000)).expect("fit");
        assert_eq!(scores.num_rows(), 5, "one row per customer scored at D");
        assert_eq!(scores.column_by_name("churn_probability_90d").expect("p").null_count(), 5);
        let weights = kind("health_weights").expect("kind").fit(&small, &settings(1000)).expect("fit");
        assert_eq!(weights.num_rows(), 7);
        assert_eq!(weights.column_by_name("proposed_weight").expect("w").null_count(), 7);
    }

    fn book(rows: &[(f64, f64, f64, Option<f64>)]) -> Input {
        let column = |f: &dyn Fn(&(f64, f64, f64, Option<f64>)) -> Option<f64>| -> ArrayRef {
            Arc::new(Float64Array::from(rows.iter().map(f).collect::<Vec<_>>()))
        };
        let batch = RecordBatch::try_from_iter([
            ("frequency", column(&|r| Some(r.0))),
            ("recency", column(&|r| Some(r.1))),
            ("t", column(&|r| Some(r.2))),
            ("monetary_value", column(&|r| r.3)),
        ])
        .expect("batch");
        Input::new("test", batch.schema(), &[batch]).expect("input")
    }

    /// Degenerate books (none, one customer, nobody repeating, all spend
    /// zero) give the one row, `converged` false, and no panic.
    #[test]
    fn clv_on_degenerate_books_is_one_row_not_converged() {
        let k = kind("bgnbd_gamma_gamma").expect("kind");
        for rows in [
            vec![],
            vec![(2.0, 10.0, 20.0, Some(15.0))],
            vec![(0.0, 0.0, 20.0, None), (0.0, 0.0, 30.0, None)],
            vec![(1.0, 5.0, 20.0, Some(0.0)), (3.0, 15.0, 30.0, Some(0.0)), (0.0, 0.0, 9.0, None)],
        ] {
            let out = k.fit(&book(&rows), &settings(1000)).expect("fit");
            assert_eq!(out.num_rows(), 1, "{rows:?}");
            let converged = out.column_by_name("converged").expect("converged").as_boolean().value(0);
            assert!(!converged, "{rows:?}");
            assert_eq!(out.column_by_name("customers").expect("n").as_primitive::<Int64Type>().value(0), rows.len() as i64);
        }
    }

    #[test]
    fn kinds_have_distinct_names() {
        let mut names: Vec<&str> = names().collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KINDS.len());
        assert!(kind("bgnbd_gamma_gamma").is_some());
        assert!(kind("nope").is_none());
    }
}
