//! Decoding raw objects into rows: format and compression by extension
//! (EVENTS.md "Files"), JSON Lines / CSV / Parquet, row numbering and blank
//! lines (precise rules 1-5, 14). A decoder hands every row to a sink, in row
//! order, as a [`RawRecord`] or as malformed; it never validates values. An
//! error returned from [`decode`] means the object is unreadable as a whole.
//!
//! Decoding is bounded by [`Limits`], whatever the input: compressed objects
//! are read as a stream and counted, so one over `max_object_bytes` once
//! decompressed stops there; a line or record over `max_record_bytes` is
//! skipped without being held (only its first [`RAW_PREFIX_BYTES`] are kept)
//! and handed on as malformed.

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

/// The most one object may hold (`[ingest]` `max_record_bytes` and
/// `max_object_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one JSON Lines line (line break excluded) or one CSV record;
    /// for Parquet, of the text of one row.
    pub max_record_bytes: u64,
    /// Bytes of one object once decompressed (for Parquet: of its data, as
    /// its footer states them uncompressed).
    pub max_object_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_record_bytes: 16 << 20,
            max_object_bytes: 16 << 30,
        }
    }
}

impl Limits {
    fn record(&self) -> usize {
        usize::try_from(self.max_record_bytes).unwrap_or(usize::MAX)
    }
}

/// The bytes of a row over `max_record_bytes` that its reject keeps as `raw`.
pub const RAW_PREFIX_BYTES: usize = 4096;

/// Parquet rows decoded at once, at most; fewer where rows are wide, so that
/// one batch holds about [`PARQUET_BATCH_BYTES`].
const PARQUET_BATCH_ROWS: usize = 8192;
const PARQUET_BATCH_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot decompress or read: {0}")]
    Io(#[source] std::io::Error),
    #[error("{what} is more than ingest.max_object_bytes ({limit} bytes)")]
    TooLarge { what: String, limit: u64 },
    #[error("the csv header is more than ingest.max_record_bytes ({limit} bytes)")]
    HeaderTooLong { limit: u64 },
    #[error("cannot read parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("cannot read parquet: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl From<std::io::Error> for DecodeError {
    fn from(e: std::io::Error) -> DecodeError {
        match e.get_ref().and_then(|inner| inner.downcast_ref::<OverLimit>()) {
            Some(over) => DecodeError::TooLarge {
                what: "the decompressed object".to_string(),
                limit: over.0,
            },
            None => DecodeError::Io(e),
        }
    }
}

/// The error a [`Capped`] reader returns past its limit.
#[derive(Debug)]
struct OverLimit(u64);

impl fmt::Display for OverLimit {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "more than {} bytes", self.0)
    }
}

impl std::error::Error for OverLimit {}

/// A reader that fails with [`OverLimit`] once more than `limit` bytes came
/// through it.
struct Capped<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Capped<R> {
    fn new(inner: R, limit: u64) -> Self {
        Capped { inner, left: limit, limit }
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Ask for at most one byte past the limit: enough to know it is crossed.
        let want = buf.len().min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            return Err(std::io::Error::other(OverLimit(self.limit)));
        }
        self.left -= n as u64;
        Ok(n)
    }
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
    limits: Limits,
    sink: &mut dyn FnMut(Row<'_, '_>),
) -> Result<(), DecodeError> {
    if compression == Compression::None && bytes.len() as u64 > limits.max_object_bytes {
        return Err(DecodeError::TooLarge {
            what: format!("the object ({} bytes)", bytes.len()),
            limit: limits.max_object_bytes,
        });
    }
    if format == Format::JsonLines && compression == Compression::None {
        decode_json_slice(&bytes, limits, sink);
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
    let reader = Capped::new(reader, limits.max_object_bytes);
    match format {
        Format::JsonLines => decode_json_lines(BufReader::with_capacity(1 << 16, reader), limits, sink),
        Format::Csv => decode_csv(BufReader::with_capacity(1 << 16, BomSkipping::new(reader)), limits, sink),
        Format::Parquet => decode_parquet(bytes, limits, sink),
    }
}

/// One line from a [`LineReader`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// The whole line, with its line break if it has one.
    Whole(&'a [u8]),
    /// A line longer than the limit, read past without being held.
    TooLong {
        /// Its first bytes (at most the prefix length the reader keeps).
        prefix: &'a [u8],
        /// Its length in bytes, line break excluded.
        len: u64,
        /// Whether it holds only ASCII whitespace (a blank line, rule 1).
        blank: bool,
    },
}

/// Reads lines of at most `max` bytes (line break excluded) from a stream; a
/// longer one is read to its end, keeping only its first `prefix` bytes, so
/// memory stays below `max` plus the inner reader's buffer whatever the input.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    max: usize,
    prefix: usize,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, max: usize, prefix: usize) -> Self {
        LineReader {
            inner,
            buf: Vec::with_capacity(1024),
            max,
            prefix: prefix.min(max),
        }
    }

    /// The next line, or `None` at the end of the stream.
    pub fn next_line(&mut self) -> std::io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let mut len = 0u64;
        let mut read_any = false;
        let mut too_long = false;
        let mut blank = true;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                break;
            }
            read_any = true;
            let newline = memchr::memchr(b'\n', chunk);
            let take = newline.map_or(chunk.len(), |i| i + 1);
            let content = &chunk[..newline.unwrap_or(take)];
            len += content.len() as u64;
            if too_long {
                blank = blank && content.iter().all(u8::is_ascii_whitespace);
            } else {
                self.buf.extend_from_slice(&chunk[..take]);
                if len > self.max as u64 {
                    too_long = true;
                    let line = &self.buf[..self.buf.len() - (take - content.len())];
                    blank = line.iter().all(u8::is_ascii_whitespace);
                    self.buf.truncate(self.prefix);
                }
            }
            self.inner.consume(take);
            if newline.is_some() {
                break;
            }
        }
        Ok(match (read_any, too_long) {
            (false, _) => None,
            (true, false) => Some(Line::Whole(&self.buf)),
            (true, true) => Some(Line::TooLong {
                prefix: &self.buf,
                len,
                blank,
            }),
        })
    }
}

fn decode_json_lines(reader: impl BufRead, limits: Limits, sink: &mut dyn FnMut(Row<'_, '_>)) -> Result<(), DecodeError> {
    let mut lines = LineReader::new(reader, limits.record(), RAW_PREFIX_BYTES);
    let mut number = 0i64;
    while let Some(line) = lines.next_line()? {
        number += 1;
        match line {
            Line::Whole(line) => json_line(number, line, sink),
            Line::TooLong { blank: true, .. } => {}
            Line::TooLong { prefix, len, blank: false } => {
                too_long(number, "line", len, limits.max_record_bytes, prefix, sink)
            }
        }
    }
    Ok(())
}

/// The lines of an uncompressed object, straight from its bytes (no copy).
fn decode_json_slice(bytes: &[u8], limits: Limits, sink: &mut dyn FnMut(Row<'_, '_>)) {
    let mut number = 0i64;
    let mut rest = bytes;
    while !rest.is_empty() {
        let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
        number += 1;
        let line = &rest[..end];
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        if content.len() as u64 > limits.max_record_bytes {
            if !content.iter().all(u8::is_ascii_whitespace) {
                too_long(number, "line", content.len() as u64, limits.max_record_bytes, &content[..RAW_PREFIX_BYTES.min(content.len())], sink);
            }
        } else {
            json_line(number, line, sink);
        }
        rest = &rest[end..];
    }
}

/// Hand on a row over `max_record_bytes` as malformed, its raw text cut to
/// its first bytes.
fn too_long(number: i64, what: &str, len: u64, max: u64, prefix: &[u8], sink: &mut dyn FnMut(Row<'_, '_>)) {
    let kept = text_prefix(prefix, RAW_PREFIX_BYTES);
    let detail = format!(
        "{what} is {len} bytes, more than ingest.max_record_bytes ({max} bytes); raw holds its first {} bytes",
        kept.len()
    );
    let mut raw = || kept.clone();
    sink(Row {
        number,
        record: Err(detail),
        raw: &mut raw,
    });
}

/// At most the first `max` bytes of `bytes` as text, cut before a character
/// that the cut would split.
fn text_prefix(bytes: &[u8], max: usize) -> String {
    let mut cut = &bytes[..max.min(bytes.len())];
    if let Err(e) = std::str::from_utf8(cut) {
        if e.error_len().is_none() {
            cut = &cut[..e.valid_up_to()];
        }
    }
    String::from_utf8_lossy(cut).into_owned()
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

fn decode_csv(reader: impl BufRead, limits: Limits, sink: &mut dyn FnMut(Row<'_, '_>)) -> Result<(), DecodeError> {
    let mut records = CsvRecords::new(reader, limits.record());
    let mut record = csv::ByteRecord::new();
    let headers = match records.next(&mut record)? {
        None => return Ok(()),
        Some(CsvRead::TooLong { .. }) => {
            return Err(DecodeError::HeaderTooLong {
                limit: limits.max_record_bytes,
            })
        }
        Some(CsvRead::Record) => record.clone(),
    };
    let columns: Vec<Option<Field>> = headers
        .iter()
        .map(|h| std::str::from_utf8(h).ok().and_then(Field::from_name))
        .collect();
    let mut number = 0i64;
    while let Some(read) = records.next(&mut record)? {
        number += 1;
        if let CsvRead::TooLong { len, cells } = read {
            let prefix = records.raw_prefix();
            let prefix = prefix.trim_ascii();
            match cells {
                None => too_long(number, "record", len, limits.max_record_bytes, prefix, sink),
                Some(cells) => {
                    let kept = text_prefix(prefix, RAW_PREFIX_BYTES);
                    let detail = format!(
                        "record has more than {cells} cells, the header has {}; raw holds its first {} bytes",
                        headers.len(),
                        kept.len()
                    );
                    sink(Row {
                        number,
                        record: Err(detail),
                        raw: &mut || kept.clone(),
                    });
                }
            }
            continue;
        }
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

/// What [`CsvRecords::next`] read.
#[derive(Debug, PartialEq, Eq)]
enum CsvRead {
    /// A record, now in the caller's [`csv::ByteRecord`].
    Record,
    /// A record over the limit, read past without being held: its length in
    /// bytes of input, and, where it is the number of its cells that is over
    /// (each takes room of its own), how many it has at least.
    TooLong { len: u64, cells: Option<usize> },
}

/// CSV records read with `csv_core` (the parser of the `csv` crate, with the
/// same settings: comma, double quotes, any line break, blank lines skipped),
/// bounded: a record over `max` bytes of input, a quoted cell spanning the
/// rest of the object included, is read to its end without being held.
struct CsvRecords<R> {
    inner: R,
    core: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    raw: Vec<u8>,
    max: usize,
}

impl<R: BufRead> CsvRecords<R> {
    fn new(inner: R, max: usize) -> Self {
        CsvRecords {
            inner,
            core: csv_core::Reader::new(),
            out: vec![0; 1024],
            ends: vec![0; 32],
            raw: Vec::with_capacity(RAW_PREFIX_BYTES),
            max,
        }
    }

    /// The first bytes of input of the last record read.
    fn raw_prefix(&self) -> &[u8] {
        &self.raw
    }

    /// Read the next record into `record`; `None` at the end of the input.
    fn next(&mut self, record: &mut csv::ByteRecord) -> std::io::Result<Option<CsvRead>> {
        use csv_core::ReadRecordResult as R;
        self.raw.clear();
        let (mut out_len, mut ends_len) = (0usize, 0usize);
        let mut len = 0u64;
        let mut cells = 0usize;
        let mut over: Option<Option<usize>> = None;
        // Each cell's end takes room beside its bytes: a record of commas alone
        // has as many cells as bytes.
        let max_cells = (self.max / std::mem::size_of::<usize>()).max(1);
        loop {
            let input = match self.inner.fill_buf() {
                Ok(input) => input,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let (result, nin, nout, nend) =
                self.core.read_record(input, &mut self.out[out_len..], &mut self.ends[ends_len..]);
            let keep = (RAW_PREFIX_BYTES - self.raw.len()).min(nin);
            self.raw.extend_from_slice(&input[..keep]);
            self.inner.consume(nin);
            len += nin as u64;
            cells += nend;
            // The ends csv_core writes count from the start of the record.
            out_len += nout;
            ends_len += nend;
            if over.is_none() {
                if len > self.max as u64 {
                    over = Some(None);
                } else if cells > max_cells {
                    over = Some(Some(cells));
                }
            }
            if over.is_some() {
                // Only count from here on.
                out_len = 0;
                ends_len = 0;
            }
            match result {
                R::InputEmpty => {}
                R::OutputFull => {
                    if over.is_none() {
                        let grown = self.out.len() * 2;
                        self.out.resize(grown, 0);
                    }
                }
                R::OutputEndsFull => {
                    if over.is_none() {
                        let grown = self.ends.len() * 2;
                        self.ends.resize(grown, 0);
                    }
                }
                R::Record => {
                    return Ok(Some(match over {
                        Some(cells) => CsvRead::TooLong { len, cells: cells.map(|_| max_cells) },
                        None => {
                            record.clear();
                            let mut start = 0;
                            for &end in &self.ends[..ends_len] {
                                record.push_field(&self.out[start..end]);
                                start = end;
                            }
                            CsvRead::Record
                        }
                    }))
                }
                R::End => return Ok(None),
            }
        }
    }
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

fn decode_parquet(bytes: Bytes, limits: Limits, sink: &mut dyn FnMut(Row<'_, '_>)) -> Result<(), DecodeError> {
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    // The footer states the size of the data uncompressed: an object over the
    // limit is refused before any page is decompressed, and a batch holds
    // about PARQUET_BATCH_BYTES of wide rows, not PARQUET_BATCH_ROWS of them.
    let (data, rows) = builder
        .metadata()
        .row_groups()
        .iter()
        .fold((0u64, 0u64), |(data, rows), g| {
            (data.saturating_add(g.total_byte_size().max(0) as u64), rows.saturating_add(g.num_rows().max(0) as u64))
        });
    if data > limits.max_object_bytes {
        return Err(DecodeError::TooLarge {
            what: format!("the data of the object ({data} bytes uncompressed)"),
            limit: limits.max_object_bytes,
        });
    }
    let row_bytes = (data / rows.max(1)).max(1);
    let batch_rows = (PARQUET_BATCH_BYTES / row_bytes).clamp(1, PARQUET_BATCH_ROWS as u64) as usize;
    let reader = builder.with_batch_size(batch_rows).build()?;
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
            let mut text = 0u64;
            for &(i, field) in &columns {
                let value = parquet_value(batch.column(i).as_ref(), row);
                if let Value::Text(s) | Value::Number(s) = &value {
                    text += s.len() as u64;
                }
                record.set(field, value);
            }
            if text > limits.max_record_bytes {
                let rendered = render_parquet_row(&batch, row);
                too_long(number, "the text of the row", text, limits.max_record_bytes, rendered.as_bytes(), sink);
                continue;
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
        decode(bytes, format, compression, Limits::default(), &mut |row| {
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

    /// Every line of `input` read by a [`LineReader`] with limit `max` over a
    /// buffer of `capacity` bytes, as (whole line or prefix, length, too long, blank).
    fn read_lines(input: &[u8], max: usize, prefix: usize, capacity: usize) -> Vec<(Vec<u8>, u64, bool, bool)> {
        let mut lines = LineReader::new(BufReader::with_capacity(capacity, input), max, prefix);
        let mut out = Vec::new();
        while let Some(line) = lines.next_line().expect("reads") {
            out.push(match line {
                Line::Whole(l) => (l.to_vec(), l.strip_suffix(b"\n").unwrap_or(l).len() as u64, false, false),
                Line::TooLong { prefix, len, blank } => (prefix.to_vec(), len, true, blank),
            });
        }
        out
    }

    #[test]
    fn line_reader_cuts_long_lines_and_keeps_their_length() {
        let input = b"abc\n12345\n123456\n      \n\n1234567";
        for capacity in [1, 2, 3, 7, 64] {
            let got = read_lines(input, 5, 2, capacity);
            let want: Vec<(Vec<u8>, u64, bool, bool)> = vec![
                (b"abc\n".to_vec(), 3, false, false),
                (b"12345\n".to_vec(), 5, false, false),
                (b"12".to_vec(), 6, true, false),
                (b"  ".to_vec(), 6, true, true),
                (b"\n".to_vec(), 0, false, false),
                (b"12".to_vec(), 7, true, false),
            ];
            assert_eq!(got, want, "buffer of {capacity} bytes");
        }
        assert!(read_lines(b"", 5, 2, 8).is_empty());
        // The line break does not count: a line of exactly the limit is whole.
        assert_eq!(read_lines(b"12345\r\n", 5, 2, 8)[0].2, true, "\\r counts, it is not the line break");
        assert_eq!(read_lines(b"1234\r\n", 5, 2, 8)[0].2, false);
    }

    /// Random lines and limits: the reader yields the lines `split` yields,
    /// whole where they fit and cut to their prefix where they do not.
    #[test]
    fn line_reader_agrees_with_splitting() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2_000 {
            let len = rng.usize(0..200);
            let input: Vec<u8> = (0..len).map(|_| *rng.choice(b"ab \n\r").unwrap_or(&b'a')).collect();
            let max = rng.usize(1..40);
            let prefix = rng.usize(0..10);
            let got = read_lines(&input, max, prefix, rng.usize(1..50));
            let mut want = Vec::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let end = rest.iter().position(|b| *b == b'\n').map_or(rest.len(), |i| i + 1);
                let line = &rest[..end];
                let content = line.strip_suffix(b"\n").unwrap_or(line);
                want.push(if content.len() > max {
                    (content[..prefix.min(max)].to_vec(), content.len() as u64, true, content.iter().all(u8::is_ascii_whitespace))
                } else {
                    (line.to_vec(), content.len() as u64, false, false)
                });
                rest = &rest[end..];
            }
            assert_eq!(got, want, "{:?} max {max} prefix {prefix}", String::from_utf8_lossy(&input));
        }
    }

    fn limits(record: u64, object: u64) -> Limits {
        Limits {
            max_record_bytes: record,
            max_object_bytes: object,
        }
    }

    /// Rows as (number, malformed detail or event id, raw) under `limits`.
    fn rows_within(bytes: Bytes, format: Format, compression: Compression, limits: Limits) -> Result<Vec<(i64, Result<String, String>, String)>, DecodeError> {
        let mut out = Vec::new();
        decode(bytes, format, compression, limits, &mut |row| {
            let record = row.record.map(|r| format!("{:?}", r.get(Field::EventId)));
            out.push((row.number, record, (row.raw)()));
        })?;
        Ok(out)
    }

    /// A decompression bomb: one 64 MiB line in a gzip of 64 KiB. It is one
    /// malformed row with its length, its raw text cut; the lines around it
    /// are read as usual, compressed or not.
    #[test]
    fn a_line_over_the_limit_is_malformed_and_cut() {
        let mut input = b"{\"event_id\":\"a\"}\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 64 << 20));
        input.extend(b"\n   \n{\"event_id\":\"b\"}\n");
        let small = limits(1 << 20, 1 << 30);
        let zipped = gzipped(&input);
        assert!(zipped.len() < 1 << 20, "a bomb: {} bytes compressed", zipped.len());
        for (bytes, compression) in [(zipped, Compression::Gzip), (Bytes::from(input), Compression::None)] {
            let got = rows_within(bytes, Format::JsonLines, compression, small).expect("decodes");
            assert_eq!(got.len(), 3, "{compression:?}");
            assert_eq!((got[0].0, got[0].1.as_deref()), (1, Ok("Text(\"a\")")));
            assert_eq!(got[1].0, 2);
            let detail = got[1].1.as_ref().expect_err("malformed");
            assert!(detail.contains("67108864 bytes") && detail.contains("max_record_bytes (1048576 bytes)"), "{detail}");
            assert_eq!(got[1].2, "x".repeat(RAW_PREFIX_BYTES));
            assert_eq!((got[2].0, got[2].1.as_deref()), (4, Ok("Text(\"b\")")));
        }
        // A blank line is skipped however long (rule 1).
        let blank = gzipped(&[b' '; 5000]);
        assert!(rows_within(blank, Format::JsonLines, Compression::Gzip, limits(100, 1 << 20)).expect("decodes").is_empty());
    }

    #[test]
    fn a_cut_raw_text_ends_on_a_whole_character() {
        assert_eq!(text_prefix("ab\u{e9}".as_bytes(), 3), "ab");
        assert_eq!(text_prefix("ab\u{e9}".as_bytes(), 4), "ab\u{e9}");
        assert_eq!(text_prefix(b"a\xffb", 3), "a\u{fffd}b");
    }

    /// An object larger than the limit once decompressed is unreadable, with
    /// that reason; one of exactly the limit is read.
    #[test]
    fn an_object_over_the_limit_is_an_error() {
        let line = b"{\"event_id\":\"a\"}\n";
        let input = line.repeat(1000);
        let exact = input.len() as u64;
        for format in [Format::JsonLines, Format::Csv] {
            let input = if format == Format::Csv { [b"event_id\n".as_slice(), &b"a\n".repeat(9000)].concat() } else { input.clone() };
            let exact = if format == Format::Csv { input.len() as u64 } else { exact };
            for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
                let bytes = match compression {
                    Compression::Gzip => gzipped(&input),
                    Compression::Zstd => Bytes::from(zstd::encode_all(&input[..], 3).expect("zstd")),
                    Compression::None => Bytes::from(input.clone()),
                };
                let rows = rows_within(bytes.clone(), format, compression, limits(1 << 20, exact)).expect("at the limit");
                assert!(rows.len() >= 1000);
                let err = rows_within(bytes, format, compression, limits(1 << 20, exact - 1)).expect_err("over the limit");
                assert!(matches!(err, DecodeError::TooLarge { limit, .. } if limit == exact - 1), "{err}");
                assert!(err.to_string().contains("max_object_bytes"), "{err}");
            }
        }
    }

    /// CSV records read with `csv_core` are the records the `csv` crate reads.
    #[test]
    fn csv_records_agree_with_the_csv_crate() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..2_000 {
            let len = rng.usize(0..120);
            let input: Vec<u8> = (0..len).map(|_| *rng.choice(b"ab,\"\n\r ").unwrap_or(&b'a')).collect();
            let mut want = Vec::new();
            let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(&input[..]);
            let mut record = csv::ByteRecord::new();
            while reader.read_byte_record(&mut record).expect("csv") {
                want.push(record.iter().map(<[u8]>::to_vec).collect::<Vec<_>>());
            }
            let mut got = Vec::new();
            let mut records = CsvRecords::new(BufReader::with_capacity(rng.usize(1..16), &input[..]), 1 << 20);
            while let Some(read) = records.next(&mut record).expect("reads") {
                assert_eq!(read, CsvRead::Record);
                got.push(record.iter().map(<[u8]>::to_vec).collect::<Vec<_>>());
            }
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&input));
        }
    }

    /// A quoted cell spanning megabytes is one record over the limit, read
    /// past; so is a record of too many cells. The records after them are read.
    #[test]
    fn csv_records_over_the_limit_are_malformed_and_cut() {
        let mut input = b"event_id,customer_id\na,1\n\"".to_vec();
        input.extend(b"q\nq,".repeat(1 << 20));
        input.extend(b"\",2\n");
        input.extend(b",".repeat(4000));
        input.extend(b"\nb,3\n");
        let got = rows_within(gzipped(&input), Format::Csv, Compression::Gzip, limits(10_000, 1 << 30)).expect("decodes");
        assert_eq!(got.len(), 4);
        assert_eq!((got[0].0, got[0].1.as_deref()), (1, Ok("Text(\"a\")")));
        let detail = got[1].1.as_ref().expect_err("too long");
        assert!(detail.contains(&format!("record is {} bytes", 4 * (1 << 20) + 5)), "{detail}");
        assert_eq!(got[1].2.len(), RAW_PREFIX_BYTES);
        assert!(got[1].2.starts_with("\"q\nq,q"), "{:?}", &got[1].2[..10]);
        let detail = got[2].1.as_ref().expect_err("too many cells");
        assert!(detail.contains("more than 1250 cells"), "{detail}");
        assert_eq!((got[3].0, got[3].1.as_deref()), (4, Ok("Text(\"b\")")));
        // A header over the limit leaves nothing to read the records by.
        let header = [b"event_id".repeat(100), b"\na\n".to_vec()].concat();
        let err = rows_within(Bytes::from(header), Format::Csv, Compression::None, limits(100, 1 << 30)).expect_err("header");
        assert!(matches!(err, DecodeError::HeaderTooLong { limit: 100 }), "{err}");
    }

    fn parquet_object(ids: &[&str]) -> Bytes {
        let batch = RecordBatch::try_from_iter([(
            "event_id",
            std::sync::Arc::new(arrow::array::StringArray::from(ids.to_vec())) as arrow::array::ArrayRef,
        )])
        .expect("batch");
        let mut out = Vec::new();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
            .build();
        let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
        Bytes::from(out)
    }

    /// Parquet: an object whose data is over the limit uncompressed is
    /// refused by its footer; a row of more text than a record may hold is
    /// malformed and cut.
    #[test]
    fn parquet_objects_and_rows_over_the_limit() {
        let long = "y".repeat(10_000);
        let bytes = parquet_object(&["a", &long, "b"]);
        let got = rows_within(bytes.clone(), Format::Parquet, Compression::None, limits(1000, 1 << 30)).expect("decodes");
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].1.as_deref(), Ok("Text(\"a\")"));
        let detail = got[1].1.as_ref().expect_err("too long");
        assert!(detail.contains("10000 bytes"), "{detail}");
        assert!(got[1].2.starts_with("{\"event_id\":\"yyy") && got[1].2.len() == RAW_PREFIX_BYTES, "{}", &got[1].2[..20]);
        assert_eq!(got[2].1.as_deref(), Ok("Text(\"b\")"));
        // Small on disk, 10 KB of data once decompressed.
        let limit = bytes.len() as u64 + 100;
        assert!(limit < 10_000, "{limit}");
        let err = rows_within(bytes, Format::Parquet, Compression::None, limits(1 << 20, limit)).expect_err("too large");
        assert!(err.to_string().contains("uncompressed") && err.to_string().contains(&format!("({limit} bytes)")), "{err}");
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let result = decode(Bytes::from_static(b"\x1f\x8b\x08\x00garbage"), Format::JsonLines, Compression::Gzip, Limits::default(), &mut |_| {});
        assert!(result.is_err());
    }
}
