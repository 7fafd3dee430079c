//! Sentence pooling over real tokens (never padding), then optional L2 normalisation,
//! as the model folder's `modules.json` asks.

use ndarray::{ArrayView2, ArrayView3, ArrayViewMut1};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolingMode {
    Mean,
    Cls,
    Max,
    MeanSqrtLen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pooling {
    pub mode: PoolingMode,
    pub normalize: bool,
}

impl Pooling {
    /// A stable text form used in cache keys and reports.
    pub fn describe(&self) -> String {
        let mode = match self.mode {
            PoolingMode::Mean => "mean",
            PoolingMode::Cls => "cls",
            PoolingMode::Max => "max",
            PoolingMode::MeanSqrtLen => "mean_sqrt_len",
        };
        if self.normalize {
            format!("{mode}+l2")
        } else {
            mode.to_string()
        }
    }

    /// Pools one sentence's token states `[seq, hidden]` over its first `len` (real) tokens.
    pub fn pool_into(&self, states: ArrayView2<f32>, len: usize, mut out: ArrayViewMut1<f32>) {
        self.pool_tokens(states.slice(ndarray::s![..len.max(1), ..]), out.view_mut());
        if self.normalize {
            l2_normalize(out);
        }
    }

    /// Pools the states of a sentence's real tokens `[len, hidden]` into `out`, before any
    /// normalisation (the native layers' forward pass keeps this for its backward pass).
    pub fn pool_tokens(&self, real: ArrayView2<f32>, mut out: ArrayViewMut1<f32>) {
        match self.mode {
            PoolingMode::Cls => out.assign(&real.row(0)),
            PoolingMode::Max => {
                out.fill(f32::NEG_INFINITY);
                for row in real.rows() {
                    out.zip_mut_with(&row, |o, &v| *o = o.max(v));
                }
            }
            PoolingMode::Mean | PoolingMode::MeanSqrtLen => {
                out.fill(0.0);
                for row in real.rows() {
                    out += &row;
                }
                let n = real.nrows() as f32;
                let div = if self.mode == PoolingMode::Mean {
                    n
                } else {
                    n.sqrt()
                };
                out.mapv_inplace(|v| v / div);
            }
        }
    }

    /// Pools a batch `[batch, seq, hidden]` into `out` rows given each row's real length.
    pub fn pool_batch(
        &self,
        states: ArrayView3<f32>,
        lens: &[usize],
        out: &mut ndarray::ArrayViewMut2<f32>,
    ) {
        for (b, &len) in lens.iter().enumerate() {
            self.pool_into(states.index_axis(ndarray::Axis(0), b), len, out.row_mut(b));
        }
    }
}

/// Scales `v` to unit L2 norm (a zero vector stays zero).
pub(crate) fn l2_normalize(mut v: ArrayViewMut1<f32>) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.mapv_inplace(|x| x / norm);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array1};

    #[test]
    fn mean_ignores_padding_and_normalises() {
        let states = array![[1.0f32, 0.0], [3.0, 0.0], [100.0, 100.0]];
        let mut out = Array1::zeros(2);
        let p = Pooling {
            mode: PoolingMode::Mean,
            normalize: false,
        };
        p.pool_into(states.view(), 2, out.view_mut());
        assert_eq!(out, array![2.0, 0.0]);
        let p = Pooling {
            mode: PoolingMode::Mean,
            normalize: true,
        };
        p.pool_into(states.view(), 2, out.view_mut());
        assert_eq!(out, array![1.0, 0.0]);
    }

    #[test]
    fn max_and_cls() {
        let states = array![[1.0f32, 5.0], [3.0, -1.0], [100.0, 100.0]];
        let mut out = Array1::zeros(2);
        Pooling {
            mode: PoolingMode::Max,
            normalize: false,
        }
        .pool_into(states.view(), 2, out.view_mut());
        assert_eq!(out, array![3.0, 5.0]);
        Pooling {
            mode: PoolingMode::Cls,
            normalize: false,
        }
        .pool_into(states.view(), 2, out.view_mut());
        assert_eq!(out, array![1.0, 5.0]);
    }
}
