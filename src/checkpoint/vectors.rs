//! Sentence vectors as a checkpoint's heads expect them: the cached backbone vectors, or — for a
//! frost-line checkpoint — the graph below N plus the tuned native layers above it. Shared by
//! `predict` and `eval`; refuses a backbone other than the one the heads were trained on before
//! any text is embedded.

use ndarray::Array2;

use crate::backbone::ModelFolder;
use crate::checkpoint::{BackboneIdentity, Checkpoint, MANIFEST};
use crate::embedder::{EmbedSettings, EmbedStats, SentenceEmbedder, TokenStateEmbedder};
use crate::error::Result;
use crate::nn::bert::NativeEncoder;
use crate::train::features::infer_states;

pub enum CheckpointEncoder {
    Sentences(SentenceEmbedder),
    Frost(TokenStateEmbedder, NativeEncoder),
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
        let identity = BackboneIdentity::of(&folder, settings.max_length)?;
        let warnings =
            ck.manifest
                .backbone
                .check(&identity, &ck.dir.join(MANIFEST), allow_quantized)?;
        let quantize_frozen = ck.manifest.train.quantize_frozen;
        let encoder = match ck.encoder(&folder)? {
            Some(encoder) => CheckpointEncoder::Frost(
                TokenStateEmbedder::open(settings, encoder.from, quantize_frozen)?,
                encoder,
            ),
            None => CheckpointEncoder::Sentences(SentenceEmbedder::open(settings)?),
        };
        Ok((encoder, warnings))
    }

    /// Takes a dataset folder's vectors into the cache when they match (sentence checkpoints;
    /// a frost-line checkpoint reads token states, which datasets do not hold).
    pub fn import_dataset(&mut self, dir: &std::path::Path) -> Result<Option<usize>> {
        match self {
            CheckpointEncoder::Sentences(e) => e.import_dataset(dir),
            CheckpointEncoder::Frost(..) => Ok(None),
        }
    }

    pub fn vectors(
        &mut self,
        ck: &Checkpoint,
        texts: &[String],
    ) -> Result<(Array2<f32>, EmbedStats)> {
        match self {
            CheckpointEncoder::Sentences(embedder) => embedder.embed(texts),
            CheckpointEncoder::Frost(tokens, encoder) => {
                let (states, stats) = tokens.token_states(texts)?;
                let pooling = tokens.folder().pooling;
                let x = infer_states(encoder, pooling, &ck.store, &states, 64)?;
                Ok((x, stats))
            }
        }
    }
}
