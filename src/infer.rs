//! Sentence vectors as a checkpoint's heads expect them: the cached backbone vectors, or — for a
//! frost-line checkpoint — the graph below N plus the tuned native layers above it. Shared by
//! `predict` and `eval`; refuses a backbone other than the one the heads were trained on.

use ndarray::Array2;

use crate::checkpoint::Checkpoint;
use crate::embed::{EmbedSettings, EmbedStats, Embedder};
use crate::error::Result;
use crate::nn::bert::NativeEncoder;
use crate::train::features::infer_states;

pub struct CheckpointEncoder {
    sentences: Embedder,
    frost: Option<(Embedder, NativeEncoder)>,
}

impl CheckpointEncoder {
    pub fn open(ck: &mut Checkpoint, settings: EmbedSettings) -> Result<Self> {
        let sentences = Embedder::open(settings.clone())?;
        ck.check_backbone(&sentences.key)?;
        let frost = match ck.encoder(&sentences.folder)? {
            Some(encoder) => Some((Embedder::open_tokens(settings, encoder.from)?, encoder)),
            None => None,
        };
        Ok(Self { sentences, frost })
    }

    pub fn vectors(
        &mut self,
        ck: &Checkpoint,
        texts: &[String],
    ) -> Result<(Array2<f32>, EmbedStats)> {
        match &mut self.frost {
            None => self.sentences.embed(texts),
            Some((tokens, encoder)) => {
                let (states, stats) = tokens.token_states(texts)?;
                let x = infer_states(encoder, tokens.folder.pooling, &ck.store, &states, 64)?;
                Ok((x, stats))
            }
        }
    }
}
