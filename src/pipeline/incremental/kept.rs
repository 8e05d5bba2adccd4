//! The rows an incremental model keeps from its base, and their merge with
//! the rows the run recomputed.

use super::*;

/// An incremental model's rows once merged, and how to keep them: the base's
/// files of the months kept whole, and the rows to write.
pub struct Merged {
    pub built: Built,
    pub reused: Vec<StatePart>,
    pub unsaved: Vec<RecordBatch>,
}

/// The rows of the base an incremental model keeps, dated before
/// `rebuild_from` (a mart's as published, another model's from its state):
/// read while the model is built, then merged with its rows.
pub struct KeptRows {
    /// The rows in the base's files of whole months, kept as they are.
    kept: Vec<RecordBatch>,
    /// Kept rows to write again.
    rewritten: Vec<RecordBatch>,
    /// The base's files of whole months.
    reused: Vec<StatePart>,
}

/// Read the rows of the base that the incremental model `model` (date column
/// `key`) keeps; `None` when the run has no base.
pub async fn read_kept(
    ctx: &SessionContext,
    warehouse: &Warehouse,
    model: &Model,
    key: &str,
    plan: &Plan,
    ahead: &ReadAhead,
) -> datafusion::error::Result<Option<KeptRows>> {
    let Some(base) = &plan.base else {
        return Ok(None);
    };
    let from = plan.rebuild_from_of(model);
    let bound = crate::dates::days_since_epoch(from);
    let started = std::time::Instant::now();
    let (mut kept, mut rewritten, mut reused) = (Vec::new(), Vec::new(), Vec::new());
    match base.state.get(&model.name) {
        Some(state) => {
            for part in state.parts.iter().filter(|p| p.month < from) {
                let batches = ahead.read(warehouse, part).await?;
                if next_month(part.month) <= from {
                    kept.extend(batches);
                    reused.push(part.clone());
                } else {
                    for b in batches {
                        rewritten.push(rows_dated(&b, key, bound, false)?);
                    }
                }
            }
        }
        None if model.layer == Layer::Marts => {
            rewritten = kept_published(ctx, warehouse, &model.name, base.versions.get(&model.name).copied(), key, bound).await?;
        }
        None => return Err(DataFusionError::Plan(format!("run {} kept no rows of model {}", base.run_id, model.name))),
    }
    let kept_rows: usize = kept.iter().chain(&rewritten).map(|b| b.num_rows()).sum();
    tracing::debug!(model = %model.name, kept_rows, files = reused.len(), seconds = started.elapsed().as_secs_f64(), "kept rows read");
    Ok(Some(KeptRows { kept, rewritten, reused }))
}

/// The rows of an incremental model: the base's rows it keeps (`kept`, from
/// [`read_kept`]), then the recomputed rows dated from `rebuild_from` on.
/// The result is registered as the model's table.
pub fn merge(
    ctx: &SessionContext,
    model: &Model,
    key: &str,
    plan: &Plan,
    built: Built,
    kept: Option<KeptRows>,
) -> datafusion::error::Result<Merged> {
    let Some(KeptRows { kept, rewritten, reused }) = kept else {
        return Ok(Merged {
            unsaved: built.batches.clone(),
            built,
            reused: Vec::new(),
        });
    };
    let bound = crate::dates::days_since_epoch(plan.rebuild_from_of(model));
    let mut unsaved = Vec::with_capacity(rewritten.len() + built.batches.len());
    for b in rewritten {
        unsaved.push(conform(&b, &built.schema)?);
    }
    for b in built.batches {
        unsaved.push(rows_dated(&b, key, bound, true)?);
    }
    let mut batches = Vec::with_capacity(kept.len() + unsaved.len());
    for b in kept {
        batches.push(conform(&b, &built.schema)?);
    }
    batches.extend(unsaved.iter().cloned());
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    engine::register_rows(ctx, &model.name, batches.clone(), built.schema.clone(), Some(key))?;
    Ok(Merged {
        built: Built {
            batches,
            schema: built.schema,
            rows,
        },
        reused,
        unsaved,
    })
}

/// The rows of the mart `name` at Delta version `version` (the current one
/// when `None`) dated before `bound`.
pub(super) async fn kept_published(
    ctx: &SessionContext,
    warehouse: &Warehouse,
    name: &str,
    version: Option<i64>,
    key: &str,
    bound: i32,
) -> datafusion::error::Result<Vec<RecordBatch>> {
    let external = |e: String| DataFusionError::External(e.into());
    let mut table = open_delta_table(&warehouse.mart(name)).await.map_err(|e| external(e.to_string()))?;
    if let Some(v) = version {
        if table.version().map(|x| x as i64) != Some(v) {
            table.load_version(v as u64).await.map_err(|e| external(e.to_string()))?;
        }
    }
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| external(e.to_string()))?;
    let provider = table.table_provider().await.map_err(|e| external(e.to_string()))?;
    ctx.read_table(provider)?
        .filter(col(key).lt(lit(datafusion::scalar::ScalarValue::Date32(Some(bound)))))?
        .collect()
        .await
}

/// `batch` with the columns of `schema` (same names and types; nullability
/// as the recomputed rows have it).
pub(super) fn conform(batch: &RecordBatch, schema: &SchemaRef) -> datafusion::error::Result<RecordBatch> {
    publish::conform(batch, schema).map_err(|e| DataFusionError::Plan(format!("the kept rows do not fit the model's columns: {e}")))
}

/// The rows of `batch` whose date column `key` is on or after `bound` (days
/// since the epoch) when `from` holds, else those before it. A NULL date is
/// in neither.
pub(super) fn rows_dated(batch: &RecordBatch, key: &str, bound: i32, from: bool) -> datafusion::error::Result<RecordBatch> {
    let dates = publish::date_column(batch, key)?;
    let mask: arrow::array::BooleanArray = dates.iter().map(|d| Some(d.is_some_and(|d| (d >= bound) == from))).collect();
    // Batches are mostly of one date: keep them whole rather than copy them.
    match mask.true_count() {
        n if n == batch.num_rows() => Ok(batch.clone()),
        0 => Ok(batch.slice(0, 0)),
        _ => Ok(arrow::compute::filter_record_batch(batch, &mask)?),
    }
}
