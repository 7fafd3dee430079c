//! `y = x Wᵀ + b` with W stored `[out, in]` (the PyTorch / safetensors convention).

use ndarray::{Array2, ArrayView2, Axis, Ix1, Ix2};

use super::adapter::Lora;
use super::params::{zeros, ParamId, ParamStore};
use super::rng::Rng;

#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: ParamId,
    pub bias: ParamId,
    pub in_dim: usize,
    pub out_dim: usize,
    /// Low-rank factors beside the weight, when a LoRA regime adapts this layer.
    pub lora: Option<Lora>,
}

impl Linear {
    /// PyTorch's default init: U(−1/√in, 1/√in) for weight and bias.
    pub fn new(
        store: &mut ParamStore,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        rng: &mut Rng,
    ) -> Self {
        let bound = 1.0 / (in_dim as f64).sqrt();
        let mut w = zeros(&[out_dim, in_dim]);
        w.mapv_inplace(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32);
        let mut b = zeros(&[out_dim]);
        b.mapv_inplace(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32);
        Self {
            weight: store.add(format!("{prefix}.weight"), w),
            bias: store.add(format!("{prefix}.bias"), b),
            in_dim,
            out_dim,
            lora: None,
        }
    }

    /// Refers to existing parameters (e.g. loaded from safetensors).
    pub fn from_params(store: &ParamStore, weight: ParamId, bias: ParamId) -> Self {
        let shape = store.get(weight).value.shape().to_vec();
        Self {
            weight,
            bias,
            in_dim: shape[1],
            out_dim: shape[0],
            lora: None,
        }
    }

    fn w<'a>(&self, store: &'a ParamStore) -> ArrayView2<'a, f32> {
        store
            .get(self.weight)
            .value
            .view()
            .into_dimensionality::<Ix2>()
            .expect("2-D weight")
    }

    pub fn forward(&self, store: &ParamStore, x: ArrayView2<f32>) -> Array2<f32> {
        let b = store
            .get(self.bias)
            .value
            .view()
            .into_dimensionality::<Ix1>()
            .expect("1-D bias");
        // The bias is C's starting value, so the product adds onto it in the same pass.
        let mut y = b
            .broadcast((x.nrows(), self.out_dim))
            .expect("bias")
            .to_owned();
        store
            .kernel()
            .gemm(1.0, &x, &self.w(store).t(), 1.0, &mut y.view_mut());
        if let Some(lora) = &self.lora {
            lora.forward_into(store, x, &mut y);
        }
        y
    }

    /// Accumulates dW and db (and the LoRA factors' gradients) from the input `x` and upstream
    /// `dy`; returns dx if `input_grad` (not needed when `x` is a frozen, cached input). A
    /// parameter the store holds frozen gets no gradient: dW is the costliest product here.
    pub fn backward(
        &self,
        store: &mut ParamStore,
        x: ArrayView2<f32>,
        dy: ArrayView2<f32>,
        input_grad: bool,
    ) -> Option<Array2<f32>> {
        let kernel = store.kernel();
        let mut dx = input_grad.then(|| kernel.dot(&dy, &self.w(store)));
        if store.trains(self.weight) {
            let gw = &mut store.get_mut(self.weight).grad;
            let mut gw = gw.view_mut().into_dimensionality::<Ix2>().expect("2-D");
            kernel.gemm(1.0, &dy.t(), &x, 1.0, &mut gw);
        }
        if store.trains(self.bias) {
            let gb = &mut store.get_mut(self.bias).grad;
            *gb += &dy.sum_axis(Axis(0)).into_dyn();
        }
        if let Some(lora) = &self.lora {
            lora.backward(store, x, dy, dx.as_mut());
        }
        dx
    }

    /// Folds the LoRA factors into the weight (W + scale·B·A) and drops them: the same function,
    /// at a plain layer's cost.
    pub fn merge_lora(&mut self, store: &mut ParamStore) {
        if let Some(lora) = self.lora.take() {
            let merged = &store.get(self.weight).value + &lora.delta(store).into_dyn();
            store.set(self.weight, merged);
        }
    }
}
