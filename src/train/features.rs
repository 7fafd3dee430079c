//! Where a training step's sentence vectors come from: the sentence cache (frozen backbone), or
//! the native encoder layers above the frost line run over cached token states — in which case
//! the step also sends the heads' input gradient back through pooling and those layers.

use ndarray::{s, Array2, ArrayView2, Axis};

use crate::embedder::TokenStates;
use crate::error::Result;
use crate::nn::attention::Segments;
use crate::nn::bert::{pool_backward, pool_forward, LayerTrace, NativeEncoder, PoolTrace};
use crate::nn::{ParamId, ParamStore};
use crate::pool::Pooling;
use crate::tasks::SplitName;

/// The token states of one task's splits at the frost line.
pub struct TaskStates {
    pub train: TokenStates,
    pub dev: TokenStates,
    pub test: Option<TokenStates>,
}

pub struct FrostFeatures {
    pub encoder: NativeEncoder,
    pub pooling: Pooling,
    pub tasks: Vec<TaskStates>,
    /// Rows per inference batch when scoring whole splits.
    pub eval_batch: usize,
}

/// One task's cached sentence vectors, row for row with its splits.
pub struct TaskVectors {
    pub train: Array2<f32>,
    pub dev: Array2<f32>,
    pub test: Option<Array2<f32>>,
}

pub enum Features {
    /// The backbone's cached sentence vectors, per task.
    Cached(Vec<TaskVectors>),
    /// Token states at the frost line, turned into vectors by the native layers above it.
    Frost(FrostFeatures),
}

/// What the backward pass of a frost-line batch needs.
pub struct FeatureTrace {
    layers: Vec<LayerTrace>,
    pool: PoolTrace,
}

/// Stacks the token states of `rows` into one packed `[Σ tokens, hidden]` batch: no padding, so
/// no compute is spent on it.
fn packed(states: &TokenStates, rows: &[usize], hidden: usize) -> (Array2<f32>, Segments) {
    let seg = Segments::from_lens(&rows.iter().map(|&r| states.lens[r]).collect::<Vec<_>>());
    let mut x = Array2::<f32>::zeros((seg.total(), hidden));
    for (b, &r) in rows.iter().enumerate() {
        let range = seg.range(b);
        let v = ArrayView2::from_shape((range.len(), hidden), states.get(r))
            .expect("cached states are [len, hidden]");
        x.slice_mut(s![range, ..]).assign(&v);
    }
    (x, seg)
}

impl Features {
    /// The native encoder's parameters (none for cached vectors).
    pub fn param_ids(&self) -> Vec<ParamId> {
        match self {
            Features::Cached(_) => Vec::new(),
            Features::Frost(f) => f.encoder.param_ids(),
        }
    }

    pub fn needs_input_grad(&self) -> bool {
        matches!(self, Features::Frost(_))
    }

    /// The sentence vectors of training rows `rows` of task `t`, with a trace when `train`.
    pub fn batch(
        &self,
        store: &ParamStore,
        t: usize,
        rows: &[usize],
        train: bool,
    ) -> Result<(Array2<f32>, Option<FeatureTrace>)> {
        match self {
            Features::Cached(v) => Ok((v[t].train.select(Axis(0), rows), None)),
            Features::Frost(f) => {
                let (x, seg) = packed(&f.tasks[t].train, rows, f.encoder.hidden);
                if train {
                    let (y, layers) = f.encoder.forward(store, x, &seg);
                    let (pooled, pool) = pool_forward(f.pooling, y.view(), &seg)?;
                    Ok((pooled, Some(FeatureTrace { layers, pool })))
                } else {
                    let y = f.encoder.infer(store, x, &seg);
                    Ok((pool_forward(f.pooling, y.view(), &seg)?.0, None))
                }
            }
        }
    }

    /// Sends the gradient w.r.t. a batch's sentence vectors back into the encoder's parameters.
    pub fn backward(
        &self,
        store: &mut ParamStore,
        trace: Option<FeatureTrace>,
        dx: Option<Array2<f32>>,
    ) {
        if let (Features::Frost(f), Some(t), Some(dx)) = (self, trace, dx) {
            let dy = pool_backward(f.pooling, &t.pool, dx.view());
            f.encoder.backward(store, &t.layers, dy);
        }
    }

    /// Every row of one split of task `t` as sentence vectors (batched inference, length-sorted);
    /// `None` for a test split the task does not have.
    pub fn split_vectors(
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
                states
                    .map(|s| infer_states(&f.encoder, f.pooling, store, s, f.eval_batch))
                    .transpose()
            }
        }
    }
}

/// Sentence vectors of every text in `states`: the native layers over the token states in
/// length-sorted batches of `batch`, pooled; rows in the original order.
pub fn infer_states(
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
