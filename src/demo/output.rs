//! Objects on disk: the day's folder under the raw prefix, parts that roll over
//! at [`PART_BYTES`], the encoding of each object (JSON Lines under several
//! extensions, gzip, zstd, CRLF line ends, a BOM), whole files written at once,
//! and the counts of the [`DemoSummary`]. It writes what it is given and never
//! decides what a row contains.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use flate2::write::GzEncoder;

use super::render::push_date;
use super::{DemoError, DemoSummary};

/// An object rolls over to the next part once this many (uncompressed) bytes
/// are in it: 10 million events become about two thousand objects of 1 MiB.
const PART_BYTES: u64 = 1 << 20;
/// Capacity of the buffered writer of each object.
const WRITE_BUFFER: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Encoding {
    #[default]
    Jsonl,
    Ndjson,
    Json,
    Gzip,
    Zstd,
}

impl Encoding {
    fn extension(self) -> &'static str {
        match self {
            Encoding::Jsonl => "jsonl",
            Encoding::Ndjson => "ndjson",
            Encoding::Json => "json",
            Encoding::Gzip => "jsonl.gz",
            Encoding::Zstd => "jsonl.zst",
        }
    }
}

enum Sink {
    Plain(BufWriter<File>),
    Gzip(GzEncoder<BufWriter<File>>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<File>>),
}

impl Sink {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.write_all(bytes),
            Sink::Gzip(w) => w.write_all(bytes),
            Sink::Zstd(w) => w.write_all(bytes),
        }
    }
    fn finish(self) -> io::Result<()> {
        let mut inner = match self {
            Sink::Plain(w) => w,
            Sink::Gzip(w) => w.finish()?,
            Sink::Zstd(w) => w.finish()?,
        };
        inner.flush()
    }
}

struct OpenObject {
    path: PathBuf,
    sink: Sink,
    written: u64,
}

/// Writes the day's objects, rolling parts, and keeps the summary.
pub(super) struct Out {
    pub(super) root: PathBuf,
    pub(super) day_rel: String,
    encoding: Encoding,
    crlf: bool,
    bom: bool,
    part: u32,
    open: Option<OpenObject>,
    next_id: u64,
    pub(super) last_valid_id: u64,
    pub(super) conflicting: u64,
    pub(super) summary: DemoSummary,
}

impl Out {
    pub(super) fn new(root: &Path, customers: usize) -> Out {
        Out {
            root: root.to_path_buf(),
            day_rel: String::new(),
            encoding: Encoding::Jsonl,
            crlf: false,
            bom: false,
            part: 0,
            open: None,
            next_id: 0,
            last_valid_id: 0,
            conflicting: 0,
            summary: DemoSummary {
                customers,
                ..DemoSummary::default()
            },
        }
    }

    pub(super) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(super) fn begin_day(&mut self, date: NaiveDate, encoding: Encoding, crlf: bool, bom: bool) {
        let mut rel = Vec::with_capacity(20);
        rel.extend_from_slice(b"events/");
        push_date(&mut rel, date, b'/');
        self.day_rel = String::from_utf8_lossy(&rel).into_owned();
        self.encoding = encoding;
        self.crlf = crlf;
        self.bom = bom;
        self.part = 0;
    }

    pub(super) fn end_day(&mut self) -> Result<(), DemoError> {
        self.close()
    }

    pub(super) fn valid_line(&mut self, line: &[u8], id: u64) -> Result<(), DemoError> {
        self.line(line)?;
        self.summary.events += 1;
        self.last_valid_id = id;
        Ok(())
    }

    pub(super) fn duplicate_line(
        &mut self,
        line: &[u8],
        conflicting: bool,
    ) -> Result<(), DemoError> {
        self.line(line)?;
        self.summary.duplicate_rows += 1;
        self.conflicting += u64::from(conflicting);
        Ok(())
    }

    pub(super) fn bad_line(&mut self, line: &[u8]) -> Result<(), DemoError> {
        self.line(line)?;
        self.summary.bad_rows += 1;
        Ok(())
    }

    /// Any line (ending in `\n`) into the current object of the day.
    pub(super) fn line(&mut self, line: &[u8]) -> Result<(), DemoError> {
        if self.open.is_none() {
            self.open_object()?;
        }
        let crlf = self.crlf;
        let Some(obj) = self.open.as_mut() else {
            return Ok(());
        };
        let res = match line.strip_suffix(b"\n") {
            Some(body) if crlf => obj
                .sink
                .write_all(body)
                .and_then(|()| obj.sink.write_all(b"\r\n")),
            _ => obj.sink.write_all(line),
        };
        res.map_err(|source| DemoError::Write {
            path: obj.path.clone(),
            source,
        })?;
        obj.written += line.len() as u64;
        if obj.written >= PART_BYTES {
            self.close()?;
            self.part += 1;
        }
        Ok(())
    }

    fn open_object(&mut self) -> Result<(), DemoError> {
        let dir = self.root.join(&self.day_rel);
        fs::create_dir_all(&dir).map_err(|source| DemoError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let path = dir.join(format!(
            "part-{:04}.{}",
            self.part,
            self.encoding.extension()
        ));
        let write_err = |source| DemoError::Write {
            path: path.clone(),
            source,
        };
        let file = BufWriter::with_capacity(WRITE_BUFFER, File::create(&path).map_err(write_err)?);
        let mut sink = match self.encoding {
            Encoding::Gzip => Sink::Gzip(GzEncoder::new(file, flate2::Compression::fast())),
            Encoding::Zstd => {
                Sink::Zstd(zstd::stream::write::Encoder::new(file, 3).map_err(write_err)?)
            }
            _ => Sink::Plain(file),
        };
        if std::mem::take(&mut self.bom) {
            sink.write_all("\u{feff}".as_bytes()).map_err(write_err)?;
        }
        self.open = Some(OpenObject {
            path,
            sink,
            written: 0,
        });
        Ok(())
    }

    fn close(&mut self) -> Result<(), DemoError> {
        let Some(obj) = self.open.take() else {
            return Ok(());
        };
        let path = obj.path;
        obj.sink.finish().map_err(|source| DemoError::Write {
            path: path.clone(),
            source,
        })?;
        let len = fs::metadata(&path)
            .map_err(|source| DemoError::Write {
                path: path.clone(),
                source,
            })?
            .len();
        self.summary.objects += 1;
        self.summary.bytes += len;
        Ok(())
    }

    /// A complete file at `rel`; counted as a data object when `data`.
    pub(super) fn whole_object(
        &mut self,
        rel: &str,
        bytes: &[u8],
        data: bool,
    ) -> Result<(), DemoError> {
        let path = self.root.join(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|source| DemoError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        fs::write(&path, bytes).map_err(|source| DemoError::Write {
            path: path.clone(),
            source,
        })?;
        if data {
            self.summary.objects += 1;
            self.summary.bytes += bytes.len() as u64;
        }
        Ok(())
    }
}
