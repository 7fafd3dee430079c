//! The multi-task training loop over sentence vectors (cached, or made by the native layers).
//!
//! Each step samples a task (proportionally to its size, uniformly, or by temperature), takes the
//! next batch of that task, and updates the parameters the regime handed to the optimizer. After
//! each epoch every task is scored on its dev split; the best mean dev macro-F1 is kept and
//! training stops after `patience` epochs without improvement. One seed → identical weights.

use std::time::Instant;

use ndarray::{Array2, ArrayD, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::decision::{Decision, Predictions};
use crate::error::{Error, Result};
use crate::heads::Head;
use crate::metrics::TaskMetrics;
use crate::nn::loss::{bce_with_logits, cross_entropy};
use crate::nn::optim::{clip_grad_norm, AdamW, AdamWConfig, ParamGroup};
use crate::nn::schedule::lr_scale;
use crate::nn::{ParamId, ParamStore, Rng};
use crate::progress::Progress;
use crate::runfile::{ClassWeights, Sampling, TrainConfig};
use crate::tasks::{SplitName, TaskData};

use super::features::Features;

/// One row of the training log: one task in one epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub task: String,
    pub steps: usize,
    pub train_loss: f64,
    /// `None` when the task has no dev rows (`dev_fraction = 0`).
    pub dev_accuracy: Option<f64>,
    pub dev_macro_f1: Option<f64>,
    /// Token tasks: dev entity-level micro F1 (what epochs are selected by).
    #[serde(default)]
    pub dev_entity_f1: Option<f64>,
    pub lr: f64,
    /// The epoch's training steps alone.
    pub train_seconds: f64,
    /// Steps plus scoring the dev split.
    pub seconds: f64,
}

impl EpochLog {
    /// The dev score epochs are selected by: entity F1 for a token task, macro-F1 otherwise.
    pub fn dev_score(&self) -> Option<f64> {
        self.dev_entity_f1.or(self.dev_macro_f1)
    }
}

#[derive(Debug, Clone, Default)]
pub struct TrainReport {
    pub log: Vec<EpochLog>,
    pub seconds: f64,
    pub best_epoch: usize,
    pub stopped_early: bool,
}

/// A head scored on one split's vectors: probabilities, then — for a multi-label task — its
/// thresholds tuned on this same split when `tune` is set (dev), then the metrics. Returns the
/// decision used, so a tuned one can be applied to test and kept in the checkpoint.
pub fn score_vectors(
    store: &ParamStore,
    head: &Head,
    task: &TaskData,
    decision: &Decision,
    tune: bool,
    labels: &[String],
    x: ArrayView2<f32>,
) -> (Decision, TaskMetrics) {
    let logits = head.forward(store, x);
    let probs = decision.probabilities(logits.view());
    let decision = if tune {
        decision.tuned(task.config.threshold, probs.view(), &task.targets(labels))
    } else {
        decision.clone()
    };
    let words: Option<Vec<usize>> = task
        .is_token_task()
        .then(|| labels.iter().map(|l| l.split(' ').count()).collect());
    let picks = decision.decide(probs.view(), words.as_deref(), &task.classes);
    let metrics = decision.metrics(
        &task.config,
        &task.classes,
        labels,
        &Predictions { probs, picks },
    );
    (decision, metrics)
}

/// Per-class weights of the loss, or `None`: for a classification task each class's weight
/// (scikit-learn's "balanced"); for a multi-label task each label's positive weight,
/// negatives / positives (PyTorch's `pos_weight`).
fn class_weights(task: &TaskData) -> Option<Vec<f32>> {
    match task.config.class_weights {
        ClassWeights::None => None,
        ClassWeights::Balanced => {
            let k = task.classes.len();
            let mut counts = vec![0usize; k];
            for y in task.train_targets.iter().flatten() {
                counts[*y] += 1;
            }
            // Rows — or for a token task, words.
            let n = if task.is_token_task() {
                counts.iter().sum::<usize>()
            } else {
                task.train_targets.len()
            } as f32;
            Some(
                counts
                    .iter()
                    .map(|&c| match (c, task.is_multi_label()) {
                        (0, _) => 0.0,
                        (c, true) => (n - c as f32) / c as f32,
                        (c, false) => n / (k as f32 * c as f32),
                    })
                    .collect(),
            )
        }
    }
}

/// Task probabilities for sampling.
fn task_weights(sizes: &[usize], sampling: Sampling, temperature: f64) -> Vec<f64> {
    sizes
        .iter()
        .map(|&n| match sampling {
            Sampling::Proportional => n as f64,
            Sampling::Uniform => 1.0,
            Sampling::Temperature => (n as f64).powf(1.0 / temperature),
        })
        .collect()
}

/// Endless shuffled batches over one task's training rows.
struct BatchStream {
    order: Vec<usize>,
    pos: usize,
}

impl BatchStream {
    fn next(&mut self, batch: usize, rng: &mut Rng) -> Vec<usize> {
        if self.pos >= self.order.len() {
            rng.shuffle(&mut self.order);
            self.pos = 0;
        }
        let end = (self.pos + batch).min(self.order.len());
        let rows = self.order[self.pos..end].to_vec();
        self.pos = end;
        rows
    }
}

fn snapshot(store: &ParamStore, ids: &[ParamId]) -> Vec<ArrayD<f32>> {
    ids.iter().map(|&i| store.get(i).value.clone()).collect()
}

/// What one training run fits: `heads` (one per task, same order) on vectors from `features`
/// (the cache, or the native layers above the frost line), updating only `trainable`.
#[derive(Clone, Copy)]
pub struct FitInputs<'a> {
    pub tasks: &'a [TaskData],
    pub features: &'a Features,
    pub heads: &'a [Head],
    pub trainable: &'a [ParamId],
    pub cfg: &'a TrainConfig,
    pub seed: u64,
    pub progress: bool,
}

/// Runs the loop. With nothing trainable this returns at once with zero training time.
pub fn fit(inputs: FitInputs, store: &mut ParamStore) -> Result<TrainReport> {
    let FitInputs {
        tasks,
        features,
        heads,
        trainable,
        cfg,
        seed,
        progress,
    } = inputs;
    let mut report = TrainReport::default();
    if trainable.is_empty() {
        return Ok(report);
    }
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    // Only tasks whose head has a trainable parameter take steps.
    let active: Vec<usize> = (0..tasks.len())
        .filter(|&t| heads[t].param_ids().iter().any(|p| trainable.contains(p)))
        .collect();
    let sizes: Vec<usize> = active.iter().map(|&t| tasks[t].train.len()).collect();
    let weights = task_weights(&sizes, cfg.sampling, cfg.temperature);
    let steps_per_epoch: usize = sizes.iter().map(|n| n.div_ceil(cfg.batch_size)).sum();
    let total_steps = steps_per_epoch * cfg.epochs;
    let warmup = (cfg.warmup * total_steps as f32).round() as usize;
    let mut streams: Vec<BatchStream> = active
        .iter()
        .map(|&t| {
            let mut order: Vec<usize> = (0..tasks[t].train.len()).collect();
            rng.shuffle(&mut order);
            BatchStream { order, pos: 0 }
        })
        .collect();
    let cw: Vec<Option<Vec<f32>>> = tasks.iter().map(class_weights).collect();
    // A step updates the shared encoder layers (if trainable) and the stepping task's head.
    let encoder: Vec<ParamId> = features
        .param_ids()
        .into_iter()
        .filter(|p| trainable.contains(p))
        .collect();
    let step_ids: Vec<Vec<ParamId>> = active
        .iter()
        .map(|&t| {
            features
                .task_param_ids(t)
                .into_iter()
                .filter(|p| encoder.contains(p))
                .chain(
                    heads[t]
                        .param_ids()
                        .into_iter()
                        .filter(|p| trainable.contains(p)),
                )
                .collect()
        })
        .collect();
    let group = |ids: Vec<ParamId>, lr: f32| ParamGroup {
        ids,
        config: AdamWConfig {
            lr,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        },
    };
    let head_ids: Vec<ParamId> = trainable
        .iter()
        .copied()
        .filter(|p| !encoder.contains(p))
        .collect();
    let mut opt = AdamW::new(
        store,
        vec![
            group(encoder.clone(), cfg.encoder_lr),
            group(head_ids, cfg.lr),
        ],
    );

    let mut best = (f64::NEG_INFINITY, 0usize, snapshot(store, trainable));
    let mut step = 0usize;
    for epoch in 1..=cfg.epochs {
        let epoch_start = Instant::now();
        let bar = Progress::new(
            progress,
            format!("training epoch {epoch}/{}", cfg.epochs),
            steps_per_epoch as u64,
            "steps",
        );
        let mut loss_sum = vec![0.0f64; active.len()];
        let mut loss_steps = vec![0usize; active.len()];
        for _ in 0..steps_per_epoch {
            let a = rng.weighted(&weights);
            let t = active[a];
            let task = &tasks[t];
            let rows = streams[a].next(cfg.batch_size, &mut rng);
            let y: Vec<Vec<usize>> = rows
                .iter()
                .map(|&r| task.train_targets[r].clone())
                .collect();
            // Only this task's parameters get a gradient in this step (and only they move).
            let ids = &step_ids[a];
            for &id in ids {
                store.get_mut(id).grad.fill(0.0);
            }
            let (x, feature_trace) = features.batch(store, t, &rows, true)?;
            let (logits, trace) = heads[t].forward_train(store, x, &mut rng);
            let (loss, mut dlogits) = if task.is_multi_label() {
                bce_with_logits(logits.view(), &y, cw[t].as_deref())
            } else if task.is_token_task() {
                // A row is a sentence; the head saw its words, in order.
                let y: Vec<usize> = y.into_iter().flatten().collect();
                cross_entropy(logits.view(), &y, cw[t].as_deref(), cfg.label_smoothing)
            } else {
                let y: Vec<usize> = y.iter().map(|y| y[0]).collect();
                cross_entropy(logits.view(), &y, cw[t].as_deref(), cfg.label_smoothing)
            };
            if !loss.is_finite() {
                return Err(Error::Training(format!(
                    "diverged: loss is {loss} in epoch {epoch}, task {:?} (lower train.lr, or check the inputs)",
                    task.config.name
                )));
            }
            dlogits *= task.config.loss_weight;
            let dx = heads[t].backward(store, &trace, dlogits.view(), features.needs_input_grad());
            features.backward(store, feature_trace, dx);
            clip_grad_norm(store, ids, cfg.clip_norm);
            opt.step(store, ids, lr_scale(step, total_steps, warmup, cfg.decay));
            step += 1;
            loss_sum[a] += loss as f64;
            loss_steps[a] += 1;
            bar.inc(1, rows.len() as u64);
            if progress && step.is_multiple_of(16) {
                let losses: Vec<String> = active
                    .iter()
                    .enumerate()
                    .map(|(a, &t)| {
                        format!(
                            "{} {:.3}",
                            tasks[t].config.name,
                            loss_sum[a] / loss_steps[a].max(1) as f64
                        )
                    })
                    .collect();
                bar.set_message(format!("loss {}", losses.join(", ")));
            }
        }
        bar.finish();
        let train_seconds = epoch_start.elapsed().as_secs_f64();

        let lr = (cfg.lr * lr_scale(step.saturating_sub(1), total_steps, warmup, cfg.decay)) as f64;
        let mut dev_scores = Vec::new();
        let mut summary = Vec::new();
        for (a, &t) in active.iter().enumerate() {
            let m = dev_metrics(inputs, store, t)?;
            let row = EpochLog {
                epoch,
                task: tasks[t].config.name.clone(),
                steps: loss_steps[a],
                train_loss: loss_sum[a] / loss_steps[a].max(1) as f64,
                dev_accuracy: m.as_ref().map(|m| m.accuracy),
                dev_macro_f1: m.as_ref().map(|m| m.macro_f1),
                dev_entity_f1: m.as_ref().and_then(|m| m.entity_f1),
                lr,
                train_seconds,
                seconds: epoch_start.elapsed().as_secs_f64(),
            };
            summary.push(match (row.dev_entity_f1, row.dev_macro_f1) {
                (Some(f1), _) => format!(
                    "{} loss {:.4} dev entity F1 {f1:.3}",
                    row.task, row.train_loss
                ),
                (None, Some(f1)) => {
                    format!("{} loss {:.4} dev F1 {f1:.3}", row.task, row.train_loss)
                }
                (None, None) => format!("{} loss {:.4} (no dev)", row.task, row.train_loss),
            });
            dev_scores.extend(m.as_ref().map(TaskMetrics::selection_score));
            report.log.push(row);
        }
        if progress {
            eprintln!("epoch {epoch}/{}: {}", cfg.epochs, summary.join(" | "));
        }
        // With no dev rows at all there is nothing to select on: the last epoch is kept.
        let score = if dev_scores.is_empty() {
            epoch as f64
        } else {
            dev_scores.iter().sum::<f64>() / dev_scores.len() as f64
        };
        if score > best.0 {
            best = (score, epoch, snapshot(store, trainable));
        } else if cfg.patience > 0 && epoch - best.1 >= cfg.patience {
            report.stopped_early = true;
            if progress {
                eprintln!(
                    "early stopping after epoch {epoch}: no better mean dev score (macro-F1; entity F1 for token tasks) for {} epochs; keeping epoch {}'s weights (dev {:.3})",
                    cfg.patience, best.1, best.0
                );
            }
            break;
        }
    }
    for (&id, value) in trainable.iter().zip(best.2) {
        store.get_mut(id).value = value;
    }
    report.best_epoch = best.1;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Task `t`'s head scored on its dev split with the current weights (a multi-label task's
/// thresholds tuned on it); `None` when the task has no dev rows.
fn dev_metrics(inputs: FitInputs, store: &ParamStore, t: usize) -> Result<Option<TaskMetrics>> {
    let task = &inputs.tasks[t];
    if task.dev.is_empty() {
        return Ok(None);
    }
    let dev_x = inputs
        .features
        .split_vectors(store, t, SplitName::Dev)?
        .expect("every task has a dev split");
    let decision = Decision::untuned(&task.config, task.classes.len());
    let (_, metrics) = score_vectors(
        store,
        &inputs.heads[t],
        task,
        &decision,
        true,
        &task.dev.labels,
        dev_x.view(),
    );
    Ok(Some(metrics))
}

/// Class prototypes for nearest-centroid heads: the mean training vector of each class (of the
/// rows carrying each label, for a multi-label task; of the words tagged with it, for a token
/// task).
pub fn centroids(task: &TaskData, train_x: ArrayView2<f32>) -> Array2<f32> {
    let d = train_x.ncols();
    let mut sums = Array2::<f32>::zeros((task.classes.len(), d));
    let mut counts = vec![0f32; task.classes.len()];
    let targets: Vec<Vec<usize>> = if task.is_token_task() {
        task.train_targets
            .iter()
            .flatten()
            .map(|&y| vec![y])
            .collect()
    } else {
        task.train_targets.clone()
    };
    for (row, ys) in train_x.axis_iter(Axis(0)).zip(&targets) {
        for &y in ys {
            let mut s = sums.row_mut(y);
            s += &row;
            counts[y] += 1.0;
        }
    }
    for (mut s, c) in sums.axis_iter_mut(Axis(0)).zip(counts) {
        s.mapv_inplace(|v| v / c.max(1.0));
    }
    sums
}
