//! How long a frost-line run's layers will take to train, said before it starts: the train
//! tokens per epoch (the tasks' train texts tokenized as training will), the multiply-adds
//! that many tokens cost through the trained layers forward and backward, and the speed of this
//! CPU's product kernel measured just now. Products only: the element-wise work (GELU,
//! LayerNorm, softmax) and the one-time token-state pass below the line add to it, the
//! product speed varies with shapes and load, and early stopping can end the run sooner — an
//! order of magnitude said up front (measured within about 2× of the time taken, both ways).

use std::time::Instant;

use ndarray::Array2;

use super::TrainSpec;
use crate::backbone::ModelFolder;
use crate::error::Result;
use crate::nn::adapter::Tuning;
use crate::tasks::{read_split, SplitName};
use crate::tokenize::TextTokenizer;

/// A frost-line run's training time, estimated before it starts.
pub(crate) struct Estimate {
    pub tokens_per_epoch: usize,
    /// What the tokens are: the train texts, or the texts of the contrastive stage's pairs.
    pub tokens_of: &'static str,
    pub layers: usize,
    pub gflops: f64,
    pub epochs: usize,
    /// What trains of the layers (frozen weights skip their gradient products).
    pub tuning: Tuning,
}

impl Estimate {
    /// Products per token per layer, forward and backward: the four attention projections
    /// (4h²) and the two FFN matrices (8h²), twice for multiply-add; the backward pass adds dX
    /// for each, and dW only where the weights train (full layers: three products per forward
    /// one). BitFit's and LoRA's frozen weights skip dW; LoRA's rank-r factors add next to
    /// nothing.
    fn flops_per_token_layer(hidden: usize, tuning: Tuning) -> f64 {
        let passes = if tuning == Tuning::Full { 3.0 } else { 2.0 };
        passes * 2.0 * 12.0 * (hidden * hidden) as f64
    }

    /// Seconds per epoch with `tuning` (a comparison's variants at one frost line share the
    /// estimate's tokens and speed).
    pub(crate) fn seconds_per_epoch(&self, hidden: usize, tuning: Tuning) -> f64 {
        self.tokens_per_epoch as f64
            * self.layers as f64
            * Self::flops_per_token_layer(hidden, tuning)
            / (self.gflops * 1e9)
    }

    /// `spec`'s estimate; `None` without a frost line (nothing native trains).
    pub(crate) fn of(spec: &TrainSpec, folder: &ModelFolder) -> Result<Option<Self>> {
        let Some(n) = spec.plan.frost_line else {
            return Ok(None);
        };
        let tokenizer = TextTokenizer::load(&folder.tokenizer, spec.settings.max_length)?;
        let mut tokens = 0;
        for t in &spec.run.tasks {
            let split = read_split(t, SplitName::Train, spec.run.seed)?.unwrap_or_default();
            let texts: Vec<&str> = split.texts.iter().map(String::as_str).collect();
            tokens += tokenizer
                .encode_all(&texts)?
                .iter()
                .map(|e| e.ids.len())
                .sum::<usize>();
        }
        let train = &spec.run.train;
        // The contrastive stage embeds both texts of 2 × iterations pairs per train text per
        // epoch (its heads then train on vectors made once, which costs next to nothing).
        let (tokens_per_epoch, tokens_of, epochs) = if spec.plan.contrastive {
            let c = &train.contrastive;
            (4 * c.iterations * tokens, "pair-text tokens", c.epochs)
        } else {
            (tokens, "train tokens", train.epochs())
        };
        Ok(Some(Self {
            tokens_per_epoch,
            tokens_of,
            layers: folder.num_layers - n,
            gflops: probe_gflops(spec, folder.hidden_size),
            epochs,
            tuning: spec.plan.tuning,
        }))
    }

    /// The estimate in words, for a model of `hidden` width.
    pub(crate) fn describe(&self, hidden: usize) -> String {
        let per_epoch = self.seconds_per_epoch(hidden, self.tuning);
        format!(
            "about {:.0} s ({} epochs × {per_epoch:.1} s: {} {} through {} layers at the {:.0} GFLOP/s this CPU's products ran just now; products only, so element-wise work and the one-time pass below the line add to it, and early stopping may end it sooner)",
            per_epoch * self.epochs as f64,
            self.epochs,
            self.tokens_per_epoch,
            self.tokens_of,
            self.layers,
            self.gflops
        )
    }
}

/// GFLOP/s of the run's kernel on a layer-shaped product (512 tokens × h → 4h), best of five.
fn probe_gflops(spec: &TrainSpec, hidden: usize) -> f64 {
    let a = Array2::from_elem((512, hidden), 0.5f32);
    let b = Array2::from_elem((hidden, 4 * hidden), 0.25f32);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let started = Instant::now();
        let c = spec.kernel.dot(&a.view(), &b.view());
        std::hint::black_box(&c);
        best = best.min(started.elapsed().as_secs_f64());
    }
    2.0 * 512.0 * hidden as f64 * 4.0 * hidden as f64 / best.max(1e-9) / 1e9
}
