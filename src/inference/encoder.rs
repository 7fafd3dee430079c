//! Vectors as a checkpoint's heads expect them: the cached backbone vectors, or — for a
//! frost-line checkpoint — the graph below N plus the tuned native layers above it; for a token
//! task, word features (cached states of its layer, or the tuned top layer's). Shared by
//! `predict` and `eval`; refuses a backbone other than the one the heads were trained on before
//! any text is embedded.

use std::collections::BTreeMap;

use ndarray::Array2;

use crate::backbone::ModelFolder;
use crate::checkpoint::{BackboneIdentity, Checkpoint, MANIFEST};
use crate::embedder::{EmbedSettings, EmbedStats, SentenceEmbedder, TokenStateEmbedder};
use crate::error::Result;
use crate::features::{infer_states, infer_words, word_vectors};
use crate::nn::bert::NativeEncoder;
use crate::runfile::TaskConfig;

/// Rows per inference batch of the native layers.
const NATIVE_BATCH: usize = 64;

pub struct CheckpointEncoder {
    settings: EmbedSettings,
    /// The frost line's embedder and each task's tuned layers, in manifest order (frost-line
    /// checkpoints).
    frost: Option<(TokenStateEmbedder, Vec<NativeEncoder>)>,
    /// Tasks that share their layers share their vectors: the last texts' vectors per encoder
    /// slot ([`CheckpointEncoder::slot`]), keyed by the texts' fingerprint.
    made: BTreeMap<usize, (u64, Array2<f32>)>,
    /// Per task, in manifest order: whether it owns its adapter.
    own: Vec<bool>,
    task_names: Vec<String>,
    /// Opened on first use: the full graph (sentence tasks) and graphs cut at a token task's
    /// layer (frozen-backbone token tasks).
    sentences: Option<SentenceEmbedder>,
    layers: BTreeMap<usize, TokenStateEmbedder>,
}

impl CheckpointEncoder {
    /// Opens the backbone `settings` name for `ck`, after checking it is the one the heads were
    /// trained on (another numeric format only with `allow_quantized`). Returns the warnings of
    /// that check (another max length, another numeric format).
    pub fn open(
        ck: &mut Checkpoint,
        settings: EmbedSettings,
        allow_quantized: bool,
    ) -> Result<(Self, Vec<String>)> {
        let folder = ModelFolder::open(&settings.model_dir)?;
        let identity =
            BackboneIdentity::of(&folder, settings.max_length, settings.session.kernels)?;
        let warnings =
            ck.manifest
                .backbone
                .check(&identity, &ck.dir.join(MANIFEST), allow_quantized)?;
        let quantize_frozen = ck.manifest.train.quantize_frozen;
        let frost = match ck.encoders(&folder)? {
            Some(encoders) => Some((
                TokenStateEmbedder::open(settings.clone(), encoders[0].from, quantize_frozen)?,
                encoders,
            )),
            None => None,
        };
        let tasks = &ck.manifest.tasks;
        let sentences = match frost {
            None => Some(SentenceEmbedder::open(settings.clone())?),
            Some(_) => None,
        };
        Ok((
            Self {
                settings,
                frost,
                sentences,
                layers: BTreeMap::new(),
                made: BTreeMap::new(),
                own: tasks
                    .iter()
                    .map(|t| !t.config.adapter.is_shared())
                    .collect(),
                task_names: tasks.iter().map(|t| t.config.name.clone()).collect(),
            },
            warnings,
        ))
    }

    /// Takes a dataset folder's vectors into the cache when they match (sentence checkpoints;
    /// a frost-line checkpoint reads token states, which datasets do not hold).
    pub fn import_dataset(&mut self, dir: &std::path::Path) -> Result<Option<usize>> {
        match &mut self.sentences {
            Some(e) => e.import_dataset(dir),
            None => Ok(None),
        }
    }

    /// Task `task`'s index in the manifest.
    fn task_index(&self, task: &str) -> usize {
        self.task_names
            .iter()
            .position(|t| t == task)
            .expect("tasks are the checkpoint's")
    }

    /// Which vectors task `t` reads: its own layers' (slot `t + 1`), or the shared ones (0).
    fn slot(&self, t: usize) -> usize {
        if self.own[t] {
            t + 1
        } else {
            0
        }
    }

    /// Sentence vectors of `texts` for task `task`'s head: made once for every task that shares
    /// its layers (the stats count only what was made).
    pub fn vectors(
        &mut self,
        ck: &Checkpoint,
        task: &str,
        texts: &[String],
    ) -> Result<(Array2<f32>, EmbedStats)> {
        let t = self.task_index(task);
        let slot = self.slot(t);
        let key = fingerprint(texts);
        if let Some((k, x)) = self.made.get(&slot) {
            if *k == key {
                return Ok((x.clone(), EmbedStats::default()));
            }
        }
        let (x, stats) = match (&mut self.frost, &mut self.sentences) {
            (Some((tokens, encoders)), _) => {
                let (states, stats) = tokens.token_states(texts)?;
                let pooling = tokens.folder().pooling;
                let x = infer_states(&encoders[t], pooling, &ck.store, &states, NATIVE_BATCH)?;
                (x, stats)
            }
            (None, Some(embedder)) => embedder.embed(texts)?,
            (None, None) => {
                unreachable!("a checkpoint without a frost line opens the sentence embedder")
            }
        };
        self.made.insert(slot, (key, x.clone()));
        Ok((x, stats))
    }

    /// Word features of `sentences` (every word, in order) for token task `config`'s head.
    pub fn word_vectors(
        &mut self,
        ck: &Checkpoint,
        config: &TaskConfig,
        sentences: &[Vec<String>],
    ) -> Result<(Array2<f32>, EmbedStats)> {
        let t = self.task_index(&config.name);
        if let Some((tokens, encoders)) = &mut self.frost {
            let encoder = &encoders[t];
            let depth = encoder.depth_for(&config.name, config.resolved_token_layer())?;
            let (states, ww, stats) = tokens.word_states(sentences, config.word_feature)?;
            let x = infer_words(encoder, depth, &ck.store, &states, &ww, NATIVE_BATCH)?;
            return Ok((x, stats));
        }
        let layer = config.resolved_token_layer();
        let tokens =
            match self.layers.entry(layer) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(
                    TokenStateEmbedder::open(self.settings.clone(), layer, false)?,
                ),
            };
        let (states, ww, stats) = tokens.word_states(sentences, config.word_feature)?;
        let hidden = tokens.folder().hidden_size;
        Ok((word_vectors(&states, &ww, hidden), stats))
    }
}

/// A fingerprint of a list of texts (what `vectors` keys the vectors it keeps by).
fn fingerprint(texts: &[String]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for t in texts {
        h.update(&(t.len() as u64).to_le_bytes());
        h.update(t.as_bytes());
    }
    h.digest()
}
