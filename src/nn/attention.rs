//! BERT self-attention over packed sequences: the rows of all sequences in a batch are stacked
//! without padding (`Segments` says where each starts), so no compute goes to padding and no mask
//! is needed — each sequence attends over its own tokens, as HF's masked padded batch does.

use std::ops::Range;

use ndarray::{s, Array2, ArrayView2};
use rayon::prelude::*;

use super::gemm;
use super::linear::Linear;
use super::params::ParamStore;
use super::vecmath;

/// Where each sequence's rows lie in a packed `[Σ tokens, hidden]` matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segments {
    offsets: Vec<usize>,
}

impl Segments {
    /// Sequences of the given token counts (each at least 1), stacked in order.
    pub fn from_lens(lens: &[usize]) -> Self {
        let mut offsets = Vec::with_capacity(lens.len() + 1);
        offsets.push(0);
        for &l in lens {
            offsets.push(offsets.last().expect("non-empty") + l.max(1));
        }
        Self { offsets }
    }

    pub fn count(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn total(&self) -> usize {
        *self.offsets.last().expect("non-empty")
    }

    pub fn range(&self, b: usize) -> Range<usize> {
        self.offsets[b]..self.offsets[b + 1]
    }
}

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
    /// Softmax probabilities per (sequence, head), `[len, len]`.
    probs: Vec<Array2<f32>>,
    seg: Segments,
}

impl AttentionTrace {
    /// The layer input the attention saw (for the residual connection).
    pub fn input(&self) -> ArrayView2<'_, f32> {
        self.x.view()
    }
}

impl SelfAttention {
    fn head_dim(&self) -> usize {
        self.query.out_dim / self.heads
    }

    /// `x` is packed `[Σ tokens, hidden]`; returns the attention context, same shape (before the
    /// output projection).
    pub fn forward(
        &self,
        store: &ParamStore,
        x: Array2<f32>,
        seg: &Segments,
    ) -> (Array2<f32>, AttentionTrace) {
        let q = self.query.forward(store, x.view());
        let k = self.key.forward(store, x.view());
        let v = self.value.forward(store, x.view());
        let d = self.head_dim();
        let scale = 1.0 / (d as f32).sqrt();
        let kernel = store.kernel();
        // Sequences are independent, and their per-head products too small to split: the
        // sequences run in parallel, each computed exactly as it would be alone.
        let per_sequence: Vec<(Array2<f32>, Vec<Array2<f32>>)> = gemm::in_pool(|| {
            (0..seg.count())
                .into_par_iter()
                .map(|b| {
                    let rows = seg.range(b);
                    let mut ctx = Array2::<f32>::zeros((rows.len(), x.ncols()));
                    let mut probs = Vec::with_capacity(self.heads);
                    for h in 0..self.heads {
                        let cols = h * d..(h + 1) * d;
                        let qh = q.slice(s![rows.clone(), cols.clone()]);
                        let kh = k.slice(s![rows.clone(), cols.clone()]);
                        let vh = v.slice(s![rows.clone(), cols.clone()]);
                        let mut p = kernel.dot(&qh, &kh.t());
                        let len = p.ncols();
                        vecmath::softmax_rows(p.as_slice_mut().expect("new array"), len, scale);
                        kernel.gemm(1.0, &p.view(), &vh, 0.0, &mut ctx.slice_mut(s![.., cols]));
                        probs.push(p);
                    }
                    (ctx, probs)
                })
                .collect()
        });
        let mut ctx = Array2::<f32>::zeros(x.raw_dim());
        let mut probs = Vec::with_capacity(seg.count() * self.heads);
        for (b, (c, p)) in per_sequence.into_iter().enumerate() {
            ctx.slice_mut(s![seg.range(b), ..]).assign(&c);
            probs.extend(p);
        }
        (
            ctx,
            AttentionTrace {
                x,
                q,
                k,
                v,
                probs,
                seg: seg.clone(),
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
        let seg = &t.seg;
        let scale = 1.0 / (self.head_dim() as f32).sqrt();
        let kernel = store.kernel();
        // As in the forward pass: the sequences in parallel, each exactly as alone.
        let per_sequence: Vec<[Array2<f32>; 3]> = gemm::in_pool(|| {
            (0..seg.count())
                .into_par_iter()
                .map(|b| self.sequence_backward(t, dctx, b, kernel, scale))
                .collect()
        });
        let mut dq = Array2::<f32>::zeros(t.q.raw_dim());
        let mut dk = Array2::<f32>::zeros(t.k.raw_dim());
        let mut dv = Array2::<f32>::zeros(t.v.raw_dim());
        for (b, [q, k, v]) in per_sequence.into_iter().enumerate() {
            dq.slice_mut(s![seg.range(b), ..]).assign(&q);
            dk.slice_mut(s![seg.range(b), ..]).assign(&k);
            dv.slice_mut(s![seg.range(b), ..]).assign(&v);
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

    /// Sequence `b`'s gradients of Q, K and V (its rows, every head).
    fn sequence_backward(
        &self,
        t: &AttentionTrace,
        dctx: ArrayView2<f32>,
        b: usize,
        kernel: gemm::Kernel,
        scale: f32,
    ) -> [Array2<f32>; 3] {
        let d = self.head_dim();
        let rows = t.seg.range(b);
        let shape = (rows.len(), t.q.ncols());
        let (mut dq, mut dk, mut dv) = (
            Array2::<f32>::zeros(shape),
            Array2::<f32>::zeros(shape),
            Array2::<f32>::zeros(shape),
        );
        for h in 0..self.heads {
            let p = &t.probs[b * self.heads + h];
            let cols = h * d..(h + 1) * d;
            let dc = dctx.slice(s![rows.clone(), cols.clone()]);
            let vh = t.v.slice(s![rows.clone(), cols.clone()]);
            let kh = t.k.slice(s![rows.clone(), cols.clone()]);
            let qh = t.q.slice(s![rows.clone(), cols.clone()]);
            let dp = kernel.dot(&dc, &vh.t());
            kernel.gemm(
                1.0,
                &p.t(),
                &dc,
                0.0,
                &mut dv.slice_mut(s![.., cols.clone()]),
            );
            // Softmax backward: dS = P ⊙ (dP − Σ_j dP·P), times the score scale.
            let mut ds = dp;
            let len = ds.ncols();
            vecmath::softmax_backward_rows(
                p.as_slice().expect("owned"),
                ds.as_slice_mut().expect("new array"),
                len,
                scale,
            );
            kernel.gemm(
                1.0,
                &ds.view(),
                &kh,
                0.0,
                &mut dq.slice_mut(s![.., cols.clone()]),
            );
            kernel.gemm(1.0, &ds.t(), &qh, 0.0, &mut dk.slice_mut(s![.., cols]));
        }
        [dq, dk, dv]
    }
}
