//! `tenure_local_date(ts, tz)`: the local date of a UTC instant in an IANA
//! timezone. SQL models use it once, in staging, so that every month boundary
//! follows the run's reporting timezone.

use arrow::array::{Array, ArrayRef, AsArray, Date32Builder};
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
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
        let mut cached: Option<(String, Tz)> = None;
        for i in 0..ts.len() {
            if ts.is_null(i) || tz.is_null(i) {
                out.append_null();
                continue;
            }
            let name = tz.value(i);
            let zone = match &cached {
                Some((n, z)) if n == name => *z,
                _ => match name.parse::<Tz>() {
                    Ok(z) => {
                        cached = Some((name.to_string(), z));
                        z
                    }
                    Err(_) => return exec_err!("tenure_local_date: unknown timezone {name:?}"),
                },
            };
            out.append_value(crate::ingest::local_date_days(ts.value(i), zone));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}
