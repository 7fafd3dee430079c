//! AdamW (decoupled weight decay) over an explicit list of parameters, and gradient clipping.

use ndarray::ArrayD;

use super::params::{ParamId, ParamStore};

#[derive(Debug, Clone)]
pub struct AdamWConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// One group of parameters sharing a learning rate (e.g. encoder layers vs heads).
#[derive(Debug, Clone)]
pub struct ParamGroup {
    pub ids: Vec<ParamId>,
    pub config: AdamWConfig,
}

pub struct AdamW {
    groups: Vec<ParamGroup>,
    /// Per parameter: (group, first moment, second moment, its own step count).
    state: std::collections::HashMap<ParamId, (usize, ArrayD<f32>, ArrayD<f32>, i32)>,
}

impl AdamW {
    /// The optimizer sees only these parameters; everything else stays as it is.
    pub fn new(store: &ParamStore, groups: Vec<ParamGroup>) -> Self {
        let mut state = std::collections::HashMap::new();
        for (g, group) in groups.iter().enumerate() {
            for &id in &group.ids {
                let zeros = ArrayD::zeros(store.get(id).value.raw_dim());
                state.insert(id, (g, zeros.clone(), zeros, 0));
            }
        }
        Self { groups, state }
    }

    pub fn param_ids(&self) -> Vec<ParamId> {
        self.groups
            .iter()
            .flat_map(|g| g.ids.iter().copied())
            .collect()
    }

    /// One update of the parameters in `ids` that this optimizer owns (those that received a
    /// gradient this step; like PyTorch, a parameter without a gradient is left alone), with the
    /// learning rate multiplied by `lr_scale` (the schedule). Weight decay applies to matrices
    /// only, not to biases or LayerNorm vectors.
    pub fn step(&mut self, store: &mut ParamStore, ids: &[ParamId], lr_scale: f32) {
        for &id in ids {
            let Some((g, m, v, t)) = self.state.get_mut(&id) else {
                continue;
            };
            let c = &self.groups[*g].config;
            *t += 1;
            let lr = c.lr * lr_scale;
            let bc1 = 1.0 - c.beta1.powi(*t);
            let bc2 = 1.0 - c.beta2.powi(*t);
            let p = store.get_mut(id);
            let decay = if p.value.ndim() >= 2 {
                c.weight_decay
            } else {
                0.0
            };
            let update = |w: &mut f32, gr: f32, m: &mut f32, v: &mut f32| {
                *m = c.beta1 * *m + (1.0 - c.beta1) * gr;
                *v = c.beta2 * *v + (1.0 - c.beta2) * gr * gr;
                let mhat = *m / bc1;
                let vhat = *v / bc2;
                *w -= lr * (mhat / (vhat.sqrt() + c.eps) + decay * *w);
            };
            // Contiguous arrays (all of them in practice) as flat slices, a loop the compiler
            // vectorises; ndarray's n-dimensional zip does not.
            match (
                p.value.as_slice_mut(),
                p.grad.as_slice(),
                m.as_slice_mut(),
                v.as_slice_mut(),
            ) {
                (Some(w), Some(g), Some(m), Some(v)) => {
                    for (((w, &gr), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
                        update(w, gr, m, v);
                    }
                }
                _ => ndarray::Zip::from(&mut p.value)
                    .and(&p.grad)
                    .and(m)
                    .and(v)
                    .for_each(|w, &gr, m, v| update(w, gr, m, v)),
            }
        }
    }
}

/// Scales the gradients of `ids` so that their global L2 norm is at most `max_norm`; returns the
/// norm before clipping.
pub fn clip_grad_norm(store: &mut ParamStore, ids: &[ParamId], max_norm: f32) -> f32 {
    let norm = ids
        .iter()
        .map(|&i| sum_of_squares(store.get(i).grad.view()))
        .sum::<f64>()
        .sqrt() as f32;
    if max_norm > 0.0 && norm > max_norm {
        let s = max_norm / (norm + 1e-6);
        for &i in ids {
            store.get_mut(i).grad.mapv_inplace(|g| g * s);
        }
    }
    norm
}

/// Σ g² in f64 over eight running sums (one per lane of a vector, so the loop vectorises
/// instead of waiting on one chain of additions), combined in a fixed order.
fn sum_of_squares(g: ndarray::ArrayViewD<f32>) -> f64 {
    let Some(x) = g.as_slice() else {
        return g.iter().map(|&v| (v as f64).powi(2)).sum();
    };
    const LANES: usize = 8;
    let mut acc = [0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f64 = chunks.remainder().iter().map(|&v| (v as f64).powi(2)).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += (v as f64) * (v as f64);
        }
    }
    acc.iter().sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_of_squares_matches_the_plain_sum_on_contiguous_and_strided_arrays() {
        let mut rng = crate::nn::Rng::new(3);
        let a = ndarray::Array2::from_shape_simple_fn((37, 29), || rng.uniform() as f32 - 0.5)
            .into_dyn();
        let plain: f64 = a.iter().map(|&v| (v as f64) * (v as f64)).sum();
        assert!((sum_of_squares(a.view()) - plain).abs() < 1e-9 * plain);
        let strided = a.slice_each_axis(|_| ndarray::Slice::new(0, None, 2));
        assert!(strided.as_slice().is_none());
        let want: f64 = strided.iter().map(|&v| (v as f64) * (v as f64)).sum();
        assert!((sum_of_squares(strided) - want).abs() < 1e-9 * want);
    }
}
