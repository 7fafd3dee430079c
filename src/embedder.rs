//! Texts → (cache | tokenize → length-sorted batches → ORT) → vectors, in input order.
//!
//! One fill core makes sure every text is in a content-keyed cache entry; two embedders sit on it:
//! [`SentenceEmbedder`] (the full graph, pooled: one vector per text) and [`TokenStateEmbedder`]
//! (the graph cut at a frost line: every token's state). A repeated run finds every text cached
//! and makes no ORT call; a run that was killed finds the chunks it had flushed and embeds only
//! the rest.

pub use crate::cache::{text_key, Cache, CacheKey, Chunk, ChunkWriter};

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayView3};

use crate::align::WordFeature;
use crate::align::{plan_windows, WordWindows};
use crate::backbone::{Backbone, ModelFolder, Provider, SessionOptions};
use crate::batch;
use crate::cache::{self, TextKey};
use crate::error::{Error, Result};
use crate::pool::Pooling;
use crate::progress::Progress;
use crate::tokenize::{Encoded, TextTokenizer};

/// How the backbone runs: everything `embed`, `predict` and training share. Every field is
/// decided (`cli::jobs`); nothing downstream re-decides it.
#[derive(Debug, Clone)]
pub struct EmbedSettings {
    pub model_dir: PathBuf,
    pub session: SessionOptions,
    /// Truncation length in tokens (checked against the model's position limit).
    pub max_length: usize,
    /// Padded tokens per batch (rows × longest row).
    pub token_budget: usize,
    pub max_batch_rows: usize,
    pub cache_root: PathBuf,
    pub ort_lib: Option<PathBuf>,
    pub rows_per_chunk: usize,
    pub progress: bool,
}

/// Padded tokens per batch unless `--batch-tokens` says otherwise.
pub const DEFAULT_TOKEN_BUDGET: usize = 1024;
/// Rows per batch at most, unless `--max-batch` says otherwise.
pub const DEFAULT_MAX_BATCH_ROWS: usize = 256;
/// Rows per cache chunk, unless `--chunk-rows` says otherwise.
pub const DEFAULT_ROWS_PER_CHUNK: usize = 2048;

impl EmbedSettings {
    /// Library defaults for the model folder `folder` (its own max length) — the command
    /// line's defaults too.
    pub fn new(folder: &ModelFolder) -> Self {
        Self {
            model_dir: folder.dir.clone(),
            session: SessionOptions {
                provider: Provider::Cpu,
                device_note: None,
                kernels: crate::backbone::Kernels::default(),
                threads: 0,
            },
            max_length: folder.max_length,
            token_budget: DEFAULT_TOKEN_BUDGET,
            max_batch_rows: DEFAULT_MAX_BATCH_ROWS,
            cache_root: cache::default_root(),
            ort_lib: None,
            rows_per_chunk: DEFAULT_ROWS_PER_CHUNK,
            progress: false,
        }
    }
}

/// Counts for the end-of-run summary (and `--json`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EmbedStats {
    pub rows: usize,
    pub unique_texts: usize,
    pub cache_hits: usize,
    pub embedded: usize,
    /// Real tokens over all rows (special tokens included, after truncation).
    pub tokens: usize,
    pub truncated_rows: usize,
    pub empty_texts: usize,
    /// Tokens fed to ORT, padding included, and the real ones among them.
    pub padded_tokens: usize,
    pub fed_tokens: usize,
    pub batches: usize,
    pub seconds: f64,
    /// Creating the ORT session (part of `seconds`).
    pub load_seconds: f64,
    pub ort_seconds: f64,
    /// `None` when no ORT session was needed (everything cached).
    pub provider: Option<Provider>,
    pub notes: Vec<String>,
    pub cache_dir: PathBuf,
}

impl EmbedStats {
    /// Adds the figures of another pass over more rows (a later window of the same input).
    pub fn add(&mut self, other: EmbedStats) {
        self.rows += other.rows;
        self.unique_texts += other.unique_texts;
        self.cache_hits += other.cache_hits;
        self.embedded += other.embedded;
        self.tokens += other.tokens;
        self.truncated_rows += other.truncated_rows;
        self.empty_texts += other.empty_texts;
        self.padded_tokens += other.padded_tokens;
        self.fed_tokens += other.fed_tokens;
        self.batches += other.batches;
        self.seconds += other.seconds;
        self.load_seconds += other.load_seconds;
        self.ort_seconds += other.ort_seconds;
        self.provider = self.provider.or(other.provider);
        if self.cache_dir.as_os_str().is_empty() {
            self.cache_dir = other.cache_dir;
        }
        for n in other.notes {
            if !self.notes.contains(&n) {
                self.notes.push(n);
            }
        }
    }

    pub fn padding_waste_pct(&self) -> f64 {
        if self.padded_tokens == 0 {
            0.0
        } else {
            100.0 * (self.padded_tokens - self.fed_tokens) as f64 / self.padded_tokens as f64
        }
    }

    pub fn summary(&self) -> String {
        let provider = self
            .provider
            .map_or("none (every text was cached)".to_string(), |p| {
                p.to_string()
            });
        let rate = if self.seconds > 0.0 {
            self.rows as f64 / self.seconds
        } else {
            0.0
        };
        let mut s = format!(
            "rows {}  (unique texts {}, cache hits {}, embedded {})\n\
             tokens {}  truncated rows {}  empty texts {}\n\
             batches {}  padded-token waste {:.1}%\n\
             seconds {:.2} ({:.0} rows/s; model load {:.2} s, session.run {:.2} s)\n\
             execution provider: {provider}\n\
             cache: {}",
            self.rows,
            self.unique_texts,
            self.cache_hits,
            self.embedded,
            self.tokens,
            self.truncated_rows,
            self.empty_texts,
            self.batches,
            self.padding_waste_pct(),
            self.seconds,
            rate,
            self.load_seconds,
            self.ort_seconds,
            self.cache_dir.display(),
        );
        for n in &self.notes {
            s.push_str(&format!("\nnote: {n}"));
        }
        s
    }
}

/// What the ORT output of one batch becomes per row: its pooled vector, or its real tokens'
/// states.
type RowsOf<'a> = &'a dyn Fn(ArrayView3<f32>, &[usize]) -> Vec<Vec<f32>>;

/// The model folder, its tokenizer, the graph that makes the vectors and its cache key, opened
/// once; fills the cache entry with whatever rows are missing.
struct FillCore {
    settings: EmbedSettings,
    folder: ModelFolder,
    tokenizer: TextTokenizer,
    key: CacheKey,
    graph: PathBuf,
    backbone: Option<Backbone>,
    /// What the progress display calls the work (phase, then task and split when known).
    label: String,
}

/// Sentence vectors of the full graph, pooled as the model folder says.
pub struct SentenceEmbedder {
    core: FillCore,
}

/// Every token's state at a frost line, from the graph cut there (exported once if missing).
pub struct TokenStateEmbedder {
    core: FillCore,
}

/// Token states of a set of texts at a frost line, read from the (mapped) cache on demand.
pub struct TokenStates {
    pub cache: Cache,
    pub keys: Vec<TextKey>,
    /// Tokens per text (special tokens included).
    pub lens: Vec<usize>,
}

impl TokenStates {
    /// Text `i`'s states, `[tokens, hidden]` floats row-major.
    pub fn get(&self, i: usize) -> &[f32] {
        self.cache.get(&self.keys[i]).expect("filled before use")
    }

    /// Text `i`'s states were read and are not needed again soon: their pages go back.
    pub fn release(&self, i: usize) {
        self.cache.release(&self.keys[i]);
    }
}

impl SentenceEmbedder {
    pub fn open(settings: EmbedSettings) -> Result<Self> {
        let folder = ModelFolder::open(&settings.model_dir)?;
        let key = CacheKey::sentence(&folder, settings.max_length, &settings.session)?;
        let graph = folder.onnx.clone();
        Ok(Self {
            core: FillCore::open(settings, folder, graph, key)?,
        })
    }

    pub fn folder(&self) -> &ModelFolder {
        &self.core.folder
    }

    pub fn key(&self) -> &CacheKey {
        &self.core.key
    }

    /// Names the next texts in the progress display (e.g. "intent train").
    pub fn set_progress_label(&mut self, what: &str) {
        self.core.label = format!("embedding {what}");
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.core.tokenizer
    }

    /// Embeds `texts` through the cache and returns their vectors in input order.
    pub fn embed(&mut self, texts: &[String]) -> Result<(Array2<f32>, EmbedStats)> {
        let started = Instant::now();
        let pooling = self.core.folder.pooling;
        let hidden = self.core.folder.hidden_size;
        let pooled = move |states: ArrayView3<f32>, lens: &[usize]| {
            pool_rows(states, lens, pooling, hidden)
                .rows()
                .into_iter()
                .map(|v| v.to_vec())
                .collect()
        };
        let (cache, keys, mut stats) = self.core.fill(texts, &pooled)?;
        let folder = &self.core.folder;
        if folder.pooling_source.starts_with("assumed") {
            stats.notes.push(format!(
                "pooling {} was assumed ({}); write modules.json into {} to choose",
                folder.pooling.describe(),
                folder.pooling_source,
                folder.dir.display()
            ));
        }
        let vectors = cache.gather(&keys)?;
        stats.seconds = started.elapsed().as_secs_f64();
        Ok((vectors, stats))
    }
}

impl SentenceEmbedder {
    /// Puts the vectors of a frostline dataset folder into the cache when they were made with
    /// this model and settings (its `_SUCCESS` names this cache key), each part checked against
    /// its recorded checksum first: a dataset made on a cluster then trains or predicts without
    /// being embedded again. Returns the rows taken, or `None` when `dir` is not a complete
    /// dataset of this key (its texts are then embedded as usual).
    pub fn import_dataset(&mut self, dir: &std::path::Path) -> Result<Option<usize>> {
        let Some(rec) = crate::dataset::success_record(dir)? else {
            return Ok(None);
        };
        if rec.cache_key != self.core.key {
            return Ok(None);
        }
        let dim = self.core.key.dim;
        let mut seen = std::collections::HashSet::new();
        let mut taken = 0;
        for part in &rec.parts {
            let path = dir.join(&part.file);
            if crate::dataset::checksum(&path)? != part.checksum {
                return Err(Error::InputFile {
                    path,
                    reason: "changed since the dataset was written (its checksum differs from _SUCCESS's); re-run that shard".into(),
                });
            }
            let (texts, values) = crate::data::read_part_vectors(&path, &part.text_column, dim)?;
            // Vetted before the cache is opened for writing: the spot check embeds through it.
            // Rows the spot check embedded afresh matched: they count as taken.
            taken += self.vet_imported(&path, &texts, &values)?;
            let mut cache = Cache::open(&self.core.settings.cache_root, self.core.key.clone())?;
            let mut writer = cache.writer(self.core.settings.rows_per_chunk);
            for (t, v) in texts.iter().zip(values.chunks_exact(dim)) {
                let k = cache::text_key(&self.core.folder.model_text(t));
                if cache.contains(&k) || !seen.insert(k) {
                    continue;
                }
                if let Some(p) = writer.push(k, v)? {
                    cache.commit(&p)?;
                }
                taken += 1;
            }
            if let Some(p) = writer.flush()? {
                cache.commit(&p)?;
            }
        }
        Ok(Some(taken))
    }

    /// A dataset's vectors are checked before they may enter the shared cache, because a
    /// checksum only proves the part was not damaged, not that its vectors are this model's:
    /// every vector must be finite, non-zero and of unit length where the model normalises, and
    /// a random sample of rows ([`SPOT_CHECK_ROWS`] per part, drawn anew each run) is embedded
    /// here and must match. The first failure refuses the whole dataset, naming part and row.
    /// Returns how many sample rows were embedded afresh (the rest were cached).
    fn vet_imported(
        &mut self,
        path: &std::path::Path,
        texts: &[String],
        values: &[f32],
    ) -> Result<usize> {
        let dim = self.core.key.dim;
        crate::dataset::check_vectors(
            path,
            texts,
            values,
            dim,
            self.core.folder.pooling.normalize,
        )?;
        let rows = spot_check_rows(texts.len());
        let sample: Vec<String> = rows.iter().map(|&r| texts[r].clone()).collect();
        let (fresh, stats) = self.embed(&sample)?;
        // Dynamically quantized graphs make batch-dependent vectors: allow for that.
        let min_cosine = match &self.core.folder.quantization {
            Some(q) if !q.recipe.method.batch_independent() => 0.98,
            _ => 0.999,
        };
        crate::dataset::check_spot(path, texts, values, &rows, fresh.view(), min_cosine)?;
        Ok(stats.embedded)
    }
}

/// How many rows of each imported part are embedded again to check its vectors.
pub const SPOT_CHECK_ROWS: usize = 8;

/// Up to [`SPOT_CHECK_ROWS`] distinct row indices below `n`, different on every run (seeded
/// from the process's random hasher keys), so a forger cannot know which rows are checked.
fn spot_check_rows(n: usize) -> Vec<usize> {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_usize(n);
    let mut state = hasher.finish() | 1;
    let mut rows = std::collections::BTreeSet::new();
    while rows.len() < SPOT_CHECK_ROWS.min(n) {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        rows.insert((state % n as u64) as usize);
    }
    rows.into_iter().collect()
}

impl TokenStateEmbedder {
    /// `quantize_frozen`: run the graph below the frost line in int8 (see
    /// [`crate::backbone::quantize::frozen_graph`]).
    pub fn open(settings: EmbedSettings, layer: usize, quantize_frozen: bool) -> Result<Self> {
        let folder = ModelFolder::open(&settings.model_dir)?;
        let (graph, recipe) =
            crate::backbone::quantize::frozen_graph(&folder, layer, quantize_frozen)?;
        let key = CacheKey::tokens(
            &folder,
            settings.max_length,
            layer,
            &graph,
            recipe,
            &settings.session,
        )?;
        let mut core = FillCore::open(settings, folder, graph, key)?;
        core.label = format!("token states below layer {layer}");
        Ok(Self { core })
    }

    /// Names the next texts in the progress display (e.g. "intent train").
    pub fn set_progress_label(&mut self, what: &str) {
        self.core.label = format!("token states {what}");
    }

    pub fn folder(&self) -> &ModelFolder {
        &self.core.folder
    }

    /// A token task's sentences as the model reads them: windows of whole words (see
    /// [`crate::align`]), each window's token states through the cache.
    pub fn word_states(
        &mut self,
        sentences: &[Vec<String>],
        feature: WordFeature,
    ) -> Result<(TokenStates, WordWindows, EmbedStats)> {
        let windows = plan_windows(
            &self.core.tokenizer,
            &self.core.folder.prefix,
            sentences,
            self.core.settings.max_length,
            feature,
        )?;
        let (states, stats) = self.token_states(&windows.texts)?;
        if let Some(w) = (0..windows.texts.len())
            .find(|&w| windows.owned[w].iter().any(|r| r.end > states.lens[w]))
        {
            return Err(Error::Internal(format!(
                "word alignment of window {:?} points past its {} cached token states",
                windows.texts[w].chars().take(80).collect::<String>(),
                states.lens[w]
            )));
        }
        Ok((states, windows, stats))
    }

    /// Every text's token states at the frost line, through the cache.
    pub fn token_states(&mut self, texts: &[String]) -> Result<(TokenStates, EmbedStats)> {
        let started = Instant::now();
        let real_tokens = |states: ArrayView3<f32>, lens: &[usize]| {
            (0..lens.len())
                .map(|r| {
                    states
                        .slice(ndarray::s![r, ..lens[r], ..])
                        .iter()
                        .copied()
                        .collect()
                })
                .collect()
        };
        let (cache, keys, mut stats) = self.core.fill(texts, &real_tokens)?;
        let dim = self.core.key.dim;
        let lens = keys
            .iter()
            .map(|k| cache.get(k).map_or(0, |v| v.len() / dim))
            .collect();
        stats.seconds = started.elapsed().as_secs_f64();
        Ok((TokenStates { cache, keys, lens }, stats))
    }
}

impl FillCore {
    fn open(
        settings: EmbedSettings,
        folder: ModelFolder,
        graph: PathBuf,
        key: CacheKey,
    ) -> Result<Self> {
        let tokenizer = TextTokenizer::load(&folder.tokenizer, settings.max_length)?;
        Ok(Self {
            settings,
            folder,
            tokenizer,
            key,
            graph,
            backbone: None,
            label: "embedding".into(),
        })
    }

    /// The ORT session, created on first use (a fully cached run never loads it).
    fn backbone(&mut self) -> Result<&mut Backbone> {
        if self.backbone.is_none() {
            self.backbone = Some(Backbone::load(
                &self.folder,
                &self.graph,
                &self.settings.session,
                self.settings.ort_lib.as_deref(),
            )?);
        }
        Ok(self.backbone.as_mut().expect("just set"))
    }

    /// Makes sure every text is in the cache; returns the open cache and the texts' keys.
    fn fill(
        &mut self,
        texts: &[String],
        rows_of: RowsOf,
    ) -> Result<(Cache, Vec<TextKey>, EmbedStats)> {
        let mut stats = EmbedStats {
            rows: texts.len(),
            ..Default::default()
        };
        let mut cache = Cache::open(&self.settings.cache_root, self.key.clone())?;
        stats.cache_dir = cache.dir.clone();
        for (path, reason) in &cache.quarantined {
            stats.notes.push(format!(
                "damaged cache chunk set aside ({reason}): {}",
                path.display()
            ));
        }

        if let Some(q) = &self.folder.quantization {
            if !q.recipe.method.batch_independent() {
                stats.notes.push(format!(
                    "{} is dynamically quantized: each vector depends on the other texts in its batch, so cached vectors are as the first run batched them; re-quantize with --method per-token for batch-independent vectors",
                    self.folder.dir.display()
                ));
            }
        }
        // What the model reads: the folder's prefix (if any) before each text; keys and tokens
        // are of that, so another prefix never shares a cache row.
        let model_texts: Vec<std::borrow::Cow<str>> =
            texts.iter().map(|t| self.folder.model_text(t)).collect();
        let keys: Vec<TextKey> = model_texts.iter().map(|t| cache::text_key(t)).collect();
        // Unique texts, first occurrence wins; split into cached and to-embed.
        let mut seen = std::collections::HashSet::new();
        let mut missing: Vec<usize> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            if seen.insert(*k) {
                stats.unique_texts += 1;
                if cache.contains(k) {
                    stats.cache_hits += 1;
                } else {
                    missing.push(i);
                }
            }
        }

        // Token counts for the summary cover every row; tokenisation is < 2 % of the cost.
        let all: Vec<&str> = model_texts.iter().map(|t| t.as_ref()).collect();
        let encoded = self.tokenizer.encode_all(&all)?;
        for (text, enc) in texts.iter().zip(&encoded) {
            stats.tokens += enc.ids.len();
            stats.truncated_rows += enc.truncated as usize;
            stats.empty_texts += text.trim().is_empty() as usize;
        }

        if !missing.is_empty() && cache.read_only {
            return Err(Error::cache(
                &cache.dir,
                format!(
                    "read-only, and {} of these texts are not in it; make it writable or point --cache-dir elsewhere",
                    missing.len()
                ),
            ));
        }
        if !missing.is_empty() {
            self.embed_missing(&missing, &keys, &encoded, rows_of, &mut cache, &mut stats)?;
        }
        // Reading needs no lock, and another split of the same run opens this entry next.
        cache.unlock();
        Ok((cache, keys, stats))
    }

    fn embed_missing(
        &mut self,
        missing: &[usize],
        keys: &[TextKey],
        encoded: &[Encoded],
        rows_of: RowsOf,
        cache: &mut Cache,
        stats: &mut EmbedStats,
    ) -> Result<()> {
        let lengths: Vec<usize> = missing.iter().map(|&i| encoded[i].ids.len()).collect();
        let plan = batch::plan(
            &lengths,
            self.settings.token_budget,
            self.settings.max_batch_rows,
        );
        // Progress counts padded tokens — the work — since batches run longest first.
        let total: usize = plan.iter().map(|b| b.padded_tokens()).sum();
        let bar = Progress::new(
            self.settings.progress,
            self.label.clone(),
            total as u64,
            "tokens",
        )
        .with_items("texts", missing.len() as u64);
        let mut writer = cache.writer(self.settings.rows_per_chunk);
        if let Some(note) = &self.settings.session.device_note {
            stats.notes.push(note.clone());
        }
        let t_load = Instant::now();
        let backbone = self.backbone()?;
        stats.load_seconds = t_load.elapsed().as_secs_f64();
        stats.provider = Some(backbone.provider);
        let mut ort_time = Duration::ZERO;
        for b in &plan {
            let rows: Vec<usize> = b.rows.iter().map(|&j| missing[j]).collect();
            let (ids, mask, lens) = pad_batch(&rows, encoded, b.seq_len);
            let t0 = Instant::now();
            let out: Vec<Vec<f32>> =
                backbone.run_with(ids, mask, |states| rows_of(states, &lens))?;
            ort_time += t0.elapsed();
            for (v, &row) in out.iter().zip(&rows) {
                if v.iter().any(|x| !x.is_finite()) {
                    return Err(Error::ort(
                        "inference",
                        format!(
                            "the model produced a non-finite embedding for input row {}",
                            row + 1
                        ),
                    ));
                }
                if let Some(path) = writer.push(keys[row], v)? {
                    cache.commit(&path)?;
                }
            }
            stats.batches += 1;
            stats.padded_tokens += b.padded_tokens();
            stats.fed_tokens += lens.iter().sum::<usize>();
            bar.inc(b.padded_tokens() as u64, rows.len() as u64);
        }
        if let Some(path) = writer.flush()? {
            cache.commit(&path)?;
        }
        bar.finish();
        stats.embedded = missing.len();
        stats.ort_seconds = ort_time.as_secs_f64();
        Ok(())
    }
}

fn pool_rows(
    states: ArrayView3<f32>,
    lens: &[usize],
    pooling: Pooling,
    hidden: usize,
) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros((lens.len(), hidden));
    pooling.pool_batch(states, lens, &mut out.view_mut());
    out
}

/// Pads the given rows to `seq_len`: ids (pad id 0) and the attention mask.
fn pad_batch(
    rows: &[usize],
    encoded: &[Encoded],
    seq_len: usize,
) -> (Array2<i64>, Array2<i64>, Vec<usize>) {
    let mut ids = Array2::<i64>::zeros((rows.len(), seq_len));
    let mut mask = Array2::<i64>::zeros((rows.len(), seq_len));
    let mut lens = Vec::with_capacity(rows.len());
    for (r, &row) in rows.iter().enumerate() {
        let toks = &encoded[row].ids;
        for (t, &id) in toks.iter().enumerate() {
            ids[[r, t]] = id as i64;
            mask[[r, t]] = 1;
        }
        lens.push(toks.len());
    }
    (ids, mask, lens)
}
