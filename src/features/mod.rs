//! Where a training step's vectors come from: the sentence cache (frozen backbone), or the native
//! encoder layers above the frost line run over cached token states — in which case the step also
//! sends the heads' input gradient back through pooling and those layers. A token task's rows are
//! sentences and its vectors are words: the words of the batch's sentences, in order (cached
//! states of its layer when frozen; the top native layer's states above a frost line).

pub(crate) mod build;

use std::ops::Range;

use ndarray::{s, Array2, ArrayView2, Axis};

use crate::align::{gather_words, WordWindows};
use crate::embedder::TokenStates;
use crate::error::Result;
use crate::nn::adapter::Tuning;
use crate::nn::attention::Segments;
use crate::nn::bert::{pool_backward, pool_forward, LayerTrace, NativeEncoder, PoolTrace};
use crate::nn::{ParamId, ParamStore};
use crate::pool::Pooling;
use crate::tasks::SplitName;

/// One split's token states at the frost line: one per text, or for a token task one per window
/// of words (`windows` says which words each window owns).
pub(crate) struct SplitStates {
    pub states: TokenStates,
    pub windows: Option<WordWindows>,
}

/// One task's token states at the frost line, and how many native layers its vectors pass
/// (all of them for a sentence task; up to its layer for a token task).
pub(crate) struct TaskStates {
    pub train: SplitStates,
    pub dev: SplitStates,
    pub test: Option<SplitStates>,
    pub depth: usize,
}

pub(crate) struct FrostFeatures {
    /// The native layers each task's vectors pass, in task order: one shared encoder (clones
    /// with the same parameters), or a task's own copy of what trains
    /// ([`NativeEncoder::per_task`]).
    pub encoders: Vec<NativeEncoder>,
    /// What trains of the native layers (the regime's choice; LoRA factors are attached).
    pub tuning: Tuning,
    pub pooling: Pooling,
    pub tasks: Vec<TaskStates>,
    /// Rows per inference batch when scoring whole splits.
    pub eval_batch: usize,
}

/// One task's cached vectors, row for row with its splits (a token task: word for word).
pub(crate) struct TaskVectors {
    pub train: Array2<f32>,
    pub dev: Array2<f32>,
    pub test: Option<Array2<f32>>,
    /// Token tasks: where each train sentence's words start in `train` (one more entry than
    /// sentences).
    pub train_words: Option<Vec<usize>>,
}

pub(crate) enum Features {
    /// The backbone's cached sentence vectors, per task.
    Cached(Vec<TaskVectors>),
    /// Token states at the frost line, turned into vectors by the native layers above it.
    Frost(FrostFeatures),
}

/// What the backward pass of a frost-line batch needs.
pub(crate) struct FeatureTrace {
    /// The task whose encoder ran.
    task: usize,
    layers: Vec<LayerTrace>,
    readout: Readout,
}

/// How the top layer's token states became the batch's vectors.
enum Readout {
    Pool(PoolTrace),
    /// Each word's packed token rows (averaged), out of `tokens` rows.
    Words {
        tokens: usize,
        ranges: Vec<Range<usize>>,
    },
}

/// The packed rows of each word owned by `windows` (stacked in that order as `seg`).
fn word_rows(ww: &WordWindows, windows: &[usize], seg: &Segments) -> Vec<Range<usize>> {
    windows
        .iter()
        .enumerate()
        .flat_map(|(b, &w)| {
            let at = seg.range(b).start;
            ww.owned[w].iter().map(move |r| at + r.start..at + r.end)
        })
        .collect()
}

fn mean_rows(y: ArrayView2<f32>, ranges: &[Range<usize>]) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros((ranges.len(), y.ncols()));
    for (mut o, r) in out.rows_mut().into_iter().zip(ranges) {
        for t in r.clone() {
            o += &y.row(t);
        }
        o /= r.len() as f32;
    }
    out
}

/// The word vectors of every sentence of a split from cached (frozen) token states.
pub(crate) fn word_vectors(states: &TokenStates, ww: &WordWindows, hidden: usize) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros((
        ww.words_in(&(0..ww.texts.len()).collect::<Vec<_>>()),
        hidden,
    ));
    let mut at = 0;
    for_word_vectors(states, ww, hidden, |x| {
        out.slice_mut(s![at..at + x.nrows(), ..]).assign(&x);
        at += x.nrows();
        Ok(())
    })
    .expect("filling an array cannot fail");
    out
}

/// Windows per group when word vectors are gathered group by group.
const WINDOW_GROUP: usize = 256;

/// The word vectors of every sentence of a split, handed to `sink` a group of windows at a time
/// (in order), each group's token-state pages given back once read: memory follows a group, not
/// the split (a sentence of a million words is thousands of windows).
pub(crate) fn for_word_vectors(
    states: &TokenStates,
    ww: &WordWindows,
    hidden: usize,
    mut sink: impl FnMut(Array2<f32>) -> Result<()>,
) -> Result<()> {
    let all: Vec<usize> = (0..ww.texts.len()).collect();
    for group in all.chunks(WINDOW_GROUP) {
        let x = gather_words(ww, group, hidden, |w| {
            ArrayView2::from_shape((states.lens[w], hidden), states.get(w))
                .expect("cached states are [len, hidden]")
        });
        for &w in group {
            states.release(w);
        }
        sink(x)?;
    }
    Ok(())
}

/// Where each sentence's words start in a split's word rows (one more entry than sentences).
pub(crate) fn sentence_offsets(ww: &WordWindows) -> Vec<usize> {
    let mut offsets = vec![0];
    for windows in &ww.sentence_windows {
        let n: usize = windows.clone().map(|w| ww.owned[w].len()).sum();
        offsets.push(offsets.last().expect("non-empty") + n);
    }
    offsets
}

/// Stacks the token states of `rows` into one packed `[Σ tokens, hidden]` batch: no padding, so
/// no compute is spent on it.
fn packed(states: &TokenStates, rows: &[usize], hidden: usize) -> (Array2<f32>, Segments) {
    let parts: Vec<(&TokenStates, usize)> = rows.iter().map(|&r| (states, r)).collect();
    packed_from(&parts, hidden)
}

/// Stacks text `r` of each `(states, r)` into one packed batch (texts of several tasks).
fn packed_from(parts: &[(&TokenStates, usize)], hidden: usize) -> (Array2<f32>, Segments) {
    let seg = Segments::from_lens(&parts.iter().map(|(s, r)| s.lens[*r]).collect::<Vec<_>>());
    let mut x = Array2::<f32>::zeros((seg.total(), hidden));
    for (b, (states, r)) in parts.iter().enumerate() {
        let range = seg.range(b);
        let v = ArrayView2::from_shape((range.len(), hidden), states.get(*r))
            .expect("cached states are [len, hidden]");
        x.slice_mut(s![range, ..]).assign(&v);
    }
    (x, seg)
}

impl FrostFeatures {
    /// The pooled vectors of train rows `(task, row)` of sentence tasks, through every native
    /// layer, with the trace [`Features::backward`] needs: what a contrastive step embeds. The
    /// pairs tune one shared copy (a run whose tasks own adapters is refused contrastive
    /// tuning), so the first task's encoder is every task's.
    pub(crate) fn train_pooled(
        &self,
        store: &ParamStore,
        items: &[(usize, usize)],
    ) -> Result<(Array2<f32>, FeatureTrace)> {
        let parts: Vec<(&TokenStates, usize)> = items
            .iter()
            .map(|&(t, r)| (&self.tasks[t].train.states, r))
            .collect();
        let encoder = &self.encoders[0];
        let (x, seg) = packed_from(&parts, encoder.hidden);
        let (y, layers) = encoder.forward(store, x, &seg);
        let (pooled, pool) = pool_forward(self.pooling, y.view(), &seg)?;
        Ok((
            pooled,
            FeatureTrace {
                task: 0,
                layers,
                readout: Readout::Pool(pool),
            },
        ))
    }

    /// What trains of the native layers, over every task's encoder: `depth(t)` layers of task
    /// `t`'s.
    fn tuned_ids(&self, depth: impl Fn(usize) -> usize) -> Vec<ParamId> {
        NativeEncoder::tuned_union(&self.encoders, self.tuning, depth)
    }
}

impl Features {
    /// What the regime tunes of every native layer (none for cached vectors): what a
    /// checkpoint saves.
    pub(crate) fn encoder_ids(&self) -> Vec<ParamId> {
        match self {
            Features::Cached(_) => Vec::new(),
            Features::Frost(f) => f.tuned_ids(|t| f.encoders[t].layers.len()),
        }
    }

    /// Each task's cached train vectors (what a centroid head is built from); `None` for every
    /// task above a frost line, where vectors exist only once the layers have run.
    pub(crate) fn train_vectors(&self, tasks: usize) -> Vec<Option<ArrayView2<'_, f32>>> {
        match self {
            Features::Cached(v) => v.iter().map(|t| Some(t.train.view())).collect(),
            Features::Frost(_) => vec![None; tasks],
        }
    }

    /// The tuned native parameters some task's vectors pass through (a layer above every
    /// task's depth gets no gradient, so it is left out of training).
    pub(crate) fn param_ids(&self) -> Vec<ParamId> {
        match self {
            Features::Cached(_) => Vec::new(),
            Features::Frost(f) => f.tuned_ids(|t| f.tasks[t].depth),
        }
    }

    /// The tuned native parameters task `t`'s vectors pass through.
    pub(crate) fn task_param_ids(&self, t: usize) -> Vec<ParamId> {
        match self {
            Features::Cached(_) => Vec::new(),
            Features::Frost(f) => f.encoders[t].tuned_ids(f.tuning, f.tasks[t].depth),
        }
    }

    /// Every split of every task through the layers as they are now, once: a cache of the
    /// (tuned) layers' vectors, for heads that train with the layers frozen again.
    pub(crate) fn into_cached(self, store: &ParamStore) -> Result<Features> {
        if let Features::Cached(_) = self {
            return Ok(self);
        }
        let mut out = Vec::new();
        for t in 0..self.tasks() {
            let split = |which| self.split_vectors(store, t, which);
            let train_words = match &self {
                Features::Frost(f) => f.tasks[t].train.windows.as_ref().map(sentence_offsets),
                Features::Cached(_) => None,
            };
            out.push(TaskVectors {
                train: split(SplitName::Train)?.expect("every task has a train split"),
                dev: split(SplitName::Dev)?.expect("every task has a dev split"),
                test: split(SplitName::Test)?,
                train_words,
            });
        }
        Ok(Features::Cached(out))
    }

    fn tasks(&self) -> usize {
        match self {
            Features::Cached(v) => v.len(),
            Features::Frost(f) => f.tasks.len(),
        }
    }

    pub(crate) fn needs_input_grad(&self) -> bool {
        matches!(self, Features::Frost(_))
    }

    /// The sentence vectors of training rows `rows` of task `t`, with a trace when `train`.
    pub(crate) fn batch(
        &self,
        store: &ParamStore,
        t: usize,
        rows: &[usize],
        train: bool,
    ) -> Result<(Array2<f32>, Option<FeatureTrace>)> {
        match self {
            Features::Cached(v) => match &v[t].train_words {
                None => Ok((v[t].train.select(Axis(0), rows), None)),
                Some(offsets) => {
                    let words: Vec<usize> = rows
                        .iter()
                        .flat_map(|&r| offsets[r]..offsets[r + 1])
                        .collect();
                    Ok((v[t].train.select(Axis(0), &words), None))
                }
            },
            Features::Frost(f) => {
                let split = &f.tasks[t].train;
                let depth = f.tasks[t].depth;
                let windows = split.windows.as_ref().map(|ww| ww.windows_of(rows));
                let seqs = windows.as_deref().unwrap_or(rows);
                let encoder = &f.encoders[t];
                let (x, seg) = packed(&split.states, seqs, encoder.hidden);
                let (y, layers) = if train {
                    let (y, layers) = encoder.forward_to(store, x, &seg, depth);
                    (y, Some(layers))
                } else {
                    (encoder.infer_to(store, x, &seg, depth), None)
                };
                let (out, readout) = match &split.windows {
                    Some(ww) => {
                        let ranges = word_rows(ww, seqs, &seg);
                        let words = mean_rows(y.view(), &ranges);
                        let tokens = seg.total();
                        (words, Readout::Words { tokens, ranges })
                    }
                    None => {
                        let (pooled, pool) = pool_forward(f.pooling, y.view(), &seg)?;
                        (pooled, Readout::Pool(pool))
                    }
                };
                Ok((
                    out,
                    layers.map(|layers| FeatureTrace {
                        task: t,
                        layers,
                        readout,
                    }),
                ))
            }
        }
    }

    /// Sends the gradient w.r.t. a batch's sentence vectors back into the encoder's parameters.
    pub(crate) fn backward(
        &self,
        store: &mut ParamStore,
        trace: Option<FeatureTrace>,
        dx: Option<Array2<f32>>,
    ) {
        if let (Features::Frost(f), Some(t), Some(dx)) = (self, trace, dx) {
            let dy = match &t.readout {
                Readout::Pool(pool) => pool_backward(f.pooling, pool, dx.view()),
                Readout::Words { tokens, ranges } => {
                    let mut dy = Array2::<f32>::zeros((*tokens, dx.ncols()));
                    for (d, r) in dx.rows().into_iter().zip(ranges) {
                        let share = &d / r.len() as f32;
                        for t in r.clone() {
                            let mut row = dy.row_mut(t);
                            row += &share;
                        }
                    }
                    dy
                }
            };
            f.encoders[t.task].backward(store, &t.layers, dy);
        }
    }

    /// Every row of one split of task `t` as sentence vectors (batched inference, length-sorted);
    /// `None` for a test split the task does not have.
    pub(crate) fn split_vectors(
        &self,
        store: &ParamStore,
        t: usize,
        which: SplitName,
    ) -> Result<Option<Array2<f32>>> {
        match self {
            Features::Cached(v) => Ok(match which {
                SplitName::Train => Some(v[t].train.clone()),
                SplitName::Dev => Some(v[t].dev.clone()),
                SplitName::Test => v[t].test.clone(),
            }),
            Features::Frost(f) => {
                let states = match which {
                    SplitName::Train => Some(&f.tasks[t].train),
                    SplitName::Dev => Some(&f.tasks[t].dev),
                    SplitName::Test => f.tasks[t].test.as_ref(),
                };
                let (depth, encoder) = (f.tasks[t].depth, &f.encoders[t]);
                states
                    .map(|s| match &s.windows {
                        Some(ww) => infer_words(encoder, depth, store, &s.states, ww, f.eval_batch),
                        None => infer_states(encoder, f.pooling, store, &s.states, f.eval_batch),
                    })
                    .transpose()
            }
        }
    }
}

/// Sentence vectors of every text in `states`: the native layers over the token states in
/// length-sorted batches of `batch`, pooled; rows in the original order.
pub(crate) fn infer_states(
    encoder: &NativeEncoder,
    pooling: Pooling,
    store: &ParamStore,
    states: &TokenStates,
    batch: usize,
) -> Result<Array2<f32>> {
    let n = states.lens.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| states.lens[i]);
    let mut out = Array2::<f32>::zeros((n, encoder.hidden));
    for rows in order.chunks(batch.max(1)) {
        let (x, seg) = packed(states, rows, encoder.hidden);
        let y = encoder.infer(store, x, &seg);
        let (pooled, _) = pool_forward(pooling, y.view(), &seg)?;
        for (b, &r) in rows.iter().enumerate() {
            out.row_mut(r).assign(&pooled.row(b));
        }
    }
    Ok(out)
}

/// Word vectors of every sentence in `ww` (in order): the native layers over each window's token
/// states in length-sorted batches of `batch` windows, each owned word read from its window.
pub(crate) fn infer_words(
    encoder: &NativeEncoder,
    depth: usize,
    store: &ParamStore,
    states: &TokenStates,
    ww: &WordWindows,
    batch: usize,
) -> Result<Array2<f32>> {
    let n = ww.texts.len();
    let mut first_word = Vec::with_capacity(n);
    let mut at = 0;
    for owned in &ww.owned {
        first_word.push(at);
        at += owned.len();
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| states.lens[i]);
    let mut out = Array2::<f32>::zeros((at, encoder.hidden));
    for windows in order.chunks(batch.max(1)) {
        let (x, seg) = packed(states, windows, encoder.hidden);
        let y = encoder.infer_to(store, x, &seg, depth);
        let words = mean_rows(y.view(), &word_rows(ww, windows, &seg));
        let mut row = 0;
        for &w in windows {
            let k = ww.owned[w].len();
            out.slice_mut(s![first_word[w]..first_word[w] + k, ..])
                .assign(&words.slice(s![row..row + k, ..]));
            row += k;
        }
    }
    Ok(out)
}
