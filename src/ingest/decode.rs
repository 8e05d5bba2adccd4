//! Decoding raw objects into rows: format and compression by extension
//! (EVENTS.md "Files"), JSON Lines / CSV / Parquet, row numbering and blank
//! lines (precise rules 1-5, 14). A decoder hands every row to a sink, in row
//! order, as a [`RawRecord`] or as malformed; it never validates values. An
//! error returned from [`decode`] means the object is unreadable as a whole.

use super::fields::{Field, RawRecord, Value, FIELD_COUNT};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, TimeUnit};
use bytes::Bytes;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use std::io::{BufRead, BufReader, Read};

/// The record format of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    JsonLines,
    Csv,
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Format and compression from an object's name (case-insensitive), or `None`
/// for an extension tenure does not read.
pub fn detect(path: &str) -> Option<(Format, Compression)> {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    let (stem, compression) = if let Some(s) = name.strip_suffix(".gz") {
        (s, Compression::Gzip)
    } else if let Some(s) = name.strip_suffix(".zst") {
        (s, Compression::Zstd)
    } else {
        (name.as_str(), Compression::None)
    };
    let format = if stem.ends_with(".jsonl") || stem.ends_with(".ndjson") || stem.ends_with(".json") {
        Format::JsonLines
    } else if stem.ends_with(".csv") {
        Format::Csv
    } else if stem.ends_with(".parquet") && compression == Compression::None {
        Format::Parquet
    } else {
        return None;
    };
    Some((format, compression))
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot decompress or read: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot read csv: {0}")]
    Csv(#[from] csv::Error),
    #[error("cannot read parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("cannot read parquet: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// One decoded row, handed to the sink. `raw` renders the row's source text
/// (called only for rejected rows, so Parquet and CSV pay for it only then).
pub struct Row<'r, 'a> {
    pub number: i64,
    pub record: Result<RawRecord<'a>, String>,
    pub raw: &'r mut dyn FnMut() -> String,
}

/// Decode a whole object, calling `sink` for every row in order.
pub fn decode(
    bytes: Bytes,
    format: Format,
    compression: Compression,
    sink: &mut dyn FnMut(Row<'_, '_>),
) -> Result<(), DecodeError> {
    if format == Format::JsonLines && compression == Compression::None {
        decode_json_slice(&bytes, sink);
        return Ok(());
    }
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(std::io::Cursor::new(bytes.clone())),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(std::io::Cursor::new(
            bytes.clone(),
        ))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(std::io::Cursor::new(
            bytes.clone(),
        ))?),
    };
    match format {
        Format::JsonLines => decode_json_lines(BufReader::with_capacity(1 << 16, reader), sink),
        Format::Csv => decode_csv(BufReader::with_capacity(1 << 16, reader), sink),
        Format::Parquet => decode_parquet(bytes, sink),
    }
}

fn decode_json_lines(mut reader: impl BufRead, sink: &mut dyn FnMut(Row<'_, '_>)) -> Result<(), DecodeError> {
    let mut buf = Vec::with_capacity(1024);
    let mut number = 0i64;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        number += 1;
        json_line(number, &buf, sink);
    }
}

/// The lines of an uncompressed object, straight from its bytes (no copy).
fn decode_json_slice(bytes: &[u8], sink: &mut dyn FnMut(Row<'_, '_>)) {
    let mut number = 0i64;
    let mut rest = bytes;
    while !rest.is_empty() {
        let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
        number += 1;
        json_line(number, &rest[..end], sink);
        rest = &rest[end..];
    }
}

/// One line (with its line break, if any) of a JSON Lines object.
fn json_line(number: i64, line: &[u8], sink: &mut dyn FnMut(Row<'_, '_>)) {
    let mut line = line;
    if number == 1 {
        line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    }
    line = line.strip_suffix(b"\n").unwrap_or(line);
    line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let record = match std::str::from_utf8(line) {
        Ok(text) => parse_json_object(text),
        Err(_) => Err("line is not valid UTF-8".to_string()),
    };
    let mut raw = || String::from_utf8_lossy(line).into_owned();
    sink(Row {
        number,
        record,
        raw: &mut raw,
    });
}

/// Parse one JSON Lines record: a JSON object, duplicate keys last-wins, only
/// the known fields kept (their raw JSON text classified into a [`Value`]).
pub fn parse_json_object(text: &str) -> Result<RawRecord<'_>, String> {
    match parse_flat_object(text) {
        Some(record) => Ok(record),
        None => parse_json_full(text),
    }
}

/// [`parse_json_object`] by serde_json, for any line.
fn parse_json_full(text: &str) -> Result<RawRecord<'_>, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = de
        .deserialize_map(ObjectVisitor)
        .map_err(|e| format!("not a JSON object: {e}"))?;
    de.end().map_err(|e| format!("not a JSON object: {e}"))?;
    let mut record = RawRecord::default();
    for (i, raw) in fields.into_iter().enumerate() {
        if let Some(raw) = raw {
            record.values[i] = classify_json(raw.get())?;
        }
    }
    Ok(record)
}

/// The one-pass reading of [`parse_json_object`] for the lines nearly every
/// object holds: one flat JSON object whose keys and string values have no
/// escapes or control characters and whose other values are numbers, `true`,
/// `false` or `null`. `None` for anything else (an escape, a nested value, a
/// syntax error): the full parser then reads the line, so both readings agree
/// on every line this one accepts.
fn parse_flat_object(text: &str) -> Option<RawRecord<'_>> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut record = RawRecord::default();
    if b.get(i) == Some(&b'}') {
        return (skip_ws(b, i + 1) == b.len()).then_some(record);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let (key, next) = plain_string(text, i)?;
        i = skip_ws(b, next);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let (value, next) = plain_scalar(text, skip_ws(b, i + 1))?;
        if let Some(field) = Field::from_name(key) {
            record.values[field as usize] = value;
        }
        i = skip_ws(b, next);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return (skip_ws(b, i + 1) == b.len()).then_some(record),
            _ => return None,
        }
    }
}

/// JSON whitespace from `i` on: the index of the next other byte (or the end).
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The string starting with the quote at `start`, if it has no escape or
/// control character: its text and the index after its closing quote.
fn plain_string(text: &str, start: usize) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    let body = start + 1;
    let end = body + memchr::memchr2(b'"', b'\\', b.get(body..)?)?;
    if b[end] != b'"' {
        return None;
    }
    let s = &text[body..end];
    if s.bytes().any(|c| c < 0x20) {
        return None;
    }
    Some((s, end + 1))
}

/// A scalar JSON value at `i` (no escapes in strings), classified as
/// [`classify_json`] does, and the index after it.
fn plain_scalar(text: &str, i: usize) -> Option<(Value<'_>, usize)> {
    let b = text.as_bytes();
    let literal = |word: &[u8], value: Value<'static>| b[i..].starts_with(word).then(|| (value, i + word.len()));
    match *b.get(i)? {
        b'"' => {
            let (s, next) = plain_string(text, i)?;
            let value = if s.is_empty() { Value::Missing } else { Value::Text(Cow::Borrowed(s)) };
            Some((value, next))
        }
        b'n' => literal(b"null", Value::Missing),
        b't' => literal(b"true", Value::Bool(true)),
        b'f' => literal(b"false", Value::Bool(false)),
        b'-' | b'0'..=b'9' => {
            let end = number_end(b, i)?;
            Some((Value::Number(Cow::Borrowed(&text[i..end])), end))
        }
        _ => None,
    }
}

/// The end of the JSON number token at `i` (RFC 8259 grammar), or `None`.
fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |mut i: usize| {
        while matches!(b.get(i), Some(b'0'..=b'9')) {
            i += 1;
        }
        i
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    i = match *b.get(i)? {
        b'0' => i + 1,
        b'1'..=b'9' => digits(i + 1),
        _ => return None,
    };
    if b.get(i) == Some(&b'.') {
        let end = digits(i + 1);
        if end == i + 1 {
            return None;
        }
        i = end;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits(i);
        if end == i {
            return None;
        }
        i = end;
    }
    Some(i)
}

fn classify_json(raw: &str) -> Result<Value<'_>, String> {
    Ok(match raw.as_bytes().first() {
        Some(b'"') => {
            let s: Cow<'_, str> = match serde_json::from_str::<&str>(raw) {
                Ok(s) => Cow::Borrowed(s),
                Err(_) => Cow::Owned(serde_json::from_str::<String>(raw).map_err(|e| e.to_string())?),
            };
            if s.is_empty() {
                Value::Missing
            } else {
                Value::Text(s)
            }
        }
        Some(b'n') => Value::Missing,
        Some(b't') => Value::Bool(true),
        Some(b'f') => Value::Bool(false),
        Some(b'{' | b'[') => Value::Compound,
        _ => Value::Number(Cow::Borrowed(raw)),
    })
}

type Fields<'a> = [Option<&'a serde_json::value::RawValue>; FIELD_COUNT];

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields: Fields<'de> = [None; FIELD_COUNT];
        while let Some(key) = map.next_key::<Key>()? {
            match key.0 {
                Some(field) => fields[field as usize] = Some(map.next_value()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }
}

struct Key(Option<Field>);

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(Field::from_name(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

fn decode_csv(reader: impl Read, sink: &mut dyn FnMut(Row<'_, '_>)) -> Result<(), DecodeError> {
    let mut reader = BomSkipping::new(reader);
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(&mut reader);
    let headers = csv.byte_headers()?.clone();
    let columns: Vec<Option<Field>> = headers
        .iter()
        .map(|h| std::str::from_utf8(h).ok().and_then(Field::from_name))
        .collect();
    let mut record = csv::ByteRecord::new();
    let mut number = 0i64;
    while csv.read_byte_record(&mut record)? {
        number += 1;
        let parsed = if record.len() != headers.len() {
            Err(format!(
                "record has {} cells, the header has {}",
                record.len(),
                headers.len()
            ))
        } else {
            csv_record(&record, &columns)
        };
        let mut raw = || render_csv(&record);
        sink(Row {
            number,
            record: parsed,
            raw: &mut raw,
        });
    }
    Ok(())
}

fn csv_record<'a>(record: &'a csv::ByteRecord, columns: &[Option<Field>]) -> Result<RawRecord<'a>, String> {
    let mut out = RawRecord::default();
    for (cell, column) in record.iter().zip(columns) {
        let Some(field) = column else { continue };
        let text = std::str::from_utf8(cell).map_err(|_| "cell is not valid UTF-8".to_string())?;
        out.set(
            *field,
            if text.is_empty() {
                Value::Missing
            } else {
                Value::Text(Cow::Borrowed(text))
            },
        );
    }
    Ok(out)
}

fn render_csv(record: &csv::ByteRecord) -> String {
    let mut writer = csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
    if writer.write_byte_record(record).is_err() {
        return String::new();
    }
    let bytes = writer.into_inner().unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    text.trim_end_matches(['\r', '\n']).to_string()
}

/// Skips a UTF-8 byte-order mark at the start of a stream.
struct BomSkipping<R> {
    inner: R,
    checked: bool,
    pending: Vec<u8>,
}

impl<R: Read> BomSkipping<R> {
    fn new(inner: R) -> Self {
        BomSkipping {
            inner,
            checked: false,
            pending: Vec::new(),
        }
    }
}

impl<R: Read> Read for BomSkipping<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.checked {
            self.checked = true;
            let mut head = [0u8; 3];
            let mut filled = 0;
            while filled < 3 {
                let n = self.inner.read(&mut head[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if &head[..filled] != b"\xEF\xBB\xBF" {
                self.pending.extend_from_slice(&head[..filled]);
            }
        }
        if !self.pending.is_empty() {
            let n = buf.len().min(self.pending.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

fn decode_parquet(bytes: Bytes, sink: &mut dyn FnMut(Row<'_, '_>)) -> Result<(), DecodeError> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)?
        .with_batch_size(8192)
        .build()?;
    let mut number = 0i64;
    for batch in reader {
        let batch = batch?;
        let schema = batch.schema();
        let columns: Vec<(usize, Field)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter_map(|(i, f)| Field::from_name(f.name()).map(|field| (i, field)))
            .collect();
        for row in 0..batch.num_rows() {
            number += 1;
            let mut record = RawRecord::default();
            for &(i, field) in &columns {
                record.set(field, parquet_value(batch.column(i).as_ref(), row));
            }
            let mut raw = || render_parquet_row(&batch, row);
            sink(Row {
                number,
                record: Ok(record),
                raw: &mut raw,
            });
        }
    }
    Ok(())
}

/// One cell of a Parquet column as a [`Value`], typed where Parquet is typed.
fn parquet_value(array: &dyn Array, row: usize) -> Value<'static> {
    if array.is_null(row) {
        return Value::Missing;
    }
    let display = || {
        arrow::util::display::array_value_to_string(array, row).unwrap_or_default()
    };
    match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Value::text(display()),
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => Value::Number(Cow::Owned(display())),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let v = match array.data_type() {
                DataType::Float32 => array.as_primitive::<arrow::datatypes::Float32Type>().value(row) as f64,
                DataType::Float64 => array.as_primitive::<arrow::datatypes::Float64Type>().value(row),
                _ => display().parse().unwrap_or(f64::NAN),
            };
            // Rust's Display never uses exponents, and NaN/inf fail the number
            // grammar, so a non-finite float is a bad number like in JSON.
            Value::Number(Cow::Owned(format!("{v}")))
        }
        DataType::Timestamp(unit, _) => {
            let v = match unit {
                TimeUnit::Second => array.as_primitive::<arrow::datatypes::TimestampSecondType>().value(row).checked_mul(1_000_000),
                TimeUnit::Millisecond => array.as_primitive::<arrow::datatypes::TimestampMillisecondType>().value(row).checked_mul(1_000),
                TimeUnit::Microsecond => Some(array.as_primitive::<arrow::datatypes::TimestampMicrosecondType>().value(row)),
                TimeUnit::Nanosecond => Some(array.as_primitive::<arrow::datatypes::TimestampNanosecondType>().value(row).div_euclid(1_000)),
            };
            match v {
                Some(us) => Value::Instant(us),
                None => Value::Text(Cow::Owned(display())),
            }
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            Value::Compound
        }
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::ListView(_)
        | DataType::FixedSizeList(_, _)
        | DataType::Struct(_)
        | DataType::Map(_, _)
        | DataType::Union(_, _) => Value::Compound,
        DataType::Dictionary(_, _) => {
            let s = display();
            Value::text(s)
        }
        // Dates, times and durations read as their text: a date-only value is
        // then a bad timestamp, like in JSON.
        _ => Value::text(display()),
    }
}

fn render_parquet_row(batch: &RecordBatch, row: usize) -> String {
    let slice = batch.slice(row, 1);
    let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
    if writer.write(&slice).is_err() || writer.finish().is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&writer.into_inner()).trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(bytes: &[u8], format: Format) -> Vec<(i64, Result<String, String>, String)> {
        rows_of(Bytes::copy_from_slice(bytes), format, Compression::None)
    }

    fn gzipped(bytes: &[u8]) -> Bytes {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).expect("gzip");
        Bytes::from(gz.finish().expect("gzip"))
    }

    fn rows_of(bytes: Bytes, format: Format, compression: Compression) -> Vec<(i64, Result<String, String>, String)> {
        let mut out = Vec::new();
        decode(bytes, format, compression, &mut |row| {
            let record = row
                .record
                .map(|r| format!("{:?}", r.get(Field::EventId)));
            out.push((row.number, record, (row.raw)()));
        })
        .expect("decodes");
        out
    }

    #[test]
    fn extensions() {
        assert_eq!(detect("a/b.JSONL.GZ"), Some((Format::JsonLines, Compression::Gzip)));
        assert_eq!(detect("b.ndjson"), Some((Format::JsonLines, Compression::None)));
        assert_eq!(detect("b.json.zst"), Some((Format::JsonLines, Compression::Zstd)));
        assert_eq!(detect("b.Csv"), Some((Format::Csv, Compression::None)));
        assert_eq!(detect("b.parquet"), Some((Format::Parquet, Compression::None)));
        assert_eq!(detect("b.txt"), None);
        assert_eq!(detect("b.gz"), None);
    }

    #[test]
    fn json_lines_numbering_blank_lines_and_bom() {
        let input = b"\xEF\xBB\xBF{\"event_id\":\"a\"}\r\n\r\n  \n{\"event_id\":1,\"event_id\":\"b\"}\nNaN\n[1]\n{\"event_id\":\"c\"";
        let got = rows(input, Format::JsonLines);
        assert_eq!(got.len(), 5);
        assert_eq!(got[0].0, 1);
        assert_eq!(got[1].0, 4);
        assert_eq!(got[1].1.as_deref(), Ok("Text(\"b\")"));
        assert!(got[2].1.is_err());
        assert!(got[3].1.is_err());
        assert_eq!(got[4].0, 7);
        assert!(got[4].1.is_err(), "unterminated object is malformed");
        assert_eq!(got[0].2, "{\"event_id\":\"a\"}", "raw text without BOM and line break");
        // Uncompressed objects are read in place, compressed ones through a
        // reader: the same rows either way.
        assert_eq!(rows_of(gzipped(input), Format::JsonLines, Compression::Gzip), got);
    }

    #[test]
    fn json_values_are_classified() {
        let r = parse_json_object(r#"{"event_id": 123, "customer_id": "", "plan": null, "mrr": 1.50, "segment": {"a":1}, "x": [1,2]}"#)
            .expect("object");
        assert_eq!(r.get(Field::EventId), &Value::Number(Cow::Borrowed("123")));
        assert_eq!(r.get(Field::CustomerId), &Value::Missing);
        assert_eq!(r.get(Field::Plan), &Value::Missing);
        assert_eq!(r.get(Field::Mrr), &Value::Number(Cow::Borrowed("1.50")));
        assert_eq!(r.get(Field::Segment), &Value::Compound);
        assert!(parse_json_object(r#"{"mrr": Infinity}"#).is_err());
        assert!(parse_json_object(r#""text""#).is_err());
    }

    /// Where the one-pass reading accepts a line, serde_json reads the same
    /// values from it.
    fn agrees(text: &str) -> bool {
        let Some(fast) = parse_flat_object(text) else { return false };
        match parse_json_full(text) {
            Ok(full) => assert_eq!(fast.values, full.values, "{text:?}"),
            Err(e) => panic!("{text:?}: read in one pass, but serde_json says {e}"),
        }
        true
    }

    #[test]
    fn the_one_pass_reading_agrees_with_serde_json() {
        let flat = [
            r#"{"event_id":"e1","event_type":"usage.login","customer_id":"cus_1","occurred_at":"2026-01-01T00:00:00Z","quantity":1.5e-3}"#,
            r#" { "event_id" : "e1" , "mrr" : -0.50 , "seats": 0, "x": true, "y": false, "plan": null, "event_id": "e2" } "#,
            r#"{}"#,
            "{\t\"comment\":\"caf\u{e9} \u{1F600}\",\"score\":10E+2}\r",
        ];
        for text in flat {
            assert!(agrees(text), "{text:?} is read in one pass");
        }
        // Lines left to serde_json: escapes, nested values, and every syntax
        // error (which the one-pass reading must not accept).
        let other = [
            r#"{"event_id":"a\"b"}"#, r#"{"event\u005fid":"a"}"#, r#"{"segment":{"a":1}}"#, r#"{"x":[1]}"#,
            r#"{"mrr":01}"#, r#"{"mrr":1.}"#, r#"{"mrr":.5}"#, r#"{"mrr":1e}"#, r#"{"mrr":-}"#, r#"{"mrr":+1}"#,
            r#"{"mrr":NaN}"#, r#"{"a":tru}"#, r#"{"a":nulls}"#, r#"{"a":1,}"#, r#"{,}"#, r#"{"a" 1}"#, r#"{"a":1} x"#,
            r#"{"a":1}{"#, r#"{"a":1"#, r#"{"a":"#, r#"{"a"#, r#"{"#, r#"[1]"#, r#""x""#, "{\"a\":\"\u{1}\"}", "{\"a\":1}\u{c}",
        ];
        for text in other {
            assert!(!agrees(text), "{text:?} is left to serde_json");
        }
        // Mutations of a typical line: insert, delete or replace one byte with
        // one that matters to JSON; wherever the one-pass reading still
        // accepts the line, serde_json must read the same values.
        let base = r#"{"event_id":"evt_1","event_type":"payment.succeeded","customer_id":"cus_00001","occurred_at":"2026-03-01T10:00:00Z","amount":-12.50e1,"x":null,"seats":true}"#;
        let alphabet = b"{}[]\",:\\ \t0123456789eE+-.ntrufals\x01x";
        let mut rng = fastrand::Rng::with_seed(0x9E37_79B9_7F4A_7C15);
        let mut next = |n: usize| rng.usize(..n);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut bytes = base.as_bytes().to_vec();
            for _ in 0..1 + next(2) {
                let at = next(bytes.len());
                let byte = alphabet[next(alphabet.len())];
                match next(3) {
                    0 => bytes.insert(at, byte),
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes[at] = byte,
                }
            }
            if let Ok(text) = std::str::from_utf8(&bytes) {
                accepted += agrees(text) as usize;
            }
        }
        assert!(accepted > 1_000, "the mutations keep many lines readable in one pass ({accepted})");
    }

    #[test]
    fn csv_cells_and_widths() {
        let input = b"\xEF\xBB\xBFevent_id,customer_id,extra\na,,x\nb,c\n\"q,1\",d,e\n";
        let got = rows(input, Format::Csv);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].1.as_deref(), Ok("Text(\"a\")"));
        assert!(got[1].1.is_err());
        assert_eq!(got[1].0, 2);
        assert_eq!(got[2].2, "\"q,1\",d,e");
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let result = decode(Bytes::from_static(b"\x1f\x8b\x08\x00garbage"), Format::JsonLines, Compression::Gzip, &mut |_| {});
        assert!(result.is_err());
    }
}
