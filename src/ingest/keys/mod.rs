//! The de-duplication index: the key of every accepted event (a 128-bit hash
//! of its `event_id` and a 64-bit hash of its typed payload), kept beside the
//! ingest manifest so that a run recognises duplicates of earlier runs without
//! reading `events` back.
//!
//! Each ingest sequence writes one segment, `keys/<sequence>.bin` under the
//! manifest folder, before the manifest entry that names it (so it counts only
//! when that sequence is committed, like the data files). A segment holds
//! fixed-width records sorted by id hash; a lookup is a binary search per
//! segment. A run's segment also takes in the newest earlier segments while
//! each holds at most twice the keys taken so far, so sizes at least double
//! down the chain: it stays short (about log2 of the runs), and a daily run
//! never rewrites the large segment of a backfilled history. A segment that
//! covers all sequences so far ends the chain a reader follows; one is
//! written when the chain would grow past [`MERGE_AFTER`]. A
//! warehouse whose entries have no segments (written before the index existed)
//! is read back from `events` once, and the next segment covers everything.
//!
//! This run's keys are held in a table in memory up to a budget
//! (`engine.memory_mb`); beyond it the table spills to sorted runs on local
//! disk ([`spill`]), and the segment is their merge, uploaded as it is made.
//!
//! This module answers "was this id accepted before, with what payload"; what
//! counts as a duplicate is ingest's decision.

mod spill;

use super::manifest::Manifest;
use super::IngestError;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io;

/// Version 02: the column-wise payload hash of `batch::row_keys`.
const MAGIC: &[u8; 8] = b"TNKEYS02";
/// Segments of an earlier payload hash: their payloads cannot be compared, so
/// the keys are read back from `events` once and the next segment covers all.
const OLDER_MAGICS: [&[u8; 8]; 1] = [b"TNKEYS01"];
const HEADER: usize = 16;
const RECORD: usize = 24;
/// Segments a reader may have to follow before a run writes a merged one.
pub const MERGE_AFTER: usize = 16;

/// The segment of one manifest entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeysFile {
    /// Path relative to the manifest folder.
    pub file: String,
    /// The first sequence whose keys this segment holds (1: all of them).
    pub covers_from: i64,
    pub count: u64,
}

impl KeysFile {
    /// The segment `run_id` writes for `sequence`. The run id keeps two
    /// runs that race for one sequence from overwriting each other's
    /// segment: only the winner's entry names its segment.
    pub fn name(sequence: i64, run_id: &str) -> String {
        format!("keys/{sequence:020}.{run_id}.bin")
    }
}

/// The segments a run that starts at sequence `committed` follows (newest
/// first, as [`SeenKeys::load`] does), by their names in the manifest folder;
/// the chain ends early where an entry has no segment.
pub(super) fn chain(committed: i64, files: &HashMap<i64, Option<KeysFile>>) -> Vec<String> {
    let mut names = Vec::new();
    let mut sequence = committed;
    while sequence >= 1 {
        let Some(Some(file)) = files.get(&sequence) else { break };
        names.push(file.file.clone());
        if file.covers_from <= 1 || file.covers_from > sequence {
            break;
        }
        sequence = file.covers_from - 1;
    }
    names
}

/// One segment of the chain: its records, and the first sequence it covers.
#[derive(Clone)]
struct Segment {
    covers_from: i64,
    records: Bytes,
}

impl Segment {
    fn keys(&self) -> usize {
        self.records.len() / RECORD
    }
}

/// Keys of accepted events: earlier sequences' segments and this run's keys.
#[derive(Default)]
pub struct SeenKeys {
    /// The chain, newest first.
    segments: Vec<Segment>,
    /// This run's keys since its last spill.
    current: KeyTable,
    /// This run's keys spilled to disk.
    spilled: spill::Spilled,
    /// The most keys `current` holds before it spills (`None`: no limit).
    budget: Option<usize>,
    /// About how many keys this run adds in all ([`SeenKeys::reserve`]).
    expected: usize,
    /// Threads that sort a table before it spills.
    threads: usize,
    /// Keys claimed by the object being read while it may still turn out
    /// unreadable ([`SeenKeys::begin`]): kept only once it is read to its end.
    tentative: Option<KeyTable>,
    /// Keys read back from `events` (no complete chain of segments).
    scanned: bool,
}

impl SeenKeys {
    /// An index for keys that the caller reads back from `events` ([`SeenKeys::insert`]).
    pub fn scanned() -> SeenKeys {
        SeenKeys {
            scanned: true,
            ..Default::default()
        }
    }

    /// Whether the caller reads the keys of earlier runs back from `events`
    /// ([`SeenKeys::scanned`]).
    pub fn is_scanned(&self) -> bool {
        self.scanned
    }

    /// Follow the chain of segments back from sequence `committed`. `None` when
    /// an entry of the chain has no segment (an older warehouse) or a segment
    /// of an older version.
    pub async fn load(
        manifest: &Manifest,
        committed: i64,
        files: &HashMap<i64, Option<KeysFile>>,
    ) -> Result<Option<SeenKeys>, IngestError> {
        let mut seen = SeenKeys::default();
        let mut sequence = committed;
        while sequence >= 1 {
            let Some(Some(file)) = files.get(&sequence) else { return Ok(None) };
            let bytes = manifest.read_segment(&file.file).await?;
            if OLDER_MAGICS.iter().any(|m| bytes.starts_with(&m[..])) {
                return Ok(None);
            }
            let records = check(&bytes).map_err(|e| manifest.err(&file.file, e))?;
            if (records.len() / RECORD) as u64 != file.count {
                let held = (records.len() / RECORD) as u64;
                return Err(manifest.err(&file.file, SegmentError::Count { held, listed: file.count }));
            }
            seen.segments.push(Segment {
                covers_from: file.covers_from,
                records,
            });
            if file.covers_from <= 1 {
                break;
            }
            sequence = file.covers_from - 1;
        }
        Ok(Some(seen))
    }

    /// The payload hash of an accepted id.
    #[cfg(test)]
    pub fn get(&self, id: u128) -> Option<u64> {
        let tentative = || self.tentative.as_ref().and_then(|t| t.get(id));
        let spilled = || self.spilled.get(id).expect("read a run");
        self.current.get(id).or_else(tentative).or_else(|| self.in_segments(id)).or_else(spilled)
    }

    /// The payload hash of an id accepted by an earlier sequence.
    fn in_segments(&self, id: u128) -> Option<u64> {
        self.segments.iter().find_map(|s| search(&s.records, id))
    }

    /// Hold at most `bytes` of this run's keys in memory (`None`: no
    /// limit); beyond, the table is sorted on `threads` threads and spilled.
    pub fn limit(&mut self, bytes: Option<usize>, threads: usize) {
        self.budget = bytes.map(|b| (b / RECORD * 4 / 5).max(1 << 10));
        self.threads = threads.max(1);
        self.current.max_slots = self.max_slots();
    }

    /// The most slots `current` may grow to (0: no limit).
    fn max_slots(&self) -> usize {
        self.budget.map_or(0, KeyTable::slots_for)
    }

    /// Accept `id` unless it was accepted before: `None` when it is new (and
    /// now claimed), else the payload hash it was accepted with. An error
    /// is a failed read or write of a spilled run.
    pub fn claim(&mut self, id: u128, payload: u64) -> io::Result<Option<u64>> {
        if let Some(p) = self.in_segments(id) {
            return Ok(Some(p));
        }
        if self.spilled.is_empty() && self.tentative.is_none() && !self.full() {
            return Ok(self.current.claim(id, payload));
        }
        if let Some(p) = self.current.get(id) {
            return Ok(Some(p));
        }
        if let Some(p) = self.spilled.get(id)? {
            return Ok(Some(p));
        }
        match &mut self.tentative {
            Some(tentative) => Ok(tentative.claim(id, payload)),
            None => self.hold(id, payload).map(|()| None),
        }
    }

    /// Whether `current` holds its budget of keys.
    fn full(&self) -> bool {
        self.budget.is_some_and(|b| self.current.len >= b)
    }

    /// Put a new key in `current`, spilling it first if it is full.
    fn hold(&mut self, id: u128, payload: u64) -> io::Result<()> {
        if self.full() {
            self.spill()?;
        }
        self.current.claim(id, payload);
        Ok(())
    }

    /// Write `current` as a run and start a new table, of the keys still
    /// expected (within the budget).
    fn spill(&mut self) -> io::Result<()> {
        let within = KeyTable {
            max_slots: self.max_slots(),
            ..Default::default()
        };
        let table = std::mem::replace(&mut self.current, within);
        let sorted = table.into_sorted(self.threads.max(1));
        self.spilled.add(&sorted, self.expected)?;
        drop(sorted);
        let held = self.spilled.keys();
        self.current.reserve(self.expected.saturating_sub(held).clamp(1 << 10, self.budget.unwrap_or(usize::MAX)));
        Ok(())
    }

    /// From now on, claims are tentative: an object read in several parts
    /// claims its keys part by part, and they count only if its last part
    /// is read ([`SeenKeys::commit`]); if it turns out unreadable they are
    /// forgotten ([`SeenKeys::rollback`]), as if it had never been read.
    pub fn begin(&mut self) {
        self.tentative = Some(KeyTable::default());
    }

    /// Keep the tentative claims.
    pub fn commit(&mut self) -> io::Result<()> {
        if let Some(tentative) = self.tentative.take() {
            self.current.reserve(tentative.len);
            for (id, payload) in tentative.iter() {
                self.hold(id, payload)?;
            }
        }
        Ok(())
    }

    /// Forget the tentative claims.
    pub fn rollback(&mut self) {
        self.tentative = None;
    }

    /// [`SeenKeys::claim`] for each `(id, payload)` in order (a key claimed by
    /// an earlier one of them is a duplicate). The slots of later keys are
    /// fetched into the cache ahead of their turn.
    pub fn claim_all(&mut self, keys: &[(u128, u64)]) -> io::Result<Vec<Option<u64>>> {
        let mut claimed = Vec::with_capacity(keys.len());
        for (i, &(id, payload)) in keys.iter().enumerate() {
            if let Some(&(ahead, _)) = keys.get(i + PREFETCH_AHEAD) {
                self.current.prefetch(ahead);
                self.spilled.prefetch(ahead);
            }
            claimed.push(self.claim(id, payload)?);
        }
        Ok(claimed)
    }

    /// Room for about `n` more keys (saves growing a large index), within
    /// the budget ([`SeenKeys::limit`]).
    pub fn reserve(&mut self, n: usize) {
        self.expected = self.expected.saturating_add(n);
        self.current.reserve(n.min(self.budget.unwrap_or(usize::MAX).saturating_sub(self.current.len)));
    }

    /// Record a key read back from `events` (or, in tests, any key); `events`
    /// holds each id once, so this is a claim whose answer is not needed.
    pub fn insert(&mut self, id: u128, payload: u64) -> io::Result<()> {
        self.hold(id, payload)
    }

    /// Keys this run spilled to disk, and where (for errors).
    pub fn spilled(&self) -> (usize, String) {
        (self.spilled.keys(), self.spilled.dir())
    }

    /// The first sequence the segment of `sequence` covers, when it takes
    /// in `taken` (the newest earlier segments).
    fn covers_from(&self, taken: &[Segment], sequence: i64) -> i64 {
        match taken.last() {
            _ if self.scanned => 1,
            Some(oldest) => oldest.covers_from,
            None => sequence,
        }
    }

    /// The segment this run writes for `sequence`, sorted on `threads`
    /// threads in one buffer: its own keys and those of the newest segments
    /// it takes in ([`SeenKeys::merged`]). The reference the written
    /// segments are tested against.
    #[cfg(test)]
    pub fn segment_for(&self, sequence: i64, run_id: &str, threads: usize) -> (KeysFile, Vec<u8>) {
        let merged = &self.segments[..self.merged()];
        let records = || {
            let earlier = merged.iter().flat_map(|s| s.records.chunks_exact(RECORD).map(decode_record));
            self.current.iter().chain(earlier)
        };
        let body = sorted_segment(records, threads);
        let covers_from = self.covers_from(merged, sequence);
        let file = KeysFile {
            file: KeysFile::name(sequence, run_id),
            covers_from,
            count: ((body.len() - HEADER) / RECORD) as u64,
        };
        (file, body)
    }

    /// How many of the newest segments this run's segment takes in: each next
    /// older one while it holds at most twice the keys taken so far; all of
    /// them when the chain would grow past [`MERGE_AFTER`].
    fn merged(&self) -> usize {
        if self.segments.len() + 1 > MERGE_AFTER {
            return self.segments.len();
        }
        let mut keys = self.current.len + self.spilled.keys();
        let mut taken = 0;
        for s in &self.segments {
            if s.keys() > 2 * keys {
                break;
            }
            keys += s.keys();
            taken += 1;
        }
        taken
    }

    /// Write the segment of `sequence` (before its manifest entry). Where
    /// it is only this run's table (nothing spilled, no earlier segment
    /// taken in: a first or a large ingest), its records are the table
    /// sorted where it lies, without a second copy of the index
    /// ([`KeyTable::into_sorted`]); else the merge of its sorted parts
    /// ([`SeenKeys::write_merged`]).
    pub async fn write(self, manifest: &Manifest, sequence: i64, run_id: &str, threads: usize) -> Result<KeysFile, IngestError> {
        let t = std::time::Instant::now();
        if !(self.spilled.is_empty() && self.merged() == 0 && cfg!(target_endian = "little")) {
            let file = self.write_merged(manifest, sequence, run_id, threads).await?;
            tracing::debug!(seconds = t.elapsed().as_secs_f64(), keys = file.count, "key segment merged and written");
            return Ok(file);
        }
        let covers_from = self.covers_from(&[], sequence);
        let records = self.current.into_sorted(threads);
        let file = KeysFile {
            file: KeysFile::name(sequence, run_id),
            covers_from,
            count: records.len() as u64,
        };
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&file.count.to_le_bytes());
        let body = object_store::PutPayload::from_iter([Bytes::from(header), Bytes::from_owner(Records(records))]);
        tracing::debug!(seconds = t.elapsed().as_secs_f64(), keys = file.count, "key segment sorted");
        manifest.write_payload(&file.file, body).await?;
        Ok(file)
    }
}

impl SeenKeys {
    /// Write the segment of `sequence` as the merge of the spilled runs,
    /// the last table (sorted where it lies) and the newest segments it
    /// takes in, uploaded in parts as the merge makes them: memory holds a
    /// few chunks of it, however large it is.
    async fn write_merged(self, manifest: &Manifest, sequence: i64, run_id: &str, threads: usize) -> Result<KeysFile, IngestError> {
        let spill_dir = self.spilled.dir();
        let (file, sources, dir) = self.merge_sources(sequence, run_id, threads);
        let count = file.count as usize;
        let (sender, chunks) = tokio::sync::mpsc::channel(2);
        let merging = tokio::task::spawn_blocking(move || {
            let _runs = dir;
            let merged = merge(sources, count, &mut |chunk| sender.blocking_send(Ok(chunk)).is_ok());
            if let Err(e) = merged {
                let _ = sender.blocking_send(Err(e));
            }
        });
        let written = manifest.write_stream(&file.file, chunks).await;
        merging.await.map_err(|e| IngestError::KeySpill {
            dir: spill_dir,
            source: io::Error::other(e),
        })?;
        written?;
        Ok(file)
    }

    /// The segment's entry and the sorted sources it merges, with the
    /// folder of the runs (removed when dropped).
    fn merge_sources(self, sequence: i64, run_id: &str, threads: usize) -> (KeysFile, Vec<Sorted>, Option<tempfile::TempDir>) {
        let taken: Vec<Segment> = self.segments[..self.merged()].to_vec();
        let covers_from = self.covers_from(&taken, sequence);
        let sorted = self.current.into_sorted(threads);
        let count = sorted.len() + self.spilled.keys() + taken.iter().map(Segment::keys).sum::<usize>();
        let (runs, dir) = self.spilled.readers();
        let mut sources: Vec<Sorted> = vec![Box::new(sorted.into_iter().map(|s| Ok((spill::id_of(&s), s.payload))))];
        sources.extend(runs.into_iter().map(|r| Box::new(r) as Sorted));
        for segment in taken {
            let records = segment.records;
            let n = records.len() / RECORD;
            sources.push(Box::new((0..n).map(move |i| Ok(decode_record(&records[i * RECORD..(i + 1) * RECORD])))));
        }
        let file = KeysFile {
            file: KeysFile::name(sequence, run_id),
            covers_from,
            count: count as u64,
        };
        (file, sources, dir)
    }
}

/// Records in id order, from one source of a merge.
type Sorted = Box<dyn Iterator<Item = io::Result<(u128, u64)>> + Send>;

/// The bytes of the segment of `count` records merged from `sources` (each
/// sorted; no id in two of them), handed to `emit` in chunks of a few MiB;
/// `emit` returns false to stop.
fn merge(mut sources: Vec<Sorted>, count: usize, emit: &mut dyn FnMut(Bytes) -> bool) -> io::Result<()> {
    use std::cmp::Reverse;
    const CHUNK: usize = (8 << 20) / RECORD * RECORD;
    let mut chunk = Vec::with_capacity(CHUNK);
    chunk.extend_from_slice(MAGIC);
    chunk.extend_from_slice(&(count as u64).to_le_bytes());
    let mut payloads = vec![0u64; sources.len()];
    let mut heads = std::collections::BinaryHeap::with_capacity(sources.len());
    for (i, source) in sources.iter_mut().enumerate() {
        if let Some(record) = source.next() {
            let (id, payload) = record?;
            payloads[i] = payload;
            heads.push(Reverse((id, i)));
        }
    }
    let mut written = 0usize;
    let mut record = [0u8; RECORD];
    while let Some(Reverse((id, i))) = heads.pop() {
        encode_record(&mut record, id, payloads[i]);
        chunk.extend_from_slice(&record);
        written += 1;
        if chunk.len() + RECORD > CHUNK && !emit(Bytes::from(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))) {
            return Ok(());
        }
        if let Some(next) = sources[i].next() {
            let (id, payload) = next?;
            payloads[i] = payload;
            heads.push(Reverse((id, i)));
        }
    }
    if written != count {
        return Err(io::Error::other(format!("the merge gave {written} keys, {count} were counted")));
    }
    if !chunk.is_empty() {
        emit(Bytes::from(chunk));
    }
    Ok(())
}

/// Sorted slots as the records of a segment: a [`Slot`] is laid out as a
/// record is encoded on a little-endian machine (low and high half of the
/// id, then the payload, each little-endian).
struct Records(Vec<Slot>);

impl AsRef<[u8]> for Records {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `Slot` is `repr(C)`, three `u64`s without padding
        // (RECORD bytes, asserted below), so its slots are initialised bytes.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), self.0.len() * RECORD) }
    }
}

const _: () = assert!(std::mem::size_of::<Slot>() == RECORD);

/// How many keys ahead [`SeenKeys::claim_all`] fetches a slot: enough for
/// the misses of that many keys to overlap.
const PREFETCH_AHEAD: usize = 16;

/// This run's keys: an open-addressing table with linear probing. Ids are
/// already uniform 128-bit hashes, so a key's first slot is its id's low
/// bits, and a lookup usually reads one cache line, which can be fetched ahead
/// ([`KeyTable::prefetch`]). A general hash map would hash the id again and
/// read a control byte and then the entry: two cache misses per key of a
/// large index, one after the other.
#[derive(Default)]
struct KeyTable {
    /// Slots, or none; an id of all zeros marks a free slot.
    slots: Vec<Slot>,
    len: usize,
    /// The most slots growing may reach (0: no limit), the budget of
    /// [`SeenKeys::limit`]; a table that holds its budget spills instead.
    max_slots: usize,
    /// The payload of the id 0, which a slot cannot hold.
    zero: Option<u64>,
}

/// One key, 24 bytes (a `u128` field would align it to 32), laid out as
/// a segment's record (see [`Records`]).
#[derive(Clone, Copy, Default, PartialEq)]
#[repr(C)]
struct Slot {
    id: [u64; 2],
    payload: u64,
}

const FREE: [u64; 2] = [0, 0];

fn halves(id: u128) -> [u64; 2] {
    [id as u64, (id >> 64) as u64]
}

impl KeyTable {
    /// Slots for `len` keys at most 4/5 full. Any number, not a power of
    /// two: the table for the events a run expects is most of ingest's
    /// memory, and rounding up could nearly double it (6 GiB instead of
    /// 3.7 GiB for 123 M expected keys).
    fn slots_for(len: usize) -> usize {
        (len.saturating_mul(5) / 4 + 1).max(16)
    }

    /// Room for `more` keys: the slots they need, or twice the slots there
    /// are when that is more, so that growing key by key stays linear.
    fn reserve(&mut self, more: usize) {
        let wanted = Self::slots_for(self.len.saturating_add(more));
        if wanted > self.slots.len() {
            let grown = wanted.max(self.slots.len().saturating_mul(2));
            // Within the budget, and with room for one more key at least.
            let grown = match self.max_slots {
                0 => grown,
                max => grown.min(max.max(Self::slots_for(self.len + 1))),
            };
            if grown > self.slots.len() {
                self.resize(grown);
            }
        }
    }

    /// The first slot of `id`'s probe: its low half scaled to the table
    /// (ids are uniform hashes, so every slot is as likely).
    fn home(&self, id: [u64; 2]) -> usize {
        ((u128::from(id[0]) * self.slots.len() as u128) >> 64) as usize
    }

    fn resize(&mut self, slots: usize) {
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); slots]);
        for slot in old.into_iter().filter(|s| s.id != FREE) {
            let i = self.find(slot.id);
            self.slots[i] = slot;
        }
    }

    /// The slot holding `id`, or the free slot where it goes (the table has one).
    fn find(&self, id: [u64; 2]) -> usize {
        let mut i = self.home(id);
        loop {
            let slot = &self.slots[i];
            if slot.id == id || slot.id == FREE {
                return i;
            }
            i += 1;
            if i == self.slots.len() {
                i = 0;
            }
        }
    }

    /// Ask the CPU to bring `id`'s first slot into the cache.
    fn prefetch(&self, id: u128) {
        let Some(slot) = self.slots.get(self.home(halves(id))) else { return };
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is only a hint (it never faults), and the address
        // is that of a slot of the table; SSE is part of the x86_64 baseline.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>((slot as *const Slot).cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = slot;
    }

    /// `None` if `id` is new (and now held with `payload`), else its payload.
    fn claim(&mut self, id: u128, payload: u64) -> Option<u64> {
        if id == 0 {
            let held = self.zero;
            self.zero = held.or(Some(payload));
            return held;
        }
        self.reserve(1);
        let i = self.find(halves(id));
        let slot = &mut self.slots[i];
        if slot.id != FREE {
            return Some(slot.payload);
        }
        *slot = Slot { id: halves(id), payload };
        self.len += 1;
        None
    }

    fn get(&self, id: u128) -> Option<u64> {
        if id == 0 {
            return self.zero;
        }
        if self.slots.is_empty() {
            return None;
        }
        let slot = &self.slots[self.find(halves(id))];
        (slot.id != FREE).then_some(slot.payload)
    }

    /// The held keys sorted by id, in the table's own memory. Ids are
    /// uniform hashes: one pass moves each slot to the bucket of its top
    /// byte (in place, cycle by cycle), then the buckets are sorted on
    /// `threads` threads, each a run of whole buckets.
    fn into_sorted(self, threads: usize) -> Vec<Slot> {
        let KeyTable { mut slots, zero, .. } = self;
        slots.retain(|s| s.id != FREE);
        if let Some(payload) = zero {
            slots.push(Slot { id: FREE, payload });
        }
        let bucket = |s: &Slot| (s.id[1] >> 56) as usize;
        let mut counts = [0usize; 256];
        for s in &slots {
            counts[bucket(s)] += 1;
        }
        let mut starts = [0usize; 256];
        let mut at = 0;
        for (b, n) in counts.iter().enumerate() {
            starts[b] = at;
            at += n;
        }
        let ends: Vec<usize> = starts.iter().zip(counts).map(|(s, n)| s + n).collect();
        let mut next = starts;
        for b in 0..256 {
            while next[b] < ends[b] {
                let i = next[b];
                let home = bucket(&slots[i]);
                if home == b {
                    next[b] += 1;
                } else {
                    slots.swap(i, next[home]);
                    next[home] += 1;
                }
            }
        }
        let key = |s: &Slot| (s.id[1], s.id[0]);
        let share = slots.len().div_ceil(threads.max(1)).max(1);
        std::thread::scope(|scope| {
            let mut rest = &mut slots[..];
            let mut b = 0;
            while b < 256 {
                // Whole buckets until this part holds its share of the keys.
                let (first_bucket, first) = (b, starts[b]);
                while b < 255 && ends[b] - first < share {
                    b += 1;
                }
                let (part, tail) = rest.split_at_mut(ends[b] - first);
                let buckets: Vec<(usize, usize)> = (first_bucket..=b).map(|c| (starts[c] - first, ends[c] - first)).collect();
                scope.spawn(move || {
                    for (start, end) in buckets {
                        part[start..end].sort_unstable_by_key(key);
                    }
                });
                rest = tail;
                b += 1;
            }
        });
        slots
    }

    fn iter(&self) -> impl Iterator<Item = (u128, u64)> + '_ {
        let held = self.slots.iter().filter(|s| s.id != FREE);
        let held = held.map(|s| ((s.id[1] as u128) << 64 | s.id[0] as u128, s.payload));
        self.zero.map(|p| (0, p)).into_iter().chain(held)
    }
}

/// What is wrong with a key segment.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("is not a key segment")]
    NotASegment,
    #[error("is truncated: {bytes} bytes for {count} keys")]
    Truncated { bytes: usize, count: usize },
    #[error("holds {held} keys, the manifest says {listed}")]
    Count { held: u64, listed: u64 },
}

/// The records of a segment, after its header.
fn check(bytes: &Bytes) -> Result<Bytes, SegmentError> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(SegmentError::NotASegment);
    }
    let count = u64::from_le_bytes(bytes[8..16].try_into().unwrap_or_default()) as usize;
    if bytes.len() != HEADER + count * RECORD {
        return Err(SegmentError::Truncated { bytes: bytes.len(), count });
    }
    Ok(bytes.slice(HEADER..))
}

/// The bytes of a segment holding `records` (each id once), sorted by id.
/// `records` is read twice. Ids are uniform hashes, so a count of their top
/// bits gives each record its bucket in the output, and each bucket (a few
/// thousand records of a large index) is then sorted on its own, in the
/// cache, where one comparison sort of all the records would miss it at
/// nearly every step. Any ids come out sorted; uniform ones come out fast.
#[cfg(test)]
fn sorted_segment<I: Iterator<Item = (u128, u64)>>(records: impl Fn() -> I, threads: usize) -> Vec<u8> {
    const BITS: u32 = 12;
    let bucket = |id: u128| (id >> (128 - BITS)) as usize;
    let mut next = vec![0usize; 1 << BITS];
    for (id, _) in records() {
        next[bucket(id)] += 1;
    }
    let mut count = 0;
    for n in next.iter_mut() {
        (*n, count) = (count, count + *n);
    }
    let starts = next.clone();
    let mut body = vec![0u8; HEADER + count * RECORD];
    body[..8].copy_from_slice(MAGIC);
    body[8..HEADER].copy_from_slice(&(count as u64).to_le_bytes());
    let data = &mut body[HEADER..];
    for (id, payload) in records() {
        let at = &mut next[bucket(id)];
        encode_record(&mut data[*at * RECORD..(*at + 1) * RECORD], id, payload);
        *at += 1;
    }
    // Buckets are sorted on `threads` threads, each taking a run of whole
    // buckets with about an equal share of the records.
    let threads = threads.max(1);
    let bounds: Vec<(usize, usize)> = starts.into_iter().zip(next).collect();
    let share = count.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let mut rest = data;
        let mut buckets = &bounds[..];
        let mut first = 0;
        while !buckets.is_empty() {
            // Whole buckets until this part holds its share of the records.
            let take = buckets.iter().position(|&(_, end)| end - first >= share).map_or(buckets.len(), |i| i + 1);
            let (part, later) = buckets.split_at(take);
            let end = part.last().map_or(first, |&(_, end)| end);
            let (bytes, tail) = rest.split_at_mut((end - first) * RECORD);
            let offset = first;
            scope.spawn(move || sort_buckets(bytes, part, offset));
            rest = tail;
            buckets = later;
            first = end;
        }
    });
    body
}

/// Sort each bucket `(start, end)` (in records from `offset`) of `bytes` by id.
#[cfg(test)]
fn sort_buckets(bytes: &mut [u8], buckets: &[(usize, usize)], offset: usize) {
    let mut scratch = Vec::new();
    for &(start, end) in buckets {
        let bucket = &mut bytes[(start - offset) * RECORD..(end - offset) * RECORD];
        scratch.clear();
        scratch.extend(bucket.chunks_exact(RECORD).map(decode_record));
        scratch.sort_unstable_by_key(|r| r.0);
        for (chunk, (id, payload)) in bucket.chunks_exact_mut(RECORD).zip(&scratch) {
            encode_record(chunk, *id, *payload);
        }
    }
}

fn encode_record(r: &mut [u8], id: u128, payload: u64) {
    r[..16].copy_from_slice(&id.to_le_bytes());
    r[16..RECORD].copy_from_slice(&payload.to_le_bytes());
}

fn decode_record(r: &[u8]) -> (u128, u64) {
    let id = u128::from_le_bytes(r[..16].try_into().unwrap_or_default());
    let payload = u64::from_le_bytes(r[16..24].try_into().unwrap_or_default());
    (id, payload)
}

/// Binary search of a sorted segment.
fn search(records: &[u8], id: u128) -> Option<u64> {
    let (mut lo, mut hi) = (0usize, records.len() / RECORD);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let (k, payload) = decode_record(&records[mid * RECORD..(mid + 1) * RECORD]);
        match k.cmp(&id) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Some(payload),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment_of(keys: &[(u128, u64)], sequence: i64) -> (KeysFile, Bytes) {
        let mut s = SeenKeys::default();
        for (k, v) in keys {
            s.insert(*k, *v).expect("insert");
        }
        let (file, body) = s.segment_for(sequence, "r", 2);
        (file, check(&Bytes::from(body)).expect("valid segment"))
    }

    /// What claiming `keys` in order answers, by a map that `model` starts
    /// as and ends holding every key with its first payload.
    fn claims_of_a_map(keys: &[(u128, u64)], model: &mut HashMap<u128, u64>) -> Vec<Option<u64>> {
        keys.iter()
            .map(|(id, p)| match model.get(id) {
                Some(held) => Some(*held),
                None => {
                    model.insert(*id, *p);
                    None
                }
            })
            .collect()
    }

    /// Tentative claims see the kept ones and each other; rolled back, they
    /// are gone, as if never made; committed, they are kept.
    #[test]
    fn tentative_claims_are_kept_or_forgotten_whole() {
        let mut seen = SeenKeys::default();
        assert_eq!(seen.claim(1, 10).expect("claim"), None);
        seen.begin();
        assert_eq!(seen.claim(1, 11).expect("claim"), Some(10), "a kept key is a duplicate");
        assert_eq!(seen.claim(2, 20).expect("claim"), None);
        assert_eq!(seen.claim(2, 21).expect("claim"), Some(20), "a tentative key is a duplicate of the same object");
        assert_eq!(seen.claim(0, 30).expect("claim"), None);
        seen.rollback();
        assert_eq!((seen.get(2), seen.get(0), seen.get(1)), (None, None, Some(10)));
        seen.begin();
        assert_eq!(seen.claim(2, 22).expect("claim"), None, "a forgotten key is new again");
        assert_eq!(seen.claim(0, 31).expect("claim"), None);
        seen.commit().expect("commit");
        assert_eq!(seen.claim(2, 23).expect("claim"), Some(22));
        assert_eq!(seen.claim(0, 32).expect("claim"), Some(31));
        assert_eq!(seen.current.len, 2, "id 0 is held apart from the slots");
    }

    #[test]
    fn lookups_find_every_key_of_every_segment_and_nothing_else() {
        let first: Vec<(u128, u64)> = (0..1000u128).map(|i| (i * 7919 % 100_003, i as u64)).collect();
        let second: Vec<(u128, u64)> = (0..10u128).map(|i| (u128::MAX - i, 1_000 + i as u64)).collect();
        let (f1, s1) = segment_of(&first, 1);
        let (f2, s2) = segment_of(&second, 2);
        assert_eq!((f1.covers_from, f1.count), (1, 1000));
        assert_eq!((f2.covers_from, f2.count), (2, 10));
        let seen = SeenKeys {
            segments: vec![Segment { covers_from: 2, records: s2 }, Segment { covers_from: 1, records: s1 }],
            ..Default::default()
        };
        for (k, v) in first.iter().chain(&second) {
            assert_eq!(seen.get(*k), Some(*v), "key {k}");
        }
        assert_eq!(seen.get(100_004), None);
        assert_eq!(seen.get(u128::MAX - 10), None);
    }

    #[test]
    fn a_long_chain_or_a_scan_is_merged_into_one_segment_covering_all() {
        let (_, s1) = segment_of(&[(5, 50), (1, 10)], 1);
        let mut seen = SeenKeys {
            segments: vec![Segment { covers_from: 1, records: s1 }; MERGE_AFTER],
            ..Default::default()
        };
        seen.insert(3, 30).expect("insert");
        let (file, body) = seen.segment_for(MERGE_AFTER as i64 + 1, "r", 2);
        assert_eq!(file.covers_from, 1);
        let records = check(&Bytes::from(body)).expect("valid");
        let ids: Vec<u128> = records.chunks_exact(RECORD).map(|r| decode_record(r).0).collect();
        assert!(ids.windows(2).all(|w| w[0] <= w[1]), "sorted: {ids:?}");
        assert_eq!(ids.len(), 2 * MERGE_AFTER + 1);

        let mut scanned = SeenKeys::scanned();
        scanned.insert(9, 90).expect("insert");
        assert_eq!(scanned.segment_for(4, "r", 2).0.covers_from, 1);
    }

    /// Daily runs after a large first one: the chain stays short, the first
    /// segment is never written again, and every key is found.
    #[test]
    fn small_segments_merge_among_themselves_and_leave_the_large_one() {
        let history: Vec<(u128, u64)> = (0..1000u128).map(|i| (i * 7919 % 100_003, i as u64)).collect();
        let (_, first) = segment_of(&history, 1);
        let mut chain = vec![Segment { covers_from: 1, records: first.clone() }];
        let mut all = history.clone();
        for sequence in 2..=40i64 {
            let mut seen = SeenKeys {
                segments: chain.clone(),
                ..Default::default()
            };
            for k in 0..10u128 {
                let id = u128::MAX - (sequence as u128) * 100 - k;
                seen.insert(id, sequence as u64).expect("insert");
                all.push((id, sequence as u64));
            }
            let taken = seen.merged();
            let (file, body) = seen.segment_for(sequence, "r", 2);
            chain.drain(..taken);
            chain.insert(0, Segment { covers_from: file.covers_from, records: check(&Bytes::from(body)).expect("valid") });
            assert!(chain.len() <= 7, "run {sequence}: a chain of {}", chain.len());
            assert!(chain.last().is_some_and(|s| s.covers_from == 1 && s.records == first), "run {sequence}: the first segment stays");
            // The chain covers every sequence once, newest first.
            let mut next = sequence;
            for s in &chain {
                assert!(s.covers_from <= next, "run {sequence}: {} after {next}", s.covers_from);
                next = s.covers_from - 1;
            }
            assert_eq!(next, 0);
        }
        let seen = SeenKeys {
            segments: chain,
            ..Default::default()
        };
        for (k, v) in &all {
            assert_eq!(seen.get(*k), Some(*v), "key {k}");
        }
    }

    /// The table answers as a map does: first claim wins, later claims get
    /// the first payload, across growth, colliding slots and the id 0.
    #[test]
    fn the_key_table_claims_like_a_map() {
        let mut rng = fastrand::Rng::with_seed(0x2545_F491_4F6C_DD1Du64);
        let mut next = || rng.u64(..);
        // Few distinct low bits, so that many keys share a first slot; some
        // ids repeat, with the same or another payload.
        let mut keys: Vec<(u128, u64)> = (0..20_000)
            .map(|_| {
                let r = next();
                let id = ((r >> 20) as u128) << 64 | (r % 64) as u128 * 1_000_003;
                (if r % 97 == 0 { 0 } else { id }, r % 3)
            })
            .collect();
        let repeats: Vec<(u128, u64)> = keys.iter().step_by(7).map(|(id, p)| (*id, p + (next() % 2))).collect();
        keys.extend(repeats);
        let mut model = HashMap::new();
        let expected = claims_of_a_map(&keys, &mut model);
        let mut seen = SeenKeys::default();
        let (first, rest) = keys.split_at(5_000);
        let mut claimed = seen.claim_all(first).expect("claim");
        seen.reserve(100);
        claimed.extend(seen.claim_all(rest).expect("claim"));
        assert_eq!(claimed, expected);
        assert!(claimed.iter().any(Option::is_some) && model.contains_key(&0));
        let mut held: Vec<(u128, u64)> = seen.current.iter().collect();
        let mut want: Vec<(u128, u64)> = model.into_iter().collect();
        held.sort_unstable();
        want.sort_unstable();
        assert_eq!(held, want);
        assert!(seen.current.slots.len() * 4 >= seen.current.len * 5, "at most 4/5 full");
        assert_eq!(SeenKeys::default().get(7), None);
    }

    /// Uniform ids spread over every bucket, small ones all fall in the
    /// first: either way the segment holds each record once, sorted.
    #[test]
    fn segments_are_sorted_by_id() {
        let mut rng = fastrand::Rng::with_seed(0x9E37_79B9_7F4A_7C15u64);
        let mut next = || rng.u64(..);
        let uniform: Vec<(u128, u64)> = (0..30_000).map(|i| ((next() as u128) << 64 | next() as u128, i)).collect();
        let small: Vec<(u128, u64)> = (0..3_000u64).map(|i| ((i * 7919 % 3_001) as u128, i)).collect();
        for records in [uniform, small, Vec::new()] {
            let mut want = records.clone();
            want.sort_unstable();
            for threads in [1, 2, 3, 8] {
                let body = sorted_segment(|| records.iter().copied(), threads);
                let got: Vec<(u128, u64)> = check(&Bytes::from(body)).expect("valid").chunks_exact(RECORD).map(decode_record).collect();
                assert_eq!(got, want, "{threads} threads");
            }
        }
    }

    /// The table sorted where it lies gives the bytes of the segment sorted
    /// into a buffer of its own: the id 0, uniform ids and ids all in one
    /// bucket alike.
    #[test]
    fn the_table_sorted_in_place_is_the_segment() {
        let mut rng = fastrand::Rng::with_seed(0x5EED);
        let mut next = || rng.u64(..);
        let uniform: Vec<(u128, u64)> = (0..30_000).map(|i| ((next() as u128) << 64 | next() as u128, i)).collect();
        let small: Vec<(u128, u64)> = (0..3_000u64).map(|i| ((i * 7919 % 3_001) as u128, i)).collect();
        for records in [uniform, small, vec![(0, 5), (u128::MAX, 6)], Vec::new()] {
            for threads in [1, 2, 3, 8] {
                let mut seen = SeenKeys::default();
                for &(id, payload) in &records {
                    seen.insert(id, payload).expect("insert");
                }
                let (_, want) = seen.segment_for(1, "r", threads);
                let got = Records(seen.current.into_sorted(threads));
                assert_eq!(got.as_ref(), &want[HEADER..], "{} keys, {threads} threads", records.len());
            }
        }
    }

    /// A table over its budget spills, again and again: claims answer as a
    /// map does (tentative ones too, kept or forgotten), across the runs,
    /// and the segment merged from the runs, the last table and the earlier
    /// segments it takes in is the one an index without a budget writes.
    #[test]
    fn a_table_over_its_budget_spills_and_answers_as_before() {
        let mut rng = fastrand::Rng::with_seed(0xB0D6_E7);
        let mut next = || (rng.u64(..) as u128) << 64 | rng.u64(..) as u128;
        let mut keys: Vec<(u128, u64)> = (0..12_000u64).map(|i| (if i == 77 { 0 } else { next() }, i % 5)).collect();
        let repeats: Vec<(u128, u64)> = keys.iter().step_by(5).map(|(id, p)| (*id, p + (id % 2) as u64)).collect();
        keys.extend(repeats);
        let (_, earlier) = segment_of(&[(next(), 1), (next(), 2), (keys[10].0, 9)], 1);
        let mut model: HashMap<u128, u64> = [(keys[10].0, 9)].into_iter().collect();
        let expected = claims_of_a_map(&keys, &mut model);
        let index = |budget: Option<usize>| {
            let mut seen = SeenKeys {
                segments: vec![Segment { covers_from: 1, records: earlier.clone() }],
                ..Default::default()
            };
            seen.limit(budget, 2);
            seen.reserve(20_000);
            seen
        };
        let mut seen = index(Some(1024 * RECORD * 5 / 4));
        let mut claimed = Vec::new();
        for (i, part) in keys.chunks(1_000).enumerate() {
            if i % 4 == 1 {
                // An object read in parts: forgotten once, then kept.
                seen.begin();
                let forgotten: Vec<(u128, u64)> = (0..50).map(|_| (next(), 0)).collect();
                seen.claim_all(&forgotten).expect("claim");
                seen.rollback();
                assert!(forgotten.iter().all(|(id, _)| seen.get(*id).is_none()));
                seen.begin();
                claimed.extend(seen.claim_all(part).expect("claim"));
                seen.commit().expect("commit");
            } else {
                claimed.extend(seen.claim_all(part).expect("claim"));
            }
        }
        assert_eq!(claimed, expected);
        assert!(seen.spilled.keys() > 8_000 && seen.current.len <= 1024, "spilled {}, held {}", seen.spilled.keys(), seen.current.len);
        assert!(seen.current.slots.len() <= KeyTable::slots_for(1024), "{} slots for a budget of 1024 keys", seen.current.slots.len());
        for (id, payload) in &model {
            assert_eq!(seen.get(*id), Some(*payload), "key {id}");
        }

        let mut whole = index(None);
        whole.claim_all(&keys).expect("claim");
        assert!(whole.spilled.is_empty());
        let (want_file, want) = whole.segment_for(2, "r", 2);
        let (file, sources, _dir) = seen.merge_sources(2, "r", 2);
        let mut got = Vec::new();
        merge(sources, file.count as usize, &mut |chunk| {
            got.extend_from_slice(&chunk);
            true
        })
        .expect("merge");
        assert_eq!((file.covers_from, file.count), (want_file.covers_from, want_file.count));
        assert_eq!(file.count as usize, model.len() + 2, "with the two other keys of the segment taken in");
        assert!(got == want, "the merged segment differs");
    }

    #[test]
    fn a_chain_is_followed_down_to_the_segment_covering_all() {
        let file = |sequence: i64, covers_from: i64| Some(KeysFile { file: KeysFile::name(sequence, "r"), covers_from, count: 1 });
        // 1 covers itself, 2 and 3 alone, 4 merged 2..=4, 5 alone; 6 has none.
        let files: HashMap<i64, Option<KeysFile>> =
            [(1, file(1, 1)), (2, file(2, 2)), (3, file(3, 3)), (4, file(4, 2)), (5, file(5, 5)), (6, None)].into_iter().collect();
        assert_eq!(chain(5, &files), [KeysFile::name(5, "r"), KeysFile::name(4, "r"), KeysFile::name(1, "r")]);
        assert_eq!(chain(3, &files), [KeysFile::name(3, "r"), KeysFile::name(2, "r"), KeysFile::name(1, "r")]);
        assert_eq!(chain(6, &files), Vec::<String>::new(), "an entry without a segment: the events are read back");
        assert_eq!(chain(0, &files), Vec::<String>::new());
    }

    #[test]
    fn a_truncated_segment_is_an_error() {
        let (_, records) = segment_of(&[(1, 1), (2, 2)], 1);
        let mut whole = Vec::from(&MAGIC[..]);
        whole.extend_from_slice(&2u64.to_le_bytes());
        whole.extend_from_slice(&records[..RECORD + 3]);
        let error = check(&Bytes::from(whole)).unwrap_err();
        assert!(matches!(error, SegmentError::Truncated { bytes, count: 2 } if bytes == HEADER + RECORD + 3), "{error}");
        assert_eq!(error.to_string(), format!("is truncated: {} bytes for 2 keys", HEADER + RECORD + 3));
    }
}
