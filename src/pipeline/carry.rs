//! Incremental runs: how much of the published marts a run can keep.
//!
//! Every metric of a month `m` (and every health snapshot `d`) is a function of
//! the events with local dates up to its cutoff, of the run parameters other
//! than the as-of date, and of the SQL. So when the previous run that published
//! (the *base*) had the same SQL and parameters, the rows of the months whose
//! cutoff was final in the base (complete months) and that no newly ingested
//! event reaches back to are still right. The run then recomputes from
//! `rebuild_from`, the first day of the earliest month that is not: the month
//! after the base's last complete month, or the month of the earliest event
//! ingested since the base, whichever is earlier. Marts marked `-- incremental:
//! <date column>` keep their published rows dated before `rebuild_from` and
//! take the recomputed rows from it on; the others are rebuilt whole, from
//! intermediate models that read only the recent usage events
//! (`tenure_rebuild_from()` in SQL). Anything unusual (no base, other SQL or
//! parameters, an earlier as-of date, a mart changed since the base, ingest
//! entries that do not say what they accepted) means a full rebuild.
//! This module decides; it never writes.

use super::history::RunSummary;
use crate::catalog::Model;
use crate::engine::{self, Built, Params};
use crate::ingest::Manifest;
use crate::publish;
use crate::storage::{Location, Storage};
use chrono::{Datelike, Days, NaiveDate};
use datafusion::prelude::{col, lit, SessionContext};
use std::collections::BTreeMap;

/// What a run recomputes.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The first local date recomputed (`engine::full_rebuild()` for all).
    pub rebuild_from: NaiveDate,
    /// The run whose published rows before `rebuild_from` are kept.
    pub base: Option<Base>,
    /// Why the run rebuilds everything, when it does.
    pub full_because: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Base {
    pub run_id: String,
    /// Mart name -> the Delta version the base published (and still current).
    pub versions: BTreeMap<String, i64>,
}

impl Plan {
    pub fn full(because: impl Into<String>) -> Plan {
        Plan {
            rebuild_from: engine::full_rebuild(),
            base: None,
            full_because: Some(because.into()),
        }
    }
}

/// What the tables of a run are a function of besides the events and the
/// as-of date: tenure's version, the models' SQL and the other parameters.
pub fn shape_fingerprint(models: &[&Model], params: &Params) -> String {
    let mut text = format!("tenure {}\n", env!("CARGO_PKG_VERSION"));
    text.push_str(&format!(
        "{} {} {} {:?}\n",
        params.timezone, params.currency, params.activity_window_days, params.health
    ));
    for m in models {
        text.push_str(&m.name);
        text.push('\n');
        text.push_str(&m.sql);
    }
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

/// The first day of the month of `d`.
pub fn month_start(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

/// Decide what a run as of `as_of` recomputes, given the run history, the
/// ingest sequence its models read and the current versions of the marts.
#[allow(clippy::too_many_arguments)]
pub async fn plan(
    runs: &[RunSummary],
    shape: &str,
    as_of: NaiveDate,
    tz: chrono_tz::Tz,
    sequence: i64,
    manifest: &Manifest,
    current_versions: &BTreeMap<String, Option<i64>>,
) -> Plan {
    let Some(base) = runs.iter().rev().find(|r| r.status == "succeeded" && !r.tables.is_empty()) else {
        return Plan::full("no earlier run published tables");
    };
    if base.shape.as_deref() != Some(shape) {
        return Plan::full(format!("the SQL or parameters differ from run {}", base.run_id));
    }
    let (Ok(base_as_of), Some(base_sequence)) = (base.as_of.parse::<NaiveDate>(), base.ingest_sequence) else {
        return Plan::full(format!("run {} does not record its as-of date and ingest sequence", base.run_id));
    };
    if base_as_of > as_of {
        return Plan::full(format!("run {} was as of a later date ({base_as_of})", base.run_id));
    }
    if base_sequence > sequence {
        return Plan::full(format!("run {} read events this run does not have", base.run_id));
    }
    let mut versions = BTreeMap::new();
    for (name, current) in current_versions {
        let published = base.tables.iter().find(|t| &t.name == name).map(|t| t.version);
        if published.is_none() || published != *current {
            return Plan::full(format!("mart {name} changed since run {}", base.run_id));
        }
        versions.insert(name.clone(), published.unwrap_or_default());
    }
    // The months that were not final in the base.
    let mut rebuild_from = month_start(base_as_of + Days::new(1));
    // The months newly ingested events reach back to.
    let spans = match manifest.accepted_since(base_sequence, sequence).await {
        Ok(s) => s,
        Err(e) => return Plan::full(format!("cannot read the ingest manifest: {e}")),
    };
    for span in spans {
        let Some(span) = span else {
            return Plan::full("an ingest entry since the base does not record what it accepted");
        };
        if let Some(micros) = span.earliest_occurred_at {
            let Some(at) = chrono::DateTime::from_timestamp_micros(micros) else {
                return Plan::full("an ingest entry since the base records an impossible timestamp");
            };
            rebuild_from = rebuild_from.min(month_start(at.with_timezone(&tz).date_naive()));
        }
    }
    Plan {
        rebuild_from,
        base: Some(Base {
            run_id: base.run_id.clone(),
            versions,
        }),
        full_because: None,
    }
}

/// The rows of an incremental mart: the published rows of the base dated
/// before `rebuild_from`, then the recomputed rows from it on.
pub async fn merge(
    ctx: &SessionContext,
    storage: &Storage,
    warehouse: &Location,
    model: &Model,
    key: &str,
    plan: &Plan,
    built: Built,
) -> datafusion::error::Result<Built> {
    let Some(base) = &plan.base else { return Ok(built) };
    let version = base.versions.get(&model.name).copied();
    let external = |e: String| datafusion::error::DataFusionError::External(e.into());
    let location = publish::mart_location(warehouse, &model.name);
    let mut table = storage.delta_table(&location).await.map_err(|e| external(e.to_string()))?;
    if let Some(v) = version {
        if table.version().map(|x| x as i64) != Some(v) {
            table.load_version(v as u64).await.map_err(|e| external(e.to_string()))?;
        }
    }
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| external(e.to_string()))?;
    let provider = table.table_provider().await.map_err(|e| external(e.to_string()))?;
    let bound = crate::ingest::days_since_epoch(plan.rebuild_from);
    let kept = ctx
        .read_table(provider)?
        .filter(col(key).lt(lit(datafusion::scalar::ScalarValue::Date32(Some(bound)))))?
        .collect()
        .await?;
    let mut batches = Vec::with_capacity(kept.len() + built.batches.len());
    for b in kept {
        batches.push(conform(&b, &built.schema)?);
    }
    for b in built.batches {
        batches.push(rows_from(&b, key, bound)?);
    }
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    engine::register_batch(ctx, &model.name, batches.clone(), built.schema.clone())?;
    Ok(Built {
        batches,
        schema: built.schema,
        rows,
    })
}

/// `batch` with the columns of `schema` (same names and types; nullability
/// as the recomputed rows have it).
fn conform(batch: &arrow::array::RecordBatch, schema: &arrow::datatypes::SchemaRef) -> datafusion::error::Result<arrow::array::RecordBatch> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = batch.column_by_name(field.name()).ok_or_else(|| {
            datafusion::error::DataFusionError::Plan(format!("the published table has no column {}", field.name()))
        })?;
        columns.push(arrow::compute::cast(column, field.data_type())?);
    }
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(arrow::array::RecordBatch::try_new_with_options(schema.clone(), columns, &options)?)
}

/// The rows of `batch` whose date column `key` is on or after `bound` (days
/// since the epoch).
fn rows_from(batch: &arrow::array::RecordBatch, key: &str, bound: i32) -> datafusion::error::Result<arrow::array::RecordBatch> {
    use arrow::array::AsArray;
    let column = batch
        .column_by_name(key)
        .ok_or_else(|| datafusion::error::DataFusionError::Plan(format!("incremental: the model has no column {key}")))?;
    let dates = column
        .as_primitive_opt::<arrow::datatypes::Date32Type>()
        .ok_or_else(|| datafusion::error::DataFusionError::Plan(format!("incremental: column {key} is not a date")))?;
    let mask: arrow::array::BooleanArray = dates.iter().map(|d| Some(d.is_some_and(|d| d >= bound))).collect();
    Ok(arrow::compute::filter_record_batch(batch, &mask)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_start_is_the_first_day() {
        let d = |s: &str| s.parse::<NaiveDate>().expect("date");
        assert_eq!(month_start(d("2026-11-15")), d("2026-11-01"));
        assert_eq!(month_start(d("2026-11-01")), d("2026-11-01"));
        assert_eq!(month_start(d("2026-10-31") + Days::new(1)), d("2026-11-01"));
    }
}
