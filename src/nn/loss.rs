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
    let off = smoothing as f64 / k as f64;
    for i in 0..n {
        let row = logits.row(i);
        let y = targets[i];
        let w = class_weights.map_or(1.0, |cw| cw[y]) as f64;
        weight_sum += w;
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let lse = max
            + row
                .iter()
                .map(|&v| (v as f64 - max).exp())
                .sum::<f64>()
                .ln();
        let mut row_loss = 0.0f64;
        for c in 0..k {
            let q = if c == y {
                1.0 - smoothing as f64 + off
            } else {
                off
            };
            let log_p = row[c] as f64 - lse;
            row_loss -= q * log_p;
            grad[[i, c]] = (w * (log_p.exp() - q)) as f32;
        }
        total += w * row_loss;
    }
    let norm = weight_sum.max(1e-12);
    grad.mapv_inplace(|g| (g as f64 / norm) as f32);
    ((total / norm) as f32, grad)
}
