//! MTEB's classification protocol replayed on cached embeddings.
//!
//! For each of `experiments` runs, a fresh numpy `RandomState(seed)` shuffles the index list
//! carried over from the previous run, and the first `k` rows of each label in that order form the
//! training set (MTEB's `_undersample_data`). A multinomial logistic regression (L2, C = 1,
//! unpenalised intercept, L-BFGS, 100 iterations — scikit-learn's defaults as MTEB calls them)
//! is fitted and scored on the whole test set. numpy's legacy MT19937 and its shuffle are
//! reproduced bit for bit, so every run draws the very rows MTEB draws.

use std::collections::HashMap;

use ndarray::{s, Array1, Array2, ArrayView2, Axis};

/// numpy's legacy Mersenne Twister (`np.random.RandomState`).
pub(crate) struct Mt19937 {
    state: [u32; 624],
    pos: usize,
}

impl Mt19937 {
    /// `RandomState(seed)` for an integer seed (numpy's `mt19937_seed`).
    pub(crate) fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        let mut s = seed;
        for (i, slot) in state.iter_mut().enumerate() {
            *slot = s;
            s = 1_812_433_253u32
                .wrapping_mul(s ^ (s >> 30))
                .wrapping_add(i as u32 + 1);
        }
        Self { state, pos: 624 }
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        for i in 0..624 {
            let y = (self.state[i] & UPPER) | (self.state[(i + 1) % 624] & LOWER);
            let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 == 1 {
                v ^= 0x9908_b0df;
            }
            self.state[i] = v;
        }
        self.pos = 0;
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        if self.pos >= 624 {
            self.twist();
        }
        let mut y = self.state[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// numpy's `random_interval`: uniform in [0, max] by masked rejection.
    fn interval(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        for shift in [1, 2, 4, 8, 16] {
            mask |= mask >> shift;
        }
        loop {
            let v = self.next_u32() & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// `RandomState.shuffle` on a 1-D array (Fisher–Yates from the end).
    pub(crate) fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.interval(i as u32) as usize;
            xs.swap(i, j);
        }
    }
}

/// MTEB's `_undersample_data`: shuffle `idxs` in place, then keep the first `k` of each label.
pub(crate) fn undersample(labels: &[usize], k: usize, idxs: &mut [usize], seed: u32) -> Vec<usize> {
    Mt19937::new(seed).shuffle(idxs);
    let mut taken: HashMap<usize, usize> = HashMap::new();
    idxs.iter()
        .copied()
        .filter(|&i| {
            let c = taken.entry(labels[i]).or_insert(0);
            *c += 1;
            *c <= k
        })
        .collect()
}

/// Logistic regression with scikit-learn's objectives: for three or more classes multinomial
/// (mean cross-entropy + ‖W‖² / (2·C·n)); for two classes the binary one scikit-learn fits —
/// one weight vector, mean log-loss of the positive class + ‖w‖² / (2·C·n) (a penalised two-row
/// softmax is another model: its penalty acts like C = 2). Intercepts unpenalised; minimised by
/// L-BFGS from zeros.
pub(crate) struct LogisticRegression {
    pub weights: Array2<f64>,
    pub bias: Array1<f64>,
}

pub(crate) struct LbfgsOptions {
    pub c: f64,
    pub max_iter: usize,
    pub gtol: f64,
    pub history: usize,
}

impl Default for LbfgsOptions {
    fn default() -> Self {
        Self {
            c: 1.0,
            max_iter: 100,
            gtol: 1e-4,
            history: 10,
        }
    }
}

/// Rows of W a model of `k` classes has: one for two classes (binary), else one per class.
fn weight_rows(k: usize) -> usize {
    if k == 2 {
        1
    } else {
        k
    }
}

/// Binary loss and gradient of the packed parameters `[w (d) | b]`; class 1 is the positive one.
fn objective_binary(
    theta: &Array1<f64>,
    x: ArrayView2<f64>,
    y: &[usize],
    c: f64,
) -> (f64, Array1<f64>) {
    let (n, d) = x.dim();
    let w = theta.slice(s![..d]);
    let b = theta[d];
    let z = x.dot(&w) + b;
    let mut loss = 0.0;
    // r = σ(z) − y, the gradient of the log-loss w.r.t. z.
    let mut r = Array1::<f64>::zeros(n);
    for i in 0..n {
        let t = if y[i] == 1 { 1.0 } else { 0.0 };
        // log(1 + e^z) − t·z, computed stably.
        loss += z[i].max(0.0) + (-z[i].abs()).exp().ln_1p() - t * z[i];
        r[i] = 1.0 / (1.0 + (-z[i]).exp()) - t;
    }
    let nf = n as f64;
    let reg = 1.0 / (c * nf);
    loss = loss / nf + 0.5 * reg * w.dot(&w);
    let mut gw = x.t().dot(&r) / nf;
    gw.scaled_add(reg, &w);
    let mut grad = Array1::zeros(theta.len());
    grad.slice_mut(s![..d]).assign(&gw);
    grad[d] = r.sum() / nf;
    (loss, grad)
}

/// Loss and gradient for `k` classes (binary for two).
fn objective(
    theta: &Array1<f64>,
    x: ArrayView2<f64>,
    y: &[usize],
    k: usize,
    c: f64,
) -> (f64, Array1<f64>) {
    if k == 2 {
        objective_binary(theta, x, y, c)
    } else {
        objective_multinomial(theta, x, y, k, c)
    }
}

/// Multinomial loss and gradient of the packed parameters `[W (k×d) | b (k)]`.
fn objective_multinomial(
    theta: &Array1<f64>,
    x: ArrayView2<f64>,
    y: &[usize],
    k: usize,
    c: f64,
) -> (f64, Array1<f64>) {
    let (n, d) = x.dim();
    let w = theta
        .slice(s![..k * d])
        .into_shape_with_order((k, d))
        .expect("packed W");
    let b = theta.slice(s![k * d..]);
    let mut z = x.dot(&w.t());
    z += &b;
    let mut loss = 0.0;
    for (i, mut row) in z.axis_iter_mut(Axis(0)).enumerate() {
        let max = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum);
        loss -= row[y[i]].max(1e-300).ln();
        row[y[i]] -= 1.0; // row is now P − Y
    }
    let nf = n as f64;
    let reg = 1.0 / (c * nf);
    loss = loss / nf + 0.5 * reg * w.iter().map(|v| v * v).sum::<f64>();
    let mut gw = z.t().dot(&x) / nf;
    gw.scaled_add(reg, &w);
    let gb = z.sum_axis(Axis(0)) / nf;
    let mut grad = Array1::zeros(theta.len());
    grad.slice_mut(s![..k * d])
        .assign(&Array1::from_iter(gw.iter().copied()));
    grad.slice_mut(s![k * d..]).assign(&gb);
    (loss, grad)
}

impl LogisticRegression {
    pub(crate) fn fit(x: ArrayView2<f64>, y: &[usize], k: usize, opts: &LbfgsOptions) -> Self {
        let d = x.ncols();
        let dim = weight_rows(k) * (d + 1);
        let mut theta = Array1::<f64>::zeros(dim);
        let (mut f, mut g) = objective(&theta, x, y, k, opts.c);
        let mut s_hist: Vec<Array1<f64>> = Vec::new();
        let mut y_hist: Vec<Array1<f64>> = Vec::new();
        let mut iterations = 0;
        while iterations < opts.max_iter {
            if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) <= opts.gtol {
                break;
            }
            // Two-loop recursion for the search direction.
            let mut q = g.clone();
            let mut alphas = Vec::with_capacity(s_hist.len());
            for (s, yv) in s_hist.iter().zip(&y_hist).rev() {
                let rho = 1.0 / yv.dot(s);
                let a = rho * s.dot(&q);
                q.scaled_add(-a, yv);
                alphas.push((a, rho));
            }
            let gamma = match (s_hist.last(), y_hist.last()) {
                (Some(s), Some(yv)) => s.dot(yv) / yv.dot(yv),
                _ => 1.0 / g.dot(&g).sqrt().max(1e-12),
            };
            q *= gamma;
            for ((s, yv), (a, rho)) in s_hist.iter().zip(&y_hist).zip(alphas.into_iter().rev()) {
                let beta = rho * yv.dot(&q);
                q.scaled_add(a - beta, s);
            }
            let dir = -q;
            let slope = g.dot(&dir);
            if slope >= 0.0 {
                break; // not a descent direction: converged as far as f64 allows
            }
            // Backtracking line search with the Armijo condition.
            let mut step = 1.0;
            let (new_theta, new_f, new_g) = loop {
                let cand = &theta + &(step * &dir);
                let (cf, cg) = objective(&cand, x, y, k, opts.c);
                if cf <= f + 1e-4 * step * slope || step < 1e-10 {
                    break (cand, cf, cg);
                }
                step *= 0.5;
            };
            let s_vec = &new_theta - &theta;
            let y_vec = &new_g - &g;
            if s_vec.dot(&y_vec) > 1e-12 {
                s_hist.push(s_vec);
                y_hist.push(y_vec);
                if s_hist.len() > opts.history {
                    s_hist.remove(0);
                    y_hist.remove(0);
                }
            }
            let rel = (f - new_f) / f.abs().max(new_f.abs()).max(1.0);
            theta = new_theta;
            f = new_f;
            g = new_g;
            iterations += 1;
            if rel <= 64.0 * f64::EPSILON {
                break;
            }
        }
        let rows = weight_rows(k);
        let weights = theta
            .slice(s![..rows * d])
            .to_owned()
            .into_shape_with_order((rows, d))
            .expect("packed W");
        let bias = theta.slice(s![rows * d..]).to_owned();
        Self { weights, bias }
    }

    pub(crate) fn predict(&self, x: ArrayView2<f64>) -> Vec<usize> {
        let mut z = x.dot(&self.weights.t());
        z += &self.bias;
        if self.weights.nrows() == 1 {
            // Binary: class 1 where the decision function is positive (scikit-learn's rule).
            return z.column(0).iter().map(|&v| usize::from(v > 0.0)).collect();
        }
        z.axis_iter(Axis(0))
            .map(|r| {
                r.iter()
                    .enumerate()
                    .fold(
                        (0, f64::NEG_INFINITY),
                        |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                    )
                    .0
            })
            .collect()
    }
}

/// The replay's result: test accuracy of each experiment, with mean and standard deviation.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ReplayResult {
    pub k: usize,
    pub experiments: Vec<f64>,
    pub mean: f64,
    pub std: f64,
}

/// Runs the protocol. `std` is the population standard deviation (numpy's default), as MTEB reports.
pub(crate) fn replay(
    train_x: ArrayView2<f32>,
    train_y: &[usize],
    test_x: ArrayView2<f32>,
    test_y: &[usize],
    k: usize,
    experiments: usize,
    seed: u32,
) -> ReplayResult {
    let classes = train_y.iter().chain(test_y).max().map_or(0, |m| m + 1);
    let test64 = test_x.mapv(f64::from);
    let mut idxs: Vec<usize> = (0..train_y.len()).collect();
    let mut accs = Vec::with_capacity(experiments);
    for _ in 0..experiments {
        let rows = undersample(train_y, k, &mut idxs, seed);
        let x = train_x.select(Axis(0), &rows).mapv(f64::from);
        let y: Vec<usize> = rows.iter().map(|&r| train_y[r]).collect();
        let model = LogisticRegression::fit(x.view(), &y, classes, &LbfgsOptions::default());
        let pred = model.predict(test64.view());
        let correct = pred.iter().zip(test_y).filter(|(p, t)| p == t).count();
        accs.push(correct as f64 / test_y.len() as f64);
    }
    let mean = accs.iter().sum::<f64>() / accs.len() as f64;
    let std = (accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / accs.len() as f64).sqrt();
    ReplayResult {
        k,
        experiments: accs,
        mean,
        std,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values printed by numpy: `np.random.RandomState(42).randint(0, 2**32, 3, dtype=np.uint64)`
    /// gives the first raw outputs; `rs.shuffle(a)` of arange(10) the permutation.
    #[test]
    fn matches_numpy_random_state_42() {
        let mut mt = Mt19937::new(42);
        assert_eq!(
            [mt.next_u32(), mt.next_u32(), mt.next_u32()],
            [1_608_637_542, 3_421_126_067, 4_083_286_876]
        );
        let mut a: Vec<usize> = (0..10).collect();
        Mt19937::new(42).shuffle(&mut a);
        assert_eq!(a, [8, 1, 5, 0, 7, 2, 9, 4, 3, 6]);
    }

    #[test]
    fn logistic_regression_separates_and_regularises() {
        // Two well-separated blobs: perfect fit, finite weights thanks to the L2 term.
        let x = ndarray::array![[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]];
        let y = [0, 0, 1, 1];
        let m = LogisticRegression::fit(x.view(), &y, 2, &LbfgsOptions::default());
        assert_eq!(m.predict(x.view()), y);
        assert!(m.weights.iter().all(|w| w.is_finite() && w.abs() < 10.0));
    }

    /// Expected values printed by scikit-learn 1.x: `LogisticRegression(C=1).fit(x, y)` on these
    /// rows gives `coef_ = [1.36462, -0.36124, 0.52603]`, `intercept_ = -0.22026`.
    #[test]
    fn two_classes_fit_scikit_learn_s_binary_model() {
        let x = ndarray::array![
            [1.764, 0.4, 0.979],
            [2.241, 1.868, -0.977],
            [0.95, -0.151, -0.103],
            [0.411, 0.144, 1.454],
            [0.761, 0.122, 0.444],
            [0.334, 1.494, -0.205],
            [0.313, -0.854, -2.553],
            [0.654, 0.864, -0.742],
            [2.27, -1.454, 0.046],
            [-0.187, 1.533, 1.469],
            [0.155, 0.378, -0.888],
            [-1.981, -0.348, 0.156]
        ];
        let y = [1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0];
        let m = LogisticRegression::fit(x.view(), &y, 2, &LbfgsOptions::default());
        assert_eq!(m.weights.dim(), (1, 3), "one weight vector");
        let want = [1.364618093382288, -0.3612412832233632, 0.5260296717876152];
        for (w, e) in m.weights.iter().zip(want) {
            assert!((w - e).abs() < 1e-3, "{:?} vs {want:?}", m.weights);
        }
        assert!(
            (m.bias[0] + 0.22026317015759564).abs() < 1e-3,
            "{}",
            m.bias[0]
        );
    }
}
