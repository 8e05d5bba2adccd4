//! The rows of an incremental model held in memory, with the range of its date
//! column in each batch. Most of its readers want a recent stretch of it (the
//! rows from `tenure_rebuild_from()` on, the trailing 90 or 365 days), and the
//! kept rows come one month per batch group from the state files, so a scan
//! with a comparison on the date column reads only the batches that can match.
//! The comparison is still applied to their rows (the pushdown is inexact):
//! skipping a batch is the only thing this decides.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Date32Type, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use std::sync::Arc;

#[derive(Debug)]
pub struct DatedTable {
    schema: SchemaRef,
    key: String,
    /// Each batch with the least and greatest date in it; `None` when it has
    /// no date (no comparison matches a NULL).
    batches: Vec<(Option<(i32, i32)>, RecordBatch)>,
}

impl DatedTable {
    /// `None` when `key` is not a `Date32` column of `schema`.
    pub fn try_new(schema: SchemaRef, key: &str, batches: Vec<RecordBatch>) -> Option<DatedTable> {
        let index = schema.index_of(key).ok()?;
        if schema.field(index).data_type() != &DataType::Date32 {
            return None;
        }
        let batches = batches
            .into_iter()
            .map(|b| {
                let dates = b.column(index).as_primitive_opt::<Date32Type>();
                let range = dates.and_then(|d| Some((arrow::compute::min(d)?, arrow::compute::max(d)?)));
                (range, b)
            })
            .collect();
        Some(DatedTable {
            schema,
            key: key.to_string(),
            batches,
        })
    }

    /// The dates `filter` lets through, when it is a comparison of the date
    /// column with a date: `[from, to]`.
    fn range_of(&self, filter: &Expr) -> Option<(i64, i64)> {
        let date = |e: &Expr| match e {
            Expr::Literal(ScalarValue::Date32(Some(d)), _) => Some(i64::from(*d)),
            _ => None,
        };
        let is_key = |e: &Expr| matches!(e, Expr::Column(c) if c.name == self.key);
        let (lo, hi) = (i64::MIN, i64::MAX);
        match filter {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (op, d) = if is_key(left) {
                    (*op, date(right)?)
                } else if is_key(right) {
                    (op.swap()?, date(left)?)
                } else {
                    return None;
                };
                match op {
                    Operator::Eq => Some((d, d)),
                    Operator::Gt => Some((d + 1, hi)),
                    Operator::GtEq => Some((d, hi)),
                    Operator::Lt => Some((lo, d - 1)),
                    Operator::LtEq => Some((lo, d)),
                    _ => None,
                }
            }
            Expr::Between(b) if !b.negated && is_key(&b.expr) => Some((date(&b.low)?, date(&b.high)?)),
            _ => None,
        }
    }
}

#[async_trait]
impl TableProvider for DatedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match self.range_of(f) {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let ranges: Vec<(i64, i64)> = filters.iter().filter_map(|f| self.range_of(f)).collect();
        let (from, to) = ranges.iter().fold((i64::MIN, i64::MAX), |(a, b), (c, d)| (a.max(*c), b.min(*d)));
        let batches: Vec<RecordBatch> = self
            .batches
            .iter()
            .filter(|(range, _)| match range {
                _ if ranges.is_empty() => true,
                Some((min, max)) => i64::from(*max) >= from && i64::from(*min) <= to,
                None => false,
            })
            .map(|(_, b)| b.clone())
            .collect();
        let source = MemorySourceConfig::try_new(&[batches], self.schema.clone(), projection.cloned())?;
        Ok(DataSourceExec::from_data_source(source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Date32Array, Int64Array};
    use datafusion::prelude::SessionContext;

    fn batch(dates: &[Option<i32>]) -> RecordBatch {
        let n = dates.len() as i64;
        RecordBatch::try_from_iter_with_nullable([
            ("d", Arc::new(Date32Array::from(dates.to_vec())) as ArrayRef, true),
            ("v", Arc::new(Int64Array::from((0..n).collect::<Vec<_>>())) as ArrayRef, false),
        ])
        .expect("batch")
    }

    async fn count(ctx: &SessionContext, sql: &str) -> i64 {
        let batches = ctx.sql(sql).await.expect("plan").collect().await.expect("run");
        batches[0].column(0).as_primitive::<arrow::datatypes::Int64Type>().value(0)
    }

    #[tokio::test]
    async fn comparisons_on_the_date_skip_batches_and_still_filter_rows() {
        // Three batches: days 10-19, 20-29 and NULL dates only.
        let batches = vec![
            batch(&(10..20).map(Some).collect::<Vec<_>>()),
            batch(&(20..30).map(Some).collect::<Vec<_>>()),
            batch(&[None, None]),
        ];
        let schema = batches[0].schema();
        let table = DatedTable::try_new(schema.clone(), "d", batches.clone()).expect("dated");
        assert!(DatedTable::try_new(schema.clone(), "v", batches.clone()).is_none(), "not a date");
        let ctx = SessionContext::new();
        ctx.register_table("t", Arc::new(table)).expect("register");
        let day = |n: i32| format!("cast(arrow_cast({n}, 'Int32') as date)");
        // Each answer as a full scan gives it, whatever batches are skipped.
        for (filter, expected) in [
            (format!("d >= {}", day(25)), 5),
            (format!("d > {}", day(25)), 4),
            (format!("{} <= d", day(25)), 5),
            (format!("d < {}", day(12)), 2),
            (format!("d <= {}", day(12)), 3),
            (format!("d = {}", day(20)), 1),
            (format!("d between {} and {}", day(18), day(21)), 4),
            (format!("d >= {} and d < {}", day(15), day(22)), 7),
            ("d is null".to_string(), 2),
            (format!("d >= {} or v = 0", day(25)), 8),
            ("v >= 0".to_string(), 22),
        ] {
            assert_eq!(count(&ctx, &format!("select count(*) from t where {filter}")).await, expected, "{filter}");
        }
        // The batches a scan reads.
        let t = DatedTable::try_new(schema, "d", batches).expect("dated");
        let pushed = |sql_filter: Expr| t.range_of(&sql_filter);
        let lit = |n: i32| Expr::Literal(ScalarValue::Date32(Some(n)), None);
        let col = || datafusion::prelude::col("d");
        assert_eq!(pushed(col().gt_eq(lit(25))), Some((25, i64::MAX)));
        assert_eq!(pushed(lit(25).gt(col())), Some((i64::MIN, 24)));
        assert_eq!(pushed(col().not_eq(lit(25))), None);
        assert_eq!(pushed(datafusion::prelude::col("v").gt_eq(lit(25))), None);
        let state = ctx.state();
        for (filters, expected) in [
            (vec![col().gt_eq(lit(25))], 10),
            (vec![col().lt(lit(10))], 0),
            (vec![], 22),
            (vec![col().gt_eq(lit(15)), col().lt_eq(lit(20))], 20),
        ] {
            let plan = t.scan(&state, None, &filters, None).await.expect("scan");
            let rows = datafusion::physical_plan::collect(plan, ctx.task_ctx()).await.expect("collect");
            let read: usize = rows.iter().map(|b| b.num_rows()).sum();
            assert_eq!(read, expected, "{filters:?}");
        }
    }
}
