//! Softmax cross-entropy with optional class weights and label smoothing; sigmoid binary
//! cross-entropy for multi-label tasks; the cosine-similarity loss of contrastive pairs.

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

/// Element-wise logistic sigmoid.
pub fn sigmoid(logits: ArrayView2<f32>) -> Array2<f32> {
    logits.mapv(|z| 1.0 / (1.0 + (-z).exp()))
}

/// Mean binary cross-entropy over every (row, label) of `logits` against each row's label set,
/// and its gradient w.r.t. the logits (PyTorch's `BCEWithLogitsLoss`, mean reduction).
/// `pos_weight[k]` scales label k's positive term (rare labels against the many negatives).
/// Computed as `max(z, 0) − z·y + ln(1 + e^−|z|)`, stable for any z.
pub fn bce_with_logits(
    logits: ArrayView2<f32>,
    targets: &[Vec<usize>],
    pos_weight: Option<&[f32]>,
) -> (f32, Array2<f32>) {
    let (n, k) = logits.dim();
    let mut grad = Array2::<f32>::zeros((n, k));
    let mut total = 0.0f64;
    let inv = 1.0 / (n * k).max(1) as f32;
    for (i, (row, mut g)) in logits.rows().into_iter().zip(grad.rows_mut()).enumerate() {
        for (c, (&z, d)) in row.iter().zip(g.iter_mut()).enumerate() {
            let y = targets[i].contains(&c);
            let w = if y {
                pos_weight.map_or(1.0, |p| p[c])
            } else {
                1.0
            };
            // softplus(−z) = −ln σ(z); softplus(z) = −ln(1 − σ(z)).
            let softplus = |x: f32| x.max(0.0) + (-x.abs()).exp().ln_1p();
            let p = 1.0 / (1.0 + (-z).exp());
            let loss = if y { w * softplus(-z) } else { softplus(z) };
            total += loss as f64;
            *d = inv * if y { w * (p - 1.0) } else { p };
        }
    }
    ((total * inv as f64) as f32, grad)
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

/// Mean squared error between each pair's cosine similarity and its target (1 similar, 0 not),
/// sentence-transformers' `CosineSimilarityLoss`, over rows of `x` named by `pairs` as
/// `(a, b, target)`; and the gradient w.r.t. every row of `x` (rows in no pair get zeros).
/// d cos(u, v)/du = v/(|u||v|) − cos · u/|u|².
pub fn cosine_pair_mse(x: ArrayView2<f32>, pairs: &[(usize, usize, f32)]) -> (f32, Array2<f32>) {
    let norms: Vec<f32> = x
        .rows()
        .into_iter()
        .map(|r| r.dot(&r).sqrt().max(1e-12))
        .collect();
    let mut grad = Array2::<f32>::zeros(x.dim());
    let scale = 1.0 / pairs.len().max(1) as f32;
    let mut loss = 0.0f64;
    for &(a, b, target) in pairs {
        let (u, v) = (x.row(a), x.row(b));
        let (nu, nv) = (norms[a], norms[b]);
        let cos = u.dot(&v) / (nu * nv);
        let diff = cos - target;
        loss += (diff * diff) as f64;
        let g = 2.0 * diff * scale;
        for (from, to, n_from, n_to) in [(a, b, nu, nv), (b, a, nv, nu)] {
            let (p, q) = (x.row(from), x.row(to));
            let mut d = grad.row_mut(from);
            for k in 0..p.len() {
                d[k] += g * (q[k] / (n_from * n_to) - cos * p[k] / (n_from * n_from));
            }
        }
    }
    ((loss * scale as f64) as f32, grad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn binary_cross_entropy_matches_its_definition_and_its_gradient_matches_finite_differences() {
        let z = array![[2.0f32, -1.0, 0.5], [-3.0, 0.0, 40.0]];
        let targets = vec![vec![0, 2], vec![2]];
        let pw = [2.0f32, 1.0, 0.5];
        let (loss, grad) = bce_with_logits(z.view(), &targets, Some(&pw));
        let mut want = 0.0f64;
        for i in 0..2 {
            for c in 0..3 {
                let p = 1.0 / (1.0 + (-z[[i, c]] as f64).exp());
                want -= if targets[i].contains(&c) {
                    pw[c] as f64 * p.ln()
                } else {
                    (1.0 - p).ln()
                };
            }
        }
        assert!(
            (loss as f64 - want / 6.0).abs() < 1e-5,
            "{loss} vs {}",
            want / 6.0
        );
        let eps = 1e-2f32;
        for i in 0..2 {
            for c in 0..3 {
                let (mut up, mut down) = (z.clone(), z.clone());
                up[[i, c]] += eps;
                down[[i, c]] -= eps;
                let fd = (bce_with_logits(up.view(), &targets, Some(&pw)).0
                    - bce_with_logits(down.view(), &targets, Some(&pw)).0)
                    / (2.0 * eps);
                assert!(
                    (fd - grad[[i, c]]).abs() < 2e-3,
                    "({i},{c}): {fd} vs {}",
                    grad[[i, c]]
                );
            }
        }
        let huge = array![[1e4f32, -1e4]];
        let (l, g) = bce_with_logits(huge.view(), &[vec![0]], None);
        assert!(l.is_finite() && l.abs() < 1e-6 && g.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn cosine_pair_loss_matches_its_definition_and_finite_differences() {
        let x = array![
            [0.3f32, -1.2, 0.8, 0.1],
            [0.5, -0.9, 0.2, 0.7],
            [-1.0, 0.4, 0.3, -0.2],
            [0.0, 0.0, 0.0, 0.0]
        ];
        // Row 0 appears in two pairs, row 3 in none (its gradient stays zero).
        let pairs = [(0, 1, 1.0f32), (2, 0, 0.0), (1, 2, 1.0)];
        let (loss, grad) = cosine_pair_mse(x.view(), &pairs);
        let cos = |a: usize, b: usize| {
            let (u, v) = (x.row(a), x.row(b));
            (u.dot(&v) / (u.dot(&u).sqrt() * v.dot(&v).sqrt())) as f64
        };
        let want = pairs
            .iter()
            .map(|&(a, b, t)| (cos(a, b) - t as f64).powi(2))
            .sum::<f64>()
            / 3.0;
        assert!((loss as f64 - want).abs() < 1e-6, "{loss} vs {want}");
        let eps = 1e-3f32;
        for i in 0..3 {
            for k in 0..4 {
                let (mut up, mut down) = (x.clone(), x.clone());
                up[[i, k]] += eps;
                down[[i, k]] -= eps;
                let fd = (cosine_pair_mse(up.view(), &pairs).0
                    - cosine_pair_mse(down.view(), &pairs).0)
                    / (2.0 * eps);
                assert!(
                    (fd - grad[[i, k]]).abs() < 1e-3,
                    "({i},{k}): {fd} vs {}",
                    grad[[i, k]]
                );
            }
        }
        assert!(grad.row(3).iter().all(|&g| g == 0.0));
    }
}
