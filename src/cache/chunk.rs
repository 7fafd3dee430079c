//! One chunk file: a fixed header, the rows' text keys, for token states each row's token count,
//! then the rows' f32 values.
//!
//! ```text
//! 0   magic "FLCHUNK2"
//! 8   u32 dim, u32 kind (0 = one vector per row, 1 = a sequence of vectors per row)
//! 16  u64 rows
//! 24  u64 XXH3-64 of everything after the header (integrity, fast enough to check on every open)
//! 32  [u8; 10] the cache entry's id: a chunk copied into another entry (another model, max
//!     length or frost line) is refused
//! 42  pad to 64
//! 64  rows × 16-byte text keys
//! ..  kind 1 only: rows × u32 token counts
//! ..  values, f32 little-endian (4-byte aligned: everything before is a multiple of 4)
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Error, Result};
use crate::io::fsutil;

pub(super) const EXTENSION: &str = ".flc";
const MAGIC: &[u8; 8] = b"FLCHUNK2";

/// Chunk files (device, inode, length, modification time) whose checksum this process has
/// checked; a file changed in place gets another modification time and is checked again.
type FileIdentity = (u64, u64, u64, i64, i64);
static VERIFIED: std::sync::Mutex<std::collections::BTreeSet<FileIdentity>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());
const HEADER: usize = 64;
const KEY_BYTES: usize = 16;

/// A row's key: the first 16 bytes of SHA-256 over the text.
pub(crate) type TextKey = [u8; KEY_BYTES];

pub fn text_key(text: &str) -> TextKey {
    let digest = Sha256::digest(text.as_bytes());
    digest[..KEY_BYTES].try_into().expect("16 bytes")
}

/// A mapped, verified chunk and where each row's values start.
pub struct Chunk {
    map: Mmap,
    rows: usize,
    dim: usize,
    /// Start of each row (and one past the last) in units of `dim` floats.
    starts: Vec<usize>,
    values_at: usize,
}

impl Chunk {
    /// Maps a chunk and checks it whole: magic, kind, dimension, length and checksum.
    pub fn open(
        path: &Path,
        entry: &[u8; 10],
        dim: usize,
        sequences: bool,
    ) -> std::result::Result<Self, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
        // SAFETY: chunks are immutable once renamed into place, and the entry's lock keeps other
        // frostline processes from replacing them while mapped.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| format!("cannot map: {e}"))?;
        if map.len() < HEADER || &map[..8] != MAGIC {
            return Err("not a frostline chunk (bad header)".into());
        }
        let u32_at =
            |at: usize| u32::from_le_bytes(map[at..at + 4].try_into().expect("4 bytes")) as usize;
        let file_dim = u32_at(8);
        if file_dim != dim {
            return Err(format!("dimension {file_dim}, expected {dim}"));
        }
        if (u32_at(12) == 1) != sequences {
            return Err(format!(
                "holds {}, expected {}",
                kind_name(u32_at(12) == 1),
                kind_name(sequences)
            ));
        }
        if &map[32..42] != entry {
            return Err(
                "belongs to another cache entry (other model, max length or frost line)".into(),
            );
        }
        // Every size derived from the header is checked arithmetic: a damaged `rows` field must
        // read as a damaged chunk (quarantined), never overflow into a panic.
        let too_short = || {
            format!(
                "{} bytes, too short for its header's row count (truncated or damaged)",
                map.len()
            )
        };
        let rows = usize::try_from(u64::from_le_bytes(map[16..24].try_into().expect("8 bytes")))
            .map_err(|_| too_short())?;
        let per_row = KEY_BYTES + if sequences { 4 } else { 0 };
        let values_at = rows
            .checked_mul(per_row)
            .and_then(|b| b.checked_add(HEADER))
            .filter(|&end| end <= map.len())
            .ok_or_else(too_short)?;
        let counts_at = HEADER + rows * KEY_BYTES;
        let mut starts = Vec::with_capacity(rows + 1);
        starts.push(0usize);
        for r in 0..rows {
            let len = if sequences {
                u32_at(counts_at + 4 * r)
            } else {
                1
            };
            starts.push(starts[r] + len);
        }
        let expected = starts[rows]
            .checked_mul(dim * 4)
            .and_then(|b| b.checked_add(values_at));
        if expected != Some(map.len()) {
            return Err(format!(
                "{} bytes, expected {} for {rows} rows (truncated?)",
                map.len(),
                expected.map_or("more than can be addressed".to_string(), |e| e.to_string())
            ));
        }
        // A chunk is immutable once renamed into place: one whole check per file per process is
        // enough (a streaming run re-opens its entry once per window).
        let identity = file.metadata().ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec())
        });
        let verified = || VERIFIED.lock().unwrap_or_else(|e| e.into_inner());
        let known = identity.is_some_and(|id| verified().contains(&id));
        if !known {
            if xxh3_64(&map[HEADER..]).to_le_bytes() != map[24..32] {
                return Err("checksum mismatch (corrupt)".into());
            }
            if let Some(id) = identity {
                verified().insert(id);
            }
        }
        // The check read every page; hand them back so the mapping costs no resident memory
        // until rows are read (a run over millions of rows stays bounded by what it reads).
        // SAFETY: DONTNEED on a read-only file mapping only drops pages, which re-read from the
        // file on the next access; nothing borrowed from the map outlives this call.
        let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        Ok(Self {
            map,
            rows,
            dim,
            starts,
            values_at,
        })
    }

    pub fn keys(&self) -> &[TextKey] {
        let bytes = &self.map[HEADER..HEADER + self.rows * KEY_BYTES];
        // SAFETY: [u8; 16] has alignment 1 and the slice length is a multiple of 16.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<TextKey>(), self.rows) }
    }

    /// Row `r`'s values: `dim` floats, or `tokens × dim` for a sequence.
    pub fn row(&self, r: usize) -> &[f32] {
        let start = self.values_at + self.starts[r] * self.dim * 4;
        let n = (self.starts[r + 1] - self.starts[r]) * self.dim;
        let bytes = &self.map[start..start + n * 4];
        // SAFETY: the mapping is page-aligned and `start` is a multiple of 4, so the f32 view is
        // aligned; chunks are little-endian like every supported target.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), n) }
    }

    /// Hands row `r`'s pages back to the kernel once it has been read (they re-read from the
    /// file if asked for again): a pass over a long run of token states then keeps only what it
    /// is reading resident, not every page it has touched.
    pub fn release_row(&self, r: usize) {
        let start = self.values_at + self.starts[r] * self.dim * 4;
        let len = (self.starts[r + 1] - self.starts[r]) * self.dim * 4;
        // SAFETY: DONTNEED on a read-only file mapping only drops pages, which re-read from the
        // file on the next access, so a slice still borrowed from the map reads the same bytes.
        let _ = unsafe {
            self.map
                .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len)
        };
    }

    pub fn bytes(&self) -> usize {
        self.map.len()
    }
}

fn kind_name(sequences: bool) -> &'static str {
    if sequences {
        "token states"
    } else {
        "sentence vectors"
    }
}

/// The most floats a chunk buffers before it is written, whatever its row count: token-state
/// rows are up to `max_length × hidden` floats each, so a row count alone would let one chunk
/// of long windows hold gigabytes in memory (64 MiB).
const MAX_CHUNK_FLOATS: usize = 16 << 20;

/// Buffers rows and writes them out as chunks of `rows_per_chunk` (or [`MAX_CHUNK_FLOATS`]),
/// each atomically.
pub struct ChunkWriter {
    dir: PathBuf,
    entry: [u8; 10],
    dim: usize,
    sequences: bool,
    rows_per_chunk: usize,
    keys: Vec<TextKey>,
    counts: Vec<u32>,
    values: Vec<f32>,
    written: usize,
}

impl ChunkWriter {
    pub fn new(
        dir: PathBuf,
        entry: [u8; 10],
        dim: usize,
        sequences: bool,
        rows_per_chunk: usize,
    ) -> Self {
        Self {
            dir,
            entry,
            dim,
            sequences,
            rows_per_chunk: rows_per_chunk.max(1),
            keys: Vec::new(),
            counts: Vec::new(),
            values: Vec::new(),
            written: 0,
        }
    }

    /// Adds one row (`dim` floats, or `tokens × dim` for token states); returns the path of a
    /// chunk if this filled one.
    pub fn push(&mut self, key: TextKey, values: &[f32]) -> Result<Option<PathBuf>> {
        debug_assert!(
            values.len().is_multiple_of(self.dim) && (self.sequences || values.len() == self.dim)
        );
        self.keys.push(key);
        self.counts.push((values.len() / self.dim) as u32);
        self.values.extend_from_slice(values);
        if self.keys.len() >= self.rows_per_chunk || self.values.len() >= MAX_CHUNK_FLOATS {
            return self.flush();
        }
        Ok(None)
    }

    /// Writes whatever is buffered as one chunk.
    pub fn flush(&mut self) -> Result<Option<PathBuf>> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        let rows = self.keys.len();
        let mut body = Vec::with_capacity(rows * (KEY_BYTES + 4) + self.values.len() * 4);
        for k in &self.keys {
            body.extend_from_slice(k);
        }
        if self.sequences {
            for c in &self.counts {
                body.extend_from_slice(&c.to_le_bytes());
            }
        }
        for v in &self.values {
            body.extend_from_slice(&v.to_le_bytes());
        }
        let mut header = [0u8; HEADER];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&(self.dim as u32).to_le_bytes());
        header[12..16].copy_from_slice(&(self.sequences as u32).to_le_bytes());
        header[16..24].copy_from_slice(&(rows as u64).to_le_bytes());
        header[24..32].copy_from_slice(&xxh3_64(&body).to_le_bytes());
        header[32..42].copy_from_slice(&self.entry);
        // Names sort by creation time, so readers index older chunks first.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = self.dir.join(format!(
            "{nanos:024}-{}-{}{EXTENSION}",
            std::process::id(),
            self.written
        ));
        fsutil::write_atomic(&path, |w| {
            w.write_all(&header)?;
            w.write_all(&body)
        })
        .map_err(|e| Error::cache(&path, format!("writing chunk: {e}")))?;
        self.keys.clear();
        self.counts.clear();
        self.values.clear();
        self.written += 1;
        Ok(Some(path))
    }
}
