//! tenure's SQL functions. `tenure_local_date(ts, tz)`: the local date of a
//! UTC instant in an IANA timezone; SQL models use it once, in staging, so that
//! every month boundary follows the run's reporting timezone.
//! `tenure_as_of()`, `tenure_timezone()`, `tenure_rebuild_from()`: constants
//! of the run (as-of date, reporting timezone, first local date recomputed)
//! that the planner folds into the query, so that staging filters by them
//! without a join with `params`, and a scan can skip files by statistics.

use arrow::array::{Array, ArrayRef, AsArray, Date32Builder};
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use chrono::NaiveDate;
use chrono_tz::Tz;
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use std::sync::Arc;

#[derive(Debug, PartialEq, Eq, Hash)]
struct LocalDate {
    signature: Signature,
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
