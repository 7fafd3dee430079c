//! One chunk file: a fixed header, the rows' text keys, then the rows' f32 vectors.
//!
//! ```text
//! 0   magic "FLCHUNK2"
//! 8   u32 dim, u32 reserved
//! 16  u64 rows
//! 24  u64 XXH3-64 of everything after the header (integrity, fast enough to check on every open)
//! 32  pad to 64
//! 64  rows × 16-byte text keys
//! ..  rows × dim × f32 (little-endian; 4-byte aligned since the header and keys are)
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Error, Result};
use crate::fsutil;

pub const EXTENSION: &str = ".flc";
const MAGIC: &[u8; 8] = b"FLCHUNK2";
const HEADER: usize = 64;
const KEY_BYTES: usize = 16;

/// A row's key: the first 16 bytes of SHA-256 over the text.
pub type TextKey = [u8; KEY_BYTES];

pub fn text_key(text: &str) -> TextKey {
    let digest = Sha256::digest(text.as_bytes());
    digest[..KEY_BYTES].try_into().expect("16 bytes")
}

/// Maps a chunk and checks it whole: magic, dimension, length and checksum.
pub fn open_verified(path: &Path, dim: usize) -> std::result::Result<Mmap, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    // SAFETY: chunks are immutable once renamed into place, and the entry's lock keeps other
    // frostline processes from replacing them while mapped.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| format!("cannot map: {e}"))?;
    if map.len() < HEADER || &map[..8] != MAGIC {
        return Err("not a frostline chunk (bad header)".into());
    }
    let file_dim = u32::from_le_bytes(map[8..12].try_into().unwrap()) as usize;
    if file_dim != dim {
        return Err(format!("dimension {file_dim}, expected {dim}"));
    }
    let rows = u64::from_le_bytes(map[16..24].try_into().unwrap()) as usize;
    let expected = HEADER + rows * (KEY_BYTES + dim * 4);
    if map.len() != expected {
        return Err(format!(
            "{} bytes, expected {expected} for {rows} rows (truncated?)",
            map.len()
        ));
    }
    if xxh3_64(&map[HEADER..]).to_le_bytes() != map[24..32] {
        return Err("checksum mismatch (corrupt)".into());
    }
    Ok(map)
}

fn rows_of(map: &[u8]) -> usize {
    u64::from_le_bytes(map[16..24].try_into().unwrap()) as usize
}

pub fn keys(map: &[u8]) -> &[TextKey] {
    let rows = rows_of(map);
    let bytes = &map[HEADER..HEADER + rows * KEY_BYTES];
    // SAFETY: [u8; 16] has alignment 1 and the slice length is a multiple of 16.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<TextKey>(), rows) }
}

pub fn row(map: &[u8], dim: usize, r: usize) -> &[f32] {
    let rows = rows_of(map);
    let start = HEADER + rows * KEY_BYTES + r * dim * 4;
    let bytes = &map[start..start + dim * 4];
    // SAFETY: the mapping is page-aligned and `start` is a multiple of 4 (HEADER and KEY_BYTES
    // are), so the f32 view is aligned; chunks are little-endian like every supported target.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), dim) }
}

/// Buffers rows and writes them out as chunks of `rows_per_chunk`, each atomically.
pub struct ChunkWriter {
    dir: PathBuf,
    dim: usize,
    rows_per_chunk: usize,
    keys: Vec<TextKey>,
    values: Vec<f32>,
    written: usize,
}

impl ChunkWriter {
    pub fn new(dir: PathBuf, dim: usize, rows_per_chunk: usize) -> Self {
        Self {
            dir,
            dim,
            rows_per_chunk: rows_per_chunk.max(1),
            keys: Vec::new(),
            values: Vec::new(),
            written: 0,
        }
    }

    /// Adds one row; returns the path of a chunk if this filled one.
    pub fn push(&mut self, key: TextKey, vector: &[f32]) -> Result<Option<PathBuf>> {
        debug_assert_eq!(vector.len(), self.dim);
        self.keys.push(key);
        self.values.extend_from_slice(vector);
        if self.keys.len() >= self.rows_per_chunk {
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
        let mut body = Vec::with_capacity(rows * (KEY_BYTES + self.dim * 4));
        for k in &self.keys {
            body.extend_from_slice(k);
        }
        for v in &self.values {
            body.extend_from_slice(&v.to_le_bytes());
        }
        let mut header = [0u8; HEADER];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&(self.dim as u32).to_le_bytes());
        header[16..24].copy_from_slice(&(rows as u64).to_le_bytes());
        header[24..32].copy_from_slice(&xxh3_64(&body).to_le_bytes());
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
        self.values.clear();
        self.written += 1;
        Ok(Some(path))
    }
}
