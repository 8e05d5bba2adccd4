//! tenure's SQL functions. `tenure_local_date(ts, tz)`: the local date of a
//! UTC instant in an IANA timezone; SQL models use it once, in staging, so that
//! every month boundary follows the run's reporting timezone.
//! `tenure_rebuild_from()`: the first local date the run recomputes, a
//! constant of the run that the planner folds into the query (so that a scan
//! can skip files by their statistics, which a join with `params` cannot).

use arrow::array::{Array, ArrayRef, AsArray, Date32Builder};
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use chrono::NaiveDate;
use chrono_tz::Tz;
use datafusion::common::{exec_err, Result};
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
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let ts = arrays[0].as_primitive::<TimestampMicrosecondType>();
        let tz = arrays[1].as_string::<i32>();
        let mut out = Date32Builder::with_capacity(ts.len());
        let mut cached: Option<(String, crate::ingest::LocalDays)> = None;
        for i in 0..ts.len() {
            if ts.is_null(i) || tz.is_null(i) {
                out.append_null();
                continue;
            }
            let name = tz.value(i);
            if cached.as_ref().is_none_or(|(n, _)| n != name) {
                match name.parse::<Tz>() {
                    Ok(z) => cached = Some((name.to_string(), crate::ingest::LocalDays::new(z))),
                    Err(_) => return exec_err!("tenure_local_date: unknown timezone {name:?}"),
                }
            }
            if let Some((_, days)) = cached.as_mut() {
                out.append_value(days.days(ts.value(i)));
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct RebuildFrom {
    signature: Signature,
    days: i32,
}

/// `tenure_rebuild_from()` of a run that recomputes from `date` on.
pub fn rebuild_from_udf(date: NaiveDate) -> ScalarUDF {
    ScalarUDF::from(RebuildFrom {
        // Stable: one value for the whole run, folded at planning.
        signature: Signature::nullary(Volatility::Stable),
        days: crate::ingest::days_since_epoch(date),
    })
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
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(datafusion::scalar::ScalarValue::Date32(Some(self.days))))
    }
}
