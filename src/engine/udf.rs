//! tenure's SQL functions. `tenure_local_date(ts, tz)`: the local date of a
//! UTC instant in an IANA timezone; SQL models use it once, in staging, so that
//! every month boundary follows the run's reporting timezone.
//! `tenure_as_of()`, `tenure_timezone()`, `tenure_rebuild_from()`: constants
//! of the run (as-of date, reporting timezone, first local date recomputed)
//! that the planner folds into the query, so that staging filters by them
//! without a join with `params`, and a scan can skip files by statistics.
//! `safe_divide(a, b)`: the ratio of two numbers as a double, NULL where the
//! denominator is 0, the one way the models divide.
//! `clv_p_alive`, `clv_expected_purchases`, `clv_expected_value`: the BG/NBD
//! and Gamma-Gamma formulas of one customer given fitted parameters
//! (METRICS.md §14), so that `customer_clv` is plain SQL over `clv_model`.

use arrow::array::{Array, ArrayRef, AsArray, Date32Builder, Float64Array};
use arrow::compute::CastOptions;
use arrow::datatypes::{DataType, Float64Type, TimeUnit, TimestampMicrosecondType};
use chrono::NaiveDate;
use chrono_tz::Tz;
use datafusion::common::utils::take_function_args;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use std::sync::Arc;

#[derive(Debug, PartialEq, Eq, Hash)]
struct LocalDate {
    signature: Signature,
}

/// The functions of every session that runs models (a run's, a worker's);
/// the run's constants (`tenure_as_of()`, `tenure_timezone()`) are added
/// by the run, which the planner folds before a plan reaches a worker.
pub fn all() -> Vec<ScalarUDF> {
    let mut all = vec![local_date_udf(), rebuild_from_udf(), safe_divide_udf()];
    all.extend(clv_udfs());
    all
}

pub fn local_date_udf() -> ScalarUDF {
    ScalarUDF::from(LocalDate {
        signature: Signature::exact(
            vec![
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                DataType::Utf8,
            ],
            Volatility::Immutable,
        ),
    })
}

impl ScalarUDFImpl for LocalDate {
    fn name(&self) -> &str {
        "tenure_local_date"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Date32)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let zone = |name: &str| match name.parse::<Tz>() {
            Ok(z) => Ok(crate::dates::LocalDays::new(z)),
            Err(_) => exec_err!("tenure_local_date: unknown timezone {name:?}"),
        };
        // The usual call has one timezone for every row (a constant).
        let fixed = match &args.args[1] {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(name)) | ScalarValue::LargeUtf8(Some(name)) | ScalarValue::Utf8View(Some(name))) => {
                Some(zone(name)?)
            }
            _ => None,
        };
        let ts = match &args.args[0] {
            ColumnarValue::Array(a) => a.clone(),
            ColumnarValue::Scalar(v) => v.to_array_of_size(args.number_rows)?,
        };
        let ts = ts.as_primitive::<TimestampMicrosecondType>();
        let mut out = Date32Builder::with_capacity(ts.len());
        if let Some(mut days) = fixed {
            for v in ts.iter() {
                out.append_option(v.map(|v| days.days(v)));
            }
            return Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef));
        }
        let tz = args.args[1].to_array(ts.len())?;
        let tz = tz.as_string::<i32>();
        let mut cached: Option<(String, crate::dates::LocalDays)> = None;
        for i in 0..ts.len() {
            if ts.is_null(i) || tz.is_null(i) {
                out.append_null();
                continue;
            }
            let name = tz.value(i);
            if cached.as_ref().is_none_or(|(n, _)| n != name) {
                cached = Some((name.to_string(), zone(name)?));
            }
            if let Some((_, days)) = cached.as_mut() {
                out.append_value(days.days(ts.value(i)));
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

/// A constant of the run as a nullary SQL function: Stable, so the planner
/// folds it into a literal before optimising.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RunConstant {
    name: &'static str,
    signature: Signature,
    value: ScalarValue,
}

fn run_constant(name: &'static str, value: ScalarValue) -> ScalarUDF {
    ScalarUDF::from(RunConstant {
        name,
        signature: Signature::nullary(Volatility::Stable),
        value,
    })
}

/// `tenure_rebuild_from()`: the first local date the model being planned
/// recomputes, from the session's `tenure.rebuild_from`: the run's, or the
/// model's own (see `engine::rebuilding_from`). Stable like the constants, so
/// it is folded into each model's plan with the setting of that model's
/// session, views included.
pub fn rebuild_from_udf() -> ScalarUDF {
    ScalarUDF::from(RebuildFrom {
        signature: Signature::nullary(Volatility::Stable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct RebuildFrom {
    signature: Signature,
}

impl ScalarUDFImpl for RebuildFrom {
    fn name(&self) -> &str {
        "tenure_rebuild_from"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Date32)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let days = match args.config_options.extensions.get::<super::ModelOptions>() {
            Some(options) => options.rebuild_from,
            None => crate::dates::days_since_epoch(super::full_rebuild()),
        };
        Ok(ColumnarValue::Scalar(ScalarValue::Date32(Some(days))))
    }
}

/// `tenure_as_of()`: the run's as-of date D.
pub fn as_of_udf(date: NaiveDate) -> ScalarUDF {
    run_constant("tenure_as_of", ScalarValue::Date32(Some(crate::dates::days_since_epoch(date))))
}

/// `tenure_timezone()`: the run's reporting timezone.
pub fn timezone_udf(name: &str) -> ScalarUDF {
    run_constant("tenure_timezone", ScalarValue::Utf8(Some(name.to_string())))
}

impl ScalarUDFImpl for RunConstant {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.value.data_type())
    }
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.value.clone()))
    }
}

/// `safe_divide(a, b)`: `a / b` as a double; NULL when `b` is 0 or either is
/// NULL. Exactly what `cast(a as double) / cast(nullif(b, 0) as double)`
/// gives, bit for bit, for any numeric `a` and `b`: both are cast to double
/// by the planner (arrow's cast, as `cast(... as double)` does), and `b` is
/// NULL where it equals 0 the way DataFusion's `nullif` compares: exactly for
/// an integer or a decimal, bit for bit for a double, so `-0.0` is not 0 and
/// divides to an infinity (or NaN), as it does in that expression.
pub fn safe_divide_udf() -> ScalarUDF {
    ScalarUDF::from(SafeDivide {
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SafeDivide {
    signature: Signature,
}

impl ScalarUDFImpl for SafeDivide {
    fn name(&self) -> &str {
        "safe_divide"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 2 {
            return plan_err!("safe_divide(a, b) takes two numbers, got {} arguments", arg_types.len());
        }
        for t in arg_types {
            if !(t.is_numeric() || *t == DataType::Null) {
                return plan_err!("safe_divide(a, b) takes two numbers, got {t}; cast it to a number first");
            }
        }
        Ok(vec![DataType::Float64; 2])
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalars = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let [a, b] = take_function_args(self.name(), args.args)?;
        // The planner has cast both to double; a direct call may not have.
        let double = |v: ColumnarValue| -> Result<ArrayRef> {
            let array = v.into_array(args.number_rows)?;
            let options = CastOptions { safe: false, ..Default::default() };
            Ok(arrow::compute::cast_with_options(&array, &DataType::Float64, &options)?)
        };
        let (a, b) = (double(a)?, double(b)?);
        let (a, b) = (a.as_primitive::<Float64Type>(), b.as_primitive::<Float64Type>());
        let zero = 0.0_f64.to_bits();
        let ratios: Float64Array = a
            .iter()
            .zip(b.iter())
            .map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) if b.to_bits() != zero => Some(a / b),
                _ => None,
            })
            .collect();
        if scalars {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&ratios, 0)?));
        }
        Ok(ColumnarValue::Array(Arc::new(ratios)))
    }
}

/// A function of doubles: every argument cast to double, the result NULL
/// where `f` gives none or a value that is not finite.
#[derive(Debug)]
struct Doubles {
    name: &'static str,
    /// The arguments' names, for the error of a wrong call.
    arguments: &'static [&'static str],
    f: fn(&[Option<f64>]) -> Option<f64>,
    signature: Signature,
}

impl PartialEq for Doubles {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Doubles {}

impl std::hash::Hash for Doubles {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for Doubles {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let usage = format!("{}({})", self.name, self.arguments.join(", "));
        if arg_types.len() != self.arguments.len() {
            return plan_err!("{usage} takes {} numbers, got {} arguments", self.arguments.len(), arg_types.len());
        }
        for t in arg_types {
            if !(t.is_numeric() || *t == DataType::Null) {
                return plan_err!("{usage} takes numbers, got {t}; cast it to a number first");
            }
        }
        Ok(vec![DataType::Float64; arg_types.len()])
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalars = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let mut columns = Vec::with_capacity(args.args.len());
        for v in args.args {
            let array = v.into_array(args.number_rows)?;
            let options = CastOptions { safe: false, ..Default::default() };
            columns.push(arrow::compute::cast_with_options(&array, &DataType::Float64, &options)?);
        }
        let columns: Vec<&Float64Array> = columns.iter().map(|c| c.as_primitive::<Float64Type>()).collect();
        let mut row = vec![None; columns.len()];
        let values: Float64Array = (0..args.number_rows)
            .map(|i| {
                for (slot, c) in row.iter_mut().zip(&columns) {
                    *slot = c.is_valid(i).then(|| c.value(i));
                }
                (self.f)(&row).filter(|v| v.is_finite())
            })
            .collect();
        if scalars {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&values, 0)?));
        }
        Ok(ColumnarValue::Array(Arc::new(values)))
    }
}

fn doubles(name: &'static str, arguments: &'static [&'static str], f: fn(&[Option<f64>]) -> Option<f64>) -> ScalarUDF {
    ScalarUDF::from(Doubles {
        name,
        arguments,
        f,
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

/// The BG/NBD model of `r, alpha, a, b` and the customer of `x, t_x, t`
/// (the first seven of `v`), when all are given.
fn bgnbd_of(v: &[Option<f64>]) -> Option<(crate::clv::BgNbd, crate::clv::Customer)> {
    let [r, alpha, a, b, x, t_x, t] = [v[0]?, v[1]?, v[2]?, v[3]?, v[4]?, v[5]?, v[6]?];
    let model = crate::clv::BgNbd {
        r,
        alpha,
        a,
        b,
        log_likelihood: f64::NAN,
        converged: true,
    };
    let valid = [r, alpha, a, b].iter().all(|p| *p > 0.0) && x >= 0.0 && t_x >= 0.0 && t >= t_x;
    valid.then_some((model, crate::clv::Customer { x, t_x, t, monetary: None }))
}

/// The functions of a fitted CLV model, for SQL: `clv_p_alive(r, alpha, a,
/// b, frequency, recency, t)`, `clv_expected_purchases(r, alpha, a, b,
/// frequency, recency, t, horizon)` (horizon in the same time unit) and
/// `clv_expected_value(p, q, gamma, frequency, monetary_value)` (the
/// population mean when `frequency` is 0 or `monetary_value` NULL). NULL
/// where the formula gives what no model can (a negative expectation, from
/// degenerate estimates) or a value that is not finite.
pub fn clv_udfs() -> [ScalarUDF; 3] {
    [
        doubles("clv_p_alive", &["r", "alpha", "a", "b", "frequency", "recency", "t"], |v| {
            bgnbd_of(v).map(|(m, c)| m.p_alive(&c))
        }),
        doubles("clv_expected_purchases", &["r", "alpha", "a", "b", "frequency", "recency", "t", "horizon"], |v| {
            let horizon = v[7].filter(|h| *h >= 0.0)?;
            // A negative expectation is the formula breaking down at
            // degenerate estimates (a fit to one customer): no figure.
            bgnbd_of(v).map(|(m, c)| m.expected_purchases(&c, horizon)).filter(|e| *e >= 0.0)
        }),
        doubles("clv_expected_value", &["p", "q", "gamma", "frequency", "monetary_value"], |v| {
            let [p, q, gamma, x] = [v[0]?, v[1]?, v[2]?, v[3]?];
            if !(p > 0.0 && q > 0.0 && gamma > 0.0 && x >= 0.0) {
                return None;
            }
            let model = crate::clv::GammaGamma {
                p,
                q,
                gamma,
                log_likelihood: f64::NAN,
                converged: true,
            };
            model
                .expected_avg_value(&crate::clv::Customer {
                    x,
                    t_x: 0.0,
                    t: 0.0,
                    monetary: v[4],
                })
                .filter(|e| *e >= 0.0)
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Decimal128Array, Int64Array, RecordBatch};
    use arrow::datatypes::{Field, Schema};
    use datafusion::prelude::SessionContext;

    /// A session with one table `t` of every pair of the given numerators and
    /// denominators, as the types the models divide: decimal money, counts, doubles.
    async fn pairs(numerators: &[Option<f64>], denominators: &[Option<f64>]) -> SessionContext {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for x in numerators {
            for y in denominators {
                a.push(*x);
                b.push(*y);
            }
        }
        let money = |v: &[Option<f64>]| {
            let cents: Vec<Option<i128>> = v.iter().map(|x| x.map(|x| (x * 10_000.0).round() as i128)).collect();
            Decimal128Array::from(cents).with_precision_and_scale(38, 4).expect("decimal")
        };
        let counts = |v: &[Option<f64>]| Int64Array::from(v.iter().map(|x| x.map(|x| x.trunc() as i64)).collect::<Vec<_>>());
        let schema = Schema::new(vec![
            Field::new("a_money", DataType::Decimal128(38, 4), true),
            Field::new("b_money", DataType::Decimal128(38, 4), true),
            Field::new("a_count", DataType::Int64, true),
            Field::new("b_count", DataType::Int64, true),
            Field::new("a_double", DataType::Float64, true),
            Field::new("b_double", DataType::Float64, true),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(money(&a)),
                Arc::new(money(&b)),
                Arc::new(counts(&a)),
                Arc::new(counts(&b)),
                Arc::new(Float64Array::from(a.clone())),
                Arc::new(Float64Array::from(b.clone())),
            ],
        )
        .expect("batch");
        let ctx = SessionContext::new();
        ctx.register_udf(safe_divide_udf());
        ctx.register_batch("t", batch).expect("table");
        ctx
    }

    async fn doubles(ctx: &SessionContext, sql: &str) -> Vec<Option<f64>> {
        let batches = ctx.sql(sql).await.expect("plan").collect().await.expect("run");
        let mut out = Vec::new();
        for batch in &batches {
            assert_eq!(batch.column(0).data_type(), &DataType::Float64, "{sql}");
            out.extend(batch.column(0).as_primitive::<Float64Type>().iter());
        }
        out
    }

    fn bits(v: &[Option<f64>]) -> Vec<Option<u64>> {
        v.iter().map(|x| x.map(f64::to_bits)).collect()
    }

    #[tokio::test]
    async fn safe_divide_is_the_cast_nullif_division_bit_for_bit() {
        let values = [Some(0.0), Some(-0.0), Some(1.0), Some(-1.0), Some(3.0), Some(7.0), Some(0.1), Some(-2.5), Some(123_456.789), None];
        let ctx = pairs(&values, &values).await;
        for a in ["a_money", "a_count", "a_double"] {
            for b in ["b_money", "b_count", "b_double"] {
                let ours = doubles(&ctx, &format!("select safe_divide({a}, {b}) from t")).await;
                let theirs = doubles(&ctx, &format!("select cast({a} as double) / cast(nullif({b}, 0) as double) from t")).await;
                assert_eq!(bits(&ours), bits(&theirs), "safe_divide({a}, {b})");
            }
        }
        // Expressions and constants, as the models pass them (the planner
        // folds a call on constants).
        for (ours, theirs) in [
            ("safe_divide(a_money - b_money, b_money)", "cast(a_money - b_money as double) / cast(nullif(b_money, 0) as double)"),
            ("safe_divide(a_count - 1, b_count)", "cast(a_count - 1 as double) / cast(nullif(b_count, 0) as double)"),
            ("safe_divide(100.0 * cast(a_count as double), b_double)", "100.0 * cast(a_count as double) / nullif(b_double, 0)"),
            ("safe_divide(a_count, 0)", "cast(a_count as double) / cast(nullif(0, 0) as double)"),
            ("safe_divide(1, b_count)", "cast(1 as double) / cast(nullif(b_count, 0) as double)"),
            ("safe_divide(2, 3)", "cast(2 as double) / cast(nullif(3, 0) as double)"),
            ("safe_divide(null, b_count)", "cast(null as double) / cast(nullif(b_count, 0) as double)"),
        ] {
            let sql = |e: &str| format!("select {e} from t");
            assert_eq!(bits(&doubles(&ctx, &sql(ours)).await), bits(&doubles(&ctx, &sql(theirs)).await), "{ours}");
        }
    }

    #[tokio::test]
    async fn safe_divide_of_decimals_ints_zero_null_and_negative_zero() {
        let ctx = pairs(&[Some(1.0)], &[Some(3.0), Some(0.0), None, Some(-0.0), Some(-4.0)]).await;
        let third = 1.0 / 3.0;
        // decimal money: 1.0000 / 3.0000, then 0 and NULL give NULL
        let money = doubles(&ctx, "select safe_divide(a_money, b_money) from t").await;
        assert_eq!(money, [Some(third), None, None, None, Some(-0.25)]);
        // counts: decimal -0.0000 is 0, and so is integer -0
        let counts = doubles(&ctx, "select safe_divide(a_count, b_count) from t").await;
        assert_eq!(counts, [Some(third), None, None, None, Some(-0.25)]);
        // doubles: 0.0 gives NULL; -0.0 is not 0 to nullif (DataFusion
        // compares doubles bit for bit), so 1 / -0.0 is -infinity here as in
        // `cast(a as double) / cast(nullif(b, 0) as double)`
        let mixed = doubles(&ctx, "select safe_divide(a_money, b_double) from t").await;
        assert_eq!(mixed, [Some(third), None, None, Some(f64::NEG_INFINITY), Some(-0.25)]);
        // a NULL numerator is NULL
        let nulls = pairs(&[None], &[Some(2.0)]).await;
        assert_eq!(doubles(&nulls, "select safe_divide(a_double, b_count) from t").await, [None]);
        // not a number: a plan error that says what to do
        let err = ctx.sql("select safe_divide('1', b_count) from t").await.expect_err("text").to_string();
        assert!(err.contains("safe_divide(a, b) takes two numbers"), "{err}");
    }

    /// The CLV functions give the papers' values at sound estimates and NULL,
    /// never a negative expectation, at the degenerate estimates of a fit to
    /// one customer (a regression: the customer_clv check failed on them).
    #[tokio::test]
    async fn clv_functions_are_null_where_the_formulas_break_down() {
        let ctx = SessionContext::new();
        for f in clv_udfs() {
            ctx.register_udf(f);
        }
        let sql = "select \
            clv_p_alive(0.243, 4.414, 0.793, 2.426, 2, 30.43, 38.86) as p, \
            clv_expected_purchases(0.243, 4.414, 0.793, 2.426, 2, 30.43, 38.86, 39) as e, \
            clv_expected_value(6.25, 3.74, 15.44, 0, cast(null as double)) as v, \
            clv_expected_purchases(15459951.1, 4416884.4, 11873.98, 0.0000842, 1, 0.2857, 11.4286, 52.14) as broken, \
            clv_expected_value(6.25, 0.9, 15.44, 0, cast(null as double)) as infinite_mean";
        let batches = ctx.sql(sql).await.expect("plan").collect().await.expect("run");
        let value = |name: &str| {
            let c = batches[0].column_by_name(name).expect("column").as_primitive::<Float64Type>().clone();
            c.is_valid(0).then(|| c.value(0))
        };
        let by_hand = 1.0 / (1.0 + (0.793 / (2.426 + 1.0)) * ((4.414f64 + 38.86) / (4.414 + 30.43)).powf(2.243));
        assert!((value("p").expect("p_alive") - by_hand).abs() < 1e-12);
        assert!((value("e").expect("expected purchases") - 1.226).abs() < 0.002);
        assert!((value("v").expect("population mean") - 6.25 * 15.44 / 2.74).abs() < 1e-9);
        assert_eq!(value("broken"), None);
        assert_eq!(value("infinite_mean"), None);
    }
}
