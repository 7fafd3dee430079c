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

pub(crate) use chunk::TextKey;
pub use chunk::{text_key, Chunk, ChunkWriter};
pub use key::CacheKey;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use ndarray::Array2;

use crate::error::{Error, Result};
use crate::io::fsutil;

/// Default cache root: `$FROSTLINE_CACHE`, else `~/.cache/frostline/embeddings`.
pub(crate) fn default_root() -> PathBuf {
    // An empty value means unset (never "the current directory").
    if let Some(p) = std::env::var_os("FROSTLINE_CACHE").filter(|v| !v.is_empty()) {
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
    /// The entry could not be written (a read-only file system or folder): it serves the rows
    /// it holds, and a run that needs more says so.
    pub read_only: bool,
}

/// Whether an I/O error means "this place cannot be written" (not "something is broken").
fn is_read_only(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(libc::EROFS)
}

impl Cache {
    /// Opens (or creates) the entry for `key` under `root`, holding an exclusive lock so that two
    /// runs never write the same entry at once.
    pub fn open(root: &Path, key: CacheKey) -> Result<Self> {
        let dir = root.join(key.id());
        let chunk_dir = dir.join("chunks");
        let manifest = dir.join("manifest.json");
        // A read-only cache that already holds this entry still serves its rows.
        let writable = std::fs::create_dir_all(&chunk_dir)
            .and_then(|()| fsutil::try_lock_file(&dir.join("lock")));
        let (lock, read_only) = match writable {
            Ok(lock) => (Some(lock), false),
            Err(e) if is_read_only(&e) && chunk_dir.is_dir() => (None, true),
            Err(e) => return Err(Error::cache(&dir, format!("cannot open for writing: {e}"))),
        };
        let mut cache = Cache {
            dir,
            key,
            chunks: Vec::new(),
            index: HashMap::new(),
            quarantined: Vec::new(),
            lock,
            read_only,
        };
        cache.check_manifest(&manifest)?;
        cache.load_chunks()?;
        Ok(cache)
    }

    fn chunk_dir(&self) -> PathBuf {
        self.dir.join("chunks")
    }

    /// Writes the entry's manifest when absent; one that is unreadable or names another key is
    /// set aside in `quarantine/` like a damaged chunk and written anew (the chunks carry the
    /// entry's id, so they are checked on their own).
    fn check_manifest(&mut self, manifest: &Path) -> Result<()> {
        if manifest.is_file() {
            let problem = match CacheKey::read(manifest) {
                Ok(stored) if stored == self.key => return Ok(()),
                Ok(_) => "manifest names another key (hand edit?)".to_string(),
                Err(e) => e.to_string(),
            };
            if self.read_only {
                return Err(Error::cache(manifest, format!("{problem}; the cache is read-only, so it cannot be set aside: point --cache-dir elsewhere")));
            }
            self.quarantine(manifest, problem)?;
        } else if self.read_only {
            return Ok(());
        }
        fsutil::write_atomic(manifest, |w| {
            serde_json::to_writer_pretty(&mut *w, &self.key).map_err(std::io::Error::other)
        })
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
            if fsutil::is_temp_name(&name) && !self.read_only {
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
        if self.read_only {
            // Cannot move it aside: leave it, unread, and say so.
            self.quarantined.push((
                path.to_path_buf(),
                format!("{reason}; left in place (read-only cache)"),
            ));
            return Ok(());
        }
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

    /// Hands the pages of `key`'s row back to the kernel after it was read (see
    /// [`Chunk::release_row`]).
    pub fn release(&self, key: &TextKey) {
        if let Some(&(c, r)) = self.index.get(key) {
            self.chunks[c as usize].release_row(r as usize);
        }
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
