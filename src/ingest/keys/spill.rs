//! This run's keys that left memory: when the key table reaches its budget
//! (`engine.memory_mb`), it is sorted where it lies and written as a run, a
//! file of sorted records in a temporary folder, and a new table starts. A
//! key the table does not hold is looked up in the runs only when a filter
//! of every spilled key lets it through: a new key costs one cache line of
//! the filter, and only a duplicate of a spilled key (or about one new key
//! in a few hundred) reads a block of each run, from the page cache, not
//! from this process's memory. The segment of the run is the merge of the
//! runs and the last table ([`super::SeenKeys::write`]).

use super::{decode_record, encode_record, search, Slot, RECORD};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

/// Records from one fence (an id held in memory) to the next: a lookup
/// reads one block of this many records from a run.
const FENCE: usize = 128;
/// Filter bits per key: at capacity about one new key in 300 gets through.
const FILTER_BITS_PER_KEY: usize = 12;
/// Bits a key sets in its block of the filter.
const FILTER_HASHES: u32 = 7;

/// The runs, and the filters of their keys.
#[derive(Default)]
pub(super) struct Spilled {
    /// Created at the first spill; removed, with the runs, on drop.
    dir: Option<tempfile::TempDir>,
    runs: Vec<Run>,
    /// Usually one, sized for the keys the run expects; another, twice as
    /// large, each time the keys spilled outgrow them.
    filters: Vec<Filter>,
    keys: usize,
}

impl Spilled {
    pub(super) fn keys(&self) -> usize {
        self.keys
    }

    pub(super) fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Where the runs are written (for errors).
    pub(super) fn dir(&self) -> String {
        match &self.dir {
            Some(dir) => dir.path().display().to_string(),
            None => std::env::temp_dir().display().to_string(),
        }
    }

    /// The payload `id` was spilled with.
    pub(super) fn get(&self, id: u128) -> io::Result<Option<u64>> {
        if self.runs.is_empty() || !self.filters.iter().any(|f| f.contains(id)) {
            return Ok(None);
        }
        let mut block = Vec::new();
        for run in &self.runs {
            if let Some(payload) = run.get(id, &mut block)? {
                return Ok(Some(payload));
            }
        }
        Ok(None)
    }

    /// Ask the CPU to bring `id`'s block of the filter into the cache.
    pub(super) fn prefetch(&self, id: u128) {
        if let Some(filter) = self.filters.last() {
            filter.prefetch(id);
        }
    }

    /// Write `sorted` (records sorted by id, none of them spilled before)
    /// as a run. `expected` is about how many keys the run will spill in
    /// all: the size of the first filter.
    pub(super) fn add(&mut self, sorted: &[Slot], expected: usize) -> io::Result<()> {
        let dir = match &mut self.dir {
            Some(dir) => dir,
            None => self.dir.insert(tempfile::Builder::new().prefix("tenure-keys-").tempdir()?),
        };
        let path = dir.path().join(format!("run-{:04}.bin", self.runs.len()));
        let file = File::options().read(true).write(true).create_new(true).open(&path)?;
        let mut writer = io::BufWriter::with_capacity(1 << 20, &file);
        let mut record = [0u8; RECORD];
        for slot in sorted {
            encode_record(&mut record, id_of(slot), slot.payload);
            writer.write_all(&record)?;
        }
        writer.flush()?;
        drop(writer);
        for slot in sorted {
            let id = id_of(slot);
            let filter = match self.filters.last_mut() {
                Some(f) if f.len < f.capacity => f,
                _ => {
                    let capacity = expected.max(2 * self.keys).max(sorted.len());
                    self.filters.push(Filter::with_capacity(capacity));
                    self.filters.last_mut().expect("just pushed")
                }
            };
            filter.insert(id);
        }
        let fences = sorted.iter().step_by(FENCE).map(id_of).collect();
        self.runs.push(Run { file, len: sorted.len(), fences });
        self.keys += sorted.len();
        tracing::debug!(keys = sorted.len(), runs = self.runs.len(), spilled = self.keys, "key table spilled to a run");
        Ok(())
    }

    /// Each run's records in order, read from its file.
    pub(super) fn readers(self) -> (Vec<RunReader>, Option<tempfile::TempDir>) {
        let readers = self.runs.into_iter().map(RunReader::new).collect();
        (readers, self.dir)
    }
}

pub(super) fn id_of(slot: &Slot) -> u128 {
    (slot.id[1] as u128) << 64 | slot.id[0] as u128
}

/// One run: its file and every [`FENCE`]-th id.
struct Run {
    file: File,
    len: usize,
    fences: Vec<u128>,
}

impl Run {
    fn get(&self, id: u128, block: &mut Vec<u8>) -> io::Result<Option<u64>> {
        // The block that starts at the last fence at or below `id`.
        let after = self.fences.partition_point(|f| *f <= id);
        let Some(index) = after.checked_sub(1) else { return Ok(None) };
        let start = index * FENCE;
        let end = (start + FENCE).min(self.len);
        block.resize((end - start) * RECORD, 0);
        self.file.read_exact_at(block, (start * RECORD) as u64)?;
        Ok(search(block, id))
    }
}

/// A run read from start to end, a large block at a time.
pub(super) struct RunReader {
    run: Run,
    buffer: Vec<u8>,
    /// Next record in `buffer`, and the run's first record not read yet.
    at: usize,
    read: usize,
}

impl RunReader {
    const BLOCK: usize = (1 << 20) / RECORD;

    fn new(run: Run) -> RunReader {
        RunReader { run, buffer: Vec::new(), at: 0, read: 0 }
    }
}

impl Iterator for RunReader {
    type Item = io::Result<(u128, u64)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at * RECORD == self.buffer.len() {
            let n = Self::BLOCK.min(self.run.len - self.read);
            if n == 0 {
                return None;
            }
            self.buffer.resize(n * RECORD, 0);
            if let Err(e) = self.run.file.read_exact_at(&mut self.buffer, (self.read * RECORD) as u64) {
                self.read = self.run.len;
                self.buffer.clear();
                self.at = 0;
                return Some(Err(e));
            }
            self.read += n;
            self.at = 0;
        }
        let record = decode_record(&self.buffer[self.at * RECORD..(self.at + 1) * RECORD]);
        self.at += 1;
        Some(Ok(record))
    }
}

/// A blocked Bloom filter: a key sets [`FILTER_HASHES`] bits of one
/// 64-byte block, so a lookup reads one cache line. Ids are uniform hashes:
/// the block comes from the id's low half, the bits from its high half.
struct Filter {
    blocks: Vec<Block>,
    capacity: usize,
    len: usize,
}

#[derive(Clone, Copy, Default)]
#[repr(align(64))]
struct Block([u64; 8]);

impl Filter {
    fn with_capacity(keys: usize) -> Filter {
        let blocks = (keys.saturating_mul(FILTER_BITS_PER_KEY) / 512).max(1);
        Filter {
            blocks: vec![Block::default(); blocks],
            capacity: keys,
            len: 0,
        }
    }

    fn block(&self, id: u128) -> usize {
        ((u128::from(id as u64) * self.blocks.len() as u128) >> 64) as usize
    }

    fn mask(id: u128) -> Block {
        let bits = (id >> 64) as u64;
        let mut mask = Block::default();
        for k in 0..FILTER_HASHES {
            let bit = (bits >> (9 * k)) as usize & 511;
            mask.0[bit / 64] |= 1 << (bit % 64);
        }
        mask
    }

    fn insert(&mut self, id: u128) {
        let (i, mask) = (self.block(id), Self::mask(id));
        for (word, m) in self.blocks[i].0.iter_mut().zip(mask.0) {
            *word |= m;
        }
        self.len += 1;
    }

    fn contains(&self, id: u128) -> bool {
        let (block, mask) = (&self.blocks[self.block(id)], Self::mask(id));
        block.0.iter().zip(mask.0).all(|(word, m)| word & m == m)
    }

    fn prefetch(&self, id: u128) {
        let block = &self.blocks[self.block(id)];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is only a hint (it never faults), and the address
        // is that of a block of the filter; SSE is part of the x86_64 baseline.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>((block as *const Block).cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = block;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(ids: impl Iterator<Item = u128>) -> Vec<Slot> {
        let mut slots: Vec<Slot> = ids.map(|id| Slot { id: [id as u64, (id >> 64) as u64], payload: id as u64 ^ 7 }).collect();
        slots.sort_unstable_by_key(id_of);
        slots
    }

    /// Every spilled key is found with its payload, from any run, and the
    /// readers give each run back in order; keys never spilled are not
    /// found, and few of them get through the filter.
    #[test]
    fn spilled_keys_are_found_and_read_back_in_order() {
        let mut rng = fastrand::Rng::with_seed(0x51_11ED);
        let mut next = || (rng.u64(..) as u128) << 64 | rng.u64(..) as u128;
        let runs: Vec<Vec<Slot>> = (0..3)
            .map(|i| {
                let ends = if i == 0 { vec![0, u128::MAX] } else { vec![next(), next()] };
                slots((0..4_998).map(|_| next()).collect::<Vec<_>>().into_iter().chain(ends))
            })
            .collect();
        let mut spilled = Spilled::default();
        for run in &runs {
            spilled.add(run, 6_000).expect("spill");
        }
        assert_eq!(spilled.keys(), 15_000);
        assert!(spilled.filters.len() >= 2, "6,000 expected keys outgrown");
        for slot in runs.iter().flatten() {
            assert_eq!(spilled.get(id_of(slot)).expect("read"), Some(slot.payload));
        }
        let strangers: Vec<u128> = (0..100_000).map(|_| next()).collect();
        let through = strangers.iter().filter(|id| spilled.filters.iter().any(|f| f.contains(**id))).count();
        assert!(through < 2_000, "{through} of 100,000 new keys got through the filters");
        for id in strangers {
            assert_eq!(spilled.get(id).expect("read"), None);
        }
        let (readers, dir) = spilled.readers();
        assert!(dir.is_some());
        for (reader, run) in readers.into_iter().zip(&runs) {
            let back: Vec<(u128, u64)> = reader.map(|r| r.expect("read")).collect();
            let want: Vec<(u128, u64)> = run.iter().map(|s| (id_of(s), s.payload)).collect();
            assert_eq!(back, want);
        }
    }
}
