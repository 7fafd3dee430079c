//! The contrastive stage of `contrastive,frost-line=N`: the native layers above the frost line
//! tuned alone on pairs of training texts ([`crate::pairs`]: SetFit's draw), by the
//! cosine-similarity loss on the pooled vectors. Each step embeds the distinct texts of its pairs
//! once, from token states cached below the line (the frozen layers ran once per text, not once
//! per pair per step). The heads then train on the tuned layers' vectors, the layers frozen.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::features::Features;
use crate::nn::loss::cosine_pair_mse;
use crate::nn::optim::{clip_grad_norm, AdamW, AdamWConfig, ParamGroup};
use crate::nn::schedule::{lr_scale, Decay};
use crate::nn::{ParamId, ParamStore, Rng};
use crate::pairs::{self, Pair, PairCounts, PairRecipe};
use crate::progress::Progress;
use crate::tasks::TaskData;

/// Share of the contrastive steps spent warming the learning rate up (SetFit's 0.1).
const WARMUP: f32 = 0.1;
/// Global gradient-norm clip of a contrastive step (the Hugging Face trainer's default).
const CLIP_NORM: f32 = 1.0;

/// What the contrastive stage did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PairsReport {
    pub pairs: PairCounts,
    pub steps: usize,
    /// Mean loss of each epoch over the pairs.
    pub epoch_losses: Vec<f64>,
    pub seconds: f64,
}

impl PairsReport {
    /// One line on what the stage did, for the run's output.
    pub fn describe(&self) -> String {
        let losses: Vec<String> = self
            .epoch_losses
            .iter()
            .map(|l| format!("{l:.4}"))
            .collect();
        format!(
            "contrastive stage: {} similar + {} dissimilar pairs, {} steps in {:.1} s; mean loss per epoch {}",
            self.pairs.similar,
            self.pairs.dissimilar,
            self.steps,
            self.seconds,
            losses.join(" → ")
        )
    }
}

/// Tunes parameters `ids` (the native layers) on pairs drawn from every task's train rows.
pub(crate) fn tune(
    features: &Features,
    tasks: &[TaskData],
    recipe: &PairRecipe,
    ids: &[ParamId],
    seed: u64,
    progress: bool,
    store: &mut ParamStore,
) -> Result<PairsReport> {
    let Features::Frost(frost) = features else {
        return Err(Error::Internal(
            "the contrastive stage runs on token states below a frost line".into(),
        ));
    };
    let started = Instant::now();
    let mut rng = Rng::new(seed ^ 0xC0_27A5);
    let mut all = Vec::new();
    for (t, task) in tasks.iter().enumerate() {
        let drawn = pairs::draw(t, &task.train_targets, recipe.iterations, &mut rng)
            .map_err(|why| {
                Error::Usage(format!(
                    "task {:?}: regime contrastive: {why}; give it more labelled rows, or use another regime",
                    task.config.name
                ))
            })?;
        all.extend(drawn);
    }
    let steps_per_epoch = all.len().div_ceil(recipe.batch_size);
    let total = steps_per_epoch * recipe.epochs;
    let warmup = (WARMUP * total as f32).round() as usize;
    let mut opt = AdamW::new(
        store,
        vec![ParamGroup {
            ids: ids.to_vec(),
            config: AdamWConfig {
                lr: recipe.lr,
                weight_decay: 0.0,
                ..Default::default()
            },
        }],
    );
    let mut report = PairsReport {
        pairs: pairs::counts(&all),
        ..Default::default()
    };
    for epoch in 1..=recipe.epochs {
        rng.shuffle(&mut all);
        let bar = Progress::new(
            progress,
            format!("contrastive pairs, epoch {epoch}/{}", recipe.epochs),
            steps_per_epoch as u64,
            "steps",
        );
        let mut sum = 0.0f64;
        for batch in all.chunks(recipe.batch_size) {
            for &id in ids {
                store.get_mut(id).grad.fill(0.0);
            }
            let (items, triples) = distinct_texts(batch);
            let (pooled, trace) = frost.train_pooled(store, &items)?;
            let (loss, grad) = cosine_pair_mse(pooled.view(), &triples);
            if !loss.is_finite() {
                return Err(Error::Training(format!(
                    "diverged: the contrastive loss is {loss} at step {} (lower train.contrastive.lr)",
                    report.steps + 1
                )));
            }
            features.backward(store, Some(trace), Some(grad));
            clip_grad_norm(store, ids, CLIP_NORM);
            opt.step(
                store,
                ids,
                lr_scale(report.steps, total, warmup, Decay::Linear),
            );
            report.steps += 1;
            sum += loss as f64 * batch.len() as f64;
            bar.inc(1, batch.len() as u64);
        }
        bar.finish();
        report.epoch_losses.push(sum / all.len().max(1) as f64);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// A train text: (task, row).
type Text = (usize, usize);
/// A pair as two indices into a batch's distinct texts and its target (1 similar, 0 not).
type IndexedPair = (usize, usize, f32);

/// The distinct texts of a batch of pairs, each once, and every pair as indices into them.
fn distinct_texts(batch: &[Pair]) -> (Vec<Text>, Vec<IndexedPair>) {
    let mut index: HashMap<Text, usize> = HashMap::new();
    let mut items = Vec::new();
    let mut at = |key: Text| {
        *index.entry(key).or_insert_with(|| {
            items.push(key);
            items.len() - 1
        })
    };
    let triples = batch
        .iter()
        .map(|p| {
            let target = if p.similar { 1.0 } else { 0.0 };
            (at((p.task, p.a)), at((p.task, p.b)), target)
        })
        .collect();
    (items, triples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_embeds_each_text_once() {
        let p = |task, a, b, similar| Pair {
            task,
            a,
            b,
            similar,
        };
        let batch = [p(0, 1, 2, true), p(0, 2, 5, false), p(1, 2, 1, true)];
        let (items, triples) = distinct_texts(&batch);
        assert_eq!(items, [(0, 1), (0, 2), (0, 5), (1, 2), (1, 1)]);
        assert_eq!(triples, [(0, 1, 1.0), (1, 2, 0.0), (3, 4, 1.0)]);
    }
}
