//! The Arrow shape of the `events` and `rejects` tables (EVENTS.md rule 15) and
//! builders that turn validated events and rejected rows into record batches.
//! Also the row hashes that de-duplication compares, computed from the typed
//! columns so that new rows and rows read back from `events` hash alike.

use super::validate::ValidEvent;
use arrow::array::{
    Array, ArrayRef, AsArray, Date32Builder, Decimal128Builder, Float64Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::sync::{Arc, LazyLock};

pub const MONEY: DataType = DataType::Decimal128(38, 4);

pub fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Columns of `events` that carry the event's payload: what "differs" compares
/// for conflicting duplicates (EVENTS.md rule 13). Lineage and the derived
/// `event_date` are not payload.
pub const PAYLOAD_COLUMNS: [&str; 25] = [
    "event_id", "event_type", "customer_id", "occurred_at", "subscription_id", "plan", "mrr",
    "currency", "seats", "amount", "payment_id", "feature", "user_id", "quantity", "ticket_id",
    "priority", "score", "campaign_id", "name", "segment", "country", "industry", "owner",
    "reason", "comment",
];

pub static EVENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("occurred_at", utc_micros(), false),
        Field::new("event_date", DataType::Date32, false),
        s("subscription_id"),
        s("plan"),
        Field::new("mrr", MONEY, true),
        s("currency"),
        Field::new("seats", DataType::Int64, true),
        Field::new("amount", MONEY, true),
        s("payment_id"),
        s("feature"),
        s("user_id"),
        Field::new("quantity", DataType::Float64, true),
        s("ticket_id"),
        s("priority"),
        Field::new("score", DataType::Int64, true),
        s("campaign_id"),
        s("name"),
        s("segment"),
        s("country"),
        s("industry"),
        s("owner"),
        s("reason"),
        s("comment"),
        Field::new("source_object", DataType::Utf8, false),
        Field::new("source_row", DataType::Int64, false),
        Field::new("run_id", DataType::Utf8, false),
    ]))
});

pub static REJECTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("source_object", DataType::Utf8, false),
        Field::new("source_row", DataType::Int64, false),
        Field::new("raw", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, true),
        Field::new("run_id", DataType::Utf8, false),
    ]))
});

/// The two kinds of `events` data files: product usage events (`usage.*`, most
/// of the rows) and the others, which most models read alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Usage = 0,
    Other = 1,
}

impl FileKind {
    pub const BOTH: [FileKind; 2] = [FileKind::Usage, FileKind::Other];

    pub fn of(event_type: &str) -> FileKind {
        if event_type.starts_with("usage.") {
            FileKind::Usage
        } else {
            FileKind::Other
        }
    }
}

/// Accumulates accepted events of one object.
pub struct EventBuilder {
    /// The lineage columns, the same on every row of the object.
    source_object: String,
    run_id: String,
    strings: Vec<StringBuilder>,
    occurred_at: TimestampMicrosecondBuilder,
    event_date: Date32Builder,
    mrr: Decimal128Builder,
    amount: Decimal128Builder,
    seats: Int64Builder,
    quantity: Float64Builder,
    score: Int64Builder,
    source_row: Int64Builder,
    len: usize,
}

// Positions in `strings`.
const S_EVENT_ID: usize = 0;
const S_EVENT_TYPE: usize = 1;
const S_CUSTOMER_ID: usize = 2;
const S_SUBSCRIPTION_ID: usize = 3;
const S_PLAN: usize = 4;
const S_CURRENCY: usize = 5;
const S_PAYMENT_ID: usize = 6;
const S_FEATURE: usize = 7;
const S_USER_ID: usize = 8;
const S_TICKET_ID: usize = 9;
const S_PRIORITY: usize = 10;
const S_CAMPAIGN_ID: usize = 11;
const S_NAME: usize = 12;
const S_SEGMENT: usize = 13;
const S_COUNTRY: usize = 14;
const S_INDUSTRY: usize = 15;
const S_OWNER: usize = 16;
const S_REASON: usize = 17;
const S_COMMENT: usize = 18;
const STRING_COLUMNS: usize = 19;
/// Bytes reserved per row for each of the always-present text columns.
const TEXT_BYTES_PER_ROW: usize = 24;

impl EventBuilder {
    /// A builder for the events of one object, with room for about `rows`
    /// rows in the columns every event has (saves regrowing them).
    pub fn new(source_object: &str, run_id: &str, rows: usize) -> Self {
        let money = || Decimal128Builder::with_capacity(rows).with_data_type(MONEY);
        let strings = (0..STRING_COLUMNS)
            .map(|i| match i {
                S_EVENT_ID | S_EVENT_TYPE | S_CUSTOMER_ID => StringBuilder::with_capacity(rows, rows * TEXT_BYTES_PER_ROW),
                _ => StringBuilder::new(),
            })
            .collect();
        EventBuilder {
            source_object: source_object.to_string(),
            run_id: run_id.to_string(),
            strings,
            occurred_at: TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            event_date: Date32Builder::with_capacity(rows),
            mrr: money(),
            amount: money(),
            seats: Int64Builder::with_capacity(rows),
            quantity: Float64Builder::with_capacity(rows),
            score: Int64Builder::with_capacity(rows),
            source_row: Int64Builder::with_capacity(rows),
            len: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// About how many bytes the finished batch takes: the text of every
    /// column, and per row the fixed-width values, the offsets and the
    /// lineage columns.
    pub fn bytes(&self) -> usize {
        const FIXED_PER_ROW: usize = 8 + 4 + 16 + 16 + 8 + 8 + 8 + 8 + 4 * (STRING_COLUMNS + 2);
        let text: usize = self.strings.iter().map(|b| b.values_slice().len()).sum();
        text + self.len * (FIXED_PER_ROW + self.source_object.len() + self.run_id.len())
    }

    pub fn push(&mut self, ev: &ValidEvent, event_date: i32, source_row: i64) {
        let s = &mut self.strings;
        s[S_EVENT_ID].append_value(&ev.event_id);
        s[S_EVENT_TYPE].append_value(&ev.event_type);
        s[S_CUSTOMER_ID].append_value(&ev.customer_id);
        for (i, v) in [
            (S_SUBSCRIPTION_ID, &ev.subscription_id),
            (S_PLAN, &ev.plan),
            (S_CURRENCY, &ev.currency),
            (S_PAYMENT_ID, &ev.payment_id),
            (S_FEATURE, &ev.feature),
            (S_USER_ID, &ev.user_id),
            (S_TICKET_ID, &ev.ticket_id),
            (S_PRIORITY, &ev.priority),
            (S_CAMPAIGN_ID, &ev.campaign_id),
            (S_NAME, &ev.name),
            (S_SEGMENT, &ev.segment),
            (S_COUNTRY, &ev.country),
            (S_INDUSTRY, &ev.industry),
            (S_OWNER, &ev.owner),
            (S_REASON, &ev.reason),
            (S_COMMENT, &ev.comment),
        ] {
            s[i].append_option(v.as_deref());
        }
        self.occurred_at.append_value(ev.occurred_at);
        self.event_date.append_value(event_date);
        self.mrr.append_option(ev.mrr);
        self.amount.append_option(ev.amount);
        self.seats.append_option(ev.seats);
        self.quantity.append_option(ev.quantity);
        self.score.append_option(ev.score);
        self.source_row.append_value(source_row);
        self.len += 1;
    }

    pub fn finish(&mut self) -> Result<RecordBatch, arrow::error::ArrowError> {
        let mut s: Vec<ArrayRef> = self
            .strings
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let mut take = |i: usize| std::mem::replace(&mut s[i], Arc::new(arrow::array::NullArray::new(0)));
        let columns: Vec<ArrayRef> = vec![
            take(S_EVENT_ID),
            take(S_EVENT_TYPE),
            take(S_CUSTOMER_ID),
            Arc::new(self.occurred_at.finish()),
            Arc::new(self.event_date.finish()),
            take(S_SUBSCRIPTION_ID),
            take(S_PLAN),
            Arc::new(self.mrr.finish()),
            take(S_CURRENCY),
            Arc::new(self.seats.finish()),
            Arc::new(self.amount.finish()),
            take(S_PAYMENT_ID),
            take(S_FEATURE),
            take(S_USER_ID),
            Arc::new(self.quantity.finish()),
            take(S_TICKET_ID),
            take(S_PRIORITY),
            Arc::new(self.score.finish()),
            take(S_CAMPAIGN_ID),
            take(S_NAME),
            take(S_SEGMENT),
            take(S_COUNTRY),
            take(S_INDUSTRY),
            take(S_OWNER),
            take(S_REASON),
            take(S_COMMENT),
            repeated(&self.source_object, self.len),
            Arc::new(self.source_row.finish()),
            repeated(&self.run_id, self.len),
        ];
        self.len = 0;
        RecordBatch::try_new(EVENTS_SCHEMA.clone(), columns)
    }
}

/// A text column holding `value` on each of `rows` rows.
fn repeated(value: &str, rows: usize) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(rows, rows * value.len());
    for _ in 0..rows {
        b.append_value(value);
    }
    Arc::new(b.finish())
}

/// One rejected row.
#[derive(Debug, Clone)]
pub struct RejectRow {
    pub source_row: i64,
    pub raw: String,
    pub reason: &'static str,
    pub detail: String,
}

/// The most text (all text columns together) one rejects batch holds: well
/// below the 2 GiB an Arrow string array can hold (its offsets are `i32`).
pub const MAX_REJECTS_BATCH_TEXT: usize = 1 << 30;

/// The rejects of one object as batches of the `rejects` schema, in row
/// order, each holding at most `max_text` bytes of text (or a single row).
pub fn rejects_batches(
    source_object: &str,
    rows: &[RejectRow],
    run_id: &str,
    max_text: usize,
) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    let text = |r: &RejectRow| source_object.len() + r.raw.len() + r.reason.len() + r.detail.len() + run_id.len();
    let mut batches = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let mut end = start + 1;
        let mut bytes = text(&rows[start]);
        while end < rows.len() && bytes + text(&rows[end]) <= max_text {
            bytes += text(&rows[end]);
            end += 1;
        }
        batches.push(rejects_batch(source_object, &rows[start..end], run_id)?);
        start = end;
    }
    Ok(batches)
}

fn rejects_batch(source_object: &str, rows: &[RejectRow], run_id: &str) -> Result<RecordBatch, arrow::error::ArrowError> {
    let text = |f: fn(&RejectRow) -> usize| rows.iter().map(f).sum::<usize>();
    let mut object = StringBuilder::with_capacity(rows.len(), rows.len() * source_object.len());
    let mut row = Int64Builder::with_capacity(rows.len());
    let mut raw = StringBuilder::with_capacity(rows.len(), text(|r| r.raw.len()));
    let mut reason = StringBuilder::with_capacity(rows.len(), text(|r| r.reason.len()));
    let mut detail = StringBuilder::with_capacity(rows.len(), text(|r| r.detail.len()));
    let mut run = StringBuilder::with_capacity(rows.len(), rows.len() * run_id.len());
    for r in rows {
        object.append_value(source_object);
        row.append_value(r.source_row);
        raw.append_value(&r.raw);
        reason.append_value(r.reason);
        detail.append_value(&r.detail);
        run.append_value(run_id);
    }
    RecordBatch::try_new(
        REJECTS_SCHEMA.clone(),
        vec![
            Arc::new(object.finish()),
            Arc::new(row.finish()),
            Arc::new(raw.finish()),
            Arc::new(reason.finish()),
            Arc::new(detail.finish()),
            Arc::new(run.finish()),
        ],
    )
}

/// The key of an event for de-duplication: a 128-bit hash of its `event_id`,
/// and a 64-bit hash of its typed payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowKey {
    pub id: u128,
    pub payload: u64,
}

/// Row keys of a batch that has the payload columns of `events` (by name).
///
/// The payload hash is built a column at a time: each non-NULL value is hashed
/// with the running hash of its row, salted by the column's position, as seed;
/// a NULL leaves the hash as it is. So a column that is NULL in every row of a
/// batch (most columns of most event types) costs nothing, and a value cannot
/// stand for the same value in another column. The hash depends only on the
/// typed values, so new rows and rows read back from `events` hash alike; the
/// key index stores it (see `keys::MAGIC`), so changing it needs a new index
/// version.
pub fn row_keys(batch: &RecordBatch) -> Result<Vec<RowKey>, arrow::error::ArrowError> {
    let rows = batch.num_rows();
    let mut payload = vec![PAYLOAD_SEED; rows];
    let mut ids = Vec::new();
    for (position, name) in PAYLOAD_COLUMNS.iter().enumerate() {
        let array = batch.column_by_name(name).cloned().ok_or_else(|| {
            arrow::error::ArrowError::SchemaError(format!("events has no column {name}"))
        })?;
        let target = EVENTS_SCHEMA.field_with_name(name)?.data_type().clone();
        let array = if array.data_type() == &target { array } else { arrow::compute::cast(&array, &target)? };
        let salt = (position as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        hash_column(&array, salt, &mut payload)?;
        if position == 0 {
            let strings = array.as_string::<i32>();
            ids = (0..rows).map(|i| xxhash_rust::xxh3::xxh3_128(strings.value(i).as_bytes())).collect();
        }
    }
    Ok(ids.into_iter().zip(payload).map(|(id, payload)| RowKey { id, payload }).collect())
}

/// The payload hash of a row with no values.
const PAYLOAD_SEED: u64 = 0x7465_6e75_7265_0001;

/// Fold the values of one payload column into the running row hashes.
fn hash_column(array: &ArrayRef, salt: u64, hashes: &mut [u64]) -> Result<(), arrow::error::ArrowError> {
    use arrow::datatypes::{Decimal128Type, Float64Type, Int64Type, TimestampMicrosecondType};
    use xxhash_rust::xxh3::xxh3_64_with_seed;
    if array.null_count() == array.len() {
        return Ok(());
    }
    fn each<T: Copy>(array: &dyn Array, values: &[T], hashes: &mut [u64], mut f: impl FnMut(T, u64) -> u64) {
        for (i, (h, v)) in hashes.iter_mut().zip(values).enumerate() {
            if array.is_valid(i) {
                *h = f(*v, *h);
            }
        }
    }
    match array.data_type() {
        DataType::Utf8 => {
            let strings = array.as_string::<i32>();
            for (i, h) in hashes.iter_mut().enumerate() {
                if strings.is_valid(i) {
                    *h = xxh3_64_with_seed(strings.value(i).as_bytes(), *h ^ salt);
                }
            }
        }
        DataType::Int64 => {
            let values = array.as_primitive::<Int64Type>().values();
            each(array, values, hashes, |v, h| xxh3_64_with_seed(&v.to_le_bytes(), h ^ salt));
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let values = array.as_primitive::<TimestampMicrosecondType>().values();
            each(array, values, hashes, |v, h| xxh3_64_with_seed(&v.to_le_bytes(), h ^ salt));
        }
        DataType::Float64 => {
            let values = array.as_primitive::<Float64Type>().values();
            each(array, values, hashes, |v, h| xxh3_64_with_seed(&v.to_bits().to_le_bytes(), h ^ salt));
        }
        DataType::Decimal128(_, _) => {
            let values = array.as_primitive::<Decimal128Type>().values();
            each(array, values, hashes, |v, h| xxh3_64_with_seed(&v.to_le_bytes(), h ^ salt));
        }
        other => {
            return Err(arrow::error::ArrowError::SchemaError(format!("no payload hash for type {other}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{new_null_array, Int64Array, StringArray, StringViewArray, TimestampMicrosecondArray};

    /// A batch of `events` rows: (event_id, text columns set by name).
    fn batch(rows: &[(&str, &[(&str, &str)])]) -> RecordBatch {
        let n = rows.len();
        let columns = EVENTS_SCHEMA
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                let name = f.name().as_str();
                match name {
                    "event_id" => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                    "occurred_at" => Arc::new(TimestampMicrosecondArray::from(vec![1_000_000; n]).with_timezone("UTC")),
                    "event_date" => Arc::new(arrow::array::Date32Array::from(vec![0; n])),
                    "source_row" => Arc::new(Int64Array::from(vec![1; n])),
                    _ if f.data_type() == &DataType::Utf8 => {
                        let values = rows.iter().map(|r| r.1.iter().find(|(c, _)| *c == name).map(|(_, v)| *v));
                        let values: StringArray = values.collect();
                        if f.is_nullable() {
                            Arc::new(values)
                        } else {
                            Arc::new(StringArray::from_iter_values(values.iter().map(|v| v.unwrap_or("x"))))
                        }
                    }
                    _ => new_null_array(f.data_type(), n),
                }
            })
            .collect();
        RecordBatch::try_new(EVENTS_SCHEMA.clone(), columns).expect("events batch")
    }

    #[test]
    fn payload_hashes_depend_on_the_values_not_on_the_batch() {
        let with_feature: &[(&str, &str)] = &[("feature", "export")];
        let with_plan: &[(&str, &str)] = &[("plan", "export")];
        let empty_feature: &[(&str, &str)] = &[("feature", "")];
        let together = row_keys(&batch(&[("e1", with_feature), ("e2", with_plan), ("e3", &[]), ("e4", empty_feature)]))
            .expect("keys");
        // Alone, each row is in a batch where the other columns are all NULL
        // (the fast path) or all set: the keys are the same.
        for (i, row) in [("e1", with_feature), ("e2", with_plan), ("e3", &[][..]), ("e4", empty_feature)]
            .into_iter()
            .enumerate()
        {
            assert_eq!(row_keys(&batch(&[row])).expect("keys"), vec![together[i]], "row {i}");
        }
        // The same value in another column, NULL against "", another id.
        assert_ne!(together[0].payload, together[1].payload);
        assert_ne!(together[2].payload, together[3].payload);
        assert_ne!(together[0].id, together[1].id);
        let same_payload_other_id = row_keys(&batch(&[("e9", with_feature)])).expect("keys")[0];
        assert_ne!(same_payload_other_id.payload, together[0].payload, "event_id is part of the payload");
        assert_eq!(together[0].id, xxhash_rust::xxh3::xxh3_128(b"e1"));

        // Columns read back in another string type are cast first.
        let b = batch(&[("e1", with_feature), ("e2", with_plan)]);
        let (schema, mut columns, _) = b.into_parts();
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        for name in ["feature", "plan"] {
            let i = schema.index_of(name).expect("column");
            let view: StringViewArray = columns[i].as_string::<i32>().iter().collect();
            columns[i] = Arc::new(view);
            fields[i] = Field::new(name, DataType::Utf8View, true);
        }
        let viewed = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch");
        assert_eq!(row_keys(&viewed).expect("keys"), together[..2].to_vec());
    }

    /// Rejects are split into batches of at most the given text each, in
    /// row order; a row larger than that alone is a batch of its own.
    #[test]
    fn rejects_are_split_by_their_text() {
        use arrow::array::AsArray;
        let row = |n: i64, raw: usize| RejectRow {
            source_row: n,
            raw: "r".repeat(raw),
            reason: "malformed",
            detail: "d".into(),
        };
        let rows = vec![row(1, 10), row(2, 10), row(3, 100), row(4, 1), row(5, 1), row(6, 30)];
        // Per row: "obj" 3 + raw + "malformed" 9 + detail 1 + "run" 3 = raw + 16.
        let batches = rejects_batches("obj", &rows, "run", 60).expect("batches");
        let rows_of = |b: &RecordBatch| {
            b.column_by_name("source_row").expect("source_row").as_primitive::<arrow::datatypes::Int64Type>().values().to_vec()
        };
        let split: Vec<Vec<i64>> = batches.iter().map(rows_of).collect();
        assert_eq!(split, vec![vec![1, 2], vec![3], vec![4, 5], vec![6]]);
        for b in &batches {
            let raw = b.column_by_name("raw").expect("raw").as_string::<i32>();
            assert!(b.num_rows() == 1 || raw.value_data().len() + 16 * b.num_rows() <= 60);
        }
        let one = rejects_batches("obj", &rows, "run", MAX_REJECTS_BATCH_TEXT).expect("batches");
        assert_eq!(one.len(), 1);
        assert_eq!(rows_of(&one[0]), [1, 2, 3, 4, 5, 6]);
        assert!(rejects_batches("obj", &[], "run", 60).expect("none").is_empty());
    }
}
