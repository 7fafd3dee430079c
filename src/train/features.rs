//! Where a training step's sentence vectors come from: the sentence cache (frozen backbone), or
//! the native encoder layers above the frost line run over cached token states — in which case
//! the step also sends the heads' input gradient back through pooling and those layers.

use ndarray::{s, Array2, ArrayView2, Axis};

use super::TaskData;
use crate::embed::TokenStates;
use crate::error::Result;
use crate::nn::attention::Segments;
use crate::nn::bert::{pool_backward, pool_forward, LayerTrace, NativeEncoder, PoolTrace};
use crate::nn::{ParamId, ParamStore};
use crate::pool::Pooling;

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

pub enum Features {
    Cached,
    Frost(FrostFeatures),
}

/// What the backward pass of a frost-line batch needs.
pub struct FeatureTrace {
    layers: Vec<LayerTrace>,
    pool: PoolTrace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Train,
    Dev,
    Test,
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
            Features::Cached => Vec::new(),
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
        tasks: &[TaskData],
        t: usize,
        rows: &[usize],
        train: bool,
    ) -> Result<(Array2<f32>, Option<FeatureTrace>)> {
        match self {
            Features::Cached => Ok((tasks[t].train.x.select(Axis(0), rows), None)),
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

    /// Every row of one split of task `t` as sentence vectors (batched inference, length-sorted).
    pub fn split_vectors(
        &self,
        store: &ParamStore,
        tasks: &[TaskData],
        t: usize,
        which: Which,
    ) -> Result<Array2<f32>> {
        let cached = |which: Which| match which {
            Which::Train => &tasks[t].train.x,
            Which::Dev => &tasks[t].dev.x,
            Which::Test => &tasks[t].test.as_ref().expect("test split").x,
        };
        let Features::Frost(f) = self else {
            return Ok(cached(which).clone());
        };
        let states = match which {
            Which::Train => &f.tasks[t].train,
            Which::Dev => &f.tasks[t].dev,
            Which::Test => f.tasks[t].test.as_ref().expect("test split"),
        };
        infer_states(&f.encoder, f.pooling, store, states, f.eval_batch)
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
