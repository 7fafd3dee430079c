//! Softmax cross-entropy with optional class weights and label smoothing.

use ndarray::{Array2, ArrayView2, Axis};

/// Row-wise softmax, numerically stable.
pub fn softmax(logits: ArrayView2<f32>) -> Array2<f32> {
    let mut p = logits.to_owned();
    for mut row in p.axis_iter_mut(Axis(0)) {
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
    p
}

/// Mean cross-entropy of `logits` against `targets` and its gradient w.r.t. the logits.
///
/// The smoothed target is `(1−ε)·onehot + ε/K`; with class weights each row counts `w[y]` and the
/// mean divides by the sum of the weights (PyTorch's convention). Computed with log-sum-exp and
/// no clamping, so an overflowing model yields a non-finite loss instead of hiding it.
pub fn cross_entropy(
    logits: ArrayView2<f32>,
    targets: &[usize],
    class_weights: Option<&[f32]>,
    smoothing: f32,
) -> (f32, Array2<f32>) {
    let (n, k) = logits.dim();
    let mut grad = Array2::<f32>::zeros((n, k));
    let mut total = 0.0f64;
    let mut weight_sum = 0.0f64;
    let off = smoothing / k as f32;
    for (i, (row, mut g)) in logits.rows().into_iter().zip(grad.rows_mut()).enumerate() {
        let y = targets[i];
        let w = class_weights.map_or(1.0, |cw| cw[y]);
        weight_sum += w as f64;
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        // g holds exp(z − max) for now; f32 exp keeps the hot loop vectorisable.
        g.zip_mut_with(&row, |e, &z| *e = (z - max).exp());
        let sum = g.sum();
        let lse = max + sum.ln();
        let mut row_loss = 0.0f32;
        for (c, (e, &z)) in g.iter_mut().zip(row.iter()).enumerate() {
            let q = if c == y { 1.0 - smoothing + off } else { off };
            row_loss -= q * (z - lse);
            *e = w * (*e / sum - q);
        }
        total += (w * row_loss) as f64;
    }
    let inv = (1.0 / weight_sum.max(1e-12)) as f32;
    grad.mapv_inplace(|g| g * inv);
    ((total / weight_sum.max(1e-12)) as f32, grad)
}
