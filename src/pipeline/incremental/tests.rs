//! Tests of incremental runs' state files, kept rows and month arithmetic.

use super::kept::rows_dated;
use super::state::{decode_state, read_state, Checked};
use super::*;

fn ipc(batch: &RecordBatch, options: arrow::ipc::writer::IpcWriteOptions) -> Vec<u8> {
    let mut writer =
        arrow::ipc::writer::FileWriter::try_new_with_options(Vec::new(), &batch.schema(), options).expect("writer");
    writer.write(batch).expect("write");
    writer.write(&batch.slice(1, 1)).expect("write");
    writer.into_inner().expect("finish")
}

#[test]
fn state_files_decode_with_or_without_compression() {
    use arrow::array::{ArrayRef, Date32Array, StringViewArray};
    let batch = RecordBatch::try_from_iter([
        ("local_date", std::sync::Arc::new(Date32Array::from(vec![Some(1), None, Some(3)])) as ArrayRef),
        ("customer_id", std::sync::Arc::new(StringViewArray::from(vec!["c1", "a customer id longer than twelve", "c3"])) as ArrayRef),
    ])
    .expect("batch");
    let plain = arrow::ipc::writer::IpcWriteOptions::default();
    let lz4 = plain.clone().try_with_compression(Some(arrow::ipc::CompressionType::LZ4_FRAME)).expect("lz4");
    for bytes in [ipc(&batch, plain), ipc(&batch, lz4)] {
        for checked in [Checked::Unknown, Checked::Unchanged] {
            let back = decode_state(bytes::Bytes::from(bytes.clone()), checked).expect("decode");
            assert_eq!(back, vec![batch.clone(), batch.slice(1, 1)]);
        }
        // A truncated or foreign file is an error, not a panic.
        for cut in [0, 9, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode_state(bytes::Bytes::from(bytes[..cut].to_vec()), Checked::Unknown).is_err(), "cut at {cut}");
        }
    }
    // Kept rows: a batch wholly on one side stays whole; NULL dates go nowhere.
    assert_eq!(rows_dated(&batch, "local_date", 0, true).expect("from").num_rows(), 2);
    assert_eq!(rows_dated(&batch, "local_date", 2, false).expect("before").num_rows(), 1);
    assert_eq!(rows_dated(&batch, "local_date", 9, true).expect("none").num_rows(), 0);
}

#[tokio::test]
async fn state_reads_back_and_a_changed_file_is_an_error() {
    use arrow::array::{ArrayRef, Date32Array, StringViewArray};
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = crate::storage::Storage::new(Default::default());
    let warehouse = Warehouse::open(&storage, &dir.path().display().to_string()).expect("warehouse");
    let batch = RecordBatch::try_from_iter([
        ("local_date", std::sync::Arc::new(Date32Array::from(vec![Some(20_000), Some(20_040)])) as ArrayRef),
        ("customer_id", std::sync::Arc::new(StringViewArray::from(vec!["c1", "a customer id longer than twelve"])) as ArrayRef),
    ])
    .expect("batch");
    let state = write_state(&warehouse, "daily", "r1", "m", "local_date", batch.schema(), vec![batch.clone()], Vec::new())
        .await
        .expect("write");
    assert_eq!(state.parts.len(), 2, "one file per month");
    let mut back = Vec::new();
    for part in &state.parts {
        assert!(part.xxh3.is_some());
        back.extend(read_state(&warehouse, &part.path, part.xxh3.as_deref()).await.expect("read"));
    }
    let rows: usize = back.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 2);
    let strings = back[1].column(1).as_any().downcast_ref::<StringViewArray>().expect("strings");
    assert_eq!(strings.value(0), "a customer id longer than twelve");
    // One byte changed after writing: the checksum no longer matches.
    let part = &state.parts[1];
    change_one_byte(&warehouse, &part.path);
    let err = read_state(&warehouse, &part.path, part.xxh3.as_deref()).await.expect_err("changed");
    assert!(err.to_string().contains("changed since they were written"), "{err}");
}

/// Flip a bit in the middle of a written file (a new file, as a rewrite
/// would leave it).
fn change_one_byte(warehouse: &Warehouse, path: &str) {
    let file = warehouse.root().local_path(path).expect("local");
    let mut bytes = std::fs::read(&file).expect("bytes");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::remove_file(&file).expect("remove");
    std::fs::write(&file, bytes).expect("rewrite");
}

#[tokio::test]
async fn kept_rows_are_read_ahead_from_the_likely_base_only() {
    use arrow::array::{ArrayRef, Date32Array};
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = crate::storage::Storage::new(Default::default());
    let warehouse = Warehouse::open(&storage, &dir.path().display().to_string()).expect("warehouse");
    // 2024-10-04 and 2024-11-13: one file per month.
    let batch = RecordBatch::try_from_iter([(
        "local_date",
        std::sync::Arc::new(Date32Array::from(vec![Some(20_000), Some(20_040)])) as ArrayRef,
    )])
    .expect("batch");
    let state = write_state(&warehouse, "daily", "r1", "m", "local_date", batch.schema(), vec![batch], Vec::new())
        .await
        .expect("write");
    let (october, november) = (&state.parts[0], &state.parts[1]);
    let run = |shape: &str, as_of: &str| -> RunReport {
        serde_json::from_value(serde_json::json!({
            "run_id": "r1", "pipeline": "daily", "status": "succeeded", "as_of": as_of,
            "started_at": "2024-11-20T00:00:00Z", "shape": shape,
            "tables": [{"name": "m", "location": "", "version": 1, "rows": 0}], "state": [state.clone()],
        }))
        .expect("summary")
    };
    let as_of: NaiveDate = "2024-11-21".parse().expect("date");
    let pending = |ahead: &ReadAhead| ahead.0.lock().expect("lock").0.len();

    // November was open in a base as of 2024-11-20: only October is read ahead.
    let ahead = ReadAhead::start(&[run("s1", "2024-11-20")], "daily", "s1", as_of, &warehouse, &[]);
    assert_eq!(pending(&ahead), 1);
    // A model incremental by day keeps the open month's rows too.
    assert_eq!(pending(&ReadAhead::start(&[run("s1", "2024-11-20")], "daily", "s1", as_of, &warehouse, &["m"])), 2);
    assert_eq!(pending(&ReadAhead::start(&[run("s1", "2024-11-20")], "daily", "s1", as_of, &warehouse, &["other"])), 1);
    let rows = |b: Vec<RecordBatch>| b.iter().map(|b| b.num_rows()).sum::<usize>();
    assert_eq!(rows(ahead.read(&warehouse, october).await.expect("read ahead")), 1);
    assert_eq!(pending(&ahead), 0, "a file read ahead is taken once");
    assert_eq!(rows(ahead.read(&warehouse, november).await.expect("read now")), 1);

    // Other SQL, or a base as of a later date: nothing is read ahead.
    assert_eq!(pending(&ReadAhead::start(&[run("s0", "2024-11-20")], "daily", "s1", as_of, &warehouse, &["m"])), 0);
    assert_eq!(pending(&ReadAhead::start(&[run("s1", "2024-11-22")], "daily", "s1", as_of, &warehouse, &["m"])), 0);

    // A file changed after it was written is an error when read ahead too.
    change_one_byte(&warehouse, &october.path);
    let ahead = ReadAhead::start(&[run("s1", "2024-11-20")], "daily", "s1", as_of, &warehouse, &[]);
    let err = ahead.read(&warehouse, october).await.expect_err("changed");
    assert!(err.to_string().contains("changed since they were written"), "{err}");
}

#[test]
fn month_start_is_the_first_day() {
    let d = |s: &str| s.parse::<NaiveDate>().expect("date");
    assert_eq!(month_start(d("2026-11-15")), d("2026-11-01"));
    assert_eq!(month_start(d("2026-11-01")), d("2026-11-01"));
    assert_eq!(month_start(d("2026-10-31") + Days::new(1)), d("2026-11-01"));
}

/// A state kept in one file (by builds before state was kept per month)
/// still reads, but is not complete: a run does not keep its rows and
/// rebuilds instead.
#[test]
fn a_state_kept_in_one_file_is_not_kept() {
    let old: State = serde_json::from_value(serde_json::json!({"name": "m", "path": "_state/m/r0.arrow", "rows": 12})).expect("old state");
    assert!(!old.is_complete());
    assert_eq!(old.paths().count(), 0);
    let part = StatePart {
        month: "2024-10-01".parse().expect("date"),
        path: "_state/m/2024-10.r1.arrow".into(),
        rows: 12,
        xxh3: None,
    };
    let new = State {
        name: "m".into(),
        rows: 12,
        parts: vec![part],
    };
    assert!(new.is_complete());
}
