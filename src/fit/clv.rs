//! The kind `bgnbd_gamma_gamma`: BG/NBD and Gamma-Gamma fit by maximum
//! likelihood (METRICS.md §14, the math is [`crate::clv`]) to one row per
//! customer: `frequency` (repeat purchase days), `recency` and `t` (in time
//! units), `monetary_value` (NULL without repeat purchases). It returns the
//! one row of `clv_model`; scoring customers is SQL (`clv_p_alive`, ...).

use super::{require, schema, FitError, Input, Kind, Settings, Wanted};
use crate::clv::Customer;
use arrow::array::{ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use std::sync::Arc;

pub struct BgNbdGammaGamma;

const NAME: &str = "bgnbd_gamma_gamma";

fn output() -> SchemaRef {
    let f = |name| (name, DataType::Float64, true);
    schema(&[
        ("as_of", DataType::Date32, false),
        ("customers", DataType::Int64, false),
        ("repeat_customers", DataType::Int64, false),
        f("r"),
        f("alpha"),
        f("a"),
        f("b"),
        f("bgnbd_log_likelihood"),
        f("p"),
        f("q"),
        f("gamma"),
        f("gg_log_likelihood"),
        ("time_unit_days", DataType::Int64, false),
        ("converged", DataType::Boolean, false),
    ])
}

impl Kind for BgNbdGammaGamma {
    fn name(&self) -> &'static str {
        NAME
    }

    fn output_schema(&self, input: &Schema) -> Result<SchemaRef, FitError> {
        for column in ["frequency", "recency", "t", "monetary_value"] {
            require(NAME, input, column, Wanted::Number)?;
        }
        Ok(output())
    }

    fn fit(&self, input: &Input, settings: &Settings) -> Result<RecordBatch, FitError> {
        let (x, t_x, t, m) = (
            input.numbers("frequency")?,
            input.numbers("recency")?,
            input.numbers("t")?,
            input.numbers("monetary_value")?,
        );
        let mut customers: Vec<Customer> = Vec::with_capacity(input.rows());
        let mut skipped = 0usize;
        for i in 0..input.rows() {
            match (x[i], t_x[i], t[i]) {
                (Some(x), Some(t_x), Some(t)) if x >= 0.0 && t_x >= 0.0 && t >= t_x && t.is_finite() => customers.push(Customer {
                    x,
                    t_x,
                    t,
                    monetary: m[i].filter(|_| x > 0.0),
                }),
                _ => skipped += 1,
            }
        }
        // In one order whatever order the SQL returned the rows in, so that
        // the fit's sums, and the table, are bit-identical for the same book.
        customers.sort_by(|l, r| {
            let key = |c: &Customer| [c.x, c.t_x, c.t, c.monetary.unwrap_or(f64::NEG_INFINITY)];
            key(l).iter().zip(key(r).iter()).map(|(a, b)| a.total_cmp(b)).find(|o| o.is_ne()).unwrap_or(std::cmp::Ordering::Equal)
        });
        if skipped > 0 {
            tracing::warn!(model = %settings.model, rows = skipped, "rows without a valid frequency, recency and t left out of the CLV fit");
        }
        let bgnbd = crate::clv::fit_bgnbd(&customers);
        let gg = crate::clv::fit_gamma_gamma(&customers);
        let converged = bgnbd.is_some_and(|f| f.converged) && gg.is_some_and(|f| f.converged);
        if !converged {
            tracing::warn!(
                model = %settings.model,
                customers = customers.len(),
                bgnbd = match bgnbd { None => "no fit", Some(f) if f.converged => "converged", Some(_) => "not converged" },
                gamma_gamma = match gg { None => "no fit", Some(f) if f.converged => "converged", Some(_) => "not converged" },
                "the CLV models did not converge; clv_model says converged = false"
            );
        }
        let float = |v: Option<f64>| -> ArrayRef { Arc::new(Float64Array::from(vec![v.filter(|v| v.is_finite())])) };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Date32Array::from(vec![settings.as_of])),
            Arc::new(Int64Array::from(vec![customers.len() as i64])),
            Arc::new(Int64Array::from(vec![customers.iter().filter(|c| c.x > 0.0).count() as i64])),
            float(bgnbd.map(|f| f.r)),
            float(bgnbd.map(|f| f.alpha)),
            float(bgnbd.map(|f| f.a)),
            float(bgnbd.map(|f| f.b)),
            float(bgnbd.map(|f| f.log_likelihood)),
            float(gg.map(|f| f.p)),
            float(gg.map(|f| f.q)),
            float(gg.map(|f| f.gamma)),
            float(gg.map(|f| f.log_likelihood)),
            Arc::new(Int64Array::from(vec![settings.clv_time_unit_days])),
            Arc::new(BooleanArray::from(vec![converged])),
        ];
        RecordBatch::try_new(output(), columns).map_err(|source| FitError::Arrow { kind: NAME, source })
    }
}
