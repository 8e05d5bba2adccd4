//! The ingest manifest: which raw objects were ingested, by which run, with
//! their identity (size, ETag, last-modified). One JSON entry per ingest
//! sequence in [`Warehouse::ingest_manifest`](crate::warehouse::Warehouse::ingest_manifest); an entry counts only when the
//! `events` table carries its sequence (see the `ingest` module docs).

use super::keys::{KeysFile, SegmentError};
use super::IngestError;
use crate::storage::Location;
use deltalake::kernel::Add;
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutMode, PutPayload};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The identity of one raw object when it was ingested.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ObjectId {
    pub path: String,
    pub size: u64,
    pub e_tag: Option<String>,
    pub last_modified: String,
    #[serde(default)]
    pub run_id: Option<String>,
}

impl ObjectId {
    pub fn of(relative: &str, meta: &object_store::ObjectMeta) -> Self {
        ObjectId {
            path: relative.to_string(),
            size: meta.size,
            e_tag: meta.e_tag.clone(),
            last_modified: meta.last_modified.to_rfc3339(),
            run_id: None,
        }
    }

    /// Same object content: same size, and same ETag when both have one,
    /// else the same last-modified time.
    pub fn same_content(&self, other: &ObjectId) -> bool {
        if self.size != other.size {
            return false;
        }
        match (&self.e_tag, &other.e_tag) {
            (Some(a), Some(b)) => a == b,
            _ => self.last_modified == other.last_modified,
        }
    }
}

/// What [`Manifest::create_entry`] found.
#[derive(Debug, PartialEq)]
pub enum Created {
    New,
    /// The entry of another run (its id) is there.
    Other(String),
}

/// One ingest sequence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub sequence: i64,
    pub run_id: String,
    pub objects: Vec<ObjectId>,
    /// Data files of `rejects` written by this sequence, committed after `events`.
    pub rejects_files: Vec<Add>,
    /// The de-duplication segment written with this sequence (absent in
    /// entries written before the index existed).
    #[serde(default)]
    pub keys: Option<KeysFile>,
    /// The events this sequence accepted: incremental runs read how far back
    /// new events reach (absent in entries written before it was recorded).
    #[serde(default)]
    pub accepted: Option<AcceptedSpan>,
}

/// How many events a sequence accepted, and the earliest `occurred_at`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct AcceptedSpan {
    pub rows: u64,
    /// Microseconds since the epoch, UTC; None when no event was accepted.
    pub earliest_occurred_at: Option<i64>,
}

/// What the committed entries say: objects by path (the latest wins) and the
/// key segment of each sequence.
#[derive(Default)]
pub struct Committed {
    pub objects: HashMap<String, ObjectId>,
    pub keys: HashMap<i64, Option<KeysFile>>,
}

/// What is wrong with a file of the manifest folder.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read: {0}")]
    Read(#[source] object_store::Error),
    #[error("cannot write: {0}")]
    Write(#[source] object_store::Error),
    #[error("cannot list: {0}")]
    List(#[source] object_store::Error),
    #[error("cannot encode the entry: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("is not a manifest entry: {0}")]
    NotAnEntry(#[source] serde_json::Error),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("cannot write: {0}")]
    Stream(#[source] std::io::Error),
}

pub struct Manifest {
    location: Location,
}

impl Manifest {
    pub fn new(location: Location) -> Self {
        Manifest { location }
    }

    fn entry_name(sequence: i64) -> String {
        format!("{sequence:020}.json")
    }

    pub(super) fn err(&self, name: &str, source: impl Into<ManifestError>) -> IngestError {
        IngestError::Manifest {
            path: format!("{}/{}", self.location.display(), name),
            source: source.into(),
        }
    }

    /// Write a file of the manifest folder (an entry, a key segment).
    pub(super) async fn write_file(&self, name: &str, body: Vec<u8>) -> Result<(), IngestError> {
        self.location
            .store
            .put(&self.location.path(name), PutPayload::from(body))
            .await
            .map_err(|e| self.err(name, ManifestError::Write(e)))?;
        Ok(())
    }

    /// [`Manifest::write_file`] of a body in parts.
    pub(super) async fn write_payload(&self, name: &str, body: PutPayload) -> Result<(), IngestError> {
        self.location
            .store
            .put(&self.location.path(name), body)
            .await
            .map_err(|e| self.err(name, ManifestError::Write(e)))?;
        Ok(())
    }

    /// Write a file of the manifest folder from `chunks` as they come (in
    /// parts where it is large); a failed chunk or write leaves no file.
    pub(super) async fn write_stream(
        &self,
        name: &str,
        mut chunks: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    ) -> Result<(), IngestError> {
        use tokio::io::AsyncWriteExt;
        let path = self.location.path(name);
        let mut writer = object_store::buffered::BufWriter::with_capacity(self.location.store.clone(), path, 16 << 20);
        let written = async {
            while let Some(chunk) = chunks.recv().await {
                writer.write_all(&chunk?).await?;
            }
            writer.shutdown().await
        }
        .await;
        if let Err(e) = written {
            let _ = writer.abort().await;
            return Err(self.err(name, ManifestError::Stream(e)));
        }
        Ok(())
    }

    /// Read a file of the manifest folder.
    pub(super) async fn read_file(&self, name: &str) -> Result<bytes::Bytes, IngestError> {
        let read_err = |e| self.err(name, ManifestError::Read(e));
        self.location
            .store
            .get(&self.location.path(name))
            .await
            .map_err(read_err)?
            .bytes()
            .await
            .map_err(read_err)
    }

    /// Read a file of the manifest folder that is written once and never
    /// changed (a key segment): mapped on the local filesystem, so that a
    /// lookup reads only the pages it searches.
    pub(super) async fn read_segment(&self, name: &str) -> Result<bytes::Bytes, IngestError> {
        self.location
            .read_once_written(name, crate::storage::Access::Sparse)
            .await
            .map_err(|e| self.err(name, ManifestError::Read(e)))
    }

    pub async fn write_entry(&self, entry: &ManifestEntry) -> Result<(), IngestError> {
        let name = Self::entry_name(entry.sequence);
        let body = serde_json::to_vec(entry).map_err(|e| self.err(&name, ManifestError::Encode(e)))?;
        self.write_file(&name, body).await
    }

    /// Create the entry of a sequence only if there is none: `Other` with
    /// the run id of an entry already there that is not this run's (an
    /// entry already there of this run is a put retried after its first
    /// try landed). Stores without conditional creation write it.
    pub async fn create_entry(&self, entry: &ManifestEntry) -> Result<Created, IngestError> {
        let name = Self::entry_name(entry.sequence);
        let body = serde_json::to_vec(entry).map_err(|e| self.err(&name, ManifestError::Encode(e)))?;
        let created = self
            .location
            .store
            .put_opts(&self.location.path(&name), PutPayload::from(body.clone()), PutMode::Create.into())
            .await;
        match created {
            Ok(_) => Ok(Created::New),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let there = self.read_entry(entry.sequence).await;
                match there {
                    Ok(there) if there.run_id == entry.run_id => Ok(Created::New),
                    Ok(there) => Ok(Created::Other(there.run_id)),
                    // An entry cut short by a crash is no one's.
                    Err(_) => Ok(Created::Other(String::new())),
                }
            }
            Err(object_store::Error::NotImplemented { .. }) => self.write_file(&name, body).await.map(|()| Created::New),
            Err(e) => Err(self.err(&name, ManifestError::Write(e))),
        }
    }

    /// Delete a file this run wrote for a sequence it did not commit.
    pub(super) async fn delete_file(&self, name: &str) {
        if let Err(e) = self.location.store.delete(&self.location.path(name)).await {
            tracing::warn!(file = %self.location.join(name).display(), error = %e, "cannot delete a file of an uncommitted ingest");
        }
    }

    pub async fn read_entry(&self, sequence: i64) -> Result<ManifestEntry, IngestError> {
        let name = Self::entry_name(sequence);
        let bytes = self.read_file(&name).await?;
        serde_json::from_slice(&bytes).map_err(|e| self.err(&name, ManifestError::NotAnEntry(e)))
    }

    /// What the sequences after `after` up to `committed` accepted, in
    /// order; None for a sequence whose entry does not say.
    pub async fn accepted_since(&self, after: i64, committed: i64) -> Result<Vec<Option<AcceptedSpan>>, IngestError> {
        let mut out = Vec::new();
        for sequence in after + 1..=committed {
            out.push(self.read_entry(sequence).await?.accepted);
        }
        Ok(out)
    }

    /// The entries up to `committed`.
    pub async fn load_committed(&self, committed: i64) -> Result<Committed, IngestError> {
        let mut out = Committed::default();
        if committed == 0 {
            return Ok(out);
        }
        let listed: Vec<object_store::ObjectMeta> = self
            .location
            .store
            .list(Some(&self.location.prefix))
            .try_collect()
            .await
            .map_err(|e| self.err("", ManifestError::List(e)))?;
        let mut sequences: Vec<i64> = listed
            .iter()
            .filter_map(|m| m.location.filename()?.strip_suffix(".json")?.parse().ok())
            .filter(|s| *s <= committed)
            .collect();
        sequences.sort_unstable();
        for s in sequences {
            let entry = self.read_entry(s).await?;
            for mut o in entry.objects {
                o.run_id = Some(entry.run_id.clone());
                out.objects.insert(o.path.clone(), o);
            }
            out.keys.insert(s, entry.keys);
        }
        Ok(out)
    }
}
