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
    m: Vec<Vec<ArrayD<f32>>>,
    v: Vec<Vec<ArrayD<f32>>>,
    t: i32,
}

impl AdamW {
    /// The optimizer sees only these parameters; everything else stays as it is.
    pub fn new(store: &ParamStore, groups: Vec<ParamGroup>) -> Self {
        let state = |g: &ParamGroup| {
            g.ids
                .iter()
                .map(|&i| ArrayD::zeros(store.get(i).value.raw_dim()))
                .collect::<Vec<_>>()
        };
        let m = groups.iter().map(state).collect();
        let v = groups.iter().map(state).collect();
        Self { groups, m, v, t: 0 }
    }

    pub fn param_ids(&self) -> Vec<ParamId> {
        self.groups
            .iter()
            .flat_map(|g| g.ids.iter().copied())
            .collect()
    }

    /// One update with every group's learning rate multiplied by `lr_scale` (the schedule).
    /// Weight decay applies to matrices only, not to biases or LayerNorm vectors.
    pub fn step(&mut self, store: &mut ParamStore, lr_scale: f32) {
        self.t += 1;
        for (g, group) in self.groups.iter().enumerate() {
            let c = &group.config;
            let lr = c.lr * lr_scale;
            let bc1 = 1.0 - c.beta1.powi(self.t);
            let bc2 = 1.0 - c.beta2.powi(self.t);
            for (j, &id) in group.ids.iter().enumerate() {
                let p = store.get_mut(id);
                let decay = if p.value.ndim() >= 2 {
                    c.weight_decay
                } else {
                    0.0
                };
                let m = &mut self.m[g][j];
                let v = &mut self.v[g][j];
                ndarray::Zip::from(&mut p.value)
                    .and(&p.grad)
                    .and(m)
                    .and(v)
                    .for_each(|w, &gr, m, v| {
                        *m = c.beta1 * *m + (1.0 - c.beta1) * gr;
                        *v = c.beta2 * *v + (1.0 - c.beta2) * gr * gr;
                        let mhat = *m / bc1;
                        let vhat = *v / bc2;
                        *w -= lr * (mhat / (vhat.sqrt() + c.eps) + decay * *w);
                    });
            }
        }
    }
}

/// Scales the gradients of `ids` so that their global L2 norm is at most `max_norm`; returns the
/// norm before clipping.
pub fn clip_grad_norm(store: &mut ParamStore, ids: &[ParamId], max_norm: f32) -> f32 {
    let norm = ids
        .iter()
        .map(|&i| {
            store
                .get(i)
                .grad
                .iter()
                .map(|g| (*g as f64).powi(2))
                .sum::<f64>()
        })
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
