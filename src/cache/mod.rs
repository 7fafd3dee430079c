//! The content-keyed embedding cache.
//!
//! Layout: `ROOT/<key>/manifest.json` says what produced the vectors (the [`CacheKey`] fields);
//! `ROOT/<key>/chunks/*.flc` hold rows, each keyed by the hash of its text. A chunk is written to
//! a temp file and renamed into place, so it is either whole or absent: a run killed at any point
//! loses at most the rows it had not flushed yet, and the next run embeds only those. Chunks carry
//! an XXH3 checksum, so a damaged one is set aside (and its rows re-embedded), never read.
//!
//! Readers map chunks into memory; the only copy made is the gather into the caller's array.

mod chunk;
mod key;

pub use chunk::{text_key, Chunk, ChunkWriter, TextKey};
pub use key::CacheKey;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use ndarray::Array2;

use crate::error::{Error, Result};
use crate::fsutil;

/// Default cache root: `$FROSTLINE_CACHE`, else `~/.cache/frostline/embeddings`.
pub fn default_root() -> PathBuf {
    if let Some(p) = std::env::var_os("FROSTLINE_CACHE") {
        return PathBuf::from(p);
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/frostline/embeddings"))
        .unwrap_or_else(|| PathBuf::from(".frostline-cache"))
}

/// One open cache entry (one key): an index of every cached row and the mapped chunks.
pub struct Cache {
    pub dir: PathBuf,
    pub key: CacheKey,
    chunks: Vec<Chunk>,
    index: HashMap<TextKey, (u32, u32)>,
    /// Chunks that failed their check and were moved aside, with the reason.
    pub quarantined: Vec<(PathBuf, String)>,
    /// Held while this process may write the entry; released by [`Cache::unlock`].
    lock: Option<File>,
}

impl Cache {
    /// Opens (or creates) the entry for `key` under `root`, holding an exclusive lock so that two
    /// runs never write the same entry at once.
    pub fn open(root: &Path, key: CacheKey) -> Result<Self> {
        let dir = root.join(key.id());
        let chunk_dir = dir.join("chunks");
        std::fs::create_dir_all(&chunk_dir)
            .map_err(|e| Error::cache(&chunk_dir, format!("cannot create: {e}")))?;
        let lock = fsutil::lock_exclusive(&dir.join("lock"))?;
        let manifest = dir.join("manifest.json");
        if manifest.is_file() {
            let stored = CacheKey::read(&manifest)?;
            if stored != key {
                return Err(Error::cache(&manifest, "manifest does not match its key (hash collision or hand edit); delete this folder"));
            }
        } else {
            fsutil::write_atomic(&manifest, |w| {
                serde_json::to_writer_pretty(&mut *w, &key).map_err(std::io::Error::other)
            })?;
        }
        let mut cache = Cache {
            dir,
            key,
            chunks: Vec::new(),
            index: HashMap::new(),
            quarantined: Vec::new(),
            lock: Some(lock),
        };
        cache.load_chunks()?;
        Ok(cache)
    }

    fn chunk_dir(&self) -> PathBuf {
        self.dir.join("chunks")
    }

    fn load_chunks(&mut self) -> Result<()> {
        let chunk_dir = self.chunk_dir();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&chunk_dir)
            .map_err(|e| Error::io(&chunk_dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        paths.sort();
        for path in paths {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if fsutil::is_temp_name(&name) {
                // A write cut short by a kill: we hold the lock, so nobody is still writing it.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(chunk::EXTENSION) {
                continue;
            }
            match Chunk::open(
                &path,
                &self.key.id_bytes(),
                self.key.dim,
                self.key.is_tokens(),
            ) {
                Ok(c) => self.add_chunk(c),
                Err(reason) => self.quarantine(&path, reason)?,
            }
        }
        Ok(())
    }

    fn add_chunk(&mut self, chunk: Chunk) {
        let c = self.chunks.len() as u32;
        for (r, key) in chunk.keys().iter().enumerate() {
            self.index.entry(*key).or_insert((c, r as u32));
        }
        self.chunks.push(chunk);
    }

    fn quarantine(&mut self, path: &Path, reason: String) -> Result<()> {
        let bad_dir = self.dir.join("quarantine");
        std::fs::create_dir_all(&bad_dir).map_err(|e| Error::io(&bad_dir, e))?;
        let target = bad_dir.join(path.file_name().unwrap_or_default());
        std::fs::rename(path, &target).map_err(|e| Error::io(path, e))?;
        self.quarantined.push((target, reason));
        Ok(())
    }

    /// Gives up the write lock once the entry holds what this process needs: mapped chunks stay
    /// readable (they are immutable), and other processes may add chunks meanwhile.
    pub fn unlock(&mut self) {
        self.lock = None;
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn contains(&self, key: &TextKey) -> bool {
        self.index.contains_key(key)
    }

    /// The cached values of one text, borrowed from the mapped chunk: its vector, or for token
    /// states `tokens × dim` floats.
    pub fn get(&self, key: &TextKey) -> Option<&[f32]> {
        let &(c, r) = self.index.get(key)?;
        Some(self.chunks[c as usize].row(r as usize))
    }

    /// Gathers the rows for `keys` (in that order) into one array: the single copy a reader makes.
    pub fn gather(&self, keys: &[TextKey]) -> Result<Array2<f32>> {
        let dim = self.key.dim;
        let mut out = Array2::<f32>::zeros((keys.len(), dim));
        for (i, key) in keys.iter().enumerate() {
            let row = self.get(key).ok_or_else(|| {
                Error::cache(&self.dir, format!("row {} is not in the cache", i + 1))
            })?;
            out.row_mut(i)
                .as_slice_mut()
                .expect("standard layout")
                .copy_from_slice(row);
        }
        Ok(out)
    }

    /// A writer that appends new chunks to this entry; call [`Cache::commit`] with each chunk it
    /// returns so lookups see the new rows.
    pub fn writer(&self, rows_per_chunk: usize) -> ChunkWriter {
        ChunkWriter::new(
            self.chunk_dir(),
            self.key.id_bytes(),
            self.key.dim,
            self.key.is_tokens(),
            rows_per_chunk,
        )
    }

    /// Maps a freshly written chunk and indexes its rows.
    pub fn commit(&mut self, path: &Path) -> Result<()> {
        let chunk = Chunk::open(
            path,
            &self.key.id_bytes(),
            self.key.dim,
            self.key.is_tokens(),
        )
        .map_err(|r| Error::cache(path, r))?;
        self.add_chunk(chunk);
        Ok(())
    }

    /// Bytes of chunk data on disk for this entry.
    pub fn bytes_on_disk(&self) -> u64 {
        self.chunks.iter().map(|c| c.bytes() as u64).sum()
    }
}
