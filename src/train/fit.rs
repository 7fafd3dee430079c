//! The multi-task training loop over sentence vectors (cached, or made by the native layers).
//!
//! Each step samples a task (proportionally to its size, uniformly, or by temperature), takes the
//! next batch of that task, and updates the parameters the regime handed to the optimizer. After
//! each epoch every task is scored on its dev split; the best mean dev macro-F1 is kept and
//! training stops after `patience` epochs without improvement. One seed → identical weights.

use std::time::Instant;

use ndarray::ArrayD;

use crate::epoch_log::EpochLog;
use crate::error::{Error, Result};
use crate::heads::Head;
use crate::metrics::TaskMetrics;
use crate::nn::optim::{clip_grad_norm, AdamW, AdamWConfig, ParamGroup};
use crate::nn::schedule::lr_scale;
use crate::nn::{ParamId, ParamStore, Rng};
use crate::progress::Progress;
use crate::runfile::TrainConfig;
use crate::tasks::{SplitName, TaskData};

use crate::features::Features;

use super::score::score_vectors;

#[derive(Debug, Clone, Default)]
pub struct TrainReport {
    pub log: Vec<EpochLog>,
    pub seconds: f64,
    pub best_epoch: usize,
    pub stopped_early: bool,
    /// The contrastive stage, when the regime has one (its seconds are in `seconds`).
    pub pairs: Option<super::contrastive::PairsReport>,
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
pub(crate) struct FitInputs<'a> {
    pub tasks: &'a [TaskData],
    pub features: &'a Features,
    pub heads: &'a [Head],
    pub trainable: &'a [ParamId],
    pub cfg: &'a TrainConfig,
    pub seed: u64,
    pub progress: bool,
    /// Print each epoch's summary line (loss, dev score) and the early-stopping line to stderr:
    /// results, kept with `--no-progress`, which only hides the bars.
    pub epoch_lines: bool,
}

/// Runs the loop. With nothing trainable this returns at once with zero training time.
pub(crate) fn fit(inputs: FitInputs, store: &mut ParamStore) -> Result<TrainReport> {
    let FitInputs { trainable, cfg, .. } = inputs;
    let mut report = TrainReport::default();
    if trainable.is_empty() {
        return Ok(report);
    }
    let started = Instant::now();
    let mut rng = Rng::new(inputs.seed);
    let mut plan = StepPlan::new(inputs, &mut rng);
    let mut opt = optimizer(inputs, store);
    let mut best = (f64::NEG_INFINITY, 0usize, snapshot(store, trainable));
    for epoch in 1..=cfg.epochs() {
        let epoch_start = Instant::now();
        let losses = plan.epoch(inputs, epoch, store, &mut opt, &mut rng)?;
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let lr = (cfg.lr() * plan.lr_scale(plan.step.saturating_sub(1), cfg)) as f64;
        let mut dev_scores = Vec::new();
        let mut summary = Vec::new();
        for (a, &t) in plan.active.iter().enumerate() {
            let m = dev_metrics(inputs, store, t)?;
            let row = EpochLog {
                epoch,
                task: inputs.tasks[t].config.name.clone(),
                steps: losses.steps[a],
                train_loss: losses.mean(a),
                dev_accuracy: m.as_ref().map(|m| m.accuracy),
                dev_macro_f1: m.as_ref().map(|m| m.macro_f1),
                dev_entity_f1: m.as_ref().and_then(|m| m.entity_f1),
                lr,
                train_seconds,
                seconds: epoch_start.elapsed().as_secs_f64(),
            };
            summary.push(row.summary());
            dev_scores.extend(m.as_ref().map(TaskMetrics::selection_score));
            report.log.push(row);
        }
        if inputs.epoch_lines {
            eprintln!("epoch {epoch}/{}: {}", cfg.epochs(), summary.join(" | "));
        }
        // With no dev rows at all there is nothing to select on: the last epoch is kept.
        let score = if dev_scores.is_empty() {
            epoch as f64
        } else {
            dev_scores.iter().sum::<f64>() / dev_scores.len() as f64
        };
        if score > best.0 {
            best = (score, epoch, snapshot(store, trainable));
        } else if cfg.patience() > 0 && epoch - best.1 >= cfg.patience() {
            report.stopped_early = true;
            if inputs.epoch_lines {
                eprintln!(
                    "early stopping after epoch {epoch}: no better mean dev score (macro-F1; entity F1 for token tasks) for {} epochs; keeping epoch {}'s weights (dev {:.3})",
                    cfg.patience(), best.1, best.0
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

/// The steps of a run: which tasks step (those whose head has a trainable parameter), how often
/// each is sampled, each one's endless batch stream, loss class weights and the parameters a
/// step of it updates, and the learning-rate schedule's position.
struct StepPlan {
    active: Vec<usize>,
    weights: Vec<f64>,
    streams: Vec<BatchStream>,
    class_weights: Vec<Option<Vec<f32>>>,
    /// Per active task: the shared encoder layers (if trainable) and its head's parameters.
    step_ids: Vec<Vec<ParamId>>,
    steps_per_epoch: usize,
    total_steps: usize,
    warmup: usize,
    step: usize,
}

/// Each active task's summed loss and step count in one epoch.
struct EpochLosses {
    sums: Vec<f64>,
    steps: Vec<usize>,
}

impl EpochLosses {
    fn mean(&self, a: usize) -> f64 {
        self.sums[a] / self.steps[a].max(1) as f64
    }
}

impl StepPlan {
    fn new(inputs: FitInputs, rng: &mut Rng) -> Self {
        let FitInputs {
            tasks,
            features,
            heads,
            trainable,
            cfg,
            ..
        } = inputs;
        let active: Vec<usize> = (0..tasks.len())
            .filter(|&t| heads[t].param_ids().iter().any(|p| trainable.contains(p)))
            .collect();
        let sizes: Vec<usize> = active.iter().map(|&t| tasks[t].train.len()).collect();
        let steps_per_epoch: usize = sizes.iter().map(|n| n.div_ceil(cfg.batch_size)).sum();
        let total_steps = steps_per_epoch * cfg.epochs();
        let streams = active
            .iter()
            .map(|&t| {
                let mut order: Vec<usize> = (0..tasks[t].train.len()).collect();
                rng.shuffle(&mut order);
                BatchStream { order, pos: 0 }
            })
            .collect();
        let class_weights = tasks
            .iter()
            .map(|t| {
                let c = &t.config;
                c.kind
                    .class_weights(c.class_weights, t.classes.len(), &t.train_targets)
            })
            .collect();
        let encoder = trainable_encoder(inputs);
        let step_ids = active
            .iter()
            .map(|&t| {
                let head = heads[t].param_ids().into_iter();
                features
                    .task_param_ids(t)
                    .into_iter()
                    .filter(|p| encoder.contains(p))
                    .chain(head.filter(|p| trainable.contains(p)))
                    .collect()
            })
            .collect();
        Self {
            weights: cfg.sampling.weights(&sizes, cfg.temperature),
            active,
            streams,
            class_weights,
            step_ids,
            steps_per_epoch,
            total_steps,
            warmup: (cfg.warmup * total_steps as f32).round() as usize,
            step: 0,
        }
    }

    fn lr_scale(&self, step: usize, cfg: &TrainConfig) -> f32 {
        lr_scale(step, self.total_steps, self.warmup, cfg.decay)
    }

    /// One epoch of steps: each samples a task, takes its next batch and updates only that
    /// task's parameters.
    fn epoch(
        &mut self,
        inputs: FitInputs,
        epoch: usize,
        store: &mut ParamStore,
        opt: &mut AdamW,
        rng: &mut Rng,
    ) -> Result<EpochLosses> {
        let FitInputs {
            tasks,
            features,
            heads,
            cfg,
            progress,
            ..
        } = inputs;
        let bar = Progress::new(
            progress,
            format!("training epoch {epoch}/{}", cfg.epochs()),
            self.steps_per_epoch as u64,
            "steps",
        );
        let mut losses = EpochLosses {
            sums: vec![0.0; self.active.len()],
            steps: vec![0; self.active.len()],
        };
        for _ in 0..self.steps_per_epoch {
            let a = rng.weighted(&self.weights);
            let t = self.active[a];
            let task = &tasks[t];
            let rows = self.streams[a].next(cfg.batch_size, rng);
            let y: Vec<Vec<usize>> = rows
                .iter()
                .map(|&r| task.train_targets[r].clone())
                .collect();
            // Only this task's parameters get a gradient in this step (and only they move).
            let ids = &self.step_ids[a];
            for &id in ids {
                store.get_mut(id).grad.fill(0.0);
            }
            let (x, feature_trace) = features.batch(store, t, &rows, true)?;
            let (logits, trace) = heads[t].forward_train(store, x, rng);
            let weights = self.class_weights[t].as_deref();
            let (loss, mut dlogits) =
                task.config
                    .kind
                    .loss(logits.view(), &y, weights, cfg.label_smoothing);
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
            opt.step(store, ids, self.lr_scale(self.step, cfg));
            self.step += 1;
            losses.sums[a] += loss as f64;
            losses.steps[a] += 1;
            bar.inc(1, rows.len() as u64);
            if progress && self.step.is_multiple_of(16) {
                let shown: Vec<String> = (0..self.active.len())
                    .map(|a| {
                        let name = &tasks[self.active[a]].config.name;
                        format!("{name} {:.3}", losses.mean(a))
                    })
                    .collect();
                bar.set_message(format!("loss {}", shown.join(", ")));
            }
        }
        bar.finish();
        Ok(losses)
    }
}

/// The native encoder layers the optimizer updates (none on a frozen backbone).
fn trainable_encoder(inputs: FitInputs) -> Vec<ParamId> {
    inputs
        .features
        .param_ids()
        .into_iter()
        .filter(|p| inputs.trainable.contains(p))
        .collect()
}

/// AdamW over two groups: the trainable encoder layers at `encoder_lr`, the heads at `lr`.
fn optimizer(inputs: FitInputs, store: &ParamStore) -> AdamW {
    let cfg = inputs.cfg;
    let encoder = trainable_encoder(inputs);
    let group = |ids: Vec<ParamId>, lr: f32| ParamGroup {
        ids,
        config: AdamWConfig {
            lr,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        },
    };
    let head_ids: Vec<ParamId> = inputs
        .trainable
        .iter()
        .copied()
        .filter(|p| !encoder.contains(p))
        .collect();
    AdamW::new(
        store,
        vec![group(encoder, cfg.encoder_lr()), group(head_ids, cfg.lr())],
    )
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
    let decision = task
        .config
        .kind
        .untuned_decision(task.classes.len(), task.config.decoding);
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
