//! BERT self-attention over padded batches: scores only over each row's real tokens (padding
//! keys get zero probability, as HF's additive float-min mask gives), forward and backward.

use ndarray::{s, Array2, ArrayView2, Axis};

use super::linear::Linear;
use super::params::ParamStore;

#[derive(Debug, Clone)]
pub struct SelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub heads: usize,
}

pub struct AttentionTrace {
    x: Array2<f32>,
    q: Array2<f32>,
    k: Array2<f32>,
    v: Array2<f32>,
    /// Softmax probabilities per (batch row, head), `[seq, seq]`.
    probs: Vec<Array2<f32>>,
    batch: usize,
    seq: usize,
}

impl AttentionTrace {
    /// The layer input the attention saw (for the residual connection).
    pub fn input(&self) -> ndarray::ArrayView2<'_, f32> {
        self.x.view()
    }
}

impl SelfAttention {
    fn head_dim(&self) -> usize {
        self.query.out_dim / self.heads
    }

    /// `x` is `[batch·seq, hidden]` (row-major by batch row); `lens[b]` real tokens in row b.
    /// Returns the attention context `[batch·seq, hidden]` (before the output projection).
    pub fn forward(
        &self,
        store: &ParamStore,
        x: Array2<f32>,
        batch: usize,
        seq: usize,
        lens: &[usize],
    ) -> (Array2<f32>, AttentionTrace) {
        let q = self.query.forward(store, x.view());
        let k = self.key.forward(store, x.view());
        let v = self.value.forward(store, x.view());
        let d = self.head_dim();
        let scale = 1.0 / (d as f32).sqrt();
        let mut ctx = Array2::<f32>::zeros(x.raw_dim());
        let mut probs = Vec::with_capacity(batch * self.heads);
        for (b, &len) in lens.iter().enumerate().take(batch) {
            let rows = b * seq..(b + 1) * seq;
            let len = len.clamp(1, seq);
            for h in 0..self.heads {
                let cols = h * d..(h + 1) * d;
                let qh = q.slice(s![rows.clone(), cols.clone()]);
                let kh = k.slice(s![b * seq..b * seq + len, cols.clone()]);
                let vh = v.slice(s![b * seq..b * seq + len, cols.clone()]);
                // Scores over real keys only; padded keys would get exp(min − max) = 0.
                let mut p = qh.dot(&kh.t());
                for mut row in p.rows_mut() {
                    let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v * scale));
                    row.mapv_inplace(|v| (v * scale - max).exp());
                    let sum = row.sum();
                    row.mapv_inplace(|v| v / sum);
                }
                ctx.slice_mut(s![rows.clone(), cols]).assign(&p.dot(&vh));
                probs.push(p);
            }
        }
        (
            ctx,
            AttentionTrace {
                x,
                q,
                k,
                v,
                probs,
                batch,
                seq,
            },
        )
    }

    /// Accumulates the Q/K/V projection gradients; returns dx.
    pub fn backward(
        &self,
        store: &mut ParamStore,
        t: &AttentionTrace,
        dctx: ArrayView2<f32>,
    ) -> Array2<f32> {
        let d = self.head_dim();
        let scale = 1.0 / (d as f32).sqrt();
        let mut dq = Array2::<f32>::zeros(t.q.raw_dim());
        let mut dk = Array2::<f32>::zeros(t.k.raw_dim());
        let mut dv = Array2::<f32>::zeros(t.v.raw_dim());
        let seq = t.seq;
        for b in 0..t.batch {
            for h in 0..self.heads {
                let p = &t.probs[b * self.heads + h];
                let len = p.ncols();
                let rows = b * seq..(b + 1) * seq;
                let keys = b * seq..b * seq + len;
                let cols = h * d..(h + 1) * d;
                let dc = dctx.slice(s![rows.clone(), cols.clone()]);
                let vh = t.v.slice(s![keys.clone(), cols.clone()]);
                let kh = t.k.slice(s![keys.clone(), cols.clone()]);
                let qh = t.q.slice(s![rows.clone(), cols.clone()]);
                let dp = dc.dot(&vh.t());
                dv.slice_mut(s![keys.clone(), cols.clone()])
                    .scaled_add(1.0, &p.t().dot(&dc));
                // Softmax backward: dS = P ⊙ (dP − Σ_j dP·P), times the score scale.
                let mut ds = &dp * p;
                let row_sums = ds.sum_axis(Axis(1));
                for ((mut r, pr), s) in ds.rows_mut().into_iter().zip(p.rows()).zip(row_sums.iter())
                {
                    r.zip_mut_with(&pr, |x, &pv| *x = scale * (*x - pv * s));
                }
                dq.slice_mut(s![rows.clone(), cols.clone()])
                    .scaled_add(1.0, &ds.dot(&kh));
                dk.slice_mut(s![keys, cols])
                    .scaled_add(1.0, &ds.t().dot(&qh));
            }
        }
        let mut dx = self
            .query
            .backward(store, t.x.view(), dq.view(), true)
            .expect("dx");
        dx += &self
            .key
            .backward(store, t.x.view(), dk.view(), true)
            .expect("dx");
        dx += &self
            .value
            .backward(store, t.x.view(), dv.view(), true)
            .expect("dx");
        dx
    }
}
